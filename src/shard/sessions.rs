//! The session table: the sessions whose home is this shard, in a slab of reusable slots, and the
//! client-id directory that finds them. One per shard, owned by its [`Shard`](super::Shard) and touched
//! on that shard's thread only: packet handling (`packets/`) attaches, finds and removes sessions,
//! delivery and the hold mail of other shards reach them by slot, the executor (`executor.rs`) walks
//! them for a security reload and at shutdown, and the CONNECT reader (`connection.rs`) asks it for a
//! client id when the client sent none.
//!
//! A slot's generation changes whenever the slot is reused or its session attached again, so a
//! `(slot, generation)` pair held by a connection, a pending SUBSCRIBE or an expiry deadline never
//! reaches a session it does not belong to.

use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::Instant;

use hashbrown::HashTable;

use crate::codec::{ProtocolVersion, Utf8Bytes};
use crate::router::ShardId;
use crate::session::{HoldSignal, Outbox, SeededState, Session, SlowSubscriberPolicy};

/// The fixed-key hash that places a client id on its home shard (docs/ARCHITECTURE.md, invariant 1). Fixed keys make
/// it stable across shards and restarts.
pub fn home_of(client_id: &[u8], shards: usize) -> ShardId {
    let state = ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    );
    (state.hash_one(client_id) % shards as u64) as ShardId
}

#[derive(Default)]
pub(super) struct SessionTable {
    /// Session slab: slot → session. Slots are reused; `generations` tells reuses apart. Boxed: a
    /// session is close to 1 KB, and an inline slab (doubling as it grows) would hold up to twice that
    /// per client, plus the old copies a reallocation leaves behind.
    sessions: Vec<Option<Box<Session>>>,
    generations: Vec<u32>,
    free_slots: Vec<u32>,
    /// Client id → slot, for the sessions whose home is this shard: slots hashed by their session's
    /// client id and compared through the slab, so the id is kept once (by the session) and an entry
    /// is 4 bytes, not 36 (memory per client, docs/PERFORMANCE.md). Holds exactly the occupied slots.
    directory: HashTable<u32>,
    /// Counter mixed into assigned client ids.
    assigned_ids: u64,
}

impl SessionTable {
    /// The session in `slot`, if it is still at `generation`.
    pub(super) fn get(&self, slot: u32, generation: u32) -> Option<&Session> {
        self.sessions
            .get(slot as usize)?
            .as_deref()
            .filter(|s| s.generation == generation)
    }

    pub(super) fn get_mut(&mut self, slot: u32, generation: u32) -> Option<&mut Session> {
        self.sessions
            .get_mut(slot as usize)?
            .as_deref_mut()
            .filter(|s| s.generation == generation)
    }

    /// The session in `slot`, whatever its generation (a subscription's slot, a publisher's origin).
    pub(super) fn at(&self, slot: u32) -> Option<&Session> {
        self.sessions.get(slot as usize)?.as_deref()
    }

    pub(super) fn at_mut(&mut self, slot: u32) -> Option<&mut Session> {
        self.sessions.get_mut(slot as usize)?.as_deref_mut()
    }

    /// The slot of the session of `client_id`, if its home is here and it exists.
    pub(super) fn slot_of(&self, client_id: &Utf8Bytes) -> Option<u32> {
        let sessions = &self.sessions;
        self.directory
            .find(id_hash(client_id), |&s| {
                sessions[s as usize]
                    .as_ref()
                    .is_some_and(|x| x.client_id == *client_id)
            })
            .copied()
    }

    pub(super) fn contains(&self, client_id: &Utf8Bytes) -> bool {
        self.slot_of(client_id).is_some()
    }

