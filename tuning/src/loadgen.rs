//! Driving `shardmq-loadgen`: the standard scenario set, the command line for it, and reading its JSON
//! report.
//!
//! The load generator's command line is changing (a positional SCENARIO with `--pairs/--pubs/--subs/
//! --size` replacing `--scenario/--publishers/--subscribers/--payload`). Both are spoken: which one a
//! binary understands is read once from its `--help` ([`Flavor`]), [`loadgen_args`] is the only place
//! that writes either, and [`parse_report`] reads both JSON shapes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::error::TuneError;
use crate::process::{restrict_cpus, run_bounded, tail};

/// Which load generator command line a binary speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `shardmq-loadgen SCENARIO --pairs/--pubs/--subs --size ...`; JSON with `msgs_per_s`, `p99_us`.
    Current,
    /// `shardmq-loadgen --scenario p2p|fan-in|fan-out --publishers --subscribers --payload ...`; JSON
    /// with `throughput`, `latency_us.p99`.
    Legacy,
}

/// The flavor a `--help` text describes: only the legacy one has a `--scenario` option.
pub fn flavor_from_help(help: &str) -> Flavor {
    if help.contains("--scenario") {
        Flavor::Legacy
    } else {
        Flavor::Current
    }
}

/// Runs `loadgen --help` (bounded) to learn its flavor.
pub fn detect_flavor(loadgen: &Path) -> Result<Flavor, TuneError> {
    let out = run_bounded(
        Command::new(loadgen).arg("--help"),
        Duration::from_secs(10),
        "shardmq-loadgen --help",
    )?;
    Ok(flavor_from_help(&format!("{}{}", out.stdout, out.stderr)))
}

/// Who talks to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Shape {
    /// N publisher → subscriber pairs, each on its own topic.
    P2p {
        /// Pairs.
        pairs: usize,
    },
    /// Many publishers on their own topics, subscribers on a wildcard taking all of them.
    Fanin {
        /// Publishers.
        pubs: usize,
        /// Subscribers.
        subs: usize,
    },
    /// Few publishers on one topic, many subscribers on it.
    Fanout {
        /// Publishers.
        pubs: usize,
        /// Subscribers.
        subs: usize,
    },
}

/// What a scenario's figures count for in the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    /// Max rate: its msg/s is a term of the score.
    Throughput,
    /// Fixed rate: its p99 gates the candidate.
    Latency,
}

/// One load generator run of the standard set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scenario {
    /// Column name in the table (`p2p-q1`, `fanin-q1`, `p2p-q1@1k`, ...).
    pub name: String,
    /// Clients.
    pub shape: Shape,
    /// QoS of publications and subscriptions.
    pub qos: u8,
    /// Payload bytes.
    pub size: usize,
    /// Messages per second per publisher; 0 = max.
    pub rate: u64,
    /// How it is scored.
    pub role: Role,
}

/// Per-publisher rate of the fixed-rate run: 10 pairs × 1000 msg/s = 10k msg/s, far below what one
/// shard sustains, so its p99 is latency and not queueing.
pub const FIXED_RATE: u64 = 1000;

/// The standard scenario set. QoS 1 with 16-byte payloads measures the per-message cost (routing,
/// acknowledgements) rather than copying; p2p is the shard-local best case and fan-in forces every
/// message through one subscriber's shard. The full set adds QoS 0 fan-out (one publisher, 100
/// subscribers), which measures delivery to many sessions across shards.
pub fn standard_set(quick: bool, fixed_rate: u64) -> Vec<Scenario> {
    let mut set = vec![
        Scenario {
            name: "p2p-q1".into(),
            shape: Shape::P2p { pairs: 10 },
            qos: 1,
            size: 16,
            rate: 0,
            role: Role::Throughput,
        },
        Scenario {
            name: "fanin-q1".into(),
            shape: Shape::Fanin { pubs: 10, subs: 1 },
            qos: 1,
            size: 16,
            rate: 0,
            role: Role::Throughput,
        },
    ];
    if !quick {
        set.push(Scenario {
            name: "fanout-q0".into(),
            shape: Shape::Fanout { pubs: 1, subs: 100 },
            qos: 0,
            size: 16,
            rate: 0,
            role: Role::Throughput,
        });
    }
    set.push(Scenario {
        name: format!("p2p-q1@{}", rate_label(fixed_rate)),
        shape: Shape::P2p { pairs: 10 },
        qos: 1,
        size: 16,
        rate: fixed_rate,
        role: Role::Latency,
    });
    set
}

