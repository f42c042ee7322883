//! The bytes waiting to be written to one connection, shared between the session (which encodes into it)
//! and the connection's writer (which flushes it). Both run on the home shard's thread, so plain
//! `Cell`/`RefCell` suffice; borrows never cross an `.await`.
//!
//! Zero-copy framing (docs/ARCHITECTURE.md, invariant 3): a PUBLISH is queued as a small per-subscriber header plus
//! the shared payload `Bytes`. Payloads below [`SHARE_MIN`] are copied into the connection's coalescing
//! buffer instead: for them one `memcpy` costs less than an extra `write` syscall plus a refcount touch on a
//! cache line other shards are also touching (every clone or drop of one `Bytes` updates one shared atomic
//! refcount), and coalescing many small packets into one write is what gives QoS 0 fan-out its throughput.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};

/// Payloads at least this large are queued by reference, not copied.
pub const SHARE_MIN: usize = 4096;

/// Why the broker is closing a connection (decides the log line and whether the will is published).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    ClientDisconnect,
    /// Another connection took the session over ([MQTT-3.1.4-2]); v5 reason 0x8E.
    Takeover,
    /// The broker is shutting down; v5 reason 0x8B.
    Shutdown,
    /// The client broke the protocol or a limit; v5 reason given.
    ProtocolError(crate::codec::ReasonCode),
    /// The socket failed or the peer closed it.
    SocketError,
    /// Keep-alive expired.
    KeepAlive,
    /// Its credentials no longer pass the `password_file` (or `allow_anonymous`) after a reload.
    NotAuthorised,
}

/// One piece of queued output.
pub enum Chunk {
    /// Encoded packets owned by this connection.
    Owned(BytesMut),
    /// A payload shared with other subscribers.
    Shared(Bytes),
}

impl Chunk {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Owned(b) => b,
            Chunk::Shared(b) => b,
        }
    }
}

#[derive(Default)]
struct Queue {
    /// Complete chunks in write order, before `tail`.
    chunks: VecDeque<Chunk>,
    /// Where small packets are appended.
    tail: BytesMut,
}

#[derive(Default)]
pub struct Outbox {
    queue: RefCell<Queue>,
    /// Bytes queued or being written (for the slow-subscriber limit).
    pending: Cell<usize>,
    /// The writer's waker while it waits for bytes.
    waker: Cell<Option<Waker>>,
    /// Set when the broker decided to close the connection; the writer flushes what is queued, then closes.
    close: Cell<Option<CloseReason>>,
    /// The size of the last batch the writer took: what a new tail reserves at once. The writer takes
    /// the tail's storage with each batch (an idle connection keeps none), so without it every batch
    /// would grow its buffer again from nothing, one reallocation per doubling (~12% of fan-out
    /// throughput, docs/PERFORMANCE.md).
    batch_hint: Cell<u32>,
    /// When the kernel received the CONNECT that opened this connection (nanoseconds since the
    /// epoch; 0: unknown). A QoS 0 message received before it reaches this connection only late (it
    /// was on its way from another shard or node): see [`Outbox::opened_after`].
    opened_at: u64,
}

/// The most a new tail reserves at once.
const MAX_BATCH_HINT: usize = 64 * 1024;

/// How many written buffers (and batch queues) a shard keeps for its writers.
const SPARES: usize = 64;

thread_local! {
    /// Buffers and batch queues written out by any connection of this shard, for the next batch of
    /// any other: a busy connection encodes into warm storage, an idle one keeps none (the writer
    /// takes its outbox's storage with each batch; memory per idle client, docs/PERFORMANCE.md).
    /// Per thread, as an outbox is used on its session's shard only.
    static SPARE: RefCell<Spares> = const {
        RefCell::new(Spares {
            buffers: Vec::new(),
            queues: Vec::new(),
        })
    };
}

struct Spares {
    buffers: Vec<BytesMut>,
    queues: Vec<VecDeque<Chunk>>,
}

/// A buffer for a new tail: a spare one, else one of `hint` bytes.
fn fresh_tail(hint: usize) -> BytesMut {
    SPARE
        .with(|s| s.borrow_mut().buffers.pop())
        .unwrap_or_else(|| BytesMut::with_capacity(hint))
}

/// A queue for the writer's next batch ([`Outbox::take`]).
pub fn spare_queue() -> VecDeque<Chunk> {
    SPARE
        .with(|s| s.borrow_mut().queues.pop())
        .unwrap_or_default()
}

