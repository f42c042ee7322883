//! `mosquitto.conf`-style configuration, with shardmq's additions (`shards`, `cpu_affinity`, `cpu_set`,
//! `listen_backlog`).
//!
//! The file format is Mosquitto 2.0's: one `key value...` per line, `#` starts a comment line, keys are
//! case-sensitive, later lines win unless the key accumulates (`listener`, `log_dest`, `log_type`).
//! Every key Mosquitto 2.0 documents is recognised: the ones shardmq implements are parsed with
//! Mosquitto's defaults and limits, the others are refused with [`ConfigError::Unsupported`] so that
//! nothing in an existing `mosquitto.conf` is silently ignored. A key nobody knows is refused with the
//! nearest known key as a suggestion.
//!
//! Concurrency: parsing runs once on the main thread before any shard starts. The resulting [`Config`]
//! is plain data, read-only from then on, and cloned or borrowed by every shard.

use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Mosquitto's default `auto_id_prefix`.
pub const DEFAULT_AUTO_ID_PREFIX: &str = "auto-";

/// The commented default configuration (`docs/shardmq.conf`), shipped inside the binary.
pub const DEFAULT_CONFIG_TEXT: &str = include_str!("../docs/shardmq.conf");

/// The MQTT port Mosquitto listens on when nothing else is said.
pub const DEFAULT_PORT: u16 = 1883;

/// Where "local only mode" binds: Mosquitto 2.0 without a configured listener accepts local clients only.
pub const LOCAL_ONLY_BIND_ADDRESS: &str = "127.0.0.1";

/// The largest packet MQTT can express (a 4-byte remaining length plus the fixed header's limit).
pub const MQTT_MAX_PACKET_SIZE: u32 = 268_435_455;

/// Mosquitto refuses a `max_packet_size` below this: no useful CONNECT fits in fewer bytes.
pub const MIN_MAX_PACKET_SIZE: u32 = 20;

/// Mosquitto accepts at most this many `-p` options.
pub const MAX_COMMAND_LINE_PORTS: usize = 10;

/// Default `listen(2)` backlog for each listener socket.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;

/// One socket address to accept MQTT connections on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// TCP port, 1..=65535.
    pub port: u16,
    /// IP address or host name to bind; `None` binds every interface (IPv4 and IPv6, like Mosquitto).
    pub bind_address: Option<String>,
    /// Most clients connected through this listener at once; `None` is unlimited (Mosquitto's `-1`).
    pub max_connections: Option<u32>,
    /// `use_username_as_clientid`: a client's username replaces its client id (no username: refused).
    pub use_username_as_clientid: bool,
}

impl ListenerConfig {
    /// A listener on `port` bound to every interface, with no connection limit.
    pub fn any_interface(port: u16) -> Self {
        ListenerConfig {
            port,
            bind_address: None,
            max_connections: None,
            use_username_as_clientid: false,
        }
    }

    /// The loopback-only listener Mosquitto 2.0 opens in local only mode.
    pub fn local_only(port: u16) -> Self {
        ListenerConfig {
            port,
            bind_address: Some(LOCAL_ONLY_BIND_ADDRESS.to_owned()),
            max_connections: None,
            use_username_as_clientid: false,
        }
    }
}

/// Where log lines go (`log_dest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    /// The process's standard error (Mosquitto's default).
    Stderr,
    /// The process's standard output.
    Stdout,
    /// A file, opened for appending.
    File(PathBuf),
}

/// One Mosquitto log type (`log_type`). Broker code names it as the tracing target, e.g.
/// `tracing::info!(target: "notice", ...)`; see `crate::logging::log_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogType {
    /// Failures that stop something from working.
    Error,
    /// Something looks wrong but the broker carries on.
    Warning,
    /// Start-up, shutdown and listener messages.
    Notice,
    /// Client connects and disconnects.
    Information,
    /// Each SUBSCRIBE.
    Subscribe,
    /// Each UNSUBSCRIBE.
    Unsubscribe,
    /// WebSocket transport messages.
    Websockets,
    /// Packet-level tracing (every packet sent and received).
    Debug,
    /// Mosquitto's internal messages; accepted for compatibility.
    Internal,
}

impl LogType {
    /// Every log type, in Mosquitto's documentation order.
    pub const ALL: [LogType; 9] = [
        LogType::Error,
        LogType::Warning,
        LogType::Notice,
        LogType::Information,
        LogType::Subscribe,
        LogType::Unsubscribe,
        LogType::Websockets,
        LogType::Debug,
        LogType::Internal,
    ];

    /// The name used in `log_type` lines and as the tracing target.
    pub const fn name(self) -> &'static str {
        match self {
            LogType::Error => "error",
            LogType::Warning => "warning",
            LogType::Notice => "notice",
            LogType::Information => "information",
            LogType::Subscribe => "subscribe",
            LogType::Unsubscribe => "unsubscribe",
            LogType::Websockets => "websockets",
            LogType::Debug => "debug",
            LogType::Internal => "internal",
        }
    }

    /// The log type with this name, if any.
    pub fn from_name(name: &str) -> Option<LogType> {
        LogType::ALL.into_iter().find(|t| t.name() == name)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for LogType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`LogType`]s: which messages are written.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogTypes(u16);

impl LogTypes {
    /// Nothing is logged (`log_type none`).
    pub const NONE: LogTypes = LogTypes(0);
    /// Everything is logged (`log_type all`, or `-v`).
    pub const ALL: LogTypes = LogTypes((1 << LogType::ALL.len()) - 1);
    /// Mosquitto's default: error, warning, notice and information.
    pub const DEFAULT: LogTypes = LogTypes(
        LogType::Error.bit()
            | LogType::Warning.bit()
            | LogType::Notice.bit()
            | LogType::Information.bit(),
    );

    /// Whether messages of type `t` are logged.
    pub const fn contains(self, t: LogType) -> bool {
        self.0 & t.bit() != 0
    }

    /// This set with `t` added.
    pub const fn with(self, t: LogType) -> LogTypes {
        LogTypes(self.0 | t.bit())
    }

    /// Adds `t`.
    pub fn insert(&mut self, t: LogType) {
        self.0 |= t.bit();
    }

    /// The members, in [`LogType::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = LogType> {
        LogType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl Default for LogTypes {
    fn default() -> Self {
        LogTypes::DEFAULT
    }
}

impl fmt::Debug for LogTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(LogType::name))
            .finish()
    }
}

/// A validated `log_timestamp_format`: a strftime(3) pattern, rendered in local time like Mosquitto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampFormat(String);

/// strftime conversion characters glibc and musl both understand.
const STRFTIME_CONVERSIONS: &str = "aAbBcCdDeFgGhHIjklmMnpPrRsStTuUVwWxXyYzZ%+";

