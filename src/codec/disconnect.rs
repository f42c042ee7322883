//! DISCONNECT (3.1.1 §3.14, 5.0 §3.14). 3.x has no body. In 5.0 remaining length 0 means Normal
//! disconnection without properties, and a reason code alone means no properties (§3.14.2.1-2).
//!
//! The short-form logic is shared with AUTH ([`super::auth`]), which has the same shape.

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::{var_int_len, PacketType};
use super::packet::{Disconnect, Properties, ProtocolVersion, ReasonCode};
use super::properties::{decode_properties, properties_len, write_properties, PropertyContext};
use super::reason::decode_reason;
use super::strings::BodyReader;

/// Decodes "[reason code [properties]]" (DISCONNECT and AUTH).
pub(super) fn decode_reason_and_properties(
    r: &mut BodyReader,
    packet_type: PacketType,
    ctx: PropertyContext,
) -> Result<(ReasonCode, Properties), DecodeError> {
    let mut reason = ReasonCode::Success;
    let mut properties = Properties::default();
    if r.remaining() > 0 {
        reason = decode_reason(r.read_u8()?, packet_type)?;
        if r.remaining() > 0 {
            properties = decode_properties(r, ctx)?;
        }
    }
    r.finish()?;
    Ok((reason, properties))
}

/// Size of the shortest form of "[reason code [properties]]".
pub(super) fn reason_and_properties_len(reason: ReasonCode, properties: &Properties) -> usize {
    let props = properties_len(properties);
    if props > 0 {
        1 + var_int_len(props) + props
    } else if reason != ReasonCode::Success {
        1
    } else {
        0
    }
}

pub(super) fn write_reason_and_properties(
    reason: ReasonCode,
    properties: &Properties,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    let props = properties_len(properties);
    if props > 0 || reason != ReasonCode::Success {
        out.put_u8(reason as u8);
    }
    if props > 0 {
        write_properties(out, properties, props)?;
    }
    Ok(())
}

pub(super) fn decode(
    r: &mut BodyReader,
    version: ProtocolVersion,
) -> Result<Disconnect, DecodeError> {
    if version != ProtocolVersion::V5 {
        r.finish()?;
        return Ok(Disconnect {
            reason: ReasonCode::Success,
            properties: Properties::default(),
        });
    }
    let (reason, properties) =
        decode_reason_and_properties(r, PacketType::Disconnect, PropertyContext::Disconnect)?;
    Ok(Disconnect { reason, properties })
}

pub(super) fn body_len(d: &Disconnect, version: ProtocolVersion) -> usize {
    match version {
        ProtocolVersion::V5 => reason_and_properties_len(d.reason, &d.properties),
        _ => 0,
    }
}

pub(super) fn write_body(
    d: &Disconnect,
    version: ProtocolVersion,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    if version == ProtocolVersion::V5 {
        write_reason_and_properties(d.reason, &d.properties, out)?;
    }
    Ok(())
}
