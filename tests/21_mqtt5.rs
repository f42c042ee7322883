//! MQTT 5.0 publish-path features, byte for byte with the raw client (issue 17):
//! - CONNACK: Topic Alias Maximum from the listener's `max_topic_alias` (default 10; 0: absent),
//!   subscription identifiers available (§3.2.2.3.8, §3.2.2.3.12).
//! - Inbound topic aliases (§3.3.2.3.4): a topic with an alias defines it, an empty topic uses it;
//!   alias 0 or above our maximum is DISCONNECT 0x94 [MQTT-3.3.2-8], [MQTT-3.3.2-9]; an empty topic
//!   with an alias never defined is a protocol error (0x82).
//! - Outbound topic aliases (shardmq only: Mosquitto 2.0 never sends aliases): under the client's
//!   Topic Alias Maximum, least recently used reassigned first, per connection [MQTT-3.3.2-7], with
//!   subscribers without aliases on the same message getting the plain frame.
//! - Subscription identifiers (§3.8.2.1.2, §3.3.4): one copy per client carrying the identifiers of
//!   every matching subscription [MQTT-3.3.4-3], [MQTT-3.3.4-4]; retained copies carry theirs; a
//!   subscription replaced without one has none; one in a client's PUBLISH is not forwarded.
//! - Message expiry (§3.3.2.3.3): a queued, in-flight or retained message carries its interval less
//!   the seconds it waited [MQTT-3.3.2-6] and is not sent once it passed [MQTT-3.3.2-5].
//! - Maximum Packet Size counts the per-copy properties (here the subscription identifier).
//!
//! Every case runs for 1 and 4 shards; those Mosquitto 2.0 implements also pass against it
//! (`SHARDMQ_TEST_BROKER=mosquitto`). Waiting for an interval to pass is a sleep by nature: it is
//! the thing under test, not a stand-in for an event, and is kept to about two seconds.

mod common;

use std::time::Duration;

use common::broker::external_mosquitto;
use common::raw::{self, kind, prop, Connect, Packet, PropValue, Props, RawClient};
use common::{for_each_case, unique_id, Proto, ABSENCE_WAIT};

const V5: &[Proto] = &[Proto::V5];

/// Every integer value of property `id`, in order.
fn ints(props: &[(u8, PropValue)], id: u8) -> Vec<u32> {
    props
        .iter()
        .filter(|(i, _)| *i == id)
        .map(|(_, v)| match v {
            PropValue::Int(n) => *n,
            other => panic!("property {id:#04x} is not an integer: {other:?}"),
        })
        .collect()
}

/// The next packet, a PUBLISH: its decoded form and its properties.
fn next_publish(c: &mut RawClient) -> (raw::Publish, Vec<(u8, PropValue)>) {
    let p: Packet = c.expect(kind::PUBLISH);
    (p.publish(Proto::V5), p.publish_props())
}

/// A v5 client whose SUBSCRIBE carries `props`; returns the SUBACK codes.
fn subscribe_with(c: &mut RawClient, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
    let pkid = c.pkid();
    c.send(&raw::subscribe_v5(pkid, props, filters));
    let (id, codes) = c.expect(kind::SUBACK).suback(Proto::V5);
    assert_eq!(id, pkid);
    codes
}

fn sub_id(n: usize) -> Props {
    Props::default().varint(prop::SUBSCRIPTION_IDENTIFIER, n)
}

/// Publishes a v5 QoS 1 message with `props` and waits for its PUBACK.
fn publish_props(c: &mut RawClient, topic: &str, retain: bool, props: &Props, payload: &[u8]) {
    let pkid = c.pkid();
    c.send(&raw::publish_v5(topic, 1, retain, pkid, props, payload));
    assert_eq!(c.expect(kind::PUBACK).ack_pkid(), pkid);
}

fn expiry(secs: u32) -> Props {
    Props::default().u32(prop::MESSAGE_EXPIRY_INTERVAL, secs)
}

