//! An attached connection on its home shard: one task at a time, from the session's attachment until
//! the connection closes, none while it is idle.
//!
//! The task runs the connection's two halves side by side ([`run`]): the reader ([`read_loop`]:
//! decode, handle, back-pressure, keep-alive) and the writer ([`write_loop`]: flush the session's
//! [`Outbox`] to the socket, then close it). One task, not a task per half: a second task cost its own
//! allocation, header and counted references to what both halves share (memory per idle client,
//! issue 18; docs/PERFORMANCE.md). Here the halves borrow the shard, the socket and the outbox from
//! the task's own state. When both halves have waited with nothing in flight for about a second, the
//! task ends and what it kept waits in a parked cell until the socket, the outbox or the keep-alive
//! wakes it, which starts a new task (`parking.rs`). A wake-up for one half polls the other as well; that costs no system call, as a socket
//! is only read or written again once the shard's epoll instance reported it ready since its last
//! `EAGAIN` (`tcp.rs`).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::TaskQueueHandle;

use super::admission::connack_properties;
use super::attached::{log_protocol, Attached};
use super::connection::{Accepted, ConnGuard};
use super::keepalive::KeepAlive;
use super::parking::{self, Idleness, Resume};
use super::socket::Socket;
use super::Shard;
use crate::codec::{self, ProtocolVersion, ReasonCode};
use crate::logging::log_type;
use crate::session::{recycle_written, spare_queue, CloseReason, Outbox};
use crate::settings::Settings;

/// What [`serve`] starts from.
pub(super) struct ServeStart {
    pub(super) shard: Rc<RefCell<Shard>>,
    pub(super) socket: Rc<Socket>,
    pub(super) peer: SocketAddr,
    pub(super) guard: ConnGuard,
    pub(super) settings: Arc<Settings>,
    pub(super) accepted: Accepted,
}

/// What an attached connection's halves share, kept by its task from [`attach`] to the end (or by
/// its parked cell while it has no task, `parking.rs`) and lent to both: one reference each, as an
/// async fn keeps every argument twice (the argument and the binding it is moved into).
struct Served {
    shard: Rc<RefCell<Shard>>,
    socket: Rc<Socket>,
    outbox: Rc<Outbox>,
    keepalive: Option<Rc<KeepAlive>>,
    /// The books [`ConnGuard::hand_over`] passed on, closed when the connection ends (both halves
    /// done, or its task or parked cell dropped at shutdown): the connection's id with the shard,
    /// the listener whose `max_connections` slot it holds.
    conn_id: u64,
    /// `max_packet_size`, kept here rather than the settings: what a parked connection keeps is
    /// memory per idle client.
    max_packet_size: u32,
    listener: u16,
    /// Which halves wait with nothing in flight ([`READ_IDLE`], [`WRITE_IDLE`]): both, and the task
    /// may park.
    idle: Cell<u8>,
}

/// The reader waits for the socket with every byte read decoded.
const READ_IDLE: u8 = 1;
/// The writer waits for the outbox with everything written.
const WRITE_IDLE: u8 = 2;

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shard.try_borrow_mut() {
            s.conns.unregister(self.conn_id);
            s.conns.release(usize::from(self.listener));
            // Retained copies left for a connection taken over without its session (normally
            // `Shard::detach` or the takeover passed them on already).
            drop(s.feeds.take(&self.outbox));
        }
    }
}

/// The reader's own state, lent to it by the task.
struct Reading {
    attached: Attached,
    /// Bytes read and not yet decoded (the packets that came with the CONNECT, at first).
    buf: BytesMut,
}

/// Serve an accepted connection on its home shard until it closes: attaches it now, and returns the
/// task's future (None when the broker is shutting down). Not an async fn, for the same reason as
/// [`attach`]: the future then holds only what serving needs.
pub(super) fn serve(start: ServeStart) -> Option<impl Future<Output = ()>> {
    let (served, reading) = attach(start)?;
    Some(run(served, reading))
}

