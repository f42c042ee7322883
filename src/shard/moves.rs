//! Cluster mode: sessions moving between nodes, as a shard sees them (docs/CLUSTER.md, "Sessions
//! across nodes"; the claim itself is `claims`, the link's part `cluster::relay::moved`).
//!
//! When a client connects on another node its session leaves this one (`Shard::evict`). Until the
//! other nodes learn the new node's interest (its key is written once the session is installed
//! there), they, and this node's shards, route by the old one: had the session's subscriptions
//! left this node's interest at once, what was published in that moment would go to no node. So
//! the session stays here for [`STUB_LIFE`] as a **stub**: its subscriptions keep this node's
//! interest, and what this node's clients publish to it goes to the link (`Mail::Follow`), which
//! sends it after the session (what other nodes send here, the link follows itself).
//!
//! A message may then reach the new node twice: sent there directly (its interest known) and after
//! the session by the node it left; the new node's own clients' messages, too, come back that way.
//! Each message is named cluster-wide (`Message::id`, given here at PUBLISH), and a session that
//! came from another node remembers, for [`RECENT_LIFE`], the ids of what it was given
//! ([`Moves::followed`], [`Moves::direct`]): the second copy is dropped. The stub, the link's
//! following and the new node's memory overlap on purpose; the memory outlives both.
//!
//! **Order.** A message another node sent to the old node only (before it knew the new node's
//! interest) comes after the session in two hops; the next one, sent to both, comes directly in
//! one, and would be given first. So while every node still sends the old node what it sends
//! here (within the stub's time, [`TWINS_FOR`]), a copy that comes directly for one of the filters
//! the session came with waits ([`TWIN_WAIT`] at most) for its twin from the old node: the twins
//! come in the order their publishers sent them. Copies that come directly after a waiting one
//! wait behind it, and the line is kept in the order the publishing nodes received the messages
//! (`Message::read_at`), which is each publisher's order whatever node its copies came through.
//! Only the front of the line goes: when its twin came (the twin is given, the copy dropped), or
//! when its wait is over (one whose twin never comes: not for a filter the old node's stub has).
//! A twin whose copy waits further back marks it, and it goes when it reaches the front; a copy
//! passed on that was received after copies still waiting joins the line (it may be a later
//! message of their publisher: a remote copy does not say whose it is). Giving such copies at
//! once put a publisher's later message ahead of its earlier ones
//! (`tests/31_cluster_model.rs`, seed 1796668521108953656, 500 steps, 64 shards).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};

use super::Shard;
use crate::codec::Utf8Bytes;
use crate::message::Message;
use crate::router::Mail;

/// How long a moved session's stub stays. The new node's interest reaches the others in
/// milliseconds; this covers a NATS server slow to store the key, at the cost of the old node
/// passing on copies that the new one drops.
const STUB_LIFE: Duration = Duration::from_secs(3);

/// How long a session that came from another node remembers what it was given: longer than the
/// stub and than the link's following (`cluster::relay::moved`, 3 s), with room for copies still
/// on their way.
const RECENT_LIFE: Duration = Duration::from_secs(15);

/// How long, after a session came, copies sent to it directly wait for their twins: a little
/// less than the old node's stub lives (from the eviction, a moment earlier), while every node
/// still sends the old node what it sends here, so that every such copy has a twin.
const TWINS_FOR: Duration = Duration::from_millis(2_500);

/// How long one copy waits for its twin, at most. A twin is a NATS hop behind (milliseconds
/// here); on a loaded machine more: one that comes later than this comes out of order.
const TWIN_WAIT: Duration = Duration::from_secs(1);

/// Copies waiting for their twins for one session, at most (beyond: given at once).
const WAITING_MAX: usize = 10_000;

/// The ids a moving session takes with it, at most (the latest; 64 KiB in its eviction's answer).
const CARRIED_MAX: usize = 8_192;

/// The ids one such session remembers, at most (the oldest go first): bounds the memory of a
/// session that is sent a lot in its first seconds here. A repeat comes within tens of
/// milliseconds of its first copy; 65,536 ids cover that at over a million messages a second.
const RECENT_MAX: usize = 65_536;

