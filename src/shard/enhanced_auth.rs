//! Enhanced authentication at CONNECT (MQTT 5.0 §4.12): the AUTH packets between a CONNECT that
//! names an Authentication Method and its CONNACK. The method itself (`crate::auth::method`) only
//! sees the Authentication Data; this file keeps the MQTT rules:
//!
//! - Until the CONNACK the client may send only AUTH 0x18 (Continue authentication) naming the same
//!   method, or DISCONNECT [MQTT-3.1.2-30]; anything else is a protocol error,
//!   answered with CONNACK 0x82 before the close (the server may send a CONNACK with a reason code
//!   of 0x80 or more at any point before its CONNACK, §4.13.1).
//! - The whole exchange must end within the connect timeout (a deadline for all of it, not for each
//!   read): a client that answers slowly holds a connection slot no longer than one that sends its
//!   CONNECT slowly.
//! - A failed exchange is refused with CONNACK 0x87 (Not authorized), what Mosquitto answers when its
//!   plugin says MOSQ_ERR_AUTH and what shardmq answers a wrong password: 0x86 (Bad User Name or
//!   Password) is about the CONNECT's own username and password fields, which are not what failed.
//!
//! Runs on the accepting shard, before the hand-off to the client id's home shard; what the CONNACK
//! must carry travels in the CONNECT (see [`exchange`]).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::connection::Refusal;
use super::socket::Socket;
use super::Shard;
use crate::auth::method::{AuthMethod, Step};
use crate::codec::{
    self, Auth, Connect, Packet, Properties, ProtocolVersion, ReasonCode, Utf8Bytes,
};
use crate::logging::log_type;
use crate::settings::Settings;

/// For a CONNECT that names an Authentication Method: the method's exchange. `Ok(true)` when it
/// succeeded (it is then the login), `Ok(false)` for a CONNECT without a method. A method that is not
/// offered (none is, without `scram_file`) gets CONNACK 0x8C, as Mosquitto answers when no plugin
/// takes it.
pub(super) async fn authenticate(
    shard: &Rc<RefCell<Shard>>,
    socket: &Socket,
    settings: &Settings,
    buf: &mut BytesMut,
    connect: &mut Connect,
) -> Result<bool, Refusal> {
    let Some(name) = &connect.properties.authentication_method else {
        return Ok(false);
    };
    let method = shard.borrow().security.auth_method(name.as_str()).cloned();
    let Some(method) = method else {
        // The refusal itself is logged with the other refusals (`connection::run_connection`).
        tracing::debug!(target: log_type::DEBUG,
            "Client {}: authentication method {name:?} is not offered.",
            if connect.client_id.is_empty() { "<unknown>" } else { connect.client_id.as_str() });
        return Err(Refusal::Connack(
            ReasonCode::BadAuthenticationMethod,
            ProtocolVersion::V5,
        ));
    };
    // Boxed: the exchange's state would otherwise enlarge every connection's setup future, enhanced
    // authentication or not.
    Box::pin(exchange(shard, socket, settings, buf, &*method, connect)).await?;
    Ok(true)
}

/// Run `method`'s exchange from the CONNECT's Authentication Data until it succeeds (`Ok`) or fails.
/// On success the CONNECT is rewritten to carry the outcome to `attach`, wherever that runs: the
/// authenticated username replaces the username field (the password field is cleared: it proved
/// nothing), and `authentication_data` holds the method's final data for the CONNACK.
async fn exchange(
    shard: &Rc<RefCell<Shard>>,
    socket: &Socket,
    settings: &Settings,
    buf: &mut BytesMut,
    method: &dyn AuthMethod,
    connect: &mut Connect,
) -> Result<(), Refusal> {
    let deadline = async {
        glommio::timer::sleep(settings.connect_timeout).await;
        Err(Refusal::Close("authentication not completed in time"))
    };
    futures_lite::future::or(run(shard, socket, settings, buf, method, connect), deadline).await
}

