//! The end-of-run report: a human-readable table or one JSON object.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// From a histogram of nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return LatencySummary {
                count: 0,
                mean_us: 0.0,
                p50_us: 0.0,
                p90_us: 0.0,
                p99_us: 0.0,
                p999_us: 0.0,
                max_us: 0.0,
            };
        }
        LatencySummary {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }

    fn json(&self) -> Value {
        if self.count == 0 {
            // No sample: percentiles are unknown, not zero.
            return json!({
                "count": 0, "mean": null, "p50": null, "p90": null, "p99": null, "p999": null,
                "max": null,
            });
        }
        let r = |v: f64| (v * 10.0).round() / 10.0;
        json!({
            "count": self.count,
            "mean": r(self.mean_us),
            "p50": r(self.p50_us),
            "p90": r(self.p90_us),
            "p99": r(self.p99_us),
            "p999": r(self.p999_us),
            "max": r(self.max_us),
        })
    }
}

pub struct Report {
    pub scenario: String,
    pub mqtt: String,
    pub qos: u8,
    pub payload: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub idle_connections: usize,
    pub rate: u64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub threads: usize,
    /// Whether the clients connected over TLS (`--tls-ca`): connects then include the handshake.
    pub tls: bool,
    pub sent: u64,
    pub sent_window: u64,
    pub acked: u64,
    pub rejected: u64,
    pub unacked: u64,
    pub received: u64,
    pub received_unique: u64,
    pub received_window: u64,
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub out_of_order_streams: u64,
    pub unexpected: u64,
    pub drain_s: f64,
    pub latency: LatencySummary,
    pub connect_clients: usize,
    pub connect_total_ms: f64,
    pub connect: LatencySummary,
    pub connection_errors: u64,
    pub errors: Vec<String>,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.received_window as f64 / self.duration_s.max(1e-9)
    }

    pub fn send_rate(&self) -> f64 {
        self.sent_window as f64 / self.duration_s.max(1e-9)
    }

    pub fn loss_pct(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.expected as f64
        }
    }

    /// Clients connected (and subscribed) per second during setup.
    pub fn connect_per_s(&self) -> f64 {
        self.connect_clients as f64 / (self.connect_total_ms / 1000.0).max(1e-9)
    }

    pub fn json(&self) -> Value {
        let r1 = |v: f64| (v * 10.0).round() / 10.0;
        // Percentiles are null, not zero, when nothing was measured.
        let pct = |v: f64| {
            if self.latency.count == 0 {
                Value::Null
            } else {
                json!(r1(v))
            }
        };
        json!({
            "ok": self.connection_errors == 0,
            "msgs_per_s": r1(self.throughput()),
            "dup": self.duplicates,
            "p50_us": pct(self.latency.p50_us),
            "p99_us": pct(self.latency.p99_us),
            "p999_us": pct(self.latency.p999_us),
            "max_us": pct(self.latency.max_us),
            "connect_per_s": r1(self.connect_per_s()),
            "tls": self.tls,
            "scenario": self.scenario,
            "mqtt": self.mqtt,
            "qos": self.qos,
            "payload": self.payload,
            "publishers": self.publishers,
            "subscribers": self.subscribers,
            "idle_connections": self.idle_connections,
            "rate": self.rate,
            "warmup_s": self.warmup_s,
            "duration_s": self.duration_s,
            "threads": self.threads,
            "sent": self.sent,
            "sent_window": self.sent_window,
            "acked": self.acked,
            "rejected": self.rejected,
            "unacked": self.unacked,
            "received": self.received,
            "received_unique": self.received_unique,
            "received_window": self.received_window,
            "expected": self.expected,
            "lost": self.lost,
            "loss_pct": (self.loss_pct() * 1000.0).round() / 1000.0,
            "loss_is_info": self.qos == 0,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "out_of_order_streams": self.out_of_order_streams,
            "unexpected": self.unexpected,
            "throughput": r1(self.throughput()),
            "send_rate": r1(self.send_rate()),
            "drain_s": (self.drain_s * 1000.0).round() / 1000.0,
            "latency_us": self.latency.json(),
            "connect": {
                "clients": self.connect_clients,
                "total_ms": r1(self.connect_total_ms),
                "per_client_us": self.connect.json(),
            },
            "connection_errors": self.connection_errors,
            "errors": self.errors,
        })
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let rate = if self.rate == 0 {
            "max".to_string()
        } else {
            format!("{} msg/s per publisher", self.rate)
        };
        out += &format!(
            "shardmq-loadgen: {}{} | MQTT {} | QoS {} | payload {} B | {} publishers, {} subscribers, {} idle | rate {} | warmup {}s, measure {}s | {} threads\n",
            self.scenario,
            if self.tls { " over TLS" } else { "" },
            self.mqtt,
            self.qos,
            self.payload,
            self.publishers,
            self.subscribers,
            self.idle_connections,
            rate,
            self.warmup_s,
            self.duration_s,
            self.threads
        );
        let mut row = |k: &str, v: String| out += &format!("  {k:<16} {v}\n");
        row(
            "connect",
            format!(
                "{} clients in {:.1} ms, {}/s{} (per client: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs)",
                self.connect_clients,
                self.connect_total_ms,
                group(self.connect_per_s().round() as u64),
                if self.tls {
                    " TLS handshakes + CONNECT"
                } else {
                    ""
                },
                self.connect.p50_us,
                self.connect.p99_us,
                self.connect.max_us
            ),
        );
        row(
            "sent",
            format!(
                "{} ({} in the window, {} msg/s)",
                group(self.sent),
                group(self.sent_window),
                group(self.send_rate().round() as u64)
            ),
        );
        if self.qos > 0 {
            row(
                "acknowledged",
                format!(
                    "{} (rejected {}, unacknowledged at the end {})",
                    group(self.acked),
                    group(self.rejected),
                    group(self.unacked)
                ),
            );
        }
        row("expected", group(self.expected));
        row(
            "received",
            format!(
                "{} ({} unique, drain {:.2} s)",
                group(self.received),
                group(self.received_unique),
                self.drain_s
            ),
        );
        row(
            "lost",
            format!(
                "{} ({:.3}%){}",
                group(self.lost),
                self.loss_pct(),
                if self.qos == 0 {
                    " [info: QoS 0 may drop]"
                } else {
                    ""
                }
            ),
        );
        row("duplicates", group(self.duplicates));
        row(
            "out of order",
            format!(
                "{} (in {} publisher→subscriber streams)",
                group(self.out_of_order),
                self.out_of_order_streams
            ),
        );
        if self.unexpected > 0 {
            row("unexpected", group(self.unexpected));
        }
        row(
            "throughput",
            format!(
                "{} msg/s received in the measure window",
                group(self.throughput().round() as u64)
            ),
        );
        if self.latency.count == 0 {
            row(
                "latency µs",
                "no samples (nothing sent during the window was delivered by the end)".into(),
            );
        } else {
            row(
                "latency µs",
                format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1}, {} samples)",
                self.latency.p50_us,
                self.latency.p90_us,
                self.latency.p99_us,
                self.latency.p999_us,
                self.latency.max_us,
                self.latency.mean_us,
                group(self.latency.count)
            ),
            );
        }
        row("conn errors", self.connection_errors.to_string());
        for e in &self.errors {
            out += &format!("    {e}\n");
        }
        out
    }
}

/// 1234567 → "1,234,567".
pub fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
