//! PUBLISH and its acknowledgements: a client's publish is checked, acknowledged and routed; a routed
//! message is stored if retained, delivered to this shard's matching sessions (`deliver_local`) and
//! sent once to every other shard with a matching subscription. Also the slow-subscriber holds
//! (`session::hold`): which publishers this shard's congested subscribers hold, and the stances it
//! tells other shards.

use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use smallvec::SmallVec;

use crate::auth::acl;
use crate::codec::{self, ProtocolVersion, PubResponse, PubResponseKind, Publish, QoS, ReasonCode};
use crate::index::ShardSet;
use crate::logging::log_type;
use crate::message::{DurableKey, Message};
use crate::router::Mail;
use crate::session::alias::AliasError;
use crate::session::{
    CloseReason, Custody, Delivery, Framed, HoldSignal, HoldStamp, Ledger, Limits, Origin, Session,
    SlowSubscriberPolicy,
};
use crate::shard::attached::{mounted, Attached};
use crate::shard::moves::Direct;
use crate::shard::subscriptions::Matched;
use crate::shard::Shard;
use crate::topic;

/// Answer a PUBLISH the client may not make (`$SYS`, `acl_file`) as Mosquitto does: dropped but
/// acknowledged, so the client does not resend it, and a v5 client learns why (0x87). Nothing is kept
/// for QoS 2: a 3.x client's PUBREL for it gets its PUBCOMP all the same, and a v5 client ends the
/// exchange at the failed PUBREC. Out of line: rare, and kept off the publish path's code.
/// `reason` says why (a payload that is not the UTF-8 its Payload Format Indicator announces: 0x99).
#[cold]
#[inline(never)]
fn deny_publish(a: &Attached, p: &Publish, reason: ReasonCode) {
    tracing::debug!(target: log_type::DEBUG,
        "Denied PUBLISH from {} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes)): {:?}",
        a.client_id, u8::from(p.dup), p.qos as u8, u8::from(p.retain), p.packet_id, p.topic,
        p.payload.len(), reason);
    let kind = match p.qos {
        QoS::AtMostOnce => return,
        QoS::AtLeastOnce => PubResponseKind::PubAck,
        QoS::ExactlyOnce => PubResponseKind::PubRec,
    };
    a.outbox
        .write(|out| codec::encode_pub_response(kind, p.packet_id, reason, a.protocol, out));
}

/// QoS of one delivery: min(publish, subscription) as MQTT says, or the subscription's with Mosquitto's
/// `upgrade_outgoing_qos` (non-standard: a QoS 0 publish then reaches a QoS 2 subscriber at QoS 2).
pub(in crate::shard) fn delivery_qos(published: QoS, subscribed: QoS, upgrade: bool) -> QoS {
    if upgrade {
        subscribed
    } else {
        published.min(subscribed)
    }
}

/// What one shard's recipients of a message say about holding its publisher (`hold_if_all_behind`, see
/// `session::hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not asked: another policy, no publisher, no recipient here, or delivered at QoS 0 only.
    Neutral,
    /// A recipient here keeps up: the publisher must not be held on this shard's account.
    Object,
    /// Nobody here keeps up: holding the publisher costs them nothing.
    Agree,
}

/// Counts what became of a delivery to `session` at `qos` (`$SYS`), logs the first drop of an
/// episode, and says whether it leaves the session behind: a QoS 1/2 queue congested, which may hold
/// the message's publisher (`session::hold`).
pub(in crate::shard) fn tally(
    stats: &mut crate::stats::ShardStats,
    session: &mut Session,
    delivery: Delivery,
    qos: QoS,
    limits: &Limits,
    now: Instant,
) -> bool {
    match delivery {
        Delivery::Sent => {
            stats.messages_sent += 1;
            false
        }
        Delivery::Queued => qos != QoS::AtMostOnce && session.congested(limits, now),
        Delivery::Dropped => {
            stats.messages_dropped += 1;
            if session.note_dropped() {
                log_dropping(&session.client_id);
            }
            // A hold whose lease ran out is renewed here.
            qos != QoS::AtMostOnce && session.congested(limits, now)
        }
        Delivery::TooLarge => {
            // Logged by the session, as Mosquitto logs it.
            stats.messages_dropped += 1;
            false
        }
        Delivery::Expired => {
            stats.messages_expired += 1;
            false
        }
        Delivery::Discarded => false,
    }
}

