//! A client connection's socket, with TLS when its listener has it: what the connection tasks
//! (`connection.rs`) read MQTT bytes from and write them to. Runs on the connection's shard only.
//!
//! Shared by the reader and the writer task as `Rc<Socket>`; the TCP stream and the rustls state are in
//! `RefCell`s, each borrow lasting one `poll_*` call or one rustls call, never an `.await` (glommio
//! streams keep separate read and write wakers). Only the writer task writes to the socket once the
//! connection is served: TLS records must not interleave. What rustls has to send on its own after the
//! handshake (an alert, a key update) goes out with the next write, or when the connection closes.
//!
//! Write coalescing is kept under TLS: everything the writer takes from the outbox at once becomes one
//! plaintext write, so one TLS record per flush (up to 16 KiB each), not one per packet.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::ServerConnection;

use crate::session::Chunk;

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
    tcp: RefCell<TcpStream>,
    /// The server side of the TLS session, on a TLS listener. Boxed: ~1 KiB that plain connections
    /// do not carry.
    tls: Option<RefCell<Box<ServerConnection>>>,
}

impl Socket {
    pub(super) fn new(tcp: TcpStream, tls: Option<Box<ServerConnection>>) -> Socket {
        let tls = tls.map(|mut t| {
            // Nothing is ever written faster than the writer flushes it: the outbox bounds what is queued.
            t.set_buffer_limit(None);
            RefCell::new(t)
        });
        Socket {
            tcp: RefCell::new(tcp),
            tls,
        }
    }

    pub(super) fn fd(&self) -> RawFd {
        self.tcp.borrow().as_raw_fd()
    }

    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) {
        let _ = self.tcp.borrow().set_read_timeout(timeout);
    }

    /// The TLS session, given up to travel with a hand-off (the socket is not used afterwards).
    pub(super) fn into_tls(self) -> Option<Box<ServerConnection>> {
        self.tls.map(RefCell::into_inner)
    }

    /// Run `f` on the TLS session, if there is one.
    pub(super) fn with_tls<R>(&self, f: impl FnOnce(&ServerConnection) -> R) -> Option<R> {
        self.tls.as_ref().map(|t| f(&t.borrow()))
    }

    /// Complete the TLS handshake (a plain socket has none). Returns what the client sent right behind
    /// its last handshake flight (the CONNECT, often), decrypted. On failure, rustls's alert is sent
    /// before the error comes back, so the client learns why too.
    pub(super) async fn handshake(&self) -> io::Result<BytesMut> {
        let mut early = BytesMut::new();
        let Some(tls) = &self.tls else {
            return Ok(early);
        };
        loop {
            self.flush_tls().await?;
            if !tls.borrow().is_handshaking() {
                return Ok(early);
            }
            match self.read_tls(tls, &mut early).await {
                Ok(None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection during the TLS handshake",
                    ))
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    let _ = self.flush_tls().await;
                    return Err(e);
                }
            }
        }
    }

    /// Read what the client sent and append it (decrypted, under TLS) to `buf`. Ok(0) at the end of
    /// the stream.
    pub(super) async fn read_some(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
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
            match self.read_tls(tls, buf).await? {
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
                let n = match Pin::new(&mut *self.tcp.borrow_mut()).poll_read(cx, &mut scratch[..])
                {
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

    /// Write everything the writer took from the outbox: under TLS as one plaintext write (one record
    /// per 16 KiB, not one per chunk), else chunk by chunk as they are (shared payloads not copied).
    pub(super) async fn write_chunks(&self, chunks: &VecDeque<Chunk>) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            for chunk in chunks {
                write_raw(&self.tcp, chunk.as_slice()).await?;
            }
            return Ok(());
        };
        {
            let mut tls = tls.borrow_mut();
            let mut writer = tls.writer();
            if chunks.len() == 1 {
                writer.write_all(chunks[0].as_slice())?;
            } else {
                let total = chunks.iter().map(|c| c.as_slice().len()).sum();
                let mut joined = Vec::with_capacity(total);
                for chunk in chunks {
                    joined.extend_from_slice(chunk.as_slice());
                }
                writer.write_all(&joined)?;
            }
        }
        self.flush_tls().await
    }

    /// Write bytes that are already what the client must receive (a refusal CONNACK).
    pub(super) async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.tls {
            None => write_raw(&self.tcp, bytes).await,
            Some(tls) => {
                tls.borrow_mut().writer().write_all(bytes)?;
                self.flush_tls().await
            }
        }
    }

    /// Send what rustls has queued (handshake messages, records, alerts).
    async fn flush_tls(&self) -> io::Result<()> {
        let Some(tls) = &self.tls else {
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

    /// Close our side after the data (a TLS close_notify first), and wait briefly for the client to
    /// close its side so unread input does not turn our FIN into a reset that could discard the data.
    pub(super) async fn linger_close(&self) {
        self.close_notify().await;
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

    /// Close at once, both ways (wakes a reader still waiting with end-of-file); under TLS whatever
    /// rustls still has to say (an alert, close_notify) goes first, best effort.
    pub(super) async fn shutdown(&self) {
        self.close_notify().await;
        // SAFETY: `fd` is the open socket owned by `self.tcp`, which is alive here.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_RDWR) };
    }

    async fn close_notify(&self) {
        if let Some(tls) = &self.tls {
            tls.borrow_mut().send_close_notify();
            let _ = self.flush_tls().await;
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

/// Read what the socket has and append it to `buf`.
async fn read_raw(tcp: &RefCell<TcpStream>, buf: &mut BytesMut) -> io::Result<usize> {
    poll_fn(|cx| {
        READ_SCRATCH.with(|scratch| {
            // Borrowed only within this poll: glommio fills the slice synchronously when data is ready.
            let mut scratch = scratch.borrow_mut();
            match Pin::new(&mut *tcp.borrow_mut()).poll_read(cx, &mut scratch[..]) {
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
    })
    .await
}

async fn write_raw(tcp: &RefCell<TcpStream>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *tcp.borrow_mut()).poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}