fn rate_label(rate: u64) -> String {
    if rate >= 1000 && rate % 1000 == 0 {
        format!("{}k", rate / 1000)
    } else {
        rate.to_string()
    }
}

/// Where and how long to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Broker address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Publishing before the measure window.
    pub warmup: Duration,
    /// The measure window.
    pub duration: Duration,
    /// `--threads`; `None` = the load generator's default (one per CPU).
    pub threads: Option<usize>,
}

/// A duration as the load generator parses it: whole seconds as `2s`, anything else in milliseconds.
pub fn duration_arg(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The load generator's arguments for one run: the only function that knows either command line.
pub fn loadgen_args(flavor: Flavor, s: &Scenario, t: &Target) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if flavor == Flavor::Current {
        // The positional SCENARIO comes first.
        a.push(
            match s.shape {
                Shape::P2p { .. } => "p2p",
                Shape::Fanin { .. } => "fanin",
                Shape::Fanout { .. } => "fanout",
            }
            .to_owned(),
        );
    }
    let mut opt = |k: &str, v: String| {
        a.push(k.to_owned());
        a.push(v);
    };
    match flavor {
        Flavor::Current => {
            let counts = match s.shape {
                Shape::P2p { pairs } => vec![("--pairs", pairs)],
                Shape::Fanin { pubs, subs } | Shape::Fanout { pubs, subs } => {
                    vec![("--pubs", pubs), ("--subs", subs)]
                }
            };
            for (k, n) in counts {
                opt(k, n.to_string());
            }
            opt("--size", s.size.to_string());
        }
        Flavor::Legacy => {
            let (scenario, pubs, subs) = match s.shape {
                Shape::P2p { pairs } => ("p2p", pairs, None),
                Shape::Fanin { pubs, subs } => ("fan-in", pubs, Some(subs)),
                Shape::Fanout { pubs, subs } => ("fan-out", pubs, Some(subs)),
            };
            opt("--scenario", scenario.to_owned());
            opt("--publishers", pubs.to_string());
            if let Some(subs) = subs {
                opt("--subscribers", subs.to_string());
            }
            opt("--payload", s.size.to_string());
        }
    }
    opt("--host", t.host.clone());
    opt("--port", t.port.to_string());
    opt("--qos", s.qos.to_string());
    opt("--rate", s.rate.to_string());
    opt("--warmup", duration_arg(t.warmup));
    opt("--duration", duration_arg(t.duration));
    if let Some(n) = t.threads {
        opt("--threads", n.to_string());
    }
    a.push("--json".into());
    a
}

/// The figures of one run that the sweep uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Messages received per second in the measure window.
    pub msgs_per_s: f64,
    /// 99th percentile end-to-end latency; `None` when nothing was measured.
    pub p99_us: Option<f64>,
    /// Messages lost (QoS 1/2: never delivered); `None` when the report does not say.
    pub lost: Option<u64>,
    /// The load generator's own verdict (no connection failed); true when it does not say.
    pub ok: bool,
}

/// Why a report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Nothing on stdout.
    #[error("no output")]
    Empty,
    /// The last line is not a JSON object.
    #[error("last line is not a JSON object: {0}")]
    NotJson(String),
    /// Neither `msgs_per_s` nor `throughput`.
    #[error("no msgs_per_s (or throughput) in the report")]
    NoThroughput,
}

