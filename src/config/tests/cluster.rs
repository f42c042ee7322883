//! The `cluster_*` keys (config/parser/cluster.rs): a whole node or nothing.

use super::*;
use crate::cluster::link::{LinkConfig, LinkError};

const NODE: &str = "cluster_nats nats://a:4222\ncluster_name prod\ncluster_node n1\n";

#[test]
fn no_cluster_key_is_a_single_broker() {
    assert!(ok("").cluster.is_none());
    assert!(ok("listener 1883\nallow_anonymous true\n")
        .cluster
        .is_none());
}

#[test]
fn a_whole_node_is_read_into_its_link_config() {
    let c = ok(&format!(
        "{NODE}cluster_nats nats://b:4222, tls://c:4443\ncluster_nats_user u\n\
         cluster_nats_password p w\ncluster_nats_credentials /etc/n.creds\ncluster_nats_cafile ca.pem\n"
    ));
    assert_eq!(
        c.cluster,
        Some(LinkConfig {
            cluster: "prod".into(),
            node: "n1".into(),
            urls: vec![
                "nats://a:4222".into(),
                "nats://b:4222".into(),
                "tls://c:4443".into()
            ],
            user: Some(("u".into(), "p w".into())),
            credentials: Some("/etc/n.creds".into()),
            cafile: Some("ca.pem".into()),
            replicas: 3,
        })
    );
}

#[test]
fn a_partial_node_is_refused_saying_what_is_missing() {
    for (text, missing) in [
        ("cluster_name prod\ncluster_node n1\n", "cluster_nats"),
        (
            "cluster_nats nats://a:4222\ncluster_node n1\n",
            "cluster_name",
        ),
        (
            "cluster_nats nats://a:4222\ncluster_name prod\n",
            "cluster_node",
        ),
        ("cluster_nats_user u\n", "cluster_nats"),
    ] {
        match err(text) {
            ConfigError::Cluster {
                problem: ClusterProblem::Missing(key),
                ..
            } => assert_eq!(key, missing, "{text:?}"),
            other => panic!("{text:?}: {other}"),
        }
    }
    assert!(matches!(
        err(&format!("{NODE}cluster_nats_user u\n")),
        ConfigError::Cluster {
            problem: ClusterProblem::UserWithoutPassword,
            ..
        }
    ));
}

#[test]
fn names_nats_cannot_take_and_repeats_are_refused() {
    let e = err("cluster_nats nats://a:4222\ncluster_name prod.eu\ncluster_node n1\n");
    assert!(
        matches!(
            e,
            ConfigError::Cluster {
                problem: ClusterProblem::Link(LinkError::BadName {
                    what: "cluster_name",
                    ..
                }),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("cluster_name `prod.eu`"), "{e}");
    assert!(matches!(
        err(&format!("{NODE}cluster_node n2\n")),
        ConfigError::Duplicate {
            key: "cluster_node",
            ..
        }
    ));
}

#[test]
fn a_cluster_node_leaves_one_shard_id_for_its_link() {
    assert_eq!(
        ok(&format!("{NODE}shards 1023\n")).shards.map(|n| n.get()),
        Some(1023)
    );
    let e = err(&format!("{NODE}shards 1024\n"));
    assert!(
        matches!(
            e,
            ConfigError::Cluster {
                problem: ClusterProblem::TooManyShards(1024),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("at most 1023"), "{e}");
    // A single broker may have them all.
    assert_eq!(ok("shards 1024\n").shards.map(|n| n.get()), Some(1024));
}

#[test]
fn cluster_replicas_is_one_to_five_and_three_unless_set() {
    let replicas = |extra: &str| ok(&format!("{NODE}{extra}")).cluster.unwrap().replicas;
    assert_eq!(replicas(""), 3);
    assert_eq!(replicas("cluster_replicas 1\n"), 1);
    assert_eq!(replicas("cluster_replicas 5\n"), 5);
    for bad in ["0", "6", "two"] {
        let e = err(&format!("{NODE}cluster_replicas {bad}\n"));
        assert!(e.to_string().contains("cluster_replicas"), "{bad}: {e}");
    }
    assert!(matches!(
        err(&format!("{NODE}cluster_replicas 1\ncluster_replicas 3\n")),
        ConfigError::Duplicate {
            key: "cluster_replicas",
            ..
        }
    ));
}
