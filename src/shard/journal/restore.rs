//! Start-up: a shard takes the state `persist::recover` read back for it (sessions whose home it is,
//! the whole retained set, the interest summary of every restored subscription) before it serves.

use std::sync::Arc;
use std::time::Duration;

use crate::codec::Utf8Bytes;
use crate::logging::log_type;
use crate::message::Message;
use crate::persist::image::{SessionImage, ShardImage};
use crate::router::ShardId;
use crate::session::Session;
use crate::shard::expiry::{expiry_after, unix_now};
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
    /// A session as its records describe it (`SessionImage`), client away: read back at start-up,
    /// or moved here from another node of a cluster (`shard::claims`). Its will and subscriptions
    /// come apart, for the caller to place.
    pub(in crate::shard) fn session_of_image(
        &self,
        image: SessionImage,
    ) -> (
        Session,
        Option<Box<crate::codec::LastWill>>,
        crate::session::SeededMap<Utf8Bytes, crate::codec::SubscriptionOptions>,
    ) {
        let mut s = Session::new(image.client_id, image.protocol, false, 0);
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
                method: None,
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
        (s, image.will, image.subscriptions)
    }

    /// Start-up: the sessions, subscriptions and retained messages read back from disk. Every
    /// session's client is away. One that was away already counts its expiry, and the delay of the
    /// will it left waiting, from when it went away (downtime included: a session that expired
    /// meanwhile ends now, sending that will); one that was connected when the broker stopped without
    /// a chance to publish its will counts them from now, its connection having ended without
    /// DISCONNECT: its will goes out now or after its delay (`shard::will`).
    pub(in crate::shard) fn restore(&mut self, r: ShardRestore) {
        for m in r.retained.iter() {
            self.retained.restore(m.clone());
        }
        for (filter, shard) in r.interest.iter() {
            // Shared subscription groups are told by their members' shards (below), not interest.
            if *shard != self.id && !filter.starts_with(crate::topic::SHARED_PREFIX) {
                self.subs.add_remote_interest(filter, *shard);
            }
        }
        let now = unix_now();
        let mut wills = Vec::new();
        let mut expired = Vec::new();
        let mut shared = Vec::new();
        for (_, image) in r.image.sessions {
            let waited = Duration::from_secs(now.saturating_sub(image.away_since));
            let (away_since, waited) = match image.away_since {
                0 => (now, Duration::ZERO),
                since => (since, waited),
            };
            let was_connected = image.away_since == 0;
            let (mut s, will, subscriptions) = self.session_of_image(image);
            s.durable = true;
            s.away_since = away_since;
            let will = will.filter(|w| s.may_write(&w.topic));
            let slot = self.sessions.insert(s);
            let generation = self.sessions.next_generation(slot);
            let s = self.sessions.at_mut(slot).expect("just inserted");
            s.generation = generation;
            for (filter, options) in &subscriptions {
                self.stats.subscriptions += 1;
                match crate::topic::parse_shared(filter) {
                    Some((_, inner)) => {
                        let state = s.shared.get_or_insert_with(Default::default).clone();
                        let inner = Utf8Bytes::from(inner.to_owned());
                        shared.push((slot, filter.clone(), inner, state));
                    }
                    None => self.subs.restore(filter, slot, *options),
                }
            }
            s.subscriptions = subscriptions;
            if was_connected {
                // Recorded as away from now: the restart is its disconnect. A session already
                // away is on disk as it is; writing it again would only grow the journal.
                self.journal.session(s);
            }
            let limit = expiry_after(
                s.expiry_interval,
                self.settings.persistent_client_expiration,
            );
            if limit.is_some_and(|limit| waited >= limit) {
                expired.push((slot, will));
                continue;
            }
            self.schedule_expiry(slot, generation, waited);
            self.tell_state(slot);
            if let Some(will) = will {
                wills.push((slot, generation, will, waited));
            }
        }
        // Every shard learns the members here (no SUBACK waits for it).
        for (slot, full, inner, state) in shared {
            self.join_group(slot, full, inner, state, 0);
        }
        for (slot, generation, will, waited) in wills {
            self.leave_will(slot, generation, will, waited);
            // Left waiting out its delay: the cluster's to keep too.
            self.tell_will(slot);
            if let Some(s) = self.sessions.at(slot).filter(|s| s.will.is_none()) {
                // Sent: not again after the next start.
                self.journal.session(s);
            }
        }
        for (slot, will) in expired {
            if let Some(s) = self.sessions.at(slot) {
                tracing::info!(target: log_type::NOTICE,
                    "Expiring client {} due to timeout (while the broker was down).", s.client_id);
            }
            if let Some(s) = self.sessions.at_mut(slot) {
                // The session ends: `remove_session` sends the will it had left.
                s.will = will;
            }
            self.release_client_id(slot);
            self.remove_session(slot);
        }
    }
}
