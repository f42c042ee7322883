//! `$SYS` broker statistics, as Mosquitto publishes them.
//!
//! What is checked (Mosquitto 2.0's `$SYS` tree, mosquitto(8) "BROKER STATUS"; MQTT leaves `$` topics to
//! the server, [MQTT-4.7.2-1] keeps them away from `#` and `+` subscribers):
//! - `$SYS/broker/version` is published (a "NAME version X.Y.Z" string).
//! - `$SYS/broker/uptime` ("N seconds") is published every `sys_interval` seconds and grows.
//! - `$SYS/broker/clients/connected` counts connected clients of every shard.
//! - `$SYS/broker/messages/received` and `$SYS/broker/messages/sent` are integers that count the
//!   traffic of every shard.
//! - `$SYS/broker/load/<counter>/{1min,5min,15min}` are numbers with two decimals ("0.00" at first) that
//!   rise above zero with traffic (Mosquitto's per-minute rates averaged over 1, 5 and 15 minutes).
//!
//! Run for 3.1.1 and 5.0 subscribers, with 1 and 4 shards, `sys_interval 1`.

mod common;

use common::client::{Client, Msg};
use common::{for_each_case_async, unique_id, BOTH};
use std::time::{Duration, Instant};

const SYS_CONFIG: &str = "sys_interval 1\n";

/// Receives messages until `pred` holds for one of them, within `limit`; returns it with its arrival
/// time.
async fn wait_for(
    c: &mut Client,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Msg) -> bool,
) -> (Msg, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv_within(left).await {
            Some(m) if pred(&m) => return (m, Instant::now()),
            Some(_) => {}
            None => panic!("no {what} within {limit:?}"),
        }
    }
}

fn number(m: &Msg) -> u64 {
    m.text()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} is not an integer: {:?}", m.topic, m.text()))
}

#[test]
fn version_and_uptime_are_published_every_interval() {
    for_each_case_async(BOTH, SYS_CONFIG, |case| async move {
        let mut sys = Client::connect(&case, &unique_id("sys")).await;
        assert_eq!(sys.subscribe("$SYS/broker/version", 0).await, 0);
        assert_eq!(sys.subscribe("$SYS/broker/uptime", 0).await, 0);

        let limit = Duration::from_secs(3);
        let (v, _) = wait_for(&mut sys, limit, "$SYS/broker/version", |m| {
            m.topic == "$SYS/broker/version"
        })
        .await;
        assert!(
            v.text().contains("version"),
            "version string: {:?}",
            v.text()
        );

        let uptime = |m: &Msg| -> u64 {
            let t = m.text();
            let secs = t
                .strip_suffix(" seconds")
                .unwrap_or_else(|| panic!("uptime is \"N seconds\": {t:?}"));
            secs.parse()
                .unwrap_or_else(|_| panic!("uptime is \"N seconds\": {t:?}"))
        };
        let is_uptime = |m: &Msg| m.topic == "$SYS/broker/uptime";
        let (u1, t1) = wait_for(&mut sys, limit, "uptime", is_uptime).await;
        let (u2, t2) = wait_for(&mut sys, limit, "a second uptime", is_uptime).await;
        let (u3, t3) = wait_for(&mut sys, limit, "a third uptime", is_uptime).await;
        let (a, b, c) = (uptime(&u1), uptime(&u2), uptime(&u3));
        assert!(a <= b && b <= c && a < c, "uptime must grow: {a}, {b}, {c}");
        // Periodic, roughly every sys_interval. The upper bound tolerates Mosquitto's own behaviour (its
        // `now - interval > last` test turns 1 s into 2 s) plus scheduling noise on a loaded CI box.
        for gap in [t2 - t1, t3 - t2] {
            assert!(
                gap >= Duration::from_millis(500) && gap <= Duration::from_millis(2500),
                "uptime published every sys_interval (1 s), gap was {gap:?}"
            );
        }
    });
}

