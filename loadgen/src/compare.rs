//! `--compare HOST:PORT[,HOST:PORT...]`: the same scenario against several brokers, alternately (A B A B
//! ..., or A B C A B C ...), each run started only once every broker answers PINGREQ promptly again, then
//! a side-by-side table of medians with A/B (A/C, ...) ratios, A being the broker of `--host`/`--port`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::args::Args;
use crate::conn::Target;
use crate::report::Report;
use crate::run::{resolve_all, run_once};
use crate::scenario::Plan;
use crate::setup_failed;
use crate::tls::TlsSetup;
use crate::workers::Workers;

/// A broker is idle when this many PINGREQ round trips in a row take less than [`IDLE_RTT`].
const IDLE_PINGS: u32 = 3;
const IDLE_RTT: Duration = Duration::from_millis(2);
/// Longest wait for a broker to become idle; after it the run starts anyway (and says so).
const IDLE_WAIT: Duration = Duration::from_secs(15);
/// Pause after a run so the broker can close the run's connections before the idle check.
const SETTLE: Duration = Duration::from_millis(500);

/// The letter naming broker `i` in the table and the JSON: A, B, C, ...
fn letter(i: usize) -> String {
    char::from(b'A' + (i % 26) as u8).to_string()
}

pub async fn run(args: &Args, plan: &Plan, workers: &Workers, others: &[String]) -> ExitCode {
    let mut brokers = Vec::with_capacity(others.len() + 1);
    match resolve_all(&args.host, &args.port).await {
        Ok(t) => brokers.push(t),
        Err(e) => return setup_failed(args.json, &e),
    }
    for other in others {
        match split_host_port(other) {
            Ok((host, port)) => match resolve_all(&[host], &[port]).await {
                Ok(t) => brokers.push(t),
                Err(e) => return setup_failed(args.json, &e),
            },
            Err(e) => return setup_failed(args.json, &e),
        }
    }
    let names: Vec<String> = brokers.iter().map(|b| describe(b)).collect();
    let mut reports: Vec<Vec<Report>> = brokers.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.rounds {
        for (i, targets) in brokers.iter().enumerate() {
            for t in brokers.iter().flatten() {
                if !wait_idle(t, args.tls.as_deref()).await {
                    eprintln!(
                        "shardmq-loadgen: {t} still slow to answer PINGREQ after {IDLE_WAIT:?}; running anyway"
                    );
                }
            }
            eprintln!(
                "shardmq-loadgen: round {round}/{}: {} ({})",
                args.rounds,
                letter(i),
                names[i]
            );
            match run_once(args, plan, workers, targets).await {
                Ok(o) => reports[i].push(o.report),
                Err(e) => return setup_failed(args.json, &format!("{}: {e}", names[i])),
            }
            tokio::time::sleep(SETTLE).await;
        }
    }
    let rows = rows(&reports);
    if args.json {
        let side = |i: usize| {
            json!({
                "broker": names[i],
                "median": rows.iter().map(|r| (r.key.to_string(), json_num(r.values[i]))).collect::<serde_json::Map<_, _>>(),
                "runs": reports[i].iter().map(Report::json).collect::<Vec<_>>(),
            })
        };
        let ratio = |i: usize| -> serde_json::Map<String, Value> {
            rows.iter()
                .map(|r| (r.key.to_string(), json_num(r.ratio(i))))
                .collect()
        };
        let mut out = json!({
            "compare": true,
            "rounds": args.rounds,
            "a": side(0),
            "b": side(1),
            "ratio_a_over_b": ratio(1),
            "brokers": (0..brokers.len()).map(side).collect::<Vec<_>>(),
        });
        for i in 2..brokers.len() {
            let l = letter(i).to_lowercase();
            out[l.as_str()] = side(i);
            out[format!("ratio_a_over_{l}").as_str()] = Value::Object(ratio(i));
        }
        println!("{out}");
    } else {
        print!("{}", table(&names, &rows, &reports[0][0], args.rounds));
    }
    let errors: u64 = reports.iter().flatten().map(|r| r.connection_errors).sum();
    if errors > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

/// One compared metric: medians over the rounds, one per broker (A first).
struct Row {
    key: &'static str,
    label: &'static str,
    values: Vec<Option<f64>>,
    /// Whether a higher value is better (for the "better" column).
    higher_is_better: bool,
}

impl Row {
    /// A's median over broker `i`'s.
    fn ratio(&self, i: usize) -> Option<f64> {
        match (self.values[0], self.values.get(i).copied().flatten()) {
            (Some(a), Some(b)) if b != 0.0 => Some(a / b),
            _ => None,
        }
    }

    /// The letter of the broker with the best median ("same" when all are equal).
    fn best(&self) -> String {
        let known: Vec<(usize, f64)> = self
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .collect();
        if known.len() < 2 {
            return String::new();
        }
        if known.iter().all(|&(_, v)| v == known[0].1) {
            return "same".into();
        }
        let pick = |a: &(usize, f64), b: &(usize, f64)| {
            if self.higher_is_better {
                a.1.total_cmp(&b.1)
            } else {
                b.1.total_cmp(&a.1)
            }
        };
        known
            .iter()
            .max_by(|a, b| pick(a, b))
            .map(|&(i, _)| letter(i))
            .unwrap_or_default()
    }
}

fn rows(reports: &[Vec<Report>]) -> Vec<Row> {
    type Get = fn(&Report) -> Option<f64>;
    let metrics: [(&str, &str, bool, Get); 10] = [
        ("msgs_per_s", "msg/s received", true, |r| {
            Some(r.throughput())
        }),
        ("p50_us", "p50 µs", false, |r| lat(r, r.latency.p50_us)),
        ("p99_us", "p99 µs", false, |r| lat(r, r.latency.p99_us)),
        ("p999_us", "p99.9 µs", false, |r| lat(r, r.latency.p999_us)),
        ("max_us", "max µs", false, |r| lat(r, r.latency.max_us)),
        ("lost", "lost", false, |r| Some(r.lost as f64)),
        ("dup", "duplicates", false, |r| Some(r.duplicates as f64)),
        ("out_of_order", "out of order", false, |r| {
            Some(r.out_of_order as f64)
        }),
        ("connect_per_s", "connects/s", true, |r| {
            Some(r.connect_per_s())
        }),
        ("sent", "sent", true, |r| Some(r.sent as f64)),
    ];
    metrics
        .iter()
        .map(|&(key, label, higher_is_better, get)| Row {
            key,
            label,
            values: reports
                .iter()
                .map(|runs| median(runs.iter().filter_map(get).collect()))
                .collect(),
            higher_is_better,
        })
        .collect()
}

fn lat(r: &Report, v: f64) -> Option<f64> {
    (r.latency.count > 0).then_some(v)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn json_num(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0))
}

