//! `$SYS/broker/...` topics, published by shard 0 every `sys_interval` as retained QoS 0 messages with
//! Mosquitto's names. Totals are gathered by mail (`StatsQuery`/`StatsReply`), never by shared memory:
//! [`Sys`] keeps the round and makes the messages; the executor (`executor.rs`) sends the queries and
//! routes the messages.

use std::time::Instant;

use bytes::Bytes;

use crate::codec::{Properties, QoS, Utf8Bytes};
use crate::message::Message;
use crate::stats::ShardStats;

/// The version string, as `mosquitto --version` words it.
pub const VERSION_TEXT: &str = concat!("shardmq version ", env!("CARGO_PKG_VERSION"));

/// One round of gathering counters from every shard.
#[derive(Debug, Default)]
struct SysRound {
    /// Replies still expected.
    waiting: usize,
    total: ShardStats,
    load: Load,
}

/// The counters behind `$SYS/broker/load/<metric>/<window>`, in Mosquitto's order and names.
const LOAD_METRICS: [&str; 9] = [
    "messages/received",
    "messages/sent",
    "publish/dropped",
    "publish/received",
    "publish/sent",
    "bytes/received",
    "bytes/sent",
    "sockets",
    "connections",
];

/// Averaging windows, in seconds.
const LOAD_WINDOWS: [(&str, f64); 3] = [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)];

fn load_counters(t: &ShardStats) -> [u64; 9] {
    [
        t.messages_received,
        t.messages_sent,
        t.messages_dropped,
        t.messages_received,
        t.messages_sent,
        t.bytes_received,
        t.bytes_sent,
        t.sockets_accepted,
        t.connections_total,
    ]
}

/// Mosquitto's `$SYS/broker/load/...` (its `calc_load`): each counter's rate per minute over the last
/// interval, averaged exponentially over 1, 5 and 15 minutes like the kernel's load average. Published
/// all at the first round, then only those that moved by 0.01 or more, as Mosquitto does.
#[derive(Debug, Default)]
struct Load {
    /// Counters and time of the previous round; None before the first.
    last: Option<(Instant, [u64; 9])>,
    /// `averages[metric][window]`.
    averages: [[f64; 3]; 9],
}

impl Load {
    /// The topics and values to publish for this round.
    fn update(&mut self, now: Instant, counters: [u64; 9]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let topic = |m: usize, w: usize| {
            format!("$SYS/broker/load/{}/{}", LOAD_METRICS[m], LOAD_WINDOWS[w].0)
        };
        let Some((then, before)) = self.last.replace((now, counters)) else {
            for m in 0..LOAD_METRICS.len() {
                for w in 0..LOAD_WINDOWS.len() {
                    out.push((topic(m, w), format!("{:.2}", self.averages[m][w])));
                }
            }
            return out;
        };
        let elapsed = now.saturating_duration_since(then).as_secs_f64();
        if elapsed <= 0.0 {
            return out;
        }
        for m in 0..LOAD_METRICS.len() {
            let rate = counters[m].saturating_sub(before[m]) as f64 * 60.0 / elapsed;
            for (w, (_, window)) in LOAD_WINDOWS.iter().enumerate() {
                let decay = (-elapsed / window).exp();
                let current = self.averages[m][w];
                let new = rate + decay * (current - rate);
                if (new - current).abs() >= 0.01 {
                    out.push((topic(m, w), format!("{new:.2}")));
                }
                self.averages[m][w] = new;
            }
        }
        out
    }
}

/// Shard 0's `$SYS` state: when the broker started, when the next round is due, and the round being
/// gathered. One per shard (used on shard 0 only), owned by its [`Shard`](super::Shard) and touched on
/// that shard's thread only: the executor (`executor.rs`) starts rounds on its tick, hands it the other
/// shards' `StatsReply` mail, and routes the messages a finished round makes.
pub(super) struct Sys {
    /// When the broker started (for `$SYS/broker/uptime`).
    started: Instant,
    round: SysRound,
    /// When shard 0 next publishes `$SYS` (None: `sys_interval 0`, or not shard 0).
    next: Option<Instant>,
    /// Cluster mode: the link's figures, published under `$SYS/broker/cluster/`.
    cluster: Option<std::sync::Arc<crate::cluster::figures::ClusterFigures>>,
}

impl Sys {
    pub(super) fn set_cluster(
        &mut self,
        figures: Option<std::sync::Arc<crate::cluster::figures::ClusterFigures>>,
    ) {
        self.cluster = figures;
    }

    pub(super) fn new(started: Instant) -> Sys {
        Sys {
            started,
            round: SysRound::default(),
            next: None,
            cluster: None,
        }
    }

    /// The next round is due at `at`.
    pub(super) fn schedule(&mut self, at: Instant) {
        self.next = Some(at);
    }

