//! Durable persistence (issue 16) under load, checked on the broker binary as a process that is
//! killed at random moments and started again on the same `persistence_location` and the same port.
//!
//! What is checked:
//! - Under load, with 1 and 4 shards, QoS 1 and QoS 2, 3.1.1 and 5.0: four publishers publish
//!   numbered sequences as fast as their window of 16 allows while two persistent subscribers read
//!   and one is away; SIGKILL comes at a random moment 100-800 ms in (seeded from the clock, the
//!   seed in every assertion; `SHARDMQ_CRASH_SEED` repeats the kill moments, `SHARDMQ_CRASH_ROUNDS`
//!   raises the 3 rounds per configuration). After the restart every subscriber gets every message
//!   that was acknowledged to its publisher (PUBACK, or PUBCOMP for QoS 2), per publisher in
//!   increasing order once repeats are removed, and with QoS 2 no message twice over the whole run
//!   (a PUBLISH sent again with the packet id the subscriber still awaits a PUBREL for is the
//!   protocol's resend, not a second message). The rounds follow each other on the same files, so
//!   each restart replays a generation that an earlier start compacted.
//! - The same with two of the publishers durable (persistent sessions): after the restart they
//!   resume and send again what was not acknowledged, as MQTT 4.4 asks (PUBLISH with DUP and the
//!   same packet id, or PUBREL where the PUBREC had come); then everything they sent is owed to
//!   every subscriber, and with QoS 2 still nothing arrives twice.
//!
//! (State across kill -9 and SIGTERM without load, and damaged logs: `tests/18_persistence.rs`.)
//!
//! SIGKILL ends the process, not the machine: what the broker wrote but did not fsync survives it
//! in the page cache. These tests therefore catch acknowledgements sent before the records were
//! written, and lost or mangled records at replay, not a missing fsync.
//!
//! The tests in this file run one at a time (a load test sharing two cores with another would make
//! its kill moments meaningless). Every wait is for an event (a CONNACK after a start, a log line,
//! a packet, the exit) with a deadline; the only sleep is the random moment before a kill. The
//! broker listens on the same port across its restarts: one below the kernel's ephemeral range, so
//! that no client connection takes it while the broker is down. The harness:
//! `tests/common/persist.rs`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::persist::{
    bounded, crash_rounds, crash_seed, disconnect, fixed_port, parse_numbered, send, Broker, End,
    Rng, Scratch, Sub, CATCH_UP_IDLE,
};
use common::raw::{self, kind, Connect, RawClient, ReadEnd};
use common::{unique_id, Proto};

// ---------------------------------------------------------------------------------------------
// Acknowledged messages survive SIGKILL under load

/// Publishers, online subscribers and the offline one of the load test.
const PUBLISHERS: usize = 4;
const ONLINE_SUBS: usize = 2;
/// QoS 1/2 publishes a publisher has outstanding at most.
const WINDOW: usize = 16;

/// What a publisher of the load test saw before the broker died.
struct Published {
    id: String,
    durable: bool,
    /// Numbers sent (1..=sent).
    sent: u64,
    /// Numbers acknowledged: PUBACK (QoS 1) or PUBCOMP (QoS 2). Not PUBREC: a broker may hold an
    /// incoming QoS 2 message until its PUBREL (MQTT 4.3.3 "method B"), and this publisher's session
    /// (clean) ends with the kill, PUBREL or not; Mosquitto 2.0 does just that.
    acked: Vec<u64>,
    /// The highest n with every number up to it acknowledged.
    acked_prefix: u64,
    /// QoS 2: the highest n with every PUBREC up to it received.
    received_prefix: u64,
    /// Sent and not acknowledged: (n, PUBREC received), by n.
    pending: Vec<(u64, bool)>,
}

/// A load-test publisher's packet id for its message n: ids are not reused within the window.
fn pkid_of(n: u64) -> u16 {
    ((n - 1) % 65535 + 1) as u16
}

fn prefix(done: &[bool]) -> u64 {
    done.iter().skip(1).take_while(|d| **d).count() as u64
}