pub(super) struct Moves {
    /// Sessions that moved to another node, left here as stubs: slot -> until when.
    stubs: AHashMap<u32, Instant>,
    /// Sessions that came from another node lately: slot -> what they were given.
    arrived: AHashMap<u32, Recent>,
    /// The next id this shard gives a message (`Message::id`): a sequence from a random start, so
    /// that two shards' (two nodes', two runs') sequences do not meet within [`RECENT_LIFE`].
    next_id: u64,
}

impl Default for Moves {
    fn default() -> Moves {
        Moves {
            stubs: AHashMap::new(),
            arrived: AHashMap::new(),
            next_id: ahash::RandomState::new().hash_one(0u8),
        }
    }
}

struct Recent {
    until: Instant,
    seen: AHashSet<u64>,
    order: VecDeque<u64>,
    /// Until when copies sent directly wait for their twins, for `filters` (those it came with,
    /// the old node's stub's), and the copies waiting (since when).
    twins_until: Instant,
    filters: Vec<Utf8Bytes>,
    waiting: VecDeque<Waiting>,
}

/// A copy sent directly to a session that came lately, waiting for its twin.
struct Waiting {
    since: Instant,
    msg: Arc<Message>,
    /// Its twin came while copies ahead of it still waited: it goes when it reaches the front.
    twinned: bool,
}

/// What to do with a copy passed on for a session ([`Moves::followed`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Followed {
    /// Give it (then the waiting copies [`Moves::twinned_front`] names).
    Give,
    /// It had it, or its direct twin waits behind other copies and goes in its turn: not now.
    Drop,
}

/// What to do with a copy sent directly to a session that came lately ([`Moves::direct`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Direct {
    Give,
    /// It had it: not again.
    Drop,
    /// Kept until its twin comes, or its wait is over.
    Wait,
}

impl Recent {
    /// Puts `w` in line after the copies received before it (`Message::read_at`, the publishing
    /// node's kernel receive time), so that the line keeps each publisher's order whatever node
    /// its copies came through. An unknown time (0) goes last.
    fn enqueue(&mut self, w: Waiting) {
        let at = match w.msg.read_at {
            0 => self.waiting.len(),
            t => self
                .waiting
                .iter()
                .rposition(|x| x.msg.read_at <= t)
                .map_or(0, |i| i + 1),
        };
        self.waiting.insert(at, w);
    }

    /// How many copies at the front of the line go at `now`: those whose twin came or whose wait
    /// is over. Once no twin can come any more (the old node's stub is gone), the whole line: each
    /// copy that came behind a waiting one would otherwise wait its full second too, and the line
    /// go on as long as copies keep coming (up to [`RECENT_LIFE`]).
    fn due(&self, now: Instant) -> usize {
        if now >= self.twins_until + TWIN_WAIT {
            return self.waiting.len();
        }
        self.front(|w| w.twinned || now.duration_since(w.since) >= TWIN_WAIT)
    }

    /// How many copies at the front of the line `goes` says go: the line goes only from its front.
    fn front(&self, goes: impl Fn(&Waiting) -> bool) -> usize {
        self.waiting.iter().take_while(|w| goes(w)).count()
    }

    /// The first `n` copies of the line, out of it.
    fn take_front(&mut self, n: usize) -> Vec<Arc<Message>> {
        self.waiting.drain(..n).map(|w| w.msg).collect()
    }

