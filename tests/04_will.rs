//! Will messages.
//!
//! Rules checked (MQTT 3.1.1; 5.0 numbers where they differ):
//! - [MQTT-3.1.2-8] If the Will Flag is set, the Will Message MUST be published when the Network
//!   Connection is subsequently closed, unless it was deleted on receipt of a DISCONNECT. 3.1.2.5 lists
//!   the closes that publish it: an I/O error or network failure (the socket dropped without
//!   DISCONNECT), and a Keep Alive expiry [MQTT-3.1.2-24] (5.0: [MQTT-3.1.2-22]).
//! - [MQTT-3.1.2-10] The Will Message MUST be removed once published or when the Server receives a
//!   DISCONNECT; 5.0 [MQTT-3.14.4-3]: a DISCONNECT with reason 0x00 discards it, while 0x04
//!   (Disconnect with Will Message) publishes it.
//! - [MQTT-3.1.2-17] Will Retain 1: the Will Message MUST be published as a retained message.
//! - The will is published at its Will QoS (capped by each subscription's QoS [MQTT-3.8.4-6]).
//!
//! - 5.0 Will Delay Interval (3.1.3.2.2, [MQTT-3.1.3-9]): the will goes when the delay has passed or the
//!   session ends (expiry, a clean start), whichever is first, and not if the client came back first.
//!
//! Every test runs for 3.1.1 and 5.0 (the will delay: 5.0), with 1 and 4 shards.

mod common;

use common::client::{Client, Opts};
use common::raw::{self, Connect, RawClient};
use common::{for_each_case_async, unique_id, ABSENCE_WAIT, BOTH};
use std::net::Shutdown;
use std::time::{Duration, Instant};

#[test]
fn will_is_published_when_the_socket_drops() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("will/#", 2).await, 2);
        for qos in 0..=2u8 {
            let id = unique_id("w");
            let topic = format!("will/{id}");
            let w = Client::connect_with(
                &case,
                &id,
                Opts::default().with_will(&topic, b"gone", qos, false),
            )
            .await;
            w.kill().await; // TCP closed without DISCONNECT
            let m = sub.recv().await;
            assert_eq!(
                (m.topic.as_str(), m.text().as_str()),
                (topic.as_str(), "gone"),
                "[MQTT-3.1.2-8]"
            );
            assert_eq!(m.qos, qos, "published at the Will QoS");
            assert!(!m.retain, "Will Retain 0");
        }
    });
}

#[test]
fn will_is_published_when_keepalive_expires() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("kwill/#", 1).await, 1);
        let id = unique_id("kw");
        let topic = format!("kwill/{id}");
        // A client that connects with a 1 s keepalive and then goes silent (socket kept open).
        let mut w = RawClient::open(case.addr, case.proto);
        w.send(
            &Connect::new(case.proto, &id)
                .keepalive(1)
                .will(&topic, b"timed out", 1, false)
                .encode(),
        );
        assert_eq!(w.read_packet().connack(case.proto).code, 0);
        let since = Instant::now();
        // Generous bound: this test is about the will, 01_connect checks the keepalive timing.
        let m = sub
            .recv_within(Duration::from_secs(10))
            .await
            .expect("no will after keepalive expiry");
        assert!(
            since.elapsed() >= Duration::from_millis(1000),
            "will published before the keepalive ran out"
        );
        assert_eq!(
            (m.topic.as_str(), m.text().as_str()),
            (topic.as_str(), "timed out")
        );
        drop(w);
    });
}

#[test]
fn will_is_not_published_after_disconnect() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("nwill/#", 1).await, 1);
        let id = unique_id("nw");
        let topic = format!("nwill/{id}");
        let (mut w, _) = RawClient::connect(
            case.addr,
            &Connect::new(case.proto, &id).will(&topic, b"must not", 1, false),
        );
        w.send(&raw::disconnect());
        w.stream.shutdown(Shutdown::Write).unwrap();
        // The broker closing its side shows it has handled the DISCONNECT and the end of the connection.
        let before = w.expect_closed();
        assert!(
            before.is_empty(),
            "nothing is sent in reply to DISCONNECT: {before:?}"
        );
        // The will, if wrongly kept, would have been published at that close, already past. There is no
        // later event from the same source to wait for, so watch for a bounded time [MQTT-3.1.2-10].
        sub.expect_no_message(ABSENCE_WAIT).await;
    });
}

#[test]
fn retained_will_is_stored() {
    for_each_case_async(BOTH, "", |case| async move {
        let mut live = Client::connect(&case, &unique_id("live")).await;
        assert_eq!(live.subscribe("rwill/#", 1).await, 1);
        let id = unique_id("rw");
        let topic = format!("rwill/{id}");
        let w = Client::connect_with(
            &case,
            &id,
            Opts::default().with_will(&topic, b"offline", 1, true),
        )
        .await;
        w.kill().await;
        let m = live.recv().await;
        assert_eq!(
            (m.topic.as_str(), m.text().as_str(), m.retain),
            (topic.as_str(), "offline", false)
        );

        let mut late = Client::connect(&case, &unique_id("late")).await;
        assert_eq!(late.subscribe(&topic, 1).await, 1);
        let m = late.recv().await;
        assert_eq!(
            (m.topic.as_str(), m.text().as_str(), m.retain),
            (topic.as_str(), "offline", true),
            "Will Retain 1 => stored as retained [MQTT-3.1.2-17]"
        );
    });
}