#[test]
fn connack_advertises_topic_aliases_and_subscription_identifiers() {
    for (config, alias_max) in [
        ("", Some(10)),
        ("max_topic_alias 3\n", Some(3)),
        ("max_topic_alias 0\n", None),
    ] {
        for_each_case(V5, config, move |case| {
            let (_c, ack) =
                RawClient::connect(case.addr, &Connect::new(case.proto, &unique_id("ca")));
            assert_eq!(
                ack.prop(prop::TOPIC_ALIAS_MAXIMUM),
                alias_max.map(PropValue::Int).as_ref(),
                "Topic Alias Maximum with {config:?}"
            );
            // Absent means available (§3.2.2.3.12).
            assert!(
                matches!(
                    ack.prop(prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE),
                    None | Some(PropValue::Int(1))
                ),
                "{ack:?}"
            );
        });
    }
}

#[test]
fn inbound_topic_aliases_define_and_resolve_per_connection() {
    for_each_case(V5, "", |case| {
        let mut sub = RawClient::connect_clean(case.addr, case.proto, &unique_id("sub"));
        assert_eq!(sub.subscribe(&[("ia/#", 1)]), vec![1]);
        let pub_id = unique_id("pub");
        let mut p = RawClient::connect_clean(case.addr, case.proto, &pub_id);
        let alias = |n: u16| Props::default().u16(prop::TOPIC_ALIAS, n);
        publish_props(&mut p, "ia/one", false, &alias(1), b"1");
        publish_props(&mut p, "", false, &alias(1), b"2");
        publish_props(&mut p, "ia/two", false, &alias(1), b"3"); // redefined
        publish_props(&mut p, "ia/ten", false, &alias(10), b"4"); // the maximum
        publish_props(&mut p, "", false, &alias(1), b"5");
        publish_props(&mut p, "", false, &alias(10), b"6");
        let mut got = Vec::new();
        for _ in 0..6 {
            let (m, props) = next_publish(&mut sub);
            sub.send(&raw::ack(kind::PUBACK, m.pkid));
            // The subscriber allowed no aliases: it gets whole topics and no alias.
            assert!(ints(&props, prop::TOPIC_ALIAS).is_empty(), "{props:?}");
            got.push((m.topic, String::from_utf8(m.payload).unwrap()));
        }
        let want: Vec<(String, String)> = [
            ("ia/one", "1"),
            ("ia/one", "2"),
            ("ia/two", "3"),
            ("ia/ten", "4"),
            ("ia/two", "5"),
            ("ia/ten", "6"),
        ]
        .iter()
        .map(|(t, m)| (t.to_string(), m.to_string()))
        .collect();
        assert_eq!(got, want);

        // Aliases are the connection's: a new connection of the same client starts without them.
        drop(p);
        let mut p2 = RawClient::connect_clean(case.addr, case.proto, &pub_id);
        p2.send(&raw::publish_v5("", 1, false, 1, &alias(1), b"x"));
        let before = p2.expect_closed();
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(
            before[0].disconnect_reason(),
            0x82,
            "unknown alias: protocol error"
        );
    });
}

#[test]
fn inbound_topic_aliases_out_of_range_disconnect_with_0x94() {
    for (config, bad) in [
        ("", 11u16),
        ("", 0),
        ("max_topic_alias 3\n", 4),
        ("max_topic_alias 0\n", 1),
    ] {
        for_each_case(V5, config, move |case| {
            let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
            let props = Props::default().u16(prop::TOPIC_ALIAS, bad);
            p.send(&raw::publish_v5("ib/x", 1, false, 1, &props, b"x"));
            let before = p.expect_closed();
            assert_eq!(before.len(), 1, "alias {bad} with {config:?}: {before:?}");
            // §3.3.2.3.4 names 0x94 for alias 0 too; Mosquitto 2.0 calls that one malformed (0x81).
            let want = if bad == 0 && external_mosquitto() {
                0x81
            } else {
                0x94
            };
            assert_eq!(
                before[0].disconnect_reason(),
                want,
                "alias {bad} with {config:?}: Topic Alias Invalid"
            );
        });
    }
}

