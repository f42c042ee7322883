//! SUBSCRIBE and UNSUBSCRIBE: filters enter and leave this shard's trie and the interest map (telling
//! the other shards, whose acknowledgements a SUBACK waits for), and the retained messages a new
//! subscription asks for follow its SUBACK.

use std::collections::VecDeque;
use std::rc::Rc;

use super::encode_into;
use super::publish::{delivery_qos, log_dropping};
use crate::codec::{
    Packet, Properties, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, Utf8Bytes,
};
use crate::logging::log_type;
use crate::message::Message;
use crate::router::{Mail, ShardId};
use crate::session::{CloseReason, Delivery, Framed, Outbox, SlowSubscriberPolicy};
use crate::shard::attached::{mounted, mounted_filter, Attached};
use crate::shard::feeds::{Copy, Feed};
use crate::shard::replay::Fresh;
use crate::shard::subscriptions::{PendingSub, SubToken};
use crate::shard::Shard;
use crate::topic;

/// The SUBACK code granting `qos`.
fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

/// The Subscription Identifier a retained copy carries (v5; none when the subscription has none).
fn identifiers(opts: &SubscriptionOptions) -> &[u32] {
    if opts.identifier != 0 {
        std::slice::from_ref(&opts.identifier)
    } else {
        &[]
    }
}

/// Whether the kernel received `msg` after a SUBSCRIBE it received at `since`: it then reaches the
/// new subscription as any publish does (live, or replayed: `replay.rs`), not as a retained copy.
/// False when either time is unknown (0: wills, `$SYS`, restored messages).
pub(in crate::shard) fn is_after(msg: &Message, since: u64) -> bool {
    since != 0 && msg.read_at > since
}

impl Shard {
    /// `refuse_unreadable_subscriptions`: the SUBACK code refusing `filter` when the `acl_file` lets
    /// the client of `a` read no topic of it (None: granted; always without the option or an
    /// `acl_file`). 3.x has one failure code, 0x80.
    fn refusal(&self, a: &Attached, filter: &str) -> Option<ReasonCode> {
        let code = self.settings.refuse_unreadable_subscriptions?;
        let acl = self.sessions.at(a.slot).and_then(|s| s.acl.as_deref())?;
        if acl.may_subscribe(filter) {
            return None;
        }
        Some(match a.protocol {
            ProtocolVersion::V5 => code,
            _ => ReasonCode::UnspecifiedError,
        })
    }

    pub(super) fn unsubscribe_filter(&mut self, slot: u32, filter: &Utf8Bytes) {
        if filter.starts_with(topic::SHARED_PREFIX) {
            self.leave_group(slot, filter);
            return;
        }
        if let Some(lost) = self.subs.remove(filter, slot) {
            self.stats.subscriptions -= 1;
            if lost {
                let from = self.id;
                self.mail.tell_interest(|| Mail::InterestRemove {
                    from,
                    filter: filter.clone(),
                });
            }
        }
    }

