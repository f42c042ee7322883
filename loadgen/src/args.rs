//! The command line: [`Args`] (clap) with the `--help` text on rates and exit statuses, and the value
//! parsers for durations, MQTT versions and `--source-addrs`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shardmq::codec::ProtocolVersion;

use crate::scenario::Scenario;
use crate::tls::TlsSetup;

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
pub(crate) struct Args {
    /// What to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Broker host names or addresses; several (comma-separated or repeated) spread the clients.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub host: Vec<String>,
    /// Broker ports; several (comma-separated or repeated) spread the clients round robin.
    #[arg(long, value_delimiter = ',', default_value = "1883")]
    pub port: Vec<u16>,
    /// QoS of the publications and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 16: publisher id, sequence, timestamp).
    #[arg(long, alias = "payload", default_value_t = 16)]
    pub size: usize,
    /// Publish with RETAIN 1: the broker stores every message (the retained store's cost per
    /// publish; subscribers still get them live).
    #[arg(long)]
    pub retain: bool,
    /// Messages per second per publisher; 0 = as fast as the broker sustains (see below).
    /// Default: 0, except `conn` (100).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Length of the measure window (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Publishing before the measure window (not in latency or throughput).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Longest wait after publishing stops for outstanding deliveries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Publishers [fanin, shared: default 10; fanout: 1].
    #[arg(long, alias = "publishers")]
    pub pubs: Option<usize>,
    /// Subscribers [fanin: default 1; fanout: 10; shared: 4 group members].
    #[arg(long, alias = "subscribers")]
    pub subs: Option<usize>,
    /// Publisher→subscriber pairs [p2p: default 10].
    #[arg(long)]
    pub pairs: Option<usize>,
    /// Retained topics seeded before a `retained` run.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub topics: u64,
    /// Idle connections held open [conn: default 1000; other scenarios: 0].
    #[arg(long, alias = "idle-connections")]
    pub connections: Option<usize>,
    /// MQTT version: 3.1, 3.1.1 or 5.
    #[arg(long, alias = "mqtt", default_value = "3.1.1", value_parser = parse_version)]
    pub protocol: ProtocolVersion,
    /// Local source addresses, round robin over all connections: a range 127.0.0.1-127.0.0.16 and/or a
    /// comma list. Lifts the ~28k connections per source address of the ephemeral port range.
    #[arg(long, alias = "source-ips", value_parser = parse_source_addrs)]
    pub source_addrs: Option<SourceAddrs>,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=65_534))]
    pub inflight: u16,
    /// Max rate: messages a publisher may be ahead of its subscribers' receipts (end to end).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
    /// Worker threads, one single-threaded event loop each, connections spread round robin
    /// (default: number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Handshakes in progress at once during setup.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Per-client limit for TCP connect + CONNACK (+ SUBACK).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Limit for the whole setup (all clients connected and subscribed).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub setup_timeout: Duration,
    /// MQTT keep alive in seconds (PINGREQ after half of it without writing); 0 = off.
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// Subscribers keep their sessions (3.x clean session 0; 5.0 Session Expiry Interval 300 s): what a
    /// broker with persistence writes to disk for each message they are owed.
    #[arg(long)]
    pub persistent: bool,
    /// Client id prefix (default: lg-<pid>).
    #[arg(long)]
    pub client_id_prefix: Option<String>,
    /// Write the latency histogram to FILE in HdrHistogram's percentile-distribution format (values in
    /// µs), and an SVG plot of the percentile curve to FILE.svg.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Also run the scenario against this broker, alternately (A B A B), and print both side by side.
    /// Repeatable (or a comma list) to compare several brokers at once: A B C A B C ...
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    pub compare: Vec<String>,
    /// Rounds per broker with --compare.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Print one JSON object on the last stdout line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// TLS for every client (also the --compare brokers): trust the CA certificate(s) of this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to the brokers; needs --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name the brokers' certificates must be valid for (default: the host given, e.g. the IP address
    /// 127.0.0.1).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// Loaded from the --tls-* files at start.
    #[arg(skip)]
    pub tls: Option<Arc<TlsSetup>>,
}

/// `--source-addrs`: the local addresses to bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SourceAddrs(pub Vec<IpAddr>);

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

pub(crate) fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5",
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
