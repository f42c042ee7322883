//! Persistent sessions outlive their node (docs/CLUSTER.md, "Sessions of a dead node").
//!
//! - Each node keeps, in the bucket `shardmq_<cluster>_state`, what another node needs to resume
//!   each of its persistent sessions: key `<node>.<hash of the client id>` (`interest::key_of`),
//!   value [`encode`]d: the client id and the session written as a snapshot (`persist::image`),
//!   its settings and subscriptions, without its will (the wills bucket keeps that, `wills`) or
//!   messages. The shards tell the link at connect, SUBSCRIBE, UNSUBSCRIBE, a DISCONNECT changing
//!   the expiry, a restart and the session's end (`Mail::State`, `shard::claims`); the link writes
//!   them with `bucket::write_keys`, and leaves them when it stops: a stopped node's sessions are
//!   resumed elsewhere as a dead one's.
//! - A client that connects to another node while its node is dead: the claim finds nobody to evict
//!   (`sessions::claim`) and takes its session from the bucket (`bucket::take`).
//! - A client not back when its node is found dead ([`GRACE`] after its liveness key expired): the
//!   first live node by name adopts the node's sessions ([`adopt`]): makes itself their client ids'
//!   owner in the sessions bucket, takes them from this one and installs them in its shards as
//!   sessions whose client is away (`Mail::Adopt`): they subscribe here (so the cluster routes
//!   their messages to this node and queues them), expire as any other, and move to whichever
//!   node their client connects to, by the claim. The dead node's interest keys are deleted then:
//!   nothing more is routed to it.
//! - A node that starts again without persistence under the same name first takes back its own
//!   (with persistence, its shards restore them from disk and tell the link again).
//!
//! Each take is a delete conditional on the revision read, so of all the nodes taking at once one
//! gets each session. What is not kept: the messages a dead node had queued in memory for its
//! sessions (with `persistence true` they come back with the node), and those JetStream still holds
//! in its queue (they wait there for the node).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::codec::Utf8Bytes;
use crate::persist::record::{self, Record};

use super::link::LinkConfig;
use super::store::{open_bucket, retry};
use super::wire::{self, WireError};

/// How long a node must be gone from the nodes bucket before its sessions are adopted (as its
/// wills are sent: `wills::GRACE`).
pub const GRACE: Duration = super::wills::GRACE;

/// The first byte of a session in the bucket.
const VERSION: u8 = 1;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the adopter hands the link, in order: the sessions, then what the dead node's queue held.
#[derive(Debug)]
pub enum Adoption {
    /// A session to install: its client id (which shard) and its snapshot.
    Session(String, Bytes),
    /// A message from the dead node's queue, for the sessions `clients` adopted from it; the link
    /// acknowledges it once it is in the shards' mailboxes.
    Owed(Box<jetstream::Message>, Arc<[Utf8Bytes]>),
}

/// How long the adopter waits for its interest in the adopted sessions' filters to be in the bucket
/// before it deletes the dead node's.
const INTEREST_WAIT: Duration = Duration::from_secs(5);

/// After that, how long the other nodes get to see it (a watch's delay): a message they route by
/// the dead node's interest meanwhile is in its queue, which is drained after.
const INTEREST_SETTLE: Duration = Duration::from_millis(500);

/// The dead node's queue is drained again after this, for what was sent to it while its interest
/// was being deleted.
const SECOND_DRAIN: Duration = Duration::from_secs(2);

/// The bucket of the sessions each node would leave if it died.
pub fn bucket(cluster: &str) -> String {
    format!("shardmq_{cluster}_state")
}

/// A session as the bucket keeps it: version, client id (length first), then the snapshot.
pub fn encode(client_id: &str, image: &[u8]) -> Result<Bytes, WireError> {
    let mut out = BytesMut::with_capacity(3 + client_id.len() + image.len());
    out.put_u8(VERSION);
    wire::put_str(&mut out, client_id, "client id")?;
    out.extend_from_slice(image);
    Ok(out.freeze())
}

/// The client id and snapshot of a value of the bucket.
pub fn decode(bytes: &Bytes) -> Result<(String, Bytes), WireError> {
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let (id, image) = wire::take_str(rest)?;
    let image = bytes.slice(bytes.len() - image.len()..);
    Ok((id.to_owned(), image))
}

/// The session `node` left for `client_id`, taken from the bucket (the claim of a client whose
/// node is gone: `sessions::claim`).
pub async fn take_left(
    js: &jetstream::Context,
    cluster: &str,
    node: &str,
    client_id: &str,
) -> Result<Option<Bytes>, Error> {
    let store = open_bucket(js, &bucket(cluster), Duration::ZERO).await?;
    let key = super::interest::key_of(node, client_id);
    let Some(value) = super::bucket::take(&store, &key).await? else {
        return Ok(None);
    };
    Ok(Some(decode(&value)?.1))
}

