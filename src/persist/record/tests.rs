//! Record format tests: every variant round-trips; a file replays in order; truncation anywhere in the
//! last record is a torn tail with the good prefix intact; every single-bit flip is caught; a huge length
//! is refused without allocating; random records round-trip (proptest).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::select;
use smallvec::SmallVec;

use super::body::{kind, read_options};
use super::*;
use crate::codec::{RetainHandling, MAX_VAR_INT};
use crate::message::DurableKey;

fn s(v: &'static str) -> Utf8Bytes {
    Utf8Bytes::from_static(v)
}

fn publish_props() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some(s("text/plain")),
        response_topic: Some(s("reply/here")),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        subscription_identifiers: SmallVec::from_slice(&[7, MAX_VAR_INT]),
        user_properties: vec![(s("k"), s("v")), (s("k"), s("w"))],
        ..Properties::default()
    }
}

fn message(qos: QoS, payload: Bytes, properties: Option<Properties>) -> StoredMessage {
    StoredMessage {
        topic: s("a/b/ü"),
        payload,
        qos,
        retain: false,
        properties: properties.map(Box::new),
    }
}

/// One or more of every variant, v3 and v5, with and without properties.
fn every_variant() -> Vec<Record> {
    let will = LastWill {
        topic: s("will/t"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: Properties {
            will_delay_interval: Some(30),
            content_type: Some(s("x")),
            ..Properties::default()
        },
    };
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
        identifier: 268_435_455,
    };
    let c = s("client-1");
    vec![
        Record::Session {
            client_id: c.clone(),
            protocol: ProtocolVersion::V5,
            expiry_interval: u32::MAX,
            will: Some(Box::new(will)),
            username: Some(s("user")),
            listener: 3,
            away_since: 1_796_000_000,
        },
        Record::Session {
            client_id: s("v3"),
            protocol: ProtocolVersion::V311,
            expiry_interval: 0,
            will: None,
            username: None,
            listener: 0,
            away_since: 0,
        },
        Record::Session {
            client_id: s(""),
            protocol: ProtocolVersion::V31,
            expiry_interval: 1,
            will: None,
            username: Some(s("")),
            listener: u16::MAX,
            away_since: u64::MAX,
        },
        Record::SessionGone {
            client_id: c.clone(),
        },
        Record::Subscribe {
            client_id: c.clone(),
            filter: s("a/+/#"),
            options,
        },
        Record::Subscribe {
            client_id: c.clone(),
            filter: s("b"),
            options: SubscriptionOptions::default(),
        },
        Record::Unsubscribe {
            client_id: c.clone(),
            filter: s("a/+/#"),
        },
        Record::Message {
            message_id: u64::MAX,
            key: None,
            message: message(QoS::AtLeastOnce, Bytes::from_static(b"v3"), None),
        },
        Record::Message {
            message_id: 0,
            key: Some(DurableKey {
                key: 7 << 48 | 9,
                publisher: s("p"),
                packet_id: 12,
            }),
            message: message(QoS::ExactlyOnce, Bytes::new(), Some(publish_props())),
        },
        Record::Message {
            message_id: 2,
            key: None,
            message: message(QoS::AtLeastOnce, Bytes::from(vec![0xA5; 1 << 20]), None),
        },
        Record::Queue {
            client_id: c.clone(),
            message_id: 2,
            qos: QoS::AtLeastOnce,
            retain: false,
        },
        Record::Queue {
            client_id: c.clone(),
            message_id: 0,
            qos: QoS::ExactlyOnce,
            retain: true,
        },
        Record::Inflight {
            client_id: c.clone(),
            message_id: 2,
            packet_id: 65535,
        },
        Record::Released {
            client_id: c.clone(),
            packet_id: 1,
        },
        Record::Done {
            client_id: c.clone(),
            packet_id: 1,
        },
        Record::Discard {
            client_id: c,
            message_id: 3,
        },
        Record::Retain {
            message: StoredMessage {
                retain: true,
                ..message(
                    QoS::AtMostOnce,
                    Bytes::from_static(b"r"),
                    Some(publish_props()),
                )
            },
        },
        Record::RetainClear { topic: s("a/b") },
        Record::Accepted {
            client_id: s("pub"),
            packet_id: 65535,
            key: 1 << 48 | 3,
            message: Some(message(QoS::ExactlyOnce, Bytes::from_static(b"q2"), None)),
        },
        Record::Accepted {
            client_id: s("pub"),
            packet_id: 1,
            key: 0,
            message: None,
        },
        Record::AcceptedDone {
            client_id: s("pub"),
            packet_id: 1,
            key: 5,
        },
        Record::Routed { key: u64::MAX },
        Record::Seen(DurableKey {
            key: 1,
            publisher: s(""),
            packet_id: 65535,
        }),
    ]
}