#[test]
fn connected_clients_are_counted_across_shards() {
    for_each_case_async(BOTH, SYS_CONFIG, |case| async move {
        let mut sys = Client::connect(&case, &unique_id("sys")).await;
        // Eight more clients: with 4 shards their homes spread over the shards.
        let mut others = Vec::new();
        for i in 0..8 {
            others.push(Client::connect(&case, &unique_id(&format!("c{i}"))).await);
        }
        assert_eq!(sys.subscribe("$SYS/broker/clients/connected", 0).await, 0);
        let (m, _) = wait_for(
            &mut sys,
            Duration::from_secs(4),
            "clients/connected >= 9",
            |m| m.topic == "$SYS/broker/clients/connected" && number(m) >= 9,
        )
        .await;
        assert!(number(&m) >= 9);

        // After six disconnect, the count drops to at most 3 (ours, two others, none from elsewhere).
        for c in others.drain(..6) {
            c.disconnect().await;
        }
        wait_for(
            &mut sys,
            Duration::from_secs(4),
            "clients/connected == 3",
            |m| m.topic == "$SYS/broker/clients/connected" && number(m) == 3,
        )
        .await;
    });
}

#[test]
fn message_counters_cover_every_shard() {
    for_each_case_async(BOTH, SYS_CONFIG, |case| async move {
        let mut sys = Client::connect(&case, &unique_id("sys")).await;
        assert_eq!(sys.subscribe("$SYS/broker/messages/received", 0).await, 0);
        assert_eq!(sys.subscribe("$SYS/broker/messages/sent", 0).await, 0);
        let limit = Duration::from_secs(3);
        let (r0, _) = wait_for(&mut sys, limit, "messages/received", |m| {
            m.topic == "$SYS/broker/messages/received"
        })
        .await;
        let (s0, _) = wait_for(&mut sys, limit, "messages/sent", |m| {
            m.topic == "$SYS/broker/messages/sent"
        })
        .await;
        let (r0, s0) = (number(&r0), number(&s0));

        // 8 publishers x 5 QoS 1 messages, to a subscriber that gets all 40.
        let mut sub = Client::connect(&case, &unique_id("sub")).await;
        assert_eq!(sub.subscribe("cnt/#", 1).await, 1);
        for i in 0..8 {
            let mut p = Client::connect(&case, &unique_id(&format!("p{i}"))).await;
            for j in 0..5 {
                p.publish(&format!("cnt/{i}"), 1, false, format!("{j}"))
                    .await;
            }
        }
        assert_eq!(sub.recv_n(40).await.len(), 40);

        // Counters count packets (Mosquitto's definition), so at least one per message each way.
        wait_for(
            &mut sys,
            Duration::from_secs(4),
            "messages/received += 40",
            |m| m.topic == "$SYS/broker/messages/received" && number(m) >= r0 + 40,
        )
        .await;
        wait_for(
            &mut sys,
            Duration::from_secs(4),
            "messages/sent += 40",
            |m| m.topic == "$SYS/broker/messages/sent" && number(m) >= s0 + 40,
        )
        .await;
    });
}

#[test]
fn load_averages_are_published_and_follow_the_traffic() {
    for_each_case_async(BOTH, SYS_CONFIG, |case| async move {
        let mut sys = Client::connect(&case, &unique_id("sys")).await;
        assert_eq!(sys.subscribe("$SYS/broker/load/#", 0).await, 0);
        let topic = "$SYS/broker/load/messages/received/1min";
        let load = |m: &Msg| -> f64 {
            m.text()
                .parse()
                .unwrap_or_else(|_| panic!("{} is not a number: {:?}", m.topic, m.text()))
        };
        // Every load topic is a number with two decimals, as Mosquitto formats it.
        let (m, _) = wait_for(&mut sys, Duration::from_secs(3), topic, |m| {
            m.topic == topic
        })
        .await;
        assert!(load(&m) >= 0.0 && m.text().split('.').nth(1).map(str::len) == Some(2));
        // Traffic makes the per-minute rate, and so the 1-minute average, rise above zero.
        let mut p = Client::connect(&case, &unique_id("p")).await;
        for i in 0..20 {
            p.publish("load/t", 1, false, format!("{i}")).await;
        }
        wait_for(
            &mut sys,
            Duration::from_secs(5),
            "a 1min load above 0",
            |m| m.topic == topic && load(m) > 0.0,
        )
        .await;
        wait_for(
            &mut sys,
            Duration::from_secs(5),
            "a connections load above 0",
            |m| m.topic == "$SYS/broker/load/connections/1min" && load(m) > 0.0,
        )
        .await;
    });
}
