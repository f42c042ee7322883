//! What can go wrong in a configuration, and what is worth saying about it.
//!
//! [`ConfigError`] is why a configuration could not be loaded (every variant from a line names the file
//! and line), with [`ValueProblem`] and [`Arity`] for what was wrong with a value; [`ConfigNotice`] is
//! something to log that does not stop the broker (a deprecated key, local only mode, ...). The parser
//! (`parser.rs`) and [`super::Config`]'s methods build them; `main` prints the errors and logs the
//! notices once logging is set up. Their `Display` texts are the messages users see, several of them
//! worded as Mosquitto words them.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::{DEFAULT_PORT, MAX_COMMAND_LINE_PORTS, MIN_MAX_PACKET_SIZE};
use crate::logging::LogType;

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
    /// A `persistence_file` with a directory in it.
    #[error("must be a file name (the directory is persistence_location)")]
    PersistenceFileName,
    /// A `persistence_sync` that is not `always`, `none` or `interval MS`.
    #[error("expected always, none or interval MS (1 to 3600000 milliseconds)")]
    PersistenceSync,
    /// A `protocol` nobody knows.
    #[error("expected mqtt or websockets")]
    UnknownProtocol,
    /// An `accept_protocol_versions` list with something other than 3, 4 and 5.
    #[error("expected a comma-separated list of 3 (MQTT 3.1), 4 (3.1.1) and 5 (5.0)")]
    ProtocolVersions,
    /// A `mount_point` that is not a topic name (wildcards, NUL).
    #[error("must be a topic name: no + or #")]
    InvalidMountPoint,
    /// A `socket_domain` that is neither family.
    #[error("expected ipv4 or ipv6")]
    UnknownSocketDomain,
    /// A `tls_version` rustls does not offer.
    #[error("expected tlsv1.2 or tlsv1.3 (TLS 1.1 and older are not offered)")]
    UnknownTlsVersion,
    /// A `server_reference_mode` nobody knows.
    #[error("expected shutdown, redirect or moved")]
    UnknownRedirectMode,
    /// A `slow_subscriber_policy` nobody knows.
    #[error("expected hold_if_all_behind, hold or drop")]
    UnknownSlowSubscriberPolicy,
    /// A `refuse_unreadable_subscriptions` value nobody knows.
    #[error("expected false, true (not_authorized) or unspecified_error")]
    UnknownRefusal,
    /// A `shared_subscription_strategy` nobody knows.
    #[error("expected round_robin, random, hash or least_inflight, then optionally share names")]
    UnknownSharedStrategy,
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
    /// `per_listener_settings true` after a security option, which then went to the whole broker.
    #[error(
        "`per_listener_settings true` at {}:{line} must come before any other security option \
         (allow_anonymous, password_file, acl_file, allow_zero_length_clientid, auto_id_prefix), \
         as in Mosquitto",
        file.display()
    )]
    PerListenerSettingsTooLate {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
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
    /// The `cluster_*` keys do not make a cluster node: one of `cluster_nats`, `cluster_name` and
    /// `cluster_node` without the others, or a name NATS cannot take.
    #[error("in {}: {problem}", file.display())]
    Cluster {
        /// The main config file.
        file: PathBuf,
        /// What is wrong.
        problem: ClusterProblem,
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
    /// A listener's TLS options do not fit together.
    #[error("listener on port {port}: {problem}")]
    ListenerTls {
        /// The listener's port.
        port: u16,
        /// What is wrong.
        problem: super::TlsOptionsProblem,
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

/// What is wrong with the `cluster_*` keys ([`ConfigError::Cluster`]).
#[derive(Debug, thiserror::Error)]
pub enum ClusterProblem {
    /// Some cluster keys were given but not this one, which a cluster node needs.
    #[error("`{0}` is missing: a cluster node needs cluster_nats, cluster_name and cluster_node")]
    Missing(&'static str),
    /// Only one of the user and the password.
    #[error("cluster_nats_user and cluster_nats_password go together")]
    UserWithoutPassword,
    /// More shards than a cluster node can have: the link takes the mailbox id after the last
    /// shard's, and ids stop at 1,023 (the interest summary's set of shard ids).
    #[error("shards {0}: a cluster node has at most {max} (the cluster link takes one more id)", max = crate::index::MAX_SHARDS - 1)]
    TooManyShards(usize),
    /// A bad name or server list.
    #[error(transparent)]
    Link(#[from] crate::cluster::link::LinkError),
}
