//! An application message as it travels through the broker: decoded once on the publisher's shard,
//! shared by reference count from then on (docs/ARCHITECTURE.md, invariant 3).
//!
//! Crossing shards it is an `Arc<Message>` (one atomic increment per destination shard); on a shard,
//! session queues hold `Rc<Message>` clones, so per-subscriber work costs no atomic operations.

use bytes::Bytes;

use crate::codec::{Properties, QoS, Utf8Bytes};
use crate::session::HoldStamp;

#[derive(Debug, Clone)]
pub struct Message {
    /// Topic name (validated: no wildcards, UTF-8).
    pub topic: Utf8Bytes,
    /// Payload: a slice of the publisher's read buffer, never copied per subscriber.
    pub payload: Bytes,
    /// QoS as published; each subscriber receives min(this, its subscription's QoS).
    pub qos: QoS,
    /// Retain flag as published (kept for `retain_as_published` and retained storage).
    pub retain: bool,
    /// v5 properties to forward (empty for 3.x publishers).
    pub properties: Properties,
    /// Publishing session (shard and slot), for v5 No Local and back-pressure holds; None for wills and
    /// `$SYS`.
    pub origin: Option<(u16, u32)>,
    /// `hold_if_all_behind`: where, when it was routed, the shards stood on holding its publisher; a
    /// congested subscriber gets room beyond its queue limits only when no other shard objects (see
    /// `session::hold`). Default (nothing known) until routed.
    pub hold_stamp: HoldStamp,
}

impl Message {
    /// Bytes counted against `max_queued_bytes`: the payload, as Mosquitto counts it.
    pub fn queued_size(&self) -> usize {
        self.payload.len()
    }
}
