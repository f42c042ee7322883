//! A new client connection on a shard, until its session is attached.
//!
//! Lifecycle: the accept loop spawns [`run_connection`], which reads the CONNECT (bounded by the connect
//! timeout), checks it, and either refuses it (CONNACK with the refusal code, then close), hands the socket
//! to the client id's home shard (`dup` of the fd through the mailbox, with the bytes already read) or,
//! on the home shard, attaches the session and spawns the connection's serving task (`serving.rs`: its
//! reader and writer; a task of its own so that the setup's state is freed). The [`Socket`]
//! (`socket.rs`) goes with it, with its TLS session on a TLS listener: the handshake runs first, on the
//! accepting shard, and the session travels with a hand-off.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::admission::{authorise, check_connect};
use super::attached::mounted;
use super::serving::{self, ServeStart};
use super::socket::{HandshakeFailure, Socket};
use super::tcp::{Listener, Tcp};
use super::{home_of, Shard};
use crate::codec::{self, Connect, Packet, Properties, ProtocolVersion, ReasonCode};
use crate::logging::log_type;
use crate::router::{Handoff, Mail};
use crate::settings::Settings;
use crate::transport::tls::ServerTls;
use crate::transport::websocket::WsConnection;
use crate::transport::Layers;

/// Keeps the shard's books on one connection until it is served: unregisters it (shutdown list) and
/// releases its `max_connections` slot when dropped, unless it handed them over to the serving task.
pub(super) struct ConnGuard {
    shard: Rc<RefCell<Shard>>,
    id: u64,
    listener: usize,
    /// False once the connection was handed to another shard, which then owns the slot.
    owns_slot: bool,
    /// False once [`ConnGuard::hand_over`] gave the books to the serving task.
    armed: bool,
}

impl ConnGuard {
    /// The serving task takes the books over (it keeps two numbers where this guard would keep an
    /// allocation of its own: memory per idle client): the connection's id with the shard and the
    /// listener whose `max_connections` slot it holds.
    pub(super) fn hand_over(mut self) -> (u64, usize) {
        debug_assert!(
            self.owns_slot,
            "a connection is served on the shard holding its slot"
        );
        self.armed = false;
        (self.id, self.listener)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut s) = self.shard.try_borrow_mut() {
            s.conns.unregister(self.id);
            if self.owns_slot {
                s.conns.release(self.listener);
            }
        }
    }
}

/// Accept connections on one listener until the task is cancelled at shutdown.
pub(super) async fn accept_loop(shard: Rc<RefCell<Shard>>, fd: OwnedFd, index: usize) {
    let settings = shard.borrow().settings.clone();
    let max = settings.listeners[index].max_connections;
    let listener = match Listener::new(std::net::TcpListener::from(fd)) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(target: log_type::ERROR, "Error: cannot accept on listener {index}: {e}");
            return;
        }
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => {
                shard.borrow_mut().stats.sockets_accepted += 1;
                s
            }
            Err(e) => {
                tracing::warn!(target: log_type::WARNING, "Warning: error accepting a connection: {e}");
                // Out of file descriptors or similar: give the rest of the shard a moment.
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !shard.borrow().conns.try_acquire(index, max) {
            tracing::info!(target: log_type::NOTICE,
                "Client connection from {} denied: max_connections exceeded.", peer.ip());
            continue;
        }
        let stream = match Tcp::new(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: log_type::WARNING,
                    "Warning: cannot serve a connection from {}: {e}", peer.ip());
                shard.borrow_mut().conns.release(index);
                continue;
            }
        };
        if settings.tcp_nodelay {
            let _ = stream.set_nodelay(true);
        }
        if settings.connection_messages {
            let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
            tracing::info!(target: log_type::NOTICE, "New connection from {}:{} on port {}.", peer.ip(), peer.port(), port);
        }
        // A TLS listener's configuration in force now (a SIGHUP may replace it for later connections).
        let server_tls = shard.borrow().security.tls(index).cloned();
        let tls = match server_tls.as_ref().map(|t| t.accept()).transpose() {
            Ok(tls) => tls.map(Box::new),
            Err(e) => {
                tracing::warn!(target: log_type::WARNING,
                    "Warning: cannot start a TLS session for {}: {e}", peer.ip());
                shard.borrow_mut().conns.release(index);
                continue;
            }
        };
        let websockets = settings.listeners[index].websockets;
        // MQTT's own limit bounds packets; data frames are streamed, so they need none of their own.
        let ws = websockets.then(|| Box::new(WsConnection::new(usize::MAX)));
        let layers = (tls.is_some() || ws.is_some()).then(|| Box::new(Layers { tls, ws }));
        let start = Start::Accepted { layers, server_tls };
        // Runs the new connection's first steps at once, inside this task (its CONNECT is often
        // already there), so a backlog of thousands taken in one go ran this task for tens of
        // milliseconds: glommio preempts between tasks only. Yield once the slice is spent
        // (`executor::setup_queue`).
        glommio::spawn_local(run_connection(shard.clone(), stream, peer, index, start)).detach();
        glommio::yield_if_needed().await;
    }
}

