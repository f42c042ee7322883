//! One shard: a glommio executor (pinned to a core when configured), its listening sockets, the connections the kernel gave
//! it, the sessions whose home it is, its subscription index and its copy of the retained store.
//!
//! Concurrency model: everything in [`Shard`] lives in one `Rc<RefCell<_>>` owned by the shard's thread.
//! The shard's tasks (accept loops, connection readers and writers, the mail task) borrow
//! it only between `.await`s, so no borrow is ever held across a suspension point. Other shards are
//! reached only through [`crate::router`] mail.
//!
//! Layout: this file holds the state; `executor.rs` the executor's main future, mail handling, the tick
//! and shutdown; `connection.rs` the per-connection tasks (CONNECT, reading, writing, hand-off to the
//! home shard); `packets/` what a packet does to the shard's state, one file per family (sessions,
//! publishes, subscriptions), with `attached.rs` the connection-to-session handle both sides share;
//! `sys.rs` the `$SYS` topics.

mod attached;
mod connection;
mod executor;
mod expiry;
mod keepalive;
mod packets;
mod sys;

pub use executor::{run, ShardStart};
pub use keepalive::TICK;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use ahash::AHashMap;

use crate::auth::Security;
use crate::codec::{SubAck, SubscriptionOptions, Utf8Bytes};
use crate::index::{InterestMap, RetainedStore, SubscriptionTrie};
use crate::message::Message;
use crate::router::{InterestInbox, Mail, MailSenders, ShardId};
use crate::session::{Outbox, Session};
use crate::settings::Settings;
use crate::stats::ShardStats;

/// The fixed-key hash that places a client id on its home shard (docs/ARCHITECTURE.md, invariant 1). Fixed keys make
/// it stable across shards and restarts.
pub fn home_of(client_id: &[u8], shards: usize) -> ShardId {
    let state = ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    );
    (state.hash_one(client_id) % shards as u64) as ShardId
}

/// Connections open per listener, across all shards (`max_connections` is a per-listener total, as in
/// Mosquitto). Atomic counters touched once per connect and disconnect, never per message.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    counts: Vec<AtomicUsize>,
}

