//! The harness of the persistence tests that run the broker binary as a process
//! (`tests/18_persistence.rs`, `tests/20_crash_load.rs`).
//!
//! What it offers:
//! - [`Broker`]: the broker binary started with `-c FILE`, waited for until it answers a CONNECT
//!   with a CONNACK; [`Broker::kill_9`] (SIGKILL), [`Broker::stop`] (SIGTERM, exit status 0), its
//!   stderr lines; SIGKILLed on drop, and with the thread that started it should the test binary die.
//! - [`bounded`]: a test case bounded in time and run one at a time ([`serial`]): a load test
//!   sharing two cores with another would make its kill moments meaningless. Each test binary has
//!   its own lock, so this serializes the tests of one file; brokers a timed-out case left behind
//!   are killed.
//! - [`Scratch`]: a scratch directory with a broker config persisting into it; [`fixed_port`]: a
//!   port for the broker to keep across its restarts, below the kernel's ephemeral range, so that no
//!   client connection takes it while the broker is down.
//! - [`Rng`] (splitmix64), [`crash_seed`] (`SHARDMQ_CRASH_SEED` or the clock), [`crash_rounds`]
//!   (`SHARDMQ_CRASH_ROUNDS` or 3).
//! - [`Sub`]: a persistent subscriber's side of its session across connections and restarts,
//!   acknowledging QoS 1 and 2 and telling the broker's QoS 2 resend from a second message;
//!   [`publisher`], [`retained_of`], [`disconnect`], [`send`].
//!
//! Every wait is for an event (a CONNACK after a start, a log line, a packet, the exit) with a
//! deadline ([`PROCESS_TIMEOUT`], [`CATCH_UP_TIMEOUT`], [`CATCH_UP_IDLE`], the raw client's); the
//! only sleeps are the polling steps inside those waits (and, in a test, the random moment before a
//! kill).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::raw::{self, kind, Connect, RawClient, ReadEnd};
use super::{unique_id, Proto};

/// How long a broker process may take to start (replaying its logs) or to stop: a debug binary on a
/// loaded 2-core CI machine can take seconds.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a subscriber may take, after a restart, to receive everything it is owed; and how long
/// it waits for the next message meanwhile (once the broker has sent all it has, a message still
/// missing will not come).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
pub const CATCH_UP_IDLE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// One test at a time; brokers left behind by a timed-out case are killed.

/// Pids of the brokers started and not yet reaped.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` bounded by `limit` (its own thread, as [`super::with_timeout`]), one test at a time. A
/// timed-out case leaves its thread behind: its brokers are killed here.
pub fn bounded(what: &str, limit: Duration, f: impl FnOnce() + Send + 'static) {
    let _serial = serial();
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::with_timeout(what, limit, f)
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

pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

pub fn clock_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `SHARDMQ_CRASH_SEED` when set (to repeat a run), else the clock.
pub fn crash_seed() -> u64 {
    match std::env::var("SHARDMQ_CRASH_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SHARDMQ_CRASH_SEED={s:?} is not a number")),
        Err(_) => clock_nanos(),
    }
}

