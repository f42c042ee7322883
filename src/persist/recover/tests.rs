//! Start-up on files written by hand: a generation of three shards read back into one, a QoS 2
//! message accepted but not on disk everywhere given to exactly the sessions that lack it, a torn
//! tail and a corrupt file reported and survived.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::codec::{ProtocolVersion, QoS, SubscriptionOptions};
use crate::message::DurableKey;
use crate::persist::record::{encode, encode_header, Record, StoredMessage};

struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("shardmq-recover-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(v: &'static str) -> Utf8Bytes {
    Utf8Bytes::from_static(v)
}

fn session(id: &'static str) -> Record {
    Record::Session {
        client_id: s(id),
        protocol: ProtocolVersion::V311,
        expiry_interval: u32::MAX,
        will: None,
        username: None,
        listener: 0,
        away_since: 0,
    }
}

fn subscribe(id: &'static str, filter: &'static str) -> Record {
    Record::Subscribe {
        client_id: s(id),
        filter: s(filter),
        options: SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            ..SubscriptionOptions::default()
        },
    }
}

fn stored(payload: &'static [u8]) -> StoredMessage {
    StoredMessage {
        topic: s("t/x"),
        payload: Bytes::from_static(payload),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: None,
    }
}

fn write_log(
    files: &Files,
    generation: u64,
    shard: u16,
    shards: u16,
    records: &[Record],
) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_header(shard, shards, &mut out);
    for r in records {
        encode(r, &mut out).unwrap();
    }
    std::fs::write(files.log(generation, shard), &out).unwrap();
    out.to_vec()
}

/// Shard 0 accepted QoS 2 messages K1 and K2 from `pub`; shard 1 recorded both for `a`, shard 2
/// recorded neither for `b` (the crash came first); K2 was acknowledged everywhere (`Routed`).
fn qos2_generation(files: &Files) {
    const K1: u64 = 1 << 48 | 1;
    const K2: u64 = 1 << 48 | 2;
    write_log(
        files,
        4,
        0,
        3,
        &[
            session("pub"),
            Record::Accepted {
                client_id: s("pub"),
                packet_id: 7,
                key: K1,
                message: Some(stored(b"k1")),
            },
            Record::Accepted {
                client_id: s("pub"),
                packet_id: 8,
                key: K2,
                message: Some(stored(b"k2")),
            },
            Record::Routed { key: K2 },
        ],
    );
    write_log(
        files,
        4,
        1,
        3,
        &[
            session("a"),
            subscribe("a", "t/#"),
            Record::Message {
                message_id: 1,
                key: Some(DurableKey {
                    key: K1,
                    publisher: s("pub"),
                    packet_id: 7,
                }),
                message: stored(b"k1"),
            },
            Record::Queue {
                client_id: s("a"),
                message_id: 1,
                qos: QoS::ExactlyOnce,
                retain: false,
            },
        ],
    );
    write_log(
        files,
        4,
        2,
        3,
        &[
            session("b"),
            subscribe("b", "t/+"),
            session("c"),
            subscribe("c", "other"),
        ],
    );
    files
        .set_current(Generation {
            number: 4,
            shards: 3,
        })
        .unwrap();
}

fn owed_payloads(r: &Recovered, id: &'static str) -> Vec<Vec<u8>> {
    let s = r
        .shards
        .iter()
        .find_map(|i| i.sessions.get(&s(id)))
        .unwrap_or_else(|| panic!("session {id}"));
    s.owed.iter().map(|o| o.message.payload.to_vec()).collect()
}

#[test]
fn an_accepted_qos2_message_reaches_exactly_the_sessions_that_lack_it() {
    let dir = Scratch::new("qos2");
    let files = Files::new(&dir.0, "mosquitto.db");
    qos2_generation(&files);
    let r = recover(&files, 1).expect("recovered");
    assert_eq!(r.generation, 5);
    assert_eq!(owed_payloads(&r, "a"), [b"k1".to_vec()], "a had it: once");
    assert_eq!(
        owed_payloads(&r, "b"),
        [b"k1".to_vec()],
        "b lacked it: given now"
    );
    assert!(owed_payloads(&r, "c").is_empty(), "c does not match");
    let publisher = r.shards[0].sessions.get(&s("pub")).unwrap();
    let mut pending: Vec<u16> = publisher.accepted.keys().copied().collect();
    pending.sort_unstable();
    assert_eq!(pending, [7, 8], "both still await their PUBREL");
    assert!(publisher.accepted.values().all(|(_, m)| m.is_none()));
    // The new generation holds the outcome: read again (into 2 shards), nothing is given twice.
    assert_eq!(
        files.current().unwrap(),
        Some(Generation {
            number: 5,
            shards: 1
        })
    );
    assert!(!files.log(4, 0).exists(), "the old generation is gone");
    let r = recover(&files, 2).expect("recovered again");
    assert_eq!(owed_payloads(&r, "a"), [b"k1".to_vec()]);
    assert_eq!(owed_payloads(&r, "b"), [b"k1".to_vec()]);
}