fn file_of(records: &[Record]) -> BytesMut {
    let mut out = BytesMut::new();
    encode_header(2, 4, &mut out);
    for r in records {
        encode(r, &mut out).unwrap();
    }
    out
}

#[test]
fn every_variant_round_trips_alone() {
    for record in every_variant() {
        let mut out = BytesMut::new();
        encode(&record, &mut out).unwrap();
        let (back, used) = decode(&out).unwrap().unwrap();
        assert_eq!(back, record);
        assert_eq!(used, out.len());
    }
}

#[test]
fn a_file_replays_in_order() {
    let records = every_variant();
    let file = file_of(&records);
    let r = replay(&file);
    assert_eq!(
        r.header,
        Some(Header {
            version: FORMAT_VERSION,
            shard: 2,
            shards: 4
        })
    );
    assert_eq!(r.records, records);
    assert_eq!(r.good_len, file.len());
    assert_eq!(r.tail, Tail::Clean);
}

#[test]
fn stored_message_converts_to_and_from_message() {
    let m = message(
        QoS::AtLeastOnce,
        Bytes::from_static(b"p"),
        Some(publish_props()),
    );
    let back = StoredMessage::from_message(&m.clone().into_message());
    assert_eq!(back, m);
    let bare = message(QoS::AtLeastOnce, Bytes::new(), None);
    assert_eq!(
        StoredMessage::from_message(&bare.clone().into_message()),
        bare
    );
}

#[test]
fn a_stored_message_keeps_what_is_left_of_its_expiry_interval() {
    let with_expiry = |interval| {
        Message::new(
            Utf8Bytes::from_static("t"),
            Bytes::from_static(b"p"),
            QoS::AtLeastOnce,
            false,
            Properties {
                message_expiry_interval: Some(interval),
                ..Properties::default()
            },
            None,
        )
    };
    let interval = |m: &StoredMessage| m.properties.as_ref().unwrap().message_expiry_interval;
    let mut m = with_expiry(10);
    assert_eq!(interval(&StoredMessage::from_message(&m)), Some(10));
    m.age_by(3);
    // Read back elsewhere (a moved session, a restart), its clock starts afresh: 7 s are left.
    assert_eq!(interval(&StoredMessage::from_message(&m)), Some(7));
    assert_eq!(interval(&StoredMessage::as_published(&m)), Some(10));
    m.age_by(20);
    assert_eq!(
        interval(&StoredMessage::from_message(&m)),
        Some(1),
        "expired: 1 s, not never"
    );
}

fn small_records() -> Vec<Record> {
    every_variant()
        .into_iter()
        .filter(|r| !matches!(r, Record::Message { message, .. } if message.payload.len() > 1000))
        .collect()
}