    /// Whether `id` was taken before; it is remembered now.
    fn repeat(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return true;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_MAX {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        false
    }
}

impl Moves {
    /// A name for a message accepted here (never 0).
    pub(super) fn name(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// A copy of `msg` passed on for the session in `slot` (by the node it left, or owed to it;
    /// cheap while no session came lately). Dropped when it had it before. When its direct twin
    /// waits: given now if that one is first in line (which goes); otherwise the twin is marked,
    /// and goes in its turn behind the copies that came directly before it. Giving this copy
    /// at once then put it ahead of those, among them earlier messages of its publisher whose own
    /// twins never come (not for a filter the old node's stub has): tests/31_cluster_model.rs,
    /// seed 1796668521108953656, 500 steps, 64 shards.
    pub(super) fn followed(&mut self, slot: u32, msg: &Arc<Message>) -> Followed {
        if self.arrived.is_empty() || msg.id == 0 {
            return Followed::Give;
        }
        let Some(recent) = self.arrived.get_mut(&slot) else {
            return Followed::Give;
        };
        if recent.seen.contains(&msg.id) {
            return Followed::Drop;
        }
        match recent.waiting.iter().position(|w| w.msg.id == msg.id) {
            Some(0) => {
                recent.waiting.pop_front();
                recent.repeat(msg.id);
                Followed::Give
            }
            Some(at) => {
                recent.waiting[at].twinned = true;
                Followed::Drop
            }
            // Not sent here directly (yet): it goes now, unless copies received before it wait
            // (its publisher's, maybe: a remote copy does not say whose it is). Then it waits in
            // line, ready to go once those ahead of it went.
            None => {
                let older = msg.read_at != 0
                    && recent
                        .waiting
                        .iter()
                        .any(|w| w.msg.read_at != 0 && w.msg.read_at < msg.read_at);
                if older && recent.waiting.len() < WAITING_MAX {
                    recent.enqueue(Waiting {
                        since: Instant::now(),
                        msg: msg.clone(),
                        twinned: true,
                    });
                    return Followed::Drop;
                }
                recent.repeat(msg.id);
                Followed::Give
            }
        }
    }

    /// The copies first in line for the session in `slot` whose twins came: they go now, in order.
    pub(super) fn twinned_front(&mut self, slot: u32) -> Vec<Arc<Message>> {
        let Some(recent) = self.arrived.get_mut(&slot) else {
            return Vec::new();
        };
        let n = recent.front(|w| w.twinned);
        recent.take_front(n)
    }

    /// A copy of `msg` routed to the session in `slot` (sent to this node directly, or published
    /// here): given, dropped (it had it), or kept waiting for its twin (see the module's "Order").
    pub(super) fn direct(&mut self, slot: u32, msg: &Arc<Message>, now: Instant) -> Direct {
        if self.arrived.is_empty() || msg.id == 0 {
            return Direct::Give;
        }
        let Some(recent) = self.arrived.get_mut(&slot) else {
            return Direct::Give;
        };
        if recent.seen.contains(&msg.id) || recent.waiting.iter().any(|w| w.msg.id == msg.id) {
            return Direct::Drop;
        }
        // Behind copies already waiting, in the order they came.
        let wait = !recent.waiting.is_empty()
            || (now < recent.twins_until && crate::topic::matches_any(&recent.filters, &msg.topic));
        if wait && recent.waiting.len() < WAITING_MAX {
            recent.enqueue(Waiting {
                since: now,
                msg: msg.clone(),
                twinned: false,
            });
            return Direct::Wait;
        }
        recent.repeat(msg.id);
        Direct::Give
    }

    /// Whether the session in `slot` is a moved session's stub (cheap while there is none).
    pub(super) fn is_stub(&self, slot: u32) -> bool {
        !self.stubs.is_empty() && self.stubs.contains_key(&slot)
    }

    /// The ids of what the session `s` in `slot`, about to move to another node, was given lately
    /// (remembered since it came here, if it came lately) and of what it still owes: the new node
    /// takes no second copy of them.
    pub(super) fn seen_by(&self, slot: u32, s: &crate::session::Session) -> Vec<u64> {
        let mut seen: Vec<u64> = match self.arrived.get(&slot) {
            Some(recent) => recent
                .order
                .iter()
                .rev()
                .take(CARRIED_MAX)
                .copied()
                .collect(),
            None => Vec::new(),
        };
        s.for_each_owed_all(|_, m, _, _, _, _| {
            if m.id != 0 && seen.len() < 2 * CARRIED_MAX {
                seen.push(m.id);
            }
        });
        seen
    }

    /// `slot` was removed: neither a stub nor a session that arrived any more.
    pub(super) fn forget(&mut self, slot: u32) {
        if !self.stubs.is_empty() {
            self.stubs.remove(&slot);
        }
        if !self.arrived.is_empty() {
            self.arrived.remove(&slot);
        }
    }
}

impl Shard {
    /// Cluster mode: names `msg`, accepted here, for the nodes (`Message::id`).
    pub(super) fn name_message(&mut self, msg: &mut Message) {
        if self.link.is_some() {
            msg.id = self.moves.name();
        }
    }