/// Kill rounds per configuration of the load test: 3, or `SHARDMQ_CRASH_ROUNDS` for a long local run.
pub fn crash_rounds() -> usize {
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
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("shardmq-persist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// The directory given as `persistence_location`.
    pub fn data(&self) -> PathBuf {
        let d = self.0.join("data");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A broker config: one listener on `port`, anonymous, `shards`, persistence into [`Self::data`],
    /// then `extra` lines.
    pub fn config(&self, port: u16, shards: usize, extra: &str) -> PathBuf {
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
pub fn fixed_port(rng: &mut Rng) -> u16 {
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
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    /// Every line written to stderr so far.
    stderr: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

impl Broker {
    /// Starts the broker and waits (with a deadline) until it accepts connections on `port`.
    pub fn start(config: &Path, port: u16) -> Broker {
        Broker::start_limited(config, port, None)
    }

    /// As [`Broker::start`], with files it may not grow past `max_file_size` bytes (RLIMIT_FSIZE,
    /// soft: [`Broker::set_max_file_size`] lifts it): a write past it fails as on a full disk.
    pub fn start_limited(config: &Path, port: u16, max_file_size: Option<u64>) -> Broker {
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
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(max) = max_file_size {
                    let limit = libc::rlimit {
                        rlim_cur: max,
                        rlim_max: libc::RLIM_INFINITY,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sets the broker's RLIMIT_FSIZE (soft) while it runs: "space returns".
    pub fn set_max_file_size(&self, max: u64) {
        let limit = libc::rlimit {
            rlim_cur: max,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit(2) on the child this test started, by its PID, with a valid rlimit.
        let rc = unsafe {
            libc::prlimit(
                self.pid() as libc::pid_t,
                libc::RLIMIT_FSIZE,
                &limit,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The first stderr line containing `text`.
    pub fn stderr_line(&self, text: &str) -> Option<String> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(text))
            .cloned()
    }

    /// Polls (with a deadline) until `ready` holds, failing early if the broker exits.
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&Broker) -> bool) {
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
    pub fn wait_for_stderr(&mut self, text: &str) -> String {
        self.wait_until(&format!("log line {text:?}"), |b| {
            b.stderr_line(text).is_some()
        });
        self.stderr_line(text).unwrap()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) of the child this test started, by its pid; not reaped yet (no status).
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }

    fn reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        let pid = self.pid();
        LIVE.lock().unwrap().retain(|&p| p != pid);
    }

    /// Waits for the process to end (polling, with a deadline) and returns its exit status.
    pub fn wait_exit(&mut self) -> ExitStatus {
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
    pub fn kill_9(&mut self) {
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
    pub fn stop(&mut self) {
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
pub fn serves(addr: SocketAddr) -> bool {
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

pub fn send(c: &mut RawClient, bytes: &[u8]) -> bool {
    c.stream.write_all(bytes).is_ok()
}

/// Sends DISCONNECT and waits for the broker to close the connection: the session is offline then.
pub fn disconnect(mut c: RawClient) {
    c.send(&raw::disconnect());
    c.expect_closed();
}

/// One message as a subscriber's application got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
}

/// How [`Sub::pump`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
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
pub struct Sub {
    pub id: String,
    pub proto: Proto,
    pub got: Vec<Delivery>,
    pub awaiting_rel: HashMap<u16, String>,
    /// Connections made so far (the current one's number).
    pub connection: usize,
    /// Per QoS 2 message, what the subscriber saw of it (`connection N: PUBLISH id X dup D`,
    /// `connection N: PUBREL id X, PUBCOMP sent`), for the failure message of a duplicate.
    pub history: HashMap<String, Vec<String>>,
    /// Protocol oddities seen, not failures by themselves (printed with a failure).
    pub notes: Vec<String>,
}

impl Sub {
    pub fn new(role: &str, proto: Proto) -> Sub {
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
    pub fn connect(&mut self, addr: SocketAddr) -> (RawClient, bool) {
        self.connection += 1;
        let (c, ack) = RawClient::connect(addr, &Connect::new(self.proto, &self.id).persistent());
        (c, ack.session_present)
    }

    /// Reads and acknowledges (PUBACK; PUBREC then PUBCOMP on PUBREL) until every payload in `want`
    /// arrived (never, with `want` None), the connection closes, `deadline` passes or, with `idle`,
    /// nothing came for that long.
    pub fn pump(
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
    pub fn receive_all(&mut self, c: &mut RawClient, want: &[String], ctx: &str) {
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
pub fn publisher(addr: SocketAddr, proto: Proto) -> RawClient {
    RawClient::connect_clean(addr, proto, &unique_id("pub"))
}

/// The retained messages of `filter` a fresh subscriber gets: it subscribes, then a marker published
/// (not retained) after the SUBACK ends the list.
pub fn retained_of(
    addr: SocketAddr,
    proto: Proto,
    filter: &str,
    marker_topic: &str,
) -> Vec<Delivery> {
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

/// `(publisher, n)` of a load-test payload `<publisher>:<n>`.
pub fn parse_numbered(payload: &str) -> Option<(&str, u64)> {
    let (p, n) = payload.rsplit_once(':')?;
    Some((p, n.parse().ok()?))
}
