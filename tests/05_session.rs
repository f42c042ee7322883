//! Sessions: persistence across connections, clean session / clean start, takeover, redelivery.
//!
//! Rules checked (MQTT 3.1.1; 5.0 numbers where they differ):
//! - [MQTT-3.1.2-4] (5.0: [MQTT-3.1.2-5]) CleanSession 0 / Clean Start 0: the Server MUST resume the
//!   existing session; its subscriptions are kept and QoS 1/2 messages for it are stored while the
//!   client is away [MQTT-3.1.2-5]. In 5.0 the session survives the connection only with a Session
//!   Expiry Interval > 0 (3.1.2.11.2); absent, it ends at disconnect.
//! - [MQTT-3.1.2-6] (5.0: [MQTT-3.1.2-4]) CleanSession 1 / Clean Start 1: any previous session MUST be
//!   discarded.
//! - [MQTT-3.2.2-1] (5.0: [MQTT-3.2.2-2]) Session Present is 0 after a clean connect;
//!   [MQTT-3.2.2-2] (5.0: [MQTT-3.2.2-3]) it is 1 when a stored session is resumed, 0 when there was none.
//! - [MQTT-3.1.4-2] (5.0: [MQTT-3.1.4-3]) A CONNECT with the ClientId of a connected client disconnects
//!   the existing one; in 5.0 the Server sends it DISCONNECT with reason 0x8E (Session taken over)
//!   (checked for shardmq; Mosquitto 2.0.11 just closes the connection).
//! - [MQTT-4.4.0-1] On reconnect with CleanSession 0 the Server MUST re-send unacknowledged PUBLISH
//!   (QoS > 0) and PUBREL packets with their original Packet Identifiers; [MQTT-3.3.1-1] a re-delivered
//!   PUBLISH has DUP 1.
//! - 5.0 3.1.2.11.2: once the Session Expiry Interval has passed after the connection closed, the
//!   session is discarded (Session Present 0 on the next connect); Mosquitto's
//!   `persistent_client_expiration` caps every persistent session's life the same way.
//!
//! Every test runs for 3.1.1 and 5.0, with 1 and 4 shards (with 4, a reconnecting client usually
//! lands on a shard other than its session's home and must be handed over).

mod common;

use common::broker::external_mosquitto;
use common::client::{Client, Opts};
use common::raw::{self, kind, Connect, RawClient};
use common::{for_each_case, for_each_case_async, unique_id, Proto, BOTH};

#[test]
fn persistent_session_keeps_subscriptions_and_queues_messages() {
    for_each_case_async(BOTH, "", |case| async move {
        let id = unique_id("ps");
        let mut p = Client::connect_with(&case, &id, Opts::persistent()).await;
        assert!(
            !p.session_present,
            "no stored session yet => Session Present 0 [MQTT-3.2.2-2]"
        );
        assert_eq!(
            p.subscribe_many(&[("ps/q1", 1), ("ps/q2", 2)]).await,
            vec![1, 2]
        );
        p.disconnect().await;

        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        publ.publish("ps/q1", 1, false, "while away 1").await;
        publ.publish("ps/q2", 2, false, "while away 2").await;

        let mut p = Client::connect_with(&case, &id, Opts::persistent()).await;
        assert!(
            p.session_present,
            "stored session resumed => Session Present 1 [MQTT-3.2.2-2]"
        );
        let mut got: Vec<(String, String, u8)> = p
            .recv_n(2)
            .await
            .into_iter()
            .map(|m| (m.topic.clone(), m.text(), m.qos))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("ps/q1".into(), "while away 1".into(), 1),
                ("ps/q2".into(), "while away 2".into(), 2)
            ],
            "QoS 1/2 messages queued while away [MQTT-3.1.2-5]"
        );
        // The subscriptions themselves were kept: live delivery without subscribing again.
        publ.publish("ps/q1", 1, false, "live").await;
        assert_eq!(p.recv().await.text(), "live");
    });
}