    /// The session in `slot` came from another node, where it was given `seen` lately: what it is
    /// given is remembered a while, and `seen` with it. Copies sent directly wait for their twins
    /// only when that node is alive (`seen` is Some), passing copies on.
    pub(super) fn arrived(&mut self, slot: u32, seen: Option<&[u64]>) {
        let (seen, twins_for) = match seen {
            Some(seen) => (seen, TWINS_FOR),
            None => (&[][..], Duration::ZERO),
        };
        let now = Instant::now();
        let filters = self.sessions.at(slot).map_or_else(Vec::new, |s| {
            s.subscriptions
                .keys()
                .filter(|f| !f.starts_with(crate::topic::SHARED_PREFIX))
                .cloned()
                .collect()
        });
        let mut recent = Recent {
            until: now + RECENT_LIFE,
            seen: AHashSet::with_capacity(seen.len()),
            order: VecDeque::with_capacity(seen.len()),
            twins_until: now + twins_for,
            filters,
            waiting: VecDeque::new(),
        };
        // Oldest first, as they are forgotten.
        for &id in seen.iter().rev() {
            recent.repeat(id);
        }
        self.moves.arrived.insert(slot, recent);
    }

    /// The session in `slot` moved to another node (its snapshot went): it stays as a stub for
    /// [`STUB_LIFE`], no longer this node's to keep for the cluster, to write to disk, or to hold
    /// anybody for.
    pub(super) fn leave_stub(&mut self, slot: u32) {
        self.member_presence(slot, false, false);
        self.moves.stubs.insert(slot, Instant::now() + STUB_LIFE);
        let Some(s) = self.sessions.at_mut(slot) else {
            return;
        };
        let holding = s.holding.take();
        if s.durable {
            s.durable = false;
            self.journal.session_gone(&s.client_id);
        }
        let client_id = s.client_id.clone();
        let will = super::will::will_mail(s);
        self.send_releases(holding);
        if let Some(link) = self.link {
            self.mail.send(link, will);
            self.mail.send(
                link,
                Mail::State {
                    client_id,
                    image: None,
                },
            );
        }
    }

