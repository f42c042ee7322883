//! Interoperability with Eclipse Paho's Python client (paho-mqtt 2.x, also 1.x), for MQTT 3.1, 3.1.1
//! and 5.0: each script in `tests/python/` checks one area and exits non-zero with a message on failure.
//!
//! - `pubsub.py`: QoS 0/1/2 delivery, min(published, granted) QoS [MQTT-3.8.4-6], `+` / `#` filters.
//! - `retained.py`: retained on subscribe with retain 1 [MQTT-3.3.1-6] [MQTT-3.3.1-8], live retain 0
//!   [MQTT-3.3.1-9], replace, clear with an empty payload [MQTT-3.3.1-10].
//! - `will.py`: will on abnormal close [MQTT-3.1.2-8], none after DISCONNECT [MQTT-3.1.2-10], retained
//!   will [MQTT-3.1.2-17].
//! - `session.py`: persistent session, queued QoS 1/2 while away, Session Present [MQTT-3.2.2-2], clean
//!   session discards it [MQTT-3.1.2-6].
//!
//! The same scripts run against any broker with `tests/python/run_against.sh HOST PORT` (e.g. a real
//! Mosquitto, to check the scripts themselves). `python3` on PATH runs them. A missing python3, or a
//! paho-mqtt that is missing or older than 1.6, fails the tests, unless `SHARDMQ_SKIP_INTEROP=1` is set,
//! which skips them loudly.

mod common;

use common::{for_each_case, paho_present, ALL};
use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Runs `tests/python/<name>` against a fresh broker for every protocol and shard count.
fn run_script(name: &'static str) {
    if !paho_present() {
        return;
    }
    for_each_case(ALL, "", move |case| {
        let proto = match case.proto {
            common::Proto::V31 => "31",
            common::Proto::V311 => "311",
            common::Proto::V5 => "5",
        };
        let out = Command::new("python3")
            .arg(script(name))
            .args(["127.0.0.1", &case.port().to_string(), "--protocol", proto])
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{name} --protocol {proto} failed ({:?}):\n{stdout}{stderr}",
            out.status
        );
        assert!(
            stdout.starts_with("OK "),
            "{name} did not report OK: {stdout}"
        );
    });
}

#[test]
fn paho_pubsub() {
    run_script("pubsub.py");
}

#[test]
fn paho_retained() {
    run_script("retained.py");
}

#[test]
fn paho_will() {
    run_script("will.py");
}

#[test]
fn paho_session() {
    run_script("session.py");
}
