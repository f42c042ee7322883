//! What a connection's bytes pass through between the socket and the MQTT codec: TLS (`tls`, the
//! listener's rustls configuration and the identity a client certificate gives) and WebSocket framing
//! (`websocket`, the HTTP upgrade and RFC 6455 frames). Like the codec, no sockets here; the connection
//! tasks (`shard/socket.rs`) do the I/O.

pub mod tls;
pub mod websocket;
