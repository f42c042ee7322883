//! `persistence true` across restarts of an embedded broker (issue 16): what a restart must keep, with
//! the shard count changing between runs (sessions re-homed), a log compacted while the broker runs,
//! and every QoS flow completing while acknowledgements and QoS 2 writes wait for durability.
//! (Killed brokers and damaged files: `tests/18_persistence.rs`; kill -9 under load:
//! `tests/20_crash_load.rs`; both against the binary.)
//!
//! Each broker is stopped by dropping its handle (a clean shutdown); the next one reads the same
//! directory. Every wait is for a packet, with the raw client's deadline.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::raw::{self, kind, Connect, RawClient};
use common::{unique_id, with_timeout, Proto};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// A scratch persistence directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "shardmq-persist-{name}-{}-{}",
            std::process::id(),
            unique_id("d")
        ));
        let _ = std::fs::remove_dir_all(&d);
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(dir: &Path, shards: usize, extra: &str) -> shardmq::settings::Settings {
    let text = format!(
        "listener 1883 127.0.0.1\nallow_anonymous true\nshards {shards}\ncpu_affinity false\n\
         persistence true\npersistence_location {}\n{extra}",
        dir.display()
    );
    let mut config = shardmq::config::Config::parse_str(&text, Path::new("test.conf"))
        .expect("test config accepted");
    for l in &mut config.listeners {
        l.port = 0;
    }
    shardmq::server::settings_from_config(&config).expect("settings")
}

fn start(settings: shardmq::settings::Settings) -> (shardmq::server::BrokerHandle, SocketAddr) {
    let broker = shardmq::server::start_with(Arc::new(settings)).expect("broker starts");
    let addr = broker.local_addrs()[0];
    (broker, addr)
}

fn persistent(addr: SocketAddr, id: &str) -> (RawClient, bool) {
    let (c, ack) = RawClient::connect(addr, &Connect::new(Proto::V311, id).clean(false));
    (c, ack.session_present)
}

/// Reads PUBLISHes until `n` arrived, acknowledging each (QoS 1 and 2); their payloads in order.
fn receive(c: &mut RawClient, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let p = c.read_packet();
        match p.kind() {
            kind::PUBLISH => {
                let m = p.publish(Proto::V311);
                match m.qos {
                    1 => c.send(&raw::ack(kind::PUBACK, m.pkid)),
                    2 => c.send(&raw::ack(kind::PUBREC, m.pkid)),
                    _ => {}
                }
                got.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
            kind::PUBREL => c.send(&raw::ack(kind::PUBCOMP, p.ack_pkid())),
            other => panic!("unexpected packet {other:#x}"),
        }
    }
    got
}

/// Sessions (20 clients), their queued messages and retained messages written by 4 shards are all
/// found by 1 shard and then by 3: each session is re-homed to `home(client id)` of the new count.
#[test]
fn sessions_and_retained_messages_follow_a_change_of_shard_count() {
    with_timeout("re-homing", CASE_TIMEOUT, || {
        let dir = Dir::new("rehome");
        let ids: Vec<String> = (0..20).map(|i| unique_id(&format!("rh{i}"))).collect();
        {
            let (_broker, addr) = start(settings(&dir.0, 4, ""));
            for (i, id) in ids.iter().enumerate() {
                let (mut c, present) = persistent(addr, id);
                assert!(!present);
                assert_eq!(c.subscribe(&[(&format!("rh/{i}"), 1)]), vec![1]);
                c.send(&raw::disconnect());
            }
            let mut p = RawClient::connect_clean(addr, Proto::V311, &unique_id("pub"));
            for i in 0..ids.len() {
                for n in 0..3 {
                    p.publish(&format!("rh/{i}"), 1, false, format!("{i}-{n}").as_bytes());
                }
            }
            for t in 0..50 {
                p.publish(&format!("rr/{t}"), 1, true, format!("r{t}").as_bytes());
            }
            p.publish("rr/7", 1, true, b"");
        }
        {
            let (_broker, addr) = start(settings(&dir.0, 1, ""));
            for (i, id) in ids.iter().enumerate() {
                let (mut c, present) = persistent(addr, id);
                assert!(present, "{id}: session kept from 4 shards to 1");
                let want: Vec<String> = (0..3).map(|n| format!("{i}-{n}")).collect();
                assert_eq!(
                    receive(&mut c, 3),
                    want,
                    "{id}: queued while away, in order"
                );
                c.send(&raw::disconnect());
            }
            let mut s = RawClient::connect_clean(addr, Proto::V311, &unique_id("rs"));
            s.subscribe(&[("rr/+", 0)]);
            let mut got = receive(&mut s, 49);
            got.sort();
            let mut want: Vec<String> = (0..50)
                .filter(|&t| t != 7)
                .map(|t| format!("r{t}"))
                .collect();
            want.sort();
            assert_eq!(
                got, want,
                "every retained message, the cleared one excepted"
            );
            s.expect_silence(Duration::from_millis(200));
        }
        let (_broker, addr) = start(settings(&dir.0, 3, ""));
        let mut clients: Vec<RawClient> = ids
            .iter()
            .map(|id| {
                let (c, present) = persistent(addr, id);
                assert!(present, "{id}: session kept from 1 shard to 3");
                c
            })
            .collect();
        let mut p = RawClient::connect_clean(addr, Proto::V311, &unique_id("pub"));
        for i in 0..ids.len() {
            p.publish(&format!("rh/{i}"), 1, false, b"after");
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(receive(c, 1), ["after"], "client {i}: subscription kept");
            c.expect_silence(Duration::from_millis(50));
        }
    });
}

