//! What the cluster link counts, for `$SYS` (issue 19: "`$SYS` shows per-node and cluster
//! figures"). Written by the link's thread, read by shard 0 when it publishes `$SYS`: plain
//! atomics, no lock, each figure on its own (a reader may see one a moment newer than another).

use std::sync::atomic::{AtomicU64, Ordering};

/// The link's counters and the cluster's size as this node last saw it.
#[derive(Debug, Default)]
pub struct ClusterFigures {
    cluster: String,
    node: String,
    /// Live nodes (keys of the nodes bucket) at the last liveness refresh, this one included.
    nodes: AtomicU64,
    /// Copies of messages sent to other nodes (QoS 0 on core NATS, QoS 1/2 once JetStream has them).
    sent: AtomicU64,
    /// Messages from other nodes routed here.
    received: AtomicU64,
    /// Copies for other nodes not sent: NATS away (QoS 0, or QoS 1/2 past what is kept), refused.
    dropped: AtomicU64,
    /// Payloads from NATS that were not a message.
    unreadable: AtomicU64,
    /// JetStream messages from other nodes not yet acknowledged: a session here owes a copy
    /// (`relay/held.rs`).
    held: AtomicU64,
}

/// Which counter ([`ClusterFigures::add`]).
#[derive(Debug, Clone, Copy)]
pub enum Figure {
    Sent,
    Received,
    Dropped,
    Unreadable,
}

impl ClusterFigures {
    pub fn new(cluster: &str, node: &str) -> ClusterFigures {
        ClusterFigures {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            ..ClusterFigures::default()
        }
    }

    pub fn add(&self, figure: Figure, n: u64) {
        self.counter(figure).fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, figure: Figure) -> u64 {
        self.counter(figure).load(Ordering::Relaxed)
    }

    fn counter(&self, figure: Figure) -> &AtomicU64 {
        match figure {
            Figure::Sent => &self.sent,
            Figure::Received => &self.received,
            Figure::Dropped => &self.dropped,
            Figure::Unreadable => &self.unreadable,
        }
    }

    pub fn set_nodes(&self, n: u64) {
        self.nodes.store(n, Ordering::Relaxed);
    }

    pub fn set_held(&self, n: u64) {
        self.held.store(n, Ordering::Relaxed);
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The `$SYS` topics and values (shardmq's own, under `$SYS/broker/cluster/`).
    pub fn sys_topics(&self) -> Vec<(String, String)> {
        let n = |figure| self.get(figure).to_string();
        vec![
            ("$SYS/broker/cluster/name".into(), self.cluster.clone()),
            ("$SYS/broker/cluster/node".into(), self.node.clone()),
            (
                "$SYS/broker/cluster/nodes".into(),
                self.nodes.load(Ordering::Relaxed).to_string(),
            ),
            ("$SYS/broker/cluster/messages/sent".into(), n(Figure::Sent)),
            (
                "$SYS/broker/cluster/messages/received".into(),
                n(Figure::Received),
            ),
            (
                "$SYS/broker/cluster/messages/dropped".into(),
                n(Figure::Dropped),
            ),
            (
                "$SYS/broker/cluster/messages/unreadable".into(),
                n(Figure::Unreadable),
            ),
            (
                "$SYS/broker/cluster/messages/held".into(),
                self.held().to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_show_under_sys_broker_cluster() {
        let f = ClusterFigures::new("prod", "n1");
        f.add(Figure::Sent, 3);
        f.add(Figure::Received, 2);
        f.set_nodes(3);
        f.set_held(4);
        let topics = f.sys_topics();
        let get = |t: &str| {
            topics
                .iter()
                .find(|(topic, _)| topic == t)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("$SYS/broker/cluster/name"), Some("prod"));
        assert_eq!(get("$SYS/broker/cluster/node"), Some("n1"));
        assert_eq!(get("$SYS/broker/cluster/nodes"), Some("3"));
        assert_eq!(get("$SYS/broker/cluster/messages/sent"), Some("3"));
        assert_eq!(get("$SYS/broker/cluster/messages/received"), Some("2"));
        assert_eq!(get("$SYS/broker/cluster/messages/dropped"), Some("0"));
        assert_eq!(get("$SYS/broker/cluster/messages/held"), Some("4"));
    }
}
