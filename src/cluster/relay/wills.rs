//! Wills on the relay: this node's, kept in the wills bucket, and dead nodes' routed here
//! (`cluster::wills`).

use std::sync::Arc;

use super::Relay;
use crate::message::Message;
use crate::router::Mail;

impl Relay {
    /// A shard's client's will, as the node would owe it if it died now (None: none any more).
    pub(super) fn keep_will(&mut self, client_id: &str, will: Option<(Arc<Message>, u32)>) {
        let key = super::super::interest::key_of(&self.node, client_id);
        // The shards say "none" at every disconnect: a key never put needs no delete.
        if will.is_none() && !self.wills_kept.contains(&key) {
            return;
        }
        let value = match will {
            None => None,
            Some((msg, delay)) => match super::super::wills::encode(client_id, delay, &msg) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(
                        "Cluster: the will of {client_id} is not kept in the cluster ({e})."
                    );
                    None
                }
            },
        };
        if value.is_some() {
            self.wills_kept.insert(key.clone());
        } else {
            self.wills_kept.remove(&key);
        }
        let _ = self
            .wills
            .send(super::super::wills::WillChange { key, value });
    }

    /// A dead node's will this node reaped: routed by the client id's home shard here.
    pub fn route_will(&mut self, client_id: &str, will: Message) {
        if self.post.shards() == 0 {
            return;
        }
        let shard = crate::shard::home_of(client_id.as_bytes(), self.post.shards());
        self.post.send(shard, Mail::Route(Arc::new(will)));
    }
}