    /// A message for the stub in `slot`: after the session, through the link, when it was published
    /// on this node (`origin`) or `sent_for` the session by another node; the link follows what
    /// other nodes route here itself.
    pub(super) fn follow_stub(&mut self, slot: u32, msg: &Arc<Message>, sent_for: bool) {
        let (Some(link), Some(s)) = (self.link, self.sessions.at(slot)) else {
            return;
        };
        if msg.origin.is_some() || sent_for {
            let client_id = s.client_id.clone();
            self.mail.send(
                link,
                Mail::Follow {
                    client_id,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// The copies waiting for their twins for the session in `slot`, given now, in the order they
    /// came (it moves on).
    pub(super) fn give_waiting(&mut self, slot: u32) {
        let Some(recent) = self.moves.arrived.get_mut(&slot) else {
            return;
        };
        let waiting = std::mem::take(&mut recent.waiting);
        self.give_late(slot, waiting.into_iter().map(|w| w.msg));
    }

    /// Copies that waited in line (for their twins, or behind copies received before them),
    /// given to the session in `slot` in that order, as the node it left would pass them on
    /// (remembered, so that a later copy is dropped).
    pub(super) fn give_late(&mut self, slot: u32, msgs: impl IntoIterator<Item = Arc<Message>>) {
        let now = Instant::now();
        for msg in msgs {
            let repeat = self
                .moves
                .arrived
                .get_mut(&slot)
                .is_some_and(|r| msg.id != 0 && r.repeat(msg.id));
            if !repeat {
                self.give_owed(slot, &msg, now);
            }
        }
    }

    /// On the tick: the stubs whose time is over go; copies that waited long enough for their twins
    /// are given; sessions that arrived long enough ago forget.
    pub(super) fn end_moves(&mut self, now: Instant) {
        if !self.moves.arrived.is_empty() {
            let mut due = Vec::new();
            for (&slot, recent) in &mut self.moves.arrived {
                let waited = recent.due(now);
                if waited > 0 {
                    due.push((slot, recent.take_front(waited)));
                }
            }
            self.moves.arrived.retain(|_, r| r.until > now);
            for (slot, msgs) in due {
                self.give_late(slot, msgs);
            }
        }
        if self.moves.stubs.is_empty() {
            return;
        }
        let over: Vec<u32> = self
            .moves
            .stubs
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(slot, _)| *slot)
            .collect();
        for slot in over {
            self.remove_session(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recent(twins_until: Instant) -> Recent {
        Recent {
            until: Instant::now() + RECENT_LIFE,
            seen: AHashSet::new(),
            order: VecDeque::new(),
            twins_until,
            filters: vec![Utf8Bytes::from_static("a/+")],
            waiting: VecDeque::new(),
        }
    }

    fn named(moves: &mut Moves, topic: &'static str) -> Arc<Message> {
        let mut msg = Message::new(
            Utf8Bytes::from_static(topic),
            bytes::Bytes::new(),
            crate::codec::QoS::AtLeastOnce,
            false,
            Default::default(),
            None,
        );
        msg.id = moves.name();
        Arc::new(msg)
    }

    #[test]
    fn a_repeat_is_told_once_named() {
        let mut moves = Moves::default();
        let (a, b) = (named(&mut moves, "a/1"), named(&mut moves, "a/1"));
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, 0);
        moves.arrived.insert(7, recent(Instant::now()));
        assert_eq!(moves.followed(7, &a), Followed::Give, "first copy");
        assert_eq!(moves.followed(7, &a), Followed::Drop, "second copy");
        assert_eq!(moves.direct(7, &a, Instant::now()), Direct::Drop);
        assert_eq!(
            moves.followed(8, &a),
            Followed::Give,
            "another session remembers nothing"
        );
        let mut unnamed = Message::clone(&a);
        unnamed.id = 0;
        let unnamed = Arc::new(unnamed);
        assert_eq!(
            moves.followed(7, &unnamed),
            Followed::Give,
            "unnamed: never a repeat"
        );
        assert_eq!(moves.followed(7, &unnamed), Followed::Give);
    }

    #[test]
    fn a_direct_copy_waits_for_its_twin_while_the_old_node_may_pass_it_on() {
        let mut moves = Moves::default();
        let now = Instant::now();
        moves.arrived.insert(7, recent(now + TWINS_FOR));
        let (first, second) = (named(&mut moves, "a/1"), named(&mut moves, "a/1"));
        // The second comes directly before the first comes after the session.
        assert_eq!(moves.direct(7, &second, now), Direct::Wait);
        assert_eq!(
            moves.direct(7, &second, now),
            Direct::Drop,
            "waiting already"
        );
        assert_eq!(moves.followed(7, &first), Followed::Give);
        assert_eq!(
            moves.followed(7, &second),
            Followed::Give,
            "its twin is given, in order"
        );
        assert!(
            moves.arrived[&7].waiting.is_empty(),
            "the waiting copy went"
        );
        assert_eq!(moves.direct(7, &second, now), Direct::Drop);
        // Not for a filter it came with: given at once.
        let other = named(&mut moves, "b/1");
        assert_eq!(moves.direct(7, &other, now), Direct::Give);
        // After the old node's time: given at once.
        let late = named(&mut moves, "a/2");
        assert_eq!(moves.direct(7, &late, now + TWINS_FOR), Direct::Give);
        assert_eq!(
            moves.direct(8, &late, now),
            Direct::Give,
            "not a session that came"
        );
    }

    /// A twin that comes while copies that came directly before its own still wait (theirs may
    /// never come: not for a filter the old node's stub has) does not overtake them: its direct
    /// copy goes in its turn, when those ahead of it go.
    #[test]
    fn a_twin_does_not_overtake_copies_waiting_ahead_of_its_own() {
        let mut moves = Moves::default();
        let now = Instant::now();
        moves.arrived.insert(7, recent(now + TWINS_FOR));
        let (first, second, third) = (
            named(&mut moves, "a/1"),
            named(&mut moves, "a/1"),
            named(&mut moves, "a/1"),
        );
        for m in [&first, &second, &third] {
            assert_eq!(moves.direct(7, m, now), Direct::Wait);
        }
        assert_eq!(moves.followed(7, &second), Followed::Drop, "behind first");
        assert!(moves.twinned_front(7).is_empty(), "first still waits");
        assert_eq!(moves.followed(7, &first), Followed::Give, "first in line");
        let next: Vec<u64> = moves.twinned_front(7).iter().map(|m| m.id).collect();
        assert_eq!(next, [second.id], "then second, whose twin came");
        assert_eq!(moves.arrived[&7].waiting.len(), 1, "third waits on");
    }

    /// A copy passed on that was received after copies still waiting (sent directly, their twins
    /// not come) waits behind them: it may be a later message of their publisher. One received
    /// before them goes at once.
    #[test]
    fn a_passed_on_copy_received_after_waiting_ones_waits_behind_them() {
        let mut moves = Moves::default();
        let now = Instant::now();
        moves.arrived.insert(7, recent(now + TWINS_FOR));
        let at = |moves: &mut Moves, read_at: u64| {
            let mut m = Message::clone(&named(moves, "a/1"));
            m.read_at = read_at;
            Arc::new(m)
        };
        let (early, direct, late) = (at(&mut moves, 10), at(&mut moves, 20), at(&mut moves, 30));
        assert_eq!(moves.direct(7, &direct, now), Direct::Wait);
        assert_eq!(moves.followed(7, &late), Followed::Drop, "after direct");
        assert_eq!(moves.followed(7, &early), Followed::Give, "before direct");
        assert!(moves.twinned_front(7).is_empty(), "direct still waits");
        assert_eq!(moves.followed(7, &direct), Followed::Give, "its twin");
        let next: Vec<u64> = moves.twinned_front(7).iter().map(|m| m.id).collect();
        assert_eq!(next, [late.id], "then the later one");
    }

    /// The line goes from the front, as copies get their twins or wait their time; once no twin
    /// can come any more, all of it.
    #[test]
    fn the_line_goes_from_its_front_and_all_once_no_twin_can_come() {
        let mut moves = Moves::default();
        let now = Instant::now();
        moves.arrived.insert(7, recent(now + TWINS_FOR));
        let copies: Vec<_> = (0..3).map(|_| named(&mut moves, "a/1")).collect();
        for (i, m) in copies.iter().enumerate() {
            let at = now + Duration::from_millis(400 * i as u64);
            assert_eq!(moves.direct(7, m, at), Direct::Wait);
        }
        assert_eq!(
            moves.followed(7, &copies[2]),
            Followed::Drop,
            "its copy waits behind"
        );
        let r = &moves.arrived[&7];
        assert_eq!(r.due(now + Duration::from_millis(500)), 0);
        assert_eq!(r.due(now + TWIN_WAIT), 1, "the first waited its time");
        assert_eq!(
            r.due(now + TWIN_WAIT + Duration::from_millis(400)),
            3,
            "then twinned"
        );
        let r = moves.arrived.get_mut(&7).unwrap();
        r.waiting[2].twinned = false;
        assert_eq!(r.due(now + TWIN_WAIT + Duration::from_millis(400)), 2);
        assert_eq!(
            r.due(now + TWINS_FOR + TWIN_WAIT),
            3,
            "no twin can come: all"
        );
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut recent = recent(Instant::now());
        for id in 1..=(RECENT_MAX as u64 + 10) {
            assert!(!recent.repeat(id));
        }
        assert_eq!(recent.seen.len(), RECENT_MAX);
        assert!(!recent.repeat(1), "the oldest went first");
        assert!(recent.repeat(RECENT_MAX as u64 + 10));
    }
}
