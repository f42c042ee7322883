//! Keep-alive enforcement for all of a shard's connections at once: close a client after 1.5 × its
//! keep-alive without a packet [MQTT-3.1.2-24].
//!
//! Why not a read timeout per connection: while any glommio timer is pending, every time the executor goes
//! to sleep it arms that timer in io_uring (one more submission and kernel timer per sleep), and every
//! read re-arms the connection's timer. At fixed rates the broker sleeps once or twice per message, so
//! per-connection timers cost about 8% of the CPU per message (docs/PERFORMANCE.md). Instead the server's
//! ticker thread sends every shard a [`crate::router::Control::Tick`] each [`TICK`]; on it the shard
//! looks only at the connections that could have expired by then ([`Watch`], a heap ordered by the
//! earliest possible expiry), and a read costs one `Cell` store.
//!
//! Precision: a client is closed between its deadline and one tick (plus a wake-up) after it, never
//! before it: the deadline is computed from the time of its last read.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::{Rc, Weak};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the ticker wakes each shard (keep-alive checks, `$SYS`).
pub const TICK: Duration = Duration::from_millis(100);

/// One connection's keep-alive state, shared by its reader (which records reads and waits for
/// expiry) and its shard's [`Watch`].
pub struct KeepAlive {
    /// 1.5 × the keep-alive interval in force.
    /// In milliseconds: 1.5 x 65,535 s fits, and 12 bytes less per client than a `Duration`.
    limit_ms: u32,
    last_read: Cell<Instant>,
    /// The broker is not reading this client (back-pressure): it cannot expire meanwhile.
    paused: Cell<bool>,
    expired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl KeepAlive {
    pub fn new(limit: Duration, now: Instant) -> Rc<KeepAlive> {
        Rc::new(KeepAlive {
            limit_ms: u32::try_from(limit.as_millis()).unwrap_or(u32::MAX),
            last_read: Cell::new(now),
            paused: Cell::new(false),
            expired: Cell::new(false),
            waker: Cell::new(None),
        })
    }

    /// Bytes arrived from the client.
    #[inline]
    pub fn touch(&self, now: Instant) {
        self.last_read.set(now);
    }

    /// The broker stops reading this client for a while (it holds a publisher): the silence that
    /// follows is not the client's.
    pub fn pause(&self) {
        self.paused.set(true);
    }

    /// Reading again: the keep-alive period starts over from `now`.
    pub fn resume(&self, now: Instant) {
        self.paused.set(false);
        self.last_read.set(now);
    }

    /// Ready once the shard found the client silent for longer than the limit.
    pub fn poll_expired(&self, cx: &Context<'_>) -> Poll<()> {
        match self.hand_wait_to(cx.waker()) {
            true => Poll::Pending,
            false => Poll::Ready(()),
        }
    }

    /// `waker` waits for the expiry (the reader's, or a parked connection's in place of its task's,
    /// `parking.rs`). False when it expired already.
    pub fn hand_wait_to(&self, waker: &Waker) -> bool {
        if self.expired.get() {
            return false;
        }
        self.waker.set(Some(waker.clone()));
        true
    }

    fn deadline(&self) -> Instant {
        self.last_read.get() + self.limit()
    }

    fn limit(&self) -> Duration {
        Duration::from_millis(u64::from(self.limit_ms))
    }

    fn expire(&self) {
        self.expired.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// A connection in the watch, due to be looked at `due` (see [`since_epoch`]).
struct Entry {
    due: u64,
    keepalive: Weak<KeepAlive>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest due entry must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.due.cmp(&self.due)
    }
}

/// `t` in nanoseconds since the watches' epoch (their first use in the process): a heap entry is 16
/// bytes with it, 24 with an `Instant` (one per connection with a keep-alive). An instant before the
/// epoch counts as the epoch: its entry is looked at early, when the real deadline is computed again,
/// never late.
fn since_epoch(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// The shard's connections with a keep-alive, by the earliest instant each could expire. An entry is
/// looked at only when due: it then either expires or goes back with the deadline of its last read, so a
/// busy connection costs the watch one heap operation per keep-alive period, not one per read. Entries of
/// closed connections fall out when next due (the watch holds them weakly).
#[derive(Default)]
pub struct Watch {
    heap: BinaryHeap<Entry>,
}

impl Watch {
    pub fn add(&mut self, keepalive: &Rc<KeepAlive>) {
        self.heap.push(Entry {
            due: since_epoch(keepalive.deadline()),
            keepalive: Rc::downgrade(keepalive),
        });
    }

    /// Expire every connection silent for longer than its limit at `now`. Returns how many expired.
    pub fn check(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        let now_ns = since_epoch(now);
        while self.heap.peek().is_some_and(|e| e.due <= now_ns) {
            let Some(entry) = self.heap.pop() else {
                break;
            };
            let Some(k) = entry.keepalive.upgrade() else {
                continue;
            };
            let deadline = if k.paused.get() {
                now + k.limit()
            } else {
                k.deadline()
            };
            if deadline <= now {
                k.expire();
                expired += 1;
            } else {
                self.heap.push(Entry {
                    due: since_epoch(deadline),
                    keepalive: entry.keepalive,
                });
            }
        }
        expired
    }

    /// Connections being watched (closed ones included until they are next due).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_silent_connection_expires_at_its_deadline_and_not_before() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        let k = KeepAlive::new(Duration::from_secs(3), t0);
        w.add(&k);
        let flag = std::sync::Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let cx = Context::from_waker(&waker);
        assert!(k.poll_expired(&cx).is_pending());
        assert_eq!(w.check(t0 + Duration::from_millis(2999)), 0);
        assert!(k.poll_expired(&cx).is_pending());
        assert_eq!(w.check(t0 + Duration::from_secs(3)), 1);
        assert!(
            flag.0.load(std::sync::atomic::Ordering::SeqCst),
            "reader woken"
        );
        assert!(k.poll_expired(&cx).is_ready());
    }

    #[test]
    fn reads_push_the_deadline_back_without_touching_the_heap() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        let k = KeepAlive::new(Duration::from_secs(3), t0);
        w.add(&k);
        k.touch(t0 + Duration::from_secs(2));
        // Due at 3 s, but read at 2 s: goes back with a 5 s deadline.
        assert_eq!(w.check(t0 + Duration::from_secs(3)), 0);
        assert_eq!(w.len(), 1);
        assert_eq!(w.check(t0 + Duration::from_millis(4999)), 0);
        assert_eq!(w.check(t0 + Duration::from_secs(5)), 1);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_paused_connection_does_not_expire_and_starts_over_when_resumed() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        let k = KeepAlive::new(Duration::from_secs(3), t0);
        w.add(&k);
        k.pause();
        assert_eq!(
            w.check(t0 + Duration::from_secs(10)),
            0,
            "held by the broker"
        );
        k.resume(t0 + Duration::from_secs(11));
        assert_eq!(
            w.check(t0 + Duration::from_secs(13)),
            0,
            "due at 13 s, deadline 14 s"
        );
        assert_eq!(w.check(t0 + Duration::from_secs(14)), 1);
    }

    #[test]
    fn closed_connections_fall_out_and_others_keep_their_order() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        let short = KeepAlive::new(Duration::from_secs(1), t0);
        let long = KeepAlive::new(Duration::from_secs(10), t0);
        let closed = KeepAlive::new(Duration::from_secs(2), t0);
        w.add(&long);
        w.add(&short);
        w.add(&closed);
        drop(closed);
        assert_eq!(
            w.check(t0 + Duration::from_secs(5)),
            1,
            "only `short` expires"
        );
        assert!(short.expired.get() && !long.expired.get());
        assert_eq!(w.len(), 1);
    }
}
