//! Durable persistence (issue 16), checked on the broker binary as a process that is killed and
//! started again on the same `persistence_location` and the same port.
//!
//! What is checked:
//! - Persistent sessions (3.1.1 clean session 0, 5.0 clean start 0 with a session expiry), their
//!   subscriptions, the QoS 1/2 messages queued for them, and retained messages (one set, one set
//!   and then cleared by an empty retained publish) survive SIGKILL, and SIGTERM (exit status 0):
//!   the session is present in the CONNACK, the queued messages arrive in order, the subscription
//!   still routes, only the retained message not cleared is there.
//! - A damaged log: truncated inside its last record (several offsets), it is reported as
//!   `torn tail, dropped <n> bytes` with n the bytes cut into, and the state of the earlier
//!   records is there; a flipped byte in a record before the last, or a garbage header, is
//!   reported as `is corrupt at offset ... moved the file to <path>`, that file holds the damaged
//!   bytes, the records before the damage are kept (and written into the next generation), and
//!   the broker serves.
//!
//! - A full disk (a file size limit the broker's log reaches): QoS 1 acknowledgements wait with an
//!   error line, QoS 0 keeps flowing, and once space returns the held PUBACKs go out, a notice says
//!   so, and the offline subscriber gets every message, the held ones included.
//!
//! - Session expiry and the Will Delay Interval count the time the broker was down: a session that
//!   expired meanwhile is gone after the restart and its waiting will is sent then; a will delayed
//!   on a connection that the stop ended goes out from the restarted broker.
//!
//! (Acknowledged messages under load across kill -9: `tests/20_crash_load.rs`.)
//!
//! SIGKILL ends the process, not the machine: what the broker wrote but did not fsync survives it
//! in the page cache. These tests therefore catch acknowledgements sent before the records were
//! written, and lost or mangled records at replay, not a missing fsync.
//!
//! The tests in this file run one at a time. Every wait is for an event (a CONNACK after a start, a
//! log line, a packet, the exit) with a deadline. The broker listens on the same port across its
//! restarts: one below the kernel's ephemeral range, so that no client connection takes it while
//! the broker is down. The harness: `tests/common/persist.rs`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::persist::{
    bounded, clock_nanos, disconnect, fixed_port, publisher, retained_of, Broker, Delivery, Rng,
    Scratch, Sub,
};
use common::raw::{self, kind, Connect, RawClient, ReadEnd, Witness};
use common::{unique_id, Proto};

/// The file-name prefix when `persistence_file` is not set.
const DEFAULT_DB: &str = "mosquitto.db";

/// Bytes of a log file's header, and of a record's `len | crc` frame.
const HEADER_LEN: usize = 18;
const FRAME_LEN: usize = 8;

// ---------------------------------------------------------------------------------------------
// Sessions, subscriptions, queued and retained messages survive SIGKILL and SIGTERM

#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill9,
    Term,
}