/// Publishes `<id>:<n>` for n = 1, 2, ... to `load/<id>` at `qos`, keeping [`WINDOW`] outstanding,
/// until the connection ends (the kill) or `deadline`.
fn run_publisher(
    addr: SocketAddr,
    proto: Proto,
    qos: u8,
    durable: bool,
    go: Arc<Barrier>,
    deadline: Instant,
) -> Result<Published, String> {
    let id = unique_id(if durable { "pd" } else { "p" });
    let topic = format!("load/{id}");
    let connect = Connect::new(proto, &id);
    let connect = if durable {
        connect.persistent()
    } else {
        connect
    };
    let (mut c, _) = RawClient::connect(addr, &connect);
    go.wait();
    let mut next = 1u64;
    let mut outstanding: HashMap<u16, u64> = HashMap::new();
    let mut acked = vec![false];
    let mut received = vec![false];
    'run: loop {
        while outstanding.len() < WINDOW {
            let pkid = pkid_of(next);
            let payload = format!("{id}:{next}");
            let packet = raw::publish(proto, &topic, qos, false, false, pkid, payload.as_bytes());
            if !send(&mut c, &packet) {
                break 'run;
            }
            outstanding.insert(pkid, next);
            acked.push(false);
            received.push(false);
            next += 1;
        }
        let p = match c.try_read_packet(Duration::from_millis(200)) {
            Ok(p) => p,
            Err(ReadEnd::Closed) => break,
            Err(ReadEnd::Timeout) if Instant::now() < deadline => continue,
            Err(ReadEnd::Timeout) => {
                return Err(format!("{id}: the broker still runs at the deadline"))
            }
        };
        if p.kind() == kind::DISCONNECT {
            break;
        }
        let pkid = p.ack_pkid();
        let n = match outstanding.get(&pkid) {
            Some(&n) => n as usize,
            None => {
                return Err(format!(
                    "{id}: an ack for packet id {pkid} not in flight: {p:?}"
                ))
            }
        };
        if proto.is_v5() && p.body.len() > 2 && p.body[2] >= 0x80 {
            return Err(format!("{id}: {id}:{n} refused: {p:?}"));
        }
        match (qos, p.kind()) {
            (1, kind::PUBACK) => {
                acked[n] = true;
                outstanding.remove(&pkid);
            }
            (2, kind::PUBREC) => {
                received[n] = true;
                if !send(&mut c, &raw::ack(kind::PUBREL, pkid)) {
                    break;
                }
            }
            (2, kind::PUBCOMP) if received[n] => {
                acked[n] = true;
                outstanding.remove(&pkid);
            }
            _ => return Err(format!("{id}: unexpected packet for QoS {qos}: {p:?}")),
        }
    }
    let mut pending: Vec<(u64, bool)> = outstanding
        .values()
        .map(|&n| (n, received[n as usize]))
        .collect();
    pending.sort_unstable();
    Ok(Published {
        durable,
        pending,
        sent: next - 1,
        acked: (1..acked.len() as u64)
            .filter(|&n| acked[n as usize])
            .collect(),
        acked_prefix: prefix(&acked),
        received_prefix: prefix(&received),
        id,
    })
}

/// A durable publisher after the restart: its session is present; it sends again what was not
/// acknowledged, in order (PUBREL where it had the PUBREC, else the PUBLISH with DUP and the same
/// packet id) and waits until all of it is acknowledged.
fn resume_publisher(addr: SocketAddr, proto: Proto, qos: u8, r: &Published, ctx: &str) {
    let (mut c, ack) = RawClient::connect(addr, &Connect::new(proto, &r.id).persistent());
    assert!(
        ack.session_present,
        "{ctx}: durable publisher {}'s session is present after the restart",
        r.id
    );
    let topic = format!("load/{}", r.id);
    let mut left: HashMap<u16, u64> = HashMap::new();
    for &(n, received) in &r.pending {
        let pkid = pkid_of(n);
        if received {
            c.send(&raw::ack(kind::PUBREL, pkid));
        } else {
            let payload = format!("{}:{n}", r.id);
            c.send(&raw::publish(
                proto,
                &topic,
                qos,
                false,
                true,
                pkid,
                payload.as_bytes(),
            ));
        }
        left.insert(pkid, n);
    }
    while !left.is_empty() {
        let p = c.try_read_packet(CATCH_UP_IDLE).unwrap_or_else(|e| {
            panic!(
                "{ctx}: durable publisher {} resent {:?}; {} not acknowledged yet, then {e:?}",
                r.id,
                r.pending,
                left.len()
            )
        });
        assert!(
            p.kind() != kind::DISCONNECT,
            "{ctx}: durable publisher {} is disconnected (reason {:#04x}) after sending again {} \
             messages, {} of them PUBREL after a PUBREC (CONNACK receive maximum {:?}): {:?}",
            r.id,
            p.disconnect_reason(),
            r.pending.len(),
            r.pending.iter().filter(|(_, rec)| *rec).count(),
            ack.prop(raw::prop::RECEIVE_MAXIMUM),
            r.pending
        );
        let pkid = p.ack_pkid();
        let n = *left.get(&pkid).unwrap_or_else(|| {
            panic!(
                "{ctx}: durable publisher {}: an ack for packet id {pkid}, not resent: {p:?}",
                r.id
            )
        });
        assert!(
            !(proto.is_v5() && p.body.len() > 2 && p.body[2] >= 0x80),
            "{ctx}: durable publisher {}: {}:{n} sent again (PUBREC received before the kill: \
             {:?}) is refused: {p:?}",
            r.id,
            r.id,
            r.pending.iter().find(|(m, _)| *m == n).map(|(_, rec)| rec)
        );
        match (qos, p.kind()) {
            (1, kind::PUBACK) | (2, kind::PUBCOMP) => {
                left.remove(&pkid);
            }
            (2, kind::PUBREC) => c.send(&raw::ack(kind::PUBREL, pkid)),
            _ => panic!(
                "{ctx}: durable publisher {}: unexpected packet for QoS {qos}: {p:?}",
                r.id
            ),
        }
    }
    disconnect(c);
}