/// The first drop of an episode for a client (`Session::note_dropped`), in Mosquitto's words.
#[cold]
#[inline(never)]
pub(in crate::shard) fn log_dropping(client_id: &str) {
    tracing::info!(target: log_type::NOTICE,
        "Outgoing messages are being dropped for client {client_id}.");
}

impl Shard {
    pub(super) fn client_publish(
        &mut self,
        a: &mut Attached,
        mut p: Publish,
    ) -> Result<(), CloseReason> {
        self.stats.messages_received += 1;
        tracing::debug!(target: log_type::DEBUG,
            "Received PUBLISH from {} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
            a.client_id, u8::from(p.dup), p.qos as u8, u8::from(p.retain), p.packet_id, p.topic, p.payload.len());
        if a.protocol == ProtocolVersion::V5 {
            // [MQTT-3.3.4-6]: a client's PUBLISH has no Subscription Identifier; one that has is
            // not refused but its identifiers are not forwarded, as Mosquitto does.
            p.properties.subscription_identifiers.clear();
            match p.properties.topic_alias.take() {
                // The topic it names, or names from now on, up to our `max_topic_alias`
                // [MQTT-3.3.2-8], [MQTT-3.3.2-9]; aliases are the connection's, not the message's.
                Some(alias) => {
                    let max = self
                        .settings
                        .listeners
                        .get(usize::from(a.listener))
                        .map_or(0, |l| l.max_topic_alias);
                    p.topic = a.aliases.resolve(alias, &p.topic, max).map_err(|e| {
                        CloseReason::ProtocolError(match e {
                            AliasError::Invalid => ReasonCode::TopicAliasInvalid,
                            AliasError::Unknown => ReasonCode::ProtocolError,
                        })
                    })?;
                }
                None if p.topic.is_empty() => {
                    return Err(CloseReason::ProtocolError(ReasonCode::ProtocolError));
                }
                None => {}
            }
        }
        if topic::validate_topic_name(&p.topic).is_err() {
            return Err(CloseReason::ProtocolError(ReasonCode::TopicNameInvalid));
        }
        if p.retain && !self.settings.retain_available {
            return Err(CloseReason::ProtocolError(ReasonCode::RetainNotSupported));
        }
        let reserved = acl::reserved_for_write(&p.topic);
        if let Some(mount) = self.mount_point(a) {
            p.topic = mounted(mount, &p.topic);
        }
        // Without an ACL file the publisher's session is not looked at: one cache miss less per publish.
        let denied = reserved
            || (self.security.has_acl_file()
                && !self
                    .sessions
                    .get(a.slot, a.generation)
                    .expect("checked by caller")
                    .may_write(&p.topic));
        if denied {
            deny_publish(a, &p, ReasonCode::NotAuthorized);
            return Ok(());
        }
        // v5 3.3.2.3.2: the payload claims to be UTF-8 (Payload Format Indicator 1); the broker
        // checks, as the specification allows: refused with 0x99, by PUBACK/PUBREC or, at QoS 0,
        // by DISCONNECT.
        if p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            if p.qos == QoS::AtMostOnce {
                return Err(CloseReason::ProtocolError(ReasonCode::PayloadFormatInvalid));
            }
            deny_publish(a, &p, ReasonCode::PayloadFormatInvalid);
            return Ok(());
        }
        let deliver = match p.qos {
            QoS::AtMostOnce | QoS::AtLeastOnce => true,
            QoS::ExactlyOnce => {
                let quota = self.settings.limits.max_inflight;
                let s = self
                    .sessions
                    .get_mut(a.slot, a.generation)
                    .expect("checked by caller");
                // A v5 client may have at most the Receive Maximum of our CONNACK awaiting PUBREL
                // [MQTT-3.3.4-9]; a re-sent PUBLISH of an id it already holds does not count.
                if a.protocol == ProtocolVersion::V5
                    && s.inbound_qos2.len() >= quota
                    && !s.inbound_qos2.contains_key(&p.packet_id)
                {
                    return Err(CloseReason::ProtocolError(
                        ReasonCode::ReceiveMaximumExceeded,
                    ));
                }
                if let Some(c) = &mut s.completed_qos2 {
                    c.remove(&p.packet_id);
                }
                // Exactly once: a re-sent PUBLISH whose id is still unreleased is acknowledged, not routed.
                s.inbound_qos2.insert(p.packet_id, 0).is_none()
            }
        };
        let mut durable_key = 0;
        let reached = if deliver {
            let mut msg = Message::new(
                p.topic,
                p.payload,
                p.qos,
                p.retain,
                p.properties,
                Some((self.id, a.slot)),
            );
            msg.read_at = a.read_at;
            self.name_message(&mut msg);
            if p.qos == QoS::ExactlyOnce {
                let s = self
                    .sessions
                    .get_mut(a.slot, a.generation)
                    .expect("checked");
                durable_key = self.journal.accept(s, p.packet_id, &msg);
                if durable_key != 0 {
                    s.inbound_qos2.insert(p.packet_id, durable_key);
                    msg.durable = Some(Box::new(DurableKey {
                        key: durable_key,
                        publisher: s.client_id.clone(),
                        packet_id: p.packet_id,
                    }));
                }
            }
            self.route(msg)
        } else {
            ShardSet::default()
        };
        let kind = match p.qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => PubResponseKind::PubAck,
            QoS::ExactlyOnce => PubResponseKind::PubRec,
        };
        // At once, or (`persistence_sync always`) once what routing it wrote is durable.
        self.journal.acknowledge(
            &a.outbox,
            a.protocol,
            kind,
            p.packet_id,
            durable_key,
            reached.iter(),
        );
        Ok(())
    }

    /// A PUBACK: the QoS 1 delivery it acknowledges leaves the window, and the queue moves up.
    pub(super) fn client_puback(
        &mut self,
        a: &Attached,
        r: PubResponse,
    ) -> Result<(), CloseReason> {
        tracing::debug!(target: log_type::DEBUG, "Received PUBACK from {} (Mid: {}, RC:{})",
                a.client_id, r.packet_id, r.reason as u8);
        self.window_freed(a, |s, limits, ledger| {
            s.on_puback(r.packet_id, limits, ledger);
        });
        Ok(())
    }

    /// An acknowledgement that ends a delivery (`ack`): the queued messages it let into the window
    /// count as sent.
    fn window_freed(
        &mut self,
        a: &Attached,
        ack: impl FnOnce(&mut Session, &Limits, &mut dyn Ledger),
    ) {
        let limits = self.settings.limits;
        let s = self
            .sessions
            .get_mut(a.slot, a.generation)
            .expect("checked by caller");
        let before = s.pending_len().1;
        ack(s, &limits, &mut self.journal);
        let dequeued = before.saturating_sub(s.pending_len().1) as u64;
        let (expired, too_large) = (s.take_expired(), s.take_too_large());
        self.stats.messages_expired += expired;
        self.stats.messages_dropped += too_large;
        self.stats.messages_sent += dequeued.saturating_sub(expired + too_large);
    }

    /// A PUBREC: a QoS 2 delivery waits for its PUBCOMP now, or ends if the client refused it.
    pub(super) fn client_pubrec(
        &mut self,
        a: &Attached,
        r: PubResponse,
    ) -> Result<(), CloseReason> {
        tracing::debug!(target: log_type::DEBUG, "Received PUBREC from {} (Mid: {})", a.client_id, r.packet_id);
        if r.reason.is_error() {
            // v5: the receiver refused the message; the flow ends here ([MQTT-4.3.3]), and the
            // queue moves up.
            self.window_freed(a, |s, limits, ledger| {
                s.on_pubrec_error(r.packet_id, limits, ledger);
            });
        } else {
            let s = self
                .sessions
                .get_mut(a.slot, a.generation)
                .expect("checked by caller");
            s.on_pubrec(r.packet_id, &mut self.journal);
        }
        Ok(())
    }

    /// A PUBCOMP: the QoS 2 delivery it completes leaves the window, and the queue moves up.
    pub(super) fn client_pubcomp(
        &mut self,
        a: &Attached,
        r: PubResponse,
    ) -> Result<(), CloseReason> {
        tracing::debug!(target: log_type::DEBUG, "Received PUBCOMP from {} (Mid: {})", a.client_id, r.packet_id);
        self.window_freed(a, |s, limits, ledger| {
            s.on_pubcomp(r.packet_id, limits, ledger);
        });
        Ok(())
    }

    /// A PUBREL for a QoS 2 PUBLISH of the client: released, answered with PUBCOMP.
    pub(super) fn client_pubrel(
        &mut self,
        a: &Attached,
        r: PubResponse,
    ) -> Result<(), CloseReason> {
        tracing::debug!(target: log_type::DEBUG, "Received PUBREL from {} (Mid: {})", a.client_id, r.packet_id);
        let s = self
            .sessions
            .get_mut(a.slot, a.generation)
            .expect("checked by caller");
        let accepted = s.inbound_qos2.remove(&r.packet_id);
        // Completed before a restart, the PUBCOMP lost with the connection: it ends with success.
        let completed = s
            .completed_qos2
            .as_mut()
            .is_some_and(|c| c.remove(&r.packet_id));
        let known = accepted.is_some() || completed;
        if let Some(key) = accepted {
            if self.journal.accepted_done(s, r.packet_id, key) {
                self.journal.acknowledge(
                    &a.outbox,
                    a.protocol,
                    PubResponseKind::PubComp,
                    r.packet_id,
                    0,
                    std::iter::empty(),
                );
                return Ok(());
            }
        }
        let reason = if known || a.protocol != ProtocolVersion::V5 {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        a.outbox.write(|out| {
            codec::encode_pub_response(
                PubResponseKind::PubComp,
                r.packet_id,
                reason,
                a.protocol,
                out,
            )
        });
        Ok(())
    }

    /// Route a message: store it if retained, deliver to this shard's subscribers and send it once to
    /// every other shard with a matching subscription. Returns the shards it went to, this one
    /// included when it has subscribers here (and, with persistence, the shard whose log keeps a
    /// retained message's topic).
    pub(crate) fn route(&mut self, msg: Message) -> ShardSet {
        if self.shards > 1 || self.link.is_some() {
            // Subscriptions other shards have taken by now count, and holds they sent stop the
            // publisher after this packet, even if this shard's mail loop has not run since (see
            // `router`, urgent FIFO).
            self.apply_urgent_mail();
        }
        let mut shards = self.subs.shards_for(&msg.topic);
        // Remote interest (cluster mode): the link forwards the message to the interested nodes.
        // It is out of the set from here: it takes part in no hold, and a QoS 1/2 acknowledgement
        // does not wait for it (docs/CLUSTER.md). `$SYS` is each node's own.
        let to_link = self
            .link
            .filter(|&link| shards.remove(link) && !msg.topic.starts_with("$SYS"));
        // `hold_if_all_behind` (see `session::hold`): a client's publish carries where the other shards
        // stand on holding its publisher; this shard's own stance comes from delivering it here, first.
        let all_behind =
            self.settings.limits.slow_subscriber_policy == SlowSubscriberPolicy::HoldIfAllBehind;
        let mut stamp = HoldStamp::default();
        let publisher = msg
            .origin
            .filter(|o| all_behind && o.0 == self.id)
            .map(|o| o.1);
        if let Some(hold) = publisher
            .and_then(|slot| self.sessions.at(slot))
            .map(|s| &s.hold)
            .filter(|h| !h.is_idle())
        {
            stamp = hold.stamp(self.id, Instant::now());
        }
        let mut msg = msg;
        if msg.retain {
            // Kept by the retained store long after its read buffer should have gone.
            msg.own_storage();
        }
        let msg = Arc::new(msg);
        self.lookback.push(&msg, true);
        let local = shards.contains(self.id);
        let verdict = if local {
            self.deliver_local(&msg, &stamp, None)
        } else {
            Verdict::Neutral
        };
        let id = self.id;
        if let Some(publisher) = publisher.and_then(|slot| self.sessions.at_mut(slot)) {
            // The shards whose agreement a hold needs: every other shard reached, this one only if a
            // recipient here kept up (it then objects, whoever holds here).
            let mut objecting = shards;
            match verdict {
                Verdict::Agree => {
                    objecting.remove(id);
                    if !publisher.hold.is_idle() {
                        // Undoes an objection of this shard, so that its holders count again.
                        publisher.hold.hold(id, HoldSignal::Consent, Instant::now());
                    }
                }
                Verdict::Object => {
                    stamp.add_objection(id);
                    if !publisher.hold.is_idle() {
                        publisher.hold.object(id, Instant::now());
                    }
                }
                Verdict::Neutral if local => stamp.add_objection(id),
                Verdict::Neutral => {}
            }
            publisher.hold.reached(&objecting);
            stamp.pending |= publisher.hold.pending();
        }
        let mut reached = shards;
        if msg.retain {
            // In the broker's one store before it goes anywhere (`shard::retained`), and in the log
            // of the shard that keeps its topic.
            self.retained.store(msg.clone());
            self.journal.retained(&msg);
            if let Some(keeper) = self.journal.keeper_of(&msg.topic).filter(|&k| k != self.id) {
                self.journal.note_sent(keeper, &msg, true);
                reached.insert(keeper);
                self.mail.send(keeper, Mail::Retain(msg.clone()));
            }
            // Cluster mode: to the cluster's retained stream, which every node applies
            // (`cluster::retained`). `$SYS` is each node's own. Its acknowledgement waits for the
            // stream to have it: a SUBSCRIBE on any node after it then gets it (the node catches
            // up with the stream first, `cluster::relay::synced`).
            if let Some(link) = self.link.filter(|_| !msg.topic.starts_with("$SYS")) {
                self.journal.note_sent(link, &msg, true);
                reached.insert(link);
                self.mail.send(link, Mail::Retain(msg.clone()));
            }
        }
        for to in shards.iter() {
            if to != self.id {
                self.journal.note_sent(to, &msg, false);
                self.mail.send(to, Mail::Publish(msg.clone(), stamp));
            }
        }
        if let Some(link) = to_link {
            // No stamp: nothing comes back from the link about holding this publisher. Its QoS 1/2
            // acknowledgement waits for the link's copies to be in JetStream (`cluster::acks`).
            self.journal.note_sent(link, &msg, false);
            reached.insert(link);
            self.mail
                .send(link, Mail::Publish(msg.clone(), HoldStamp::default()));
        }
        if !self.shared.is_empty() {
            self.route_shared(&msg, &mut reached);
        }
        reached
    }

    /// Deliver a message to this shard's matching sessions: one copy per session at the highest QoS of its
    /// matching subscriptions, at min(publish QoS, subscription QoS). Returns what, under
    /// `hold_if_all_behind`, this shard says about its publisher being held. `custody`: a message
    /// from another node's JetStream copy, held by the sessions that owe it (`session::custody`).
    pub(crate) fn deliver_local(
        &mut self,
        msg: &Arc<Message>,
        stamp: &HoldStamp,
        custody: Option<Arc<Custody>>,
    ) -> Verdict {
        let matches = self.subs.matches(&msg.topic);
        if matches.is_empty() {
            self.subs.recycle(matches);
            return Verdict::Neutral;
        }
        // One shard-local handle on the message (not a copy of it), which caches the frames encoded
        // for its subscribers here when there are several.
        let local = Rc::new(Framed::in_custody(msg.clone(), matches.len() > 1, custody));
        let limits = self.settings.limits;
        let verbose = tracing::enabled!(target: log_type::DEBUG, tracing::Level::DEBUG);
        // Asked once per message: without an ACL file no session's ACL field is read (a cache line
        // that delivery does not otherwise touch).
        let check_acl = self.security.has_acl_file();
        let upgrade_qos = self.settings.upgrade_outgoing_qos;
        let now = Instant::now();
        // Whether congested recipients may hold this message's publisher (`may_hold`) and get room beyond
        // their limits meanwhile (`slack`): see `session::hold` for the policies. Under
        // `hold_if_all_behind` a message delivered at QoS 0 only holds nobody, so nobody is asked.
        let policy = limits.slow_subscriber_policy;
        let verdict = if policy == SlowSubscriberPolicy::HoldIfAllBehind
            && msg.origin.is_some()
            && (msg.qos != QoS::AtMostOnce || upgrade_qos)
        {
            if self.some_recipient_keeps_up(msg, &matches, check_acl, &limits) {
                Verdict::Object
            } else {
                Verdict::Agree
            }
        } else {
            Verdict::Neutral
        };
        let (may_hold, slack) = match policy {
            SlowSubscriberPolicy::Hold => (true, true),
            SlowSubscriberPolicy::Drop => (false, false),
            SlowSubscriberPolicy::HoldIfAllBehind => {
                let agree = verdict == Verdict::Agree;
                // The extra room only while the hold may take effect: no other shard objects.
                (agree, agree && !stamp.others_object(self.id))
            }
        };
        let all_behind = policy == SlowSubscriberPolicy::HoldIfAllBehind;
        let mut holds: SmallVec<[(Origin, HoldSignal, bool); 2]> = SmallVec::new();
        // A retained message for a session whose SUBACK waits: it gets the message as the retained
        // copy sent after that SUBACK (the store has it, or a newer one, by then: this shard stored
        // it before it came live), not twice (`Subscriptions::awaits_retained`). Rare: one check of
        // an empty map otherwise.
        let pending = msg.retain && self.subs.has_pending();
        // A retained message delivered live makes older retained copies still waiting for the same
        // connection stale (`feeds`). Rare: one check of an empty map otherwise.
        let feeding = msg.retain && !self.feeds.is_empty();
        let recent = self.lookback.has_subscribed();
        for m in &matches {
            let (slot, opts) = (m.slot, m.opts);
            if opts.no_local && msg.origin == Some((self.id, slot)) {
                continue;
            }
            if self.moves.is_stub(slot) {
                self.follow_stub(slot, msg, false);
                continue;
            }
            // A session that just came from another node: a copy it had already, or one that
            // waits for its twin from that node (`moves`).
            if self.moves.direct(slot, msg, now) != Direct::Give {
                continue;
            }
            let Some(session) = self.sessions.at_mut(slot) else {
                continue;
            };
            if pending && self.subs.awaits_retained(slot, session.generation, msg) {
                continue;
            }
            // A message the kernel received before a SUBSCRIBE of this session, delivered here after
            // it was read (it was in another shard's mailbox): only for the older subscriptions.
            if recent && !self.lookback.is_for(slot, &session.subscriptions, msg) {
                continue;
            }
            // `acl_file` read rules apply to each message, not to the SUBSCRIBE (as in Mosquitto 2.0).
            if check_acl && !session.may_read(&msg.topic) {
                continue;
            }
            let qos = delivery_qos(msg.qos, opts.qos, upgrade_qos);
            // A QoS 0 copy that came after the client connected again, of a message received
            // before that (from another shard's mailbox or another node): not for this connection.
            if session.missed(msg, qos, &limits) {
                continue;
            }
            if feeding {
                if let Some(conn) = &session.conn {
                    self.feeds.supersede(conn, &msg.topic);
                }
            }
            let retain = opts.retain_as_published && msg.retain;
            // A young congestion episode insists (`session::hold`, step 5): room beyond the limits and
            // holds that count whatever the other subscribers do.
            let insist = all_behind && qos != QoS::AtMostOnce && session.insists(now);
            // Only a QoS 1/2 backlog holds publishers: QoS 0 to a client that falls behind is dropped
            // (at most once), so a slow QoS 0 reader never slows anybody else (docs/ARCHITECTURE.md, invariant 6).
            let behind = match session.deliver(
                &local,
                qos,
                retain,
                &m.ids,
                &limits,
                slack || insist,
                &mut self.journal,
            ) {
                Delivery::Sent if verbose => {
                    tracing::debug!(target: log_type::DEBUG,
                        "Sending PUBLISH to {} (d0, q{}, r{}, m?, '{}', ... ({} bytes))",
                        session.client_id, qos as u8, u8::from(retain), msg.topic, msg.payload.len());
                    tally(&mut self.stats, session, Delivery::Sent, qos, &limits, now)
                }
                delivery => tally(&mut self.stats, session, delivery, qos, &limits, now),
            };
            if behind && all_behind && msg.origin.is_some() {
                session.note_congested(now);
            }
            let insist = behind && all_behind && session.insists(now);
            let congested = behind && (may_hold || insist);
            // Holding oneself would stop reading the very acknowledgements that drain the queue.
            if let Some(origin) = msg.origin.filter(|o| congested && *o != (self.id, slot)) {
                if let Some(signal) = session.holding.note(origin, now) {
                    holds.push((origin, signal, insist));
                }
            }
        }
        self.subs.recycle(matches);
        let from = self.id;
        let mut agreed = false;
        for (origin, signal, insist) in holds {
            if origin.0 == self.id {
                self.sessions.hold_publisher(origin.1, from, signal, insist);
            } else {
                agreed = true;
                self.mail.send_hold(origin, signal, insist, now);
            }
        }
        // Another shard's publisher that some shard holds or agrees to hold: tell its shard where this
        // one stands (its own shard learns that from `deliver_local` directly).
        if let Some(origin) = msg.origin.filter(|o| o.0 != self.id && stamp.pending) {
            match verdict {
                Verdict::Agree if !agreed => self.mail.tell_stance(origin, true, now),
                Verdict::Object => self.mail.tell_stance(origin, false, now),
                _ => {}
            }
        }
        verdict
    }

    /// `hold_if_all_behind`, before `msg` is delivered: whether one of its recipients here keeps up
    /// (see [`Session::keeps_up`]). Stops at the first that does, the common case.
    fn some_recipient_keeps_up(
        &self,
        msg: &Message,
        matches: &[Matched],
        check_acl: bool,
        limits: &Limits,
    ) -> bool {
        let upgrade_qos = self.settings.upgrade_outgoing_qos;
        matches.iter().any(|m| {
            let (slot, opts) = (m.slot, m.opts);
            if opts.no_local && msg.origin == Some((self.id, slot)) {
                return false;
            }
            let Some(session) = self.sessions.at(slot) else {
                return false;
            };
            if check_acl && !session.may_read(&msg.topic) {
                return false;
            }
            let qos = delivery_qos(msg.qos, opts.qos, upgrade_qos);
            session.keeps_up(msg, qos, limits) == Some(true)
        })
    }

    /// Let go of the publishers a session holds once its queue drained to a quarter (or at
    /// once, with `all`, when the session leaves).
    pub(crate) fn release_holds(&mut self, slot: u32, generation: u32, all: bool) {
        let limits = self.settings.limits;
        let Some(s) = self.sessions.get_mut(slot, generation) else {
            return;
        };
        if s.holding.is_empty() || !(all || s.drained(&limits)) {
            return;
        }
        let origins = s.holding.take();
        self.send_releases(origins);
    }

    pub(in crate::shard) fn send_releases(&mut self, origins: SmallVec<[Origin; 4]>) {
        let from = self.id;
        for origin in origins {
            if origin.0 == self.id {
                let policy = self.settings.limits.slow_subscriber_policy;
                self.sessions.release_publisher(origin.1, from, policy);
            } else {
                self.mail.send(
                    origin.0,
                    Mail::Release {
                        slot: origin.1,
                        from,
                    },
                );
            }
        }
    }

    /// Whether subscribers hold `a` (cheap enough to ask after every packet).
    pub(crate) fn is_held(&self, a: &Attached) -> bool {
        let policy = self.settings.limits.slow_subscriber_policy;
        self.sessions
            .get(a.slot, a.generation)
            .is_some_and(|s| s.hold.held(policy))
    }

    /// Until when the reader of `a` must pause because subscribers it feeds are falling behind.
    pub(crate) fn held_until(&mut self, a: &Attached) -> Option<Instant> {
        let policy = self.settings.limits.slow_subscriber_policy;
        self.sessions
            .get_mut(a.slot, a.generation)?
            .hold
            .held_until(Instant::now(), policy)
    }

    /// Ready once `a` is no longer held; otherwise wakes `cx` at the release that ends the hold.
    pub(crate) fn poll_released(&mut self, a: &Attached, cx: &mut Context<'_>) -> Poll<()> {
        let policy = self.settings.limits.slow_subscriber_policy;
        let Some(s) = self.sessions.get_mut(a.slot, a.generation) else {
            return Poll::Ready(());
        };
        if s.hold.held_until(Instant::now(), policy).is_none() {
            return Poll::Ready(());
        }
        s.hold.wait(cx.waker());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
