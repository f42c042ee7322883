//! The link's side of `cluster::order`: QoS 0 copies and QoS 1/2 batches from another node go to
//! the shards in the order that node sent them (docs/CLUSTER.md, "Order across QoS levels").

use std::time::Instant;

use super::Relay;
use crate::cluster::order::{self, Take, AFTER_HEADER, BATCH_HEADER};
use crate::cluster::wire;

/// What the link routes in order: a QoS 0 copy's payload, or a batch (acknowledged once routed).
pub(super) type Taken = Take<bytes::Bytes, async_nats::jetstream::Message>;

/// A header's sender and `N` numbers.
fn numbers<const N: usize>(
    headers: Option<&async_nats::HeaderMap>,
    name: &str,
) -> Option<(String, [u64; N])> {
    headers
        .and_then(|h| h.get(name))
        .and_then(|v| order::parse::<N>(v.as_str()))
        .map(|(tag, n)| (tag.to_owned(), n))
}

impl Relay {
    /// A message on this node's core subject (QoS 0 copies): routed now, or held until the batch
    /// its sender sent before it came.
    pub async fn take_core(&mut self, m: async_nats::Message) {
        let Some((tag, [batch, frame, copy])) = numbers(m.headers.as_ref(), AFTER_HEADER) else {
            return self.take_message(&m.payload, None).await;
        };
        let mut out = Vec::new();
        self.holding.copy(
            &tag,
            (batch, frame),
            copy,
            m.payload,
            Instant::now(),
            &mut out,
        );
        self.take_in_order(out).await;
    }

    /// A message from this node's queue (a batch of QoS 1/2 copies): routed now, after the QoS 0
    /// copies its sender sent before it, or held until they come.
    pub async fn take_queued(&mut self, m: async_nats::jetstream::Message) {
        match numbers(m.headers.as_ref(), BATCH_HEADER).filter(|(_, [n, _])| *n > 0) {
            Some((tag, [n, copies])) => {
                let mut out = Vec::new();
                self.holding
                    .batch(&tag, n, copies, m, Instant::now(), &mut out);
                self.take_in_order(out).await;
            }
            // Kept while NATS was away, or from a node that does not number its batches.
            None => self.take_batch(m).await,
        }
    }

    /// Until when a batch waits for the QoS 0 copies sent before it: the link takes no other
    /// batch meanwhile.
    pub fn batch_waiting(&self) -> Option<Instant> {
        self.holding.waiting()
    }

    /// What waited long enough goes (the link's tick, and the end of a batch's wait).
    pub async fn release_held(&mut self) {
        let mut out = Vec::new();
        self.holding.expired(Instant::now(), &mut out);
        if !out.is_empty() {
            tracing::debug!(
                "Cluster: {} copies from other nodes waited for their order ({:?} at most); routed.",
                out.len(),
                order::HOLD_LIMIT
            );
        }
        self.take_in_order(out).await;
    }

    async fn take_in_order(&mut self, out: Vec<Taken>) {
        for t in out {
            match t {
                Take::Copy(payload) => self.take_message(&payload, None).await,
                Take::Batch(m, tag, n) => self.take_numbered(m, &tag, n).await,
            }
        }
    }

    /// Batch `n` of `tag`, its frames routed one by one with the QoS 0 copies sent among them
    /// (the batch acknowledged once no session here owes its copies, `held`); then the copies
    /// sent after it.
    async fn take_numbered(&mut self, m: async_nats::jetstream::Message, tag: &str, n: u64) {
        let mut copies = Vec::new();
        let payload = m.payload.clone();
        // Delivered again while still held here: routed already.
        let custody = self.take_custody(m).await;
        let frames = custody.as_ref().map(|_| wire::frames(&payload));
        for (i, frame) in frames.into_iter().flatten().enumerate() {
            match frame {
                Ok(frame) => self.take_frame(frame, custody.as_ref()).await,
                Err(e) => {
                    self.cut_short(&e);
                    break;
                }
            }
            self.holding.frame_done(tag, n, i as u64 + 1, &mut copies);
            for payload in copies.drain(..) {
                self.take_message(&payload, None).await;
            }
        }
        drop(custody);
        self.holding.batch_done(tag, n, Instant::now(), &mut copies);
        for payload in copies {
            self.take_message(&payload, None).await;
        }
    }

    /// A QoS 1/2 batch from another node's JetStream copy: routed, and acknowledged once no
    /// session here owes its copies (`held`).
    async fn take_batch(&mut self, m: async_nats::jetstream::Message) {
        let payload = m.payload.clone();
        // Delivered again while still held here: routed already.
        if let Some(custody) = self.take_custody(m).await {
            self.take_message(&payload, Some(&custody)).await;
        }
    }
}
