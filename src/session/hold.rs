//! Back-pressure holds between subscribers that fall behind and the publishers that feed them, and
//! `slow_subscriber_policy`, which decides when a subscriber may hold anyone.
//!
//! Why holds: a subscriber that keeps acknowledging but more slowly than its publishers publish would
//! otherwise overflow its queue (`max_queued_messages`) and lose acknowledged QoS 1/2 messages. Instead,
//! while its queue is at least half full (it is *congested*), it may *hold* each publisher whose message it
//! had to queue: the publisher's connection is not read (TCP then slows the client down) until the
//! subscriber drains to a quarter of its limits and *releases* it. A hold is a lease of [`HOLD_LEASE`]: a
//! subscriber that stops acknowledging stops renewing, so its publishers go on and it only costs its own
//! queue (docs/ARCHITECTURE.md, invariant 6). A lost release (a subscriber's session that vanished)
//! therefore costs a publisher one lease at most.
//!
//! Why not always: a publisher is one connection, so holding it slows it down for *every* subscriber,
//! and one slow subscriber on `#` would throttle a publisher that a fast subscriber also reads (Mosquitto
//! instead drops for the slow one alone, and the fast one gets everything). Which is right depends on
//! who else reads the publisher, hence [`SlowSubscriberPolicy`]:
//! - `hold_if_all_behind` (default): a publisher is held only while every subscriber it currently
//!   feeds is behind. A congested subscriber beside one that keeps up holds nobody: its queue fills to
//!   `max_queued_messages` / `max_queued_bytes` and further messages are dropped for it alone. Fan-in
//!   (many publishers, one slow subscriber) stays lossless: there every publisher's only subscriber is
//!   the congested one.
//! - `hold`: any congested subscriber holds the publishers that feed it (shardmq's earlier behaviour).
//! - `drop`: never hold; queue to the limits, then drop (Mosquitto's behaviour).
//!
//! How `hold_if_all_behind` decides, with what each shard knows when it delivers, and no extra mail
//! unless some shard holds the publisher:
//! 1. Who is behind. A recipient *keeps up* with a message when it is connected and not congested by
//!    its queue: at QoS 1/2 its queue is below half its limits (where it would hold publishers itself),
//!    at QoS 0 its outbox is below its soft limit. So a shard agrees to a hold exactly when every
//!    recipient there is congested, the "only while every subscriber it feeds is congested".
//!    (An earlier rule, "keeps up when the message would go out at once", counted a fast subscriber
//!    with a short backlog as behind: the burst a publisher sends when a hold ends then let a slow
//!    sibling hold it again, over and over.) Equally fast subscribers at full rate, which this rule
//!    would drop for whenever one of them has room, are what step 5 is for.
//!    Away recipients, those not allowed to read the topic and those the message is too large for do not
//!    count: holding the publisher costs them nothing.
//! 2. Per shard, per message. Before fanning a message from publisher O out to its sessions, a shard
//!    asks whether any recipient keeps up. If one does, the shard *objects*: nobody there holds O for
//!    this message. If none does, it *agrees*, and each congested recipient holds O as under `hold`.
//!    Messages delivered at QoS 0 only hold nobody, so they are not asked about.
//! 3. Across shards. O's home shard delivers locally first, and records in O's [`PublisherHold`] the
//!    shards whose agreement a hold needs: every other shard the publish reached, and itself only if it
//!    objected. [`PublisherHold`] keeps one stance per shard (holding, with how many holders; agreeing;
//!    or objecting), each for one lease, and O is held only while some subscriber holds it and every
//!    shard its latest publish reached agrees. A remote shard's holds tell its agreement; while some
//!    shard holds O (or agrees), O's publishes say so ([`HoldStamp::pending`]) and the other shards
//!    reached answer with a consent ([`HoldSignal::Consent`]: nobody there keeps up) or an objection
//!    (`Mail::Object`), at most once per half lease each. A release ends its shard's hold with its last
//!    holder; an objection voids the shard's agreement at once (its holders count again only once it
//!    agrees again). Either makes that shard one whose agreement is needed until the next publish says
//!    otherwise, and wakes O's reader if O is no longer held.
//! 4. The extra room. While its holds take effect a congested, progressing subscriber may queue beyond
//!    its limits (twice `max_queued_messages`, plus what other shards' mailboxes may already carry): that
//!    absorbs what was read and routed before the hold stopped the publisher. Under `hold` it gets that
//!    room for every message, as before. Under `hold_if_all_behind` only where the hold can take effect:
//!    nobody on its shard keeps up, and the message does not say that another shard objects
//!    ([`HoldStamp::objecting`], stamped by the home shard from the objections it has). Before a remote
//!    shard's first objection arrives the room is given provisionally, so a slow subscriber whose
//!    sibling on another shard keeps up may exceed its limit by what arrives in one mail round trip;
//!    on its own shard, or once the objection is known, it gets exactly the limits.
//!
//! 5. A young backlog insists. A subscriber's congestion *episode* starts when it is first found
//!    congested and ends when its queue is empty again (not at a quarter, where its holds end: a slow
//!    subscriber whose holds let it drain to a quarter, then fill up again, stays in one episode). For the first [`HOLD_GRACE`] of an episode
//!    its holds *insist* (`Mail::Hold`'s `insist`): they hold the publisher even where another subscriber
//!    keeps up, and it gets the extra room meanwhile, as under `hold`. Why: at full rate, equally fast
//!    subscribers of one publisher are never all behind at the same moment (one has just been served),
//!    so without this the rule above drops for whichever is behind (1 -> 100 subscribers at full rate,
//!    QoS 1: ~70,000 of ~5 million deliveries dropped in 5 s). Their episodes end within the grace once
//!    the publisher is held; a slow subscriber's does not, and from then on the rule above applies to
//!    it: its publisher's other subscribers wait at most one grace per episode.
//!
//! Why this way: an exact answer to "is every subscriber of O behind?" would need the subscribers'
//! shards to agree on every message. Here each shard answers for its own sessions as it delivers (one
//! look at the recipients, which stops at the first that keeps up), and shards exchange stances only
//! while a hold is in play, through the mail holds already used. Costs: one `u64` store per publish
//! (a set above 64 shards) and a stamp in each message; nothing at all under `hold` and `drop`.
//! Limits: a subscriber as fast as its publisher but stalled for longer than [`HOLD_GRACE`] (a client
//! pausing, a starved CPU) is dropped for like a slow one until its queue empties; `hold` keeps it
//! lossless. A slow subscriber holds its publisher once per episode, for [`HOLD_GRACE`], which its
//! other subscribers then wait.
//! `$SYS/broker/publish/messages/dropped` counts the messages dropped, and the first drop of an episode is
//! logged (`Outgoing messages are being dropped for client ID.`, as Mosquitto words it).
//!
//! Concurrency model: both halves live in a [`super::Session`] on its home shard; the subscriber's shard
//! tells a publisher's shard with `Mail::Hold` / `Mail::Release` / `Mail::Object` (naming itself) when
//! they differ. No I/O; `now` is an input.

