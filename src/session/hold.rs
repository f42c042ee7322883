//! Back-pressure holds between subscribers that fall behind and the publishers that feed them.
//!
//! Why: a subscriber that keeps acknowledging but more slowly than its publishers publish would otherwise
//! overflow its queue (`max_queued_messages`) and lose acknowledged QoS 1/2 messages. Instead, while its
//! queue is at least half full, it *holds* each publisher whose message it had to queue: the publisher's
//! connection is not read (TCP then slows the client down) until the subscriber drains to a quarter of its
//! limits and *releases* it. A hold is a lease of [`HOLD_LEASE`]: a subscriber that stops acknowledging
//! stops renewing, so its publishers go on and it only costs its own queue (docs/ARCHITECTURE.md, invariant 6). A lost
//! release (a subscriber's session that vanished) therefore costs a publisher one lease at most.
//!
//! Concurrency model: both halves live in a [`super::Session`] on its home shard; the subscriber's shard
//! tells a publisher's shard with `Mail::Hold` / `Mail::Release` when they differ. No I/O; `now` is an input.

use std::task::Waker;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

/// How long one hold keeps a publisher from being read unless renewed or released. Short enough that a
/// subscriber that stalled frees its publishers quickly; long enough that a held publisher slips only one
/// read's worth of messages per lease into a congested subscriber's queue.
pub const HOLD_LEASE: Duration = Duration::from_millis(100);

/// A publishing session: (home shard, slot), as in `Message::origin`.
pub type Origin = (u16, u32);

/// The publisher half: how many subscribers hold this session, until when, and who waits for the end.
#[derive(Debug, Default)]
pub struct PublisherHold {
    /// Subscribers holding this publisher (a subscriber counts once until it releases).
    holders: u16,
    /// The lease: the publisher is held while `holders > 0` and `now < until`.
    until: Option<Instant>,
    /// The connection reader waiting for the hold to end.
    waker: Option<Waker>,
}

impl PublisherHold {
    /// A subscriber holds (or, with [`HoldSignal::Renew`], still holds) this publisher until
    /// `now + HOLD_LEASE`.
    pub fn hold(&mut self, signal: HoldSignal, now: Instant) {
        if signal == HoldSignal::Hold || self.holders == 0 {
            self.holders = self.holders.saturating_add(1);
        }
        self.until = Some(now + HOLD_LEASE);
    }

    /// One holder let go. Wakes the waiting reader when none is left.
    pub fn release(&mut self) {
        self.holders = self.holders.saturating_sub(1);
        if self.holders == 0 {
            self.until = None;
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// Whether some subscriber holds this publisher (cheap: no clock; the lease may have run out).
    pub fn held(&self) -> bool {
        self.until.is_some()
    }

    /// Until when the publisher must not be read, if it is held at `now`. A lease that ran out forgets
    /// its holders: one that still holds renews (counted anew), a release from one that does not is
    /// ignored.
    pub fn held_until(&mut self, now: Instant) -> Option<Instant> {
        match self.until {
            Some(until) if self.holders > 0 && now < until => Some(until),
            _ => {
                self.holders = 0;
                self.until = None;
                None
            }
        }
    }

    /// Wake `waker` when the last holder releases (the lease ending is the caller's timer).
    pub fn wait(&mut self, waker: &Waker) {
        self.waker = Some(waker.clone());
    }
}

/// What a subscriber must tell a publisher after [`Holding::note`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldSignal {
    /// A new hold.
    Hold,
    /// Extend a hold this subscriber already has.
    Renew,
}

/// The subscriber half: the publishers this session holds, with when each hold was last sent.
#[derive(Debug, Default)]
pub struct Holding {
    /// A `Vec`, not inline: every session has a `Holding` and few ever hold anyone (memory per idle
    /// client); it is allocated under congestion only and freed when the holds are let go.
    origins: Vec<(Origin, Instant)>,
}

impl Holding {
    /// A message from `origin` had to wait in the congested queue: hold its publisher, or renew a hold
    /// older than half a lease. None when a hold sent recently still stands.
    pub fn note(&mut self, origin: Origin, now: Instant) -> Option<HoldSignal> {
        match self.origins.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, sent)) if now.saturating_duration_since(*sent) < HOLD_LEASE / 2 => None,
            Some((_, sent)) => {
                *sent = now;
                Some(HoldSignal::Renew)
            }
            None => {
                self.origins.push((origin, now));
                Some(HoldSignal::Hold)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Let every held publisher go; returns them so the shard can tell each.
    pub fn take(&mut self) -> SmallVec<[Origin; 4]> {
        std::mem::take(&mut self.origins)
            .into_iter()
            .map(|(o, _)| o)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lasts_one_lease_unless_renewed() {
        let t0 = Instant::now();
        let mut p = PublisherHold::default();
        assert_eq!(p.held_until(t0), None);
        p.hold(HoldSignal::Hold, t0);
        assert_eq!(p.held_until(t0), Some(t0 + HOLD_LEASE));
        p.hold(HoldSignal::Renew, t0 + HOLD_LEASE / 2);
        assert_eq!(
            p.held_until(t0 + HOLD_LEASE),
            Some(t0 + HOLD_LEASE / 2 + HOLD_LEASE),
            "a renewal extends it"
        );
        assert_eq!(p.held_until(t0 + 2 * HOLD_LEASE), None, "the lease ran out");
        assert!(!p.held(), "and its holders are forgotten");
        p.hold(HoldSignal::Renew, t0 + 2 * HOLD_LEASE);
        assert!(p.held(), "a holder that still holds renews");
        p.release();
        assert!(!p.held());
    }

    #[test]
    fn the_publisher_is_free_only_when_every_holder_released() {
        let t0 = Instant::now();
        let mut p = PublisherHold::default();
        p.hold(HoldSignal::Hold, t0);
        p.hold(HoldSignal::Hold, t0);
        p.hold(HoldSignal::Renew, t0);
        p.release();
        assert!(p.held_until(t0).is_some(), "one holder left");
        p.release();
        assert_eq!(p.held_until(t0), None);
        // A stray release (from a holder whose hold was already counted out) does not underflow.
        p.release();
        p.hold(HoldSignal::Hold, t0);
        assert!(p.held_until(t0).is_some());
    }

    #[test]
    fn the_last_release_wakes_the_reader() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut p = PublisherHold::default();
        p.hold(HoldSignal::Hold, Instant::now());
        p.hold(HoldSignal::Hold, Instant::now());
        p.wait(&waker);
        p.release();
        assert!(!flag.0.load(Ordering::SeqCst));
        p.release();
        assert!(flag.0.load(Ordering::SeqCst));
    }

    #[test]
    fn a_subscriber_signals_each_publisher_once_per_half_lease() {
        let t0 = Instant::now();
        let mut h = Holding::default();
        assert_eq!(h.note((0, 1), t0), Some(HoldSignal::Hold));
        assert_eq!(h.note((1, 1), t0), Some(HoldSignal::Hold));
        assert_eq!(h.note((0, 1), t0 + Duration::from_millis(1)), None);
        assert_eq!(h.note((0, 1), t0 + HOLD_LEASE / 2), Some(HoldSignal::Renew));
        let mut all = h.take().to_vec();
        all.sort_unstable();
        assert_eq!(all, vec![(0, 1), (1, 1)]);
        assert!(h.is_empty());
        assert_eq!(h.note((0, 1), t0), Some(HoldSignal::Hold), "held anew");
    }
}
