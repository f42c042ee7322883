//! MQTT 5.0 properties (§2.2.2): decoding with every form check of the spec (unknown identifiers,
//! duplicates of single-valued properties, properties not allowed on the packet, value ranges, a property
//! length that does not match), sizing and encoding.
//!
//! Property identifiers are Variable Byte Integers on the wire, but every defined one is below 0x80, so a
//! first byte >= 0x80 is simply an unknown property.

use bytes::BufMut;

use super::error::{DecodeError, EncodeError};
use super::fixed_header::{var_int_len, write_var_int, MAX_VAR_INT};
use super::packet::Properties;
use super::publish::DeliveryProperties;
use super::strings::{prefixed_len, write_binary, write_string, BodyReader};

/// Where a property list sits: a packet type, or the Will Properties of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PropertyContext {
    Connect = 0,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
    /// The Will Properties in a CONNECT payload.
    Will,
}

impl PropertyContext {
    pub(crate) const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// Property identifiers (5.0 §2.2.2.2, Table 2-4).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

const fn mask(ctxs: &[PropertyContext]) -> u16 {
    let mut m = 0;
    let mut i = 0;
    while i < ctxs.len() {
        m |= ctxs[i].bit();
        i += 1;
    }
    m
}

use PropertyContext as C;
const MSG: u16 = mask(&[C::Publish, C::Will]);
const ACKS_AND_MORE: u16 = mask(&[
    C::ConnAck,
    C::PubAck,
    C::PubRec,
    C::PubRel,
    C::PubComp,
    C::SubAck,
    C::UnsubAck,
    C::Disconnect,
    C::Auth,
]);
const EVERYWHERE: u16 = ACKS_AND_MORE
    | mask(&[
        C::Connect,
        C::Publish,
        C::Will,
        C::Subscribe,
        C::Unsubscribe,
    ]);

/// Which contexts may carry property `id` (Table 2-4); `None` for an unknown identifier.
pub(crate) const fn allowed_in(id: u8) -> Option<u16> {
    Some(match id {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => MSG,
        id::SUBSCRIPTION_IDENTIFIER => mask(&[C::Publish, C::Subscribe]),
        id::SESSION_EXPIRY_INTERVAL => mask(&[C::Connect, C::ConnAck, C::Disconnect]),
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => mask(&[C::ConnAck]),
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => {
            mask(&[C::Connect, C::ConnAck, C::Auth])
        }
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => mask(&[C::Connect]),
        id::WILL_DELAY_INTERVAL => mask(&[C::Will]),
        id::SERVER_REFERENCE => mask(&[C::ConnAck, C::Disconnect]),
        id::REASON_STRING => ACKS_AND_MORE,
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => {
            mask(&[C::Connect, C::ConnAck])
        }
        id::TOPIC_ALIAS => mask(&[C::Publish]),
        id::USER_PROPERTY => EVERYWHERE,
        _ => return None,
    })
}

/// Stores `value` in a single-valued slot, rejecting a second occurrence.
#[inline]
fn set_once<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { id });
    }
    *slot = Some(value);
    Ok(())
}

/// A Byte property whose only legal values are 0 and 1.
#[inline]
fn read_bool_byte(r: &mut BodyReader, id: u8) -> Result<u8, DecodeError> {
    let v = r.read_u8()?;
    if v > 1 {
        return Err(DecodeError::InvalidPropertyValue {
            id,
            value: u32::from(v),
        });
    }
    Ok(v)
}

/// A Two Byte Integer property that must not be 0.
#[inline]
fn read_nonzero_u16(r: &mut BodyReader, id: u8) -> Result<u16, DecodeError> {
    let v = r.read_u16()?;
    if v == 0 {
        return Err(DecodeError::InvalidPropertyValue { id, value: 0 });
    }
    Ok(v)
}

/// Reads a property length and the properties it covers, checking them for `ctx`.
pub(crate) fn decode_properties(
    r: &mut BodyReader,
    ctx: PropertyContext,
) -> Result<Properties, DecodeError> {
    let len = r.read_var_int()? as usize;
    let mut props = Properties::default();
    if len == 0 {
        return Ok(props);
    }
    let mut pr = r
        .sub_reader(len)
        .map_err(|_| DecodeError::PropertyLengthMismatch)?;
    while pr.remaining() > 0 {
        decode_one(&mut pr, ctx, &mut props).map_err(|e| match e {
            DecodeError::Truncated => DecodeError::PropertyLengthMismatch,
            e => e,
        })?;
    }
    if props.authentication_data.is_some() && props.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(props)
}

