//! Cross-shard mailbox hand-off: shard 0 sends `Mail::Publish(Arc<Message>)` to shard 1 through the real
//! [`MailboxMatrix`] (bounded crossbeam FIFO per shard pair plus the [`MailWaker`](shardmq::router::MailWaker)),
//! and the benches measure how fast mail gets through with the receiving core in different states.
//!
//! - `busy/work_<N>us`: the receiver thread never sleeps; between drains it spins N µs, standing in for
//!   a shard busy with sockets and matching. Messages/s through the hand-off with batch drains. A full
//!   mailbox makes the sender retry, as the broker's overflow queue does, so the rate is bounded by the
//!   receiver's drain rate: at most the router's per-poll batch (256 per source) per N µs.
//! - `parked_thread/burst_<B>`: the receiver has parked (std `thread::park`, its task waker unparks the
//!   thread) before the sender queues a burst of B messages; the time is from the first send until the
//!   receiver has taken all B, so it includes one wake-up through the `MailWaker`.
//! - `parked_glommio/burst_<B>`: the same with the receiver as a task on a glommio `LocalExecutor`, polled
//!   through `Inbox::poll_recv` as the shard's mail loop does; a wake goes through glommio's foreign-wake
//!   queue and eventfd. Skipped (with a message) where glommio cannot start an executor.
//!
//! Each message is one of a pool of distinct `Arc<Message>`s whose 64 B payloads are slices of one read
//! buffer, cloned once per send (one clone per destination shard, as the broker does): the sender's
//! refcount increment and the receiver's decrement cross cores as in the broker, but no allocation is
//! measured. Sender is the bench thread; with at least 2 CPUs it is pinned to the first and the receiver
//! to the second.
//!
//! Run: `cargo bench --bench mailbox`; add `-- --quick` for a short run.

use std::future::poll_fn;
use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use core_affinity::CoreId;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use shardmq::codec::{Properties, QoS};
use shardmq::message::Message;
use shardmq::router::{Control, ControlSender, Inbox, Mail, MailSenders, MailboxMatrix, ShardId};

/// Payload size: a typical telemetry message (the size the mailbox figures in docs/PERFORMANCE.md were taken with).
const PAYLOAD_BYTES: usize = 64;
/// Distinct messages cycled through; well above the mailbox capacity so the sender rarely touches a
/// refcount the receiver is dropping at that moment.
const POOL_MESSAGES: usize = 4096;
/// Receiver work between drains in the busy case.
const BUSY_WORK: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_micros(5),
    Duration::from_micros(50),
];
/// Messages per burst in the parked cases: one message (pure wake-up latency) and a small burst.
const BURSTS: [u64; 2] = [1, 32];
/// A bench whose peer stopped answering fails after this instead of hanging the run.
const STALL_LIMIT: Duration = Duration::from_secs(10);
// The broker's allocator (src/main.rs), should anything on these paths allocate.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SENDER: ShardId = 0;
const RECEIVER: ShardId = 1;

/// Where the two threads run.
#[derive(Clone, Copy)]
struct Pinning {
    sender: Option<CoreId>,
    receiver: Option<CoreId>,
}

impl Pinning {
    /// Pins only when each thread can have a core of its own: on one CPU, pinning both to it would only
    /// hide the scheduler's behaviour the unpinned figure shows anyway.
    fn detect() -> Pinning {
        match core_affinity::get_core_ids() {
            Some(ids) if ids.len() >= 2 => Pinning {
                sender: Some(ids[0]),
                receiver: Some(ids[1]),
            },
            _ => Pinning {
                sender: None,
                receiver: None,
            },
        }
    }
    fn describe(self) -> String {
        match (self.sender, self.receiver) {
            (Some(s), Some(r)) => {
                format!("sender pinned to CPU {}, receiver to CPU {}", s.id, r.id)
            }
            _ => "unpinned (fewer than 2 CPUs)".to_string(),
        }
    }
}

