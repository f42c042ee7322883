//! Tests of the whole configuration path: text in, [`Config`] (or [`ConfigError`]) out, through
//! [`Config::parse_str`] and [`Config::load`], with the defaults, `include_dir`, the command line
//! adjustments and the shard placement that follow from it.

use super::*;
use crate::logging::LogType;
use std::sync::atomic::{AtomicUsize, Ordering};

mod cluster;
mod keys;
mod listeners;
mod persistence;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse_str(text, Path::new("/etc/x.conf"))
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("{text:?} should fail, got {c:?}"),
        Err(e) => e,
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shardmq-config-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn default_is_mosquitto_local_only_mode() {
    let c = Config::default();
    assert_eq!(c.listeners, vec![ListenerConfig::local_only(1883)]);
    assert_eq!(c.listeners[0].bind_address.as_deref(), Some("127.0.0.1"));
    assert!(c.local_only);
    assert!(c.allow_anonymous);
    assert_eq!(c.max_inflight_messages, 20);
    assert_eq!(c.max_queued_messages, 1000);
    assert_eq!(c.max_queued_bytes, 0);
    assert!(!c.queue_qos0_messages);
    assert_eq!(c.max_packet_size, MQTT_MAX_PACKET_SIZE);
    assert_eq!(c.max_keepalive_s, 65535);
    assert!(c.retain_available);
    assert!(c.set_tcp_nodelay);
    assert_eq!(c.sys_interval_s, 10);
    assert_eq!(c.log_dest, vec![LogDest::Stderr]);
    assert_eq!(c.log_types, LogTypes::DEFAULT);
    assert!(c.log_timestamp);
    assert!(c.log_timestamp_format.is_none());
    assert!(c.connection_messages);
    assert!(!c.per_listener_settings && !c.persistence);
    assert!(c.user.is_none() && c.pid_file.is_none());
    assert!(c.shards.is_none() && c.cpu_set.is_none());
    assert_eq!(c.cpu_affinity, None);
    assert_eq!(c.listen_backlog, 1024);
    assert!(!c.verbose && !c.daemon);
    assert_eq!(c.config_file, None);
}

#[test]
fn empty_file_is_local_only_with_anonymous_allowed() {
    let c = ok("# nothing but comments\n\n   \n");
    assert!(c.local_only);
    assert_eq!(c.listeners, vec![ListenerConfig::local_only(1883)]);
    assert!(c.allow_anonymous);
    assert_eq!(c.config_file.as_deref(), Some(Path::new("/etc/x.conf")));
    assert!(c.notices.contains(&ConfigNotice::LocalOnlyMode));
}

#[test]
fn local_only_forces_anonymous_even_when_file_says_false() {
    let c = ok("allow_anonymous false\n");
    assert!(c.local_only && c.allow_anonymous);
    assert!(c
        .notices
        .contains(&ConfigNotice::AnonymousForcedInLocalOnly));
}

