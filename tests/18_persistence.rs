//! Durable persistence (issue 16), checked on the broker binary as a process that is killed and
//! started again on the same `persistence_location` and the same port.
//!
//! What is checked:
//! - Persistent sessions (3.1.1 clean session 0, 5.0 clean start 0 with a session expiry), their
//!   subscriptions, the QoS 1/2 messages queued for them, and retained messages (one set, one set
//!   and then cleared by an empty retained publish) survive SIGKILL, and SIGTERM (exit status 0):
//!   the session is present in the CONNACK, the queued messages arrive in order, the subscription
//!   still routes, only the retained message not cleared is there.
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
//! - A damaged log: truncated inside its last record (several offsets), it is reported as
//!   `torn tail, dropped <n> bytes` with n the bytes cut into, and the state of the earlier
//!   records is there; a flipped byte in a record before the last, or a garbage header, is
//!   reported as `is corrupt at offset ... moved the file to <path>`, that file holds the damaged
//!   bytes, the records before the damage are kept (and written into the next generation), and
//!   the broker serves.
//!
//! SIGKILL ends the process, not the machine: what the broker wrote but did not fsync survives it
//! in the page cache. These tests therefore catch acknowledgements sent before the records were
//! written, and lost or mangled records at replay, not a missing fsync.
//!
//! The tests in this file run one at a time (a load test sharing two cores with another would make
//! its kill moments meaningless). Every wait is for an event (a CONNACK after a start, a log line,
//! a packet, the exit) with a deadline; the only sleep is the random moment before a kill. The
//! broker listens on the same port across its restarts: one below the kernel's ephemeral range, so
//! that no client connection takes it while the broker is down.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::raw::{self, kind, Connect, RawClient, ReadEnd, Witness};
use common::{unique_id, Proto};

/// How long a broker process may take to start (replaying its logs) or to stop: a debug binary on a
/// loaded 2-core CI machine can take seconds.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a subscriber may take, after a restart, to receive everything it is owed; and how long
/// it waits for the next message meanwhile (once the broker has sent all it has, a message still
/// missing will not come).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
const CATCH_UP_IDLE: Duration = Duration::from_secs(10);

/// The file-name prefix when `persistence_file` is not set.
const DEFAULT_DB: &str = "mosquitto.db";

/// Bytes of a log file's header, and of a record's `len | crc` frame.
const HEADER_LEN: usize = 18;
const FRAME_LEN: usize = 8;

// ---------------------------------------------------------------------------------------------
// One test at a time; brokers left behind by a timed-out case are killed.

/// Pids of the brokers started and not yet reaped.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` bounded by `limit` (its own thread, as [`common::with_timeout`]), one test at a time. A
/// timed-out case leaves its thread behind: its brokers are killed here.
fn bounded(what: &str, limit: Duration, f: impl FnOnce() + Send + 'static) {
    let _serial = serial();
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::with_timeout(what, limit, f)
    }));
    for pid in LIVE.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        // SAFETY: kill(2) of a broker this test binary started and has not reaped (so the pid is
        // still that process, or its zombie).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness: a splitmix64 seeded from the clock, or from SHARDMQ_CRASH_SEED.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn clock_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `SHARDMQ_CRASH_SEED` when set (to repeat a run), else the clock.
fn crash_seed() -> u64 {
    match std::env::var("SHARDMQ_CRASH_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SHARDMQ_CRASH_SEED={s:?} is not a number")),
        Err(_) => clock_nanos(),
    }
}

/// Kill rounds per configuration of the load test: 3, or `SHARDMQ_CRASH_ROUNDS` for a long local run.
fn crash_rounds() -> usize {
    match std::env::var("SHARDMQ_CRASH_ROUNDS") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SHARDMQ_CRASH_ROUNDS={s:?} is not a number")),
        Err(_) => 3,
    }
}

