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
//!   (`sessions::claim`) and takes its session from the bucket, leaving its [`Resumed`] mark: when
//!   the node is found dead, what its JetStream queue holds for the session is passed on to it.
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
//! Each take is a delete (or, for a resumed session, the mark) conditional on the revision read,
//! so of all the nodes taking at once one gets each session. What is not kept: the messages a dead
//! node had queued in memory for its sessions (with `persistence true` they come back with the
//! node).

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

/// The first byte of what a claim leaves in a session's place when it resumes the session of a
/// dead node on another one ([`Resumed`]).
const RESUMED: u8 = 2;

/// How much later than its resumption a message in the dead node's queue is still passed on to the
/// session: the other nodes route to its new node once they have seen that node's interest
/// (milliseconds); a message after that reached the session directly, and would come twice.
const RESUMED_MARGIN_NS: u64 = 500_000_000;

/// A dead node's session that a claim resumed on another node before the node was found dead (its
/// client came back first): what the dead node's JetStream queue holds for it, sent there while
/// the node was thought alive, is passed on to wherever the session is when the adopter drains the
/// queue (docs/CLUSTER.md, "Sessions of a dead node").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub client_id: Utf8Bytes,
    /// When the claim resumed it (ns since the epoch, the claiming node's clock): later messages
    /// reached it directly.
    pub at: u64,
    /// Its subscriptions' filters (but shared ones) when it was resumed.
    pub filters: Vec<Utf8Bytes>,
}

/// A value of the bucket: a session, or the mark of one resumed elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    Session(String, Bytes),
    Resumed(Resumed),
}

/// Where a message of a dead node's queue goes besides its adopted sessions: to `client_id` on
/// `node` (its owner when the node's sessions were adopted), if it matches one of `filters` and
/// its PUBLISH was received before `until` (ns since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassOn {
    pub client_id: Utf8Bytes,
    pub node: String,
    pub filters: Vec<Utf8Bytes>,
    pub until: u64,
}

impl PassOn {
    /// Whether `msg` goes to this session.
    pub fn wants(&self, msg: &crate::message::Message) -> bool {
        msg.read_at != 0
            && msg.read_at <= self.until
            && crate::topic::matches_any(&self.filters, &msg.topic)
    }
}

/// [`Resumed`] as the bucket keeps it: its first byte, the client id, the time, the filters.
pub fn encode_resumed(r: &Resumed) -> Result<Bytes, WireError> {
    let mut out = BytesMut::new();
    out.put_u8(RESUMED);
    wire::put_str(&mut out, &r.client_id, "client id")?;
    out.put_u64(r.at);
    let n = u32::try_from(r.filters.len()).map_err(|_| WireError::TooLarge("filters".into()))?;
    out.put_u32(n);
    for f in &r.filters {
        wire::put_str(&mut out, f, "filter")?;
    }
    Ok(out.freeze())
}