/// Take over a connection another shard accepted for a client whose home is here.
pub(super) async fn run_handoff(shard: Rc<RefCell<Shard>>, h: Box<Handoff>) {
    let Handoff {
        fd,
        connect,
        assigned_id,
        leftover,
        read_at,
        peer,
        listener,
        layers,
    } = *h;
    let stream = match Tcp::new(std::net::TcpStream::from(fd)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(target: log_type::WARNING,
                "Warning: cannot serve client {} handed over: {e}", connect.client_id);
            return;
        }
    };
    let pre = Accepted {
        connect,
        assigned_id,
        leftover,
        read_at,
    };
    run_connection(shard, stream, peer, listener, Start::HandedOff(pre, layers)).await;
}

/// How a connection task starts.
enum Start {
    /// Accepted here: the listener's handshakes (TLS, then the WebSocket upgrade), then the CONNECT.
    Accepted {
        layers: Option<Box<Layers>>,
        /// The TLS listener's configuration, for the identity a client certificate gives.
        server_tls: Option<Arc<ServerTls>>,
    },
    /// Handed over by the accepting shard: handshakes done, CONNECT read and checked.
    HandedOff(Accepted, Option<Box<Layers>>),
}

/// A CONNECT that passed its checks.
pub(super) struct Accepted {
    pub(super) connect: Box<Connect>,
    pub(super) assigned_id: bool,
    pub(super) leftover: BytesMut,
    /// When the kernel received the read that brought `leftover` (ns since the epoch, `lookback`).
    pub(super) read_at: u64,
}