fn state_survives(stop: Stop, shards: usize, proto: Proto) {
    let mut rng = Rng(clock_nanos());
    let dir = Scratch::new(&format!("survive-{stop:?}-{shards}-{}", proto.level()));
    let port = fixed_port(&mut rng);
    let config = dir.config(port, shards, "");
    let ctx = format!("{stop:?}, {shards} shard(s), {proto:?}");

    let mut broker = Broker::start(&config, port);
    let addr = broker.addr;
    let mut sub = Sub::new("keep", proto);
    let (mut c, present) = sub.connect(addr);
    assert!(!present, "{ctx}: a new session is not present");
    assert_eq!(
        c.subscribe(&[("a/#", 1), ("b/+", 2)]),
        vec![1, 2],
        "{ctx}: granted QoS"
    );
    disconnect(c);

    // Queued for the subscriber, QoS 1 and 2 interleaved; then retained messages, one cleared.
    let mut p = publisher(addr, proto);
    let mut expected = Vec::new();
    for i in 0..8 {
        let (topic, qos) = if i % 2 == 0 {
            (format!("a/{i}/x"), 1)
        } else {
            (format!("b/{i}"), 2)
        };
        let payload = format!("m{i}");
        p.publish(&topic, qos, false, payload.as_bytes());
        expected.push(Delivery {
            topic,
            payload,
            qos,
            retain: false,
            dup: false,
        });
    }
    p.publish("r/keep", 1, true, b"kept");
    p.publish("r/gone", 2, true, b"gone");
    p.publish("r/gone", 1, true, b"");
    disconnect(p);

    match stop {
        Stop::Kill9 => broker.kill_9(),
        Stop::Term => broker.stop(),
    }
    // Without `persistence_file`, the files are named after mosquitto.db.
    current_logs(&dir.data(), DEFAULT_DB, shards);
    let mut broker = Broker::start(&config, port);

    let (mut c, present) = sub.connect(addr);
    assert!(
        present,
        "{ctx}: the persistent session is present after the restart (CONNACK session present = 1)"
    );
    let payloads: Vec<String> = expected.iter().map(|d| d.payload.clone()).collect();
    sub.receive_all(&mut c, &payloads, &ctx);
    assert_eq!(
        sub.got, expected,
        "{ctx}: the queued messages, each once, in order, at the QoS of publish and subscription"
    );

    let retained = retained_of(addr, proto, "r/#", "r/marker");
    let kept = Delivery {
        topic: "r/keep".into(),
        payload: "kept".into(),
        qos: 1,
        retain: true,
        dup: false,
    };
    assert_eq!(
        retained,
        vec![kept],
        "{ctx}: only the retained message that was not cleared"
    );

    // The subscription survived: a new message reaches the resumed session, next after the queue.
    let mut p = publisher(addr, proto);
    p.publish("a/x", 1, false, b"after");
    sub.receive_all(&mut c, &["after".to_string()], &ctx);
    assert_eq!(
        sub.got.len(),
        expected.len() + 1,
        "{ctx}: nothing arrived between the queued messages and the new one: {:?}",
        sub.got
    );
    assert_eq!(sub.got.last().unwrap().topic, "a/x", "{ctx}");
    disconnect(p);
    disconnect(c);
    broker.stop();
    assert!(
        sub.notes.is_empty(),
        "{ctx}: protocol oddities: {:?}",
        sub.notes
    );
}

#[test]
fn subscriptions_retained_and_queued_messages_survive_kill_9() {
    for (shards, proto) in [
        (1, Proto::V311),
        (1, Proto::V5),
        (4, Proto::V311),
        (4, Proto::V5),
    ] {
        bounded(
            &format!("kill -9, {shards} shard(s), {proto:?}"),
            Duration::from_secs(60),
            move || state_survives(Stop::Kill9, shards, proto),
        );
    }
}

