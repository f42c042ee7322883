//! One epoll instance per shard for the readiness of all its client sockets and listeners.
//!
//! Why not glommio's own readiness: a glommio stream waits for a read with a `POLL_ADD` source of its
//! own, a ~490-byte allocation that lives as long as the wait, and re-armed after every read. An idle
//! client is one such wait, so a million idle clients held half a gigabyte of them (issue 18; memory per
//! idle client, docs/PERFORMANCE.md), and every read of a busy one queued a new `POLL_ADD`. Here each
//! socket is registered once, edge-triggered, for as long as it is open; waiting costs a waker in a
//! slot of this registry (24 bytes: the waker and the ways it waits), and the shard's [`drive`] task
//! takes every ready socket at once with one `epoll_wait`, waiting in between on the epoll descriptor
//! itself (one `POLL_ADD` through glommio, `glommio::net::wait_readable`, vendored patch 8).
//!
//! The rule that makes edge triggering safe: a task tries the system call first and registers its
//! waker only after it returned `EAGAIN`, in the same poll. An edge that came before that attempt is
//! covered by the attempt; one after it finds the waker (events are dispatched by [`drive`], a task
//! of the same thread, so never in between).
//!
//! The registry is the shard thread's (`thread_local!`): sockets are registered, waited on and
//! dropped only on the shard that serves them; a socket handed to another shard is removed here first
//! (`Registration`'s drop) and registered again there.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Duration;

use crate::logging::log_type;

/// Events taken per `epoll_wait`; a shard with more ready sockets yields and takes the rest after.
const BATCH: usize = 256;

/// Which way a task waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Interest {
    Read,
    Write,
}

/// One socket's waiter. One waker for both ways: a socket is served by one task at a time (the
/// connection's setup, then its serving task, `serving.rs`), so a slot is 24 bytes, not 40. A new
/// task's wait replaces the old task's, which has ended (two tasks waiting on one socket at once
/// would lose a wake-up: keep it one task).
#[derive(Default)]
struct Slot {
    waker: Option<Waker>,
    /// The ways the waker waits for, since its `EAGAIN`s.
    read: bool,
    write: bool,
    /// Told apart from earlier users of the slot, so that an event fetched for a socket already gone
    /// wakes nobody.
    generation: u32,
}

struct Registry {
    epoll: OwnedFd,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
}

thread_local! {
    static REGISTRY: RefCell<Option<Rc<Registry>>> = const { RefCell::new(None) };
}

