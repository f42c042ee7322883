//! Shared subscription groups (`$share/{group}/{filter}`) across the nodes, as the link sees them
//! (sans-IO: the relay does what the answers say). docs/CLUSTER.md, "Shared subscriptions".
//!
//! - **local**: each group's members on this node, learnt from the shards' `ShareJoin` /
//!   `ShareLeave` mail (which carries each member's `MemberState`). A group with a member here is
//!   this node's key in the interest bucket (`<node>.<hash of $share/g/f>`, the value the whole
//!   `$share/g/f`): [`KvChange`]s say when it enters or leaves it. A message another node picked
//!   this node for goes to one of them ([`Groups::pick_local`]).
//! - **remote**: each group's other nodes with members, learnt from that bucket. For each such node
//!   the link is one member of the group in every shard's copy of the groups (`index::shared`),
//!   with that node's slot ([`Groups::slot_of`]), so that a publisher's shard picks one member
//!   cluster-wide, each node with members taking a turn as often as each local member: one of its
//!   node's own, or a node's slot of the link, which passes the message to that node
//!   ([`Groups::pick_slot`]), which picks one of its members. [`GroupChange`]s say when the link
//!   joins or leaves a group for a node.

use std::sync::Arc;

use ahash::{AHashMap, AHashSet};

use super::interest::{key_of, node_of, KvChange, RemoteKeyError};
use crate::codec::Utf8Bytes;
use crate::index::MemberState;
use crate::router::ShardId;

/// Whether the link is now a member of a group in the shards' copies, for one other node (`slot`)
/// that has members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// Join `full` (`$share/{group}/{filter}`), whose inner filter is `filter`.
    Join {
        full: Utf8Bytes,
        filter: Utf8Bytes,
        slot: u32,
    },
    Leave {
        full: Utf8Bytes,
        slot: u32,
    },
}

#[derive(Default)]
struct LocalGroup {
    /// (shard, slot) and whether that member's client is online, sorted by (shard, slot).
    members: Vec<(ShardId, u32, Arc<MemberState>)>,
    cursor: usize,
}

#[derive(Default)]
struct RemoteGroup {
    /// The other nodes with members, sorted.
    nodes: Vec<String>,
    cursor: usize,
}

#[derive(Default)]
pub struct Groups {
    node: String,
    local: AHashMap<Utf8Bytes, LocalGroup>,
    remote: AHashMap<Utf8Bytes, RemoteGroup>,
    /// Each remote group key seen in the bucket: its node and group.
    remote_keys: AHashMap<String, (String, Utf8Bytes)>,
    /// Each other node's slot as a member (the link's, in the shards' groups), for this process's
    /// life: index + 1 in `slot_nodes`.
    node_slots: AHashMap<String, u32>,
    slot_nodes: Vec<String>,
}

impl Groups {
    pub fn new(node: &str) -> Groups {
        Groups {
            node: node.to_owned(),
            ..Groups::default()
        }
    }

    /// The session in `slot` of `shard` joined `full`: a put when it is the node's first member.
    pub fn local_join(
        &mut self,
        full: &Utf8Bytes,
        shard: ShardId,
        slot: u32,
        state: Arc<MemberState>,
    ) -> Option<KvChange> {
        let group = self.local.entry(full.clone()).or_default();
        let first = group.members.is_empty();
        match group
            .members
            .binary_search_by_key(&(shard, slot), |m| (m.0, m.1))
        {
            Ok(_) => return None,
            Err(at) => group.members.insert(at, (shard, slot, state)),
        }
        first.then(|| KvChange::Put {
            key: key_of(&self.node, full),
            filter: full.clone(),
        })
    }

    /// The session in `slot` of `shard` left `full`: a delete when it was the node's last member.
    pub fn local_leave(&mut self, full: &Utf8Bytes, shard: ShardId, slot: u32) -> Option<KvChange> {
        let group = self.local.get_mut(full)?;
        let at = group
            .members
            .binary_search_by_key(&(shard, slot), |m| (m.0, m.1))
            .ok()?;
        group.members.remove(at);
        if !group.members.is_empty() {
            return None;
        }
        self.local.remove(full);
        Some(KvChange::Delete {
            key: key_of(&self.node, full),
        })
    }

