//! Retained messages.
//!
//! Rules checked (MQTT 3.1.1; 5.0 numbers where they differ):
//! - [MQTT-3.3.1-5] A PUBLISH with RETAIN 1 MUST be stored (with its QoS) and replace any message
//!   retained on that topic, so it can be delivered to future subscribers.
//! - [MQTT-3.3.1-6] (5.0: [MQTT-3.3.1-9], Retain Handling 0) When a new subscription is established,
//!   the last retained message on each matching topic MUST be sent to the subscriber.
//! - [MQTT-3.3.1-7] A retained QoS 0 message also replaces the one previously retained on the topic.
//! - [MQTT-3.3.1-8] A message sent because of a new subscription MUST have RETAIN 1.
//! - [MQTT-3.3.1-9] (5.0: [MQTT-3.3.1-12], Retain As Published 0) A message sent because it matches an
//!   established subscription MUST have RETAIN 0, however it was published.
//! - [MQTT-3.3.1-10] (5.0: [MQTT-3.3.1-6]) A retained PUBLISH with a zero-byte payload is delivered as
//!   normal and removes the retained message; [MQTT-3.3.1-11] (5.0: [MQTT-3.3.1-7]) it is not stored.
//! - [MQTT-3.3.1-12] (5.0: [MQTT-3.3.1-8]) A PUBLISH with RETAIN 0 MUST NOT store, remove or replace the
//!   retained message.
//! - [MQTT-3.8.4-3] A SUBSCRIBE that replaces an existing subscription re-sends matching retained
//!   messages.
//! - `retain_available false` (Mosquitto option): 5.0 CONNACK says Retain Available 0 (3.2.2.3.5) and a
//!   retained PUBLISH is answered with DISCONNECT 0x9A Retain not supported (3.3.1.3); Mosquitto closes
//!   3.x clients too. Other clients are not disturbed.
//! - shardmq: the retained store is split across shards; a wildcard subscription gets the matching
//!   retained messages of every shard.
//!
//! Every test runs for 3.1.1 and 5.0, with 1 and 4 shards.

mod common;

use common::broker::external_mosquitto;
use common::client::Client;
use common::raw::{self, kind, prop, Connect, PropValue, RawClient, Witness};
use common::{for_each_case, for_each_case_async, unique_id, ABSENCE_WAIT, BOTH};

#[test]
fn retained_message_is_sent_on_subscribe_with_retain_set() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        for qos in 0..=2u8 {
            publ.publish(&format!("ret/q{qos}"), qos, true, format!("kept at {qos}"))
                .await;
        }
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        for qos in 0..=2u8 {
            assert_eq!(sub.subscribe(&format!("ret/q{qos}"), 2).await, 2);
            let m = sub.recv().await;
            assert_eq!(m.topic, format!("ret/q{qos}"));
            assert_eq!(
                m.text(),
                format!("kept at {qos}"),
                "[MQTT-3.3.1-5] [MQTT-3.3.1-6]"
            );
            assert!(
                m.retain,
                "sent because of a new subscription => RETAIN 1 [MQTT-3.3.1-8]"
            );
            assert_eq!(m.qos, qos, "stored QoS, capped by the granted QoS");
        }
    });
}

#[test]
fn live_delivery_has_retain_clear() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("live/+", 1).await, 1);
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        publ.publish("live/a", 1, true, "retained and live").await;
        let m = sub.recv().await;
        assert_eq!(m.text(), "retained and live");
        assert!(
            !m.retain,
            "established subscription => RETAIN 0 [MQTT-3.3.1-9]"
        );
    });
}

#[test]
fn retained_message_is_replaced() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        publ.publish("rep/t", 1, true, "v1").await;
        publ.publish("rep/t", 0, true, "v2 at qos 0").await; // QoS 0 replaces too [MQTT-3.3.1-7]
        publ.publish("rep/t", 1, false, "not retained").await; // must not replace [MQTT-3.3.1-12]
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("rep/t", 1).await, 1);
        let m = sub.recv().await;
        assert_eq!(
            (m.text().as_str(), m.qos, m.retain),
            ("v2 at qos 0", 0, true)
        );
        // Retained messages come from the store, not from a publisher, so no marker can follow them in
        // order: watch briefly for a stale second copy.
        sub.expect_no_message(ABSENCE_WAIT).await;
    });
}