/// The connection's task: its two halves side by side until both end, or until both stayed idle for
/// `parking::PARK_AFTER` ticks, when the task ends and the connection waits without one. Not an
/// async fn: that would keep both arguments twice in the task (memory per client).
#[allow(clippy::manual_async_fn)]
fn run(served: Served, mut reading: Reading) -> impl Future<Output = ()> {
    async move {
        let park = {
            let mut read = pin!(read_loop(&served, &mut reading));
            let mut write = pin!(write_loop(&served));
            let (mut read_done, mut write_done) = (false, false);
            let mut idleness = Idleness::default();
            poll_fn(|cx| {
                if !read_done {
                    read_done = read.as_mut().poll(cx).is_ready();
                }
                if !write_done {
                    write_done = write.as_mut().poll(cx).is_ready();
                }
                if read_done && write_done {
                    return Poll::Ready(false);
                }
                if read_done || write_done || served.idle.get() != READ_IDLE | WRITE_IDLE {
                    idleness.busy();
                    return Poll::Pending;
                }
                let mut s = served.shard.borrow_mut();
                match idleness.idle(&mut s.parking, cx.waker()) {
                    true => Poll::Ready(true),
                    false => Poll::Pending,
                }
            })
            .await
        };
        if park {
            // Both halves were dropped at their waits, where they hold nothing.
            let Reading { attached, buf } = reading;
            debug_assert!(buf.is_empty());
            park_idle(Idle { served, attached });
        }
    }
}

/// A connection without a task (see `parking.rs`): what its task kept, less the empty read buffer.
struct Idle {
    served: Served,
    attached: Attached,
}

// What a parked connection holds, with the cell's counts: 160 bytes (a task was 384). Growing it is
// memory per idle client; say why in docs/PERFORMANCE.md first.
const _: () = assert!(std::mem::size_of::<Idle>() <= 144);

impl Resume for Idle {
    fn resume(self) {
        let Idle { served, attached } = self;
        let reading = Reading {
            attached,
            buf: BytesMut::new(),
        };
        // Scheduled, not run: `glommio::spawn_local` runs a new task at once, inside whatever woke
        // this one (a delivery with the shard borrowed, the readiness dispatch). The default queue,
        // the one every connection task runs in.
        match glommio::spawn_local_into(run(served, reading), TaskQueueHandle::default()) {
            Ok(task) => drop(task.detach()),
            // Only when the executor is gone: the connection goes with it.
            Err(e) => {
                tracing::warn!(target: log_type::WARNING, "Warning: cannot resume a connection: {e}")
            }
        }
    }
}

/// Park an idle connection: its parked cell's waker waits wherever the task's waited (socket,
/// outbox, keep-alive). Resumed at once if one of them has something already.
fn park_idle(idle: Idle) {
    let socket = idle.served.socket.clone();
    let outbox = idle.served.outbox.clone();
    let keepalive = idle.served.keepalive.clone();
    let waker = parking::park(idle);
    let waiting = socket.hand_waits_to(&waker)
        && outbox.hand_wait_to(&waker)
        && keepalive.as_ref().map_or(true, |k| k.hand_wait_to(&waker));
    if !waiting {
        waker.wake();
    }
}