#[test]
fn a_clean_restart_keeps_everything_too() {
    for (shards, proto) in [(1, Proto::V5), (4, Proto::V311)] {
        bounded(
            &format!("SIGTERM, {shards} shard(s), {proto:?}"),
            Duration::from_secs(60),
            move || state_survives(Stop::Term, shards, proto),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Torn and corrupt logs

/// A record of a log file: where its frame starts, and its body's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    start: usize,
    body: usize,
}

impl Frame {
    fn end(&self) -> usize {
        self.start + FRAME_LEN + self.body
    }
}

/// The records of a log file, walked by their `len` fields after the header; the file must end at a
/// record's end.
fn frames(bytes: &[u8], name: &str) -> Vec<Frame> {
    assert!(bytes.len() >= HEADER_LEN, "{name}: shorter than a header");
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        assert!(
            at + FRAME_LEN <= bytes.len(),
            "{name}: a partial frame at {at}"
        );
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let f = Frame {
            start: at,
            body: len,
        };
        assert!(
            f.end() <= bytes.len(),
            "{name}: record at {at} of {len} bytes runs past the end ({})",
            bytes.len()
        );
        out.push(f);
        at = f.end();
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file of `dir`, by name.
fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Makes `dir` hold exactly `files`.
fn restore(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// The logs of the current generation, by `<db>.current`: `<db>.<generation>.<shard>.log` for
/// every shard.
fn current_logs(dir: &Path, db: &str, shards: usize) -> Vec<String> {
    let files = read_dir_files(dir);
    let names: Vec<&String> = files.keys().collect();
    let current = files
        .get(&format!("{db}.current"))
        .unwrap_or_else(|| panic!("no {db}.current in {}: {names:?}", dir.display()));
    let text = String::from_utf8_lossy(current);
    // The generation first (what may follow it is the file's business).
    let generation = text.split_whitespace().next().unwrap_or("");
    assert!(
        !generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit()),
        "{db}.current names a generation, a decimal number, first: {text:?}"
    );
    (0..shards)
        .map(|shard| {
            let log = format!("{db}.{generation}.{shard}.log");
            assert!(
                files.contains_key(&log),
                "{db}.current says {text:?}: no {log} among {names:?}"
            );
            log
        })
        .collect()
}

/// The path in a `moved the file to <path>` log line (relative paths resolved against `dir`).
fn moved_to(line: &str, dir: &Path) -> PathBuf {
    let rest = line
        .split("moved the file to ")
        .nth(1)
        .unwrap_or_else(|| panic!("no path after `moved the file to` in {line:?}"));
    let word = rest.split_whitespace().next().unwrap_or("");
    let word = word
        .trim_matches(|c: char| matches!(c, '\'' | '"' | '`' | '(' | ')' | '<' | '>'))
        .trim_end_matches(['.', ',', ';', ':']);
    let path = PathBuf::from(word);
    if path.is_absolute() {
        path
    } else {
        dir.join(path)
    }
}

/// The state the damage tests make and look for: a persistent session subscribed to `t/#` with three
/// queued messages, and a retained message, written before the log's last record.
fn make_state(addr: SocketAddr, sub: &mut Sub) {
    let (mut c, _) = sub.connect(addr);
    assert_eq!(c.subscribe(&[("t/#", 1)]), vec![1]);
    disconnect(c);
    let mut p = publisher(addr, sub.proto);
    for i in 1..=3 {
        p.publish(&format!("t/{i}"), 1, false, format!("q{i}").as_bytes());
    }
    p.publish("keep/1", 1, true, b"K");
    p.publish("zz/last", 1, true, b"L");
    disconnect(p);
}

/// The session (present, with its three queued messages) and the retained `keep/1` are there.
fn expect_state(addr: SocketAddr, sub: &mut Sub, ctx: &str) {
    let (mut c, present) = sub.connect(addr);
    assert!(present, "{ctx}: the persistent session is present");
    sub.got.clear();
    sub.receive_all(&mut c, &["q1".into(), "q2".into(), "q3".into()], ctx);
    let got: Vec<&str> = sub.got.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(got, ["q1", "q2", "q3"], "{ctx}: the queued messages");
    disconnect(c);
    let retained = retained_of(addr, sub.proto, "keep/#", "keep/marker");
    assert!(
        retained.len() == 1 && retained[0].payload == "K",
        "{ctx}: the retained message keep/1: {retained:?}"
    );
}

fn damage_cases() {
    const DB: &str = "shardmq.db";
    let mut rng = Rng(clock_nanos());
    let dir = Scratch::new("damage");
    let data = dir.data();
    let port = fixed_port(&mut rng);
    let config = dir.config(port, 1, &format!("persistence_file {DB}\n"));
    let proto = Proto::V311;
    let mut sub = Sub::new("dmg", proto);

    let mut broker = Broker::start(&config, port);
    make_state(broker.addr, &mut sub);
    broker.stop();
    let pristine = read_dir_files(&data);
    let log = current_logs(&data, DB, 1).remove(0);
    let bytes = pristine[&log].clone();
    let records = frames(&bytes, &log);
    let body = |f: &Frame| &bytes[f.start + FRAME_LEN..f.end()];
    let find = |needle: &[u8]| {
        *records
            .iter()
            .find(|f| contains(body(f), needle))
            .unwrap_or_else(|| {
                panic!(
                    "{log}: no record holds {:?} ({} records)",
                    String::from_utf8_lossy(needle),
                    records.len()
                )
            })
    };
    let last = *records.last().expect("records in the log");
    // The last thing the test did was to retain zz/last; whatever the broker wrote after it, if that
    // record is the last, a cut into it drops it.
    let last_is_zz = contains(body(&last), b"zz/last");
    let subscription = find(b"t/#");
    let kept = find(b"keep/1");
    assert!(
        subscription != last && kept != last,
        "{log}: the state checked after the damage must be in earlier records than the last \
         ({last:?}); subscription {subscription:?}, keep/1 {kept:?}"
    );
    let path = data.join(&log);

    // (a) Cut inside the last record: into the frame's length, into its checksum, after the frame,
    // half-way through the body, one byte short.
    let mut cuts = vec![
        last.start + 2,
        last.start + 6,
        last.start + FRAME_LEN,
        last.start + FRAME_LEN + last.body / 2,
        last.end() - 1,
    ];
    cuts.sort_unstable();
    cuts.dedup();
    cuts.retain(|&c| c > last.start && c < last.end());
    for cut in cuts {
        let ctx = format!(
            "{log} ({} bytes) cut at {cut}, inside its last record {last:?}",
            bytes.len()
        );
        restore(&data, &pristine);
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let mut broker = Broker::start(&config, port);
        let line = broker.wait_for_stderr("torn tail, dropped ");
        let dropped: Option<usize> = line
            .split("torn tail, dropped ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        assert_eq!(
            dropped,
            Some(cut - last.start),
            "{ctx}: the bytes of the partial record are dropped: {line:?}"
        );
        assert!(
            broker.stderr_line("is corrupt at offset").is_none(),
            "{ctx}: a torn tail is not corruption:\n{}",
            broker.stderr_text()
        );
        Witness::new(broker.addr, proto).check();
        expect_state(broker.addr, &mut sub, &ctx);
        if last_is_zz {
            let retained = retained_of(broker.addr, proto, "zz/#", "zz/marker");
            assert!(
                retained.is_empty(),
                "{ctx}: the retained message of the torn record is not there: {retained:?}"
            );
        }
        broker.stop();
    }

    // (b) A flipped byte in a record before the last, and (c) a garbage header.
    let mut flipped = bytes.clone();
    flipped[kept.start + FRAME_LEN + kept.body / 2] ^= 0x5A;
    let mut garbage = bytes.clone();
    garbage[..HEADER_LEN].copy_from_slice(b"this is not a log!");
    for (what, damaged, state_kept) in [
        (
            format!("a byte flipped in the record of keep/1 {kept:?}"),
            flipped,
            true,
        ),
        ("a garbage header".to_string(), garbage, false),
    ] {
        let ctx = format!("{log} ({} bytes) with {what}", bytes.len());
        restore(&data, &pristine);
        std::fs::write(&path, &damaged).unwrap();
        let mut broker = Broker::start(&config, port);
        let line = broker.wait_for_stderr("is corrupt at offset");
        assert!(
            line.contains("moved the file to"),
            "{ctx}: the line says where the file went: {line:?}"
        );
        let aside = moved_to(&line, &data);
        let aside_bytes = std::fs::read(&aside).unwrap_or_else(|e| {
            panic!(
                "{ctx}: the moved-aside file {} ({e}); the directory has {:?}",
                aside.display(),
                read_dir_files(&data).keys().collect::<Vec<_>>()
            )
        });
        assert!(
            aside_bytes == damaged,
            "{ctx}: {} holds the damaged file as it was",
            aside.display()
        );
        Witness::new(broker.addr, proto).check();
        broker.stop();
        if state_kept {
            // The records before the damage were kept, and written into the next generation: a second
            // start finds nothing wrong, and the session and its messages.
            let mut broker = Broker::start(&config, port);
            let mut sub = Sub {
                id: sub.id.clone(),
                ..Sub::new("dmg", proto)
            };
            let (mut c, present) = sub.connect(broker.addr);
            assert!(
                present,
                "{ctx}: the session, written before the damaged record, is present"
            );
            sub.receive_all(&mut c, &["q1".into(), "q2".into(), "q3".into()], &ctx);
            disconnect(c);
            broker.stop();
            for bad in ["is corrupt at offset", "torn tail"] {
                assert!(
                    broker.stderr_line(bad).is_none(),
                    "{ctx}: the generation written after the damage is sound:\n{}",
                    broker.stderr_text()
                );
            }
        }
    }
}

#[test]
fn torn_and_corrupt_files_are_reported_and_the_broker_serves() {
    bounded("damaged logs", Duration::from_secs(120), damage_cases);
}

// ---------------------------------------------------------------------------------------------
// A full disk

#[test]
fn a_full_disk_holds_acknowledgements_and_qos0_flows_until_space_returns() {
    bounded("disk full", Duration::from_secs(90), || {
        let mut rng = Rng(clock_nanos());
        let dir = Scratch::new("disk-full");
        let port = fixed_port(&mut rng);
        // prlimit(2) on another user's process needs a capability: the broker keeps this test's
        // user (as root: `user root`, else it would switch to mosquitto or nobody).
        // SAFETY: geteuid cannot fail.
        let keep_user = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        let config = dir.config(port, 1, keep_user);
        // The log grows a mebibyte of zeros at a time (2 MiB at its first write): past 3 MiB it
        // cannot grow, about 2 MiB of records in.
        let mut broker = Broker::start_limited(&config, port, Some(3 << 20));
        let addr = broker.addr;
        let proto = Proto::V311;
        let (mut offline, _) =
            RawClient::connect(addr, &Connect::new(proto, "full-sub").clean(false));
        offline.subscribe(&[("full/#", 1)]);
        disconnect(offline);
        let mut p = publisher(addr, proto);
        let payload = vec![b'x'; 10_000];
        let mut acked = 0u16;
        let held = loop {
            assert!(
                acked < 1000,
                "1000 messages of 10 KB acknowledged under a 3 MiB limit"
            );
            let pkid = acked + 1;
            p.send(&raw::publish(
                proto, "full/t", 1, false, false, pkid, &payload,
            ));
            match p.try_read_packet(Duration::from_secs(2)) {
                Ok(ack) => {
                    assert_eq!(ack.kind(), kind::PUBACK);
                    assert_eq!(ack.ack_pkid(), pkid);
                    acked = pkid;
                }
                Err(ReadEnd::Timeout) => break pkid,
                Err(ReadEnd::Closed) => panic!("the broker closed the publisher"),
            }
        };
        assert!(
            acked > 100,
            "{acked} messages acknowledged before the disk was full"
        );
        broker.wait_for_stderr("QoS 1/2 acknowledgements are held");
        // QoS 0 flows meanwhile, and new clients are served.
        let mut q0 = RawClient::connect_clean(addr, proto, &unique_id("q0"));
        q0.subscribe(&[("q0/t", 0)]);
        let mut p0 = publisher(addr, proto);
        p0.publish("q0/t", 0, false, b"still here");
        assert_eq!(q0.recv_publish().payload, b"still here");
        // Space returns: the held PUBACK goes out, and nothing was lost.
        broker.set_max_file_size(libc::RLIM_INFINITY);
        let ack = p
            .try_read_packet(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the held PUBACK after space returned: {e:?}"));
        assert_eq!((ack.kind(), ack.ack_pkid()), (kind::PUBACK, held));
        broker.wait_for_stderr("Persistence writes succeed again");
        let (mut back, present) =
            RawClient::connect(addr, &Connect::new(proto, "full-sub").clean(false));
        assert!(present.session_present);
        for n in 1..=held {
            let m = back.recv_publish();
            assert_eq!(m.payload.len(), payload.len(), "message {n}");
            back.send(&raw::ack(kind::PUBACK, m.pkid));
        }
        broker.stop();
    });
}

// ---------------------------------------------------------------------------------------------
// Session expiry and delayed wills count the time the broker was down

/// Three v5 sessions across a stop and a restart more than a second later: `short` (expiry 1 s, away
/// with a will delayed an hour) expired while the broker was down, so it is gone and its will goes at
/// the restart; `long` (expiry an hour, away) is still there; `live` (connected at the stop, will
/// delayed 1 s) has its will sent by the restarted broker (its connection ended without DISCONNECT).
fn time_away_counts(stop: Stop, shards: usize) {
    let mut rng = Rng(clock_nanos());
    let dir = Scratch::new(&format!("away-{stop:?}-{shards}"));
    let port = fixed_port(&mut rng);
    let config = dir.config(port, shards, "");
    let ctx = format!("{stop:?}, {shards} shard(s)");
    let proto = Proto::V5;
    let session = |id: &str, expiry: u32| {
        Connect::new(proto, id)
            .clean(false)
            .prop_u32(raw::prop::SESSION_EXPIRY_INTERVAL, expiry)
    };

    let mut broker = Broker::start(&config, port);
    let addr = broker.addr;
    let mut sub = Sub::new("wills", proto);
    let (mut c, _) = sub.connect(addr);
    assert_eq!(c.subscribe(&[("will/#", 1)]), vec![1], "{ctx}");
    disconnect(c);

    let short = unique_id("short");
    let (mut c, _) = RawClient::connect(
        addr,
        &session(&short, 1)
            .will("will/short", b"short", 1, false)
            .will_delay(3600),
    );
    // "Disconnect with Will Message": the will waits out its delay; the broker closing shows it
    // handled the DISCONNECT.
    c.send(&raw::disconnect_v5(0x04));
    c.expect_closed();
    let short_left = std::time::Instant::now();
    let long = unique_id("long");
    disconnect(RawClient::connect(addr, &session(&long, 3600)).0);
    let live_id = unique_id("live");
    let (mut live, _) = RawClient::connect(
        addr,
        &session(&live_id, 3600)
            .will("will/live", b"live", 1, false)
            .will_delay(1),
    );
    // Its PUBACK waits for its shard's log, the session record written at CONNECT included.
    live.publish("elsewhere", 1, false, b"x");
    // With one shard, this PUBACK likewise covers what the disconnects above recorded.
    publisher(addr, proto).publish("elsewhere", 1, false, b"barrier");

    match stop {
        Stop::Kill9 => broker.kill_9(),
        Stop::Term => broker.stop(),
    }
    drop(live);
    // What is tested is wall-clock time passing while the broker is down: wait it out.
    let down = Duration::from_millis(1500).saturating_sub(short_left.elapsed());
    std::thread::sleep(down);
    let _broker = Broker::start(&config, port);

    let (mut c, present) = sub.connect(addr);
    assert!(present, "{ctx}: the subscriber's session");
    sub.receive_all(&mut c, &["short".to_string(), "live".to_string()], &ctx);
    let (_, ack) = RawClient::connect(addr, &session(&short, 1));
    assert!(
        !ack.session_present,
        "{ctx}: the session with a 1 s expiry, away for longer while the broker was down, ended"
    );
    let (_, ack) = RawClient::connect(addr, &session(&long, 3600));
    assert!(
        ack.session_present,
        "{ctx}: the session with an hour's expiry is kept"
    );
    assert_eq!(
        sub.got
            .iter()
            .filter(|d| d.topic.starts_with("will/"))
            .count(),
        2,
        "{ctx}: each will once: {:?}",
        sub.got
    );
}

#[test]
fn session_expiry_and_will_delay_count_the_time_the_broker_was_down() {
    // kill -9 with one shard: the barrier PUBACK covers every record the test depends on.
    for (stop, shards) in [(Stop::Kill9, 1), (Stop::Term, 4)] {
        bounded(
            &format!("time away, {stop:?}, {shards} shard(s)"),
            Duration::from_secs(60),
            move || time_away_counts(stop, shards),
        );
    }
}