/// Adopts the sessions of the nodes that leave `live` (and, at start, of those not in it), sending
/// each to `out`, until told to stop. `own_first`: take this node's previous sessions back before
/// anything (a restart without persistence); `own_done` is told when that is over (the writer,
/// which deletes this node's keys it was not told of, may start).
pub async fn adopt(
    js: jetstream::Context,
    config: LinkConfig,
    live: watch::Receiver<Vec<String>>,
    own_first: bool,
    own_done: tokio::sync::oneshot::Sender<()>,
    out: mpsc::Sender<Adoption>,
) {
    let name = bucket(&config.cluster);
    let gone = || out.is_closed();
    let open = || open_bucket(&js, &name, Duration::ZERO);
    let Some(store) = retry("cannot open the sessions' bucket yet", gone, open).await else {
        return;
    };
    if own_first {
        let take = || adopt_node(&js, &config, &store, &config.node, &out);
        let Some(taken) = retry("cannot read this node's sessions yet", gone, take).await else {
            return;
        };
        if !taken.is_empty() {
            let n = taken.len();
            tracing::info!("Cluster: took back {n} sessions this node had before.");
        }
    }
    let _ = own_done.send(());
    let me = config.node.clone();
    let first_live = live.clone();
    super::live::departures(
        &me,
        live,
        GRACE,
        || super::live::nodes_with_keys(&store),
        |node| {
            let (js, config, store, out) = (js.clone(), config.clone(), store.clone(), out.clone());
            let live = first_live.clone();
            async move {
                // One node adopts: the first live one by name (the list is sorted).
                let adopter = live.borrow().first().cloned();
                if adopter.as_deref() != Some(config.node.as_str()) {
                    return;
                }
                let adopted = match adopt_node(&js, &config, &store, &node, &out).await {
                    Ok(adopted) => adopted,
                    Err(e) => {
                        tracing::warn!("Cluster: node {node} is gone; its sessions: {e}.");
                        Vec::new()
                    }
                };
                tracing::info!(
                    "Cluster: node {node} is gone; {} of its sessions adopted here.",
                    adopted.len()
                );
                if let Err(e) = take_over(&js, &config, &node, adopted, &out).await {
                    tracing::warn!("Cluster: node {node} is gone; its interest and queue: {e}.");
                }
            }
        },
    )
    .await;
}

/// Takes `node`'s sessions whose client id is still `node`'s (or nobody's), makes this node their
/// owner and sends them to `out`; which (client id, snapshot).
async fn adopt_node(
    js: &jetstream::Context,
    config: &LinkConfig,
    store: &kv::Store,
    node: &str,
    out: &mpsc::Sender<Adoption>,
) -> Result<Vec<(String, Bytes)>, Error> {
    let owners = open_bucket(
        js,
        &super::sessions::bucket(&config.cluster),
        Duration::ZERO,
    )
    .await?;
    let mut adopted = Vec::new();
    for key in super::bucket::own_keys(store, &format!("{node}.")).await? {
        let Some(entry) = store.entry(&key).await? else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let (client_id, _) = match decode(&entry.value) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("Cluster: session {key} of node {node} unreadable ({e}); dropped.");
                let _ = store
                    .delete_expect_revision(&key, Some(entry.revision))
                    .await;
                continue;
            }
        };
        // The owner first: a client connecting now elsewhere then asks this node for it.
        match own_from(&owners, &client_id, node, &config.node).await? {
            Owning::Adopt => {}
            // Its client came back on another node, which started it anew or is taking it.
            Owning::Other => continue,
            // Its client came back here (its claim could not reach the dead node in time to take
            // this): the session it has here wins; adopted, this one would close it and send its
            // will later.
            Owning::Here => {
                let _ = super::bucket::take(store, &key).await?;
                continue;
            }
        }
        if let Some(value) = super::bucket::take(store, &key).await? {
            let (client_id, image) = decode(&value)?;
            out.send(Adoption::Session(client_id.clone(), image.clone()))
                .await?;
            adopted.push((client_id, image));
        }
    }
    Ok(adopted)
}

/// Who has a dead node's session's client id, as [`own_from`] leaves it.
enum Owning {
    /// This node, as its adopter (or its own session, taken back after a restart).
    Adopt,
    /// Another node.
    Other,
    /// This node, for a client that connected here since.
    Here,
}

