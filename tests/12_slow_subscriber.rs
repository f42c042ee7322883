//! Slow subscribers and `slow_subscriber_policy` (shardmq's own option; default `hold_if_all_behind`).
//!
//! Rules checked ("a slow subscriber costs its own queue, never the publisher or other clients", with
//! Mosquitto 2.0's queue limits as the reference):
//! - A subscriber that keeps acknowledging, only far more slowly than its publisher publishes, does not
//!   slow that publisher down for another subscriber that keeps up: the fast one receives every message,
//!   in order, at the publisher's pace. The slow one receives what fits its window and queue
//!   (`max_queued_messages`), in order; the rest is dropped for it alone and counted in
//!   `$SYS/broker/publish/messages/dropped` (received + dropped = published). This is Mosquitto's
//!   behaviour; with `slow_subscriber_policy hold` shardmq would hold the publisher for the slow one and
//!   the fast one would be paced by it.
//! - Fan-in: several publishers whose only subscriber keeps acknowledging slowly (in bursts) lose nothing
//!   under the default policy, even with a small `max_queued_messages`: every subscriber they feed is
//!   behind, so they are held (Mosquitto drops there instead).
//! - `slow_subscriber_policy hold`: publishers feeding two subscribers that both fall behind lose
//!   nothing.
//!
//! Every test runs for 3.1.1 and 5.0, with 1 and 4 shards (with 4, the clients land on various shards,
//! so a publish reaches one shard or several).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::broker::external_mosquitto;
use common::raw::{self, kind, RawClient, ReadEnd};
use common::{for_each_case, unique_id, Proto, BOTH, EVENT_TIMEOUT};

/// `max_queued_messages` of the slow-beside-fast case: small, so the slow subscriber overflows quickly.
const QUEUE: usize = 20;
/// Messages the publisher sends in that case.
const N: usize = 300;
/// The publisher sends in rounds of this many and waits for the fast subscriber to have them all: a
/// publisher at the fast subscriber's pace, so that the fast one never has a backlog of its own (its
/// window is 20). A held publisher is read once per 100 ms lease, so each round would take that long.
const ROUND: usize = 4;
/// How long the slow subscriber takes over each message before acknowledging it (50 messages/s). It
/// keeps acknowledging, so it counts as a slow consumer, not a stalled one.
const SLOW_ACK: Duration = Duration::from_millis(20);
/// The fast subscriber must have all N within this. Unheld, the 75 rounds take a few ms each; held for
/// the slow subscriber (`slow_subscriber_policy hold`), each round waits for a lease or for the slow one
/// to drain, which takes well over this.
const FAST_DEADLINE: Duration = Duration::from_millis(1500);

/// `count` publisher threads, publisher `p` sending `each` QoS 1 messages to `<prefix>/<p>` (payload:
/// the sequence number) in one write, then checking every PUBACK in order.
fn spawn_burst_publishers(
    addr: std::net::SocketAddr,
    proto: Proto,
    id: &'static str,
    prefix: &'static str,
    count: usize,
    each: usize,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|p| {
            std::thread::spawn(move || {
                let mut c = RawClient::connect_clean(addr, proto, &unique_id(id));
                let mut burst = Vec::new();
                for i in 0..each {
                    let payload = format!("{i:08}");
                    burst.extend(raw::publish(
                        proto,
                        &format!("{prefix}/{p}"),
                        1,
                        false,
                        false,
                        (i + 1) as u16,
                        payload.as_bytes(),
                    ));
                }
                c.send(&burst);
                for i in 0..each {
                    assert_eq!(c.expect(kind::PUBACK).ack_pkid(), (i + 1) as u16);
                }
            })
        })
        .collect()
}

/// Sequence number of a payload written as `{i:08}`.
fn seq(payload: &[u8]) -> usize {
    std::str::from_utf8(payload)
        .expect("utf-8")
        .parse()
        .expect("sequence number")
}

/// Subscribes `c` to `$SYS/broker/publish/messages/dropped`. A `$SYS` update may come before the
/// SUBACK (the subscription is taken before the other shards acknowledge it, and MQTT lets a server
/// send matching messages before the SUBACK): such updates are skipped, later ones will do.
fn subscribe_sys(c: &mut RawClient, proto: Proto) {
    let pkid = c.pkid();
    c.send(&raw::subscribe(
        proto,
        pkid,
        &[("$SYS/broker/publish/messages/dropped", 0)],
    ));
    loop {
        let p = c.read_packet();
        match p.kind() {
            kind::PUBLISH => continue,
            kind::SUBACK => {
                assert_eq!(p.suback(proto), (pkid, vec![0]));
                return;
            }
            _ => panic!("unexpected packet {p:?}"),
        }
    }
}