// ---------------------------------------------------------------------------------------------
// Scratch directories, ports, configs

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("shardmq-persist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// The directory given as `persistence_location`.
    fn data(&self) -> PathBuf {
        let d = self.0.join("data");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A broker config: one listener on `port`, anonymous, `shards`, persistence into [`Self::data`],
    /// then `extra` lines.
    fn config(&self, port: u16, shards: usize, extra: &str) -> PathBuf {
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nshards {shards}\ncpu_affinity false\n\
             persistence true\npersistence_location {}/\n{extra}",
            self.data().display()
        );
        let path = self.0.join("shardmq.conf");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that stays ours across restarts: free now, and below the kernel's ephemeral range, so that
/// no client connection of this (or a parallel) test binary takes it as its local port while the
/// broker is down (a port from binding port 0 is in that range).
fn fixed_port(rng: &mut Rng) -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768u64);
    let (lo, hi) = if low > 12_000 {
        (10_000, low - 1)
    } else {
        (low + 20_000, 60_000)
    };
    for _ in 0..200 {
        let port = rng.between(lo, hi) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {lo}..={hi}");
}

// ---------------------------------------------------------------------------------------------
// The broker process

/// The broker binary started with `-c FILE`; SIGKILLed on drop if still running.
struct Broker {
    child: Child,
    addr: SocketAddr,
    /// Every line written to stderr so far.
    stderr: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

impl Broker {
    /// Starts the broker and waits (with a deadline) until it accepts connections on `port`.
    fn start(config: &Path, port: u16) -> Broker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardmq"));
        command
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. The broker dies with the thread that started it, should
        // this test binary die before it could kill it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start shardmq");
        LIVE.lock().unwrap().push(child.id());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[shardmq] {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let mut broker = Broker {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            stderr,
            status: None,
        };
        let addr = broker.addr;
        broker.wait_until(&format!("a CONNACK on {addr}"), |_| serves(addr));
        broker
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The first stderr line containing `text`.
    fn stderr_line(&self, text: &str) -> Option<String> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(text))
            .cloned()
    }

    /// Polls (with a deadline) until `ready` holds, failing early if the broker exits.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&Broker) -> bool) {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if ready(self) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                self.reaped(status);
                panic!(
                    "shardmq exited ({status}) before {what}:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {PROCESS_TIMEOUT:?}:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a stderr line containing `text` and returns it.
    fn wait_for_stderr(&mut self, text: &str) -> String {
        self.wait_until(&format!("log line {text:?}"), |b| {
            b.stderr_line(text).is_some()
        });
        self.stderr_line(text).unwrap()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) of the child this test started, by its pid; not reaped yet (no status).
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }

    fn reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        let pid = self.pid();
        LIVE.lock().unwrap().retain(|&p| p != pid);
    }

    /// Waits for the process to end (polling, with a deadline) and returns its exit status.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.reaped(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "shardmq still runs {PROCESS_TIMEOUT:?} after the signal:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, and the process is gone.
    fn kill_9(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self.wait_exit();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the broker died of the SIGKILL (not before it): {status}\n{}",
            self.stderr_text()
        );
    }

    /// SIGTERM, and the process exits 0.
    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM exits 0:\n{}",
            self.stderr_text()
        );
    }
}

