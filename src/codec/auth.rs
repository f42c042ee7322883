//! AUTH (5.0 §3.15; packet type 15 is reserved before 5.0). Remaining length 0 means Success without
//! properties (§3.15.2.1); like DISCONNECT, a reason code alone means no properties.

use bytes::BufMut;

use super::disconnect::{
    decode_reason_and_properties, reason_and_properties_len, write_reason_and_properties,
};
use super::error::{DecodeError, EncodeError};
use super::fixed_header::PacketType;
use super::packet::Auth;
use super::properties::PropertyContext;
use super::strings::BodyReader;

pub(super) fn decode(r: &mut BodyReader) -> Result<Auth, DecodeError> {
    let (reason, properties) =
        decode_reason_and_properties(r, PacketType::Auth, PropertyContext::Auth)?;
    Ok(Auth { reason, properties })
}

pub(super) fn body_len(a: &Auth) -> usize {
    reason_and_properties_len(a.reason, &a.properties)
}

pub(super) fn write_body(a: &Auth, out: &mut impl BufMut) -> Result<(), EncodeError> {
    write_reason_and_properties(a.reason, &a.properties, out)
}
