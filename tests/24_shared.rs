//! Shared subscriptions (`$share/{group}/{filter}`), MQTT 5.0 section 4.8.2, for 3.1.1 and 5.0
//! clients (Mosquitto offers them to both), with 1 and 4 shards (members and publishers spread over
//! shards).
//!
//! Rules checked:
//! - Each message matching a group goes to exactly one of its members; every group gets its copy,
//!   and ordinary subscriptions to the same topics get theirs.
//! - Round robin (the default) with one publisher gives each member its turn; `hash` keeps one
//!   publisher's messages on one member, in order.
//! - No retained messages are sent for a shared subscription when it is made.
//! - An UNSUBSCRIBE leaves the group; a persistent member that is away gets nothing while another
//!   member is online.
//! - A member that goes away without acknowledging QoS 1 messages: another member gets them.
//! - Issue 17, a SUBSCRIBE takes effect when it is read: the first member of a new group, whose
//!   SUBSCRIBE was sent right before a matching PUBLISH on another connection (no waiting for the
//!   SUBACK), gets that PUBLISH, once; one acknowledged before the SUBSCRIBE was sent it does not.
//! - v5: No Local on a shared subscription is a protocol error [MQTT-3.8.3-4]; the CONNACK does not
//!   say shared subscriptions are unavailable.
//!
//! Proving that no member got a message twice has no later event to wait for: the tests watch for
//! [`ABSENCE_WAIT`] after the last expected message, as other absence checks do.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::client::{Client, Opts};
use common::raw::{self, kind, prop, Connect, RawClient};
use common::{for_each_case_async, unique_id, Proto, ABSENCE_WAIT, BOTH};

/// Collects from `members` until `total` messages arrived among them; returns each member's
/// payloads in arrival order.
async fn collect(members: &mut [Client], total: usize) -> Vec<Vec<String>> {
    let mut got: Vec<Vec<String>> = vec![Vec::new(); members.len()];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.iter().map(Vec::len).sum::<usize>() < total {
        assert!(
            std::time::Instant::now() < deadline,
            "only {got:?} of {total} arrived"
        );
        for (i, m) in members.iter_mut().enumerate() {
            while let Some(msg) = m.recv_within(Duration::from_millis(20)).await {
                got[i].push(msg.text());
            }
        }
    }
    for m in members.iter_mut() {
        m.expect_no_message(ABSENCE_WAIT).await;
    }
    got
}

fn payloads(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

#[test]
fn each_message_reaches_one_member_of_each_group() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut g = Vec::new();
        for _ in 0..3 {
            let mut c = Client::connect(&case, &unique_id("g")).await;
            assert_eq!(c.subscribe("$share/g/work/#", 1).await, 1);
            g.push(c);
        }
        let mut h = Vec::new();
        for _ in 0..2 {
            let mut c = Client::connect(&case, &unique_id("h")).await;
            assert_eq!(c.subscribe("$share/h/work/+", 1).await, 1);
            h.push(c);
        }
        let mut plain = Client::connect(&case, &unique_id("plain")).await;
        assert_eq!(plain.subscribe("work/#", 1).await, 1);

        let mut p = Client::connect(&case, &unique_id("pub")).await;
        let n = 30;
        for m in payloads(n) {
            p.publish_nowait("work/x", 1, false, m).await;
        }
        p.flush().await;

        let all: BTreeSet<String> = payloads(n).into_iter().collect();
        let got_plain: Vec<String> = plain.recv_n(n).await.iter().map(|m| m.text()).collect();
        assert_eq!(
            got_plain,
            payloads(n),
            "the ordinary subscriber gets every message"
        );
        for (name, members) in [("g", &mut g), ("h", &mut h)] {
            let got = collect(members, n).await;
            let union: Vec<&String> = got.iter().flatten().collect();
            assert_eq!(union.len(), n, "group {name}: each message once: {got:?}");
            assert_eq!(
                union.into_iter().cloned().collect::<BTreeSet<_>>(),
                all,
                "group {name}: every message"
            );
            // One publisher, round robin: every member has its turn, each in publish order.
            let share = n / members.len();
            for (i, mine) in got.iter().enumerate() {
                assert_eq!(mine.len(), share, "group {name}, member {i}: {got:?}");
                let mut sorted = mine.clone();
                sorted.sort_by_key(|p| p[1..].parse::<usize>().unwrap());
                assert_eq!(*mine, sorted, "group {name}, member {i}: in publish order");
            }
        }
    });
}