/// Reads the report from a run's stdout: the last non-empty line, one JSON object, with
/// `msgs_per_s` (or the legacy `throughput`), `p99_us` (or `latency_us.p99`), `lost` and `ok`.
pub fn parse_report(stdout: &str) -> Result<RunReport, ReportError> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or(ReportError::Empty)?;
    let v: Value =
        serde_json::from_str(line.trim()).map_err(|e| ReportError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(ReportError::NotJson("not an object".into()));
    }
    let msgs_per_s = v
        .get("msgs_per_s")
        .or_else(|| v.get("throughput"))
        .and_then(Value::as_f64)
        .ok_or(ReportError::NoThroughput)?;
    let p99_us = v
        .get("p99_us")
        .or_else(|| v.get("latency_us").and_then(|l| l.get("p99")))
        .and_then(Value::as_f64);
    Ok(RunReport {
        msgs_per_s,
        p99_us,
        lost: v.get("lost").and_then(Value::as_u64),
        ok: v.get("ok").and_then(Value::as_bool).unwrap_or(true),
    })
}

/// How one run went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RunOutcome {
    /// It completed and reported.
    Done(RunReport),
    /// It failed; the reason is shown in the table and rejects the candidate.
    Failed(String),
}

/// Setup, drain and exit on top of warmup + duration: the load generator connects for up to seconds
/// and drains for up to 5 s.
const RUN_SLACK: Duration = Duration::from_secs(30);