impl TimestampFormat {
    /// Checks `pattern`: non-empty, no NUL, every `%` followed by a known conversion (optionally with
    /// the `E`/`O` modifiers or a glibc flag and width, e.g. `%-d`, `%3N` is not accepted).
    pub fn parse(pattern: &str) -> Result<TimestampFormat, ValueProblem> {
        if pattern.is_empty() {
            return Err(ValueProblem::Empty);
        }
        if pattern.contains('\0') {
            return Err(ValueProblem::NulByte);
        }
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                continue;
            }
            let mut conv = chars.next();
            // glibc flags and field width, then the E/O modifiers.
            while matches!(conv, Some('_' | '-' | '0' | '^' | '#')) {
                conv = chars.next();
            }
            while matches!(conv, Some('0'..='9')) {
                conv = chars.next();
            }
            if matches!(conv, Some('E' | 'O')) {
                conv = chars.next();
            }
            match conv {
                Some(c) if STRFTIME_CONVERSIONS.contains(c) => {}
                Some(c) => return Err(ValueProblem::UnknownStrftimeConversion(c)),
                None => return Err(ValueProblem::TrailingPercent),
            }
        }
        Ok(TimestampFormat(pattern.to_owned()))
    }

    /// The pattern as written in the config file.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Something worth logging that the config raised but that does not stop the broker. `main` logs these
/// once logging is set up, at the log type [`ConfigNotice::log_type`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigNotice {
    /// A key Mosquitto deprecated (`port`, `bind_address`); it still works.
    Deprecated {
        /// The file it was found in.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The deprecated key.
        key: &'static str,
    },
    /// A key Mosquitto 2.0 itself ignores with a warning (`retry_interval`).
    Obsolete {
        /// The file it was found in.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The obsolete key.
        key: &'static str,
    },
    /// `port` given more than once: the last one is used.
    PortRepeated {
        /// The file of the repeated `port`.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// An `include_dir` file was read.
    IncludedFile {
        /// The included file.
        path: PathBuf,
    },
    /// No listener was configured: only local clients can connect.
    LocalOnlyMode,
    /// `allow_anonymous false` was set but local only mode allows anonymous clients regardless.
    AnonymousForcedInLocalOnly,
    /// `-p` was given but the config file defines listeners, so (like Mosquitto 2.0) the ports are ignored.
    CommandLinePortsIgnored {
        /// The ignored ports.
        ports: Vec<u16>,
    },
}

impl ConfigNotice {
    /// The log type (tracing target) to log this notice under.
    pub fn log_type(&self) -> LogType {
        match self {
            ConfigNotice::Deprecated { .. } | ConfigNotice::IncludedFile { .. } => LogType::Notice,
            ConfigNotice::Obsolete { .. }
            | ConfigNotice::PortRepeated { .. }
            | ConfigNotice::LocalOnlyMode
            | ConfigNotice::AnonymousForcedInLocalOnly
            | ConfigNotice::CommandLinePortsIgnored { .. } => LogType::Warning,
        }
    }
}

impl fmt::Display for ConfigNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigNotice::Deprecated { file, line, key } => write!(
                f,
                "The '{key}' option ({}:{line}) is deprecated and will be removed in a future version. \
                 Please use 'listener' instead.",
                file.display()
            ),
            ConfigNotice::Obsolete { file, line, key } => write!(
                f,
                "Warning: The {key} option ({}:{line}) is no longer available.",
                file.display()
            ),
            ConfigNotice::PortRepeated { file, line } => write!(
                f,
                "Warning: Default listener port specified multiple times ({}:{line}). Only the latest will be used.",
                file.display()
            ),
            ConfigNotice::IncludedFile { path } => {
                write!(f, "Loading config file {}", path.display())
            }
            ConfigNotice::LocalOnlyMode => f.write_str(
                "Starting in local only mode. Connections will only be possible from clients running on \
                 this machine. Create a configuration file which defines a listener to allow remote access.",
            ),
            ConfigNotice::AnonymousForcedInLocalOnly => f.write_str(
                "Warning: allow_anonymous false has no effect in local only mode: define a listener to \
                 require authentication.",
            ),
            ConfigNotice::CommandLinePortsIgnored { ports } => {
                write!(
                    f,
                    "Warning: -p options ignored because the configuration file defines listeners: "
                )?;
                for (i, p) in ports.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// What was wrong with a value; the `reason` of [`ConfigError::InvalidValue`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    /// Not an integer.
    #[error("not an integer")]
    NotAnInteger,
    /// An integer outside the allowed range.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// Not `true`, `false`, `1` or `0`.
    #[error("expected true or false")]
    NotABoolean,
    /// `max_packet_size` between 1 and 19.
    #[error("must be 0 (no limit) or at least {MIN_MAX_PACKET_SIZE}")]
    PacketSizeTooSmall,
    /// A `log_type` nobody knows.
    #[error(
        "expected one of error, warning, notice, information, subscribe, unsubscribe, websockets, \
         debug, internal, all, none"
    )]
    UnknownLogType,
    /// A `log_dest` nobody knows.
    #[error("expected one of stderr, stdout, file PATH, none")]
    UnknownLogDest,
    /// A `protocol` nobody knows.
    #[error("expected mqtt")]
    UnknownProtocol,
    /// Not a positive whole number followed by h, d, w, m or y (or s).
    #[error(
        "expected a positive number and a unit: h (hours), d, w, m (30 days), y, or s (seconds)"
    )]
    Duration,
    /// A `listener 0` without a Unix socket path.
    #[error("port 0 is only valid with a Unix socket path")]
    PortZero,
    /// A malformed `cpu_set` list.
    #[error("expected a CPU list such as 0-3,8-11")]
    BadCpuList,
    /// A CPU named twice in `cpu_set`.
    #[error("CPU {0} is listed twice")]
    RepeatedCpu(usize),
    /// An empty string value.
    #[error("must not be empty")]
    Empty,
    /// A NUL byte in a string value.
    #[error("must not contain a NUL byte")]
    NulByte,
    /// A `%` conversion strftime does not know.
    #[error("unknown strftime conversion %{0} (try %Y-%m-%dT%H:%M:%S)")]
    UnknownStrftimeConversion(char),
    /// A `%` at the end of the format.
    #[error("ends with a lone %")]
    TrailingPercent,
}

/// How many values a key takes; the `expected` of [`ConfigError::Arity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly one word.
    One,
    /// One or two words.
    OneOrTwo,
    /// A non-empty rest of line (may contain spaces).
    Text,
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arity::One => "exactly one value",
            Arity::OneOrTwo => "one or two values",
            Arity::Text => "a value",
        })
    }
}

