//! Sans-IO MQTT 3.1 / 3.1.1 / 5.0 codec.
//!
//! Concurrency model: none. Pure functions over byte buffers; no sockets, no shards, no clocks. A
//! connection owns a `BytesMut` read buffer and calls [`decode`] until it returns `Ok(None)` ("need more
//! bytes"); outgoing packets are appended to a `BytesMut` with [`encode`]. Decoded PUBLISH topics and
//! payloads are `Bytes` slices of the read buffer (zero-copy, DESIGN.md invariant 3).
//!
//! The protocol version of a connection is fixed by its CONNECT; every later packet is decoded and
//! encoded for that version. CONNECT itself is decoded the same way whatever `version` is passed.

mod packet;
pub use packet::*;
