//! Idle connections without a task: a connection that has neither read nor written for a while
//! gives up its serving task, and its state waits in one small allocation until something wakes it.
//!
//! Why: an idle client's task (its future and glommio's header, 384 bytes) was the largest part of
//! what the broker holds per idle client (issue 18, memory per idle client; docs/PERFORMANCE.md).
//! What a connection needs between two wake-ups is only what its task kept apart from the halves'
//! futures, and those are at their waits with nothing in flight when both are idle: the reader
//! waiting for the socket with no byte left undecoded, the writer waiting for the outbox with nothing
//! unwritten. So the task ends there, and its state moves into a [`Parked`] cell, which is its own
//! waker ([`waker`]): put where the task's waker was (the shard's readiness registry, the outbox, the
//! keep-alive), it resumes the connection with a new task when any of them fires, exactly where the
//! old one would have been woken. Starting the halves over from the top is the same as a spurious
//! wake-up of the old task (they check everything again and wait).
//!
//! When: a task parks after [`PARK_AFTER`] ticks with both halves idle. A connection that goes idle
//! asks the shard's [`Parking`] to wake it once that time has passed (one entry at a time per
//! connection); woken, it parks if it stayed idle. A busy connection never parks, so the only cost
//! for it is that entry once per idle spell; a client that sends every few seconds pays one task
//! spawn per wake-up.
//!
//! Thread safety: a [`Parked`] cell is an `Rc`. Its waker goes only where the connection's own
//! task's waker went, all of it state of the shard's thread (the registry is thread-local, the
//! outbox and keep-alive are `Rc`s of the shard); it is never sent to another thread.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{RawWaker, RawWakerVTable, Waker};

/// Ticks (`keepalive::TICK`, 100 ms) a connection stays idle before its task parks: 1.0-1.1 s.
pub(super) const PARK_AFTER: u32 = 10;

/// A parked connection's state, resumed when it is woken.
pub(super) trait Resume: Sized + 'static {
    /// Start serving again (spawn a task for it).
    fn resume(self);
}

thread_local! {
    /// Connections parked on this shard's thread now (`$SYS/broker/clients/parked`).
    static PARKED: Cell<u64> = const { Cell::new(0) };
}

/// How many connections wait parked on this shard now.
pub(super) fn parked_here() -> u64 {
    PARKED.with(Cell::get)
}

fn count_parked(up: bool) {
    PARKED.with(|p| {
        p.set(if up {
            p.get() + 1
        } else {
            p.get().saturating_sub(1)
        })
    });
}

/// The cell a parked connection waits in (see the module doc). Taken by the first wake-up; the
/// other wakers that still point at it find it empty and do nothing.
pub(super) struct Parked<T> {
    state: Cell<Option<T>>,
}

/// Park `state`: returns the waker that resumes it. The caller puts it wherever the state's task
/// waited, then drops its own copy.
pub(super) fn park<T: Resume>(state: T) -> Waker {
    count_parked(true);
    let cell = Rc::new(Parked {
        state: Cell::new(Some(state)),
    });
    let raw = RawWaker::new(Rc::into_raw(cell).cast(), &Parked::<T>::VTABLE);
    // SAFETY: the vtable's functions treat the data pointer as the `Rc<Parked<T>>` it is, with one
    // strong count per waker (see `Parked::clone_raw` and the others). Wakers of a parked cell stay
    // on the shard's thread (module doc), as the `Rc` requires.
    unsafe { Waker::from_raw(raw) }
}

impl<T: Resume> Parked<T> {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(
        Self::clone_raw,
        Self::wake_raw,
        Self::wake_by_ref_raw,
        Self::drop_raw,
    );

    /// Resume the state, once.
    fn fire(&self) {
        if let Some(state) = self.state.take() {
            count_parked(false);
            state.resume();
        }
    }

    unsafe fn clone_raw(data: *const ()) -> RawWaker {
        // SAFETY: `data` is a live `Rc<Parked<T>>` (one count per waker): one more count.
        unsafe { Rc::increment_strong_count(data.cast::<Parked<T>>()) };
        RawWaker::new(data, &Self::VTABLE)
    }

    unsafe fn wake_raw(data: *const ()) {
        // SAFETY: consumes this waker's count.
        let cell = unsafe { Rc::from_raw(data.cast::<Parked<T>>()) };
        cell.fire();
    }

    unsafe fn wake_by_ref_raw(data: *const ()) {
        // SAFETY: borrowed from a live waker.
        let cell = unsafe { &*data.cast::<Parked<T>>() };
        cell.fire();
    }

    unsafe fn drop_raw(data: *const ()) {
        // SAFETY: gives back this waker's count.
        drop(unsafe { Rc::from_raw(data.cast::<Parked<T>>()) });
    }
}

impl<T> Drop for Parked<T> {
    fn drop(&mut self) {
        // Never woken (the shard's thread ending): the connection ends with its state.
        if self.state.get_mut().is_some() {
            count_parked(false);
        }
    }
}

/// The shard's clock for parking (its ticks) and the connections that asked to be woken to park.
#[derive(Default)]
pub(super) struct Parking {
    now: u32,
    /// (tick to wake at, the task), in the order asked, which is the order of the ticks.
    due: VecDeque<(u32, Waker)>,
}

