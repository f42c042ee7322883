//! Back-pressure holds between subscribers that fall behind and the publishers that feed them, and
//! `slow_subscriber_policy`, which decides when a subscriber may hold anyone.
//!
//! Why holds: a subscriber that keeps acknowledging but more slowly than its publishers publish would
//! otherwise overflow its queue (`max_queued_messages`) and lose acknowledged QoS 1/2 messages. Instead,
//! while its queue is at least half full (it is *congested*), it may *hold* each publisher whose message it
//! had to queue: the publisher's connection is not read (TCP then slows the client down) until the
//! subscriber drains to a quarter of its limits and *releases* it. A hold is a lease of [`HOLD_LEASE`]: a
//! subscriber that stops acknowledging stops renewing, so its publishers go on and it only costs its own
//! queue. A lost release (a subscriber's session that vanished) therefore costs a publisher one lease at
//! most.
//!
//! Why not always: a publisher is one connection, so holding it slows it down for *every* subscriber,
//! and one slow subscriber on `#` would throttle a publisher that a fast subscriber also reads (Mosquitto
//! instead drops for the slow one alone, and the fast one gets everything). Which is right depends on
//! who else reads the publisher, hence [`SlowSubscriberPolicy`]:
//! - `hold_if_all_behind` (default): a publisher is held only while every subscriber it currently
//!   feeds is behind. A congested subscriber with a sibling that keeps up holds nobody: its queue fills
//!   to exactly `max_queued_messages` / `max_queued_bytes` and further messages are dropped for it alone.
//!   Fan-in (many publishers, one slow subscriber) is still lossless, since there every publisher's only
//!   subscriber is the congested one.
//! - `hold`: any congested subscriber holds the publishers that feed it (shardmq's earlier behaviour).
//! - `drop`: never hold; queue to the limits, then drop (Mosquitto's behaviour).
//!
//! How `hold_if_all_behind` decides, with what each shard already knows and no mail per message:
//! 1. Per shard, per message. The shard that fans a message from publisher O out to its own sessions
//!    first asks whether any recipient *keeps up*: is connected and has room (at QoS 1/2 it would send
//!    the message at once, or queue it and still be below half its limits; at QoS 0 its outbox is below
//!    its soft limit). If one does, nobody on this shard holds O for this message. Otherwise each
//!    congested recipient holds O as under `hold`. A recipient that is away, not allowed to read the
//!    topic, or that would discard the message (too large) does not count either way: holding O costs it
//!    nothing. QoS 0 recipients count like the others: a hold would slow them down as much.
//! 2. Across shards. When O's home shard routes a publish it records, in O's [`PublisherHold`], the
//!    shards that may object: every other shard it sent the message to, and itself only if one of its
//!    own recipients kept up (it knows at once). [`PublisherHold`] keeps its holds per shard, and O is
//!    held only while the shards holding it cover every shard its latest publish reached. A shard whose
//!    subscribers keep up never holds, so O goes on; when every reached shard holds, O is held. Leases,
//!    renewals and releases work per shard as before, except that a release from a shard ends that
//!    shard's hold at once and makes that shard one whose agreement is needed until O's next publish
//!    says again (one of its subscribers caught up, so it no longer agrees); it wakes O's reader when O
//!    stops being held.
//! 3. The extra room. While its holds take effect a congested, progressing subscriber may queue beyond
//!    its limits (twice `max_queued_messages`, plus what other shards' mailboxes may already carry):
//!    that absorbs what was read and routed before the hold stopped the publisher. Under `hold` it gets
//!    that room for every message, as before. Under `hold_if_all_behind` only for a message whose hold
//!    needs nobody else's agreement: it reached this shard only and nobody here keeps up. Otherwise the
//!    hold may well not take effect, so the subscriber gets exactly the limits, as under `drop`.
//!
//! Why this way: an exact answer to "is every subscriber of O behind?" would need the subscribers'
//! shards to agree on every message. Instead each shard answers for its own sessions as it delivers (one
//! look at the recipients before delivering, which stops at the first that keeps up), and the home
//! shard combines the answers through the holds it receives anyway: no new mail per message, one `u64`
//! store per publish (a set above 64 shards), and nothing at all under `hold` and `drop`. It errs
//! towards dropping: another shard whose recipients of a publish do not count at all (all away, say)
//! never holds, so O is not held while it publishes there too, and its slow subscribers get Mosquitto's
//! behaviour. A subscriber that keeps up waits for a hold only when it subscribed while O was held (until
//! that lease ends), or when it was itself behind (until it drained to a quarter).
//! `$SYS/broker/publish/messages/dropped` counts the messages dropped, and the first drop of an episode is
//! logged (`Outgoing messages are being dropped for client ID.`, as Mosquitto words it).
//!
//! Concurrency model: both halves live in a [`super::Session`] on its home shard; the subscriber's shard
//! tells a publisher's shard with `Mail::Hold` / `Mail::Release` (naming itself) when they differ. No I/O;
//! `now` is an input.

