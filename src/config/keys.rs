//! The table of configuration keys: the ones shardmq implements, the other ones Mosquitto 2.0 reads
//! (refused as unsupported rather than silently ignored), and the plugin option prefixes. The parser
//! (`parser.rs`) consults it for every key it does not handle itself, and [`suggest`] finds the known
//! key nearest to a misspelt one for the "did you mean" of [`super::ConfigError::UnknownKey`].
//! Adding a key means adding it here and handling it in `parser.rs`; tests.rs checks that every
//! supported key is handled and documented in docs/shardmq.conf.

/// Options shardmq implements (Mosquitto's and its own); used for suggestions.
#[rustfmt::skip]
pub(super) const SUPPORTED_KEYS: &[&str] = &[
    "acl_file", "allow_anonymous", "allow_zero_length_clientid", "auto_id_prefix", "bind_address",
    "clientid_prefixes", "connection_messages", "cpu_affinity", "cpu_set", "include_dir", "listen_backlog", "listener", "log_dest", "log_timestamp", "log_timestamp_format",
    "log_type", "max_connections", "max_inflight_messages", "max_keepalive", "max_packet_size", "max_topic_alias",
    "max_queued_bytes", "max_queued_messages", "password_file", "per_listener_settings", "persistence",
    "persistence_file", "persistence_location", "persistence_sync", "persistent_client_expiration",
    "autosave_interval", "autosave_on_changes",
    "pid_file", "port", "protocol", "queue_qos0_messages", "refuse_unreadable_subscriptions",
    "retain_available", "retained_persistence",
    "retry_interval", "scram_file", "server_reference", "server_reference_mode", "set_tcp_nodelay",
    "shards", "shared_subscription_strategy", "slow_subscriber_policy", "sys_interval",
    "upgrade_outgoing_qos",
    "use_username_as_clientid", "user", "socket_domain", "mount_point", "accept_protocol_versions",
    // The cluster over NATS (docs/CLUSTER.md; config/parser/cluster.rs).
    "cluster_name", "cluster_node", "cluster_nats", "cluster_nats_user", "cluster_nats_password",
    "cluster_nats_credentials", "cluster_nats_cafile", "cluster_replicas",
    // TLS, per listener (config/tls.rs).
    "cafile", "capath", "certfile", "ciphers", "ciphers_tls1.3", "crlfile", "keyfile",
    "require_certificate", "tls_version", "use_identity_as_username", "use_subject_as_username",
];

/// Every other option Mosquitto 2.0 reads (mosquitto.conf(5) and src/conf.c); refused as unsupported.
#[rustfmt::skip]
pub(super) const UNSUPPORTED_KEYS: &[&str] = &[
    "address", "addresses", "allow_duplicate_messages", "auth_plugin",
    "auth_plugin_deny_special_chars", "bind_interface", "bridge_alpn", "bridge_attempt_unsubscribe",
    "bridge_bind_address", "bridge_cafile", "bridge_capath", "bridge_certfile", "bridge_identity",
    "bridge_insecure", "bridge_keyfile", "bridge_max_packet_size", "bridge_outgoing_retain",
    "bridge_protocol_version", "bridge_psk", "bridge_require_ocsp", "bridge_tls_version",
    "check_retain_source", "cleansession",
    "clientid", "connection", "dhparamfile", "http_dir", "idle_timeout",
    "keepalive_interval", "local_cleansession", "local_clientid", "local_password",
    "local_username", "log_facility", "max_inflight_bytes", "max_qos", "maximum_qos",
    "memory_limit", "message_size_limit", "notification_topic", "notifications",
    "notifications_local_only", "password",
    "plugin", "psk_file", "psk_hint", "remote_clientid",
    "remote_password", "remote_username", "restart_timeout", "round_robin",
    "start_type", "threshold", "tls_engine", "tls_engine_kpass_sha1", "tls_keyform",
    "topic", "try_private", "username", "websockets_headers_size",
    "websockets_log_level",
];

/// Key prefixes Mosquitto passes to plugins (`auth_opt_*`, `plugin_opt_*`); refused as unsupported.
pub(super) const UNSUPPORTED_PREFIXES: &[&str] = &["auth_opt_", "plugin_opt_"];

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in d.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The known key nearest to `key` within edit distance 3 (ties: the first in table order).
pub(super) fn suggest(key: &str) -> Option<&'static str> {
    SUPPORTED_KEYS
        .iter()
        .chain(UNSUPPORTED_KEYS)
        .map(|&k| (edit_distance(key, k), k))
        .filter(|&(d, _)| d <= 3)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("port", "port"), 0);
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(edit_distance("user", "users"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
