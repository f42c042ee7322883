//! The link's side of `session::custody`: the JetStream messages of QoS 1/2 copies it routed to
//! its shards and that some session here still owes, acknowledged once none does
//! (docs/CLUSTER.md, "Custody of what a node took").
//!
//! Until then the link tells JetStream every [`PROGRESS_EVERY`] that it is still at work on each
//! (an in-progress acknowledgement), so that a message held longer than the consumer's ack wait
//! (30 s: a client away, a slow one) is not delivered again. A node that dies leaves them
//! unacknowledged: JetStream delivers them again, after the ack wait, to the node that adopts its
//! sessions (`state::adopt`) or to its own next run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use async_nats::jetstream::{AckKind, Message};
use async_nats::{Client, Subject};
use tokio::sync::mpsc::UnboundedSender;

use super::Relay;
use crate::session::Custody;

/// How often a held message is said to be in progress: well within the ack wait
/// (`queue::ACK_WAIT`, 30 s), with room for a busy link's late tick.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// JetStream messages held at most. Beyond, the oldest is acknowledged (its copies stay owed
/// here, but a death of this node would lose them): the consumer delivers nothing more once
/// `queue::MAX_ACK_PENDING` are unacknowledged, which would stop every copy to this node.
pub const HELD_MAX: usize = 100_000;

/// The held messages, by the key their [`Custody`] names.
pub(super) struct Held {
    next: u64,
    held: BTreeMap<u64, Entry>,
    /// The key of each held message, by its stream sequence: a message JetStream delivers again
    /// while it is held (NATS away longer than the ack wait, so no in-progress acknowledgement
    /// reached it) is not routed twice.
    by_seq: AHashMap<u64, u64>,
    to: UnboundedSender<u64>,
    /// When the last in-progress round ran.
    progressed: Instant,
    told_full: bool,
}

/// A held message: where its acknowledgement goes, not the message (its payload, up to a
/// 256 KiB batch, is not kept for it).
struct Entry {
    reply: Subject,
    seq: Option<u64>,
    touched: Instant,
}

impl Held {
    pub(super) fn new(to: UnboundedSender<u64>) -> Held {
        Held {
            next: 0,
            held: BTreeMap::new(),
            by_seq: AHashMap::new(),
            to,
            progressed: Instant::now(),
            told_full: false,
        }
    }
}

impl Relay {
    /// Custody of `m`: handed with each message routed from it; `m` is acknowledged once the
    /// last holder lets go (`let_go`). None: `m` is held already (delivered again), not to be
    /// routed again; it is acknowledged through this latest delivery.
    pub(super) async fn take_custody(&mut self, m: Message) -> Option<Arc<Custody>> {
        let h = &mut self.held;
        let seq = m.info().ok().map(|i| i.stream_sequence);
        let Some(reply) = m.message.reply else {
            // Not from a consumer: nothing to acknowledge.
            return Some(Arc::new(Custody::new(0, h.to.clone())));
        };
        if let Some(held) = seq.and_then(|s| h.by_seq.get(&s)) {
            if let Some(e) = h.held.get_mut(held) {
                e.reply = reply;
                e.touched = Instant::now();
                return None;
            }
        }
        h.next += 1;
        let key = h.next;
        if let Some(seq) = seq {
            h.by_seq.insert(seq, key);
        }
        h.held.insert(
            key,
            Entry {
                reply,
                seq,
                touched: Instant::now(),
            },
        );
        let custody = Arc::new(Custody::new(key, h.to.clone()));
        if h.held.len() > HELD_MAX {
            if !h.told_full {
                h.told_full = true;
                tracing::warn!(
                    "Cluster: {HELD_MAX} messages from other nodes are owed to sessions here \
                     (clients away or slow); the oldest are acknowledged to JetStream now, and a \
                     death of this node would lose them."
                );
            }
            if let Some((_, e)) = h.held.pop_first() {
                if let Some(seq) = e.seq {
                    h.by_seq.remove(&seq);
                }
                acknowledge(&self.client, e.reply, AckKind::Ack).await;
            }
        }
        self.figures.set_held(self.held.held.len() as u64);
        Some(custody)
    }

    /// Nothing here owes what `key` names any more: acknowledged.
    pub async fn let_go(&mut self, key: u64) {
        if let Some(e) = self.held.held.remove(&key) {
            if let Some(seq) = e.seq {
                self.held.by_seq.remove(&seq);
            }
            self.figures.set_held(self.held.held.len() as u64);
            acknowledge(&self.client, e.reply, AckKind::Ack).await;
        }
    }

    /// The link's tick: what has been held for [`PROGRESS_EVERY`] is said to be in progress.
    pub async fn keep_held(&mut self) {
        let now = Instant::now();
        let h = &mut self.held;
        if now.duration_since(h.progressed) < PROGRESS_EVERY / 4 {
            return;
        }
        h.progressed = now;
        if h.held.len() < HELD_MAX / 2 {
            h.told_full = false;
        }
        for e in h.held.values_mut() {
            if now.duration_since(e.touched) >= PROGRESS_EVERY {
                e.touched = now;
                acknowledge(&self.client, e.reply.clone(), AckKind::Progress).await;
            }
        }
    }
}

/// Tells JetStream this node is done with a message (`Ack`) or still at it (`Progress`), on the
/// message's `reply` subject.
async fn acknowledge(client: &Client, reply: Subject, kind: AckKind) {
    if let Err(e) = client.publish(reply, kind.into()).await {
        tracing::debug!("Cluster: cannot acknowledge a queued message ({kind:?}): {e}.");
    }
}
