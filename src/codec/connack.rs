//! CONNACK (3.1 §3.2, 3.1.1 §3.2, 5.0 §3.2). Reason codes are held as MQTT 5.0 codes; 3.x return codes
//! 0..=5 are mapped both ways (see `ConnAck::code`). In 3.1 the first byte is unused (no session present).

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::PacketType;
use super::packet::{ConnAck, ProtocolVersion, ReasonCode};
use super::properties::{
    decode_properties, properties_len, properties_wire_len, write_properties, PropertyContext,
};
use super::reason::{decode_reason, v3_connack_code, v3_connack_reason};
use super::strings::BodyReader;

pub(super) fn decode(r: &mut BodyReader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = r.read_u8()?;
    let code = r.read_u8()?;
    let session_present = if version == ProtocolVersion::V31 {
        false
    } else {
        // [MQTT-3.2.2-1] (3.1.1) / §3.2.2.1 (5.0): bits 7-1 are reserved.
        if flags & 0xFE != 0 {
            return Err(DecodeError::InvalidConnAckFlags { flags });
        }
        flags & 1 != 0
    };
    let (code, properties) = if version == ProtocolVersion::V5 {
        let code = decode_reason(code, PacketType::ConnAck)?;
        (code, decode_properties(r, PropertyContext::ConnAck)?)
    } else {
        (v3_connack_reason(code)?, Default::default())
    };
    // [MQTT-3.2.2-4] (3.1.1) / [MQTT-3.2.2-6] (5.0): a refusal has Session Present 0.
    if session_present && code != ReasonCode::Success {
        return Err(DecodeError::InvalidConnAckFlags { flags });
    }
    r.finish()?;
    Ok(ConnAck {
        session_present,
        code,
        properties,
    })
}

pub(super) fn body_len(c: &ConnAck, version: ProtocolVersion) -> usize {
    match version {
        ProtocolVersion::V5 => 2 + properties_wire_len(&c.properties),
        _ => 2,
    }
}

pub(super) fn write_body(
    c: &ConnAck,
    version: ProtocolVersion,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    match version {
        ProtocolVersion::V31 => {
            out.put_u8(0);
            out.put_u8(v3_connack_code(c.code));
        }
        ProtocolVersion::V311 => {
            out.put_u8(u8::from(c.session_present));
            out.put_u8(v3_connack_code(c.code));
        }
        ProtocolVersion::V5 => {
            out.put_u8(u8::from(c.session_present));
            out.put_u8(c.code as u8);
            write_properties(out, &c.properties, properties_len(&c.properties))?;
        }
    }
    Ok(())
}
