//! Unit tests of [`Session`]: queue limits, congestion, drops and the frames it writes.

use super::*;
use bytes::{Bytes, BytesMut};

fn msg() -> Rc<Framed> {
    let m = Message::new(
        Utf8Bytes::from("t"),
        Bytes::from_static(b"p"),
        QoS::AtLeastOnce,
        false,
        Default::default(),
        None,
    );
    Rc::new(Framed::new(std::sync::Arc::new(m), false))
}

fn limits() -> Limits {
    Limits {
        max_inflight: 2,
        max_queued_messages: 10,
        ..Limits::default()
    }
}

fn offer(s: &mut Session, n: usize) -> Vec<Delivery> {
    offer_with(s, n, true)
}

fn offer_with(s: &mut Session, n: usize, slack: bool) -> Vec<Delivery> {
    let m = msg();
    (0..n)
        .map(|_| {
            s.deliver(
                &m,
                QoS::AtLeastOnce,
                false,
                &[],
                &limits(),
                slack,
                &mut NoLedger,
            )
        })
        .collect()
}

#[test]
fn an_away_session_queues_exactly_max_queued_messages() {
    let mut s = Session::new(Utf8Bytes::from("c"), ProtocolVersion::V311, false, 1);
    let d = offer(&mut s, 12);
    assert!(d[..10].iter().all(|d| *d == Delivery::Queued));
    assert!(d[10..].iter().all(|d| *d == Delivery::Dropped));
    assert!(!s.congested(&limits(), Instant::now()));
}

#[test]
fn a_progressing_client_is_congested_at_half_and_gets_slack_up_to_twice() {
    let mut s = Session::new(Utf8Bytes::from("c"), ProtocolVersion::V311, false, 1);
    s.resume(Rc::new(Outbox::new()), &limits(), &mut NoLedger);
    let d = offer(&mut s, 2 + 4);
    assert!(d[..2].iter().all(|d| *d == Delivery::Sent), "{d:?}");
    assert!(!s.congested(&limits(), Instant::now()), "4 queued of 10");
    offer(&mut s, 1);
    assert!(s.congested(&limits(), Instant::now()), "5 queued of 10");
    let d = offer(&mut s, 16);
    assert_eq!(d.iter().filter(|d| **d == Delivery::Queued).count(), 15);
    assert_eq!(
        d.last(),
        Some(&Delivery::Dropped),
        "20 queued = twice the limit"
    );
    // A client that stopped acknowledging is not waited for.
    let later = Instant::now() + PROGRESS_WINDOW + Duration::from_millis(1);
    assert!(!s.congested(&limits(), later));
    // Acknowledging frees the window and sends from the queue, in order.
    let (inflight, queued) = s.pending_len();
    assert_eq!((inflight, queued), (2, 20));
    assert!(s.on_puback(1, &limits(), &mut NoLedger));
    assert_eq!(s.pending_len(), (2, 19));
}

#[test]
fn without_slack_a_progressing_client_gets_exactly_the_limits() {
    let mut s = Session::new(Utf8Bytes::from("c"), ProtocolVersion::V311, false, 1);
    s.resume(Rc::new(Outbox::new()), &limits(), &mut NoLedger);
    let d = offer_with(&mut s, 2 + 12, false);
    assert_eq!(d.iter().filter(|d| **d == Delivery::Sent).count(), 2);
    assert_eq!(d.iter().filter(|d| **d == Delivery::Queued).count(), 10);
    assert_eq!(d.iter().filter(|d| **d == Delivery::Dropped).count(), 2);
    assert!(
        s.congested(&limits(), Instant::now()),
        "it still counts as congested"
    );
}