fn message_pool() -> Vec<Arc<Message>> {
    // One buffer as a socket read would fill; each payload is a zero-copy slice of it.
    let read_buffer = Bytes::from(
        (0..POOL_MESSAGES * PAYLOAD_BYTES)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    (0..POOL_MESSAGES)
        .map(|i| {
            Arc::new(Message::new(
                format!("site/{}/dev/{i}/temp", i % 64).into(),
                read_buffer.slice(i * PAYLOAD_BYTES..(i + 1) * PAYLOAD_BYTES),
                QoS::AtMostOnce,
                false,
                Properties::default(),
                Some((SENDER, i as u32)),
            ))
        })
        .collect()
}

/// What the receiver reports back to the sender.
#[derive(Default)]
struct Progress {
    /// Messages taken out of the mailbox so far.
    received: AtomicU64,
    /// `received` at the moment the receiver last went to sleep (u64::MAX before the first time): the
    /// sender waits for it to equal what it sent, so it knows the receiver is parked with nothing pending.
    parked_at: AtomicU64,
    /// Non-empty drains so far (mean batch = received / drains).
    drains: AtomicU64,
    /// Times a sender's notify actually woke the receiver's task.
    wakes: AtomicU64,
    /// Set once the receiver runs (a glommio executor that failed to start never sets it).
    started: AtomicBool,
}

impl Progress {
    fn new() -> Arc<Progress> {
        let progress = Progress::default();
        progress.parked_at.store(u64::MAX, Ordering::Relaxed);
        Arc::new(progress)
    }
}

/// Spins until `done` holds; panics after [`STALL_LIMIT`] so a lost wake-up fails the bench visibly.
fn spin_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + STALL_LIMIT;
    let mut spins = 0u32;
    while !done() {
        spin_loop();
        spins = spins.wrapping_add(1);
        // Reading the clock every spin would slow the very wait being measured.
        if spins % 4096 == 0 && Instant::now() > deadline {
            panic!("mailbox bench stalled waiting for {what}");
        }
    }
}

/// Handles one drained batch the way the shard's cheapest mail does: look at it, drop the `Arc`.
fn consume(batch: &mut Vec<Mail>, progress: &Progress) {
    let n = batch.len() as u64;
    for mail in batch.drain(..) {
        if let Mail::Publish(message, _) = mail {
            black_box(message.payload.len());
        }
    }
    progress.drains.fetch_add(1, Ordering::Relaxed);
    progress.received.fetch_add(n, Ordering::Release);
}

/// Task waker of the thread receivers: counts wakes and unparks the receiving thread.
struct ThreadWaker {
    thread: thread::Thread,
    progress: Arc<Progress>,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.progress.wakes.fetch_add(1, Ordering::Relaxed);
        self.thread.unpark();
    }
}

/// How the receiving end waits when its mailbox is empty.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReceiverMode {
    /// Spins `work` between polls and never sleeps.
    Busy { work: Duration },
    /// `thread::park` until its task waker runs.
    ParkedThread,
    /// A glommio task; the executor sleeps when the task is pending.
    ParkedGlommio,
}

/// The sending side of one running receiver.
struct Link {
    /// Shard 0's row of the matrix: the real `try_send` + `MailWaker::notify` path.
    mail_out: MailSenders,
    /// Stops the receiver the way the server stops a shard.
    control: ControlSender,
    /// What the receiver has done, read by the sender to know when mail got through.
    progress: Arc<Progress>,
    /// Messages cloned into the mailbox in turn.
    pool: Vec<Arc<Message>>,
    /// Next pool index to send.
    next: usize,
    /// Times `try_send` found the mailbox full.
    full: u64,
    /// Joins the receiver's thread once it was told to shut down.
    stop: Box<dyn FnOnce()>,
}

