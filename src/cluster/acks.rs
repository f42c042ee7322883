//! Which of each shard's QoS 1/2 messages the link has made durable in JetStream (sans-IO).
//!
//! A shard acknowledges a QoS 1/2 PUBLISH that went to the link only once the link says the copies
//! for other nodes are in JetStream (docs/CLUSTER.md, "QoS >= 1 is durable across nodes"). It does
//! that with the mechanism the persistence log uses between shards (`shard::journal`): both ends
//! count the "counted" messages the shard sent the link ([`counted`]), and the link answers
//! `Mail::Durable { count }` once the first `count` of them are safe. Copies complete out of order
//! (JetStream acknowledgements are pipelined, a message may go to several nodes), so the ledger
//! keeps, per shard, which of the messages after the confirmed prefix are done.

use std::collections::VecDeque;

use crate::codec::QoS;
use crate::message::Message;

/// Whether a message a shard sends the link is counted: a client's QoS 1 or 2 message (its PUBACK
/// or PUBREC waits). Wills and `$SYS` have no publisher waiting. Both ends decide from the message.
pub fn counted(msg: &Message) -> bool {
    msg.origin.is_some() && msg.qos != QoS::AtMostOnce
}

/// Names one counted message: its shard and its number among that shard's (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    pub shard: u16,
    pub seq: u64,
}

#[derive(Default)]
struct PerShard {
    /// Counted messages received from the shard.
    received: u64,
    /// The first `confirmed` are done.
    confirmed: u64,
    /// For seq `confirmed + 1 + i`: copies still to be acknowledged (0: done).
    open: VecDeque<u32>,
}

pub struct AckLedger {
    shards: Vec<PerShard>,
}

impl AckLedger {
    pub fn new(shards: usize) -> AckLedger {
        AckLedger {
            shards: (0..shards).map(|_| PerShard::default()).collect(),
        }
    }

    /// A counted message from `shard`, of which `copies` go to JetStream (0: none, it is done).
    pub fn received(&mut self, shard: u16, copies: u32) -> Ticket {
        let s = &mut self.shards[usize::from(shard)];
        s.received += 1;
        s.open.push_back(copies);
        Ticket {
            shard,
            seq: s.received,
        }
    }

    /// One copy of `ticket`'s message is in JetStream (or will never be: the caller decides).
    pub fn copy_done(&mut self, ticket: Ticket) {
        let s = &mut self.shards[usize::from(ticket.shard)];
        let Some(i) = ticket.seq.checked_sub(s.confirmed + 1) else {
            debug_assert!(false, "a ticket done twice");
            return;
        };
        if let Some(open) = s.open.get_mut(i as usize) {
            *open = open.saturating_sub(1);
        }
    }

    /// The shards whose confirmed prefix grew since the last call, with their new count: what to
    /// tell them (`Mail::Durable`).
    pub fn advance(&mut self) -> Vec<(u16, u64)> {
        let mut told = Vec::new();
        for (shard, s) in self.shards.iter_mut().enumerate() {
            let before = s.confirmed;
            while s.open.front() == Some(&0) {
                s.open.pop_front();
                s.confirmed += 1;
            }
            if s.confirmed > before {
                told.push((shard as u16, s.confirmed));
            }
        }
        told
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_told_its_prefix_of_done_messages() {
        let mut l = AckLedger::new(2);
        let a = l.received(0, 1);
        let b = l.received(0, 2);
        let c = l.received(0, 0);
        assert_eq!((a.seq, b.seq, c.seq), (1, 2, 3));
        assert_eq!(l.advance(), []);
        l.copy_done(b);
        assert_eq!(l.advance(), [], "the first is not done");
        l.copy_done(a);
        assert_eq!(l.advance(), [(0, 1)], "the second waits for its other copy");
        l.copy_done(b);
        assert_eq!(l.advance(), [(0, 3)], "the third needed none");
        let d = l.received(1, 0);
        assert_eq!(d, Ticket { shard: 1, seq: 1 });
        assert_eq!(l.advance(), [(1, 1)]);
        assert_eq!(l.advance(), []);
    }
}