#[test]
fn numeric_limits() {
    let c = ok("max_inflight_messages 5\nmax_queued_messages 7\nmax_queued_bytes 1048576\nmax_keepalive 60\nsys_interval 0\nmax_packet_size 1024\nlisten_backlog 4096\nshards 4\n");
    assert_eq!(c.max_inflight_messages, 5);
    assert_eq!(c.max_queued_messages, 7);
    assert_eq!(c.max_queued_bytes, 1 << 20);
    assert_eq!(c.max_keepalive_s, 60);
    assert_eq!(c.sys_interval_s, 0);
    assert_eq!(c.max_packet_size, 1024);
    assert_eq!(c.listen_backlog, 4096);
    assert_eq!(c.shards, NonZeroUsize::new(4));

    // Mosquitto reads negatives as "no limit", and 65535 inflight as no limit.
    let c = ok("max_inflight_messages -1\nmax_queued_messages -5\nmax_queued_bytes -1\n");
    assert_eq!(
        (
            c.max_inflight_messages,
            c.max_queued_messages,
            c.max_queued_bytes
        ),
        (0, 0, 0)
    );
    assert_eq!(ok("max_inflight_messages 65535\n").max_inflight_messages, 0);
    assert!(matches!(
        err("max_inflight_messages 65536\n"),
        ConfigError::InvalidValue { .. }
    ));

    assert_eq!(
        ok("max_packet_size 0\n").max_packet_size,
        MQTT_MAX_PACKET_SIZE
    );
    assert_eq!(ok("max_packet_size 20\n").max_packet_size, 20);
    assert!(matches!(
        err("max_packet_size 19\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::PacketSizeTooSmall,
            ..
        }
    ));
    assert!(matches!(
        err("max_packet_size 268435456\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("max_packet_size -1\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("max_keepalive 65536\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("sys_interval 70000\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("sys_interval -1\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("shards 0\n"),
        ConfigError::InvalidValue { key: "shards", .. }
    ));
    // Above what the interest summary's shard sets hold: refused here, not a panic at the first
    // subscription on shard 1024.
    assert!(matches!(
        err("shards 1025\n"),
        ConfigError::InvalidValue { key: "shards", .. }
    ));
    assert_eq!(ok("shards 1024\n").shards, NonZeroUsize::new(1024));
    assert!(matches!(
        err("listen_backlog 0\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("max_queued_messages 1O\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::NotAnInteger,
            line: 1,
            ..
        }
    ));
    assert!(matches!(
        err("sys_interval 10 20\n"),
        ConfigError::Arity {
            key: "sys_interval",
            expected: Arity::One,
            found: 2,
            ..
        }
    ));
    assert!(matches!(
        err("sys_interval\n"),
        ConfigError::Arity {
            key: "sys_interval",
            found: 0,
            ..
        }
    ));
}

#[test]
fn booleans() {
    let c = ok("queue_qos0_messages true\nretain_available false\nset_tcp_nodelay 1\nconnection_messages 0\nlog_timestamp false\ncpu_affinity false\n");
    assert!(c.queue_qos0_messages);
    assert!(!c.retain_available);
    assert!(c.set_tcp_nodelay);
    assert!(!c.connection_messages);
    assert!(!c.log_timestamp);
    assert_eq!(c.cpu_affinity, Some(false));
    assert!(matches!(
        err("set_tcp_nodelay yes\n"),
        ConfigError::InvalidValue {
            key: "set_tcp_nodelay",
            reason: ValueProblem::NotABoolean,
            ..
        }
    ));
    assert!(matches!(
        err("retain_available True\n"),
        ConfigError::InvalidValue { .. }
    ));
    // A trailing comment after the value is tolerated, as in Mosquitto.
    assert!(ok("set_tcp_nodelay true # lower latency\n").set_tcp_nodelay);
}

#[test]
fn slow_subscriber_policy_takes_three_values() {
    use crate::session::SlowSubscriberPolicy;
    assert_eq!(
        Config::default().slow_subscriber_policy,
        SlowSubscriberPolicy::HoldIfAllBehind
    );
    for (text, policy) in [
        ("hold_if_all_behind", SlowSubscriberPolicy::HoldIfAllBehind),
        ("hold", SlowSubscriberPolicy::Hold),
        ("drop", SlowSubscriberPolicy::Drop),
    ] {
        let c = ok(&format!("slow_subscriber_policy {text}\n"));
        assert_eq!(c.slow_subscriber_policy, policy);
    }
    let e = err("slow_subscriber_policy block\n");
    assert!(matches!(
        e,
        ConfigError::InvalidValue {
            key: "slow_subscriber_policy",
            reason: ValueProblem::UnknownSlowSubscriberPolicy,
            ..
        }
    ));
    assert!(
        e.to_string().contains("hold_if_all_behind, hold or drop"),
        "{e}"
    );
    assert!(matches!(
        err("slow_subscriber_policy hold drop\n"),
        ConfigError::Arity { .. }
    ));
}

#[test]
fn whitespace_and_comments() {
    let c = ok("  # indented comment\n\tsys_interval\t\t30  \r\n\n# max_queued_messages 5\n");
    assert_eq!(c.sys_interval_s, 30);
    assert_eq!(c.max_queued_messages, 1000);
}

#[test]
fn log_dest_accumulates_and_replaces_default() {
    let c = ok("log_dest stdout\n");
    assert_eq!(c.log_dest, vec![LogDest::Stdout]);
    let c = ok("log_dest stdout\nlog_dest file /var/log/mosquitto/mosquitto log.txt\nlog_dest stdout\nlog_dest stderr\n");
    assert_eq!(
        c.log_dest,
        vec![
            LogDest::Stdout,
            LogDest::File(PathBuf::from("/var/log/mosquitto/mosquitto log.txt")),
            LogDest::Stderr
        ]
    );
    assert!(ok("log_dest none\n").log_dest.is_empty());
    assert_eq!(
        ok("log_dest none\nlog_dest stdout\n").log_dest,
        vec![LogDest::Stdout]
    );
    assert!(matches!(
        err("log_dest file a\nlog_dest file b\n"),
        ConfigError::Duplicate {
            key: "log_dest file",
            line: 2,
            ..
        }
    ));
    assert!(matches!(err("log_dest file\n"), ConfigError::Arity { .. }));
    assert!(matches!(err("log_dest\n"), ConfigError::Arity { .. }));
    assert!(matches!(
        err("log_dest stdout stderr\n"),
        ConfigError::Arity { .. }
    ));
    assert!(matches!(
        err("log_dest paper\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::UnknownLogDest,
            ..
        }
    ));
    for d in ["syslog", "topic", "dlt"] {
        match err(&format!("log_dest {d}\n")) {
            ConfigError::Unsupported { key, value, .. } => {
                assert_eq!(key, "log_dest");
                assert_eq!(value.as_deref(), Some(d));
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn log_type_accumulates_and_replaces_default() {
    let c = ok("log_type error\nlog_type subscribe\n");
    assert_eq!(
        c.log_types,
        LogTypes::NONE.with(LogType::Error).with(LogType::Subscribe)
    );
    assert_eq!(ok("log_type all\n").log_types, LogTypes::ALL);
    assert_eq!(
        ok("log_type all\nlog_type none\n").log_types,
        LogTypes::NONE
    );
    assert_eq!(
        ok("log_type none\nlog_type debug\n").log_types,
        LogTypes::NONE.with(LogType::Debug)
    );
    for t in LogType::ALL {
        assert!(ok(&format!("log_type {}\n", t.name()))
            .log_types
            .contains(t));
    }
    assert!(matches!(
        err("log_type chatter\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::UnknownLogType,
            ..
        }
    ));
    assert_eq!(
        format!("{:?}", LogTypes::DEFAULT),
        r#"{"error", "warning", "notice", "information"}"#
    );
}

#[test]
fn log_timestamp_format() {
    let c = ok("log_timestamp_format %Y-%m-%dT%H:%M:%S\n");
    assert_eq!(
        c.log_timestamp_format.as_ref().map(TimestampFormat::as_str),
        Some("%Y-%m-%dT%H:%M:%S")
    );
    // Spaces are part of the value.
    let c = ok("log_timestamp_format %Y-%m-%d %H:%M:%S %% %-d %Ey\n");
    assert_eq!(
        c.log_timestamp_format.as_ref().map(TimestampFormat::as_str),
        Some("%Y-%m-%d %H:%M:%S %% %-d %Ey")
    );
    assert!(matches!(
        err("log_timestamp_format %Q\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::UnknownStrftimeConversion('Q'),
            ..
        }
    ));
    assert!(matches!(
        err("log_timestamp_format %H %\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::TrailingPercent,
            ..
        }
    ));
    assert!(matches!(
        err("log_timestamp_format\n"),
        ConfigError::Arity { .. }
    ));
    assert!(matches!(
        err("log_timestamp_format %s\nlog_timestamp_format %s\n"),
        ConfigError::Duplicate { .. }
    ));
}

#[test]
fn strings() {
    let c = ok("user mosquitto\npid_file /run/mosquitto/mosquitto.pid\nuser broker\n");
    assert_eq!(
        c.user.as_deref(),
        Some("broker"),
        "the last user wins, as in Mosquitto"
    );
    assert_eq!(
        c.pid_file.as_deref(),
        Some(Path::new("/run/mosquitto/mosquitto.pid"))
    );
    assert!(matches!(
        err("pid_file a\npid_file b\n"),
        ConfigError::Duplicate {
            key: "pid_file",
            ..
        }
    ));
    assert!(matches!(
        err("user\n"),
        ConfigError::Arity { key: "user", .. }
    ));
}

#[test]
fn persistence_per_listener_settings_protocol_accept_only_what_we_do() {
    let c = ok("persistence false\nretained_persistence false\nper_listener_settings false\nprotocol mqtt\n");
    assert!(!c.persistence && !c.per_listener_settings);
    for (text, key, value) in [("listener 1884\nprotocol mqttsn\n", "protocol", "mqttsn")] {
        match err(text) {
            ConfigError::Unsupported {
                key: k, value: v, ..
            } => {
                assert_eq!((k.as_str(), v.as_deref()), (key, Some(value)));
            }
            other => panic!("{text}: {other}"),
        }
    }
    assert!(matches!(
        err("protocol http\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::UnknownProtocol,
            ..
        }
    ));
}

#[test]
fn retry_interval_is_obsolete_not_an_error() {
    let c = ok("retry_interval 20\n");
    assert!(matches!(
        c.notices[0],
        ConfigNotice::Obsolete {
            key: "retry_interval",
            line: 1,
            ..
        }
    ));
}

#[test]
fn shardmq_keys() {
    let c = ok("shards 8\ncpu_affinity true\ncpu_set 0-3, 8-11\nlisten_backlog 512\n");
    assert_eq!(c.shards, NonZeroUsize::new(8));
    assert_eq!(c.cpu_set, Some(vec![0, 1, 2, 3, 8, 9, 10, 11]));
    assert_eq!(c.listen_backlog, 512);
    assert_eq!(ok("cpu_set 5,1,3\n").cpu_set, Some(vec![5, 1, 3]));
    for bad in [
        "cpu_set 3-1\n",
        "cpu_set a\n",
        "cpu_set 1,,2\n",
        "cpu_set 1-\n",
        "cpu_set 99999\n",
    ] {
        assert!(
            matches!(
                err(bad),
                ConfigError::InvalidValue {
                    key: "cpu_set",
                    reason: ValueProblem::BadCpuList,
                    ..
                }
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        err("cpu_set 0-3,2\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::RepeatedCpu(2),
            ..
        }
    ));
}

#[test]
fn shard_placement() {
    let avail = [0, 1, 2, 3, 4, 5, 6, 7];
    // Default: one shard per CPU, unpinned.
    let p = Config::default().shard_placement_on(&avail).unwrap();
    assert_eq!(p.shards, 8);
    assert!(p.cpus.iter().all(Option::is_none));

    let p = ok("cpu_affinity true\n")
        .shard_placement_on(&avail)
        .unwrap();
    assert_eq!(p.cpus, (0..8).map(Some).collect::<Vec<_>>());

    // A cpu_set pins unless cpu_affinity says otherwise.
    let c = ok("cpu_set 1-2\ncpu_affinity false\n");
    let p = c.shard_placement_on(&avail).unwrap();
    assert_eq!((p.shards, p.cpus), (2, vec![None, None]));

    let c = ok("shards 2\ncpu_set 4-7\n");
    let p = c.shard_placement_on(&avail).unwrap();
    assert_eq!((p.shards, p.cpus), (2, vec![Some(4), Some(5)]));

    let c = ok("cpu_set 6,2\n");
    let p = c.shard_placement_on(&avail).unwrap();
    assert_eq!((p.shards, p.cpus), (2, vec![Some(6), Some(2)]));

    // More shards than cores: no pinning.
    let c = ok("shards 16\n");
    let p = c.shard_placement_on(&avail).unwrap();
    assert_eq!(p.shards, 16);
    assert!(p.cpus.iter().all(Option::is_none));

    let c = ok("cpu_affinity false\n");
    assert!(c
        .shard_placement_on(&avail)
        .unwrap()
        .cpus
        .iter()
        .all(Option::is_none));

    let c = ok("cpu_set 0,9\n");
    assert!(matches!(
        c.shard_placement_on(&avail),
        Err(ConfigError::CpuNotAvailable { cpu: 9, .. })
    ));

    // On this machine.
    let p = Config::default().shard_placement().unwrap();
    assert!(p.shards >= 1);
    assert_eq!(p.cpus.len(), p.shards);
}

#[test]
fn persistent_client_expiration_takes_mosquitto_units() {
    let d =
        |v: &str| ok(&format!("persistent_client_expiration {v}\n")).persistent_client_expiration;
    assert_eq!(d("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(d("14d"), Some(Duration::from_secs(14 * 86_400)));
    assert_eq!(d("1w"), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(d("1m"), Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(d("1y"), Some(Duration::from_secs(365 * 86_400)));
    assert_eq!(d("5s"), Some(Duration::from_secs(5)));
    assert_eq!(ok("").persistent_client_expiration, None);
    for bad in ["0d", "d", "10", "1x", "-1h", "1.5h"] {
        assert!(
            matches!(
                err(&format!("persistent_client_expiration {bad}\n")),
                ConfigError::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn client_id_options_as_mosquitto_reads_them() {
    let c = ok("listener 1883\n");
    assert!(c.allow_zero_length_clientid && c.auto_id_prefix == "auto-");
    assert!(c.clientid_prefixes.is_none() && !c.listeners[0].use_username_as_clientid);
    let c = ok(
        "allow_zero_length_clientid false\nauto_id_prefix dev-\nclientid_prefixes ok-\n\
                listener 1883\nlistener 1884\nuse_username_as_clientid true\n",
    );
    assert!(!c.allow_zero_length_clientid);
    assert_eq!(c.auto_id_prefix, "dev-");
    assert_eq!(c.clientid_prefixes.as_deref(), Some("ok-"));
    // A listener option: only the listener it follows.
    let by_user: Vec<bool> = c
        .listeners
        .iter()
        .map(|l| l.use_username_as_clientid)
        .collect();
    assert_eq!(by_user, [false, true]);
    // Before any listener it is the default listener's (`port`), as in Mosquitto.
    let c = ok("use_username_as_clientid true\nport 1885\nlistener 1886\n");
    let by_user: Vec<(u16, bool)> = c
        .listeners
        .iter()
        .map(|l| (l.port, l.use_username_as_clientid))
        .collect();
    assert_eq!(by_user, [(1886, false), (1885, true)]);
    assert!(matches!(
        err("auto_id_prefix a\nauto_id_prefix b\n"),
        ConfigError::Duplicate {
            key: "auto_id_prefix",
            ..
        }
    ));
}

#[test]
fn password_and_acl_files_are_paths_given_once() {
    let c = ok("listener 1883\npassword_file /etc/mosquitto/pw\nacl_file /etc/mosquitto/acl\n");
    assert_eq!(
        c.password_file.as_deref(),
        Some(Path::new("/etc/mosquitto/pw"))
    );
    assert_eq!(c.acl_file.as_deref(), Some(Path::new("/etc/mosquitto/acl")));
    assert!(matches!(
        err("password_file a\npassword_file b\n"),
        ConfigError::Duplicate {
            key: "password_file",
            line: 2,
            ..
        }
    ));
    assert!(matches!(
        err("acl_file a\nacl_file b\n"),
        ConfigError::Duplicate {
            key: "acl_file",
            ..
        }
    ));
}

#[test]
fn include_dir_reads_conf_files_in_mosquitto_order() {
    let dir = TempDir::new("include");
    // Each file appends a listener so the order is visible.
    for (name, port) in [
        ("conf.d/b.conf", 6),
        ("conf.d/A.conf", 3),
        ("conf.d/01.conf", 2),
        ("conf.d/a.conf", 4),
        ("conf.d/B.conf", 5),
        ("conf.d/00.conf", 1),
    ] {
        dir.write(name, &format!("listener {port}\n"));
    }
    dir.write("conf.d/ignored.txt", "not a config\n");
    dir.write("conf.d/.conf", "listener 99\n");
    dir.write("conf.d/notes.conf.bak", "listener 98\n");
    let main = dir.write(
        "main.conf",
        "listener 1000\ninclude_dir conf.d\nlistener 2000\n",
    );
    let c = Config::load(&main).unwrap();
    let ports: Vec<u16> = c.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, vec![1000, 1, 2, 3, 4, 5, 6, 2000]);
    let included: Vec<String> = c
        .notices
        .iter()
        .filter_map(|n| match n {
            ConfigNotice::IncludedFile { path } => {
                path.file_name().map(|f| f.to_string_lossy().into_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        included,
        ["00.conf", "01.conf", "A.conf", "a.conf", "B.conf", "b.conf"]
    );
}

#[test]
fn include_dir_errors_name_the_included_file() {
    let dir = TempDir::new("include-err");
    dir.write("d/10-ok.conf", "sys_interval 5\n");
    let bad = dir.write("d/20-bad.conf", "# comment\n\nmax_keepalive nope\n");
    let main = dir.write(
        "main.conf",
        &format!("include_dir {}\n", dir.0.join("d").display()),
    );
    match Config::load(&main) {
        Err(ConfigError::InvalidValue {
            file, line, key, ..
        }) => {
            assert_eq!((file, line, key), (bad, 3, "max_keepalive"));
        }
        other => panic!("{other:?}"),
    }

    // Nested include_dir is refused (Mosquitto only honours it in the main file).
    let dir = TempDir::new("include-nested");
    let inner = dir.write("d/x.conf", "include_dir ../e\n");
    let main = dir.write("main.conf", "include_dir d\n");
    match Config::load(&main) {
        Err(ConfigError::NestedIncludeDir { file, line }) => {
            assert_eq!((file, line), (inner, 1))
        }
        other => panic!("{other:?}"),
    }

    // A directory holding the main file would read it twice.
    let dir = TempDir::new("include-self");
    let main = dir.write("main.conf", "include_dir .\n");
    assert!(matches!(
        Config::load(&main),
        Err(ConfigError::IncludeDirContainsMainFile { .. })
    ));

    let main = dir.write("other.txt", "include_dir does-not-exist\n");
    assert!(matches!(
        Config::load(&main),
        Err(ConfigError::IncludeDir { line: 1, .. })
    ));
}

#[test]
fn load_missing_file_is_a_read_error() {
    let e = Config::load(Path::new("/nonexistent/shardmq.conf")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/shardmq.conf"));
}

#[test]
fn command_line_ports_follow_mosquitto_2() {
    let mut c = Config::default();
    c.apply_command_line_ports(&[1884, 1885]).unwrap();
    assert_eq!(
        c.listeners,
        vec![
            ListenerConfig::local_only(1884),
            ListenerConfig::local_only(1885)
        ]
    );

    let mut c = ok("listener 1883\n");
    c.apply_command_line_ports(&[1884]).unwrap();
    assert_eq!(c.listeners, vec![ListenerConfig::any_interface(1883)]);
    assert!(c
        .notices
        .contains(&ConfigNotice::CommandLinePortsIgnored { ports: vec![1884] }));

    let mut c = Config::default();
    assert!(matches!(
        c.apply_command_line_ports(&[1; 11]),
        Err(ConfigError::TooManyPorts { count: 11 })
    ));
}

#[test]
fn verbose_logs_everything() {
    let mut c = ok("log_type error\n");
    c.apply_verbose();
    assert!(c.verbose);
    assert_eq!(c.log_types, LogTypes::ALL);
}

#[test]
fn notices_display() {
    let n = ConfigNotice::CommandLinePortsIgnored { ports: vec![1, 2] };
    assert!(n.to_string().ends_with("1, 2"));
    assert_eq!(n.log_type(), LogType::Warning);
    assert_eq!(
        ConfigNotice::IncludedFile {
            path: "/a.conf".into()
        }
        .to_string(),
        "Loading config file /a.conf"
    );
}

#[test]
fn default_config_text_parses_to_the_defaults() {
    let c = Config::parse_str(DEFAULT_CONFIG_TEXT, Path::new("docs/shardmq.conf")).unwrap();
    let d = Config::default();
    assert_eq!(
        Config {
            config_file: None,
            ..c
        },
        d
    );
}
