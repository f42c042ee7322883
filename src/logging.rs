//! Mosquitto-style logging on top of `tracing`.
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
//! shards never do file I/O (DESIGN.md invariant 7). If the writer falls 65,536 lines behind, loggers
//! wait rather than lose lines. Dropping the [`LogGuard`] writes out every line logged before it.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{Config, LogDest, LogType, LogTypes};

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

/// Lines the writer thread may fall behind by before loggers wait.
pub const WRITER_QUEUE_LINES: usize = 65_536;

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

/// How a line's timestamp is written.
#[derive(Debug, Clone)]
enum Timestamp {
    /// `log_timestamp false`.
    Off,
    /// Unix seconds (Mosquitto's default).
    UnixSeconds,
    /// A strftime pattern, in local time.
    Strftime(CString),
}

/// Formats events as Mosquitto log lines: `TIMESTAMP: message`, one per line.
#[derive(Debug, Clone)]
pub struct MosquittoFormat {
    timestamp: Timestamp,
    /// Where "now" comes from; a parameter so tests control the clock.
    clock: fn() -> SystemTime,
}

impl MosquittoFormat {
    /// The format `config`'s `log_timestamp` / `log_timestamp_format` ask for, on the system clock.
    pub fn from_config(config: &Config) -> Result<MosquittoFormat, LoggingError> {
        let timestamp = match (&config.log_timestamp, &config.log_timestamp_format) {
            (false, _) => Timestamp::Off,
            (true, None) => Timestamp::UnixSeconds,
            (true, Some(f)) => Timestamp::Strftime(
                CString::new(f.as_str()).map_err(|_| LoggingError::TimestampFormat)?,
            ),
        };
        Ok(MosquittoFormat {
            timestamp,
            clock: SystemTime::now,
        })
    }

    /// The same format reading time from `clock`.
    pub fn with_clock(self, clock: fn() -> SystemTime) -> MosquittoFormat {
        MosquittoFormat { clock, ..self }
    }

    fn write_timestamp(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let secs = match (self.clock)().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        match &self.timestamp {
            Timestamp::Off => Ok(()),
            Timestamp::UnixSeconds => write!(w, "{secs}: "),
            Timestamp::Strftime(pattern) => LOCAL_TIME_CACHE.with(|cache| {
                let mut cache = cache.borrow_mut();
                let (cached_secs, cached_pattern, text) = &mut *cache;
                if *cached_secs != Some(secs) || cached_pattern.as_c_str() != pattern.as_c_str() {
                    text.clear();
                    strftime_local(secs, pattern, text);
                    *cached_secs = Some(secs);
                    cached_pattern.clone_from(pattern);
                }
                write!(w, "{text}: ")
            }),
        }
    }
}

thread_local! {
    /// The last second formatted on this thread: (seconds, pattern, text). Logging bursts share a second.
    static LOCAL_TIME_CACHE: std::cell::RefCell<(Option<i64>, CString, String)> =
        std::cell::RefCell::new((None, CString::default(), String::new()));
}

/// Appends `secs` formatted with strftime(3) in local time, or `Time error` like Mosquitto.
fn strftime_local(secs: i64, pattern: &CString, out: &mut String) {
    let t = secs as libc::time_t;
    let mut buf = [0u8; 256];
    // SAFETY: `tm` is plain data, fully written by localtime_r before use (we check its result);
    // strftime writes at most buf.len() bytes into buf and reads a NUL-terminated pattern.
    let n = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            libc::strftime(
                buf.as_mut_ptr().cast::<libc::c_char>(),
                buf.len(),
                pattern.as_ptr(),
                &tm,
            )
        }
    };
    if n == 0 {
        out.push_str("Time error");
    } else {
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Writes the `message` field verbatim, other fields as ` name=value`; remembers `log.target`.
struct LineVisitor<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: std::fmt::Result,
}

impl Visit for LineVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = if field.name() == "message" {
            self.writer.write_str(value)
        } else {
            write!(self.writer, " {}={}", field.name(), value)
        };
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = if field.name() == "message" {
            write!(self.writer, "{value:?}")
        } else {
            write!(self.writer, " {}={:?}", field.name(), value)
        };
    }
}

/// Finds the real target of an event bridged from the `log` crate.
struct LogTargetVisitor(Option<String>);

