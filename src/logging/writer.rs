//! The writer thread: it owns every log destination (stderr, stdout, files) and writes the lines the
//! logging threads format, so that no shard ever does log I/O. [`spawn_writer`] opens the destinations
//! and starts it (`super::init` calls it); the [`LineSink`] hands it lines through a bounded channel,
//! and the [`LogGuard`] held by `main` asks it to flush, to reopen the files (log rotation, on SIGHUP)
//! and to stop.
//!
//! A logging thread never waits for the writer: when the writer is [`WRITER_QUEUE_LINES`] lines behind,
//! a new line is dropped and counted instead, and before the next line it writes (or when its queue runs
//! dry, or before a flush) the writer writes one warning line saying how many were lost, e.g.
//! `1700000000: Log queue full: 1234 log lines dropped.`. The guard's requests (flush, reopen, stop)
//! are never dropped: they wait for room in the queue, behind the lines already in it (during a flood
//! they compete with new lines for each freed slot, so the wait can be longer). Only `main` makes them.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

use super::{LogDest, LogType, LoggingError, MosquittoFormat};
use crate::config::Config;

/// Lines the writer thread may fall behind by; past that, new lines are dropped (and counted) rather
/// than making the logging thread wait.
pub const WRITER_QUEUE_LINES: usize = 65_536;

/// How long the writer sleeps between looks at an empty queue before it blocks (see `Writer::run`).
const LINGER_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// How many empty looks the writer makes before it blocks in `recv` (see `Writer::run`).
const LINGER_POLLS: u32 = 10;

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
    /// Lines dropped because the queue was full and not reported yet; the writer takes it to 0 when it
    /// writes the report.
    dropped: Arc<AtomicU64>,
}

impl<'a> MakeWriter<'a> for LineSink {
    type Writer = LineSinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSinkWriter { sink: self }
    }
}

/// One event's writer: the fmt layer writes each formatted line with a single `write_all`.
#[derive(Debug)]
pub struct LineSinkWriter<'a> {
    sink: &'a LineSink,
}

