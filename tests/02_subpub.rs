//! SUBSCRIBE / PUBLISH / UNSUBSCRIBE with real clients (rumqttc 0.24: v4 = MQTT 3.1.1 and v5).
//!
//! Rules checked (MQTT 3.1.1; 5.0 numbers where they differ):
//! - 4.3: QoS 0, 1 and 2 flows deliver the message (exactly once at QoS 2: [MQTT-4.3.3-2], the receiver
//!   MUST NOT cause duplicate onward delivery of a re-sent PUBLISH before PUBREL).
//! - [MQTT-3.8.4-6] (5.0: [MQTT-3.8.4-8]) The QoS of messages sent in response to a subscription MUST be
//!   the minimum of the published QoS and the granted QoS.
//! - [MQTT-3.3.5-1] (5.0: [MQTT-3.3.4-2]) With overlapping subscriptions the Server MUST deliver the
//!   message respecting the maximum QoS of all matching subscriptions. (The spec lets a server send
//!   extra copies; shardmq promises exactly one copy, at that maximum QoS. Mosquitto 2.0 does not: for
//!   3.1.1 it sends one copy at the QoS of whichever subscription it visits first, for 5.0 one copy per
//!   matching subscription, so this test is skipped against it.)
//! - 4.7.1: `#` matches the parent level too (`sport/#` matches `sport`); `+` matches exactly one level,
//!   including an empty one; topic names are case-sensitive.
//! - [MQTT-4.7.2-1] The Server MUST NOT match Topic Filters starting with a wildcard (`#` or `+`) with
//!   Topic Names beginning with `$`.
//! - [MQTT-4.6.0-6] Messages from one client reach each subscriber in the order they were published
//!   (same topic and QoS); shardmq's invariant 4 keeps publish order per publisher, which the
//!   `recv_until(marker)` idiom below relies on to prove absences without timed waits.
//! - DESIGN invariant 5: a message published by anyone after a subscriber received its SUBACK reaches
//!   it, across shards too: for exact, `+` and `#` filters, with the publisher connected before the
//!   SUBSCRIBE or only after the SUBACK, and after a subscribe / unsubscribe / subscribe sequence.
//! - Issue 17, a SUBSCRIBE takes effect when it is read: a PUBLISH sent on another connection right
//!   behind a SUBSCRIBE, before its SUBACK, reaches the new subscriber (once), and one acknowledged
//!   before the SUBSCRIBE was sent does not; 48 rounds varying the filter, the QoS, and where the
//!   topic already has subscribers (docs/ARCHITECTURE.md, "A SUBSCRIBE takes effect when it is read").
//! - Cross-shard delivery: with 4 shards, eight publisher/subscriber pairs with distinct client ids
//!   (so most pairs have different home shards) each get their own and a fan-out message.
//! - [MQTT-3.10.4-1] UNSUBSCRIBE deletes a subscription whose filter matches exactly (character by
//!   character); [MQTT-3.10.4-2] then the Server MUST stop adding new messages for it.
//!
//! Every test runs for 3.1.1 and 5.0, with 1 and 4 shards.

mod common;

use common::broker::external_mosquitto;
use common::client::{Client, Msg};
use common::raw::{self, kind, RawClient};
use common::{for_each_case, for_each_case_async, subscribe_then_publish_at_once, unique_id, BOTH};

#[test]
fn delivers_at_each_qos() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        for qos in 0..=2u8 {
            let topic = format!("qos/{qos}");
            assert_eq!(sub.subscribe(&topic, qos).await, qos, "granted QoS");
            publ.publish(&topic, qos, false, format!("payload at {qos}"))
                .await;
            let m = sub.recv().await;
            assert_eq!(
                m,
                Msg {
                    topic,
                    payload: format!("payload at {qos}").into_bytes(),
                    qos,
                    retain: false,
                    dup: false
                }
            );
        }
    });
}

