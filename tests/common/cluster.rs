//! A NATS cluster for the cluster tests (`tests/26_cluster_link.rs`, `tests/27_cluster_kill.rs`,
//! `tests/28_cluster_shared.rs`): three nats-server with JetStream started by
//! `tests/cluster/nats.sh`, stopped on drop.
//!
//! One cluster test of a test binary runs at a time ([`Turn`]): each starts three NATS servers
//! and up to three brokers, and five of them at once on a 2-core machine slowed JetStream's
//! replicated writes past the time a SUBACK waits for the other nodes (`cluster::relay`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A NATS cluster started by tests/cluster/nats.sh, stopped (by the PIDs it recorded) on drop.
pub struct Nats {
    pub dir: PathBuf,
    pub urls: Vec<String>,
    _turn: Turn,
}

/// Whether a cluster test of this binary holds its turn.
static BUSY: Mutex<bool> = Mutex::new(false);
static FREED: Condvar = Condvar::new();

/// The longest a test waits for its turn: a test that timed out may hold it while its thread
/// goes on; the next goes ahead after this.
const TURN_WAIT: Duration = Duration::from_secs(300);

/// This test's turn among the cluster tests of its binary, given back on drop (a panic included).
struct Turn;

impl Turn {
    fn take() -> Turn {
        let busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        let (mut busy, _) = FREED
            .wait_timeout_while(busy, TURN_WAIT, |busy| *busy)
            .unwrap_or_else(|e| e.into_inner());
        *busy = true;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
        FREED.notify_one();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/nats.sh")
}

/// Runs `tests/cluster/nats.sh VERB DIR SERVERS...` and fails the test if it fails.
pub fn nats_sh(verb: &str, dir: &Path, servers: &[&str]) {
    let out = Command::new("bash")
        .arg(script())
        .arg(verb)
        .arg(dir)
        .args(servers)
        .output()
        .expect("run tests/cluster/nats.sh");
    assert!(
        out.status.success(),
        "nats.sh {verb} {servers:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Nats {
    /// `None` when nats-server is missing and the interop tests may be skipped.
    pub fn start() -> Option<Nats> {
        let present = Command::new("sh")
            .args([
                "-c",
                "command -v nats-server || test -x /usr/sbin/nats-server",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present && super::skip_missing_tool("nats-server", "apt-get install nats-server") {
            return None;
        }
        let turn = Turn::take();
        let dir = std::env::temp_dir().join(super::unique_id("nats"));
        nats_sh("start", &dir, &[]);
        let urls = std::fs::read_to_string(dir.join("urls")).expect("nats.sh wrote DIR/urls");
        let urls = urls.trim().split(',').map(str::to_owned).collect();
        Some(Nats {
            dir,
            urls,
            _turn: turn,
        })
    }

    pub fn stop_all(&self) {
        nats_sh("stop", &self.dir, &[]);
    }

    /// Starts all three again (each with its JetStream store) and waits until they are ready.
    pub fn restart_all(&self) {
        nats_sh("restart", &self.dir, &["1", "2", "3"]);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `cluster_*` lines of node `node`.
pub fn node_config(nats: &Nats, node: &str) -> String {
    format!(
        "cluster_nats {}\ncluster_name t\ncluster_node {node}\n",
        nats.urls.join(",")
    )
}

/// Waits until each of `nodes` (of cluster `t`) has its liveness key: each is connected to NATS.
/// Tries again from the start on an error of NATS's (a bucket its nodes are creating at that moment,
/// its stream's leader being elected) or after 1 s without an answer, for up to 30 s.
pub async fn joined(nats: &Nats, nodes: &[&str]) {
    let client = async_nats::connect(nats.urls.clone())
        .await
        .expect("connect to NATS");
    let mut last = String::new();
    for _ in 0..300 {
        // Bounded per try: an operation on a stream its servers are still setting up may wait
        // for JetStream's 5 s timeout, where a new try answers at once.
        let tried = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            try_joined(&client, nodes),
        );
        match tried.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer within 1 s".into(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{nodes:?} never all joined: {last}");
}

async fn try_joined(
    client: &async_nats::Client,
    nodes: &[&str],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use async_nats::jetstream;
    use futures_lite::StreamExt;
    let js = jetstream::new(client.clone());
    let store = js.get_key_value("shardmq_t_nodes").await?;
    // The watch first, then what is there already: a key put in between is seen by one of them.
    let mut watch = store.watch(">").await?;
    let mut seen = std::collections::HashSet::new();
    for n in nodes {
        if store.get(*n).await?.is_some() {
            seen.insert((*n).to_owned());
        }
    }
    while !nodes.iter().all(|n| seen.contains(*n)) {
        let entry = watch.next().await.ok_or("the watch ended")??;
        if entry.operation == jetstream::kv::Operation::Put {
            seen.insert(entry.key);
        }
    }
    Ok(())
}

/// Publishes `ready` (QoS 0) on the node at `addr` until `sub`, on another node and subscribed to
/// it, gets one: that node's interest reached this one. Panics after 300 tries.
pub fn probe_raw(addr: std::net::SocketAddr, sub: &mut super::raw::RawClient) {
    let mut probe = super::persist::publisher(addr, super::Proto::V311);
    for _ in 0..300 {
        probe.publish("ready", 0, false, b"probe");
        if let Ok(p) = sub.try_read_packet(Duration::from_millis(50)) {
            assert_eq!(p.publish(super::Proto::V311).topic, "ready");
            return;
        }
    }
    panic!("the subscriber's interest never reached {addr}");
}

/// Waits until bucket `bucket` holds every one of `keys` (`present`) or none of them (not
/// `present`). Panics after 30 s.
pub fn wait_for_keys_state(nats: &Nats, bucket: &str, keys: &[String], present: bool) {
    super::block_on(async {
        let client = async_nats::connect(nats.urls.clone())
            .await
            .expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        for _ in 0..300 {
            if let Ok(store) = js.get_key_value(bucket).await {
                let mut found = 0;
                for key in keys {
                    if let Ok(Some(_)) = store.get(key).await {
                        found += 1;
                    }
                }
                if found == if present { keys.len() } else { 0 } {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{bucket} never held {}: {keys:?}",
            if present { "all of" } else { "none of" }
        );
    });
}

/// Waits until bucket `bucket` holds every one of `keys`. Panics after 30 s.
pub fn wait_for_keys(nats: &Nats, bucket: &str, keys: &[String]) {
    wait_for_keys_state(nats, bucket, keys, true);
}

/// The value of `key` in bucket `bucket`, if any.
pub fn value_of(nats: &Nats, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let mut value = None;
    super::block_on(async {
        let client = async_nats::connect(nats.urls.clone())
            .await
            .expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        if let Ok(store) = js.get_key_value(bucket).await {
            value = store.get(key).await.ok().flatten().map(|v| v.to_vec());
        }
    });
    value
}

/// MQTT matching for the model tests, written here from the spec (not the broker's `topic`
/// module): `+` one level, `#` the rest (the parent included), and a topic starting with `$` not
/// matched by a filter starting with a wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Publishes QoS 1 messages on `topic` at `addr` until `sub` gets one (its subscription's interest
/// reached that node): it comes at QoS 1. Panics after 300 tries.
pub fn delivers(addr: std::net::SocketAddr, sub: &mut super::raw::RawClient, topic: &str) {
    use super::raw::{kind, ReadEnd};
    let mut publisher = super::persist::publisher(addr, super::Proto::V311);
    for _ in 0..300 {
        // Returns once the PUBACK came.
        publisher.publish(topic, 1, false, b"resumed");
        match sub.try_read_packet(Duration::from_millis(50)) {
            Ok(p) if p.kind() == kind::PUBLISH => {
                let m = p.publish(sub.proto);
                assert_eq!((m.topic.as_str(), m.qos), (topic, 1));
                return;
            }
            Ok(_) | Err(ReadEnd::Timeout) => {}
            Err(ReadEnd::Closed) => panic!("the resumed client was closed"),
        }
    }
    panic!("nothing published on {topic} reached the resumed session");
}

/// Waits until every node reads its queue: QoS 1 published on the next node reaches a subscriber
/// on each. A node whose queue stream was still electing its leader at start holds what comes to
/// it for seconds, then passes it on late, out of order (tests/30_cluster_sessions.rs: 2 of 10
/// runs; tests/32_cluster_concurrent.rs: a QoS 1 message of the first second came after 1,500
/// later ones).
pub fn queues_read(addrs: &[std::net::SocketAddr]) {
    for (node, addr) in addrs.iter().enumerate() {
        let mut ready = super::raw::RawClient::connect_clean(
            *addr,
            super::Proto::V311,
            &format!("ready-{node}"),
        );
        assert_eq!(ready.subscribe(&[("ready/q", 1)]), [1]);
        delivers(addrs[(node + 1) % addrs.len()], &mut ready, "ready/q");
        ready.send(&super::raw::disconnect());
    }
}