impl Write for LineSinkWriter<'_> {
    /// Queues the line for the writer thread without ever blocking: when the queue is full the line is
    /// dropped and counted (the writer reports the count).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.sink.tx.try_send(WriterMsg::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.sink.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                // The writer has shut down (the guard was dropped): last resort, straight to stderr.
                io::stderr().write_all(buf)?;
            }
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
    File {
        path: PathBuf,
        out: BufWriter<File>,
    },
    /// A destination a test controls (one that blocks, to fill the queue).
    #[cfg(test)]
    Test(Box<dyn Write + Send>),
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
            #[cfg(test)]
            Destination::Test(w) => w,
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

    /// Waits until every line logged so far (and not dropped) has been written and flushed, together
    /// with the report of dropped lines if any. Blocks, also for room in a full queue: not for shard
    /// threads.
    pub fn flush(&self) {
        if let Some(w) = &self.writer {
            let (ack_tx, ack_rx) = mpsc::sync_channel(1);
            if w.tx.send(WriterMsg::Flush(ack_tx)).is_ok() {
                let _ = ack_rx.recv();
            }
        }
    }

    /// Closes and reopens log files, for log rotation (Mosquitto does this on SIGHUP), once the lines
    /// already queued are written. Returns without waiting for that, but waits for room when the queue
    /// is full (rather than losing the request): not for shard threads.
    pub fn reopen_files(&self) {
        if let Some(w) = &self.writer {
            let _ = w.tx.send(WriterMsg::Reopen);
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

/// Opens every destination of `config.log_dest` (so a bad log file fails start-up) and starts the
/// writer thread, with a queue of [`WRITER_QUEUE_LINES`] lines. Its report of dropped lines has
/// `config`'s timestamp format and is written only if `config.log_types` includes `warning`.
pub fn spawn_writer(config: &Config) -> Result<(LineSink, LogGuard), LoggingError> {
    let mut outs = Vec::with_capacity(config.log_dest.len());
    for d in &config.log_dest {
        outs.push(match d {
            LogDest::Stderr => Destination::Stderr(BufWriter::new(io::stderr())),
            LogDest::Stdout => Destination::Stdout(BufWriter::new(io::stdout())),
            LogDest::File(path) => Destination::File {
                path: path.clone(),
                out: open_append(path)?,
            },
        });
    }
    start_writer(outs, drop_report_format(config)?, WRITER_QUEUE_LINES)
}

/// The format of the "lines dropped" report: `config`'s, or `None` when warnings are not logged.
fn drop_report_format(config: &Config) -> Result<Option<MosquittoFormat>, LoggingError> {
    if config.log_types.contains(LogType::Warning) {
        MosquittoFormat::from_config(config).map(Some)
    } else {
        Ok(None)
    }
}

/// Starts the writer thread on `outs`, with a queue of `queue_lines` messages; `report` formats the
/// "lines dropped" line (`None`: drops are counted but not reported).
fn start_writer(
    outs: Vec<Destination>,
    report: Option<MosquittoFormat>,
    queue_lines: usize,
) -> Result<(LineSink, LogGuard), LoggingError> {
    let (tx, rx) = mpsc::sync_channel(queue_lines);
    let write_errors = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let writer = Writer {
        outs,
        errors: Arc::clone(&write_errors),
        dropped: Arc::clone(&dropped),
        report,
    };
    let thread = std::thread::Builder::new()
        .name("shardmq-log".into())
        .spawn(move || writer.run(rx))
        .map_err(|source| LoggingError::SpawnWriter { source })?;
    Ok((
        LineSink {
            tx: tx.clone(),
            dropped,
        },
        LogGuard {
            writer: Some(WriterHandle {
                tx,
                thread: Some(thread),
                write_errors,
            }),
        },
    ))
}

/// The writer thread's state.
struct Writer {
    outs: Vec<Destination>,
    /// Failed writes, for [`LogGuard::write_errors`].
    errors: Arc<AtomicU64>,
    /// Lines the senders dropped since the last report (shared with [`LineSink`]).
    dropped: Arc<AtomicU64>,
    /// How the report of dropped lines is formatted; `None`: not written.
    report: Option<MosquittoFormat>,
}

impl Writer {
    /// Writes lines to every destination, flushing whenever the queue runs dry, until told to stop or
    /// every sender is gone.
    ///
    /// Once the queue runs dry the thread lingers ([`LINGER_POLLS`] sleeps of [`LINGER_POLL`]) before
    /// it blocks in `recv`. Why: a blocked receiver makes every `try_send` a futex wake-up, paid by
    /// the shard that logs. During a connect storm (two lines per client with `connection_messages`)
    /// that was 11% of the shards' CPU (perf, 18,000 connects, 2 shards); a lingering writer is not
    /// registered as waiting, so a send is a store into the queue. It costs a line up to 1 ms more
    /// before it is written, and ten short wake-ups of this thread after each burst.
    fn run(mut self, rx: Receiver<WriterMsg>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            let mut idle_polls = 0;
            loop {
                let Some(msg) = next.take() else {
                    if idle_polls == 0 {
                        self.flush_all();
                    }
                    if idle_polls == LINGER_POLLS {
                        break;
                    }
                    idle_polls += 1;
                    std::thread::sleep(LINGER_POLL);
                    match rx.try_recv() {
                        Ok(msg) => {
                            idle_polls = 0;
                            next = Some(msg);
                        }
                        Err(mpsc::TryRecvError::Empty) => {}
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                    continue;
                };
                match msg {
                    WriterMsg::Line(line) => {
                        self.report_dropped();
                        self.write_all(&line);
                    }
                    WriterMsg::Flush(ack) => {
                        self.flush_all();
                        let _ = ack.send(());
                    }
                    WriterMsg::Reopen => {
                        self.flush_all();
                        self.reopen();
                    }
                    WriterMsg::Shutdown => {
                        self.flush_all();
                        return;
                    }
                }
                next = rx.try_recv().ok();
            }
        }
        self.flush_all();
    }

    fn write_all(&mut self, line: &[u8]) {
        for d in self.outs.iter_mut() {
            note(&self.errors, d.out().write_all(line));
        }
    }

    /// If lines were dropped since the last report, writes one line saying how many (and starts the
    /// count again).
    fn report_dropped(&mut self) {
        // A plain load first: the common case (nothing dropped) stays a read of a shared cache line.
        if self.dropped.load(Ordering::Relaxed) == 0 {
            return;
        }
        let n = self.dropped.swap(0, Ordering::Relaxed);
        if let Some(format) = &self.report {
            let plural = if n == 1 { "line" } else { "lines" };
            let line = format.line(format_args!("Log queue full: {n} log {plural} dropped."));
            self.write_all(line.as_bytes());
        }
    }

    /// Reports dropped lines, then flushes every destination.
    fn flush_all(&mut self) {
        self.report_dropped();
        for d in self.outs.iter_mut() {
            note(&self.errors, d.out().flush());
        }
    }

    fn reopen(&mut self) {
        for d in self.outs.iter_mut() {
            if let Destination::File { path, out } = d {
                match open_append(path) {
                    Ok(fresh) => *out = fresh,
                    Err(_) => note(&self.errors, Err(io::Error::other("reopen failed"))),
                }
            }
        }
    }
}

/// Counts a failed write in `errors`.
fn note(errors: &AtomicU64, r: io::Result<()>) {
    if r.is_err() {
        errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::{layer, log_type, LogTypes};
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
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
        let (sink, guard) = spawn_writer(&config).unwrap();
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
        let (sink, guard) = spawn_writer(&config).unwrap();
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
        let config = Config {
            log_dest: dests.to_vec(),
            ..Config::default()
        };
        match spawn_writer(&config) {
            Err(LoggingError::OpenFile { path, .. }) => {
                assert_eq!(path, PathBuf::from("/nonexistent-dir/x/broker.log"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// A destination that holds every write until it is opened, and says when a write arrives.
    #[derive(Clone)]
    struct Gate {
        state: Arc<GateState>,
        entered: mpsc::Sender<()>,
    }

    #[derive(Default)]
    struct GateState {
        /// Whether writes go through, and what they wrote.
        open_and_text: Mutex<(bool, Vec<u8>)>,
        opened: Condvar,
    }

    impl Gate {
        /// A closed gate, and the receiver told of each write that reaches it.
        fn closed() -> (Gate, mpsc::Receiver<()>) {
            let (entered, writes) = mpsc::channel();
            let gate = Gate {
                state: Arc::default(),
                entered,
            };
            (gate, writes)
        }

        fn open(&self) {
            self.state.open_and_text.lock().unwrap().0 = true;
            self.state.opened.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.state.open_and_text.lock().unwrap().1.clone()).unwrap()
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let mut state = self.state.open_and_text.lock().unwrap();
            while !state.0 {
                state = self.state.opened.wait(state).unwrap();
            }
            state.1.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Opens the gate when dropped, so that a failing test unblocks the writer (and the threads
    /// waiting on it) instead of hanging.
    struct OpenOnDrop(Gate);

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.open();
        }
    }

    fn fixed_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    const PATIENCE: Duration = Duration::from_secs(5);

    /// A writer on a closed gate (then `more` destinations) with a queue of `queue_lines`, already stuck
    /// writing `line 0`: the queue is empty and nothing leaves it until the gate opens.
    fn stuck_writer(queue_lines: usize, more: Vec<Destination>) -> (Gate, LineSink, LogGuard) {
        let (gate, writes) = Gate::closed();
        let format = MosquittoFormat::from_config(&Config::default())
            .unwrap()
            .with_clock(fixed_clock);
        let mut outs = vec![Destination::Test(Box::new(gate.clone()))];
        outs.extend(more);
        let (sink, guard) = start_writer(outs, Some(format), queue_lines).unwrap();
        sink.make_writer().write_all(b"line 0\n").unwrap();
        if writes.recv_timeout(PATIENCE).is_err() {
            gate.open();
            panic!("the writer did not take the first line");
        }
        (gate, sink, guard)
    }

    /// Logs `line {i}` for each `i` in `lines` on another thread; whether that finished within
    /// [`PATIENCE`] (it cannot if logging blocks on the stuck writer).
    fn log_lines_on_a_thread(sink: &LineSink, lines: std::ops::RangeInclusive<usize>) -> bool {
        let sink = sink.clone();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for i in lines {
                sink.make_writer()
                    .write_all(format!("line {i}\n").as_bytes())
                    .unwrap();
            }
            let _ = done_tx.send(());
        });
        done_rx.recv_timeout(PATIENCE).is_ok()
    }

    fn numbered_lines(lines: std::ops::RangeInclusive<usize>) -> String {
        lines.map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn a_full_queue_drops_lines_without_blocking_and_says_how_many() {
        let (gate, sink, guard) = stuck_writer(8, Vec::new());
        let _open = OpenOnDrop(gate.clone());
        // 8 lines fill the queue; the 100 after them find it full.
        let finished = log_lines_on_a_thread(&sink, 1..=108);
        gate.open();
        assert!(finished, "logging blocked on a full queue");
        guard.flush();
        // The report comes before the next line the writer writes; the accepted lines are all there,
        // in order.
        assert_eq!(
            gate.text(),
            format!(
                "line 0\n1700000000: Log queue full: 100 log lines dropped.\n{}",
                numbered_lines(1..=8)
            )
        );
        // The count was taken back to 0: no second report.
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 0);
        sink.make_writer().write_all(b"line 109\n").unwrap();
        guard.flush();
        assert!(
            gate.text().ends_with("line 8\nline 109\n"),
            "{}",
            gate.text()
        );
    }

    #[test]
    fn flush_reopen_and_shutdown_get_through_a_full_queue() {
        let dir = std::env::temp_dir().join(format!("shardmq-logging-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.log");
        let rotated = dir.join("broker.log.1");
        let file = Destination::File {
            path: path.clone(),
            out: open_append(&path).unwrap(),
        };
        let (gate, sink, guard) = stuck_writer(4, vec![file]);
        let text = std::thread::scope(|s| {
            let _open = OpenOnDrop(gate.clone());
            assert!(log_lines_on_a_thread(&sink, 1..=6), "logging blocked");
            std::fs::rename(&path, &rotated).unwrap();
            // The queue is full: the requests wait for room, behind the queued lines.
            let (done_tx, done_rx) = mpsc::channel();
            let (guard, gate) = (&guard, &gate);
            s.spawn(move || {
                guard.reopen_files();
                guard.flush();
                let _ = done_tx.send(gate.text());
            });
            assert!(
                done_rx.recv_timeout(Duration::from_millis(200)).is_err(),
                "flush returned while the writer was stuck"
            );
            gate.open();
            done_rx
                .recv_timeout(PATIENCE)
                .expect("flush returns once the writer catches up")
        });
        let before = format!(
            "line 0\n1700000000: Log queue full: 2 log lines dropped.\n{}",
            numbered_lines(1..=4)
        );
        assert_eq!(
            text, before,
            "flush waits for every accepted line and the report"
        );
        sink.make_writer().write_all(b"after\n").unwrap();
        guard.flush();
        let old = std::fs::read_to_string(&rotated).unwrap();
        // Missing if the reopen was lost.
        let new = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(old, before, "the reopen came after the queued lines");
        assert_eq!(new, "after\n", "the reopen was not lost");
        drop(guard);

        // Shutdown on a full queue: dropping the guard still writes everything queued before it.
        let (gate, sink, guard) = stuck_writer(4, Vec::new());
        let _open = OpenOnDrop(gate.clone());
        assert!(log_lines_on_a_thread(&sink, 1..=5), "logging blocked");
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = done_tx.send(());
        });
        gate.open();
        done_rx
            .recv_timeout(PATIENCE)
            .expect("the guard's drop returns once the writer catches up");
        assert_eq!(
            gate.text(),
            format!(
                "line 0\n1700000000: Log queue full: 1 log line dropped.\n{}",
                numbered_lines(1..=4)
            )
        );
    }

    #[test]
    fn the_drop_report_follows_the_line_format_and_log_types() {
        let config = Config {
            log_timestamp: false,
            ..Config::default()
        };
        let format = drop_report_format(&config)
            .unwrap()
            .expect("warnings are logged");
        assert_eq!(format.line(format_args!("x y")), "x y\n");
        let config = Config {
            log_types: LogTypes::NONE.with(LogType::Error),
            ..Config::default()
        };
        assert!(drop_report_format(&config).unwrap().is_none());

        // Not reported when warnings are not logged, but still counted and reset.
        let (gate, writes) = Gate::closed();
        let (sink, guard) =
            start_writer(vec![Destination::Test(Box::new(gate.clone()))], None, 1).unwrap();
        let _open = OpenOnDrop(gate.clone());
        sink.make_writer().write_all(b"line 0\n").unwrap();
        writes.recv_timeout(PATIENCE).unwrap();
        assert!(log_lines_on_a_thread(&sink, 1..=3), "logging blocked");
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 2);
        gate.open();
        guard.flush();
        assert_eq!(gate.text(), numbered_lines(0..=1));
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 0);
    }
}
