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
fn stances_are_allocated_while_held_only() {
    let t0 = Instant::now();
    let (woken, waker) = flag();
    let mut p = PublisherHold::default();
    p.reached(&shards(&[1]));
    p.insist(1, t0);
    assert!(
        p.stances.is_none(),
        "nothing to insist on: nothing allocated"
    );
    p.hold(1, HoldSignal::Hold, t0);
    assert!(p.held_until(t0, HOLD).is_some());
    p.wait(&waker);
    p.release(1, HOLD);
    assert!(woken.0.load(Ordering::SeqCst), "the reader is woken");
    assert!(p.stances.is_none(), "and the stances let go");
    p.hold(1, HoldSignal::Hold, t0);
    assert_eq!(
        p.held_until(t0 + HOLD_LEASE, HOLD),
        None,
        "the lease ran out"
    );
    assert!(p.stances.is_none());

    let mut h = Holding::default();
    assert!(h.is_empty() && h.congestion.is_none());
    assert_eq!(h.note((0, 3), t0), Some(HoldSignal::Hold));
    h.note_congested(t0);
    assert!(!h.is_empty() && h.insists(t0));
    assert_eq!(h.take().as_slice(), &[(0, 3)]);
    assert!(h.is_empty() && h.insists(t0), "the episode goes on");
    h.end_episode();
    assert!(
        !h.insists(t0) && h.congestion.is_none(),
        "and then all is let go"
    );
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
fn under_all_behind_a_shard_agrees_until_its_last_holder_releases() {
    let t0 = Instant::now();
    let (woken, waker) = flag();
    let mut p = PublisherHold::default();
    p.reached(&shards(&[0, 1]));
    p.hold(0, HoldSignal::Hold, t0);
    p.hold(0, HoldSignal::Hold, t0);
    p.hold(1, HoldSignal::Hold, t0);
    assert!(p.held_until(t0, ALL_BEHIND).is_some());
    p.wait(&waker);
    p.release(0, ALL_BEHIND);
    assert!(p.held(ALL_BEHIND), "one holder left on shard 0");
    assert!(!woken.0.load(Ordering::SeqCst));
    p.release(0, ALL_BEHIND);
    assert!(!p.held(ALL_BEHIND));
    assert!(woken.0.load(Ordering::SeqCst), "the reader goes on at once");
    assert_eq!(p.held_until(t0, ALL_BEHIND), None);
    // A holder still noted there renews (counted anew) once its shard is behind again.
    p.hold(0, HoldSignal::Renew, t0);
    assert!(p.held(ALL_BEHIND));
}

#[test]
fn an_insisting_holder_holds_through_objections_for_its_lease() {
    let t0 = Instant::now();
    let (woken, waker) = flag();
    let mut p = PublisherHold::default();
    p.reached(&shards(&[0, 1]));
    p.object(1, t0);
    p.hold(0, HoldSignal::Hold, t0);
    assert!(
        !p.held(ALL_BEHIND),
        "an ordinary hold yields to the objection"
    );
    p.insist(0, t0);
    assert!(p.held(ALL_BEHIND));
    p.wait(&waker);
    p.object(1, t0 + HOLD_LEASE / 4);
    assert!(p.held(ALL_BEHIND), "an objection does not end it");
    assert!(!woken.0.load(Ordering::SeqCst));
    // Held until the insistence runs out (a lease after it was sent), then not.
    assert_eq!(
        p.held_until(t0 + HOLD_LEASE / 2, ALL_BEHIND),
        Some(t0 + HOLD_LEASE)
    );
    // A renewal that no longer insists (the grace is over) leaves the objection to decide.
    p.hold(0, HoldSignal::Renew, t0 + HOLD_LEASE / 2);
    assert_eq!(p.held_until(t0 + HOLD_LEASE, ALL_BEHIND), None);
    // Insisting needs a holder: a consent cannot insist.
    let mut q = PublisherHold::default();
    q.reached(&shards(&[1]));
    q.hold(1, HoldSignal::Consent, t0);
    q.insist(1, t0);
    assert!(!q.held(ALL_BEHIND));
    // The last holder's release ends it at once.
    p.insist(0, t0 + HOLD_LEASE / 2);
    assert!(p.held(ALL_BEHIND));
    p.release(0, ALL_BEHIND);
    assert!(!p.held(ALL_BEHIND));
    assert!(woken.0.load(Ordering::SeqCst));
}

#[test]
fn a_consent_agrees_but_holds_nothing() {
    let t0 = Instant::now();
    let mut p = PublisherHold::default();
    p.reached(&shards(&[1, 2]));
    p.hold(2, HoldSignal::Consent, t0);
    assert!(!p.held(ALL_BEHIND), "nobody holds");
    assert!(p.pending(), "but a shard agrees");
    p.hold(1, HoldSignal::Hold, t0 + HOLD_LEASE / 2);
    assert!(p.held(ALL_BEHIND));
    // The consent's lease ends the cover.
    assert_eq!(
        p.held_until(t0 + HOLD_LEASE / 2, ALL_BEHIND),
        Some(t0 + HOLD_LEASE)
    );
    assert_eq!(p.held_until(t0 + HOLD_LEASE, ALL_BEHIND), None);
    // A consent from a shard with holders keeps them.
    p.hold(1, HoldSignal::Consent, t0 + HOLD_LEASE);
    p.hold(2, HoldSignal::Consent, t0 + HOLD_LEASE);
    assert!(p.held(ALL_BEHIND));
}

#[test]
fn an_objection_uncovers_at_once_until_the_shard_agrees_again() {
    let t0 = Instant::now();
    let (woken, waker) = flag();
    let mut p = PublisherHold::default();
    p.reached(&shards(&[1, 2]));
    p.hold(1, HoldSignal::Hold, t0);
    p.hold(2, HoldSignal::Hold, t0);
    p.wait(&waker);
    p.object(2, t0);
    assert!(!p.held(ALL_BEHIND));
    assert!(woken.0.load(Ordering::SeqCst));
    assert_eq!(
        p.stamp(0, t0),
        HoldStamp {
            pending: true,
            objecting: 1 << 2
        }
    );
    // Its subscribers fall behind again: shard 2's holder still counts.
    p.hold(2, HoldSignal::Consent, t0);
    assert!(p.held(ALL_BEHIND));
    assert_eq!(p.stamp(0, t0).objecting, 0);
    // Shard 1's holder lets go while shard 1 objects: then shard 1 neither agrees nor holds.
    p.object(1, t0);
    p.release(1, ALL_BEHIND);
    p.hold(1, HoldSignal::Consent, t0);
    p.release(2, ALL_BEHIND);
    assert!(!p.held(ALL_BEHIND), "no holder left");
    p.hold(2, HoldSignal::Hold, t0);
    assert!(p.held(ALL_BEHIND));
    // An objection lasts a lease, then is forgotten (and with it the holds it voided).
    p.object(2, t0);
    assert_eq!(p.held_until(t0 + HOLD_LEASE, ALL_BEHIND), None);
    assert!(p.is_idle());
    // An objection from a shard the publish did not reach makes it one whose agreement counts.
    p.reached(&shards(&[1]));
    p.hold(1, HoldSignal::Hold, t0 + HOLD_LEASE);
    assert!(p.held(ALL_BEHIND));
    p.object(3, t0 + HOLD_LEASE);
    assert!(!p.held(ALL_BEHIND));
}

#[test]
fn the_stamp_leaves_out_the_home_shard_and_ran_out_leases() {
    let t0 = Instant::now();
    let mut p = PublisherHold::default();
    assert_eq!(p.stamp(0, t0), HoldStamp::default());
    p.hold(0, HoldSignal::Hold, t0);
    p.object(5, t0 + HOLD_LEASE / 2);
    assert_eq!(
        p.stamp(0, t0 + HOLD_LEASE / 2),
        HoldStamp {
            pending: false,
            objecting: 1 << 5
        },
        "the home shard answers for itself"
    );
    assert_eq!(
        p.stamp(7, t0 + HOLD_LEASE / 2),
        HoldStamp {
            pending: true,
            objecting: 1 << 5
        }
    );
    assert_eq!(
        p.stamp(7, t0 + HOLD_LEASE).objecting,
        1 << 5,
        "shard 0's lease ran out, shard 5's did not"
    );
    assert!(!p.stamp(7, t0 + HOLD_LEASE).pending);
    p.object(70, t0);
    assert_eq!(p.stamp(7, t0).objecting, u64::MAX, "beyond 63: all bits");
    let stamp = HoldStamp {
        pending: true,
        objecting: 1 << 5,
    };
    assert!(!stamp.others_object(5));
    assert!(stamp.others_object(4));
    assert!(stamp.others_object(70));
    assert!(!HoldStamp::default().others_object(70));
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