/// A value of the bucket, whichever it is.
pub fn decode_left(bytes: &Bytes) -> Result<Left, WireError> {
    match bytes.first() {
        Some(&RESUMED) => {
            let (client_id, rest) = wire::take_str(&bytes[1..])?;
            let (at, rest) = rest.split_first_chunk::<8>().ok_or(WireError::Truncated)?;
            let (n, mut rest) = rest.split_first_chunk::<4>().ok_or(WireError::Truncated)?;
            let n = u32::from_be_bytes(*n) as usize;
            // Each filter takes at least its 2-byte length: a count the bytes cannot hold is
            // refused before anything is allocated for it.
            if n > rest.len() / 2 {
                return Err(WireError::Truncated);
            }
            let mut filters = Vec::with_capacity(n);
            for _ in 0..n {
                let (f, after) = wire::take_str(rest)?;
                filters.push(Utf8Bytes::from(f.to_owned()));
                rest = after;
            }
            if !rest.is_empty() {
                return Err(WireError::Trailing(rest.len()));
            }
            Ok(Left::Resumed(Resumed {
                client_id: Utf8Bytes::from(client_id.to_owned()),
                at: u64::from_be_bytes(*at),
                filters,
            }))
        }
        _ => decode(bytes).map(|(id, image)| Left::Session(id, image)),
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the adopter hands the link, in order: the sessions, then what the dead node's queue held.
#[derive(Debug)]
pub enum Adoption {
    /// A session to install: its client id (which shard) and its snapshot.
    Session(String, Bytes),
    /// A message from the dead node's queue, for the sessions adopted from it and those resumed
    /// elsewhere before; the link acknowledges it once it is in the shards' mailboxes (or on its
    /// way to the other nodes).
    Owed(Box<jetstream::Message>, Arc<OwedTo>),
    /// This node's own sessions, left in the bucket by its previous run, are all sent (or there
    /// were none to take back): the link reads its queue from now on, so that what the queue
    /// holds for them finds their subscriptions.
    OwnBack,
}

/// Who the messages of a dead node's queue are for.
#[derive(Debug)]
pub struct OwedTo {
    /// The sessions adopted here.
    pub clients: Arc<[Utf8Bytes]>,
    /// The sessions resumed elsewhere before.
    pub pass_on: Vec<PassOn>,
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

/// The session `node` left for `client_id` (the claim of a client whose node is gone:
/// `sessions::claim`), when the client resumes it (`resume`): in its place the claim leaves its
/// [`Resumed`] mark, by a compare-and-set on the revision read, so that what the dead node's queue
/// holds for it follows it when the node's sessions are adopted. A client starting anew takes
/// (deletes) it.
pub async fn take_left(
    js: &jetstream::Context,
    cluster: &str,
    node: &str,
    client_id: &str,
    resume: bool,
) -> Result<Option<Bytes>, Error> {
    let store = open_bucket(js, &bucket(cluster), Duration::ZERO).await?;
    let key = super::interest::key_of(node, client_id);
    if !resume {
        let _ = super::bucket::take(&store, &key).await?;
        return Ok(None);
    }
    for _ in 0..5 {
        let Some(entry) = store.entry(&key).await? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        // Resumed already (by another claim, which won): nothing for this one.
        let Left::Session(_, image) = decode_left(&entry.value)? else {
            return Ok(None);
        };
        let mark = encode_resumed(&Resumed {
            client_id: Utf8Bytes::from(client_id.to_owned()),
            at: crate::shard::now_ns(),
            filters: filters_of(&image),
        })?;
        if store.update(&key, mark, entry.revision).await.is_ok() {
            return Ok(Some(image));
        }
    }
    Ok(None)
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
        // Those of its sessions resumed elsewhere meanwhile: what its own queue holds for them is
        // read by its own consumer, and routed here by interest (docs/CLUSTER.md, limits).
        let Some((taken, _)) = retry("cannot read this node's sessions yet", gone, take).await
        else {
            return;
        };
        if !taken.is_empty() {
            let n = taken.len();
            tracing::info!("Cluster: took back {n} sessions this node had before.");
        }
    }
    let _ = own_done.send(());
    if out.send(Adoption::OwnBack).await.is_err() {
        return;
    }
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
                let (adopted, pass_on) = match adopt_node(&js, &config, &store, &node, &out).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!("Cluster: node {node} is gone; its sessions: {e}.");
                        (Vec::new(), Vec::new())
                    }
                };
                tracing::info!(
                    "Cluster: node {node} is gone; {} of its sessions adopted here, {} resumed \
                     elsewhere before.",
                    adopted.len(),
                    pass_on.len()
                );
                if let Err(e) = take_over(&js, &config, &node, adopted, pass_on, &out).await {
                    tracing::warn!("Cluster: node {node} is gone; its interest and queue: {e}.");
                }
            }
        },
    )
    .await;
}

/// Takes `node`'s sessions whose client id is still `node`'s (or nobody's), makes this node their
/// owner and sends them to `out`; returns which (client id, snapshot), and where the sessions
/// resumed elsewhere are now (their marks taken too).
async fn adopt_node(
    js: &jetstream::Context,
    config: &LinkConfig,
    store: &kv::Store,
    node: &str,
    out: &mpsc::Sender<Adoption>,
) -> Result<(Vec<(String, Bytes)>, Vec<PassOn>), Error> {
    let owners = open_bucket(
        js,
        &super::sessions::bucket(&config.cluster),
        Duration::ZERO,
    )
    .await?;
    let mut adopted = Vec::new();
    let mut pass_on = Vec::new();
    for key in super::bucket::own_keys(store, &format!("{node}.")).await? {
        let Some(entry) = store.entry(&key).await? else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let client_id = match decode_left(&entry.value) {
            Ok(Left::Session(client_id, _)) => client_id,
            Ok(Left::Resumed(r)) => {
                if super::bucket::take(store, &key).await?.is_some() {
                    if let Some(owner) = owner_now(&owners, &r.client_id).await? {
                        pass_on.push(PassOn {
                            client_id: r.client_id,
                            node: owner,
                            filters: r.filters,
                            until: r.at.saturating_add(RESUMED_MARGIN_NS),
                        });
                    }
                }
                continue;
            }
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
            // A claim resumed it since the read (and took its id from this node): not adopted.
            let Left::Session(client_id, image) = decode_left(&value)? else {
                continue;
            };
            out.send(Adoption::Session(client_id.clone(), image.clone()))
                .await?;
            adopted.push((client_id, image));
        }
    }
    Ok((adopted, pass_on))
}