/// Attach the session (CONNACK, what it resumes) and start watching the keep-alive. Not async: what
/// only this needs (the CONNECT, the peer's address) is gone before the task first waits, instead of
/// keeping its room in the task for the connection's whole life.
fn attach(start: ServeStart) -> Option<(Served, Reading)> {
    let ServeStart {
        shard,
        socket,
        peer,
        guard,
        settings,
        accepted,
    } = start;
    let Accepted {
        mut connect,
        assigned_id,
        leftover: buf,
        read_at,
    } = accepted;
    if shard.borrow().conns.shutting_down() {
        return None;
    }
    // The client id decoded from the CONNECT is a view of the buffer it was read into: the session
    // and its directory keep their own copy instead of that buffer and its shared header.
    connect.client_id = connect.client_id.as_str().into();
    let (conn_id, listener) = guard.hand_over();
    let (properties, keep_alive) = connack_properties(&settings, listener, &connect, assigned_id);
    let outbox = Rc::new(Outbox::opened_at(read_at));
    let mut attached = {
        let mut s = shard.borrow_mut();
        let a = s.attach(&connect, properties, outbox.clone(), listener);
        s.conns.set_outbox(conn_id, &outbox);
        a
    };
    // The packets that came with the CONNECT (read on another shard, for a hand-off).
    attached.read_at = read_at;
    if settings.connection_messages {
        let user = connect
            .username
            .as_ref()
            .map(|u| format!(", u'{u}'"))
            .unwrap_or_default();
        tracing::info!(target: log_type::NOTICE,
            "New client connected from {}:{} as {} (p{}, c{}, k{}{}).",
            peer.ip(), peer.port(), connect.client_id, log_protocol(connect.protocol),
            u8::from(connect.clean_start), keep_alive, user);
    }
    // Keep-alive: close after 1.5 x the interval without a packet [MQTT-3.1.2-24], watched by the shard
    // (see `keepalive` for why not a read timeout). The CONNECT timeout ends here.
    socket.set_read_timeout(None);
    let keepalive = (keep_alive > 0).then(|| {
        let limit = Duration::from_millis(u64::from(keep_alive) * 1500);
        let k = KeepAlive::new(limit, Instant::now());
        shard.borrow_mut().keepalive.add(&k);
        k
    });
    let served = Served {
        shard,
        socket,
        outbox,
        conn_id,
        max_packet_size: u32::try_from(settings.max_packet_size).unwrap_or(u32::MAX),
        listener: listener as u16,
        keepalive,
        idle: Cell::new(0),
    };
    Some((served, Reading { attached, buf }))
}