impl Visit for LogTargetVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S, N> FormatEvent<S, N> for MosquittoFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        self.write_timestamp(&mut writer)?;
        let meta = event.metadata();
        if LogType::from_name(meta.target()).is_none() {
            // Not one of ours: say where it came from.
            let mut target = LogTargetVisitor(None);
            if meta.target() == "log" {
                event.record(&mut target);
            }
            write!(writer, "{}: ", target.0.as_deref().unwrap_or(meta.target()))?;
        }
        let mut visitor = LineVisitor {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writeln!(writer)
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
        return Ok(LogGuard { writer: None });
    }
    let (sink, guard) = spawn_writer(&config.log_dest)?;
    tracing_subscriber::registry()
        .with(layer(config, sink)?)
        .try_init()
        .map_err(|source| LoggingError::AlreadyInitialized { source })?;
    // try_init opened the `log` bridge at TRACE (our filter has no level hint); narrow it so that
    // glommio's debug records are not even formatted unless `debug` is logged.
    log::set_max_level(log_crate_max_level(config.log_types));
    Ok(guard)
}

/// What the writer thread is asked to do.
enum WriterMsg {
    /// Write one formatted line (with its newline).
    Line(Vec<u8>),
    /// Flush every destination, then acknowledge.
    Flush(SyncSender<()>),
    /// Close and reopen log files (log rotation, Mosquitto's SIGHUP behaviour).
    Reopen,
    /// Flush and exit.
    Shutdown,
}

/// The [`MakeWriter`] handing formatted lines to the writer thread.
#[derive(Debug, Clone)]
pub struct LineSink {
    tx: SyncSender<WriterMsg>,
}

impl<'a> MakeWriter<'a> for LineSink {
    type Writer = LineSinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSinkWriter { tx: &self.tx }
    }
}

/// One event's writer: the fmt layer writes each formatted line with a single `write_all`.
#[derive(Debug)]
pub struct LineSinkWriter<'a> {
    tx: &'a SyncSender<WriterMsg>,
}

impl Write for LineSinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tx.send(WriterMsg::Line(buf.to_vec())).is_err() {
            // The writer has shut down (the guard was dropped): last resort, straight to stderr.
            io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One log destination, owned by the writer thread.
enum Destination {
    Stderr(BufWriter<io::Stderr>),
    Stdout(BufWriter<io::Stdout>),
    File { path: PathBuf, out: BufWriter<File> },
}

fn open_append(path: &Path) -> Result<BufWriter<File>, LoggingError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(BufWriter::new)
        .map_err(|source| LoggingError::OpenFile {
            path: path.to_owned(),
            source,
        })
}

impl Destination {
    fn out(&mut self) -> &mut dyn Write {
        match self {
            Destination::Stderr(w) => w,
            Destination::Stdout(w) => w,
            Destination::File { out, .. } => out,
        }
    }
}

/// Keeps the writer thread alive; dropping it writes out every line logged before and stops the thread.
#[derive(Debug)]
pub struct LogGuard {
    writer: Option<WriterHandle>,
}

#[derive(Debug)]
struct WriterHandle {
    tx: SyncSender<WriterMsg>,
    thread: Option<JoinHandle<()>>,
    write_errors: Arc<AtomicU64>,
}

impl LogGuard {
    /// Waits until every line logged so far has been written and flushed. Blocks: not for shard threads.
    pub fn flush(&self) {
        if let Some(w) = &self.writer {
            let (ack_tx, ack_rx) = mpsc::sync_channel(1);
            if w.tx.send(WriterMsg::Flush(ack_tx)).is_ok() {
                let _ = ack_rx.recv();
            }
        }
    }

    /// Closes and reopens log files, for log rotation (Mosquitto does this on SIGHUP). Does not block.
    pub fn reopen_files(&self) {
        if let Some(w) = &self.writer {
            let _ = w.tx.try_send(WriterMsg::Reopen);
        }
    }

