//! `shardmq-tune sweep`: start the broker once per candidate placement, run the standard scenario set
//! against it, score, print the table, and write the winner as a config snippet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::broker::{Broker, StartError};
use crate::candidates::{candidates, Candidate};
use crate::error::TuneError;
use crate::loadgen::{self, Flavor, Role, RunOutcome, Scenario, Shape, Target};
use crate::probe::HostReport;
use crate::process::{run_bounded, tail};
use crate::score::{self, Figures, Verdict, NOISE};
use crate::snippet::{self, SnippetInfo};
use crate::table::{self, thousands};
use crate::topology::{format_cpu_list, Topology};

/// Command-line choices for a sweep: the `sweep` subcommand's flags themselves (clap reads the doc
/// comments below as their help).
#[derive(Debug, Clone, clap::Args)]
pub struct SweepOptions {
    /// Short runs (1s warmup + 2s), 3 scenarios, fewer shard counts; under 2 minutes on 2 cores.
    #[arg(long)]
    pub quick: bool,
    /// Write the winner as a config snippet (shards, cpu_affinity, cpu_set) to FILE.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Broker binary [default: shardmq next to this program, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub broker: Option<PathBuf>,
    /// Load generator binary [default: shardmq-loadgen next to this program, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub loadgen: Option<PathBuf>,
    /// Measure window of each run, e.g. 2s, 500ms, 1m [default: 2s quick, 5s full].
    #[arg(long, value_name = "D", value_parser = crate::parse_duration)]
    pub duration: Option<Duration>,
    /// Warmup before each measure window [default: 1s quick, 2s full].
    #[arg(long, value_name = "D", value_parser = crate::parse_duration)]
    pub warmup: Option<Duration>,
    /// Messages per second per publisher of the fixed-rate latency run (10 publishers).
    #[arg(long, value_name = "R", default_value_t = loadgen::FIXED_RATE,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// Rounds over all candidates; each figure is the best of its rounds (highest msg/s, lowest
    /// p99), which filters out background load on busy or small hosts.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=20))]
    pub repeat: u16,
    /// Load generator worker threads for every run [default: its own, or the CPUs a pinned
    /// candidate leaves free on hosts with 4 CPUs or more].
    #[arg(long, value_name = "T")]
    pub loadgen_threads: Option<usize>,
    /// Only print the candidates and scenarios; start nothing.
    #[arg(long)]
    pub list: bool,
    /// With --list: plan for a synthetic NODESxCORESxTHREADS machine, e.g. 2x8x2.
    #[arg(long, value_name = "NxCxT", value_parser = crate::parse_shape, requires = "list")]
    pub synthetic: Option<(usize, usize, usize)>,
}

impl SweepOptions {
    fn warmup(&self) -> Duration {
        self.warmup
            .unwrap_or(Duration::from_secs(if self.quick { 1 } else { 2 }))
    }

    fn duration(&self) -> Duration {
        self.duration
            .unwrap_or(Duration::from_secs(if self.quick { 2 } else { 5 }))
    }
}

/// Everything measured for one candidate.
#[derive(Debug, Clone)]
pub struct CandidateResult {
    /// What ran.
    pub candidate: Candidate,
    /// One outcome per scenario; `None` for runs that did not happen (broker failed earlier).
    pub runs: Vec<Option<RunOutcome>>,
    /// Why the candidate did not complete, if it did not.
    pub failure: Option<String>,
}

impl CandidateResult {
    /// Folds a repeat of the same candidate into this one: per scenario the best figures (highest
    /// msg/s, lowest p99), because background load only ever lowers throughput and raises latency, so
    /// the best of several runs is the closest to what the placement itself can do. Failures and lost
    /// messages are kept from every round: they are the broker's, not the background's.
    pub fn merge(&mut self, other: CandidateResult) {
        if self.failure.is_none() {
            self.failure = other.failure;
        }
        for (mine, theirs) in self.runs.iter_mut().zip(other.runs) {
            *mine = match (mine.take(), theirs) {
                (Some(RunOutcome::Failed(why)), _) | (_, Some(RunOutcome::Failed(why))) => {
                    Some(RunOutcome::Failed(why))
                }
                (Some(RunOutcome::Done(a)), Some(RunOutcome::Done(b))) => {
                    Some(RunOutcome::Done(loadgen::RunReport {
                        msgs_per_s: a.msgs_per_s.max(b.msgs_per_s),
                        p99_us: match (a.p99_us, b.p99_us) {
                            (Some(x), Some(y)) => Some(x.min(y)),
                            (x, y) => x.or(y),
                        },
                        lost: match (a.lost, b.lost) {
                            (Some(x), Some(y)) => Some(x + y),
                            (x, y) => x.or(y),
                        },
                        ok: a.ok && b.ok,
                    }))
                }
                (a, b) => a.or(b),
            };
        }
    }