/// The reader: decode what the client sends and handle it until the connection ends, then detach the
/// session and close the outbox (which ends the writer once it flushed what is left).
async fn read_loop(served: &Served, reading: &mut Reading) {
    let protocol = reading.attached.protocol;
    let mut eof = false;
    let reason = 'conn: loop {
        // Set when a hold stopped decoding with packets still in `reading.buf`.
        let mut buffered = false;
        loop {
            match codec::decode(&mut reading.buf, protocol, served.max_packet_size as usize) {
                Ok(Some(packet)) => {
                    let mut s = served.shard.borrow_mut();
                    if let Err(reason) = s.handle_packet(&mut reading.attached, packet) {
                        break 'conn reason;
                    }
                    // A hold, or mail held back for a full mailbox, takes effect at once, not after
                    // the rest of this read: a read can carry thousands of small PUBLISHes, more than a
                    // congested subscriber has room for. Routed on, they would pile up in the overflow
                    // queue unbounded, and the other shards' holds (mail this shard only reads between
                    // reads) would come too late: the room a held subscriber gets beyond its limits
                    // (`Limits::in_transit`) counts the mailboxes, not whole reads.
                    if s.is_held(&reading.attached) || s.mail.overloaded() || s.journal.backlogged()
                    {
                        buffered = !reading.buf.is_empty();
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(target: log_type::NOTICE,
                        "Client {} sent a malformed packet ({e}), disconnecting.", reading.attached.client_id);
                    break 'conn CloseReason::ProtocolError(e.reason_code());
                }
            }
        }
        if let Some(r) = served.outbox.close_reason() {
            break r;
        }
        // While the broker itself stops reading this client (the two back-pressure waits below), the
        // client's packets wait in the socket: that silence is ours and must not expire its keep-alive.
        let mut paused = None;
        // Back-pressure: while other shards cannot take this shard's output, stop reading publishers.
        // Woken when the shard's held-back mail has all gone out (an event, not a timer).
        if served.shard.borrow().mail.overloaded() {
            paused = paused.or_else(|| served.keepalive.as_deref().map(KeepAlive::pause));
            poll_fn(|cx| served.shard.borrow_mut().mail.poll_unpaused(cx)).await;
        }
        // Back-pressure: the disk does not keep up with what this shard must write (or is full).
        if served.shard.borrow().journal.backlogged() {
            paused = paused.or_else(|| served.keepalive.as_deref().map(KeepAlive::pause));
            poll_fn(|cx| served.shard.borrow_mut().journal.poll_room(cx)).await;
        }
        {
            let mut s = served.shard.borrow_mut();
            // Acknowledgements may have drained this client's queue: let go of the publishers it
            // holds, and send more of the retained copies it waits for.
            s.release_holds(reading.attached.slot, reading.attached.generation, false);
            if !s.feeds.is_empty() {
                s.feed_retained(&served.outbox);
            }
        }
        // Back-pressure: a subscriber this client feeds is falling behind; wait for its release or for
        // the hold's lease to run out.
        loop {
            let Some(until) = served.shard.borrow_mut().held_until(&reading.attached) else {
                break;
            };
            paused = paused.or_else(|| served.keepalive.as_deref().map(KeepAlive::pause));
            let lease = until.saturating_duration_since(Instant::now());
            // Boxed, and built in place (a `let` of either part would keep its room in this future):
            // a timer in this rare wait would otherwise be in every reader's future.
            Box::pin(futures_lite::future::or(
                poll_fn(|cx| {
                    served
                        .shard
                        .borrow_mut()
                        .poll_released(&reading.attached, cx)
                }),
                glommio::timer::sleep(lease),
            ))
            .await;
        }
        if let (Some(()), Some(k)) = (paused, &served.keepalive) {
            k.resume(Instant::now());
        }
        if buffered {
            futures_lite::future::yield_now().await;
            continue;
        }
        // Fairness: a fast publisher's socket is always readable, so without a yield its reader would run
        // until glommio's time slice ends, starving the acknowledgements and writes of the clients it
        // publishes to (whose queues would then overflow).
        futures_lite::future::yield_now().await;
        if reading.buf.is_empty() {
            // Everything read is decoded: let the storage go before waiting (the next read brings
            // fresh storage sized to what arrives, `socket.rs`), not keep it for every idle client.
            reading.buf = BytesMut::new();
        }
        // Idle with nothing undecoded: the task may park here (`run`).
        if reading.buf.is_empty() {
            served.idle.set(served.idle.get() | READ_IDLE);
        }
        let read = served.socket.read_some(&mut reading.buf);
        let read = match &served.keepalive {
            Some(k) => {
                let expired = poll_fn(|cx| {
                    k.poll_expired(cx)
                        .map(|()| Err(io::ErrorKind::TimedOut.into()))
                });
                futures_lite::future::or(read, expired).await
            }
            None => read.await,
        };
        served.idle.set(served.idle.get() & !READ_IDLE);
        match read {
            Ok(0) => {
                eof = true;
                break CloseReason::SocketError;
            }
            Ok(n) => {
                if let Some(k) = &served.keepalive {
                    k.touch(Instant::now());
                }
                reading.attached.read_at = served.socket.rx_stamp_or_now();
                served.shard.borrow_mut().stats.bytes_received += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break CloseReason::KeepAlive,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // A TLS record or WebSocket frame that breaks its protocol: said once, here.
                tracing::info!(target: log_type::NOTICE,
                    "Client {} sent invalid data ({e}), disconnecting.", reading.attached.client_id);
                break CloseReason::SocketError;
            }
            Err(_) => break CloseReason::SocketError,
        }
    };
    // A close decided elsewhere (takeover, shutdown) is the real reason the read ended.
    let reason = match served.outbox.close_reason() {
        Some(r @ (CloseReason::Takeover | CloseReason::Shutdown | CloseReason::NotAuthorised)) => r,
        _ => reason,
    };
    let id = &reading.attached.client_id;
    let connection_messages = served.shard.borrow().settings.connection_messages;
    match reason {
        CloseReason::ClientDisconnect => {
            if connection_messages {
                tracing::info!(target: log_type::NOTICE, "Client {id} disconnected.");
            }
        }
        CloseReason::SocketError if eof => {
            if connection_messages {
                tracing::info!(target: log_type::NOTICE, "Client {id} closed its connection.");
            }
        }
        CloseReason::SocketError => {
            tracing::info!(target: log_type::NOTICE, "Socket error on client {id}, disconnecting.")
        }
        CloseReason::KeepAlive => {
            tracing::info!(target: log_type::NOTICE, "Client {id} has exceeded timeout, disconnecting.");
            if protocol == ProtocolVersion::V5 {
                served.outbox.write(|out| {
                    codec::encode_disconnect(ReasonCode::KeepAliveTimeout, protocol, out)
                });
            }
        }
        CloseReason::ProtocolError(code) => {
            tracing::info!(target: log_type::NOTICE, "Client {id} disconnected due to protocol error ({code:?}).");
            if protocol == ProtocolVersion::V5 {
                served
                    .outbox
                    .write(|out| codec::encode_disconnect(code, protocol, out));
            }
        }
        CloseReason::NotAuthorised => {
            tracing::info!(target: log_type::NOTICE, "Client {id} disconnected, not authorised.");
        }
        CloseReason::Takeover | CloseReason::Shutdown => {}
    }
    served.shard.borrow_mut().detach(&reading.attached, reason);
    served.outbox.close(reason);
}

