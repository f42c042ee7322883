//! Tests of the layer as a whole: events in, Mosquitto lines out, through an in-memory destination
//! (and one test of [`init`] with a real file). The writer thread's own tests are in `writer.rs`.

use super::format::strftime_local;
use super::*;
use std::ffi::CString;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing_subscriber::fmt::MakeWriter;

/// An in-memory destination.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Vec<u8>>>);

impl Memory {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Memory {
    type Writer = Memory;

    fn make_writer(&'a self) -> Memory {
        self.clone()
    }
}

fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Runs `f` with the logging layer for `config` as this thread's subscriber; returns the output.
fn capture(config: &Config, f: impl FnOnce()) -> String {
    let mem = Memory::default();
    let fmt = MosquittoFormat::from_config(config)
        .unwrap()
        .with_clock(fixed_clock);
    let layer = tracing_subscriber::fmt::layer()
        .event_format(fmt)
        .with_writer(mem.clone())
        .with_filter(LogTypeFilter(config.log_types));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f);
    mem.text()
}

#[test]
fn mosquitto_line_layout() {
    let out = capture(&Config::default(), || {
        let (id, addr) = ("c1", "127.0.0.1:5000");
        tracing::info!(
            target: log_type::NOTICE,
            "New client connected from {} as {} (p2, c1, k60).",
            addr,
            id
        );
    });
    assert_eq!(
        out,
        "1700000000: New client connected from 127.0.0.1:5000 as c1 (p2, c1, k60).\n"
    );
}

#[test]
fn level_does_not_matter_for_log_type_targets() {
    let out = capture(&Config::default(), || {
        tracing::debug!(target: log_type::ERROR, "e");
        tracing::trace!(target: log_type::INFORMATION, "i");
        tracing::error!(target: log_type::DEBUG, "d (not in the default types)");
    });
    assert_eq!(out, "1700000000: e\n1700000000: i\n");
}

#[test]
fn type_filter_follows_config() {
    let config = Config {
        log_types: LogTypes::NONE.with(LogType::Subscribe).with(LogType::Debug),
        ..Config::default()
    };
    let out = capture(&config, || {
        tracing::info!(target: log_type::SUBSCRIBE, "sub");
        tracing::info!(target: log_type::UNSUBSCRIBE, "unsub");
        tracing::info!(target: log_type::NOTICE, "notice");
        tracing::info!(target: log_type::DEBUG, "debug");
        tracing::info!(target: log_type::WEBSOCKETS, "ws");
    });
    assert_eq!(out, "1700000000: sub\n1700000000: debug\n");

    let mut config = Config::default();
    config.apply_verbose();
    let out = capture(&config, || {
        for t in LogType::ALL {
            match t {
                LogType::Error => tracing::info!(target: log_type::ERROR, "x"),
                LogType::Warning => tracing::info!(target: log_type::WARNING, "x"),
                LogType::Notice => tracing::info!(target: log_type::NOTICE, "x"),
                LogType::Information => tracing::info!(target: log_type::INFORMATION, "x"),
                LogType::Subscribe => tracing::info!(target: log_type::SUBSCRIBE, "x"),
                LogType::Unsubscribe => tracing::info!(target: log_type::UNSUBSCRIBE, "x"),
                LogType::Websockets => tracing::info!(target: log_type::WEBSOCKETS, "x"),
                LogType::Debug => tracing::info!(target: log_type::DEBUG, "x"),
                LogType::Internal => tracing::info!(target: log_type::INTERNAL, "x"),
            }
        }
    });
    assert_eq!(out.lines().count(), LogType::ALL.len());
}

#[test]
fn config_notices_are_logged_under_their_type() {
    let out = capture(
        &Config::default(),
        || log_config_notices(&Config::default()),
    );
    assert_eq!(
        out,
        format!(
            "1700000000: {}\n",
            crate::config::ConfigNotice::LocalOnlyMode
        )
    );
    let config = Config {
        log_types: LogTypes::NONE.with(LogType::Notice),
        ..Config::default()
    };
    let out = capture(&config, || log_config_notices(&Config::default()));
    assert_eq!(out, "", "local only mode is a warning");
    let out = capture(&config, || {
        for t in LogType::ALL {
            log_at(t, format_args!("{t}"));
        }
    });
    assert_eq!(out, "1700000000: notice\n");
}