use std::task::Waker;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::index::ShardSet;

/// How long one hold keeps a publisher from being read unless renewed or released. Short enough that a
/// subscriber that stalled frees its publishers quickly; long enough that a held publisher slips only one
/// read's worth of messages per lease into a congested subscriber's queue.
pub const HOLD_LEASE: Duration = Duration::from_millis(100);

/// `hold_if_all_behind`: for this long after a subscriber became congested its holds take effect even
/// where another subscriber keeps up (module doc, step 5). Equally fast subscribers at full rate each
/// drain a backlog in tens of milliseconds once their publisher is held, so they lose nothing; a
/// subscriber that is really slower than its publisher is still congested after it, and is dropped for
/// instead. Short enough that the publisher's other subscribers wait at most this long per episode.
pub const HOLD_GRACE: Duration = Duration::from_millis(200);

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

/// One shard's stance on holding a publisher, for one lease.
#[derive(Debug, Clone, Copy)]
struct ShardHold {
    shard: u16,
    /// Subscribers on that shard holding the publisher (one counts once until it releases); 0 when the
    /// shard only consents or objects.
    holders: u16,
    /// `hold_if_all_behind`: a subscriber there keeps up, so the shard does not agree for now (module
    /// doc). Its holders still count once it agrees again: they do not hold anew before then.
    objects: bool,
    /// The lease: the stance holds while `now < until`.
    until: Instant,
    /// `hold_if_all_behind`: a holder there insists (step 5) until then: its holds count whatever the
    /// other shards say.
    insist_until: Option<Instant>,
}

impl ShardHold {
    fn agrees(&self) -> bool {
        !self.objects
    }
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

/// What a publisher's home shard stamps on its next publish under `hold_if_all_behind` (see
/// [`PublisherHold::stamp`] and the module doc, step 3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldStamp {
    /// Some shard holds the publisher or agrees to: the receiving shards should say where they stand.
    pub pending: bool,
    /// Bit `s` for each shard `s` that objects (all bits when one is 64 or above).
    pub objecting: u64,
}

