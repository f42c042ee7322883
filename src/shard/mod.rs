//! One shard: a glommio executor (pinned to a core when configured), its listening sockets, the connections the kernel gave
//! it, the sessions whose home it is, its subscription index and its copy of the retained store.
//!
//! Concurrency model: everything in [`Shard`] lives in one `Rc<RefCell<_>>` owned by the shard's thread.
//! The shard's tasks (accept loops, connection readers and writers, the mail task) borrow
//! it only between `.await`s, so no borrow is ever held across a suspension point. Other shards are
//! reached only through [`crate::router`] mail.
//!
//! Layout: this file holds the state, the executor's main future and mail handling; [`connection`] the
//! per-connection tasks (CONNECT, reading, writing, hand-off to the home shard); `routing` what a packet
//! does to the shard's state (sessions, subscriptions, publishes, wills); `sys` the `$SYS` topics.

mod connection;
mod expiry;
mod keepalive;
mod routing;
mod shutdown;
mod sys;

pub use keepalive::TICK;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::auth::Security;
use crate::codec::{SubAck, SubscriptionOptions, Utf8Bytes};
use crate::index::{InterestMap, RetainedStore, SubscriptionTrie};
use crate::message::Message;
use crate::router::{Control, Inbox, InterestInbox, Mail, MailSenders, ShardId};
use crate::session::{Outbox, Session};
use crate::settings::Settings;
use crate::stats::ShardStats;

/// How long shutdown waits for connections to flush and close before the executor ends anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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

/// Everything a shard thread is started with.
pub struct ShardStart {
    pub id: ShardId,
    pub settings: Arc<Settings>,
    /// One bound, listening socket per configured listener (SO_REUSEPORT, same ports on every shard).
    pub listeners: Vec<OwnedFd>,
    pub mail_out: MailSenders,
    pub inbox: Inbox,
    pub counts: Arc<ConnectionCounts>,
    /// When the broker started (for `$SYS/broker/uptime`).
    pub started: Instant,
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

    /// Apply the interest changes other shards have sent so far.
    fn apply_interest_mail(&mut self) {
        // Called for every publish: the common case is one atomic load and nothing else.
        if !self.interest_inbox.has_mail() {
            return;
        }
        // Taken out for the drain so mail can be handled meanwhile (rare: the placeholder allocates).
        let inbox = std::mem::take(&mut self.interest_inbox);
        inbox.drain(|m| {
            let handoff = self.handle_mail(m);
            debug_assert!(handoff.is_none());
        });
        self.interest_inbox = inbox;
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

    /// Handle one piece of mail; a hand-off comes back for the caller to spawn.
    fn handle_mail(&mut self, mail: Mail) -> Option<Box<crate::router::Handoff>> {
        match mail {
            Mail::Publish(msg) => {
                self.deliver_local(&msg);
            }
            Mail::Retain(msg) => self.store_retained(msg),
            Mail::Handoff(h) => return Some(h),
            Mail::InterestAdd { from, filter } => {
                self.interest.add(&filter, from);
                self.send(from, Mail::InterestAck { filter });
            }
            Mail::InterestRemove { from, filter } => {
                self.interest.remove(&filter, from);
            }
            Mail::InterestAck { filter } => self.interest_acked(&filter),
            Mail::Hold { slot, from, signal } => self.hold_publisher(slot, from, signal),
            Mail::Release { slot, from } => self.release_publisher(slot, from),
            Mail::Object { slot, from } => self.object_to_publisher(slot, from),
            Mail::StatsQuery { reply_to } => {
                let stats = self.snapshot_stats();
                self.send(reply_to, Mail::StatsReply(stats));
            }
            Mail::StatsReply(stats) => self.sys_reply(&stats),
        }
        None
    }

    fn snapshot_stats(&self) -> ShardStats {
        let mut s = self.stats;
        s.sessions = self.directory.len() as u64;
        s.retained_messages = self.retained.len() as u64;
        s
    }

    /// Close every connection (v5 clients get DISCONNECT 0x8B) and stop accepting.
    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        let live: Vec<(RawFd, Option<Rc<Outbox>>)> = self
            .live
            .values()
            .map(|c| (c.fd, c.outbox.clone()))
            .collect();
        for (fd, outbox) in live {
            match outbox {
                Some(o) => {
                    if let Some(v5) = self.protocol_of(&o) {
                        if v5 {
                            o.write(|out| {
                                crate::codec::encode_disconnect(
                                    crate::codec::ReasonCode::ServerShuttingDown,
                                    crate::codec::ProtocolVersion::V5,
                                    out,
                                )
                            });
                        }
                    }
                    o.close(crate::session::CloseReason::Shutdown);
                }
                // Not attached yet (waiting for CONNECT): wake its read with EOF.
                // SAFETY: `fd` belongs to a live connection task of this shard (it unregisters before
                // its stream is dropped), and shutdown(2) does not invalidate it.
                None => unsafe {
                    libc::shutdown(fd, libc::SHUT_RDWR);
                },
            }
        }
    }