fn decode_one(
    r: &mut BodyReader,
    ctx: PropertyContext,
    p: &mut Properties,
) -> Result<(), DecodeError> {
    let pid = r.read_u8()?;
    let allowed = allowed_in(pid).ok_or(DecodeError::UnknownProperty { id: pid })?;
    if allowed & ctx.bit() == 0 {
        return Err(DecodeError::PropertyNotAllowed {
            id: pid,
            packet: ctx,
        });
    }
    match pid {
        id::PAYLOAD_FORMAT_INDICATOR => {
            let v = read_bool_byte(r, pid)?;
            set_once(&mut p.payload_format_indicator, pid, v)
        }
        id::MESSAGE_EXPIRY_INTERVAL => {
            let v = r.read_u32()?;
            set_once(&mut p.message_expiry_interval, pid, v)
        }
        id::CONTENT_TYPE => {
            let v = r.read_string()?;
            set_once(&mut p.content_type, pid, v)
        }
        id::RESPONSE_TOPIC => {
            let v = r.read_string()?;
            // [MQTT-3.3.2-14]: the Response Topic is a Topic Name, so no wildcards; [MQTT-4.7.3-1]: and
            // not empty.
            if v.is_empty() {
                return Err(DecodeError::EmptyTopicName);
            }
            if v.as_bytes().iter().any(|&b| b == b'+' || b == b'#') {
                return Err(DecodeError::WildcardInTopicName);
            }
            set_once(&mut p.response_topic, pid, v)
        }
        id::CORRELATION_DATA => {
            let v = r.read_binary()?;
            set_once(&mut p.correlation_data, pid, v)
        }
        id::SUBSCRIPTION_IDENTIFIER => {
            let v = r.read_var_int()?;
            if v == 0 {
                return Err(DecodeError::InvalidPropertyValue { id: pid, value: 0 });
            }
            // Repeatable only in PUBLISH (one per matching subscription, §3.3.2.3.8).
            if ctx != PropertyContext::Publish && !p.subscription_identifiers.is_empty() {
                return Err(DecodeError::DuplicateProperty { id: pid });
            }
            p.subscription_identifiers.push(v);
            Ok(())
        }
        id::SESSION_EXPIRY_INTERVAL => {
            let v = r.read_u32()?;
            set_once(&mut p.session_expiry_interval, pid, v)
        }
        id::ASSIGNED_CLIENT_IDENTIFIER => {
            let v = r.read_string()?;
            set_once(&mut p.assigned_client_identifier, pid, v)
        }
        id::SERVER_KEEP_ALIVE => {
            let v = r.read_u16()?;
            set_once(&mut p.server_keep_alive, pid, v)
        }
        id::AUTHENTICATION_METHOD => {
            let v = r.read_string()?;
            set_once(&mut p.authentication_method, pid, v)
        }
        id::AUTHENTICATION_DATA => {
            let v = r.read_binary()?;
            set_once(&mut p.authentication_data, pid, v)
        }
        id::REQUEST_PROBLEM_INFORMATION => {
            let v = read_bool_byte(r, pid)?;
            set_once(&mut p.request_problem_information, pid, v)
        }
        id::WILL_DELAY_INTERVAL => {
            let v = r.read_u32()?;
            set_once(&mut p.will_delay_interval, pid, v)
        }
        id::REQUEST_RESPONSE_INFORMATION => {
            let v = read_bool_byte(r, pid)?;
            set_once(&mut p.request_response_information, pid, v)
        }
        id::RESPONSE_INFORMATION => {
            let v = r.read_string()?;
            set_once(&mut p.response_information, pid, v)
        }
        id::SERVER_REFERENCE => {
            let v = r.read_string()?;
            set_once(&mut p.server_reference, pid, v)
        }
        id::REASON_STRING => {
            let v = r.read_string()?;
            set_once(&mut p.reason_string, pid, v)
        }
        id::RECEIVE_MAXIMUM => {
            let v = read_nonzero_u16(r, pid)?;
            set_once(&mut p.receive_maximum, pid, v)
        }
        id::TOPIC_ALIAS_MAXIMUM => {
            let v = r.read_u16()?;
            set_once(&mut p.topic_alias_maximum, pid, v)
        }
        id::TOPIC_ALIAS => {
            let v = read_nonzero_u16(r, pid)?;
            set_once(&mut p.topic_alias, pid, v)
        }
        id::MAXIMUM_QOS => {
            let v = read_bool_byte(r, pid)?;
            set_once(&mut p.maximum_qos, pid, v)
        }
        id::RETAIN_AVAILABLE => {
            let v = read_bool_byte(r, pid)?;
            set_once(&mut p.retain_available, pid, v)
        }
        id::USER_PROPERTY => {
            let k = r.read_string()?;
            let v = r.read_string()?;
            p.user_properties.push((k, v));
            Ok(())
        }
        id::MAXIMUM_PACKET_SIZE => {
            let v = r.read_u32()?;
            if v == 0 {
                return Err(DecodeError::InvalidPropertyValue { id: pid, value: 0 });
            }
            set_once(&mut p.maximum_packet_size, pid, v)
        }
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
            let v = read_bool_byte(r, pid)?;
            set_once(&mut p.wildcard_subscription_available, pid, v)
        }
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            let v = read_bool_byte(r, pid)?;
            set_once(&mut p.subscription_identifier_available, pid, v)
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => {
            let v = read_bool_byte(r, pid)?;
            set_once(&mut p.shared_subscription_available, pid, v)
        }
        _ => Err(DecodeError::UnknownProperty { id: pid }),
    }
}

