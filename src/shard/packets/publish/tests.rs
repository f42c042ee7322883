//! What `slow_subscriber_policy` makes of a slow subscriber, one shard at a time and without sockets:
//! sessions attached to a [`Shard`] directly, packets handed to [`Shard::handle_packet`], and the
//! publisher's hold read with [`Shard::is_held`] as its reader would after each packet. Also how
//! `route` sees interest and holds other shards mailed before this shard's mail loop ran.

use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Instant;

use bytes::Bytes;

use crate::codec::{Packet, Properties, PubResponse, Publish, QoS, Utf8Bytes};
use crate::message::Message;
use crate::router::{Inbox, Mail, MailboxMatrix, UrgentInbox};
use crate::session::{HoldSignal, HoldStamp, SlowSubscriberPolicy};
use crate::settings::Settings;
use crate::shard::attached::Attached;
use crate::shard::mailroom::Mailroom;
use crate::shard::testing::{connect, subscribe, Fixture};
use crate::shard::{ConnectionCounts, Shard};

/// The slow subscriber's queue limit and window (small, so the cases stay short).
const QUEUE: usize = 10;
const WINDOW: usize = 2;

fn fixture(policy: SlowSubscriberPolicy, shards: usize) -> Fixture {
    let mut settings = Settings::local(shards);
    settings.limits.max_inflight = WINDOW;
    settings.limits.max_queued_messages = QUEUE;
    settings.limits.slow_subscriber_policy = policy;
    Fixture::new(settings)
}

fn publish(shard: &mut Shard, p: &mut Attached, n: u16) {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: Utf8Bytes::from_static("data/x"),
        packet_id: n,
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(b"m"),
    };
    shard
        .handle_packet(p, Packet::Publish(publish))
        .expect("published");
}

/// Acknowledges everything in `a`'s window (a subscriber that keeps up); returns how many.
fn ack_all(shard: &mut Shard, a: &mut Attached) -> usize {
    let ids = shard
        .sessions
        .get(a.slot, a.generation)
        .expect("session")
        .inflight_ids();
    for &id in &ids {
        shard
            .handle_packet(a, Packet::PubAck(PubResponse::new(id)))
            .expect("acknowledged");
    }
    ids.len()
}

fn pending(shard: &Shard, a: &Attached) -> (usize, usize) {
    shard
        .sessions
        .get(a.slot, a.generation)
        .expect("session")
        .pending_len()
}

/// Makes `a`'s congestion episode (this one or the next) older than the grace in which its holds
/// insist.
fn outgrow_grace(shard: &mut Shard, a: &Attached) {
    shard
        .sessions
        .get_mut(a.slot, a.generation)
        .expect("session")
        .outgrow_grace();
}

/// One publisher on `data/x`, a subscriber on `data/#` at `fast_qos` that acknowledges everything
/// at once, and one on `#` that never does (but counts as making progress: it just connected).
/// With `grace_over`, the slow one's congestion is made older than [`HOLD_GRACE`] as soon as it
/// starts. Returns after which publish the publisher was first held, if it was.
fn slow_beside_fast(
    policy: SlowSubscriberPolicy,
    fast_qos: QoS,
    n: u16,
    grace_over: bool,
) -> (Fixture, Option<u16>) {
    let mut f = fixture(policy, 1);
    let shard = &mut f.shard;
    let mut fast = connect(shard, "fast");
    let mut slow = connect(shard, "slow");
    let mut publisher = connect(shard, "pub");
    subscribe(shard, &mut fast, "data/#", fast_qos);
    subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
    let mut first_held = None;
    let mut fast_got = 0;
    if grace_over {
        outgrow_grace(shard, &slow);
    }
    for i in 1..=n {
        publish(shard, &mut publisher, i);
        fast_got += ack_all(shard, &mut fast);
        if first_held.is_none() && shard.is_held(&publisher) {
            first_held = Some(i);
        }
    }
    if fast_qos != QoS::AtMostOnce {
        assert_eq!(
            fast_got,
            usize::from(n),
            "the fast subscriber got everything"
        );
    }
    let _ = &mut slow;
    (f, first_held)
}