#[test]
fn truncation_anywhere_in_the_last_record_is_a_torn_tail() {
    let records = small_records();
    let file = file_of(&records);
    let prefix = file_of(&records[..records.len() - 1]).len();
    for cut in prefix..file.len() {
        let r = replay(&file[..cut]);
        assert_eq!(r.records, records[..records.len() - 1], "cut at {cut}");
        assert_eq!(r.good_len, prefix);
        let want = if cut == prefix {
            Tail::Clean
        } else {
            Tail::Torn {
                dropped: cut - prefix,
                error: None,
            }
        };
        assert_eq!(r.tail, want, "cut at {cut}");
    }
}

#[test]
fn a_short_or_bad_header() {
    let file = file_of(&[]);
    for cut in 0..HEADER_LEN {
        let r = replay(&file[..cut]);
        assert_eq!(r.header, None);
        assert_eq!(r.good_len, 0);
        let want = if cut == 0 {
            Tail::Clean
        } else {
            Tail::Torn {
                dropped: cut,
                error: None,
            }
        };
        assert_eq!(r.tail, want);
    }
    for bit in 0..HEADER_LEN * 8 {
        let mut bad = file.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(matches!(replay(&bad).tail, Tail::BadHeader(_)), "bit {bit}");
    }
    let mut other = BytesMut::new();
    encode_header(4, 4, &mut other);
    assert_eq!(
        decode_header(&other),
        Err(HeaderError::BadShard {
            shard: 4,
            shards: 4
        })
    );
}

/// Flips every bit of the record at `records[at]` (frame and body) and checks replay never yields a
/// record that was not written, and keeps every record before it.
fn flip_every_bit(records: &[Record], at: usize) -> (usize, usize) {
    let file = file_of(records);
    let start = file_of(&records[..at]).len();
    let end = file_of(&records[..=at]).len();
    let (mut torn, mut corrupt) = (0, 0);
    for bit in start * 8..end * 8 {
        let mut bad = file.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let r = replay(&bad);
        assert_eq!(r.records, records[..at], "bit {bit}");
        assert_eq!(r.good_len, start, "bit {bit}");
        match r.tail {
            Tail::Corrupt(e) => {
                assert_eq!(e.offset(), start as u64);
                corrupt += 1;
            }
            Tail::Torn { dropped, .. } => {
                assert_eq!(dropped, file.len() - start);
                torn += 1;
            }
            t => panic!("bit {bit}: {t:?}"),
        }
    }
    (torn, corrupt)
}

#[test]
fn every_bit_flip_in_a_record_is_detected() {
    let records = small_records();
    for at in 0..records.len() {
        let (torn, corrupt) = flip_every_bit(&records, at);
        let last = at == records.len() - 1;
        if last {
            // The last record: a damaged record at the end is what a torn write leaves; only a length
            // shrunk by the flip leaves bytes after the record it claims, which reads as corrupt.
            assert!(corrupt <= 32, "record {at}: {corrupt} corrupt");
        } else {
            // Mid-file: only a length grown past the end of the file reads as torn.
            assert!(
                corrupt > torn,
                "record {at}: {torn} torn, {corrupt} corrupt"
            );
        }
        // Every flip of a checksum or body byte is a checksum error: corrupt mid-file, torn at the end.
        let file = file_of(&records);
        let start = file_of(&records[..at]).len();
        let end = file_of(&records[..=at]).len();
        for bit in (start + 4) * 8..end * 8 {
            let mut bad = file.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let tail = replay(&bad).tail;
            let ok = match tail {
                Tail::Corrupt(RecordError::Checksum { .. }) => !last,
                Tail::Torn {
                    error: Some(RecordError::Checksum { .. }),
                    ..
                } => last,
                _ => false,
            };
            assert!(ok, "record {at}, bit {bit}: {tail:?}");
        }
    }
}

