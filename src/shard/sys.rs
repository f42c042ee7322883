//! `$SYS/broker/...` topics, published by shard 0 every `sys_interval` as retained QoS 0 messages with
//! Mosquitto's names. Totals are gathered by mail (`StatsQuery`/`StatsReply`), never by shared memory.

use std::time::Instant;

use bytes::Bytes;

use super::Shard;
use crate::codec::{Properties, QoS, Utf8Bytes};
use crate::message::Message;
use crate::router::Mail;
use crate::stats::ShardStats;

/// The version string, as `mosquitto --version` words it.
pub const VERSION_TEXT: &str = concat!("shardmq version ", env!("CARGO_PKG_VERSION"));

/// One round of gathering counters from every shard.
#[derive(Debug, Default)]
pub(super) struct SysRound {
    /// Replies still expected.
    waiting: usize,
    total: ShardStats,
}

impl Shard {
    /// First `$SYS` round at start-up, then one every `sys_interval` (on the tick that follows it).
    pub(super) fn start_sys(&mut self) {
        if let Some(interval) = self.settings.sys_interval {
            self.start_sys_round();
            self.sys_next = Some(Instant::now() + interval);
        }
    }

    /// Called on every tick: publish `$SYS` when due.
    pub(super) fn sys_tick(&mut self, now: Instant) {
        let (Some(next), Some(interval)) = (self.sys_next, self.settings.sys_interval) else {
            return;
        };
        if now >= next {
            self.start_sys_round();
            // From now, not from `next`: a shard that was too busy to tick does not publish in a burst.
            self.sys_next = Some(now + interval);
        }
    }

    fn start_sys_round(&mut self) {
        // A round still waiting (a shard too busy to answer within an interval) is replaced by this one.
        self.sys.total = self.snapshot_stats();
        self.sys.waiting = self.shards - 1;
        if self.sys.waiting == 0 {
            self.publish_sys();
            return;
        }
        let reply_to = self.id;
        self.broadcast(|| Mail::StatsQuery { reply_to });
    }

    pub(super) fn sys_reply(&mut self, s: &ShardStats) {
        if self.sys.waiting == 0 {
            return;
        }
        // Every shard holds the whole retained set: count it once.
        let retained = self.sys.total.retained_messages;
        self.sys.total.add(s);
        self.sys.total.retained_messages = retained;
        self.sys.waiting -= 1;
        if self.sys.waiting == 0 {
            self.publish_sys();
        }
    }

    fn publish_sys(&mut self) {
        let t = self.sys.total;
        let uptime = self.started.elapsed().as_secs();
        let disconnected = t.sessions.saturating_sub(t.clients_connected);
        let topics: [(&'static str, String); 17] = [
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
            ("$SYS/broker/shards", self.shards.to_string()),
        ];
        for (topic, value) in topics {
            self.route(Message {
                topic: Utf8Bytes::from_static(topic),
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Properties::default(),
                origin: None,
            });
        }
    }
}
