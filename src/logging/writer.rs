//! The writer thread: it owns every log destination (stderr, stdout, files) and writes the lines the
//! logging threads format, so that no shard ever does log I/O. [`spawn_writer`] opens the destinations
//! and starts it (`super::init` calls it); the [`LineSink`] hands it lines through a bounded channel,
//! and the [`LogGuard`] held by `main` asks it to flush, to reopen the files (log rotation, on SIGHUP)
//! and to stop.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

use super::{LogDest, LoggingError};

/// Lines the writer thread may fall behind by before loggers wait.
pub const WRITER_QUEUE_LINES: usize = 65_536;

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
    /// A guard with no writer thread, for when nothing is logged (`log_dest none`, `log_type none`).
    pub(super) fn inactive() -> LogGuard {
        LogGuard { writer: None }
    }

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
    use crate::config::Config;
    use crate::logging::{layer, log_type};
    use tracing_subscriber::layer::SubscriberExt;

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
