//! SUBACK (3.1.1 §3.9, 5.0 §3.9): one code per requested filter. 3.x codes are 0, 1, 2 and 0x80
//! ([MQTT-3.9.3-2]); 5.0 codes come from the SUBACK table of §3.9.3.

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, SubAck};
use super::properties::{
    decode_properties, properties_len, properties_wire_len, write_properties, PropertyContext,
};
use super::reason::{decode_reason, v3_suback_code, v3_suback_reason};
use super::strings::BodyReader;

pub(super) fn decode(r: &mut BodyReader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = r.read_u16()?;
    if packet_id == 0 {
        return Err(DecodeError::ZeroPacketId {
            packet_type: PacketType::SubAck,
        });
    }
    let v5 = version == ProtocolVersion::V5;
    let properties = if v5 {
        decode_properties(r, PropertyContext::SubAck)?
    } else {
        Default::default()
    };
    let mut codes = Vec::with_capacity(r.remaining());
    while r.remaining() > 0 {
        let code = r.read_u8()?;
        codes.push(if v5 {
            decode_reason(code, PacketType::SubAck)?
        } else {
            v3_suback_reason(code)?
        });
    }
    Ok(SubAck {
        packet_id,
        codes,
        properties,
    })
}

pub(super) fn body_len(s: &SubAck, version: ProtocolVersion) -> usize {
    let props = if version == ProtocolVersion::V5 {
        properties_wire_len(&s.properties)
    } else {
        0
    };
    2 + props + s.codes.len()
}

pub(super) fn write_body(
    s: &SubAck,
    version: ProtocolVersion,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    out.put_u16(s.packet_id);
    if version == ProtocolVersion::V5 {
        write_properties(out, &s.properties, properties_len(&s.properties))?;
        for &c in &s.codes {
            out.put_u8(c as u8);
        }
    } else {
        for &c in &s.codes {
            out.put_u8(v3_suback_code(c));
        }
    }
    Ok(())
}
