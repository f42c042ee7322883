//! Wake-up stress: two glommio executors (shards) ping-pong messages through the broker's own
//! mailboxes (`shardmq::router`), so that nearly every message finds its receiver parked and must wake
//! it. A lost wake-up anywhere on that path (the mailbox's `ParkFlag`, glommio's foreign-wake queue
//! and eventfd, the patched sleep in `vendor/glommio`: see its PATCHES.md) shows up as a hang, which a
//! watchdog turns into a failure naming how far the exchange got.
//!
//! Phases, each checking that every message comes back, once, in order:
//! 1. one message in flight: every send finds the other shard asleep (the park path every time);
//! 2. bursts of 1 to 64 in flight: senders race the receiver's re-check before it parks;
//! 3. one in flight while the echoing shard also sleeps on glommio timers now and then, so that the
//!    latency-ring timer the patched reactor keeps armed meets sleeps that user timers end.
//!
//! `tests/park_model.rs` checks the same handshakes exhaustively on a model; this runs the real code.
//! SHARDMQ_STRESS_SCALE (default 1) multiplies the message counts, for long local runs.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use shardmq::router::{Inbox, Mail, MailSenders, MailboxMatrix};
use shardmq::stats::ShardStats;

/// No progress for this long is a hang (a healthy round trip takes well under a millisecond).
const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Message counts of the three phases at scale 1: about 1.2 million messages in all.
const PING_PONG_ROUND_TRIPS: u64 = 100_000;
const BURST_ROUND_TRIPS: u64 = 400_000;
const TIMER_ROUND_TRIPS: u64 = 20_000;