#[test]
fn hash_keeps_each_publisher_on_one_member_in_order() {
    if common::broker::external_mosquitto() {
        // Mosquitto 2.0 has round robin only.
        return;
    }
    for_each_case_async(
        BOTH,
        "shared_subscription_strategy hash\n",
        |case| async move {
            let mut members = Vec::new();
            for _ in 0..3 {
                let mut c = Client::connect(&case, &unique_id("m")).await;
                assert_eq!(c.subscribe("$share/k/hash/#", 1).await, 1);
                members.push(c);
            }
            let n = 12;
            let mut total = 0;
            for who in 0..4 {
                let mut p = Client::connect(&case, &unique_id("pub")).await;
                for i in 0..n {
                    p.publish_nowait("hash/t", 1, false, format!("p{who}-{i}"))
                        .await;
                }
                p.flush().await;
                total += n;
            }
            let got = collect(&mut members, total).await;
            let mut home: BTreeMap<String, usize> = BTreeMap::new();
            for (i, mine) in got.iter().enumerate() {
                for m in mine {
                    let publisher = m.split('-').next().unwrap().to_owned();
                    let at = *home.entry(publisher.clone()).or_insert(i);
                    assert_eq!(at, i, "{publisher} on one member: {got:?}");
                }
                for who in 0..4 {
                    let seq: Vec<usize> = mine
                        .iter()
                        .filter(|m| m.starts_with(&format!("p{who}-")))
                        .map(|m| m.split('-').nth(1).unwrap().parse().unwrap())
                        .collect();
                    if !seq.is_empty() {
                        assert_eq!(seq, (0..n).collect::<Vec<_>>(), "p{who} in order");
                    }
                }
            }
        },
    );
}

#[test]
fn no_retained_messages_for_a_shared_subscription() {
    if common::broker::external_mosquitto() {
        // Mosquitto 2.0.11 sends retained messages for a shared subscription.
        return;
    }
    for_each_case_async(BOTH, "", |case| async move {
        let topic = format!("kept/{}", unique_id("t"));
        let mut p = Client::connect(&case, &unique_id("pub")).await;
        p.publish(&topic, 1, true, "old").await;
        let mut m = Client::connect(&case, &unique_id("m")).await;
        assert_eq!(m.subscribe(&format!("$share/r/{topic}"), 1).await, 1);
        p.publish(&topic, 1, false, "live").await;
        let first = m.recv().await;
        assert_eq!(
            (first.text().as_str(), first.retain),
            ("live", false),
            "the retained message is not sent for a shared subscription"
        );
    });
}

#[test]
fn unsubscribe_leaves_the_group_and_an_away_member_gets_nothing_while_another_is_online() {
    if common::broker::external_mosquitto() {
        // Mosquitto 2.0.11 queues for away members in their turn.
        return;
    }
    for_each_case_async(BOTH, "", |case| async move {
        let mut stays = Client::connect(&case, &unique_id("stays")).await;
        assert_eq!(stays.subscribe("$share/u/jobs", 1).await, 1);
        let mut leaves = Client::connect(&case, &unique_id("leaves")).await;
        assert_eq!(leaves.subscribe("$share/u/jobs", 1).await, 1);
        leaves.unsubscribe("$share/u/jobs").await;
        let away_id = unique_id("away");
        let mut away = Client::connect_with(&case, &away_id, Opts::persistent()).await;
        assert_eq!(away.subscribe("$share/u/jobs", 1).await, 1);
        away.disconnect().await;

        let mut p = Client::connect(&case, &unique_id("pub")).await;
        let n = 10;
        for m in payloads(n) {
            p.publish_nowait("jobs", 1, false, m).await;
        }
        p.flush().await;
        let got: Vec<String> = stays.recv_n(n).await.iter().map(|m| m.text()).collect();
        assert_eq!(
            got,
            payloads(n),
            "the one online member gets them all, in order"
        );
        // Nothing later to wait for: the member that left and the one away watch a bounded time.
        leaves.expect_no_message(ABSENCE_WAIT).await;
        let mut back = Client::connect_with(&case, &away_id, Opts::persistent()).await;
        assert!(back.session_present);
        back.expect_no_message(ABSENCE_WAIT).await;
        stays.expect_no_message(ABSENCE_WAIT).await;
    });
}

