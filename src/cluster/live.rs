//! Which nodes are live, read from the nodes bucket (`shardmq_<cluster>_nodes`) with one watch.
//!
//! Each node puts its key every `link::LIVENESS_REFRESH` and the bucket's `max_age` drops a key
//! not refreshed for `link::LIVENESS_TTL`; but a watch does not see such an expiry (NATS 2.9 sends
//! no delete marker for it). So the link keeps each node's deadline itself ([`LiveNodes`], sans-IO):
//! a put seen makes the node live for the TTL from then (from its write time for the keys read when
//! the watch starts), a delete (a node that stops) ends it at once.
//!
//! One watch per node instead of listing the bucket's keys every 250 ms: each listing was an
//! ephemeral JetStream consumer, created through the meta leader and left for 30 s, a dozen a
//! second for three nodes (139 found on the bucket's stream in a two-node run), load that slowed
//! the cluster's replicated writes on a small machine.

use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};
use async_nats::jetstream::kv;
use futures_lite::StreamExt;
use tokio::sync::watch;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Each node's deadline: live until then unless its key is put again.
#[derive(Debug, Default)]
pub struct LiveNodes {
    ttl: Duration,
    until: AHashMap<String, Instant>,
}

impl LiveNodes {
    pub fn new(ttl: Duration) -> LiveNodes {
        LiveNodes {
            ttl,
            until: AHashMap::new(),
        }
    }

    /// `node`'s key was put `age` ago (zero for a put the watch brings now).
    pub fn put(&mut self, node: &str, age: Duration, now: Instant) {
        let until = now + self.ttl.saturating_sub(age);
        match self.until.get_mut(node) {
            Some(t) => *t = (*t).max(until),
            None => {
                self.until.insert(node.to_owned(), until);
            }
        }
    }

    /// NATS is away: every node known is live for the TTL from `now` (at least).
    pub fn renew(&mut self, now: Instant) {
        let until = now + self.ttl;
        for t in self.until.values_mut() {
            *t = (*t).max(until);
        }
    }

    /// `node`'s key was deleted: it stopped.
    pub fn delete(&mut self, node: &str) {
        self.until.remove(node);
    }

    /// The live nodes at `now`, sorted; the others are forgotten.
    pub fn live(&mut self, now: Instant) -> Vec<String> {
        self.until.retain(|_, until| *until > now);
        let mut nodes: Vec<String> = self.until.keys().cloned().collect();
        nodes.sort_unstable();
        nodes
    }
}

/// How long ago an entry was written, by the NATS server's clock (zero if that is ahead of ours).
fn age_of(entry: &kv::Entry) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let age = now - entry.created.unix_timestamp_nanos();
    Duration::from_nanos(u64::try_from(age.max(0)).unwrap_or(u64::MAX))
}

/// Starts a watch of `store` and reads the keys there now into `nodes`; then feed the watch's
/// entries to [`apply`].
pub async fn start(
    store: &kv::Store,
    nodes: &mut LiveNodes,
) -> Result<kv::Watch, Box<dyn std::error::Error + Send + Sync>> {
    // The watch first, then what is there: a put in between is seen by one of the two.
    let watch = store.watch_all().await?;
    let mut keys = store.keys().await?;
    let mut present = Vec::new();
    while let Some(key) = keys.next().await {
        present.push(key?);
    }
    let now = Instant::now();
    for key in present {
        if let Some(entry) = store.entry(key).await? {
            apply(nodes, &entry, now, age_of(&entry));
        }
    }
    Ok(watch)
}

/// One entry of the nodes bucket, `age` old.
pub fn apply(nodes: &mut LiveNodes, entry: &kv::Entry, now: Instant, age: Duration) {
    match entry.operation {
        kv::Operation::Put => nodes.put(&entry.key, age, now),
        kv::Operation::Delete | kv::Operation::Purge => nodes.delete(&entry.key),
    }
}

