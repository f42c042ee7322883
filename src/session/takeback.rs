//! Messages a session gives up before delivering them: those its client may no longer read (after a
//! login under another username or an ACL reload), and those delivered for a shared subscription
//! that its group gives to another member (`shard::shared`).

use std::sync::Arc;

use super::{Ledger, Session};
use crate::auth::acl::Access;
use crate::codec::{QoS, Utf8Bytes};
use crate::message::Message;

impl Session {
    /// Drop the messages owed to the client that its ACL no longer lets it read (a resumed session whose
    /// client came back under another username), as Mosquitto does on reconnect. QoS 2 messages already
    /// released (PUBREC received) stay: only their PUBCOMP is outstanding.
    pub fn drop_unreadable(&mut self, ledger: &mut dyn Ledger) {
        let Some(acl) = self.acl.as_deref() else {
            return;
        };
        let readable = |topic: &str| acl.allows(topic, Access::READ);
        let client_id = &self.client_id;
        self.queues.inflight.retain(|i| {
            let keep = i.released || readable(i.msg.topic.as_str());
            if !keep && i.message_id != 0 {
                ledger.done(client_id, i.packet_id);
            }
            keep
        });
        let mut dropped_bytes = 0;
        self.queues.queue.retain(|q| {
            let keep = readable(q.msg.topic.as_str());
            if !keep {
                dropped_bytes += q.msg.queued_size();
                if q.message_id != 0 {
                    ledger.discarded(client_id, q.message_id);
                }
            }
            keep
        });
        self.queues.queued_bytes -= dropped_bytes;
        self.queues.let_go_if_empty();
    }

    /// Takes back the QoS 1/2 messages delivered for shared subscriptions (of the groups `give_back`
    /// accepts) that the client has not acknowledged (queued, or in flight without PUBREC), for their
    /// groups to give to another member (`shard::shared`): with each, the group it came for.
    pub fn take_shared(
        &mut self,
        ledger: &mut dyn Ledger,
        mut give_back: impl FnMut(&Utf8Bytes) -> bool,
    ) -> Vec<(Arc<Message>, Utf8Bytes)> {
        let mut taken = Vec::new();
        let client_id = &self.client_id;
        self.queues.inflight.retain(|i| {
            let group = i.msg.shared_group();
            let Some(group) = group.filter(|g| !i.released && give_back(g)) else {
                return true;
            };
            if i.message_id != 0 {
                ledger.done(client_id, i.packet_id);
            }
            taken.push((i.msg.message().clone(), group.clone()));
            false
        });
        let mut dropped_bytes = 0;
        self.queues.queue.retain(|q| {
            let group = q.msg.shared_group();
            let Some(group) = group.filter(|g| q.qos != QoS::AtMostOnce && give_back(g)) else {
                return true;
            };
            dropped_bytes += q.msg.queued_size();
            if q.message_id != 0 {
                ledger.discarded(client_id, q.message_id);
            }
            taken.push((q.msg.message().clone(), group.clone()));
            false
        });
        self.queues.queued_bytes -= dropped_bytes;
        self.queues.let_go_if_empty();
        taken
    }
}
