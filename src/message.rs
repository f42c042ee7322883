//! An application message as it travels through the broker: decoded once on the publisher's shard,
//! shared by reference count from then on (docs/ARCHITECTURE.md, invariant 3).
//!
//! Crossing shards it is an `Arc<Message>` (one atomic increment per destination shard). On a shard it is
//! wrapped once in a [`crate::session::Framed`], which session queues share by `Rc` (no atomic operation
//! per subscriber) and which caches the PUBLISH frames encoded for them, so a fan-out encodes each
//! distinct frame once. The message itself is never deep-copied after it was decoded.

// Spelled out so that the fuzz targets, which compile this file through `#[path]`, find it too.
#[path = "message/expiry.rs"]
mod expiry;

pub use expiry::Remaining;

use std::sync::LazyLock;
use std::time::Instant;

use bytes::Bytes;

use crate::codec::{Properties, QoS, Utf8Bytes};

/// The empty property set that messages without properties lend out (see [`Message::properties`]).
static NO_PROPERTIES: LazyLock<Properties> = LazyLock::new(Properties::default);

/// What only messages with v5 properties carry, boxed (see [`Message::properties`]).
#[derive(Debug, Clone)]
struct Extra {
    properties: Properties,
    /// When the message entered this process, for a message with a Message Expiry Interval (see
    /// [`expiry`]); None without one.
    received: Option<Instant>,
}

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
    /// v5 properties to forward (and when the message arrived, if it can expire), boxed and only when
    /// there are any: the whole property set is ~400 bytes, which a 16-byte QoS 0 message from a 3.x
    /// client should not carry around.
    extra: Option<Box<Extra>>,
    /// Publishing session (shard and slot), for v5 No Local and back-pressure holds; None for wills and
    /// `$SYS`.
    pub origin: Option<(u16, u32)>,
    /// `persistence true`: a QoS 2 message of a durable publisher, as the shards' logs name it
    /// (`shard::journal`, exactly once across a crash); None for others.
    pub durable: Option<Box<DurableKey>>,
    /// When the kernel received the read that carried this PUBLISH (ns since the epoch): it orders the
    /// message against SUBSCRIBEs read after it on any shard (`shard::lookback`). 0 for wills, `$SYS`
    /// and restored messages.
    pub read_at: u64,
    /// Cluster mode: names this message in every copy of it, on every node (a per-shard sequence
    /// from a random start, given when a shard accepts the PUBLISH; it travels in `cluster::wire`),
    /// so that a session that just moved between nodes, which may be sent a message both directly
    /// and after it by the node it left, takes it once (`shard::moves`). 0: not named (wills,
    /// `$SYS`, restored messages), never taken as a repeat.
    pub id: u64,
}

/// Names an accepted QoS 2 message of a durable publisher in every shard's log: its key (unique in
/// a generation of logs: the publisher's shard in the top 16 bits, a sequence below), and who
/// published it with which packet id, so that a restart knows the packet id from any shard that
/// recorded the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableKey {
    pub key: u64,
    pub publisher: Utf8Bytes,
    pub packet_id: u16,
}

impl Message {
    /// A message with `properties` (stored only when not empty).
    pub fn new(
        topic: Utf8Bytes,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        properties: Properties,
        origin: Option<(u16, u32)>,
    ) -> Message {
        let extra = (!properties.is_empty()).then(|| {
            let received = expiry::can_expire(&properties).then(Instant::now);
            Box::new(Extra {
                properties,
                received,
            })
        });
        Message {
            topic,
            payload,
            qos,
            retain,
            extra,
            origin,
            durable: None,
            read_at: 0,
            id: 0,
        }
    }

    /// The v5 properties to forward (an empty set when there are none).
    pub fn properties(&self) -> &Properties {
        self.extra
            .as_deref()
            .map_or(&NO_PROPERTIES, |e| &e.properties)
    }

    /// Give the topic and payload storage of their own, sized to them, instead of views of the
    /// publisher's read buffer. For a message the broker keeps (a retained one): a view keeps the
    /// whole buffer it was read into alive, with the other packets that came in that read and the room
    /// left for the next one; copied, the buffer goes as soon as the live deliveries went (one copy
    /// per retained PUBLISH, none per subscriber).
    pub fn own_storage(&mut self) {
        self.topic = Utf8Bytes::from(self.topic.as_str());
        self.payload = Bytes::copy_from_slice(&self.payload);
    }

    /// Bytes counted against `max_queued_bytes`: the payload, as Mosquitto counts it.
    pub fn queued_size(&self) -> usize {
        self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_properties_stays_small() {
        // Topic and payload (two `Bytes`-sized handles), the boxed properties, origin, flags, the
        // cluster-wide id: with the `Arc`'s two counts, 128 bytes, one allocator size class.
        assert!(
            std::mem::size_of::<Message>() <= 112,
            "{}",
            std::mem::size_of::<Message>()
        );
        let m = Message::new(
            Utf8Bytes::from_static("t"),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            false,
            Properties::default(),
            None,
        );
        assert!(m.extra.is_none());
        assert!(m.properties().is_empty());
        let with = Properties {
            content_type: Some(Utf8Bytes::from_static("text/plain")),
            ..Properties::default()
        };
        let m = Message::new(
            m.topic,
            m.payload,
            QoS::AtLeastOnce,
            false,
            with.clone(),
            None,
        );
        assert_eq!(m.properties(), &with);
    }
}
