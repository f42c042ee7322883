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
        self.deliver_local(&msg, &HoldStamp::default(), None);
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
            // A retained message among them comes this way too, not as a retained copy: those are
            // the messages retained before the SUBSCRIBE (`Shard::complete_subscribe`).
            for f in fresh
                .iter()
                .filter(|f| topic::matches(&f.filter, &msg.topic))
            {
                if f.opts.no_local && msg.origin == Some(me) {
                    // The client's own message, not for this subscription.
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
            let Some((qos, retain)) = best else {
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{Packet, Properties, Publish};
    use crate::settings::Settings;
    use crate::shard::testing::{connect, subscribe, Fixture};

    fn message(topic: &'static str, payload: &'static str, read_at: u64) -> Message {
        let mut m = Message::new(
            Utf8Bytes::from_static(topic),
            Bytes::from_static(payload.as_bytes()),
            QoS::AtLeastOnce,
            false,
            Properties::default(),
            None,
        );
        m.read_at = read_at;
        m
    }

    /// `a` publishes `payload` to `topic` at QoS 1 in a read the kernel received at `read_at`.
    fn publish(
        f: &mut Fixture,
        a: &mut Attached,
        topic: &'static str,
        payload: &'static str,
        read_at: u64,
    ) {
        a.read_at = read_at;
        let p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: Utf8Bytes::from_static(topic),
            packet_id: read_at as u16,
            properties: Properties::default(),
            payload: Bytes::from_static(payload.as_bytes()),
        };
        f.shard
            .handle_packet(a, Packet::Publish(p))
            .expect("published");
    }

    /// What `a` was sent (in flight: every test here stays within the window).
    fn delivered(f: &Fixture, a: &Attached) -> usize {
        let s = f.shard.sessions.get(a.slot, a.generation).expect("session");
        s.inflight_ids().len()
    }

    fn describe(mail: &[Mail]) -> Vec<String> {
        mail.iter()
            .map(|m| match m {
                Mail::Replay(msg) => format!("replay {}", String::from_utf8_lossy(&msg.payload)),
                Mail::InterestAdd { filter, .. } => format!("interest {filter}"),
                Mail::InterestAck { filter, .. } => format!("ack {filter}"),
                Mail::Publish(msg, _) => {
                    format!("publish {}", String::from_utf8_lossy(&msg.payload))
                }
                _ => "other".into(),
            })
            .collect()
    }

    #[test]
    fn new_interest_gets_what_was_routed_since_its_subscribe_that_went_elsewhere() {
        let mut f = Fixture::new(Settings::local(2));
        f.shard.route(message("a/b", "early", 100));
        f.shard.route(message("a/b", "late", 300));
        f.shard.route(message("x/y", "other topic", 400));
        assert!(f.mail_to(1).is_empty(), "no interest anywhere yet");
        let interest = |filter: &'static str, since| Mail::InterestAdd {
            from: 1,
            filter: Utf8Bytes::from_static(filter),
            since,
        };
        f.shard.handle_mail(interest("a/+", 200));
        assert_eq!(describe(&f.mail_to(1)), ["replay late", "ack a/+"]);
        assert_eq!(f.shard.stats.messages_replayed, 1);
        // Shard 1 already has a/b's messages through a/+: a second filter replays nothing.
        f.shard.handle_mail(interest("a/b", 50));
        assert_eq!(describe(&f.mail_to(1)), ["ack a/b"]);
        // Without a time (0), nothing is replayed.
        f.shard.handle_mail(interest("x/#", 0));
        assert_eq!(describe(&f.mail_to(1)), ["ack x/#"]);
    }

    #[test]
    fn a_second_subscription_to_a_filter_of_this_shard_sends_no_mail() {
        let mut f = Fixture::new(Settings::local(2));
        let (mut a, mut b) = (connect(&mut f.shard, "a"), connect(&mut f.shard, "b"));
        subscribe(&mut f.shard, &mut a, "t/#", QoS::AtLeastOnce);
        assert_eq!(describe(&f.mail_to(1)), ["interest t/#"]);
        subscribe(&mut f.shard, &mut b, "t/#", QoS::AtLeastOnce);
        assert!(f.mail_to(1).is_empty());
    }

    #[test]
    fn a_subscribe_read_late_gets_what_this_shard_handled_after_it_was_received() {
        let mut f = Fixture::new(Settings::local(1));
        let mut p = connect(&mut f.shard, "p");
        let mut s = connect(&mut f.shard, "s");
        publish(&mut f, &mut p, "a/b", "before", 100);
        publish(&mut f, &mut p, "a/b", "after", 300);
        s.read_at = 200;
        subscribe(&mut f.shard, &mut s, "a/b", QoS::AtLeastOnce);
        assert_eq!(
            delivered(&f, &s),
            1,
            "only what the kernel received after the SUBSCRIBE"
        );
        assert_eq!(f.shard.stats.messages_replayed, 1);
        // Subscribed again (it existed): nothing more.
        s.read_at = 250;
        subscribe(&mut f.shard, &mut s, "a/b", QoS::AtLeastOnce);
        assert_eq!(delivered(&f, &s), 1);
        // Another fresh filter matching the same messages: the older subscription had them.
        subscribe(&mut f.shard, &mut s, "a/#", QoS::AtLeastOnce);
        assert_eq!(delivered(&f, &s), 1);
    }

    #[test]
    fn a_message_received_before_a_subscribe_but_delivered_after_it_is_not_for_it() {
        let mut f = Fixture::new(Settings::local(2));
        let mut s = connect(&mut f.shard, "s");
        s.read_at = 200;
        subscribe(&mut f.shard, &mut s, "a/b", QoS::AtLeastOnce);
        // From shard 1's mailbox, routed there before the SUBSCRIBE was received.
        let mail = |payload, at| {
            Mail::Publish(Arc::new(message("a/b", payload, at)), HoldStamp::default())
        };
        f.shard.handle_mail(mail("in a mailbox", 100));
        assert_eq!(delivered(&f, &s), 0);
        f.shard.handle_mail(mail("received after", 300));
        assert_eq!(delivered(&f, &s), 1);
        // A replay of a message already handled here is not delivered twice.
        let again = Arc::new(message("a/b", "replayed", 400));
        f.shard
            .handle_mail(Mail::Publish(again.clone(), HoldStamp::default()));
        f.shard.handle_mail(Mail::Replay(again));
        assert_eq!(delivered(&f, &s), 2);
    }
}
