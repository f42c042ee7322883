//! MQTT 5.0 topic aliases (§3.3.2.3.4), both ways, for one network connection: they are not session
//! state and start empty with every connection [MQTT-3.3.2-7].
//!
//! - [`InboundAliases`]: what the client set up in its PUBLISHes, at most our `max_topic_alias`
//!   (the CONNACK's Topic Alias Maximum).
//! - [`OutboundAliases`]: what the broker set up towards the client, at most the client's CONNECT
//!   Topic Alias Maximum (capped by [`MAX_OUTBOUND`]).
//!
//! The outbound choice only changes the header of one connection's PUBLISH (the topic, or none, and
//! the Topic Alias property): the payload stays the one shared `Bytes` (see `frame.rs`).

use ahash::AHashMap;

use crate::codec::Utf8Bytes;

/// Why an inbound alias cannot be used; the caller disconnects with the matching reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasError {
    /// Alias 0 or above the Topic Alias Maximum we announced: 0x94 [MQTT-3.3.2-8], [MQTT-3.3.2-9].
    Invalid,
    /// An empty topic with an alias the client never set up on this connection: 0x82.
    Unknown,
}

/// The aliases a client set up towards the broker on this connection.
#[derive(Debug, Default)]
pub struct InboundAliases {
    /// Index `alias - 1`; grown on first use of an alias, never beyond the announced maximum.
    topics: Vec<Option<Utf8Bytes>>,
}

impl InboundAliases {
    /// The topic of a PUBLISH with `topic` (maybe empty) and Topic Alias `alias`, under our
    /// announced maximum `max`: a non-empty topic (re)defines the alias, an empty one uses it.
    pub fn resolve(
        &mut self,
        alias: u16,
        topic: &Utf8Bytes,
        max: u16,
    ) -> Result<Utf8Bytes, AliasError> {
        if alias == 0 || alias > max {
            return Err(AliasError::Invalid);
        }
        let i = usize::from(alias - 1);
        if topic.is_empty() {
            return self
                .topics
                .get(i)
                .and_then(Clone::clone)
                .ok_or(AliasError::Unknown);
        }
        if self.topics.len() <= i {
            self.topics.resize(i + 1, None);
        }
        self.topics[i] = Some(topic.clone());
        Ok(topic.clone())
    }
}

/// The most aliases the broker keeps towards one connection, whatever larger maximum the client
/// allows: each costs a topic handle and a map entry, per connection.
pub const MAX_OUTBOUND: u16 = 1024;

/// How one PUBLISH names its topic to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasUse {
    /// The topic and the alias it now stands for (first use, or the alias was reassigned).
    Define(u16),
    /// The alias alone, with an empty topic.
    Reuse(u16),
}

impl AliasUse {
    pub fn alias(self) -> u16 {
        match self {
            AliasUse::Define(a) | AliasUse::Reuse(a) => a,
        }
    }
}

const NONE: u16 = 0;

/// One alias: its topic and its place in the recency list (aliases as links, 0 for none).
#[derive(Debug)]
struct Entry {
    topic: Utf8Bytes,
    newer: u16,
    older: u16,
}

/// The aliases the broker assigned on this connection, least recently used first out.
///
/// Policy: assign on first use, and when all `max` are taken reassign the least recently used one
/// (LRU). Why LRU: what aliases save is the topic bytes of topics sent again and again; recency is
/// the cheapest good predictor of that for the typical subscriber (a set of busy topics, some rare
/// ones), it needs no tuning, and every operation is O(1) (a map lookup and a few list links). A
/// topic sent once costs only the alias property (3 bytes) when it evicts, and a reused alias is
/// always sent with its topic first, in the same connection's order, so the client's table can never
/// be behind ours. Frequency-based policies (LFU) keep stale hot topics forever and need ageing;
/// "alias only on second use" would save little and need a second table of candidates.
#[derive(Debug)]
pub struct OutboundAliases {
    max: u16,
    by_topic: AHashMap<Utf8Bytes, u16>,
    /// Index `alias - 1`.
    entries: Vec<Entry>,
    newest: u16,
    oldest: u16,
}

impl OutboundAliases {
    /// A table for a client that allows `client_max` aliases (> 0).
    pub fn new(client_max: u16) -> OutboundAliases {
        OutboundAliases {
            max: client_max.min(MAX_OUTBOUND),
            by_topic: AHashMap::new(),
            entries: Vec::new(),
            newest: NONE,
            oldest: NONE,
        }
    }

    fn entry(&mut self, alias: u16) -> &mut Entry {
        &mut self.entries[usize::from(alias - 1)]
    }

