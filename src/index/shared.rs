//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0 section 4.8.2, also offered to 3.1.1
//! clients as Mosquitto does): the members of every group, and the choice of the one member that gets
//! a message.
//!
//! Concurrency model: every shard keeps its own copy of [`SharedGroups`], touched by its thread only,
//! kept alike by urgent mail as the interest map is (`router`, `Mail::ShareJoin` / `ShareLeave`). The
//! publisher's shard picks the member and sends the message straight to that member's shard: one hop,
//! as for any subscriber, so per-publisher order and the journal's accounting of what a shard sent
//! where (`shard::journal`) hold for shared deliveries too. What the picking needs to know about a
//! member that its own shard alone sees (online or not, its backlog) is in a [`MemberState`] that
//! every copy shares by `Arc`: two relaxed atomics, written by the member's shard.
//!
//! Strategies ([`Strategy`]) and the per-publisher order each keeps: `hash` sends all of one
//! publisher's messages to the same member while the group's online members stay the same, so they
//! arrive in order; `round_robin`, `random` and `least_inflight` spread one publisher's messages over
//! the members, each member seeing its share in publish order but no member seeing all of them.
//! Round robin turns per publishing shard (each shard has its own cursor).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use ahash::AHashMap;

use super::SubscriptionTrie;
use crate::codec::Utf8Bytes;

/// How a group picks the member for a message (`shared_subscription_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each member in turn (per publishing shard).
    #[default]
    RoundRobin,
    /// A member at random.
    Random,
    /// By a hash of the publisher's client id: one publisher, one member.
    Hash,
    /// The member with the fewest messages in flight and queued, ties in turn.
    LeastInflight,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::RoundRobin,
        Strategy::Random,
        Strategy::Hash,
        Strategy::LeastInflight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
            Strategy::Hash => "hash",
            Strategy::LeastInflight => "least_inflight",
        }
    }

    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The strategy of every group: `shared_subscription_strategy STRATEGY` sets the broker's default,
/// `shared_subscription_strategy STRATEGY GROUP...` the strategy of the groups named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strategies {
    pub default: Strategy,
    pub groups: Vec<(String, Strategy)>,
}

impl Strategies {
    /// The strategy of share group `group` (the last line naming it wins).
    pub fn for_group(&self, group: &str) -> Strategy {
        self.groups
            .iter()
            .rev()
            .find(|(g, _)| g == group)
            .map_or(self.default, |(_, s)| *s)
    }
}

/// What publishers' shards need to know of a member session that only its shard sees.
#[derive(Debug, Default)]
pub struct MemberState {
    online: AtomicBool,
    /// QoS 1/2 messages in flight and queued for it.
    backlog: AtomicU32,
}

impl MemberState {
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }
    pub fn online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }
    pub fn set_backlog(&self, n: usize) {
        self.backlog
            .store(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
    }
    pub fn backlog(&self) -> u32 {
        self.backlog.load(Ordering::Relaxed)
    }
}

/// A session subscribed to a group: on which shard, in which slot.
#[derive(Debug, Clone)]
pub struct Member {
    pub shard: u16,
    pub slot: u32,
    pub state: Arc<MemberState>,
}

impl Member {
    fn id(&self) -> (u16, u32) {
        (self.shard, self.slot)
    }
}

struct Group {
    /// The whole `$share/{group}/{filter}` as subscribed (mount point included): how sessions name it.
    full: Utf8Bytes,
    /// The inner filter, as matched against topics.
    filter: Utf8Bytes,
    /// Sorted by (shard, slot), so that every shard's copy lists them alike (`hash`).
    members: Vec<Member>,
    /// Where `round_robin` and `least_inflight` go on from.
    cursor: usize,
    strategy: Strategy,
}

/// The groups and their members, as one shard knows them (module doc).
#[derive(Default)]
pub struct SharedGroups {
    groups: Vec<Option<Group>>,
    free: Vec<u32>,
    by_full: AHashMap<Utf8Bytes, u32>,
    /// Inner filter → ids of the groups with that filter.
    trie: SubscriptionTrie<u32, ()>,
    /// xorshift state for `random`.
    rng: u64,
}

impl SharedGroups {
    pub fn new(seed: u64) -> SharedGroups {
        SharedGroups {
            rng: seed | 1,
            ..SharedGroups::default()
        }
    }

    /// No group has a member: publishes skip shared matching altogether.
    pub fn is_empty(&self) -> bool {
        self.by_full.is_empty()
    }

