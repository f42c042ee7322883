//! SUBSCRIBE (3.1.1 §3.8, 5.0 §3.8). Filter syntax is left to the topic module (a bad filter earns a
//! failure code in SUBACK, not a closed connection); the codec checks the packet's form: flags 0010,
//! a non-zero packet id, at least one filter, and the options byte.

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::PacketType;
use super::packet::{
    ProtocolVersion, QoS, RetainHandling, Subscribe, SubscribeFilter, SubscriptionOptions,
};
use super::properties::{
    decode_properties, properties_len, properties_wire_len, write_properties, PropertyContext,
};
use super::strings::{prefixed_len, write_string, BodyReader};

/// Parses a Subscription Options byte (3.x: Requested QoS with bits 7-2 reserved, [MQTT-3-8.3-4];
/// 5.0 §3.8.3.1: bits 7-6 reserved, Retain Handling 3 is Malformed).
fn decode_options(
    options: u8,
    version: ProtocolVersion,
) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version == ProtocolVersion::V5 {
        0xC0
    } else {
        0xFC
    };
    if options & reserved != 0 {
        return Err(DecodeError::InvalidSubscriptionOptions { options });
    }
    let qos_bits = options & 0b11;
    let qos = QoS::from_u8(qos_bits).ok_or(DecodeError::InvalidQoS(qos_bits))?;
    let retain_handling = match (options >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtSubscribeIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidSubscriptionOptions { options }),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: options & 0b0100 != 0,
        retain_as_published: options & 0b1000 != 0,
        retain_handling,
        identifier: 0,
    })
}

fn encode_options(o: &SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let mut b = o.qos as u8;
    if version == ProtocolVersion::V5 {
        b |= (u8::from(o.no_local) << 2)
            | (u8::from(o.retain_as_published) << 3)
            | ((o.retain_handling as u8) << 4);
    }
    b
}

pub(super) fn decode(
    r: &mut BodyReader,
    version: ProtocolVersion,
) -> Result<Subscribe, DecodeError> {
    let packet_id = r.read_u16()?;
    if packet_id == 0 {
        return Err(DecodeError::ZeroPacketId {
            packet_type: PacketType::Subscribe,
        });
    }
    let properties = if version == ProtocolVersion::V5 {
        decode_properties(r, PropertyContext::Subscribe)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while r.remaining() > 0 {
        let filter = r.read_string()?;
        let options = decode_options(r.read_u8()?, version)?;
        filters.push(SubscribeFilter { filter, options });
    }
    if filters.is_empty() {
        return Err(DecodeError::EmptySubscription);
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

pub(super) fn body_len(s: &Subscribe, version: ProtocolVersion) -> usize {
    let mut len = 2;
    if version == ProtocolVersion::V5 {
        len += properties_wire_len(&s.properties);
    }
    for f in &s.filters {
        len += prefixed_len(f.filter.as_bytes()) + 1;
    }
    len
}

pub(super) fn write_body(
    s: &Subscribe,
    version: ProtocolVersion,
    out: &mut impl BufMut,
) -> Result<(), EncodeError> {
    out.put_u16(s.packet_id);
    if version == ProtocolVersion::V5 {
        write_properties(out, &s.properties, properties_len(&s.properties))?;
    }
    for f in &s.filters {
        write_string(out, f.filter.as_bytes())?;
        out.put_u8(encode_options(&f.options, version));
    }
    Ok(())
}
