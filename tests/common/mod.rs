//! Helpers shared by the integration tests (`tests/NN_area.rs`).
//!
//! - [`TestBroker`]: a broker on `127.0.0.1:0` with anonymous access, stopped on drop.
//! - [`for_each_case`] / [`for_each_case_async`]: run a test body for every shard count in
//!   [`shard_counts`] and every protocol asked for, each case on its own fresh broker and each bounded
//!   by [`CASE_TIMEOUT`] (a hang fails the case instead of stalling the suite).
//! - [`raw`]: a hand-written MQTT encoder/decoder and a blocking [`raw::RawClient`], independent of the
//!   broker's codec, for tests that must control every byte.
//! - [`client`]: a small wrapper over rumqttc 0.24 (v4 = MQTT 3.1.1 and v5) that turns its event loop
//!   into "await the SUBACK", "await the next message" calls.
//! - [`cluster`]: a three-server NATS cluster with JetStream (`tests/cluster/nats.sh`) and the
//!   `cluster_*` lines of a node, for the cluster tests.
//! - [`persist`]: the broker binary as a process killed and restarted on its persistence files, and a
//!   persistent subscriber kept across the restarts, for `tests/18_persistence.rs` and
//!   `tests/20_crash_load.rs`.
//!
//! No helper sleeps in place of an event: every wait is for a packet, a message or EOF, with a deadline.
//! The few places that prove something does NOT happen wait a bounded short time and say why.
//!
//! `SHARDMQ_TEST_BROKER=mosquitto` runs the same tests against a real Mosquitto 2.0 (`mosquitto` on
//! PATH) started per case with the same config lines (minus our `shards` key): a differential check that
//! the tests encode Mosquitto's behaviour, and a way to validate new tests before the broker has them.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod broker;
pub mod client;
pub mod cluster;
pub mod persist;
pub mod raw;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use broker::TestBroker;

/// Upper bound for one test case (one shard count x one protocol). Generous for a loaded 2-core CI box;
/// a healthy case takes well under a second unless it waits on a keepalive or `$SYS` interval.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a single expected event (packet, message, EOF) may take before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long we watch for something that must NOT happen when there is no later event to wait for
/// instead. Delivery on loopback takes well under a millisecond; 500 ms is >100x that, so a broken
/// broker is caught with high probability while a correct one costs only the wait.
pub const ABSENCE_WAIT: Duration = Duration::from_millis(500);

/// MQTT protocol versions as they appear on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V31,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V311,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl Proto {
    pub fn level(self) -> u8 {
        match self {
            Proto::V31 => 3,
            Proto::V311 => 4,
            Proto::V5 => 5,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Proto::V31 => "MQIsdp",
            Proto::V311 | Proto::V5 => "MQTT",
        }
    }
    pub fn is_v5(self) -> bool {
        self == Proto::V5
    }
    /// The `-V` argument of mosquitto_pub / mosquitto_sub.
    pub fn mosquitto_arg(self) -> &'static str {
        match self {
            Proto::V31 => "mqttv31",
            Proto::V311 => "mqttv311",
            Proto::V5 => "mqttv5",
        }
    }
}

/// The versions both rumqttc and the spec-area tests cover.
pub const BOTH: &[Proto] = &[Proto::V311, Proto::V5];
pub const ALL: &[Proto] = &[Proto::V31, Proto::V311, Proto::V5];

/// Shard counts every case runs with: one shard (no cross-shard paths) and four (most client pairs
/// land on different shards, and on a 2-core CI box shards outnumber cores). Against Mosquitto the
/// count means nothing, so it is run once. `SHARDMQ_TEST_SHARDS=64` (a comma list) runs the cases
/// with those counts instead: CI runs the cross-shard tests with 64 shards this way (issue 18).
pub fn shard_counts() -> &'static [usize] {
    static COUNTS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    COUNTS.get_or_init(|| {
        if broker::external_mosquitto() {
            return vec![1];
        }
        match std::env::var(SHARDS_VAR) {
            Ok(list) => list
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{SHARDS_VAR}: not a shard count: {n:?}"))
                })
                .collect(),
            Err(_) => vec![1, 4],
        }
    })
}

/// The environment variable that replaces the shard counts of [`shard_counts`].
pub const SHARDS_VAR: &str = "SHARDMQ_TEST_SHARDS";

