//! The line format: [`MosquittoFormat`] writes each event as Mosquitto does, `TIMESTAMP: message`
//! (Unix seconds, a strftime(3) pattern in local time, or nothing), with the target in front for events
//! that are not one of the Mosquitto log types and extra fields after the message. The tracing layer
//! built by `super::layer` calls it on the logging thread, so formatting costs the caller, not the
//! writer thread; the writer thread uses it only for the line saying how many lines it dropped.

use std::ffi::CString;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use super::{LogType, LoggingError};
use crate::config::Config;

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

    /// `message` as one line of a Mosquitto log type (timestamp, message, newline), for the lines the
    /// writer thread writes itself rather than through tracing (how many lines it dropped).
    pub(super) fn line(&self, message: std::fmt::Arguments<'_>) -> String {
        let mut text = String::new();
        let mut w = Writer::new(&mut text);
        // Writing to a String cannot fail.
        let _ = self.write_timestamp(&mut w);
        let _ = writeln!(w, "{message}");
        text
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
pub(super) fn strftime_local(secs: i64, pattern: &CString, out: &mut String) {
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