    /// The figures scoring looks at.
    pub fn figures(&self, scenarios: &[Scenario]) -> Figures {
        let done = |i: usize| match &self.runs.get(i) {
            Some(Some(RunOutcome::Done(r))) => Some(r),
            _ => None,
        };
        let mut failure = self.failure.clone();
        for (i, s) in scenarios.iter().enumerate() {
            if let Some(Some(RunOutcome::Failed(why))) = self.runs.get(i) {
                failure.get_or_insert_with(|| format!("{}: {why}", s.name));
            }
        }
        Figures {
            shards: self.candidate.shards,
            pinned: self.candidate.pinned(),
            throughput: scenarios
                .iter()
                .enumerate()
                .filter(|(_, s)| s.role == Role::Throughput)
                .map(|(i, _)| done(i).map(|r| r.msgs_per_s))
                .collect(),
            p99_us: scenarios
                .iter()
                .position(|s| s.role == Role::Latency)
                .and_then(done)
                .and_then(|r| r.p99_us),
            lost_qos1: scenarios
                .iter()
                .enumerate()
                .filter(|(_, s)| s.qos >= 1)
                .filter_map(|(i, _)| done(i)?.lost)
                .sum(),
            failure,
        }
    }
}

/// Where a program is: the explicit path, else beside this executable (same cargo target dir), else
/// on PATH.
pub fn locate(
    explicit: Option<&Path>,
    name: &'static str,
    what: &'static str,
    flag: &'static str,
    package: &'static str,
) -> Result<PathBuf, TuneError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(TuneError::Usage(format!(
                "{flag} {}: no such file",
                p.display()
            )))
        };
    }
    let candidates = std::iter::once(beside.clone()).chain(
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    for dir in candidates {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(TuneError::NotFound {
        what,
        name,
        beside,
        flag,
        package,
    })
}

/// One line describing a scenario, for headers and the snippet.
pub fn describe(s: &Scenario) -> String {
    let who = match s.shape {
        Shape::P2p { pairs } => format!("{pairs} pairs"),
        Shape::Fanin { pubs, subs } => format!("{pubs} pubs -> {subs} sub"),
        Shape::Fanout { pubs, subs } => format!("{pubs} pub -> {subs} subs"),
    };
    let rate = if s.rate == 0 {
        "max rate".to_owned()
    } else {
        format!("{} msg/s per publisher", s.rate)
    };
    format!("{who}, QoS {}, {} B, {rate}", s.qos, s.size)
}

/// CPUs and `--threads` for the load generator alongside candidate `c`: on 4 or more CPUs, when the
/// candidate pins to a subset leaving at least 2 CPUs free, the load generator runs on those free CPUs
/// with one thread each, so it does not compete with the shards it measures. Otherwise (small hosts,
/// unpinned or all-CPU candidates) it keeps its defaults: there is nothing to keep apart.
pub fn loadgen_placement(all: &[usize], c: &Candidate) -> (Option<Vec<usize>>, Option<usize>) {
    let Some(set) = &c.cpu_set else {
        return (None, None);
    };
    let free: Vec<usize> = all.iter().copied().filter(|x| !set.contains(x)).collect();
    if all.len() >= 4 && free.len() >= 2 {
        let n = free.len();
        (Some(free), Some(n))
    } else {
        (None, None)
    }
}

/// The scored table.
/// The columns that name candidate `i` (0-based) in the result table and in `--list`.
fn candidate_cells(i: usize, c: &Candidate) -> Vec<String> {
    vec![
        (i + 1).to_string(),
        c.placement.clone(),
        c.shards.to_string(),
        c.cpu_set
            .as_deref()
            .map_or_else(|| "-".to_owned(), format_cpu_list),
        if c.pinned() { "yes" } else { "no" }.to_owned(),
    ]
}

pub fn render_results(
    scenarios: &[Scenario],
    results: &[CandidateResult],
    verdicts: &[Verdict],
    winner: Option<usize>,
) -> String {
    let mut header: Vec<String> = ["#", "candidate", "shards", "cpu_set", "pinned"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for s in scenarios {
        header.push(format!("{} msg/s", s.name));
        header.push("p99 µs".into());
    }
    header.push("score".into());
    header.push("note".into());
    let rows: Vec<Vec<String>> = results
        .iter()
        .zip(verdicts)
        .enumerate()
        .map(|(i, (r, v))| {
            let c = &r.candidate;
            let mut row = candidate_cells(i, c);
            for run in &r.runs {
                match run {
                    Some(RunOutcome::Done(rep)) => {
                        row.push(thousands(rep.msgs_per_s));
                        row.push(rep.p99_us.map_or_else(|| "-".into(), thousands));
                    }
                    _ => {
                        row.push("-".into());
                        row.push("-".into());
                    }
                }
            }
            row.push(v.score.map_or_else(|| "-".into(), |s| format!("{s:.3}")));
            row.push(if winner == Some(i) {
                "WINNER".into()
            } else if let Some(why) = &v.rejected {
                format!("rejected: {why}")
            } else {
                String::new()
            });
            row
        })
        .collect();
    table::render(&header, &rows)
}

/// Runs the sweep. Returns whether a winner was found (the exit status).
pub fn run(opts: &SweepOptions) -> Result<bool, TuneError> {
    let report = match opts.synthetic {
        Some(_) if !opts.list => {
            return Err(TuneError::Usage("--synthetic only goes with --list".into()))
        }
        Some(_) => None,
        None => Some(HostReport::gather()?),
    };
    let topo = match (opts.synthetic, &report) {
        (Some((n, c, t)), _) => Topology::synthetic(n, c, t),
        (None, Some(r)) => r.topology.clone(),
        (None, None) => {
            unreachable!("a report is gathered whenever no synthetic topology is given")
        }
    };
    let irq_cpus = report
        .as_ref()
        .map(HostReport::nic_irq_cpus)
        .unwrap_or_default();
    let cands = candidates(&topo, &irq_cpus, opts.quick);
    let scenarios = loadgen::standard_set(opts.quick, opts.rate);
    let (warmup, duration) = (opts.warmup(), opts.duration());
    let per_run = warmup + duration + Duration::from_millis(600);
    let estimate =
        (per_run * scenarios.len() as u32 + Duration::from_millis(500)) * cands.len() as u32;

    let host = report.as_ref().map_or_else(
        || format!("synthetic: {}", topo.summary()),
        HostReport::summary,
    );
    println!(
        "shardmq-tune sweep{}",
        if opts.quick { " --quick" } else { "" }
    );
    println!("host: {host}");
    if !irq_cpus.is_empty() {
        println!("NIC interrupts on CPUs {}", format_cpu_list(&irq_cpus));
    }
    println!(
        "{} candidates x {} scenarios{}, {} warmup + {} each; about {} s",
        cands.len(),
        scenarios.len(),
        if opts.repeat > 1 {
            format!(" x {} rounds (best of)", opts.repeat)
        } else {
            String::new()
        },
        loadgen::duration_arg(warmup),
        loadgen::duration_arg(duration),
        estimate.as_secs()
    );
    for s in &scenarios {
        let role = match s.role {
            Role::Throughput => "msg/s scored",
            Role::Latency => "p99 gates",
        };
        println!("  {:<12} {} ({role})", s.name, describe(s));
    }
    if opts.list {
        let header: Vec<String> = ["#", "candidate", "shards", "cpu_set", "pinned"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rows: Vec<Vec<String>> = cands
            .iter()
            .enumerate()
            .map(|(i, c)| candidate_cells(i, c))
            .collect();
        print!("\n{}", table::render(&header, &rows));
        return Ok(true);
    }

    let broker_bin = locate(
        opts.broker.as_deref(),
        "shardmq",
        "broker",
        "--broker",
        "shardmq",
    )?;
    let loadgen_bin = locate(
        opts.loadgen.as_deref(),
        "shardmq-loadgen",
        "load generator",
        "--loadgen",
        "shardmq-loadgen",
    )?;
    let flavor = loadgen::detect_flavor(&loadgen_bin)?;
    println!(
        "broker {}\nloadgen {}{}",
        broker_bin.display(),
        loadgen_bin.display(),
        if flavor == Flavor::Legacy {
            " (legacy --scenario command line)"
        } else {
            ""
        }
    );
    let dir = tempfile::Builder::new()
        .prefix("shardmq-tune.")
        .tempdir()
        .map_err(|source| TuneError::Io {
            what: "creating a temporary directory".into(),
            source,
        })?;

    let started = Instant::now();
    // Rounds go over every candidate in turn (not each candidate N times in a row), so that slow
    // changes in background load hit all candidates alike.
    let mut results: Vec<CandidateResult> = Vec::with_capacity(cands.len());
    for round in 0..usize::from(opts.repeat) {
        for (i, c) in cands.iter().enumerate() {
            eprintln!(
                "[{}/{}{}] {} shards={} cpu_set={}",
                i + 1,
                cands.len(),
                if opts.repeat > 1 {
                    format!(" round {}/{}", round + 1, opts.repeat)
                } else {
                    String::new()
                },
                c.placement,
                c.shards,
                c.cpu_set
                    .as_deref()
                    .map_or_else(|| "-".into(), format_cpu_list)
            );
            // Each round gets its own file names, so that a failed round's log stays readable.
            let index = round * cands.len() + i;
            let result = measure(
                &broker_bin,
                &loadgen_bin,
                flavor,
                c,
                &scenarios,
                &topo,
                opts,
                dir.path(),
                index,
            )?;
            if let Some(why) = &result.failure {
                eprintln!("      failed: {why}");
            }
            match results.get_mut(i) {
                Some(earlier) => earlier.merge(result),
                None => results.push(result),
            }
        }
    }
    let elapsed = started.elapsed();

    let figures: Vec<Figures> = results.iter().map(|r| r.figures(&scenarios)).collect();
    let verdicts = score::score(&figures);
    let winner = score::winner(&figures, &verdicts);
    println!(
        "\n{}",
        render_results(&scenarios, &results, &verdicts, winner)
    );
    println!(
        "score: geometric mean over the msg/s columns of ratio to the best candidate; rejected: a failed \
         run, lost QoS 1 messages, or fixed-rate p99 > {}x the best (+{} µs)",
        score::P99_FACTOR,
        score::P99_SLACK_US
    );
    println!("measured in {:.0} s", elapsed.as_secs_f64());
    let Some(w) = winner else {
        println!("no winner: every candidate was rejected");
        return Ok(false);
    };
    let wc = &results[w].candidate;
    let wscore = verdicts[w].score.unwrap_or(0.0);
    let top = verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| v.rejected.is_none())
        .filter_map(|(i, v)| Some((i, v.score?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let mut winner_line = format!(
        "#{} {}, {} shard{} {}, score {wscore:.3}",
        w + 1,
        wc.placement,
        wc.shards,
        if wc.shards == 1 { "" } else { "s" },
        match &wc.cpu_set {
            Some(set) => format!("pinned to {}", format_cpu_list(set)),
            None => "unpinned".into(),
        }
    );
    if let Some((t, ts)) = top.filter(|&(t, _)| t != w) {
        winner_line.push_str(&format!(
            " (within {:.0}% of #{}'s {ts:.3}: fewer shards, then unpinned, preferred)",
            NOISE * 100.0,
            t + 1
        ));
    }
    println!("winner: {winner_line}");

    if let Some(path) = &opts.write {
        let figures: Vec<String> = scenarios
            .iter()
            .zip(&results[w].runs)
            .filter_map(|(s, run)| match run {
                Some(RunOutcome::Done(r)) => Some(format!(
                    "{} ({}): {} msg/s, p99 {} µs",
                    s.name,
                    describe(s),
                    thousands(r.msgs_per_s),
                    r.p99_us.map_or_else(|| "-".into(), thousands)
                )),
                _ => None,
            })
            .collect();
        let info = SnippetInfo {
            date: snippet::now_utc(),
            host: host.clone(),
            sweep: format!(
                "{}, {} warmup + {} per run, {} candidates, best of {} round{}",
                if opts.quick { "quick" } else { "full" },
                loadgen::duration_arg(warmup),
                loadgen::duration_arg(duration),
                cands.len(),
                opts.repeat,
                if opts.repeat == 1 { "" } else { "s" }
            ),
            winner: winner_line,
            figures,
            shards: wc.shards,
            cpu_set: wc.cpu_set.clone(),
        };
        std::fs::write(path, snippet::render(&info)).map_err(|source| TuneError::Write {
            path: path.clone(),
            source,
        })?;
        check_snippet(&broker_bin, path)?;
        println!("wrote {} (checked with `shardmq -t -c`)", path.display());
    }
    Ok(true)
}

/// Measures one candidate: start its broker, run every scenario, stop it.
#[allow(clippy::too_many_arguments)]
fn measure(
    broker_bin: &Path,
    loadgen_bin: &Path,
    flavor: Flavor,
    c: &Candidate,
    scenarios: &[Scenario],
    topo: &Topology,
    opts: &SweepOptions,
    dir: &Path,
    index: usize,
) -> Result<CandidateResult, TuneError> {
    let mut result = CandidateResult {
        candidate: c.clone(),
        runs: vec![None; scenarios.len()],
        failure: None,
    };
    let mut broker = match Broker::start(broker_bin, c, dir, index) {
        Ok(b) => b,
        Err(_) if crate::process::interrupted() => return Err(TuneError::Interrupted),
        Err(StartError::Fatal(e)) => return Err(e),
        Err(StartError::Candidate(why)) => {
            result.failure = Some(why);
            return Ok(result);
        }
    };
    let (cpus, auto_threads) = loadgen_placement(&topo.cpus, c);
    let target = Target {
        host: "127.0.0.1".into(),
        port: broker.port,
        warmup: opts.warmup(),
        duration: opts.duration(),
        threads: opts.loadgen_threads.or(auto_threads),
    };
    for (i, s) in scenarios.iter().enumerate() {
        if crate::process::interrupted() {
            return Err(TuneError::Interrupted);
        }
        if let Err(why) = broker.check_alive() {
            result.failure = Some(why);
            break;
        }
        let outcome = loadgen::run(loadgen_bin, flavor, s, &target, cpus.as_deref())?;
        result.runs[i] = Some(outcome);
    }
    if result.failure.is_none() {
        if let Err(why) = broker.check_alive() {
            result.failure = Some(why);
        }
    }
    if broker.stop() {
        eprintln!("      broker needed SIGKILL to stop");
    }
    Ok(result)
}

/// Asks the broker whether it accepts the written snippet (`shardmq -t -c FILE`).
fn check_snippet(broker_bin: &Path, path: &Path) -> Result<(), TuneError> {
    let out = run_bounded(
        Command::new(broker_bin).arg("-t").arg("-c").arg(path),
        Duration::from_secs(10),
        "shardmq -t",
    )?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TuneError::SnippetRejected {
            path: path.to_owned(),
            output: tail(&format!("{}\n{}", out.stdout, out.stderr), 3),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::RunReport;

    fn done(msgs: f64, p99: f64, lost: u64) -> Option<RunOutcome> {
        Some(RunOutcome::Done(RunReport {
            msgs_per_s: msgs,
            p99_us: Some(p99),
            lost: Some(lost),
            ok: true,
        }))
    }

    fn cand(shards: usize, cpu_set: Option<Vec<usize>>) -> Candidate {
        Candidate {
            placement: if cpu_set.is_some() {
                "all/cores"
            } else {
                "unpinned"
            }
            .into(),
            shards,
            cpu_set,
        }
    }

    #[test]
    fn figures_pick_the_scored_runs() {
        let scenarios = loadgen::standard_set(true, 1000);
        let r = CandidateResult {
            candidate: cand(2, None),
            runs: vec![
                done(100.0, 10.0, 0),
                done(50.0, 20.0, 1),
                done(10.0, 30.0, 2),
            ],
            failure: None,
        };
        let f = r.figures(&scenarios);
        assert_eq!(f.throughput, vec![Some(100.0), Some(50.0)]);
        assert_eq!(f.p99_us, Some(30.0));
        assert_eq!(f.lost_qos1, 3);
        assert_eq!(f.failure, None);
        let r = CandidateResult {
            runs: vec![
                done(100.0, 10.0, 0),
                Some(RunOutcome::Failed("timed out".into())),
                None,
            ],
            ..r
        };
        let f = r.figures(&scenarios);
        assert_eq!(f.throughput, vec![Some(100.0), None]);
        assert_eq!(f.failure.as_deref(), Some("fanin-q1: timed out"));
    }

    #[test]
    fn repeats_keep_the_best_figures_and_every_failure() {
        let mut a = CandidateResult {
            candidate: cand(1, None),
            runs: vec![
                done(100.0, 50.0, 0),
                done(80.0, 900.0, 1),
                done(10.0, 400.0, 0),
            ],
            failure: None,
        };
        a.merge(CandidateResult {
            candidate: cand(1, None),
            runs: vec![
                done(90.0, 40.0, 0),
                done(95.0, 950.0, 2),
                Some(RunOutcome::Failed("timed out".into())),
            ],
            failure: None,
        });
        assert_eq!(a.runs[0], done(100.0, 40.0, 0));
        assert_eq!(a.runs[1], done(95.0, 900.0, 3));
        assert_eq!(a.runs[2], Some(RunOutcome::Failed("timed out".into())));
        a.merge(CandidateResult {
            candidate: cand(1, None),
            runs: vec![None, None, None],
            failure: Some("broker exited".into()),
        });
        assert_eq!(a.failure.as_deref(), Some("broker exited"));
        assert_eq!(
            a.runs[0],
            done(100.0, 40.0, 0),
            "a run that did not happen changes nothing"
        );
    }

    #[test]
    fn table_marks_winner_and_rejections() {
        let scenarios = loadgen::standard_set(true, 1000);
        let results = vec![
            CandidateResult {
                candidate: cand(1, None),
                runs: vec![
                    done(100.0, 10.0, 0),
                    done(100.0, 10.0, 0),
                    done(1.0, 100.0, 0),
                ],
                failure: None,
            },
            CandidateResult {
                candidate: cand(2, Some(vec![0, 1])),
                runs: vec![None, None, None],
                failure: Some("broker exited".into()),
            },
        ];
        let figures: Vec<Figures> = results.iter().map(|r| r.figures(&scenarios)).collect();
        let verdicts = score::score(&figures);
        let w = score::winner(&figures, &verdicts);
        assert_eq!(w, Some(0));
        let text = render_results(&scenarios, &results, &verdicts, w);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("#  candidate"));
        assert!(lines[0].contains("p2p-q1@1k msg/s"));
        assert!(lines[1].ends_with("1.000  WINNER"), "{}", lines[1]);
        assert!(lines[2].contains("0-1"));
        assert!(
            lines[2].ends_with("rejected: broker exited"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn loadgen_keeps_off_pinned_shards_on_big_hosts() {
        let all: Vec<usize> = (0..8).collect();
        let (cpus, threads) = loadgen_placement(&all, &cand(2, Some(vec![0, 1])));
        assert_eq!(cpus, Some(vec![2, 3, 4, 5, 6, 7]));
        assert_eq!(threads, Some(6));
        assert_eq!(loadgen_placement(&all, &cand(2, None)), (None, None));
        assert_eq!(
            loadgen_placement(&all, &cand(7, Some((0..7).collect()))),
            (None, None),
            "one free CPU is not enough"
        );
        assert_eq!(
            loadgen_placement(&[0, 1], &cand(1, Some(vec![0]))),
            (None, None),
            "2-CPU hosts keep the defaults"
        );
    }

    #[test]
    fn explicit_paths_must_exist() {
        assert!(matches!(
            locate(
                Some(Path::new("/nonexistent/x")),
                "shardmq",
                "broker",
                "--broker",
                "shardmq"
            ),
            Err(TuneError::Usage(_))
        ));
        assert!(
            locate(None, "sh", "shell", "--sh", "sh").is_ok(),
            "found on PATH"
        );
        assert!(matches!(
            locate(None, "no-such-program-xyz", "x", "--x", "x"),
            Err(TuneError::NotFound { .. })
        ));
    }
}
