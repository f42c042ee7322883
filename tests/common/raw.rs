//! A hand-written MQTT 3.1 / 3.1.1 / 5.0 encoder, decoder and blocking client for byte-exact tests.
//!
//! Deliberately independent of the broker's codec: a test that shared the codec under test would
//! agree with its bugs. Only what the tests need is here; packets are built as `Vec<u8>` so a test can
//! corrupt any byte before sending.
//!
//! Where things are: `raw/encode.rs` builds packets, `raw/decode.rs` reads them, `raw/client.rs` is the
//! blocking [`RawClient`] and the [`Witness`]. All are re-exported here, so tests name them `raw::...`.

mod client;
mod decode;
mod encode;

pub use client::*;
pub use decode::*;
pub use encode::*;

/// Control packet types (the high nibble of the first byte).
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// MQTT 5.0 property identifiers used by the tests.
pub mod prop {
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
}
