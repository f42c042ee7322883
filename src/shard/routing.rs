//! What packets do to a shard's state: sessions attach and detach, subscriptions enter the trie and the
//! interest map, publishes are routed (locally and once per interested shard), wills are published.
//! Synchronous code only: the connection tasks call in with the shard borrowed, between their awaits.

use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use smallvec::SmallVec;

use super::{PendingInterest, PendingSub, Shard, SubToken};
use crate::auth::acl;
use crate::codec::{
    self, ConnAck, Connect, LastWill, Packet, Properties, ProtocolVersion, PubResponseKind,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe, Utf8Bytes,
};
use crate::logging::log_type;
use crate::message::Message;
use crate::router::Mail;
use crate::session::{
    CloseReason, Delivery, HoldSignal, Limits, Login, Origin, Outbox, Session,
    SlowSubscriberPolicy, HOLD_LEASE,
};
use crate::topic;

/// A connection attached to its session: what the reader needs to find it again.
pub(crate) struct Attached {
    pub slot: u32,
    pub generation: u32,
    pub protocol: ProtocolVersion,
    pub client_id: Utf8Bytes,
    pub outbox: Rc<Outbox>,
    /// v5 DISCONNECT with reason 0x04: publish the will even though the client disconnected cleanly.
    pub will_on_disconnect: bool,
}

/// Protocol number as Mosquitto prints it in its logs (p1 = 3.1, p2 = 3.1.1, p5 = 5.0).
pub(crate) fn log_protocol(p: ProtocolVersion) -> u8 {
    match p {
        ProtocolVersion::V31 => 1,
        ProtocolVersion::V311 => 2,
        ProtocolVersion::V5 => 5,
    }
}

/// Append a packet the broker built (CONNACK, SUBACK, UNSUBACK, PINGRESP): only [`codec::encode`].
fn encode_into(out: &mut BytesMut, packet: &Packet, protocol: ProtocolVersion) {
    // Broker-built packets are always within the protocol's limits.
    let _ = codec::encode(packet, protocol, out);
}

/// Append a PUBACK or PUBREC with reason Success for an accepted PUBLISH (the codec's short form).
#[inline]
fn ack(kind: PubResponseKind, packet_id: u16, protocol: ProtocolVersion, out: &mut BytesMut) {
    codec::encode_pub_response(kind, packet_id, ReasonCode::Success, protocol, out)
}

/// The message a will becomes when published: will properties that describe the message are kept,
/// the will delay (about the will, not the message) is not.
/// Answer a PUBLISH the client may not make (`$SYS`, `acl_file`) as Mosquitto does: dropped but
/// acknowledged, so the client does not resend it, and a v5 client learns why (0x87). Nothing is kept
/// for QoS 2: a 3.x client's PUBREL for it gets its PUBCOMP all the same, and a v5 client ends the
/// exchange at the failed PUBREC. Out of line: rare, and kept off the publish path's code.
#[cold]
#[inline(never)]
fn deny_publish(a: &Attached, p: &Publish) {
    tracing::debug!(target: log_type::DEBUG,
        "Denied PUBLISH from {} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
        a.client_id, u8::from(p.dup), p.qos as u8, u8::from(p.retain), p.packet_id, p.topic, p.payload.len());
    let kind = match p.qos {
        QoS::AtMostOnce => return,
        QoS::AtLeastOnce => PubResponseKind::PubAck,
        QoS::ExactlyOnce => PubResponseKind::PubRec,
    };
    a.outbox.write(|out| {
        codec::encode_pub_response(
            kind,
            p.packet_id,
            ReasonCode::NotAuthorized,
            a.protocol,
            out,
        )
    });
}