/// Whether a broker on `addr` answers a CONNECT (clean session) with a CONNACK: a listening socket
/// alone may take connections into its backlog before the broker reads them.
fn serves(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let probe = Connect::new(Proto::V311, &unique_id("probe")).encode();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut connack = [0u8; 4];
    stream.write_all(&probe).is_ok()
        && std::io::Read::read_exact(&mut stream, &mut connack).is_ok()
        && connack == [0x20, 0x02, 0x00, 0x00]
        && stream.write_all(&raw::disconnect()).is_ok()
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.status.is_none() {
            // SAFETY: kill(2) of the child this test started, by its pid; not reaped yet.
            unsafe { libc::kill(self.pid() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
            let pid = self.pid();
            LIVE.lock().unwrap().retain(|&p| p != pid);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

fn send(c: &mut RawClient, bytes: &[u8]) -> bool {
    c.stream.write_all(bytes).is_ok()
}

/// Sends DISCONNECT and waits for the broker to close the connection: the session is offline then.
fn disconnect(mut c: RawClient) {
    c.send(&raw::disconnect());
    c.expect_closed();
}

/// One message as a subscriber's application got it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivery {
    topic: String,
    payload: String,
    qos: u8,
    retain: bool,
    dup: bool,
}

/// How [`Sub::pump`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Everything wanted arrived.
    Done,
    /// The broker closed the connection (or died).
    Closed,
    /// The deadline passed.
    Timeout,
}

/// A persistent subscriber's side of its session, kept across its connections and the broker's
/// restarts as a client library keeps it: what its application got, and the QoS 2 packet ids it
/// answered with PUBREC and awaits the PUBREL of (a PUBLISH again with one of those ids and the same
/// message is the broker re-sending, not a new message: MQTT 4.3.3).
struct Sub {
    id: String,
    proto: Proto,
    got: Vec<Delivery>,
    awaiting_rel: HashMap<u16, String>,
    /// Connections made so far (the current one's number).
    connection: usize,
    /// Per QoS 2 message, what the subscriber saw of it (`connection N: PUBLISH id X dup D`,
    /// `connection N: PUBREL id X, PUBCOMP sent`), for the failure message of a duplicate.
    history: HashMap<String, Vec<String>>,
    /// Protocol oddities seen, not failures by themselves (printed with a failure).
    notes: Vec<String>,
}

impl Sub {
    fn new(role: &str, proto: Proto) -> Sub {
        Sub {
            id: unique_id(role),
            proto,
            got: Vec::new(),
            awaiting_rel: HashMap::new(),
            connection: 0,
            history: HashMap::new(),
            notes: Vec::new(),
        }
    }

    /// Connects with clean session / clean start 0 (v5: a session expiry of an hour); returns the
    /// client and CONNACK's session present.
    fn connect(&mut self, addr: SocketAddr) -> (RawClient, bool) {
        self.connection += 1;
        let (c, ack) = RawClient::connect(addr, &Connect::new(self.proto, &self.id).persistent());
        (c, ack.session_present)
    }

    /// Reads and acknowledges (PUBACK; PUBREC then PUBCOMP on PUBREL) until every payload in `want`
    /// arrived (never, with `want` None), the connection closes, `deadline` passes or, with `idle`,
    /// nothing came for that long.
    fn pump(
        &mut self,
        c: &mut RawClient,
        mut want: Option<&mut HashSet<String>>,
        deadline: Instant,
        idle: Option<Duration>,
    ) -> End {
        let mut last_packet = Instant::now();
        loop {
            if want.as_ref().is_some_and(|w| w.is_empty()) {
                return End::Done;
            }
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() || idle.is_some_and(|i| now >= last_packet + i) {
                return End::Timeout;
            }
            let p = match c.try_read_packet(left.min(Duration::from_millis(500))) {
                Ok(p) => {
                    last_packet = Instant::now();
                    p
                }
                Err(ReadEnd::Closed) => return End::Closed,
                Err(ReadEnd::Timeout) => continue,
            };
            match p.kind() {
                kind::PUBLISH => {
                    let m = p.publish(self.proto);
                    let payload = String::from_utf8_lossy(&m.payload).into_owned();
                    let mut new = true;
                    if m.qos == 2 {
                        if let Some(prev) = self.awaiting_rel.get(&m.pkid) {
                            if *prev == payload {
                                new = false;
                                if !m.dup {
                                    self.notes.push(format!(
                                        "QoS 2 {payload:?} sent again with packet id {} awaiting \
                                         PUBREL, without DUP",
                                        m.pkid
                                    ));
                                }
                            } else {
                                self.notes.push(format!(
                                    "packet id {} awaited PUBREL for {prev:?}, then came with \
                                     {payload:?} (dup {})",
                                    m.pkid, m.dup
                                ));
                            }
                        }
                        self.awaiting_rel.insert(m.pkid, payload.clone());
                        self.history
                            .entry(payload.clone())
                            .or_default()
                            .push(format!(
                                "connection {}: PUBLISH id {} dup {}",
                                self.connection, m.pkid, m.dup
                            ));
                    }
                    if new {
                        if let Some(w) = want.as_mut() {
                            w.remove(&payload);
                        }
                        self.got.push(Delivery {
                            topic: m.topic,
                            payload,
                            qos: m.qos,
                            retain: m.retain,
                            dup: m.dup,
                        });
                    }
                    let ack = match m.qos {
                        0 => None,
                        1 => Some(raw::ack(kind::PUBACK, m.pkid)),
                        _ => Some(raw::ack(kind::PUBREC, m.pkid)),
                    };
                    if ack.is_some_and(|a| !send(c, &a)) {
                        return End::Closed;
                    }
                }
                kind::PUBREL => {
                    let pkid = p.ack_pkid();
                    if let Some(payload) = self.awaiting_rel.remove(&pkid) {
                        self.history.entry(payload).or_default().push(format!(
                            "connection {}: PUBREL id {pkid}, PUBCOMP sent",
                            self.connection
                        ));
                    }
                    if !send(c, &raw::ack(kind::PUBCOMP, pkid)) {
                        return End::Closed;
                    }
                }
                kind::DISCONNECT => return End::Closed,
                other => panic!(
                    "subscriber {} got an unexpected packet type {other}: {p:?}",
                    self.id
                ),
            }
        }
    }

    /// [`Self::pump`] until every payload of `want` has arrived (on this connection or an earlier
    /// one); fails saying what is missing otherwise.
    fn receive_all(&mut self, c: &mut RawClient, want: &[String], ctx: &str) {
        let mut left: HashSet<String> = want.iter().cloned().collect();
        for d in &self.got {
            left.remove(&d.payload);
        }
        let end = self.pump(
            c,
            Some(&mut left),
            Instant::now() + CATCH_UP_TIMEOUT,
            Some(CATCH_UP_IDLE),
        );
        let mut missing: Vec<&String> = left.iter().collect();
        missing.sort_by_key(|p| parse_numbered(p).map(|(from, n)| (from.to_owned(), n)));
        assert_eq!(
            end,
            End::Done,
            "{ctx}: subscriber {} still lacks {} of {} messages ({:?}...); the last it got, newest \
             first: {:?}; protocol notes: {:?}",
            self.id,
            left.len(),
            want.len(),
            missing.iter().take(8).collect::<Vec<_>>(),
            self.got.iter().rev().take(10).collect::<Vec<_>>(),
            self.notes.iter().take(10).collect::<Vec<_>>()
        );
    }
}

/// A clean publisher.
fn publisher(addr: SocketAddr, proto: Proto) -> RawClient {
    RawClient::connect_clean(addr, proto, &unique_id("pub"))
}

/// The retained messages of `filter` a fresh subscriber gets: it subscribes, then a marker published
/// (not retained) after the SUBACK ends the list.
fn retained_of(addr: SocketAddr, proto: Proto, filter: &str, marker_topic: &str) -> Vec<Delivery> {
    let mut s = Sub::new("fresh", proto);
    let mut c = RawClient::connect_clean(addr, proto, &s.id);
    assert_eq!(c.subscribe(&[(filter, 1)]), vec![1]);
    let mut p = publisher(addr, proto);
    p.publish(marker_topic, 1, false, b"marker");
    s.receive_all(
        &mut c,
        &["marker".to_string()],
        "retained messages then the marker",
    );
    disconnect(c);
    disconnect(p);
    s.got.pop();
    s.got
}

// ---------------------------------------------------------------------------------------------
// 1, 2: sessions, subscriptions, queued and retained messages survive SIGKILL and SIGTERM

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
// 3: acknowledged messages survive SIGKILL under load

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

/// `(publisher, n)` of a load-test payload `<publisher>:<n>`.
fn parse_numbered(payload: &str) -> Option<(&str, u64)> {
    let (p, n) = payload.rsplit_once(':')?;
    Some((p, n.parse().ok()?))
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

// ---------------------------------------------------------------------------------------------
// 4: torn and corrupt logs

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
