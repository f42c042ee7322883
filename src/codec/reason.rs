//! Reason codes on the wire: which MQTT 5.0 reason codes each packet may carry (§2.4, and each packet's
//! reason code table), and the MQTT 3.x CONNACK / SUBACK return codes.

use super::error::DecodeError;
use super::fixed_header::PacketType;
use super::packet::ReasonCode;

impl ReasonCode {
    /// The reason code with wire value `v`, if MQTT 5.0 defines one.
    pub fn from_u8(v: u8) -> Option<ReasonCode> {
        use ReasonCode::*;
        Some(match v {
            0x00 => Success,
            0x01 => GrantedQoS1,
            0x02 => GrantedQoS2,
            0x04 => DisconnectWithWillMessage,
            0x10 => NoMatchingSubscribers,
            0x11 => NoSubscriptionExisted,
            0x18 => ContinueAuthentication,
            0x19 => ReAuthenticate,
            0x80 => UnspecifiedError,
            0x81 => MalformedPacket,
            0x82 => ProtocolError,
            0x83 => ImplementationSpecificError,
            0x84 => UnsupportedProtocolVersion,
            0x85 => ClientIdentifierNotValid,
            0x86 => BadUserNameOrPassword,
            0x87 => NotAuthorized,
            0x88 => ServerUnavailable,
            0x89 => ServerBusy,
            0x8A => Banned,
            0x8B => ServerShuttingDown,
            0x8C => BadAuthenticationMethod,
            0x8D => KeepAliveTimeout,
            0x8E => SessionTakenOver,
            0x8F => TopicFilterInvalid,
            0x90 => TopicNameInvalid,
            0x91 => PacketIdentifierInUse,
            0x92 => PacketIdentifierNotFound,
            0x93 => ReceiveMaximumExceeded,
            0x94 => TopicAliasInvalid,
            0x95 => PacketTooLarge,
            0x96 => MessageRateTooHigh,
            0x97 => QuotaExceeded,
            0x98 => AdministrativeAction,
            0x99 => PayloadFormatInvalid,
            0x9A => RetainNotSupported,
            0x9B => QoSNotSupported,
            0x9C => UseAnotherServer,
            0x9D => ServerMoved,
            0x9E => SharedSubscriptionsNotSupported,
            0x9F => ConnectionRateExceeded,
            0xA0 => MaximumConnectTime,
            0xA1 => SubscriptionIdentifiersNotSupported,
            0xA2 => WildcardSubscriptionsNotSupported,
            _ => return None,
        })
    }

    /// Whether MQTT 5.0 allows this reason code in a packet of type `packet_type` (the per-packet tables
    /// of §3.2.2.2, §3.4.2.1, §3.5.2.1, §3.6.2.1, §3.7.2.1, §3.9.3, §3.11.3, §3.14.2.1, §3.15.2.1).
    pub fn allowed_in(self, packet_type: PacketType) -> bool {
        use ReasonCode::*;
        match packet_type {
            PacketType::ConnAck => matches!(
                self,
                Success
                    | UnspecifiedError
                    | MalformedPacket
                    | ProtocolError
                    | ImplementationSpecificError
                    | UnsupportedProtocolVersion
                    | ClientIdentifierNotValid
                    | BadUserNameOrPassword
                    | NotAuthorized
                    | ServerUnavailable
                    | ServerBusy
                    | Banned
                    | BadAuthenticationMethod
                    | TopicNameInvalid
                    | PacketTooLarge
                    | QuotaExceeded
                    | PayloadFormatInvalid
                    | RetainNotSupported
                    | QoSNotSupported
                    | UseAnotherServer
                    | ServerMoved
                    | ConnectionRateExceeded
            ),
            PacketType::PubAck | PacketType::PubRec => matches!(
                self,
                Success
                    | NoMatchingSubscribers
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicNameInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | PayloadFormatInvalid
            ),
            PacketType::PubRel | PacketType::PubComp => {
                matches!(self, Success | PacketIdentifierNotFound)
            }
            PacketType::SubAck => matches!(
                self,
                Success
                    | GrantedQoS1
                    | GrantedQoS2
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | SharedSubscriptionsNotSupported
                    | SubscriptionIdentifiersNotSupported
                    | WildcardSubscriptionsNotSupported
            ),
            PacketType::UnsubAck => matches!(
                self,
                Success
                    | NoSubscriptionExisted
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
            ),
            PacketType::Disconnect => matches!(
                self,
                Success
                    | DisconnectWithWillMessage
                    | UnspecifiedError
                    | MalformedPacket
                    | ProtocolError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | ServerBusy
                    | ServerShuttingDown
                    | KeepAliveTimeout
                    | SessionTakenOver
                    | TopicFilterInvalid
                    | TopicNameInvalid
                    | ReceiveMaximumExceeded
                    | TopicAliasInvalid
                    | PacketTooLarge
                    | MessageRateTooHigh
                    | QuotaExceeded
                    | AdministrativeAction
                    | PayloadFormatInvalid
                    | RetainNotSupported
                    | QoSNotSupported
                    | UseAnotherServer
                    | ServerMoved
                    | SharedSubscriptionsNotSupported
                    | ConnectionRateExceeded
                    | MaximumConnectTime
                    | SubscriptionIdentifiersNotSupported
                    | WildcardSubscriptionsNotSupported
            ),
            PacketType::Auth => matches!(self, Success | ContinueAuthentication | ReAuthenticate),
            _ => false,
        }
    }
}