/// A subscriber that reads and acknowledges at most one message per [`SLOW_ACK`], on its own thread,
/// until told to stop; it checks the messages it gets are in publish order.
struct SlowSubscriber {
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowSubscriber {
    fn start(mut c: RawClient, proto: Proto) -> SlowSubscriber {
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last = None;
            while !s.load(Ordering::Relaxed) {
                // A short bounded read, so that `stop` is seen; not a wait standing in for an event.
                match c.try_read_packet(Duration::from_millis(50)) {
                    Ok(p) if p.kind() == kind::PUBLISH => {
                        let m = p.publish(proto);
                        let i = seq(&m.payload);
                        assert!(
                            last.map_or(true, |l| i > l),
                            "slow subscriber: {i} after {last:?} (duplicate or reordered)"
                        );
                        last = Some(i);
                        r.fetch_add(1, Ordering::SeqCst);
                        // A slow consumer (not a synchronisation): it handles each message slowly.
                        std::thread::sleep(SLOW_ACK);
                        c.send(&raw::ack(kind::PUBACK, m.pkid));
                    }
                    Ok(p) => panic!("slow subscriber: unexpected packet {p:?}"),
                    Err(ReadEnd::Timeout) => {}
                    Err(ReadEnd::Closed) => break,
                }
            }
        });
        SlowSubscriber {
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for SlowSubscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let result = t.join();
            if !std::thread::panicking() {
                result.expect("slow subscriber thread");
            }
        }
    }
}

#[test]
fn a_slow_subscriber_does_not_slow_the_publisher_down_for_a_fast_one() {
    // `set_tcp_nodelay true` (shardmq's default) so that, against Mosquitto, each round is not a 40 ms
    // delayed-ACK stall.
    let config = format!("max_queued_messages {QUEUE}\nsys_interval 1\nset_tcp_nodelay true\n");
    for_each_case(BOTH, &config, |case| {
        let mut sys = RawClient::connect_clean(case.addr, case.proto, &unique_id("sys"));
        subscribe_sys(&mut sys, case.proto);
        let mut fast = RawClient::connect_clean(case.addr, case.proto, &unique_id("fast"));
        assert_eq!(fast.subscribe(&[("data/#", 1)]), vec![1]);
        let mut slow = RawClient::connect_clean(case.addr, case.proto, &unique_id("slow"));
        assert_eq!(slow.subscribe(&[("#", 1)]), vec![1]);
        let slow = SlowSubscriber::start(slow, case.proto);
        let mut publisher = RawClient::connect_clean(case.addr, case.proto, &unique_id("pub"));

        let started = Instant::now();
        for round in 0..N / ROUND {
            let mut burst = Vec::new();
            for i in round * ROUND..(round + 1) * ROUND {
                let pkid = (i + 1) as u16;
                let payload = format!("{i:08}");
                burst.extend(raw::publish(
                    case.proto,
                    "data/x",
                    1,
                    false,
                    false,
                    pkid,
                    payload.as_bytes(),
                ));
            }
            publisher.send(&burst);
            for i in round * ROUND..(round + 1) * ROUND {
                let m = fast.recv_publish();
                assert_eq!(seq(&m.payload), i, "fast subscriber: lost or reordered");
                fast.send(&raw::ack(kind::PUBACK, m.pkid));
            }
            for i in round * ROUND..(round + 1) * ROUND {
                assert_eq!(publisher.expect(kind::PUBACK).ack_pkid(), (i + 1) as u16);
            }
        }
        let took = started.elapsed();
        eprintln!("fast subscriber: {N} messages in {took:?}");
        assert!(
            took < FAST_DEADLINE,
            "the fast subscriber took {took:?} for {N} messages: the publisher was held for the slow one"
        );

        // Everything the slow subscriber did not get was dropped for it and counted: wait for the $SYS
        // update (every second) where what it received and what was dropped add up to N.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = match sys.try_read_packet(left) {
                Ok(p) => p,
                Err(e) => panic!(
                    "no $SYS update where received + dropped = {N} ({e:?}; slow received {})",
                    slow.received()
                ),
            };
            let m = p.publish(case.proto);
            let dropped: usize = std::str::from_utf8(&m.payload)
                .expect("utf-8")
                .parse()
                .expect("dropped count");
            let received = slow.received();
            assert!(
                received + dropped <= N,
                "slow subscriber received {received}, {dropped} dropped: more than the {N} published"
            );
            if received + dropped == N {
                eprintln!("slow subscriber: {received} received, {dropped} dropped");
                assert!(
                    (QUEUE..N).contains(&received),
                    "slow subscriber received {received} of {N}"
                );
                assert!(dropped > 0);
                break;
            }
        }
        drop(slow);
    });
}

