//! `shardmq-tune`: reads what the host offers a shardmq broker (`probe`) and measures which shard count
//! and CPU placement serve it best (`sweep`). See tuning/README.md.

mod broker;
mod candidates;
mod checks;
mod error;
mod hostfs;
mod io_uring;
mod loadgen;
mod nic;
mod probe;
mod process;
mod score;
mod snippet;
mod sweep;
mod table;
mod topology;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::TuneError;
use crate::probe::HostReport;
use crate::sweep::SweepOptions;

#[derive(Parser, Debug)]
#[command(
    name = "shardmq-tune",
    version,
    about = "Host probe and shard-count/placement sweep for shardmq"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Report CPUs, SMT, NUMA, limits, socket sysctls, io_uring, frequency governor and NIC interrupts,
    /// with a fix for each problem found. Exit status 0 unless the probe itself fails.
    Probe {
        /// Print one JSON object instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Start the broker with each candidate shard count and placement, measure it with the load
    /// generator, print the table and the winner, and optionally write the winner as a config snippet.
    /// Exit status 0 when there is a winner, 1 otherwise.
    Sweep(SweepOptions),
}

/// `2s`, `500ms`, `1m`, `1.5s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with a unit, e.g. 2s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    if !(0.001..=3600.0).contains(&secs) {
        return Err(format!("{text:?}: must be between 1ms and 1h"));
    }
    Ok(Duration::from_millis((secs * 1000.0).round() as u64))
}

/// `2x8x2` → (2, 8, 2), every part at least 1.
fn parse_shape(text: &str) -> Result<(usize, usize, usize), String> {
    let parts: Vec<usize> = text
        .split('x')
        .map(|p| p.parse::<usize>().ok().filter(|&n| (1..=256).contains(&n)))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{text:?}: expected NODESxCORESxTHREADS, e.g. 2x8x2"))?;
    match parts[..] {
        [n, c, t] => Ok((n, c, t)),
        _ => Err(format!(
            "{text:?}: expected NODESxCORESxTHREADS, e.g. 2x8x2"
        )),
    }
}

fn probe(json: bool) -> Result<(), TuneError> {
    let report = HostReport::gather()?;
    let findings = checks::findings(&report);
    if json {
        println!("{}", probe::render_json(&report, &findings));
    } else {
        print!("{}", probe::render_text(&report, &findings));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Probe { json } => probe(json).map(|()| true),
        Cmd::Sweep(opts) => {
            process::install_interrupt_handlers();
            sweep::run(&opts)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(TuneError::Interrupted) => {
            eprintln!("shardmq-tune: interrupted; stopped the broker and load generator");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("shardmq-tune: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::PathBuf;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn shapes() {
        assert_eq!(parse_shape("2x8x2"), Ok((2, 8, 2)));
        assert!(parse_shape("2x8").is_err());
        assert!(parse_shape("0x8x2").is_err());
    }

    #[test]
    fn sweep_flags_parse() {
        let cli = Cli::try_parse_from([
            "shardmq-tune",
            "sweep",
            "--quick",
            "--write",
            "/tmp/x.conf",
            "--duration",
            "3s",
        ])
        .unwrap();
        match cli.command {
            Cmd::Sweep(opts) => {
                assert!(opts.quick);
                assert_eq!(opts.write, Some(PathBuf::from("/tmp/x.conf")));
                assert_eq!(opts.duration, Some(Duration::from_secs(3)));
                assert_eq!(opts.repeat, 1);
            }
            Cmd::Probe { .. } => panic!("parsed as probe"),
        }
        assert!(Cli::try_parse_from(["shardmq-tune", "sweep", "--synthetic", "1x2x1"]).is_err());
    }
}