    /// Sessions whose home is this shard, connected or not.
    pub(super) fn len(&self) -> usize {
        self.directory.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().flatten().map(|s| &**s)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Session> {
        self.sessions.iter_mut().flatten().map(|s| &mut **s)
    }

    /// Place a new session in a free slot (or a new one) and enter it in the directory.
    pub(super) fn insert(&mut self, session: Session) -> u32 {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.sessions.push(None);
                self.generations.push(0);
                (self.sessions.len() - 1) as u32
            }
        };
        let hash = id_hash(&session.client_id);
        self.sessions[slot as usize] = Some(Box::new(session));
        let sessions = &self.sessions;
        self.directory
            .insert_unique(hash, slot, |&s| id_hash(&occupied(sessions, s).client_id));
        slot
    }

    /// The next generation of `slot`, for a session attached (again) there.
    pub(super) fn next_generation(&mut self, slot: u32) -> u32 {
        let g = &mut self.generations[slot as usize];
        *g = g.wrapping_add(1);
        *g
    }

    /// Take the session out of `slot` and its id out of the directory; [`Self::free`] then gives the
    /// slot back.
    pub(super) fn take(&mut self, slot: u32) -> Option<Box<Session>> {
        let session = self.sessions[slot as usize].take()?;
        if let Ok(entry) = self
            .directory
            .find_entry(id_hash(&session.client_id), |&s| s == slot)
        {
            entry.remove();
        }
        Some(session)
    }

    /// The session taken out of `slot` is gone: the slot can be reused, under a new generation.
    pub(super) fn free(&mut self, slot: u32) {
        self.free_slots.push(slot);
        self.generations[slot as usize] = self.generations[slot as usize].wrapping_add(1);
    }

    /// A client id for a client that sent none, chosen so that its home is this shard (docs/ARCHITECTURE.md
    /// invariant 1) and unlikely to collide with anything a client would pick.
    pub(super) fn assign_client_id(
        &mut self,
        prefix: &str,
        me: ShardId,
        shards: usize,
    ) -> Utf8Bytes {
        loop {
            self.assigned_ids += 1;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let id = format!(
                "{}{:08X}-{:04X}-{:012X}",
                prefix,
                nanos as u32,
                me,
                self.assigned_ids ^ (nanos >> 32) << 24
            );
            if home_of(id.as_bytes(), shards) == me && !self.contains(&Utf8Bytes::from(id.as_str()))
            {
                return Utf8Bytes::from(id);
            }
        }
    }

    /// Whether the session behind `outbox` speaks MQTT 5.0 (None if no session uses it).
    pub(super) fn protocol_of(&self, outbox: &Rc<Outbox>) -> Option<bool> {
        self.sessions.iter().flatten().find_map(|s| {
            s.conn
                .as_ref()
                .filter(|c| Rc::ptr_eq(c, outbox))
                .map(|_| s.protocol == ProtocolVersion::V5)
        })
    }

    /// A subscriber on shard `from` holds the publisher in `slot` of this shard (see
    /// [`crate::session::PublisherHold`]).
    pub(super) fn hold_publisher(
        &mut self,
        slot: u32,
        from: u16,
        signal: HoldSignal,
        insist: bool,
    ) {
        if let Some(s) = self.at_mut(slot) {
            let now = Instant::now();
            s.hold.hold(from, signal, now);
            if insist {
                s.hold.insist(from, now);
            }
        }
    }

    /// A subscriber on shard `from` let the publisher in `slot` of this shard go.
    pub(super) fn release_publisher(&mut self, slot: u32, from: u16, policy: SlowSubscriberPolicy) {
        if let Some(s) = self.at_mut(slot) {
            s.hold.release(from, policy);
        }
    }

    /// A subscriber on shard `from` keeps up with the publisher in `slot` of this shard.
    pub(super) fn object_to_publisher(&mut self, slot: u32, from: u16) {
        if let Some(s) = self.at_mut(slot) {
            s.hold.object(from, Instant::now());
        }
    }
}

/// Where a client id goes in the directory.
fn id_hash(client_id: &Utf8Bytes) -> u64 {
    SeededState.hash_one(client_id.as_bytes())
}

/// The session in `slot`, which the directory holds: every entry is an occupied slot ([`SessionTable::take`]
/// removes the entry with the session).
fn occupied(sessions: &[Option<Box<Session>>], slot: u32) -> &Session {
    sessions[slot as usize]
        .as_deref()
        .expect("the directory holds occupied slots only")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session::new(id.into(), ProtocolVersion::V311, false, 0)
    }

    #[test]
    fn the_directory_finds_each_session_through_growth_and_removal() {
        let mut t = SessionTable::default();
        let slots: Vec<u32> = (0..5000)
            .map(|i| t.insert(session(&format!("c{i}"))))
            .collect();
        assert_eq!(t.len(), 5000);
        for (i, &slot) in slots.iter().enumerate() {
            assert_eq!(t.slot_of(&format!("c{i}").as_str().into()), Some(slot));
        }
        assert!(!t.contains(&"c5000".into()));
        // Taking a session takes its id out of the directory; the slot is reused after `free`.
        let gone = t.take(slots[7]).expect("occupied");
        assert_eq!(gone.client_id.as_str(), "c7");
        assert_eq!(t.slot_of(&"c7".into()), None);
        t.free(slots[7]);
        assert_eq!(t.len(), 4999);
        let again = t.insert(session("c7-new"));
        assert_eq!(again, slots[7], "the freed slot is reused");
        assert_eq!(t.slot_of(&"c7-new".into()), Some(again));
        assert_eq!(t.slot_of(&"c8".into()), Some(slots[8]));
    }
}