    /// Whether the session behind `outbox` speaks MQTT 5.0 (None if no session uses it).
    fn protocol_of(&self, outbox: &Rc<Outbox>) -> Option<bool> {
        self.sessions.iter().flatten().find_map(|s| {
            s.conn
                .as_ref()
                .filter(|c| Rc::ptr_eq(c, outbox))
                .map(|_| s.protocol == crate::codec::ProtocolVersion::V5)
        })
    }
}

/// The executor's main future: serve until told to shut down, then close everything.
pub async fn run(start: ShardStart) {
    let ShardStart {
        id,
        settings,
        listeners,
        mail_out,
        inbox,
        counts,
        started,
    } = start;
    let shard = Rc::new(RefCell::new(Shard::new(
        id,
        settings,
        mail_out,
        inbox.interest(),
        counts,
        started,
    )));
    let mut tasks = Vec::new();
    for (index, fd) in listeners.into_iter().enumerate() {
        tasks
            .push(glommio::spawn_local(connection::accept_loop(shard.clone(), fd, index)).detach());
    }
    tasks.push(glommio::spawn_local(overflow_task(shard.clone())).detach());
    if id == 0 {
        shard.borrow_mut().start_sys();
    }
    mail_loop(&shard, &inbox).await;
    shutdown::drain_mail(&shard, &inbox).await;
    for t in &tasks {
        t.cancel();
    }
    drop(tasks);
    shard.borrow_mut().begin_shutdown();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    // Shutdown only: poll until every connection task finished or the grace period ends.
    while !shard.borrow().live.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

impl Shard {
    /// The ticker's beat: close silent connections, publish `$SYS` when due.
    fn tick(&mut self, now: Instant) {
        self.keepalive.check(now);
        self.forget_stances(now);
        self.expire_sessions(now);
        self.sys_tick(now);
    }

    /// Reloaded security files, applied as Mosquitto applies them after SIGHUP: a connected client whose
    /// credentials no longer pass is disconnected (no will), and every session, connected or not, gets
    /// its ACL again for its client id and username.
    fn apply_security(&mut self, security: Arc<Security>) {
        self.security = security;
        for session in self.sessions.iter_mut().flatten() {
            let login = session.login.as_deref();
            let username = login.map(|l| l.username.as_str());
            let password = login.and_then(|l| l.password.as_deref());
            let acl = self
                .security
                .client_acl(session.client_id.as_str(), username);
            let authorised =
                self.security
                    .authenticate(self.settings.allow_anonymous, username, password);
            session.acl = acl;
            session.drop_unreadable();
            if let (false, Some(conn)) = (authorised, &session.conn) {
                conn.close(crate::session::CloseReason::NotAuthorised);
            }
        }
    }
}

/// Receive and handle mail until a shutdown command.
async fn mail_loop(shard: &Rc<RefCell<Shard>>, inbox: &Inbox) {
    let mut batch = Vec::with_capacity(256);
    loop {
        let control = std::future::poll_fn(|cx| inbox.poll_recv(cx, &mut batch)).await;
        match control {
            Some(Control::Shutdown) => return,
            Some(Control::Wills(done)) => {
                shard.borrow_mut().publish_wills_for_shutdown();
                let _ = done.send(());
            }
            Some(Control::Tick) => shard.borrow_mut().tick(Instant::now()),
            Some(Control::Security(security, done)) => {
                shard.borrow_mut().apply_security(security);
                let _ = done.send(());
            }
            None => {}
        }
        let mut handoffs = Vec::new();
        {
            let mut s = shard.borrow_mut();
            for mail in batch.drain(..) {
                if let Some(h) = s.handle_mail(mail) {
                    handoffs.push(h);
                }
            }
            if s.overflow_len > 0 {
                s.flush_overflow();
            }
        }
        for h in handoffs {
            glommio::spawn_local(connection::run_handoff(shard.clone(), h)).detach();
        }
        // Let connection tasks run between batches: a mail flood must not starve the sockets, above all
        // the subscribers' acknowledgements that open their windows (else their queues overflow).
        futures_lite::future::yield_now().await;
    }
}

/// Re-sends held-back mail while there is some; parks otherwise.
async fn overflow_task(shard: Rc<RefCell<Shard>>) {
    loop {
        std::future::poll_fn(|cx| {
            let mut s = shard.borrow_mut();
            if s.overflow_len > 0 {
                std::task::Poll::Ready(())
            } else {
                s.overflow_waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await;
        // Receivers wake this task when they take mail from a mailbox it found full (an event, not a
        // timer): retry then, until everything went out.
        std::future::poll_fn(|cx| shard.borrow_mut().poll_overflow_sent(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use bytes::Bytes;

    use super::*;
    use crate::codec::{Properties, QoS};
    use crate::message::Message;
    use crate::router::MailboxMatrix;

    fn message(topic: &'static str) -> Message {
        Message {
            topic: Utf8Bytes::from_static(topic),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            origin: None,
            hold_stamp: Default::default(),
        }
    }

    /// Everything queued for a shard, as its mail loop would take it.
    fn take_mail(inbox: &Inbox) -> Vec<Mail> {
        let mut batch = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        let _ = inbox.poll_recv(&mut cx, &mut batch);
        batch
    }

    /// A subscription shard 1 has taken reaches shard 0's routing before shard 0's mail loop runs: the
    /// interest FIFO is drained by `route` itself, so a publish routed on shard 0 after shard 1 took the
    /// SUBSCRIBE is not missed (as in a broker that handles packets in arrival order).
    #[test]
    fn a_publish_routed_after_another_shard_took_a_subscription_reaches_it() {
        let MailboxMatrix {
            mail_out, inboxes, ..
        } = MailboxMatrix::new(2);
        let mut mail_out = mail_out.into_iter();
        let (out0, out1) = (mail_out.next().unwrap(), mail_out.next().unwrap());
        let settings = Arc::new(Settings::local(2));
        let mut shard0 = Shard::new(
            0,
            settings,
            out0,
            inboxes[0].interest(),
            Arc::new(ConnectionCounts::new(1)),
            Instant::now(),
        );

        // Before any interest: nothing crosses.
        shard0.route(message("a/b"));
        assert!(take_mail(&inboxes[1]).is_empty());

        out1.send_interest(
            0,
            Mail::InterestAdd {
                from: 1,
                filter: Utf8Bytes::from_static("a/+"),
            },
        );
        shard0.route(message("a/b"));
        shard0.route(message("c/d"));
        let mail = take_mail(&inboxes[1]);
        let acks = mail
            .iter()
            .filter(|m| matches!(m, Mail::InterestAck { filter } if &**filter == "a/+"))
            .count();
        let published: Vec<&str> = mail
            .iter()
            .filter_map(|m| match m {
                Mail::Publish(msg) => Some(&*msg.topic),
                _ => None,
            })
            .collect();
        assert_eq!(acks, 1, "the interest is acknowledged once");
        assert_eq!(published, ["a/b"], "only the matching publish crosses");
        // Consumed by the routing, so the mail loop does not see the change a second time.
        assert!(take_mail(&inboxes[0]).is_empty());
    }
}
