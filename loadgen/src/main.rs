//! loadgen: the MQTT load generator bundled with shardmq.
//!
//! Connects publishers, subscribers and idle clients, runs a warmup then a measure window, drains, and
//! reports throughput, loss, duplicates, ordering and end-to-end latency (HDR histogram). Every packet
//! goes through shardmq's sans-IO codec. See loadgen/README.md.
//!
//! Exit codes: 0 = the run completed; 1 = setup failed (could not resolve, connect, subscribe, ...);
//! 2 = bad arguments; 3 = the run completed but connections failed during it (the report says which).

mod conn;
mod pacer;
mod report;
mod roles;
mod shared;
mod track;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use shardmq::codec::{ProtocolVersion, QoS};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::conn::{drive, handshake, ClientSpec};
use crate::pacer::Pacer;
use crate::report::{LatencySummary, Report};
use crate::roles::{Idle, Publisher, Subscriber, PAYLOAD_HEADER};
use crate::shared::{Phase, RunSettings, Shared, Timeline};
use crate::track::SubTrack;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Publisher i → topic lg/p2p/i → subscriber i (N pairs).
    P2p,
    /// N publishers on lg/fanin/i → subscribers on lg/fanin/# (1 by default).
    FanIn,
    /// Publishers (1 by default) → lg/fanout → M subscribers.
    FanOut,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::P2p => "p2p",
            Scenario::FanIn => "fan-in",
            Scenario::FanOut => "fan-out",
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "MQTT load generator: throughput, loss, ordering and latency of a broker",
    after_help = "Exit status: 0 run completed, 1 setup failed, 2 bad arguments, 3 connections failed during the run."
)]
struct Args {
    /// Broker host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long, value_enum, default_value_t = Scenario::P2p)]
    scenario: Scenario,
    /// QoS of the publications and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload size in bytes (at least 16: publisher id, sequence, timestamp).
    #[arg(long, default_value_t = 16)]
    payload: usize,
    /// Publishers [p2p: pairs, default 1; fan-in: default 10; fan-out: default 1].
    #[arg(long)]
    publishers: Option<usize>,
    /// Subscribers [p2p: = publishers; fan-in: default 1; fan-out: default 10].
    #[arg(long)]
    subscribers: Option<usize>,
    /// Messages per second per publisher; 0 = as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Length of the measure window (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Publishing before the measure window (not in latency or throughput).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Longest wait after publishing stops for outstanding deliveries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    /// MQTT version: 3.1, 3.1.1 or 5.
    #[arg(long, default_value = "3.1.1", value_parser = parse_version)]
    mqtt: ProtocolVersion,
    /// Local addresses to bind, round robin over all connections (e.g. 127.0.0.1,127.0.0.2): lifts the
    /// ~28k-connections-per-source-address limit of the ephemeral port range.
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// Extra connected clients that only keep their connection alive.
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=65_534))]
    inflight: u16,
    /// Tokio worker threads (default: number of CPUs).
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
    /// Client id prefix (default: lg-<pid>).
    #[arg(long)]
    client_id_prefix: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Print a progress line on stderr every second.
    #[arg(long)]
    progress: bool,
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
struct Plan {
    publishers: usize,
    subscribers: usize,
    /// Deliveries each published message should produce.
    fanout: u64,
}

