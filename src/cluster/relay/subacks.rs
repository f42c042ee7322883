//! A SUBACK waits until every live node routes by the new subscription's filter
//! (docs/CLUSTER.md, "Interest exchange"): this node's interest key is in the bucket and each
//! other live node said it applied it (`shardmq.<cluster>.seen.<origin>.<node>`), so that a
//! message published anywhere after the SUBACK reaches the subscription.

use super::Relay;
use crate::cluster::interest::KvChange;
use crate::codec::Utf8Bytes;
use crate::router::{Mail, ShardId};
use std::time::Duration;

/// The longest a SUBACK waits for the link (its interest key written to the bucket).
const INTEREST_ACK_LIMIT: Duration = Duration::from_secs(3);

/// SUBACKs waiting on one of this node's interest keys.
#[derive(Default)]
pub(super) struct WaitingInterest {
    /// The key is in the bucket.
    written: bool,
    /// The other nodes that applied it.
    seen: ahash::AHashSet<String>,
    /// The shards waiting, the filter, since when.
    waiters: Vec<(ShardId, Utf8Bytes, tokio::time::Instant)>,
}

impl Relay {
    /// The shard `from` waits for the link's `InterestAck` on `filter` before its SUBACK: given
    /// once the node's key for it is in the bucket and every other live node said it routes by it
    /// (`seen`), so that a message published anywhere after the SUBACK reaches the subscription;
    /// at once while NATS is away, and within [`INTEREST_ACK_LIMIT`] whatever happens (a node that
    /// died and has not expired from the nodes bucket yet).
    ///
    /// `put`: the key this interest makes the node put, when it is new. A key put before (another
    /// shard's subscription, another member of a group) waits only if its own wait is not over.
    pub(super) fn answer_interest_when_written(
        &mut self,
        key: String,
        put: Option<KvChange>,
        from: ShardId,
        filter: Utf8Bytes,
    ) {
        let new = put.is_some();
        if let Some(c) = put {
            let _ = self.kv.send(c);
        }
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if connected && (new || self.waiting_interest.contains_key(&key)) {
            self.waiting_interest.entry(key).or_default().waiters.push((
                from,
                filter,
                tokio::time::Instant::now(),
            ));
        } else {
            let me = self.me;
            self.post.send(from, Mail::InterestAck { filter, from: me });
        }
    }

    /// The interest writer put (or deleted) `key`.
    pub fn interest_written(&mut self, key: &str) {
        if let Some(w) = self.waiting_interest.get_mut(key) {
            w.written = true;
            self.try_answer(key);
        }
    }

    /// Node `node` routes by this node's `key` now (a message on `shardmq.<cluster>.seen.<me>.<node>`).
    pub fn interest_seen(&mut self, m: &async_nats::Message) {
        let Some(node) = m.subject.rsplit('.').next() else {
            return;
        };
        let Ok(key) = std::str::from_utf8(&m.payload) else {
            return;
        };
        if let Some(w) = self.waiting_interest.get_mut(key) {
            w.seen.insert(node.to_owned());
            self.try_answer(key);
        }
    }

    fn try_answer(&mut self, key: &str) {
        let Some(w) = self.waiting_interest.get(key) else {
            return;
        };
        let live = self.live.borrow();
        let everywhere = live
            .iter()
            .filter(|n| **n != self.node)
            .all(|n| w.seen.contains(n));
        drop(live);
        if !(w.written && everywhere) {
            return;
        }
        let me = self.me;
        let waiting = self.waiting_interest.remove(key).unwrap_or_default();
        for (shard, filter, _) in waiting.waiters {
            self.post
                .send(shard, Mail::InterestAck { filter, from: me });
        }
    }

    /// SUBACKs that waited [`INTEREST_ACK_LIMIT`] go anyway (NATS slow or failing, a node gone).
    pub fn answer_late_interest(&mut self) {
        if self.waiting_interest.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        let me = self.me;
        let mut late = Vec::new();
        let live = self.live.borrow().clone();
        self.waiting_interest.retain(|_, w| {
            w.waiters.retain(|(shard, filter, since)| {
                let over = now.duration_since(*since) >= INTEREST_ACK_LIMIT;
                if over {
                    let silent = live
                        .iter()
                        .filter(|n| **n != self.node && !w.seen.contains(*n));
                    tracing::info!(
                        "Cluster: a SUBACK on {filter} goes after {INTEREST_ACK_LIMIT:?} without \
                         every node's word (key written: {}; silent: {:?}).",
                        w.written,
                        silent.collect::<Vec<_>>()
                    );
                    late.push((*shard, filter.clone()));
                }
                !over
            });
            !w.waiters.is_empty()
        });
        for (shard, filter) in late {
            self.post
                .send(shard, Mail::InterestAck { filter, from: me });
        }
    }
}
