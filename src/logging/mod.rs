//! Mosquitto-style logging on top of `tracing`: what the `log_dest`, `log_type` and
//! `log_timestamp*` settings do. `main` calls [`init`] once at start-up (after daemonising) and keeps
//! the [`LogGuard`]; from then on any thread logs with the tracing macros, and `main` asks the guard to
//! reopen the log files on SIGHUP and to flush at exit.
//!
//! Lines look like Mosquitto's: `1700000000: New client connected from 127.0.0.1:5000 as c1 (p2, c1, k60).`
//! (Unix seconds, or the `log_timestamp_format` strftime pattern in local time, then `: ` and the message).
//! Broker code names the Mosquitto log type as the tracing target; the level is not used for those:
//!
//! ```ignore
//! tracing::info!(target: log_type::NOTICE, "New connection from {} on port {}.", addr, port);
//! ```
//!
//! Events from any other target (glommio and other crates, including those logging through the `log`
//! crate, which is bridged) are typed by level: ERROR is `error`, WARN is `warning`, anything lower is
//! `debug`; their lines carry the target: `1700000000: glommio::executor: ...`.
//!
//! Concurrency: any thread may log. The calling thread formats the line (a few hundred nanoseconds,
//! no lock) and hands it to one background writer thread through a bounded channel; the writer owns
//! every destination (stderr, stdout, file), buffers, and flushes whenever the channel runs empty, so
//! shards never do file I/O: a slow disk or a full pipe never stalls a shard's event loop. Nor does
//! logging ever block: if the writer falls [`WRITER_QUEUE_LINES`] (65,536) lines behind, new lines are
//! dropped and counted rather than queued, and the writer then writes one warning line saying how many
//! were lost (`1700000000: Log queue full: 1234 log lines dropped.`, shown if `warning` is logged).
//! [`LogGuard::flush`] and dropping the [`LogGuard`] write out every line that was queued before them.
//!
//! Where things are:
//! - this file: the log type targets ([`log_type`]), the filter, [`layer`] and [`init`];
//! - `types.rs`: the settings' types ([`LogDest`], [`LogType`], [`LogTypes`], [`TimestampFormat`]);
//! - `format.rs`: the line format ([`MosquittoFormat`]);
//! - `writer.rs`: the writer thread, the [`LineSink`] feeding it and the [`LogGuard`].

use std::io;
use std::path::PathBuf;

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::Config;

mod format;
#[cfg(test)]
mod tests;
mod types;
mod writer;

pub use format::MosquittoFormat;
pub use types::{LogDest, LogType, LogTypes, TimestampFormat};
pub use writer::{spawn_writer, LineSink, LineSinkWriter, LogGuard, WRITER_QUEUE_LINES};

/// Tracing targets naming Mosquitto's log types (`log_type` in the config file).
pub mod log_type {
    /// Failures.
    pub const ERROR: &str = "error";
    /// Something looks wrong; the broker carries on.
    pub const WARNING: &str = "warning";
    /// Start-up, shutdown, listeners, connections.
    pub const NOTICE: &str = "notice";
    /// Client connects and disconnects.
    pub const INFORMATION: &str = "information";
    /// Each SUBSCRIBE.
    pub const SUBSCRIBE: &str = "subscribe";
    /// Each UNSUBSCRIBE.
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    /// Packet-level tracing.
    pub const DEBUG: &str = "debug";
    /// WebSocket transport.
    pub const WEBSOCKETS: &str = "websockets";
    /// Mosquitto's internal messages.
    pub const INTERNAL: &str = "internal";
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A `log_dest file` could not be opened for appending.
    #[error("unable to open log file {} for writing: {source}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("unable to start the log writer thread: {source}")]
    SpawnWriter {
        /// The I/O error.
        source: io::Error,
    },
    /// The timestamp format contains a NUL byte (the config parser refuses these, so this is a bug).
    #[error("log_timestamp_format contains a NUL byte")]
    TimestampFormat,
    /// A global tracing subscriber or `log` logger is already installed.
    #[error("logging is already initialised: {source}")]
    AlreadyInitialized {
        /// The error from tracing-subscriber.
        source: tracing_subscriber::util::TryInitError,
    },
}

