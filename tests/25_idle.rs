//! Idle connections: after about a second without traffic a connection gives up its serving task
//! and waits parked (`src/shard/parking.rs`, memory per idle client). Nothing a client can see may
//! change: each test waits until the broker reports its clients parked
//! (`$SYS/broker/clients/parked`, shardmq's own counter) and then checks that what wakes a
//! connection still works on it.
//!
//! - A parked subscriber gets its messages (QoS 1, acknowledged), a parked publisher's PUBLISH is
//!   read and acknowledged, PINGREQ is answered; both park again afterwards and still work.
//! - A parked client that goes silent is closed at keep-alive expiry (v5: DISCONNECT 0x8D) and its
//!   will is published [MQTT-3.1.2-24], [MQTT-3.1.2-8].
//! - A parked client whose socket drops has its will published.
//! - A parked client taken over by a new connection with its client id is closed (v5: 0x8E) and the
//!   session (subscription, queued QoS 1 message) moves to the new connection.
//! - A parked v5 client gets DISCONNECT 0x8B when the broker shuts down.
//! - A packet split across the park (its first bytes before, the rest after) is decoded whole.
//!
//! Every test runs for 3.1.1 and 5.0 with 1 and 4 shards; none runs against Mosquitto, which has no
//! parked counter.

mod common;

use common::broker::{external_mosquitto, TestBroker};
use common::raw::{self, kind, Connect, RawClient, ReadEnd};
use common::{
    for_each_case, shard_counts, unique_id, wait_parked, with_timeout, Case, Proto, BOTH,
    CASE_TIMEOUT,
};
use std::net::Shutdown;
use std::time::{Duration, Instant};

const SYS: &str = "sys_interval 1\n";

fn skip_on_mosquitto() -> bool {
    if external_mosquitto() {
        eprintln!("skipped against Mosquitto: it has no $SYS/broker/clients/parked");
    }
    external_mosquitto()
}

/// Run `body` for every case (3.1.1 and 5.0, each shard count) on a broker with `sys_interval 1`.
fn each_case(body: impl Fn(Case) + Send + Sync + 'static) {
    if skip_on_mosquitto() {
        return;
    }
    for_each_case(BOTH, SYS, body);
}

/// A subscriber to a topic of its own under `idle/{area}/`, at `qos`.
fn subscriber(case: &Case, area: &str, qos: u8) -> (RawClient, String) {
    let topic = format!("idle/{area}/{}", unique_id("t"));
    let mut sub = RawClient::connect_clean(case.addr, case.proto, &unique_id("sub"));
    assert_eq!(sub.subscribe(&[(&topic, qos)]), vec![qos]);
    (sub, topic)
}

#[test]
fn parked_clients_receive_publish_and_ping_and_park_again() {
    each_case(|case| {
        let (mut sub, topic) = subscriber(&case, "plain", 1);
        let mut publ = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        for round in 0..2 {
            wait_parked(case.addr, 2);
            let payload = format!("round {round}");
            publ.publish(&topic, 1, false, payload.as_bytes());
            let m = sub.recv_publish();
            assert_eq!(
                (m.topic.as_str(), m.payload.as_slice(), m.qos),
                (topic.as_str(), payload.as_bytes(), 1)
            );
            sub.send(&raw::ack(kind::PUBACK, m.pkid));
            sub.ping();
            publ.ping();
        }
    });
}

#[test]
fn a_parked_client_gone_silent_is_closed_at_keepalive_expiry_with_its_will() {
    each_case(|case| {
        let (mut sub, topic) = subscriber(&case, "will", 1);
        let (mut silent, _) = RawClient::connect(
            case.addr,
            &Connect::new(case.proto, &unique_id("quiet"))
                .keepalive(3)
                .will(&topic, b"expired", 1, false),
        );
        wait_parked(case.addr, 2);
        let since = Instant::now();
        let before = silent.expect_closed_within(Duration::from_secs(10));
        if case.proto.is_v5() {
            assert_eq!(
                before.len(),
                1,
                "one DISCONNECT before the close: {before:?}"
            );
            assert_eq!(before[0].disconnect_reason(), 0x8D, "Keep Alive timeout");
        } else {
            assert!(
                before.is_empty(),
                "3.1.1: closed without a word, got {before:?}"
            );
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "closed by the keep-alive"
        );
        let m = sub.recv_publish();
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            (topic.as_str(), &b"expired"[..])
        );
    });
}

