//! Packet types shared by every version. Fields that only exist in MQTT 5.0 are `Properties` (empty for
//! 3.1/3.1.1) and reason codes (mapped to 3.x return codes by the encoder).

use bytes::Bytes;
use smallvec::SmallVec;

/// The protocol level carried in CONNECT. 3 = MQTT 3.1 ("MQIsdp"), 4 = 3.1.1, 5 = 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    V31 = 3,
    V311 = 4,
    V5 = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A UTF-8 string held as `Bytes` (so it can be a zero-copy slice of the read buffer). The only ways to
/// build one check UTF-8 (and the decoder also checks the MQTT rules: no U+0000, max 65,535 bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    pub const fn from_static(s: &'static str) -> Utf8Bytes {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validated (or was given) UTF-8 and the field is private.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;
    fn try_from(b: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&b)?;
        Ok(Utf8Bytes(b))
    }
}
impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}
impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}
impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}
impl std::fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}
impl std::fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// MQTT 5.0 reason codes (also used internally for 3.x, whose encoder maps them to 3.x return codes:
/// CONNACK 0..=5, SUBACK 0,1,2,0x80).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReasonCode {
    /// Also "Normal disconnection" and "Granted QoS 0".
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    DisconnectWithWillMessage = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    pub fn is_error(self) -> bool {
        (self as u8) >= 0x80
    }
}

/// MQTT 5.0 properties. One struct for every packet type: the decoder rejects (ProtocolError) a property
/// not allowed on the packet being decoded and any duplicate of a single-valued property; the encoder
/// writes only what is `Some`/non-empty, and only for `ProtocolVersion::V5`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<Utf8Bytes>,
    pub response_topic: Option<Utf8Bytes>,
    pub correlation_data: Option<Bytes>,
    /// May appear several times in SUBSCRIBE-delivered PUBLISH; at most once in SUBSCRIBE.
    pub subscription_identifiers: SmallVec<[u32; 1]>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<Utf8Bytes>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<Utf8Bytes>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<Utf8Bytes>,
    pub server_reference: Option<Utf8Bytes>,
    pub reason_string: Option<Utf8Bytes>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(Utf8Bytes, Utf8Bytes)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: Utf8Bytes,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (v5 only).
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// "Clean session" (3.x) / "Clean start" (5.0).
    pub clean_start: bool,
    pub keep_alive: u16,
    pub client_id: Utf8Bytes,
    /// Boxed: with its v5 properties a will is ~470 bytes, and most clients have none.
    pub will: Option<Box<LastWill>>,
    pub username: Option<Utf8Bytes>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// v3 encoder maps: Success→0, UnsupportedProtocolVersion→1, ClientIdentifierNotValid→2,
    /// ServerUnavailable/ServerBusy/other errors→3, BadUserNameOrPassword→4, NotAuthorized/Banned→5.
    pub code: ReasonCode,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Never contains `+` or `#` (checked by the decoder). May be empty in v5 when a topic alias is set.
    pub topic: Utf8Bytes,
    /// 0 for QoS 0 (not encoded); non-zero otherwise (checked by the decoder).
    pub packet_id: u16,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share this shape. For v3 only `packet_id` is encoded; for v5 the
/// reason code and properties are omitted when they are Success and empty (the short forms of §3.4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResponse {
    pub packet_id: u16,
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl PubResponse {
    pub fn new(packet_id: u16) -> PubResponse {
        PubResponse {
            packet_id,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    #[default]
    SendAtSubscribe = 0,
    SendAtSubscribeIfNew = 1,
    DoNotSend = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    /// v5 only (always false for v3).
    pub no_local: bool,
    /// v5 only (always false for v3).
    pub retain_as_published: bool,
    /// v5 only (always SendAtSubscribe for v3).
    pub retain_handling: RetainHandling,
    /// v5: the Subscription Identifier of the SUBSCRIBE that made the subscription, 0 for none. Not
    /// part of the options byte (the codec reads and writes it as 0; it is in the SUBSCRIBE's
    /// properties): the broker sets it, so that it is stored, merged and persisted with the rest of
    /// what a subscription was granted.
    pub identifier: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    /// Syntax not validated by the codec beyond UTF-8 (the topic module does it, so that one bad filter
    /// yields a 0x80/0x8F in SUBACK rather than a closed connection, as Mosquitto does).
    pub filter: Utf8Bytes,
    pub options: SubscriptionOptions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    /// At least one (checked by the decoder).
    pub filters: Vec<SubscribeFilter>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    /// One per filter: GrantedQoS0 (=Success)/1/2 or an error code. The v3.1.1 encoder writes error codes
    /// as 0x80; the v3.1 encoder too (3.1 has no failure code, Mosquitto sends 0x80).
    pub codes: Vec<ReasonCode>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    /// At least one (checked by the decoder).
    pub filters: Vec<Utf8Bytes>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: u16,
    /// v5 only: one per filter. Empty for v3 (not encoded).
    pub codes: Vec<ReasonCode>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// v5 only; v3 DISCONNECT has no body.
    pub reason: ReasonCode,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResponse),
    PubRec(PubResponse),
    PubRel(PubResponse),
    PubComp(PubResponse),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}