#[test]
fn keeps_up_until_its_queue_is_half_full() {
    let m = msg();
    let mut s = Session::new(Utf8Bytes::from("c"), ProtocolVersion::V311, false, 1);
    assert_eq!(
        s.keeps_up(&m, QoS::AtLeastOnce, &limits()),
        None,
        "away: does not count"
    );
    s.resume(Rc::new(Outbox::new()), &limits(), &mut NoLedger);
    assert_eq!(s.keeps_up(&m, QoS::AtLeastOnce, &limits()), Some(true));
    // A full window and a short queue (a burst) is not falling behind.
    offer(&mut s, 2 + 4);
    assert_eq!(s.pending_len(), (2, 4));
    assert_eq!(s.keeps_up(&m, QoS::AtLeastOnce, &limits()), Some(true));
    // Half of `max_queued_messages` queued: behind.
    offer(&mut s, 1);
    assert_eq!(s.keeps_up(&m, QoS::AtLeastOnce, &limits()), Some(false));
    assert!(s.on_puback(1, &limits(), &mut NoLedger));
    assert_eq!(s.pending_len(), (2, 4));
    assert_eq!(s.keeps_up(&m, QoS::AtLeastOnce, &limits()), Some(true));
    // QoS 0 goes by the outbox, not the queue.
    offer(&mut s, 1);
    assert_eq!(s.keeps_up(&m, QoS::AtLeastOnce, &limits()), Some(false));
    assert_eq!(s.keeps_up(&m, QoS::AtMostOnce, &limits()), Some(true));
    let tiny = Limits {
        outbox_soft_limit: 1,
        ..limits()
    };
    assert_eq!(s.keeps_up(&m, QoS::AtMostOnce, &tiny), Some(false));
    // A message larger than the client accepts would be discarded: it does not count.
    s.maximum_packet_size = 4;
    assert_eq!(s.keeps_up(&m, QoS::AtLeastOnce, &limits()), None);
}

#[test]
fn a_drop_episode_is_reported_once_until_the_queue_drained() {
    let mut s = Session::new(Utf8Bytes::from("c"), ProtocolVersion::V311, false, 1);
    s.resume(Rc::new(Outbox::new()), &limits(), &mut NoLedger);
    offer_with(&mut s, 2 + 10, false);
    assert!(s.note_dropped(), "the first drop starts an episode");
    assert!(!s.note_dropped());
    // Room for one more: still the same episode.
    assert!(s.on_puback(1, &limits(), &mut NoLedger));
    assert!(!s.note_dropped());
    // Drained to a quarter (2 of 10): the next drop is a new episode.
    for id in 2..=8 {
        assert!(s.on_puback(id, &limits(), &mut NoLedger));
    }
    assert_eq!(s.pending_len(), (2, 2));
    assert!(s.note_dropped());
    // A new connection starts afresh, as in Mosquitto.
    s.resume(Rc::new(Outbox::new()), &limits(), &mut NoLedger);
    assert!(s.note_dropped());
}

/// A PUBLISH is queued as the codec's header, then the shared payload by reference when large, with
/// and without v5 properties, encoded per subscriber or once for a fan-out (then copied with each
/// subscriber's flags and packet id); what each client reads decodes to the message.
#[test]
fn a_publish_is_queued_as_its_header_then_the_shared_payload() {
    let properties = codec::Properties {
        user_properties: vec![("k".into(), "v".into())],
        message_expiry_interval: Some(60),
        ..Default::default()
    };
    for (version, properties) in [
        (ProtocolVersion::V311, codec::Properties::default()),
        (ProtocolVersion::V5, codec::Properties::default()),
        (ProtocolVersion::V5, properties),
    ] {
        for len in [1, outbox::SHARE_MIN] {
            let m = std::sync::Arc::new(Message::new(
                Utf8Bytes::from("a/b"),
                Bytes::from(vec![7; len]),
                QoS::ExactlyOnce,
                true,
                properties.clone(),
                None,
            ));
            for fan_out in [false, true] {
                let framed = Framed::new(m.clone(), fan_out);
                // Several subscribers of one message: other flags and packet ids each time.
                let deliveries = [
                    (QoS::AtLeastOnce, 9, true, false),
                    (QoS::ExactlyOnce, 0x1234, false, true),
                    (QoS::AtMostOnce, 0, false, true),
                    (QoS::AtLeastOnce, 10, false, false),
                ];
                for (qos, packet_id, dup, retain) in deliveries {
                    let conn = Outbox::new();
                    framed.write(
                        &conn,
                        version,
                        0,
                        qos,
                        packet_id,
                        dup,
                        retain,
                        Default::default(),
                    );
                    let mut chunks = VecDeque::new();
                    conn.take(&mut chunks);
                    let mut wire = BytesMut::new();
                    for c in &chunks {
                        wire.extend_from_slice(c.as_slice());
                    }
                    if len >= outbox::SHARE_MIN {
                        // Header, then the message's own payload buffer (not a copy).
                        assert_eq!(chunks.len(), 2, "{version:?}");
                        assert!(
                            matches!(&chunks[1], Chunk::Shared(p) if p.as_ptr() == m.payload.as_ptr())
                        );
                    } else {
                        assert_eq!(chunks.len(), 1, "{version:?}");
                    }
                    let expected = codec::Packet::Publish(codec::Publish {
                        dup,
                        qos,
                        retain,
                        topic: m.topic.clone(),
                        packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
                        properties: if version == ProtocolVersion::V5 {
                            m.properties().clone()
                        } else {
                            Default::default()
                        },
                        payload: m.payload.clone(),
                    });
                    let decoded = codec::decode(&mut wire, version, usize::MAX);
                    assert_eq!(
                        decoded,
                        Ok(Some(expected)),
                        "{version:?} {len} {fan_out} {qos:?}"
                    );
                    assert!(wire.is_empty());
                }
                // One frame per kind: with and without a packet id.
                assert_eq!(framed.frames_cached(), if fan_out { 2 } else { 0 });
            }
        }
    }
    // A PUBLISH the codec refuses is not written at all (no payload without its header).
    let m = std::sync::Arc::new(Message::new(
        Utf8Bytes::from("t"),
        Bytes::from(vec![0; codec::MAX_VAR_INT as usize - 3]),
        QoS::AtMostOnce,
        false,
        Default::default(),
        None,
    ));
    for fan_out in [false, true] {
        let conn = Outbox::new();
        let framed = Framed::new(m.clone(), fan_out);
        framed.write(
            &conn,
            ProtocolVersion::V5,
            0,
            QoS::AtMostOnce,
            0,
            false,
            false,
            Default::default(),
        );
        framed.write(
            &conn,
            ProtocolVersion::V5,
            0,
            QoS::AtMostOnce,
            0,
            false,
            false,
            Default::default(),
        );
        assert_eq!(conn.pending_bytes(), 0);
    }
}

