//! One session per client id in the cluster: the link's side (docs/CLUSTER.md, "Sessions across
//! nodes"; the shards' side is `shard::claims`).
//!
//! The bucket `shardmq_<cluster>_sessions` says which node has each client id: key
//! `c.<first 128 bits of SHA-256(client id), hex>`, value the node's name. A CONNECT about to be
//! attached on a node claims its client id ([`claim`]): the node reads the key and writes its own
//! name by compare-and-set on the revision it read (JetStream's Raft orders the claims),
//! and when another node had it, asks that node on its subject `shardmq.<cluster>.evict.<node>`
//! (a NATS request) to close the client there and, unless the new connection starts clean, to hand
//! over the session: the reply is the session written whole (the persistence snapshot format), or
//! empty. A node that is gone answers nothing (no responders): the CONNECT takes the session that
//! node left in the cluster (`state`), or goes on with a new one.
//!
//! A claim never holds a CONNECT longer than [`CLAIM_TIMEOUT`], and not at all while NATS is away
//! (except before the link's first connection, a node just started): the node then serves the
//! client alone, as it does everything else during an outage.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::store::open_bucket;
use crate::router::Lately;

/// The longest a claim may hold a CONNECT.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(3);

/// The bucket of client ids' nodes.
pub fn bucket(cluster: &str) -> String {
    format!("shardmq_{cluster}_sessions")
}

/// The key of `client_id` in the sessions bucket.
pub fn key_of(client_id: &str) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(client_id.as_bytes());
    let mut key = String::with_capacity(34);
    key.push_str("c.");
    for b in &digest[..16] {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// The subject on which `node` takes eviction requests.
pub fn evict_subject(cluster: &str, node: &str) -> String {
    format!("shardmq.{cluster}.evict.{node}")
}

/// An eviction request: whether the session is wanted (`keep`), the claiming node (where it goes),
/// then the client id.
pub fn encode_request(client_id: &str, keep: bool, node: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(client_id.len() + node.len() + 3);
    out.put_u8(u8::from(keep));
    // Node names are short (`cluster_node`); one that is not is refused where it is read.
    let _ = super::wire::put_str(&mut out, node, "node");
    out.extend_from_slice(client_id.as_bytes());
    out.freeze()
}

/// The client id, `keep` and claiming node of an eviction request; None when it is not one.
pub fn decode_request(payload: &[u8]) -> Option<(String, bool, String)> {
    let (&keep, rest) = payload.split_first()?;
    let keep = match keep {
        0 => false,
        1 => true,
        _ => return None,
    };
    let (node, id) = super::wire::take_str(rest).ok()?;
    Some((String::from_utf8(id.to_vec()).ok()?, keep, node.to_owned()))
}

/// A session on its way to this node: its snapshot (`persist::image`), and, when a live node sent
/// it (None: a dead node's, from the state bucket), what it did there lately (`router::Lately`).
#[derive(Debug, PartialEq, Eq)]
pub struct Moving {
    pub snapshot: Bytes,
    pub lately: Option<Lately>,
}

/// The answer to an eviction request that sends the session: how many ids (4 bytes), the ids (8
/// bytes each); how many young subscriptions (4 bytes), each its filter (2-byte length, UTF-8)
/// and when the kernel received its SUBSCRIBE (8 bytes, nanoseconds since the epoch); the
/// snapshot. (No session: an empty answer.)
pub fn encode_answer(snapshot: &[u8], lately: &Lately) -> Bytes {
    let filters: usize = lately.subscribed.iter().map(|(f, _)| 10 + f.len()).sum();
    let mut out = BytesMut::with_capacity(8 + 8 * lately.seen.len() + filters + snapshot.len());
    out.put_u32(lately.seen.len() as u32);
    for &id in &lately.seen {
        out.put_u64(id);
    }
    // A filter is at most 65,535 bytes (MQTT's string length), so its length fits.
    out.put_u32(lately.subscribed.len() as u32);
    for (filter, since) in &lately.subscribed {
        out.put_u16(filter.len() as u16);
        out.extend_from_slice(filter.as_bytes());
        out.put_u64(*since);
    }
    out.extend_from_slice(snapshot);
    out.freeze()
}

/// The session in an answer [`encode_answer`] wrote; None when it is cut short or a filter is not
/// UTF-8.
pub fn decode_answer(mut answer: Bytes) -> Option<Moving> {
    use bytes::Buf;
    if answer.len() < 4 {
        return None;
    }
    let n = answer.get_u32() as usize;
    if answer.len() / 8 < n {
        return None;
    }
    let seen = (0..n).map(|_| answer.get_u64()).collect();
    if answer.len() < 4 {
        return None;
    }
    let m = answer.get_u32() as usize;
    let mut subscribed = Vec::new();
    for _ in 0..m {
        if answer.len() < 2 {
            return None;
        }
        let len = answer.get_u16() as usize;
        if answer.len() < len + 8 {
            return None;
        }
        let filter = std::str::from_utf8(&answer[..len]).ok()?.into();
        answer.advance(len);
        subscribed.push((filter, answer.get_u64()));
    }
    Some(Moving {
        snapshot: answer,
        lately: Some(Lately { seen, subscribed }),
    })
}

/// Makes `node` the owner of `client_id` and brings its session from the node that had it (None:
/// no session moves). Errors are NATS's, or an answer that is not one; the caller goes on without
/// the session.
pub async fn claim(
    client: &async_nats::Client,
    js: &jetstream::Context,
    store: &tokio::sync::OnceCell<kv::Store>,
    cluster: &str,
    node: &str,
    client_id: &str,
    clean_start: bool,
) -> Result<Option<Moving>, Box<dyn std::error::Error + Send + Sync>> {
    let name = bucket(cluster);
    let store = store
        .get_or_try_init(|| open_bucket(js, &name, Duration::ZERO))
        .await?;
    let key = key_of(client_id);
    let previous = take_key(store, &key, node).await?;
    let Some(previous) = previous
        .map(|p| owner_of(&p).0.to_owned())
        .filter(|p| p != node)
    else {
        return Ok(None);
    };
    let request = encode_request(client_id, !clean_start, node);
    match client
        .request(evict_subject(cluster, &previous), request)
        .await
    {
        Ok(reply) => {
            // `previous` answers once it released the client id, if it was releasing it (its
            // session had ended): that delete and this claim's write were sent at once, and
            // nats-server before 2.9.21 may store both (nats-server#4320), the delete last.
            keep_key(store, &key, node).await?;
            if reply.payload.is_empty() {
                return Ok(None);
            }
            match decode_answer(reply.payload) {
                Some(moving) => Ok(Some(moving)),
                None => Err(format!("{previous}'s answer with the session was cut short").into()),
            }
        }
        // The node is gone: nothing to close; its session, if it left one (`state`).
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            let left =
                super::state::take_left(js, cluster, &previous, client_id, !clean_start).await?;
            Ok(left.map(|snapshot| Moving {
                snapshot,
                lately: None,
            }))
        }
        Err(e) => Err(Box::new(e)),
    }
}

