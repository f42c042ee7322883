//! UNSUBSCRIBE (3.1.1 §3.10, 5.0 §3.10): flags 0010, a non-zero packet id, at least one filter
//! ([MQTT-3.10.3-2]). Filter syntax is the topic module's business.

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::PacketType;
use super::packet::{ProtocolVersion, Unsubscribe};
use super::properties::{
    decode_properties, properties_len, properties_wire_len, write_properties, PropertyContext,
};
use super::strings::{prefixed_len, write_string, BodyReader};

pub(super) fn decode(
    r: &mut BodyReader,
    version: ProtocolVersion,
) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.read_u16()?;
    if packet_id == 0 {
        return Err(DecodeError::ZeroPacketId {
            packet_type: PacketType::Unsubscribe,
        });
    }
    let properties = if version == ProtocolVersion::V5 {
        decode_properties(r, PropertyContext::Unsubscribe)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while r.remaining() > 0 {
        filters.push(r.read_string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptyUnsubscribe);
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

pub(super) fn body_len(u: &Unsubscribe, version: ProtocolVersion) -> usize {
    let props = if version == ProtocolVersion::V5 {
        properties_wire_len(&u.properties)
    } else {
        0
    };
    2 + props
        + u.filters
            .iter()
            .map(|f| prefixed_len(f.as_bytes()))
            .sum::<usize>()
}

pub(super) fn write_body(
    u: &Unsubscribe,
    version: ProtocolVersion,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    out.put_u16(u.packet_id);
    if version == ProtocolVersion::V5 {
        write_properties(out, &u.properties, properties_len(&u.properties))?;
    }
    for f in &u.filters {
        write_string(out, f.as_bytes())?;
    }
    Ok(())
}