/// The log type an event belongs to: its target if that names one, otherwise by level.
pub fn event_log_type(meta: &Metadata<'_>) -> LogType {
    LogType::from_name(meta.target()).unwrap_or(match *meta.level() {
        Level::ERROR => LogType::Error,
        Level::WARN => LogType::Warning,
        _ => LogType::Debug,
    })
}

/// Passes events whose log type is configured; drops spans (lines carry no span context).
#[derive(Debug, Clone, Copy)]
pub struct LogTypeFilter(pub LogTypes);

impl LogTypeFilter {
    fn allows(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event() && self.0.contains(event_log_type(meta))
    }
}

impl<S> Filter<S> for LogTypeFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        self.allows(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if self.allows(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

/// Logs `message` under log type `t`, for types known only at run time (config notices, messages
/// carried across shards). Broker code with a fixed type uses the tracing macros directly.
pub fn log_at(t: LogType, message: std::fmt::Arguments<'_>) {
    match t {
        LogType::Error => tracing::error!(target: log_type::ERROR, "{}", message),
        LogType::Warning => tracing::warn!(target: log_type::WARNING, "{}", message),
        LogType::Notice => tracing::info!(target: log_type::NOTICE, "{}", message),
        LogType::Information => tracing::info!(target: log_type::INFORMATION, "{}", message),
        LogType::Subscribe => tracing::info!(target: log_type::SUBSCRIBE, "{}", message),
        LogType::Unsubscribe => tracing::info!(target: log_type::UNSUBSCRIBE, "{}", message),
        LogType::Websockets => tracing::debug!(target: log_type::WEBSOCKETS, "{}", message),
        LogType::Debug => tracing::debug!(target: log_type::DEBUG, "{}", message),
        LogType::Internal => tracing::debug!(target: log_type::INTERNAL, "{}", message),
    }
}

/// Logs the configuration's start-up notices (deprecations, local only mode, included files, ...), each
/// under its own log type. Call once, right after [`init`].
pub fn log_config_notices(config: &Config) {
    for notice in &config.notices {
        log_at(notice.log_type(), format_args!("{notice}"));
    }
}

/// The `log` crate level that lets through every record the configured types can show.
fn log_crate_max_level(types: LogTypes) -> log::LevelFilter {
    if types.contains(LogType::Debug) {
        log::LevelFilter::Trace
    } else if types.contains(LogType::Warning) {
        log::LevelFilter::Warn
    } else if types.contains(LogType::Error) {
        log::LevelFilter::Error
    } else {
        log::LevelFilter::Off
    }
}

/// The logging layer: Mosquitto format, filtered by `config.log_types`, writing through `make_writer`.
/// [`init`] installs it globally; tests use it with an in-memory writer.
pub fn layer<S, W>(
    config: &Config,
    make_writer: W,
) -> Result<impl Layer<S> + Send + Sync + 'static, LoggingError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Ok(tracing_subscriber::fmt::layer()
        .event_format(MosquittoFormat::from_config(config)?)
        .with_writer(make_writer)
        .with_filter(LogTypeFilter(config.log_types)))
}

/// Installs the global subscriber (and the `log` crate bridge) that `config` describes. Keep the guard
/// until the process ends: dropping it writes out everything logged so far and stops the writer thread
/// (so call it before `std::process::exit`, which skips destructors). Daemonise (`-d`) before calling
/// this: the writer thread does not survive a fork.
pub fn init(config: &Config) -> Result<LogGuard, LoggingError> {
    if config.log_dest.is_empty() || config.log_types == LogTypes::NONE {
        tracing_subscriber::registry()
            .try_init()
            .map_err(|source| LoggingError::AlreadyInitialized { source })?;
        log::set_max_level(log::LevelFilter::Off);
        return Ok(LogGuard::inactive());
    }
    let (sink, guard) = spawn_writer(config)?;
    tracing_subscriber::registry()
        .with(layer(config, sink)?)
        .try_init()
        .map_err(|source| LoggingError::AlreadyInitialized { source })?;
    // try_init opened the `log` bridge at TRACE (our filter has no level hint); narrow it so that
    // glommio's debug records are not even formatted unless `debug` is logged.
    log::set_max_level(log_crate_max_level(config.log_types));
    Ok(guard)
}