    fn unlink(&mut self, alias: u16) {
        let (newer, older) = {
            let e = self.entry(alias);
            (e.newer, e.older)
        };
        if newer == NONE {
            self.newest = older;
        } else {
            self.entry(newer).older = older;
        }
        if older == NONE {
            self.oldest = newer;
        } else {
            self.entry(older).newer = newer;
        }
    }

    fn push_newest(&mut self, alias: u16) {
        let old_newest = self.newest;
        {
            let e = self.entry(alias);
            e.newer = NONE;
            e.older = old_newest;
        }
        if old_newest == NONE {
            self.oldest = alias;
        } else {
            self.entry(old_newest).newer = alias;
        }
        self.newest = alias;
    }

    /// The alias `topic` has now, without using it.
    pub fn peek(&self, topic: &Utf8Bytes) -> Option<u16> {
        self.by_topic.get(topic).copied()
    }

    /// The alias `topic` goes out with now, and whether the topic must go with it.
    pub fn assign(&mut self, topic: &Utf8Bytes) -> AliasUse {
        if let Some(&alias) = self.by_topic.get(topic) {
            if self.newest != alias {
                self.unlink(alias);
                self.push_newest(alias);
            }
            return AliasUse::Reuse(alias);
        }
        let alias = if self.entries.len() < usize::from(self.max) {
            self.entries.push(Entry {
                topic: topic.clone(),
                newer: NONE,
                older: NONE,
            });
            self.entries.len() as u16
        } else {
            let alias = self.oldest;
            self.unlink(alias);
            let old = std::mem::replace(&mut self.entry(alias).topic, topic.clone());
            self.by_topic.remove(&old);
            alias
        };
        self.by_topic.insert(topic.clone(), alias);
        self.push_newest(alias);
        AliasUse::Define(alias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s.to_owned())
    }

    #[test]
    fn inbound_aliases_define_then_resolve_and_are_bounded() {
        let mut a = InboundAliases::default();
        assert_eq!(a.resolve(1, &t(""), 10), Err(AliasError::Unknown));
        assert_eq!(a.resolve(3, &t("x/y"), 10), Ok(t("x/y")));
        assert_eq!(a.resolve(3, &t(""), 10), Ok(t("x/y")));
        assert_eq!(a.resolve(2, &t(""), 10), Err(AliasError::Unknown));
        assert_eq!(a.resolve(3, &t("z"), 10), Ok(t("z")));
        assert_eq!(a.resolve(3, &t(""), 10), Ok(t("z")));
        assert_eq!(a.resolve(11, &t("q"), 10), Err(AliasError::Invalid));
        assert_eq!(a.resolve(0, &t("q"), 10), Err(AliasError::Invalid));
        assert_eq!(a.resolve(1, &t("q"), 0), Err(AliasError::Invalid));
    }

    #[test]
    fn outbound_aliases_reuse_and_evict_the_least_recently_used() {
        let mut o = OutboundAliases::new(2);
        assert_eq!(o.assign(&t("a")), AliasUse::Define(1));
        assert_eq!(o.assign(&t("b")), AliasUse::Define(2));
        assert_eq!(o.assign(&t("a")), AliasUse::Reuse(1));
        // "b" is now the least recently used: "c" takes its alias.
        assert_eq!(o.assign(&t("c")), AliasUse::Define(2));
        assert_eq!(o.assign(&t("a")), AliasUse::Reuse(1));
        assert_eq!(o.assign(&t("b")), AliasUse::Define(2));
        assert_eq!(o.assign(&t("c")), AliasUse::Define(1));
        assert_eq!(o.assign(&t("b")), AliasUse::Reuse(2));
    }

    #[test]
    fn outbound_aliases_match_a_model_lru() {
        // A plain model: a Vec of topics by alias and a recency list.
        let mut o = OutboundAliases::new(5);
        let mut topics: Vec<Option<String>> = vec![None; 5];
        let mut recency: Vec<u16> = Vec::new();
        let mut seed = 7u32;
        for _ in 0..5000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let name = format!("t{}", (seed >> 16) % 9);
            let got = o.assign(&t(&name));
            let known = topics
                .iter()
                .position(|x| x.as_deref() == Some(name.as_str()));
            let want = match known {
                Some(i) => AliasUse::Reuse(i as u16 + 1),
                None => {
                    let alias = match topics.iter().position(Option::is_none) {
                        Some(i) => i as u16 + 1,
                        None => recency[0],
                    };
                    topics[usize::from(alias - 1)] = Some(name.clone());
                    AliasUse::Define(alias)
                }
            };
            assert_eq!(got, want);
            recency.retain(|&a| a != want.alias());
            recency.push(want.alias());
        }
    }
}
