//! The "parked" mark of a shard's mail task: the handshake that lets a sender wake a parked shard
//! without a lost wake-up, and without any system call while the shard is awake.
//!
//! Concurrency model: one receiver (the shard's mail task, on its own thread) and any number of
//! senders (other shards' threads). It is a Dekker handshake, with a `fence(SeqCst)` on each side:
//!
//! - receiver: register its waker, [`ParkFlag::set_parked`] (store `true`, fence), then look at its
//!   queues once more and return `Pending` only if they are all empty;
//! - sender: queue its mail, then [`ParkFlag::take_parked`] (fence, load, clear) and wake the
//!   receiver's waker when it returns true.
//!
//! The two fences are ordered one way or the other, so either the sender's load sees `true` (and it
//! wakes the receiver), or the receiver's re-check runs after the sender's fence and sees the mail.
//! Before this type the receiver stored with `Release` and the sender swapped with `AcqRel`: correct
//! only because crossbeam's empty check happens to contain a SeqCst fence. The atomics come from
//! `super::atomics` so that `tests/park_model.rs` compiles this same file against loom's, which
//! explores every interleaving and weak-memory outcome of the handshake.

use super::atomics::{fence, AtomicBool, Ordering};

/// Whether the receiver may be asleep waiting for mail. See the module comment.
#[derive(Debug)]
pub struct ParkFlag {
    /// Set by the receiver just before its last look at the queues; cleared by the receiver when it
    /// found work after all, or by the first sender that saw it set (that sender wakes it).
    parked: AtomicBool,
}

impl Default for ParkFlag {
    fn default() -> Self {
        Self::new()
    }
}

impl ParkFlag {
    pub fn new() -> ParkFlag {
        ParkFlag {
            parked: AtomicBool::new(false),
        }
    }

    /// Receiver, after registering its waker: mark parked. The caller must then look at every queue
    /// a sender fills before it returns `Pending`.
    pub fn set_parked(&self) {
        self.parked.store(true, Ordering::Relaxed);
        // Orders the store before the caller's re-check of its queues (pairs with `take_parked`).
        fence(Ordering::SeqCst);
    }

    /// Receiver: it found work after `set_parked`, so senders need not wake it.
    pub fn clear(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Sender, after its mail is queued: true when the receiver may be asleep, in which case this
    /// call cleared the mark and the caller must wake the receiver. False (the common case under
    /// load) costs a fence and a load: no read-modify-write of a line the receiver's core owns.
    pub fn take_parked(&self) -> bool {
        // Orders the caller's enqueue before the load (pairs with `set_parked`).
        fence(Ordering::SeqCst);
        self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::Relaxed)
    }
}
