//! Model checks of the two park/notify handshakes a shard relies on to never miss a wake-up, under
//! loom (every interleaving, and the weak-memory outcomes loom models, of small thread programs).
//!
//! 1. shardmq's own [`ParkFlag`] (`src/router/park.rs`), compiled here from the same file against
//!    loom's atomics: a shard's mail task parks, other shards queue mail and wake it.
//! 2. glommio's `SleepNotifier` handshake as `vendor/glommio` ships it (PATCHES.md, patch 1): an
//!    executor about to sleep in `io_uring_enter` against threads that queue foreign wakers and write
//!    its eventfd. That code lives inside glommio's reactor and cannot be compiled alone, so
//!    [`Notifier`] below copies its three steps line for line from `vendor/glommio/src/sys/mod.rs`
//!    (`prepare_to_sleep`, `notify`, `wake_up`) and `src/sys/uring.rs` (`Reactor::wait`).
//!
//! Each protocol is also run without its fences (`*_without_fences_loses_a_wakeup`): loom must find the
//! lost wake-up there, which shows these tests can fail.
//!
//! Each model parks once. A receiver that parks, finds mail, clears its mark and parks again is
//! correct by the same argument (the C++ rule for two SeqCst fences applies to each park), but loom
//! 0.7 reports a lost wake-up for it that the C++ memory model forbids (its SeqCst-fence model is
//! incomplete when a relaxed RMW reads the receiver's clear): that case is left to
//! `tests/wakeup_stress.rs`, which runs the real code on real threads.
//!
//! The queues are modelled by a relaxed counter: weaker than crossbeam's channels, whose own
//! synchronisation the handshakes must not (and after patch 1 do not) depend on.

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// What `src/router/park.rs` imports as `super::atomics`.
mod atomics {
    pub use loom::sync::atomic::{fence, AtomicBool, Ordering};
}

#[path = "../src/router/park.rs"]
#[allow(dead_code)]
mod park;
use park::ParkFlag;

/// The receiver's last look before sleeping, then what the world looks like once every thread ended:
/// the receiver must have seen the mail, or have been woken.
fn receiver_never_sleeps_through_mail<F>(set_parked: F, take_parked: fn(&ParkFlagLike) -> bool)
where
    F: Fn(&ParkFlagLike) + Send + Sync + 'static,
{
    loom::model(move || {
        let flag = Arc::new(ParkFlagLike::default());
        let queue = Arc::new(AtomicUsize::new(0));
        let woken = Arc::new(AtomicBool::new(false));

        let sender = {
            let (flag, queue, woken) = (flag.clone(), queue.clone(), woken.clone());
            thread::spawn(move || {
                queue.fetch_add(1, Ordering::Relaxed);
                if take_parked(&flag) {
                    woken.store(true, Ordering::Relaxed);
                }
            })
        };

        set_parked(&flag);
        let seen = queue.load(Ordering::Relaxed);
        sender.join().unwrap();
        assert!(
            seen > 0 || woken.load(Ordering::Relaxed),
            "lost wake-up: the receiver parked without seeing the mail and nobody woke it"
        );
    });
}

/// A flag with a real `ParkFlag` and a bare one, so one driver serves the real protocol and the
/// broken one.
#[derive(Default)]
struct ParkFlagLike {
    real: ParkFlag,
    bare: AtomicBool,
}

#[test]
fn park_flag_never_loses_a_wakeup() {
    receiver_never_sleeps_through_mail(|f| f.real.set_parked(), |f| f.real.take_parked());
}

#[test]
#[should_panic(expected = "lost wake-up")]
fn park_flag_without_fences_loses_a_wakeup() {
    receiver_never_sleeps_through_mail(
        |f| f.bare.store(true, Ordering::Release),
        |f| f.bare.swap(false, Ordering::AcqRel),
    );
}

/// Two senders against one park: whichever order the three threads run in, the receiver sees both
/// messages or is woken.
#[test]
fn park_flag_two_senders() {
    loom::model(|| {
        let flag = Arc::new(ParkFlag::new());
        let queue = Arc::new(AtomicUsize::new(0));
        let wakes = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (flag, queue, wakes) = (flag.clone(), queue.clone(), wakes.clone());
                thread::spawn(move || {
                    queue.fetch_add(1, Ordering::Relaxed);
                    if flag.take_parked() {
                        wakes.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        flag.set_parked();
        let seen = queue.load(Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
        assert!(
            seen == 2 || wakes.load(Ordering::Relaxed) > 0,
            "lost wake-up with two senders: the receiver saw {seen} of 2 and was not woken"
        );
    });
}

/// glommio's `SleepNotifier` (vendor/glommio/src/sys/mod.rs) reduced to its handshake: `should_notify`
/// and the eventfd (a counter of writes). `fences: false` is upstream's protocol with its membarrier
/// taken out and nothing put in its place.
struct Notifier {
    should_notify: AtomicBool,
    eventfd_writes: AtomicUsize,
    fences: bool,
}

impl Notifier {
    fn new(fences: bool) -> Notifier {
        Notifier {
            should_notify: AtomicBool::new(false),
            eventfd_writes: AtomicUsize::new(0),
            fences,
        }
    }

    /// `SleepNotifier::prepare_to_sleep`.
    fn prepare_to_sleep(&self) {
        self.should_notify.store(true, Ordering::Relaxed);
        if self.fences {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    /// `SleepNotifier::notify(false)`.
    fn notify(&self) {
        if self.fences {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
        if self.should_notify.load(Ordering::Relaxed)
            && self
                .should_notify
                .compare_exchange(true, false, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.eventfd_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `SleepNotifier::wake_up`.
    fn wake_up(&self) {
        self.should_notify.store(false, Ordering::Relaxed);
    }
}

/// `Reactor::wait`'s sleep path against `SleepNotifier::queue_waker` from two other threads. The
/// sleeper stops at its sleep (`io_uring_enter` blocks until the eventfd is written), so `wake_up`
/// runs only on the path where the re-check found work.
fn glommio_sleep_never_misses_a_foreign_wake(fences: bool) {
    // Three threads with a compare-exchange each: unbounded, loom needs minutes in a debug build.
    // Every lost wake-up here needs at most two preemptions (sleeper between its store and its
    // re-check, a waker between its enqueue and its load), so a bound of 3 still covers them.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(move || {
        let n = Arc::new(Notifier::new(fences));
        let foreign_wakes = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let (n, q) = (n.clone(), foreign_wakes.clone());
                thread::spawn(move || {
                    // `queue_waker`: send the waker on the channel, then notify.
                    q.fetch_add(1, Ordering::Relaxed);
                    n.notify();
                })
            })
            .collect();
        n.prepare_to_sleep();
        // `process_remote_channels()` after the fence: the re-check.
        let seen = foreign_wakes.load(Ordering::Relaxed);
        let sleeps = seen == 0;
        if !sleeps {
            n.wake_up();
        }
        for w in wakers {
            w.join().unwrap();
        }
        if sleeps {
            assert!(
                n.eventfd_writes.load(Ordering::Relaxed) > 0,
                "lost wake-up: the executor sleeps with a foreign wake queued and no eventfd write"
            );
        }
    });
}

#[test]
fn glommio_sleep_handshake_never_loses_a_wakeup() {
    glommio_sleep_never_misses_a_foreign_wake(true);
}

#[test]
#[should_panic(expected = "lost wake-up")]
fn glommio_sleep_handshake_without_fences_loses_a_wakeup() {
    glommio_sleep_never_misses_a_foreign_wake(false);
}
