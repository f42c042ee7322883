//! A SUBSCRIBE that the kernel received before a PUBLISH gets that PUBLISH, whichever shard reads
//! either first (issue 17, "subscribe takes effect when it is read"; the argument is in
//! docs/ARCHITECTURE.md, "A SUBSCRIBE takes effect when it is read"). The messages come from this
//! shard's [`Lookback`](super::lookback::Lookback), at two moments:
//! - when this shard reads the SUBSCRIBE ([`Shard::replay_local`]): to the new subscriptions, the
//!   messages handled here already (read here, or delivered by mail) that the kernel received after it;
//! - when another shard's new interest arrives (`Mail::InterestAdd`, [`Shard::replay_to`]): to that
//!   shard, the messages routed here after the SUBSCRIBE's time that did not go there
//!   (`Mail::Replay`, delivered there unless it had them, [`Shard::replayed`]).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::attached::Attached;
use super::packets::{delivery_qos, tally};
use super::Shard;
use crate::codec::{QoS, SubscriptionOptions, Utf8Bytes};
use crate::message::Message;
use crate::router::{Mail, ShardId};
use crate::session::{Framed, HoldStamp};
use crate::topic;

/// A subscription a SUBSCRIBE made, as [`Shard::replay_local`] needs it.
pub(super) struct Fresh {
    pub filter: Utf8Bytes,
    pub opts: SubscriptionOptions,
    /// The retained messages matching it follow the SUBACK: a retained message comes that way.
    pub retained_copy: bool,
}

/// A message for a fresh subscription: at which QoS, with which retain flag and identifiers.
type Late = (Arc<Message>, QoS, bool, SmallVec<[u32; 2]>);

impl Shard {
    /// Shard `to` has new interest in `filter`, from a SUBSCRIBE the kernel received at `since`: send it
    /// what this shard routed since then that matches and went elsewhere only. Called before the
    /// interest is recorded, so "went elsewhere" is "`to` had no interest in its topic": the shards'
    /// interest only grows by such mail, each of which sends what it matches.
    pub(super) fn replay_to(&mut self, to: ShardId, filter: &Utf8Bytes, since: u64) {
        if since == 0 {
            return;
        }
        let mut late: SmallVec<[Arc<Message>; 4]> = SmallVec::new();
        for (msg, routed_here) in self.lookback.received_after(since) {
            if routed_here
                && topic::matches(filter, &msg.topic)
                && !self.subs.shards_for(&msg.topic).contains(to)
            {
                late.push(msg.clone());
            }
        }
        self.stats.messages_replayed += late.len() as u64;
        for msg in late {
            self.mail.send(to, Mail::Replay(msg));
        }
    }

    /// A `Mail::Replay`: delivered like a `Mail::Publish`, unless it was handled here already (it came
    /// by another way: this shard had interest in its topic once, or two new filters matched it).
    pub(super) fn replayed(&mut self, msg: Arc<Message>) {
        if self.lookback.contains(&msg) {
            return;
        }
        self.deliver_local(&msg, &HoldStamp::default());
        self.lookback.push(&msg, false);
    }

    /// The session of `a` made the subscriptions `fresh` with a SUBSCRIBE the kernel received at
    /// `a.read_at`: deliver to it what this shard handled since then that they match and none of its
    /// older subscriptions did (those got it live). One copy per message, at the highest QoS of the
    /// fresh subscriptions matching it, with all their identifiers, as a live delivery would.
    pub(super) fn replay_local(&mut self, a: &Attached, fresh: &[Fresh]) {
        if a.read_at == 0 || fresh.is_empty() {
            return;
        }
        let Some(session) = self.sessions.get(a.slot, a.generation) else {
            return;
        };
        let me = (self.id, a.slot);
        let mut late: Vec<Late> = Vec::new();
        for (msg, _) in self.lookback.received_after(a.read_at) {
            let mut best: Option<(QoS, bool)> = None;
            let mut ids: SmallVec<[u32; 2]> = SmallVec::new();
            let mut skip = false;
            for f in fresh
                .iter()
                .filter(|f| topic::matches(&f.filter, &msg.topic))
            {
                if (f.retained_copy && msg.retain) || (f.opts.no_local && msg.origin == Some(me)) {
                    // It follows the SUBACK as the retained copy (or a newer one of its topic);
                    // or the client's own message, not for this subscription.
                    skip |= f.retained_copy && msg.retain;
                    continue;
                }
                let retain = f.opts.retain_as_published && msg.retain;
                best = Some(match best {
                    Some((q, r)) => (q.max(f.opts.qos), r || retain),
                    None => (f.opts.qos, retain),
                });
                if f.opts.identifier != 0 {
                    ids.push(f.opts.identifier);
                }
            }
            let Some((qos, retain)) = best.filter(|_| !skip) else {
                continue;
            };
            let older = session.subscriptions.keys().any(|filter| {
                !fresh.iter().any(|f| f.filter == *filter) && topic::matches(filter, &msg.topic)
            });
            if !older {
                late.push((msg.clone(), qos, retain, ids));
            }
        }
        if late.is_empty() {
            return;
        }
        let limits = self.settings.limits;
        let upgrade_qos = self.settings.upgrade_outgoing_qos;
        let check_acl = self.security.has_acl_file();
        let now = Instant::now();
        let session = self
            .sessions
            .get_mut(a.slot, a.generation)
            .expect("looked up above");
        self.stats.messages_replayed += late.len() as u64;
        for (msg, qos, retain, ids) in late {
            if check_acl && !session.may_read(&msg.topic) {
                continue;
            }
            let qos = delivery_qos(msg.qos, qos, upgrade_qos);
            let local = Rc::new(Framed::new(msg, false));
            let delivery =
                session.deliver(&local, qos, retain, &ids, &limits, false, &mut self.journal);
            tally(&mut self.stats, session, delivery, qos, &limits, now);
        }
    }
}
