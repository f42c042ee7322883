#![recursion_limit = "256"]
//! loadgen: the MQTT load generator bundled with shardmq.
//!
//! Connects publishers, subscribers and idle clients, runs a warmup then a measure window, drains, and
//! reports throughput, loss, duplicates, ordering and end-to-end latency (HDR histogram). Every packet
//! goes through shardmq's sans-IO codec. See loadgen/README.md.
//!
//! Exit codes: 0 = the run completed; 1 = setup failed (could not resolve, connect, subscribe, ...);
//! 2 = bad arguments; 3 = the run completed but connections failed during it (the report says which).

mod compare;
mod conn;
mod hgrm;
mod pacer;
mod report;
mod retained;
mod roles;
mod shared;
mod tls;
mod track;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use shardmq::codec::{ProtocolVersion, QoS};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::conn::{drive, handshake, ClientSpec, Target};
use crate::pacer::Pacer;
use crate::report::{LatencySummary, Report};
use crate::roles::{Idle, Publisher, Subscriber, PAYLOAD_HEADER};
use crate::shared::{Phase, RunSettings, Shared, Timeline};
use crate::tls::TlsSetup;
use crate::track::SubTrack;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// N pairs: publisher i → lg/p2p/i → subscriber i (--pairs, default 10).
    P2p,
    /// P publishers on lg/fanin/i (--pubs, default 10) → S subscribers on lg/fanin/# (--subs, default 1).
    #[value(alias = "fan-in")]
    Fanin,
    /// 1 publisher (--pubs) → lg/fanout → S subscribers (--subs, default 10).
    #[value(alias = "fan-out")]
    Fanout,
    /// P publishers on lg/shared/i (default 10) → one $share/lg/lg/shared/# group of S members (default 4):
    /// each message reaches one member.
    Shared,
    /// C idle connections (--connections, default 1000) held with keep-alive while one probe pair
    /// measures publish→receive round trips (default 100 msg/s).
    Conn,
    /// Subscribe storms: S subscribers (default 10) each repeat SUBSCRIBE lg/retained/# → receive the
    /// --topics retained messages (default 1000) → UNSUBSCRIBE; latency = SUBSCRIBE to last message.
    Retained,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::P2p => "p2p",
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::Shared => "shared",
            Scenario::Conn => "conn",
            Scenario::Retained => "retained",
        }
    }
}

const MAX_RATE_HELP: &str = "\
Max rate (--rate 0): publishers do not simply flood. Each publisher may be at most --window messages
ahead of what its subscribers have received (end to end, per publisher, counted in deliveries / fan-out),
and at QoS 1/2 also at most --inflight unacknowledged. So the figure is what the broker sustains, not how
fast its queues grow; a broker that drops shows loss, one that stalls shows a lower rate. When receipts
stand still for 0.5 s with the window full, what is outstanding is written off as dropped (and counted
as lost), so a dropping broker cannot wedge the publishers.

Fixed rate (--rate R): every publisher sends R msg/s on a schedule; latency is measured from each
message's intended send time (coordinated-omission corrected, as wrk2 does), so a stalled broker shows
up as latency rather than as fewer samples.