#[test]
fn outbound_topic_aliases_follow_the_clients_maximum_least_recently_used_first() {
    if external_mosquitto() {
        eprintln!("skipped against Mosquitto: it never assigns topic aliases to its clients");
        return;
    }
    for_each_case(V5, "", |case| {
        let aliased =
            || Connect::new(Proto::V5, &unique_id("oa")).prop_u16(prop::TOPIC_ALIAS_MAXIMUM, 2);
        let (mut a, _) = RawClient::connect(case.addr, &aliased());
        let (mut b, _) = RawClient::connect(case.addr, &aliased());
        let mut plain = RawClient::connect_clean(case.addr, case.proto, &unique_id("plain"));
        for c in [&mut a, &mut b, &mut plain] {
            assert_eq!(c.subscribe(&[("oa/#", 1)]), vec![1]);
        }
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        // A large payload too: it is shared by reference behind each connection's own header.
        let big = vec![b'B'; 5000];
        let sends: [(&str, &[u8]); 7] = [
            ("oa/a", b"1"),
            ("oa/b", b"2"),
            ("oa/a", &big),
            ("oa/c", b"4"),
            ("oa/b", b"5"),
            ("oa/a", b"6"),
            ("oa/a", b"7"),
        ];
        for (topic, payload) in sends {
            p.publish(topic, 1, false, payload);
        }
        // Under a maximum of 2, least recently used reassigned first:
        // a→1 b→2 a(1) c→2 (b oldest) b→1 (a oldest) a→2 (c oldest) a(2).
        let want = [
            ("oa/a", 1),
            ("oa/b", 2),
            ("", 1),
            ("oa/c", 2),
            ("oa/b", 1),
            ("oa/a", 2),
            ("", 2),
        ];
        for c in [&mut a, &mut b] {
            for (i, (topic, alias)) in want.iter().enumerate() {
                let (m, props) = next_publish(c);
                c.send(&raw::ack(kind::PUBACK, m.pkid));
                assert_eq!(
                    (m.topic.as_str(), ints(&props, prop::TOPIC_ALIAS)),
                    (*topic, vec![*alias]),
                    "copy {i}"
                );
                assert_eq!(m.payload, sends[i].1, "copy {i}");
            }
        }
        for (i, (topic, payload)) in sends.iter().enumerate() {
            let (m, props) = next_publish(&mut plain);
            plain.send(&raw::ack(kind::PUBACK, m.pkid));
            assert_eq!(
                (m.topic.as_str(), &m.payload[..]),
                (*topic, *payload),
                "copy {i}"
            );
            assert!(props.is_empty(), "{props:?}");
        }

        // A new connection starts a new table [MQTT-3.3.2-7].
        drop(a);
        let (mut a, _) = RawClient::connect(case.addr, &aliased());
        assert_eq!(a.subscribe(&[("oa/#", 0)]), vec![0]);
        p.publish("oa/b", 1, false, b"8");
        p.publish("oa/b", 1, false, b"9");
        let (m, props) = next_publish(&mut a);
        assert_eq!(
            (m.topic.as_str(), ints(&props, prop::TOPIC_ALIAS)),
            ("oa/b", vec![1])
        );
        let (m, props) = next_publish(&mut a);
        assert_eq!(
            (m.topic.as_str(), ints(&props, prop::TOPIC_ALIAS)),
            ("", vec![1])
        );
    });
}

#[test]
fn a_message_carries_the_identifiers_of_every_matching_subscription_once() {
    if external_mosquitto() {
        eprintln!("skipped against Mosquitto: it sends one copy per matching subscription");
        return;
    }
    for_each_case(V5, "", |case| {
        let mut s = RawClient::connect_clean(case.addr, case.proto, &unique_id("si"));
        assert_eq!(subscribe_with(&mut s, &sub_id(5), &[("si/+", 1)]), vec![1]);
        assert_eq!(
            subscribe_with(&mut s, &sub_id(268_435_455), &[("si/x", 1)]),
            vec![1]
        );
        assert_eq!(s.subscribe(&[("si/#", 0)]), vec![0]);
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        p.publish("si/x", 1, false, b"x");
        p.publish("si/y", 1, false, b"y");
        p.publish("si/z/deep", 1, false, b"z");
        let mut ids = Vec::new();
        for _ in 0..3 {
            let (m, props) = next_publish(&mut s);
            if m.qos > 0 {
                s.send(&raw::ack(kind::PUBACK, m.pkid));
            }
            let mut these = ints(&props, prop::SUBSCRIPTION_IDENTIFIER);
            these.sort_unstable();
            ids.push((m.topic, these));
        }
        assert_eq!(
            ids,
            vec![
                ("si/x".to_string(), vec![5, 268_435_455]),
                ("si/y".to_string(), vec![5]),
                ("si/z/deep".to_string(), vec![]),
            ],
            "one copy each, with every matching subscription's identifier"
        );
    });
}