/// Bytes of the properties themselves (without the property length prefix).
pub(crate) fn properties_len(p: &Properties) -> usize {
    fn s<T: AsRef<[u8]>>(v: &Option<T>) -> usize {
        v.as_ref().map_or(0, |x| 1 + prefixed_len(x.as_ref()))
    }
    fn n<T>(v: &Option<T>, size: usize) -> usize {
        v.as_ref().map_or(0, |_| 1 + size)
    }
    let mut len = n(&p.payload_format_indicator, 1)
        + n(&p.message_expiry_interval, 4)
        + s(&p.content_type.as_ref().map(|v| v.as_bytes()))
        + s(&p.response_topic.as_ref().map(|v| v.as_bytes()))
        + s(&p.correlation_data)
        + n(&p.session_expiry_interval, 4)
        + s(&p.assigned_client_identifier.as_ref().map(|v| v.as_bytes()))
        + n(&p.server_keep_alive, 2)
        + s(&p.authentication_method.as_ref().map(|v| v.as_bytes()))
        + s(&p.authentication_data)
        + n(&p.request_problem_information, 1)
        + n(&p.will_delay_interval, 4)
        + n(&p.request_response_information, 1)
        + s(&p.response_information.as_ref().map(|v| v.as_bytes()))
        + s(&p.server_reference.as_ref().map(|v| v.as_bytes()))
        + s(&p.reason_string.as_ref().map(|v| v.as_bytes()))
        + n(&p.receive_maximum, 2)
        + n(&p.topic_alias_maximum, 2)
        + n(&p.topic_alias, 2)
        + n(&p.maximum_qos, 1)
        + n(&p.retain_available, 1)
        + n(&p.maximum_packet_size, 4)
        + n(&p.wildcard_subscription_available, 1)
        + n(&p.subscription_identifier_available, 1)
        + n(&p.shared_subscription_available, 1);
    for &sid in &p.subscription_identifiers {
        len += 1 + var_int_len(sid as usize);
    }
    for (k, v) in &p.user_properties {
        len += 1 + prefixed_len(k.as_bytes()) + prefixed_len(v.as_bytes());
    }
    len
}

/// Bytes that `d` adds to the properties of `p` (see [`write_properties_with`]).
pub(crate) fn delivery_properties_len(p: &Properties, d: &DeliveryProperties<'_>) -> usize {
    let mut len = 0;
    if d.message_expiry_interval.is_some() && p.message_expiry_interval.is_none() {
        len += 5;
    }
    if d.topic_alias.is_some() && p.topic_alias.is_none() {
        len += 3;
    }
    for &sid in d.subscription_identifiers {
        len += 1 + var_int_len(sid as usize);
    }
    len
}

/// Bytes of the property length prefix plus the properties.
#[inline]
pub(crate) fn properties_wire_len(p: &Properties) -> usize {
    let len = properties_len(p);
    var_int_len(len) + len
}

/// Appends a whole property block (property length and properties) as a packet carries it: the form
/// `crate::persist` stores v5 properties in.
pub(crate) fn encode_property_block(
    out: &mut impl BufMut,
    p: &Properties,
) -> Result<(), EncodeError> {
    write_properties(out, p, properties_len(p))
}

/// Decodes a property block from the front of `block`, checked for `ctx` as in a packet; returns the
/// properties and the bytes the block took.
pub(crate) fn decode_property_block(
    block: bytes::Bytes,
    ctx: PropertyContext,
) -> Result<(Properties, usize), DecodeError> {
    let total = block.len();
    let mut r = BodyReader::new(block);
    let props = decode_properties(&mut r, ctx)?;
    Ok((props, total - r.remaining()))
}