#[test]
fn by_default_a_slow_subscriber_beside_a_fast_one_holds_nobody_after_its_grace_and_drops() {
    let n = 30;
    let (f, held) = slow_beside_fast(
        SlowSubscriberPolicy::HoldIfAllBehind,
        QoS::AtLeastOnce,
        n,
        true,
    );
    assert_eq!(held, None, "the publisher was never held");
    let slow = f.shard.sessions.slot_of(&Utf8Bytes::from_static("slow"));
    let s = f.shard.sessions.at(slow.expect("slow")).expect("slow");
    assert_eq!(
        s.pending_len(),
        (WINDOW, QUEUE),
        "exactly the limits, no room beyond them"
    );
    assert_eq!(
        f.shard.stats.messages_dropped,
        u64::from(n) - (WINDOW + QUEUE) as u64,
        "every message not queued for it was dropped and counted"
    );
}

#[test]
fn by_default_a_young_backlog_holds_the_publisher_and_loses_nothing() {
    // Within its grace the congested subscriber holds as under `hold`, with the extra room.
    let n = (WINDOW + 2 * QUEUE) as u16;
    let (f, held) = slow_beside_fast(
        SlowSubscriberPolicy::HoldIfAllBehind,
        QoS::AtLeastOnce,
        n,
        false,
    );
    assert_eq!(held, Some((WINDOW + QUEUE / 2) as u16));
    assert_eq!(f.shard.stats.messages_dropped, 0);
    let slow = f.shard.sessions.slot_of(&Utf8Bytes::from_static("slow"));
    let s = f.shard.sessions.at(slow.expect("slow")).expect("slow");
    assert_eq!(s.pending_len(), (WINDOW, 2 * QUEUE));
    assert!(s.insists(Instant::now()));
}

#[test]
fn a_fast_qos0_subscriber_counts_as_keeping_up() {
    let (_, held) = slow_beside_fast(
        SlowSubscriberPolicy::HoldIfAllBehind,
        QoS::AtMostOnce,
        30,
        true,
    );
    assert_eq!(held, None);
}

#[test]
fn under_hold_the_slow_subscriber_holds_the_publisher_of_the_fast_one() {
    for fast_qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        let (_, held) = slow_beside_fast(SlowSubscriberPolicy::Hold, fast_qos, 30, false);
        // WINDOW sent, then queued until half of QUEUE waits: congested.
        assert_eq!(held, Some((WINDOW + QUEUE / 2) as u16), "{fast_qos:?}");
    }
}

#[test]
fn under_drop_nobody_is_ever_held() {
    let mut f = fixture(SlowSubscriberPolicy::Drop, 1);
    let shard = &mut f.shard;
    let mut slow = connect(shard, "slow");
    let mut publisher = connect(shard, "pub");
    subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
    for i in 1..=30 {
        publish(shard, &mut publisher, i);
        assert!(!shard.is_held(&publisher));
    }
    assert_eq!(pending(shard, &slow), (WINDOW, QUEUE));
    assert_eq!(shard.stats.messages_dropped, 30 - (WINDOW + QUEUE) as u64);
}

#[test]
fn by_default_publishers_whose_only_subscriber_is_behind_are_held_and_lose_nothing() {
    let mut f = fixture(SlowSubscriberPolicy::HoldIfAllBehind, 1);
    let shard = &mut f.shard;
    let mut slow = connect(shard, "slow");
    let mut p1 = connect(shard, "p1");
    let mut p2 = connect(shard, "p2");
    subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
    let mut n = 0;
    while !(shard.is_held(&p1) && shard.is_held(&p2)) {
        n += 1;
        assert!(n < 100, "never held");
        publish(shard, &mut p1, n);
        publish(shard, &mut p2, n);
    }
    assert_eq!(usize::from(n), (WINDOW + QUEUE / 2).div_ceil(2));
    assert!(shard.held_until(&p1).is_some());
    // What a held publisher still slips in (one read per lease) finds room beyond the limit: the
    // queue may reach twice it before anything is dropped.
    for i in 0..QUEUE as u16 {
        publish(shard, &mut p1, 100 + i);
    }
    assert_eq!(shard.stats.messages_dropped, 0);
    assert!(pending(shard, &slow).1 > QUEUE);
    // Draining to a quarter releases both at once.
    while pending(shard, &slow).1 * 4 > QUEUE {
        assert!(shard.is_held(&p1));
        ack_all(shard, &mut slow);
        shard.release_holds(slow.slot, slow.generation, false);
    }
    assert!(!shard.is_held(&p1) && !shard.is_held(&p2));
    assert_eq!(shard.held_until(&p1), None);
}