/// A QoS 2 subscriber that is connected gets QoS 2 messages (written once their records are durable),
/// completes the flow, and after a restart is owed nothing: the completion was kept too.
#[test]
fn qos2_flows_complete_and_completed_ones_stay_completed() {
    with_timeout("qos2 durable", CASE_TIMEOUT, || {
        for shards in [1, 2] {
            let dir = Dir::new("qos2");
            let id = unique_id("q2");
            {
                let (_broker, addr) = start(settings(&dir.0, shards, ""));
                let (mut c, _) = persistent(addr, &id);
                c.subscribe(&[("q2/t", 2)]);
                let mut p = RawClient::connect_clean(addr, Proto::V311, &unique_id("pub"));
                for n in 0..20 {
                    // Waits for PUBREC, sends PUBREL, waits for PUBCOMP.
                    p.publish("q2/t", 2, false, format!("{n}").as_bytes());
                }
                // 20 PUBLISHes (answered PUBREC) and 20 PUBRELs (answered PUBCOMP), interleaved.
                let (mut got, mut released) = (Vec::new(), 0);
                while got.len() < 20 || released < 20 {
                    let p = c.read_packet();
                    match p.kind() {
                        kind::PUBLISH => {
                            let m = p.publish(Proto::V311);
                            assert_eq!(m.qos, 2);
                            c.send(&raw::ack(kind::PUBREC, m.pkid));
                            got.push(String::from_utf8_lossy(&m.payload).into_owned());
                        }
                        kind::PUBREL => {
                            released += 1;
                            c.send(&raw::ack(kind::PUBCOMP, p.ack_pkid()));
                        }
                        other => panic!("unexpected packet {other:#x}"),
                    }
                }
                let want: Vec<String> = (0..20).map(|n| n.to_string()).collect();
                assert_eq!(got, want, "{shards} shards");
                // The PUBCOMPs are read before the DISCONNECT (one connection, in order).
                c.ping();
                c.send(&raw::disconnect());
            }
            let (_broker, addr) = start(settings(&dir.0, shards, ""));
            let (mut c, present) = persistent(addr, &id);
            assert!(present);
            c.expect_silence(Duration::from_millis(300));
        }
    });
}

/// The log is compacted while the broker runs (here at 16 KiB instead of 64 MiB): it stays small under
/// churn, and what the compacted log holds is the state (a restart finds the session and its queue).
#[test]
fn a_compacted_log_keeps_the_state() {
    with_timeout("compaction", CASE_TIMEOUT, || {
        let dir = Dir::new("compact");
        let id = unique_id("cp");
        let log = dir.0.join("mosquitto.db.1.0.log");
        {
            let mut s = settings(&dir.0, 1, "");
            s.persistence.as_mut().unwrap().compact_min = 16 << 10;
            let (_broker, addr) = start(s);
            let (mut c, _) = persistent(addr, &id);
            c.subscribe(&[("cp/t", 1)]);
            let mut p = RawClient::connect_clean(addr, Proto::V311, &unique_id("pub"));
            let payload = vec![b'x'; 200];
            for _ in 0..2000 {
                p.publish("cp/t", 1, false, &payload);
                receive(&mut c, 1);
            }
            c.send(&raw::disconnect());
            for n in 0..5 {
                p.publish("cp/t", 1, false, format!("kept {n}").as_bytes());
            }
        }
        // Stopped: the zeros written ahead of the records are cut. 2000 messages of 200 bytes went
        // through the log: over 400 KB without compaction.
        let len = std::fs::metadata(&log).expect("the log").len();
        assert!(len < 100 << 10, "the log was compacted: {len} bytes");
        let (_broker, addr) = start(settings(&dir.0, 1, ""));
        let (mut c, present) = persistent(addr, &id);
        assert!(present);
        let want: Vec<String> = (0..5).map(|n| format!("kept {n}")).collect();
        assert_eq!(receive(&mut c, 5), want);
    });
}

