//! Reading and writing the MQTT data types inside a packet body: integers, UTF-8 strings, binary data
//! and (v5) Variable Byte Integers.
//!
//! [`BodyReader`] walks one complete packet body (a frozen `Bytes`), so strings and payloads come out as
//! zero-copy slices of the read buffer. Running past the end of the body is [`DecodeError::Truncated`]:
//! the body is complete by construction, so a short field means the packet lied about its length.

use bytes::{BufMut, Bytes};

use super::error::{DecodeError, EncodeError};
use super::fixed_header::{read_var_int, VarInt};
use super::packet::Utf8Bytes;

/// A cursor over one packet body.
pub(crate) struct BodyReader {
    /// The whole body; slices of it are handed out for strings and payloads.
    body: Bytes,
    /// Offset of the next unread byte.
    pos: usize,
}

impl BodyReader {
    pub(crate) fn new(body: Bytes) -> BodyReader {
        BodyReader { body, pos: 0 }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    #[inline]
    fn rest_slice(&self) -> &[u8] {
        &self.body[self.pos..]
    }

    #[inline]
    pub(crate) fn read_u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.rest_slice().first().ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn read_u16(&mut self) -> Result<u16, DecodeError> {
        match *self.rest_slice() {
            [a, b, ..] => {
                self.pos += 2;
                Ok(u16::from_be_bytes([a, b]))
            }
            _ => Err(DecodeError::Truncated),
        }
    }

    #[inline]
    pub(crate) fn read_u32(&mut self) -> Result<u32, DecodeError> {
        match *self.rest_slice() {
            [a, b, c, d, ..] => {
                self.pos += 4;
                Ok(u32::from_be_bytes([a, b, c, d]))
            }
            _ => Err(DecodeError::Truncated),
        }
    }

    /// A v5 Variable Byte Integer (property length, subscription identifier); must be minimal
    /// ([MQTT-1.5.5-1]).
    #[inline]
    pub(crate) fn read_var_int(&mut self) -> Result<u32, DecodeError> {
        match read_var_int(self.rest_slice()) {
            VarInt::Complete(value, used, minimal) => {
                if !minimal {
                    return Err(DecodeError::NonMinimalVarInt);
                }
                self.pos += used;
                Ok(value)
            }
            VarInt::Incomplete => Err(DecodeError::Truncated),
            VarInt::TooLong => Err(DecodeError::MalformedVarInt),
        }
    }

    /// The next `n` bytes as a zero-copy slice.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let b = self.body.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// Everything left (a PUBLISH payload).
    #[inline]
    pub(crate) fn take_rest(&mut self) -> Bytes {
        let b = self.body.slice(self.pos..);
        self.pos = self.body.len();
        b
    }

    /// Binary Data: a two-byte length and that many bytes.
    #[inline]
    pub(crate) fn read_binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.read_u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 Encoded String: valid UTF-8 (which excludes surrogates and overlong forms) without U+0000.
    #[inline]
    pub(crate) fn read_string(&mut self) -> Result<Utf8Bytes, DecodeError> {
        let bytes = self.read_binary()?;
        check_no_null(&bytes)?;
        Utf8Bytes::try_from(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A reader over the next `n` bytes (a v5 property section); advances `self` past them.
    pub(crate) fn sub_reader(&mut self, n: usize) -> Result<BodyReader, DecodeError> {
        Ok(BodyReader::new(self.take(n)?))
    }

    /// Errors unless the whole body was consumed.
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// [MQTT-1.5.3-2] (3.1.1) / [MQTT-1.5.4-2] (5.0): a string must not contain U+0000. In valid UTF-8 the
/// byte 0x00 only ever encodes U+0000, so a byte search suffices (and is vectorised by `contains`).
#[inline]
pub(crate) fn check_no_null(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.contains(&0) {
        Err(DecodeError::NullCharacter)
    } else {
        Ok(())
    }
}

/// Size on the wire of a string or binary field.
#[inline]
pub(crate) fn prefixed_len(bytes: &[u8]) -> usize {
    2 + bytes.len()
}

/// Appends a UTF-8 string field.
#[inline]
pub(crate) fn write_string(out: &mut impl BufMut, s: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong { len: s.len() })?;
    out.put_u16(len);
    out.put_slice(s);
    Ok(())
}

/// Appends a Binary Data field.
#[inline]
pub(crate) fn write_binary(out: &mut impl BufMut, b: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(b.len()).map_err(|_| EncodeError::BinaryTooLong { len: b.len() })?;
    out.put_u16(len);
    out.put_slice(b);
    Ok(())
}