/// Everything queued on `conn` so far, decoded as v5 packets, and the chunks it was queued as.
fn drain_v5(conn: &Outbox) -> (Vec<codec::Packet>, VecDeque<Chunk>) {
    let mut chunks = VecDeque::new();
    conn.take(&mut chunks);
    let mut wire = BytesMut::new();
    for c in &chunks {
        wire.extend_from_slice(c.as_slice());
    }
    let mut packets = Vec::new();
    while let Some(p) = codec::decode(&mut wire, ProtocolVersion::V5, usize::MAX).unwrap() {
        packets.push(p);
    }
    assert!(wire.is_empty());
    (packets, chunks)
}

fn publish_of(p: &codec::Packet) -> &codec::Publish {
    match p {
        codec::Packet::Publish(p) => p,
        other => panic!("not a PUBLISH: {other:?}"),
    }
}

/// A v5 copy with properties of its own (topic alias, expiry left, subscription identifiers) gets a
/// header of its own; its payload is still the message's buffer, and the frame the fan-out shares
/// is neither used nor changed for it.
#[test]
fn a_copy_with_its_own_properties_keeps_the_payload_and_the_shared_frame() {
    let m = std::sync::Arc::new(Message::new(
        Utf8Bytes::from("a/b"),
        Bytes::from(vec![7; outbox::SHARE_MIN]),
        QoS::AtLeastOnce,
        false,
        codec::Properties {
            message_expiry_interval: Some(60),
            ..Default::default()
        },
        None,
    ));
    let framed = Framed::new(m.clone(), true);
    let plain = Outbox::new();
    let own = Outbox::new();
    let v5 = ProtocolVersion::V5;
    framed.write(
        &plain,
        v5,
        0,
        QoS::AtLeastOnce,
        1,
        false,
        false,
        PerCopy::default(),
    );
    let per = PerCopy {
        alias: Some(alias::AliasUse::Reuse(3)),
        expiry: Some(41),
        ids: &[5, 9],
    };
    framed.write(&own, v5, 0, QoS::AtLeastOnce, 2, false, false, per);
    framed.write(
        &plain,
        v5,
        0,
        QoS::AtLeastOnce,
        3,
        false,
        false,
        PerCopy::default(),
    );
    assert_eq!(framed.frames_cached(), 1, "only the shared kind is cached");
    let (plain_packets, plain_chunks) = drain_v5(&plain);
    let (own_packets, own_chunks) = drain_v5(&own);
    for chunks in [&plain_chunks, &own_chunks] {
        assert!(chunks
            .iter()
            .any(|c| matches!(c, Chunk::Shared(p) if p.as_ptr() == m.payload.as_ptr())));
    }
    for p in &plain_packets {
        let p = publish_of(p);
        assert_eq!((p.topic.as_str(), &p.properties), ("a/b", m.properties()));
    }
    let p = publish_of(&own_packets[0]);
    assert_eq!(p.topic.as_str(), "", "the alias stands for the topic");
    assert_eq!(p.properties.topic_alias, Some(3));
    assert_eq!(p.properties.message_expiry_interval, Some(41));
    assert_eq!(&p.properties.subscription_identifiers[..], &[5, 9]);
    assert_eq!(p.payload, m.payload);
}