/// Shared subscription members (persistent sessions) written by 4 shards are members again after a
/// restart with 2: each message reaches one of them, and UNSUBSCRIBE leaves the group.
#[test]
fn shared_subscriptions_survive_a_restart() {
    with_timeout("shared", CASE_TIMEOUT, || {
        let dir = Dir::new("shared");
        let ids: Vec<String> = (0..2).map(|i| unique_id(&format!("sm{i}"))).collect();
        {
            let (_broker, addr) = start(settings(&dir.0, 4, ""));
            for id in &ids {
                let (mut c, _) = persistent(addr, id);
                assert_eq!(c.subscribe(&[("$share/g/sh/#", 1)]), vec![1]);
                c.send(&raw::disconnect());
                c.expect_closed();
            }
        }
        let (_broker, addr) = start(settings(&dir.0, 2, ""));
        let mut members: Vec<RawClient> = ids
            .iter()
            .map(|id| {
                let (c, present) = persistent(addr, id);
                assert!(present, "{id}: session kept");
                c
            })
            .collect();
        let mut p = RawClient::connect_clean(addr, Proto::V311, &unique_id("pub"));
        for n in 0..10 {
            p.publish("sh/x", 1, false, format!("s{n}").as_bytes());
        }
        // Round robin over the two online members: five each.
        let mut got: Vec<String> = members.iter_mut().flat_map(|c| receive(c, 5)).collect();
        got.sort();
        let mut want: Vec<String> = (0..10).map(|n| format!("s{n}")).collect();
        want.sort();
        assert_eq!(got, want, "each message to one member");
        members[0].send(&raw::unsubscribe(Proto::V311, 9, &["$share/g/sh/#"]));
        assert_eq!(members[0].expect(kind::UNSUBACK).ack_pkid(), 9);
        p.publish("sh/x", 1, false, b"after");
        assert_eq!(receive(&mut members[1], 1), ["after"]);
        members[0].expect_silence(Duration::from_millis(200));
    });
}

/// MQTT 5 across a restart (issue 17): a subscription keeps its Subscription Identifier, for new
/// messages and for a copy that was queued before the restart; a retained message that expired
/// while the broker ran does not come back. (The expiry clock of what is still owed starts again
/// at the restart: `message::expiry`.)
#[test]
fn v5_subscription_identifiers_survive_a_restart_and_expired_retained_messages_do_not_return() {
    with_timeout("v5 restart", CASE_TIMEOUT, || {
        use common::raw::{prop, PropValue, Props};
        let ids_of = |p: &raw::Packet| -> Vec<u32> {
            p.publish_props()
                .into_iter()
                .filter(|(id, _)| *id == prop::SUBSCRIPTION_IDENTIFIER)
                .map(|(_, v)| match v {
                    PropValue::Int(n) => n,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let dir = Dir::new("v5ids");
        let id = unique_id("v5id");
        let connect = Connect::new(Proto::V5, &id)
            .clean(false)
            .prop_u32(prop::SESSION_EXPIRY_INTERVAL, 3600);
        {
            let (_broker, addr) = start(settings(&dir.0, 2, ""));
            let (mut c, _) = RawClient::connect(addr, &connect);
            let props = Props::default().varint(prop::SUBSCRIPTION_IDENTIFIER, 4242);
            c.send(&raw::subscribe_v5(1, &props, &[("v5/+", 1)]));
            assert_eq!(c.expect(kind::SUBACK).suback(Proto::V5).1, vec![1]);
            c.send(&raw::disconnect());
            let mut p = RawClient::connect_clean(addr, Proto::V5, &unique_id("pub"));
            p.publish("v5/queued", 1, false, b"q");
            let expiring = Props::default().u32(prop::MESSAGE_EXPIRY_INTERVAL, 1);
            p.send(&raw::publish_v5("v5r/gone", 1, true, 7, &expiring, b"r"));
            assert_eq!(p.expect(kind::PUBACK).ack_pkid(), 7);
            p.publish("v5r/kept", 1, true, b"k");
            // Long enough for the retained message's interval to pass and a tick to remove it.
            std::thread::sleep(Duration::from_millis(2500));
        }
        let (_broker, addr) = start(settings(&dir.0, 3, ""));
        let (mut c, ack) = RawClient::connect(addr, &connect);
        assert!(ack.session_present);
        let q = c.expect(kind::PUBLISH);
        assert_eq!(q.publish(Proto::V5).topic, "v5/queued");
        assert_eq!(ids_of(&q), vec![4242], "queued before the restart");
        c.send(&raw::ack(kind::PUBACK, q.publish(Proto::V5).pkid));
        let mut p = RawClient::connect_clean(addr, Proto::V5, &unique_id("pub"));
        p.publish("v5/new", 1, false, b"n");
        let n = c.expect(kind::PUBLISH);
        assert_eq!(n.publish(Proto::V5).topic, "v5/new");
        assert_eq!(ids_of(&n), vec![4242], "published after the restart");
        c.send(&raw::ack(kind::PUBACK, n.publish(Proto::V5).pkid));

        let mut r = RawClient::connect_clean(addr, Proto::V5, &unique_id("r"));
        assert_eq!(r.subscribe(&[("v5r/#", 0)]), vec![0]);
        assert_eq!(r.recv_publish().topic, "v5r/kept");
        // Nothing else is retained; no later event to wait for.
        r.expect_silence(Duration::from_millis(300));
    });
}