/// Deletes `client_id`'s key if `node` owns it (its session ended there): by a delete conditional
/// on the revision read, so a claim by another node (or a new connection here) in between wins.
pub async fn release(
    js: &jetstream::Context,
    store: &tokio::sync::OnceCell<kv::Store>,
    cluster: &str,
    node: &str,
    client_id: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let name = bucket(cluster);
    let store = store
        .get_or_try_init(|| open_bucket(js, &name, Duration::ZERO))
        .await?;
    let key = key_of(client_id);
    let Some(entry) = store.entry(&key).await? else {
        return Ok(());
    };
    if entry.operation == kv::Operation::Put && owner_of(&entry.value).0 == node {
        // Lost to a claim: the key is that claim's now.
        let _ = store
            .delete_expect_revision(&key, Some(entry.revision))
            .await;
    }
    Ok(())
}

/// What marks an owner that adopted the session of a dead node (`state`): its client has not
/// connected since, so a delayed will of it is still due (`wills`).
const ADOPTED: &str = " (adopted)";

/// The value of the sessions bucket saying that `node` owns a client id; `adopted`: as the
/// adopter of a dead node's session.
pub fn owner_value(node: &str, adopted: bool) -> Bytes {
    match adopted {
        true => Bytes::from(format!("{node}{ADOPTED}")),
        false => Bytes::copy_from_slice(node.as_bytes()),
    }
}

/// The node a value of the sessions bucket names, and whether it adopted the session.
pub fn owner_of(value: &[u8]) -> (&str, bool) {
    let value = std::str::from_utf8(value).unwrap_or_default();
    match value.strip_suffix(ADOPTED) {
        Some(node) => (node, true),
        None => (value, false),
    }
}

