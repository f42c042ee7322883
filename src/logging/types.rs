//! The types of the log settings: where lines go ([`LogDest`]), which Mosquitto log types are written
//! ([`LogType`], [`LogTypes`]) and how the timestamp is written ([`TimestampFormat`]). The config parser
//! (`crate::config`) builds them from `log_dest`, `log_type` and `log_timestamp_format`, and they are
//! fields of `crate::config::Config`; the rest of this module reads them to set up the writer, the
//! filter and the line format.

use std::fmt;
use std::path::PathBuf;

use crate::config::ValueProblem;

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