Exit status: 0 run completed, 1 setup failed, 2 bad arguments, 3 connections failed during the run.";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "shardmq-loadgen",
    version,
    about = "MQTT load generator: throughput, loss, ordering and end-to-end latency of a broker",
    after_help = MAX_RATE_HELP
)]
struct Args {
    /// What to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Broker host names or addresses; several (comma-separated or repeated) spread the clients.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    host: Vec<String>,
    /// Broker ports; several (comma-separated or repeated) spread the clients round robin.
    #[arg(long, value_delimiter = ',', default_value = "1883")]
    port: Vec<u16>,
    /// QoS of the publications and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload size in bytes (at least 16: publisher id, sequence, timestamp).
    #[arg(long, alias = "payload", default_value_t = 16)]
    size: usize,
    /// Publish with RETAIN 1: the broker stores every message (the retained store's cost per
    /// publish; subscribers still get them live).
    #[arg(long)]
    retain: bool,
    /// Messages per second per publisher; 0 = as fast as the broker sustains (see below).
    /// Default: 0, except `conn` (100).
    #[arg(long)]
    rate: Option<u64>,
    /// Length of the measure window (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Publishing before the measure window (not in latency or throughput).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Longest wait after publishing stops for outstanding deliveries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    /// Publishers [fanin, shared: default 10; fanout: 1].
    #[arg(long, alias = "publishers")]
    pubs: Option<usize>,
    /// Subscribers [fanin: default 1; fanout: 10; shared: 4 group members].
    #[arg(long, alias = "subscribers")]
    subs: Option<usize>,
    /// Publisher→subscriber pairs [p2p: default 10].
    #[arg(long)]
    pairs: Option<usize>,
    /// Retained topics seeded before a `retained` run.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    topics: u64,
    /// Idle connections held open [conn: default 1000; other scenarios: 0].
    #[arg(long, alias = "idle-connections")]
    connections: Option<usize>,
    /// MQTT version: 3.1, 3.1.1 or 5.
    #[arg(long, alias = "mqtt", default_value = "3.1.1", value_parser = parse_version)]
    protocol: ProtocolVersion,
    /// Local source addresses, round robin over all connections: a range 127.0.0.1-127.0.0.16 and/or a
    /// comma list. Lifts the ~28k connections per source address of the ephemeral port range.
    #[arg(long, alias = "source-ips", value_parser = parse_source_addrs)]
    source_addrs: Option<SourceAddrs>,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=65_534))]
    inflight: u16,
    /// Max rate: messages a publisher may be ahead of its subscribers' receipts (end to end).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Worker threads, one single-threaded event loop each, connections spread round robin
    /// (default: number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Handshakes in progress at once during setup.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Per-client limit for TCP connect + CONNACK (+ SUBACK).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Limit for the whole setup (all clients connected and subscribed).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    setup_timeout: Duration,
    /// MQTT keep alive in seconds (PINGREQ after half of it without writing); 0 = off.
    #[arg(long, default_value_t = 60)]
    keepalive: u16,
    /// Subscribers keep their sessions (3.x clean session 0; 5.0 Session Expiry Interval 300 s): what a
    /// broker with persistence writes to disk for each message they are owed.
    #[arg(long)]
    persistent: bool,
    /// Client id prefix (default: lg-<pid>).
    #[arg(long)]
    client_id_prefix: Option<String>,
    /// Write the latency histogram to FILE in HdrHistogram's percentile-distribution format (values in
    /// µs), and an SVG plot of the percentile curve to FILE.svg.
    #[arg(long, value_name = "FILE")]
    hgrm: Option<PathBuf>,
    /// Also run the scenario against this broker, alternately (A B A B), and print both side by side.
    /// Repeatable (or a comma list) to compare several brokers at once: A B C A B C ...
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    compare: Vec<String>,
    /// Rounds per broker with --compare.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Print one JSON object on the last stdout line instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// TLS for every client (also the --compare brokers): trust the CA certificate(s) of this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to the brokers; needs --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the brokers' certificates must be valid for (default: the host given, e.g. the IP address
    /// 127.0.0.1).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// Loaded from the --tls-* files at start.
    #[arg(skip)]
    tls: Option<Arc<TlsSetup>>,
}

/// `--source-addrs`: the local addresses to bind.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SourceAddrs(Vec<IpAddr>);

