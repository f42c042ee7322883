//! The key table (`keys.rs`): every key Mosquitto reads is either handled or refused by name, a
//! misspelt one gets a suggestion, and docs/shardmq.conf documents every supported one.

use super::super::keys::{SUPPORTED_KEYS, UNSUPPORTED_KEYS};
use super::*;

#[test]
fn unknown_key_suggests_nearest() {
    let e = Config::parse_str(
        "\n\n\n\n\n\n\n\n\n\n\nmax_inflight_message 10\n",
        Path::new("/etc/x.conf"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown option `max_inflight_message` at /etc/x.conf:12; did you mean `max_inflight_messages`?"
    );
    match err("Listener 1883\n") {
        ConfigError::UnknownKey { suggestion, .. } => assert_eq!(suggestion, Some("listener")),
        other => panic!("{other}"),
    }
    match err("paswordfile x\n") {
        ConfigError::UnknownKey { suggestion, .. } => {
            assert_eq!(suggestion, Some("password_file"))
        }
        other => panic!("{other}"),
    }
    match err("shard 4\n") {
        ConfigError::UnknownKey { suggestion, .. } => assert_eq!(suggestion, Some("shards")),
        other => panic!("{other}"),
    }
    let e = err("completely_unrelated_thing 1\n");
    assert!(matches!(
        e,
        ConfigError::UnknownKey {
            suggestion: None,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "unknown option `completely_unrelated_thing` at /etc/x.conf:1"
    );
}

#[test]
fn every_unsupported_mosquitto_key_is_refused_by_name() {
    for key in UNSUPPORTED_KEYS {
        match err(&format!("{key} value\n")) {
            ConfigError::Unsupported {
                key: k,
                value: None,
                line: 1,
                ..
            } => assert_eq!(k, *key),
            other => panic!("{key}: {other}"),
        }
    }
    for key in ["auth_opt_db_host", "plugin_opt_foo"] {
        assert!(matches!(
            err(&format!("{key} x\n")),
            ConfigError::Unsupported { .. }
        ));
    }
    let e = Config::parse_str("\n\npsk_file /etc/psk\n", Path::new("/etc/x.conf")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`psk_file` at /etc/x.conf:3 is a Mosquitto option shardmq does not support yet"
    );
    // Tables do not overlap.
    for k in SUPPORTED_KEYS {
        assert!(!UNSUPPORTED_KEYS.contains(k), "{k}");
    }
}

#[test]
fn every_supported_key_is_handled() {
    // A value each supported key accepts; none may fall through to "unknown" or "unsupported".
    for key in SUPPORTED_KEYS {
        let value = match *key {
            "allow_anonymous"
            | "allow_zero_length_clientid"
            | "use_username_as_clientid"
            | "upgrade_outgoing_qos"
            | "connection_messages"
            | "cpu_affinity"
            | "log_timestamp"
            | "queue_qos0_messages"
            | "retain_available"
            | "set_tcp_nodelay"
            | "autosave_on_changes" => "true",
            "per_listener_settings" | "persistence" | "retained_persistence" => "false",
            "bind_address" => "127.0.0.1",
            "cpu_set" => "0",
            "include_dir" => continue,
            "log_dest" => "stdout",
            "log_timestamp_format" => "%s",
            "log_type" => "all",
            "pid_file"
            | "user"
            | "password_file"
            | "acl_file"
            | "auto_id_prefix"
            | "persistence_location"
            | "persistence_file"
            | "clientid_prefixes" => "x",
            "protocol" => "mqtt",
            "persistent_client_expiration" => "1d",
            "slow_subscriber_policy" => "hold",
            "shared_subscription_strategy" => "hash",
            "refuse_unreadable_subscriptions" => "unspecified_error",
            "certfile" | "keyfile" | "cafile" | "capath" | "crlfile" => "x",
            "require_certificate" | "use_identity_as_username" | "use_subject_as_username" => {
                "true"
            }
            "tls_version" => "tlsv1.2",
            "socket_domain" => "ipv4",
            "mount_point" => "site/a/",
            "accept_protocol_versions" => "4,5",
            "ciphers" => "ECDHE-RSA-AES128-GCM-SHA256",
            "ciphers_tls1.3" => "TLS_AES_128_GCM_SHA256",
            "persistence_sync" => "always",
            "scram_file" => "x",
            "server_reference" => "other.example.com:1883",
            "server_reference_mode" => "moved",
            "shards" => "8",
            _ => "1883",
        };
        // TLS options need a TLS listener with a CA (config/tls.rs).
        let context = if TLS_KEYS.contains(key) {
            "listener 8883\ncertfile c\nkeyfile k\ncafile a\n"
        } else if key.starts_with("cluster_") {
            // A cluster key takes effect in a whole cluster node (config/parser/cluster.rs).
            &cluster_node_without(key)
        } else {
            ""
        };
        let value = match *key {
            "cluster_nats" => "nats://127.0.0.1:4222",
            "cluster_replicas" => "3",
            k if k.starts_with("cluster_") => "a",
            _ => value,
        };
        if let Err(e) = parse(&format!("{context}{key} {value}\n")) {
            panic!("{key} {value}: {e}");
        }
    }
}

/// A whole cluster node's lines but the one for `key` (which the test then gives).
fn cluster_node_without(key: &str) -> String {
    [
        "cluster_nats nats://127.0.0.1:4222",
        "cluster_name c",
        "cluster_node n",
        "cluster_nats_user u",
        "cluster_nats_password p",
    ]
    .iter()
    .filter(|l| !l.starts_with(&format!("{key} ")))
    .map(|l| format!("{l}\n"))
    .collect()
}

/// The per-listener TLS keys.
const TLS_KEYS: [&str; 11] = [
    "certfile",
    "keyfile",
    "cafile",
    "capath",
    "crlfile",
    "require_certificate",
    "use_identity_as_username",
    "use_subject_as_username",
    "tls_version",
    "ciphers",
    "ciphers_tls1.3",
];

#[test]
fn default_config_text_documents_every_key() {
    for key in SUPPORTED_KEYS {
        let documented = DEFAULT_CONFIG_TEXT
            .lines()
            .any(|l| l.trim_start_matches('#').split_whitespace().next() == Some(key));
        assert!(documented, "docs/shardmq.conf lacks `{key}`");
    }
}

#[test]
fn shared_subscription_strategy_sets_the_default_or_named_groups() {
    use crate::index::Strategy;
    let c = parse(
        "shared_subscription_strategy hash\n\
         shared_subscription_strategy least_inflight workers jobs\n\
         shared_subscription_strategy random jobs\n",
    )
    .expect("accepted");
    let s = &c.shared_subscription_strategy;
    assert_eq!(s.default, Strategy::Hash);
    assert_eq!(s.for_group("workers"), Strategy::LeastInflight);
    assert_eq!(
        s.for_group("jobs"),
        Strategy::Random,
        "the last line naming it"
    );
    assert_eq!(s.for_group("other"), Strategy::Hash);
    assert_eq!(
        crate::config::Config::default()
            .shared_subscription_strategy
            .for_group("g"),
        Strategy::RoundRobin
    );
    let e = parse("shared_subscription_strategy fastest\n").unwrap_err();
    assert!(e.to_string().contains("round_robin"), "{e}");
}

#[test]
fn refuse_unreadable_subscriptions_names_its_reason_code() {
    use crate::codec::ReasonCode;
    let value = |v: &str| {
        parse(&format!("refuse_unreadable_subscriptions {v}\n"))
            .map(|c| c.refuse_unreadable_subscriptions)
    };
    assert_eq!(
        crate::config::Config::default().refuse_unreadable_subscriptions,
        None
    );
    assert_eq!(value("false").unwrap(), None);
    assert_eq!(value("true").unwrap(), Some(ReasonCode::NotAuthorized));
    assert_eq!(
        value("unspecified_error").unwrap(),
        Some(ReasonCode::UnspecifiedError)
    );
    let e = value("sometimes").unwrap_err();
    assert!(e.to_string().contains("unspecified_error"), "{e}");
}
