//! PUBLISH (3.1.1 §3.3, 5.0 §3.3): the hot path. Decoding a 3.x PUBLISH allocates nothing: the topic and
//! the payload are `Bytes` slices of the packet's frozen read buffer. Encoding is split so the broker can
//! write a header per subscriber and then the one shared payload ([`super::encode_publish_header`]).

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::{var_int_len, write_var_int, PacketType, MAX_VAR_INT};
use super::packet::{Packet, Properties, ProtocolVersion, Publish, QoS, Utf8Bytes};
use super::properties::{decode_properties, properties_len, write_properties, PropertyContext};
use super::strings::{prefixed_len, write_string, BodyReader};

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

/// The first byte: type 3 and the DUP/QoS/RETAIN flags.
#[inline]
fn first_byte(p: &Publish) -> u8 {
    0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
}

/// Bytes of the variable header (topic, packet id, v5 properties) and, for v5, the properties' own length.
#[inline]
fn variable_header_len(p: &Publish, version: ProtocolVersion) -> (usize, usize) {
    let mut len = prefixed_len(p.topic.as_bytes());
    if p.qos != QoS::AtMostOnce {
        len += 2;
    }
    let mut props = 0;
    if version == ProtocolVersion::V5 {
        props = properties_len(&p.properties);
        len += var_int_len(props) + props;
    }
    (len, props)
}

pub(super) fn body_len(p: &Publish, version: ProtocolVersion) -> usize {
    variable_header_len(p, version).0 + p.payload.len()
}

/// Appends the fixed header and variable header of `p`; the remaining length counts the payload, which
/// the caller appends (or writes from the shared buffer) next.
pub(super) fn write_header(
    p: &Publish,
    version: ProtocolVersion,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    let (vh_len, props_len) = variable_header_len(p, version);
    let remaining = vh_len + p.payload.len();
    if remaining > MAX_VAR_INT as usize {
        return Err(EncodeError::PacketTooLarge { size: remaining });
    }
    out.put_u8(first_byte(p));
    write_var_int(out, remaining);
    write_string(out, p.topic.as_bytes())?;
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.packet_id);
    }
    if version == ProtocolVersion::V5 {
        write_properties(out, &p.properties, props_len)?;
    }
    Ok(())
}