    pub(super) fn client_subscribe(
        &mut self,
        a: &Attached,
        sub: Subscribe,
    ) -> Result<(), CloseReason> {
        tracing::debug!(target: log_type::DEBUG, "Received SUBSCRIBE from {}", a.client_id);
        if let Some(ms) = crate::shard::lookback::late_ms(a.read_at) {
            // Past the lookback window: messages received meanwhile may miss these subscriptions.
            tracing::warn!(
                target: log_type::WARNING,
                "SUBSCRIBE from {} handled {ms} ms after it was received (shard {} overloaded?)",
                a.client_id,
                self.id
            );
        }
        let token = SubToken {
            slot: a.slot,
            generation: a.generation,
            packet_id: sub.packet_id,
        };
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut retained = Vec::new();
        let mut waits = 0;
        // The subscriptions this SUBSCRIBE adds, for what this shard handled since it was received.
        let mut fresh: Vec<Fresh> = Vec::new();
        let v5 = a.protocol == ProtocolVersion::V5;
        // v5: the Subscription Identifier (at most one, the codec checked) goes with every
        // subscription this SUBSCRIBE makes or replaces: a replaced subscription takes the new
        // options whole [MQTT-3.8.4-3], so one resubscribed without an identifier has none.
        let identifier = sub
            .properties
            .subscription_identifiers
            .first()
            .copied()
            .filter(|_| v5)
            .unwrap_or(0);
        for f in sub.filters {
            tracing::debug!(target: log_type::DEBUG, "\t{} (QoS {})", f.filter, f.options.qos as u8);
            if f.filter.starts_with(topic::SHARED_PREFIX) {
                let Some((group, inner)) = topic::parse_shared(&f.filter) else {
                    codes.push(if v5 {
                        ReasonCode::TopicFilterInvalid
                    } else {
                        ReasonCode::UnspecifiedError
                    });
                    continue;
                };
                if v5 && f.options.no_local {
                    // [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
                    return Err(CloseReason::ProtocolError(ReasonCode::ProtocolError));
                }
                let inner = match self.mount_point(a) {
                    Some(mount) => mounted(mount, &Utf8Bytes::from(inner.to_owned())),
                    None => Utf8Bytes::from(inner.to_owned()),
                };
                if let Some(code) = self.refusal(a, &inner) {
                    codes.push(code);
                    continue;
                }
                let full = Utf8Bytes::from(format!("{}{group}/{inner}", topic::SHARED_PREFIX));
                let opts = f.options;
                tracing::info!(target: log_type::SUBSCRIBE, "{} {} {}", a.client_id, opts.qos as u8, full);
                // No retained messages for a shared subscription [MQTT-4.8.2].
                if self.subscribe_shared(token, full, inner, opts, a.read_at) {
                    waits += 1;
                }
                codes.push(granted(opts.qos));
                continue;
            }
            if topic::validate_topic_filter(&f.filter).is_err() {
                codes.push(if v5 {
                    ReasonCode::TopicFilterInvalid
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let mut f = f;
            if let Some(mount) = self.mount_point(a) {
                f.filter = mounted(mount, &f.filter);
            }
            if let Some(code) = self.refusal(a, &f.filter) {
                codes.push(code);
                continue;
            }
            let opts = SubscriptionOptions {
                identifier,
                ..f.options
            };
            let session = self.sessions.at_mut(a.slot).expect("checked by caller");
            let existed = session
                .subscriptions
                .insert(f.filter.clone(), opts)
                .is_some();
            self.journal.subscribe(session, &f.filter, opts);
            self.subs.insert(&f.filter, a.slot, opts);
            tracing::info!(target: log_type::SUBSCRIBE, "{} {} {}", a.client_id, opts.qos as u8, f.filter);
            if !existed {
                self.stats.subscriptions += 1;
                if self.subs.add_interest(&f.filter) {
                    let (from, since) = (self.id, a.read_at);
                    let filter = f.filter.clone();
                    self.mail.tell_interest(|| Mail::InterestAdd {
                        from,
                        filter: filter.clone(),
                        since,
                    });
                }
            }
            // Interest not yet acknowledged everywhere (this subscription's or an earlier one's): the
            // SUBACK waits, so a publish sent after it is received cannot miss this subscriber.
            if self.subs.wait_for_interest(&f.filter, token) {
                waits += 1;
            }
            let send_retained = match opts.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            if !existed && a.read_at != 0 {
                self.lookback.subscribed(a.slot, &f.filter, a.read_at);
                fresh.push(Fresh {
                    filter: f.filter.clone(),
                    opts,
                });
            }
            if send_retained {
                retained.push((f.filter, opts));
            }
            codes.push(granted(opts.qos));
        }
        // Cluster mode: the retained copies wait until this node's store has what the cluster's
        // retained stream held now (a retained message acknowledged on another node just before).
        if let Some(link) = self.link.filter(|_| !retained.is_empty()) {
            let key = self.subs.expect_sync(token);
            self.mail
                .send(link, Mail::RetainedSync { from: self.id, key });
            waits += 1;
        }
        let suback = SubAck {
            packet_id: sub.packet_id,
            codes,
            properties: Properties::default(),
        };
        if waits == 0 {
            self.complete_subscribe(a.slot, a.generation, suback, retained, a.read_at);
        } else {
            self.subs.park(
                token,
                PendingSub {
                    waits,
                    suback,
                    retained,
                    since: a.read_at,
                },
            );
        }
        // After the SUBACK and retained copies when they went at once, like live messages.
        self.replay_local(a, &fresh);
        self.tell_state(a.slot);
        Ok(())
    }

    /// Send the SUBACK, then the retained messages matching the new subscriptions (retain flag set):
    /// as many as the outbox takes now, the rest as it drains (`feeds`).
    ///
    /// The copies are what the store held before the SUBSCRIBE, which the kernel received at `since`
    /// (0: unknown): a message retained after it comes as for any subscriber, live or replayed
    /// (`replay.rs`), so the copies leave it out; sent as a copy as well, it would come twice (the
    /// store is shared, so it can hold a message whose live copy is still in a mailbox).
    fn complete_subscribe(
        &mut self,
        slot: u32,
        generation: u32,
        suback: SubAck,
        retained: Vec<(Utf8Bytes, SubscriptionOptions)>,
        since: u64,
    ) {
        let mut found: VecDeque<Copy> = VecDeque::new();
        for (filter, opts) in &retained {
            self.retained.for_each_match(filter, |m| {
                if !is_after(m, since) {
                    found.push_back((m.clone(), *opts));
                }
            });
        }
        let Some(session) = self.sessions.get_mut(slot, generation) else {
            return;
        };
        let Some(conn) = session.conn.clone() else {
            return;
        };
        tracing::debug!(target: log_type::DEBUG, "Sending SUBACK to {}", session.client_id);
        let protocol = session.protocol;
        let max = session.max_packet_size();
        conn.write(|out| encode_into(out, Packet::SubAck(suback), protocol, max));
        if !found.is_empty() {
            let feed = match self.feeds.take(&conn) {
                Some(mut feed) => {
                    feed.extend(found);
                    feed
                }
                None => Feed::new(&conn, slot, generation, found),
            };
            self.send_copies(feed);
        }
    }

    /// Send the retained copies waiting for `outbox` while it has room: up to half its soft limit
    /// pending, and for a QoS 1/2 copy a session queue below half its limits. Called when copies
    /// come, after each batch written to the connection and after the packets it sent (its
    /// acknowledgements make room).
    pub(in crate::shard) fn feed_retained(&mut self, outbox: &Rc<Outbox>) {
        if let Some(feed) = self.feeds.take(outbox) {
            self.send_copies(feed);
        }
    }

    /// [`Self::feed_retained`] for one feed, kept for later if copies are left.
    fn send_copies(&mut self, mut feed: Feed) {
        let Some(session) = self.sessions.get_mut(feed.slot, feed.generation) else {
            return;
        };
        let Some(outbox) = session.conn.clone().filter(|c| feed.is_for(c)) else {
            // Taken over or gone: what was left went to the session then (`flush_feed`).
            return;
        };
        let limits = self.settings.limits;
        let upgrade_qos = self.settings.upgrade_outgoing_qos;
        let mark = limits.outbox_soft_limit / 2;
        // Retained messages hold nobody; only `hold` keeps its old room beyond the limits for them.
        let slack = limits.slow_subscriber_policy == SlowSubscriberPolicy::Hold;
        let (mut sent, mut dropped, mut expired) = (0, 0, 0);
        while let Some(next) = feed.front() {
            if outbox.pending_bytes() >= mark {
                break;
            }
            let qos = delivery_qos(next.0.qos, next.1.qos, upgrade_qos);
            if qos != QoS::AtMostOnce && session.keeps_up(&next.0, qos, &limits) == Some(false) {
                break;
            }
            let Some((msg, opts)) = feed.pop() else {
                break;
            };
            if !session.may_read(&msg.topic) {
                continue;
            }
            let local = Rc::new(Framed::new(msg, false));
            let ids = identifiers(&opts);
            match session.deliver(&local, qos, true, ids, &limits, slack, &mut self.journal) {
                Delivery::Sent => sent += 1,
                Delivery::Dropped => {
                    dropped += 1;
                    if session.note_dropped() {
                        log_dropping(&session.client_id);
                    }
                }
                Delivery::TooLarge => dropped += 1,
                // A retained message whose expiry interval passed [MQTT-3.3.2-5].
                Delivery::Expired => expired += 1,
                _ => {}
            }
        }
        self.feeds.put_back(feed);
        self.stats.messages_sent += sent;
        self.stats.messages_dropped += dropped;
        self.stats.messages_expired += expired;
    }

    /// The connection on `outbox` ended or was taken over (the session, if it stays, has no
    /// connection now): its waiting retained copies go to the session as to any session that is
    /// away (QoS 1/2 queued within its limits, QoS 0 only with `queue_qos0_messages`).
    pub(in crate::shard) fn flush_feed(&mut self, outbox: &Rc<Outbox>) {
        let Some(mut feed) = self.feeds.take(outbox) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(feed.slot, feed.generation) else {
            return;
        };
        let limits = self.settings.limits;
        let upgrade_qos = self.settings.upgrade_outgoing_qos;
        while feed.front().is_some() {
            let Some((msg, opts)) = feed.pop().filter(|c| session.may_read(&c.0.topic)) else {
                continue;
            };
            let qos = delivery_qos(msg.qos, opts.qos, upgrade_qos);
            let local = Rc::new(Framed::new(msg, false));
            let ids = identifiers(&opts);
            if session.deliver(&local, qos, true, ids, &limits, false, &mut self.journal)
                == Delivery::Dropped
            {
                self.stats.messages_dropped += 1;
            }
        }
    }

    /// Another shard acknowledged interest in `filter`: release the SUBACKs that waited only for that.
    pub(in crate::shard) fn interest_acked(&mut self, filter: &Utf8Bytes, from: ShardId) {
        for (token, p) in self.subs.interest_acked(filter, from) {
            self.complete_subscribe(token.slot, token.generation, p.suback, p.retained, p.since);
        }
    }

    pub(super) fn client_unsubscribe(&mut self, a: &Attached, u: Unsubscribe) {
        tracing::debug!(target: log_type::DEBUG, "Received UNSUBSCRIBE from {}", a.client_id);
        let mut codes = Vec::with_capacity(u.filters.len());
        let mount = self.mount_point(a).map(str::to_owned);
        for filter in &u.filters {
            let filter = &match &mount {
                Some(mount) => mounted_filter(mount, filter),
                None => filter.clone(),
            };
            let session = self.sessions.at_mut(a.slot).expect("checked by caller");
            let existed = session.subscriptions.remove(filter).is_some();
            if existed {
                self.journal.unsubscribe(session, filter);
                self.unsubscribe_filter(a.slot, filter);
            }
            tracing::info!(target: log_type::UNSUBSCRIBE, "{} {}", a.client_id, filter);
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        self.tell_state(a.slot);
        let unsuback = UnsubAck {
            packet_id: u.packet_id,
            codes,
            properties: Properties::default(),
        };
        tracing::debug!(target: log_type::DEBUG, "Sending UNSUBACK to {}", a.client_id);
        let max = self
            .sessions
            .get(a.slot, a.generation)
            .and_then(|s| s.max_packet_size());
        a.outbox
            .write(|out| encode_into(out, Packet::UnsubAck(unsuback), a.protocol, max));
    }
}

#[cfg(test)]
mod tests {
    use crate::codec::QoS;
    use crate::router::Mail;
    use crate::settings::Settings;
    use crate::shard::testing::{connect, subscribe, Fixture};

    fn interest_adds(mail: &[Mail]) -> usize {
        mail.iter()
            .filter(|m| matches!(m, Mail::InterestAdd { .. }))
            .count()
    }

    /// Only a filter new to the shard is told to the other shards: a second session of the same
    /// shard subscribing to it sends no mail (issue 18: a million subscriptions to a few filters
    /// cost no mail per SUBSCRIBE), while a new filter does.
    #[test]
    fn a_filter_another_session_here_holds_sends_no_mail() {
        let mut f = Fixture::new(Settings::local(4));
        let mut a = connect(&mut f.shard, "a");
        let mut b = connect(&mut f.shard, "b");
        subscribe(&mut f.shard, &mut a, "x/+", QoS::AtLeastOnce);
        for to in 1..4 {
            assert_eq!(interest_adds(&f.mail_to(to)), 1, "shard {to} told once");
        }
        subscribe(&mut f.shard, &mut b, "x/+", QoS::AtMostOnce);
        for to in 1..4 {
            assert!(f.mail_to(to).is_empty(), "no mail to shard {to}");
        }
        subscribe(&mut f.shard, &mut b, "y/#", QoS::AtMostOnce);
        for to in 1..4 {
            assert_eq!(interest_adds(&f.mail_to(to)), 1, "a new filter is told");
        }
    }
}