/// Writes `node` as `key`'s value by compare-and-set, and returns what it held: a node reading a
/// replica a moment behind (KV reads are direct gets) fails the set and reads again, so two claims
/// never both take the key from the same owner.
async fn take_key(
    store: &kv::Store,
    key: &str,
    node: &str,
) -> Result<Option<Bytes>, Box<dyn std::error::Error + Send + Sync>> {
    let value = Bytes::copy_from_slice(node.as_bytes());
    let mut last = None;
    for _ in 0..5 {
        let entry = store.entry(key).await?;
        let (previous, revision) = match entry {
            Some(e) if e.operation == kv::Operation::Put => (Some(e.value), e.revision),
            Some(e) => (None, e.revision),
            None => (None, 0),
        };
        let set = if revision == 0 {
            store
                .create(key, value.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            store
                .update(key, value.clone(), revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        match set {
            Ok(()) => return Ok(previous),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_default().into())
}

/// After a claim: the key still names `node`, written again on the revision read (a
/// compare-and-set, so a read that lags behind the stream's leader fails it and is read again); a
/// delete since (a release that raced the claim) is undone; another node's claim since wins.
async fn keep_key(
    store: &kv::Store,
    key: &str,
    node: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let value = Bytes::copy_from_slice(node.as_bytes());
    let mut last = None;
    for _ in 0..5 {
        let (owner, revision) = match store.entry(key).await? {
            Some(e) if e.operation == kv::Operation::Put => (Some(e.value), e.revision),
            Some(e) => (None, e.revision),
            None => (None, 0),
        };
        if owner.is_some_and(|o| owner_of(&o).0 != node) {
            return Ok(());
        }
        let set = match revision {
            0 => store
                .create(key, value.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            r => store
                .update(key, value.clone(), r)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        match set {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_default().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        for (id, keep) in [("a", true), ("", false), ("ü/x y", true)] {
            assert_eq!(
                decode_request(&encode_request(id, keep, "n-2")),
                Some((id.to_owned(), keep, "n-2".to_owned()))
            );
        }
        assert_eq!(decode_request(&[]), None);
        assert_eq!(decode_request(&[2, 0, 0, b'a']), None);
        assert_eq!(decode_request(&[1, 0, 5, b'a']), None, "node cut short");
        assert_eq!(decode_request(&[1, 0, 0, 0xff]), None);
    }

    #[test]
    fn owners_round_trip() {
        for adopted in [false, true] {
            assert_eq!(owner_of(&owner_value("n-1", adopted)), ("n-1", adopted));
        }
        assert_eq!(owner_of(b"\xff"), ("", false));
    }

    #[test]
    fn keys_are_valid_bucket_keys() {
        let k = key_of("any client id / ü");
        assert_eq!(k.len(), 34);
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        assert_ne!(key_of("a"), key_of("b"));
    }

    #[test]
    fn an_answer_carries_the_session_and_what_it_did_lately() {
        let lately = Lately {
            seen: vec![7, u64::MAX],
            subscribed: vec![("a/#".into(), 42), ("".into(), u64::MAX)],
        };
        let answer = encode_answer(b"snapshot", &lately);
        let moving = decode_answer(answer.clone()).expect("an answer");
        assert_eq!(&moving.snapshot[..], b"snapshot");
        assert_eq!(moving.lately.as_ref(), Some(&lately));
        let none = decode_answer(encode_answer(b"s", &Lately::default())).expect("an answer");
        assert_eq!(none.lately, Some(Lately::default()));
        // Cut anywhere before the snapshot, or a count nothing follows: not an answer.
        for n in 0..answer.len() - b"snapshot".len() {
            assert_eq!(decode_answer(answer.slice(..n)), None, "cut at {n}");
        }
        assert_eq!(decode_answer(Bytes::from_static(&[0xff; 12])), None);
        let mut bad = BytesMut::new();
        bad.put_u32(0);
        bad.put_u32(1);
        bad.put_u16(1);
        bad.put_u8(0xff);
        bad.put_u64(1);
        assert_eq!(decode_answer(bad.freeze()), None, "a filter not UTF-8");
    }

    /// Any bytes: no panic; what decodes encodes back to the same bytes.
    #[test]
    fn any_answer_decodes_without_panic_and_round_trips() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut decoded = 0;
        for len in 0..20_000usize {
            let bytes: Vec<u8> = (0..len % 96)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly zeros and small values, so that counts and lengths are often in
                    // range.
                    match x % 4 {
                        0 | 1 => 0,
                        2 => (x >> 8) as u8 % 3,
                        _ => (x >> 16) as u8,
                    }
                })
                .collect();
            if let Some(m) = decode_answer(Bytes::from(bytes.clone())) {
                decoded += 1;
                let lately = m.lately.expect("a live node's answer");
                assert_eq!(&encode_answer(&m.snapshot, &lately)[..], &bytes[..]);
            }
        }
        assert!(
            decoded > 100,
            "only {decoded} inputs decoded: the check checked little"
        );
    }
}