#[test]
fn v5_disconnect_with_will_message_publishes_the_will() {
    for_each_case_async(&[common::Proto::V5], "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("dwill/#", 1).await, 1);
        let id = unique_id("dw");
        let topic = format!("dwill/{id}");
        let (mut w, _) = RawClient::connect(
            case.addr,
            &Connect::new(case.proto, &id).will(&topic, b"asked for", 1, false),
        );
        w.send(&raw::disconnect_v5(0x04));
        let m = sub.recv().await;
        assert_eq!(
            (m.topic.as_str(), m.text().as_str()),
            (topic.as_str(), "asked for"),
            "[MQTT-3.14.4-3]"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// v5 Will Delay Interval (5.0 section 3.1.3.2.2): the will goes out when its delay has passed or its
// session ends, whichever comes first, and not at all if a new connection to the session came first
// [MQTT-3.1.3-9].

/// A v5 client with a persistent session (expiry `expiry` s) and a will delayed `delay` s.
fn delayed_will(case: &common::Case, id: &str, topic: &str, delay: u32, expiry: u32) -> RawClient {
    let connect = Connect::new(case.proto, id)
        .clean(false)
        .prop_u32(raw::prop::SESSION_EXPIRY_INTERVAL, expiry)
        .will(topic, b"late", 1, false)
        .will_delay(delay);
    RawClient::connect(case.addr, &connect).0
}

#[test]
fn v5_a_delayed_will_goes_after_its_delay() {
    for_each_case_async(&[common::Proto::V5], "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("delay/#", 1).await, 1);
        let id = unique_id("dl");
        let topic = format!("delay/{id}");
        let w = delayed_will(&case, &id, &topic, 1, 60);
        let closed = Instant::now();
        drop(w); // TCP closed without DISCONNECT
        let m = sub.recv().await;
        assert_eq!(
            (m.topic.as_str(), m.text().as_str()),
            (topic.as_str(), "late")
        );
        // The broker saw the close after `closed`: its deadline is at least a second after it.
        assert!(
            closed.elapsed() >= Duration::from_secs(1),
            "the will waited out its delay: {:?}",
            closed.elapsed()
        );
    });
}

#[test]
fn v5_a_reconnect_within_the_delay_cancels_the_will() {
    for_each_case_async(&[common::Proto::V5], "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("cancel/#", 1).await, 1);
        let id = unique_id("cw");
        let topic = format!("cancel/{id}");
        drop(delayed_will(&case, &id, &topic, 1, 60));
        // Back at once (after the close was seen, or taking the connection over: either way a new
        // connection to the session within the delay).
        let connect = Connect::new(case.proto, &id)
            .clean(false)
            .prop_u32(raw::prop::SESSION_EXPIRY_INTERVAL, 60);
        let (_back, ack) = RawClient::connect(case.addr, &connect);
        assert!(ack.session_present, "the session was resumed");
        // Nothing to wait for: the will would come a second after the close; watch a bit longer.
        sub.expect_no_message(Duration::from_millis(1500)).await;
    });
}

#[test]
fn v5_a_delayed_will_goes_when_its_session_expires_first() {
    for_each_case_async(&[common::Proto::V5], "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("expire/#", 1).await, 1);
        let id = unique_id("ew");
        let topic = format!("expire/{id}");
        drop(delayed_will(&case, &id, &topic, 3600, 1));
        let m = sub.recv().await;
        assert_eq!(
            (m.topic.as_str(), m.text().as_str()),
            (topic.as_str(), "late"),
            "the session ended (expiry 1 s) long before the delay (an hour)"
        );
    });
}

#[test]
fn v5_a_delayed_will_goes_when_a_clean_start_ends_its_session() {
    if common::broker::external_mosquitto() {
        // Mosquitto 2.0.11 drops the waiting will when a clean start discards the session.
        return;
    }
    for_each_case_async(&[common::Proto::V5], "", |case| async move {
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("clean/#", 1).await, 1);
        let id = unique_id("sw");
        let topic = format!("clean/{id}");
        drop(delayed_will(&case, &id, &topic, 3600, 3600));
        let (_new, ack) = RawClient::connect(case.addr, &Connect::new(case.proto, &id));
        assert!(!ack.session_present, "clean start: a new session");
        let m = sub.recv().await;
        assert_eq!(
            (m.topic.as_str(), m.text().as_str()),
            (topic.as_str(), "late"),
            "the old session ended with the clean start: its will goes then"
        );
    });
}