async fn run(
    shard: &Rc<RefCell<Shard>>,
    socket: &Socket,
    settings: &Settings,
    buf: &mut BytesMut,
    method: &dyn AuthMethod,
    connect: &mut Connect,
) -> Result<(), Refusal> {
    let name = connect
        .properties
        .authentication_method
        .clone()
        .expect("called for a CONNECT with an Authentication Method");
    let client = if connect.client_id.is_empty() {
        "<unknown>".to_owned()
    } else {
        connect.client_id.to_string()
    };
    let mut exchange = method.start();
    let mut data = connect.properties.authentication_data.take();
    loop {
        match exchange.step(data.as_deref()) {
            Step::Continue(challenge) => {
                let out = encode_continue(&name, challenge)
                    .ok_or(Refusal::Close("challenge too large for an AUTH packet"))?;
                if socket.write_all(&out).await.is_err() {
                    return Err(Refusal::Close("socket error during authentication"));
                }
            }
            Step::Success { username, data } => {
                tracing::debug!(target: log_type::DEBUG,
                    "Client {client} authenticated as {username} with {name}.");
                connect.username = Some(username.into());
                connect.password = None;
                connect.properties.authentication_data = data.map(Bytes::from);
                return Ok(());
            }
            Step::Failure(why) => {
                tracing::info!(target: log_type::NOTICE,
                    "Client {client} disconnected, not authorised ({name}: {why}).");
                return Err(Refusal::Connack(
                    ReasonCode::NotAuthorized,
                    ProtocolVersion::V5,
                ));
            }
        }
        data = match next_packet(shard, socket, settings, buf).await? {
            Packet::Auth(a)
                if a.reason == ReasonCode::ContinueAuthentication
                    && a.properties.authentication_method.as_ref() == Some(&name) =>
            {
                a.properties.authentication_data
            }
            Packet::Disconnect(_) => {
                return Err(Refusal::Close("disconnected during authentication"))
            }
            other => {
                tracing::info!(target: log_type::NOTICE,
                    "Client {client} sent {} during authentication, disconnecting.", kind(&other));
                return Err(Refusal::Connack(
                    ReasonCode::ProtocolError,
                    ProtocolVersion::V5,
                ));
            }
        };
    }
}

/// AUTH 0x18 with a challenge. Not inline in [`run`]: a `Packet` held across its write would stay in
/// the future.
fn encode_continue(method: &Utf8Bytes, challenge: Vec<u8>) -> Option<BytesMut> {
    let auth = Packet::Auth(Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties {
            authentication_method: Some(method.clone()),
            authentication_data: Some(Bytes::from(challenge)),
            ..Properties::default()
        },
    });
    let mut out = BytesMut::new();
    codec::encode(&auth, ProtocolVersion::V5, &mut out).ok()?;
    Some(out)
}

/// What the log calls a packet that has no business in the exchange.
fn kind(p: &Packet) -> &'static str {
    match p {
        Packet::Auth(_) => "an AUTH with another method or reason",
        Packet::Connect(_) => "a second CONNECT",
        _ => "a packet other than AUTH",
    }
}

/// The next packet from the client, within the connect timeout the socket still has.
async fn next_packet(
    shard: &Rc<RefCell<Shard>>,
    socket: &Socket,
    settings: &Settings,
    buf: &mut BytesMut,
) -> Result<Packet, Refusal> {
    loop {
        match codec::decode(buf, ProtocolVersion::V5, settings.max_packet_size) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => {
                // The codes a CONNACK may carry for a bad packet.
                let code = match e.reason_code() {
                    c @ (ReasonCode::MalformedPacket | ReasonCode::PacketTooLarge) => c,
                    _ => ReasonCode::ProtocolError,
                };
                return Err(Refusal::Connack(code, ProtocolVersion::V5));
            }
        }
        match socket.read_some(buf).await {
            Ok(0) => return Err(Refusal::Close("closed during authentication")),
            Ok(n) => shard.borrow_mut().stats.bytes_received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Refusal::Close("authentication not completed in time"))
            }
            Err(_) => return Err(Refusal::Close("socket error during authentication")),
        }
    }
}