#[test]
fn a_young_backlog_holds_across_shards_whatever_the_others_say() {
    let mut f = fixture(SlowSubscriberPolicy::HoldIfAllBehind, 2);
    let other = f.other.take().expect("shard 1");
    let shard = &mut f.shard;
    let mut slow = connect(shard, "slow");
    let mut publisher = connect(shard, "pub");
    subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
    other.send_urgent(
        0,
        Mail::InterestAdd {
            from: 1,
            filter: Utf8Bytes::from_static("data/#"),
            since: 0,
        },
    );
    let p = publisher.slot;
    // Shard 1's subscriber keeps up: it objects from the start.
    shard.handle_mail(Mail::Object { slot: p, from: 1 });
    for i in 1..=(WINDOW + QUEUE / 2) as u16 {
        publish(shard, &mut publisher, i);
    }
    // The subscriber here just became congested: its hold insists.
    assert!(shard.is_held(&publisher_of(shard, p)));
    shard.handle_mail(Mail::Object { slot: p, from: 1 });
    assert!(shard.is_held(&publisher_of(shard, p)));
    // Draining to a quarter releases the publisher; the episode ends once the queue is empty.
    while pending(shard, &slow).1 * 4 > QUEUE {
        ack_all(shard, &mut slow);
        shard.release_holds(slow.slot, slow.generation, false);
    }
    assert!(!shard.is_held(&publisher_of(shard, p)));
    assert!(shard
        .sessions
        .get(slow.slot, slow.generation)
        .expect("slow")
        .insists(Instant::now()));
    while pending(shard, &slow).1 > 0 {
        ack_all(shard, &mut slow);
    }
    assert!(!shard
        .sessions
        .get(slow.slot, slow.generation)
        .expect("slow")
        .insists(Instant::now()));
    // An insisting hold from shard 1 holds the publisher although a subscriber here keeps up.
    let mut fast = connect(shard, "fast");
    subscribe(shard, &mut fast, "data/#", QoS::AtLeastOnce);
    shard.handle_mail(Mail::Hold {
        slot: p,
        from: 1,
        signal: HoldSignal::Hold,
        insist: true,
    });
    publish(shard, &mut publisher, 100);
    assert!(shard.is_held(&publisher_of(shard, p)));
    assert!(shard.held_until(&publisher_of(shard, p)).is_some());
    // Without insisting, the objection of this shard (the fast subscriber keeps up) wins.
    shard.handle_mail(Mail::Release { slot: p, from: 1 });
    shard.handle_mail(Mail::Hold {
        slot: p,
        from: 1,
        signal: HoldSignal::Hold,
        insist: false,
    });
    ack_all(shard, &mut fast);
    publish(shard, &mut publisher, 101);
    assert!(!shard.is_held(&publisher_of(shard, p)));
}