    /// `member` subscribed to `full` (`$share/{group}/{filter}`, `filter` being its inner filter):
    /// added, or left as it is when already there (a repeated SUBSCRIBE changes only its options,
    /// which its own shard keeps). Returns whether the group is new (it had no member).
    pub fn join(
        &mut self,
        full: &Utf8Bytes,
        filter: &Utf8Bytes,
        strategy: Strategy,
        member: Member,
    ) -> bool {
        let mut new = false;
        let id = match self.by_full.get(full) {
            Some(&id) => id,
            None => {
                new = true;
                let group = Group {
                    full: full.clone(),
                    filter: filter.clone(),
                    members: Vec::new(),
                    cursor: 0,
                    strategy,
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.groups[id as usize] = Some(group);
                        id
                    }
                    None => {
                        self.groups.push(Some(group));
                        (self.groups.len() - 1) as u32
                    }
                };
                self.by_full.insert(full.clone(), id);
                self.trie.insert(filter, id, ());
                id
            }
        };
        let group = self.groups[id as usize].as_mut().expect("listed group");
        if let Err(at) = group.members.binary_search_by_key(&member.id(), Member::id) {
            group.members.insert(at, member);
        }
        new
    }

    /// The session in `slot` of `shard` left group `full`. Returns whether it was a member.
    pub fn leave(&mut self, full: &Utf8Bytes, shard: u16, slot: u32) -> bool {
        let Some(&id) = self.by_full.get(full) else {
            return false;
        };
        let group = self.groups[id as usize].as_mut().expect("listed group");
        let Ok(at) = group
            .members
            .binary_search_by_key(&(shard, slot), Member::id)
        else {
            return false;
        };
        group.members.remove(at);
        if group.members.is_empty() {
            let group = self.groups[id as usize].take().expect("listed group");
            self.trie.remove(&group.filter, id);
            self.by_full.remove(&group.full);
            self.free.push(id);
        }
        true
    }

    /// Picks one member of every group whose filter matches `topic`, skipping `exclude` (a member a
    /// message is taken back from), and gives (group, member) to `f`. `key` gives the publisher's
    /// hash, asked for only by `hash` groups. Offline members are picked only when no member is online: a persistent
    /// session then queues the message for when it comes back.
    pub fn pick(
        &mut self,
        topic: &str,
        key: impl Fn() -> u64,
        exclude: Option<(u16, u32)>,
        mut f: impl FnMut(&Utf8Bytes, &Member),
    ) {
        let mut ids: smallvec::SmallVec<[u32; 4]> = smallvec::SmallVec::new();
        self.trie.for_each_match(topic, |id, _| ids.push(id));
        for id in ids {
            let random = self.next_random();
            let Some(group) = self.groups[id as usize].as_mut() else {
                continue;
            };
            if let Some(at) = choose(group, &key, random, exclude) {
                f(&group.full, &group.members[at]);
            }
        }
    }

    /// The group `full` (for a message taken back from a member): one of its other members.
    pub fn pick_in(
        &mut self,
        full: &Utf8Bytes,
        key: impl Fn() -> u64,
        exclude: Option<(u16, u32)>,
    ) -> Option<Member> {
        let random = self.next_random();
        let id = *self.by_full.get(full)?;
        let group = self.groups[id as usize].as_mut()?;
        choose(group, &key, random, exclude).map(|at| group.members[at].clone())
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Whether group `full` has an online member other than `member`.
    pub fn has_other_online(&self, full: &Utf8Bytes, member: (u16, u32)) -> bool {
        self.by_full
            .get(full)
            .and_then(|&id| self.groups[id as usize].as_ref())
            .is_some_and(|g| {
                g.members
                    .iter()
                    .any(|m| m.id() != member && m.state.online())
            })
    }

    /// Number of groups with members.
    pub fn len(&self) -> usize {
        self.by_full.len()
    }
}