#[test]
fn subscription_identifiers_go_with_live_and_retained_copies_until_replaced() {
    for_each_case(V5, "", |case| {
        let mut s = RawClient::connect_clean(case.addr, case.proto, &unique_id("si"));
        assert_eq!(subscribe_with(&mut s, &sub_id(5), &[("sj/+", 1)]), vec![1]);
        assert_eq!(
            subscribe_with(&mut s, &sub_id(268_435_455), &[("sj/a/b", 1)]),
            vec![1]
        );
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        p.publish("sj/x", 1, false, b"x");
        p.publish("sj/a/b", 1, false, b"y");
        for want in [("sj/x", 5), ("sj/a/b", 268_435_455)] {
            let (m, props) = next_publish(&mut s);
            s.send(&raw::ack(kind::PUBACK, m.pkid));
            let got = (
                m.topic.as_str(),
                ints(&props, prop::SUBSCRIPTION_IDENTIFIER),
            );
            assert_eq!(got, (want.0, vec![want.1]));
        }

        // A retained message on a new subscription carries that subscription's identifier.
        p.publish("sj/r/kept", 1, true, b"r");
        assert_eq!(
            subscribe_with(&mut s, &sub_id(9), &[("sj/r/+", 1)]),
            vec![1]
        );
        let (m, props) = next_publish(&mut s);
        s.send(&raw::ack(kind::PUBACK, m.pkid));
        assert!(m.retain);
        assert_eq!(ints(&props, prop::SUBSCRIPTION_IDENTIFIER), vec![9]);

        // Subscribing to the same filter again without an identifier replaces it: none any more.
        assert_eq!(s.subscribe(&[("sj/+", 1)]), vec![1]);
        p.publish("sj/y", 1, false, b"y2");
        let (m, props) = next_publish(&mut s);
        s.send(&raw::ack(kind::PUBACK, m.pkid));
        assert_eq!(m.topic, "sj/y");
        assert!(
            ints(&props, prop::SUBSCRIPTION_IDENTIFIER).is_empty(),
            "{props:?}"
        );
        p.publish("sj/r/kept", 1, true, b""); // clear it
    });
}

