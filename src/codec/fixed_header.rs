//! The fixed header (packet type, flags, remaining length) and Variable Byte Integers.
//!
//! The fixed header is parsed from a plain slice before anything is split off the read buffer, so that
//! "need more bytes" leaves the buffer untouched and the size limit is enforced before the body arrives.

use bytes::BufMut;

use super::error::DecodeError;

/// Largest value of a Variable Byte Integer (3.1.1 §2.2.3, 5.0 §1.5.5): 0xFF 0xFF 0xFF 0x7F.
pub const MAX_VAR_INT: u32 = 268_435_455;

/// MQTT control packet types (the high nibble of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    /// MQTT 5.0 only.
    Auth = 15,
}

impl PacketType {
    /// The type in the high nibble of `byte`; `None` for the reserved type 0.
    pub fn from_first_byte(byte: u8) -> Option<PacketType> {
        Some(match byte >> 4 {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            15 => PacketType::Auth,
            _ => return None,
        })
    }

    /// The flag nibble every packet but PUBLISH must carry (3.1.1 §2.2.2, 5.0 §2.1.3).
    pub fn required_flags(self) -> u8 {
        match self {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub packet_type: PacketType,
    /// The low nibble of the first byte (PUBLISH: DUP, QoS, RETAIN).
    pub flags: u8,
    /// Bytes after the fixed header.
    pub remaining_length: usize,
    /// Bytes of the fixed header itself (2..=5).
    pub header_len: usize,
    /// Whether the remaining length used more bytes than needed (allowed by 3.1/3.1.1, Malformed in 5.0).
    pub non_minimal: bool,
}

/// Result of [`read_var_int`] on a slice that may end early.
pub(crate) enum VarInt {
    /// (value, bytes used, minimal encoding?)
    Complete(u32, usize, bool),
    /// The slice ended while every byte had its continuation bit set.
    Incomplete,
    /// A fourth byte with the continuation bit set.
    TooLong,
}

/// Reads a Variable Byte Integer from the front of `bytes`.
#[inline]
pub(crate) fn read_var_int(bytes: &[u8]) -> VarInt {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // Non-minimal: a trailing 0x00 byte after a continuation (e.g. 0x80 0x00 for 0).
            let minimal = i == 0 || b != 0;
            return VarInt::Complete(value, i + 1, minimal);
        }
    }
    if bytes.len() >= 4 {
        VarInt::TooLong
    } else {
        VarInt::Incomplete
    }
}

/// Parses the fixed header at the front of `buf`. `Ok(None)`: more bytes needed.
#[inline]
pub(crate) fn parse_fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type =
        PacketType::from_first_byte(first).ok_or(DecodeError::InvalidPacketType(first >> 4))?;
    let flags = first & 0x0F;
    if packet_type != PacketType::Publish && flags != packet_type.required_flags() {
        return Err(DecodeError::InvalidReservedFlags { packet_type, flags });
    }
    match read_var_int(&buf[1..]) {
        VarInt::Complete(len, used, minimal) => Ok(Some(FixedHeader {
            packet_type,
            flags,
            remaining_length: len as usize,
            header_len: 1 + used,
            non_minimal: !minimal,
        })),
        VarInt::Incomplete => Ok(None),
        VarInt::TooLong => Err(DecodeError::MalformedRemainingLength),
    }
}

/// Number of bytes the Variable Byte Integer encoding of `value` takes.
#[inline]
pub const fn var_int_len(value: usize) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Appends `value` (at most [`MAX_VAR_INT`], checked by the callers) as a Variable Byte Integer.
#[inline]
pub(crate) fn write_var_int(out: &mut impl BufMut, value: usize) {
    debug_assert!(value <= MAX_VAR_INT as usize);
    let mut v = value;
    loop {
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}
