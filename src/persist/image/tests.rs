//! Records applied in order give the state a shard had; a snapshot of that state replays to it again,
//! each message written once however many sessions owe it.

use bytes::Bytes;

use super::*;
use crate::persist::record::{scan, Tail};

fn s(v: &'static str) -> Utf8Bytes {
    Utf8Bytes::from_static(v)
}

fn stored(topic: &'static str, payload: &'static [u8]) -> StoredMessage {
    StoredMessage {
        topic: s(topic),
        payload: Bytes::from_static(payload),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: None,
    }
}

fn session(client: &'static str) -> Record {
    Record::Session {
        client_id: s(client),
        protocol: ProtocolVersion::V311,
        expiry_interval: u32::MAX,
        will: None,
        username: None,
        listener: 0,
        away_since: 0,
    }
}

fn queue(client: &'static str, message_id: u64, qos: QoS) -> Record {
    Record::Queue {
        client_id: s(client),
        message_id,
        qos,
        retain: false,
    }
}

/// Two sessions sharing messages, each step of a delivery, and a session that ends.
fn history() -> Vec<Record> {
    vec![
        session("a"),
        session("b"),
        session("gone"),
        Record::Subscribe {
            client_id: s("a"),
            filter: s("t/#"),
            options: SubscriptionOptions::default(),
        },
        Record::Message {
            message_id: 7,
            key: None,
            message: stored("t/1", b"one"),
        },
        queue("a", 7, QoS::ExactlyOnce),
        queue("b", 7, QoS::AtLeastOnce),
        queue("gone", 7, QoS::AtLeastOnce),
        Record::Message {
            message_id: 8,
            key: None,
            message: stored("t/2", b"two"),
        },
        queue("a", 8, QoS::AtLeastOnce),
        queue("b", 8, QoS::AtLeastOnce),
        Record::Inflight {
            client_id: s("a"),
            message_id: 7,
            packet_id: 1,
        },
        Record::Released {
            client_id: s("a"),
            packet_id: 1,
        },
        Record::Inflight {
            client_id: s("b"),
            message_id: 7,
            packet_id: 5,
        },
        Record::Done {
            client_id: s("b"),
            packet_id: 5,
        },
        Record::Discard {
            client_id: s("b"),
            message_id: 8,
        },
        Record::SessionGone {
            client_id: s("gone"),
        },
        Record::Retain {
            message: stored("r", b"kept"),
        },
        Record::Retain {
            message: stored("cleared", b"x"),
        },
        Record::RetainClear {
            topic: s("cleared"),
        },
    ]
}

fn image_of(records: Vec<Record>) -> ShardImage {
    let mut image = ShardImage::default();
    for r in records {
        image.apply(r);
    }
    image.finish();
    image
}

/// (message id, topic, qos, packet id, released) of what `client` is owed, in order.
fn owed(image: &ShardImage, client: &'static str) -> Vec<(u64, String, QoS, Option<u16>, bool)> {
    image.sessions[&s(client)]
        .owed
        .iter()
        .map(|o| {
            (
                o.message_id,
                o.message.topic.to_string(),
                o.qos,
                o.packet_id,
                o.released,
            )
        })
        .collect()
}

#[test]
fn records_in_order_give_the_state() {
    let image = image_of(history());
    assert_eq!(image.orphans, 0);
    assert_eq!(image.sessions.len(), 2, "'gone' ended");
    assert_eq!(
        owed(&image, "a"),
        [
            (7, "t/1".into(), QoS::ExactlyOnce, Some(1), true),
            (8, "t/2".into(), QoS::AtLeastOnce, None, false)
        ]
    );
    assert!(owed(&image, "b").is_empty(), "done and discarded");
    assert_eq!(
        image.sessions[&s("a")]
            .subscriptions
            .keys()
            .collect::<Vec<_>>(),
        [&s("t/#")]
    );
    assert_eq!(image.retained.len(), 1);
    assert_eq!(&image.retained[&s("r")].payload[..], b"kept");
    assert_eq!(image.next_message_id, 9);
    assert_eq!(image.owed_count(), 2);
}

#[test]
fn records_naming_nothing_are_skipped_and_counted() {
    let image = image_of(vec![
        queue("nobody", 1, QoS::AtLeastOnce),
        session("a"),
        queue("a", 99, QoS::AtLeastOnce),
        Record::Done {
            client_id: s("a"),
            packet_id: 3,
        },
        Record::Unsubscribe {
            client_id: s("x"),
            filter: s("f"),
        },
    ]);
    assert_eq!(image.orphans, 4);
    assert!(image.sessions[&s("a")].owed.is_empty());
}

#[test]
fn a_snapshot_replays_to_the_same_state_with_each_message_once() {
    let image = image_of(history());
    let mut w = SnapshotWriter::new(0, 1);
    w.image(&image, |_| true);
    let file = w.finish();
    let mut messages = 0;
    let mut again = ShardImage::default();
    let scanned = scan(&file, |r| {
        if matches!(r, Record::Message { .. }) {
            messages += 1;
        }
        again.apply(r);
    });
    again.finish();
    assert_eq!(scanned.tail, Tail::Clean);
    assert_eq!(messages, 2, "message 7 is owed twice but written once");
    assert_eq!(again.orphans, 0);
    assert_eq!(owed(&again, "a"), owed(&image, "a"));
    assert_eq!(owed(&again, "b"), owed(&image, "b"));
    assert_eq!(
        again.sessions[&s("a")].subscriptions,
        image.sessions[&s("a")].subscriptions
    );
    assert_eq!(again.retained.len(), 1);
    // Retained messages another shard owns are left out.
    let mut w = SnapshotWriter::new(0, 2);
    w.image(&image, |_| false);
    let mut retained = 0;
    scan(&w.finish(), |r| {
        retained += usize::from(matches!(r, Record::Retain { .. }))
    });
    assert_eq!(retained, 0);
}