#[test]
fn resubscribing_resends_retained() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        publ.publish("again/t", 1, true, "r").await;
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        for round in 0..2 {
            assert_eq!(sub.subscribe("again/#", 1).await, 1);
            let m = sub.recv().await;
            assert_eq!(
                (m.topic.as_str(), m.text().as_str(), m.retain),
                ("again/t", "r", true),
                "round {round} [MQTT-3.8.4-3]"
            );
        }
    });
}

#[test]
fn empty_retained_payload_clears_the_topic() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut live = Client::connect(&case, &unique_id("live")).await;
        assert_eq!(live.subscribe("clr/+", 1).await, 1);
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        publ.publish("clr/keep", 1, true, "keep me").await;
        publ.publish("clr/gone", 1, true, "delete me").await;
        publ.publish("clr/gone", 1, true, Vec::new()).await;

        // The empty message is delivered to live subscribers as normal [MQTT-3.3.1-10].
        let got: Vec<(String, String)> = live
            .recv_n(3)
            .await
            .into_iter()
            .map(|m| (m.topic.clone(), m.text()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("clr/keep".into(), "keep me".into()),
                ("clr/gone".into(), "delete me".into()),
                ("clr/gone".into(), "".into())
            ]
        );

        // A new subscriber gets clr/keep only: clr/gone is neither the old message nor the empty one.
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("clr/+", 1).await, 1);
        let m = sub.recv().await;
        assert_eq!(
            (m.topic.as_str(), m.text().as_str(), m.retain),
            ("clr/keep", "keep me", true)
        );
        // Retained deliveries have no publisher order to put a marker behind: bounded watch.
        sub.expect_no_message(ABSENCE_WAIT).await;
    });
}

#[test]
fn wildcard_subscription_gets_retained_messages_from_every_shard() {
    for_each_case_async(BOTH, "", |case| async move {
        const N: usize = 24;
        // One publisher per topic: with 4 shards their homes, and so the retained entries, spread out.
        for i in 0..N {
            let mut p = Client::connect(&case, &unique_id(&format!("rp{i}"))).await;
            p.publish(&format!("all/{i}"), 1, true, format!("r{i}"))
                .await;
            p.disconnect().await;
        }
        for filter in ["all/#", "all/+", "+/+"] {
            let mut sub = Client::connect(&case, &unique_id("sub")).await;
            assert_eq!(sub.subscribe(filter, 1).await, 1);
            let mut got: Vec<(String, String, bool)> = sub
                .recv_n(N)
                .await
                .into_iter()
                .map(|m| (m.topic.clone(), m.text(), m.retain))
                .collect();
            got.sort();
            let mut want: Vec<(String, String, bool)> = (0..N)
                .map(|i| (format!("all/{i}"), format!("r{i}"), true))
                .collect();
            want.sort();
            assert_eq!(got, want, "filter {filter}");
            // No duplicates or strays after the N expected ones (bounded watch: retained messages have no
            // publisher order to put a marker behind).
            sub.expect_no_message(ABSENCE_WAIT).await;
        }
    });
}

#[test]
fn retain_available_false_refuses_retained_publishes() {
    for_each_case(BOTH, "retain_available false\n", |case| {
        let mut w = Witness::new(case.addr, case.proto);
        let (mut c, ack) =
            RawClient::connect(case.addr, &Connect::new(case.proto, &unique_id("nr")));
        if case.proto.is_v5() {
            assert_eq!(
                ack.prop(prop::RETAIN_AVAILABLE),
                Some(&PropValue::Int(0)),
                "CONNACK Retain Available 0"
            );
        }
        // Non-retained publishing still works on this connection.
        c.publish("nr/t", 1, false, b"plain");
        c.send_lenient(&raw::publish(
            case.proto,
            "nr/t",
            1,
            true,
            false,
            77,
            b"retained",
        ));
        let before = c.expect_closed();
        if case.proto.is_v5() {
            assert!(
                before
                    .iter()
                    .all(|p| p.kind() == kind::DISCONNECT && p.disconnect_reason() == 0x9A),
                "only DISCONNECT 0x9A may precede the close: {before:?}"
            );
        } else {
            assert!(before.is_empty(), "{before:?}");
        }
        w.check();
    });
}