impl HoldStamp {
    /// Whether a shard other than `own` objects.
    pub fn others_object(&self, own: u16) -> bool {
        match 1u64.checked_shl(u32::from(own)) {
            Some(bit) => self.objecting & !bit != 0,
            None => self.objecting != 0,
        }
    }

    /// Mark `shard` as objecting.
    pub fn add_objection(&mut self, shard: u16) {
        self.objecting |= 1u64.checked_shl(u32::from(shard)).unwrap_or(u64::MAX);
    }
}

/// The publisher half: where each shard stands on holding this session and until when, which shards
/// its latest publish reached, and who waits for the hold to end.
#[derive(Debug, Default)]
pub struct PublisherHold {
    /// The shards that hold, agree or object, and the reader waiting for the hold to end. Boxed:
    /// every session has a `PublisherHold` and few are ever held (memory per idle client); allocated
    /// under congestion only, and let go with the last stance.
    stances: Option<Box<Stances>>,
    /// `hold_if_all_behind`: the shards whose agreement a hold needs (recorded by [`Self::reached`]).
    reach: Reach,
}

#[derive(Debug, Default)]
struct Stances {
    shards: Vec<ShardHold>,
    /// The connection reader waiting for the hold to end.
    waker: Option<Waker>,
}

/// No stances: what an unheld publisher's [`PublisherHold::shards`] reads.
const NO_STANCES: &[ShardHold] = &[];

impl PublisherHold {
    /// A subscriber on `shard` holds (or, with [`HoldSignal::Renew`], still holds) this publisher, or
    /// with [`HoldSignal::Consent`] `shard` agrees to others holding it, until `now + HOLD_LEASE`.
    pub fn hold(&mut self, shard: u16, signal: HoldSignal, now: Instant) {
        let until = now + HOLD_LEASE;
        let shards = self.shards_mut();
        match shards.iter_mut().find(|h| h.shard == shard) {
            Some(h) => {
                if h.until <= now {
                    // The lease ran out: its holders are forgotten, one that still holds counts anew.
                    h.holders = 0;
                    h.insist_until = None;
                }
                h.objects = false;
                if signal == HoldSignal::Hold || (signal == HoldSignal::Renew && h.holders == 0) {
                    h.holders = h.holders.saturating_add(1);
                }
                h.until = h.until.max(until);
            }
            None => shards.push(ShardHold {
                shard,
                holders: u16::from(signal != HoldSignal::Consent),
                objects: false,
                until,
                insist_until: None,
            }),
        }
    }

    /// `hold_if_all_behind`: the hold (or renewal) from `shard` just recorded with [`Self::hold`]
    /// insists (module doc, step 5): for a lease it holds this publisher even where a shard objects.
    pub fn insist(&mut self, shard: u16, now: Instant) {
        if let Some(h) = self.stances.as_deref_mut().and_then(|s| {
            s.shards
                .iter_mut()
                .find(|h| h.shard == shard && h.holders > 0)
        }) {
            h.insist_until = Some(now + HOLD_LEASE);
        }
    }

    /// One holder on `shard` let go. The shard holds until its last holder lets go; then, under
    /// `hold_if_all_behind`, its agreement is needed again until the next publish says otherwise (the
    /// subscriber that let go caught up). Wakes the waiting reader when the publisher is no longer held.
    pub fn release(&mut self, shard: u16, policy: SlowSubscriberPolicy) {
        let Some(stances) = self.stances.as_deref_mut() else {
            return;
        };
        let Some(i) = stances.shards.iter().position(|h| h.shard == shard) else {
            // A stray release (from a holder whose lease already ran out) is ignored.
            return;
        };
        let h = &mut stances.shards[i];
        h.holders = h.holders.saturating_sub(1);
        if h.holders > 0 || h.objects {
            // Still holding; or objecting, which its lease ends.
            return;
        }
        stances.shards.swap_remove(i);
        if policy == SlowSubscriberPolicy::HoldIfAllBehind {
            self.reach.insert(shard);
        }
        self.wake_unless_held(policy);
    }

    /// `hold_if_all_behind`: a subscriber on `shard` keeps up: for a lease (or until it agrees again) the
    /// shard objects to this publisher being held, whoever holds there, and its agreement is needed.
    pub fn object(&mut self, shard: u16, now: Instant) {
        let until = now + HOLD_LEASE;
        let shards = self.shards_mut();
        match shards.iter_mut().find(|h| h.shard == shard) {
            Some(h) => {
                if h.until <= now {
                    h.holders = 0;
                    h.insist_until = None;
                }
                h.objects = true;
                h.until = until;
            }
            None => shards.push(ShardHold {
                shard,
                holders: 0,
                objects: true,
                until,
                insist_until: None,
            }),
        }
        self.reach.insert(shard);
        self.wake_unless_held(SlowSubscriberPolicy::HoldIfAllBehind);
    }