#[test]
fn a_member_gone_without_acknowledging_leaves_its_messages_to_another() {
    if common::broker::external_mosquitto() {
        // Mosquitto 2.0 loses them with the member (its issue 2662).
        return;
    }
    for_each_case_async(BOTH, "", |case| async move {
        // The silent member reads but never acknowledges.
        let mut silent = RawClient::connect_clean(case.addr, case.proto, &unique_id("silent"));
        assert_eq!(silent.subscribe(&[("$share/a/tasks/#", 1)]), vec![1]);
        let mut other = Client::connect(&case, &unique_id("other")).await;
        assert_eq!(other.subscribe("$share/a/tasks/#", 1).await, 1);

        let mut p = Client::connect(&case, &unique_id("pub")).await;
        let n = 10;
        for m in payloads(n) {
            p.publish_nowait("tasks/1", 1, false, m).await;
        }
        p.flush().await;
        // Round robin: the silent member has its half in flight.
        let mut held = BTreeSet::new();
        for _ in 0..n / 2 {
            held.insert(String::from_utf8(silent.recv_publish().payload).unwrap());
        }
        drop(silent);
        let got: BTreeSet<String> = other.recv_n(n).await.iter().map(|m| m.text()).collect();
        assert_eq!(
            got,
            payloads(n).into_iter().collect(),
            "the other member got its own half and the {held:?} the silent one left"
        );
    });
}

#[test]
fn a_new_groups_first_member_gets_a_publish_sent_right_behind_its_subscribe() {
    if common::broker::external_mosquitto() {
        // Stricter than Mosquitto 2.0.11, which missed the message in 23 of 24 rounds here (see
        // tests/02_subpub.rs, a_subscribe_sent_before_a_publish_gets_it_without_waiting_for_the_suback).
        eprintln!(
            "skipped against Mosquitto: it does not order a SUBSCRIBE before a later PUBLISH"
        );
        return;
    }
    common::for_each_case(BOTH, "", |case| {
        let mut wrong = Vec::new();
        for round in 0..24usize {
            let id = unique_id("sr");
            let topic = format!("sr/{id}/t");
            let filter = format!("$share/g{round}/sr/{id}/{}", ["t", "+", "#"][round % 3]);
            let qos = ((round / 3) & 1) as u8;
            let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("sp"));
            if round & 8 != 0 {
                // The publisher's shard routes the topic to a subscriber of its own as well.
                p.subscribe(&[(&format!("sr/{id}/x"), 0)]);
            }
            let mut m = RawClient::connect_clean(case.addr, case.proto, &unique_id("sm"));
            let got = common::subscribe_then_publish_at_once(
                case.proto, &mut m, &mut p, &filter, &topic, qos,
            );
            if got != ["after"] {
                wrong.push((round, filter, qos, got));
            }
        }
        assert!(
            wrong.is_empty(),
            "(round, filter, QoS, what the member got before the marker), expected [\"after\"]: \
             {wrong:?}"
        );
    });
}

#[test]
fn v5_no_local_on_a_shared_subscription_is_a_protocol_error() {
    if common::broker::external_mosquitto() {
        // Mosquitto 2.0.11 grants it.
        return;
    }
    for_each_case_async(&[Proto::V5], "", |case| async move {
        let (mut c, ack) =
            RawClient::connect(case.addr, &Connect::new(case.proto, &unique_id("nl")));
        assert!(
            ack.prop(prop::SHARED_SUBSCRIPTION_AVAILABLE).is_none(),
            "shared subscriptions available (absent means yes)"
        );
        let mut body = Vec::new();
        raw::put_u16(&mut body, 1);
        body.push(0); // no properties
        raw::put_str(&mut body, "$share/g/t");
        body.push(0x01 | 0x04); // QoS 1, No Local
        c.send(&raw::frame(0x82, &body));
        let before = c.expect_closed();
        assert!(
            before
                .iter()
                .all(|p| p.kind() == kind::DISCONNECT && p.disconnect_reason() == 0x82),
            "closed, with DISCONNECT 0x82 if anything: {before:?}"
        );
    });
}