/// A retained message published while a SUBSCRIBE to its topic is in flight (read by the broker, its
/// SUBACK not sent yet: with 4 shards the SUBACK waits for the other shards to learn the new
/// interest) reaches the subscriber once: live or as the retained copy after the SUBACK, never both.
/// Randomized by the race itself: each round, a publisher on another connection (most often another
/// shard) publishes the retained message right after the SUBSCRIBE is written, without waiting for
/// anything.
#[test]
fn a_retained_message_published_while_the_subscribe_is_pending_arrives_once() {
    for_each_case(BOTH, "", |case| {
        let mut twice = Vec::new();
        for round in 0..40 {
            let topic = format!("pend/{}/t", unique_id("r"));
            let mut s = RawClient::connect_clean(case.addr, case.proto, &unique_id("s"));
            let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("p"));
            s.send(&raw::subscribe(case.proto, 1, &[(&topic, 1)]));
            p.send(&raw::publish(
                case.proto, &topic, 1, true, false, 1, b"kept",
            ));
            assert_eq!(p.expect(kind::PUBACK).ack_pkid(), 1);
            let mut copies = 0;
            let mut flags = Vec::new();
            let mut saw_suback = false;
            let mut read_until = |s: &mut RawClient, stop: &dyn Fn(&raw::Packet) -> bool| loop {
                let pk = s.read_packet();
                if pk.kind() == kind::PUBLISH {
                    let m = pk.publish(case.proto);
                    s.send(&raw::ack(kind::PUBACK, m.pkid));
                    if m.payload == b"kept" {
                        copies += 1;
                        flags.push((m.retain, m.dup, saw_suback));
                    }
                }
                if pk.kind() == kind::SUBACK {
                    saw_suback = true;
                }
                if stop(&pk) {
                    break;
                }
            };
            read_until(&mut s, &|pk| pk.kind() == kind::SUBACK);
            // The retained copies follow the SUBACK at once; a marker published now comes after them.
            p.publish(&topic, 1, false, b"marker");
            read_until(&mut s, &|pk| {
                pk.kind() == kind::PUBLISH && pk.publish(case.proto).payload == b"marker"
            });
            if copies != 1 {
                twice.push((round, copies, flags));
            }
        }
        assert!(twice.is_empty(), "(round, copies) not once: {twice:?}");
    });
}

/// More retained copies than a connection's outbox holds (5,000 x 1 KiB: past its 4 MiB soft limit,
/// where live QoS 0 messages to a client that does not keep up are dropped) all reach a subscriber
/// to `#`-style filters, each once, with RETAIN 1 [MQTT-3.3.1-6]. They are fed to the outbox as it
/// drains (`shard/feeds.rs`); written at once, 92% of a 50,000 x 1 KiB storm was lost.
#[test]
fn a_retained_set_larger_than_the_outbox_reaches_a_new_subscriber_whole() {
    for_each_case_async(BOTH, "", |case| async move {
        const N: usize = 5_000;
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        let body = |i: usize| {
            let mut b = format!("{i:08}").into_bytes();
            b.resize(1024, b'.');
            b
        };
        for i in 0..N {
            publ.publish_nowait(&format!("big/{i}"), 0, true, body(i))
                .await;
        }
        // A QoS 1 retained message on the last topic: once it is acknowledged, the QoS 0 ones
        // before it on this connection are stored too (per-publisher order).
        publ.publish("big/last", 1, true, body(N)).await;
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("big/#", 0).await, 0);
        let mut seen = std::collections::HashSet::new();
        for m in sub.recv_n(N + 1).await {
            assert!(m.retain, "{}: RETAIN 1 [MQTT-3.3.1-8]", m.topic);
            let i = match m.topic.strip_prefix("big/") {
                Some("last") => N,
                Some(i) => i.parse().expect("a topic published here"),
                None => panic!("stray topic {}", m.topic),
            };
            assert_eq!(m.payload, body(i), "{}", m.topic);
            assert!(seen.insert(i), "{} twice", m.topic);
        }
        assert_eq!(seen.len(), N + 1);
    });
}

