//! Wills of a node that dies (docs/CLUSTER.md, "Wills of a dead node").
//!
//! A will is the broker's promise to publish a message when its client goes without DISCONNECT;
//! when the whole node goes (SIGKILL, power), its shards cannot keep it, so the cluster does:
//! - Each node keeps, in the bucket `shardmq_<cluster>_wills`, the wills it would owe if it died
//!   now: its connected clients' wills and those waiting out their delay. Key
//!   `<node>.<hash of the client id>` (`interest::key_of`), value [`encode`]d. The shards tell the
//!   link as a will comes, changes or goes (`Mail::Will`, `shard::will`); the link writes them with
//!   the interest bucket's writer (`bucket::write_keys`), which rewrites the whole set after an
//!   outage. A node that stops deletes its keys: its shards handled their wills (Mosquitto's way,
//!   or kept them on disk with `persistence true`).
//! - Every node's reaper ([`reap`]) watches the live nodes (the nodes bucket). A node gone from it
//!   for [`GRACE`] (its liveness key expired, `link::LIVENESS_TTL` after its last refresh) has its
//!   keys taken: each by a delete conditional on the revision read, so that of all the nodes
//!   reaping at once exactly one sends each will, which it routes as if published on its own node
//!   (`Mail::Route`). A will with a Will Delay Interval is sent after that delay, unless its client
//!   id was claimed by another node meanwhile (the client came back [MQTT-3.1.3-9]).
//! - A node that starts again under the same name before anyone reaped it reaps its own previous
//!   keys first, unless it runs with persistence (its shards then send those wills themselves, as
//!   after any restart).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

use super::link::LinkConfig;
use super::store::{open_bucket, retry};
use super::wire::{self, WireError};
use crate::message::Message;

/// How long a node must be gone from the nodes bucket before its wills are sent: a node that
/// stops deletes its will keys within about 2 s of its liveness key.
pub const GRACE: Duration = Duration::from_secs(3);

/// The first byte of a will in the bucket.
const VERSION: u8 = 1;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A will as the bucket keeps it: version, Will Delay Interval (seconds), client id (length first),
/// then the will as a message (`wire`).
pub fn encode(client_id: &str, delay: u32, will: &Message) -> Result<Bytes, WireError> {
    let mut out = BytesMut::with_capacity(8 + client_id.len() + will.payload.len());
    out.put_u8(VERSION);
    out.put_u32(delay);
    wire::put_str(&mut out, client_id, "client id")?;
    wire::encode(will, &mut out)?;
    Ok(out.freeze())
}

/// The client id, Will Delay Interval and will of a value of the bucket.
pub fn decode(bytes: &[u8]) -> Result<(String, u32, Message), WireError> {
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let [d0, d1, d2, d3, rest @ ..] = rest else {
        return Err(WireError::Truncated);
    };
    let delay = u32::from_be_bytes([*d0, *d1, *d2, *d3]);
    let (id, rest) = wire::take_str(rest)?;
    Ok((id.to_owned(), delay, wire::decode(rest)?))
}

/// A will to route on this node: its client id (which shard routes it) and the message.
pub type Reaped = (String, Message);

/// Reaps the wills of the nodes that leave `live` (and, at start, of those not in it), sending
/// each to `out`, until told to stop. `own_first`: reap this node's previous keys before anything
/// (a restart without persistence); `own_done` is told when that is over (the writer may start).
pub async fn reap(
    js: jetstream::Context,
    config: LinkConfig,
    live: watch::Receiver<Vec<String>>,
    own_first: bool,
    own_done: tokio::sync::oneshot::Sender<()>,
    out: mpsc::UnboundedSender<Reaped>,
) {
    let name = config.wills_bucket();
    let gone = || out.is_closed();
    let open = || open_bucket(&js, &name, Duration::ZERO);
    let Some(store) = retry("cannot open the wills bucket yet", gone, open).await else {
        return;
    };
    if own_first {
        let reap = || reap_node(&js, &config, &store, &config.node, &out);
        if retry("cannot read this node's previous wills yet", gone, reap)
            .await
            .is_none()
        {
            return;
        }
    }
    let _ = own_done.send(());
    let me = config.node.clone();
    super::live::departures(
        &me,
        live,
        GRACE,
        || super::live::nodes_with_keys(&store),
        |node| {
            let (js, config, store, out) = (js.clone(), config.clone(), store.clone(), out.clone());
            async move {
                match reap_node(&js, &config, &store, &node, &out).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("Cluster: node {node} is gone; sent its {n} wills."),
                    Err(e) => tracing::warn!("Cluster: node {node} is gone; its wills: {e}."),
                }
            }
        },
    )
    .await;
}

/// Takes `node`'s wills out of the bucket and sends those this node won; how many.
async fn reap_node(
    js: &jetstream::Context,
    config: &LinkConfig,
    store: &kv::Store,
    node: &str,
    out: &mpsc::UnboundedSender<Reaped>,
) -> Result<usize, Error> {
    let mut sent = 0;
    for key in super::bucket::own_keys(store, &format!("{node}.")).await? {
        // Another node reaping at the same moment, or the node writing: only one take wins.
        let Some(value) = super::bucket::take(store, &key).await? else {
            continue;
        };
        let (client_id, delay, will) = match decode(&value) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("Cluster: will {key} of node {node} unreadable ({e}); dropped.");
                continue;
            }
        };
        sent += 1;
        if delay == 0 {
            let _ = out.send((client_id, will));
            continue;
        }
        let (js, cluster, node, out) = (
            js.clone(),
            config.cluster.clone(),
            node.to_owned(),
            out.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
            if claimed_elsewhere(&js, &cluster, &node, &client_id).await {
                tracing::debug!("Cluster: {client_id} came back; its will is not sent.");
                return;
            }
            let _ = out.send((client_id, will));
        });
    }
    Ok(sent)
}

/// Whether `client_id` is now another node's than `node` (its client connected there; a node that
/// only adopted its session does not count: `state`).
async fn claimed_elsewhere(
    js: &jetstream::Context,
    cluster: &str,
    node: &str,
    client_id: &str,
) -> bool {
    let Ok(store) = js.get_key_value(super::sessions::bucket(cluster)).await else {
        return false;
    };
    match store.get(super::sessions::key_of(client_id)).await {
        Ok(Some(value)) => {
            let (owner, adopted) = super::sessions::owner_of(&value);
            owner != node && !adopted
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Properties, QoS, Utf8Bytes};

    #[test]
    fn a_will_round_trips_and_bad_values_are_refused() {
        let will = Message::new(
            Utf8Bytes::from("will/ü"),
            Bytes::from_static(b"gone"),
            QoS::AtLeastOnce,
            true,
            Properties::default(),
            None,
        );
        let value = encode("client-ü", 30, &will).unwrap();
        let (id, delay, back) = decode(&value).unwrap();
        assert_eq!((id.as_str(), delay), ("client-ü", 30));
        assert_eq!(
            (&*back.topic, &back.payload[..], back.qos, back.retain),
            ("will/ü", &b"gone"[..], QoS::AtLeastOnce, true)
        );
        for n in 0..value.len() {
            assert!(decode(&value[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut other = value.to_vec();
        other[0] = 9;
        assert_eq!(decode(&other).err(), Some(WireError::Version(9)));
    }
}
