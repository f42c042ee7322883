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
        replicas: shardmq::cluster::store::REPLICAS,
    }
}

/// A link with no shards (the matrix has its one mailbox), started.
fn spawn_link(config: LinkConfig) -> Link {
    let mut matrix = MailboxMatrix::new(1);
    let shards = LinkShards {
        ends: matrix.take_last().expect("one mailbox"),
        count: 0,
        restored: Default::default(),
        retained: shardmq::shard::RetainedStripes::new(1),
        figures: Default::default(),
        persistence: false,
    };
    Link::spawn(config, shards).expect("link starts")
}

/// The replicas of `stream`, once the link created it (panics after 30 s).
async fn replicas_of(js: &jetstream::Context, stream: &str) -> usize {
    for _ in 0..300 {
        if let Ok(mut s) = js.get_stream(stream).await {
            if let Ok(info) = s.info().await {
                return info.config.num_replicas;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no stream {stream}");
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
/// Watches `key` of the nodes bucket `name` from the test's own client, once the link has put it
/// (the watch then starts with its last value; async-nats 0.38 ends a watch of a key that has
/// none) and the bucket's stream answers (one just created may not, for a moment).
async fn watch_node(js: &jetstream::Context, name: &str, key: &str) -> kv::Watch {
    let mut last = String::new();
    for _ in 0..300 {
        match js.get_key_value(name).await {
            Ok(store) => match store.get(key).await {
                Ok(Some(_)) => match store.watch(key).await {
                    Ok(watch) => return watch,
                    Err(e) => last = e.to_string(),
                },
                Ok(None) => last = format!("no {key} yet"),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no watch of {name}: {last}");
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
            let link = spawn_link(config);
            common::block_on(async move {
                let client = async_nats::connect(nats.urls.clone())
                    .await
                    .expect("connect");
                let js = jetstream::new(client);
                let mut watch = watch_node(&js, &bucket, "node-a").await;
                assert!(next_change(&mut watch, "node-a").await, "first put");
                assert_eq!(
                    replicas_of(&js, &format!("KV_{bucket}")).await,
                    3,
                    "3 replicas unless set"
                );

                // All three NATS servers down, then back: the link reconnects by itself and refreshes
                // its key (each server keeps its JetStream store, so the bucket survives).
                drop(watch);
                nats.stop_all();
                nats.restart_all();
                let client = async_nats::connect(nats.urls.clone())
                    .await
                    .expect("reconnect");
                let js = jetstream::new(client);
                let mut watch = watch_node(&js, &bucket, "node-a").await;
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
            let mut watch = watch_node(&js, "shardmq_t_nodes", "broker-b").await;
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
        let n1 =
            common::TestBroker::start(2, &format!("{}sys_interval 1\n", node_config(&nats, "n1")));
        let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
        let n3 = common::TestBroker::start(2, &node_config(&nats, "n3"));
        // Every node live (reading its queue and the others' interest): the QoS 1 step below
        // crosses through n2's queue, which the QoS 0 probes do not prove ready.
        common::block_on(common::cluster::joined(&nats, &["n1", "n2", "n3"]));
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
            assert_eq!(
                before_marker(&mut s2, "end1").await,
                pairs(&[("a/b/c", "one"), ("a", "two")]),
                "n2's subscriber, from n1"
            );
            // From n3 once n1's are in: two publishers' messages have no order between them.
            p3.publish(special, 0, false, "three").await;
            p3.publish("end3", 0, false, "marker").await;
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

            // A SUBACK on n2 comes once every node routes by the new filter: a message published on
            // n1 right after it arrives, without a probe. Twenty new filters in a row.
            for i in 0..20 {
                let filter = format!("fresh/{i}");
                s2.subscribe(&filter, 0).await;
                p1.publish(&filter, 0, false, "right after the SUBACK")
                    .await;
                p1.publish("end1", 0, false, "marker").await;
                assert_eq!(
                    before_marker(&mut s2, "end1").await,
                    pairs(&[(filter.as_str(), "right after the SUBACK")]),
                    "filter {filter}"
                );
            }

            // `$SYS` on n1: the cluster's size and what crossed (over 500 copies went from n1).
            let mut sys = Client::connect(&c1, "sys-1").await;
            sys.subscribe("$SYS/broker/cluster/#", 0).await;
            let (mut nodes, mut sent) = (String::new(), 0u64);
            for _ in 0..200 {
                if nodes == "3" && sent >= 1000 {
                    break;
                }
                let m = sys.recv_within(Duration::from_secs(5)).await.expect("$SYS");
                match m.topic.as_str() {
                    "$SYS/broker/cluster/nodes" => nodes = m.text(),
                    "$SYS/broker/cluster/messages/sent" => sent = m.text().parse().unwrap(),
                    _ => {}
                }
            }
            assert_eq!((nodes.as_str(), sent >= 1000), ("3", true), "sent {sent}");
        });
    });
}

/// The retained messages a new subscriber on `case` gets for `filter`, once they include every
/// topic of `wanted` (the cluster's retained stream reaches each node a moment after it is set).
async fn retained_once_present(
    case: &common::Case,
    filter: &str,
    wanted: &[&str],
) -> Vec<(String, String)> {
    for _ in 0..100 {
        let mut c = Client::connect(case, &common::unique_id("ret")).await;
        c.subscribe(filter, 0).await;
        let mut got = Vec::new();
        while let Some(m) = c.recv_within(Duration::from_millis(100)).await {
            // A message published meanwhile comes live (not retained): not what is asked here.
            if m.retain {
                got.push((m.topic.clone(), m.text()));
            }
        }
        c.disconnect().await;
        if wanted.iter().all(|w| got.iter().any(|(t, _)| t == w)) {
            got.sort();
            return got;
        }
    }
    panic!("{filter}: {wanted:?} never all retained at {}", case.addr);
}

#[test]
fn retained_messages_are_the_same_on_every_node() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("cluster retained", Duration::from_secs(120), move || {
        let n1 = common::TestBroker::start(2, &node_config(&nats, "n1"));
        let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
        let n3 = common::TestBroker::start(2, &node_config(&nats, "n3"));
        let (c1, c2, c3) = (case(&n1), case(&n2), case(&n3));
        common::block_on(async move {
            let mut p1 = Client::connect(&c1, "ret-pub-1").await;
            let mut p3 = Client::connect(&c3, "ret-pub-3").await;
            p1.publish("r/1", 1, true, "v1").await;
            p1.publish("r/ü/x.y", 0, true, "v2").await;
            let want = pairs(&[("r/1", "v1"), ("r/ü/x.y", "v2")]);
            for c in [&c1, &c2, &c3] {
                assert_eq!(
                    retained_once_present(c, "r/#", &["r/1", "r/ü/x.y"]).await,
                    want,
                    "at {}",
                    c.addr
                );
            }

            // Cleared on n1, then a marker set after it by the same publisher: a node that has
            // the marker applied the clearing.
            p1.publish("r/1", 0, true, "").await;
            p1.publish("r/marker", 0, true, "m").await;
            for c in [&c2, &c3] {
                assert_eq!(
                    retained_once_present(c, "r/#", &["r/marker"]).await,
                    pairs(&[("r/marker", "m"), ("r/ü/x.y", "v2")]),
                    "at {}",
                    c.addr
                );
            }

            // Set on two nodes at once: every node ends on the same message, the stream's last.
            p1.publish_nowait("r/x", 0, true, "from n1").await;
            p3.publish_nowait("r/x", 0, true, "from n3").await;
            p1.publish("r/m1", 0, true, "m").await;
            p3.publish("r/m3", 0, true, "m").await;
            let mut seen = Vec::new();
            for c in [&c1, &c2, &c3] {
                let got = retained_once_present(c, "r/#", &["r/m1", "r/m3"]).await;
                seen.push(got.into_iter().find(|(t, _)| t == "r/x").expect("r/x"));
            }
            assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
        });
    });
}

/// The next PUBLISH on `c` that is not a probe, as (topic, payload, dup), acknowledged unless
/// `ack` is false.
fn next_publish(c: &mut RawClient, ack: bool) -> (String, String, bool) {
    loop {
        let p = c.recv_publish();
        if p.qos > 0 && ack {
            c.send(&raw::ack(kind::PUBACK, p.pkid));
        }
        let payload = String::from_utf8(p.payload).unwrap();
        if payload != "probe" {
            return (p.topic, payload, p.dup);
        }
    }
}

use common::raw::{self, kind, Connect, RawClient};

#[test]
fn a_client_id_has_one_session_across_the_nodes() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("cluster takeover", Duration::from_secs(120), move || {
        let n1 = common::TestBroker::start(2, &node_config(&nats, "n1"));
        let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
        let n3 = common::TestBroker::start(2, &node_config(&nats, "n3"));
        let v5 = common::Proto::V5;
        let mover = Connect::new(v5, "cluster-mover").persistent();
        common::block_on(common::cluster::joined(&nats, &["n1", "n2", "n3"]));

        // On n1 with a QoS 1 subscription.
        let (mut on1, ack) = RawClient::connect(n1.addr(), &mover);
        assert!(!ack.session_present);
        assert_eq!(on1.subscribe(&[("move/#", 1)]), [1]);

        // The same client id on n2: the n1 connection is closed as taken over (v5: 0x8E), and
        // the session, with its subscription, is here (session present).
        let (mut on2, ack) = RawClient::connect(n2.addr(), &mover);
        assert!(ack.session_present, "the session moved from n1 to n2");
        let closed = on1.expect_closed();
        let reason = closed
            .iter()
            .find(|p| p.kind() == kind::DISCONNECT)
            .map(|p| p.disconnect_reason());
        assert_eq!(reason, Some(0x8E), "n1 closed it as taken over: {closed:?}");

        // n2 has the subscription: a publisher there reaches it. One message read and left
        // unacknowledged, then the client goes away and one more is queued for it.
        let mut p2 = RawClient::connect_clean(n2.addr(), v5, "cluster-pub-2");
        p2.publish("move/a", 1, false, b"a");
        assert_eq!(
            next_publish(&mut on2, false),
            ("move/a".into(), "a".into(), false)
        );
        on2.send(&raw::disconnect());
        on2.expect_closed();
        p2.publish("move/b", 1, false, b"b");

        // On n3: the session comes with what it was owed, in order, the unacknowledged one again
        // with DUP set.
        let (mut on3, ack) = RawClient::connect(n3.addr(), &mover);
        assert!(ack.session_present, "the session moved from n2 to n3");
        assert_eq!(
            next_publish(&mut on3, true),
            ("move/a".into(), "a".into(), true)
        );
        assert_eq!(
            next_publish(&mut on3, true),
            ("move/b".into(), "b".into(), false)
        );

        // And n3's interest crossed: a publisher on n1 reaches it.
        let mut p1 = RawClient::connect_clean(n1.addr(), v5, "cluster-pub-1");
        let mut crossed = false;
        for _ in 0..200 {
            p1.publish("move/probe", 0, false, b"probe");
            if let Ok(p) = on3.try_read_packet(Duration::from_millis(50)) {
                assert_eq!(p.publish(v5).topic, "move/probe");
                crossed = true;
                break;
            }
        }
        assert!(crossed, "n3's interest never reached n1");
        p1.publish("move/c", 1, false, b"c");
        assert_eq!(
            next_publish(&mut on3, true),
            ("move/c".into(), "c".into(), false)
        );

        // A clean start on n1: n3's connection is closed, and no session comes.
        let (_on1, ack) = RawClient::connect(n1.addr(), &Connect::new(v5, "cluster-mover"));
        assert!(!ack.session_present, "a clean start takes no session");
        let closed = on3.expect_closed();
        assert!(
            closed
                .iter()
                .any(|p| p.kind() == kind::DISCONNECT && p.disconnect_reason() == 0x8E),
            "{closed:?}"
        );
    });
}

/// `cluster_replicas`: what the link creates has that many replicas (1 here, for a NATS cluster of
/// one or two servers); 3 unless set.
#[test]
fn cluster_replicas_sets_the_replicas_of_what_the_link_creates() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("cluster replicas", Duration::from_secs(90), move || {
        let mut config = link_config(&nats, "node-r");
        config.replicas = 1;
        let bucket = config.nodes_bucket();
        let link = spawn_link(config);
        common::block_on(async move {
            let client = async_nats::connect(nats.urls.clone())
                .await
                .expect("connect");
            let js = jetstream::new(client);
            let _ = watch_node(&js, &bucket, "node-r").await;
            for stream in [format!("KV_{bucket}"), "SHARDMQ_t_Q".to_owned()] {
                assert_eq!(replicas_of(&js, &stream).await, 1, "{stream}");
            }
        });
        link.stop();
    });
}

/// A lost pull request (a queue stream electing its leader, a server restarting) is sent again
/// after two missed heartbeats, not after async-nats's expiry + 5 s (10 s); what the first request
/// brings late still arrives. The "server" is this test answering on the pull subject of core NATS.
#[test]
fn a_lost_pull_is_sent_again_within_seconds() {
    use shardmq::cluster::pull;
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("lost pull", Duration::from_secs(60), move || {
        common::block_on(async move {
            let client = async_nats::connect(nats.urls.clone())
                .await
                .expect("connect");
            let js = jetstream::new(client.clone());
            let mut requests = client
                .subscribe(pull::next_subject("S", "C"))
                .await
                .expect("subscribe");
            client.flush().await.expect("flush");
            let (to, mut from) = tokio::sync::mpsc::channel(8);
            let (reading, _) = tokio::sync::watch::channel(false);
            let puller = {
                let client = client.clone();
                tokio::spawn(async move { pull::pull(&client, &js, "S", "C", &to, &reading).await })
            };
            let first = requests.next().await.expect("a first request");
            let lost_at = std::time::Instant::now();
            // Lost: not answered, no heartbeat.
            let again = tokio::time::timeout(Duration::from_secs(5), requests.next())
                .await
                .expect("pulled again within 5 s")
                .expect("a second request");
            let waited = lost_at.elapsed();
            assert!(
                waited >= pull::SILENCE / 2,
                "pulled again after {waited:?}, before any heartbeat could be missed"
            );
            let late = first.reply.expect("the first request's inbox");
            let now = again.reply.expect("the second request's inbox");
            client.publish(now, "now".into()).await.expect("publish");
            client.publish(late, "late".into()).await.expect("publish");
            let mut got = Vec::new();
            for _ in 0..2 {
                let m = tokio::time::timeout(Duration::from_secs(5), from.recv())
                    .await
                    .expect("the answer reaches the link within 5 s")
                    .expect("the pull goes on");
                got.push(String::from_utf8_lossy(&m.message.payload).into_owned());
            }
            assert_eq!(got, ["now", "late"]);
            puller.abort();
        });
    });
}

/// A node that starts says hello to the nodes live before it (`cluster::opening`), and opens to
/// its clients only once they answered: from the hello on, their SUBACKs wait for its word. Here a
/// made-up node says hello to a broker alone in the cluster; the broker's next SUBACK waits until
/// that node says it applied the new interest key. (Before, a node counted only the liveness keys
/// its watch had brought, up to 250 ms later: a SUBACK in between did not wait for a node that was
/// already open, and what its clients published next could miss the subscription.)
#[test]
fn a_subscribe_waits_for_a_node_from_its_hello() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("hello", Duration::from_secs(60), move || {
        let broker = common::TestBroker::start(2, &node_config(&nats, "hb"));
        common::block_on(common::cluster::joined(&nats, &["hb"]));
        let mut sub = RawClient::connect_clean(broker.addr(), common::Proto::V311, "hb-sub");
        assert_eq!(sub.subscribe(&[("before/hello", 1)]), [1], "alone: at once");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = rt
            .block_on(async_nats::connect(nats.urls.clone()))
            .expect("NATS");
        let answer = rt.block_on(async {
            let hello = client.request("shardmq.t.hello.hb", "ghost".into());
            tokio::time::timeout(Duration::from_secs(10), hello).await
        });
        assert!(
            matches!(answer, Ok(Ok(_))),
            "the hello answered: {answer:?}"
        );
        let asked = std::time::Instant::now();
        sub.send(&raw::subscribe(
            common::Proto::V311,
            7,
            &[("after/hello", 1)],
        ));
        // Within a third of the time a SUBACK waits at most for a silent node
        // (`relay/subacks.rs`, `INTEREST_ACK_LIMIT`, 3 s): what a healthy node's word takes, many times over.
        let early = sub.try_read_packet(Duration::from_millis(1000));
        assert!(
            matches!(early, Err(raw::ReadEnd::Timeout)),
            "the SUBACK waits for the node that said hello: {early:?}"
        );
        let key = shardmq::cluster::interest::key_of("hb", "after/hello");
        rt.block_on(async {
            client
                .publish("shardmq.t.seen.hb.ghost", key.into())
                .await
                .expect("seen");
            client.flush().await.expect("flush");
        });
        let suback = sub
            .try_read_packet(Duration::from_secs(10))
            .expect("SUBACK");
        assert_eq!(suback.first >> 4, kind::SUBACK);
        assert!(
            asked.elapsed() < Duration::from_millis(2900),
            "the node's word let the SUBACK go, not the time: {:?}",
            asked.elapsed()
        );
    });
}