use std::task::Waker;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::index::ShardSet;

/// How long one hold keeps a publisher from being read unless renewed or released. Short enough that a
/// subscriber that stalled frees its publishers quickly; long enough that a held publisher slips only one
/// read's worth of messages per lease into a congested subscriber's queue.
pub const HOLD_LEASE: Duration = Duration::from_millis(100);

/// A publishing session: (home shard, slot), as in `Message::origin`.
pub type Origin = (u16, u32);

/// `slow_subscriber_policy`: when a subscriber that falls behind may hold its publishers (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowSubscriberPolicy {
    /// Hold a publisher only while every subscriber it feeds is behind; otherwise drop for the slow one.
    #[default]
    HoldIfAllBehind,
    /// Any congested subscriber holds the publishers feeding it.
    Hold,
    /// Never hold: queue to the limits, then drop (Mosquitto).
    Drop,
}

impl SlowSubscriberPolicy {
    /// Every policy, in the order the documentation lists them.
    pub const ALL: [SlowSubscriberPolicy; 3] = [
        SlowSubscriberPolicy::HoldIfAllBehind,
        SlowSubscriberPolicy::Hold,
        SlowSubscriberPolicy::Drop,
    ];

    /// The value as written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            SlowSubscriberPolicy::HoldIfAllBehind => "hold_if_all_behind",
            SlowSubscriberPolicy::Hold => "hold",
            SlowSubscriberPolicy::Drop => "drop",
        }
    }

    /// The policy a config value names.
    pub fn from_name(name: &str) -> Option<SlowSubscriberPolicy> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// One shard's hold on a publisher.
#[derive(Debug, Clone, Copy)]
struct ShardHold {
    shard: u16,
    /// Subscribers on that shard holding the publisher (one counts once until it releases).
    holders: u16,
    /// The lease: this shard holds the publisher while `now < until`.
    until: Instant,
}

/// The shards a publisher's latest publish reached that may object to holding it (module doc, step 2).
#[derive(Debug)]
enum Reach {
    /// Every such shard is below 64: bit `s` for shard `s`.
    Low(u64),
    /// Some shard is 64 or above (allocated once, then overwritten in place).
    Any(Box<ShardSet>),
}

impl Default for Reach {
    fn default() -> Self {
        Reach::Low(0)
    }
}

impl Reach {
    fn insert(&mut self, shard: u16) {
        match self {
            Reach::Low(bits) if shard < 64 => *bits |= 1 << shard,
            Reach::Low(bits) => {
                let mut set: ShardSet = (0..64).filter(|s| *bits & (1 << s) != 0).collect();
                set.insert(shard);
                *self = Reach::Any(Box::new(set));
            }
            Reach::Any(set) => {
                set.insert(shard);
            }
        }
    }

    fn contains(&self, shard: u16) -> bool {
        match self {
            Reach::Low(bits) => shard < 64 && bits & (1 << shard) != 0,
            Reach::Any(set) => set.contains(shard),
        }
    }
}

/// The publisher half: which shards hold this session, until when, which shards its latest publish
/// reached, and who waits for the hold to end.
#[derive(Debug, Default)]
pub struct PublisherHold {
    /// The holding shards. A `Vec`, not inline: every session has a `PublisherHold` and few are ever
    /// held (memory per idle client); allocated while held only.
    shards: Vec<ShardHold>,
    /// `hold_if_all_behind`: the shards whose agreement a hold needs (recorded by [`Self::reached`]).
    reach: Reach,
    /// The connection reader waiting for the hold to end.
    waker: Option<Waker>,
}

impl PublisherHold {
    /// A subscriber on `shard` holds (or, with [`HoldSignal::Renew`], still holds) this publisher until
    /// `now + HOLD_LEASE`.
    pub fn hold(&mut self, shard: u16, signal: HoldSignal, now: Instant) {
        let until = now + HOLD_LEASE;
        match self.shards.iter_mut().find(|h| h.shard == shard) {
            Some(h) => {
                if h.until <= now {
                    // The lease ran out: its holders are forgotten, one that still holds counts anew.
                    h.holders = 0;
                }
                if signal == HoldSignal::Hold || h.holders == 0 {
                    h.holders = h.holders.saturating_add(1);
                }
                h.until = until;
            }
            None => self.shards.push(ShardHold {
                shard,
                holders: 1,
                until,
            }),
        }
    }