/// QoS 1 retained copies beyond the session's queue limit (`max_queued_messages 10`) are not
/// dropped: they wait until the client's acknowledgements make room. (Mosquitto queues them with
/// the limit and drops the rest.)
#[test]
fn qos1_retained_copies_beyond_the_queue_limit_all_arrive() {
    if external_mosquitto() {
        eprintln!("skipped against Mosquitto: it drops retained copies beyond max_queued_messages");
        return;
    }
    let config = "max_queued_messages 10\nmax_inflight_messages 2\n";
    for_each_case_async(BOTH, config, |case| async move {
        const N: usize = 200;
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        for i in 0..N {
            publ.publish_nowait(&format!("deep/{i}"), 1, true, format!("d{i}"))
                .await;
        }
        publ.flush().await;
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("deep/+", 1).await, 1);
        let mut got: Vec<String> = sub
            .recv_n(N)
            .await
            .into_iter()
            .map(|m| {
                assert!(m.retain && m.qos == 1, "{m:?}");
                m.text()
            })
            .collect();
        got.sort();
        let mut want: Vec<String> = (0..N).map(|i| format!("d{i}")).collect();
        want.sort();
        assert_eq!(got, want);
    });
}

/// A retained message delivered live while the retained copy of its topic still waits for the
/// subscriber's queue to drain makes that copy stale: it is not sent after the live one (the client
/// would go back to the old value). The subscriber holds its acknowledgements (one QoS 1 message in
/// flight, a queue of 10), so the copy of `late/t`, behind 50 QoS 1 copies, waits; its live update
/// comes at QoS 0, which does not queue, so its arrival proves the broker handled it.
#[test]
fn a_live_retained_update_makes_the_waiting_copy_of_its_topic_stale() {
    if external_mosquitto() {
        eprintln!("skipped against Mosquitto: it queues every retained copy at the SUBACK");
        return;
    }
    let config = "max_queued_messages 10\nmax_inflight_messages 1\n";
    for_each_case(BOTH, config, |case| {
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("p"));
        for i in 0..50 {
            p.publish(&format!("st/{i}"), 1, true, b"old");
        }
        p.publish("late/t", 1, true, b"v1");
        p.publish("tail/t", 1, true, b"tail");
        let mut s = RawClient::connect_clean(case.addr, case.proto, &unique_id("s"));
        let codes = s.subscribe(&[("st/#", 1), ("late/t", 0), ("tail/t", 1)]);
        assert_eq!(codes, vec![1, 0, 1]);
        p.publish("late/t", 1, true, b"v2");
        // Read without acknowledging until the live update arrives.
        let mut owed = Vec::new();
        let mut late = Vec::new();
        loop {
            let m = s.read_packet().publish(case.proto);
            if m.topic == "late/t" {
                late.push((m.payload.clone(), m.retain));
                break;
            }
            owed.push(m.pkid);
        }
        assert_eq!(late, vec![(b"v2".to_vec(), false)], "the live update first");
        let mut copies = owed.len();
        for pkid in owed {
            s.send(&raw::ack(kind::PUBACK, pkid));
        }
        loop {
            let m = s.read_packet().publish(case.proto);
            if m.qos > 0 {
                s.send(&raw::ack(kind::PUBACK, m.pkid));
            }
            match m.topic.as_str() {
                "late/t" => late.push((m.payload.clone(), m.retain)),
                "tail/t" => break,
                _ => copies += 1,
            }
        }
        assert_eq!(copies, 50, "every st/ copy, before tail/t's");
        assert_eq!(
            late,
            vec![(b"v2".to_vec(), false)],
            "no stale copy of late/t after its live update"
        );
    });
}