/// The node that owns `client_id` now (the sessions bucket), if any.
async fn owner_now(owners: &kv::Store, client_id: &str) -> Result<Option<String>, Error> {
    let entry = owners.entry(super::sessions::key_of(client_id)).await?;
    Ok(entry
        .filter(|e| e.operation == kv::Operation::Put)
        .map(|e| super::sessions::owner_of(&e.value).0.to_owned()))
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
    pass_on: Vec<PassOn>,
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
    let to = Arc::new(OwedTo {
        clients: adopted
            .into_iter()
            .map(|(id, _)| Utf8Bytes::from(id))
            .collect(),
        pass_on,
    });
    let mut drained = drain(js, config, node, &to, out).await?;
    tokio::time::sleep(SECOND_DRAIN).await;
    drained += drain(js, config, node, &to, out).await?;
    // What JetStream had delivered to the dead node and it had not acknowledged (taken, not yet
    // routed; or sent to pull requests it made just before it died, which the server serves until
    // they expire) comes again once their acknowledgement wait is over: drained as it comes, until
    // none is pending. Before, those were lost: 126 of 7,410 acknowledged QoS 1 messages in one
    // kill -9 of a subscriber's node under load (paho-mqtt against three nodes).
    let until = tokio::time::Instant::now() + super::queue::ACK_WAIT + PENDING_SLACK;
    loop {
        let pending = pending_of(js, config, node).await?;
        if pending == 0 {
            break;
        }
        if tokio::time::Instant::now() >= until {
            tracing::warn!(
                "Cluster: {pending} messages of node {node}'s queue are still delivered to \
                 nobody after {:?}; left in JetStream.",
                super::queue::ACK_WAIT + PENDING_SLACK
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        drained += drain(js, config, node, &to, out).await?;
    }
    if drained > 0 {
        tracing::info!(
            "Cluster: {drained} messages from the queue of node {node} went to its adopted \
             sessions and those resumed elsewhere."
        );
    }
    Ok(())
}

/// How much longer than the acknowledgement wait the adopter waits for a dead node's pending
/// messages to come again.
const PENDING_SLACK: Duration = Duration::from_secs(5);

/// How many messages of `node`'s queue were delivered and not acknowledged.
async fn pending_of(
    js: &jetstream::Context,
    config: &LinkConfig,
    node: &str,
) -> Result<usize, Error> {
    let stream = super::queue::open_stream(js, &config.cluster).await?;
    let Ok(mut consumer) = stream
        .get_consumer::<consumer::pull::Config>(&super::queue::consumer_name(node))
        .await
    else {
        return Ok(0);
    };
    Ok(consumer.info().await?.num_ack_pending)
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
    to: &Arc<OwedTo>,
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
            out.send(Adoption::Owed(Box::new(m?), to.clone())).await?;
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
    fn a_resumed_mark_round_trips_and_says_what_it_wants() {
        let r = Resumed {
            client_id: Utf8Bytes::from("client-ü"),
            at: 1_000,
            filters: vec![Utf8Bytes::from("a/+"), Utf8Bytes::from("b/#")],
        };
        let value = encode_resumed(&r).unwrap();
        assert_eq!(decode_left(&value).unwrap(), Left::Resumed(r.clone()));
        for n in 0..value.len() {
            assert!(
                decode_left(&value.slice(..n)).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut long = value.to_vec();
        long.push(0);
        assert!(decode_left(&Bytes::from(long)).is_err(), "trailing bytes");
        let session = encode("c", b"image").unwrap();
        assert_eq!(
            decode_left(&session).unwrap(),
            Left::Session("c".into(), Bytes::from_static(b"image"))
        );
        let p = PassOn {
            client_id: r.client_id,
            node: "n2".into(),
            filters: r.filters,
            until: 1_500,
        };
        let at = |topic: &'static str, read_at| {
            let mut m = crate::message::Message::new(
                Utf8Bytes::from_static(topic),
                Bytes::new(),
                crate::codec::QoS::AtLeastOnce,
                false,
                Default::default(),
                None,
            );
            m.read_at = read_at;
            m
        };
        assert!(p.wants(&at("a/x", 1_200)));
        assert!(p.wants(&at("b/x/y", 1_500)));
        assert!(!p.wants(&at("c/x", 1_200)), "no filter matches");
        assert!(
            !p.wants(&at("a/x", 1_501)),
            "after: it reached the session directly"
        );
        assert!(
            !p.wants(&at("a/x", 0)),
            "no receive time: not known to be before"
        );
    }

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
