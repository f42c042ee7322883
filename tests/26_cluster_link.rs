//! The cluster against a real 3-server NATS cluster with JetStream (`tests/cluster/nats.sh`, Debian's
//! nats-server):
//! - the link: a node's liveness key appears once it starts, comes back after NATS was down and up
//!   again, and goes when the node stops (watched with async-nats, as another node would);
//! - routing: three brokers as one, with rumqttc clients on different nodes: wildcards, topics with
//!   NATS's special characters, per-publisher order, unsubscribing, and a node's interest leaving
//!   with it.

mod common;

use common::cluster::{node_config, Nats};

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_lite::StreamExt;
use shardmq::cluster::link::{Link, LinkConfig, LinkShards};
use shardmq::router::MailboxMatrix;

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
            // A link with no shards: the matrix has its one mailbox.
            let mut matrix = MailboxMatrix::new(1);
            let shards = LinkShards {
                ends: matrix.take_last().expect("one mailbox"),
                count: 0,
                restored: Default::default(),
            };
            let link = Link::spawn(config, shards).expect("link starts");
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

fn case(broker: &common::TestBroker) -> common::Case {
    common::Case {
        addr: broker.addr(),
        shards: broker.shards(),
        proto: common::Proto::V311,
    }
}

/// Publishes `topic` from `publisher` until each subscriber has a message on it: interest travels
/// through the bucket, and each node writes its keys in the order they changed, so once `topic`'s
/// subscription (made last) is known on the publisher's node, so is every earlier one.
async fn probe(publisher: &mut Client, topic: &str, subscribers: &mut [&mut Client]) {
    let mut pending: Vec<usize> = (0..subscribers.len()).collect();
    for _ in 0..200 {
        publisher.publish(topic, 0, false, "probe").await;
        let mut still = Vec::new();
        for &i in &pending {
            let s = &mut *subscribers[i];
            let mut arrived = false;
            // Probes of an earlier call may still come in: skipped.
            while let Some(m) = s.recv_within(Duration::from_millis(50)).await {
                assert_eq!(m.text(), "probe", "{}: {m:?} before the probe", s.id);
                if m.topic == topic {
                    arrived = true;
                    break;
                }
            }
            if !arrived {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            // Probes still in flight are skipped by `before_marker`.
            return;
        }
    }
    panic!("interest on {topic} never reached the publisher's node");
}

/// Messages before the next one on `marker` with the payload "marker", probes skipped.
async fn before_marker(client: &mut Client, marker: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let m = client.recv().await;
        match (m.topic == marker, m.text().as_str()) {
            (true, "marker") => return out,
            (_, "probe") => {}
            _ => out.push((m.topic.clone(), m.text())),
        }
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(t, p)| ((*t).to_owned(), (*p).to_owned()))
        .collect()
}

use common::client::Client;

#[test]
fn three_nodes_route_as_one_broker() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("cluster routing", Duration::from_secs(120), move || {
        let n1 = common::TestBroker::start(2, &node_config(&nats, "n1"));
        let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
        let n3 = common::TestBroker::start(2, &node_config(&nats, "n3"));
        let (c1, c2, c3) = (case(&n1), case(&n2), case(&n3));
        common::block_on(async move {
            let mut p1 = Client::connect(&c1, "pub-1").await;
            let mut p3 = Client::connect(&c3, "pub-3").await;
            let mut s2 = Client::connect(&c2, "sub-2").await;
            let mut s3 = Client::connect(&c3, "sub-3").await;
            let special = "x.y/*/>/$/ü/ /~";
            s2.subscribe_many(&[("a/+/c", 0), ("a/#", 0), (special, 0), ("q", 1), ("q2", 2)])
                .await;
            s3.subscribe("a/b/#", 0).await;
            // Made last: once they cross, the filters above have too. One marker topic per
            // publisher, whose messages keep their order.
            s2.subscribe_many(&[("end1", 0), ("end3", 0)]).await;
            s3.subscribe("end1", 0).await;
            probe(&mut p1, "end1", &mut [&mut s2, &mut s3]).await;
            probe(&mut p3, "end3", &mut [&mut s2]).await;

            // Wildcards, `a/#` matching `a`, one copy per session however many filters match, a
            // node with no matching filter getting nothing, and NATS's special characters.
            p1.publish("a/b/c", 0, false, "one").await;
            p1.publish("a", 0, false, "two").await;
            p1.publish("b/c", 0, false, "none").await;
            p1.publish("end1", 0, false, "marker").await;
            p3.publish(special, 0, false, "three").await;
            p3.publish("end3", 0, false, "marker").await;
            assert_eq!(
                before_marker(&mut s2, "end1").await,
                pairs(&[("a/b/c", "one"), ("a", "two")]),
                "n2's subscriber, from n1"
            );
            assert_eq!(
                before_marker(&mut s2, "end3").await,
                pairs(&[(special, "three")]),
                "n2's subscriber, from n3"
            );
            assert_eq!(
                before_marker(&mut s3, "end1").await,
                pairs(&[("a/b/c", "one")]),
                "n3's subscriber"
            );

            // Per-publisher order across nodes, QoS 0.
            for i in 0..500 {
                p1.publish_nowait("a/b/c", 0, false, format!("{i}")).await;
            }
            p1.publish("end1", 0, false, "marker").await;
            let want: Vec<(String, String)> = (0..500)
                .map(|i| ("a/b/c".to_owned(), format!("{i}")))
                .collect();
            assert_eq!(before_marker(&mut s2, "end1").await, want, "order at n2");
            assert_eq!(before_marker(&mut s3, "end1").await, want, "order at n3");

            // QoS 1 across nodes reaches a QoS 1 subscription at QoS 1.
            p1.publish("q", 1, false, "acked").await;
            let m = s2.recv().await;
            assert_eq!(
                (m.topic.as_str(), m.qos, m.text().as_str()),
                ("q", 1, "acked")
            );

            // Unsubscribed at n2: n1 stops sending there. The new marker's subscription is put
            // after the deletes, so once it crosses they have.
            s2.unsubscribe("a/#").await;
            s2.unsubscribe("a/+/c").await;
            s2.subscribe("end1b", 0).await;
            probe(&mut p1, "end1b", &mut [&mut s2]).await;
            p1.publish("a/b/c", 0, false, "after").await;
            p1.publish("end1", 0, false, "marker").await;
            assert_eq!(
                before_marker(&mut s2, "end1").await,
                [],
                "unsubscribed at n2"
            );
            assert_eq!(
                before_marker(&mut s3, "end1").await,
                pairs(&[("a/b/c", "after")]),
                "still subscribed at n3"
            );
        });
    });
}
