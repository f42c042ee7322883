//! One MQTT connection: the socket, a read buffer decoded in bulk, a write buffer flushed in batches,
//! the CONNECT/SUBSCRIBE handshake, and the event loop that drives a [`Role`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use shardmq::codec::{
    self, Connect, Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};

use crate::pacer::Pacer;
use crate::shared::{Phase, Shared};
use crate::tls::TlsIo;

/// Bytes reserved before each read: one read takes whatever the kernel has, up to this.
const READ_CHUNK: usize = 256 * 1024;
/// Reads per readiness event before other work (writing, producing) gets a turn.
const READS_PER_EVENT: usize = 8;
/// Largest packet accepted from the broker.
const MAX_PACKET: usize = 256 * 1024 * 1024;

pub struct Conn {
    pub stream: TcpStream,
    /// The rustls session over `stream` with `--tls-ca`; `None` (plain TCP) costs one branch per read
    /// or write system call, nothing per message.
    tls: Option<Box<TlsIo>>,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub version: ProtocolVersion,
    /// When bytes were last written (ns since the epoch): PINGREQ is sent only on quiet connections.
    pub last_write_ns: u64,
}

/// What a role wants after producing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Nothing until a packet arrives or the phase changes.
    Idle,
    /// More to produce as soon as the write buffer has been written out.
    Now,
    /// More to produce at this time (ns since the epoch).
    At(u64),
}

/// The behaviour of a client on top of the generic connection loop.
pub trait Role {
    /// Appends outgoing packets to `wbuf`.
    fn produce(&mut self, wbuf: &mut BytesMut, phase: Phase, now_ns: u64) -> Want;
    /// Handles one packet from the broker; an error closes the connection.
    fn on_packet(&mut self, packet: Packet, wbuf: &mut BytesMut, now_ns: u64)
        -> Result<(), String>;
    /// Called after each batch of packets decoded from one read event.
    fn end_batch(&mut self) {}
}

impl Conn {
    pub fn new(stream: TcpStream, version: ProtocolVersion) -> Conn {
        Conn {
            stream,
            tls: None,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(64 * 1024),
            version,
            last_write_ns: 0,
        }
    }

    /// A connection over TLS, once the handshake is done.
    pub fn new_tls(
        stream: tokio_rustls::client::TlsStream<TcpStream>,
        version: ProtocolVersion,
    ) -> Conn {
        let (stream, session) = stream.into_inner();
        let mut conn = Conn::new(stream, version);
        conn.tls = Some(Box::new(TlsIo::new(session, READ_CHUNK)));
        conn
    }

    /// Whether bytes wait to be written: in the write buffer, or encrypted in the TLS session.
    #[inline]
    pub fn has_pending_write(&self) -> bool {
        !self.wbuf.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// One read of what the kernel has (up to [`READ_CHUNK`]) into the read buffer (decrypted with
    /// TLS); the bytes read from the socket, 0 when the broker closed the connection.
    #[inline]
    fn read_some(&mut self) -> io::Result<usize> {
        match &mut self.tls {
            None => {
                self.rbuf.reserve(READ_CHUNK);
                self.stream.try_read_buf(&mut self.rbuf)
            }
            Some(tls) => tls.read(&self.stream, &mut self.rbuf, READ_CHUNK),
        }
    }

    pub fn encode(&mut self, packet: &Packet) -> Result<(), String> {
        codec::encode(packet, self.version, &mut self.wbuf)
            .map_err(|e| format!("cannot encode {:?}: {e}", packet.packet_type()))
    }

    /// Writes as much of the write buffer as the socket takes without blocking.
    fn try_flush(&mut self, now_ns: u64) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            if tls.flush(&self.stream, &mut self.wbuf)? {
                self.last_write_ns = now_ns;
            }
            return Ok(());
        }
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.advance(n);
                    self.last_write_ns = now_ns;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes the whole write buffer.
    pub async fn flush_all(&mut self) -> io::Result<()> {
        while self.has_pending_write() {
            self.stream.writable().await?;
            self.try_flush(self.last_write_ns)?;
        }
        Ok(())
    }

