//! Codec errors: one enum for decoding, one for encoding, with structured fields (no strings, no
//! allocation on the error path). [`DecodeError::reason_code`] is the one place that maps a codec error to
//! the MQTT 5.0 reason code the broker puts in its CONNACK/DISCONNECT before closing the connection.

use super::fixed_header::PacketType;
use super::packet::ReasonCode;
use super::properties::PropertyContext;

/// Why a byte sequence is not a valid MQTT packet. Every variant means "close the connection"; the
/// broker sends a v5 DISCONNECT (or CONNACK for the first packet) with [`DecodeError::reason_code`] first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length (or another Variable Byte Integer) has a continuation bit on its 4th byte.
    #[error("malformed remaining length (more than 4 bytes)")]
    MalformedRemainingLength,
    /// A v5 Variable Byte Integer property (length, subscription identifier) longer than 4 bytes.
    #[error("malformed variable byte integer (more than 4 bytes)")]
    MalformedVarInt,
    /// MQTT 5.0 §1.5.5 [MQTT-1.5.5-1]: a Variable Byte Integer must use the fewest bytes.
    #[error("variable byte integer not minimally encoded")]
    NonMinimalVarInt,
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    /// Packet type 0, or 15 (AUTH) before MQTT 5.0.
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    #[error("invalid fixed header flags {flags:#06b} for {packet_type:?}")]
    InvalidReservedFlags { packet_type: PacketType, flags: u8 },
    /// QoS 3 in a PUBLISH header, a CONNECT will QoS or a SUBSCRIBE option.
    #[error("invalid QoS {0}")]
    InvalidQoS(u8),
    /// 3.1.1 / 5.0 [MQTT-3.3.1-2]: DUP must be 0 for QoS 0.
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// A field runs past the end of the packet (the remaining length is too small for its content).
    #[error("packet body ends inside a field")]
    Truncated,
    /// Bytes left over after the last field of a packet.
    #[error("{count} unexpected bytes at the end of the packet")]
    TrailingBytes { count: usize },
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// 3.1.1 [MQTT-1.5.3-2] / 5.0 [MQTT-1.5.4-2]: U+0000 in a string.
    #[error("string contains U+0000")]
    NullCharacter,
    #[error("protocol name is neither \"MQTT\" nor \"MQIsdp\"")]
    InvalidProtocolName,
    /// A known protocol name with a level this broker does not speak (answered with CONNACK 0x01/0x84).
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocolVersion { level: u8 },
    /// 3.1.1 [MQTT-3.1.2-3] / 5.0 [MQTT-3.1.2-3]: CONNECT flags bit 0 must be 0.
    #[error("CONNECT reserved flag set")]
    ConnectReservedFlagSet,
    /// [MQTT-3.1.2-11], [MQTT-3.1.2-13] (5.0) / [MQTT-3.1.2-13], [MQTT-3.1.2-15] (3.1.1): will QoS/retain
    /// set while the will flag is 0.
    #[error("will QoS/retain set without the will flag (connect flags {flags:#010b})")]
    WillFlagsWithoutWill { flags: u8 },
    /// 3.1.1 [MQTT-3.1.2-22] (and 3.1): a password needs a user name.
    #[error("password flag set without the user name flag")]
    PasswordWithoutUsername,
    /// CONNACK acknowledge flags with reserved bits set, or session present with a refusal code.
    #[error("invalid CONNACK flags {flags:#010b}")]
    InvalidConnAckFlags { flags: u8 },
    /// A reason (or 3.x return) code that is not defined for this packet type.
    #[error("reason code {code:#04x} not valid in {packet_type:?}")]
    InvalidReasonCode { code: u8, packet_type: PacketType },
    /// A packet identifier of 0 where one is required (QoS>0 PUBLISH, acks, (UN)SUBSCRIBE(ACK)).
    #[error("packet identifier 0 in {packet_type:?}")]
    ZeroPacketId { packet_type: PacketType },
    /// [MQTT-3.3.2-2] / [MQTT-4.7.1-1]: `+` or `#` in a PUBLISH (or will) topic name.
    #[error("wildcard in topic name")]
    WildcardInTopicName,
    /// 3.1.1 [MQTT-4.7.3-1]; 5.0 §3.3.2.3.4 (zero-length topic without a topic alias).
    #[error("empty topic name")]
    EmptyTopicName,
    /// [MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (5.0): SUBSCRIBE without any topic filter.
    #[error("SUBSCRIBE without topic filters")]
    EmptySubscription,
    /// [MQTT-3.10.3-2]: UNSUBSCRIBE without any topic filter.
    #[error("UNSUBSCRIBE without topic filters")]
    EmptyUnsubscribe,
    /// Reserved bits of a SUBSCRIBE options byte set ([MQTT-3-8.3-4] 3.1.1, [MQTT-3.8.3-5] 5.0), or
    /// Retain Handling 3.
    #[error("invalid subscription options {options:#010b}")]
    InvalidSubscriptionOptions { options: u8 },
    #[error("unknown property identifier {id:#04x}")]
    UnknownProperty { id: u8 },
    #[error("property {id:#04x} appears more than once")]
    DuplicateProperty { id: u8 },
    #[error("property {id:#04x} not allowed in {packet:?}")]
    PropertyNotAllowed { id: u8, packet: PropertyContext },
    /// The property length does not match the properties it covers, or exceeds the packet.
    #[error("property length does not match the properties")]
    PropertyLengthMismatch,
    /// A property value outside its range: 0/1 flags, receive maximum 0, maximum packet size 0, topic
    /// alias 0, subscription identifier 0.
    #[error("invalid value {value} for property {id:#04x}")]
    InvalidPropertyValue { id: u8, value: u32 },
    /// 5.0 §3.1.2.11.10: Authentication Data without Authentication Method.
    #[error("authentication data without authentication method")]
    AuthDataWithoutMethod,
}

