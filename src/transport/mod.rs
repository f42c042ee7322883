//! What a connection's bytes pass through between the socket and the MQTT codec: TLS (`tls`, the
//! listener's rustls configuration and the identity a client certificate gives) and WebSocket framing
//! (`websocket`, the HTTP upgrade and RFC 6455 frames). Like the codec, no sockets here; the connection
//! tasks (`shard/socket.rs`) do the I/O.

pub mod tls;
pub mod websocket;

/// A connection's transport state past its handshakes, as it travels with a hand-off to the client's
/// home shard (`router::Handoff`): the TLS session and the WebSocket framing state, whichever the
/// listener has.
#[derive(Default)]
pub struct Layers {
    /// The server side of the TLS session (a TLS listener).
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// The WebSocket state (a `protocol websockets` listener).
    pub ws: Option<Box<websocket::WsConnection>>,
}