fn scale() -> u64 {
    std::env::var("SHARDMQ_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Waits for the next message from the other shard, parking on the inbox's waker.
async fn recv(inbox: &Inbox, batch: &mut Vec<Mail>) -> Mail {
    loop {
        if let Some(m) = batch.pop() {
            return m;
        }
        let control = poll_fn(|cx| inbox.poll_recv(cx, batch)).await;
        assert!(control.is_none(), "no control command is ever sent here");
        // `poll_recv` appends in arrival order; `pop` takes from the back.
        batch.reverse();
    }
}

/// Sends, yielding while the bounded mailbox is full (the bursts never exceed it, but be safe).
async fn send(out: &MailSenders, to: u16, mut mail: Mail) {
    loop {
        match out.try_send(to, mail) {
            Ok(()) => return,
            Err(back) => {
                mail = back;
                futures_lite::future::yield_now().await;
            }
        }
    }
}

fn seq(m: &Mail) -> u32 {
    match m {
        Mail::StatsReply(s) => u32::try_from(s.messages_sent).expect("a message number"),
        _ => panic!("unexpected mail"),
    }
}

/// Message number `n` (any mail of the bounded mailboxes would do; this one carries a number and
/// allocates nothing).
fn numbered(n: u32) -> Mail {
    Mail::StatsReply(ShardStats {
        messages_sent: u64::from(n),
        ..ShardStats::default()
    })
}

/// Shard 0: sends numbered messages and checks the echoes; `progress` counts echoes received.
async fn pinger(out: MailSenders, inbox: Inbox, progress: Arc<AtomicU64>, s: u64) {
    let mut batch = Vec::new();
    let mut next: u32 = 0;
    let mut expect: u32 = 0;
    let check = |m: Mail, expect: &mut u32| {
        assert_eq!(seq(&m), *expect, "echo out of order or duplicated");
        *expect = expect.wrapping_add(1);
        progress.fetch_add(1, Ordering::Relaxed);
    };
    // Phase 1 and 3 (the echo side adds the timers in phase 3): one in flight.
    for _ in 0..PING_PONG_ROUND_TRIPS * s {
        send(&out, 1, numbered(next)).await;
        next = next.wrapping_add(1);
        check(recv(&inbox, &mut batch).await, &mut expect);
    }
    // Phase 2: bursts of 1..=64.
    let mut sent = 0;
    let mut burst = 1;
    while sent < BURST_ROUND_TRIPS * s {
        // The last burst is cut to land on the exact count.
        burst = burst.min(BURST_ROUND_TRIPS * s - sent);
        for _ in 0..burst {
            send(&out, 1, numbered(next)).await;
            next = next.wrapping_add(1);
        }
        for _ in 0..burst {
            check(recv(&inbox, &mut batch).await, &mut expect);
        }
        sent += burst;
        burst = burst % 64 + 1;
    }
    for _ in 0..TIMER_ROUND_TRIPS * s {
        send(&out, 1, numbered(next)).await;
        next = next.wrapping_add(1);
        check(recv(&inbox, &mut batch).await, &mut expect);
    }
    // Tell the echo side to stop.
    send(&out, 1, numbered(u32::MAX)).await;
}

/// Shard 1: echoes every message; in the last phase it sleeps on a glommio timer every 97 messages.
async fn echo(out: MailSenders, inbox: Inbox, s: u64) {
    let mut batch = Vec::new();
    let timer_phase_from = (PING_PONG_ROUND_TRIPS + BURST_ROUND_TRIPS) * s;
    let mut n: u64 = 0;
    loop {
        let m = recv(&inbox, &mut batch).await;
        if seq(&m) == u32::MAX {
            return;
        }
        if n >= timer_phase_from && n % 97 == 0 {
            glommio::timer::sleep(Duration::from_micros(50 + n % 300)).await;
        }
        n += 1;
        send(&out, 0, m).await;
    }
}

#[test]
fn shards_ping_pong_without_a_lost_wakeup() {
    let s = scale();
    let total = (PING_PONG_ROUND_TRIPS + BURST_ROUND_TRIPS + TIMER_ROUND_TRIPS) * s;
    let MailboxMatrix {
        mail_out, inboxes, ..
    } = MailboxMatrix::new(2);
    let progress = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    let mut ends = mail_out.into_iter().zip(inboxes);
    let (out0, in0) = ends.next().unwrap();
    let (out1, in1) = ends.next().unwrap();

    let p = progress.clone();
    let h0 = LocalExecutorBuilder::new(Placement::Unbound)
        .name("pinger")
        .io_memory(64 << 10)
        .spawn({
            let done = done_tx.clone();
            move || async move {
                pinger(out0, in0, p, s).await;
                let _ = done.send("pinger");
            }
        })
        .expect("executor starts");
    let h1 = LocalExecutorBuilder::new(Placement::Unbound)
        .name("echo")
        .io_memory(64 << 10)
        .spawn({
            let done = done_tx.clone();
            move || async move {
                echo(out1, in1, s).await;
                let _ = done.send("echo");
            }
        })
        .expect("executor starts");
    drop(done_tx);

    // The watchdog: the exchange must keep moving; a stall of STALL_LIMIT is a lost wake-up.
    let started = Instant::now();
    let mut finished = 0;
    let mut last = (0, Instant::now());
    while finished < 2 {
        match done_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(_) => finished += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > STALL_LIMIT {
                    panic!(
                        "hang: no echo for {STALL_LIMIT:?} after {now} of {total} round trips \
                         ({:?} in): a lost wake-up",
                        started.elapsed()
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("an executor panicked"),
        }
    }
    h0.join().expect("pinger");
    h1.join().expect("echo");
    assert_eq!(
        progress.load(Ordering::Relaxed),
        total,
        "every message came back"
    );
}

/// A shard whose mailbox to another is full waits for room on an event: the receiver taking mail
/// wakes it (no timer polls). Shard 0 fills its mailbox to shard 1 and holds a few more messages back,
/// then parks on its space waker; shard 1 starts draining only once shard 0 parked. Every message must
/// arrive, in order, with no stall, over 20 such rounds.
#[test]
fn a_full_mailbox_wakes_its_sender_when_drained() {
    use std::collections::VecDeque;
    use std::task::Poll;
    let MailboxMatrix {
        mail_out, inboxes, ..
    } = MailboxMatrix::new(2);
    let mut ends = mail_out.into_iter().zip(inboxes);
    let (out0, _in0) = ends.next().unwrap();
    let (_out1, in1) = ends.next().unwrap();
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let (seen_tx, seen_rx) = mpsc::channel::<u32>();
    const ROUNDS: u32 = 20;
    const END: u32 = u32::MAX;

    // Sends what `held` holds, in order, until the mailbox is full; whether some is left.
    fn retry(out: &MailSenders, held: &mut VecDeque<Mail>) -> bool {
        while let Some(m) = held.pop_front() {
            if let Err(m) = out.try_send(1, m) {
                held.push_front(m);
                return true;
            }
        }
        false
    }

    let sender = LocalExecutorBuilder::new(Placement::Unbound)
        .name("full-sender")
        .io_memory(64 << 10)
        .spawn(move || async move {
            let mut next: u32 = 0;
            let mut held: VecDeque<Mail> = VecDeque::new();
            for round in 0..ROUNDS {
                // Queue until the mailbox refuses, then hold back a few more, as a shard does.
                while held.is_empty() {
                    if let Err(m) = out0.try_send(1, numbered(next)) {
                        held.push_back(m);
                    }
                    next += 1;
                }
                for _ in 0..8 {
                    held.push_back(numbered(next));
                    next += 1;
                }
                poll_fn(|cx| {
                    if !retry(&out0, &mut held) {
                        return Poll::Ready(());
                    }
                    out0.prepare_space_wait(cx);
                    if !retry(&out0, &mut held) {
                        out0.cancel_space_wait();
                        return Poll::Ready(());
                    }
                    if round == 0 {
                        let _ = parked_tx.send(());
                    }
                    Poll::Pending
                })
                .await;
            }
            held.push_back(numbered(END));
            poll_fn(|cx| {
                out0.prepare_space_wait(cx);
                if retry(&out0, &mut held) {
                    Poll::Pending
                } else {
                    out0.cancel_space_wait();
                    Poll::Ready(())
                }
            })
            .await;
            next
        })
        .expect("executor starts");

    // The receiver waits until the sender parked on the full mailbox before it takes anything.
    parked_rx
        .recv_timeout(STALL_LIMIT)
        .expect("the sender filled the mailbox and parked");
    let receiver = LocalExecutorBuilder::new(Placement::Unbound)
        .name("late-receiver")
        .io_memory(64 << 10)
        .spawn(move || async move {
            let mut batch = Vec::new();
            let mut expect: u32 = 0;
            loop {
                let n = seq(&recv(&in1, &mut batch).await);
                if n == END {
                    return;
                }
                assert_eq!(n, expect, "mail kept its order through the waits");
                expect += 1;
                let _ = seen_tx.send(expect);
            }
        })
        .expect("executor starts");
    let mut seen = 0;
    loop {
        match seen_rx.recv_timeout(STALL_LIMIT) {
            Ok(n) => seen = n,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("hang: the sender's wait for room was not woken ({seen} received)")
            }
        }
    }
    receiver.join().expect("receiver");
    let sent = sender.join().expect("sender");
    assert_eq!(seen, sent, "every held-back message arrived");
    assert!(
        sent > 512,
        "the first round overfilled the 512-message mailbox"
    );
}