/// Decodes a v5 reason code byte and checks it is allowed in `packet_type`.
#[inline]
pub(crate) fn decode_reason(code: u8, packet_type: PacketType) -> Result<ReasonCode, DecodeError> {
    match ReasonCode::from_u8(code) {
        Some(rc) if rc.allowed_in(packet_type) => Ok(rc),
        _ => Err(DecodeError::InvalidReasonCode { code, packet_type }),
    }
}

/// The 3.x CONNACK return code for a reason code (the mapping documented on `ConnAck::code`).
pub(crate) fn v3_connack_code(code: ReasonCode) -> u8 {
    use ReasonCode::*;
    match code {
        Success => 0,
        UnsupportedProtocolVersion => 1,
        ClientIdentifierNotValid => 2,
        BadUserNameOrPassword => 4,
        NotAuthorized | Banned => 5,
        _ => 3,
    }
}

/// The reason code for a 3.x CONNACK return code (3.1.1 Table 3.1; 3.1 uses the same values 0..=5).
pub(crate) fn v3_connack_reason(code: u8) -> Result<ReasonCode, DecodeError> {
    Ok(match code {
        0 => ReasonCode::Success,
        1 => ReasonCode::UnsupportedProtocolVersion,
        2 => ReasonCode::ClientIdentifierNotValid,
        3 => ReasonCode::ServerUnavailable,
        4 => ReasonCode::BadUserNameOrPassword,
        5 => ReasonCode::NotAuthorized,
        _ => {
            return Err(DecodeError::InvalidReasonCode {
                code,
                packet_type: PacketType::ConnAck,
            })
        }
    })
}

/// The 3.x SUBACK return code: 0, 1, 2 granted, 0x80 failure (3.1.1 §3.9.3; 3.1 has no failure code,
/// Mosquitto sends 0x80 there too).
pub(crate) fn v3_suback_code(code: ReasonCode) -> u8 {
    match code {
        ReasonCode::Success => 0,
        ReasonCode::GrantedQoS1 => 1,
        ReasonCode::GrantedQoS2 => 2,
        _ => 0x80,
    }
}

/// [MQTT-3.9.3-2]: SUBACK return codes other than 0x00, 0x01, 0x02 and 0x80 are reserved.
pub(crate) fn v3_suback_reason(code: u8) -> Result<ReasonCode, DecodeError> {
    Ok(match code {
        0 => ReasonCode::Success,
        1 => ReasonCode::GrantedQoS1,
        2 => ReasonCode::GrantedQoS2,
        0x80 => ReasonCode::UnspecifiedError,
        _ => {
            return Err(DecodeError::InvalidReasonCode {
                code,
                packet_type: PacketType::SubAck,
            })
        }
    })
}
