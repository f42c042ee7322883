//! A client connection's socket, with its listener's layers: TLS (`transport::tls`, rustls) and/or
//! WebSocket framing (`transport::websocket`), TCP ← TLS ← WebSocket ← MQTT. What the connection's
//! tasks (`connection.rs`, then `serving.rs`) read MQTT bytes from and write them to. Runs on the
//! connection's shard only.
//!
//! Shared by the connection's reader and writer as `Rc<Socket>`; the TCP stream and the layers' state
//! are in `RefCell`s, each borrow lasting one `poll_*` call or one sans-IO call, never an `.await` (the
//! readiness registry keeps the ways one task waits). Only the writer writes to the socket once the
//! connection is served: TLS records and WebSocket frames must not interleave. What the reader finds
//! it owes the client (a pong, the closing handshake, a TLS alert or key update) it leaves in the
//! layers and wakes the writer ([`Socket::poll_owed`]), which sends it ahead of its next data.
//!
//! Write coalescing is kept: everything the writer takes from the outbox at once becomes one WebSocket
//! frame and one plaintext write under TLS (one record per 16 KiB), not one per packet.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use rustls::ServerConnection;

use super::tcp::Tcp;
use crate::session::Chunk;
use crate::transport::websocket::{self, WsConnection};
use crate::transport::Layers;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// How long a closing connection waits for the client to close its side before the socket is dropped.
const LINGER: Duration = Duration::from_secs(2);