#[test]
fn across_shards_the_publisher_is_held_only_when_every_reached_shard_agrees() {
    let mut f = fixture(SlowSubscriberPolicy::HoldIfAllBehind, 2);
    let other = f.other.take().expect("shard 1");
    let shard = &mut f.shard;
    let mut slow = connect(shard, "slow");
    let mut publisher = connect(shard, "pub");
    subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
    // Shard 1 has a subscriber to the publisher's topic.
    other.send_urgent(
        0,
        Mail::InterestAdd {
            from: 1,
            filter: Utf8Bytes::from_static("data/#"),
            since: 0,
        },
    );
    let p = publisher.slot;
    let mut n = 0;
    // The subscriber here is past the grace in which its holds would insist (tested below).
    outgrow_grace(shard, &slow);
    let mut publish_more = |shard: &mut Shard, count: u16| {
        for _ in 0..count {
            n += 1;
            publish(shard, &mut publisher, n);
        }
    };
    // Until shard 1 says where it stands, the congested subscriber here holds the publisher (for
    // its part: shard 1 did not agree, so it is not held) and may queue beyond its limit.
    publish_more(shard, 30);
    assert!(!shard.is_held(&publisher_of(shard, p)));
    assert_eq!(pending(shard, &slow), (WINDOW, 2 * QUEUE));
    assert_eq!(
        shard.stats.messages_dropped,
        30 - (WINDOW + 2 * QUEUE) as u64
    );
    // Shard 1's subscriber keeps up (shard 1 was asked: the publishes say a shard holds): from then
    // on the subscriber here gets exactly its limits.
    shard.handle_mail(Mail::Object { slot: p, from: 1 });
    publish_more(shard, 10);
    assert_eq!(pending(shard, &slow), (WINDOW, 2 * QUEUE));
    assert_eq!(
        shard.stats.messages_dropped,
        40 - (WINDOW + 2 * QUEUE) as u64
    );
    assert!(!shard.is_held(&publisher_of(shard, p)));
    // Shard 1's subscribers fall behind too (nobody there keeps up): now it is held...
    shard.handle_mail(Mail::Hold {
        slot: p,
        from: 1,
        signal: HoldSignal::Consent,
        insist: false,
    });
    assert!(shard.is_held(&publisher_of(shard, p)));
    // ...until one of them keeps up again.
    shard.handle_mail(Mail::Object { slot: p, from: 1 });
    assert!(!shard.is_held(&publisher_of(shard, p)));
    // A subscriber there holds it; its release ends shard 1's agreement.
    shard.handle_mail(Mail::Hold {
        slot: p,
        from: 1,
        signal: HoldSignal::Hold,
        insist: false,
    });
    assert!(shard.is_held(&publisher_of(shard, p)));
    shard.handle_mail(Mail::Release { slot: p, from: 1 });
    assert!(!shard.is_held(&publisher_of(shard, p)));
    // When the subscriber here catches up instead, the same.
    shard.handle_mail(Mail::Hold {
        slot: p,
        from: 1,
        signal: HoldSignal::Hold,
        insist: false,
    });
    assert!(shard.is_held(&publisher_of(shard, p)));
    while pending(shard, &slow).1 * 4 > QUEUE {
        ack_all(shard, &mut slow);
    }
    shard.release_holds(slow.slot, slow.generation, false);
    assert!(!shard.is_held(&publisher_of(shard, p)));
}

/// The publisher's attachment, looked up again (the closure above holds the original).
fn publisher_of(shard: &Shard, slot: u32) -> Attached {
    let s = shard.sessions.at(slot).expect("publisher");
    Attached {
        slot,
        generation: s.generation,
        protocol: s.protocol,
        client_id: s.client_id.clone(),
        outbox: s.conn.clone().expect("connected"),
        will_on_disconnect: false,
        listener: 0,
        reauth: None,
        aliases: Default::default(),
        read_at: 0,
    }
}

