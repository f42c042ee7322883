//! PUBLISH (3.1.1 §3.3, 5.0 §3.3): the hot path. Decoding a 3.x PUBLISH allocates nothing: the topic and
//! the payload are `Bytes` slices of the packet's frozen read buffer. Encoding is split so the broker can
//! write a header per subscriber and then the one shared payload ([`super::encode_publish_parts`]).

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::fixed_header::{var_int_len, write_var_int, PacketType, MAX_VAR_INT};
use super::packet::{Packet, Properties, ProtocolVersion, Publish, QoS, Utf8Bytes};
use super::properties::{
    decode_properties, delivery_properties_len, properties_len, write_properties,
    write_properties_with, PropertyContext,
};
use super::strings::BodyReader;

/// [MQTT-3.3.2-2] / [MQTT-4.7.1-1]: a Topic Name has no wildcard; 3.1.1 [MQTT-4.7.3-1]: it is not empty
/// (5.0 allows an empty PUBLISH topic with a Topic Alias, checked by the PUBLISH decoder itself).
#[inline]
pub(super) fn check_topic_name(topic: &Utf8Bytes) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(DecodeError::EmptyTopicName);
    }
    check_no_wildcard(topic.as_bytes())
}

#[inline]
fn check_no_wildcard(topic: &[u8]) -> Result<(), DecodeError> {
    if topic.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(DecodeError::WildcardInTopicName);
    }
    Ok(())
}

/// Decodes a PUBLISH body into the whole `decode` result (so `decode` can return it without a move).
pub(super) fn decode(
    flags: u8,
    r: &mut BodyReader,
    version: ProtocolVersion,
) -> Result<Option<Packet>, DecodeError> {
    let qos_bits = (flags >> 1) & 0b11;
    // [MQTT-3.3.1-4]: QoS 3 is a Malformed Packet.
    let qos = QoS::from_u8(qos_bits).ok_or(DecodeError::InvalidQoS(qos_bits))?;
    let dup = flags & 0b1000 != 0;
    // [MQTT-3.3.1-2] (3.1.1 and 5.0).
    if dup && qos == QoS::AtMostOnce && version != ProtocolVersion::V31 {
        return Err(DecodeError::DupWithQoS0);
    }
    let topic = r.read_string()?;
    check_no_wildcard(topic.as_bytes())?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        match r.read_u16()? {
            0 => {
                return Err(DecodeError::ZeroPacketId {
                    packet_type: PacketType::Publish,
                })
            }
            id => id,
        }
    };
    // Each branch builds the packet in the caller's return slot: a `Packet` is ~470 bytes (mostly
    // `Properties`) and every move of one is a memcpy, measurable on this path.
    macro_rules! packet {
        ($properties:expr) => {{
            let payload = r.take_rest();
            // `properties` last: a field expression evaluated before a call would be parked in a
            // temporary and copied.
            Ok(Some(Packet::Publish(Publish {
                dup,
                qos,
                retain: flags & 1 != 0,
                topic,
                packet_id,
                payload,
                properties: $properties,
            })))
        }};
    }
    if version != ProtocolVersion::V5 {
        if topic.is_empty() {
            return Err(DecodeError::EmptyTopicName);
        }
        return packet!(Properties::default());
    }
    let properties = decode_properties(r, PropertyContext::Publish)?;
    // §3.3.2.3.4: a zero-length Topic Name needs a Topic Alias.
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicName);
    }
    packet!(properties)
}

/// The parts of a PUBLISH its header is written from ([`super::encode_publish_parts`]): what one delivery
/// of a message to one subscriber varies in (flags, packet id) and what it shares with the others (topic,
/// properties, payload length), all borrowed. Building a [`Publish`] instead would clone the properties
/// for every subscriber.
#[derive(Debug, Clone, Copy)]
pub struct PublishParts<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// The topic name as it goes on the wire (UTF-8, checked by whoever made it).
    pub topic: &'a [u8],
    /// Written only for QoS 1 and 2.
    pub packet_id: u16,
    /// Written only for 5.0 (an empty set is the one byte `0`).
    pub properties: &'a Properties,
    /// Bytes of the payload the caller writes after the header: counted in the remaining length.
    pub payload_len: usize,
    /// v5 properties of this one delivery, written with `properties` (5.0 only).
    pub delivery: DeliveryProperties<'a>,
}