thread_local! {
    /// The shard's read buffer (a shard is one thread). A read lands here and only the bytes that arrived
    /// are copied into the connection's own buffer, so an idle connection holds no read buffer: 10,000
    /// idle clients would otherwise pin 80 MiB of 8 KiB buffers.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// One connection's socket (see the module doc).
pub(super) struct Socket {
    tcp: RefCell<Tcp>,
    /// TLS and/or WebSocket state; `None` for plain MQTT over TCP (8 bytes per such connection).
    layers: Option<Box<Layered>>,
}

/// The layers of a TLS or WebSocket connection, and the writer's waker for what they owe the client.
struct Layered {
    tls: Option<RefCell<Box<ServerConnection>>>,
    ws: Option<RefCell<Box<WsConnection>>>,
    /// Set until the WebSocket upgrade is done (the HTTP request is read by [`Socket::handshake`]).
    upgrading: Cell<bool>,
    /// The writer, waiting for outbox data: woken when the reader leaves frames or TLS records
    /// owed to the client (a pong, a close, an alert).
    writer: Cell<Option<Waker>>,
}

impl Socket {
    /// A socket with the `layers` it comes with: fresh ones for a new connection (`upgrading` when its
    /// listener speaks WebSocket), or those a hand-off brought.
    pub(super) fn new(tcp: Tcp, layers: Option<Box<Layers>>, upgrading: bool) -> Socket {
        let layers = layers.map(|l| {
            let Layers { tls, ws } = *l;
            let tls = tls.map(|mut t| {
                // Nothing is written faster than the writer flushes it: the outbox bounds what waits.
                t.set_buffer_limit(None);
                RefCell::new(t)
            });
            Box::new(Layered {
                tls,
                ws: ws.map(RefCell::new),
                upgrading: Cell::new(upgrading),
                writer: Cell::new(None),
            })
        });
        Socket {
            tcp: RefCell::new(tcp),
            layers,
        }
    }

    pub(super) fn fd(&self) -> RawFd {
        self.tcp.borrow().as_raw_fd()
    }

    /// When the kernel received the data last read (ns since the epoch), with the stream asking for it
    /// (`Tcp::set_rx_timestamps`); now when the data carried no time.
    pub(super) fn rx_stamp_or_now(&self) -> u64 {
        match self.tcp.borrow().last_rx_timestamp() {
            0 => super::lookback::now_ns(),
            at => at,
        }
    }

    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.tcp.borrow_mut().set_read_timeout(timeout);
    }

    fn tls(&self) -> Option<&RefCell<Box<ServerConnection>>> {
        self.layers.as_ref().and_then(|l| l.tls.as_ref())
    }

    fn ws(&self) -> Option<&RefCell<Box<WsConnection>>> {
        self.layers.as_ref().and_then(|l| l.ws.as_ref())
    }

    /// The layers, given up to travel with a hand-off (the socket is not used afterwards).
    pub(super) fn into_layers(self) -> Option<Box<Layers>> {
        self.layers.map(|l| {
            Box::new(Layers {
                tls: l.tls.map(RefCell::into_inner),
                ws: l.ws.map(RefCell::into_inner),
            })
        })
    }

    /// A parked connection's waker (`parking.rs`) takes over what its task waited for on this
    /// socket: readability, and what the layers come to owe the client (only the reader makes them
    /// owe, so nothing while parked; the old task's waker is let go). False when the socket is
    /// already readable again: then do not park.
    pub(super) fn hand_waits_to(&self, waker: &Waker) -> bool {
        if let Some(layers) = &self.layers {
            drop(layers.writer.take());
        }
        self.tcp.borrow().hand_read_wait_to(waker)
    }

    /// Run `f` on the TLS session, if there is one.
    pub(super) fn with_tls<R>(&self, f: impl FnOnce(&ServerConnection) -> R) -> Option<R> {
        self.tls().map(|t| f(&t.borrow()))
    }

    /// Complete the TLS handshake, then the WebSocket upgrade, whichever the listener has. Returns
    /// the MQTT bytes the client sent right behind them (the CONNECT, often). On failure the client is
    /// told why first where its protocol can say it: rustls's alert, an HTTP error response.
    pub(super) async fn handshake(&self) -> Result<BytesMut, HandshakeFailure> {
        let mut early = BytesMut::new();
        if let Some(tls) = self.tls() {
            loop {
                self.flush_tls().await.map_err(HandshakeFailure::Tls)?;
                if !tls.borrow().is_handshaking() {
                    break;
                }
                match self.read_tls(tls, &mut early).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(HandshakeFailure::Tls(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the client closed the connection during the TLS handshake",
                        )))
                    }
                    Err(e) => {
                        let _ = self.flush_tls().await;
                        return Err(HandshakeFailure::Tls(e));
                    }
                }
            }
        }
        let Some(layers) = self.layers.as_ref().filter(|l| l.upgrading.get()) else {
            return Ok(early);
        };
        // The HTTP upgrade request, read through TLS when there is TLS.
        let mut request = early;
        let (upgrade, used) = loop {
            match websocket::parse_upgrade(&request) {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) => {
                    let mut out = BytesMut::new();
                    websocket::encode_refusal(&e, &mut out);
                    let _ = self.write_transport(&out).await;
                    return Err(HandshakeFailure::WebSocket(e));
                }
            }
            match self.read_transport(&mut request).await {
                Ok(0) => return Err(HandshakeFailure::Closed),
                Ok(_) => {}
                Err(e) => return Err(HandshakeFailure::Tls(e)),
            }
        };
        let mut out = BytesMut::new();
        websocket::encode_accept(&upgrade, &mut out);
        self.write_transport(&out)
            .await
            .map_err(HandshakeFailure::Tls)?;
        layers.upgrading.set(false);
        if let Some(ws) = &layers.ws {
            // Frames the client sent right behind its request.
            ws.borrow_mut().input.extend_from_slice(&request[used..]);
        }
        Ok(BytesMut::new())
    }

    /// Read what the client sent and append the MQTT bytes (decrypted, deframed) to `buf`. Ok(0) at the
    /// end of the stream (a WebSocket close included).
    ///
    /// A future written out rather than an async fn: the reader waits in it for as long as its client
    /// is idle, and an async fn would keep its arguments twice (memory per idle client).
    pub(super) fn read_some<'a>(&'a self, buf: &'a mut BytesMut) -> ReadSome<'a> {
        match self.layers {
            None => ReadSome::Raw(&self.tcp, buf),
            // Boxed, one allocation per read of a TLS or WebSocket connection: the layers' state
            // across the wait would otherwise be in every connection's reader future.
            Some(_) => ReadSome::Layered(Box::pin(self.read_layered(buf))),
        }
    }

    async fn read_layered(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let Some(ws) = self.ws() else {
            return self.read_transport(buf).await;
        };
        loop {
            let deframed = ws.borrow_mut().deframe(buf);
            if ws.borrow().owes() {
                self.wake_writer();
            }
            match deframed {
                Ok(None) => return Ok(0),
                Ok(Some(0)) => {}
                Ok(Some(n)) => return Ok(n),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            // Read into the connection's frame buffer, taken out so no borrow spans the await, and
            // put back even when this future is dropped at the await (a connection parking,
            // `parking.rs`): a frame's first part must not be lost.
            let mut input = FrameInput::take(ws);
            let read = self.read_transport(&mut input.bytes).await;
            drop(input);
            if read? == 0 {
                return Ok(0);
            }
        }
    }

    /// The bytes under the WebSocket layer: decrypted under TLS, else as read.
    async fn read_transport(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let Some(tls) = self.tls() else {
            return read_raw(&self.tcp, buf).await;
        };
        loop {
            // Decrypted already: a record can hold several packets, and the CONNECT may have come with
            // the handshake's last flight.
            match drain_plaintext(&mut tls.borrow_mut(), buf)? {
                Plaintext::Some(n) => return Ok(n),
                Plaintext::Closed => return Ok(0),
                Plaintext::None => {}
            }
            let read = self.read_tls(tls, buf).await;
            if tls.borrow().wants_write() {
                // An alert or a key update to answer: the writer sends it.
                self.wake_writer();
            }
            match read? {
                None => return Ok(0),
                Some(0) => {}
                Some(n) => return Ok(n),
            }
        }
    }
    /// One socket read fed to rustls: how many plaintext bytes it appended to `buf` (0 when a record is
    /// not complete yet), None at the end of the stream.
    async fn read_tls(
        &self,
        tls: &RefCell<Box<ServerConnection>>,
        buf: &mut BytesMut,
    ) -> io::Result<Option<usize>> {
        poll_fn(|cx| {
            READ_SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let n = match self.tcp.borrow_mut().poll_read(cx, &mut scratch[..]) {
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                if n == 0 {
                    return Poll::Ready(Ok(None));
                }
                let mut tls = tls.borrow_mut();
                let mut rest = &scratch[..n];
                let mut plain = 0;
                while !rest.is_empty() {
                    tls.read_tls(&mut rest)?;
                    tls.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    // Taken at once so rustls's buffer has room for the rest of this read.
                    if let Plaintext::Some(m) = drain_plaintext(&mut tls, buf)? {
                        plain += m;
                    }
                }
                Poll::Ready(Ok(Some(plain)))
            })
        })
        .await
    }

    /// Write everything the writer took from the outbox, after what the layers owe the client: under
    /// WebSocket as one binary frame, under TLS as one plaintext write (one record per 16 KiB, not one
    /// per chunk); plain TCP chunk by chunk as they are (shared payloads not copied).
    pub(super) async fn write_chunks(&self, chunks: &VecDeque<Chunk>) -> io::Result<()> {
        if self.layers.is_none() {
            // Plain MQTT over TCP, the common case: nothing owed, no framing.
            for chunk in chunks {
                write_raw(&self.tcp, chunk.as_slice()).await?;
            }
            return Ok(());
        }
        // Boxed, as for reads (`read_some`): the frame header and TLS records stay out of the
        // writer's future.
        Box::pin(self.write_layered(chunks)).await
    }

    async fn write_layered(&self, chunks: &VecDeque<Chunk>) -> io::Result<()> {
        self.flush_owed().await?;
        let total: usize = chunks.iter().map(|c| c.as_slice().len()).sum();
        let mut header = BytesMut::new();
        if self.ws().is_some() {
            websocket::encode_binary_header(total, &mut header);
        }
        let Some(tls) = self.tls() else {
            // WebSocket over TCP: the frame header, then the chunks as they are.
            write_raw(&self.tcp, &header).await?;
            for chunk in chunks {
                write_raw(&self.tcp, chunk.as_slice()).await?;
            }
            return Ok(());
        };
        {
            let mut tls = tls.borrow_mut();
            let mut writer = tls.writer();
            if chunks.len() == 1 && header.is_empty() {
                writer.write_all(chunks[0].as_slice())?;
            } else {
                let mut joined = Vec::with_capacity(header.len() + total);
                joined.extend_from_slice(&header);
                for chunk in chunks {
                    joined.extend_from_slice(chunk.as_slice());
                }
                writer.write_all(&joined)?;
            }
        }
        self.flush_tls().await
    }

    /// Write MQTT bytes that are already what the client must receive (a refusal CONNACK).
    pub(super) async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        if self.ws().is_some() {
            let mut frame = BytesMut::with_capacity(bytes.len() + 10);
            websocket::encode_binary(bytes, &mut frame);
            return self.write_transport(&frame).await;
        }
        self.write_transport(bytes).await
    }

    /// Write bytes under the WebSocket layer: through TLS when there is TLS.
    async fn write_transport(&self, bytes: &[u8]) -> io::Result<()> {
        match self.tls() {
            None => write_raw(&self.tcp, bytes).await,
            Some(tls) => {
                tls.borrow_mut().writer().write_all(bytes)?;
                self.flush_tls().await
            }
        }
    }

    /// The writer, with no outbox data: ready when the layers owe the client something (see
    /// [`Self::flush_owed`]); otherwise woken when they come to.
    pub(super) fn poll_owed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(layers) = &self.layers else {
            return Poll::Pending;
        };
        if self.owes() {
            return Poll::Ready(());
        }
        layers.writer.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    fn owes(&self) -> bool {
        self.ws().is_some_and(|ws| ws.borrow().owes())
            || self.tls().is_some_and(|tls| tls.borrow().wants_write())
    }

    fn wake_writer(&self) {
        if let Some(w) = self.layers.as_ref().and_then(|l| l.writer.take()) {
            w.wake();
        }
    }

    /// Send what the layers owe the client apart from MQTT data: WebSocket control frames (pongs, the
    /// closing handshake) and TLS records rustls produced while reading. The writer's job only, so
    /// they never land inside another write.
    pub(super) async fn flush_owed(&self) -> io::Result<()> {
        if let Some(ws) = self.ws() {
            let owed = ws.borrow_mut().take_owed();
            if !owed.is_empty() {
                self.write_transport(&owed).await?;
            }
        }
        self.flush_tls().await
    }

    /// Send what rustls has queued (handshake messages, records, alerts).
    async fn flush_tls(&self) -> io::Result<()> {
        let Some(tls) = self.tls() else {
            return Ok(());
        };
        loop {
            let out = {
                let mut tls = tls.borrow_mut();
                if !tls.wants_write() {
                    return Ok(());
                }
                let mut out = Vec::new();
                while tls.wants_write() {
                    tls.write_tls(&mut out)?;
                }
                out
            };
            write_raw(&self.tcp, &out).await?;
        }
    }

    /// Close our side after the data (a WebSocket close frame and a TLS close_notify first), and wait
    /// briefly for the client to close its side so unread input does not turn our FIN into a reset
    /// that could discard the data.
    pub(super) async fn linger_close(&self) {
        self.say_goodbye().await;
        let fd = self.fd();
        // SAFETY: `fd` is the open socket owned by `self.tcp`.
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        self.set_read_timeout(Some(LINGER));
        let mut sink = BytesMut::new();
        let deadline = std::time::Instant::now() + LINGER;
        while std::time::Instant::now() < deadline {
            sink.clear();
            match read_raw(&self.tcp, &mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Close at once, both ways (wakes a reader still waiting with end-of-file); whatever the layers
    /// still have to say (a close frame, an alert, close_notify) goes first, best effort.
    pub(super) async fn shutdown(&self) {
        self.say_goodbye().await;
        // SAFETY: `fd` is the open socket owned by `self.tcp`, which is alive here.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_RDWR) };
    }

    async fn say_goodbye(&self) {
        let Some(layers) = &self.layers else {
            return;
        };
        if let Some(ws) = self.ws().filter(|_| !layers.upgrading.get()) {
            // 1000: normal closure (already sent if the client closed first, or after a frame error).
            ws.borrow_mut().close(1000);
        }
        if let Some(tls) = self.tls() {
            let _ = self.flush_owed().await;
            tls.borrow_mut().send_close_notify();
        }
        let _ = self.flush_owed().await;
    }
}

/// Why a connection's handshakes failed.
#[derive(Debug)]
pub(super) enum HandshakeFailure {
    /// TLS (rustls's reason), or a socket error during a handshake.
    Tls(io::Error),
    /// The WebSocket upgrade request was refused (answered with an HTTP error).
    WebSocket(websocket::HandshakeError),
    /// The client closed the connection before the upgrade request was complete.
    Closed,
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::Tls(e) => write!(f, "TLS: {e}"),
            HandshakeFailure::WebSocket(e) => write!(f, "WebSocket upgrade refused: {e}"),
            HandshakeFailure::Closed => f.write_str("closed during the WebSocket upgrade"),
        }
    }
}

