//! Failures in a cluster (issue 19):
//! - a node killed (SIGKILL) under QoS 1 load: every message it acknowledged reaches the subscriber
//!   on another node ("an acknowledged message is not lost when a node dies");
//! - a NATS server killed: routing goes on through the other two;
//! - all of NATS down: each node serves its own clients, and recovers by itself when NATS is back.
//!
//! Node n1 is the broker binary (so it can be killed), node n2 an embedded broker; both join the
//! NATS cluster of `tests/cluster/nats.sh`. A publisher on n1 sends QoS 1 messages with a window of
//! 16 in flight and records each PUBACK; n1 is killed at a random moment; the subscriber on n2 must
//! then get every acknowledged message (n1 answered PUBACK only once JetStream had the copy for n2).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::cluster::{node_config, Nats};
use common::persist::{self, crash_seed, fixed_port, send, Rng, Scratch};
use common::raw::{self, kind, Connect, RawClient, ReadEnd};
use common::Proto;

const WINDOW: usize = 16;

/// Publishes QoS 1 `load` messages numbered from 1 until the broker goes; returns those it
/// acknowledged.
fn publish_until_killed(mut c: RawClient, deadline: Instant) -> BTreeSet<u64> {
    let mut next = 1u64;
    let mut outstanding: HashMap<u16, u64> = HashMap::new();
    let mut acked = BTreeSet::new();
    'run: loop {
        while outstanding.len() < WINDOW {
            let pkid = (next % 65_535 + 1) as u16;
            let packet = raw::publish(
                Proto::V311,
                "load",
                1,
                false,
                false,
                pkid,
                next.to_string().as_bytes(),
            );
            if !send(&mut c, &packet) {
                break 'run;
            }
            outstanding.insert(pkid, next);
            next += 1;
        }
        match c.try_read_packet(Duration::from_millis(200)) {
            Ok(p) if p.kind() == kind::PUBACK => {
                let n = outstanding
                    .remove(&p.ack_pkid())
                    .expect("a PUBACK for a packet id in flight");
                acked.insert(n);
            }
            Ok(p) => panic!("unexpected {p:?}"),
            Err(ReadEnd::Closed) => break,
            Err(ReadEnd::Timeout) => assert!(Instant::now() < deadline, "n1 never died"),
        }
    }
    acked
}

#[test]
fn what_a_killed_node_acknowledged_reaches_the_other_node() {
    let Some(nats) = Nats::start() else { return };
    persist::bounded(
        "cluster node kill -9",
        Duration::from_secs(150),
        move || {
            let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
            let (mut sub, _) =
                RawClient::connect(n2.addr(), &Connect::new(Proto::V311, "cluster-kill-sub"));
            assert_eq!(sub.subscribe(&[("load", 1), ("ready", 0)]), [1, 0]);

            let mut rng = Rng(crash_seed());
            let port = fixed_port(&mut rng);
            let scratch = Scratch::new("cluster-kill");
            let config = scratch.config(port, 2, &node_config(&nats, "n1"));
            let mut n1 = persist::Broker::start(&config, port);

            // Interest crosses through the bucket: publish on n1 until the subscriber on n2 has one.
            common::cluster::probe_raw(n1.addr, &mut sub);

            // The subscriber reads (and acknowledges) all along, as a live client does: left unread,
            // its session would queue only `max_queued_messages` of them.
            let (got_tx, got_rx) = std::sync::mpsc::channel::<u64>();
            std::thread::spawn(move || loop {
                match sub.try_read_packet(Duration::from_millis(200)) {
                    Ok(p) if p.kind() == kind::PUBLISH => {
                        let m = p.publish(Proto::V311);
                        if m.qos == 1 {
                            sub.send(&raw::ack(kind::PUBACK, m.pkid));
                        }
                        if m.topic == "load" {
                            let n = String::from_utf8(m.payload).unwrap().parse().unwrap();
                            if got_tx.send(n).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(p) => panic!("unexpected {p:?}"),
                    Err(ReadEnd::Closed) => return,
                    Err(ReadEnd::Timeout) => {}
                }
            });

            let publisher = persist::publisher(n1.addr, Proto::V311);
            let deadline = Instant::now() + Duration::from_secs(60);
            let load = std::thread::spawn(move || publish_until_killed(publisher, deadline));
            std::thread::sleep(Duration::from_millis(rng.between(300, 1500)));
            n1.kill_9();
            let acked = load.join().expect("the publisher thread");
            assert!(
                !acked.is_empty(),
                "nothing was acknowledged before the kill"
            );

            // Every acknowledged message arrives (more may: sent to JetStream, not yet acknowledged).
            let mut got = BTreeSet::new();
            let last = *acked.iter().next_back().unwrap();
            let catch_up = Instant::now() + Duration::from_secs(30);
            while !acked.is_subset(&got) {
                if let Ok(n) = got_rx.recv_timeout(Duration::from_millis(200)) {
                    got.insert(n);
                }
                assert!(
                    Instant::now() < catch_up,
                    "{} of {} acknowledged messages (up to {last}) arrived; missing: {:?}",
                    acked.intersection(&got).count(),
                    acked.len(),
                    acked.difference(&got).take(20).collect::<Vec<_>>()
                );
            }
            eprintln!(
                "cluster kill: {} acknowledged before the kill, {} delivered at n2",
                acked.len(),
                got.len()
            );
        },
    );
}

/// Publishes `topic` from `publisher` until `subscriber` gets a message on it (interest crossing,
/// or NATS coming back); the copies still in flight are skipped by [`expect_skipping_probes`].
async fn probe(publisher: &mut Client, subscriber: &mut Client, topic: &str) {
    for _ in 0..600 {
        publisher.publish(topic, 0, false, "probe").await;
        while let Some(m) = subscriber.recv_within(Duration::from_millis(50)).await {
            assert_eq!(m.text(), "probe", "{m:?} before the probe");
            if m.topic == topic {
                return;
            }
        }
    }
    panic!("{topic} never crossed");
}

/// The next message on `c` that is not a probe, within `limit`.
async fn expect_skipping_probes(c: &mut Client, limit: Duration) -> (String, u8, String) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = c
            .recv_within(left)
            .await
            .unwrap_or_else(|| panic!("{}: nothing within {limit:?}", c.id));
        if m.text() != "probe" {
            return (m.topic.clone(), m.qos, m.text());
        }
    }
}