/// Runs `gone(node)` (in a task of its own) for each node but `me` that leaves `live` and stays out
/// of it for `grace`; and, at the first read of `live`, for each node that `listed` names (the
/// nodes with keys in some bucket) and is not live, once it stayed out for `LIVENESS_TTL + grace`:
/// dead before this node came, or starting (not live until ready). Returns when `live`'s sender
/// goes. (The reapers of dead nodes' wills and sessions: `cluster::wills`, `cluster::state`.)
pub async fn departures<L, LF, G, GF>(
    me: &str,
    mut live: watch::Receiver<Vec<String>>,
    grace: Duration,
    mut listed: L,
    gone: G,
) where
    L: FnMut() -> LF,
    LF: std::future::Future<Output = Result<AHashSet<String>, Error>>,
    G: Fn(String) -> GF,
    GF: std::future::Future<Output = ()> + Send + 'static,
{
    // The nodes seen live; at start, none: the first read's absentees wait a whole TTL more.
    let mut known: Option<AHashSet<String>> = None;
    loop {
        if live.changed().await.is_err() {
            return;
        }
        let now: AHashSet<String> = live.borrow_and_update().iter().cloned().collect();
        if now.is_empty() {
            // Not read yet (or NATS away): no node is taken for dead on that.
            continue;
        }
        let (departed, wait): (Vec<String>, _) = match &known {
            Some(known) => (known.difference(&now).cloned().collect(), grace),
            None => match listed().await {
                Ok(nodes) => (
                    nodes.difference(&now).cloned().collect(),
                    super::link::LIVENESS_TTL + grace,
                ),
                Err(e) => {
                    tracing::debug!("Cluster: cannot list the nodes with keys: {e}.");
                    continue;
                }
            },
        };
        known = Some(now);
        for node in departed.into_iter().filter(|n| n != me) {
            let live = live.clone();
            let task = gone(node.clone());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if !live.borrow().contains(&node) {
                    task.await;
                }
            });
        }
    }
}

/// The nodes with keys (`<node>.<rest>`) in `store`.
pub async fn nodes_with_keys(store: &kv::Store) -> Result<AHashSet<String>, Error> {
    let mut keys = store.keys().await?;
    let mut nodes = AHashSet::new();
    while let Some(key) = keys.next().await {
        if let Some(node) = super::interest::node_of(&key?) {
            nodes.insert(node.to_owned());
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While NATS is away nobody expires, and each node has a whole TTL from its return.
    #[test]
    fn an_outage_renews_every_node_known() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut n = LiveNodes::new(15 * s);
        n.put("a", Duration::ZERO, t0);
        n.put("b", 10 * s, t0);
        for t in (0..=60).map(|i| t0 + i * s) {
            n.renew(t);
            assert_eq!(n.live(t), ["a", "b"], "away {t:?}");
        }
        let back = t0 + 60 * s;
        assert_eq!(
            n.live(back + 14 * s),
            ["a", "b"],
            "a TTL after it came back"
        );
        n.put("a", Duration::ZERO, back + 5 * s);
        assert_eq!(n.live(back + 16 * s), ["a"], "b never came back");
    }

    #[test]
    fn a_node_is_live_for_the_ttl_after_its_last_put_and_not_after_its_delete() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut n = LiveNodes::new(15 * s);
        n.put("a", Duration::ZERO, t0);
        n.put("b", 10 * s, t0);
        n.put("c", 20 * s, t0);
        assert_eq!(n.live(t0), ["a", "b"], "c's last put is older than the TTL");
        assert_eq!(n.live(t0 + 6 * s), ["a"], "b expired 5 s after");
        n.put("a", Duration::ZERO, t0 + 10 * s);
        n.put("a", 14 * s, t0 + 10 * s);
        assert_eq!(
            n.live(t0 + 24 * s),
            ["a"],
            "refreshed; an older put does not shorten it"
        );
        assert!(n.live(t0 + 26 * s).is_empty());
        n.put("b", Duration::ZERO, t0 + 26 * s);
        n.delete("b");
        assert!(n.live(t0 + 26 * s).is_empty(), "stopped");
    }
}