/// Parses `127.0.0.1-127.0.0.16,127.0.1.1`: IPv4 ranges (inclusive) and single addresses.
fn parse_source_addrs(s: &str) -> Result<SourceAddrs, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: std::net::Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| format!("bad address {a:?} in {part:?}"))?;
            let b: std::net::Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| format!("bad address {b:?} in {part:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a {
                return Err(format!("range {part:?} ends before it starts"));
            }
            if b - a >= 1 << 16 {
                return Err(format!("range {part:?} has more than 65536 addresses"));
            }
            out.extend((a..=b).map(|v| IpAddr::V4(v.into())));
        } else {
            out.push(part.parse().map_err(|_| format!("bad address {part:?}"))?);
        }
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(SourceAddrs(out))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (examples: 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || !(0.0..=1e7).contains(&seconds) {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s.trim() {
        "3.1" | "3" => Ok(ProtocolVersion::V31),
        "3.1.1" | "311" | "4" => Ok(ProtocolVersion::V311),
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        other => Err(format!(
            "unknown MQTT version {other:?} (use 3.1, 3.1.1 or 5)"
        )),
    }
}

fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5",
    }
}

/// The clients of a run.
#[derive(Debug)]
struct Plan {
    publishers: usize,
    subscribers: usize,
    idle: usize,
    /// Messages per second per publisher (0 = max).
    rate: u64,
    /// Deliveries each published message should produce.
    fanout: u64,
}

impl Plan {
    fn from_args(a: &Args) -> Result<Plan, String> {
        if a.size < PAYLOAD_HEADER {
            return Err(format!(
                "--size must be at least {PAYLOAD_HEADER} (publisher id, sequence, timestamp)"
            ));
        }
        if a.size > 200 * 1024 * 1024 {
            return Err("--size is too large".into());
        }
        if a.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if a.connect_concurrency == 0 {
            return Err("--connect-concurrency must be positive".into());
        }
        if a.threads == Some(0) {
            return Err("--threads must be positive".into());
        }
        let only = |flag: &str, given: bool| -> Result<(), String> {
            if given {
                Err(format!("{flag} does not apply to {}", a.scenario.name()))
            } else {
                Ok(())
            }
        };
        let (publishers, subscribers) = match a.scenario {
            Scenario::P2p => {
                only(
                    "--pubs/--subs (use --pairs)",
                    a.pubs.is_some() || a.subs.is_some(),
                )?;
                let n = a.pairs.unwrap_or(10);
                (n, n)
            }
            Scenario::Fanin => {
                only("--pairs", a.pairs.is_some())?;
                (a.pubs.unwrap_or(10), a.subs.unwrap_or(1))
            }
            Scenario::Fanout => {
                only("--pairs", a.pairs.is_some())?;
                (a.pubs.unwrap_or(1), a.subs.unwrap_or(10))
            }
            Scenario::Shared => {
                only("--pairs", a.pairs.is_some())?;
                (a.pubs.unwrap_or(10), a.subs.unwrap_or(4))
            }
            Scenario::Conn => {
                only(
                    "--pubs/--subs/--pairs",
                    a.pubs.is_some() || a.subs.is_some() || a.pairs.is_some(),
                )?;
                (1, 1)
            }
            Scenario::Retained => {
                only("--pubs/--pairs", a.pubs.is_some() || a.pairs.is_some())?;
                (0, a.subs.unwrap_or(10))
            }
        };
        if (publishers == 0 && a.scenario != Scenario::Retained) || subscribers == 0 {
            return Err("need at least one publisher and one subscriber".into());
        }
        if publishers > u32::MAX as usize {
            return Err("too many publishers".into());
        }
        let fanout = match a.scenario {
            Scenario::P2p | Scenario::Shared | Scenario::Conn | Scenario::Retained => 1,
            Scenario::Fanin | Scenario::Fanout => subscribers as u64,
        };
        let idle = a.connections.unwrap_or(match a.scenario {
            Scenario::Conn => 1000,
            _ => 0,
        });
        let rate = a.rate.unwrap_or(match a.scenario {
            Scenario::Conn => 100,
            _ => 0,
        });
        Ok(Plan {
            publishers,
            subscribers,
            idle,
            rate,
            fanout,
        })
    }

    fn topic(scenario: Scenario, publisher: usize) -> String {
        match scenario {
            Scenario::P2p => format!("lg/p2p/{publisher}"),
            Scenario::Fanin => format!("lg/fanin/{publisher}"),
            Scenario::Fanout => "lg/fanout".into(),
            Scenario::Shared => format!("lg/shared/{publisher}"),
            Scenario::Conn => "lg/conn/probe".into(),
            Scenario::Retained => retained::topic(publisher),
        }
    }