    /// Whether a round is due at `now` (never before the first was scheduled).
    pub(super) fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|next| now >= next)
    }

    /// Start a round from this shard's counters, `others` shards still to answer. Returns whether it is
    /// complete already (one shard).
    pub(super) fn begin_round(&mut self, total: ShardStats, others: usize) -> bool {
        // A round still waiting (a shard too busy to answer within an interval) is replaced by this one.
        self.round.total = total;
        self.round.waiting = others;
        self.round.waiting == 0
    }

    /// Another shard's counters for the round; returns whether the round is complete with them.
    pub(super) fn reply(&mut self, s: &ShardStats) -> bool {
        if self.round.waiting == 0 {
            return false;
        }
        // Every shard counts the whole (shared) retained store: counted once.
        let retained = self.round.total.retained_messages;
        self.round.total.add(s);
        self.round.total.retained_messages = retained;
        self.round.waiting -= 1;
        self.round.waiting == 0
    }

    /// The retained QoS 0 messages of a complete round, in publishing order.
    pub(super) fn messages(&mut self, shards: usize) -> Vec<Message> {
        let t = self.round.total;
        let uptime = self.started.elapsed().as_secs();
        let disconnected = t.sessions.saturating_sub(t.clients_connected);
        let topics: [(&'static str, String); 20] = [
            ("$SYS/broker/version", VERSION_TEXT.to_string()),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            (
                "$SYS/broker/clients/connected",
                t.clients_connected.to_string(),
            ),
            (
                "$SYS/broker/clients/active",
                t.clients_connected.to_string(),
            ),
            ("$SYS/broker/clients/total", t.sessions.to_string()),
            ("$SYS/broker/clients/disconnected", disconnected.to_string()),
            ("$SYS/broker/clients/inactive", disconnected.to_string()),
            (
                "$SYS/broker/messages/received",
                t.messages_received.to_string(),
            ),
            ("$SYS/broker/messages/sent", t.messages_sent.to_string()),
            (
                "$SYS/broker/publish/messages/received",
                t.messages_received.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                t.messages_sent.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/dropped",
                t.messages_dropped.to_string(),
            ),
            // Not in Mosquitto 2.0 (which counts expired messages nowhere): shardmq's own, named
            // after its siblings.
            (
                "$SYS/broker/publish/messages/expired",
                t.messages_expired.to_string(),
            ),
            // shardmq's own: messages a subscription got late because its SUBSCRIBE reached the
            // broker first but a shard read it after them (`shard::replay`).
            (
                "$SYS/broker/publish/messages/replayed",
                t.messages_replayed.to_string(),
            ),
            ("$SYS/broker/bytes/received", t.bytes_received.to_string()),
            ("$SYS/broker/bytes/sent", t.bytes_sent.to_string()),
            (
                "$SYS/broker/retained messages/count",
                t.retained_messages.to_string(),
            ),
            (
                "$SYS/broker/subscriptions/count",
                t.subscriptions.to_string(),
            ),
            ("$SYS/broker/shards", shards.to_string()),
            // shardmq's own: connected clients idle for over a second, held without a task
            // (`shard::parking`; memory per idle client).
            ("$SYS/broker/clients/parked", t.clients_parked.to_string()),
        ];
        let load = self.round.load.update(Instant::now(), load_counters(&t));
        let topics = topics
            .into_iter()
            .map(|(topic, value)| (Utf8Bytes::from_static(topic), value))
            .chain(load.into_iter().map(|(t, v)| (Utf8Bytes::from(t), v)))
            .chain(
                self.cluster
                    .iter()
                    .flat_map(|c| c.sys_topics())
                    .map(|(t, v)| (Utf8Bytes::from(t), v)),
            );
        topics
            .map(|(topic, value)| {
                Message::new(
                    topic,
                    Bytes::from(value),
                    QoS::AtMostOnce,
                    true,
                    Properties::default(),
                    None,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn value(out: &[(String, String)], topic: &str) -> Option<f64> {
        out.iter()
            .find(|(t, _)| t == topic)
            .map(|(_, v)| v.parse().expect("a number"))
    }

    #[test]
    fn load_starts_at_zero_for_all_27_topics() {
        let mut load = Load::default();
        let out = load.update(Instant::now(), [5; 9]);
        assert_eq!(out.len(), 27);
        assert!(out.iter().all(|(_, v)| v == "0.00"));
        assert_eq!(out[0].0, "$SYS/broker/load/messages/received/1min");
        assert_eq!(out[26].0, "$SYS/broker/load/connections/15min");
    }

    #[test]
    fn load_is_the_per_minute_rate_averaged_like_mosquitto() {
        let mut load = Load::default();
        let t0 = Instant::now();
        load.update(t0, [0; 9]);
        // 600 messages received in 60 s: 600/min; after one minute the 1-minute average is
        // 600 * (1 - e^-1), the 5-minute one 600 * (1 - e^-0.2), the 15-minute one 600 * (1 - e^-1/15).
        let mut counters = [0; 9];
        counters[0] = 600;
        let out = load.update(t0 + Duration::from_secs(60), counters);
        assert_eq!(
            value(&out, "$SYS/broker/load/messages/received/1min"),
            Some(379.27)
        );
        assert_eq!(
            value(&out, "$SYS/broker/load/messages/received/5min"),
            Some(108.76)
        );
        assert_eq!(
            value(&out, "$SYS/broker/load/messages/received/15min"),
            Some(38.70)
        );
        // Unchanged counters are not republished (the averages did not move by 0.01).
        assert_eq!(value(&out, "$SYS/broker/load/bytes/sent/1min"), None);
        // No traffic for a minute: the averages decay towards 0.
        let out = load.update(t0 + Duration::from_secs(120), counters);
        assert_eq!(
            value(&out, "$SYS/broker/load/messages/received/1min"),
            Some(139.53)
        );
    }
}
