//! Start-up: a shard takes the state `persist::recover` read back for it (sessions whose home it is,
//! the whole retained set, the interest summary of every restored subscription) before it serves.

use std::sync::Arc;

use crate::codec::Utf8Bytes;
use crate::message::Message;
use crate::persist::image::ShardImage;
use crate::router::ShardId;
use crate::session::Session;
use crate::shard::Shard;

/// What a shard starts with when the broker keeps state on disk (`server` reads it first, see
/// `persist::recover`).
pub struct ShardRestore {
    /// The generation whose log this shard appends to, and that log's length.
    pub generation: u64,
    pub log_len: u64,
    /// The sessions whose home this shard is.
    pub image: ShardImage,
    /// Every retained message.
    pub retained: Arc<Vec<Arc<Message>>>,
    /// Every restored subscription's filter, once per shard that has it: the interest summary.
    pub interest: Arc<Vec<(Utf8Bytes, ShardId)>>,
}

impl Shard {
    /// Start-up: the sessions, subscriptions and retained messages read back from disk. A session's
    /// client is away (its expiry runs from now); its will, if it had one, goes out now, as its
    /// connection ended without DISCONNECT (the broker stopped without a chance to publish it).
    pub(in crate::shard) fn restore(&mut self, r: ShardRestore) {
        for m in r.retained.iter() {
            self.retained.store(m.clone());
        }
        for (filter, shard) in r.interest.iter() {
            if *shard != self.id {
                self.subs.add_remote_interest(filter, *shard);
            }
        }
        let mut wills = Vec::new();
        for (_, image) in r.image.sessions {
            let mut s = Session::new(image.client_id, image.protocol, false, 0);
            s.durable = true;
            s.expiry_interval = image.expiry_interval;
            s.listener = image.listener;
            s.mount_len = self.mount_len(usize::from(image.listener));
            s.acl = self.security.scope(usize::from(image.listener)).client_acl(
                s.client_id.as_str(),
                image.username.as_ref().map(|u| u.as_str()),
            );
            s.login = image.username.map(|username| {
                Box::new(crate::session::Login {
                    username,
                    password: None,
                })
            });
            s.restore_owed(image.owed, &image.subscriptions);
            // QoS 2 PUBLISHes whose PUBREL had not come: a repeat is acknowledged, not delivered.
            s.inbound_qos2 = image
                .accepted
                .iter()
                .map(|(&id, (key, _))| (id, *key))
                .collect();
            s.completed_qos2 = (!image.completed.is_empty()).then(|| Box::new(image.completed));
            let will = image.will.filter(|w| s.may_write(&w.topic));
            let subscriptions = image.subscriptions;
            let slot = self.sessions.insert(s);
            let generation = self.sessions.next_generation(slot);
            let s = self.sessions.at_mut(slot).expect("just inserted");
            s.generation = generation;
            for (filter, options) in &subscriptions {
                self.subs.restore(filter, slot, *options);
            }
            s.subscriptions = subscriptions;
            self.schedule_expiry(slot, generation);
            if let Some(will) = will {
                wills.push((slot, will));
            }
        }
        for (slot, will) in wills {
            self.route(crate::shard::packets::will_message(will));
            if let Some(s) = self.sessions.at(slot) {
                // Sent: not again after the next start.
                self.journal.session(s);
            }
        }
    }
}
