//! A message on its way to one shard's subscribers, and the PUBLISH frames encoded for them so far.
//!
//! Made once per (message, shard) by the shard that delivers it (`deliver_local`, or a SUBSCRIBE's
//! retained messages) and shared by `Rc` between the sessions that queue it, on that shard's thread only.
//! It holds the `Arc<Message>` that crossed the mailbox, not a copy of it. When the message reaches more
//! than one subscriber here, each distinct frame (3.x or 5.0, with or without a packet id) is encoded once
//! by the codec ([`PublishFrame`]) and copied with the subscriber's flags and packet id patched in,
//! instead of being encoded again for every subscriber (docs/ARCHITECTURE.md, invariant 3).

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::Arc;

use smallvec::SmallVec;

use super::alias::AliasUse;
use super::custody::Custody;
use super::outbox::{Outbox, SHARE_MIN};
use crate::codec::{
    self, DeliveryProperties, ProtocolVersion, PublishFrame, PublishParts, QoS, Utf8Bytes,
};
use crate::message::Message;

/// What one v5 copy of a message carries that the shared frame does not: its topic alias, a
/// decremented Message Expiry Interval, the identifiers of the subscriptions it matched. A copy with
/// any of them gets a header of its own; its payload is still the shared one.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerCopy<'a> {
    pub alias: Option<AliasUse>,
    pub expiry: Option<u32>,
    pub ids: &'a [u32],
}

impl PerCopy<'_> {
    fn is_empty(&self) -> bool {
        self.alias.is_none() && self.expiry.is_none() && self.ids.is_empty()
    }
}

/// The frames of one message encoded so far: by [`frame_key`], `None` for one the codec refused.
type Frames = SmallVec<[(u8, Option<PublishFrame>); 1]>;

/// A message as this shard's sessions hold it (see the module doc).
#[derive(Debug)]
pub struct Framed {
    msg: Arc<Message>,
    /// Whether frames are worth caching: more than one subscriber on this shard may get the message. A
    /// message for one subscriber is encoded straight into its connection's buffer, as before.
    fan_out: bool,
    /// Frames encoded so far, by [`frame_key`]; `None` for a frame that cannot be encoded (too large).
    frames: RefCell<Frames>,
    /// Delivered for a shared subscription (`$share/...`, as the session names it): a member that
    /// goes away without acknowledging it gives it back to its group (`shard::shared`).
    shared: Option<Box<Utf8Bytes>>,
    /// Cluster mode, a message from another node's JetStream copy: held while a session here owes
    /// it, so that the copy is acknowledged only then (`super::custody`). Never read: what
    /// counts is when it drops.
    #[allow(dead_code)]
    custody: Option<Arc<Custody>>,
}

impl Deref for Framed {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.msg
    }
}

/// Which frame a delivery uses: the protocol family (3.1 and 3.1.1 PUBLISH are the same bytes) and
/// whether it carries a packet id.
fn frame_key(version: ProtocolVersion, qos: QoS) -> u8 {
    u8::from(version == ProtocolVersion::V5) << 1 | u8::from(qos != QoS::AtMostOnce)
}

impl Framed {
    /// `msg` for this shard's subscribers; `fan_out` when more than one of them may receive it.
    pub fn new(msg: Arc<Message>, fan_out: bool) -> Framed {
        Framed {
            msg,
            fan_out,
            frames: RefCell::new(SmallVec::new()),
            shared: None,
            custody: None,
        }
    }

    /// As [`Self::new`], for a message whose JetStream copy stays unacknowledged while a session
    /// here owes it (`super::custody`).
    pub fn in_custody(msg: Arc<Message>, fan_out: bool, custody: Option<Arc<Custody>>) -> Framed {
        Framed {
            custody,
            ..Framed::new(msg, fan_out)
        }
    }

    /// `msg` for one member of the shared subscription group `group` (`$share/...`).
    pub fn for_share(msg: Arc<Message>, group: Utf8Bytes) -> Framed {
        Framed {
            shared: Some(Box::new(group)),
            ..Framed::new(msg, false)
        }
    }

    /// The shared subscription group it was delivered for, if any.
    pub fn shared_group(&self) -> Option<&Utf8Bytes> {
        self.shared.as_deref()
    }

    /// The message.
    pub fn message(&self) -> &Arc<Message> {
        &self.msg
    }

    /// How many frames are cached (for tests).
    #[cfg(test)]
    pub(crate) fn frames_cached(&self) -> usize {
        self.frames.borrow().len()
    }

    /// Queue a PUBLISH of this message to one connection: its header (flags, topic, packet id, v5
    /// properties) and the payload, which is queued by reference when large, never copied per subscriber
    /// then. With [`Self::new`]'s `fan_out`, the frame is encoded once per distinct kind and copied.
    /// A message the codec cannot encode (at the edge of the size limit) writes nothing. `unmount`: the
    /// length of the subscriber's mount point, removed from the topic (such a frame is its own, encoded
    /// straight into its buffer; the caller checked that some topic is left). `per`: what this v5 copy
    /// carries of its own (such a header is encoded straight into the buffer too; the payload after it
    /// is still the shared one).
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        conn: &Outbox,
        version: ProtocolVersion,
        unmount: u16,
        qos: QoS,
        packet_id: u16,
        dup: bool,
        retain: bool,
        per: PerCopy<'_>,
    ) {
        let topic = self.msg.topic.as_bytes();
        let topic = match per.alias {
            // The client knows the topic by its alias already.
            Some(AliasUse::Reuse(_)) => &[][..],
            _ => &topic[usize::from(unmount).min(topic.len())..],
        };
        let parts = PublishParts {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties: self.msg.properties(),
            payload_len: self.msg.payload.len(),
            delivery: DeliveryProperties {
                message_expiry_interval: per.expiry,
                topic_alias: per.alias.map(AliasUse::alias),
                subscription_identifiers: per.ids,
            },
        };
        if !self.fan_out || unmount > 0 || !per.is_empty() {
            let mut written = false;
            conn.write(|out| {
                // Only a message at the edge of the size limit can fail (a 3.x PUBLISH of the largest
                // remaining length gains the v5 property length byte): then nothing is written.
                written = codec::encode_publish_parts(&parts, version, out).is_ok();
            });
            if written {
                conn.write_payload(&self.msg.payload);
            }
            return;
        }
        let key = frame_key(version, qos);
        let mut frames = self.frames.borrow_mut();
        let frame = match frames.iter().position(|(k, _)| *k == key) {
            Some(i) => &frames[i].1,
            None => {
                // Small payloads go into the frame (each subscriber's copy is one memcpy into its
                // coalescing buffer); large ones stay shared and are queued by reference after it.
                let payload = &self.msg.payload;
                let inline = (payload.len() < SHARE_MIN).then_some(&payload[..]);
                frames.push((key, PublishFrame::encode(&parts, inline, version).ok()));
                &frames[frames.len() - 1].1
            }
        };
        let Some(frame) = frame else {
            return;
        };
        conn.write(|out| frame.write(dup, qos, retain, packet_id, out));
        if !frame.includes_payload() {
            conn.write_payload(&self.msg.payload);
        }
    }
}