/// A v5 session assigns topic aliases as it writes, and a queued message goes out with the expiry
/// interval it has left, or not at all once it passed.
#[test]
fn a_v5_session_aliases_topics_and_sends_what_is_left_of_the_expiry() {
    let mut s = Session::new(Utf8Bytes::from("c"), ProtocolVersion::V5, false, 1);
    let message = |topic: &str, expiry: u32, aged: u64| {
        let mut m = Message::new(
            Utf8Bytes::from(topic.to_owned()),
            Bytes::from_static(b"p"),
            QoS::AtLeastOnce,
            false,
            codec::Properties {
                message_expiry_interval: Some(expiry),
                ..Default::default()
            },
            None,
        );
        m.age_by(aged);
        Rc::new(Framed::new(std::sync::Arc::new(m), false))
    };
    let offer = |s: &mut Session, m: &Rc<Framed>| {
        s.deliver(
            m,
            QoS::AtLeastOnce,
            false,
            &[4],
            &limits(),
            false,
            &mut NoLedger,
        )
    };
    // Away: queued, the first to expire before the client is back.
    assert_eq!(offer(&mut s, &message("x", 2, 3)), Delivery::Expired);
    assert_eq!(offer(&mut s, &message("x", 10, 3)), Delivery::Queued);
    s.aliases = Some(Box::new(alias::OutboundAliases::new(1)));
    let conn = Rc::new(Outbox::new());
    assert_eq!(s.resume(conn.clone(), &limits(), &mut NoLedger), 1);
    assert_eq!(offer(&mut s, &message("x", 100, 0)), Delivery::Sent);
    // The window (2) is full: queued, then sent as the window frees.
    assert_eq!(offer(&mut s, &message("y", 100, 0)), Delivery::Queued);
    assert!(s.on_puback(1, &limits(), &mut NoLedger));
    let (packets, _) = drain_v5(&conn);
    let got: Vec<_> = packets
        .iter()
        .map(publish_of)
        .map(|p| {
            (
                p.topic.to_string(),
                p.properties.topic_alias,
                p.properties.message_expiry_interval,
                p.properties.subscription_identifiers.to_vec(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("x".to_string(), Some(1), Some(7), vec![4]),
            (String::new(), Some(1), Some(100), vec![4]),
            ("y".to_string(), Some(1), Some(100), vec![4]),
        ]
    );
    assert_eq!(
        s.take_expired(),
        0,
        "the expired one was refused, not queued"
    );
}

/// Every client keeps its session for as long as it is connected or its session lasts: its size is
/// paid a million times (memory per idle client, docs/PERFORMANCE.md). 256 bytes is one of
/// mimalloc's size classes; one byte more costs the next, 320.
#[test]
fn a_session_fits_in_256_bytes() {
    let size = std::mem::size_of::<Session>();
    eprintln!("Session: {size} bytes");
    assert!(size <= 256, "Session grew to {size} bytes");
}

#[test]
fn the_queues_are_allocated_while_messages_are_owed_only() {
    let mut s = Session::new(Utf8Bytes::from("c"), ProtocolVersion::V311, false, 1);
    s.resume(Rc::new(Outbox::new()), &limits(), &mut NoLedger);
    assert!(
        s.queues.0.is_none(),
        "a resumed session without messages has none"
    );
    offer(&mut s, 3);
    assert_eq!(s.pending_len(), (2, 1));
    assert!(s.on_puback(1, &limits(), &mut NoLedger));
    assert!(s.on_puback(2, &limits(), &mut NoLedger));
    assert_eq!(s.pending_len(), (1, 0), "the queued one moved up");
    assert!(s.queues.0.is_some());
    assert!(s.on_puback(3, &limits(), &mut NoLedger));
    assert_eq!(s.pending_len(), (0, 0));
    assert!(s.queues.0.is_none(), "let go with the last acknowledgement");
    offer(&mut s, 1);
    assert_eq!(s.pending_len(), (1, 0), "and allocated again for the next");
}