#[test]
fn a_huge_length_is_refused_without_allocating() {
    let mut buf = vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
    assert_eq!(
        decode(&buf),
        Err(RecordError::TooLarge {
            offset: 0,
            len: u32::MAX
        })
    );
    // At the bound it is merely incomplete: nothing is read or allocated until the bytes are there.
    buf[..4].copy_from_slice(&MAX_BODY_LEN.to_le_bytes());
    assert_eq!(decode(&buf), Ok(None));
    // In a file, with data after it, it is corruption at its offset.
    let mut file = file_of(&small_records()[..2]);
    let at = file.len();
    file.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]);
    let r = replay(&file);
    assert_eq!(r.records.len(), 2);
    assert_eq!(r.good_len, at);
    // A length past the end of the file is a torn tail, whatever its size.
    assert!(matches!(
        r.tail,
        Tail::Torn {
            dropped: 8,
            error: Some(RecordError::TooLarge { .. })
        }
    ));
}

#[test]
fn zero_fill_after_the_last_record_is_a_torn_tail() {
    let mut file = file_of(&small_records()[..3]);
    let good = file.len();
    file.extend_from_slice(&[0; 4096]);
    let r = replay(&file);
    assert_eq!(r.records.len(), 3);
    assert_eq!(r.good_len, good);
    assert!(matches!(
        r.tail,
        Tail::Torn {
            dropped: 4096,
            error: Some(_)
        }
    ));
}

#[test]
fn a_valid_checksum_over_a_bad_body_is_corrupt() {
    fn framed(body: &[u8]) -> Vec<u8> {
        let len = (body.len() as u32).to_le_bytes();
        let crc = frame_crc(&len, body);
        [&len[..], &crc.to_le_bytes(), body].concat()
    }
    let cases: [(&[u8], &str); 8] = [
        (&[99], "unknown kind"),
        (&[], "empty body"),
        (&[kind::DONE, 1, 0, b'c', 0, 0], "packet id 0"),
        (&[kind::RETAIN_CLEAR, 2, 0, 0xC3, 0x28], "not UTF-8"),
        (&[kind::SESSION_GONE, 1, 0, b'c', 0], "trailing byte"),
        (
            &[kind::SUBSCRIBE, 1, 0, b'c', 1, 0, b'f', 0x80],
            "reserved option bit",
        ),
        (
            &[kind::SUBSCRIBE, 1, 0, b'c', 1, 0, b'f', 0x40, 0, 0, 0, 0],
            "subscription identifier 0",
        ),
        (
            &[kind::SUBSCRIBE, 1, 0, b'c', 1, 0, b'f', 0x41, 7, 0],
            "subscription identifier cut short",
        ),
    ];
    for (body, what) in cases {
        let mut file = file_of(&[]).to_vec();
        file.extend(framed(body));
        // Followed by a good record, and last in the file: corrupt either way (the checksum held).
        let mut tail = BytesMut::new();
        encode(&Record::RetainClear { topic: s("t") }, &mut tail).unwrap();
        for extra in [&tail[..], &[]] {
            let mut f = file.clone();
            f.extend_from_slice(extra);
            let r = replay(&f);
            assert!(r.records.is_empty(), "{what}");
            assert!(
                matches!(r.tail, Tail::Corrupt(e) if e.offset() == HEADER_LEN as u64),
                "{what}: {:?}",
                r.tail
            );
        }
    }
}

#[test]
fn the_step_decoder_tracks_file_offsets() {
    let records = small_records();
    let file = file_of(&records);
    let mut d = Decoder::new(HEADER_LEN as u64);
    let mut got = Vec::new();
    while let Some((r, _)) = d.next(&file[d.offset() as usize..]).unwrap() {
        got.push(r);
    }
    assert_eq!(got, records);
    assert_eq!(d.offset(), file.len() as u64);
}

#[test]
fn an_oversized_string_is_an_encode_error_and_writes_nothing() {
    let mut out = BytesMut::from(&b"keep"[..]);
    let long = Utf8Bytes::from("x".repeat(70_000));
    let e = encode(&Record::RetainClear { topic: long }, &mut out);
    assert!(matches!(
        e,
        Err(RecordEncodeError::Field(EncodeError::StringTooLong { .. }))
    ));
    assert_eq!(&out[..], b"keep");
}