/// Why a configuration could not be loaded. Every variant that comes from a line names the file and the
/// 1-based line number.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file (or an included one) could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// An `include_dir` directory could not be listed.
    #[error("cannot read include_dir {} at {}:{line}: {source}", dir.display(), file.display())]
    IncludeDir {
        /// The directory.
        dir: PathBuf,
        /// The file holding the `include_dir` line.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The I/O error.
        source: io::Error,
    },
    /// `include_dir` in an included file: Mosquitto only reads it from the main file.
    #[error("`include_dir` at {}:{line} is only allowed in the main config file", file.display())]
    NestedIncludeDir {
        /// The included file holding the `include_dir` line.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// An `include_dir` directory contains the main config file, which would be read twice.
    #[error("include_dir at {}:{line} contains the main config file {}", file.display(), main.display())]
    IncludeDirContainsMainFile {
        /// The file holding the `include_dir` line.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The main config file.
        main: PathBuf,
    },
    /// A key that is neither Mosquitto's nor shardmq's.
    #[error(
        "unknown option `{key}` at {}:{line}{}",
        file.display(),
        suggestion.map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()
    )]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key as written.
        key: String,
        /// The nearest known key, if one is within edit distance 3.
        suggestion: Option<&'static str>,
    },
    /// A Mosquitto option (or option value) shardmq does not implement yet.
    #[error(
        "`{key}{}` at {}:{line} is a Mosquitto option shardmq does not support yet",
        value.as_ref().map(|v| format!(" {v}")).unwrap_or_default(),
        file.display()
    )]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key as written.
        key: String,
        /// The unsupported value, when only some values are unsupported (`persistence true`).
        value: Option<String>,
    },
    /// Too few or too many values.
    #[error("`{key}` at {}:{line} takes {expected}, found {found}", file.display())]
    Arity {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
        /// What it takes.
        expected: Arity,
        /// How many words were given.
        found: usize,
    },
    /// A value that does not parse or is out of range.
    #[error("invalid value `{value}` for `{key}` at {}:{line}: {reason}", file.display())]
    InvalidValue {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: ValueProblem,
    },
    /// A key that may be given only once (`pid_file`, `log_dest file`, ...), given again.
    #[error("duplicate `{key}` at {}:{line}", file.display())]
    Duplicate {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// Two listeners on the same port and address.
    #[error(
        "listener {port} on {} is defined twice (note: `port`, `bind_address` and `max_connections` \
         before the first `listener` define Mosquitto's default listener, port {DEFAULT_PORT} on all \
         interfaces unless set)",
        bind_address.as_deref().unwrap_or("all interfaces")
    )]
    DuplicateListener {
        /// The port.
        port: u16,
        /// The bind address, `None` for all interfaces.
        bind_address: Option<String>,
    },
    /// More `-p` options than Mosquitto allows.
    #[error("only {MAX_COMMAND_LINE_PORTS} ports can be given on the command line, got {count}")]
    TooManyPorts {
        /// How many were given.
        count: usize,
    },
    /// `cpu_set` names a CPU this process may not run on.
    #[error("cpu_set names CPU {cpu}, which this process may not run on (allowed: {available:?})")]
    CpuNotAvailable {
        /// The CPU.
        cpu: usize,
        /// The CPUs the process may run on.
        available: Vec<usize>,
    },
    /// The process's CPU affinity could not be read.
    #[error("cannot read the CPUs this process may run on: {source}")]
    Affinity {
        /// The I/O error from sched_getaffinity(2).
        source: io::Error,
    },
}

/// The whole broker configuration. Built by [`Config::load`] / [`Config::parse_str`] or
/// [`Config::default`], adjusted by the command line (`crate::cli::load_config`), then read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The main config file this was read from; `None` for the built-in defaults. Logged at start-up.
    pub config_file: Option<PathBuf>,
    /// Listeners to open, in config order (the deprecated `port`/`bind_address` default listener last,
    /// as in Mosquitto). Never empty.
    pub listeners: Vec<ListenerConfig>,
    /// No `listener`, `port` or `bind_address` was configured: Mosquitto 2.0's "local only mode", where
    /// `listeners` is loopback-only. Mosquitto also binds `::1` then; transport may try it, best-effort.
    pub local_only: bool,
    /// Clients without a username may connect. Mosquitto 2.0: false once a listener is configured, true
    /// (forced) in local only mode.
    pub allow_anonymous: bool,
    /// Outgoing QoS 1/2 messages in flight per client; 0 = no limit. Mosquitto default 20.
    pub max_inflight_messages: u16,
    /// QoS 1/2 messages queued per client above those in flight; 0 = no limit. Default 1000.
    pub max_queued_messages: u32,
    /// Bytes queued per client above those in flight; 0 = no limit (default). The first limit hit wins.
    pub max_queued_bytes: u64,
    /// Queue QoS 0 messages for disconnected persistent sessions too (counted in the limits). Default false.
    pub queue_qos0_messages: bool,
    /// Largest MQTT packet accepted, in bytes, and announced to v5 clients. Default (and `0`):
    /// [`MQTT_MAX_PACKET_SIZE`].
    pub max_packet_size: u32,
    /// Largest keepalive a v5 client may use (longer ones get a server keepalive); 0 lets clients disable
    /// keepalive. Default 65535.
    pub max_keepalive_s: u16,
    /// Retained messages are supported; when false a PUBLISH with retain set disconnects the client.
    pub retain_available: bool,
    /// Set TCP_NODELAY on client sockets. Default true (Mosquitto: false): the writer coalesces already.
    pub set_tcp_nodelay: bool,
    /// Seconds between `$SYS` updates; 0 disables `$SYS`. Default 10.
    pub sys_interval_s: u32,
    /// Where log lines go, in order, without repeats; empty = `log_dest none`. Default stderr.
    pub log_dest: Vec<LogDest>,
    /// Which log types are written. Default error, warning, notice, information; `-v` makes it all.
    pub log_types: LogTypes,
    /// Prefix each log line with a timestamp. Default true.
    pub log_timestamp: bool,
    /// strftime pattern for that timestamp; `None` writes Unix seconds (Mosquitto's default).
    pub log_timestamp_format: Option<TimestampFormat>,
    /// Log client connects and disconnects. Default true.
    pub connection_messages: bool,
    /// Mosquitto's per-listener security; only `false` is supported, kept for completeness.
    pub per_listener_settings: bool,
    /// Mosquitto's on-disk persistence; only `false` is supported, kept for completeness.
    pub persistence: bool,
    /// User to switch to when started as root. `None` = Mosquitto's default (`mosquitto`, else `nobody`).
    pub user: Option<String>,
    /// File to write the process id to; `None` writes none (default).
    pub pid_file: Option<PathBuf>,
    /// Mosquitto `password_file` (hashes made by `mosquitto_passwd`): clients with a username must match
    /// it. `None` (default): `allow_anonymous` alone decides.
    pub password_file: Option<PathBuf>,
    /// Mosquitto `acl_file`: which topics each client may read and write. `None` (default): all topics.
    pub acl_file: Option<PathBuf>,
    /// Accept an empty client id (3.1.1 with clean session, 5.0) and assign one. Default true.
    pub allow_zero_length_clientid: bool,
    /// Prefix of the client ids the broker assigns. Default `auto-`.
    pub auto_id_prefix: String,
    /// Only client ids starting with this may connect (others: not authorised). Default: any.
    pub clientid_prefixes: Option<String>,
    /// `persistent_client_expiration`: disconnected persistent sessions are removed after this long.
    /// Default: never (v5 sessions still expire after their own Session Expiry Interval).
    pub persistent_client_expiration: Option<Duration>,
    /// `upgrade_outgoing_qos`: deliver at the subscription's QoS even above the publish's. Default false.
    pub upgrade_outgoing_qos: bool,
    /// Number of shards (executor threads); `None` = one per CPU this process may run on (or per
    /// `cpu_set` entry).
    pub shards: Option<NonZeroUsize>,
    /// Pin shard i to the i-th CPU of `cpu_set` when there are no more shards than CPUs. `None` (unset):
    /// pin only when `cpu_set` names the CPUs. Unpinned is the default because on a machine shared with
    /// clients (or a VM) a pinned shard cannot move off a CPU the kernel or a client is using, and every
    /// wake-up of it on an idle CPU costs an inter-processor interrupt: measured on 2 cores, pinned shards
    /// had 1.1-1.5x the median latency at 1000 msg/s and no more throughput (docs/PERFORMANCE.md).
    pub cpu_affinity: Option<bool>,
    /// CPUs the shards are pinned to, in order; `None` = every CPU this process may run on.
    pub cpu_set: Option<Vec<usize>>,
    /// `listen(2)` backlog of each listener socket. Default [`DEFAULT_LISTEN_BACKLOG`].
    pub listen_backlog: u32,
    /// `-v`: every log type is written, whatever `log_type` says.
    pub verbose: bool,
    /// `-d`: run in the background.
    pub daemon: bool,
    /// Things to log at start-up (deprecations, local only mode, ...), in the order they arose.
    pub notices: Vec<ConfigNotice>,
}