#[test]
fn delivers_at_min_of_published_and_granted_qos() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        for sq in 0..=2u8 {
            assert_eq!(sub.subscribe(&format!("min/{sq}"), sq).await, sq);
        }
        for sq in 0..=2u8 {
            for pq in 0..=2u8 {
                publ.publish(&format!("min/{sq}"), pq, false, format!("{pq}"))
                    .await;
            }
        }
        // Ordering across QoS levels is not promised, so compare as a sorted list.
        let mut got: Vec<(String, String, u8)> = sub
            .recv_n(9)
            .await
            .into_iter()
            .map(|m| (m.topic.clone(), m.text(), m.qos))
            .collect();
        got.sort();
        let mut want = Vec::new();
        for sq in 0..=2u8 {
            for pq in 0..=2u8 {
                want.push((format!("min/{sq}"), format!("{pq}"), pq.min(sq)));
            }
        }
        assert_eq!(
            got, want,
            "(topic, published QoS, delivered QoS) [MQTT-3.8.4-6]"
        );
    });
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_max_qos() {
    if external_mosquitto() {
        // Deliberately stricter than Mosquitto 2.0, which (with its default allow_duplicate_messages)
        // delivers a 3.1.1 message once at the QoS of the first subscription found, possibly below the
        // maximum [MQTT-3.3.5-1], and a 5.0 message once per matching subscription.
        eprintln!("skipped against Mosquitto: shardmq promises one copy at the max QoS, Mosquitto does not");
        return;
    }
    for_each_case_async(BOTH, "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        // Three separate SUBSCRIBEs, so they are three subscriptions of one session.
        assert_eq!(sub.subscribe("ov/+", 0).await, 0);
        assert_eq!(sub.subscribe("ov/#", 1).await, 1);
        assert_eq!(sub.subscribe("ov/x", 2).await, 2);
        assert_eq!(sub.subscribe("ovm", 2).await, 2);
        for (topic, want_qos) in [("ov/x", 2u8), ("ov/y", 1), ("ov/x/z", 1)] {
            publ.publish(topic, 2, false, "m").await;
            // Marker after the message from the same publisher: any extra copy would arrive before it.
            publ.publish("ovm", 2, false, "marker").await;
            let got = sub.recv_until("ovm").await;
            assert_eq!(got.len(), 1, "{topic}: exactly one copy, got {got:?}");
            assert_eq!(
                got[0].qos, want_qos,
                "{topic}: max QoS of matching subscriptions [MQTT-3.3.5-1]"
            );
        }
    });
}

/// (filter, topics it matches, topics it must not match)
const WILDCARD_TABLE: &[(&str, &[&str], &[&str])] = &[
    (
        "sport/tennis/player1/#",
        &[
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ],
        &[
            "sport/tennis/player2",
            "sport/tennis/player10",
            "sport/tennis",
        ],
    ),
    (
        "sport/#",
        &["sport", "sport/tennis", "sport/"],
        &["sports", "other/sport"],
    ),
    ("a/#", &["a", "a/b", "a/b/c"], &["ab", "b/a", "/a"]),
    (
        "sport/tennis/+",
        &[
            "sport/tennis/player1",
            "sport/tennis/player2",
            "sport/tennis/",
        ],
        &[
            "sport/tennis/player1/ranking",
            "sport/tennis",
            "sport/golf/player1",
        ],
    ),
    ("sport/+", &["sport/"], &["sport", "sport/a/b"]),
    ("+/+", &["/finance", "a/b"], &["finance", "a/b/c"]),
    ("/+", &["/finance"], &["finance", "/a/b"]),
    ("+", &["finance"], &["/finance", "a/b", "$foo"]),
    (
        "+/tennis/#",
        &["sport/tennis", "sport/tennis/player1"],
        &["sport/golf", "tennis"],
    ),
    ("a/+/c", &["a/b/c", "a//c"], &["a/b/c/d", "a/c", "b/b/c"]),
    ("#", &["x", "x/y", "/x"], &["$foo/bar"]),
    ("+/bar", &["x/bar"], &["$foo/bar", "bar"]),
    (
        "ACCOUNTS",
        &["ACCOUNTS"],
        &["Accounts", "accounts", "ACCOUNTS/x"],
    ),
    ("with space/+", &["with space/a b"], &["with  space/a"]),
];

