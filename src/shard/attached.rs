//! A connection attached to its session, as both sides see it: connection I/O (`connection.rs`) gets an
//! [`Attached`] from `attach` and hands it back with every packet; packet handling (`packets/`) finds the
//! session with it. Both import this file, and it imports neither, so neither imports the other for it.

use std::rc::Rc;

use crate::auth::method::Exchange;
use crate::codec::{ProtocolVersion, Utf8Bytes};
use crate::session::alias::InboundAliases;
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
    /// Index of the listener the client came through (its `mount_point`, `use_username_as_clientid`).
    pub listener: u16,
    /// A re-authentication in progress (MQTT 5.0 §4.12.1, `packets::auth`): per connection, not
    /// per session, as the exchange is with this connection's client. Boxed twice so that every
    /// connection pays one thin pointer (8 bytes of `serve`'s future) for something rarely used.
    pub reauth: Option<Box<Box<dyn Exchange>>>,
    /// The topic aliases the client set up on this connection (v5; they end with it).
    pub aliases: InboundAliases,
    /// When the kernel received the last read's data (ns since the epoch, `shard::lookback`).
    pub read_at: u64,
}

/// `topic` (or filter) as a client of a listener with `mount_point` means it: Mosquitto prefixes every
/// topic and filter such a client sends, its will's included, and removes the prefix from what it
/// receives (`session::Session::mount_len`), so clients of that listener only see its subtree.
pub(crate) fn mounted(mount_point: &str, topic: &str) -> crate::codec::Utf8Bytes {
    format!("{mount_point}{topic}").into()
}

/// A subscription filter under `mount_point`: a shared one (`$share/{group}/{filter}`) has its inner
/// filter mounted, as Mosquitto does.
pub(crate) fn mounted_filter(mount_point: &str, filter: &str) -> crate::codec::Utf8Bytes {
    match crate::topic::parse_shared(filter) {
        Some((group, inner)) => format!(
            "{}{group}/{mount_point}{inner}",
            crate::topic::SHARED_PREFIX
        )
        .into(),
        None => mounted(mount_point, filter),
    }
}

/// Protocol number as Mosquitto prints it in its logs (p1 = 3.1, p2 = 3.1.1, p5 = 5.0).
pub(crate) fn log_protocol(p: ProtocolVersion) -> u8 {
    match p {
        ProtocolVersion::V31 => 1,
        ProtocolVersion::V311 => 2,
        ProtocolVersion::V5 => 5,
    }
}