/// The v5 PUBLISH properties that differ per delivery of one message, written along with the
/// message's own: what a subscriber's copy carries that the message does not (a decremented Message
/// Expiry Interval, the connection's Topic Alias, the matching subscriptions' identifiers). Borrowed
/// and `Copy`, so that no property set is cloned per delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryProperties<'a> {
    /// Replaces the message's Message Expiry Interval.
    pub message_expiry_interval: Option<u32>,
    /// Replaces the message's Topic Alias (which a routed message never has).
    pub topic_alias: Option<u16>,
    /// Written after the message's own Subscription Identifiers (a routed message has none).
    pub subscription_identifiers: &'a [u32],
}

impl DeliveryProperties<'_> {
    /// Whether nothing is added or replaced.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.subscription_identifiers.is_empty()
    }
}

impl<'a> PublishParts<'a> {
    /// The parts of `p` (its payload's length; the payload itself is not written with the header).
    #[inline]
    pub fn of(p: &'a Publish) -> PublishParts<'a> {
        PublishParts {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: p.topic.as_bytes(),
            packet_id: p.packet_id,
            properties: &p.properties,
            payload_len: p.payload.len(),
            delivery: DeliveryProperties::default(),
        }
    }

    /// Bytes of the whole PUBLISH these parts make, payload included (what a v5 client's Maximum
    /// Packet Size is compared with).
    #[inline]
    pub fn wire_len(&self, version: ProtocolVersion) -> usize {
        let (vh, _) = variable_header_len(
            self.topic.len(),
            self.qos,
            self.properties,
            self.delivery,
            version,
        );
        let remaining = vh + self.payload_len;
        1 + var_int_len(remaining) + remaining
    }

    /// The first byte: type 3 and the DUP/QoS/RETAIN flags.
    #[inline]
    fn first_byte(&self) -> u8 {
        0x30 | (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }
}

/// Bytes of the variable header (topic, packet id, v5 property length and properties) and, for v5, the
/// properties' own length: computed once per header, used for both the remaining length and the writing.
#[inline]
fn variable_header_len(
    topic_len: usize,
    qos: QoS,
    properties: &Properties,
    delivery: DeliveryProperties<'_>,
    version: ProtocolVersion,
) -> (usize, usize) {
    let mut len = 2 + topic_len;
    if qos != QoS::AtMostOnce {
        len += 2;
    }
    let mut props = 0;
    if version == ProtocolVersion::V5 {
        props = properties_len(properties);
        if !delivery.is_empty() {
            props += delivery_properties_len(properties, &delivery);
        }
        len += var_int_len(props) + props;
    }
    (len, props)
}

pub(super) fn body_len(p: &Publish, version: ProtocolVersion) -> usize {
    variable_header_len(
        p.topic.len(),
        p.qos,
        &p.properties,
        DeliveryProperties::default(),
        version,
    )
    .0 + p.payload.len()
}

/// Appends the fixed header and the variable header (topic, packet id for QoS 1/2, v5 property length and
/// properties) of a PUBLISH made of `parts`; the remaining length counts `parts.payload_len`, whose bytes
/// the caller appends (or queues from the shared buffer) next. Errors before writing anything for a topic
/// over 65,535 bytes or a remaining length over 268,435,455; a property that cannot be encoded fails
/// part-way (the public wrapper truncates).
#[inline]
pub(super) fn write_header(
    parts: &PublishParts<'_>,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let (vh_len, props_len) = variable_header_len(
        parts.topic.len(),
        parts.qos,
        parts.properties,
        parts.delivery,
        version,
    );
    let remaining = vh_len.saturating_add(parts.payload_len);
    if remaining > MAX_VAR_INT as usize {
        return Err(EncodeError::PacketTooLarge { size: remaining });
    }
    let topic_len = u16::try_from(parts.topic.len()).map_err(|_| EncodeError::StringTooLong {
        len: parts.topic.len(),
    })?;
    out.reserve(1 + var_int_len(remaining) + vh_len);
    out.put_u8(parts.first_byte());
    write_var_int(out, remaining);
    out.put_u16(topic_len);
    out.put_slice(parts.topic);
    if parts.qos != QoS::AtMostOnce {
        out.put_u16(parts.packet_id);
    }
    if version == ProtocolVersion::V5 {
        if props_len == 0 {
            // The empty property block, without a call into the property writer.
            out.put_u8(0);
        } else if parts.delivery.is_empty() {
            write_properties(out, parts.properties, props_len)?;
        } else {
            write_properties_with(out, parts.properties, &parts.delivery, props_len)?;
        }
    }
    Ok(())
}

/// A PUBLISH encoded once for every subscriber of a fan-out that gets the same frame: one per protocol
/// family (3.x or 5.0) and with or without a packet id (QoS 0, or QoS 1/2). What differs per subscriber
/// is patched into a copy ([`PublishFrame::write`]): the first byte (DUP, QoS 1 or 2, RETAIN) and the
/// packet id, which sit at fixed offsets. Topic, v5 properties and, below `include_payload`'s threshold,
/// the payload are encoded once instead of once per subscriber.
#[derive(Debug, Clone)]
pub struct PublishFrame {
    /// The header (first byte to be patched) and, if `with_payload`, the payload after it.
    bytes: bytes::Bytes,
    /// Offset of the packet id; 0 when the frame has none (QoS 0).
    packet_id_at: usize,
    with_payload: bool,
}

impl PublishFrame {
    /// Encode the frame of `parts` (its `dup`, `retain` and `packet_id` are ignored; its `qos` decides
    /// only whether there is a packet id), followed by `payload` when `include_payload` (which must then
    /// be `parts.payload_len` bytes long). Fails as [`super::encode_publish_parts`] does.
    pub fn encode(
        parts: &PublishParts<'_>,
        payload: Option<&[u8]>,
        version: ProtocolVersion,
    ) -> Result<PublishFrame, EncodeError> {
        debug_assert!(payload.map_or(true, |p| p.len() == parts.payload_len));
        let mut out =
            BytesMut::with_capacity(8 + parts.topic.len() + payload.map_or(0, <[u8]>::len) + 16);
        write_header(parts, version, &mut out)?;
        let packet_id_at = if parts.qos == QoS::AtMostOnce {
            0
        } else {
            // First byte, remaining length, topic length, topic.
            1 + var_int_len_of_prefix(&out) + 2 + parts.topic.len()
        };
        if let Some(p) = payload {
            out.put_slice(p);
        }
        Ok(PublishFrame {
            bytes: out.freeze(),
            packet_id_at,
            with_payload: payload.is_some(),
        })
    }

    /// Whether the payload is part of the frame (else the caller writes it after [`Self::write`]).
    pub fn includes_payload(&self) -> bool {
        self.with_payload
    }

    /// Bytes [`Self::write`] appends.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a frame holds at least a fixed header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Append the frame with this delivery's flags and packet id. `qos` must have a packet id exactly
    /// when the frame was encoded with one.
    pub fn write(&self, dup: bool, qos: QoS, retain: bool, packet_id: u16, out: &mut BytesMut) {
        debug_assert_eq!(qos == QoS::AtMostOnce, self.packet_id_at == 0);
        let start = out.len();
        out.put_slice(&self.bytes);
        out[start] = 0x30 | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain);
        if self.packet_id_at != 0 {
            let at = start + self.packet_id_at;
            out[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
    }
}

/// Bytes of the remaining-length field of an encoded fixed header at the start of `out`.
fn var_int_len_of_prefix(out: &[u8]) -> usize {
    out[1..].iter().take_while(|&&b| b & 0x80 != 0).count() + 1
}