#[test]
fn fan_in_to_a_subscriber_that_acknowledges_in_bursts_loses_nothing() {
    if external_mosquitto() {
        // Mosquitto drops QoS 1 messages beyond max_queued_messages however the subscriber acknowledges.
        eprintln!("skipped against Mosquitto: it drops beyond the queue limit instead of holding publishers");
        return;
    }
    // A queue of 50 (held from 25): 4 x 1000 messages dumped at once overflow it many times over.
    for_each_case(BOTH, "max_queued_messages 50\n", |case| {
        const PUBLISHERS: usize = 4;
        const EACH: usize = 1000;
        /// Messages read before acknowledging them together: half the window (20), so the broker always
        /// has something to send while the subscriber dawdles.
        const BURST: usize = 10;
        let mut sub = RawClient::connect_clean(case.addr, case.proto, &unique_id("fanin"));
        assert_eq!(sub.subscribe(&[("fanin/#", 1)]), vec![1]);
        let publishers =
            spawn_burst_publishers(case.addr, case.proto, "fp", "fanin", PUBLISHERS, EACH);
        let mut next = [0usize; PUBLISHERS];
        let mut got = 0;
        while got < PUBLISHERS * EACH {
            let n = BURST.min(PUBLISHERS * EACH - got);
            let mut acks = Vec::new();
            for _ in 0..n {
                let m = match sub.try_read_packet(EVENT_TIMEOUT) {
                    Ok(p) if p.kind() == kind::PUBLISH => p.publish(case.proto),
                    Ok(p) => panic!("unexpected packet {p:?}"),
                    Err(e) => panic!(
                        "{e:?} after {got} of {} deliveries (next expected per publisher: \
                         {next:?}): messages were lost",
                        PUBLISHERS * EACH
                    ),
                };
                let p: usize = m.topic["fanin/".len()..].parse().expect("publisher index");
                assert_eq!(
                    seq(&m.payload),
                    next[p],
                    "publisher {p}: message lost, duplicated or reordered after {got} deliveries"
                );
                next[p] += 1;
                got += 1;
                acks.extend(raw::ack(kind::PUBACK, m.pkid));
            }
            // A slow consumer (not a synchronisation): it handles each burst before acknowledging it.
            std::thread::sleep(Duration::from_millis(2));
            sub.send(&acks);
        }
        assert_eq!(next, [EACH; PUBLISHERS]);
        for p in publishers {
            p.join().expect("publisher thread");
        }
    });
}

#[test]
fn under_hold_fan_in_to_two_subscribers_that_both_fall_behind_loses_nothing() {
    if external_mosquitto() {
        eprintln!("skipped against Mosquitto: it has no slow_subscriber_policy, and drops beyond the queue limit");
        return;
    }
    // Both subscribers acknowledge at once, but 4 publishers dumping 2000 messages each outrun them.
    // Under `hold` every congested subscriber holds the publishers, so nothing is lost. (Under the
    // default one of them may have room for a moment, a publisher's first messages say, while the other
    // has a backlog beyond its limit, which is then dropped: as in Mosquitto, and allowed there.)
    for_each_case(
        BOTH,
        "max_queued_messages 100\nslow_subscriber_policy hold\n",
        |case| {
            const PUBLISHERS: usize = 4;
            const EACH: usize = 2000;
            let subscribers: Vec<_> = (0..2)
                .map(|_| {
                    let mut sub =
                        RawClient::connect_clean(case.addr, case.proto, &unique_id("both"));
                    assert_eq!(sub.subscribe(&[("fan2/#", 1)]), vec![1]);
                    sub
                })
                .collect();
            let publishers =
                spawn_burst_publishers(case.addr, case.proto, "f2p", "fan2", PUBLISHERS, EACH);
            let readers: Vec<_> = subscribers
                .into_iter()
                .enumerate()
                .map(|(s, mut sub)| {
                    let proto = case.proto;
                    std::thread::spawn(move || {
                        let mut next = [0usize; PUBLISHERS];
                        for got in 0..PUBLISHERS * EACH {
                            let m = match sub.try_read_packet(EVENT_TIMEOUT) {
                                Ok(p) if p.kind() == kind::PUBLISH => p.publish(proto),
                                Ok(p) => panic!("unexpected packet {p:?}"),
                                Err(e) => panic!(
                                    "subscriber {s}: {e:?} after {got} of {} deliveries (next \
                                 expected per publisher: {next:?}): messages were lost",
                                    PUBLISHERS * EACH
                                ),
                            };
                            let p: usize =
                                m.topic["fan2/".len()..].parse().expect("publisher index");
                            assert_eq!(
                                seq(&m.payload),
                                next[p],
                                "subscriber {s}, publisher {p}: lost, duplicated or reordered"
                            );
                            next[p] += 1;
                            sub.send(&raw::ack(kind::PUBACK, m.pkid));
                        }
                    })
                })
                .collect();
            for r in readers {
                r.join().expect("subscriber thread");
            }
            for p in publishers {
                p.join().expect("publisher thread");
            }
        },
    );
}