impl Default for Config {
    /// Mosquitto 2.0 without a config file: local only mode on 127.0.0.1:1883, anonymous clients allowed.
    fn default() -> Self {
        Config {
            config_file: None,
            listeners: vec![ListenerConfig::local_only(DEFAULT_PORT)],
            local_only: true,
            allow_anonymous: true,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            max_packet_size: MQTT_MAX_PACKET_SIZE,
            max_keepalive_s: 65535,
            retain_available: true,
            set_tcp_nodelay: true,
            sys_interval_s: 10,
            log_dest: vec![LogDest::Stderr],
            log_types: LogTypes::DEFAULT,
            log_timestamp: true,
            log_timestamp_format: None,
            connection_messages: true,
            per_listener_settings: false,
            persistence: false,
            user: None,
            pid_file: None,
            password_file: None,
            acl_file: None,
            allow_zero_length_clientid: true,
            auto_id_prefix: DEFAULT_AUTO_ID_PREFIX.to_owned(),
            clientid_prefixes: None,
            persistent_client_expiration: None,
            upgrade_outgoing_qos: false,
            shards: None,
            cpu_affinity: None,
            cpu_set: None,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            verbose: false,
            daemon: false,
            notices: vec![ConfigNotice::LocalOnlyMode],
        }
    }
}

impl Config {
    /// Reads and parses the config file at `path` (and any `include_dir` it names).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse_str(&text, path)
    }

    /// Parses config text. `origin` is the file it came from: named in errors, and the directory a
    /// relative `include_dir` is resolved against.
    pub fn parse_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut parser = Parser::new(origin);
        parser.parse_text(text, origin, 0)?;
        parser.finish()
    }

    /// Applies `-p` ports the way Mosquitto 2.0 does: in local only mode they replace the default port
    /// (still loopback only); when the file defines listeners they are ignored, with a notice.
    pub fn apply_command_line_ports(&mut self, ports: &[u16]) -> Result<(), ConfigError> {
        if ports.len() > MAX_COMMAND_LINE_PORTS {
            return Err(ConfigError::TooManyPorts { count: ports.len() });
        }
        if ports.is_empty() {
            return Ok(());
        }
        if self.local_only {
            let max_connections = self.listeners.first().and_then(|l| l.max_connections);
            self.listeners = ports
                .iter()
                .map(|&port| ListenerConfig {
                    max_connections,
                    ..ListenerConfig::local_only(port)
                })
                .collect();
        } else {
            self.notices.push(ConfigNotice::CommandLinePortsIgnored {
                ports: ports.to_vec(),
            });
        }
        Ok(())
    }

    /// Applies `-v`: every log type is written, overriding `log_type`.
    pub fn apply_verbose(&mut self) {
        self.verbose = true;
        self.log_types = LogTypes::ALL;
    }

    /// Decides how many shards run and which CPU each is pinned to, on the CPUs this process may use.
    pub fn shard_placement(&self) -> Result<ShardPlacement, ConfigError> {
        let available = available_cpus().map_err(|source| ConfigError::Affinity { source })?;
        self.shard_placement_on(&available)
    }

    /// [`Config::shard_placement`] for a given set of usable CPUs (sorted ascending); for tests and tuning.
    pub fn shard_placement_on(&self, available: &[usize]) -> Result<ShardPlacement, ConfigError> {
        let cores: Vec<usize> = match &self.cpu_set {
            Some(set) => {
                if let Some(&cpu) = set.iter().find(|c| !available.contains(c)) {
                    return Err(ConfigError::CpuNotAvailable {
                        cpu,
                        available: available.to_vec(),
                    });
                }
                set.clone()
            }
            None => available.to_vec(),
        };
        let shards = match self.shards {
            Some(n) => n.get(),
            None => cores.len().max(1),
        };
        let pin = self.cpu_affinity.unwrap_or(self.cpu_set.is_some()) && shards <= cores.len();
        let cpus = (0..shards)
            .map(|i| if pin { cores.get(i).copied() } else { None })
            .collect();
        Ok(ShardPlacement { shards, cpus })
    }
}

/// How shards map onto CPUs; from [`Config::shard_placement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlacement {
    /// Number of shards to start (at least 1).
    pub shards: usize,
    /// CPU each shard is pinned to, indexed by shard id; all `None` unless pinning is asked for (`cpu_set`
    /// or `cpu_affinity true`), and when there are more shards than CPUs (pinning two executors to one
    /// core would make them fight).
    pub cpus: Vec<Option<usize>>,
}

/// CPUs this process may run on (its sched_getaffinity(2) mask), ascending.
pub fn available_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data for which all-zeroes is the empty set; sched_getaffinity writes at
    // most size_of::<cpu_set_t>() bytes into it and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect())
    }
}

/// Options shardmq implements (Mosquitto's and its own); used for suggestions.
#[rustfmt::skip]
const SUPPORTED_KEYS: &[&str] = &[
    "acl_file", "allow_anonymous", "allow_zero_length_clientid", "auto_id_prefix", "bind_address",
    "clientid_prefixes", "connection_messages", "cpu_affinity", "cpu_set", "include_dir", "listen_backlog", "listener", "log_dest", "log_timestamp", "log_timestamp_format",
    "log_type", "max_connections", "max_inflight_messages", "max_keepalive", "max_packet_size",
    "max_queued_bytes", "max_queued_messages", "password_file", "per_listener_settings", "persistence",
    "persistent_client_expiration",
    "pid_file", "port", "protocol", "queue_qos0_messages", "retain_available", "retained_persistence",
    "retry_interval", "set_tcp_nodelay", "shards", "sys_interval", "upgrade_outgoing_qos",
    "use_username_as_clientid", "user",
];

/// Every other option Mosquitto 2.0 reads (mosquitto.conf(5) and src/conf.c); refused as unsupported.
#[rustfmt::skip]
const UNSUPPORTED_KEYS: &[&str] = &[
    "address", "addresses", "allow_duplicate_messages", "auth_plugin",
    "auth_plugin_deny_special_chars", "autosave_interval",
    "autosave_on_changes", "bind_interface", "bridge_alpn", "bridge_attempt_unsubscribe",
    "bridge_bind_address", "bridge_cafile", "bridge_capath", "bridge_certfile", "bridge_identity",
    "bridge_insecure", "bridge_keyfile", "bridge_max_packet_size", "bridge_outgoing_retain",
    "bridge_protocol_version", "bridge_psk", "bridge_require_ocsp", "bridge_tls_version", "cafile",
    "capath", "certfile", "check_retain_source", "ciphers", "ciphers_tls1.3", "cleansession",
    "clientid", "connection", "crlfile", "dhparamfile", "http_dir", "idle_timeout",
    "keepalive_interval", "keyfile", "local_cleansession", "local_clientid", "local_password",
    "local_username", "log_facility", "max_inflight_bytes", "max_qos", "max_topic_alias", "maximum_qos",
    "memory_limit", "message_size_limit", "mount_point", "notification_topic", "notifications",
    "notifications_local_only", "password", "persistence_file", "persistence_location",
    "plugin", "psk_file", "psk_hint", "remote_clientid",
    "remote_password", "remote_username", "require_certificate", "restart_timeout", "round_robin",
    "socket_domain", "start_type", "threshold", "tls_engine", "tls_engine_kpass_sha1", "tls_keyform",
    "tls_version", "topic", "try_private", "use_identity_as_username",
    "use_subject_as_username", "username", "websockets_headers_size",
    "websockets_log_level",
];