impl ConnectionCounts {
    pub fn new(listeners: usize) -> ConnectionCounts {
        ConnectionCounts {
            counts: (0..listeners).map(|_| AtomicUsize::new(0)).collect(),
        }
    }
    fn try_acquire(&self, listener: usize, max: Option<usize>) -> bool {
        let prev = self.counts[listener].fetch_add(1, Ordering::Relaxed);
        if max.is_some_and(|m| prev >= m) {
            self.counts[listener].fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
    fn release(&self, listener: usize) {
        self.counts[listener].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A subscription request waiting for the other shards to acknowledge new interest before its SUBACK.
struct PendingSub {
    /// Interest acknowledgements still missing (one per filter that had to be broadcast).
    waits: usize,
    suback: SubAck,
    /// Filters whose retained messages go out after the SUBACK.
    retained: Vec<(Utf8Bytes, SubscriptionOptions)>,
}

/// Identifies a pending SUBSCRIBE: session slot, its generation and the packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SubToken {
    slot: u32,
    generation: u32,
    packet_id: u16,
}

/// A filter whose interest this shard broadcast and not every shard acknowledged yet.
#[derive(Default)]
struct PendingInterest {
    /// Acknowledgements still to come.
    remaining: usize,
    /// Subscriptions whose SUBACK waits for them.
    waiters: Vec<SubToken>,
}

/// A connection known to the shard, for shutdown.
struct LiveConn {
    fd: RawFd,
    /// Set once the connection has a session and a writer task.
    outbox: Option<Rc<Outbox>>,
}

pub(crate) struct Shard {
    pub id: ShardId,
    pub shards: usize,
    pub settings: Arc<Settings>,
    /// `password_file` / `acl_file` in force: the start-up ones until a reload (SIGHUP) replaces them.
    pub security: Arc<Security>,
    /// Session slab: slot → session. Slots are reused; `generations` tells reuses apart. Boxed: a
    /// session is close to 1 KB, and an inline slab (doubling as it grows) would hold up to twice that
    /// per client, plus the old copies a reallocation leaves behind.
    sessions: Vec<Option<Box<Session>>>,
    generations: Vec<u32>,
    free_slots: Vec<u32>,
    /// Client id → slot, for the sessions whose home is this shard.
    directory: AHashMap<Utf8Bytes, u32>,
    /// This shard's sessions' subscriptions: filter → (slot → options).
    trie: SubscriptionTrie<u32, SubscriptionOptions>,
    /// Which shards (this one included) have subscriptions on which filters.
    interest: InterestMap,
    interest_pending: AHashMap<Utf8Bytes, PendingInterest>,
    pending_subs: AHashMap<SubToken, PendingSub>,
    /// The whole retained set (see `Mail::Retain`).
    retained: RetainedStore<Arc<Message>>,
    mail_out: MailSenders,
    /// Interest changes from other shards, drained before each publish is routed.
    interest_inbox: InterestInbox,
    /// Mail that did not fit its mailbox, per destination, in order.
    overflow: Vec<VecDeque<Mail>>,
    overflow_len: usize,
    overflow_waker: Option<Waker>,
    /// Connection readers paused while mail is held back (see `overloaded`), woken when the last of it
    /// went out: an event, so thousands of paused readers cost nothing while they wait.
    overload_waiters: Vec<Waker>,
    pub stats: ShardStats,
    live: AHashMap<u64, LiveConn>,
    next_conn: u64,
    /// Reused buffer for trie matches.
    scratch: Vec<(u32, SubscriptionOptions)>,
    /// Counter mixed into assigned client ids.
    assigned_ids: u64,
    counts: Arc<ConnectionCounts>,
    started: Instant,
    sys: sys::SysRound,
    /// When shard 0 next publishes `$SYS` (None: `sys_interval 0`, or not shard 0).
    sys_next: Option<Instant>,
    /// Connections with a keep-alive, checked on every tick.
    keepalive: keepalive::Watch,
    /// Deadlines of disconnected persistent sessions (see `expiry`).
    expiries: expiry::Expiries,
    /// `hold_if_all_behind`: publishers of other shards whose shard this one told where it stands on
    /// holding them (agrees: a hold or a consent, or objects), and when; so it tells each at most once
    /// per half lease (see `session::hold`).
    stances: AHashMap<crate::session::Origin, (Instant, bool)>,
    shutting_down: bool,
}

impl Shard {
    fn new(
        id: ShardId,
        settings: Arc<Settings>,
        mail_out: MailSenders,
        interest_inbox: InterestInbox,
        counts: Arc<ConnectionCounts>,
        started: Instant,
    ) -> Shard {
        let shards = settings.shards;
        Shard {
            id,
            shards,
            security: settings.security.clone(),
            settings,
            sessions: Vec::new(),
            generations: Vec::new(),
            free_slots: Vec::new(),
            directory: AHashMap::new(),
            trie: SubscriptionTrie::new(),
            interest: InterestMap::new(),
            interest_pending: AHashMap::new(),
            pending_subs: AHashMap::new(),
            retained: RetainedStore::new(),
            mail_out,
            interest_inbox,
            overflow: (0..shards).map(|_| VecDeque::new()).collect(),
            overflow_len: 0,
            overflow_waker: None,
            overload_waiters: Vec::new(),
            stats: ShardStats::default(),
            live: AHashMap::new(),
            next_conn: 0,
            scratch: Vec::new(),
            assigned_ids: 0,
            counts,
            started,
            sys: sys::SysRound::default(),
            sys_next: None,
            keepalive: keepalive::Watch::default(),
            expiries: expiry::Expiries::default(),
            stances: AHashMap::new(),
            shutting_down: false,
        }
    }

    /// Send mail to another shard, keeping order behind anything already held back for it. Interest
    /// changes take the interest FIFO instead, ahead of held-back mail (see `router`).
    fn send(&mut self, to: ShardId, mail: Mail) {
        if mail.is_interest_change() {
            self.mail_out.send_interest(to, mail);
            return;
        }
        let q = &mut self.overflow[to as usize];
        if q.is_empty() {
            match self.mail_out.try_send(to, mail) {
                Ok(()) => return,
                Err(mail) => q.push_back(mail),
            }
        } else {
            q.push_back(mail);
        }
        self.overflow_len += 1;
        if let Some(w) = self.overflow_waker.take() {
            w.wake();
        }
    }

    /// Send a copy of some mail to every other shard.
    fn broadcast(&mut self, mut make: impl FnMut() -> Mail) {
        for to in 0..self.shards as ShardId {
            if to != self.id {
                let m = make();
                self.send(to, m);
            }
        }
    }

    /// Retry held-back mail; returns whether some is still waiting. When none is left, the readers
    /// paused by [`Self::overloaded`] are woken.
    fn flush_overflow(&mut self) -> bool {
        for to in 0..self.shards {
            while let Some(mail) = self.overflow[to].pop_front() {
                match self.mail_out.try_send(to as ShardId, mail) {
                    Ok(()) => self.overflow_len -= 1,
                    Err(mail) => {
                        self.overflow[to].push_front(mail);
                        break;
                    }
                }
            }
        }
        if self.overflow_len == 0 {
            for w in self.overload_waiters.drain(..) {
                w.wake();
            }
        }
        self.overflow_len > 0
    }

    /// Whether readers should pause because other shards are not keeping up with this one's output:
    /// any mail held back for a full mailbox (bounded mailboxes, back-pressure to the publishers).
    fn overloaded(&self) -> bool {
        self.overflow_len > 0
    }

    /// Ready once every piece of held-back mail went out; otherwise Pending until a receiving shard
    /// took mail from one of this shard's mailboxes (see `MailSenders::prepare_space_wait`).
    fn poll_overflow_sent(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if !self.flush_overflow() {
            return std::task::Poll::Ready(());
        }
        self.mail_out.prepare_space_wait(cx);
        // The re-check after the park mark: a receiver that drained before it is seen here.
        if !self.flush_overflow() {
            self.mail_out.cancel_space_wait();
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    }

    /// Ready once nothing is held back; otherwise the reader's waker waits in `overload_waiters`.
    fn poll_unpaused(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if !self.overloaded() {
            return std::task::Poll::Ready(());
        }
        // No search for a waker already listed: a paused reader is polled again only when woken
        // (the list is drained then), and a scan per pause would be quadratic with thousands paused.
        self.overload_waiters.push(cx.waker().clone());
        std::task::Poll::Pending
    }

    fn register_conn(&mut self, fd: RawFd) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.live.insert(id, LiveConn { fd, outbox: None });
        id
    }
}