/// QoS of one delivery: min(publish, subscription) as MQTT says, or the subscription's with Mosquitto's
/// `upgrade_outgoing_qos` (non-standard: a QoS 0 publish then reaches a QoS 2 subscriber at QoS 2).
fn delivery_qos(published: QoS, subscribed: QoS, upgrade: bool) -> QoS {
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

/// The first drop of an episode for a client (`Session::note_dropped`), in Mosquitto's words.
#[cold]
#[inline(never)]
fn log_dropping(client_id: &str) {
    tracing::info!(target: log_type::NOTICE,
        "Outgoing messages are being dropped for client {client_id}.");
}

pub(super) fn will_message(will: Box<LastWill>) -> Message {
    let will = *will;
    let mut properties = will.properties;
    properties.will_delay_interval = None;
    Message {
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties,
        origin: None,
        hold_stamp: Default::default(),
    }
}

impl Shard {
    fn session(&self, slot: u32, generation: u32) -> Option<&Session> {
        self.sessions
            .get(slot as usize)?
            .as_deref()
            .filter(|s| s.generation == generation)
    }

    fn session_mut(&mut self, slot: u32, generation: u32) -> Option<&mut Session> {
        self.sessions
            .get_mut(slot as usize)?
            .as_deref_mut()
            .filter(|s| s.generation == generation)
    }

    fn next_generation(&mut self, slot: u32) -> u32 {
        let g = &mut self.generations[slot as usize];
        *g = g.wrapping_add(1);
        *g
    }

    /// A client id for a client that sent none, chosen so that its home is this shard (docs/ARCHITECTURE.md
    /// invariant 1) and unlikely to collide with anything a client would pick.
    pub(crate) fn assign_client_id(&mut self) -> Utf8Bytes {
        loop {
            self.assigned_ids += 1;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let id = format!(
                "{}{:08X}-{:04X}-{:012X}",
                self.settings.auto_id_prefix,
                nanos as u32,
                self.id,
                self.assigned_ids ^ (nanos >> 32) << 24
            );
            if super::home_of(id.as_bytes(), self.shards) == self.id
                && !self.directory.contains_key(&Utf8Bytes::from(id.as_str()))
            {
                return Utf8Bytes::from(id);
            }
        }
    }

    /// Attach a connection whose CONNECT was accepted to its session (new, resumed or taken over), queue
    /// the CONNACK and then whatever the session still owes the client.
    pub(crate) fn attach(
        &mut self,
        connect: &Connect,
        connack_properties: Properties,
        outbox: Rc<Outbox>,
    ) -> Attached {
        let persistent = match connect.protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0) > 0,
            _ => !connect.clean_start,
        };
        let mut resumed = None;
        if let Some(&slot) = self.directory.get(&connect.client_id) {
            let session = self.sessions[slot as usize]
                .as_mut()
                .expect("directory points at a session");
            if let Some(old) = session.conn.take() {
                // Session takeover [MQTT-3.1.4-2]: close the old connection, then its will goes out as for
                // any close without DISCONNECT.
                tracing::info!(target: log_type::NOTICE,
                    "Client {} already connected, closing old connection.", connect.client_id);
                if session.protocol == ProtocolVersion::V5 {
                    old.write(|out| {
                        codec::encode_disconnect(
                            ReasonCode::SessionTakenOver,
                            ProtocolVersion::V5,
                            out,
                        )
                    });
                }
                old.close(CloseReason::Takeover);
                self.stats.clients_connected -= 1;
                let will = session.will.take().filter(|w| session.may_write(&w.topic));
                let was_clean = session.clean;
                if let Some(will) = will {
                    self.route(will_message(will));
                }
                if was_clean {
                    self.remove_session(slot);
                }
            }
            if self.directory.contains_key(&connect.client_id) {
                if connect.clean_start {
                    self.remove_session(slot);
                } else {
                    resumed = Some(slot);
                }
            }
        }
        let session_present = resumed.is_some();
        let slot = match resumed {
            Some(slot) => slot,
            None => {
                let slot = match self.free_slots.pop() {
                    Some(s) => s,
                    None => {
                        self.sessions.push(None);
                        self.generations.push(0);
                        (self.sessions.len() - 1) as u32
                    }
                };
                self.sessions[slot as usize] = Some(Box::new(Session::new(
                    connect.client_id.clone(),
                    connect.protocol,
                    !persistent,
                    0,
                )));
                self.directory.insert(connect.client_id.clone(), slot);
                slot
            }
        };
        let generation = self.next_generation(slot);
        let limits = self.settings.limits;
        let session = self.sessions[slot as usize]
            .as_mut()
            .expect("slot just filled");
        session.generation = generation;
        session.protocol = connect.protocol;
        session.clean = !persistent;
        session.expiry_interval = match connect.protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            _ if persistent => u32::MAX,
            _ => 0,
        };
        session.will = connect.will.clone();
        session.receive_maximum = connect.properties.receive_maximum.map(usize::from);
        session.max_packet_size = connect
            .properties
            .maximum_packet_size
            .map(|m| m as usize)
            .filter(|_| connect.protocol == ProtocolVersion::V5);
        session.inbound_qos2.clear();
        // (A zero-length username arrives as None: `connection::read_connect`.)
        let username = connect.username.as_ref();
        session.login = username.map(|username| {
            Box::new(Login {
                username: username.clone(),
                password: connect.password.clone(),
            })
        });
        session.acl = self
            .security
            .client_acl(connect.client_id.as_str(), username.map(|u| u.as_str()));
        if session_present {
            // The client may have come back under another username.
            session.drop_unreadable();
        }
        let connack = Packet::ConnAck(ConnAck {
            session_present,
            code: ReasonCode::Success,
            properties: connack_properties,
        });
        outbox.write(|out| encode_into(out, &connack, connect.protocol));
        let sent = session.resume(outbox.clone(), &limits);
        self.stats.messages_sent += sent as u64;
        self.stats.clients_connected += 1;
        self.stats.connections_total += 1;
        Attached {
            slot,
            generation,
            protocol: connect.protocol,
            client_id: connect.client_id.clone(),
            outbox,
            will_on_disconnect: false,
        }
    }

    /// The connection of `a` ended for `reason`: publish its will unless it disconnected normally, and
    /// end the session if it was not persistent. A connection already taken over does nothing here.
    pub(crate) fn detach(&mut self, a: &Attached, reason: CloseReason) {
        let Some(session) = self.session_mut(a.slot, a.generation) else {
            return;
        };
        if !session
            .conn
            .as_ref()
            .is_some_and(|c| Rc::ptr_eq(c, &a.outbox))
        {
            return;
        }
        session.conn = None;
        // A will goes out only where its client could have published it (`$SYS`, `acl_file`).
        let will = session.will.take().filter(|w| session.may_write(&w.topic));
        let clean = session.clean;
        // Publishers it holds would otherwise wait out their lease for a client that is gone.
        self.release_holds(a.slot, a.generation, true);
        self.stats.clients_connected -= 1;
        let publish_will = match reason {
            CloseReason::ClientDisconnect => a.will_on_disconnect,
            // Mosquitto drops the will of a client it disconnects as no longer authorised.
            CloseReason::NotAuthorised => false,
            // Shutdown is the broker's own doing; Mosquitto publishes wills then too.
            _ => true,
        };
        if let (true, Some(will)) = (publish_will, will) {
            self.route(will_message(will));
        }
        if clean {
            self.remove_session(a.slot);
        } else {
            self.schedule_expiry(a.slot, a.generation);
        }
    }

    /// End a session: its subscriptions leave the trie (and the interest map, telling the other shards when
    /// this shard loses its last subscription to a filter), its id leaves the directory.
    pub(super) fn remove_session(&mut self, slot: u32) {
        let Some(mut session) = self.sessions[slot as usize].take() else {
            return;
        };
        self.send_releases(session.holding.take());
        for filter in session.subscriptions.keys() {
            self.unsubscribe_filter(slot, filter);
        }
        self.directory.remove(&session.client_id);
        self.free_slots.push(slot);
        self.generations[slot as usize] = self.generations[slot as usize].wrapping_add(1);
    }

    fn unsubscribe_filter(&mut self, slot: u32, filter: &Utf8Bytes) {
        if self.trie.remove(filter, slot).is_some() {
            self.stats.subscriptions -= 1;
            if self.interest.remove(filter, self.id) && self.shards > 1 {
                let from = self.id;
                self.broadcast(|| Mail::InterestRemove {
                    from,
                    filter: filter.clone(),
                });
            }
        }
    }

    /// Handle one packet from an attached client. `Err` closes the connection.
    pub(crate) fn handle_packet(
        &mut self,
        a: &mut Attached,
        packet: Packet,
    ) -> Result<(), CloseReason> {
        if self.session(a.slot, a.generation).is_none() {
            return Err(CloseReason::Takeover);
        }
        match packet {
            Packet::Publish(p) => self.client_publish(a, p),
            Packet::PubAck(r) => {
                tracing::debug!(target: log_type::DEBUG, "Received PUBACK from {} (Mid: {}, RC:{})",
                    a.client_id, r.packet_id, r.reason as u8);
                let limits = self.settings.limits;
                let s = self
                    .session_mut(a.slot, a.generation)
                    .expect("checked above");
                let before = s.pending_len().1;
                s.on_puback(r.packet_id, &limits);
                let sent = before.saturating_sub(s.pending_len().1);
                self.stats.messages_sent += sent as u64;
                Ok(())
            }
            Packet::PubRec(r) => {
                tracing::debug!(target: log_type::DEBUG, "Received PUBREC from {} (Mid: {})", a.client_id, r.packet_id);
                let limits = self.settings.limits;
                let s = self
                    .session_mut(a.slot, a.generation)
                    .expect("checked above");
                if r.reason.is_error() {
                    // v5: the receiver refused the message; the flow ends here ([MQTT-4.3.3]).
                    s.on_pubrec_error(r.packet_id, &limits);
                } else {
                    s.on_pubrec(r.packet_id);
                }
                Ok(())
            }
            Packet::PubComp(r) => {
                tracing::debug!(target: log_type::DEBUG, "Received PUBCOMP from {} (Mid: {})", a.client_id, r.packet_id);
                let limits = self.settings.limits;
                let s = self
                    .session_mut(a.slot, a.generation)
                    .expect("checked above");
                let before = s.pending_len().1;
                s.on_pubcomp(r.packet_id, &limits);
                let sent = before.saturating_sub(s.pending_len().1);
                self.stats.messages_sent += sent as u64;
                Ok(())
            }
            Packet::PubRel(r) => {
                tracing::debug!(target: log_type::DEBUG, "Received PUBREL from {} (Mid: {})", a.client_id, r.packet_id);
                let s = self
                    .session_mut(a.slot, a.generation)
                    .expect("checked above");
                let known = s.inbound_qos2.remove(&r.packet_id);
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
            Packet::Subscribe(s) => {
                self.client_subscribe(a, s);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.client_unsubscribe(a, u);
                Ok(())
            }
            Packet::PingReq => {
                tracing::debug!(target: log_type::DEBUG, "Received PINGREQ from {}", a.client_id);
                a.outbox
                    .write(|out| encode_into(out, &Packet::PingResp, a.protocol));
                Ok(())
            }
            Packet::Disconnect(d) => {
                tracing::debug!(target: log_type::DEBUG, "Received DISCONNECT from {}", a.client_id);
                if a.protocol == ProtocolVersion::V5 {
                    if d.reason == ReasonCode::DisconnectWithWillMessage {
                        a.will_on_disconnect = true;
                    }
                    // [MQTT-3.14.2-2]: a session expiry of 0 at CONNECT cannot become non-zero now.
                    if let Some(expiry) = d.properties.session_expiry_interval {
                        let s = self
                            .session_mut(a.slot, a.generation)
                            .expect("checked above");
                        if s.clean && expiry > 0 {
                            return Err(CloseReason::ProtocolError(ReasonCode::ProtocolError));
                        }
                        if expiry == 0 {
                            s.clean = true;
                        }
                        s.expiry_interval = expiry;
                    }
                }
                Err(CloseReason::ClientDisconnect)
            }
            // A second CONNECT [MQTT-3.1.0-2], AUTH without an authentication method at CONNECT, or a
            // packet only a server may send.
            _ => Err(CloseReason::ProtocolError(ReasonCode::ProtocolError)),
        }
    }

    fn client_publish(&mut self, a: &Attached, p: Publish) -> Result<(), CloseReason> {
        self.stats.messages_received += 1;
        tracing::debug!(target: log_type::DEBUG,
            "Received PUBLISH from {} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
            a.client_id, u8::from(p.dup), p.qos as u8, u8::from(p.retain), p.packet_id, p.topic, p.payload.len());
        if a.protocol == ProtocolVersion::V5 {
            // The CONNACK advertised no topic aliases (Topic Alias Maximum absent = 0) [MQTT-3.3.2-9].
            if p.properties.topic_alias.is_some() {
                return Err(CloseReason::ProtocolError(ReasonCode::TopicAliasInvalid));
            }
            if p.topic.is_empty() {
                return Err(CloseReason::ProtocolError(ReasonCode::ProtocolError));
            }
        }
        if topic::validate_topic_name(&p.topic).is_err() {
            return Err(CloseReason::ProtocolError(ReasonCode::TopicNameInvalid));
        }
        if p.retain && !self.settings.retain_available {
            return Err(CloseReason::ProtocolError(ReasonCode::RetainNotSupported));
        }
        // Without an ACL file the publisher's session is not looked at: one cache miss less per publish.
        let denied = acl::reserved_for_write(&p.topic)
            || (self.security.has_acl_file()
                && !self
                    .session(a.slot, a.generation)
                    .expect("checked by caller")
                    .may_write(&p.topic));
        if denied {
            deny_publish(a, &p);
            return Ok(());
        }
        let deliver = match p.qos {
            QoS::AtMostOnce | QoS::AtLeastOnce => true,
            QoS::ExactlyOnce => {
                let quota = self.settings.limits.max_inflight;
                let s = self
                    .session_mut(a.slot, a.generation)
                    .expect("checked by caller");
                // A v5 client may have at most the Receive Maximum of our CONNACK awaiting PUBREL
                // [MQTT-3.3.4-9]; a re-sent PUBLISH of an id it already holds does not count.
                if a.protocol == ProtocolVersion::V5
                    && s.inbound_qos2.len() >= quota
                    && !s.inbound_qos2.contains(&p.packet_id)
                {
                    return Err(CloseReason::ProtocolError(
                        ReasonCode::ReceiveMaximumExceeded,
                    ));
                }
                // Exactly once: a re-sent PUBLISH whose id is still unreleased is acknowledged, not routed.
                s.inbound_qos2.insert(p.packet_id)
            }
        };
        if deliver {
            let mut properties = p.properties;
            properties.topic_alias = None;
            self.route(Message {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties,
                origin: Some((self.id, a.slot)),
                hold_stamp: Default::default(),
            });
        }
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => a
                .outbox
                .write(|out| ack(PubResponseKind::PubAck, p.packet_id, a.protocol, out)),
            QoS::ExactlyOnce => a
                .outbox
                .write(|out| ack(PubResponseKind::PubRec, p.packet_id, a.protocol, out)),
        }
        Ok(())
    }

    /// Route a message: store it if retained, deliver to this shard's subscribers and send it once to
    /// every other shard with a matching subscription.
    pub(crate) fn route(&mut self, mut msg: Message) {
        if self.shards > 1 {
            // Subscriptions other shards have taken by now count, even if this shard's mail loop has
            // not run since (see `router`, interest FIFOs).
            self.apply_interest_mail();
        }
        let shards = self.interest.shards_for(&msg.topic);
        // `hold_if_all_behind` (see `session::hold`): a client's publish carries where the other shards
        // stand on holding its publisher; this shard's own stance comes from delivering it here, first.
        let all_behind =
            self.settings.limits.slow_subscriber_policy == SlowSubscriberPolicy::HoldIfAllBehind;
        let publisher = msg
            .origin
            .filter(|o| all_behind && o.0 == self.id)
            .map(|o| o.1);
        if let Some(hold) = publisher
            .and_then(|slot| self.sessions.get(slot as usize))
            .and_then(|s| s.as_deref())
            .map(|s| &s.hold)
            .filter(|h| !h.is_idle())
        {
            msg.hold_stamp = hold.stamp(self.id, Instant::now());
        }
        let local = shards.contains(self.id);
        let verdict = if local {
            self.deliver_local(&msg)
        } else {
            Verdict::Neutral
        };
        let id = self.id;
        if let Some(Some(publisher)) =
            publisher.and_then(|slot| self.sessions.get_mut(slot as usize))
        {
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
                    msg.hold_stamp.add_objection(id);
                    if !publisher.hold.is_idle() {
                        publisher.hold.object(id, Instant::now());
                    }
                }
                Verdict::Neutral if local => msg.hold_stamp.add_objection(id),
                Verdict::Neutral => {}
            }
            publisher.hold.reached(&objecting);
            msg.hold_stamp.pending |= publisher.hold.pending();
        }
        let msg = Arc::new(msg);
        if msg.retain {
            self.store_retained(msg.clone());
            if self.shards > 1 {
                self.broadcast(|| Mail::Retain(msg.clone()));
            }
        }
        for to in shards.iter() {
            if to != self.id {
                self.send(to, Mail::Publish(msg.clone()));
            }
        }
    }

    /// Store, replace or (empty payload) clear a retained message in this shard's copy.
    pub(crate) fn store_retained(&mut self, msg: Arc<Message>) {
        if msg.payload.is_empty() {
            self.retained.remove(&msg.topic);
        } else {
            let topic = msg.topic.clone();
            self.retained.set(&topic, msg);
        }
    }

    /// Deliver a message to this shard's matching sessions: one copy per session at the highest QoS of its
    /// matching subscriptions, at min(publish QoS, subscription QoS). Returns what, under
    /// `hold_if_all_behind`, this shard says about its publisher being held.
    pub(crate) fn deliver_local(&mut self, msg: &Message) -> Verdict {
        let mut matches = std::mem::take(&mut self.scratch);
        matches.clear();
        self.trie
            .for_each_match(&msg.topic, |slot, opts| matches.push((slot, *opts)));
        if matches.is_empty() {
            self.scratch = matches;
            return Verdict::Neutral;
        }
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| m.0);
            matches.dedup_by(|later, kept| {
                if later.0 != kept.0 {
                    return false;
                }
                if later.1.qos > kept.1.qos {
                    kept.1.qos = later.1.qos;
                }
                kept.1.retain_as_published |= later.1.retain_as_published;
                kept.1.no_local &= later.1.no_local;
                true
            });
        }
        // One shard-local copy of the message header per shard; the payload stays shared.
        let local = Rc::new(msg.clone());
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
                (agree, agree && !msg.hold_stamp.others_object(self.id))
            }
        };
        let mut holds: SmallVec<[(Origin, HoldSignal); 2]> = SmallVec::new();
        for &(slot, opts) in &matches {
            if opts.no_local && msg.origin == Some((self.id, slot)) {
                continue;
            }
            let Some(Some(session)) = self.sessions.get_mut(slot as usize) else {
                continue;
            };
            // `acl_file` read rules apply to each message, not to the SUBSCRIBE (as in Mosquitto 2.0).
            if check_acl && !session.may_read(&msg.topic) {
                continue;
            }
            let qos = delivery_qos(msg.qos, opts.qos, upgrade_qos);
            let retain = opts.retain_as_published && msg.retain;
            // Only a QoS 1/2 backlog holds publishers: QoS 0 to a client that falls behind is dropped
            // (at most once), so a slow QoS 0 reader never slows anybody else (docs/ARCHITECTURE.md, invariant 6).
            let congested = match session.deliver(&local, qos, retain, &limits, slack) {
                Delivery::Sent => {
                    self.stats.messages_sent += 1;
                    if verbose {
                        tracing::debug!(target: log_type::DEBUG,
                            "Sending PUBLISH to {} (d0, q{}, r{}, m?, '{}', ... ({} bytes))",
                            session.client_id, qos as u8, u8::from(retain), msg.topic, msg.payload.len());
                    }
                    false
                }
                Delivery::Queued => {
                    may_hold && qos != QoS::AtMostOnce && session.congested(&limits, now)
                }
                Delivery::Dropped => {
                    self.stats.messages_dropped += 1;
                    if session.note_dropped() {
                        log_dropping(&session.client_id);
                    }
                    // A hold whose lease ran out is renewed here.
                    may_hold && qos != QoS::AtMostOnce && session.congested(&limits, now)
                }
                Delivery::TooLarge => {
                    self.stats.messages_dropped += 1;
                    if verbose {
                        tracing::debug!(target: log_type::DEBUG,
                            "Dropping too large outgoing PUBLISH to {} ('{}', ... ({} bytes))",
                            session.client_id, msg.topic, msg.payload.len());
                    }
                    false
                }
                Delivery::Discarded => false,
            };
            // Holding oneself would stop reading the very acknowledgements that drain the queue.
            if let Some(origin) = msg.origin.filter(|o| congested && *o != (self.id, slot)) {
                if let Some(signal) = session.holding.note(origin, now) {
                    holds.push((origin, signal));
                }
            }
        }
        self.scratch = matches;
        let from = self.id;
        let mut agreed = false;
        for (origin, signal) in holds {
            if origin.0 == self.id {
                self.hold_publisher(origin.1, from, signal);
            } else {
                agreed = true;
                self.stances.insert(origin, (now, true));
                self.send(
                    origin.0,
                    Mail::Hold {
                        slot: origin.1,
                        from,
                        signal,
                    },
                );
            }
        }
        // Another shard's publisher that some shard holds or agrees to hold: tell its shard where this
        // one stands (its own shard learns that from `deliver_local` directly).
        if let Some(origin) = msg
            .origin
            .filter(|o| o.0 != self.id && msg.hold_stamp.pending)
        {
            match verdict {
                Verdict::Agree if !agreed => self.tell_stance(origin, true, now),
                Verdict::Object => self.tell_stance(origin, false, now),
                _ => {}
            }
        }
        verdict
    }

    /// Tell the shard of publisher `origin` that this shard agrees to it being held (nobody here keeps
    /// up: [`HoldSignal::Consent`]) or objects (`Mail::Object`), unless it was told so within half a
    /// lease.
    fn tell_stance(&mut self, origin: Origin, agree: bool, now: Instant) {
        let told = self.stances.get(&origin).is_some_and(|&(sent, agreed)| {
            agreed == agree && now.saturating_duration_since(sent) < HOLD_LEASE / 2
        });
        if told {
            return;
        }
        self.stances.insert(origin, (now, agree));
        let (slot, from) = (origin.1, self.id);
        let mail = if agree {
            Mail::Hold {
                slot,
                from,
                signal: HoldSignal::Consent,
            }
        } else {
            Mail::Object { slot, from }
        };
        self.send(origin.0, mail);
    }

    /// Forget the stances told whose lease ran out (on every tick).
    pub(super) fn forget_stances(&mut self, now: Instant) {
        if !self.stances.is_empty() {
            self.stances
                .retain(|_, (sent, _)| now.saturating_duration_since(*sent) < HOLD_LEASE);
        }
    }

    /// `hold_if_all_behind`, before `msg` is delivered: whether one of its recipients here keeps up
    /// (see [`Session::keeps_up`]). Stops at the first that does, the common case.
    fn some_recipient_keeps_up(
        &self,
        msg: &Message,
        matches: &[(u32, SubscriptionOptions)],
        check_acl: bool,
        limits: &Limits,
    ) -> bool {
        let upgrade_qos = self.settings.upgrade_outgoing_qos;
        matches.iter().any(|&(slot, opts)| {
            if opts.no_local && msg.origin == Some((self.id, slot)) {
                return false;
            }
            let Some(Some(session)) = self.sessions.get(slot as usize) else {
                return false;
            };
            if check_acl && !session.may_read(&msg.topic) {
                return false;
            }
            let qos = delivery_qos(msg.qos, opts.qos, upgrade_qos);
            session.keeps_up(msg, qos, limits) == Some(true)
        })
    }

    /// A subscriber on shard `from` holds the publisher in `slot` of this shard (see
    /// [`crate::session::PublisherHold`]).
    pub(super) fn hold_publisher(&mut self, slot: u32, from: u16, signal: HoldSignal) {
        if let Some(Some(s)) = self.sessions.get_mut(slot as usize) {
            s.hold.hold(from, signal, Instant::now());
        }
    }

    /// A subscriber on shard `from` let the publisher in `slot` of this shard go.
    pub(super) fn release_publisher(&mut self, slot: u32, from: u16) {
        let policy = self.settings.limits.slow_subscriber_policy;
        if let Some(Some(s)) = self.sessions.get_mut(slot as usize) {
            s.hold.release(from, policy);
        }
    }

    /// A subscriber on shard `from` keeps up with the publisher in `slot` of this shard.
    pub(super) fn object_to_publisher(&mut self, slot: u32, from: u16) {
        if let Some(Some(s)) = self.sessions.get_mut(slot as usize) {
            s.hold.object(from, Instant::now());
        }
    }

    /// Let go of the publishers a session holds once its queue drained to a quarter (or at
    /// once, with `all`, when the session leaves).
    pub(crate) fn release_holds(&mut self, slot: u32, generation: u32, all: bool) {
        let limits = self.settings.limits;
        let Some(s) = self.session_mut(slot, generation) else {
            return;
        };
        if s.holding.is_empty() || !(all || s.drained(&limits)) {
            return;
        }
        let origins = s.holding.take();
        self.send_releases(origins);
    }

    fn send_releases(&mut self, origins: SmallVec<[Origin; 4]>) {
        let from = self.id;
        for origin in origins {
            if origin.0 == self.id {
                self.release_publisher(origin.1, from);
            } else {
                self.send(
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
        self.session(a.slot, a.generation)
            .is_some_and(|s| s.hold.held(policy))
    }

    /// Until when the reader of `a` must pause because subscribers it feeds are falling behind.
    pub(crate) fn held_until(&mut self, a: &Attached) -> Option<Instant> {
        let policy = self.settings.limits.slow_subscriber_policy;
        self.session_mut(a.slot, a.generation)?
            .hold
            .held_until(Instant::now(), policy)
    }

    /// Ready once `a` is no longer held; otherwise wakes `cx` at the release that ends the hold.
    pub(crate) fn poll_released(&mut self, a: &Attached, cx: &mut Context<'_>) -> Poll<()> {
        let policy = self.settings.limits.slow_subscriber_policy;
        let Some(s) = self.session_mut(a.slot, a.generation) else {
            return Poll::Ready(());
        };
        if s.hold.held_until(Instant::now(), policy).is_none() {
            return Poll::Ready(());
        }
        s.hold.wait(cx.waker());
        Poll::Pending
    }

    fn client_subscribe(&mut self, a: &Attached, sub: Subscribe) {
        tracing::debug!(target: log_type::DEBUG, "Received SUBSCRIBE from {}", a.client_id);
        let token = SubToken {
            slot: a.slot,
            generation: a.generation,
            packet_id: sub.packet_id,
        };
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut retained = Vec::new();
        let mut waits = 0;
        let v5 = a.protocol == ProtocolVersion::V5;
        if v5 && !sub.properties.subscription_identifiers.is_empty() {
            // Not offered in the CONNACK (Subscription Identifiers Available = 0).
            for _ in &sub.filters {
                codes.push(ReasonCode::SubscriptionIdentifiersNotSupported);
            }
            self.write_suback(
                a,
                SubAck {
                    packet_id: sub.packet_id,
                    codes,
                    properties: Properties::default(),
                },
            );
            return;
        }
        for f in sub.filters {
            tracing::debug!(target: log_type::DEBUG, "\t{} (QoS {})", f.filter, f.options.qos as u8);
            if topic::parse_shared(&f.filter).is_some() || f.filter.starts_with("$share/") {
                codes.push(if v5 {
                    ReasonCode::SharedSubscriptionsNotSupported
                } else {
                    ReasonCode::UnspecifiedError
                });
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
            let opts = f.options;
            let session = self.sessions[a.slot as usize]
                .as_mut()
                .expect("checked by caller");
            let existed = session
                .subscriptions
                .insert(f.filter.clone(), opts)
                .is_some();
            self.trie.insert(&f.filter, a.slot, opts);
            tracing::info!(target: log_type::SUBSCRIBE, "{} {} {}", a.client_id, opts.qos as u8, f.filter);
            if !existed {
                self.stats.subscriptions += 1;
                if self.interest.add(&f.filter, self.id) && self.shards > 1 {
                    let from = self.id;
                    let filter = f.filter.clone();
                    self.broadcast(|| Mail::InterestAdd {
                        from,
                        filter: filter.clone(),
                    });
                    let pending = self.interest_pending.entry(f.filter.clone()).or_default();
                    pending.remaining += self.shards - 1;
                }
            }
            // Interest not yet acknowledged everywhere (this subscription's or an earlier one's): the
            // SUBACK waits, so a publish sent after it is received cannot miss this subscriber.
            if let Some(pending) = self.interest_pending.get_mut(&f.filter) {
                pending.waiters.push(token);
                waits += 1;
            }
            let send_retained = match opts.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            if send_retained {
                retained.push((f.filter, opts));
            }
            codes.push(match opts.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
        }
        let suback = SubAck {
            packet_id: sub.packet_id,
            codes,
            properties: Properties::default(),
        };
        if waits == 0 {
            self.complete_subscribe(a.slot, a.generation, suback, retained);
        } else {
            self.pending_subs.insert(
                token,
                PendingSub {
                    waits,
                    suback,
                    retained,
                },
            );
        }
    }

    fn write_suback(&mut self, a: &Attached, suback: SubAck) {
        tracing::debug!(target: log_type::DEBUG, "Sending SUBACK to {}", a.client_id);
        a.outbox
            .write(|out| encode_into(out, &Packet::SubAck(suback), a.protocol));
    }

    /// Send the SUBACK, then the retained messages matching the new subscriptions (retain flag set).
    fn complete_subscribe(
        &mut self,
        slot: u32,
        generation: u32,
        suback: SubAck,
        retained: Vec<(Utf8Bytes, SubscriptionOptions)>,
    ) {
        let limits = self.settings.limits;
        let upgrade_qos = self.settings.upgrade_outgoing_qos;
        let mut found: Vec<(Arc<Message>, SubscriptionOptions)> = Vec::new();
        for (filter, opts) in &retained {
            self.retained
                .for_each_match(filter, |_, m| found.push((m.clone(), *opts)));
        }
        let Some(session) = self.session_mut(slot, generation) else {
            return;
        };
        let Some(conn) = session.conn.clone() else {
            return;
        };
        tracing::debug!(target: log_type::DEBUG, "Sending SUBACK to {}", session.client_id);
        let protocol = session.protocol;
        conn.write(|out| encode_into(out, &Packet::SubAck(suback), protocol));
        let mut sent = 0;
        let mut dropped = 0;
        for (msg, opts) in found {
            if !session.may_read(&msg.topic) {
                continue;
            }
            let local = Rc::new((*msg).clone());
            let qos = delivery_qos(msg.qos, opts.qos, upgrade_qos);
            // Retained messages hold nobody; only `hold` keeps its old room beyond the limits for them.
            let slack = limits.slow_subscriber_policy == SlowSubscriberPolicy::Hold;
            match session.deliver(&local, qos, true, &limits, slack) {
                Delivery::Sent => sent += 1,
                Delivery::Dropped => {
                    dropped += 1;
                    if session.note_dropped() {
                        log_dropping(&session.client_id);
                    }
                }
                Delivery::TooLarge => dropped += 1,
                _ => {}
            }
        }
        self.stats.messages_sent += sent;
        self.stats.messages_dropped += dropped;
    }

    /// Another shard acknowledged interest in `filter`: release the SUBACKs that waited only for that.
    pub(super) fn interest_acked(&mut self, filter: &Utf8Bytes) {
        let Some(pending) = self.interest_pending.get_mut(filter) else {
            return;
        };
        pending.remaining = pending.remaining.saturating_sub(1);
        if pending.remaining > 0 {
            return;
        }
        let PendingInterest { waiters, .. } =
            self.interest_pending.remove(filter).unwrap_or_default();
        for token in waiters {
            let Some(p) = self.pending_subs.get_mut(&token) else {
                continue;
            };
            p.waits -= 1;
            if p.waits == 0 {
                let p = self.pending_subs.remove(&token).expect("just seen");
                self.complete_subscribe(token.slot, token.generation, p.suback, p.retained);
            }
        }
    }

    fn client_unsubscribe(&mut self, a: &Attached, u: Unsubscribe) {
        tracing::debug!(target: log_type::DEBUG, "Received UNSUBSCRIBE from {}", a.client_id);
        let mut codes = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            let session = self.sessions[a.slot as usize]
                .as_mut()
                .expect("checked by caller");
            let existed = session.subscriptions.remove(filter).is_some();
            if existed {
                self.unsubscribe_filter(a.slot, filter);
            }
            tracing::info!(target: log_type::UNSUBSCRIBE, "{} {}", a.client_id, filter);
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        let unsuback = UnsubAck {
            packet_id: u.packet_id,
            codes,
            properties: Properties::default(),
        };
        tracing::debug!(target: log_type::DEBUG, "Sending UNSUBACK to {}", a.client_id);
        a.outbox
            .write(|out| encode_into(out, &Packet::UnsubAck(unsuback), a.protocol));
    }
}

/// What `slow_subscriber_policy` makes of a slow subscriber, one shard at a time and without sockets:
/// sessions attached to a [`Shard`] directly, packets handed to [`Shard::handle_packet`], and the
/// publisher's hold read with [`Shard::is_held`] as its reader would after each packet.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{PubResponse, SubscribeFilter};
    use crate::router::MailboxMatrix;
    use crate::session::HoldStamp;
    use crate::settings::Settings;
    use crate::shard::ConnectionCounts;

    /// The slow subscriber's queue limit and window (small, so the cases stay short).
    const QUEUE: usize = 10;
    const WINDOW: usize = 2;

    struct Fixture {
        shard: Shard,
        /// Kept so the other shard's mailboxes stay open; `other` is shard 1's sending end.
        _matrix: MailboxMatrix,
        other: Option<crate::router::MailSenders>,
    }

    fn fixture(policy: SlowSubscriberPolicy, shards: usize) -> Fixture {
        let mut matrix = MailboxMatrix::new(shards);
        let mut settings = Settings::local(shards);
        settings.limits.max_inflight = WINDOW;
        settings.limits.max_queued_messages = QUEUE;
        settings.limits.slow_subscriber_policy = policy;
        let mut outboxes = std::mem::take(&mut matrix.mail_out).into_iter();
        let own = outboxes.next().expect("shard 0");
        let other = outboxes.next();
        let shard = Shard::new(
            0,
            Arc::new(settings),
            own,
            matrix.inboxes[0].interest(),
            Arc::new(ConnectionCounts::new(1)),
            Instant::now(),
        );
        Fixture {
            shard,
            _matrix: matrix,
            other,
        }
    }

    fn connect(shard: &mut Shard, id: &'static str) -> Attached {
        let connect = Connect {
            protocol: ProtocolVersion::V311,
            clean_start: true,
            keep_alive: 60,
            client_id: Utf8Bytes::from_static(id),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        shard.attach(&connect, Properties::default(), Rc::new(Outbox::new()))
    }

    fn subscribe(shard: &mut Shard, a: &mut Attached, filter: &'static str, qos: QoS) {
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: Utf8Bytes::from_static(filter),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
            properties: Properties::default(),
        };
        shard
            .handle_packet(a, Packet::Subscribe(sub))
            .expect("subscribed");
    }

    fn publish(shard: &mut Shard, p: &mut Attached, n: u16) {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: Utf8Bytes::from_static("data/x"),
            packet_id: n,
            properties: Properties::default(),
            payload: bytes::Bytes::from_static(b"m"),
        };
        shard
            .handle_packet(p, Packet::Publish(publish))
            .expect("published");
    }

    /// Acknowledges everything in `a`'s window (a subscriber that keeps up); returns how many.
    fn ack_all(shard: &mut Shard, a: &mut Attached) -> usize {
        let ids = shard
            .session(a.slot, a.generation)
            .expect("session")
            .inflight_ids();
        for &id in &ids {
            shard
                .handle_packet(a, Packet::PubAck(PubResponse::new(id)))
                .expect("acknowledged");
        }
        ids.len()
    }

    fn pending(shard: &Shard, a: &Attached) -> (usize, usize) {
        shard
            .session(a.slot, a.generation)
            .expect("session")
            .pending_len()
    }

    /// One publisher on `data/x`, a subscriber on `data/#` at `fast_qos` that acknowledges everything
    /// at once, and one on `#` that never does (but counts as making progress: it just connected).
    /// Returns after which publish the publisher was first held, if it was.
    fn slow_beside_fast(
        policy: SlowSubscriberPolicy,
        fast_qos: QoS,
        n: u16,
    ) -> (Fixture, Option<u16>) {
        let mut f = fixture(policy, 1);
        let shard = &mut f.shard;
        let mut fast = connect(shard, "fast");
        let mut slow = connect(shard, "slow");
        let mut publisher = connect(shard, "pub");
        subscribe(shard, &mut fast, "data/#", fast_qos);
        subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
        let mut first_held = None;
        let mut fast_got = 0;
        for i in 1..=n {
            publish(shard, &mut publisher, i);
            fast_got += ack_all(shard, &mut fast);
            if first_held.is_none() && shard.is_held(&publisher) {
                first_held = Some(i);
            }
        }
        if fast_qos != QoS::AtMostOnce {
            assert_eq!(
                fast_got,
                usize::from(n),
                "the fast subscriber got everything"
            );
        }
        let _ = &mut slow;
        (f, first_held)
    }

    #[test]
    fn by_default_a_slow_subscriber_beside_a_fast_one_holds_nobody_and_drops() {
        let n = 30;
        let (f, held) =
            slow_beside_fast(SlowSubscriberPolicy::HoldIfAllBehind, QoS::AtLeastOnce, n);
        assert_eq!(held, None, "the publisher was never held");
        let slow = f.shard.directory[&Utf8Bytes::from_static("slow")];
        let s = f.shard.sessions[slow as usize].as_ref().expect("slow");
        assert_eq!(
            s.pending_len(),
            (WINDOW, QUEUE),
            "exactly the limits, no room beyond them"
        );
        assert_eq!(
            f.shard.stats.messages_dropped,
            u64::from(n) - (WINDOW + QUEUE) as u64,
            "every message not queued for it was dropped and counted"
        );
    }

    #[test]
    fn a_fast_qos0_subscriber_counts_as_keeping_up() {
        let (_, held) =
            slow_beside_fast(SlowSubscriberPolicy::HoldIfAllBehind, QoS::AtMostOnce, 30);
        assert_eq!(held, None);
    }

    #[test]
    fn under_hold_the_slow_subscriber_holds_the_publisher_of_the_fast_one() {
        for fast_qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
            let (_, held) = slow_beside_fast(SlowSubscriberPolicy::Hold, fast_qos, 30);
            // WINDOW sent, then queued until half of QUEUE waits: congested.
            assert_eq!(held, Some((WINDOW + QUEUE / 2) as u16), "{fast_qos:?}");
        }
    }

    #[test]
    fn under_drop_nobody_is_ever_held() {
        let mut f = fixture(SlowSubscriberPolicy::Drop, 1);
        let shard = &mut f.shard;
        let mut slow = connect(shard, "slow");
        let mut publisher = connect(shard, "pub");
        subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
        for i in 1..=30 {
            publish(shard, &mut publisher, i);
            assert!(!shard.is_held(&publisher));
        }
        assert_eq!(pending(shard, &slow), (WINDOW, QUEUE));
        assert_eq!(shard.stats.messages_dropped, 30 - (WINDOW + QUEUE) as u64);
    }

    #[test]
    fn by_default_publishers_whose_only_subscriber_is_behind_are_held_and_lose_nothing() {
        let mut f = fixture(SlowSubscriberPolicy::HoldIfAllBehind, 1);
        let shard = &mut f.shard;
        let mut slow = connect(shard, "slow");
        let mut p1 = connect(shard, "p1");
        let mut p2 = connect(shard, "p2");
        subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
        let mut n = 0;
        while !(shard.is_held(&p1) && shard.is_held(&p2)) {
            n += 1;
            assert!(n < 100, "never held");
            publish(shard, &mut p1, n);
            publish(shard, &mut p2, n);
        }
        assert_eq!(usize::from(n), (WINDOW + QUEUE / 2).div_ceil(2));
        assert!(shard.held_until(&p1).is_some());
        // What a held publisher still slips in (one read per lease) finds room beyond the limit: the
        // queue may reach twice it before anything is dropped.
        for i in 0..QUEUE as u16 {
            publish(shard, &mut p1, 100 + i);
        }
        assert_eq!(shard.stats.messages_dropped, 0);
        assert!(pending(shard, &slow).1 > QUEUE);
        // Draining to a quarter releases both at once.
        while pending(shard, &slow).1 * 4 > QUEUE {
            assert!(shard.is_held(&p1));
            ack_all(shard, &mut slow);
            shard.release_holds(slow.slot, slow.generation, false);
        }
        assert!(!shard.is_held(&p1) && !shard.is_held(&p2));
        assert_eq!(shard.held_until(&p1), None);
    }

    #[test]
    fn across_shards_the_publisher_is_held_only_when_every_reached_shard_agrees() {
        let mut f = fixture(SlowSubscriberPolicy::HoldIfAllBehind, 2);
        let other = f.other.take().expect("shard 1");
        let shard = &mut f.shard;
        let mut slow = connect(shard, "slow");
        let mut publisher = connect(shard, "pub");
        subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
        // Shard 1 has a subscriber to the publisher's topic.
        other.send_interest(
            0,
            Mail::InterestAdd {
                from: 1,
                filter: Utf8Bytes::from_static("data/#"),
            },
        );
        let p = publisher.slot;
        let mut n = 0;
        let mut publish_more = |shard: &mut Shard, count: u16| {
            for _ in 0..count {
                n += 1;
                publish(shard, &mut publisher, n);
            }
        };
        // Until shard 1 says where it stands, the congested subscriber here holds the publisher (for
        // its part: shard 1 did not agree, so it is not held) and may queue beyond its limit.
        publish_more(shard, 30);
        assert!(!shard.is_held(&publisher_of(shard, p)));
        assert_eq!(pending(shard, &slow), (WINDOW, 2 * QUEUE));
        assert_eq!(
            shard.stats.messages_dropped,
            30 - (WINDOW + 2 * QUEUE) as u64
        );
        // Shard 1's subscriber keeps up (shard 1 was asked: the publishes say a shard holds): from then
        // on the subscriber here gets exactly its limits.
        shard.handle_mail(Mail::Object { slot: p, from: 1 });
        publish_more(shard, 10);
        assert_eq!(pending(shard, &slow), (WINDOW, 2 * QUEUE));
        assert_eq!(
            shard.stats.messages_dropped,
            40 - (WINDOW + 2 * QUEUE) as u64
        );
        assert!(!shard.is_held(&publisher_of(shard, p)));
        // Shard 1's subscribers fall behind too (nobody there keeps up): now it is held...
        shard.handle_mail(Mail::Hold {
            slot: p,
            from: 1,
            signal: HoldSignal::Consent,
        });
        assert!(shard.is_held(&publisher_of(shard, p)));
        // ...until one of them keeps up again.
        shard.handle_mail(Mail::Object { slot: p, from: 1 });
        assert!(!shard.is_held(&publisher_of(shard, p)));
        // A subscriber there holds it; its release ends shard 1's agreement.
        shard.handle_mail(Mail::Hold {
            slot: p,
            from: 1,
            signal: HoldSignal::Hold,
        });
        assert!(shard.is_held(&publisher_of(shard, p)));
        shard.handle_mail(Mail::Release { slot: p, from: 1 });
        assert!(!shard.is_held(&publisher_of(shard, p)));
        // When the subscriber here catches up instead, the same.
        shard.handle_mail(Mail::Hold {
            slot: p,
            from: 1,
            signal: HoldSignal::Hold,
        });
        assert!(shard.is_held(&publisher_of(shard, p)));
        while pending(shard, &slow).1 * 4 > QUEUE {
            ack_all(shard, &mut slow);
        }
        shard.release_holds(slow.slot, slow.generation, false);
        assert!(!shard.is_held(&publisher_of(shard, p)));
    }

    /// The publisher's attachment, looked up again (the closure above holds the original).
    fn publisher_of(shard: &Shard, slot: u32) -> Attached {
        let s = shard.sessions[slot as usize].as_ref().expect("publisher");
        Attached {
            slot,
            generation: s.generation,
            protocol: s.protocol,
            client_id: s.client_id.clone(),
            outbox: s.conn.clone().expect("connected"),
            will_on_disconnect: false,
        }
    }

    /// The hold mail sent to shard `to` so far, as (publisher slot, what), in order.
    fn stances_sent(matrix: &MailboxMatrix, to: usize) -> Vec<(u32, &'static str)> {
        let mut batch = Vec::new();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = matrix.inboxes[to].poll_recv(&mut cx, &mut batch);
        batch
            .into_iter()
            .filter_map(|m| match m {
                Mail::Hold {
                    slot,
                    from: 0,
                    signal,
                } => Some((
                    slot,
                    match signal {
                        HoldSignal::Hold => "hold",
                        HoldSignal::Renew => "renew",
                        HoldSignal::Consent => "consent",
                    },
                )),
                Mail::Release { slot, from: 0 } => Some((slot, "release")),
                Mail::Object { slot, from: 0 } => Some((slot, "object")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_shard_tells_where_it_stands_only_while_the_publisher_is_held_somewhere() {
        let mut f = fixture(SlowSubscriberPolicy::HoldIfAllBehind, 2);
        let mut sub = connect(&mut f.shard, "sub");
        subscribe(&mut f.shard, &mut sub, "#", QoS::AtLeastOnce);
        // A publisher on shard 1, slot 7.
        let message = |pending: bool| {
            Arc::new(Message {
                topic: Utf8Bytes::from_static("data/x"),
                payload: bytes::Bytes::from_static(b"m"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties::default(),
                origin: Some((1, 7)),
                hold_stamp: HoldStamp {
                    pending,
                    objecting: 0,
                },
            })
        };
        let _ = stances_sent(&f._matrix, 1);
        // Nobody holds the publisher: nothing to say.
        f.shard.handle_mail(Mail::Publish(message(false)));
        assert_eq!(pending(&f.shard, &sub), (1, 0));
        assert_eq!(stances_sent(&f._matrix, 1), vec![]);
        // Some shard holds it, and the subscriber here keeps up (its window has room): shard 0 objects.
        f.shard.handle_mail(Mail::Publish(message(true)));
        assert_eq!(pending(&f.shard, &sub), (2, 0));
        assert_eq!(stances_sent(&f._matrix, 1), vec![(7, "object")]);
        // Its window is full now: it is behind, nobody else here keeps up, so shard 0 agrees at once (a
        // changed stance is told at once), then not again within half a lease.
        f.shard.handle_mail(Mail::Publish(message(true)));
        f.shard.handle_mail(Mail::Publish(message(true)));
        assert_eq!(pending(&f.shard, &sub), (2, 2));
        assert_eq!(stances_sent(&f._matrix, 1), vec![(7, "consent")]);
        // Congested (half its queue): it holds the publisher itself, which says the same.
        for _ in 0..3 {
            f.shard.handle_mail(Mail::Publish(message(true)));
        }
        assert_eq!(pending(&f.shard, &sub), (2, QUEUE / 2));
        assert_eq!(stances_sent(&f._matrix, 1), vec![(7, "hold")]);
        // Caught up (it acknowledged everything): it lets go, and objects to the next message.
        while pending(&f.shard, &sub) != (0, 0) {
            ack_all(&mut f.shard, &mut sub);
        }
        f.shard.release_holds(sub.slot, sub.generation, false);
        f.shard.handle_mail(Mail::Publish(message(true)));
        assert_eq!(
            stances_sent(&f._matrix, 1),
            vec![(7, "release"), (7, "object")]
        );
        // Under the other policies nothing of this is said.
        for policy in [SlowSubscriberPolicy::Hold, SlowSubscriberPolicy::Drop] {
            let mut f = fixture(policy, 2);
            let mut sub = connect(&mut f.shard, "sub");
            subscribe(&mut f.shard, &mut sub, "#", QoS::AtLeastOnce);
            let _ = stances_sent(&f._matrix, 1);
            for _ in 0..4 {
                f.shard.handle_mail(Mail::Publish(message(true)));
            }
            assert_eq!(stances_sent(&f._matrix, 1), vec![], "{policy:?}");
        }
    }

    /// An in-memory log destination.
    #[derive(Clone, Default)]
    struct Memory(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Memory {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Memory {
        type Writer = Memory;
        fn make_writer(&'a self) -> Memory {
            self.clone()
        }
    }

    #[test]
    fn a_drop_episode_is_logged_once_in_mosquittos_words() {
        use tracing_subscriber::layer::SubscriberExt;
        let mem = Memory::default();
        let layer = crate::logging::layer(&crate::config::Config::default(), mem.clone())
            .expect("log layer");
        let subscriber = tracing_subscriber::registry().with(layer);
        let line = "Outgoing messages are being dropped for client slow.";
        let lines = || {
            let text = String::from_utf8(mem.0.lock().unwrap().clone()).unwrap();
            text.lines().filter(|l| l.ends_with(line)).count()
        };
        tracing::subscriber::with_default(subscriber, || {
            // Under `drop` (the line is the same under any policy): the window, then the queue to
            // exactly its limit, then every message is dropped; logged once.
            let mut f = fixture(SlowSubscriberPolicy::Drop, 1);
            let shard = &mut f.shard;
            let mut slow = connect(shard, "slow");
            let mut publisher = connect(shard, "pub");
            subscribe(shard, &mut slow, "#", QoS::AtLeastOnce);
            for i in 1..=30 {
                publish(shard, &mut publisher, i);
            }
            assert_eq!(shard.stats.messages_dropped, 30 - (WINDOW + QUEUE) as u64);
            assert_eq!(lines(), 1, "one line for the episode");
            // Acknowledging the window frees two places: the queue is full again at once, same
            // episode.
            ack_all(shard, &mut slow);
            publish(shard, &mut publisher, 31);
            publish(shard, &mut publisher, 32);
            publish(shard, &mut publisher, 33);
            assert_eq!(lines(), 1);
            // Drained to a quarter: the next drop starts a new episode.
            while pending(shard, &slow).1 * 4 > QUEUE {
                ack_all(shard, &mut slow);
            }
            for i in 34..50 {
                publish(shard, &mut publisher, i);
            }
            assert_eq!(lines(), 2);
        });
    }
}
