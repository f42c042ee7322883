//! Sans-IO MQTT 3.1 / 3.1.1 / 5.0 codec.
//!
//! Concurrency model: none. Pure functions over byte buffers; no sockets, no shards, no clocks. A
//! connection owns a `BytesMut` read buffer and calls [`decode`] until it returns `Ok(None)` ("need more
//! bytes"); outgoing packets are appended to a `BytesMut` with [`encode`]. Decoded PUBLISH topics and
//! payloads are `Bytes` slices of the read buffer (zero-copy, docs/ARCHITECTURE.md, invariant 3).
//!
//! This module is the one place that knows MQTT's byte layout: the broker writes every outgoing packet
//! through it. Besides [`encode`], the per-message paths have functions that take borrowed parts instead
//! of a built packet: [`encode_publish_parts`] (a PUBLISH header for each subscriber, the shared payload
//! written after it by the caller), [`encode_pub_response`] (PUBACK/PUBREC/PUBREL/PUBCOMP without
//! properties) and [`encode_disconnect`].
//!
//! The protocol version of a connection is fixed by its CONNECT; every later packet is decoded and
//! encoded for that version. CONNECT itself is decoded the same way whatever `version` is passed.
//!
//! Every MUST of the three specs about a packet's form is checked by the decoder (see each packet's
//! file); what depends on connection state (topic alias ranges, receive maximum, which direction a packet
//! may travel, client id policy) is the session's job. Layout: one file per packet family, plus
//! [`fixed_header`] (type, flags, remaining length), `strings` (field readers/writers), `properties`
//! (v5 properties), `reason` (reason code tables) and [`error`] (errors and the one error → reason code
//! mapping).

mod auth;
mod connack;
mod connect;
mod disconnect;
pub mod error;
mod fit;
pub mod fixed_header;
mod packet;
mod properties;
mod publish;
mod pubresp;
mod reason;
mod strings;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

#[cfg(test)]
mod tests;

use bytes::{Buf, BufMut, BytesMut};

pub use error::{DecodeError, EncodeError};
pub use fit::fit;
pub use fixed_header::{PacketType, MAX_VAR_INT};
pub use packet::*;
pub use properties::PropertyContext;
pub(crate) use properties::{decode_property_block, encode_property_block};
pub use publish::{DeliveryProperties, PublishFrame, PublishParts};
pub use pubresp::PubResponseKind;

use fixed_header::{parse_fixed_header, var_int_len, write_var_int};
use strings::BodyReader;