    fn filter(scenario: Scenario, subscriber: usize) -> String {
        match scenario {
            Scenario::P2p => format!("lg/p2p/{subscriber}"),
            Scenario::Fanin => "lg/fanin/#".into(),
            Scenario::Fanout => "lg/fanout".into(),
            Scenario::Shared => "$share/lg/lg/shared/#".into(),
            Scenario::Conn => "lg/conn/probe".into(),
            Scenario::Retained => retained::FILTER.into(),
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the resulting soft limit.
fn raise_nofile_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(lim.rlim_cur)
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shardmq-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(ca) = &args.tls_ca {
        let cert_key = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
        match TlsSetup::load(ca, cert_key, args.tls_server_name.as_deref()) {
            Ok(t) => args.tls = Some(Arc::new(t)),
            Err(e) => {
                eprintln!("shardmq-loadgen: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let total = plan.publishers + plan.subscribers + plan.idle;
    if let Some(limit) = raise_nofile_limit() {
        if (total as libc::rlim_t).saturating_add(64) > limit {
            eprintln!(
                "shardmq-loadgen: warning: {total} connections but the open files limit is {limit}; raise it (ulimit -Hn)"
            );
        }
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let workers = match Workers::start(threads) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("shardmq-loadgen: cannot start the worker threads: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardmq-loadgen: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        if args.compare.is_empty() {
            run_single(&args, &plan, &workers).await
        } else {
            compare::run(&args, &plan, &workers, &args.compare).await
        }
    });
    workers.stop();
    code
}

/// Thread per core: one single-threaded tokio runtime per worker thread, each client task pinned to one
/// of them (round robin), so a connection's reads, decoding and writes stay on one thread with no
/// work-stealing hand-offs between cores.
pub(crate) struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(n: usize) -> std::io::Result<Workers> {
        let mut w = Workers {
            handles: Vec::new(),
            stop: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            w.handles.push(rt.handle().clone());
            w.stop.push(tx);
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("loadgen-{i}"))
                    .spawn(move || {
                        let _ = rt.block_on(rx);
                        rt.shutdown_timeout(Duration::from_secs(1));
                    })?,
            );
        }
        Ok(w)
    }

    fn len(&self) -> usize {
        self.handles.len()
    }

    fn handle(&self, i: usize) -> &tokio::runtime::Handle {
        &self.handles[i % self.handles.len()]
    }

    fn stop(self) {
        for tx in self.stop {
            let _ = tx.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One run against the broker(s) of `--host`/`--port`: report, histogram file, exit code.
async fn run_single(args: &Args, plan: &Plan, workers: &Workers) -> ExitCode {
    let targets = match resolve_all(&args.host, &args.port).await {
        Ok(t) => t,
        Err(e) => return setup_failed(args.json, &e),
    };
    let outcome = match run_once(args, plan, workers, &targets).await {
        Ok(o) => o,
        Err(e) => return setup_failed(args.json, &e),
    };
    if let Some(path) = &args.hgrm {
        match hgrm::write_files(path, &outcome.latency_ns) {
            Ok(svg) => eprintln!(
                "shardmq-loadgen: wrote {} and {}",
                path.display(),
                svg.display()
            ),
            Err(e) => {
                eprintln!("shardmq-loadgen: cannot write {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    let report = outcome.report;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.connection_errors > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a setup failure (as JSON too when asked) and returns exit code 1.
fn setup_failed(json: bool, message: &str) -> ExitCode {
    eprintln!("shardmq-loadgen: setup failed: {message}");
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": false, "setup_failed": true, "error": message})
        );
    }
    ExitCode::from(1)
}

/// Every host × port, resolved.
pub(crate) async fn resolve_all(hosts: &[String], ports: &[u16]) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for h in hosts {
        let host: Arc<str> = h.as_str().into();
        for &p in ports {
            out.push(Target {
                addr: resolve(h, p).await?,
                host: host.clone(),
            });
        }
    }
    if out.is_empty() {
        return Err("no broker address".into());
    }
    Ok(out)
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .map_err(|_| format!("resolving {host} timed out"))?
    .map_err(|e| format!("cannot resolve {host}: {e}"))?
    .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Stops every client: Stop phase, a grace period for DISCONNECT, then abort.
async fn shut_down(shared: &Shared, tasks: &mut JoinSet<()>) {
    shared.set_phase(Phase::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

enum Kind {
    Idle,
    Subscriber(Arc<Mutex<SubTrack>>, usize),
    Publisher(u32, String),
    /// A retained-storm subscriber: (topics, index).
    Storm(usize, usize),
}

async fn client_task(
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<Duration, String>>,
    target: Target,
    connect_timeout: Duration,
    spec: ClientSpec,
    kind: Kind,
) {
    let Ok(permit) = permits.acquire_owned().await else {
        return;
    };
    let t0 = Instant::now();
    let mut stage = "TCP connect";
    let result = tokio::time::timeout(
        connect_timeout,
        handshake(&shared, &target, &spec, &mut stage),
    )
    .await;
    drop(permit);
    let (mut conn, session) = match result {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let _ = ready.send(Err(format!("{}: {e}", spec.client_id)));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(format!(
                "{}: {stage} timed out after {:?}",
                spec.client_id, connect_timeout
            )));
            return;
        }
    };
    let _ = ready.send(Ok(t0.elapsed()));
    drop(ready);

    let result = match kind {
        Kind::Idle => drive(&mut conn, &mut Idle, &shared, None).await,
        Kind::Subscriber(track, index) => {
            let mut role = Subscriber::new(shared.clone(), track, index);
            drive(&mut conn, &mut role, &shared, None).await
        }
        Kind::Storm(topics, index) => {
            let mut role = retained::Storm::new(shared.clone(), topics, index);
            drive(&mut conn, &mut role, &shared, None).await
        }
        Kind::Publisher(id, topic) => {
            let mut role = Publisher::new(shared.clone(), id, &topic, session.receive_maximum);
            let mut pacer = if shared.settings.rate > 0 {
                match Pacer::new(shared.mono_at_epoch) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("loadgen: timerfd unavailable ({e}); using tokio's 1 ms timer");
                        None
                    }
                }
            } else {
                None
            };
            drive(&mut conn, &mut role, &shared, pacer.as_mut()).await
        }
    };
    match result {
        Ok(()) => conn.disconnect(Duration::from_secs(1)).await,
        Err(e) => {
            if shared.phase() != Phase::Stop {
                shared.record_error(format!("{}: {e}", spec.client_id));
            }
        }
    }
}

/// What one run produced.
pub(crate) struct Outcome {
    pub report: Report,
    /// End-to-end latency of the measure window, in nanoseconds.
    pub latency_ns: Histogram<u64>,
}

/// Connects every client, runs warmup + measure window + drain, and reports.
pub(crate) async fn run_once(
    args: &Args,
    plan: &Plan,
    workers: &Workers,
    targets: &[Target],
) -> Result<Outcome, String> {
    let sources: &[IpAddr] = args.source_addrs.as_ref().map_or(&[], |s| &s.0);
    for target in targets {
        if let Some(bad) = sources
            .iter()
            .find(|ip| ip.is_ipv4() != target.addr.is_ipv4())
        {
            return Err(format!(
                "source address {bad} is not of the same family as {target}"
            ));
        }
    }
    let threads = workers.len();
    let qos = QoS::from_u8(args.qos).expect("validated by clap");
    let settings = RunSettings {
        version: args.protocol,
        qos,
        payload: args.size,
        rate: plan.rate,
        inflight: args.inflight,
        window: args.window,
        fanout: plan.fanout,
        publishers: plan.publishers as u32,
        keepalive: args.keepalive,
        persistent: args.persistent,
        retain: args.retain,
        tls: args.tls.clone(),
    };
    let shards = plan.subscribers.min(4 * threads).max(1);
    let shared = Arc::new(Shared::new(settings, shards));
    let prefix = args
        .client_id_prefix
        .clone()
        .unwrap_or_else(|| format!("lg-{}", std::process::id()));

    // Each process's probe pair on a topic of its own: several `conn` processes against one
    // broker (tuning/million.sh) would otherwise each receive the others' probes.
    let own_topic = |topic: String| match args.scenario {
        Scenario::Conn => format!("{topic}/{prefix}"),
        _ => topic,
    };

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut tasks = JoinSet::new();
    let mut tracks = Vec::with_capacity(plan.subscribers);
    let mut n = 0usize;
    let mut source = || {
        let ip = (!sources.is_empty()).then(|| sources[n % sources.len()]);
        n += 1;
        ip
    };
    let setup_start = Instant::now();
    let mut clients: Vec<(ClientSpec, Kind)> = Vec::new();
    for i in 0..plan.idle {
        clients.push((
            ClientSpec {
                client_id: format!("{prefix}-idle-{i}"),
                source: source(),
                subscribe: None,
            },
            Kind::Idle,
        ));
    }
    if args.scenario == Scenario::Retained {
        retained::seed(
            &shared,
            &targets[0],
            format!("{prefix}-seed"),
            args.topics as usize,
            args.setup_timeout,
        )
        .await?;
    }
    for i in 0..plan.subscribers {
        if args.scenario == Scenario::Retained {
            clients.push((
                ClientSpec {
                    client_id: format!("{prefix}-sub-{i}"),
                    source: source(),
                    subscribe: None,
                },
                Kind::Storm(args.topics as usize, i),
            ));
            continue;
        }
        let track = Arc::new(Mutex::new(SubTrack::default()));
        tracks.push(track.clone());
        clients.push((
            ClientSpec {
                client_id: format!("{prefix}-sub-{i}"),
                source: source(),
                subscribe: Some(own_topic(Plan::filter(args.scenario, i))),
            },
            Kind::Subscriber(track, i),
        ));
    }
    for i in 0..plan.publishers {
        clients.push((
            ClientSpec {
                client_id: format!("{prefix}-pub-{i}"),
                source: source(),
                subscribe: None,
            },
            Kind::Publisher(i as u32, own_topic(Plan::topic(args.scenario, i))),
        ));
    }
    let total = clients.len();
    for (i, (spec, kind)) in clients.into_iter().enumerate() {
        tasks.spawn_on(
            client_task(
                shared.clone(),
                permits.clone(),
                ready_tx.clone(),
                targets[i % targets.len()].clone(),
                args.connect_timeout,
                spec,
                kind,
            ),
            workers.handle(i),
        );
    }
    drop(ready_tx);

    // Setup: every client connected (and subscribed), or the first failure.
    let mut connect_hist: Histogram<u64> = shared::new_latency_histogram();
    let deadline = tokio::time::Instant::now() + args.setup_timeout;
    let mut connected = 0usize;
    while connected < total {
        let failure = match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(took))) => {
                connect_hist.saturating_record((took.as_nanos() as u64).max(1));
                connected += 1;
                continue;
            }
            Ok(Some(Err(e))) => e,
            Ok(None) => "client tasks ended during setup".to_string(),
            Err(_) => format!(
                "setup timed out after {:?}: {connected}/{total} clients ready",
                args.setup_timeout
            ),
        };
        shut_down(&shared, &mut tasks).await;
        return Err(format!("{failure} ({connected}/{total} clients ready)"));
    }
    let connect_total = setup_start.elapsed();
    if shared.errors.load(Ordering::Relaxed) > 0 {
        let errors = shared.error_messages().join("; ");
        shut_down(&shared, &mut tasks).await;
        return Err(format!("connections lost during setup: {errors}"));
    }

    // Run: warmup, then the measure window.
    let start = shared.now_ns() + 1_000_000;
    let timeline = Timeline {
        start,
        warmup_end: start + args.warmup.as_nanos() as u64,
        measure_end: start + (args.warmup + args.duration).as_nanos() as u64,
    };
    shared.start_run(timeline);
    let at = |ns: u64| tokio::time::Instant::from_std(shared.epoch + Duration::from_nanos(ns));
    if !args.quiet {
        let mut tick =
            tokio::time::interval_at(at(start) + Duration::from_secs(1), Duration::from_secs(1));
        let (mut last_sent, mut last_received) = (0u64, 0u64);
        loop {
            let now_tick = tick.tick().await;
            if now_tick >= at(timeline.measure_end) {
                break;
            }
            let sent = shared.sent.load(Ordering::Relaxed);
            let received = shared.received.load(Ordering::Relaxed);
            let in_warmup = shared.now_ns().saturating_sub(1_000_000_000) < timeline.warmup_end;
            let p99 = if in_warmup {
                "-".to_string()
            } else {
                let h = shared.merged_latency();
                if h.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.0} µs", h.value_at_quantile(0.99) as f64 / 1000.0)
                }
            };
            eprintln!(
                "shardmq-loadgen: {}: sent {}/s, received {}/s, p99 so far {p99}, errors {}",
                if in_warmup { "warmup" } else { "measure" },
                report::group(sent - last_sent),
                report::group(received - last_received),
                shared.errors.load(Ordering::Relaxed)
            );
            (last_sent, last_received) = (sent, received);
        }
    }
    tokio::time::sleep_until(at(timeline.measure_end)).await;

    // Drain: publishers stop; wait for what is still on its way.
    shared.set_phase(Phase::Drain);
    let drain_start = Instant::now();
    let quiet_limit = Duration::from_secs(1);
    let (mut last_unique, mut last_progress) = (u64::MAX, Instant::now());
    loop {
        let sent = shared.sent.load(Ordering::Relaxed);
        let expected = sent * plan.fanout;
        let unique = shared.received_unique.load(Ordering::Relaxed);
        let settled = qos == QoS::AtMostOnce
            || plan.publishers == 0
            || shared.acked.load(Ordering::Relaxed) + shared.rejected.load(Ordering::Relaxed)
                >= sent;
        if (unique >= expected && settled) || drain_start.elapsed() >= args.drain {
            break;
        }
        if unique != last_unique {
            (last_unique, last_progress) = (unique, Instant::now());
        } else if qos == QoS::AtMostOnce && last_progress.elapsed() >= quiet_limit {
            // QoS 0: what has not arrived after a quiet second was dropped.
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = drain_start.elapsed();
    shut_down(&shared, &mut tasks).await;

    // Report.
    let mut agg = SubTrack::default();
    let mut out_of_order_streams = 0u64;
    for track in &tracks {
        let t = track.lock().unwrap();
        agg.received += t.received;
        agg.unique += t.unique;
        agg.received_window += t.received_window;
        agg.duplicates += t.duplicates;
        agg.out_of_order += t.out_of_order;
        agg.unexpected += t.unexpected;
        out_of_order_streams += t.streams.values().filter(|s| s.out_of_order > 0).count() as u64;
    }
    // Retained storms count their deliveries in the shared counters only (no per-publisher streams).
    let storms = u64::from(args.scenario == Scenario::Retained);
    let sent = shared.sent.load(Ordering::Relaxed);
    let expected = sent * plan.fanout;
    let acked = shared.acked.load(Ordering::Relaxed);
    let rejected = shared.rejected.load(Ordering::Relaxed);
    let latency_ns = shared.merged_latency();
    let report = Report {
        scenario: args.scenario.name().to_string(),
        mqtt: version_name(args.protocol).to_string(),
        qos: args.qos,
        payload: args.size,
        publishers: plan.publishers,
        subscribers: plan.subscribers,
        idle_connections: plan.idle,
        rate: plan.rate,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        threads,
        tls: args.tls.is_some(),
        sent,
        sent_window: shared.sent_window.load(Ordering::Relaxed),
        acked,
        rejected,
        unacked: if qos == QoS::AtMostOnce {
            0
        } else {
            sent.saturating_sub(acked + rejected)
        },
        received: agg.received + shared.received.load(Ordering::Relaxed) * storms,
        received_unique: agg.unique + shared.received_unique.load(Ordering::Relaxed) * storms,
        received_window: agg.received_window + shared.received_window_total.load(Ordering::Relaxed),
        expected,
        lost: expected
            .saturating_sub(agg.unique + shared.received_unique.load(Ordering::Relaxed) * storms),
        duplicates: agg.duplicates,
        out_of_order: agg.out_of_order,
        out_of_order_streams,
        unexpected: agg.unexpected,
        drain_s: drain.as_secs_f64(),
        latency: LatencySummary::from_ns(&latency_ns),
        connect_clients: total,
        connect_total_ms: connect_total.as_secs_f64() * 1000.0,
        connect: LatencySummary::from_ns(&connect_hist),
        connection_errors: shared.errors.load(Ordering::Relaxed),
        errors: shared.error_messages(),
    };
    Ok(Outcome { report, latency_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5parsecs").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("3.1.1").unwrap(), ProtocolVersion::V311);
        assert_eq!(parse_version("5").unwrap(), ProtocolVersion::V5);
        assert_eq!(parse_version("3.1").unwrap(), ProtocolVersion::V31);
        assert!(parse_version("6").is_err());
    }

    #[test]
    fn plans() {
        let args = |extra: &[&str]| {
            let mut v = vec!["shardmq-loadgen"];
            v.extend_from_slice(extra);
            Args::try_parse_from(v).unwrap()
        };
        let p = Plan::from_args(&args(&["p2p", "--pairs", "10"])).unwrap();
        assert_eq!(
            (p.publishers, p.subscribers, p.fanout, p.idle),
            (10, 10, 1, 0)
        );
        let p = Plan::from_args(&args(&["fanin", "--pubs", "5"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (5, 1, 1));
        let p = Plan::from_args(&args(&["fan-out", "--subs", "100"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (1, 100, 100));
        let p = Plan::from_args(&args(&["shared"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (10, 4, 1));
        let p = Plan::from_args(&args(&["conn", "--connections", "10000"])).unwrap();
        assert_eq!(
            (p.publishers, p.subscribers, p.idle, p.rate),
            (1, 1, 10000, 100)
        );
        let p = Plan::from_args(&args(&["conn", "--rate", "0"])).unwrap();
        assert_eq!((p.idle, p.rate), (1000, 0));
        assert!(Plan::from_args(&args(&["p2p", "--pubs", "2"])).is_err());
        assert!(Plan::from_args(&args(&["fanin", "--pairs", "2"])).is_err());
        assert!(Plan::from_args(&args(&["p2p", "--size", "8"])).is_err());
        assert!(Args::try_parse_from(["shardmq-loadgen"]).is_err());
        assert_eq!(Plan::filter(Scenario::Fanin, 3), "lg/fanin/#");
        assert_eq!(Plan::filter(Scenario::Shared, 3), "$share/lg/lg/shared/#");
        assert_eq!(Plan::topic(Scenario::P2p, 3), "lg/p2p/3");
        let a = args(&["p2p", "--host", "a,b", "--port", "1883", "--port", "1884"]);
        assert_eq!((a.host.len(), a.port), (2, vec![1883, 1884]));
    }

    #[test]
    fn source_addrs() {
        let s = parse_source_addrs("127.0.0.1-127.0.0.16").unwrap();
        assert_eq!(s.0.len(), 16);
        assert_eq!(s.0[15], "127.0.0.16".parse::<IpAddr>().unwrap());
        let s = parse_source_addrs("127.0.0.254-127.0.1.1,10.0.0.1").unwrap();
        assert_eq!(s.0.len(), 5);
        assert_eq!(s.0[2], "127.0.1.0".parse::<IpAddr>().unwrap());
        assert!(parse_source_addrs("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_source_addrs("nope").is_err());
        assert!(parse_source_addrs("").is_err());
        assert!(parse_source_addrs("10.0.0.0-10.1.0.0").is_err());
    }
}