#[test]
fn log_type_constants_match_config_names() {
    let consts = [
        (log_type::ERROR, LogType::Error),
        (log_type::WARNING, LogType::Warning),
        (log_type::NOTICE, LogType::Notice),
        (log_type::INFORMATION, LogType::Information),
        (log_type::SUBSCRIBE, LogType::Subscribe),
        (log_type::UNSUBSCRIBE, LogType::Unsubscribe),
        (log_type::WEBSOCKETS, LogType::Websockets),
        (log_type::DEBUG, LogType::Debug),
        (log_type::INTERNAL, LogType::Internal),
    ];
    for (name, t) in consts {
        assert_eq!(LogType::from_name(name), Some(t));
    }
}

#[test]
fn other_targets_are_typed_by_level_and_named() {
    let out = capture(&Config::default(), || {
        tracing::error!(target: "glommio::executor", "stalled");
        tracing::warn!(target: "glommio::net", "slow");
        tracing::info!(target: "glommio::io", "hidden: info of others is debug");
    });
    assert_eq!(
        out,
        "1700000000: glommio::executor: stalled\n1700000000: glommio::net: slow\n"
    );
    let config = Config {
        log_types: LogTypes::NONE.with(LogType::Debug),
        ..Config::default()
    };
    let out = capture(&config, || {
        tracing::info!(target: "glommio::io", "shown");
        tracing::warn!(target: "glommio::net", "hidden");
    });
    assert_eq!(out, "1700000000: glommio::io: shown\n");
}

#[test]
fn log_crate_records_name_their_real_target() {
    // What tracing-log's bridge dispatches for a `log` record: target "log", the real one in a field.
    let out = capture(&Config::default(), || {
        tracing::event!(target: "log", Level::WARN, log.target = "glommio::sys", log.line = 7, "from log");
    });
    assert_eq!(out, "1700000000: glommio::sys: from log\n");
    assert_eq!(
        log_crate_max_level(LogTypes::DEFAULT),
        log::LevelFilter::Warn
    );
    assert_eq!(log_crate_max_level(LogTypes::ALL), log::LevelFilter::Trace);
    assert_eq!(
        log_crate_max_level(LogTypes::NONE.with(LogType::Error)),
        log::LevelFilter::Error
    );
    assert_eq!(log_crate_max_level(LogTypes::NONE), log::LevelFilter::Off);
}

/// The only test that installs the global subscriber (a process may do it once).
#[test]
fn init_installs_global_logging_and_the_log_bridge() {
    let dir = std::env::temp_dir().join(format!("shardmq-logging-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.log");
    let config = Config {
        log_dest: vec![LogDest::File(path.clone())],
        ..Config::default()
    };
    let guard = init(&config).unwrap();
    tracing::info!(target: log_type::NOTICE, "global notice");
    log::warn!(target: "glommio::sys", "bridged warning");
    log::info!(target: "glommio::sys", "filtered: info of others is debug");
    tracing::debug!(target: log_type::DEBUG, "filtered: debug not configured");
    assert_eq!(log::max_level(), log::LevelFilter::Warn);
    assert!(matches!(
        init(&config),
        Err(LoggingError::AlreadyInitialized { .. })
    ));
    drop(guard);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with(": global notice"), "{text}");
    assert!(
        lines[1].ends_with(": glommio::sys: bridged warning"),
        "{text}"
    );
}

#[test]
fn extra_fields_follow_the_message() {
    let out = capture(&Config::default(), || {
        tracing::info!(target: log_type::NOTICE, shard = 3, client = "c1", "Shard started.");
    });
    assert_eq!(out, "1700000000: Shard started. shard=3 client=c1\n");
}

#[test]
fn timestamp_off_and_strftime() {
    let config = Config {
        log_timestamp: false,
        ..Config::default()
    };
    let out = capture(&config, || tracing::info!(target: log_type::NOTICE, "bare"));
    assert_eq!(out, "bare\n");

    let config = Config {
        log_timestamp_format: Some(TimestampFormat::parse("%Y-%m-%dT%H:%M:%S").unwrap()),
        ..Config::default()
    };
    let out = capture(&config, || {
        tracing::info!(target: log_type::NOTICE, "one");
        tracing::info!(target: log_type::NOTICE, "two");
    });
    // 1700000000 is 2023-11-14T22:13:20Z; local time is within a day of it.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, msg) in lines.iter().zip(["one", "two"]) {
        assert!(line.starts_with("2023-11-1"), "{line}");
        assert!(line.ends_with(&format!(":20: {msg}")), "{line}");
        assert_eq!(line.len(), "2023-11-14T22:13:20: ".len() + msg.len());
    }

    let mut out = String::new();
    strftime_local(1_700_000_000, &CString::new("%s").unwrap(), &mut out);
    assert_eq!(out, "1700000000");
}