/// Key prefixes Mosquitto passes to plugins (`auth_opt_*`, `plugin_opt_*`); refused as unsupported.
const UNSUPPORTED_PREFIXES: &[&str] = &["auth_opt_", "plugin_opt_"];

/// `persistent_client_expiration`'s value as Mosquitto reads it: a positive count and a unit, `h`, `d`,
/// `w`, `m` (30 days) or `y` (365 days), e.g. `14d`. shardmq also takes `s` (seconds), which Mosquitto
/// does not, for setups (and tests) that need a short one.
fn parse_expiration(v: &str) -> Option<Duration> {
    let unit = v.chars().last()?;
    let secs_per_unit: u64 = match unit {
        's' => 1,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return None,
    };
    let count: u64 = v[..v.len() - 1].parse().ok().filter(|&n| n > 0)?;
    Some(Duration::from_secs(count.checked_mul(secs_per_unit)?))
}

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
fn suggest(key: &str) -> Option<&'static str> {
    SUPPORTED_KEYS
        .iter()
        .chain(UNSUPPORTED_KEYS)
        .map(|&k| (edit_distance(key, k), k))
        .filter(|&(d, _)| d <= 3)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Mosquitto's include_dir order: case-insensitive first, then upper case before lower case.
fn mosquitto_file_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        let by_upper = x.to_ascii_uppercase().cmp(&y.to_ascii_uppercase());
        if by_upper.is_ne() {
            return by_upper;
        }
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Where one line came from, for errors and notices.
struct Line<'a> {
    file: &'a Path,
    number: usize,
}

impl Line<'_> {
    fn arity(&self, key: &'static str, expected: Arity, found: usize) -> ConfigError {
        ConfigError::Arity {
            file: self.file.to_owned(),
            line: self.number,
            key,
            expected,
            found,
        }
    }

    fn invalid(&self, key: &'static str, value: &str, reason: ValueProblem) -> ConfigError {
        ConfigError::InvalidValue {
            file: self.file.to_owned(),
            line: self.number,
            key,
            value: value.to_owned(),
            reason,
        }
    }

    fn duplicate(&self, key: &'static str) -> ConfigError {
        ConfigError::Duplicate {
            file: self.file.to_owned(),
            line: self.number,
            key,
        }
    }

    fn unsupported(&self, key: &str, value: Option<&str>) -> ConfigError {
        ConfigError::Unsupported {
            file: self.file.to_owned(),
            line: self.number,
            key: key.to_owned(),
            value: value.map(str::to_owned),
        }
    }

    /// The value's words, up to a word starting with `#` (a trailing comment, as Mosquitto tolerates).
    fn words<'v>(&self, rest: &'v str) -> Vec<&'v str> {
        rest.split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .collect()
    }

    fn one<'v>(&self, key: &'static str, rest: &'v str) -> Result<&'v str, ConfigError> {
        match self.words(rest).as_slice() {
            [w] => Ok(w),
            other => Err(self.arity(key, Arity::One, other.len())),
        }
    }

    /// The whole rest of the line (it may contain spaces), like Mosquitto's string options.
    fn text<'v>(&self, key: &'static str, rest: &'v str) -> Result<&'v str, ConfigError> {
        if rest.is_empty() {
            return Err(self.arity(key, Arity::Text, 0));
        }
        if rest.contains('\0') {
            return Err(self.invalid(key, rest, ValueProblem::NulByte));
        }
        Ok(rest)
    }

    fn bool(&self, key: &'static str, rest: &str) -> Result<bool, ConfigError> {
        match self.one(key, rest)? {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(self.invalid(key, other, ValueProblem::NotABoolean)),
        }
    }

    fn int(&self, key: &'static str, rest: &str) -> Result<i64, ConfigError> {
        let w = self.one(key, rest)?;
        w.parse::<i64>()
            .map_err(|_| self.invalid(key, w, ValueProblem::NotAnInteger))
    }

    fn int_in(
        &self,
        key: &'static str,
        rest: &str,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let v = self.int(key, rest)?;
        if v < min || v > max {
            return Err(self.invalid(key, &v.to_string(), ValueProblem::OutOfRange { min, max }));
        }
        Ok(v)
    }

    /// An integer where Mosquitto reads any negative value as "no limit" (0), capped at `max`.
    fn limit(&self, key: &'static str, rest: &str, max: i64) -> Result<i64, ConfigError> {
        let v = self.int(key, rest)?;
        if v > max {
            return Err(self.invalid(
                key,
                &v.to_string(),
                ValueProblem::OutOfRange { min: 0, max },
            ));
        }
        Ok(v.max(0))
    }
}

