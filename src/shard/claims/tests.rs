//! A persistent session as the cluster keeps it (`tell_state`), adopted by another node's shard
//! (`adopt`), the messages a dead node's queue held for it (`deliver_owed`), and a session moving
//! between nodes (`evict`, the stub, `claimed`; `moves`): one shard, no sockets, shard 1 of the
//! fixture standing in for the link.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{Connect, Properties, ProtocolVersion, QoS, Utf8Bytes};
use crate::message::Message;
use crate::persist::record::{self, Record};
use crate::router::Mail;
use crate::session::Outbox;
use crate::settings::Settings;
use crate::shard::attached::Attached;
use crate::shard::testing::{subscribe, Fixture};
use crate::shard::Shard;

fn linked() -> Fixture {
    let mut f = Fixture::new(Settings::local(2));
    f.shard.link = Some(1);
    f
}

fn attach(shard: &mut Shard, id: &'static str, clean_start: bool) -> (Attached, bool) {
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start,
        keep_alive: 60,
        client_id: Utf8Bytes::from_static(id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    let before = shard.sessions.slot_of(&connect.client_id).is_some();
    (
        shard.attach(&connect, Properties::default(), Rc::new(Outbox::new()), 0),
        before,
    )
}

/// The last `Mail::State` the link got for `id`: Some(image) or None (ended); panics if none came.
fn last_state(f: &Fixture, id: &str) -> Option<Bytes> {
    f.mail_to(1)
        .into_iter()
        .filter_map(|m| match m {
            Mail::State { client_id, image } if &*client_id == id => Some(image),
            _ => None,
        })
        .last()
        .expect("a state for the link")
}

/// A QoS 1 message on `topic`, as a dead node's queue or the node a session left passes it on.
fn owed(topic: &'static str) -> Arc<Message> {
    Arc::new(Message::new(
        Utf8Bytes::from_static(topic),
        Bytes::from_static(b"owed"),
        QoS::AtLeastOnce,
        false,
        Properties::default(),
        None,
    ))
}

#[test]
fn a_persistent_session_is_kept_with_its_subscriptions_and_a_clean_one_is_not() {
    let mut f = linked();
    let (mut p, _) = attach(&mut f.shard, "p", false);
    subscribe(&mut f.shard, &mut p, "a/#", QoS::AtLeastOnce);
    let image = last_state(&f, "p").expect("kept");
    let mut seen = Vec::new();
    record::scan(&image, |r| match r {
        Record::Session {
            client_id, will, ..
        } => seen.push(format!("session {client_id} {}", will.is_some())),
        Record::Subscribe { filter, .. } => seen.push(format!("subscribe {filter}")),
        other => seen.push(format!("{other:?}")),
    });
    assert_eq!(seen, ["session p false", "subscribe a/#"]);

    let (mut c, _) = attach(&mut f.shard, "c", true);
    subscribe(&mut f.shard, &mut c, "b", QoS::AtLeastOnce);
    assert_eq!(last_state(&f, "c"), None, "a clean session is not kept");

    // Resumed clean: the session ends, and the link forgets it; the client id stays this node's
    // (the new connection has it).
    attach(&mut f.shard, "p", true);
    let mail = f.mail_to(1);
    assert!(mail
        .iter()
        .any(|m| matches!(m, Mail::State { client_id, image: None } if &**client_id == "p")));
    assert!(!mail.iter().any(|m| matches!(m, Mail::Unclaim { .. })));

    // A clean session's connection ends: its client id is released in the cluster.
    f.shard
        .detach(&c, crate::session::CloseReason::ClientDisconnect);
    let unclaimed: Vec<String> = f
        .mail_to(1)
        .into_iter()
        .filter_map(|m| match m {
            Mail::Unclaim { client_id } => Some(client_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(unclaimed, ["c"]);
}

#[test]
fn an_adopted_session_gets_the_dead_nodes_queue_and_resumes() {
    let mut dead = linked();
    let (mut p, _) = attach(&mut dead.shard, "p", false);
    subscribe(&mut dead.shard, &mut p, "a/+", QoS::AtLeastOnce);
    let image = last_state(&dead, "p").expect("kept");

    let mut f = linked();
    f.shard.adopt(&image);
    assert!(
        f.mail_to(1)
            .iter()
            .any(|m| matches!(m, Mail::State { client_id, image: Some(_) } if &**client_id == "p")),
        "the adopter keeps it for the cluster now"
    );
    let clients: Arc<[Utf8Bytes]> =
        vec![Utf8Bytes::from_static("p"), Utf8Bytes::from_static("gone")].into();
    f.shard.deliver_owed(&clients, &owed("a/1"));
    f.shard.deliver_owed(&clients, &owed("b/1"));
    f.shard.deliver_owed(&clients, &owed("a/2/3"));
    let slot = f
        .shard
        .sessions
        .slot_of(&Utf8Bytes::from_static("p"))
        .expect("adopted");
    let session = f.shard.sessions.at(slot).expect("adopted");
    assert_eq!(
        session.pending_len(),
        (0, 1),
        "only a/1 matches a/+, queued"
    );

    let (p, present) = attach(&mut f.shard, "p", false);
    assert!(present, "the client resumes the adopted session");
    let session = f.shard.sessions.get(p.slot, p.generation).expect("resumed");
    assert_eq!(session.pending_len(), (1, 0), "the owed message went out");
}

/// Another node claims client `m` from `f`: the session and what it did lately, as the link gets
/// them to answer that node.
fn evict_m(f: &mut Fixture) -> (Bytes, crate::router::Lately) {
    f.shard.evict(1, &Utf8Bytes::from_static("m"), true);
    f.mail_to(1)
        .into_iter()
        .find_map(|mail| match mail {
            Mail::Evicted {
                session: Some(s),
                lately,
                ..
            } => Some((s, lately)),
            _ => None,
        })
        .expect("the session goes to the claiming node")
}

#[test]
fn a_session_that_moves_stays_a_moment_as_a_stub_and_takes_each_message_once() {
    let topic_msg = |shard: &mut Shard, topic: &'static str, origin: Option<(u16, u32)>| {
        let mut m = Message::new(
            Utf8Bytes::from_static(topic),
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
            Properties::default(),
            origin,
        );
        shard.name_message(&mut m);
        assert_ne!(m.id, 0, "named in cluster mode");
        m
    };
    // On the node it leaves: given one message, then claimed by another node.
    let mut old = linked();
    let (mut m, _) = attach(&mut old.shard, "m", false);
    subscribe(&mut old.shard, &mut m, "a/+", QoS::AtLeastOnce);
    let p = crate::shard::testing::connect(&mut old.shard, "p");
    let origin = Some((old.shard.id, p.slot));
    let before = topic_msg(&mut old.shard, "a/1", origin);
    let before_id = before.id;
    old.shard.route(before);
    let (snapshot, lately) = evict_m(&mut old);
    assert!(
        lately.seen.contains(&before_id),
        "what it owes goes with its id"
    );

    // Its stub: what this node publishes to it goes after it, through the link.
    let stub = old.shard.sessions.slot_of(&Utf8Bytes::from_static("m"));
    assert!(stub.is_some_and(|slot| old.shard.moves.is_stub(slot)));
    let after = topic_msg(&mut old.shard, "a/2", origin);
    let after_copy = Arc::new(after.clone());
    old.shard.route(after);
    let followed: Vec<String> = old
        .mail_to(1)
        .into_iter()
        .filter_map(|mail| match mail {
            Mail::Follow { client_id, msg } if &*client_id == "m" => Some(msg.topic.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(followed, ["a/2"]);
    old.shard
        .end_moves(std::time::Instant::now() + std::time::Duration::from_secs(60));
    assert!(
        old.shard
            .sessions
            .slot_of(&Utf8Bytes::from_static("m"))
            .is_none(),
        "the stub goes in its time"
    );

    // On the node it goes to: each message once, however many ways it comes.
    let mut new = linked();
    new.shard.claimed(1, Some(snapshot), Some(&lately));
    let pending = |f: &Fixture| {
        let slot = f.shard.sessions.slot_of(&Utf8Bytes::from_static("m"));
        let (inflight, queued) = f
            .shard
            .sessions
            .at(slot.expect("moved"))
            .unwrap()
            .pending_len();
        inflight + queued
    };
    assert_eq!(pending(&new), 1, "a/1, owed");
    let clients: Arc<[Utf8Bytes]> = vec![Utf8Bytes::from_static("m")].into();
    let mut again = (*after_copy).clone();
    again.topic = Utf8Bytes::from_static("a/1");
    again.id = before_id;
    new.shard.deliver_owed(&clients, &Arc::new(again));
    assert_eq!(pending(&new), 1, "a/1 again (sent directly too): dropped");
    new.shard.deliver_owed(&clients, &after_copy);
    assert_eq!(pending(&new), 2, "a/2, followed");
    new.shard.route(Message::clone(&after_copy));
    assert_eq!(pending(&new), 2, "a/2 again, routed here: dropped");
    // Sent here directly while the old node may still pass its twin on: it waits for it, then
    // (no twin) goes on the tick after its wait.
    let direct = topic_msg(&mut new.shard, "a/3", None);
    new.shard.route(direct);
    assert_eq!(pending(&new), 2, "a/3 waits for its twin");
    new.shard
        .end_moves(std::time::Instant::now() + std::time::Duration::from_secs(2));
    assert_eq!(pending(&new), 3, "a/3 given after its wait");
}

/// The snapshot a moving session leaves with (`journal::write_session`), as `evict` writes it.
fn moving_snapshot(f: &Fixture, id: &'static str) -> Bytes {
    let slot = f
        .shard
        .sessions
        .slot_of(&Utf8Bytes::from_static(id))
        .expect("a session");
    let s = f.shard.sessions.at(slot).expect("a session");
    let mut w = crate::persist::image::SnapshotWriter::new(0, 1);
    crate::shard::journal::write_session(&mut w, s, true);
    w.finish().freeze()
}

/// Topics of what the session `id` owes, in order.
fn owed_topics(f: &Fixture, id: &'static str) -> Vec<String> {
    let slot = f
        .shard
        .sessions
        .slot_of(&Utf8Bytes::from_static(id))
        .expect("a session");
    let mut topics = Vec::new();
    f.shard
        .sessions
        .at(slot)
        .expect("a session")
        .for_each_owed_all(|_, m, _, _, _, _| topics.push(m.topic.to_string()));
    topics
}

/// A session moved on twice keeps every message it owes: what it brought from the first node and
/// what was queued for it on the second are two messages in the second move's snapshot (the copy
/// it brought kept the first snapshot's number, which the one queued later was given too, and it
/// became a second copy of the first).
#[test]
fn a_session_moved_twice_keeps_each_message_it_owes() {
    let clients: Arc<[Utf8Bytes]> = vec![Utf8Bytes::from_static("p")].into();
    let mut first = linked();
    let (mut p, _) = attach(&mut first.shard, "p", false);
    subscribe(&mut first.shard, &mut p, "a/+", QoS::AtLeastOnce);
    first
        .shard
        .detach(&p, crate::session::CloseReason::ClientDisconnect);
    first.shard.deliver_owed(&clients, &owed("a/1"));
    assert_eq!(owed_topics(&first, "p"), ["a/1"]);

    let mut second = linked();
    second
        .shard
        .import_session(&moving_snapshot(&first, "p"), None);
    second.shard.deliver_owed(&clients, &owed("a/2"));
    assert_eq!(owed_topics(&second, "p"), ["a/1", "a/2"]);

    let mut third = linked();
    third
        .shard
        .import_session(&moving_snapshot(&second, "p"), None);
    assert_eq!(owed_topics(&third, "p"), ["a/1", "a/2"]);
}

/// A copy passed on for a session (`deliver_owed`) that was received before one of its
/// subscriptions was made is not for that subscription, as on one broker (`lookback`): it was on
/// its way when the client subscribed.
#[test]
fn a_copy_received_before_a_subscription_is_not_for_it() {
    let mut f = linked();
    f.shard.lookback = crate::shard::lookback::Lookback::for_cluster();
    let (mut p, _) = attach(&mut f.shard, "p", false);
    subscribe(&mut f.shard, &mut p, "a/+", QoS::AtLeastOnce);
    f.shard
        .detach(&p, crate::session::CloseReason::ClientDisconnect);
    let now = crate::shard::now_ns();
    f.shard
        .lookback
        .subscribed(p.slot, &Utf8Bytes::from_static("a/+"), now);
    let clients: Arc<[Utf8Bytes]> = vec![Utf8Bytes::from_static("p")].into();
    for (topic, read_at) in [("a/before", now - 1_000), ("a/after", now + 1_000)] {
        let mut m = owed(topic);
        Arc::get_mut(&mut m).expect("one owner").read_at = read_at;
        f.shard.deliver_owed(&clients, &m);
    }
    assert_eq!(owed_topics(&f, "p"), ["a/after"]);
}

/// A moving session takes with it the ids of what it was given lately (the shard's lookback), not
/// only of what it still owes: the new node drops a late twin of one of those (one sent there
/// directly, arriving after the session) instead of giving it again, without DUP.
#[test]
fn a_moving_session_takes_the_ids_of_what_it_was_given_lately() {
    let mut old = linked();
    old.shard.lookback = crate::shard::lookback::Lookback::for_cluster();
    let (mut m, _) = attach(&mut old.shard, "m", false);
    subscribe(&mut old.shard, &mut m, "a/+", QoS::AtMostOnce);
    let mut ids = Vec::new();
    for topic in ["a/1", "b/1"] {
        let mut msg = Message::new(
            Utf8Bytes::from_static(topic),
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
            Properties::default(),
            None,
        );
        old.shard.name_message(&mut msg);
        msg.read_at = crate::shard::lookback::now_ns();
        ids.push(msg.id);
        old.shard.route(msg);
    }
    let pending = old.shard.sessions.at(m.slot).expect("m").pending_len();
    assert_eq!(pending, (0, 0), "a/1 was given at QoS 0: nothing owed");
    let seen = evict_m(&mut old).1.seen;
    assert!(seen.contains(&ids[0]), "a/1, given: its id goes along");
    assert!(!seen.contains(&ids[1]), "b/1 was not for it");
}

/// A young subscription keeps its SUBSCRIBE's time when its session moves: a copy of a message
/// received before it, reaching the new node late, is not for it there either (as on one broker,
/// `lookback`); one received after it is.
#[test]
fn a_young_subscription_keeps_its_time_on_the_node_it_moves_to() {
    let mut old = linked();
    old.shard.lookback = crate::shard::lookback::Lookback::for_cluster();
    let (mut m, _) = attach(&mut old.shard, "m", false);
    subscribe(&mut old.shard, &mut m, "a/+", QoS::AtLeastOnce);
    let now = crate::shard::now_ns();
    old.shard
        .lookback
        .subscribed(m.slot, &Utf8Bytes::from_static("a/+"), now);
    let (snapshot, lately) = evict_m(&mut old);
    assert_eq!(lately.subscribed, [(Utf8Bytes::from_static("a/+"), now)]);

    let mut new = linked();
    new.shard.lookback = crate::shard::lookback::Lookback::for_cluster();
    new.shard.claimed(1, Some(snapshot), Some(&lately));
    let clients: Arc<[Utf8Bytes]> = vec![Utf8Bytes::from_static("m")].into();
    for (topic, read_at) in [("a/before", now - 1_000), ("a/after", now + 1_000)] {
        let mut m = owed(topic);
        let m_mut = Arc::get_mut(&mut m).expect("one owner");
        m_mut.read_at = read_at;
        m_mut.id = read_at;
        new.shard.deliver_owed(&clients, &m);
    }
    assert_eq!(owed_topics(&new, "m"), ["a/after"]);
}