/// Flush the outbox to the socket until the connection closes, then close the socket.
async fn write_loop(served: &Served) {
    let mut failed = false;
    loop {
        // Outbox data, or what the layers owe the client (a pong, a close frame, a TLS alert). Idle
        // meanwhile: the task may park here (`run`).
        served.idle.set(served.idle.get() | WRITE_IDLE);
        let data = poll_fn(|cx| match served.outbox.poll_ready(cx) {
            Poll::Ready(()) => Poll::Ready(true),
            Poll::Pending => served.socket.poll_owed(cx).map(|()| false),
        })
        .await;
        served.idle.set(served.idle.get() & !WRITE_IDLE);
        if !data {
            // Boxed here and below: what only layered or closing connections need stays out of
            // every connection's writer future (memory per idle client).
            if Box::pin(served.socket.flush_owed()).await.is_err() {
                failed = true;
                break;
            }
            continue;
        }
        // Boxed, one allocation per batch written: the batch and the write's state stay out of the
        // task, which every idle client keeps (memory per idle client).
        match Box::pin(write_batch(served)).await {
            Ok(true) => {}
            // Close requested and everything before it written.
            Ok(false) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    finish(served, failed).await;
}

/// Write what the outbox holds now: Ok(false) when it holds nothing (closed and flushed).
async fn write_batch(served: &Served) -> io::Result<bool> {
    let mut chunks = spare_queue();
    served.outbox.take(&mut chunks);
    if chunks.is_empty() {
        recycle_written(chunks);
        return Ok(false);
    }
    served.socket.write_chunks(&chunks).await?;
    let n: usize = chunks.iter().map(|c| c.as_slice().len()).sum();
    served.outbox.written(n);
    let mut s = served.shard.borrow_mut();
    s.stats.bytes_sent += n as u64;
    // Room in the outbox for more of the retained copies a SUBSCRIBE asked for (`feeds`).
    if !s.feeds.is_empty() {
        s.feed_retained(&served.outbox);
    }
    drop(s);
    // The written buffers go to the shard's spares, not back to this outbox: a buffer kept for the
    // next write would stay with every client that went idle after it.
    recycle_written(chunks);
    Ok(true)
}

/// Close the socket once the writer is done: after the reader (flushed), or on a failed write.
async fn finish(served: &Served, failed: bool) {
    match (failed, served.outbox.close_reason()) {
        // The reader is done: close our side after the data, and wait briefly for the client to close
        // its side so unread input does not turn our FIN into a reset that could discard the data.
        (
            false,
            Some(
                CloseReason::ClientDisconnect
                | CloseReason::ProtocolError(_)
                | CloseReason::KeepAlive,
            ),
        ) => {
            Box::pin(served.socket.linger_close()).await;
        }
        _ => {
            if failed {
                served.outbox.close(CloseReason::SocketError);
            }
            // Wakes the reader (if still reading) with end-of-file.
            Box::pin(served.socket.shutdown()).await;
        }
    }
}
