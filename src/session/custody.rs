//! Custody of what another node sent: a cluster node acknowledges a JetStream message of QoS 1/2
//! copies (`cluster::queue`) only once every copy it made of them for its sessions is safe, so
//! that a node killed while it held them leaves them in its queue, for the node that adopts its
//! sessions or for its own next run (docs/CLUSTER.md, "Custody of what a node took").
//!
//! The link makes one [`Custody`] per JetStream message and hands an `Arc` of it along with each
//! message it routes from it; a shard puts it in the [`super::Framed`] its sessions queue, so that
//! it lives as long as some session still owes one of those messages: queued for a client that is
//! away, or in flight until the client's PUBACK (QoS 1) or PUBCOMP (QoS 2). A QoS 0 copy, a shard
//! with no match, a session that moved to another node (its messages went with it) let go of it at
//! once. The last `Arc` dropped, on whatever shard's thread, tells the link, which acknowledges.
//!
//! Nothing here is per subscriber: one atomic increment per message and shard, one channel send
//! per JetStream message (which carries up to 1,024 copies).

use tokio::sync::mpsc::UnboundedSender;

/// One JetStream message's copies, as long as some session owes one of them (see the module doc).
#[derive(Debug)]
pub struct Custody {
    key: u64,
    to: UnboundedSender<u64>,
}

impl Custody {
    /// Custody of what the link names `key`; `to` hears `key` once the last holder let go.
    pub fn new(key: u64, to: UnboundedSender<u64>) -> Custody {
        Custody { key, to }
    }
}

impl Drop for Custody {
    fn drop(&mut self) {
        // A link that has gone acknowledges nothing more: what it held comes again from JetStream.
        let _ = self.to.send(self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_last_holder_letting_go_tells_the_link_once() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let c = Arc::new(Custody::new(7, tx));
        let other = Arc::clone(&c);
        let thread = std::thread::spawn(move || drop(other));
        thread.join().unwrap();
        assert!(rx.try_recv().is_err(), "one holder is left");
        drop(c);
        assert_eq!(rx.try_recv().ok(), Some(7));
        assert!(rx.try_recv().is_err());
    }
}