use common::client::Client;

/// Two nodes of 2 and 1 shards on `nats`, joined; a publisher and a subscriber on n1, a
/// subscriber on n2 whose interest has crossed to n1.
struct Pair {
    _n1: common::TestBroker,
    _n2: common::TestBroker,
    p1: Client,
    s1: Client,
    s2: Client,
}

async fn two_nodes(nats: &Nats, n1: common::TestBroker, n2: common::TestBroker) -> Pair {
    let case = |b: &common::TestBroker| common::Case {
        addr: b.addr(),
        shards: b.shards(),
        proto: Proto::V311,
    };
    let (c1, c2) = (case(&n1), case(&n2));
    common::cluster::joined(nats, &["n1", "n2"]).await;
    let mut p1 = Client::connect(&c1, "outage-pub").await;
    let mut s1 = Client::connect(&c1, "outage-sub-1").await;
    let mut s2 = Client::connect(&c2, "outage-sub-2").await;
    s1.subscribe("o/#", 1).await;
    s2.subscribe_many(&[("o/#", 1), ("probe", 0)]).await;
    probe(&mut p1, &mut s2, "probe").await;
    Pair {
        _n1: n1,
        _n2: n2,
        p1,
        s1,
        s2,
    }
}

/// How long a message may take while NATS recovers (a stream electing its leader again).
const SLOW: Duration = Duration::from_secs(30);

#[test]
fn routing_outlives_a_nats_server_killed() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout(
        "cluster NATS server kill",
        Duration::from_secs(120),
        move || {
            let n1 = common::TestBroker::start(2, &node_config(&nats, "n1"));
            let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
            common::block_on(async move {
                // `_n1` and `_n2` keep the brokers running to the end of the test.
                let Pair {
                    _n1,
                    _n2,
                    mut p1,
                    mut s1,
                    mut s2,
                } = two_nodes(&nats, n1, n2).await;
                // One NATS server killed: the links reconnect to the others, JetStream keeps a
                // quorum of its three replicas, QoS 1 messages still cross.
                common::cluster::nats_sh("kill", &nats.dir, &["1"]);
                for i in 0..3 {
                    let text = format!("after a server died {i}");
                    p1.publish_nowait("o/1", 1, false, text.clone()).await;
                    let want = ("o/1".to_owned(), 1, text);
                    assert_eq!(expect_skipping_probes(&mut s2, SLOW).await, want);
                    assert_eq!(expect_skipping_probes(&mut s1, SLOW).await, want);
                }
                p1.flush().await;
            });
        },
    );
}

#[test]
fn a_whole_nats_outage_degrades_to_local_and_recovers() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("cluster NATS outage", Duration::from_secs(180), move || {
        let n1 = common::TestBroker::start(2, &node_config(&nats, "n1"));
        let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
        common::block_on(async move {
            // `_n1` and `_n2` keep the brokers running to the end of the test.
            let Pair {
                _n1,
                _n2,
                mut p1,
                mut s1,
                mut s2,
            } = two_nodes(&nats, n1, n2).await;
            // All of NATS down: each node serves its own clients (PUBACK included), and what was
            // published for the other node meanwhile crosses once NATS is back.
            nats.stop_all();
            p1.publish("o/2", 1, false, "during the outage").await;
            let want = ("o/2".to_owned(), 1, "during the outage".to_owned());
            assert_eq!(expect_skipping_probes(&mut s1, SLOW).await, want, "local");
            nats.restart_all();
            assert_eq!(
                expect_skipping_probes(&mut s2, SLOW).await,
                want,
                "kept while NATS was away, sent when it came back"
            );
            // And new messages cross again.
            probe(&mut p1, &mut s2, "probe").await;
            p1.publish("o/3", 1, false, "after").await;
            assert_eq!(
                expect_skipping_probes(&mut s2, SLOW).await,
                ("o/3".to_owned(), 1, "after".to_owned())
            );
        });
    });
}
