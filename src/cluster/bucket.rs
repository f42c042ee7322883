//! The interest bucket `shardmq_<cluster>_interest`: this node's keys written, every node's read
//! (docs/CLUSTER.md, "Interest exchange"). Two tasks on the link's runtime, so that a slow or absent
//! NATS never stops the link's routing:
//! - [`write_interest`] keeps this node's keys as the link's [`KvChange`]s say. It remembers what they
//!   should be, not only the changes, so that after an error or a reconnection it writes the whole set
//!   again and deletes keys of its node that should not be there (a previous run's, one lost in an
//!   outage); on stop it deletes them all (best effort: a killed node's keys stay until it returns).
//! - [`watch_interest`] reads the bucket: the keys present, then every change, as [`BucketEvent`]s
//!   for the link. Each time it (re)starts its watch it reads the keys afresh, so the link forgets
//!   what went while it was not watching.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ahash::{AHashMap, AHashSet};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_lite::StreamExt;
use tokio::sync::{mpsc, watch, Notify};

use super::interest::KvChange;
use super::store::open_bucket;
use crate::codec::Utf8Bytes;

/// Wait between tries when NATS refuses or is away.
const RETRY: Duration = Duration::from_secs(1);

/// How long a stopping node tries to delete its keys.
const GOODBYE: Duration = Duration::from_secs(2);

/// What the watch tells the link.
#[derive(Debug)]
pub enum BucketEvent {
    /// The keys in the bucket when a watch (re)started: forget the others.
    Present(AHashSet<String>),
    Put {
        key: String,
        filter: Utf8Bytes,
    },
    Delete {
        key: String,
    },
    /// The keys that were present have all been sent: the link routes by the whole bucket now.
    CaughtUp,
    /// A node's mark put after the watch started (`cluster::opening`): no interest.
    Mark {
        key: String,
        value: Bytes,
    },
}

/// A change to one of this node's keys: its key, and its value or None to delete it.
pub trait KeyChange: Send + 'static {
    fn into_parts(self) -> (String, Option<Bytes>);
}

impl KeyChange for KvChange {
    fn into_parts(self) -> (String, Option<Bytes>) {
        match self {
            KvChange::Put { key, filter } => (key, Some(filter.as_bytes().clone())),
            KvChange::Delete { key } => (key, None),
        }
    }
}

/// A value to put in one of this node's keys, or None to delete it (the wills' and sessions'
/// buckets: `cluster::wills`, `cluster::state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWrite {
    pub key: String,
    pub value: Option<Bytes>,
}

impl KeyChange for KeyWrite {
    fn into_parts(self) -> (String, Option<Bytes>) {
        (self.key, self.value)
    }
}

/// Whose keys [`write_keys`] keeps, where.
pub struct KeysOf {
    pub js: jetstream::Context,
    pub bucket: String,
    pub node: String,
}

/// Keeps this node's keys (`<node>.<hash>`) in `bucket` as the `changes` say, until the sender
/// goes; then deletes them, unless `keep_at_stop`. Each key written goes to `written`. Its first
/// sync with the bucket, which deletes this node's keys it was not told of (left by its previous
/// run), waits until `sync_from` is true. (The interest bucket's, the wills bucket's:
/// `cluster::wills`, and the state bucket's: `cluster::state`.)
pub async fn write_keys<C: KeyChange>(
    KeysOf { js, bucket, node }: KeysOf,
    mut changes: mpsc::UnboundedReceiver<C>,
    reconnected: Arc<Notify>,
    written: mpsc::UnboundedSender<String>,
    keep_at_stop: bool,
    mut sync_from: watch::Receiver<bool>,
) {
    let prefix = format!("{node}.");
    let mut want: AHashMap<String, Bytes> = AHashMap::new();
    let mut dirty = Dirty::default();
    let mut store: Option<kv::Store> = None;
    let mut resync = true;
    let mut open = true;
    let apply = |c: C, want: &mut AHashMap<_, _>, dirty: &mut Dirty| match c.into_parts() {
        (key, Some(value)) => {
            want.insert(key.clone(), value);
            dirty.mark(key);
        }
        (key, None) => {
            want.remove(&key);
            dirty.mark(key);
        }
    };
    while open {
        while let Ok(c) = changes.try_recv() {
            apply(c, &mut want, &mut dirty);
        }
        let mut failed = false;
        if store.is_none() {
            match open_bucket(&js, &bucket, Duration::ZERO).await {
                Ok(s) => store = Some(s),
                Err(e) => {
                    tracing::debug!("Cluster: cannot open {bucket} yet: {e}.");
                    failed = true;
                }
            }
        }
        // The first sync (which deletes this node's keys it was not told of) waits for
        // `sync_from`; writes go meanwhile.
        let may_sync = *sync_from.borrow();
        if let (Some(s), true, false, true) = (&store, resync, failed, may_sync) {
            match own_keys(s, &prefix).await {
                Ok(keys) => {
                    for key in keys.into_iter().filter(|k| !want.contains_key(k)) {
                        dirty.mark(key);
                    }
                    for key in want.keys() {
                        dirty.mark(key.clone());
                    }
                    resync = false;
                }
                Err(e) => {
                    tracing::debug!("Cluster: cannot list {bucket}: {e}.");
                    failed = true;
                }
            }
        }
        if let (Some(s), false) = (&store, failed) {
            while let Some(key) = dirty.first().cloned() {
                let done = match want.get(&key) {
                    Some(value) => s
                        .put(&key, value.clone())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    None => s.delete(&key).await.map_err(|e| e.to_string()),
                };
                match done {
                    Ok(()) => {
                        dirty.pop();
                        // SUBACKs waiting for this key go (`Relay::interest_written`).
                        let _ = written.send(key);
                    }
                    Err(e) => {
                        tracing::debug!("Cluster: cannot write {bucket} key {key}: {e}.");
                        failed = true;
                        break;
                    }
                }
            }
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = reconnected.notified() => resync = true,
            }
            continue;
        }
        tokio::select! {
            c = changes.recv() => match c {
                Some(c) => apply(c, &mut want, &mut dirty),
                None => open = false,
            },
            _ = reconnected.notified() => resync = true,
            Ok(()) = sync_from.changed(), if !may_sync => {}
        }
    }
    if let (Some(s), false) = (&store, keep_at_stop) {
        let goodbye = async {
            for key in want.keys() {
                let _ = s.delete(key).await;
            }
        };
        let _ = tokio::time::timeout(GOODBYE, goodbye).await;
    }
}

