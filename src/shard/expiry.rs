//! Session expiry: a persistent session whose client stays away longer than its expiry interval is
//! ended, as Mosquitto 2.0 does (`session_expiry.c`). The interval is the v5 Session Expiry Interval
//! (CONNECT, or the DISCONNECT that changed it), "never" for a 3.x persistent session, and in both
//! cases at most `persistent_client_expiration` when that is set.
//!
//! Each disconnect of a persistent session with a finite interval pushes one deadline, tagged with the
//! session's generation, on a min-heap the shard checks on its tick. A client that comes back gets a new
//! generation at attach, so its old deadline is skipped when it comes up: nothing is removed from the
//! heap on reconnect, and sessions that never expire cost nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Pending deadlines: (when, slot, generation), earliest first. Session expiries use one heap, delayed
/// wills (`shard::will`) another.
#[derive(Debug, Default)]
pub(super) struct Deadlines(BinaryHeap<Reverse<(Instant, u32, u32)>>);

impl Deadlines {
    pub(super) fn push(&mut self, at: Instant, slot: u32, generation: u32) {
        self.0.push(Reverse((at, slot, generation)));
    }

    /// The next deadline not later than `now`, taken off the heap.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(u32, u32)> {
        match self.0.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self
                .0
                .pop()
                .map(|Reverse((_, slot, generation))| (slot, generation)),
            _ => None,
        }
    }
}

/// How long a session outlives a disconnect, if not forever: the client's interval capped by the
/// global `persistent_client_expiration` (Mosquitto's `set_session_expiry_time`).
/// Seconds since the Unix epoch, as the journal records when a client went away
/// (`Record::Session::away_since`): wall-clock time, because it must mean the same after a restart.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn expiry_after(interval: u32, global: Option<Duration>) -> Option<Duration> {
    let own = (interval != u32::MAX).then(|| Duration::from_secs(u64::from(interval)));
    match (own, global) {
        (Some(own), Some(global)) => Some(own.min(global)),
        (own, global) => own.or(global),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorter_of_client_and_global_expiry_wins() {
        let h = Some(Duration::from_secs(3600));
        assert_eq!(expiry_after(u32::MAX, None), None, "3.x persistent: never");
        assert_eq!(expiry_after(u32::MAX, h), h);
        assert_eq!(expiry_after(60, h), Some(Duration::from_secs(60)));
        assert_eq!(expiry_after(7200, h), h);
        assert_eq!(expiry_after(0, None), Some(Duration::ZERO));
        assert_eq!(expiry_after(5, None), Some(Duration::from_secs(5)));
    }

    #[test]
    fn deadlines_come_out_in_time_order_once_due() {
        let mut e = Deadlines::default();
        let t0 = Instant::now();
        e.push(t0 + Duration::from_secs(2), 7, 1);
        e.push(t0 + Duration::from_secs(1), 3, 4);
        assert_eq!(e.pop_due(t0), None);
        assert_eq!(e.pop_due(t0 + Duration::from_secs(1)), Some((3, 4)));
        assert_eq!(e.pop_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(e.pop_due(t0 + Duration::from_secs(5)), Some((7, 1)));
        assert_eq!(e.pop_due(t0 + Duration::from_secs(5)), None);
    }
}