/// Why a connection ends before it is attached.
pub(super) enum Refusal {
    /// Answer with a CONNACK carrying this code (encoded for `ProtocolVersion`), then close.
    Connack(ReasonCode, ProtocolVersion),
    /// Close without a word (not MQTT, malformed, timed out, or no CONNACK code fits).
    Close(&'static str),
    /// The TLS handshake or the WebSocket upgrade failed (the client was told where it can be).
    Handshake(HandshakeFailure),
}

async fn run_connection(
    shard: Rc<RefCell<Shard>>,
    stream: Tcp,
    peer: SocketAddr,
    listener: usize,
    start: Start,
) {
    let fd = stream.as_raw_fd();
    let id = shard.borrow_mut().conns.register(fd);
    let mut guard = ConnGuard {
        shard: shard.clone(),
        id,
        listener,
        owns_slot: true,
        armed: true,
    };
    let settings = shard.borrow().settings.clone();
    // Reads carry the kernel's receive time, which orders this client's SUBSCRIBEs against other
    // clients' PUBLISHes, read by this shard or another in whatever order (`lookback`). Without it
    // (it does not fail on Linux) a SUBSCRIBE read late only misses what overtook it.
    if let Err(e) = stream.set_rx_timestamps(true) {
        tracing::debug!(target: log_type::DEBUG, "SO_TIMESTAMPNS not set: {e}");
    }
    let (socket, pre, server_tls) = match start {
        Start::Accepted { layers, server_tls } => {
            let upgrading = layers.as_ref().is_some_and(|l| l.ws.is_some());
            (Socket::new(stream, layers, upgrading), None, server_tls)
        }
        Start::HandedOff(pre, layers) => (Socket::new(stream, layers, false), Some(pre), None),
    };
    let socket = Rc::new(socket);
    let accepted = match pre {
        Some(a) => a,
        None => {
            match read_connect(&shard, &socket, &settings, listener, server_tls.as_deref()).await {
                Ok(a) => a,
                Err(Refusal::Connack(code, protocol)) => {
                    // A refused login is logged where the client id is known (`check_connect`).
                    if code != ReasonCode::NotAuthorized {
                        tracing::info!(target: log_type::NOTICE,
                        "Client connection from {} refused: {:?}.", peer, code);
                    }
                    let out = encode_refusal(code, protocol, &settings);
                    if socket.write_all(&out).await.is_ok() {
                        socket.linger_close().await;
                    }
                    return;
                }
                Err(Refusal::Close(why)) => {
                    tracing::info!(target: log_type::NOTICE, "Client {} disconnected: {}.", peer, why);
                    // What the layers owe the client goes first (a WebSocket close frame saying why).
                    socket.shutdown().await;
                    return;
                }
                Err(Refusal::Handshake(e)) => {
                    // Mosquitto's words for a failed handshake, with the reason.
                    tracing::info!(target: log_type::NOTICE,
                    "Client connection from {} failed: {}.", peer.ip(), e);
                    socket.shutdown().await;
                    return;
                }
            }
        }
    };
    let home = home_of(accepted.connect.client_id.as_bytes(), settings.shards);
    let me = shard.borrow().id;
    if home != me {
        // docs/ARCHITECTURE.md, invariant 1: the session lives on its home shard; move the socket there. The dup keeps
        // the socket open after this shard's stream is dropped.
        // SAFETY: `fd` is the open socket owned by `socket`, alive for this call.
        let dup = unsafe { libc::dup(fd) };
        if dup < 0 {
            tracing::warn!(target: log_type::WARNING,
                "Warning: cannot hand client {} to shard {home}: {}", accepted.connect.client_id, io::Error::last_os_error());
            return;
        }
        // SAFETY: `dup` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(dup) };
        guard.owns_slot = false;
        // Nothing else holds the socket before `serve`: its layers (TLS session, WebSocket state)
        // move with the hand-off.
        let layers = Rc::try_unwrap(socket).ok().and_then(Socket::into_layers);
        let handoff = Handoff {
            fd,
            connect: accepted.connect,
            assigned_id: accepted.assigned_id,
            leftover: accepted.leftover,
            read_at: accepted.read_at,
            peer,
            listener,
            layers,
        };
        shard
            .borrow_mut()
            .mail
            .send(home, Mail::Handoff(Box::new(handoff)));
        return;
    }
    // Cluster mode: the client id is this node's in the whole cluster before the CONNECT attaches
    // (`claims`): its connection elsewhere closed, its session moved here.
    let claim = shard.borrow_mut().claim(&accepted.connect);
    if let Some(claimed) = claim {
        // The link answers within its claim time; bounded here too, should the link be gone.
        let answered = async {
            let _ = claimed.await;
        };
        let gone = glommio::timer::sleep(crate::cluster::sessions::CLAIM_TIMEOUT * 2);
        futures_lite::future::or(answered, gone).await;
    }
    // A task of its own, so what only setting up needed (this future: the CONNECT read, the refusal
    // and hand-off paths, ~700 bytes) is freed now instead of staying allocated as long as the client is
    // connected: a busy client then costs the serving task, 384 bytes, an idle one its parked
    // state, 160 (`serving.rs`, `parking.rs`; memory per idle client, docs/PERFORMANCE.md).
    let start = ServeStart {
        shard,
        socket,
        peer,
        guard,
        settings,
        accepted,
    };
    if let Some(serving) = serving::serve(start) {
        // Out of the setup queue into the default one (`executor::setup_queue`).
        super::executor::spawn_into(serving, glommio::TaskQueueHandle::default()).detach();
    }
}

/// The CONNACK refusing a connection. Not inline in [`run_connection`]: a `Packet` is 472 bytes, and a
/// local held across an `.await` would stay in every connection's future for its whole life.
fn encode_refusal(code: ReasonCode, protocol: ProtocolVersion, settings: &Settings) -> BytesMut {
    let mut properties = Properties::default();
    if matches!(code, ReasonCode::UseAnotherServer | ReasonCode::ServerMoved) {
        properties.server_reference = settings
            .redirect
            .as_ref()
            .map(|r| r.reference.clone().into());
    }
    let connack = Packet::ConnAck(codec::ConnAck {
        session_present: false,
        code,
        properties,
    });
    let mut out = BytesMut::new();
    let _ = codec::encode(&connack, protocol, &mut out);
    out
}

/// Read until the first packet, which must be a CONNECT that passes every check.
async fn read_connect(
    shard: &Rc<RefCell<Shard>>,
    socket: &Socket,
    settings: &Settings,
    listener: usize,
    server_tls: Option<&ServerTls>,
) -> Result<Accepted, Refusal> {
    // The handshake and the CONNECT together within the connect timeout.
    socket.set_read_timeout(Some(settings.connect_timeout));
    let mut buf = socket.handshake().await.map_err(Refusal::Handshake)?;
    let mut connect = loop {
        match codec::decode(&mut buf, ProtocolVersion::V311, settings.max_packet_size) {
            Ok(Some(Packet::Connect(c))) => break c,
            Ok(Some(_)) => return Err(Refusal::Close("first packet was not CONNECT")),
            Ok(None) => {}
            Err(e) => {
                return Err(match e.connack_refusal() {
                    // Unknown protocol level: answer in the 3.1.1 format every client version can read.
                    Some(code) => Refusal::Connack(code, ProtocolVersion::V311),
                    None => Refusal::Close("malformed CONNECT"),
                });
            }
        }
        match socket.read_some(&mut buf).await {
            Ok(0) => return Err(Refusal::Close("closed before CONNECT")),
            Ok(n) => shard.borrow_mut().stats.bytes_received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Refusal::Close("no CONNECT in time"))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Refusal::Close(
                    "invalid TLS or WebSocket data before CONNECT",
                ))
            }
            Err(_) => return Err(Refusal::Close("socket error before CONNECT")),
        }
    };
    check_connect(settings, listener, &connect)?;
    // A zero-length username is no username, as Mosquitto reads it: decided once, here.
    if connect.username.as_ref().is_some_and(|u| u.is_empty()) {
        connect.username = None;
    }
    let not_authorised = |connect: &Connect| {
        // Mosquitto's line for it.
        tracing::info!(target: log_type::NOTICE, "Client {} disconnected, not authorised.",
            if connect.client_id.is_empty() { "<unknown>" } else { connect.client_id.as_str() });
        Err(Refusal::Connack(
            ReasonCode::NotAuthorized,
            connect.protocol,
        ))
    };
    // use_identity_as_username / use_subject_as_username: the certificate is the credential. As in
    // Mosquitto, whatever username and password the client sent are replaced, no password is
    // checked, and a client without a (usable) certificate is refused as a bad username or password.
    let identity = server_tls.and_then(|t| socket.with_tls(|conn| t.identity(conn)).flatten());
    let certified = identity.is_some();
    if let Some(identity) = identity {
        connect.password = None;
        match identity {
            Some(name) => connect.username = Some(name.into()),
            None => {
                tracing::info!(target: log_type::NOTICE,
                    "Client {} disconnected: no client certificate to take the username from.",
                    if connect.client_id.is_empty() { "<unknown>" } else { connect.client_id.as_str() });
                return Err(Refusal::Connack(
                    ReasonCode::BadUserNameOrPassword,
                    connect.protocol,
                ));
            }
        }
    }
    if let (Some(mount), Some(will)) =
        (&settings.listeners[listener].mount_point, &mut connect.will)
    {
        will.topic = mounted(mount, &will.topic);
    }
    // Enhanced authentication (MQTT 5.0 AUTH): the method's exchange, whose username replaces the
    // CONNECT's (a certificate's too), is the login; the password file is not asked.
    let enhanced =
        super::enhanced_auth::authenticate(shard, socket, settings, &mut buf, &mut connect).await?;
    if settings.listeners[listener].use_username_as_clientid {
        // The listener identifies clients by username; without one a client cannot be identified.
        match connect.username.clone() {
            Some(username) => connect.client_id = username,
            None => return not_authorised(&connect),
        }
    }
    let security = shard.borrow().security.clone();
    if !certified && !enhanced && !authorise(settings, security, listener, &connect).await {
        return not_authorised(&connect);
    }
    let assigned_id = connect.client_id.is_empty();
    if assigned_id {
        let s = &mut *shard.borrow_mut();
        connect.client_id = s.sessions.assign_client_id(
            &settings.listeners[listener].auto_id_prefix,
            s.id,
            s.shards,
        );
    }
    if let Some(prefix) = &settings.clientid_prefixes {
        // After assignment, as in Mosquitto: an assigned id must match the prefix too.
        if !connect.client_id.starts_with(prefix.as_str()) {
            return not_authorised(&connect);
        }
    }
    Ok(Accepted {
        connect,
        assigned_id,
        leftover: buf,
        read_at: socket.rx_stamp_or_now(),
    })
}