/// Per publisher, a subscriber's messages in arrival order must be increasing once repeats are
/// removed (a repeat is a QoS 1 redelivery); with QoS 2 there must be no repeat at all.
fn check_order(sub: &Sub, qos: u8, ctx: &str) {
    let mut per_pub: BTreeMap<&str, Vec<(usize, u64)>> = BTreeMap::new();
    for (i, d) in sub.got.iter().enumerate() {
        let (p, n) = parse_numbered(&d.payload).unwrap_or_else(|| {
            panic!(
                "{ctx}: subscriber {} got a message not published: {d:?}",
                sub.id
            )
        });
        assert_eq!(
            d.topic,
            format!("load/{p}"),
            "{ctx}: subscriber {}: topic of {d:?}",
            sub.id
        );
        assert_eq!(d.qos, qos, "{ctx}: subscriber {}: QoS of {d:?}", sub.id);
        per_pub.entry(p).or_default().push((i, n));
    }
    let mut twice = Vec::new();
    for (p, arrivals) in per_pub {
        let mut seen = HashSet::new();
        let mut last: Option<(usize, u64)> = None;
        for &(i, n) in &arrivals {
            if !seen.insert(n) {
                if qos == 2 {
                    let payload = &sub.got[i].payload;
                    twice.push(format!(
                        "{payload} (again as delivery #{i}: {:?})",
                        sub.history.get(payload)
                    ));
                }
                continue;
            }
            if let Some((j, m)) = last {
                assert!(
                    n > m,
                    "{ctx}: subscriber {} got {p}:{n} (delivery #{i}) after {p}:{m} (delivery #{j}): \
                     out of order once repeats are removed",
                    sub.id
                );
            }
            last = Some((i, n));
        }
    }
    assert!(
        twice.is_empty(),
        "{ctx}: {} QoS 2 messages reached subscriber {} (connection {} now) twice, the first: {:?}; \
         protocol notes: {:?}",
        twice.len(),
        sub.id,
        sub.connection,
        twice.iter().take(3).collect::<Vec<_>>(),
        sub.notes
    );
}

