//! Shared subscription groups across the nodes, on the relay (docs/CLUSTER.md, "Shared
//! subscriptions"; the bookkeeping is `cluster::groups`).
//!
//! A publisher's shard picks one member per matching group among its node's members and the link,
//! which is one member for each other node that has some (`groups`). Picked for a node, the link
//! passes the message (QoS 0 on the node's subject, QoS 1/2 through its JetStream queue, framed
//! with the group: `wire`) to that node, whose link gives it to one member there. So one member in the whole cluster
//! gets it. A node whose members left meanwhile passes it on again, at most [`MAX_HOPS`] times.

use std::sync::Arc;

use super::super::groups::GroupChange;
use super::super::interest::{RemoteKeyError, ShardChange};
use super::Relay;
use crate::codec::Utf8Bytes;
use crate::message::Message;
use crate::router::Mail;

/// How many times a message for a group may be passed on between nodes and members.
const MAX_HOPS: u8 = 4;

impl Relay {
    /// A key read from the interest bucket: a group (its value `$share/...`) or a filter.
    pub(super) fn remote_put(
        &mut self,
        key: &str,
        filter: Utf8Bytes,
    ) -> Result<Option<ShardChange>, RemoteKeyError> {
        let Some((_, inner)) = crate::topic::parse_shared(&filter) else {
            return self.interest.remote_put(key, filter);
        };
        let inner = Utf8Bytes::from(inner.to_owned());
        let change = self.groups.remote_put(key, filter, inner)?;
        self.tell_groups(change);
        Ok(None)
    }

    /// The shards learn that the link joined or left groups.
    pub(super) fn tell_groups(&mut self, changes: impl IntoIterator<Item = GroupChange>) {
        let me = self.me;
        for change in changes {
            match change {
                GroupChange::Join { full, filter, slot } => {
                    let state = self.link_member.clone();
                    self.tell(|| Mail::ShareJoin {
                        from: me,
                        slot,
                        full: full.clone(),
                        filter: filter.clone(),
                        state: state.clone(),
                        since: 0,
                    });
                }
                GroupChange::Leave { full, slot } => self.tell(|| Mail::ShareLeave {
                    from: me,
                    slot,
                    full: full.clone(),
                }),
            }
        }
    }

    /// A shard here picked the link for group `full`, as the member for another node (`slot`; None:
    /// a message passed on): to that node, or another one with members if it has none any more, or
    /// back to a member here when no other node has one. `counted`: the shard that sent it counted
    /// it (its publisher's acknowledgement waits for the copy).
    pub(super) async fn forward_shared(
        &mut self,
        msg: Arc<Message>,
        full: Utf8Bytes,
        counted: bool,
        hops: u8,
        slot: Option<u32>,
    ) {
        let counted = msg
            .origin
            .filter(|_| counted && super::acks::counted(&msg))
            .map(|o| o.0);
        let node = match slot {
            Some(slot) => self.groups.pick_slot(&full, slot),
            None => self.groups.pick_remote(&full),
        }
        .map(str::to_owned);
        let Some(node) = node.filter(|_| hops < MAX_HOPS) else {
            if let Some(shard) = counted {
                self.ledger.received(shard, 0);
                self.tell_durable();
            }
            if !self.give_to_member(msg.clone(), full.clone(), hops + 1) {
                self.figures.add(super::Figure::Dropped, 1);
                tracing::debug!(
                    "Cluster: no member of {full} left for a message on '{}': dropped.",
                    msg.topic
                );
            }
            return;
        };
        self.buf.clear();
        let payload = match super::wire::encode_shared(&msg, &full, hops, &mut self.buf) {
            Ok(()) => Some(self.buf.split().freeze()),
            Err(e) => {
                tracing::warn!("Cluster: cannot send a message on {}: {e}.", msg.topic);
                self.figures.add(super::Figure::Dropped, 1);
                None
            }
        };
        self.send_copies(&msg, vec![node], payload, counted).await;
    }

    /// A message from another node for one member of `full` here; passed on to another node when
    /// none is left here.
    pub(super) async fn take_shared(&mut self, msg: Message, full: Utf8Bytes, hops: u8) {
        self.figures.add(super::Figure::Received, 1);
        let msg = Arc::new(msg);
        if !self.give_to_member(msg.clone(), full.clone(), hops) {
            self.forward_shared(msg, full, false, hops + 1, None).await;
        }
    }

    /// To one member of `full` on this node; false when it has none.
    fn give_to_member(&mut self, msg: Arc<Message>, full: Utf8Bytes, hops: u8) -> bool {
        let Some((shard, slot)) = self.groups.pick_local(&full) else {
            return false;
        };
        self.post.send(
            shard,
            Mail::Shared {
                msg,
                slot,
                full,
                counted: false,
                hops,
            },
        );
        true
    }
}