/// What rustls had decrypted.
enum Plaintext {
    /// This many bytes, appended.
    Some(usize),
    /// Nothing yet.
    None,
    /// The client closed the TLS session (close_notify).
    Closed,
}

fn drain_plaintext(tls: &mut ServerConnection, buf: &mut BytesMut) -> io::Result<Plaintext> {
    let mut total = 0;
    loop {
        let len = buf.len();
        buf.resize(len + READ_CHUNK, 0);
        let read = tls.reader().read(&mut buf[len..]);
        match read {
            Ok(n) if n > 0 => {
                buf.truncate(len + n);
                total += n;
            }
            other => {
                buf.truncate(len);
                return match other {
                    _ if total > 0 => Ok(Plaintext::Some(total)),
                    Ok(_) => Ok(Plaintext::Closed),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Plaintext::None),
                    Err(e) => Err(e),
                };
            }
        }
    }
}

/// [`Socket::read_some`]'s future.
pub(super) enum ReadSome<'a> {
    /// Plain MQTT over TCP: two references.
    Raw(&'a RefCell<Tcp>, &'a mut BytesMut),
    Layered(Pin<Box<dyn Future<Output = io::Result<usize>> + 'a>>),
}

impl Future for ReadSome<'_> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ReadSome::Raw(tcp, buf) => poll_read_raw(tcp, cx, buf),
            ReadSome::Layered(read) => read.as_mut().poll(cx),
        }
    }
}

