//! The connections known to a shard: every connection task registers here from accept (or hand-off)
//! until its last task ends, for shutdown to close them all, and holds its listener's
//! `max_connections` slot meanwhile. One per shard, owned by its [`Shard`](super::Shard) and touched on
//! that shard's thread only, by the connection tasks (`connection.rs`) and the executor's shutdown
//! (`executor.rs`); only [`ConnectionCounts`] is shared by all shards.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
    /// -1: a free slot.
    fd: RawFd,
    /// Set once the connection has a session and its serving task.
    outbox: Option<Rc<Outbox>>,
}

pub(super) struct LiveConns {
    /// Slots by connection id, reused once free: 16 bytes a connection, where a hash map by a counter
    /// took ~25 a bucket (memory per idle client, docs/PERFORMANCE.md).
    live: Vec<LiveConn>,
    free: Vec<u32>,
    count: usize,
    counts: Arc<ConnectionCounts>,
    shutting_down: bool,
}

impl LiveConns {
    pub(super) fn new(counts: Arc<ConnectionCounts>) -> LiveConns {
        LiveConns {
            live: Vec::new(),
            free: Vec::new(),
            count: 0,
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
    /// (The id is valid until [`Self::unregister`], which only its connection calls.)
    pub(super) fn register(&mut self, fd: RawFd) -> u64 {
        let conn = LiveConn { fd, outbox: None };
        self.count += 1;
        match self.free.pop() {
            Some(id) => {
                self.live[id as usize] = conn;
                u64::from(id)
            }
            None => {
                self.live.push(conn);
                (self.live.len() - 1) as u64
            }
        }
    }

    /// The last task of connection `id` ended.
    pub(super) fn unregister(&mut self, id: u64) {
        if let Some(live) = self.live.get_mut(id as usize).filter(|c| c.fd >= 0) {
            *live = LiveConn {
                fd: -1,
                outbox: None,
            };
            self.free.push(id as u32);
            self.count -= 1;
        }
    }

    /// Connection `id` has a session now, written to through `outbox`.
    pub(super) fn set_outbox(&mut self, id: u64, outbox: &Rc<Outbox>) {
        if let Some(live) = self.live.get_mut(id as usize).filter(|c| c.fd >= 0) {
            live.outbox = Some(outbox.clone());
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
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
            .iter()
            .filter(|c| c.fd >= 0)
            .map(|c| (c.fd, c.outbox.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reused_once_free_and_shutdown_lists_the_live_ones() {
        let mut conns = LiveConns::new(Arc::new(ConnectionCounts::new(1)));
        assert!(conns.is_empty());
        let a = conns.register(10);
        let b = conns.register(11);
        let c = conns.register(12);
        conns.set_outbox(b, &Rc::new(Outbox::new()));
        conns.unregister(a);
        conns.unregister(a);
        let d = conns.register(13);
        assert_eq!(d, a, "a freed id is reused");
        let mut listed: Vec<(RawFd, bool)> = conns
            .begin_shutdown()
            .into_iter()
            .map(|(fd, outbox)| (fd, outbox.is_some()))
            .collect();
        listed.sort();
        assert_eq!(listed, vec![(11, true), (12, false), (13, false)]);
        for id in [b, c, d] {
            conns.unregister(id);
        }
        assert!(conns.is_empty());
        assert!(conns.shutting_down());
    }
}