#[test]
fn wildcards_match_per_spec() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        for (filter, matching, not_matching) in WILDCARD_TABLE {
            let mut sub = Client::connect(&case, &unique_id("sub")).await;
            let marker = format!("marker/{}", unique_id("m"));
            assert_eq!(sub.subscribe(filter, 1).await, 1, "{filter}");
            assert_eq!(sub.subscribe(&marker, 1).await, 1);
            // Interleave non-matching and matching topics, then the marker.
            let mut expected = Vec::new();
            for i in 0..matching.len().max(not_matching.len()) {
                if let Some(t) = not_matching.get(i) {
                    publ.publish(t, 1, false, "no").await;
                }
                if let Some(t) = matching.get(i) {
                    publ.publish(t, 1, false, "yes").await;
                    expected.push(t.to_string());
                }
            }
            publ.publish(&marker, 1, false, "marker").await;
            let got: Vec<String> = sub
                .recv_until(&marker)
                .await
                .into_iter()
                .map(|m| m.topic)
                .collect();
            assert_eq!(got, expected, "filter {filter:?}");
            sub.disconnect().await;
        }
    });
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    for_each_case_async(BOTH, "sys_interval 1\n", |case| async move {
        let mut wild = Client::connect(&case, &unique_id("wild")).await;
        assert_eq!(wild.subscribe("#", 0).await, 0);
        assert_eq!(wild.subscribe("+/broker/uptime", 0).await, 0);
        let mut sys = Client::connect(&case, &unique_id("sys")).await;
        assert_eq!(sys.subscribe("$SYS/broker/uptime", 0).await, 0);
        // Two $SYS rounds reach the explicit subscriber (proves $SYS messages are flowing) ...
        for _ in 0..2 {
            let m = sys.recv().await;
            assert_eq!(m.topic, "$SYS/broker/uptime");
        }
        // ... and by then the wildcard subscriber would have had copies of them too. The marker closes the
        // observation window: it is published after the $SYS messages were delivered elsewhere.
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        publ.publish("m/x", 0, false, "marker").await;
        let got = wild.recv_until("m/x").await;
        assert!(
            got.iter().all(|m| !m.topic.starts_with('$')),
            "[MQTT-4.7.2-1]: {got:?}"
        );
    });
}

#[test]
fn per_publisher_order_is_kept_for_1000_qos1_messages() {
    for_each_case_async(BOTH, "", |case| async move {
        for round in 0..2 {
            // Fresh ids each round: with 4 shards, pairs land on different shard combinations.
            let mut sub = Client::connect(&case, &unique_id("osub")).await;
            let mut publ = Client::connect(&case, &unique_id("opub")).await;
            let topic = format!("order/{round}");
            assert_eq!(sub.subscribe(&topic, 1).await, 1);
            for i in 0..1000u32 {
                publ.publish_nowait(&topic, 1, false, i.to_string()).await;
            }
            publ.flush().await;
            let got: Vec<u32> = sub
                .recv_n(1000)
                .await
                .iter()
                .map(|m| m.text().parse().unwrap())
                .collect();
            let want: Vec<u32> = (0..1000).collect();
            assert_eq!(got, want, "messages out of order or lost [MQTT-4.6.0-6]");
        }
    });
}

#[test]
fn publishers_and_subscribers_on_different_shards() {
    for_each_case_async(BOTH, "", |case| async move {
        const PAIRS: usize = 8;
        let mut subs = Vec::new();
        let mut pubs = Vec::new();
        for i in 0..PAIRS {
            let mut s = Client::connect(&case, &unique_id(&format!("xs{i}"))).await;
            assert_eq!(
                s.subscribe_many(&[(&format!("pair/{i}"), 1), ("fan/all", 1)])
                    .await,
                vec![1, 1]
            );
            subs.push(s);
            pubs.push(Client::connect(&case, &unique_id(&format!("xp{i}"))).await);
        }
        for (i, p) in pubs.iter_mut().enumerate() {
            p.publish(&format!("pair/{i}"), 1, false, format!("to {i}"))
                .await;
        }
        pubs[0].publish("fan/all", 1, false, "to all").await;
        for (i, s) in subs.iter_mut().enumerate() {
            let mut got: Vec<(String, String)> = s
                .recv_n(2)
                .await
                .into_iter()
                .map(|m| (m.topic.clone(), m.text()))
                .collect();
            got.sort();
            assert_eq!(
                got,
                vec![
                    ("fan/all".to_string(), "to all".to_string()),
                    (format!("pair/{i}"), format!("to {i}"))
                ],
                "subscriber {i}"
            );
        }
    });
}