    /// A member here for a message of `full`, in turn, online members first (an offline persistent
    /// member queues it when none is online). None when the node has none.
    pub fn pick_local(&mut self, full: &Utf8Bytes) -> Option<(ShardId, u32)> {
        let group = self.local.get_mut(full)?;
        let n = group.members.len();
        let any_online = group.members.iter().any(|m| m.2.online());
        for i in 0..n {
            let at = (group.cursor + i) % n;
            let (shard, slot, state) = &group.members[at];
            if !any_online || state.online() {
                group.cursor = at + 1;
                return Some((*shard, *slot));
            }
        }
        None
    }

    /// The bucket holds `key` with the group `full` (`$share/{group}/{filter}`) as its value.
    pub fn remote_put(
        &mut self,
        key: &str,
        full: Utf8Bytes,
        filter: Utf8Bytes,
    ) -> Result<Option<GroupChange>, RemoteKeyError> {
        let node = node_of(key).ok_or(RemoteKeyError::NoNode)?;
        if node == self.node || self.remote_keys.contains_key(key) {
            return Ok(None);
        }
        self.remote_keys
            .insert(key.to_owned(), (node.to_owned(), full.clone()));
        let slot = self.slot_of(node);
        let group = self.remote.entry(full.clone()).or_default();
        match group.nodes.binary_search_by(|n| n.as_str().cmp(node)) {
            Ok(_) => Ok(None),
            Err(at) => {
                group.nodes.insert(at, node.to_owned());
                Ok(Some(GroupChange::Join { full, filter, slot }))
            }
        }
    }

    /// The bucket no longer holds `key` (None also when it is not a group key).
    pub fn remote_delete(&mut self, key: &str) -> Option<GroupChange> {
        let (node, full) = self.remote_keys.remove(key)?;
        let slot = self.slot_of(&node);
        let group = self.remote.get_mut(&full)?;
        let at = group.nodes.binary_search(&node).ok()?;
        group.nodes.remove(at);
        if group.nodes.is_empty() {
            self.remote.remove(&full);
        }
        Some(GroupChange::Leave { full, slot })
    }

    /// `node`'s slot as a member of groups (the same in every group).
    pub fn slot_of(&mut self, node: &str) -> u32 {
        if let Some(&slot) = self.node_slots.get(node) {
            return slot;
        }
        self.slot_nodes.push(node.to_owned());
        let slot = self.slot_nodes.len() as u32;
        self.node_slots.insert(node.to_owned(), slot);
        slot
    }

    /// The node of `slot` for a message of `full` a shard picked it for, if it still has members;
    /// else another node with members, in turn (None: no other node has any).
    pub fn pick_slot(&mut self, full: &Utf8Bytes, slot: u32) -> Option<&str> {
        let at = slot.checked_sub(1).map(|i| i as usize);
        let has = match (
            at.and_then(|i| self.slot_nodes.get(i)),
            self.remote.get(full),
        ) {
            (Some(node), Some(group)) => group.nodes.binary_search(node).is_ok(),
            _ => false,
        };
        match (has, at) {
            (true, Some(i)) => Some(self.slot_nodes[i].as_str()),
            _ => self.pick_remote(full),
        }
    }

    /// After reading the bucket's keys afresh: forget the remote group keys not among them.
    pub fn retain_remote(&mut self, present: &AHashSet<String>) -> Vec<GroupChange> {
        let gone = super::interest::absent(self.remote_keys.keys(), present);
        gone.iter().filter_map(|k| self.remote_delete(k)).collect()
    }

    /// Another node with members of `full`, in turn; None when no other node has one.
    pub fn pick_remote(&mut self, full: &Utf8Bytes) -> Option<&str> {
        let group = self.remote.get_mut(full)?;
        let at = group.cursor % group.nodes.len();
        group.cursor = at + 1;
        Some(group.nodes[at].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s)
    }