/// Keys whose state in the bucket may differ from what the link wants, in the order they changed:
/// written in that order, so a node that sees one change has seen the earlier ones (a test's probe
/// subscription, made last, says the others are known).
#[derive(Default)]
struct Dirty {
    order: VecDeque<String>,
    set: AHashSet<String>,
}

impl Dirty {
    fn mark(&mut self, key: String) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    fn first(&self) -> Option<&String> {
        self.order.front()
    }

    fn pop(&mut self) {
        if let Some(key) = self.order.pop_front() {
            self.set.remove(&key);
        }
    }
}

/// Takes `key` out of `store`: its value when this node won it (None: absent, or another node
/// took it first): a delete conditional on the revision read, so that of
/// all the nodes taking at once exactly one gets it (`cluster::wills`, `cluster::state`).
pub async fn take(
    store: &kv::Store,
    key: &str,
) -> Result<Option<Bytes>, Box<dyn std::error::Error + Send + Sync>> {
    let Some(entry) = store.entry(key).await? else {
        return Ok(None);
    };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    match store
        .delete_expect_revision(key, Some(entry.revision))
        .await
    {
        Ok(()) => Ok(Some(entry.value)),
        Err(_) => Ok(None),
    }
}

/// The keys of `store` that start with `prefix` (a node's: `<node>.`).
pub async fn own_keys(
    store: &kv::Store,
    prefix: &str,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let mut keys = store.keys().await?;
    let mut own = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key?;
        if key.starts_with(prefix) {
            own.push(key);
        }
    }
    Ok(own)
}

/// Reads `bucket` for the link: the keys present, then each change; again from the start after an
/// error. Ends when the link has gone.
pub async fn watch_interest(
    js: jetstream::Context,
    bucket: String,
    events: mpsc::UnboundedSender<BucketEvent>,
) {
    while !events.is_closed() {
        if let Err(e) = watch_once(&js, &bucket, &events).await {
            tracing::debug!("Cluster: watch of {bucket} ended: {e}; again in {RETRY:?}.");
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn watch_once(
    js: &jetstream::Context,
    bucket: &str,
    events: &mpsc::UnboundedSender<BucketEvent>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = open_bucket(js, bucket, Duration::ZERO).await?;
    // The watch of changes first, then what is there: a key put in between is seen by one of the
    // two, and a change after the read comes after it. (Not `watch_with_history`: async-nats 0.38
    // ends that watch at once when the bucket is empty.)
    let mut watch = store.watch_all().await?;
    let mut present = AHashSet::new();
    let mut keys = store.keys().await?;
    while let Some(key) = keys.next().await {
        present.insert(key?);
    }
    let mut current = Vec::with_capacity(present.len());
    for key in &present {
        if let Some(value) = store.get(key).await? {
            current.push((key.clone(), value));
        }
    }
    if events.send(BucketEvent::Present(present)).is_err() {
        return Ok(());
    }
    for (key, value) in current {
        // Marks read here were put before: only one coming through the watch opens its node.
        if super::opening::is_mark(&key) {
            continue;
        }
        if let Some(event) = put_event(bucket, key, value) {
            if events.send(event).is_err() {
                return Ok(());
            }
        }
    }
    if events.send(BucketEvent::CaughtUp).is_err() {
        return Ok(());
    }
    while let Some(entry) = watch.next().await {
        let entry = entry?;
        let event = match entry.operation {
            kv::Operation::Put if super::opening::is_mark(&entry.key) => BucketEvent::Mark {
                key: entry.key,
                value: entry.value,
            },
            kv::Operation::Delete | kv::Operation::Purge if super::opening::is_mark(&entry.key) => {
                continue
            }
            kv::Operation::Put => match put_event(bucket, entry.key, entry.value) {
                Some(event) => event,
                None => continue,
            },
            kv::Operation::Delete | kv::Operation::Purge => BucketEvent::Delete { key: entry.key },
        };
        if events.send(event).is_err() {
            return Ok(());
        }
    }
    Err("the watch stream ended".into())
}

/// A key's value as the link takes it: a topic filter, or nothing (logged).
fn put_event(bucket: &str, key: String, value: bytes::Bytes) -> Option<BucketEvent> {
    match Utf8Bytes::try_from(value) {
        Ok(filter) if crate::topic::validate_topic_filter(&filter).is_ok() => {
            Some(BucketEvent::Put { key, filter })
        }
        _ => {
            tracing::warn!("Cluster: key {key} of {bucket} does not hold a topic filter; ignored.");
            None
        }
    }
}
