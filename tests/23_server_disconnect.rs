//! Server-sent DISCONNECT reasons at shutdown, and `server_reference` (MQTT 5.0 §4.11, §4.13,
//! §3.14.2.1): what a v5 client is told when the broker ends its connection for a reason of its own.
//! (Keep-alive 0x8D is in 01_connect, takeover 0x8E in 05_session, Receive Maximum 0x93 and packet
//! size 0x95 in 06_limits, a failed re-authentication 0x87 in 22_enhanced_auth.)
//!
//! - A broker shutting down sends v5 clients DISCONNECT 0x8B (Server shutting down) and 3.1.1
//!   clients nothing, then closes.
//! - With `server_reference`, the shutdown DISCONNECT is 0x9C (Use another server) carrying the
//!   reference instead (default `server_reference_mode shutdown`). (0x9D at shutdown under `moved`
//!   cannot be observed here: `moved` admits no v5 client; `settings::Redirect::code` is unit-tested.)
//! - With `server_reference_mode redirect` / `moved`, new v5 clients get CONNACK 0x9C / 0x9D with the
//!   reference; 3.1.1 clients, who cannot be told, are served.
//!
//! Against Mosquitto (SHARDMQ_TEST_BROKER=mosquitto) nothing here runs: the test harness stops an
//! external Mosquitto with SIGKILL (so it says nothing at shutdown; 13_process checks a real SIGTERM
//! of shardmq), and Mosquitto 2.0 has no Server Reference option.

mod common;

use common::broker::{external_mosquitto, TestBroker};
use common::raw::{kind, prop, Connect, PropValue, RawClient};
use common::{shard_counts, unique_id, with_timeout, Proto, CASE_TIMEOUT};

const REFERENCE: &str = "standby.example.com:1883";

fn skip_on_mosquitto() -> bool {
    if external_mosquitto() {
        eprintln!(
            "skipped against Mosquitto: the harness SIGKILLs it, and it has no server_reference"
        );
    }
    external_mosquitto()
}

/// For each shard count: a broker with `config`, v5 and 3.1.1 clients connected, then shutdown;
/// `check` judges what each v5 client got before the close (3.1.1 clients must get nothing).
fn shutdown_with(config: &'static str, check: fn(&[common::raw::Packet])) {
    for &shards in shard_counts() {
        with_timeout("shutdown", CASE_TIMEOUT, move || {
            let broker = TestBroker::start(shards, config);
            // Several of each, so that with 4 shards clients sit on different shards.
            let mut v5: Vec<RawClient> = (0..4)
                .map(|_| RawClient::connect_clean(broker.addr(), Proto::V5, &unique_id("sd5")))
                .collect();
            let mut v3: Vec<RawClient> = (0..4)
                .map(|_| RawClient::connect_clean(broker.addr(), Proto::V311, &unique_id("sd3")))
                .collect();
            for c in v5.iter_mut().chain(v3.iter_mut()) {
                // Each connection is attached (CONNACK read; PINGRESP proves the session serves).
                c.ping();
            }
            // Dropping the broker shuts it down and waits for its connections: read meanwhile.
            let stopper = std::thread::spawn(move || drop(broker));
            for c in &mut v5 {
                check(&c.expect_closed());
            }
            for c in &mut v3 {
                let before = c.expect_closed();
                assert!(before.is_empty(), "3.1.1: just the close: {before:?}");
            }
            stopper.join().expect("broker stopped");
        });
    }
}

fn reference_of(p: &common::raw::Packet) -> Option<PropValue> {
    p.disconnect_props()
        .into_iter()
        .find(|(id, _)| *id == prop::SERVER_REFERENCE)
        .map(|(_, v)| v)
}

#[test]
fn shutdown_tells_v5_clients_the_server_is_shutting_down() {
    if skip_on_mosquitto() {
        return;
    }
    shutdown_with("", |before| {
        assert_eq!(
            before.len(),
            1,
            "one DISCONNECT, then the close: {before:?}"
        );
        assert_eq!(before[0].disconnect_reason(), 0x8B, "Server shutting down");
        assert_eq!(reference_of(&before[0]), None);
    });
}

#[test]
fn shutdown_with_a_server_reference_sends_clients_there() {
    if skip_on_mosquitto() {
        return;
    }
    shutdown_with("server_reference standby.example.com:1883\n", |before| {
        assert_eq!(
            before.len(),
            1,
            "one DISCONNECT, then the close: {before:?}"
        );
        assert_eq!(before[0].disconnect_reason(), 0x9C, "Use another server");
        assert_eq!(
            reference_of(&before[0]),
            Some(PropValue::Str(REFERENCE.into()))
        );
    });
}

/// `moved` and `redirect`: new v5 clients are refused with the reference; 3.1.1 clients are served.
#[test]
fn redirect_and_moved_refuse_new_v5_clients_with_the_reference() {
    if skip_on_mosquitto() {
        return;
    }
    for (mode, code) in [("redirect", 0x9C), ("moved", 0x9D)] {
        let config = format!("server_reference {REFERENCE}\nserver_reference_mode {mode}\n");
        common::for_each_case(&[Proto::V5, Proto::V311], &config, move |case| {
            let mut c = RawClient::open(case.addr, case.proto);
            c.send(&Connect::new(case.proto, &unique_id("rd")).encode());
            let ack = c.expect(kind::CONNACK).connack(case.proto);
            if case.proto.is_v5() {
                assert_eq!(ack.code, code, "{mode}: {ack:?}");
                assert_eq!(
                    ack.prop(prop::SERVER_REFERENCE),
                    Some(&PropValue::Str(REFERENCE.into()))
                );
                assert!(c.expect_closed().is_empty());
            } else {
                assert_eq!(ack.code, 0, "3.1.1 clients cannot be redirected: served");
                c.ping();
            }
        });
    }
}
