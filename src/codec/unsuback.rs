//! UNSUBACK (3.1.1 §3.11, 5.0 §3.11). 3.x carries only the packet id (remaining length 2); 5.0 adds
//! properties and one reason code per filter.

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, UnsubAck};
use super::properties::{
    decode_properties, properties_len, properties_wire_len, write_properties, PropertyContext,
};
use super::reason::decode_reason;
use super::strings::BodyReader;

pub(super) fn decode(
    r: &mut BodyReader,
    version: ProtocolVersion,
) -> Result<UnsubAck, DecodeError> {
    let packet_id = r.read_u16()?;
    if packet_id == 0 {
        return Err(DecodeError::ZeroPacketId {
            packet_type: PacketType::UnsubAck,
        });
    }
    let mut ack = UnsubAck {
        packet_id,
        codes: Vec::new(),
        properties: Default::default(),
    };
    if version == ProtocolVersion::V5 {
        ack.properties = decode_properties(r, PropertyContext::UnsubAck)?;
        ack.codes.reserve(r.remaining());
        while r.remaining() > 0 {
            ack.codes
                .push(decode_reason(r.read_u8()?, PacketType::UnsubAck)?);
        }
    }
    r.finish()?;
    Ok(ack)
}

pub(super) fn body_len(u: &UnsubAck, version: ProtocolVersion) -> usize {
    match version {
        ProtocolVersion::V5 => 2 + properties_wire_len(&u.properties) + u.codes.len(),
        _ => 2,
    }
}

pub(super) fn write_body(
    u: &UnsubAck,
    version: ProtocolVersion,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    out.put_u16(u.packet_id);
    if version == ProtocolVersion::V5 {
        write_properties(out, &u.properties, properties_len(&u.properties))?;
        for &c in &u.codes {
            out.put_u8(c as u8);
        }
    }
    Ok(())
}
