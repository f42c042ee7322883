//! A connection attached to its session, as both sides see it: connection I/O (`connection.rs`) gets an
//! [`Attached`] from `attach` and hands it back with every packet; packet handling (`packets/`) finds the
//! session with it. Both import this file, and it imports neither, so neither imports the other for it.

use std::rc::Rc;

use crate::codec::{ProtocolVersion, Utf8Bytes};
use crate::session::Outbox;

/// A connection attached to its session: what the reader needs to find it again.
pub(crate) struct Attached {
    pub slot: u32,
    pub generation: u32,
    pub protocol: ProtocolVersion,
    pub client_id: Utf8Bytes,
    pub outbox: Rc<Outbox>,
    /// v5 DISCONNECT with reason 0x04: publish the will even though the client disconnected cleanly.
    pub will_on_disconnect: bool,
}

/// Protocol number as Mosquitto prints it in its logs (p1 = 3.1, p2 = 3.1.1, p5 = 5.0).
pub(crate) fn log_protocol(p: ProtocolVersion) -> u8 {
    match p {
        ProtocolVersion::V31 => 1,
        ProtocolVersion::V311 => 2,
        ProtocolVersion::V5 => 5,
    }
}
