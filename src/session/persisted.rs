//! What a durable session owes across time: writes that wait for the journal to be durable before
//! they go to the connection (see [`Ledger::stage`]), and the deliveries a restart reads back from
//! disk (`crate::persist`) or a snapshot writes.

use std::rc::Rc;
use std::sync::Arc;

use super::send::keep_ids;
use super::{Framed, Inflight, Ledger, Outbox, Queued, Session, Staged};
use crate::codec::{QoS, SubscriptionOptions, Utf8Bytes};
use crate::message::Message;

impl Session {
    /// Where writes go: the staging outbox while one waits for durability, else `conn`.
    pub(super) fn sink<'a>(&'a self, conn: &'a Outbox) -> &'a Outbox {
        match &self.staged {
            Some(s) => &s.out,
            None => conn,
        }
    }

    /// From now, writes wait until what the ledger has so far is durable (if it says so).
    pub(super) fn stage(&mut self, ledger: &mut dyn Ledger) {
        if let Some(until) = ledger.stage(&self.client_id) {
            match &mut self.staged {
                Some(s) => s.until = s.until.max(until),
                None => {
                    self.staged = Some(Box::new(Staged {
                        until,
                        out: Outbox::new(),
                    }))
                }
            }
        }
    }

    /// The journal is durable up to `durable`: staged writes that waited for less go to the
    /// connection. Returns whether some still wait.
    pub fn release_staged(&mut self, durable: u64) -> bool {
        let Some(s) = &self.staged else {
            return false;
        };
        if s.until > durable {
            return true;
        }
        let s = self.staged.take().expect("checked");
        if let Some(conn) = &self.conn {
            conn.append_from(&s.out);
        }
        false
    }

    /// The session is no longer kept across restarts: what it owes is no longer reported.
    pub fn stop_keeping(&mut self) {
        self.durable = false;
        self.release_staged(u64::MAX);
        self.forget_message_ids();
        self.queues.let_go_if_empty();
    }

    /// What it owes is in no log of this shard: its copies lose the ids a log gave them. A session
    /// moved from another node comes with the ids of that node's snapshot, which would name two
    /// different messages alike here (and in its next move's snapshot).
    pub fn forget_message_ids(&mut self) {
        for i in &mut self.queues.inflight {
            i.message_id = 0;
        }
        for q in &mut self.queues.queue {
            q.message_id = 0;
        }
    }

    /// A session read back from disk (`crate::persist`) gets what it owed, in order: those with a
    /// packet id go back in the window (re-sent with it, DUP set, when the client returns), the rest
    /// in the queue. The records do not keep the Subscription Identifiers of a copy: it gets those of
    /// its session's `subscriptions` matching its topic now.
    pub fn restore_owed(
        &mut self,
        owed: impl IntoIterator<Item = crate::persist::image::Owed>,
        subscriptions: &super::SeededMap<Utf8Bytes, SubscriptionOptions>,
    ) {
        let with_ids: Vec<(&str, u32)> = subscriptions
            .iter()
            .filter(|(_, o)| o.identifier != 0)
            .map(|(f, o)| (f.as_str(), o.identifier))
            .collect();
        for o in owed {
            let ids: Vec<u32> = with_ids
                .iter()
                .filter(|(f, _)| crate::topic::matches(f, &o.message.topic))
                .map(|&(_, id)| id)
                .collect();
            let ids = keep_ids(&ids);
            let msg = Rc::new(Framed::new(o.message, false));
            match o.packet_id {
                Some(packet_id) => self.queues.inflight.push_back(Inflight {
                    packet_id,
                    msg,
                    qos: o.qos,
                    retain: o.retain,
                    released: o.released,
                    message_id: o.message_id,
                    ids,
                }),
                None => {
                    self.queues.queued_bytes += msg.queued_size();
                    self.queues.queue.push_back(Queued {
                        msg,
                        qos: o.qos,
                        retain: o.retain,
                        message_id: o.message_id,
                        ids,
                    });
                }
            }
        }
    }

    /// What the session owes that its journal keeps, in order, as a snapshot writes it: message id,
    /// message, delivery QoS and retain flag, packet id once sent, released.
    pub fn for_each_owed(
        &self,
        mut f: impl FnMut(u64, &Arc<Message>, QoS, bool, Option<u16>, bool),
    ) {
        self.for_each_owed_where(true, &mut f);
    }

    /// Everything the session owes, in order, kept by its journal or not (message id 0): a session
    /// moving to another node of a cluster (`shard::claims`).
    pub fn for_each_owed_all(
        &self,
        mut f: impl FnMut(u64, &Arc<Message>, QoS, bool, Option<u16>, bool),
    ) {
        self.for_each_owed_where(false, &mut f);
    }

    fn for_each_owed_where(
        &self,
        kept_only: bool,
        f: &mut impl FnMut(u64, &Arc<Message>, QoS, bool, Option<u16>, bool),
    ) {
        for i in self
            .queues
            .inflight
            .iter()
            .filter(|i| !kept_only || i.message_id != 0)
        {
            f(
                i.message_id,
                i.msg.message(),
                i.qos,
                i.retain,
                Some(i.packet_id),
                i.released,
            );
        }
        for q in self
            .queues
            .queue
            .iter()
            .filter(|q| !kept_only || q.message_id != 0)
        {
            f(q.message_id, q.msg.message(), q.qos, q.retain, None, false);
        }
    }
}