/// Parses a CPU list such as `0-3,8-11` (spaces allowed after commas).
fn parse_cpu_list(text: &str) -> Result<Vec<usize>, ValueProblem> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| ValueProblem::BadCpuList)?;
        let hi: usize = hi.parse().map_err(|_| ValueProblem::BadCpuList)?;
        if lo > hi || hi >= libc::CPU_SETSIZE as usize {
            return Err(ValueProblem::BadCpuList);
        }
        for cpu in lo..=hi {
            if cpus.contains(&cpu) {
                return Err(ValueProblem::RepeatedCpu(cpu));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

/// The listener a per-listener option (`max_connections`) applies to.
#[derive(Clone, Copy)]
enum CurrentListener {
    /// Before any `listener` line: Mosquitto's implicit default listener.
    Default,
    /// The listener at this index of `Parser::listeners`.
    Explicit(usize),
}

/// Parse state carried across the main file and its includes.
struct Parser {
    config: Config,
    main_file: PathBuf,
    listeners: Vec<ListenerConfig>,
    current: CurrentListener,
    default_port: Option<u16>,
    default_bind_address: Option<String>,
    default_max_connections: Option<Option<u32>>,
    default_use_username_as_clientid: Option<bool>,
    local_only: bool,
    allow_anonymous: Option<bool>,
    log_dest_set: bool,
    log_type_set: bool,
    has_log_file: bool,
}

impl Parser {
    fn new(main_file: &Path) -> Parser {
        Parser {
            config: Config {
                config_file: Some(main_file.to_owned()),
                notices: Vec::new(),
                ..Config::default()
            },
            main_file: main_file.to_owned(),
            listeners: Vec::new(),
            current: CurrentListener::Default,
            default_port: None,
            default_bind_address: None,
            default_max_connections: None,
            default_use_username_as_clientid: None,
            local_only: true,
            allow_anonymous: None,
            log_dest_set: false,
            log_type_set: false,
            has_log_file: false,
        }
    }

    fn parse_text(&mut self, text: &str, file: &Path, level: usize) -> Result<(), ConfigError> {
        for (index, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (key, rest) = match trimmed.split_once(|c: char| c.is_ascii_whitespace()) {
                Some((key, rest)) => (key, rest.trim()),
                None => (trimmed, ""),
            };
            let line = Line {
                file,
                number: index + 1,
            };
            self.apply(&line, key, rest, level)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        line: &Line<'_>,
        key: &str,
        rest: &str,
        level: usize,
    ) -> Result<(), ConfigError> {
        let c = &mut self.config;
        match key {
            "listener" => self.listener(line, rest)?,
            "port" => {
                let port = line.int_in("port", rest, 1, 65535)? as u16;
                self.local_only = false;
                if self.default_port.is_some() {
                    c.notices.push(ConfigNotice::PortRepeated {
                        file: line.file.to_owned(),
                        line: line.number,
                    });
                }
                self.default_port = Some(port);
                c.notices.push(ConfigNotice::Deprecated {
                    file: line.file.to_owned(),
                    line: line.number,
                    key: "port",
                });
            }
            "bind_address" => {
                let address = line.one("bind_address", rest)?;
                if self.default_bind_address.is_some() {
                    return Err(line.duplicate("bind_address"));
                }
                self.local_only = false;
                self.default_bind_address = Some(address.to_owned());
                c.notices.push(ConfigNotice::Deprecated {
                    file: line.file.to_owned(),
                    line: line.number,
                    key: "bind_address",
                });
            }
            "max_connections" => {
                let v = line.int("max_connections", rest)?;
                let limit = if v < 0 {
                    None
                } else {
                    Some(u32::try_from(v).map_err(|_| {
                        line.invalid(
                            "max_connections",
                            &v.to_string(),
                            ValueProblem::OutOfRange {
                                min: -1,
                                max: i64::from(u32::MAX),
                            },
                        )
                    })?)
                };
                match self.current {
                    CurrentListener::Default => self.default_max_connections = Some(limit),
                    CurrentListener::Explicit(i) => {
                        if let Some(l) = self.listeners.get_mut(i) {
                            l.max_connections = limit;
                        }
                    }
                }
            }
            "allow_anonymous" => self.allow_anonymous = Some(line.bool("allow_anonymous", rest)?),
            "max_inflight_messages" => {
                let v = line.limit("max_inflight_messages", rest, 65535)?;
                // Mosquitto treats 65535 like 0: no limit.
                c.max_inflight_messages = if v == 65535 { 0 } else { v as u16 };
            }
            "max_queued_messages" => {
                c.max_queued_messages =
                    line.limit("max_queued_messages", rest, i64::from(u32::MAX))? as u32;
            }
            "max_queued_bytes" => {
                c.max_queued_bytes = line.limit("max_queued_bytes", rest, i64::MAX)? as u64;
            }
            "queue_qos0_messages" => {
                c.queue_qos0_messages = line.bool("queue_qos0_messages", rest)?
            }
            "max_packet_size" => {
                let v = line.int_in("max_packet_size", rest, 0, i64::from(MQTT_MAX_PACKET_SIZE))?;
                c.max_packet_size = match v as u32 {
                    0 => MQTT_MAX_PACKET_SIZE,
                    n if n < MIN_MAX_PACKET_SIZE => {
                        return Err(line.invalid(
                            "max_packet_size",
                            &n.to_string(),
                            ValueProblem::PacketSizeTooSmall,
                        ))
                    }
                    n => n,
                };
            }
            "max_keepalive" => {
                c.max_keepalive_s = line.int_in("max_keepalive", rest, 0, 65535)? as u16
            }
            "retain_available" => c.retain_available = line.bool("retain_available", rest)?,
            "set_tcp_nodelay" => c.set_tcp_nodelay = line.bool("set_tcp_nodelay", rest)?,
            "sys_interval" => {
                c.sys_interval_s = line.int_in("sys_interval", rest, 0, 65535)? as u32
            }
            "log_dest" => self.log_dest(line, rest)?,
            "log_type" => {
                let word = line.one("log_type", rest)?;
                if !self.log_type_set {
                    self.log_type_set = true;
                    c.log_types = LogTypes::NONE;
                }
                match word {
                    "none" => c.log_types = LogTypes::NONE,
                    "all" => c.log_types = LogTypes::ALL,
                    other => match LogType::from_name(other) {
                        Some(t) => c.log_types.insert(t),
                        None => {
                            return Err(line.invalid(
                                "log_type",
                                other,
                                ValueProblem::UnknownLogType,
                            ))
                        }
                    },
                }
            }
            "log_timestamp" => c.log_timestamp = line.bool("log_timestamp", rest)?,
            "log_timestamp_format" => {
                let text = line.text("log_timestamp_format", rest)?;
                if c.log_timestamp_format.is_some() {
                    return Err(line.duplicate("log_timestamp_format"));
                }
                let format = TimestampFormat::parse(text)
                    .map_err(|reason| line.invalid("log_timestamp_format", text, reason))?;
                c.log_timestamp_format = Some(format);
            }
            "connection_messages" => {
                c.connection_messages = line.bool("connection_messages", rest)?
            }
            "include_dir" => self.include_dir(line, rest, level)?,
            "per_listener_settings" => {
                if line.bool("per_listener_settings", rest)? {
                    return Err(line.unsupported(key, Some("true")));
                }
                c.per_listener_settings = false;
            }
            "persistence" | "retained_persistence" => {
                let name = if key == "persistence" {
                    "persistence"
                } else {
                    "retained_persistence"
                };
                if line.bool(name, rest)? {
                    return Err(line.unsupported(key, Some("true")));
                }
                c.persistence = false;
            }
            "protocol" => match line.one("protocol", rest)? {
                "mqtt" => {}
                v @ ("websockets" | "mqttsn") => return Err(line.unsupported(key, Some(v))),
                other => {
                    return Err(line.invalid("protocol", other, ValueProblem::UnknownProtocol))
                }
            },
            "user" => c.user = Some(line.text("user", rest)?.to_owned()),
            "pid_file" => {
                let path = line.text("pid_file", rest)?;
                if c.pid_file.is_some() {
                    return Err(line.duplicate("pid_file"));
                }
                c.pid_file = Some(PathBuf::from(path));
            }
            "allow_zero_length_clientid" => {
                c.allow_zero_length_clientid = line.bool("allow_zero_length_clientid", rest)?
            }
            "auto_id_prefix" => {
                let prefix = line.text("auto_id_prefix", rest)?;
                if c.auto_id_prefix != DEFAULT_AUTO_ID_PREFIX {
                    return Err(line.duplicate("auto_id_prefix"));
                }
                c.auto_id_prefix = prefix.to_owned();
            }
            "clientid_prefixes" => {
                let prefix = line.text("clientid_prefixes", rest)?;
                if c.clientid_prefixes.is_some() {
                    return Err(line.duplicate("clientid_prefixes"));
                }
                c.clientid_prefixes = Some(prefix.to_owned());
            }
            "persistent_client_expiration" => {
                let v = line.one("persistent_client_expiration", rest)?;
                c.persistent_client_expiration = Some(parse_expiration(v).ok_or_else(|| {
                    line.invalid("persistent_client_expiration", v, ValueProblem::Duration)
                })?);
            }
            "upgrade_outgoing_qos" => {
                c.upgrade_outgoing_qos = line.bool("upgrade_outgoing_qos", rest)?
            }
            "use_username_as_clientid" => {
                let v = line.bool("use_username_as_clientid", rest)?;
                match self.current {
                    CurrentListener::Default => self.default_use_username_as_clientid = Some(v),
                    CurrentListener::Explicit(i) => {
                        if let Some(l) = self.listeners.get_mut(i) {
                            l.use_username_as_clientid = v;
                        }
                    }
                }
            }
            "password_file" => {
                let path = line.text("password_file", rest)?;
                if c.password_file.is_some() {
                    return Err(line.duplicate("password_file"));
                }
                c.password_file = Some(PathBuf::from(path));
            }
            "acl_file" => {
                let path = line.text("acl_file", rest)?;
                if c.acl_file.is_some() {
                    return Err(line.duplicate("acl_file"));
                }
                c.acl_file = Some(PathBuf::from(path));
            }
            "retry_interval" => c.notices.push(ConfigNotice::Obsolete {
                file: line.file.to_owned(),
                line: line.number,
                key: "retry_interval",
            }),
            "shards" => {
                let n = line.int_in("shards", rest, 1, 65536)? as usize;
                c.shards = NonZeroUsize::new(n);
            }
            "cpu_affinity" => c.cpu_affinity = Some(line.bool("cpu_affinity", rest)?),
            "cpu_set" => {
                let text = line.text("cpu_set", rest)?;
                let cpus =
                    parse_cpu_list(text).map_err(|reason| line.invalid("cpu_set", text, reason))?;
                c.cpu_set = Some(cpus);
            }
            "listen_backlog" => {
                c.listen_backlog =
                    line.int_in("listen_backlog", rest, 1, i64::from(i32::MAX))? as u32;
            }
            _ if UNSUPPORTED_KEYS.contains(&key)
                || UNSUPPORTED_PREFIXES.iter().any(|p| key.starts_with(p)) =>
            {
                return Err(line.unsupported(key, None));
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    file: line.file.to_owned(),
                    line: line.number,
                    key: key.to_owned(),
                    suggestion: suggest(key),
                })
            }
        }
        Ok(())
    }

    fn listener(&mut self, line: &Line<'_>, rest: &str) -> Result<(), ConfigError> {
        let words = line.words(rest);
        let (port, bind) = match words.as_slice() {
            [port] => (*port, None),
            [port, bind] => (*port, Some(*bind)),
            other => return Err(line.arity("listener", Arity::OneOrTwo, other.len())),
        };
        let port: i64 = port
            .parse()
            .map_err(|_| line.invalid("listener", port, ValueProblem::NotAnInteger))?;
        if port == 0 {
            return Err(match bind {
                Some(path) => line.unsupported("listener", Some(&format!("0 {path}"))),
                None => line.invalid("listener", "0", ValueProblem::PortZero),
            });
        }
        if !(1..=65535).contains(&port) {
            return Err(line.invalid(
                "listener",
                &port.to_string(),
                ValueProblem::OutOfRange { min: 1, max: 65535 },
            ));
        }
        self.local_only = false;
        self.listeners.push(ListenerConfig {
            port: port as u16,
            bind_address: bind.map(str::to_owned),
            max_connections: None,
            use_username_as_clientid: false,
        });
        self.current = CurrentListener::Explicit(self.listeners.len() - 1);
        Ok(())
    }

    fn log_dest(&mut self, line: &Line<'_>, rest: &str) -> Result<(), ConfigError> {
        let (dest, path) = match rest.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((dest, path)) => (dest, path.trim()),
            None => (rest, ""),
        };
        let add = match dest {
            "" => return Err(line.arity("log_dest", Arity::OneOrTwo, 0)),
            "none" | "stderr" | "stdout" if !line.words(path).is_empty() => {
                return Err(line.arity("log_dest", Arity::One, 1 + line.words(path).len()))
            }
            "none" => None,
            "stderr" => Some(LogDest::Stderr),
            "stdout" => Some(LogDest::Stdout),
            "file" => {
                if path.is_empty() {
                    return Err(line.arity("log_dest", Arity::OneOrTwo, 1));
                }
                if self.has_log_file {
                    return Err(line.duplicate("log_dest file"));
                }
                self.has_log_file = true;
                Some(LogDest::File(PathBuf::from(path)))
            }
            "syslog" | "topic" | "dlt" => return Err(line.unsupported("log_dest", Some(dest))),
            other => return Err(line.invalid("log_dest", other, ValueProblem::UnknownLogDest)),
        };
        let c = &mut self.config;
        if !self.log_dest_set {
            self.log_dest_set = true;
            c.log_dest.clear();
        }
        match add {
            None => c.log_dest.clear(),
            Some(d) => {
                if !c.log_dest.contains(&d) {
                    c.log_dest.push(d);
                }
            }
        }
        Ok(())
    }

    fn include_dir(
        &mut self,
        line: &Line<'_>,
        rest: &str,
        level: usize,
    ) -> Result<(), ConfigError> {
        if level > 0 {
            return Err(ConfigError::NestedIncludeDir {
                file: line.file.to_owned(),
                line: line.number,
            });
        }
        let dir = Path::new(line.text("include_dir", rest)?);
        let dir = if dir.is_relative() {
            line.file.parent().unwrap_or(Path::new("")).join(dir)
        } else {
            dir.to_owned()
        };
        let io_error = |source| ConfigError::IncludeDir {
            dir: dir.clone(),
            file: line.file.to_owned(),
            line: line.number,
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            // Mosquitto takes names longer than 5 bytes ending in ".conf" (so ".conf" itself is skipped).
            if let Some(name) = entry.file_name().to_str() {
                if name.len() > 5 && name.ends_with(".conf") {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort_by(|a, b| mosquitto_file_order(a, b));
        let main = std::fs::canonicalize(&self.main_file).ok();
        for name in names {
            let path = dir.join(&name);
            if main.is_some() && std::fs::canonicalize(&path).ok() == main {
                return Err(ConfigError::IncludeDirContainsMainFile {
                    file: line.file.to_owned(),
                    line: line.number,
                    main: self.main_file.clone(),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            self.config
                .notices
                .push(ConfigNotice::IncludedFile { path: path.clone() });
            self.parse_text(&text, &path, level + 1)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Config, ConfigError> {
        let mut listeners = std::mem::take(&mut self.listeners);
        let default_used = self.default_port.is_some()
            || self.default_bind_address.is_some()
            || self.default_max_connections.is_some()
            || self.default_use_username_as_clientid.is_some();
        if self.local_only {
            // Mosquitto 2.0 "local only mode": loopback listener, anonymous clients allowed regardless.
            let mut l = ListenerConfig::local_only(DEFAULT_PORT);
            l.max_connections = self.default_max_connections.flatten();
            l.use_username_as_clientid = self.default_use_username_as_clientid.unwrap_or(false);
            listeners = vec![l];
            self.config.notices.push(ConfigNotice::LocalOnlyMode);
            if self.allow_anonymous == Some(false) {
                self.config
                    .notices
                    .push(ConfigNotice::AnonymousForcedInLocalOnly);
            }
            self.config.allow_anonymous = true;
        } else {
            if default_used {
                listeners.push(ListenerConfig {
                    port: self.default_port.unwrap_or(DEFAULT_PORT),
                    bind_address: self.default_bind_address.take(),
                    max_connections: self.default_max_connections.flatten(),
                    use_username_as_clientid: self
                        .default_use_username_as_clientid
                        .unwrap_or(false),
                });
            }
            self.config.allow_anonymous = self.allow_anonymous.unwrap_or(false);
        }
        for (i, l) in listeners.iter().enumerate() {
            if listeners[..i]
                .iter()
                .any(|o| o.port == l.port && o.bind_address == l.bind_address)
            {
                return Err(ConfigError::DuplicateListener {
                    port: l.port,
                    bind_address: l.bind_address.clone(),
                });
            }
        }
        self.config.listeners = listeners;
        self.config.local_only = self.local_only;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
    fn listener_turns_off_local_only_and_anonymous() {
        let c = ok("listener 1883\n");
        assert!(!c.local_only);
        assert!(
            !c.allow_anonymous,
            "Mosquitto 2.0: false once a listener is defined"
        );
        assert_eq!(c.listeners, vec![ListenerConfig::any_interface(1883)]);
        assert!(!c.notices.contains(&ConfigNotice::LocalOnlyMode));
        let c = ok("listener 1883\nallow_anonymous true\n");
        assert!(c.allow_anonymous);
    }

    #[test]
    fn several_listeners_with_bind_addresses_and_max_connections() {
        let c = ok("listener 1883 0.0.0.0\nmax_connections 10\nlistener 8883 ::1\nlistener 1884 # tls later\nmax_connections -1\n");
        assert_eq!(
            c.listeners,
            vec![
                ListenerConfig {
                    port: 1883,
                    bind_address: Some("0.0.0.0".into()),
                    max_connections: Some(10),
                    use_username_as_clientid: false,
                },
                ListenerConfig {
                    port: 8883,
                    bind_address: Some("::1".into()),
                    max_connections: None,
                    use_username_as_clientid: false,
                },
                ListenerConfig::any_interface(1884),
            ]
        );
    }

    #[test]
    fn listener_errors() {
        assert!(matches!(
            err("listener\n"),
            ConfigError::Arity {
                key: "listener",
                expected: Arity::OneOrTwo,
                found: 0,
                ..
            }
        ));
        assert!(matches!(
            err("listener 1 2 3\n"),
            ConfigError::Arity {
                key: "listener",
                found: 3,
                ..
            }
        ));
        assert!(matches!(
            err("listener 70000\n"),
            ConfigError::InvalidValue {
                reason: ValueProblem::OutOfRange { min: 1, max: 65535 },
                ..
            }
        ));
        assert!(matches!(
            err("listener abc\n"),
            ConfigError::InvalidValue {
                reason: ValueProblem::NotAnInteger,
                ..
            }
        ));
        assert!(matches!(
            err("listener 0\n"),
            ConfigError::InvalidValue {
                reason: ValueProblem::PortZero,
                ..
            }
        ));
        assert!(matches!(
            err("listener 0 /run/mqtt.sock\n"),
            ConfigError::Unsupported { .. }
        ));
        assert!(matches!(
            err("listener 1883\nlistener 1883\n"),
            ConfigError::DuplicateListener {
                port: 1883,
                bind_address: None
            }
        ));
    }

    #[test]
    fn deprecated_port_and_bind_address_make_the_default_listener() {
        let c = ok("port 1884\n");
        assert!(!c.local_only);
        assert_eq!(c.listeners, vec![ListenerConfig::any_interface(1884)]);
        assert!(matches!(
            c.notices[0],
            ConfigNotice::Deprecated {
                key: "port",
                line: 1,
                ..
            }
        ));

        let c = ok("bind_address 10.0.0.1\n");
        assert_eq!(
            c.listeners,
            vec![ListenerConfig {
                port: 1883,
                bind_address: Some("10.0.0.1".into()),
                max_connections: None,
                use_username_as_clientid: false,
            }]
        );

        // The default listener comes after explicit ones, like Mosquitto, and takes the options given
        // before the first `listener`.
        let c = ok("max_connections 5\nport 1884\nlistener 1885\nmax_connections 7\n");
        assert_eq!(
            c.listeners,
            vec![
                ListenerConfig {
                    port: 1885,
                    bind_address: None,
                    max_connections: Some(7),
                    use_username_as_clientid: false,
                },
                ListenerConfig {
                    port: 1884,
                    bind_address: None,
                    max_connections: Some(5),
                    use_username_as_clientid: false,
                },
            ]
        );

        let c = ok("port 1884\nport 1885\n");
        assert_eq!(c.listeners[0].port, 1885);
        assert!(c
            .notices
            .iter()
            .any(|n| matches!(n, ConfigNotice::PortRepeated { line: 2, .. })));
        assert!(matches!(
            err("port 0\n"),
            ConfigError::InvalidValue { key: "port", .. }
        ));
        assert!(matches!(
            err("bind_address a\nbind_address b\n"),
            ConfigError::Duplicate {
                key: "bind_address",
                line: 2,
                ..
            }
        ));
    }

    #[test]
    fn max_connections_before_listener_creates_default_listener_which_can_clash() {
        // Mosquitto opens the default listener (1883, all interfaces) here too; the explicit 1883
        // would then fail to bind. We say so up front.
        assert!(matches!(
            err("max_connections 10\nlistener 1883\n"),
            ConfigError::DuplicateListener { port: 1883, .. }
        ));
        // Alone, it stays in local only mode and limits the loopback listener.
        let c = ok("max_connections 10\n");
        assert!(c.local_only);
        assert_eq!(c.listeners[0].max_connections, Some(10));
        assert!(matches!(
            err("max_connections x\n"),
            ConfigError::InvalidValue { .. }
        ));
        assert!(matches!(
            err("max_connections 99999999999\n"),
            ConfigError::InvalidValue { .. }
        ));
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
        for (text, key, value) in [
            ("persistence true\n", "persistence", "true"),
            ("retained_persistence 1\n", "retained_persistence", "true"),
            (
                "per_listener_settings true\n",
                "per_listener_settings",
                "true",
            ),
            (
                "listener 9001\nprotocol websockets\n",
                "protocol",
                "websockets",
            ),
        ] {
            match err(text) {
                ConfigError::Unsupported {
                    key: k, value: v, ..
                } => {
                    assert_eq!((k.as_str(), v.as_deref()), (key, Some(value)));
                }
                other => panic!("{text}: {other}"),
            }
        }
        assert_eq!(
            err("persistence true\n").to_string(),
            "`persistence true` at /etc/x.conf:1 is a Mosquitto option shardmq does not support yet"
        );
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
    fn available_cpus_is_not_empty() {
        let cpus = available_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

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
    fn persistent_client_expiration_takes_mosquitto_units() {
        let d = |v: &str| {
            ok(&format!("persistent_client_expiration {v}\n")).persistent_client_expiration
        };
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
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("port", "port"), 0);
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(edit_distance("user", "users"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
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
                | "set_tcp_nodelay" => "true",
                "per_listener_settings" | "persistence" | "retained_persistence" => "false",
                "bind_address" => "127.0.0.1",
                "cpu_set" => "0",
                "include_dir" => continue,
                "log_dest" => "stdout",
                "log_timestamp_format" => "%s",
                "log_type" => "all",
                "pid_file" | "user" | "password_file" | "acl_file" | "auto_id_prefix"
                | "clientid_prefixes" => "x",
                "protocol" => "mqtt",
                "persistent_client_expiration" => "1d",
                _ => "1883",
            };
            if let Err(e) = parse(&format!("{key} {value}\n")) {
                panic!("{key} {value}: {e}");
            }
        }
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

    #[test]
    fn default_config_text_documents_every_key() {
        for key in SUPPORTED_KEYS {
            let documented = DEFAULT_CONFIG_TEXT
                .lines()
                .any(|l| l.trim_start_matches('#').split_whitespace().next() == Some(key));
            assert!(documented, "docs/shardmq.conf lacks `{key}`");
        }
    }
}
