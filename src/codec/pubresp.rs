//! PUBACK, PUBREC, PUBREL, PUBCOMP (3.1.1 §3.4-3.7, 5.0 §3.4-3.7): one shape, one file. In 5.0 the reason
//! code and properties may be left out (§3.4.2.1): remaining length 2 means Success without properties,
//! 3 means a reason code without properties.

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::{var_int_len, PacketType};
use super::packet::{ProtocolVersion, PubResponse, ReasonCode};
use super::properties::{decode_properties, properties_len, write_properties, PropertyContext};
use super::reason::decode_reason;
use super::strings::BodyReader;

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

pub(super) fn body_len(p: &PubResponse, version: ProtocolVersion) -> usize {
    if version != ProtocolVersion::V5 {
        return 2;
    }
    let props = properties_len(&p.properties);
    if props > 0 {
        3 + var_int_len(props) + props
    } else if p.reason != ReasonCode::Success {
        3
    } else {
        2
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