#[test]
fn message_expiry_is_decremented_while_waiting_and_expired_messages_are_not_sent() {
    for_each_case(V5, "", |case| {
        let session = |id: &str| {
            Connect::new(Proto::V5, id)
                .clean(false)
                .prop_u32(prop::SESSION_EXPIRY_INTERVAL, 300)
        };
        // Queued: a persistent session away while three messages come.
        let queued_id = unique_id("meq");
        let (mut q, _) = RawClient::connect(case.addr, &session(&queued_id));
        assert_eq!(q.subscribe(&[("meq/#", 1)]), vec![1]);
        drop(q);
        // In flight: received, not acknowledged, then the client goes away.
        let flight_id = unique_id("mef");
        let (mut f, _) = RawClient::connect(case.addr, &session(&flight_id));
        assert_eq!(f.subscribe(&[("mef/#", 1)]), vec![1]);
        // Live: delivered at once with the interval unchanged.
        let mut live = RawClient::connect_clean(case.addr, case.proto, &unique_id("mel"));
        assert_eq!(live.subscribe(&[("mef/#", 0)]), vec![0]);

        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        publish_props(&mut p, "meq/short", false, &expiry(1), b"gone");
        publish_props(&mut p, "meq/long", false, &expiry(60), b"kept");
        publish_props(&mut p, "meq/never", false, &Props::default(), b"plain");
        publish_props(&mut p, "mef/long", false, &expiry(60), b"resent");
        publish_props(&mut p, "mer/short", true, &expiry(1), b"gone");
        publish_props(&mut p, "mer/long", true, &expiry(60), b"kept");

        let (m, props) = next_publish(&mut live);
        assert_eq!(m.topic, "mef/long");
        let left = ints(&props, prop::MESSAGE_EXPIRY_INTERVAL);
        assert!(left == [60] || left == [59], "live copy: {props:?}");
        let (m, _) = next_publish(&mut f);
        assert_eq!((m.topic.as_str(), m.dup), ("mef/long", false));
        drop(f);

        // What is under test is time passing: the short intervals pass, the long ones shrink.
        std::thread::sleep(Duration::from_millis(2100));

        let (mut q, ack) = RawClient::connect(case.addr, &session(&queued_id));
        assert!(ack.session_present);
        let mut got = Vec::new();
        for _ in 0..2 {
            let (m, props) = next_publish(&mut q);
            q.send(&raw::ack(kind::PUBACK, m.pkid));
            got.push((m.topic, ints(&props, prop::MESSAGE_EXPIRY_INTERVAL)));
        }
        assert_eq!(got[0].0, "meq/long", "the expired one is not sent: {got:?}");
        assert!(
            (55..=58).contains(&got[0].1[0]),
            "decremented while queued: {got:?}"
        );
        assert_eq!(got[1], ("meq/never".to_string(), vec![]));

        let (mut f, ack) = RawClient::connect(case.addr, &session(&flight_id));
        assert!(ack.session_present);
        let (m, props) = next_publish(&mut f);
        f.send(&raw::ack(kind::PUBACK, m.pkid));
        assert_eq!((m.topic.as_str(), m.dup), ("mef/long", true));
        let left = ints(&props, prop::MESSAGE_EXPIRY_INTERVAL);
        assert!(
            (55..=58).contains(&left[0]),
            "decremented in flight: {props:?}"
        );

        let mut r = RawClient::connect_clean(case.addr, case.proto, &unique_id("mer"));
        assert_eq!(r.subscribe(&[("mer/#", 1)]), vec![1]);
        let (m, props) = next_publish(&mut r);
        r.send(&raw::ack(kind::PUBACK, m.pkid));
        assert_eq!(
            m.topic, "mer/long",
            "the expired retained message is not sent"
        );
        let left = ints(&props, prop::MESSAGE_EXPIRY_INTERVAL);
        assert!(
            (55..=58).contains(&left[0]),
            "decremented while retained: {props:?}"
        );
        // Nothing else is owed to any of them; no later event to wait for.
        q.expect_silence(ABSENCE_WAIT);
        r.expect_silence(ABSENCE_WAIT);
        p.publish("mer/long", 1, true, b"");
    });
}

#[test]
fn expired_messages_are_counted_in_sys() {
    if external_mosquitto() {
        eprintln!("skipped against Mosquitto: it has no $SYS counter of expired messages");
        return;
    }
    for_each_case(V5, "sys_interval 1\n", |case| {
        let id = unique_id("mes");
        let session = Connect::new(Proto::V5, &id)
            .clean(false)
            .prop_u32(prop::SESSION_EXPIRY_INTERVAL, 300);
        let (mut q, _) = RawClient::connect(case.addr, &session);
        assert_eq!(q.subscribe(&[("mes/#", 1)]), vec![1]);
        drop(q);
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        publish_props(&mut p, "mes/a", false, &expiry(1), b"a");
        std::thread::sleep(Duration::from_millis(1100));
        let (mut q, _) = RawClient::connect(case.addr, &session);
        let mut sys = RawClient::connect_clean(case.addr, case.proto, &unique_id("sys"));
        assert_eq!(
            sys.subscribe(&[("$SYS/broker/publish/messages/expired", 0)]),
            vec![0]
        );
        // Published every second: wait for the round that counts it.
        loop {
            let (m, _) = next_publish(&mut sys);
            let n: u64 = String::from_utf8(m.payload).unwrap().parse().unwrap();
            if n >= 1 {
                assert_eq!(n, 1);
                break;
            }
        }
        q.expect_silence(ABSENCE_WAIT);
    });
}