#[test]
fn clean_session_discards_the_stored_session() {
    for_each_case_async(BOTH, "", |case| async move {
        let id = unique_id("cs");
        let mut p = Client::connect_with(&case, &id, Opts::persistent()).await;
        assert_eq!(p.subscribe("cs/t", 1).await, 1);
        p.disconnect().await;

        let p = Client::connect_with(&case, &id, Opts::default()).await;
        assert!(
            !p.session_present,
            "clean connect => Session Present 0 [MQTT-3.2.2-1]"
        );
        p.disconnect().await;

        let mut p = Client::connect_with(&case, &id, Opts::persistent()).await;
        assert!(
            !p.session_present,
            "the clean session discarded the old one [MQTT-3.1.2-6]"
        );
        assert_eq!(p.subscribe("cs/marker", 1).await, 1);
        let mut publ = Client::connect(&case, &unique_id("pub")).await;
        publ.publish("cs/t", 1, false, "old subscription").await;
        publ.publish("cs/marker", 1, false, "marker").await;
        let got = p.recv_until("cs/marker").await;
        assert!(
            got.is_empty(),
            "a discarded subscription still delivered: {got:?}"
        );
    });
}

#[test]
fn v5_session_without_expiry_ends_with_the_connection() {
    for_each_case_async(&[Proto::V5], "", |case| async move {
        let id = unique_id("se0");
        let opts = Opts {
            clean: false,
            session_expiry: None,
            ..Opts::default()
        };
        let mut p = Client::connect_with(&case, &id, opts.clone()).await;
        assert_eq!(p.subscribe("se0/t", 1).await, 1);
        p.disconnect().await;
        let p = Client::connect_with(&case, &id, opts).await;
        assert!(
            !p.session_present,
            "Session Expiry Interval absent => session ended at disconnect"
        );
    });
}

#[test]
fn takeover_closes_the_first_connection() {
    for_each_case(BOTH, "", |case| {
        for round in 0..4 {
            let id = unique_id("to");
            let persistent = round % 2 == 1;
            let connect = if persistent {
                Connect::new(case.proto, &id).persistent()
            } else {
                Connect::new(case.proto, &id)
            };
            let topic = format!("to/{round}");
            let (mut first, _) = RawClient::connect(case.addr, &connect);
            assert_eq!(first.subscribe(&[(&topic, 1)]), vec![1]);

            let (mut second, ack) = RawClient::connect(case.addr, &connect);
            let before = first.expect_closed();
            if case.proto.is_v5() && external_mosquitto() && before.is_empty() {
                // Mosquitto 2.0.11 (Debian 12) closes the old v5 connection without the DISCONNECT
                // 0x8E that 3.1.4 step 2 describes; shardmq is deliberately stricter and sends it.
            } else if case.proto.is_v5() {
                assert_eq!(
                    before.len(),
                    1,
                    "v5: one DISCONNECT before the close, got {before:?}"
                );
                assert_eq!(
                    before[0].disconnect_reason(),
                    0x8E,
                    "Session taken over [MQTT-3.1.4-3]"
                );
            } else {
                assert!(
                    before.is_empty(),
                    "3.1.1: the old connection is just closed [MQTT-3.1.4-2]: {before:?}"
                );
            }
            assert_eq!(
                ack.session_present, persistent,
                "round {round}: Session Present"
            );
            if !persistent {
                assert_eq!(second.subscribe(&[(&topic, 1)]), vec![1]);
            }
            // The new connection owns the session: it receives (for a persistent session, without
            // subscribing again).
            let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
            p.publish(&topic, 1, false, b"to the new connection");
            let m = second.recv_publish();
            assert_eq!(m.payload, b"to the new connection");
        }
    });
}

#[test]
fn unacked_qos1_is_resent_with_dup_on_reconnect() {
    for_each_case(BOTH, "", |case| {
        let id = unique_id("dup1");
        let connect = Connect::new(case.proto, &id).persistent();
        let (mut r, _) = RawClient::connect(case.addr, &connect);
        assert_eq!(r.subscribe(&[("dup/x", 1)]), vec![1]);
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        p.publish("dup/x", 1, false, b"m1");

        let first = r.recv_publish();
        assert_eq!(
            (
                first.topic.as_str(),
                first.payload.as_slice(),
                first.qos,
                first.dup
            ),
            ("dup/x", &b"m1"[..], 1, false)
        );
        drop(r); // no PUBACK, no DISCONNECT

        let (mut r, ack) = RawClient::connect(case.addr, &connect);
        assert!(ack.session_present);
        let again = r.recv_publish();
        assert_eq!(
            again.pkid, first.pkid,
            "original Packet Identifier [MQTT-4.4.0-1]"
        );
        assert!(again.dup, "re-delivery has DUP 1 [MQTT-3.3.1-1]");
        assert_eq!(
            (again.topic.as_str(), again.payload.as_slice(), again.qos),
            ("dup/x", &b"m1"[..], 1)
        );
        r.send(&raw::ack(kind::PUBACK, again.pkid));

        // Acknowledged now: the next message is a new one, not a third copy.
        p.publish("dup/x", 1, false, b"m2");
        let next = r.recv_publish();
        assert_eq!((next.payload.as_slice(), next.dup), (&b"m2"[..], false));
    });
}