/// Read what the socket has and append it to `buf`.
async fn read_raw(tcp: &RefCell<Tcp>, buf: &mut BytesMut) -> io::Result<usize> {
    poll_fn(|cx| poll_read_raw(tcp, cx, buf)).await
}

fn poll_read_raw(
    tcp: &RefCell<Tcp>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    READ_SCRATCH.with(|scratch| {
        // Borrowed only within this poll: the read fills the slice synchronously when data is ready.
        let mut scratch = scratch.borrow_mut();
        match tcp.borrow_mut().poll_read(cx, &mut scratch[..]) {
            Poll::Ready(Ok(n)) => {
                if buf.is_empty() {
                    // Fresh storage sized to what arrived; the old one lives on only as long as the
                    // payloads decoded from it.
                    *buf = BytesMut::with_capacity(n);
                }
                buf.extend_from_slice(&scratch[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    })
}

async fn write_raw(tcp: &RefCell<Tcp>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = poll_fn(|cx| tcp.borrow_mut().poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// A WebSocket connection's unparsed input while a read waits (see `Socket::read_layered`): given
/// back to the connection when dropped, whether the read finished or was dropped at its wait.
struct FrameInput<'a> {
    ws: &'a RefCell<Box<WsConnection>>,
    bytes: BytesMut,
}

impl<'a> FrameInput<'a> {
    fn take(ws: &'a RefCell<Box<WsConnection>>) -> FrameInput<'a> {
        let bytes = std::mem::take(&mut ws.borrow_mut().input);
        FrameInput { ws, bytes }
    }
}

impl Drop for FrameInput<'_> {
    fn drop(&mut self) {
        self.ws.borrow_mut().input = std::mem::take(&mut self.bytes);
    }
}