impl Link {
    fn start(kind: ReceiverMode, placement: Pinning) -> Result<Link, String> {
        let MailboxMatrix {
            mut mail_out,
            mut inboxes,
            control,
        } = MailboxMatrix::new(2);
        let inbox = inboxes.swap_remove(RECEIVER as usize);
        let mail_out = mail_out.swap_remove(SENDER as usize);
        let control = control[RECEIVER as usize].clone();
        let progress = Progress::new();
        let stop: Box<dyn FnOnce()> = match kind {
            ReceiverMode::Busy { .. } | ReceiverMode::ParkedThread => {
                let progress = progress.clone();
                let core = placement.receiver;
                let handle = thread::Builder::new()
                    .name("mailbox-receiver".into())
                    .spawn(move || {
                        if let Some(core) = core {
                            core_affinity::set_for_current(core);
                        }
                        thread_receiver(kind, &inbox, &progress);
                    })
                    .map_err(|e| format!("spawning the receiver thread: {e}"))?;
                Box::new(move || {
                    let _ = handle.join();
                })
            }
            ReceiverMode::ParkedGlommio => {
                let progress = progress.clone();
                let glommio_placement = match placement.receiver {
                    Some(core) => Placement::Fixed(core.id),
                    None => Placement::Unbound,
                };
                let handle = LocalExecutorBuilder::new(glommio_placement)
                    .name("mailbox-receiver")
                    .spawn(move || async move { glommio_receiver(&inbox, &progress).await })
                    .map_err(|e| format!("starting a glommio executor: {e}"))?;
                Box::new(move || {
                    if let Err(e) = handle.join() {
                        eprintln!("glommio receiver: {e}");
                    }
                })
            }
        };
        let link = Link {
            mail_out,
            control,
            progress,
            pool: message_pool(),
            next: 0,
            full: 0,
            stop,
        };
        // An executor that could not start (io_uring refused, memlock limit) never runs the task.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !link.progress.started.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                // Leave the thread behind: it has already failed or will never report.
                return Err("the receiver did not start within 5 s".to_string());
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(link)
    }

    /// Queues one message, retrying while the mailbox is full (the broker parks it in its overflow queue
    /// and retries; here the sender has nothing else to do).
    fn send_one(&mut self) {
        let message = self.pool[self.next % POOL_MESSAGES].clone();
        self.next = self.next.wrapping_add(1);
        let mut mail = Mail::Publish(message, Default::default());
        loop {
            match self.mail_out.try_send(RECEIVER, mail) {
                Ok(()) => return,
                Err(back) => {
                    mail = back;
                    self.full += 1;
                    spin_loop();
                }
            }
        }
    }

    fn received(&self) -> u64 {
        self.progress.received.load(Ordering::Acquire)
    }

    fn wait_received(&self, target: u64) {
        spin_until("the receiver to drain", || self.received() >= target);
    }

    /// Waits (untimed) until the receiver sleeps with everything sent so far taken.
    fn wait_parked(&self, sent: u64) {
        spin_until("the receiver to park", || {
            self.progress.parked_at.load(Ordering::Acquire) == sent
        });
    }

    /// Stops the receiver and prints what it saw.
    fn finish(self, label: &str) {
        self.control.send(Control::Shutdown);
        (self.stop)();
        let received = self.progress.received.load(Ordering::Relaxed);
        let drains = self.progress.drains.load(Ordering::Relaxed).max(1);
        let wakes = self.progress.wakes.load(Ordering::Relaxed);
        eprintln!(
            "  {label}: {received} messages in {drains} drains (mean batch {:.1}), {wakes} wakes \
             ({:.4} per message), sender found the mailbox full {} times",
            received as f64 / drains as f64,
            wakes as f64 / received.max(1) as f64,
            self.full,
        );
    }
}

fn spin_for(work: Duration) {
    if work.is_zero() {
        return;
    }
    let until = Instant::now() + work;
    while Instant::now() < until {
        spin_loop();
    }
}

fn thread_receiver(kind: ReceiverMode, inbox: &Inbox, progress: &Arc<Progress>) {
    let waker = Waker::from(Arc::new(ThreadWaker {
        thread: thread::current(),
        progress: progress.clone(),
    }));
    let mut cx = Context::from_waker(&waker);
    let mut batch = Vec::with_capacity(256);
    progress.started.store(true, Ordering::Release);
    loop {
        match inbox.poll_recv(&mut cx, &mut batch) {
            Poll::Ready(Some(Control::Shutdown)) => return,
            Poll::Ready(Some(
                Control::Tick | Control::Security(..) | Control::Wills(_) | Control::BeginWriting,
            )) => {}
            Poll::Ready(None) => consume(&mut batch, progress),
            Poll::Pending => match kind {
                // A busy shard keeps working; its mail task is polled again when woken, which with a
                // steady sender is almost at once, so polling on the next round is equivalent.
                ReceiverMode::Busy { .. } => {}
                _ => {
                    let seen = progress.received.load(Ordering::Relaxed);
                    progress.parked_at.store(seen, Ordering::Release);
                    // Spurious returns only cost one more poll.
                    thread::park();
                }
            },
        }
        if let ReceiverMode::Busy { work } = kind {
            spin_for(work);
        }
    }
}

