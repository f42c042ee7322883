//! The cluster link against a real 3-server NATS cluster with JetStream (`tests/cluster/nats.sh`,
//! Debian's nats-server): a node's liveness key appears once it starts, comes back after NATS was
//! down and up again, and goes when the node stops. Watched with async-nats, as another node would.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_lite::StreamExt;
use shardmq::cluster::link::{Link, LinkConfig};

/// A NATS cluster started by tests/cluster/nats.sh, stopped (by the PIDs it recorded) on drop.
struct Nats {
    dir: PathBuf,
    urls: Vec<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/nats.sh")
}

/// Runs `tests/cluster/nats.sh VERB DIR SERVERS...` and fails the test if it fails.
fn nats_sh(verb: &str, dir: &Path, servers: &[&str]) {
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
    fn start() -> Option<Nats> {
        let present = Command::new("sh")
            .args([
                "-c",
                "command -v nats-server || test -x /usr/sbin/nats-server",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present && common::skip_missing_tool("nats-server", "apt-get install nats-server") {
            return None;
        }
        let dir = std::env::temp_dir().join(common::unique_id("nats"));
        nats_sh("start", &dir, &[]);
        let urls = std::fs::read_to_string(dir.join("urls")).expect("nats.sh wrote DIR/urls");
        let urls = urls.trim().split(',').map(str::to_owned).collect();
        Some(Nats { dir, urls })
    }

    fn stop_all(&self) {
        nats_sh("stop", &self.dir, &[]);
    }

    /// Starts all three again (each with its JetStream store) and waits until they are ready.
    fn restart_all(&self) {
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

fn link_config(nats: &Nats, node: &str) -> LinkConfig {
    LinkConfig {
        cluster: "t".into(),
        node: node.into(),
        urls: nats.urls.clone(),
        user: None,
        credentials: None,
        cafile: None,
    }
}

/// The next change of `key` in the nodes bucket: `true` for a put, `false` for a delete.
async fn next_change(watch: &mut kv::Watch, key: &str) -> bool {
    loop {
        let entry = watch
            .next()
            .await
            .expect("the watch stays open")
            .expect("a watch entry");
        if entry.key == key {
            return matches!(entry.operation, kv::Operation::Put);
        }
    }
}

/// Opens the nodes bucket from the test's own client, once the link has created it.
async fn nodes_bucket(js: &jetstream::Context, name: &str) -> kv::Store {
    loop {
        if let Ok(store) = js.get_key_value(name).await {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn liveness_key_comes_back_after_nats_restarts_and_goes_on_stop() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout(
        "cluster link liveness",
        Duration::from_secs(90),
        move || {
            let config = link_config(&nats, "node-a");
            let bucket = config.nodes_bucket();
            let link = Link::spawn(config).expect("link starts");
            common::block_on(async move {
                let client = async_nats::connect(nats.urls.clone())
                    .await
                    .expect("connect");
                let js = jetstream::new(client);
                let store = nodes_bucket(&js, &bucket).await;
                let mut watch = store.watch("node-a").await.expect("watch");
                assert!(next_change(&mut watch, "node-a").await, "first put");

                // All three NATS servers down, then back: the link reconnects by itself and refreshes
                // its key (each server keeps its JetStream store, so the bucket survives).
                drop(watch);
                nats.stop_all();
                nats.restart_all();
                let client = async_nats::connect(nats.urls.clone())
                    .await
                    .expect("reconnect");
                let js = jetstream::new(client);
                let store = nodes_bucket(&js, &bucket).await;
                let mut watch = store.watch("node-a").await.expect("watch again");
                // The watch first replays the last value (the put from before the outage), then the
                // refresh after the link reconnected.
                assert!(next_change(&mut watch, "node-a").await, "last put replayed");
                assert!(
                    next_change(&mut watch, "node-a").await,
                    "refreshed after the outage"
                );

                link.stop();
                assert!(!next_change(&mut watch, "node-a").await, "deleted on stop");
            });
        },
    );
}

#[test]
fn a_broker_with_cluster_keys_joins_and_leaves() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("broker cluster keys", Duration::from_secs(60), move || {
        let extra = format!(
            "cluster_nats {}\ncluster_name t\ncluster_node broker-b\n",
            nats.urls.join(",")
        );
        let broker = common::TestBroker::start(2, &extra);
        common::block_on(async move {
            let client = async_nats::connect(nats.urls.clone())
                .await
                .expect("connect");
            let js = jetstream::new(client);
            let store = nodes_bucket(&js, "shardmq_t_nodes").await;
            let mut watch = store.watch("broker-b").await.expect("watch");
            assert!(next_change(&mut watch, "broker-b").await, "joined");
            // The broker still serves MQTT while in the cluster.
            let mut c = std::net::TcpStream::connect(broker.addr()).expect("MQTT connect");
            use std::io::{Read, Write};
            c.write_all(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0])
                .expect("CONNECT");
            let mut connack = [0u8; 4];
            c.read_exact(&mut connack).expect("CONNACK");
            assert_eq!(connack, [0x20, 2, 0, 0]);
            drop(broker);
            assert!(
                !next_change(&mut watch, "broker-b").await,
                "left on shutdown"
            );
        });
    });
}