/// Appends the property length and the properties (`len` from [`properties_len`]).
#[inline]
pub(crate) fn write_properties(
    out: &mut impl BufMut,
    p: &Properties,
    len: usize,
) -> Result<(), EncodeError> {
    write_properties_with(out, p, &DeliveryProperties::default(), len)
}

/// Appends the property length and the properties of `p` with those of one delivery, `d`, added or
/// replacing `p`'s (`len`: [`properties_len`] plus [`delivery_properties_len`]).
pub(crate) fn write_properties_with(
    out: &mut impl BufMut,
    p: &Properties,
    d: &DeliveryProperties<'_>,
    len: usize,
) -> Result<(), EncodeError> {
    if len > MAX_VAR_INT as usize {
        return Err(EncodeError::PacketTooLarge { size: len });
    }
    write_var_int(out, len);
    if len == 0 {
        return Ok(());
    }
    macro_rules! byte {
        ($f:ident, $id:expr) => {
            if let Some(v) = p.$f {
                out.put_u8($id);
                out.put_u8(v);
            }
        };
    }
    macro_rules! u16p {
        ($f:ident, $id:expr) => {
            if let Some(v) = p.$f {
                out.put_u8($id);
                out.put_u16(v);
            }
        };
    }
    macro_rules! u32p {
        ($f:ident, $id:expr) => {
            if let Some(v) = p.$f {
                out.put_u8($id);
                out.put_u32(v);
            }
        };
    }
    macro_rules! strp {
        ($f:ident, $id:expr) => {
            if let Some(v) = &p.$f {
                out.put_u8($id);
                write_string(out, v.as_bytes())?;
            }
        };
    }
    macro_rules! binp {
        ($f:ident, $id:expr) => {
            if let Some(v) = &p.$f {
                out.put_u8($id);
                write_binary(out, v)?;
            }
        };
    }
    byte!(payload_format_indicator, id::PAYLOAD_FORMAT_INDICATOR);
    if let Some(v) = d.message_expiry_interval.or(p.message_expiry_interval) {
        out.put_u8(id::MESSAGE_EXPIRY_INTERVAL);
        out.put_u32(v);
    }
    strp!(content_type, id::CONTENT_TYPE);
    strp!(response_topic, id::RESPONSE_TOPIC);
    binp!(correlation_data, id::CORRELATION_DATA);
    for &sid in p
        .subscription_identifiers
        .iter()
        .chain(d.subscription_identifiers)
    {
        if sid > MAX_VAR_INT {
            return Err(EncodeError::VarIntTooLarge { value: sid });
        }
        out.put_u8(id::SUBSCRIPTION_IDENTIFIER);
        write_var_int(out, sid as usize);
    }
    u32p!(session_expiry_interval, id::SESSION_EXPIRY_INTERVAL);
    strp!(assigned_client_identifier, id::ASSIGNED_CLIENT_IDENTIFIER);
    u16p!(server_keep_alive, id::SERVER_KEEP_ALIVE);
    strp!(authentication_method, id::AUTHENTICATION_METHOD);
    binp!(authentication_data, id::AUTHENTICATION_DATA);
    byte!(request_problem_information, id::REQUEST_PROBLEM_INFORMATION);
    u32p!(will_delay_interval, id::WILL_DELAY_INTERVAL);
    byte!(
        request_response_information,
        id::REQUEST_RESPONSE_INFORMATION
    );
    strp!(response_information, id::RESPONSE_INFORMATION);
    strp!(server_reference, id::SERVER_REFERENCE);
    strp!(reason_string, id::REASON_STRING);
    u16p!(receive_maximum, id::RECEIVE_MAXIMUM);
    u16p!(topic_alias_maximum, id::TOPIC_ALIAS_MAXIMUM);
    if let Some(v) = d.topic_alias.or(p.topic_alias) {
        out.put_u8(id::TOPIC_ALIAS);
        out.put_u16(v);
    }
    byte!(maximum_qos, id::MAXIMUM_QOS);
    byte!(retain_available, id::RETAIN_AVAILABLE);
    for (k, v) in &p.user_properties {
        out.put_u8(id::USER_PROPERTY);
        write_string(out, k.as_bytes())?;
        write_string(out, v.as_bytes())?;
    }
    u32p!(maximum_packet_size, id::MAXIMUM_PACKET_SIZE);
    byte!(
        wildcard_subscription_available,
        id::WILDCARD_SUBSCRIPTION_AVAILABLE
    );
    byte!(
        subscription_identifier_available,
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
    );
    byte!(
        shared_subscription_available,
        id::SHARED_SUBSCRIPTION_AVAILABLE
    );
    Ok(())
}
