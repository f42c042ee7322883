//! PUBACK, PUBREC, PUBREL, PUBCOMP (3.1.1 §3.4-3.7, 5.0 §3.4-3.7): one shape, one file. In 5.0 the reason
//! code and properties may be left out (§3.4.2.1): remaining length 2 means Success without properties,
//! 3 means a reason code without properties.
//!
//! Besides the [`PubResponse`] packet, [`write_short`] writes the property-less forms straight from a
//! kind, a packet id and a reason code ([`super::encode_pub_response`]): the broker acknowledges every
//! QoS 1/2 message that way, without building a `PubResponse` and its `Properties`.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::fixed_header::{var_int_len, PacketType};
use super::packet::{ProtocolVersion, PubResponse, ReasonCode};
use super::properties::{decode_properties, properties_len, write_properties, PropertyContext};
use super::reason::decode_reason;
use super::strings::BodyReader;

/// Which of the four acknowledgement packets (they differ only in their first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PubResponseKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

impl PubResponseKind {
    /// The control packet type of this kind.
    #[inline]
    pub fn packet_type(self) -> PacketType {
        match self {
            PubResponseKind::PubAck => PacketType::PubAck,
            PubResponseKind::PubRec => PacketType::PubRec,
            PubResponseKind::PubRel => PacketType::PubRel,
            PubResponseKind::PubComp => PacketType::PubComp,
        }
    }
}

fn context(packet_type: PacketType) -> PropertyContext {
    match packet_type {
        PacketType::PubAck => PropertyContext::PubAck,
        PacketType::PubRec => PropertyContext::PubRec,
        PacketType::PubRel => PropertyContext::PubRel,
        _ => PropertyContext::PubComp,
    }
}

pub(super) fn decode(
    packet_type: PacketType,
    r: &mut BodyReader,
    version: ProtocolVersion,
) -> Result<PubResponse, DecodeError> {
    let packet_id = r.read_u16()?;
    if packet_id == 0 {
        return Err(DecodeError::ZeroPacketId { packet_type });
    }
    let mut resp = PubResponse::new(packet_id);
    if version == ProtocolVersion::V5 && r.remaining() > 0 {
        resp.reason = decode_reason(r.read_u8()?, packet_type)?;
        if r.remaining() > 0 {
            resp.properties = decode_properties(r, context(packet_type))?;
        }
    }
    r.finish()?;
    Ok(resp)
}

/// Body length without properties: the reason code is left out when it is Success (and always in 3.x).
#[inline]
fn short_body_len(reason: ReasonCode, version: ProtocolVersion) -> usize {
    if version == ProtocolVersion::V5 && reason != ReasonCode::Success {
        3
    } else {
        2
    }
}

pub(super) fn body_len(p: &PubResponse, version: ProtocolVersion) -> usize {
    if version != ProtocolVersion::V5 {
        return 2;
    }
    let props = properties_len(&p.properties);
    if props > 0 {
        3 + var_int_len(props) + props
    } else {
        short_body_len(p.reason, version)
    }
}

/// Appends a whole acknowledgement without properties, in its shortest form: 2 bytes of body (packet id)
/// for 3.x and for a v5 Success, 3 (packet id, reason code) for any other v5 reason. The same bytes
/// [`super::encode`] writes for a [`PubResponse`] with these fields and no properties.
#[inline]
pub(super) fn write_short(
    kind: PubResponseKind,
    packet_id: u16,
    reason: ReasonCode,
    version: ProtocolVersion,
    out: &mut BytesMut,
) {
    let packet_type = kind.packet_type();
    let body = short_body_len(reason, version);
    out.reserve(2 + body);
    out.put_u8(((packet_type as u8) << 4) | packet_type.required_flags());
    // A body of at most 3 bytes: its Variable Byte Integer is the one byte itself.
    out.put_u8(body as u8);
    out.put_u16(packet_id);
    if body == 3 {
        out.put_u8(reason as u8);
    }
}

pub(super) fn write_body(
    p: &PubResponse,
    version: ProtocolVersion,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    out.put_u16(p.packet_id);
    if version == ProtocolVersion::V5 {
        let props = properties_len(&p.properties);
        if props > 0 || p.reason != ReasonCode::Success {
            out.put_u8(p.reason as u8);
        }
        if props > 0 {
            write_properties(out, &p.properties, props)?;
        }
    }
    Ok(())
}