#[test]
fn a_parked_client_whose_socket_drops_has_its_will_published() {
    each_case(|case| {
        let (mut sub, topic) = subscriber(&case, "drop", 0);
        let (dropped, _) = RawClient::connect(
            case.addr,
            &Connect::new(case.proto, &unique_id("drop")).will(&topic, b"dropped", 0, false),
        );
        wait_parked(case.addr, 2);
        dropped.stream.shutdown(Shutdown::Both).unwrap();
        drop(dropped);
        let m = sub.recv_publish();
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            (topic.as_str(), &b"dropped"[..])
        );
    });
}

#[test]
fn a_parked_client_taken_over_hands_its_session_to_the_new_connection() {
    each_case(|case| {
        let id = unique_id("taken");
        let topic = format!("idle/takeover/{id}");
        let (mut old, ack) =
            RawClient::connect(case.addr, &Connect::new(case.proto, &id).persistent());
        assert!(!ack.session_present);
        assert_eq!(old.subscribe(&[(&topic, 1)]), vec![1]);
        let mut publ = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        wait_parked(case.addr, 2);
        let (mut new, ack) =
            RawClient::connect(case.addr, &Connect::new(case.proto, &id).persistent());
        assert!(ack.session_present, "the parked client's session moved");
        let before = old.expect_closed();
        if case.proto.is_v5() {
            assert_eq!(
                before.len(),
                1,
                "one DISCONNECT before the close: {before:?}"
            );
            assert_eq!(before[0].disconnect_reason(), 0x8E, "Session taken over");
        }
        publ.publish(&topic, 1, false, b"to the new one");
        let m = new.recv_publish();
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            (topic.as_str(), &b"to the new one"[..])
        );
        new.send(&raw::ack(kind::PUBACK, m.pkid));
        new.ping();
    });
}

#[test]
fn a_packet_split_across_the_park_is_decoded_whole() {
    each_case(|case| {
        let (mut sub, topic) = subscriber(&case, "split", 0);
        let mut publ = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        let packet = raw::publish(case.proto, &topic, 0, false, false, 0, b"in two parts");
        let (first, rest) = packet.split_at(packet.len() / 2);
        publ.send(first);
        // A connection with undecoded bytes does not park: only the subscriber does until the rest
        // comes. Then both must be served as before.
        wait_parked(case.addr, 1);
        publ.send(rest);
        let m = sub.recv_publish();
        assert_eq!(m.payload, b"in two parts");
        publ.ping();
    });
}

#[test]
fn parked_v5_clients_are_told_the_server_is_shutting_down() {
    if skip_on_mosquitto() {
        return;
    }
    for &shards in shard_counts() {
        with_timeout("parked shutdown", CASE_TIMEOUT, move || {
            let broker = TestBroker::start(shards, SYS);
            let addr = broker.addr();
            let mut v5 = RawClient::connect_clean(addr, Proto::V5, &unique_id("v5"));
            let mut v311 = RawClient::connect_clean(addr, Proto::V311, &unique_id("v311"));
            wait_parked(addr, 2);
            let stopper = std::thread::spawn(move || drop(broker));
            let before = v5.expect_closed();
            assert_eq!(
                before.len(),
                1,
                "one DISCONNECT before the close: {before:?}"
            );
            assert_eq!(before[0].disconnect_reason(), 0x8B, "Server shutting down");
            assert_eq!(
                v311.try_read_packet(Duration::from_secs(5)).err(),
                Some(ReadEnd::Closed)
            );
            stopper.join().expect("broker stopped");
        });
    }
}