/// What the writer wrote goes back for other batches: the buffers it owned (up to
/// [`MAX_BATCH_HINT`] each) and the emptied queue.
pub fn recycle_written(mut written: VecDeque<Chunk>) {
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        for chunk in written.drain(..) {
            if let Chunk::Owned(mut b) = chunk {
                if s.buffers.len() < SPARES && b.capacity() <= MAX_BATCH_HINT {
                    b.clear();
                    s.buffers.push(b);
                }
            }
        }
        if s.queues.len() < SPARES {
            s.queues.push(written);
        }
    });
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// The outbox of a connection whose CONNECT the kernel received at `read_at`.
    pub fn opened_at(read_at: u64) -> Outbox {
        Outbox {
            opened_at: read_at,
            ..Outbox::default()
        }
    }

    /// Whether this connection's CONNECT came after a message the kernel received at `read_at`
    /// (false when either time is unknown). A QoS 0 copy of such a message is not for it: when the
    /// message was published, the client was away (QoS 0 is not kept for it without
    /// `queue_qos0_messages`) or on an earlier connection, which it was for. As on one broker that
    /// routes a message the moment it reads it, however late the copy reaches this shard.
    pub fn opened_after(&self, read_at: u64) -> bool {
        read_at != 0 && self.opened_at > read_at
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Append encoded bytes and wake the writer. Ignored once the connection is closing.
    pub fn write(&self, f: impl FnOnce(&mut BytesMut)) {
        if self.close.get().is_some() {
            return;
        }
        let mut q = self.queue.borrow_mut();
        self.ready_tail(&mut q);
        let before = q.tail.len();
        f(&mut q.tail);
        let added = q.tail.len() - before;
        drop(q);
        self.grow(added);
        self.wake();
    }

    /// Append a payload that follows a header written with [`Outbox::write`]: by reference when large.
    pub fn write_payload(&self, payload: &Bytes) {
        if self.close.get().is_some() {
            return;
        }
        let mut q = self.queue.borrow_mut();
        if payload.len() < SHARE_MIN {
            self.ready_tail(&mut q);
            q.tail.put_slice(payload);
        } else {
            if !q.tail.is_empty() {
                let head = q.tail.split();
                q.chunks.push_back(Chunk::Owned(head));
            }
            q.chunks.push_back(Chunk::Shared(payload.clone()));
        }
        drop(q);
        self.grow(payload.len());
        self.wake();
    }

    /// Storage for the tail if the writer took it: a spare buffer, else the last batch's size.
    fn ready_tail(&self, q: &mut Queue) {
        if q.tail.capacity() == 0 {
            q.tail = fresh_tail(self.batch_hint.get() as usize);
        }
    }

    fn grow(&self, added: usize) {
        self.pending.set(self.pending.get() + added);
    }

    /// Bytes queued and not yet written to the socket.
    pub fn pending_bytes(&self) -> usize {
        self.pending.get()
    }

    /// Move everything queued into `out` (the writer then owns it until written).
    pub fn take(&self, out: &mut VecDeque<Chunk>) {
        let mut q = self.queue.borrow_mut();
        if !q.chunks.is_empty() {
            // The outbox keeps no storage of its own between batches (every idle connection would).
            let mut chunks = std::mem::take(&mut q.chunks);
            out.append(&mut chunks);
        }
        if !q.tail.is_empty() {
            // Taken whole, not split off: a split would leave the tail a view of the same storage
            // (kept alive, with a shared header, by every idle connection that was written to).
            let tail = std::mem::take(&mut q.tail);
            self.batch_hint.set(tail.len().min(MAX_BATCH_HINT) as u32);
            out.push_back(Chunk::Owned(tail));
        }
    }

    /// Move everything `staged` holds behind what this outbox holds (a session's writes that waited
    /// for durability, see `Session::release_staged`).
    pub fn append_from(&self, staged: &Outbox) {
        let mut moved = VecDeque::new();
        staged.take(&mut moved);
        staged.pending.set(0);
        if moved.is_empty() || self.close.get().is_some() {
            return;
        }
        let added: usize = moved.iter().map(|c| c.as_slice().len()).sum();
        let mut q = self.queue.borrow_mut();
        if !q.tail.is_empty() {
            let head = q.tail.split();
            q.chunks.push_back(Chunk::Owned(head));
        }
        q.chunks.append(&mut moved);
        drop(q);
        self.grow(added);
        self.wake();
    }

    /// The writer wrote `n` bytes.
    pub fn written(&self, n: usize) {
        self.pending.set(self.pending.get().saturating_sub(n));
    }

    /// Ask the writer to flush what is queued and close. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.close.get().is_none() {
            self.close.set(Some(reason));
        }
        self.wake();
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close.get()
    }

    fn is_empty(&self) -> bool {
        let q = self.queue.borrow();
        q.chunks.is_empty() && q.tail.is_empty()
    }

    /// `waker` waits for data or the close (the writer's, or a parked connection's in place of its
    /// writer's, `shard::parking`). False when there is something to do already.
    pub fn hand_wait_to(&self, waker: &Waker) -> bool {
        if !self.is_empty() || self.close.get().is_some() {
            return false;
        }
        self.waker.set(Some(waker.clone()));
        true
    }

    /// Ready when there is something to write or the connection must close.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self.hand_wait_to(cx.waker()) {
            true => Poll::Pending,
            false => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &Outbox) -> Vec<u8> {
        let mut chunks = VecDeque::new();
        o.take(&mut chunks);
        chunks.iter().flat_map(|c| c.as_slice().to_vec()).collect()
    }

    #[test]
    fn small_payloads_are_coalesced_and_large_ones_shared_in_order() {
        let o = Outbox::new();
        let big = Bytes::from(vec![7u8; SHARE_MIN]);
        o.write(|b| b.put_slice(b"h1"));
        o.write_payload(&Bytes::from_static(b"small"));
        o.write(|b| b.put_slice(b"h2"));
        o.write_payload(&big);
        o.write(|b| b.put_slice(b"h3"));
        assert_eq!(o.pending_bytes(), 2 + 5 + 2 + SHARE_MIN + 2);
        let mut chunks = VecDeque::new();
        o.take(&mut chunks);
        assert_eq!(chunks.len(), 3);
        assert!(matches!(&chunks[1], Chunk::Shared(b) if b.as_ptr() == big.as_ptr()));
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.as_slice().to_vec()).collect();
        let mut expected = b"h1smallh2".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"h3");
        assert_eq!(all, expected);
    }

    #[test]
    fn writes_after_close_are_dropped() {
        let o = Outbox::new();
        o.write(|b| b.put_slice(b"a"));
        o.close(CloseReason::Shutdown);
        o.close(CloseReason::Takeover);
        o.write(|b| b.put_slice(b"b"));
        assert_eq!(drain(&o), b"a");
        assert_eq!(o.close_reason(), Some(CloseReason::Shutdown));
    }
}