/// The hold mail sent to shard `to` so far, as (publisher slot, what), in order.
fn stances_sent(matrix: &MailboxMatrix, to: usize) -> Vec<(u32, &'static str)> {
    let mut batch = Vec::new();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = matrix.inboxes[to].poll_recv(&mut cx, &mut batch);
    batch
        .into_iter()
        .filter_map(|m| match m {
            Mail::Hold {
                slot,
                from: 0,
                signal,
                ..
            } => Some((
                slot,
                match signal {
                    HoldSignal::Hold => "hold",
                    HoldSignal::Renew => "renew",
                    HoldSignal::Consent => "consent",
                },
            )),
            Mail::Release { slot, from: 0 } => Some((slot, "release")),
            Mail::Object { slot, from: 0 } => Some((slot, "object")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_shard_tells_where_it_stands_only_while_the_publisher_is_held_somewhere() {
    let mut f = fixture(SlowSubscriberPolicy::HoldIfAllBehind, 2);
    let mut sub = connect(&mut f.shard, "sub");
    subscribe(&mut f.shard, &mut sub, "#", QoS::AtLeastOnce);
    // A publisher on shard 1, slot 7.
    // A publish of that publisher, as shard 1 would mail it.
    let publish = |pending: bool| {
        let msg = Message::new(
            Utf8Bytes::from_static("data/x"),
            bytes::Bytes::from_static(b"m"),
            QoS::AtLeastOnce,
            false,
            Properties::default(),
            Some((1, 7)),
        );
        let stamp = HoldStamp {
            pending,
            objecting: 0,
        };
        Mail::Publish(Arc::new(msg), stamp)
    };
    let _ = stances_sent(&f.matrix, 1);
    // Nobody holds the publisher: nothing to say.
    f.shard.handle_mail(publish(false));
    assert_eq!(pending(&f.shard, &sub), (1, 0));
    assert_eq!(stances_sent(&f.matrix, 1), vec![]);
    // Some shard holds it, and the subscriber here keeps up (its queue is short): shard 0 objects,
    // once per half lease.
    for _ in 0..5 {
        f.shard.handle_mail(publish(true));
    }
    assert_eq!(pending(&f.shard, &sub), (2, QUEUE / 2 - 1));
    assert_eq!(stances_sent(&f.matrix, 1), vec![(7, "object")]);
    // The message that makes it congested (half its queue) was judged before it was queued (the
    // shard still objects), but the new congestion holds the publisher, insisting.
    f.shard.handle_mail(publish(true));
    assert_eq!(pending(&f.shard, &sub), (2, QUEUE / 2));
    assert_eq!(stances_sent(&f.matrix, 1), vec![(7, "hold"), (7, "object")]);
    // Behind now, and nobody else here keeps up: shard 0 agrees at once (a changed stance is told
    // at once), then not again within half a lease.
    for _ in 0..2 {
        f.shard.handle_mail(publish(true));
    }
    assert_eq!(stances_sent(&f.matrix, 1), vec![(7, "consent")]);
    // Caught up (it acknowledged everything): it lets go, and objects to the next message.
    while pending(&f.shard, &sub) != (0, 0) {
        ack_all(&mut f.shard, &mut sub);
    }
    f.shard.release_holds(sub.slot, sub.generation, false);
    f.shard.handle_mail(publish(true));
    assert_eq!(
        stances_sent(&f.matrix, 1),
        vec![(7, "release"), (7, "object")]
    );
    // Under the other policies nothing of this is said.
    for policy in [SlowSubscriberPolicy::Hold, SlowSubscriberPolicy::Drop] {
        let mut f = fixture(policy, 2);
        let mut sub = connect(&mut f.shard, "sub");
        subscribe(&mut f.shard, &mut sub, "#", QoS::AtLeastOnce);
        let _ = stances_sent(&f.matrix, 1);
        for _ in 0..4 {
            f.shard.handle_mail(publish(true));
        }
        assert_eq!(stances_sent(&f.matrix, 1), vec![], "{policy:?}");
    }
}

/// An in-memory log destination.
#[derive(Clone, Default)]
struct Memory(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Memory {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Memory {
    type Writer = Memory;
    fn make_writer(&'a self) -> Memory {
        self.clone()
    }
}

#[test]
fn a_drop_episode_is_logged_once_in_mosquittos_words() {
    use tracing_subscriber::layer::SubscriberExt;
    let mem = Memory::default();
    let layer =
        crate::logging::layer(&crate::config::Config::default(), mem.clone()).expect("log layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    let line = "Outgoing messages are being dropped for client slow.";
    let lines = || {
        let text = String::from_utf8(mem.0.lock().unwrap().clone()).unwrap();
        text.lines().filter(|l| l.ends_with(line)).count()
    };
    tracing::subscriber::with_default(subscriber, || {
        // Under `drop` (the line is the same under any policy): the window, then the queue to
        // exactly its limit, then every message is dropped; logged once.
        let mut f = fixture(SlowSubscriberPolicy::Drop, 1);
        let shard = &mut f.shard;
        let mut slow = connect(shard, "slow");
        let mut publisher = connect(shard, "pub");
        subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
        for i in 1..=30 {
            publish(shard, &mut publisher, i);
        }
        assert_eq!(shard.stats.messages_dropped, 30 - (WINDOW + QUEUE) as u64);
        assert_eq!(lines(), 1, "one line for the episode");
        // Acknowledging the window frees two places: the queue is full again at once, same
        // episode.
        ack_all(shard, &mut slow);
        publish(shard, &mut publisher, 31);
        publish(shard, &mut publisher, 32);
        publish(shard, &mut publisher, 33);
        assert_eq!(lines(), 1);
        // Drained to a quarter: the next drop starts a new episode.
        while pending(shard, &slow).1 * 4 > QUEUE {
            ack_all(shard, &mut slow);
        }
        for i in 34..50 {
            publish(shard, &mut publisher, i);
        }
        assert_eq!(lines(), 2);
    });
}

fn message(topic: &'static str) -> Message {
    Message::new(
        Utf8Bytes::from_static(topic),
        Bytes::from_static(b"x"),
        QoS::AtMostOnce,
        false,
        Properties::default(),
        None,
    )
}

/// A hold that a subscriber's shard mails takes the urgent FIFO, which `route` drains: the publisher's
/// shard holds it after the packet during which the hold arrived, before its mail loop runs. Behind
/// the publishes on the ordinary mailbox, it would wait for the rest of the publisher's read (thousands
/// of small PUBLISHes), more than the congested subscriber has room for.
#[test]
fn a_hold_from_another_shard_stops_the_publisher_before_its_next_packet() {
    let mut f = fixture(SlowSubscriberPolicy::HoldIfAllBehind, 2);
    let other = f.other.take().expect("shard 1");
    let mut shard1 = Mailroom::new(1, 2, None, other, UrgentInbox::default());
    let shard = &mut f.shard;
    let mut publisher = connect(shard, "pub");
    let p = publisher.slot;
    shard1.send(
        0,
        Mail::InterestAdd {
            from: 1,
            filter: Utf8Bytes::from_static("data/#"),
            since: 0,
        },
    );
    publish(shard, &mut publisher, 1);
    assert!(!shard.is_held(&publisher));
    // Shard 1's only subscriber fell behind on that publish.
    shard1.send_hold((0, p), HoldSignal::Hold, false, Instant::now());
    publish(shard, &mut publisher, 2);
    assert!(shard.is_held(&publisher), "held after the next packet");
    assert!(shard.held_until(&publisher).is_some());
    // Its release, likewise, frees the publisher before the mail loop runs.
    shard1.send(0, Mail::Release { slot: p, from: 1 });
    publish(shard, &mut publisher, 3);
    assert!(!shard.is_held(&publisher));
    assert_eq!(shard.held_until(&publisher), None);
}

/// Everything queued for a shard, as its mail loop would take it.
fn take_mail(inbox: &Inbox) -> Vec<Mail> {
    let mut batch = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    let _ = inbox.poll_recv(&mut cx, &mut batch);
    batch
}

/// A subscription shard 1 has taken reaches shard 0's routing before shard 0's mail loop runs: the
/// urgent FIFO is drained by `route` itself, so a publish routed on shard 0 after shard 1 took the
/// SUBSCRIBE is not missed (as in a broker that handles packets in arrival order).
#[test]
fn a_publish_routed_after_another_shard_took_a_subscription_reaches_it() {
    let MailboxMatrix {
        mail_out, inboxes, ..
    } = MailboxMatrix::new(2);
    let mut mail_out = mail_out.into_iter();
    let (out0, out1) = (mail_out.next().unwrap(), mail_out.next().unwrap());
    let settings = Arc::new(Settings::local(2));
    let mut shard0 = Shard::new(
        0,
        settings,
        out0,
        inboxes[0].urgent(),
        Arc::new(ConnectionCounts::new(1)),
        Instant::now(),
        1,
        crate::shard::RetainedStripes::new(2),
    );

    // Before any interest: nothing crosses.
    shard0.route(message("a/b"));
    assert!(take_mail(&inboxes[1]).is_empty());

    out1.send_urgent(
        0,
        Mail::InterestAdd {
            from: 1,
            filter: Utf8Bytes::from_static("a/+"),
            since: 0,
        },
    );
    shard0.route(message("a/b"));
    shard0.route(message("c/d"));
    let mail = take_mail(&inboxes[1]);
    let acks = mail
        .iter()
        .filter(|m| matches!(m, Mail::InterestAck { filter, .. } if &**filter == "a/+"))
        .count();
    let published: Vec<&str> = mail
        .iter()
        .filter_map(|m| match m {
            Mail::Publish(msg, _) => Some(&*msg.topic),
            _ => None,
        })
        .collect();
    assert_eq!(acks, 1, "the interest is acknowledged once");
    assert_eq!(published, ["a/b"], "only the matching publish crosses");
    // Consumed by the routing, so the mail loop does not see the change a second time.
    assert!(take_mail(&inboxes[0]).is_empty());
}

/// A retained message is stored once, in the broker's shared store, and no shard is mailed a copy
/// to store (with persistence, only the shard whose log keeps its topic is: `journal.rs`).
#[test]
fn a_retained_message_crosses_no_mailbox_without_persistence() {
    let mut f = fixture(SlowSubscriberPolicy::Hold, 4);
    for i in 0..32 {
        let mut m = message(Box::leak(format!("kept/{i}").into_boxed_str()));
        m.retain = true;
        f.shard.route(m);
    }
    for to in 1..4 {
        assert!(f.mail_to(to).is_empty(), "mail to shard {to}");
    }
    assert_eq!(f.shard.retained.len(), 32);
}

/// A QoS 0 copy that reaches a session after its client connected again, of a message the kernel
/// received before that CONNECT (it was in another shard's mailbox or on its way from another
/// node), is not sent: the client was away then, or on its earlier connection. QoS 1 copies and
/// later messages are.
#[test]
fn a_qos0_copy_older_than_the_connection_is_not_sent_on_it() {
    let mut f = fixture(SlowSubscriberPolicy::Hold, 1);
    let shard = &mut f.shard;
    let opened = crate::shard::lookback::now_ns();
    let connect = crate::codec::Connect {
        protocol: crate::codec::ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 60,
        client_id: Utf8Bytes::from_static("s"),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    let outbox = std::rc::Rc::new(crate::session::Outbox::opened_at(opened));
    let mut s = shard.attach(&connect, Properties::default(), outbox.clone(), 0);
    subscribe(shard, &mut s, "a/+", QoS::AtLeastOnce);
    let mut sent = outbox.pending_bytes();
    let mut route = |shard: &mut Shard, qos: QoS, read_at: u64| {
        let mut m = message("a/b");
        m.qos = qos;
        m.read_at = read_at;
        shard.route(m);
        let now = outbox.pending_bytes();
        std::mem::replace(&mut sent, now) != now
    };
    assert!(
        !route(shard, QoS::AtMostOnce, opened - 1_000),
        "older, QoS 0"
    );
    assert!(
        route(shard, QoS::AtLeastOnce, opened - 1_000),
        "older, QoS 1"
    );
    assert!(
        route(shard, QoS::AtMostOnce, opened + 1_000),
        "newer, QoS 0"
    );
    assert!(
        route(shard, QoS::AtMostOnce, 0),
        "received at an unknown time"
    );
}