    /// One holder on `shard` let go. Under `hold_if_all_behind` that ends the shard's hold, and the shard
    /// must agree to any hold from now on (one of its subscribers caught up; the next publish says
    /// again who must agree); under `hold` the shard holds until its last holder lets go. Wakes the
    /// waiting reader when the publisher is no longer held.
    pub fn release(&mut self, shard: u16, policy: SlowSubscriberPolicy) {
        if policy == SlowSubscriberPolicy::HoldIfAllBehind {
            self.reach.insert(shard);
        }
        let Some(i) = self.shards.iter().position(|h| h.shard == shard) else {
            // A stray release (from a holder whose lease already ran out) is ignored.
            return;
        };
        let h = &mut self.shards[i];
        h.holders = h.holders.saturating_sub(1);
        if h.holders > 0 && policy == SlowSubscriberPolicy::Hold {
            return;
        }
        self.shards.swap_remove(i);
        if self.shards.is_empty() {
            self.shards = Vec::new();
        }
        if !self.held(policy) {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// `hold_if_all_behind`: the latest publish reached `shards` (those that may object: see the module
    /// doc). Called on every publish, so it never allocates below 64 shards.
    pub fn reached(&mut self, shards: &ShardSet) {
        match (shards.as_u64(), &mut self.reach) {
            (_, Reach::Any(set)) => **set = *shards,
            (Some(bits), Reach::Low(low)) => *low = bits,
            (None, reach) => *reach = Reach::Any(Box::new(*shards)),
        }
    }

    /// Whether the holding shards are every shard the latest publish reached.
    fn covers(&self) -> bool {
        match &self.reach {
            Reach::Low(bits) => {
                let holding = self
                    .shards
                    .iter()
                    .filter(|h| h.shard < 64)
                    .fold(0u64, |m, h| m | 1 << h.shard);
                bits & !holding == 0
            }
            Reach::Any(set) => set.iter().all(|s| self.shards.iter().any(|h| h.shard == s)),
        }
    }

    /// Whether this publisher is held (cheap: no clock, so a lease may have run out; [`Self::held_until`]
    /// has the last word).
    pub fn held(&self, policy: SlowSubscriberPolicy) -> bool {
        !self.shards.is_empty()
            && (policy != SlowSubscriberPolicy::HoldIfAllBehind || self.covers())
    }

    /// Until when the publisher must not be read, if it is held at `now`: under `hold` while some shard's
    /// lease runs, under `hold_if_all_behind` while the live leases cover every reached shard. Leases
    /// that ran out are forgotten with their holders: one that still holds renews (counted anew), a
    /// release from one that does not is ignored.
    pub fn held_until(&mut self, now: Instant, policy: SlowSubscriberPolicy) -> Option<Instant> {
        self.shards.retain(|h| now < h.until);
        if self.shards.is_empty() {
            self.shards = Vec::new();
            return None;
        }
        if !self.held(policy) {
            return None;
        }
        let last = self.shards.iter().map(|h| h.until).max()?;
        if policy != SlowSubscriberPolicy::HoldIfAllBehind {
            return Some(last);
        }
        // The cover ends with the first lease of a reached shard to run out (or with the last lease).
        let first = self
            .shards
            .iter()
            .filter(|h| self.reach.contains(h.shard))
            .map(|h| h.until)
            .min();
        Some(first.map_or(last, |f| f.min(last)))
    }

    /// Wake `waker` when a release ends the hold (the lease ending is the caller's timer).
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use SlowSubscriberPolicy::{Hold as HOLD, HoldIfAllBehind as ALL_BEHIND};

    struct Flag(AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        (flag, waker)
    }

    fn shards(ids: &[u16]) -> ShardSet {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_hold_lasts_one_lease_unless_renewed() {
        for policy in [HOLD, ALL_BEHIND] {
            let t0 = Instant::now();
            let mut p = PublisherHold::default();
            p.reached(&shards(&[1]));
            assert_eq!(p.held_until(t0, policy), None);
            p.hold(1, HoldSignal::Hold, t0);
            assert_eq!(p.held_until(t0, policy), Some(t0 + HOLD_LEASE));
            p.hold(1, HoldSignal::Renew, t0 + HOLD_LEASE / 2);
            assert_eq!(
                p.held_until(t0 + HOLD_LEASE, policy),
                Some(t0 + HOLD_LEASE / 2 + HOLD_LEASE),
                "a renewal extends it"
            );
            assert_eq!(
                p.held_until(t0 + 2 * HOLD_LEASE, policy),
                None,
                "the lease ran out"
            );
            assert!(!p.held(policy), "and its holders are forgotten");
            p.hold(1, HoldSignal::Renew, t0 + 2 * HOLD_LEASE);
            assert!(p.held(policy), "a holder that still holds renews");
            p.release(1, policy);
            assert!(!p.held(policy));
        }
    }

    #[test]
    fn under_hold_the_publisher_is_free_only_when_every_holder_released() {
        let t0 = Instant::now();
        let mut p = PublisherHold::default();
        p.hold(0, HoldSignal::Hold, t0);
        p.hold(0, HoldSignal::Hold, t0);
        p.hold(0, HoldSignal::Renew, t0);
        p.hold(2, HoldSignal::Hold, t0);
        p.release(0, HOLD);
        assert!(p.held_until(t0, HOLD).is_some(), "two holders left");
        p.release(0, HOLD);
        assert!(p.held_until(t0, HOLD).is_some(), "shard 2 still holds");
        p.release(2, HOLD);
        assert_eq!(p.held_until(t0, HOLD), None);
        // A stray release (from a holder whose hold was already counted out) does not underflow.
        p.release(2, HOLD);
        p.hold(2, HoldSignal::Hold, t0);
        assert!(p.held_until(t0, HOLD).is_some());
    }

    #[test]
    fn under_hold_any_shard_holds_whatever_the_publish_reached() {
        let t0 = Instant::now();
        let mut p = PublisherHold::default();
        p.reached(&shards(&[1, 2]));
        p.hold(1, HoldSignal::Hold, t0);
        assert!(p.held(HOLD));
        p.hold(2, HoldSignal::Hold, t0 + HOLD_LEASE / 2);
        // Held until the last lease runs out: shard 1's has by then, shard 2's has not.
        assert_eq!(
            p.held_until(t0 + HOLD_LEASE, HOLD),
            Some(t0 + HOLD_LEASE / 2 + HOLD_LEASE)
        );
        assert!(
            !p.held(ALL_BEHIND),
            "shard 1's lease ran out: 1 is uncovered"
        );
    }

    #[test]
    fn under_all_behind_the_holding_shards_must_cover_every_reached_shard() {
        let t0 = Instant::now();
        let mut p = PublisherHold::default();
        p.reached(&shards(&[1, 2]));
        p.hold(1, HoldSignal::Hold, t0);
        assert!(!p.held(ALL_BEHIND), "shard 2 keeps up");
        assert_eq!(p.held_until(t0, ALL_BEHIND), None);
        p.hold(2, HoldSignal::Hold, t0 + HOLD_LEASE / 2);
        assert!(p.held(ALL_BEHIND));
        // The first reached shard's lease to run out ends the cover.
        assert_eq!(
            p.held_until(t0 + HOLD_LEASE / 2, ALL_BEHIND),
            Some(t0 + HOLD_LEASE)
        );
        assert_eq!(p.held_until(t0 + HOLD_LEASE, ALL_BEHIND), None);
        assert!(!p.held(ALL_BEHIND), "shard 1's lease ran out");
        p.hold(1, HoldSignal::Renew, t0 + HOLD_LEASE);
        assert!(p.held(ALL_BEHIND), "shard 1 renewed");
        // A later publish that also reaches shard 3, where a subscriber keeps up: no longer held.
        p.reached(&shards(&[1, 2, 3]));
        assert!(!p.held(ALL_BEHIND));
        assert_eq!(p.held_until(t0 + HOLD_LEASE, ALL_BEHIND), None);
        // A holding shard the publish did not reach does not matter either way.
        p.reached(&shards(&[2]));
        assert!(p.held(ALL_BEHIND));
        // A publish whose home shard's own recipients were all behind leaves nothing to agree:
        // held while some shard holds.
        p.reached(&shards(&[]));
        assert!(p.held(ALL_BEHIND));
    }

    #[test]
    fn under_all_behind_a_release_ends_its_shards_hold_and_wakes_the_reader() {
        let t0 = Instant::now();
        let (woken, waker) = flag();
        let mut p = PublisherHold::default();
        p.reached(&shards(&[0, 1]));
        p.hold(0, HoldSignal::Hold, t0);
        p.hold(0, HoldSignal::Hold, t0);
        p.hold(1, HoldSignal::Hold, t0);
        assert!(p.held_until(t0, ALL_BEHIND).is_some());
        p.wait(&waker);
        // Shard 0 had two holders; one caught up, so shard 0 no longer agrees.
        p.release(0, ALL_BEHIND);
        assert!(!p.held(ALL_BEHIND));
        p.hold(0, HoldSignal::Hold, t0);
        assert!(p.held(ALL_BEHIND));
        p.release(0, ALL_BEHIND);
        assert!(!p.held(ALL_BEHIND));
        assert!(woken.0.load(Ordering::SeqCst), "the reader goes on at once");
        assert_eq!(p.held_until(t0, ALL_BEHIND), None);
        // The other holder still noted a hold: it renews (counted anew) once its shard is behind again.
        p.hold(0, HoldSignal::Renew, t0);
        assert!(p.held(ALL_BEHIND));
    }

    #[test]
    fn under_all_behind_a_releasing_shard_must_agree_until_the_next_publish() {
        let t0 = Instant::now();
        let mut p = PublisherHold::default();
        // The home shard (0) had only subscribers that were behind: only shard 1 must agree.
        p.reached(&shards(&[1]));
        p.hold(0, HoldSignal::Hold, t0);
        p.hold(1, HoldSignal::Hold, t0);
        assert!(p.held(ALL_BEHIND));
        // A subscriber on shard 0 caught up: while shard 1 still holds, shard 0 now objects.
        p.release(0, ALL_BEHIND);
        assert!(!p.held(ALL_BEHIND));
        // The same for a shard beyond 63, which turns the mask into a set.
        let mut q = PublisherHold::default();
        q.reached(&shards(&[1]));
        q.hold(1, HoldSignal::Hold, t0);
        q.hold(100, HoldSignal::Hold, t0);
        q.release(100, ALL_BEHIND);
        assert!(!q.held(ALL_BEHIND));
        q.hold(100, HoldSignal::Hold, t0);
        assert!(q.held(ALL_BEHIND));
        q.release(100, ALL_BEHIND);
        assert!(!q.held(ALL_BEHIND));
        // The next publish reaches shard 1 alone: shard 1 holds it alone.
        q.reached(&shards(&[1]));
        assert!(q.held(ALL_BEHIND));
    }

    #[test]
    fn a_release_that_leaves_the_publisher_held_does_not_wake_the_reader() {
        let t0 = Instant::now();
        let (woken, waker) = flag();
        let mut p = PublisherHold::default();
        p.hold(0, HoldSignal::Hold, t0);
        p.hold(0, HoldSignal::Hold, t0);
        p.wait(&waker);
        p.release(0, HOLD);
        assert!(!woken.0.load(Ordering::SeqCst));
        p.release(0, HOLD);
        assert!(woken.0.load(Ordering::SeqCst));
    }

    #[test]
    fn shards_above_63_are_tracked_exactly() {
        let t0 = Instant::now();
        let mut p = PublisherHold::default();
        p.reached(&shards(&[3, 70]));
        p.hold(3, HoldSignal::Hold, t0);
        p.hold(71, HoldSignal::Hold, t0);
        assert!(!p.held(ALL_BEHIND), "shard 71 does not stand in for 70");
        p.hold(70, HoldSignal::Hold, t0);
        assert!(p.held(ALL_BEHIND));
        assert_eq!(p.held_until(t0, ALL_BEHIND), Some(t0 + HOLD_LEASE));
        // Back to low shards only: the set is reused, and still exact.
        p.reached(&shards(&[3, 5]));
        assert!(!p.held(ALL_BEHIND));
        p.reached(&shards(&[3]));
        assert!(p.held(ALL_BEHIND));
        // 64 is the first shard beyond a u64 mask.
        let mut q = PublisherHold::default();
        q.reached(&shards(&[64]));
        q.hold(0, HoldSignal::Hold, t0);
        assert!(!q.held(ALL_BEHIND));
        q.hold(64, HoldSignal::Hold, t0);
        assert!(q.held(ALL_BEHIND));
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

    #[test]
    fn policy_names_round_trip() {
        for p in SlowSubscriberPolicy::ALL {
            assert_eq!(SlowSubscriberPolicy::from_name(p.name()), Some(p));
        }
        assert_eq!(SlowSubscriberPolicy::from_name("Hold"), None);
        assert_eq!(
            SlowSubscriberPolicy::default(),
            SlowSubscriberPolicy::HoldIfAllBehind
        );
    }
}