impl Plan {
    fn from_args(a: &Args) -> Result<Plan, String> {
        if a.payload < PAYLOAD_HEADER {
            return Err(format!(
                "--payload must be at least {PAYLOAD_HEADER} (publisher id, sequence, timestamp)"
            ));
        }
        if a.payload > 200 * 1024 * 1024 {
            return Err("--payload is too large".into());
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
        let (publishers, subscribers) = match a.scenario {
            Scenario::P2p => {
                let n = a.publishers.or(a.subscribers).unwrap_or(1);
                if let (Some(p), Some(s)) = (a.publishers, a.subscribers) {
                    if p != s {
                        return Err(format!(
                            "p2p needs as many subscribers as publishers (got {p} and {s})"
                        ));
                    }
                }
                (n, n)
            }
            Scenario::FanIn => (a.publishers.unwrap_or(10), a.subscribers.unwrap_or(1)),
            Scenario::FanOut => (a.publishers.unwrap_or(1), a.subscribers.unwrap_or(10)),
        };
        if publishers == 0 || subscribers == 0 {
            return Err("need at least one publisher and one subscriber".into());
        }
        if publishers > u32::MAX as usize {
            return Err("too many publishers".into());
        }
        let fanout = match a.scenario {
            Scenario::P2p => 1,
            Scenario::FanIn | Scenario::FanOut => subscribers as u64,
        };
        Ok(Plan {
            publishers,
            subscribers,
            fanout,
        })
    }

    fn topic(scenario: Scenario, publisher: usize) -> String {
        match scenario {
            Scenario::P2p => format!("lg/p2p/{publisher}"),
            Scenario::FanIn => format!("lg/fanin/{publisher}"),
            Scenario::FanOut => "lg/fanout".into(),
        }
    }

    fn filter(scenario: Scenario, subscriber: usize) -> String {
        match scenario {
            Scenario::P2p => format!("lg/p2p/{subscriber}"),
            Scenario::FanIn => "lg/fanin/#".into(),
            Scenario::FanOut => "lg/fanout".into(),
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
    let args = Args::parse();
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let total = plan.publishers + plan.subscribers + args.idle_connections;
    if let Some(limit) = raise_nofile_limit() {
        if (total as libc::rlim_t).saturating_add(64) > limit {
            eprintln!(
                "loadgen: warning: {total} connections but the open files limit is {limit}; raise it (ulimit -Hn)"
            );
        }
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(args, plan, threads));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Prints a setup failure (as JSON too when asked) and returns exit code 1.
fn setup_failed(json: bool, message: &str) -> ExitCode {
    eprintln!("loadgen: setup failed: {message}");
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": false, "setup_failed": true, "error": message})
        );
    }
    ExitCode::from(1)
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
}

async fn client_task(
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<Duration, String>>,
    target: SocketAddr,
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
        handshake(&shared, target, &spec, &mut stage),
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

async fn run(args: Args, plan: Plan, threads: usize) -> ExitCode {
    let target = match resolve(&args.host, args.port).await {
        Ok(t) => t,
        Err(e) => return setup_failed(args.json, &e),
    };
    if let Some(bad) = args
        .source_ips
        .iter()
        .find(|ip| ip.is_ipv4() != target.is_ipv4())
    {
        return setup_failed(
            args.json,
            &format!("source address {bad} is not of the same family as {target}"),
        );
    }
    let qos = QoS::from_u8(args.qos).expect("validated by clap");
    let settings = RunSettings {
        version: args.mqtt,
        qos,
        payload: args.payload,
        rate: args.rate,
        inflight: args.inflight,
        publishers: plan.publishers as u32,
        keepalive: args.keepalive,
    };
    let shards = plan.subscribers.min(4 * threads).max(1);
    let shared = Arc::new(Shared::new(settings, shards));
    let prefix = args
        .client_id_prefix
        .clone()
        .unwrap_or_else(|| format!("lg-{}", std::process::id()));

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut tasks = JoinSet::new();
    let mut tracks = Vec::with_capacity(plan.subscribers);
    let mut n = 0usize;
    let mut source = || {
        let ip = (!args.source_ips.is_empty()).then(|| args.source_ips[n % args.source_ips.len()]);
        n += 1;
        ip
    };
    let setup_start = Instant::now();
    let mut clients: Vec<(ClientSpec, Kind)> = Vec::new();
    for i in 0..args.idle_connections {
        clients.push((
            ClientSpec {
                client_id: format!("{prefix}-idle-{i}"),
                source: source(),
                subscribe: None,
            },
            Kind::Idle,
        ));
    }
    for i in 0..plan.subscribers {
        let track = Arc::new(Mutex::new(SubTrack::default()));
        tracks.push(track.clone());
        clients.push((
            ClientSpec {
                client_id: format!("{prefix}-sub-{i}"),
                source: source(),
                subscribe: Some(Plan::filter(args.scenario, i)),
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
            Kind::Publisher(i as u32, Plan::topic(args.scenario, i)),
        ));
    }
    let total = clients.len();
    for (spec, kind) in clients {
        tasks.spawn(client_task(
            shared.clone(),
            permits.clone(),
            ready_tx.clone(),
            target,
            args.connect_timeout,
            spec,
            kind,
        ));
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
        return setup_failed(
            args.json,
            &format!("{failure} ({connected}/{total} clients ready)"),
        );
    }
    let connect_total = setup_start.elapsed();
    if shared.errors.load(Ordering::Relaxed) > 0 {
        let errors = shared.error_messages().join("; ");
        shut_down(&shared, &mut tasks).await;
        return setup_failed(
            args.json,
            &format!("connections lost during setup: {errors}"),
        );
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
    if args.progress {
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
            let phase = if shared.now_ns().saturating_sub(1_000_000_000) < timeline.warmup_end {
                "warmup"
            } else {
                "measure"
            };
            eprintln!(
                "loadgen: {phase}: sent {}/s, received {}/s, errors {}",
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
    let sent = shared.sent.load(Ordering::Relaxed);
    let expected = sent * plan.fanout;
    let acked = shared.acked.load(Ordering::Relaxed);
    let rejected = shared.rejected.load(Ordering::Relaxed);
    let report = Report {
        scenario: args.scenario.name().to_string(),
        mqtt: version_name(args.mqtt).to_string(),
        qos: args.qos,
        payload: args.payload,
        publishers: plan.publishers,
        subscribers: plan.subscribers,
        idle_connections: args.idle_connections,
        rate: args.rate,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        threads,
        sent,
        sent_window: shared.sent_window.load(Ordering::Relaxed),
        acked,
        rejected,
        unacked: if qos == QoS::AtMostOnce {
            0
        } else {
            sent.saturating_sub(acked + rejected)
        },
        received: agg.received,
        received_unique: agg.unique,
        received_window: agg.received_window,
        expected,
        lost: expected.saturating_sub(agg.unique),
        duplicates: agg.duplicates,
        out_of_order: agg.out_of_order,
        out_of_order_streams,
        unexpected: agg.unexpected,
        drain_s: drain.as_secs_f64(),
        latency: LatencySummary::from_ns(&shared.merged_latency()),
        connect_clients: total,
        connect_total_ms: connect_total.as_secs_f64() * 1000.0,
        connect: LatencySummary::from_ns(&connect_hist),
        connection_errors: shared.errors.load(Ordering::Relaxed),
        errors: shared.error_messages(),
    };
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
            let mut v = vec!["loadgen"];
            v.extend_from_slice(extra);
            Args::try_parse_from(v).unwrap()
        };
        let p = Plan::from_args(&args(&["--publishers", "10"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (10, 10, 1));
        let p = Plan::from_args(&args(&["--scenario", "fan-in", "--publishers", "5"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (5, 1, 1));
        let p = Plan::from_args(&args(&["--scenario", "fan-out", "--subscribers", "100"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (1, 100, 100));
        assert!(Plan::from_args(&args(&["--publishers", "2", "--subscribers", "3"])).is_err());
        assert!(Plan::from_args(&args(&["--payload", "8"])).is_err());
        assert_eq!(Plan::filter(Scenario::FanIn, 3), "lg/fanin/#");
        assert_eq!(Plan::topic(Scenario::P2p, 3), "lg/p2p/3");
    }
}