impl Parking {
    /// Ticks since the shard started.
    pub(super) fn now(&self) -> u32 {
        self.now
    }

    /// Wake `waker` [`PARK_AFTER`] ticks from now. Returns the tick it will be woken at.
    pub(super) fn watch(&mut self, waker: &Waker) -> u32 {
        let at = self.now.wrapping_add(PARK_AFTER);
        self.due.push_back((at, waker.clone()));
        at
    }

    /// The shard's tick: wake the connections whose time came.
    pub(super) fn tick(&mut self) {
        self.now = self.now.wrapping_add(1);
        while let Some((at, _)) = self.due.front() {
            if self.now.wrapping_sub(*at) > u32::MAX / 2 {
                break;
            }
            if let Some((_, waker)) = self.due.pop_front() {
                waker.wake();
            }
        }
        if self.due.is_empty() && self.due.capacity() > 1024 {
            // A burst of connections going idle at once does not keep its queue's room.
            self.due = VecDeque::new();
        }
    }
}

/// A serving task's idle time, and whether it asked the shard to wake it (see [`Idleness::idle`]).
#[derive(Default)]
pub(super) struct Idleness {
    /// The tick since which both halves are idle.
    since: Option<u32>,
    /// The tick the shard will wake the task at, when it asked.
    watched: Option<u32>,
}

impl Idleness {
    /// Called by the serving task when one of its halves has something in flight (or ended).
    pub(super) fn busy(&mut self) {
        self.since = None;
    }

    /// Called by the serving task when both halves wait with nothing in flight. True when the task
    /// should park now.
    pub(super) fn idle(&mut self, parking: &mut Parking, waker: &Waker) -> bool {
        let now = parking.now();
        let since = *self.since.get_or_insert(now);
        if now.wrapping_sub(since) >= PARK_AFTER {
            return true;
        }
        // One request at a time: a task woken by it asks again if it was busy meanwhile.
        let waiting = self
            .watched
            .is_some_and(|at| at.wrapping_sub(now).wrapping_sub(1) < u32::MAX / 2);
        if !waiting {
            self.watched = Some(parking.watch(waker));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::task::Wake;

    thread_local! {
        static RESUMED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    struct State(u32);

    impl Resume for State {
        fn resume(self) {
            RESUMED.with(|r| r.borrow_mut().push(self.0));
        }
    }

    fn resumed() -> Vec<u32> {
        RESUMED.with(|r| std::mem::take(&mut *r.borrow_mut()))
    }

    #[test]
    fn a_parked_state_resumes_once_whichever_waker_fires() {
        let before = parked_here();
        let waker = park(State(7));
        assert_eq!(parked_here(), before + 1);
        let others = [waker.clone(), waker.clone()];
        assert!(resumed().is_empty());
        others[0].wake_by_ref();
        assert_eq!(resumed(), vec![7]);
        assert_eq!(parked_here(), before);
        // The other wakers (the registry's, the keep-alive's) find the cell empty.
        others[1].wake_by_ref();
        waker.wake();
        drop(others);
        assert!(resumed().is_empty());
    }

    #[test]
    fn dropping_every_waker_frees_the_state_without_resuming_it() {
        let dropped = Rc::new(Cell::new(false));
        struct Guard(Rc<Cell<bool>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        impl Resume for Guard {
            fn resume(self) {
                panic!("not woken");
            }
        }
        let before = parked_here();
        let waker = park(Guard(dropped.clone()));
        let other = waker.clone();
        drop(waker);
        assert!(!dropped.get());
        drop(other);
        assert!(dropped.get());
        assert_eq!(parked_here(), before);
    }

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn counting() -> (std::sync::Arc<Count>, Waker) {
        let c = std::sync::Arc::new(Count(0.into()));
        (c.clone(), Waker::from(c))
    }

    fn woken(c: &Count) -> usize {
        c.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn a_task_idle_for_park_after_ticks_parks_and_a_busy_one_does_not() {
        let mut parking = Parking::default();
        let (count, waker) = counting();
        let mut idle = Idleness::default();
        assert!(!idle.idle(&mut parking, &waker));
        for _ in 0..PARK_AFTER - 1 {
            parking.tick();
        }
        assert_eq!(woken(&count), 0, "woken before its time");
        parking.tick();
        assert_eq!(woken(&count), 1);
        // Woken by the shard: still idle, so it parks.
        assert!(idle.idle(&mut parking, &waker));

        // Busy in between: the idle time starts over, and it asks once more when woken early.
        let (count, waker) = counting();
        let mut idle = Idleness::default();
        assert!(!idle.idle(&mut parking, &waker));
        for _ in 0..5 {
            parking.tick();
        }
        idle.busy();
        // Idle again: the request already made stands (one at a time).
        assert!(!idle.idle(&mut parking, &waker));
        assert_eq!(parking.due.len(), 1);
        for _ in 0..5 {
            parking.tick();
        }
        assert_eq!(woken(&count), 1);
        assert!(!idle.idle(&mut parking, &waker), "idle for 5 ticks only");
        assert_eq!(parking.due.len(), 1, "asked again");
        for _ in 0..PARK_AFTER {
            parking.tick();
        }
        assert_eq!(woken(&count), 2);
        assert!(idle.idle(&mut parking, &waker));
    }
}