#[test]
fn unacked_qos2_publish_and_pubrel_are_resent_on_reconnect() {
    for_each_case(BOTH, "", |case| {
        let id = unique_id("dup2");
        let connect = Connect::new(case.proto, &id).persistent();
        let (mut r, _) = RawClient::connect(case.addr, &connect);
        assert_eq!(r.subscribe(&[("dup2/x", 2)]), vec![2]);
        let mut p = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));
        p.publish("dup2/x", 2, false, b"exactly once");

        let first = r.recv_publish();
        assert_eq!((first.qos, first.dup), (2, false));
        drop(r); // no PUBREC

        // PUBLISH re-sent with DUP; this time PUBREC it but never PUBCOMP.
        let (mut r, ack) = RawClient::connect(case.addr, &connect);
        assert!(ack.session_present);
        let again = r.recv_publish();
        assert_eq!(
            (again.pkid, again.dup, again.payload.as_slice()),
            (first.pkid, true, &b"exactly once"[..])
        );
        r.send(&raw::ack(kind::PUBREC, again.pkid));
        let rel = r.expect(kind::PUBREL);
        assert_eq!(rel.first, 0x62, "PUBREL fixed header flags 0010");
        assert_eq!(rel.ack_pkid(), first.pkid);
        drop(r); // no PUBCOMP

        // Now the PUBREL is what gets re-sent, not the PUBLISH [MQTT-4.4.0-1].
        let (mut r, ack) = RawClient::connect(case.addr, &connect);
        assert!(ack.session_present);
        let rel = r.expect(kind::PUBREL);
        assert_eq!(
            rel.ack_pkid(),
            first.pkid,
            "PUBREL re-sent with the original Packet Identifier"
        );
        r.send(&raw::ack(kind::PUBCOMP, first.pkid));

        p.publish("dup2/x", 2, false, b"next");
        let next = r.recv_publish();
        assert_eq!(
            (next.payload.as_slice(), next.dup),
            (&b"next"[..], false),
            "no third copy of the first message"
        );
    });
}

/// Connects `connect`, asserts it was accepted, and returns its Session Present flag after a clean
/// DISCONNECT (which keeps a persistent session).
fn visit(case: &common::Case, connect: &Connect) -> bool {
    let (mut c, ack) = RawClient::connect(case.addr, connect);
    c.send(&raw::disconnect());
    c.expect_closed();
    ack.session_present
}

/// The expiry tests wait for time itself to pass: the deadline is the event, and nothing is signalled
/// when a session expires. The wait is the interval plus ten ticks of margin.
const PAST_ONE_SECOND: std::time::Duration = std::time::Duration::from_millis(2000);

#[test]
fn a_v5_session_ends_when_its_session_expiry_interval_passes() {
    // 5.0 3.1.2.11.2: the Server MUST discard the session once the interval after the Network
    // Connection closed has passed (and 3.2.2.1.1: Session Present 0 then).
    for_each_case(&[Proto::V5], "", |case| {
        let connect = Connect::new(Proto::V5, &unique_id("exp"))
            .clean(false)
            .prop_u32(raw::prop::SESSION_EXPIRY_INTERVAL, 1);
        assert!(!visit(&case, &connect), "first visit: no session yet");
        assert!(visit(&case, &connect), "back within the interval: resumed");
        std::thread::sleep(PAST_ONE_SECOND);
        assert!(!visit(&case, &connect), "back after the interval: expired");
    });
}

#[test]
fn persistent_client_expiration_ends_sessions_left_for_longer() {
    // Mosquitto's persistent_client_expiration: a 3.x persistent session (which never expires by
    // itself) and a v5 one with a longer interval both end after the global limit.
    if external_mosquitto() {
        // `1s` is shardmq's extension; Mosquitto's smallest unit is the hour.
        eprintln!("skipped against Mosquitto: it takes no seconds unit");
        return;
    }
    for_each_case(BOTH, "persistent_client_expiration 1s\n", |case| {
        let connect = Connect::new(case.proto, &unique_id("pce")).persistent();
        assert!(!visit(&case, &connect));
        assert!(visit(&case, &connect), "back at once: resumed");
        std::thread::sleep(PAST_ONE_SECOND);
        assert!(!visit(&case, &connect), "back after the limit: expired");
    });
}
