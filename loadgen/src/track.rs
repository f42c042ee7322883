//! Per-subscriber bookkeeping: which sequence numbers of each publisher were seen, to count duplicates
//! and out-of-order deliveries (MQTT orders messages per publisher and topic, so order is checked per
//! publisher stream).

use std::collections::HashMap;

/// Sequence numbers remembered behind the highest one seen, per stream. A message older than that is
/// counted as out of order (whether it is a duplicate cannot be told any more).
const WINDOW: u32 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Higher than every sequence number seen before (gaps are possible: lost or not yet arrived).
    InOrder,
    /// Lower than the highest seen, and not seen before.
    OutOfOrder,
    /// Seen before.
    Duplicate,
}

/// One publisher as seen by one subscriber.
#[derive(Clone)]
pub struct Stream {
    max: Option<u32>,
    bits: Box<[u64; WORDS]>,
    pub received: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            max: None,
            bits: Box::new([0; WORDS]),
            received: 0,
            out_of_order: 0,
            duplicates: 0,
        }
    }
}

impl Stream {
    #[inline]
    fn slot(seq: u32) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    #[inline]
    fn is_set(&self, seq: u32) -> bool {
        let (w, m) = Self::slot(seq);
        self.bits[w] & m != 0
    }

    #[inline]
    fn set(&mut self, seq: u32) {
        let (w, m) = Self::slot(seq);
        self.bits[w] |= m;
    }

    #[inline]
    fn clear(&mut self, seq: u32) {
        let (w, m) = Self::slot(seq);
        self.bits[w] &= !m;
    }

    pub fn observe(&mut self, seq: u32) -> Seen {
        self.received += 1;
        let seen = match self.max {
            None => {
                self.set(seq);
                self.max = Some(seq);
                Seen::InOrder
            }
            Some(max) if seq > max => {
                if seq - max >= WINDOW {
                    self.bits.fill(0);
                } else {
                    for skipped in max + 1..seq {
                        self.clear(skipped);
                    }
                }
                self.set(seq);
                self.max = Some(seq);
                Seen::InOrder
            }
            Some(max) => {
                if max - seq >= WINDOW {
                    Seen::OutOfOrder
                } else if self.is_set(seq) {
                    Seen::Duplicate
                } else {
                    self.set(seq);
                    Seen::OutOfOrder
                }
            }
        };
        match seen {
            Seen::OutOfOrder => self.out_of_order += 1,
            Seen::Duplicate => self.duplicates += 1,
            Seen::InOrder => {}
        }
        seen
    }
}

/// Everything one subscriber saw. Behind a mutex that only its own task locks (once per read batch)
/// until the orchestrator reads it at the end.
#[derive(Default)]
pub struct SubTrack {
    /// Deliveries, duplicates included.
    pub received: u64,
    /// Deliveries, duplicates excluded.
    pub unique: u64,
    /// Deliveries received (receive time) during the measure window.
    pub received_window: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// PUBLISH packets whose payload is not a loadgen payload of this run (too short or an unknown
    /// publisher id).
    pub unexpected: u64,
    /// By publisher id.
    pub streams: HashMap<u32, Stream>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_duplicate_then_reordered() {
        let mut s = Stream::default();
        assert_eq!(s.observe(0), Seen::InOrder);
        assert_eq!(s.observe(1), Seen::InOrder);
        assert_eq!(s.observe(1), Seen::Duplicate);
        assert_eq!(s.observe(4), Seen::InOrder);
        assert_eq!(s.observe(3), Seen::OutOfOrder);
        assert_eq!(s.observe(3), Seen::Duplicate);
        assert_eq!(s.observe(2), Seen::OutOfOrder);
        assert_eq!(s.observe(5), Seen::InOrder);
        assert_eq!((s.received, s.out_of_order, s.duplicates), (8, 2, 2));
    }

    #[test]
    fn window_slides() {
        let mut s = Stream::default();
        for seq in 0..3 * WINDOW {
            assert_eq!(s.observe(seq), Seen::InOrder);
        }
        // Inside the window: a duplicate.
        assert_eq!(s.observe(3 * WINDOW - 10), Seen::Duplicate);
        // Behind the window: reported as out of order.
        assert_eq!(s.observe(5), Seen::OutOfOrder);
        // A big jump clears the window: the slot of seq (big - WINDOW) must not look seen.
        let big = 10 * WINDOW;
        assert_eq!(s.observe(big), Seen::InOrder);
        assert_eq!(s.observe(big - 1), Seen::OutOfOrder);
        assert_eq!(s.observe(big - 1), Seen::Duplicate);
        // Gap inside the window: skipped slots are cleared.
        assert_eq!(s.observe(big + 3), Seen::InOrder);
        assert_eq!(s.observe(big + 2), Seen::OutOfOrder);
    }
}