/// The load test. The first `durable` publishers have persistent sessions: after the restart they
/// resume and send again what was not acknowledged (PUBLISH with DUP and the same packet id, or
/// PUBREL after a PUBREC), so everything they sent is owed to the subscribers, and with QoS 2 still
/// once. The others are clean: what was not acknowledged before the kill may be lost.
fn crash_under_load(shards: usize, qos: u8, proto: Proto, durable: usize) {
    let seed = crash_seed();
    let mut rng = Rng(seed);
    let rounds = crash_rounds();
    let ctx = format!(
        "seed {seed} (SHARDMQ_CRASH_SEED={seed} repeats its kill moments), {shards} shard(s), \
         QoS {qos}, {proto:?}, {durable} durable publisher(s)"
    );
    eprintln!("--- load test: {ctx}");
    let dir = Scratch::new(&format!("load-{shards}-{qos}-{durable}"));
    let port = fixed_port(&mut rng);
    // No queue limit: the away subscriber is owed everything.
    let config = dir.config(port, shards, "max_queued_messages 0\n");
    let mut broker = Broker::start(&config, port);
    let addr = broker.addr;

    let mut subs: Vec<Sub> = (0..=ONLINE_SUBS)
        .map(|i| Sub::new(if i < ONLINE_SUBS { "on" } else { "away" }, proto))
        .collect();
    for s in &mut subs {
        let (mut c, present) = s.connect(addr);
        assert!(!present, "{ctx}: a new session is not present");
        assert_eq!(c.subscribe(&[("load/+", qos)]), vec![qos], "{ctx}");
        disconnect(c);
    }
    // Every acknowledged payload of every round so far.
    let mut owed: Vec<String> = Vec::new();

    for round in 1..=rounds {
        let kill_after = Duration::from_millis(rng.between(100, 800));
        let ctx = format!("{ctx}, round {round}/{rounds}, kill after {kill_after:?}");
        let deadline = Instant::now() + Duration::from_secs(30);

        // The online subscribers read until the broker dies; the last one stays away.
        let mut readers = Vec::new();
        for mut s in subs.drain(..ONLINE_SUBS) {
            let (mut c, present) = s.connect(addr);
            assert!(present, "{ctx}: subscriber {}'s session is present", s.id);
            readers.push(std::thread::spawn(move || {
                let end = s.pump(&mut c, None, deadline, None);
                (s, end)
            }));
        }
        let go = Arc::new(Barrier::new(PUBLISHERS + 1));
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|i| {
                let go = go.clone();
                let durable = i < durable;
                std::thread::spawn(move || run_publisher(addr, proto, qos, durable, go, deadline))
            })
            .collect();
        go.wait();
        std::thread::sleep(kill_after);
        broker.kill_9();

        let mut results = Vec::new();
        for p in publishers {
            match p.join().expect("publisher thread") {
                Ok(r) => results.push(r),
                Err(e) => panic!("{ctx}: {e}"),
            }
        }
        let mut online = Vec::new();
        for r in readers {
            let (s, end) = r.join().expect("reader thread");
            assert_eq!(
                end,
                End::Closed,
                "{ctx}: subscriber {} reads until the kill",
                s.id
            );
            online.push(s);
        }
        online.append(&mut subs);
        subs = online;
        let summary: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "{} ({}): sent {}, acked {} (all up to {}{})",
                    r.id,
                    if r.durable { "durable" } else { "clean" },
                    r.sent,
                    r.acked.len(),
                    r.acked_prefix,
                    if qos == 2 {
                        format!(", PUBREC up to {}", r.received_prefix)
                    } else {
                        String::new()
                    }
                )
            })
            .collect();
        eprintln!("{ctx}: {}", summary.join("; "));
        let acked_now: usize = results.iter().map(|r| r.acked.len()).sum();
        assert!(
            acked_now > 0,
            "{ctx}: nothing was acknowledged before the kill, the round tests nothing: {summary:?}"
        );
        for r in &results {
            owed.extend(r.acked.iter().map(|n| format!("{}:{n}", r.id)));
        }

        let restart = Instant::now();
        broker = Broker::start(&config, port);
        let started = restart.elapsed();
        let ctx = format!("{ctx} [{}]", summary.join("; "));
        for r in results.iter().filter(|r| r.durable) {
            resume_publisher(addr, proto, qos, r, &ctx);
            owed.extend(r.pending.iter().map(|(n, _)| format!("{}:{n}", r.id)));
        }
        for s in &mut subs {
            let (mut c, present) = s.connect(addr);
            assert!(
                present,
                "{ctx}: subscriber {}'s session is present after the restart",
                s.id
            );
            s.receive_all(&mut c, &owed, &ctx);
            disconnect(c);
            check_order(s, qos, &ctx);
        }
        eprintln!(
            "round {round}: the restart took {started:?}, the subscribers' catch-up {:?}",
            restart.elapsed() - started
        );
    }
    broker.stop();
    let got: Vec<usize> = subs.iter().map(|s| s.got.len()).collect();
    eprintln!(
        "{ctx}: {} acknowledged messages, deliveries per subscriber {got:?}",
        owed.len()
    );
    for s in &subs {
        if !s.notes.is_empty() {
            eprintln!("{ctx}: subscriber {}: {:?}", s.id, s.notes);
        }
    }
}

#[test]
fn acknowledged_messages_survive_kill_9_under_load() {
    load_cases(0);
}

/// The same with two of the four publishers durable: they resume after the restart and send again
/// what was not acknowledged; nothing they sent may be lost, and with QoS 2 nothing doubled.
#[test]
fn resuming_publishers_lose_nothing_and_double_no_qos_2_message() {
    load_cases(2);
}

/// Every configuration runs, and the test fails at the end with what failed in each.
fn load_cases(durable: usize) {
    let mut failed = Vec::new();
    for (shards, qos, proto) in [
        (1, 1, Proto::V311),
        (1, 2, Proto::V5),
        (4, 1, Proto::V5),
        (4, 2, Proto::V311),
    ] {
        let limit = Duration::from_secs(60 + 40 * crash_rounds() as u64);
        let what = format!(
            "kill -9 under load, {shards} shard(s), QoS {qos}, {proto:?}, {durable} durable \
             publisher(s)"
        );
        let run = std::panic::catch_unwind(|| {
            bounded(&what, limit, move || {
                crash_under_load(shards, qos, proto, durable)
            })
        });
        if let Err(panic) = run {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{what}: {message}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 4 configurations failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}