/// Runs one scenario against the broker at `t`. `cpus`: CPUs to keep the load generator on, if any.
/// Exit status 2 (bad arguments) aborts the sweep, since every further run would fail alike.
pub fn run(
    loadgen: &Path,
    flavor: Flavor,
    s: &Scenario,
    t: &Target,
    cpus: Option<&[usize]>,
) -> Result<RunOutcome, TuneError> {
    let args = loadgen_args(flavor, s, t);
    let mut cmd = Command::new(loadgen);
    cmd.args(&args);
    if let Some(cpus) = cpus {
        restrict_cpus(&mut cmd, cpus);
    }
    let limit = t.warmup + t.duration + RUN_SLACK;
    let out = match run_bounded(&mut cmd, limit, &format!("shardmq-loadgen {}", s.name)) {
        Ok(out) => out,
        Err(TuneError::Timeout { after, .. }) => {
            return Ok(RunOutcome::Failed(format!("timed out after {after:?}")))
        }
        Err(e) => return Err(e),
    };
    match out.status.code() {
        Some(0) => Ok(match parse_report(&out.stdout) {
            Ok(r) if !r.ok => RunOutcome::Failed("connections failed during the run".into()),
            Ok(r) => RunOutcome::Done(r),
            Err(e) => RunOutcome::Failed(format!("unreadable report: {e}")),
        }),
        Some(2) => Err(TuneError::LoadgenUsage {
            program: loadgen.to_owned(),
            args: args.join(" "),
            stderr: tail(&out.stderr, 3),
        }),
        Some(3) => Ok(RunOutcome::Failed(
            "connections failed during the run".into(),
        )),
        _ => Ok(RunOutcome::Failed(format!(
            "load generator failed ({}): {}",
            out.status,
            tail(&out.stderr, 2)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: 4000,
            warmup: Duration::from_secs(1),
            duration: Duration::from_millis(2500),
            threads: None,
        }
    }

    #[test]
    fn current_command_line() {
        let set = standard_set(true, 1000);
        let fanin = set.iter().find(|s| s.name == "fanin-q1").unwrap();
        assert_eq!(
            loadgen_args(Flavor::Current, fanin, &target()).join(" "),
            "fanin --pubs 10 --subs 1 --size 16 --host 127.0.0.1 --port 4000 --qos 1 --rate 0 \
             --warmup 1s --duration 2500ms --json"
        );
        let fixed = set.iter().find(|s| s.role == Role::Latency).unwrap();
        let mut t = target();
        t.threads = Some(6);
        assert_eq!(
            loadgen_args(Flavor::Current, fixed, &t).join(" "),
            "p2p --pairs 10 --size 16 --host 127.0.0.1 --port 4000 --qos 1 --rate 1000 \
             --warmup 1s --duration 2500ms --threads 6 --json"
        );
    }

    #[test]
    fn legacy_command_line() {
        let set = standard_set(false, 1000);
        let fanout = set.iter().find(|s| s.name == "fanout-q0").unwrap();
        assert_eq!(
            loadgen_args(Flavor::Legacy, fanout, &target()).join(" "),
            "--scenario fan-out --publishers 1 --subscribers 100 --payload 16 --host 127.0.0.1 \
             --port 4000 --qos 0 --rate 0 --warmup 1s --duration 2500ms --json"
        );
        let p2p = &set[0];
        assert_eq!(
            loadgen_args(Flavor::Legacy, p2p, &target())[..4],
            ["--scenario", "p2p", "--publishers", "10"]
        );
    }

    #[test]
    fn flavors_from_help() {
        assert_eq!(
            flavor_from_help("Usage: shardmq-loadgen [OPTIONS]\n      --scenario <SCENARIO>"),
            Flavor::Legacy
        );
        assert_eq!(
            flavor_from_help("Usage: shardmq-loadgen [OPTIONS] <SCENARIO>\n  --pairs <PAIRS>"),
            Flavor::Current
        );
    }

    #[test]
    fn sets() {
        let quick: Vec<String> = standard_set(true, 1000)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(quick, ["p2p-q1", "fanin-q1", "p2p-q1@1k"]);
        assert_eq!(standard_set(false, 500).len(), 4);
        assert_eq!(standard_set(false, 500)[3].name, "p2p-q1@500");
    }

    #[test]
    fn reads_the_current_report() {
        let out = "progress\n{\"msgs_per_s\":563330.0,\"sent\":10,\"received\":10,\"lost\":0,\"dup\":0,\
                   \"out_of_order\":0,\"p50_us\":40.5,\"p99_us\":120.25,\"p999_us\":300.0,\"max_us\":900.0,\
                   \"connect_per_s\":100.0,\"ok\":true}\n";
        let r = parse_report(out).unwrap();
        assert_eq!(r.msgs_per_s, 563330.0);
        assert_eq!(r.p99_us, Some(120.25));
        assert_eq!(r.lost, Some(0));
        assert!(r.ok);
        // Percentiles are null when nothing was measured.
        let r = parse_report("{\"msgs_per_s\":0.0,\"p99_us\":null,\"lost\":3}").unwrap();
        assert_eq!(r.p99_us, None);
        assert_eq!(r.lost, Some(3));
    }

    #[test]
    fn reads_the_legacy_report() {
        let out =
            "{\"acked\":1699931,\"latency_us\":{\"count\":1126329,\"p50\":4296.7,\"p99\":9879.6},\
                   \"lost\":0,\"ok\":false,\"throughput\":563330.0}";
        let r = parse_report(out).unwrap();
        assert_eq!(r.msgs_per_s, 563330.0);
        assert_eq!(r.p99_us, Some(9879.6));
        assert!(!r.ok);
    }

    #[test]
    fn rejects_unreadable_reports() {
        assert_eq!(parse_report("\n\n"), Err(ReportError::Empty));
        assert!(matches!(
            parse_report("table\n"),
            Err(ReportError::NotJson(_))
        ));
        assert!(matches!(parse_report("[1]"), Err(ReportError::NotJson(_))));
        assert_eq!(
            parse_report("{\"p99_us\":1}"),
            Err(ReportError::NoThroughput)
        );
    }

    #[test]
    fn durations_for_loadgen() {
        assert_eq!(duration_arg(Duration::from_secs(2)), "2s");
        assert_eq!(duration_arg(Duration::from_millis(1500)), "1500ms");
    }
}