#[test]
fn subscribe_then_publish_immediately_is_never_lost() {
    for_each_case_async(BOTH, "", |case| async move {
        // Fresh client ids every round: with 4 shards most (subscriber, publisher) pairs have different
        // home shards, so the publish races the new subscription's way to the publisher's shard.
        for i in 0..48usize {
            let topic = format!("imm/{i}/t");
            // A new filter every round, so every SUBSCRIBE must reach the other shards: exact, `+`, `#`.
            let filter = match i % 3 {
                0 => topic.clone(),
                1 => format!("imm/{i}/+"),
                _ => format!("imm/{i}/#"),
            };
            let qos = (i & 1) as u8;
            // The publisher connects before the SUBSCRIBE, or only after the SUBACK.
            let early = i & 2 == 0;
            // Subscribe, unsubscribe, subscribe again: the removal must not overtake the re-subscription.
            let resubscribe = i & 4 != 0;

            let early_pub = if early {
                Some(Client::connect(&case, &unique_id("ip")).await)
            } else {
                None
            };
            let mut sub = Client::connect(&case, &unique_id("is")).await;
            if resubscribe {
                assert_eq!(sub.subscribe(&filter, qos).await, qos);
                sub.unsubscribe(&filter).await;
            }
            assert_eq!(sub.subscribe(&filter, qos).await, qos);
            // SUBACK received: from now on a publish by anyone must reach the subscriber (invariant 5).
            let mut publ = match early_pub {
                Some(p) => p,
                None => Client::connect(&case, &unique_id("ip")).await,
            };
            publ.publish(&topic, qos, false, format!("now {i}")).await;
            let m = sub.recv().await;
            assert_eq!(
                (m.topic.as_str(), m.text(), m.qos),
                (topic.as_str(), format!("now {i}"), qos),
                "round {i}: filter {filter}, QoS {qos}, publisher connected early: {early}, \
                 re-subscribed: {resubscribe}"
            );
        }
    });
}

#[test]
fn a_subscribe_sent_before_a_publish_gets_it_without_waiting_for_the_suback() {
    // Issue 17: a subscription takes effect from when its SUBSCRIBE reached the broker, for every
    // PUBLISH that reached it later, whichever shards read them and in whatever order (with 4 shards
    // most rounds put the two clients on different shards; the publisher's shard routes at once while
    // the subscriber's may still be waking up). paho.mqtt.testing's test_request_response does this.
    if external_mosquitto() {
        // Stricter than Mosquitto 2.0.11, which reads the publisher's connection on as it answers it
        // and so handles the PUBLISH first: it missed the message in 46 of 48 rounds here.
        eprintln!(
            "skipped against Mosquitto: it does not order a SUBSCRIBE before a later PUBLISH"
        );
        return;
    }
    for_each_case(BOTH, "", |case| {
        let mut wrong = Vec::new();
        for round in 0..48usize {
            let id = unique_id("rr");
            let topic = format!("rr/{id}/t");
            let filter = match round % 3 {
                0 => topic.clone(),
                1 => format!("rr/{id}/+"),
                _ => format!("rr/{id}/#"),
            };
            let qos = ((round / 3) & 1) as u8;
            // The publisher is itself subscribed (its shard routes the topic locally, as in paho's
            // test), and/or a watcher already subscribed to the topic (the subscriber's shard may
            // have interest in it already, so the PUBLISH can be delivered there before the
            // SUBSCRIBE is read).
            let publisher_subscribed = round & 8 != 0;
            let watched = round & 16 != 0;
            let mut watcher = watched.then(|| {
                let mut w = RawClient::connect_clean(case.addr, case.proto, &unique_id("rw"));
                w.subscribe(&[(&topic, 0)]);
                w
            });
            let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("rp"));
            if publisher_subscribed {
                p.subscribe(&[(&format!("rr/{id}/x"), 0)]);
            }
            let mut s = RawClient::connect_clean(case.addr, case.proto, &unique_id("rs"));
            // "before" is acknowledged before the SUBSCRIBE is sent: not for the new subscription;
            // "after" is sent right behind it, on the other connection.
            let got =
                subscribe_then_publish_at_once(case.proto, &mut s, &mut p, &filter, &topic, qos);
            if got != ["after"] {
                wrong.push((round, filter, qos, publisher_subscribed, watched, got));
            }
            if let Some(w) = watcher.as_mut() {
                // The watcher had it all along: before, after, marker, in order.
                for want in [&b"before"[..], b"after", b"marker"] {
                    assert_eq!(w.recv_publish().payload, want, "round {round}: watcher");
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "(round, filter, QoS, publisher subscribed, watched, what the subscriber got before \
             the marker), expected [\"after\"]: {wrong:?}"
        );
    });
}

#[test]
fn unsubscribe_stops_delivery() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        assert_eq!(sub.subscribe("un/a", 1).await, 1);
        assert_eq!(sub.subscribe("un/marker", 1).await, 1);

        publ.publish("un/a", 1, false, "before").await;
        assert_eq!(sub.recv().await.text(), "before");

        sub.unsubscribe("un/a").await;
        publ.publish("un/a", 1, false, "after unsubscribe").await;
        publ.publish("un/marker", 1, false, "marker").await;
        let got = sub.recv_until("un/marker").await;
        assert!(
            got.is_empty(),
            "delivered after UNSUBACK [MQTT-3.10.4-2]: {got:?}"
        );
    });
}