fn table(names: &[String], rows: &[Row], first: &Report, rounds: u32) -> String {
    let mut out = format!(
        "shardmq-loadgen --compare: {}{} | MQTT {} | QoS {} | {} B | {} publishers, {} subscribers, {} idle | rate {} | {} s per run, {rounds} round(s) each, medians\n",
        first.scenario,
        if first.tls { " over TLS" } else { "" },
        first.mqtt,
        first.qos,
        first.payload,
        first.publishers,
        first.subscribers,
        first.idle_connections,
        if first.rate == 0 { "max".to_string() } else { format!("{}/s per publisher", first.rate) },
        first.duration_s
    );
    for (i, name) in names.iter().enumerate() {
        out += &format!("  {} = {name}\n", letter(i));
    }
    out += &format!("  {:<16}", "metric");
    for i in 0..names.len() {
        out += &format!(" {:>14}", letter(i));
    }
    for i in 1..names.len() {
        out += &format!(" {:>9}", format!("A/{}", letter(i)));
    }
    out += "  better\n";
    for r in rows {
        let cell = |v: Option<f64>| v.map_or("-".to_string(), fmt_value);
        out += &format!("  {:<16}", r.label);
        for v in &r.values {
            out += &format!(" {:>14}", cell(*v));
        }
        for i in 1..names.len() {
            let ratio = r.ratio(i).map_or("-".to_string(), |x| format!("{x:.2}"));
            out += &format!(" {ratio:>9}");
        }
        out += &format!("  {}\n", r.best());
    }
    out
}