/// Decode one packet from the front of `buf`. `Ok(None)` = need more bytes (`buf` untouched).
///
/// On `Ok(Some)` the packet's bytes are removed from `buf` (split off and frozen: topics and payloads are
/// zero-copy `Bytes` slices). `max_packet_size` (total packet size including the fixed header) is enforced
/// from the fixed header before the body is buffered. After an `Err` the connection must be closed; `buf`
/// may or may not still hold the bad packet.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = parse_fixed_header(buf)? else {
        return Ok(None);
    };
    let packet_type = header.packet_type;
    if packet_type == PacketType::Auth && version != ProtocolVersion::V5 {
        return Err(DecodeError::InvalidPacketType(PacketType::Auth as u8));
    }
    // [MQTT-1.5.5-1]: 5.0 wants minimal Variable Byte Integers (3.1.1 does not say so). CONNECT is checked
    // once its own protocol level is known.
    if header.non_minimal && version == ProtocolVersion::V5 && packet_type != PacketType::Connect {
        return Err(DecodeError::NonMinimalVarInt);
    }
    let total = header.header_len + header.remaining_length;
    if total > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(header.header_len);
    let mut r = BodyReader::new(frame.freeze());
    let packet = match packet_type {
        PacketType::Connect => {
            let connect = connect::decode(&mut r)?;
            if header.non_minimal && connect.protocol == ProtocolVersion::V5 {
                return Err(DecodeError::NonMinimalVarInt);
            }
            Packet::Connect(Box::new(connect))
        }
        PacketType::ConnAck => Packet::ConnAck(connack::decode(&mut r, version)?),
        // The hot path returns straight from the caller's slot (no copy of the large `Packet`).
        PacketType::Publish => return publish::decode(header.flags, &mut r, version),
        PacketType::PubAck => Packet::PubAck(pubresp::decode(packet_type, &mut r, version)?),
        PacketType::PubRec => Packet::PubRec(pubresp::decode(packet_type, &mut r, version)?),
        PacketType::PubRel => Packet::PubRel(pubresp::decode(packet_type, &mut r, version)?),
        PacketType::PubComp => Packet::PubComp(pubresp::decode(packet_type, &mut r, version)?),
        PacketType::Subscribe => Packet::Subscribe(subscribe::decode(&mut r, version)?),
        PacketType::SubAck => Packet::SubAck(suback::decode(&mut r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe::decode(&mut r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(unsuback::decode(&mut r, version)?),
        PacketType::PingReq => {
            r.finish()?;
            Packet::PingReq
        }
        PacketType::PingResp => {
            r.finish()?;
            Packet::PingResp
        }
        PacketType::Disconnect => Packet::Disconnect(disconnect::decode(&mut r, version)?),
        PacketType::Auth => Packet::Auth(auth::decode(&mut r)?),
    };
    Ok(Some(packet))
}

/// Append the encoded packet. Errors only for unencodable values (a string or binary field over 65,535
/// bytes, a remaining length over 268,435,455, AUTH before 5.0); on error `out` is left as it was.
/// CONNECT is encoded for its own `protocol`, whatever `version` says.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_unchecked(packet, version, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Append a PUBLISH's fixed header and variable header (topic, packet id, v5 properties) but NOT the
/// payload; its remaining length counts the payload. The broker writes the shared payload after it
/// (zero-copy fan-out). On error `out` is left as it was. The same as [`encode_publish_parts`] with
/// [`PublishParts::of`]`(publish)`.
pub fn encode_publish_header(
    publish: &Publish,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_publish_parts(&PublishParts::of(publish), version, out)
}

/// Append the fixed header and variable header of a PUBLISH made of `parts` (first byte with DUP, QoS and
/// RETAIN; remaining length; topic; packet id for QoS 1/2; for 5.0 the property length and properties,
/// the single byte `0` when there are none) but NOT the payload, which the remaining length counts.
///
/// Exists for the zero-copy split of the broker's delivery path, run once per message per subscriber:
/// the header goes into the connection's coalescing buffer and the one shared payload is queued after it
/// by reference, so the payload is never copied per subscriber, and no `Publish` is built and no
/// properties are cloned to write a header. The properties' length is computed once per call.
///
/// Errors (a topic over 65,535 bytes, a remaining length over 268,435,455, a property value that cannot
/// be encoded) leave `out` as it was. Writes exactly what [`encode`] writes for the equivalent `Publish`,
/// minus the payload.
#[inline]
pub fn encode_publish_parts(
    parts: &PublishParts<'_>,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    let result = publish::write_header(parts, version, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Append a whole PUBACK, PUBREC, PUBREL or PUBCOMP without properties, in the shortest form the spec
/// allows: packet id only (remaining length 2) in 3.x, whatever `reason` says, and in 5.0 for Success;
/// packet id and reason code (remaining length 3) for any other 5.0 reason (5.0 §3.4.2.1).
///
/// Exists because the broker acknowledges every QoS 1/2 message it receives or delivers: this writes the
/// 4 or 5 bytes directly, without building a [`PubResponse`] (and its `Properties`) for [`encode`], which
/// writes the same bytes for one with no properties. Cannot fail. `reason` should be one 5.0 allows on
/// `kind` (not checked).
#[inline]
pub fn encode_pub_response(
    kind: PubResponseKind,
    packet_id: u16,
    reason: ReasonCode,
    version: ProtocolVersion,
    out: &mut BytesMut,
) {
    pubresp::write_short(kind, packet_id, reason, version, out)
}

/// Append a DISCONNECT without properties: `E0 00` in 3.x and for a 5.0 Normal disconnection (Success),
/// `E0 01 <reason>` for any other 5.0 reason (5.0 §3.14.2.1). The bytes [`encode`] writes for a
/// [`Disconnect`] with this reason and no properties (this is that call): the broker's one way of
/// closing a connection with a reason, so callers need not build the packet. Cannot fail.
pub fn encode_disconnect(reason: ReasonCode, version: ProtocolVersion, out: &mut BytesMut) {
    let packet = Packet::Disconnect(Disconnect {
        reason,
        properties: Properties::default(),
    });
    // A DISCONNECT without properties has at most one byte of body: nothing in it can be unencodable.
    let result = encode(&packet, version, out);
    debug_assert!(result.is_ok(), "{result:?}");
}

/// Total encoded size of a packet, fixed header included (for `max_queued_bytes` and the client's v5
/// Maximum Packet Size). Meaningless for a packet [`encode`] would refuse.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let remaining = body_len(packet, version);
    1 + var_int_len(remaining) + remaining
}

/// Total encoded size of a PUBLISH with these parts: what [`encoded_len`] gives for it, without building
/// one (the broker checks every delivery against a v5 client's Maximum Packet Size).
pub fn publish_len(
    version: ProtocolVersion,
    topic_len: usize,
    qos: QoS,
    properties: &Properties,
    payload_len: usize,
) -> usize {
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let props_len = if version == ProtocolVersion::V5 {
        properties::properties_wire_len(properties)
    } else {
        0
    };
    let remaining = 2 + topic_len + id_len + props_len + payload_len;
    1 + var_int_len(remaining) + remaining
}

/// Bytes after the fixed header.
fn body_len(packet: &Packet, version: ProtocolVersion) -> usize {
    match packet {
        Packet::Connect(c) => connect::body_len(c),
        Packet::ConnAck(c) => connack::body_len(c, version),
        Packet::Publish(p) => publish::body_len(p, version),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            pubresp::body_len(p, version)
        }
        Packet::Subscribe(s) => subscribe::body_len(s, version),
        Packet::SubAck(s) => suback::body_len(s, version),
        Packet::Unsubscribe(u) => unsubscribe::body_len(u, version),
        Packet::UnsubAck(u) => unsuback::body_len(u, version),
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => disconnect::body_len(d, version),
        Packet::Auth(a) => auth::body_len(a),
    }
}

/// Encodes without restoring `out` on error (the public wrappers do).
fn encode_unchecked(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if let Packet::Publish(p) = packet {
        publish::write_header(&PublishParts::of(p), version, out)?;
        out.extend_from_slice(&p.payload);
        return Ok(());
    }
    let packet_type = packet.packet_type();
    if packet_type == PacketType::Auth && version != ProtocolVersion::V5 {
        return Err(EncodeError::NotInVersion { packet_type });
    }
    let remaining = body_len(packet, version);
    if remaining > MAX_VAR_INT as usize {
        return Err(EncodeError::PacketTooLarge { size: remaining });
    }
    out.reserve(1 + var_int_len(remaining) + remaining);
    out.put_u8(((packet_type as u8) << 4) | packet_type.required_flags());
    write_var_int(out, remaining);
    match packet {
        Packet::Connect(c) => connect::write_body(c, out),
        Packet::ConnAck(c) => connack::write_body(c, version, out),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            pubresp::write_body(p, version, out)
        }
        Packet::Subscribe(s) => subscribe::write_body(s, version, out),
        Packet::SubAck(s) => suback::write_body(s, version, out),
        Packet::Unsubscribe(u) => unsubscribe::write_body(u, version, out),
        Packet::UnsubAck(u) => unsuback::write_body(u, version, out),
        Packet::PingReq | Packet::PingResp | Packet::Publish(_) => Ok(()),
        Packet::Disconnect(d) => disconnect::write_body(d, version, out),
        Packet::Auth(a) => auth::write_body(a, out),
    }
}

impl Packet {
    /// The control packet type of this packet.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}