#[test]
fn unsubscribe_needs_an_exact_filter_match() {
    // Raw bytes: rumqttc v5 treats UNSUBACK reason 0x11 (No subscription existed) as a fatal error.
    for_each_case(BOTH, "", |case| {
        let mut sub = RawClient::connect_clean(case.addr, case.proto, &unique_id("sub"));
        assert_eq!(sub.subscribe(&[("un/a", 1)]), vec![1]);
        sub.send(&raw::unsubscribe(case.proto, 99, &["un/+"]));
        let ack = sub.expect(kind::UNSUBACK);
        let (pkid, reasons) = ack.suback(case.proto);
        assert_eq!(pkid, 99, "UNSUBACK packet id [MQTT-3.10.4-4]");
        if case.proto.is_v5() {
            // 0x11 "No subscription existed" is the precise answer; 0x00 is tolerated.
            assert!(
                reasons == [0x11] || reasons == [0x00],
                "5.0 UNSUBACK reason: {reasons:?}"
            );
        }
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        p.publish("un/a", 1, false, b"still subscribed");
        let m = sub.recv_publish();
        assert_eq!(
            m.payload, b"still subscribed",
            "un/+ must not remove un/a [MQTT-3.10.4-1]"
        );
    });
}

#[test]
fn qos2_resent_publish_before_pubrel_is_delivered_once() {
    for_each_case(BOTH, "", |case| {
        let mut sub = RawClient::connect_clean(case.addr, case.proto, &unique_id("sub"));
        // The subscriber takes QoS 1 so its side of the flow is one PUBACK per message; the inbound
        // QoS 2 exchange under test is the publisher's.
        assert_eq!(sub.subscribe(&[("q2/x", 1), ("q2/marker", 1)]), vec![1, 1]);
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        p.send(&raw::publish(
            case.proto, "q2/x", 2, false, false, 7, b"once",
        ));
        assert_eq!(p.expect(kind::PUBREC).ack_pkid(), 7);
        // The same packet again, as a client that lost the PUBREC would re-send it.
        p.send(&raw::publish(
            case.proto, "q2/x", 2, false, true, 7, b"once",
        ));
        assert_eq!(
            p.expect(kind::PUBREC).ack_pkid(),
            7,
            "re-sent PUBLISH is acknowledged again [MQTT-4.3.3-2]"
        );
        p.send(&raw::ack(kind::PUBREL, 7));
        assert_eq!(p.expect(kind::PUBCOMP).ack_pkid(), 7);
        p.publish("q2/marker", 2, false, b"marker");

        let mut got = Vec::new();
        loop {
            let m = sub.recv_publish();
            sub.send(&raw::ack(kind::PUBACK, m.pkid));
            if m.topic == "q2/marker" {
                break;
            }
            got.push(m);
        }
        assert_eq!(
            got.len(),
            1,
            "exactly one onward delivery [MQTT-4.3.3-2]: {got:?}"
        );
        assert_eq!(got[0].payload, b"once");
    });
}