fn utf8() -> impl Strategy<Value = Utf8Bytes> {
    "[a-z/ü$+#🦀 -]{0,12}".prop_map(Utf8Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Properties a PUBLISH (`will == false`) or a will may carry.
fn props(will: bool) -> impl Strategy<Value = Properties> {
    (
        proptest::option::of(0u8..=1),
        proptest::option::of(any::<u32>()),
        proptest::option::of(utf8()),
        proptest::option::of("[a-z/]{1,8}".prop_map(Utf8Bytes::from)),
        proptest::option::of(bytes(16)),
        proptest::collection::vec(1u32..=MAX_VAR_INT, 0..3),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec((utf8(), utf8()), 0..3),
    )
        .prop_map(move |p| Properties {
            payload_format_indicator: p.0,
            message_expiry_interval: p.1,
            content_type: p.2,
            response_topic: p.3,
            correlation_data: p.4,
            subscription_identifiers: if will {
                SmallVec::new()
            } else {
                SmallVec::from_vec(p.5)
            },
            will_delay_interval: if will { p.6 } else { None },
            user_properties: p.7,
            ..Properties::default()
        })
}

fn durable_key() -> impl Strategy<Value = DurableKey> {
    (any::<u64>(), utf8(), 1u16..).prop_map(|r| DurableKey {
        key: r.0,
        publisher: r.1,
        packet_id: r.2,
    })
}

fn stored_message() -> impl Strategy<Value = StoredMessage> {
    (
        utf8(),
        bytes(64),
        qos(),
        any::<bool>(),
        proptest::option::of(props(false)),
    )
        .prop_map(|(topic, payload, qos, retain, p)| StoredMessage {
            topic,
            payload,
            qos,
            retain,
            properties: p.filter(|p| !p.is_empty()).map(Box::new),
        })
}

fn record() -> impl Strategy<Value = Record> {
    let will = (utf8(), bytes(32), qos(), any::<bool>(), props(true)).prop_map(|w| LastWill {
        topic: w.0,
        payload: w.1,
        qos: w.2,
        retain: w.3,
        properties: w.4,
    });
    let version = select(vec![
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ]);
    let options = (
        (0u8..64).prop_filter_map("valid options", |b| read_options(b).ok()),
        prop_oneof![Just(0u32), 1u32..=268_435_455],
    )
        .prop_map(|(o, identifier)| SubscriptionOptions { identifier, ..o });
    prop_oneof![
        (
            utf8(),
            version,
            any::<u32>(),
            proptest::option::of(will),
            proptest::option::of(utf8()),
            any::<u16>(),
            any::<u64>()
        )
            .prop_map(|r| Record::Session {
                client_id: r.0,
                protocol: r.1,
                expiry_interval: r.2,
                will: r.3.map(Box::new),
                username: r.4,
                listener: r.5,
                away_since: r.6,
            }),
        utf8().prop_map(|client_id| Record::SessionGone { client_id }),
        (utf8(), utf8(), options).prop_map(|r| Record::Subscribe {
            client_id: r.0,
            filter: r.1,
            options: r.2,
        }),
        (utf8(), utf8()).prop_map(|r| Record::Unsubscribe {
            client_id: r.0,
            filter: r.1
        }),
        (
            any::<u64>(),
            proptest::option::of(durable_key()),
            stored_message()
        )
            .prop_map(|r| {
                Record::Message {
                    message_id: r.0,
                    key: r.1,
                    message: r.2,
                }
            }),
        (
            utf8(),
            1u16..,
            any::<u64>(),
            proptest::option::of(stored_message())
        )
            .prop_map(|r| {
                Record::Accepted {
                    client_id: r.0,
                    packet_id: r.1,
                    key: r.2,
                    message: r.3,
                }
            }),
        (utf8(), 1u16.., any::<u64>()).prop_map(|r| Record::AcceptedDone {
            client_id: r.0,
            packet_id: r.1,
            key: r.2,
        }),
        any::<u64>().prop_map(|key| Record::Routed { key }),
        durable_key().prop_map(Record::Seen),
        (utf8(), any::<u64>(), 0u8..3, any::<bool>()).prop_map(|r| Record::Queue {
            client_id: r.0,
            message_id: r.1,
            qos: QoS::from_u8(r.2).unwrap(),
            retain: r.3,
        }),
        (utf8(), any::<u64>(), 1u16..).prop_map(|r| Record::Inflight {
            client_id: r.0,
            message_id: r.1,
            packet_id: r.2,
        }),
        (utf8(), 1u16..).prop_map(|r| Record::Released {
            client_id: r.0,
            packet_id: r.1
        }),
        (utf8(), 1u16..).prop_map(|r| Record::Done {
            client_id: r.0,
            packet_id: r.1
        }),
        (utf8(), any::<u64>()).prop_map(|r| Record::Discard {
            client_id: r.0,
            message_id: r.1
        }),
        stored_message().prop_map(|message| Record::Retain { message }),
        utf8().prop_map(|topic| Record::RetainClear { topic }),
    ]
}

proptest! {
    #[test]
    fn random_records_replay_as_written(records in proptest::collection::vec(record(), 0..24)) {
        let file = file_of(&records);
        let r = replay(&file);
        prop_assert_eq!(r.tail, Tail::Clean);
        prop_assert_eq!(r.good_len, file.len());
        prop_assert_eq!(r.records, records);
    }

    #[test]
    fn random_bytes_after_a_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut file = file_of(&[]).to_vec();
        file.extend(tail);
        let r = replay(&file);
        prop_assert!(r.good_len <= file.len());
    }
}

/// A session record written before `away_since` existed ends after the will: it still decodes, as
/// a client that was connected (0).
#[test]
fn a_session_record_without_away_since_decodes_as_connected() {
    let record = Record::Session {
        client_id: s("old"),
        protocol: ProtocolVersion::V5,
        expiry_interval: 60,
        will: None,
        username: None,
        listener: 0,
        away_since: 7,
    };
    let mut out = BytesMut::new();
    encode(&record, &mut out).unwrap();
    // The same body without its last 8 bytes, framed again.
    let body = &out[FRAME_LEN..out.len() - 8];
    let len = (body.len() as u32).to_le_bytes();
    let mut old = BytesMut::new();
    old.extend_from_slice(&len);
    old.extend_from_slice(&frame_crc(&len, body).to_le_bytes());
    old.extend_from_slice(body);
    let (decoded, used) = decode(&old).unwrap().unwrap();
    assert_eq!(used, old.len());
    let Record::Session { away_since, .. } = decoded else {
        panic!("{decoded:?}");
    };
    assert_eq!(away_since, 0);
}

#[test]
fn a_subscription_identifier_follows_bit_6_of_the_options_byte_and_only_then() {
    let record = |identifier| Record::Subscribe {
        client_id: s("c"),
        filter: s("f"),
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            identifier,
            ..SubscriptionOptions::default()
        },
    };
    let body = |r: &Record| {
        let mut out = BytesMut::new();
        encode(r, &mut out).unwrap();
        out[FRAME_LEN..].to_vec()
    };
    // Without one, byte for byte what was written before identifiers were stored (so files written
    // before read unchanged).
    assert_eq!(
        body(&record(0)),
        [kind::SUBSCRIBE, 1, 0, b'c', 1, 0, b'f', 0x01]
    );
    assert_eq!(
        body(&record(0x0102_0304)),
        [kind::SUBSCRIBE, 1, 0, b'c', 1, 0, b'f', 0x41, 4, 3, 2, 1]
    );
    for identifier in [0, 1, 0x0102_0304, 268_435_455] {
        let mut out = BytesMut::new();
        encode(&record(identifier), &mut out).unwrap();
        assert_eq!(decode(&out).unwrap().unwrap().0, record(identifier));
    }
}