/// What a test case needs to know about its broker; `Copy` so async bodies can own it.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub addr: SocketAddr,
    pub shards: usize,
    pub proto: Proto,
}

impl Case {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    /// A client id unique in this process, readable in broker logs, at most 23 bytes (the MQTT 3.1
    /// limit, so the same ids work for every version).
    pub fn id(&self, role: &str) -> String {
        unique_id(role)
    }
}

/// A process-unique client id `role-N`, at most 23 bytes.
pub fn unique_id(role: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 10_000;
    let mut id = format!("{role}-{pid}-{n}");
    if id.len() > 23 {
        id = format!("{}-{pid}-{n}", &role[..role.len().min(10)]);
    }
    id
}

/// Runs `f` on its own thread and fails (panics) if it does not finish within `limit`, or re-raises
/// its panic. A timed-out thread is left behind; the test binary exits soon after anyway.
pub fn with_timeout<F>(what: &str, limit: Duration, f: F)
where
    F: FnOnce() + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .expect("spawn test thread");
    match rx.recv_timeout(limit) {
        Ok(()) => handle.join().expect("test thread"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: re-raise its panic so its message is the test's failure.
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: timed out after {limit:?}")
        }
    }
}

/// Runs `body` once per (shard count, protocol), each on a fresh broker started with `extra_config`,
/// each bounded by [`CASE_TIMEOUT`]. The case is printed first so a failure says which one it was.
pub fn for_each_case<F>(protos: &[Proto], extra_config: &str, body: F)
where
    F: Fn(Case) + Send + Sync + 'static,
{
    let body = Arc::new(body);
    for &shards in shard_counts() {
        for &proto in protos {
            let body = body.clone();
            let extra = extra_config.to_string();
            let what = format!("case: {shards} shard(s), {proto:?}");
            eprintln!("--- {what}");
            with_timeout(&what, CASE_TIMEOUT, move || {
                let broker = TestBroker::start(shards, &extra);
                body(Case {
                    addr: broker.addr(),
                    shards,
                    proto,
                });
                drop(broker);
            });
        }
    }
}

/// [`for_each_case`] for async bodies (rumqttc clients): each case gets its own tokio runtime.
pub fn for_each_case_async<F, Fut>(protos: &[Proto], extra_config: &str, body: F)
where
    F: Fn(Case) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()>,
{
    for_each_case(protos, extra_config, move |case| block_on(body(case)));
}

/// Runs a future to completion on a fresh multi-threaded tokio runtime.
pub fn block_on<Fut: Future<Output = ()>>(fut: Fut) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(fut);
    // Client pump tasks may still be parked on sockets; don't wait for them.
    rt.shutdown_background();
}

/// The environment variable that lets the interoperability tests (10_mosquitto_clients, 11_paho) skip
/// when their tool is missing: `SHARDMQ_SKIP_INTEROP=1`.
pub const SKIP_INTEROP_VAR: &str = "SHARDMQ_SKIP_INTEROP";

/// Called by a test that needs an external tool (mosquitto_pub / mosquitto_sub, python3 + paho-mqtt)
/// when the tool is missing. Without `SHARDMQ_SKIP_INTEROP=1` a missing tool FAILS the test, saying
/// what to install: a test that silently passed without running would hide a broken interop path.
/// With it, the test is skipped (returns `true`) with a loud message.
pub fn skip_missing_tool(tool: &str, install: &str) -> bool {
    let skip = std::env::var(SKIP_INTEROP_VAR)
        .map(|v| matches!(v.as_str(), "1" | "true" | "yes"))
        .unwrap_or(false);
    if !skip {
        panic!(
            "{tool} is missing: {install}. `bash tests/run-all.sh --install-only` (as root) installs \
             everything the tests need; {SKIP_INTEROP_VAR}=1 skips the interoperability tests instead."
        );
    }
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! SKIPPED because {SKIP_INTEROP_VAR} is set: {tool} is missing ({install}).");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!();
    true
}

/// Exits 0 when paho-mqtt 1.6 or newer is importable, 3 when it is older, 1 when it is missing.
const PAHO_CHECK: &str = "import paho.mqtt, paho.mqtt.client, sys; \
    v = tuple(int(x) for x in paho.mqtt.__version__.split('.')[:2]); sys.exit(0 if v >= (1, 6) else 3)";