#[test]
fn upgrade_outgoing_qos_delivers_at_the_subscription_qos() {
    // Mosquitto's non-standard `upgrade_outgoing_qos true`: a QoS 0 publish reaches a QoS 1 subscriber
    // at QoS 1 (with a packet id, to be acknowledged), live and retained alike.
    for_each_case(BOTH, "upgrade_outgoing_qos true\n", |case| {
        let topic = format!("up/{}", unique_id("t"));
        let mut publ = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        publ.publish(&topic, 0, true, b"retained at 0");
        // The publisher's shard has stored and passed on the retained message once it answers a ping
        // sent after it, so the SUBSCRIBE below cannot race the publish.
        publ.ping();
        let mut sub = RawClient::connect_clean(case.addr, case.proto, &unique_id("sub"));
        assert_eq!(sub.subscribe(&[(&topic, 1)]), vec![1]);
        let p = sub.recv_publish();
        assert_eq!(
            (p.qos, p.retain),
            (1, true),
            "retained copy at the subscription's QoS"
        );
        sub.send(&raw::ack(kind::PUBACK, p.pkid));
        publ.publish(&topic, 0, false, b"live at 0");
        let p = sub.recv_publish();
        assert_eq!((p.qos, p.payload.as_slice()), (1, &b"live at 0"[..]));
        sub.send(&raw::ack(kind::PUBACK, p.pkid));
    });
}

/// `mount_point` (Mosquitto's per-listener topic prefix): a client of a mounted listener publishes and
/// subscribes under the prefix without knowing it, its will included, and gets topics with the prefix
/// removed; it never sees topics outside the prefix; a client of a plain listener sees the full topics.
#[test]
fn a_mount_point_confines_its_listeners_clients_to_a_subtree() {
    if external_mosquitto() {
        // Debian's Mosquitto 2.0.11 sends mounted clients their topics with the mount point still on
        // (eclipse-mosquitto/mosquitto#2244, fixed in 2.0.12): what this test checks is 2.0.12's.
        return;
    }
    for shards in [1, 4] {
        let broker = common::broker::TestBroker::start(
            shards,
            "listener 1884 127.0.0.1\nmount_point site/a/\n",
        );
        let (plain_addr, mounted_addr) = (broker.addr(), broker.addrs()[1]);
        let proto = common::Proto::V311;
        let mut outside = RawClient::connect_clean(plain_addr, proto, &unique_id("outside"));
        assert_eq!(outside.subscribe(&[("site/#", 1)]), vec![1]);
        let mut inside = RawClient::connect_clean(mounted_addr, proto, &unique_id("inside"));
        assert_eq!(inside.subscribe(&[("#", 1)]), vec![1]);
        let mut connect = raw::Connect::new(proto, &unique_id("willer"));
        connect.will = Some(raw::Will {
            topic: "status".into(),
            payload: b"gone".to_vec(),
            qos: 1,
            retain: false,
            delay: None,
        });
        let (willer, _) = RawClient::connect(mounted_addr, &connect);

        // From inside: the outside sees the full topic, the inside its own view.
        inside.send(&raw::publish(proto, "t/1", 1, false, false, 1, b"in"));
        assert_eq!(outside.recv_publish().topic, "site/a/t/1");
        // Its own subscription's copy and the PUBACK, in either order.
        let mut own = None;
        for _ in 0..2 {
            let p = inside.read_packet();
            if p.kind() == kind::PUBLISH {
                own = Some(p.publish(proto).topic);
            } else {
                assert_eq!(p.kind(), kind::PUBACK);
            }
        }
        assert_eq!(own.as_deref(), Some("t/1"));
        // From outside: under the mount point it reaches the inside without the prefix; elsewhere not.
        let mut publisher = RawClient::connect_clean(plain_addr, proto, &unique_id("pub"));
        publisher.send(&raw::publish(
            proto,
            "elsewhere/x",
            1,
            false,
            false,
            2,
            b"no",
        ));
        publisher.expect(kind::PUBACK);
        publisher.send(&raw::publish(proto, "site/a/u", 1, false, false, 3, b"yes"));
        publisher.expect(kind::PUBACK);
        assert_eq!(outside.recv_publish().topic, "site/a/u");
        let m = inside.recv_publish();
        assert_eq!((m.topic.as_str(), &m.payload[..]), ("u", &b"yes"[..]));
        // The will goes out under the mount point too.
        drop(willer);
        assert_eq!(outside.recv_publish().topic, "site/a/status");
        assert_eq!(inside.recv_publish().topic, "status");
    }
}