    /// Reads the next packet (handshake only; the event loop decodes in bulk).
    pub async fn next_packet(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(packet) = codec::decode(&mut self.rbuf, self.version, MAX_PACKET)
                .map_err(|e| format!("malformed packet from the broker: {e}"))?
            {
                return Ok(packet);
            }
            self.stream
                .readable()
                .await
                .map_err(|e| format!("read: {e}"))?;
            match self.read_some() {
                Ok(0) => return Err("connection closed by the broker".into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Reads what the kernel has and hands every complete packet to `role`.
    fn read_and_decode<R: Role>(&mut self, role: &mut R, shared: &Shared) -> Result<(), String> {
        let mut result = Ok(());
        for _ in 0..READS_PER_EVENT {
            match self.read_some() {
                Ok(0) => {
                    result = Err("connection closed by the broker".into());
                    break;
                }
                Ok(_) => {
                    let now = shared.now_ns();
                    loop {
                        match codec::decode(&mut self.rbuf, self.version, MAX_PACKET) {
                            Ok(Some(packet)) => {
                                if let Err(e) = role.on_packet(packet, &mut self.wbuf, now) {
                                    result = Err(e);
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                result = Err(format!("malformed packet from the broker: {e}"));
                                break;
                            }
                        }
                    }
                    if result.is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    result = Err(format!("read: {e}"));
                    break;
                }
            }
        }
        role.end_batch();
        result
    }

    /// Sends DISCONNECT and gives the broker `within` to take it.
    pub async fn disconnect(mut self, within: Duration) {
        let disconnect = Packet::Disconnect(Disconnect {
            reason: ReasonCode::Success,
            properties: Properties::default(),
        });
        if self.encode(&disconnect).is_ok() {
            let _ = tokio::time::timeout(within, async {
                self.flush_all().await?;
                // TLS: close_notify after the DISCONNECT (rustls queues it behind what it holds).
                if let Some(tls) = &mut self.tls {
                    tls.session.send_close_notify();
                    self.flush_all().await?;
                }
                Ok::<(), io::Error>(())
            })
            .await;
        }
    }
}

/// A broker address and the host it was given as (the TLS server name by default).
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: Arc<str>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// Who a client is and what it subscribes to.
pub struct ClientSpec {
    pub client_id: String,
    pub source: Option<IpAddr>,
    pub subscribe: Option<String>,
}

/// The broker's answer to CONNECT that matters here.
pub struct Session {
    /// MQTT 5 Receive Maximum of the broker (65,535 when absent or for 3.x).
    pub receive_maximum: u16,
}

fn bind_no_port(socket: &TcpSocket) {
    // Lets the kernel pick the source port at connect() time, by 4-tuple, rather than at bind() time
    // (where each bound port must be unique per source address): more connections per source address.
    let one: libc::c_int = 1;
    // SAFETY: valid descriptor, option value and length. Failure is harmless (older kernels).
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// TCP connect, TLS handshake (with `--tls-ca`), CONNECT/CONNACK and, for subscribers,
/// SUBSCRIBE/SUBACK. `stage` tells the caller where
/// a timeout struck.
pub async fn handshake(
    shared: &Shared,
    target: &Target,
    spec: &ClientSpec,
    stage: &mut &'static str,
) -> Result<(Conn, Session), String> {
    let settings = &shared.settings;
    let tls = settings.tls.as_deref();
    let addr = target.addr;
    *stage = "TCP connect";
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = spec.source {
        if addr.is_ipv4() {
            bind_no_port(&socket);
        }
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let mut conn = match tls {
        None => Conn::new(stream, settings.version),
        Some(tls) => {
            *stage = "TLS handshake";
            let stream = crate::tls::connect(tls, &target.host, stream)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            Conn::new_tls(stream, settings.version)
        }
    };

    *stage = "CONNACK";
    let persistent = settings.persistent && spec.subscribe.is_some();
    let mut properties = Properties::default();
    if persistent && settings.version == ProtocolVersion::V5 {
        properties.session_expiry_interval = Some(300);
    }
    conn.encode(&Packet::Connect(Box::new(Connect {
        protocol: settings.version,
        clean_start: !persistent,
        keep_alive: settings.keepalive,
        client_id: spec.client_id.as_str().into(),
        will: None,
        username: None,
        password: None,
        properties,
    })))?;
    conn.flush_all()
        .await
        .map_err(|e| format!("write CONNECT: {e}"))?;
    let session = match conn.next_packet().await? {
        Packet::ConnAck(ack) if ack.code == ReasonCode::Success => Session {
            receive_maximum: ack.properties.receive_maximum.unwrap_or(u16::MAX),
        },
        Packet::ConnAck(ack) => return Err(format!("CONNACK refused: {:?}", ack.code)),
        other => return Err(format!("expected CONNACK, got {:?}", other.packet_type())),
    };

    if let Some(filter) = &spec.subscribe {
        *stage = "SUBACK";
        conn.encode(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: filter.as_str().into(),
                options: SubscriptionOptions {
                    qos: settings.qos,
                    ..Default::default()
                },
            }],
            properties: Properties::default(),
        }))?;
        conn.flush_all()
            .await
            .map_err(|e| format!("write SUBSCRIBE: {e}"))?;
        // The broker may send matching PUBLISHes before the SUBACK (MQTT 3.1.1 §3.8.4; another
        // process's publishers on the same topic already run): acknowledged and left out, as
        // anything before the run starts.
        let mut reply = conn.next_packet().await?;
        while let Packet::Publish(_) | Packet::PubRel(_) = reply {
            crate::roles::acknowledge_delivery(&reply, conn.version, &mut conn.wbuf)?;
            conn.flush_all()
                .await
                .map_err(|e| format!("write an acknowledgement: {e}"))?;
            reply = conn.next_packet().await?;
        }
        match reply {
            Packet::SubAck(ack) if ack.packet_id == 1 => {
                let code = ack
                    .codes
                    .first()
                    .copied()
                    .unwrap_or(ReasonCode::UnspecifiedError);
                let granted = match code {
                    ReasonCode::Success => QoS::AtMostOnce,
                    ReasonCode::GrantedQoS1 => QoS::AtLeastOnce,
                    ReasonCode::GrantedQoS2 => QoS::ExactlyOnce,
                    _ => return Err(format!("SUBSCRIBE {filter} refused: {code:?}")),
                };
                if granted < settings.qos {
                    return Err(format!(
                        "SUBSCRIBE {filter}: broker granted QoS {} < requested {}",
                        granted as u8, settings.qos as u8
                    ));
                }
            }
            other => return Err(format!("expected SUBACK, got {:?}", other.packet_type())),
        }
    }
    conn.last_write_ns = shared.now_ns();
    Ok((conn, session))
}

async fn wait_deadline(pacer: Option<&mut Pacer>, shared: &Shared, at: Option<u64>) {
    match (at, pacer) {
        (Some(t), Some(pacer)) => {
            if let Err(e) = pacer.wait_until(t).await {
                // Fall back on tokio's (coarser) timer rather than spinning.
                eprintln!("loadgen: timerfd: {e}");
                tokio::time::sleep_until((shared.epoch + Duration::from_nanos(t)).into()).await;
            }
        }
        (Some(t), None) => {
            tokio::time::sleep_until((shared.epoch + Duration::from_nanos(t)).into()).await
        }
        (None, _) => std::future::pending().await,
    }
}

/// The connection's event loop: produce into the write buffer, write it when the socket takes it, read
/// and decode everything available, until the phase is [`Phase::Stop`] (`Ok`) or the connection fails.
pub async fn drive<R: Role>(
    conn: &mut Conn,
    role: &mut R,
    shared: &Shared,
    mut pacer: Option<&mut Pacer>,
) -> Result<(), String> {
    let phase_changed = shared.phase_notify.notified();
    tokio::pin!(phase_changed);
    phase_changed.as_mut().enable();

    let ping_every = Duration::from_millis(u64::from(shared.settings.keepalive) * 500);
    let pings = !ping_every.is_zero();
    let ping_timer = tokio::time::sleep(if pings {
        ping_every
    } else {
        Duration::from_secs(86_400)
    });
    tokio::pin!(ping_timer);

    loop {
        let phase = shared.phase();
        if phase == Phase::Stop {
            return Ok(());
        }
        let now = shared.now_ns();
        let want = role.produce(&mut conn.wbuf, phase, now);
        if conn.has_pending_write() {
            conn.try_flush(now).map_err(|e| format!("write: {e}"))?;
        }
        let mut interest = Interest::READABLE;
        if conn.has_pending_write() || want == Want::Now {
            interest |= Interest::WRITABLE;
        }
        let at = match want {
            Want::At(t) => Some(t),
            _ => None,
        };
        tokio::select! {
            biased;
            _ = &mut phase_changed => {
                phase_changed.set(shared.phase_notify.notified());
                phase_changed.as_mut().enable();
            }
            ready = conn.stream.ready(interest) => {
                let ready = ready.map_err(|e| format!("poll: {e}"))?;
                if ready.is_readable() || ready.is_read_closed() || !ready.is_writable() {
                    conn.read_and_decode(role, shared)?;
                }
                if conn.has_pending_write() {
                    conn.try_flush(shared.now_ns()).map_err(|e| format!("write: {e}"))?;
                }
            }
            _ = wait_deadline(pacer.as_deref_mut(), shared, at), if at.is_some() => {}
            _ = &mut ping_timer, if pings => {
                let now = shared.now_ns();
                if now.saturating_sub(conn.last_write_ns) >= ping_every.as_nanos() as u64 {
                    conn.encode(&Packet::PingReq)?;
                }
                ping_timer.as_mut().reset(tokio::time::Instant::now() + ping_every);
            }
        }
    }
}