#[test]
fn the_maximum_packet_size_counts_the_subscription_identifiers() {
    if external_mosquitto() {
        // Observed with 2.0.11: the 31-byte copy goes out to a client that allows 30 (its
        // `packet__check_oversize` leaves the fixed header's first byte out of the size).
        eprintln!("skipped against Mosquitto: its size check is one byte short");
        return;
    }
    for_each_case(V5, "", |case| {
        let connect =
            Connect::new(case.proto, &unique_id("mps")).prop_u32(prop::MAXIMUM_PACKET_SIZE, 30);
        let (mut s, _) = RawClient::connect(case.addr, &connect);
        assert_eq!(
            subscribe_with(&mut s, &sub_id(100), &[("mp/+", 0)]),
            vec![0]
        );
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        // QoS 0: the 2-byte fixed header, 2 + 4 (topic), 1 (property length), the identifier (1 + 1
        // bytes), the payload. 19 bytes of payload: 30 in all, the largest this client takes.
        p.publish("mp/a", 0, false, &[b'x'; 19]);
        // 20 bytes: 31 with the identifier (29 without), too large for this client.
        p.publish("mp/b", 0, false, &[b'x'; 20]);
        p.publish("mp/c", 0, false, b"m");
        let (m, props) = next_publish(&mut s);
        assert_eq!(
            (
                m.topic.as_str(),
                ints(&props, prop::SUBSCRIPTION_IDENTIFIER)
            ),
            ("mp/a", vec![100])
        );
        let (m, _) = next_publish(&mut s);
        assert_eq!(
            m.topic, "mp/c",
            "a PUBLISH over the client's Maximum Packet Size is not sent"
        );
    });
}

#[test]
fn a_subscription_identifier_a_client_publishes_is_not_forwarded() {
    // [MQTT-3.3.4-6] forbids it in a client's PUBLISH; like Mosquitto, the broker drops it rather
    // than the connection, and the subscriber sees only its own subscription's identifier.
    for_each_case(V5, "", |case| {
        let mut s = RawClient::connect_clean(case.addr, case.proto, &unique_id("sub"));
        assert_eq!(subscribe_with(&mut s, &sub_id(3), &[("sx/#", 1)]), vec![1]);
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        publish_props(&mut p, "sx/a", false, &sub_id(77), b"x");
        let (m, props) = next_publish(&mut s);
        s.send(&raw::ack(kind::PUBACK, m.pkid));
        assert_eq!(m.topic, "sx/a");
        assert_eq!(ints(&props, prop::SUBSCRIPTION_IDENTIFIER), vec![3]);
    });
}

#[test]
fn a_payload_that_is_not_the_utf8_its_format_indicator_says_is_refused_with_0x99() {
    // 3.3.2.3.2: the broker may check the payload against a Payload Format Indicator of 1.
    if external_mosquitto() {
        // Mosquitto 2.0.11 does not check it.
        return;
    }
    for_each_case(V5, "", |case| {
        let utf8 = Props::default().byte(prop::PAYLOAD_FORMAT_INDICATOR, 1);
        let mut s = RawClient::connect_clean(case.addr, case.proto, &unique_id("sub"));
        assert_eq!(s.subscribe(&[("pf/#", 1)]), vec![1]);
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        p.send(&raw::publish_v5("pf/bad", 1, false, 5, &utf8, b"\xff\xfe"));
        let ack = p.expect(kind::PUBACK);
        assert_eq!((ack.ack_pkid(), ack.body.get(2).copied()), (5, Some(0x99)));
        publish_props(&mut p, "pf/good", false, &utf8, "caf\u{e9}".as_bytes());
        let (m, props) = next_publish(&mut s);
        s.send(&raw::ack(kind::PUBACK, m.pkid));
        assert_eq!(m.topic, "pf/good", "the refused message was not delivered");
        assert!(
            props
                .iter()
                .any(|(id, _)| *id == prop::PAYLOAD_FORMAT_INDICATOR),
            "the indicator is passed on: {props:?}"
        );
        // At QoS 0 there is no acknowledgement to refuse with: DISCONNECT 0x99.
        p.send(&raw::publish_v5("pf/bad", 0, false, 0, &utf8, b"\xc3"));
        let before = p.expect_closed();
        assert!(
            before
                .iter()
                .any(|x| x.kind() == kind::DISCONNECT && x.disconnect_reason() == 0x99),
            "{before:?}"
        );
    });
}