/// The shard thread's registry, created (with its [`drive`] task) on first use.
fn registry() -> io::Result<Rc<Registry>> {
    REGISTRY.with(|r| {
        if let Some(reg) = r.borrow().as_ref() {
            return Ok(reg.clone());
        }
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let reg = Rc::new(Registry {
            // SAFETY: `fd` is the epoll instance just created, owned by nobody else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        });
        *r.borrow_mut() = Some(reg.clone());
        // In the default queue whichever task registers first (the accept loop runs in the setup
        // queue): readiness is served before connections are set up (`executor::setup_queue`).
        super::executor::spawn_into(drive(reg.clone()), glommio::TaskQueueHandle::default())
            .detach();
        Ok(reg)
    })
}

/// A socket's place in its shard's registry: from [`Registration::new`] until dropped (which removes
/// it from the epoll instance; drop it before closing the socket).
pub(super) struct Registration {
    fd: RawFd,
    slot: u32,
    generation: u32,
}

impl Registration {
    /// Register `fd` for readability, writability and the peer's close, edge-triggered.
    pub(super) fn new(fd: RawFd) -> io::Result<Registration> {
        let reg = registry()?;
        let (slot, generation) = {
            let mut slots = reg.slots.borrow_mut();
            let slot = match reg.free.borrow_mut().pop() {
                Some(s) => s,
                None => {
                    slots.push(Slot::default());
                    (slots.len() - 1) as u32
                }
            };
            let s = &mut slots[slot as usize];
            s.generation = s.generation.wrapping_add(1);
            (slot, s.generation)
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token(slot, generation),
        };
        // SAFETY: both descriptors are open; `event` outlives the call.
        let rc =
            unsafe { libc::epoll_ctl(reg.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            reg.free.borrow_mut().push(slot);
            return Err(e);
        }
        Ok(Registration {
            fd,
            slot,
            generation,
        })
    }

    /// Wake the task of `cx` when the socket becomes ready for `interest`. Call only after the system
    /// call for it returned `EAGAIN` (see the module doc).
    pub(super) fn wait(&self, interest: Interest, cx: &Context<'_>) {
        let Ok(reg) = registry() else { return };
        let mut slots = reg.slots.borrow_mut();
        let slot = &mut slots[self.slot as usize];
        debug_assert_eq!(slot.generation, self.generation);
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => {
                // Another task now (the setup's ended): what the old one waited for is not waited
                // for any more.
                slot.read = false;
                slot.write = false;
                slot.waker = Some(cx.waker().clone());
            }
        }
        match interest {
            Interest::Read => slot.read = true,
            Interest::Write => slot.write = true,
        }
    }

    /// Whether the task of `cx` still waits for `interest` since its last [`Self::wait`]: no event
    /// came for it since (the dispatch takes the waker when one does), so the system call would
    /// return `EAGAIN` again and need not be made.
    pub(super) fn waiting(&self, interest: Interest, cx: &Context<'_>) -> bool {
        let Ok(reg) = registry() else { return false };
        let slots = reg.slots.borrow();
        let slot = &slots[self.slot as usize];
        let waits = match interest {
            Interest::Read => slot.read,
            Interest::Write => slot.write,
        };
        waits && slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
    }

    /// Hand the wait for readability to `waker` (a parked connection's, `parking.rs`) in place of the
    /// task that waited. False when nothing waits for readability (an event came since the task's
    /// `EAGAIN`): the caller must not wait then.
    pub(super) fn hand_read_wait_to(&self, waker: &Waker) -> bool {
        let Ok(reg) = registry() else { return false };
        let mut slots = reg.slots.borrow_mut();
        let slot = &mut slots[self.slot as usize];
        if !slot.read || slot.waker.is_none() {
            return false;
        }
        slot.write = false;
        slot.waker = Some(waker.clone());
        true
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Ok(reg) = registry() else { return };
        // SAFETY: `self.fd` is still open (the owner drops this first); a null event is allowed for
        // EPOLL_CTL_DEL since Linux 2.6.9.
        unsafe {
            libc::epoll_ctl(
                reg.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                self.fd,
                std::ptr::null_mut(),
            )
        };
        let mut slots = reg.slots.borrow_mut();
        let slot = &mut slots[self.slot as usize];
        *slot = Slot {
            generation: slot.generation,
            ..Slot::default()
        };
        // A new generation now, so that an event fetched before the removal wakes nobody.
        slot.generation = slot.generation.wrapping_add(1);
        reg.free.borrow_mut().push(self.slot);
    }
}

fn token(slot: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(slot)
}

/// The shard's readiness task: takes what the epoll instance reports and wakes the tasks waiting for
/// it; waits on the epoll descriptor when nothing is ready. Runs as long as the shard's executor.
async fn drive(reg: Rc<Registry>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
    loop {
        // SAFETY: `events` has room for BATCH entries; timeout 0 never blocks the shard.
        let n = unsafe {
            libc::epoll_wait(reg.epoll.as_raw_fd(), events.as_mut_ptr(), BATCH as i32, 0)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(target: log_type::WARNING, "Warning: epoll_wait failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            continue;
        }
        dispatch(&reg, &events[..n as usize]);
        if n as usize == BATCH {
            // More may be ready: let the woken tasks run first.
            futures_lite::future::yield_now().await;
            continue;
        }
        if let Err(e) = glommio::net::wait_readable(reg.epoll.as_raw_fd()).await {
            tracing::warn!(target: log_type::WARNING, "Warning: cannot wait on the shard's epoll instance: {e}");
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn dispatch(reg: &Registry, events: &[libc::epoll_event]) {
    let mut slots = reg.slots.borrow_mut();
    for event in events {
        let (data, flags) = (event.u64, event.events as i32);
        let Some(slot) = slots.get_mut((data & 0xffff_ffff) as usize) else {
            continue;
        };
        if slot.generation != (data >> 32) as u32 {
            continue;
        }
        let broken = flags & (libc::EPOLLHUP | libc::EPOLLERR) != 0;
        let readable = broken || flags & (libc::EPOLLIN | libc::EPOLLRDHUP) != 0;
        let writable = broken || flags & libc::EPOLLOUT != 0;
        if (slot.read && readable) || (slot.write && writable) {
            // Both ways are tried again: the task retries whatever it waits for.
            slot.read = false;
            slot.write = false;
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }
}
