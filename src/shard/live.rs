//! The connections known to a shard: every connection task registers here from accept (or hand-off)
//! until its last task ends, for shutdown to close them all, and holds its listener's
//! `max_connections` slot meanwhile. One per shard, owned by its [`Shard`](super::Shard) and touched on
//! that shard's thread only, by the connection tasks (`connection.rs`) and the executor's shutdown
//! (`executor.rs`); only [`ConnectionCounts`] is shared by all shards.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ahash::AHashMap;

use crate::session::Outbox;

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

pub(super) struct LiveConns {
    live: AHashMap<u64, LiveConn>,
    next_conn: u64,
    counts: Arc<ConnectionCounts>,
    shutting_down: bool,
}

impl LiveConns {
    pub(super) fn new(counts: Arc<ConnectionCounts>) -> LiveConns {
        LiveConns {
            live: AHashMap::new(),
            next_conn: 0,
            counts,
            shutting_down: false,
        }
    }

    /// Take one of `listener`'s `max_connections` slots; false when none is left.
    pub(super) fn try_acquire(&self, listener: usize, max: Option<usize>) -> bool {
        self.counts.try_acquire(listener, max)
    }

    /// Give back a slot of `listener`.
    pub(super) fn release(&self, listener: usize) {
        self.counts.release(listener);
    }

    /// A connection task on socket `fd` starts; returns its id here.
    pub(super) fn register(&mut self, fd: RawFd) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.live.insert(id, LiveConn { fd, outbox: None });
        id
    }

    /// The last task of connection `id` ended.
    pub(super) fn unregister(&mut self, id: u64) {
        self.live.remove(&id);
    }

    /// Connection `id` has a session now, written to through `outbox`.
    pub(super) fn set_outbox(&mut self, id: u64, outbox: &Rc<Outbox>) {
        if let Some(live) = self.live.get_mut(&id) {
            live.outbox = Some(outbox.clone());
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub(super) fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Stop attaching new connections (shutdown's first step: wills go out while connections stay).
    pub(super) fn stop_accepting(&mut self) {
        self.shutting_down = true;
    }

    /// Stop attaching new connections, and list every connection to close: its socket, and its outbox
    /// once it has a session.
    pub(super) fn begin_shutdown(&mut self) -> Vec<(RawFd, Option<Rc<Outbox>>)> {
        self.shutting_down = true;
        self.live
            .values()
            .map(|c| (c.fd, c.outbox.clone()))
            .collect()
    }
}