fn fmt_value(v: f64) -> String {
    if v >= 1000.0 || v == v.round() {
        crate::report::group(v.round() as u64)
    } else {
        format!("{v:.1}")
    }
}

fn describe(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("--compare wants HOST:PORT, got {s:?}"))?;
    let port = port
        .parse()
        .map_err(|_| format!("--compare: bad port in {s:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("--compare: no host in {s:?}"));
    }
    Ok((host.to_string(), port))
}

/// Waits until `target` answers [`IDLE_PINGS`] PINGREQs in a row within [`IDLE_RTT`] each; false if
/// that did not happen within [`IDLE_WAIT`] (or the broker could not be reached). Over TLS when the run
/// is.
async fn wait_idle(target: &Target, tls: Option<&TlsSetup>) -> bool {
    tokio::time::timeout(IDLE_WAIT, async {
        loop {
            let result = async {
                let s = TcpStream::connect(target.addr).await?;
                s.set_nodelay(true)?;
                match tls {
                    None => ping_until_fast(s).await,
                    Some(tls) => {
                        let s = crate::tls::connect(tls, &target.host, s)
                            .await
                            .map_err(std::io::Error::other)?;
                        ping_until_fast(s).await
                    }
                }
            };
            match result.await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// One MQTT 3.1.1 connection that pings until the round trips are fast (true) or 50 pings were not.
async fn ping_until_fast<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<bool> {
    let id = format!("lg-{}-idle-probe", std::process::id());
    let mut connect = vec![0x10, 0];
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30]);
    connect.extend_from_slice(&(id.len() as u16).to_be_bytes());
    connect.extend_from_slice(id.as_bytes());
    connect[1] = (connect.len() - 2) as u8;
    s.write_all(&connect).await?;
    s.flush().await?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(std::io::Error::other("CONNACK refused"));
    }
    let mut fast = 0;
    for _ in 0..50 {
        let t = Instant::now();
        s.write_all(&[0xC0, 0]).await?;
        s.flush().await?;
        let mut resp = [0u8; 2];
        s.read_exact(&mut resp).await?;
        if resp != [0xD0, 0] {
            return Err(std::io::Error::other("not a PINGRESP"));
        }
        if t.elapsed() < IDLE_RTT {
            fast += 1;
            if fast >= IDLE_PINGS {
                let _ = s.write_all(&[0xE0, 0]).await;
                let _ = s.shutdown().await;
                return Ok(true);
            }
        } else {
            fast = 0;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = s.write_all(&[0xE0, 0]).await;
    let _ = s.shutdown().await;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0]), Some(3.0));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            split_host_port("127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        assert_eq!(split_host_port("[::1]:1883").unwrap(), ("::1".into(), 1883));
        assert!(split_host_port("localhost").is_err());
        assert!(split_host_port(":1883").is_err());
        assert!(split_host_port("h:x").is_err());
    }

    #[test]
    fn ratio_and_better() {
        let r = Row {
            key: "p99_us",
            label: "p99 µs",
            values: vec![Some(100.0), Some(200.0), Some(50.0)],
            higher_is_better: false,
        };
        assert_eq!(r.ratio(1), Some(0.5));
        assert_eq!(r.ratio(2), Some(2.0));
        assert_eq!(r.best(), "C", "lowest p99 wins");
        let t = Row {
            key: "msgs_per_s",
            label: "msg/s",
            values: vec![Some(3.0), None, Some(2.0)],
            higher_is_better: true,
        };
        assert_eq!(t.ratio(1), None);
        assert_eq!(t.best(), "A");
        let same = Row {
            values: vec![Some(1.0), Some(1.0)],
            ..t
        };
        assert_eq!(same.best(), "same");
    }
}