    /// How many writes to a destination have failed (disk full, closed pipe, ...).
    pub fn write_errors(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(0, |w| w.write_errors.load(Ordering::Relaxed))
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(w) = &mut self.writer {
            // Queued after every line already sent, so those are written first.
            let _ = w.tx.send(WriterMsg::Shutdown);
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Opens every destination (so a bad log file fails start-up) and starts the writer thread.
pub fn spawn_writer(dests: &[LogDest]) -> Result<(LineSink, LogGuard), LoggingError> {
    let mut outs = Vec::with_capacity(dests.len());
    for d in dests {
        outs.push(match d {
            LogDest::Stderr => Destination::Stderr(BufWriter::new(io::stderr())),
            LogDest::Stdout => Destination::Stdout(BufWriter::new(io::stdout())),
            LogDest::File(path) => Destination::File {
                path: path.clone(),
                out: open_append(path)?,
            },
        });
    }
    let (tx, rx) = mpsc::sync_channel(WRITER_QUEUE_LINES);
    let write_errors = Arc::new(AtomicU64::new(0));
    let errors = Arc::clone(&write_errors);
    let thread = std::thread::Builder::new()
        .name("shardmq-log".into())
        .spawn(move || run_writer(rx, outs, &errors))
        .map_err(|source| LoggingError::SpawnWriter { source })?;
    Ok((
        LineSink { tx: tx.clone() },
        LogGuard {
            writer: Some(WriterHandle {
                tx,
                thread: Some(thread),
                write_errors,
            }),
        },
    ))
}

/// The writer thread: writes lines to every destination, flushing whenever the queue runs dry.
fn run_writer(rx: Receiver<WriterMsg>, mut outs: Vec<Destination>, errors: &AtomicU64) {
    let note = |r: io::Result<()>| {
        if r.is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    };
    let flush_all = |outs: &mut Vec<Destination>| {
        for d in outs.iter_mut() {
            note(d.out().flush());
        }
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Line(line) => {
                    for d in outs.iter_mut() {
                        note(d.out().write_all(&line));
                    }
                }
                WriterMsg::Flush(ack) => {
                    flush_all(&mut outs);
                    let _ = ack.send(());
                }
                WriterMsg::Reopen => {
                    flush_all(&mut outs);
                    for d in outs.iter_mut() {
                        if let Destination::File { path, out } = d {
                            match open_append(path) {
                                Ok(fresh) => *out = fresh,
                                Err(_) => note(Err(io::Error::other("reopen failed"))),
                            }
                        }
                    }
                }
                WriterMsg::Shutdown => {
                    flush_all(&mut outs);
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        flush_all(&mut outs);
    }
    flush_all(&mut outs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TimestampFormat;
    use std::sync::Mutex;
    use std::time::Duration;

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

    #[test]
    fn file_destination_keeps_every_line_until_guard_drop() {
        let dir = std::env::temp_dir().join(format!("shardmq-logging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.log");
        std::fs::write(&path, "earlier line\n").unwrap();

        let config = Config {
            log_dest: vec![LogDest::File(path.clone())],
            ..Config::default()
        };
        let (sink, guard) = spawn_writer(&config.log_dest).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer(&config, sink).unwrap());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..10_000 {
                tracing::info!(target: log_type::NOTICE, "line {i}");
            }
        });
        guard.flush();
        let flushed = std::fs::read_to_string(&path).unwrap();
        assert_eq!(flushed.lines().count(), 10_001);
        drop(guard);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_001, "appends, loses nothing");
        assert_eq!(lines[0], "earlier line");
        assert!(lines[1].ends_with(": line 0"));
        assert!(lines[10_000].ends_with(": line 9999"));
    }

    #[test]
    fn reopen_follows_log_rotation() {
        let dir = std::env::temp_dir().join(format!("shardmq-logging-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.log");
        let rotated = dir.join("broker.log.1");
        let config = Config {
            log_dest: vec![LogDest::File(path.clone())],
            ..Config::default()
        };
        let (sink, guard) = spawn_writer(&config.log_dest).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer(&config, sink).unwrap());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: log_type::NOTICE, "before");
            guard.flush();
            std::fs::rename(&path, &rotated).unwrap();
            guard.reopen_files();
            tracing::info!(target: log_type::NOTICE, "after");
        });
        drop(guard);
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            old.ends_with(": before\n") && !old.contains("after"),
            "{old}"
        );
        assert!(
            new.ends_with(": after\n") && !new.contains("before"),
            "{new}"
        );
    }

    #[test]
    fn unopenable_log_file_fails_start_up() {
        let dests = [LogDest::File(PathBuf::from(
            "/nonexistent-dir/x/broker.log",
        ))];
        match spawn_writer(&dests) {
            Err(LoggingError::OpenFile { path, .. }) => {
                assert_eq!(path, PathBuf::from("/nonexistent-dir/x/broker.log"))
            }
            other => panic!("{other:?}"),
        }
    }
}