    fn wake_unless_held(&mut self, policy: SlowSubscriberPolicy) {
        if !self.held(policy) {
            let waker = self.stances.as_mut().and_then(|s| s.waker.take());
            self.let_go_if_empty();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// The stances, allocated for the first.
    fn shards_mut(&mut self) -> &mut Vec<ShardHold> {
        &mut self.stances.get_or_insert_with(Default::default).shards
    }

    /// The stances (none for a publisher never held).
    fn shards(&self) -> &[ShardHold] {
        self.stances.as_deref().map_or(NO_STANCES, |s| &s.shards)
    }

    /// Frees the stances once no shard has one and no reader waits.
    fn let_go_if_empty(&mut self) {
        if self
            .stances
            .as_ref()
            .is_some_and(|s| s.shards.is_empty() && s.waker.is_none())
        {
            self.stances = None;
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

    /// Whether no shard holds, agrees or objects (cheap: the common case of every publish).
    pub fn is_idle(&self) -> bool {
        self.shards().is_empty()
    }

    /// `hold_if_all_behind`: what the next publish carries, from the stances of the shards other than
    /// `own` whose leases still run at `now`.
    pub fn stamp(&self, own: u16, now: Instant) -> HoldStamp {
        let mut stamp = HoldStamp::default();
        for h in self
            .shards()
            .iter()
            .filter(|h| h.shard != own && now < h.until)
        {
            if h.objects {
                stamp.add_objection(h.shard);
            }
            stamp.pending |= h.agrees() || h.holders > 0;
        }
        stamp
    }

    /// Whether some shard holds this publisher or agrees to, or has holders that would once it agrees
    /// again (no clock: leases may have run out).
    pub fn pending(&self) -> bool {
        self.shards().iter().any(|h| h.agrees() || h.holders > 0)
    }

    /// Whether the agreeing shards are every shard the latest publish reached.
    fn covers(&self) -> bool {
        match &self.reach {
            Reach::Low(bits) => {
                let agreeing = self
                    .shards()
                    .iter()
                    .filter(|h| h.shard < 64 && h.agrees())
                    .fold(0u64, |m, h| m | 1 << h.shard);
                bits & !agreeing == 0
            }
            Reach::Any(set) => set
                .iter()
                .all(|s| self.shards().iter().any(|h| h.shard == s && h.agrees())),
        }
    }

    /// Whether this publisher is held (cheap: no clock, so a lease may have run out; [`Self::held_until`]
    /// has the last word): some subscriber holds it and, under `hold_if_all_behind`, every reached shard
    /// agrees.
    pub fn held(&self, policy: SlowSubscriberPolicy) -> bool {
        self.shards().iter().any(|h| h.holders > 0)
            && (policy != SlowSubscriberPolicy::HoldIfAllBehind
                || self.covers()
                || self.insisted().is_some())
    }

    /// Until when some holder insists (no clock: it may have run out).
    fn insisted(&self) -> Option<Instant> {
        self.shards()
            .iter()
            .filter(|h| h.holders > 0)
            .filter_map(|h| h.insist_until)
            .max()
    }

    /// Until when the publisher must not be read, if it is held at `now`: under `hold` while some
    /// holder's lease runs, under `hold_if_all_behind` also only while the live leases cover every
    /// reached shard. Leases that ran out are forgotten with their holders: one that still holds renews
    /// (counted anew), a release from one that does not is ignored.
    pub fn held_until(&mut self, now: Instant, policy: SlowSubscriberPolicy) -> Option<Instant> {
        let stances = self.stances.as_deref_mut()?;
        stances.shards.retain(|h| now < h.until);
        if stances.shards.is_empty() {
            // Nobody holds: a reader still registered is not waiting any more (it asks this first).
            self.stances = None;
            return None;
        }
        for h in &mut stances.shards {
            if h.insist_until.is_some_and(|t| t <= now) {
                h.insist_until = None;
            }
        }
        if !self.held(policy) {
            return None;
        }
        // Held until the last holder's lease runs out...
        let last = self
            .shards()
            .iter()
            .filter(|h| h.holders > 0)
            .map(|h| h.until)
            .max()?;
        if policy != SlowSubscriberPolicy::HoldIfAllBehind {
            return Some(last);
        }
        // ...or, held only because a holder insists, until it stops insisting...
        let insisted = self.insisted().map(|t| t.min(last));
        if !self.covers() {
            return insisted;
        }
        // ...or the first lease of a reached shard runs out, which ends the cover.
        let first = self
            .shards()
            .iter()
            .filter(|h| self.reach.contains(h.shard))
            .map(|h| h.until)
            .min();
        let covered = first.map_or(last, |f| f.min(last));
        Some(insisted.map_or(covered, |i| i.max(covered)))
    }

    /// Wake `waker` when a release ends the hold (the lease ending is the caller's timer).
    pub fn wait(&mut self, waker: &Waker) {
        self.stances.get_or_insert_with(Default::default).waker = Some(waker.clone());
    }
}

/// What a subscriber's shard tells a publisher's: after [`Holding::note`] a hold or its renewal, and
/// under `hold_if_all_behind` the shard's own consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldSignal {
    /// A new hold.
    Hold,
    /// Extend a hold this subscriber already has.
    Renew,
    /// Nobody on the sending shard keeps up with this publisher, so the shard agrees to it being held by
    /// others (lasts one lease; holds nothing by itself).
    Consent,
}

/// The subscriber half: the publishers this session holds, with when each hold was last sent, and
/// since when its queue is congested.
#[derive(Debug, Default)]
pub struct Holding {
    /// Boxed, not inline: every session has a `Holding` and few are ever congested (memory per idle
    /// client, 8 bytes inline where the parts take 40); allocated under congestion only and freed
    /// when the holds are let go and the episode is over.
    congestion: Option<Box<Congestion>>,
}

#[derive(Debug, Default)]
struct Congestion {
    origins: Vec<(Origin, Instant)>,
    /// `hold_if_all_behind`: when the current congestion episode began (first found congested; it
    /// ends when the queue is empty again, not at a quarter: a slow subscriber whose holds let it
    /// drain to a quarter is still in the same episode): its holds insist for [`HOLD_GRACE`] (see
    /// the module doc, step 5).
    since: Option<Instant>,
}

impl Holding {
    /// A message from `origin` had to wait in the congested queue: hold its publisher, or renew a hold
    /// older than half a lease. None when a hold sent recently still stands.
    pub fn note(&mut self, origin: Origin, now: Instant) -> Option<HoldSignal> {
        let origins = &mut self.congestion.get_or_insert_with(Default::default).origins;
        match origins.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, sent)) if now.saturating_duration_since(*sent) < HOLD_LEASE / 2 => None,
            Some((_, sent)) => {
                *sent = now;
                Some(HoldSignal::Renew)
            }
            None => {
                origins.push((origin, now));
                Some(HoldSignal::Hold)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.congestion
            .as_ref()
            .map_or(true, |c| c.origins.is_empty())
    }

    /// Let every held publisher go; returns them so the shard can tell each.
    pub fn take(&mut self) -> SmallVec<[Origin; 4]> {
        let Some(c) = self.congestion.as_mut() else {
            return SmallVec::new();
        };
        let origins = std::mem::take(&mut c.origins);
        self.let_go_if_empty();
        origins.into_iter().map(|(o, _)| o).collect()
    }

    /// `hold_if_all_behind`: the session was found congested at `now`; starts an episode if none runs.
    pub fn note_congested(&mut self, now: Instant) {
        self.congestion
            .get_or_insert_with(Default::default)
            .since
            .get_or_insert(now);
    }

    /// `hold_if_all_behind`: whether its holds insist at `now`: a congestion episode began less than
    /// [`HOLD_GRACE`] ago (module doc, step 5).
    pub fn insists(&self, now: Instant) -> bool {
        self.congestion
            .as_ref()
            .and_then(|c| c.since)
            .is_some_and(|t| now.saturating_duration_since(t) < HOLD_GRACE)
    }

    /// The queue is empty again: the congestion episode is over.
    pub fn end_episode(&mut self) {
        if let Some(c) = self.congestion.as_mut() {
            c.since = None;
            self.let_go_if_empty();
        }
    }

    /// Tests: let the current congestion episode (or, if none runs, the next) count as begun
    /// [`HOLD_GRACE`] ago, so its holds no longer insist.
    #[cfg(test)]
    pub(crate) fn outgrow_grace(&mut self) {
        self.congestion.get_or_insert_with(Default::default).since =
            Some(Instant::now() - HOLD_GRACE);
    }

    fn let_go_if_empty(&mut self) {
        if self
            .congestion
            .as_ref()
            .is_some_and(|c| c.origins.is_empty() && c.since.is_none())
        {
            self.congestion = None;
        }
    }
}

#[cfg(test)]
mod tests;
