//! State shared by every client task and the orchestrator: the run's clock, its phase, the global
//! counters and the latency histograms.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;
use shardmq::codec::{ProtocolVersion, QoS};
use tokio::sync::Notify;

/// Phases of a run, in order. Clients read the phase at the top of their loop and are woken by
/// [`Shared::set_phase`] when it changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Phase {
    /// Clients connect and subscribe; nobody publishes.
    Setup = 0,
    /// Publishers publish (warmup, then the measure window).
    Run = 1,
    /// Publishers stopped producing; everyone keeps reading and acknowledging.
    Drain = 2,
    /// Everyone sends DISCONNECT and leaves.
    Stop = 3,
}

/// Times in nanoseconds since [`Shared::epoch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Publishers start (beginning of the warmup).
    pub start: u64,
    /// Beginning of the measure window.
    pub warmup_end: u64,
    /// End of the measure window: no message is published at or after it.
    pub measure_end: u64,
}

impl Timeline {
    pub fn in_window(&self, t: u64) -> bool {
        t >= self.warmup_end && t < self.measure_end
    }
}

/// Settings every client needs.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub version: ProtocolVersion,
    pub qos: QoS,
    /// Payload size in bytes (at least 16).
    pub payload: usize,
    /// Messages per second per publisher; 0 = as fast as possible.
    pub rate: u64,
    /// Unacknowledged QoS 1/2 messages per publisher.
    pub inflight: u16,
    /// Max rate: messages a publisher may be ahead of its subscribers' receipts.
    pub window: u64,
    /// Deliveries each message should produce (subscribers per message).
    pub fanout: u64,
    pub publishers: u32,
    /// Seconds; 0 disables PINGREQ.
    pub keepalive: u16,
    /// Subscribers keep their sessions (`--persistent`).
    pub persistent: bool,
    /// Publishers set RETAIN (`--retain`).
    pub retain: bool,
    /// TLS for every client (`--tls-ca`); plain TCP when `None`.
    pub tls: Option<std::sync::Arc<crate::tls::TlsSetup>>,
}

pub struct Shared {
    /// The clock of the run: payload timestamps are nanoseconds since this instant.
    pub epoch: Instant,
    /// CLOCK_MONOTONIC (what `Instant` reads on Linux) at `epoch`, in nanoseconds: for timerfd deadlines.
    pub mono_at_epoch: u64,
    pub settings: RunSettings,
    phase: AtomicU8,
    pub phase_notify: Notify,
    start: AtomicU64,
    warmup_end: AtomicU64,
    measure_end: AtomicU64,
    /// PUBLISH packets produced by all publishers.
    pub sent: AtomicU64,
    /// PUBLISH packets whose send time falls in the measure window.
    pub sent_window: AtomicU64,
    /// QoS 1/2 flows completed (PUBACK / PUBCOMP received).
    pub acked: AtomicU64,
    /// QoS 1/2 flows the broker answered with an error reason code (v5).
    pub rejected: AtomicU64,
    /// Deliveries seen by all subscribers, duplicates included.
    pub received: AtomicU64,
    /// Deliveries seen by all subscribers, duplicates excluded (drives the drain wait).
    pub received_unique: AtomicU64,
    /// Deliveries in the measure window counted outside the subscribers' trackers (retained storms).
    pub received_window_total: AtomicU64,
    /// Unique deliveries received per publisher (index = publisher id): the end-to-end window of
    /// max-rate publishers.
    pub delivered: Vec<AtomicU64>,
    /// Connections that failed after setup.
    pub errors: AtomicU64,
    error_messages: Mutex<Vec<String>>,
    /// Latency (ns) of unique deliveries whose send time falls in the measure window. Sharded so that
    /// subscribers on different threads rarely share a lock; merged at the end.
    pub latency: Vec<Mutex<Histogram<u64>>>,
}

/// Keep at most this many error messages (the count is exact).
const MAX_ERROR_MESSAGES: usize = 20;

/// Latency histograms cover 1 ns .. 1 hour with 3 significant digits.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Shared {
    pub fn new(settings: RunSettings, latency_shards: usize) -> Shared {
        let epoch = Instant::now();
        let mono_at_epoch = monotonic_now_ns();
        let publishers = settings.publishers;
        Shared {
            epoch,
            mono_at_epoch,
            settings,
            phase: AtomicU8::new(Phase::Setup as u8),
            phase_notify: Notify::new(),
            start: AtomicU64::new(u64::MAX),
            warmup_end: AtomicU64::new(u64::MAX),
            measure_end: AtomicU64::new(u64::MAX),
            sent: AtomicU64::new(0),
            sent_window: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            received: AtomicU64::new(0),
            received_unique: AtomicU64::new(0),
            received_window_total: AtomicU64::new(0),
            delivered: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            errors: AtomicU64::new(0),
            error_messages: Mutex::new(Vec::new()),
            latency: (0..latency_shards.max(1))
                .map(|_| Mutex::new(new_latency_histogram()))
                .collect(),
        }
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Setup,
            1 => Phase::Run,
            2 => Phase::Drain,
            _ => Phase::Stop,
        }
    }

    /// Publishes the new phase and wakes every client.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
        self.phase_notify.notify_waiters();
    }

    /// Sets the timeline and enters [`Phase::Run`].
    pub fn start_run(&self, timeline: Timeline) {
        self.start.store(timeline.start, Ordering::SeqCst);
        self.warmup_end.store(timeline.warmup_end, Ordering::SeqCst);
        self.measure_end
            .store(timeline.measure_end, Ordering::SeqCst);
        self.set_phase(Phase::Run);
    }

    /// Valid once the phase is past [`Phase::Setup`].
    pub fn timeline(&self) -> Timeline {
        Timeline {
            start: self.start.load(Ordering::SeqCst),
            warmup_end: self.warmup_end.load(Ordering::SeqCst),
            measure_end: self.measure_end.load(Ordering::SeqCst),
        }
    }

    pub fn record_error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut messages = self.error_messages.lock().unwrap();
        if messages.len() < MAX_ERROR_MESSAGES {
            messages.push(message);
        }
    }

    pub fn error_messages(&self) -> Vec<String> {
        self.error_messages.lock().unwrap().clone()
    }

    /// All latency shards merged.
    pub fn merged_latency(&self) -> Histogram<u64> {
        let mut all = new_latency_histogram();
        for shard in &self.latency {
            all.add(&*shard.lock().unwrap())
                .expect("histograms with the same bounds");
        }
        all
    }
}