#[test]
fn a_torn_tail_and_a_corrupt_log_keep_what_precedes_the_damage() {
    let dir = Scratch::new("damage");
    let files = Files::new(&dir.0, "p");
    let good = [session("x"), subscribe("x", "a/b")];
    let torn = write_log(
        &files,
        1,
        0,
        2,
        &[good[0].clone(), good[1].clone(), session("lost")],
    );
    std::fs::write(files.log(1, 0), &torn[..torn.len() - 3]).unwrap();
    let mut corrupt = write_log(
        &files,
        1,
        1,
        2,
        &[session("y"), subscribe("y", "c"), session("z")],
    );
    // A flipped byte in the middle record's body (the subscription: after the 29 bytes of the first
    // record and its own 8-byte frame), with a good record after it.
    let at = record::HEADER_LEN + 29 + 8 + 2;
    corrupt[at] ^= 0x40;
    std::fs::write(files.log(1, 1), &corrupt).unwrap();
    files
        .set_current(Generation {
            number: 1,
            shards: 2,
        })
        .unwrap();
    let r = recover(&files, 2).expect("starts anyway");
    let all: Vec<&Utf8Bytes> = r.shards.iter().flat_map(|i| i.sessions.keys()).collect();
    assert!(all.contains(&&s("x")), "before the torn tail");
    assert!(!all.contains(&&s("lost")), "the torn record");
    assert!(all.contains(&&s("y")), "before the damage");
    let y = r
        .shards
        .iter()
        .find_map(|i| i.sessions.get(&s("y")))
        .unwrap();
    assert!(y.subscriptions.is_empty(), "the damaged record");
    assert!(!all.contains(&&s("z")), "after the damage");
    let aside: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt log is kept aside: {aside:?}");
    assert!(aside[0].starts_with("p.1.1.log.corrupt-"));
}

/// The crash lost the publisher's own `Accepted` record but shard 1 recorded the message (K3, packet
/// id 9): the packet id is still known (a repeat is not routed again) and shard 2's subscriber gets
/// the message from shard 1's copy. An exchange that ended (K4, `AcceptedDone`) leaves nothing.
#[test]
fn a_message_recorded_by_a_subscriber_shard_alone_is_known_to_its_publisher() {
    const K3: u64 = 1 << 48 | 3;
    const K4: u64 = 1 << 48 | 4;
    let dir = Scratch::new("lost-accept");
    let files = Files::new(&dir.0, "db");
    let key = |key, packet_id| {
        Some(DurableKey {
            key,
            publisher: s("pub"),
            packet_id,
        })
    };
    write_log(
        &files,
        2,
        0,
        3,
        &[
            session("pub"),
            Record::Accepted {
                client_id: s("pub"),
                packet_id: 4,
                key: K4,
                message: Some(stored(b"k4")),
            },
            Record::AcceptedDone {
                client_id: s("pub"),
                packet_id: 4,
                key: K4,
            },
        ],
    );
    write_log(
        &files,
        2,
        1,
        3,
        &[
            session("a"),
            subscribe("a", "t/#"),
            Record::Message {
                message_id: 1,
                key: key(K4, 4),
                message: stored(b"k4"),
            },
            Record::Message {
                message_id: 2,
                key: key(K3, 9),
                message: stored(b"k3"),
            },
            Record::Queue {
                client_id: s("a"),
                message_id: 2,
                qos: QoS::ExactlyOnce,
                retain: false,
            },
        ],
    );
    write_log(&files, 2, 2, 3, &[session("b"), subscribe("b", "t/x")]);
    files
        .set_current(Generation {
            number: 2,
            shards: 3,
        })
        .unwrap();
    let r = recover(&files, 2).expect("recovered");
    let publisher = r
        .shards
        .iter()
        .find_map(|i| i.sessions.get(&s("pub")))
        .unwrap();
    assert_eq!(
        publisher.accepted.keys().copied().collect::<Vec<_>>(),
        [9],
        "K3's packet id is in use; K4's exchange ended"
    );
    assert_eq!(owed_payloads(&r, "a"), [b"k3".to_vec()]);
    assert_eq!(
        owed_payloads(&r, "b"),
        [b"k3".to_vec()],
        "from shard 1's copy"
    );
}
