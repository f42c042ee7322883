//! One run of a scenario: [`run_once`] connects every client (round robin over the brokers and the
//! worker threads), runs warmup, measure window and drain, and builds the [`Report`]; [`run_single`] is
//! the whole job without `--compare`. Also the brokers' addresses ([`resolve_all`]) and stopping the
//! clients.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardmq::codec::QoS;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::args::{version_name, Args};
use crate::client::{client_task, Kind};
use crate::conn::{ClientSpec, Target};
use crate::report::{self, LatencySummary, Report};
use crate::scenario::{Plan, Scenario};
use crate::shared::{self, Phase, RunSettings, Shared, Timeline};
use crate::track::SubTrack;
use crate::workers::Workers;
use crate::{hgrm, retained, setup_failed};

/// One run against the broker(s) of `--host`/`--port`: report, histogram file, exit code.
pub(crate) async fn run_single(args: &Args, plan: &Plan, workers: &Workers) -> ExitCode {
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
