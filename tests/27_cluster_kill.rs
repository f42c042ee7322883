//! A cluster node killed (SIGKILL) under QoS 1 load: every message it acknowledged reaches the
//! subscriber on another node (issue 19: "an acknowledged message is not lost when a node dies").
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
            let mut probe = persist::publisher(n1.addr, Proto::V311);
            let mut crossed = false;
            for _ in 0..300 {
                probe.publish("ready", 0, false, b"probe");
                if let Ok(p) = sub.try_read_packet(Duration::from_millis(50)) {
                    assert_eq!(p.publish(Proto::V311).topic, "ready");
                    crossed = true;
                    break;
                }
            }
            assert!(crossed, "n2's interest never reached n1");

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
