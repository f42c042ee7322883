//! CONNECT (3.1 §3.1, 3.1.1 §3.1, 5.0 §3.1). The packet names its own protocol, so it is decoded the same
//! whatever version the connection was assumed to speak; the decoded `protocol` then fixes the version of
//! every later packet.
//!
//! 3.1 ("MQIsdp", level 3) predates the numbered MUSTs: the reserved flag bit and will QoS/retain without
//! the will flag are only rejected for 3.1.1 and 5.0 (as Mosquitto does); the client id length limit of
//! 3.1 (1..=23 bytes) is the broker's policy, not the codec's.

use bytes::{BufMut, Bytes};

use super::error::{DecodeError, EncodeError};
use super::packet::{Connect, LastWill, ProtocolVersion, QoS};
use super::properties::{
    decode_properties, properties_len, properties_wire_len, write_properties, PropertyContext,
};
use super::publish::check_topic_name;
use super::strings::{prefixed_len, write_binary, write_string, BodyReader};

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_QOS: u8 = 0x18;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

fn protocol_name(v: ProtocolVersion) -> &'static [u8] {
    match v {
        ProtocolVersion::V31 => b"MQIsdp",
        ProtocolVersion::V311 | ProtocolVersion::V5 => b"MQTT",
    }
}

pub(super) fn decode(r: &mut BodyReader) -> Result<Connect, DecodeError> {
    let name = r.read_binary()?;
    let level = r.read_u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        (b"MQTT", _) | (b"MQIsdp", _) => {
            return Err(DecodeError::UnsupportedProtocolVersion { level })
        }
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let v5 = protocol == ProtocolVersion::V5;
    let strict = protocol != ProtocolVersion::V31;

    let flags = r.read_u8()?;
    if strict && flags & FLAG_RESERVED != 0 {
        return Err(DecodeError::ConnectReservedFlagSet);
    }
    let has_will = flags & FLAG_WILL != 0;
    let will_qos_bits = (flags & FLAG_WILL_QOS) >> 3;
    let will_retain = flags & FLAG_WILL_RETAIN != 0;
    let will_qos = if has_will {
        QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidQoS(will_qos_bits))?
    } else {
        if strict && (will_qos_bits != 0 || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill { flags });
        }
        QoS::AtMostOnce
    };
    let has_password = flags & FLAG_PASSWORD != 0;
    let has_username = flags & FLAG_USERNAME != 0;
    if has_password && !has_username && !v5 {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.read_u16()?;
    let properties = if v5 {
        decode_properties(r, PropertyContext::Connect)?
    } else {
        Default::default()
    };

    let client_id = r.read_string()?;
    let will = if has_will {
        let properties = if v5 {
            decode_properties(r, PropertyContext::Will)?
        } else {
            Default::default()
        };
        let topic = r.read_string()?;
        check_topic_name(&topic)?;
        let payload = r.read_binary()?;
        Some(Box::new(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        }))
    } else {
        None
    };
    let username = if has_username {
        Some(r.read_string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.read_binary()?)
    } else {
        None
    };
    r.finish()?;
    Ok(Connect {
        protocol,
        clean_start: flags & FLAG_CLEAN != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

pub(super) fn body_len(c: &Connect) -> usize {
    let v5 = c.protocol == ProtocolVersion::V5;
    let mut len =
        prefixed_len(protocol_name(c.protocol)) + 1 + 1 + 2 + prefixed_len(c.client_id.as_bytes());
    if v5 {
        len += properties_wire_len(&c.properties);
    }
    if let Some(w) = &c.will {
        if v5 {
            len += properties_wire_len(&w.properties);
        }
        len += prefixed_len(w.topic.as_bytes()) + prefixed_len(&w.payload);
    }
    len += c
        .username
        .as_ref()
        .map_or(0, |u| prefixed_len(u.as_bytes()));
    len += c.password.as_ref().map_or(0, |p: &Bytes| prefixed_len(p));
    len
}

pub(super) fn write_body(c: &Connect, out: &mut impl BufMut) -> Result<(), EncodeError> {
    let v5 = c.protocol == ProtocolVersion::V5;
    write_string(out, protocol_name(c.protocol))?;
    out.put_u8(c.protocol as u8);
    let mut flags = 0u8;
    if c.clean_start {
        flags |= FLAG_CLEAN;
    }
    if let Some(w) = &c.will {
        flags |= FLAG_WILL | ((w.qos as u8) << 3);
        if w.retain {
            flags |= FLAG_WILL_RETAIN;
        }
    }
    if c.username.is_some() {
        flags |= FLAG_USERNAME;
    }
    if c.password.is_some() {
        flags |= FLAG_PASSWORD;
    }
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if v5 {
        write_properties(out, &c.properties, properties_len(&c.properties))?;
    }
    write_string(out, c.client_id.as_bytes())?;
    if let Some(w) = &c.will {
        if v5 {
            write_properties(out, &w.properties, properties_len(&w.properties))?;
        }
        write_string(out, w.topic.as_bytes())?;
        write_binary(out, &w.payload)?;
    }
    if let Some(u) = &c.username {
        write_string(out, u.as_bytes())?;
    }
    if let Some(p) = &c.password {
        write_binary(out, p)?;
    }
    Ok(())
}