impl DecodeError {
    /// The MQTT 5.0 reason code for a DISCONNECT (or CONNACK) answering this error. The one place that
    /// maps codec errors to reason codes (5.0 §4.13: Malformed Packet = cannot be parsed per the spec,
    /// Protocol Error = parsed but breaks a rule).
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnsupportedProtocolVersion { .. } => ReasonCode::UnsupportedProtocolVersion,
            WildcardInTopicName => ReasonCode::TopicNameInvalid,
            InvalidPropertyValue { id: 0x23, .. } => ReasonCode::TopicAliasInvalid,
            MalformedRemainingLength
            | MalformedVarInt
            | NonMinimalVarInt
            | InvalidPacketType(_)
            | InvalidReservedFlags { .. }
            | InvalidQoS(_)
            | DupWithQoS0
            | Truncated
            | TrailingBytes { .. }
            | InvalidUtf8
            | NullCharacter
            | ConnectReservedFlagSet
            | WillFlagsWithoutWill { .. }
            | InvalidConnAckFlags { .. }
            | InvalidSubscriptionOptions { .. }
            | UnknownProperty { .. }
            | PropertyLengthMismatch => ReasonCode::MalformedPacket,
            InvalidProtocolName
            | PasswordWithoutUsername
            | InvalidReasonCode { .. }
            | ZeroPacketId { .. }
            | EmptyTopicName
            | EmptySubscription
            | EmptyUnsubscribe
            | DuplicateProperty { .. }
            | PropertyNotAllowed { .. }
            | InvalidPropertyValue { .. }
            | AuthDataWithoutMethod => ReasonCode::ProtocolError,
        }
    }

    /// `Some(code)` when the spec wants a CONNACK refusal before closing: an unsupported protocol level
    /// (3.1.1 §3.1.2.2 return code 0x01, 5.0 §3.1.2.2 reason code 0x84). `None`: just close (after a v5
    /// DISCONNECT with [`DecodeError::reason_code`] once CONNECT was accepted).
    pub fn connack_refusal(&self) -> Option<ReasonCode> {
        match self {
            DecodeError::UnsupportedProtocolVersion { .. } => {
                Some(ReasonCode::UnsupportedProtocolVersion)
            }
            _ => None,
        }
    }
}

/// Why a packet value cannot be put on the wire at all (the only encoder failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("string of {len} bytes exceeds 65,535")]
    StringTooLong { len: usize },
    #[error("binary data of {len} bytes exceeds 65,535")]
    BinaryTooLong { len: usize },
    /// Remaining length above 268,435,455 (the largest Variable Byte Integer).
    #[error("packet remaining length {size} exceeds 268,435,455")]
    PacketTooLarge { size: usize },
    /// A subscription identifier above 268,435,455.
    #[error("variable byte integer {value} exceeds 268,435,455")]
    VarIntTooLarge { value: u32 },
    /// AUTH does not exist before MQTT 5.0.
    #[error("{packet_type:?} does not exist in this protocol version")]
    NotInVersion { packet_type: PacketType },
}