/// The index of the member of `group` to get the next message (None: no member but `exclude`).
fn choose(
    group: &mut Group,
    key: &dyn Fn() -> u64,
    random: u64,
    exclude: Option<(u16, u32)>,
) -> Option<usize> {
    let members = &group.members;
    let n = members.len();
    let allowed = |m: &Member| Some(m.id()) != exclude;
    let any_online = members.iter().any(|m| allowed(m) && m.state.online());
    let eligible = |m: &Member| allowed(m) && (!any_online || m.state.online());
    let count = members.iter().filter(|m| eligible(m)).count();
    if count == 0 {
        return None;
    }
    let nth = |k: usize| {
        members
            .iter()
            .enumerate()
            .filter(|(_, m)| eligible(m))
            .nth(k)
            .map(|(i, _)| i)
    };
    let at = match group.strategy {
        Strategy::RoundRobin => (0..n)
            .map(|i| (group.cursor + i) % n)
            .find(|&i| eligible(&members[i])),
        Strategy::Random => nth((random % count as u64) as usize),
        Strategy::Hash => nth((key() % count as u64) as usize),
        Strategy::LeastInflight => (0..n)
            .map(|i| (group.cursor + i) % n)
            .filter(|&i| eligible(&members[i]))
            .min_by_key(|&i| members[i].state.backlog()),
    }?;
    group.cursor = at + 1;
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &'static str) -> Utf8Bytes {
        Utf8Bytes::from_static(s)
    }

    fn member(shard: u16, slot: u32, online: bool) -> Member {
        let state = Arc::new(MemberState::default());
        state.set_online(online);
        Member { shard, slot, state }
    }

    fn picks(g: &mut SharedGroups, topic: &str, key: u64, n: usize) -> Vec<(u16, u32)> {
        let mut out = Vec::new();
        for _ in 0..n {
            g.pick(topic, || key, None, |_, m| out.push((m.shard, m.slot)));
        }
        out
    }

    #[test]
    fn round_robin_turns_over_the_online_members_once_each() {
        let mut g = SharedGroups::new(1);
        let full = u("$share/g/a/+");
        for (shard, slot) in [(1, 5), (0, 2), (1, 1)] {
            g.join(
                &full,
                &u("a/+"),
                Strategy::RoundRobin,
                member(shard, slot, true),
            );
        }
        assert_eq!(
            picks(&mut g, "a/x", 0, 6),
            vec![(0, 2), (1, 1), (1, 5), (0, 2), (1, 1), (1, 5)]
        );
        assert!(picks(&mut g, "b/x", 0, 1).is_empty(), "no group matches");
    }

    #[test]
    fn offline_members_get_messages_only_when_nobody_is_online() {
        let mut g = SharedGroups::new(1);
        let full = u("$share/g/t");
        let away = member(0, 1, false);
        let here = member(0, 2, true);
        g.join(&full, &u("t"), Strategy::RoundRobin, away.clone());
        g.join(&full, &u("t"), Strategy::RoundRobin, here.clone());
        assert_eq!(picks(&mut g, "t", 0, 3), vec![(0, 2); 3]);
        here.state.set_online(false);
        assert_eq!(picks(&mut g, "t", 0, 2), vec![(0, 1), (0, 2)]);
        away.state.set_online(true);
        assert_eq!(picks(&mut g, "t", 0, 2), vec![(0, 1), (0, 1)]);
    }

    #[test]
    fn hash_keeps_one_publisher_on_one_member_and_least_inflight_takes_the_idlest() {
        let mut g = SharedGroups::new(1);
        let full = u("$share/h/t");
        for slot in 0..4 {
            g.join(&full, &u("t"), Strategy::Hash, member(0, slot, true));
        }
        let first = picks(&mut g, "t", 77, 1)[0];
        assert!(picks(&mut g, "t", 77, 5).iter().all(|&p| p == first));
        let spread: std::collections::HashSet<_> =
            (0..64).flat_map(|k| picks(&mut g, "t", k, 1)).collect();
        assert_eq!(spread.len(), 4, "different publishers spread");

        let mut g = SharedGroups::new(1);
        let full = u("$share/l/t");
        let busy = member(0, 0, true);
        busy.state.set_backlog(10);
        let idle = member(0, 1, true);
        g.join(&full, &u("t"), Strategy::LeastInflight, busy);
        g.join(&full, &u("t"), Strategy::LeastInflight, idle.clone());
        assert_eq!(picks(&mut g, "t", 0, 2), vec![(0, 1), (0, 1)]);
        idle.state.set_backlog(20);
        assert_eq!(picks(&mut g, "t", 0, 1), vec![(0, 0)]);
    }

    #[test]
    fn random_picks_only_members_and_every_one_in_time() {
        let mut g = SharedGroups::new(42);
        let full = u("$share/r/#");
        for slot in 0..3 {
            g.join(&full, &u("#"), Strategy::Random, member(2, slot, true));
        }
        let seen: std::collections::HashSet<_> = picks(&mut g, "x/y", 0, 200).into_iter().collect();
        assert_eq!(seen, [(2, 0), (2, 1), (2, 2)].into_iter().collect());
    }

    #[test]
    fn several_groups_each_get_one_copy_and_leaving_empties_a_group() {
        let mut g = SharedGroups::new(1);
        let (a, b) = (u("$share/a/t/#"), u("$share/b/t/+"));
        g.join(&a, &u("t/#"), Strategy::RoundRobin, member(0, 1, true));
        g.join(&a, &u("t/#"), Strategy::RoundRobin, member(0, 2, true));
        g.join(&b, &u("t/+"), Strategy::RoundRobin, member(1, 1, true));
        let mut got = Vec::new();
        g.pick(
            "t/x",
            || 0,
            None,
            |full, m| got.push((full.clone(), m.shard)),
        );
        got.sort();
        assert_eq!(got, vec![(a.clone(), 0), (b.clone(), 1)]);
        assert!(g.leave(&b, 1, 1));
        assert!(!g.leave(&b, 1, 1));
        assert_eq!(g.len(), 1);
        assert_eq!(picks(&mut g, "t/x", 0, 1).len(), 1);
        assert_eq!(g.pick_in(&a, || 0, Some((0, 1))).map(|m| m.slot), Some(2));
        assert!(g.pick_in(&a, || 0, Some((0, 1))).is_some());
        g.leave(&a, 0, 1);
        assert!(g.pick_in(&a, || 0, Some((0, 2))).is_none(), "nobody else");
        g.leave(&a, 0, 2);
        assert!(g.is_empty());
    }
}