/// Makes `me` the owner of `client_id` in the sessions bucket (as its adopter) if `node` (or
/// nobody) owns it.
async fn own_from(
    owners: &kv::Store,
    client_id: &str,
    node: &str,
    me: &str,
) -> Result<Owning, Error> {
    use super::sessions::{key_of, owner_of, owner_value};
    let key = key_of(client_id);
    let value = owner_value(me, true);
    let set = match owners.entry(&key).await? {
        Some(e) if e.operation == kv::Operation::Put => {
            let (owner, adopted) = owner_of(&e.value);
            if owner == me {
                return Ok(match adopted || node == me {
                    true => Owning::Adopt,
                    false => Owning::Here,
                });
            }
            if owner != node {
                return Ok(Owning::Other);
            }
            owners.update(&key, value, e.revision).await.is_ok()
        }
        Some(e) => owners.update(&key, value, e.revision).await.is_ok(),
        None => owners.create(&key, value).await.is_ok(),
    };
    Ok(match set {
        true => Owning::Adopt,
        false => Owning::Other,
    })
}

/// What follows an adoption of `node`'s sessions: once this node's interest in their filters is in
/// the interest bucket, `node`'s is deleted (nothing more is routed to it; it writes its keys again
/// if it comes back: `bucket::write_keys` rewrites its set after a reconnect), and what its queue
/// holds goes to the adopted sessions, twice: a message routed by its interest while it was being
/// deleted comes in the second pass. (One sent to both nodes in between comes twice: at least
/// once, not exactly once, for those.)
async fn take_over(
    js: &jetstream::Context,
    config: &LinkConfig,
    node: &str,
    adopted: Vec<(String, Bytes)>,
    out: &mpsc::Sender<Adoption>,
) -> Result<(), Error> {
    let interest = open_bucket(js, &config.interest_bucket(), Duration::ZERO).await?;
    let mut keys: Vec<String> = adopted
        .iter()
        .flat_map(|(_, image)| filters_of(image))
        .map(|f| super::interest::key_of(&config.node, &f))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let written = async {
        for key in &keys {
            while !matches!(interest.get(key).await, Ok(Some(_))) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    if tokio::time::timeout(INTEREST_WAIT, written).await.is_err() {
        tracing::warn!(
            "Cluster: this node's interest in the sessions adopted from {node} is not in the \
             bucket after {INTEREST_WAIT:?}; {node}'s is deleted all the same."
        );
    }
    tokio::time::sleep(INTEREST_SETTLE).await;
    for key in super::bucket::own_keys(&interest, &format!("{node}.")).await? {
        interest.delete(&key).await?;
    }
    let clients: Arc<[Utf8Bytes]> = adopted
        .into_iter()
        .map(|(id, _)| Utf8Bytes::from(id))
        .collect();
    let mut drained = drain(js, config, node, &clients, out).await?;
    tokio::time::sleep(SECOND_DRAIN).await;
    drained += drain(js, config, node, &clients, out).await?;
    if drained > 0 {
        tracing::info!(
            "Cluster: {drained} messages from the queue of node {node} went to its adopted \
             sessions."
        );
    }
    Ok(())
}

/// The filters of the subscriptions in a session's snapshot, but shared ones (a group's messages
/// come to one of its members wherever they are).
pub(super) fn filters_of(image: &[u8]) -> Vec<Utf8Bytes> {
    let mut filters = Vec::new();
    record::scan(image, |r| {
        if let Record::Subscribe { filter, .. } = r {
            if !filter.starts_with(crate::topic::SHARED_PREFIX) {
                filters.push(filter);
            }
        }
    });
    filters
}

/// Takes what `node`'s queue holds now, through its consumer, and sends it to `out` for `clients`;
/// how many.
async fn drain(
    js: &jetstream::Context,
    config: &LinkConfig,
    node: &str,
    clients: &Arc<[Utf8Bytes]>,
    out: &mpsc::Sender<Adoption>,
) -> Result<usize, Error> {
    let stream = super::queue::open_stream(js, &config.cluster).await?;
    // Its own durable consumer: a work queue takes no second consumer on the same subject.
    let Ok(consumer) = stream
        .get_consumer::<consumer::pull::Config>(&super::queue::consumer_name(node))
        .await
    else {
        // It never read its queue: nothing was delivered to it either.
        return Ok(0);
    };
    let mut drained = 0;
    loop {
        let mut batch = consumer
            .batch()
            .max_messages(256)
            .expires(Duration::from_secs(1))
            .messages()
            .await?;
        let mut got = 0;
        while let Some(m) = batch.next().await {
            got += 1;
            out.send(Adoption::Owed(Box::new(m?), clients.clone()))
                .await?;
        }
        if got == 0 {
            return Ok(drained);
        }
        drained += got;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_round_trips_and_bad_values_are_refused() {
        let value = encode("client-ü", b"snapshot bytes").unwrap();
        let (id, image) = decode(&value).unwrap();
        assert_eq!(
            (id.as_str(), &image[..]),
            ("client-ü", &b"snapshot bytes"[..])
        );
        for n in 0..3 {
            assert!(decode(&value.slice(..n)).is_err(), "prefix of {n} bytes");
        }
        let mut other = value.to_vec();
        other[0] = 9;
        assert_eq!(
            decode(&Bytes::from(other)).err(),
            Some(WireError::Version(9))
        );
    }
}
