//! Wills of a node that dies (issue 19: "their wills are published by the cluster"): node n1 (the
//! broker binary, so that it can be killed) has clients with wills; it is killed with SIGKILL; the
//! surviving node n2 sends the wills n1 owed once n1's liveness key expires: a will without delay,
//! a v5 will with a delay whose session ended with the connection (so at once), and a v5 will of a
//! persistent session after its Will Delay Interval. Not sent: the will of a client that
//! disconnected normally before the kill, and the delayed will of a client that came back on n2
//! within its delay [MQTT-3.1.3-9], whose claim could not reach n1 (stopped) to take its session:
//! n2 then does not adopt n1's stale copy of it over the live one.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{node_config, Nats};
use common::persist::{self, crash_seed, fixed_port, Rng, Scratch};
use common::raw::{kind, Connect, RawClient, ReadEnd};
use common::Proto;

#[test]
fn a_killed_nodes_wills_are_sent_by_the_cluster() {
    let Some(nats) = Nats::start() else { return };
    persist::bounded("cluster wills", Duration::from_secs(150), move || {
        let n2 = common::TestBroker::start(1, &node_config(&nats, "n2"));
        let (mut sub, _) = RawClient::connect(n2.addr(), &Connect::new(Proto::V311, "wills-sub"));
        assert_eq!(sub.subscribe(&[("will/#", 1), ("ready", 0)]), [1, 0]);

        let mut rng = Rng(crash_seed());
        let port = fixed_port(&mut rng);
        let scratch = Scratch::new("cluster-wills");
        let config = scratch.config(port, 2, &node_config(&nats, "n1"));
        let mut n1 = persist::Broker::start(&config, port);

        // The clients on n1; then n1 must be known to n2 (the probe crosses) and its wills in
        // the wills bucket, where a node's wills go once its liveness key is.
        let connect = |c: Connect| RawClient::connect(n1.addr, &c).0;
        let _plain =
            connect(Connect::new(Proto::V311, "w-plain").will("will/plain", b"gone", 1, false));
        let _delayed = connect(
            Connect::new(Proto::V5, "w-delayed")
                .will("will/delayed", b"gone later", 1, false)
                .will_delay(3),
        );
        let _later = connect(
            Connect::new(Proto::V5, "w-later")
                .persistent()
                .will("will/later", b"gone later", 1, false)
                .will_delay(3),
        );
        let back = connect(
            Connect::new(Proto::V5, "w-back")
                .persistent()
                .will("will/back", b"must not be sent", 1, false)
                .will_delay(3),
        );
        let polite =
            connect(Connect::new(Proto::V311, "w-polite").will("will/polite", b"no", 1, false));
        persist::disconnect(polite);
        common::cluster::probe_raw(n1.addr, &mut sub);
        let keys: Vec<String> = ["w-plain", "w-delayed", "w-later", "w-back"]
            .iter()
            .map(|c| shardmq::cluster::interest::key_of("n1", c))
            .collect();
        common::cluster::wait_for_keys(&nats, "shardmq_t_wills", &keys);

        // n1 stops answering, its NATS connection still up: "w-back" comes back on n2, whose claim
        // of its client id asks n1 for the session and gets no answer in the claim's time, so
        // n1's copy of the session stays in the state bucket. Then n1 dies.
        n1.signal(libc::SIGSTOP);
        let (mut back_again, connack) =
            RawClient::connect(n2.addr(), &Connect::new(Proto::V5, "w-back").persistent());
        assert_eq!(connack.code, 0);
        n1.kill_9();
        drop(back);

        // n1's liveness key expires 15 s after its last refresh; n2 then sends what n1 owed.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = BTreeSet::new();
        while got.len() < 3 {
            assert!(
                Instant::now() < deadline,
                "wills sent by the cluster: only {got:?}"
            );
            match sub.try_read_packet(Duration::from_millis(200)) {
                Ok(p) if p.kind() == kind::PUBLISH => {
                    let m = p.publish(Proto::V311);
                    if m.topic.starts_with("will/") {
                        assert!(got.insert(m.topic.clone()), "{} sent twice", m.topic);
                        if m.qos == 1 {
                            sub.send(&common::raw::ack(kind::PUBACK, m.pkid));
                        }
                    }
                }
                Ok(_) | Err(ReadEnd::Timeout) => {}
                Err(ReadEnd::Closed) => panic!("n2 closed the subscriber"),
            }
        }
        let want: BTreeSet<String> = ["will/delayed", "will/later", "will/plain"]
            .map(str::to_owned)
            .into();
        assert_eq!(got, want);
        // "will/back" was checked against its client's return when its delay ran out, at the same
        // moment as "will/later" (both reaped together): 2 s more for that check to answer.
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match sub.try_read_packet(left) {
                Ok(p) if p.kind() == kind::PUBLISH => {
                    let m = p.publish(Proto::V311);
                    assert!(!m.topic.starts_with("will/"), "also sent: {}", m.topic);
                }
                Ok(_) | Err(ReadEnd::Timeout) => {}
                Err(ReadEnd::Closed) => panic!("n2 closed the subscriber"),
            }
        }
        // n2 adopted n1's sessions meanwhile, but not the stale copy of the one its client has
        // here: that would have closed this connection (and sent "will/back" after its delay).
        back_again.ping();
    });
}
