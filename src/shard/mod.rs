//! One shard: a glommio executor (pinned to a core when configured), its listening sockets, the connections the kernel gave
//! it, the sessions whose home it is, its subscription index and its hold on the broker's retained store.
//!
//! Concurrency model: everything in [`Shard`] lives in one `Rc<RefCell<_>>` owned by the shard's thread.
//! The shard's tasks (accept loops, connection readers and writers, the mail task) borrow
//! it only between `.await`s, so no borrow is ever held across a suspension point. Other shards are
//! reached only through [`crate::router`] mail.
//!
//! Rooms. [`Shard`] is a composition of parts, each a struct in its own file that owns one kind of
//! state and says who calls it: the session table and client-id directory (`sessions.rs`), the
//! subscriptions and interest summary (`subscriptions.rs`), the retained store it shares (`retained.rs`) and
//! the retained copies waiting for their connections (`feeds.rs`), mail to
//! other shards (`mailroom.rs`), the live connections (`live.rs`), keep-alive (`keepalive.rs`),
//! session expiry deadlines (`expiry.rs`), `$SYS` rounds (`sys.rs`), the messages handled lately
//! (`lookback.rs`), and the counters
//! ([`crate::stats`]). What uses several parts is an `impl Shard` elsewhere:
//! - `packets/`: what a packet does, one file per family (`session.rs`, `publish.rs`,
//!   `subscribe.rs`); `packets/mod.rs` dispatches.
//! - `connection.rs`: a new connection's task (accept, handshakes, CONNECT, hand-off to the home
//!   shard); `serving.rs`: an attached connection's one task (its reader and writer), which ends
//!   while the connection is idle and starts again when it is woken (`parking.rs`). Both call into
//!   packet handling, never the reverse; `attached.rs` holds what both sides need.
//! - `executor.rs`: the executor's main future, mail handling, the tick, `$SYS` rounds and shutdown.

mod admission;
mod attached;
mod claims;
mod connection;
mod enhanced_auth;
mod executor;
mod expiry;
mod feeds;
mod journal;
mod keepalive;
mod live;
mod lookback;
mod mailroom;
mod moves;
mod packets;
mod parking;
mod readiness;
mod replay;
mod retained;
mod serving;
mod sessions;
mod shared;
mod shutdown;
mod socket;
mod subscriptions;
mod sys;
mod tcp;
#[cfg(test)]
mod testing;
mod will;

pub use executor::{run, ShardStart};
pub use journal::ShardRestore;
pub use keepalive::TICK;
pub use live::ConnectionCounts;
pub(crate) use lookback::now_ns;
pub use retained::RetainedStripes;
pub use sessions::home_of;

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Security;
use crate::router::{MailSenders, ShardId, UrgentInbox};
use crate::settings::Settings;
use crate::stats::ShardStats;
use journal::Journal;
use live::LiveConns;
use mailroom::Mailroom;
use retained::Retained;
use sessions::SessionTable;
use subscriptions::Subscriptions;
use sys::Sys;

/// One shard's state: identity and configuration, then its parts (see the module comment).
pub(crate) struct Shard {
    pub id: ShardId,
    pub shards: usize,
    /// Cluster mode: the mailbox of the link to the other nodes (`crate::cluster`).
    pub link: Option<ShardId>,
    pub settings: Arc<Settings>,
    /// `password_file` / `acl_file` in force: the start-up ones until a reload (SIGHUP) replaces them.
    pub security: Arc<Security>,
    /// The sessions whose home is this shard, and the client-id directory.
    sessions: SessionTable,
    /// This shard's subscriptions, the broker's interest summary, SUBACKs waiting for it.
    subs: Subscriptions,
    /// The broker's retained store, shared by every shard (see `retained`).
    retained: Retained,
    /// Retained copies waiting for room in their connection's outbox (see `feeds`).
    feeds: feeds::Feeds,
    /// Mail to other shards, held back while their mailboxes are full, and the urgent inbox.
    mail: Mailroom,
    /// This shard's counters (merged by mail for `$SYS`: `sys.rs`).
    pub stats: ShardStats,
    /// Shard 0's `$SYS` rounds.
    sys: Sys,
    /// The connections of this shard, for shutdown and `max_connections`.
    conns: LiveConns,
    /// Connections with a keep-alive, checked on every tick.
    keepalive: keepalive::Watch,
    /// The broker's shared subscription groups, as this shard knows them (see `shared`).
    shared: crate::index::SharedGroups,
    /// Deadlines of disconnected persistent sessions (see `expiry`).
    expiries: expiry::Deadlines,
    /// Deadlines of wills waiting out their Will Delay Interval (see `will`).
    will_delays: expiry::Deadlines,
    /// What this shard writes to disk (`persistence true`), and the acknowledgements waiting for it.
    journal: Journal,
    /// The messages routed or delivered here lately, for SUBSCRIBEs read late (see `lookback`).
    lookback: lookback::Lookback,
    /// Connections idle long enough to give up their task, waiting for their time (see `parking`).
    parking: parking::Parking,
    /// Cluster mode: CONNECTs waiting for the link to claim their client id (`claims`).
    claims: claims::Claims,
    /// Cluster mode: sessions that left for another node (stubs) or came from one lately (`moves`).
    moves: moves::Moves,
    /// The task queue where connections are set up (accept, handshakes, CONNECT, attach), below the
    /// default queue where established clients and mail are served (see `executor::setup_queue`).
    setup_queue: glommio::TaskQueueHandle,
}

impl Shard {
    // What every shard is built from, one argument each (two callers: `executor::run`, tests).
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: ShardId,
        settings: Arc<Settings>,
        mail_out: MailSenders,
        urgent_inbox: UrgentInbox,
        counts: Arc<ConnectionCounts>,
        started: Instant,
        next_message_id: u64,
        retained: Arc<RetainedStripes>,
    ) -> Shard {
        let shards = settings.shards;
        let settings_link = settings.link_id();
        let journal = Journal::new(
            id,
            shards,
            settings.link_id(),
            settings.persistence.as_ref(),
            next_message_id,
        );
        let (subs, mail) = (
            Subscriptions::new(id, shards, settings.link_id()),
            Mailroom::new(id, shards, settings.link_id(), mail_out, urgent_inbox),
        );
        Shard {
            id,
            shards,
            link: settings.link_id(),
            security: settings.security.clone(),
            settings,
            sessions: SessionTable::default(),
            subs,
            retained: Retained::new(retained, id),
            feeds: feeds::Feeds::default(),
            mail,
            stats: ShardStats::default(),
            sys: Sys::new(started),
            conns: LiveConns::new(counts),
            keepalive: keepalive::Watch::default(),
            shared: crate::index::SharedGroups::new(u64::from(id) + 1),
            expiries: expiry::Deadlines::default(),
            will_delays: expiry::Deadlines::default(),
            journal,
            lookback: if settings_link.is_some() {
                lookback::Lookback::for_cluster()
            } else {
                lookback::Lookback::default()
            },
            parking: parking::Parking::default(),
            setup_queue: glommio::TaskQueueHandle::default(),
            claims: claims::Claims::default(),
            moves: moves::Moves::default(),
        }
    }
}
