//! Shared subscriptions across the nodes of a cluster (a real 3-server NATS cluster with JetStream,
//! `tests/cluster/nats.sh`; rumqttc clients): a `$share` group with members on three nodes gets each
//! message once in the whole cluster, at QoS 0 and 1, whichever node it is published on; a plain
//! subscription beside it still gets every message; a member that leaves gets no more.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::client::Client;
use common::cluster::{node_config, Nats};

fn case(broker: &common::TestBroker) -> common::Case {
    common::Case {
        addr: broker.addr(),
        shards: broker.shards(),
        proto: common::Proto::V311,
    }
}

/// Publishes on `topic` from `publisher` until `subscriber` has one: its node's interest (and the
/// group it joined before, which its node wrote to the bucket first) reached the publisher's node.
async fn probe(publisher: &mut Client, topic: &str, subscriber: &mut Client) {
    for _ in 0..200 {
        publisher.publish(topic, 0, false, "probe").await;
        while let Some(m) = subscriber.recv_within(Duration::from_millis(50)).await {
            if m.topic == topic {
                return;
            }
        }
    }
    panic!("{}: interest on {topic} never crossed", subscriber.id);
}

/// Reads `members` until `n` messages on `s/...` arrived among them; what each got, probes skipped.
async fn collect(members: &mut [&mut Client], n: usize) -> Vec<Vec<String>> {
    let mut got = vec![Vec::new(); members.len()];
    for _ in 0..1000 {
        if got.iter().map(Vec::len).sum::<usize>() >= n {
            return got;
        }
        for (i, m) in members.iter_mut().enumerate() {
            while let Some(msg) = m.recv_within(Duration::from_millis(20)).await {
                if msg.topic.starts_with("s/") {
                    got[i].push(msg.text());
                }
            }
        }
    }
    panic!("only {got:?} of {n} messages reached the group");
}

fn numbers(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| i.to_string()).collect()
}

/// Every message once in the group: no duplicates, none missing.
fn once_each(got: &[Vec<String>], want: &BTreeSet<String>, what: &str) {
    let all: Vec<&String> = got.iter().flatten().collect();
    let distinct: BTreeSet<String> = all.iter().map(|s| (*s).clone()).collect();
    assert_eq!(all.len(), distinct.len(), "{what}: duplicates in {got:?}");
    assert_eq!(&distinct, want, "{what}: {got:?}");
}

#[test]
fn a_shared_group_gets_each_message_once_across_the_nodes() {
    let Some(nats) = Nats::start() else { return };
    common::with_timeout("cluster $share", Duration::from_secs(150), move || {
        let n1 = common::TestBroker::start(2, &node_config(&nats, "n1"));
        let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
        let n3 = common::TestBroker::start(1, &node_config(&nats, "n3"));
        // Every node live: QoS 1 copies go through the receiving node's JetStream queue.
        common::block_on(common::cluster::joined(&nats, &["n1", "n2", "n3"]));
        let (c1, c2, c3) = (case(&n1), case(&n2), case(&n3));
        common::block_on(async move {
            let mut p1 = Client::connect(&c1, "pub-1").await;
            let mut p2 = Client::connect(&c2, "pub-2").await;
            let mut m1 = Client::connect(&c1, "member-1").await;
            let mut m2 = Client::connect(&c2, "member-2").await;
            let mut m3 = Client::connect(&c3, "member-3").await;
            let mut plain = Client::connect(&c3, "plain-3").await;
            for (m, probe_topic) in [
                (&mut m1, "probe1"),
                (&mut m2, "probe2"),
                (&mut m3, "probe3"),
            ] {
                assert_eq!(
                    m.subscribe_many(&[("$share/g/s/#", 1), (probe_topic, 0)])
                        .await,
                    [1, 0]
                );
            }
            plain
                .subscribe_many(&[("s/#", 1), ("probe-plain", 0)])
                .await;
            probe(&mut p1, "probe2", &mut m2).await;
            probe(&mut p1, "probe3", &mut m3).await;
            probe(&mut p1, "probe-plain", &mut plain).await;

            // QoS 1 from n1: each message to one member, wherever it is; every member takes turns.
            for i in 0..60 {
                p1.publish_nowait("s/1", 1, false, i.to_string()).await;
            }
            p1.flush().await;
            let got = collect(&mut [&mut m1, &mut m2, &mut m3], 60).await;
            once_each(&got, &numbers(0..60), "QoS 1 from n1");
            // One member per node: each takes its turn as often (the link is one member for each
            // other node, not one for all of them: member-1 would get 30 and the others 15).
            for (i, g) in got.iter().enumerate() {
                assert!(
                    (15..=25).contains(&g.len()),
                    "member-{} got {} of 60: {got:?}",
                    i + 1,
                    g.len()
                );
            }
            let plain_got = collect(&mut [&mut plain], 60).await;
            once_each(&plain_got, &numbers(0..60), "the plain subscriber");

            // QoS 0 from n1.
            for i in 100..130 {
                p1.publish_nowait("s/0", 0, false, i.to_string()).await;
            }
            p1.flush().await;
            let got = collect(&mut [&mut m1, &mut m2, &mut m3], 30).await;
            once_each(&got, &numbers(100..130), "QoS 0 from n1");
            collect(&mut [&mut plain], 30).await;

            // Member 2 leaves: n2 has no member any more; its publisher's messages go to the
            // members on n1 and n3, and member 2 gets none.
            m2.unsubscribe("$share/g/s/#").await;
            for i in 200..240 {
                p2.publish_nowait("s/2", 1, false, i.to_string()).await;
            }
            p2.flush().await;
            let got = collect(&mut [&mut m1, &mut m3], 40).await;
            once_each(
                &got,
                &numbers(200..240),
                "QoS 1 from n2 after member-2 left",
            );
            // All 40 are accounted for above; one more would be a duplicate or member 2's.
            m2.expect_no_message(Duration::from_millis(300)).await;
        });
    });
}
