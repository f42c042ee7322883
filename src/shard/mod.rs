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
mod mailroom;
mod packets;
mod retained;
mod sessions;
mod subscriptions;
mod sys;

pub use executor::{run, ShardStart};
pub use keepalive::TICK;
pub use sessions::home_of;

use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;

use crate::auth::Security;
use crate::router::{InterestInbox, MailSenders, ShardId};
use crate::session::Outbox;
use crate::settings::Settings;
use crate::stats::ShardStats;
use mailroom::Mailroom;
use retained::Retained;
use sessions::SessionTable;
use subscriptions::Subscriptions;

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
    /// The sessions whose home is this shard, and the client-id directory.
    sessions: SessionTable,
    /// This shard's subscriptions, the broker's interest summary, SUBACKs waiting for it.
    subs: Subscriptions,
    /// The whole retained set (see `Mail::Retain`).
    retained: Retained,
    /// Mail to other shards, held back while their mailboxes are full, and the interest inbox.
    mail: Mailroom,
    pub stats: ShardStats,
    live: AHashMap<u64, LiveConn>,
    next_conn: u64,
    counts: Arc<ConnectionCounts>,
    started: Instant,
    sys: sys::SysRound,
    /// When shard 0 next publishes `$SYS` (None: `sys_interval 0`, or not shard 0).
    sys_next: Option<Instant>,
    /// Connections with a keep-alive, checked on every tick.
    keepalive: keepalive::Watch,
    /// Deadlines of disconnected persistent sessions (see `expiry`).
    expiries: expiry::Expiries,
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
            sessions: SessionTable::default(),
            subs: Subscriptions::new(id, shards),
            retained: Retained::new(),
            mail: Mailroom::new(id, shards, mail_out, interest_inbox),
            stats: ShardStats::default(),
            live: AHashMap::new(),
            next_conn: 0,
            counts,
            started,
            sys: sys::SysRound::default(),
            sys_next: None,
            keepalive: keepalive::Watch::default(),
            expiries: expiry::Expiries::default(),
            shutting_down: false,
        }
    }

    fn register_conn(&mut self, fd: RawFd) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.live.insert(id, LiveConn { fd, outbox: None });
        id
    }
}