/// Whether python3 with paho-mqtt 1.6 or newer is there; if not, [`skip_missing_tool`] decides.
pub fn paho_present() -> bool {
    let install = "apt-get install python3-paho-mqtt, or python3 -m pip install paho-mqtt";
    match std::process::Command::new("python3")
        .args(["-c", PAHO_CHECK])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(s) if s.success() => true,
        Ok(s) if s.code() == Some(3) => {
            !skip_missing_tool("paho-mqtt >= 1.6 (python3 has an older one)", install)
        }
        Ok(_) => !skip_missing_tool("paho-mqtt for python3", install),
        Err(_) => !skip_missing_tool("python3", "apt-get install python3 python3-paho-mqtt"),
    }
}

/// Issue 17's SUBSCRIBE-order rounds: `publ` publishes "before" (acknowledged at QoS 1 before anything
/// else is sent), `sub` sends a SUBSCRIBE to `filter` (packet id 1, QoS 1) and `publ` at once a PUBLISH
/// "after" to `topic` at `qos`, without waiting for the SUBACK. Returns the payloads `sub` got until a
/// marker `publ` publishes once the SUBACK came (per-publisher order makes the marker the end).
pub fn subscribe_then_publish_at_once(
    proto: Proto,
    sub: &mut raw::RawClient,
    publ: &mut raw::RawClient,
    filter: &str,
    topic: &str,
    qos: u8,
) -> Vec<String> {
    use raw::kind;
    publ.publish(topic, 1, false, b"before");
    sub.send(&raw::subscribe(proto, 1, &[(filter, 1)]));
    publ.send(&raw::publish(proto, topic, qos, false, false, 2, b"after"));
    if qos == 1 {
        assert_eq!(publ.expect(kind::PUBACK).ack_pkid(), 2);
    }
    let mut got = Vec::new();
    let mut marker_sent = false;
    loop {
        let pk = sub.read_packet();
        match pk.kind() {
            kind::SUBACK if !marker_sent => {
                marker_sent = true;
                publ.publish(topic, 1, false, b"marker");
            }
            kind::PUBLISH => {
                let m = pk.publish(proto);
                if m.qos == 1 {
                    sub.send(&raw::ack(kind::PUBACK, m.pkid));
                }
                if m.payload == b"marker" {
                    return got;
                }
                got.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
            other => panic!("unexpected packet type {other} before the marker"),
        }
    }
}

/// How long the broker may take to park a client (it parks after 1.0-1.1 s idle; `$SYS` tells
/// every second).
pub const PARK_LIMIT: Duration = Duration::from_secs(10);

/// `$SYS/broker/clients/parked` from the next `$SYS` round, read by a client connected just for it
/// that pings while it waits, so that it is not parked itself: the figure counts the test's clients.
pub fn parked_now(addr: SocketAddr) -> u64 {
    let mut monitor = raw::RawClient::connect_clean(addr, Proto::V311, &unique_id("mon"));
    monitor.subscribe(&[("$SYS/broker/clients/parked", 0)]);
    // The retained figure of an earlier round, which may predate what the test did since.
    monitor.recv_publish();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let p = loop {
        match monitor.try_read_packet(Duration::from_millis(300)) {
            Ok(p) if p.kind() == raw::kind::PUBLISH => break p.publish(Proto::V311),
            Ok(p) => assert_eq!(p.kind(), raw::kind::PINGRESP, "{p:?}"),
            Err(raw::ReadEnd::Timeout) => monitor.send(&raw::pingreq()),
            Err(raw::ReadEnd::Closed) => panic!("the broker closed the $SYS monitor"),
        }
        assert!(
            Instant::now() < deadline,
            "no $SYS round within {EVENT_TIMEOUT:?}"
        );
    };
    monitor.send(&raw::disconnect());
    String::from_utf8(p.payload)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .expect("$SYS/broker/clients/parked is an integer")
}

/// Wait until at least `n` clients are parked (`sys_interval 1` in the broker's config). The
/// connection to `addr` must be plain MQTT.
pub fn wait_parked(addr: SocketAddr, n: u64) {
    let deadline = Instant::now() + PARK_LIMIT;
    loop {
        // Each reading waits for a `$SYS` round: about a second.
        let parked = parked_now(addr);
        if parked >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{parked} of {n} clients parked after {PARK_LIMIT:?}"
        );
    }
}