    fn online(yes: bool) -> Arc<MemberState> {
        let s = Arc::new(MemberState::default());
        s.set_online(yes);
        s
    }

    #[test]
    fn a_group_is_the_nodes_key_from_its_first_member_to_its_last() {
        let mut g = Groups::new("me");
        let full = f("$share/g/a/#");
        let key = key_of("me", "$share/g/a/#");
        assert_eq!(
            g.local_join(&full, 0, 7, online(true)),
            Some(KvChange::Put {
                key: key.clone(),
                filter: full.clone()
            })
        );
        assert_eq!(g.local_join(&full, 1, 2, online(true)), None);
        assert_eq!(g.local_join(&full, 1, 2, online(true)), None, "again");
        assert_eq!(g.pick_local(&full), Some((0, 7)));
        assert_eq!(g.local_leave(&full, 0, 7), None);
        assert_eq!(g.local_leave(&full, 0, 7), None, "not a member");
        assert_eq!(g.local_leave(&full, 1, 2), Some(KvChange::Delete { key }));
        assert_eq!(g.pick_local(&full), None);
    }

    #[test]
    fn members_here_take_turns_online_ones_first() {
        let mut g = Groups::new("me");
        let full = f("$share/g/t");
        let away = online(false);
        g.local_join(&full, 0, 1, online(true));
        g.local_join(&full, 0, 2, away.clone());
        g.local_join(&full, 1, 3, online(true));
        let picks: Vec<_> = (0..4).map(|_| g.pick_local(&full).unwrap()).collect();
        assert_eq!(picks, [(0, 1), (1, 3), (0, 1), (1, 3)]);
        g.local_leave(&full, 0, 1);
        g.local_leave(&full, 1, 3);
        assert_eq!(g.pick_local(&full), Some((0, 2)), "only the offline one");
        away.set_online(true);
        assert_eq!(g.pick_local(&full), Some((0, 2)));
    }

    #[test]
    fn the_link_is_one_member_per_remote_node_with_members() {
        let mut g = Groups::new("me");
        let (full, filter) = (f("$share/g/s/+"), f("s/+"));
        let (ka, kb) = (key_of("a", &full), key_of("b", &full));
        assert_eq!(
            g.remote_put(&key_of("me", &full), full.clone(), filter.clone()),
            Ok(None),
            "own key"
        );
        let join = |slot| {
            Ok(Some(GroupChange::Join {
                full: full.clone(),
                filter: filter.clone(),
                slot,
            }))
        };
        assert_eq!(g.remote_put(&ka, full.clone(), filter.clone()), join(1));
        assert_eq!(g.remote_put(&ka, full.clone(), filter.clone()), Ok(None));
        assert_eq!(g.remote_put(&kb, full.clone(), filter.clone()), join(2));
        // A shard picked b's slot: b; a round robin among the nodes otherwise.
        assert_eq!(g.pick_slot(&full, 2), Some("b"));
        assert_eq!(g.pick_slot(&full, 1), Some("a"));
        let picks: Vec<String> = (0..3)
            .map(|_| g.pick_remote(&full).unwrap().to_owned())
            .collect();
        assert_eq!(picks, ["a", "b", "a"]);
        assert_eq!(
            g.remote_delete(&ka),
            Some(GroupChange::Leave {
                full: full.clone(),
                slot: 1
            })
        );
        assert_eq!(g.pick_slot(&full, 1), Some("b"), "a left: another node");
        let present: AHashSet<String> = AHashSet::new();
        assert_eq!(
            g.retain_remote(&present),
            [GroupChange::Leave {
                full: full.clone(),
                slot: 2
            }]
        );
        assert_eq!(g.pick_slot(&full, 2), None);
        assert_eq!(g.pick_remote(&full), None);
        assert_eq!(g.remote_delete("x.y"), None, "not a group key");
        assert_eq!(
            g.remote_put("nodot", full.clone(), filter.clone()),
            Err(RemoteKeyError::NoNode)
        );
        // A node keeps its slot when it comes back, in this group or another.
        assert_eq!(g.remote_put(&ka, full.clone(), filter.clone()), join(1));
    }
}