/// The shard's mail loop reduced to the mailbox: poll, handle the batch, yield to other tasks.
async fn glommio_receiver(inbox: &Inbox, progress: &Progress) {
    let mut batch = Vec::with_capacity(256);
    // The task is polled again after Pending only when its waker ran: that poll counts as one wake.
    let mut pending = false;
    progress.started.store(true, Ordering::Release);
    loop {
        let control = poll_fn(|cx| {
            if std::mem::take(&mut pending) {
                progress.wakes.fetch_add(1, Ordering::Relaxed);
            }
            let poll = inbox.poll_recv(cx, &mut batch);
            if poll.is_pending() {
                pending = true;
                // The executor sleeps right after this (there is no other task).
                let seen = progress.received.load(Ordering::Relaxed);
                progress.parked_at.store(seen, Ordering::Release);
            }
            poll
        })
        .await;
        if let Some(Control::Shutdown) = control {
            return;
        }
        consume(&mut batch, progress);
        futures_lite::future::yield_now().await;
    }
}

fn bench_busy(c: &mut Criterion, placement: Pinning) {
    let mut group = c.benchmark_group("busy");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for work in BUSY_WORK {
        let label = format!("work_{}us", work.as_micros());
        let mut link = match Link::start(ReceiverMode::Busy { work }, placement) {
            Ok(link) => link,
            Err(e) => {
                eprintln!("  busy/{label}: skipped: {e}");
                continue;
            }
        };
        group.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter_custom(|iters| {
                let target = link.received() + iters;
                let start = Instant::now();
                for _ in 0..iters {
                    link.send_one();
                }
                // Counted until the receiver has taken the last one: the hand-off, not just the queueing.
                link.wait_received(target);
                start.elapsed()
            });
        });
        link.finish(&format!("busy/{label}"));
    }
    group.finish();
}

fn bench_parked(c: &mut Criterion, placement: Pinning, kind: ReceiverMode, name: &str) {
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for burst in BURSTS {
        let label = format!("burst_{burst}");
        let mut link = match Link::start(kind, placement) {
            Ok(link) => link,
            Err(e) => {
                eprintln!("  {name}/{label}: skipped: {e}");
                continue;
            }
        };
        group.throughput(Throughput::Elements(burst));
        group.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let sent = link.received();
                    link.wait_parked(sent);
                    let start = Instant::now();
                    for _ in 0..burst {
                        link.send_one();
                    }
                    link.wait_received(sent + burst);
                    total += start.elapsed();
                }
                total
            });
        });
        link.finish(&format!("{name}/{label}"));
    }
    group.finish();
}

fn bench_mailbox(c: &mut Criterion) {
    let placement = Pinning::detect();
    eprintln!(
        "config: cross-shard mailbox hand-off shard {SENDER} -> shard {RECEIVER} (MailboxMatrix of 2), \
         Mail::Publish(Arc<Message>) with {PAYLOAD_BYTES} B payloads from a pool of {POOL_MESSAGES}; \
         busy receiver work between drains {:?}; parked bursts {:?}; {} CPUs available, {}",
        BUSY_WORK,
        BURSTS,
        thread::available_parallelism().map_or(0, |n| n.get()),
        placement.describe(),
    );
    if let Some(core) = placement.sender {
        core_affinity::set_for_current(core);
    }
    bench_busy(c, placement);
    bench_parked(c, placement, ReceiverMode::ParkedThread, "parked_thread");
    bench_parked(c, placement, ReceiverMode::ParkedGlommio, "parked_glommio");
}

criterion_group!(benches, bench_mailbox);
criterion_main!(benches);
