//! CONNECT and the life of a session: attach (new, resumed, or taken over from another connection),
//! detach (the will, then the end of a clean session or its expiry deadline), removal.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::encode_into;
use crate::codec::{
    self, ConnAck, Connect, Disconnect, LastWill, Packet, Properties, ProtocolVersion, ReasonCode,
};
use crate::logging::log_type;
use crate::message::Message;
use crate::session::alias::OutboundAliases;
use crate::session::{CloseReason, Login, Outbox, Session};
use crate::shard::attached::Attached;
use crate::shard::expiry::expiry_after;
use crate::shard::Shard;

/// The message a will becomes when published: will properties that describe the message are kept,
/// the will delay (about the will, not the message) is not.
pub(in crate::shard) fn will_message(will: Box<LastWill>) -> Message {
    let will = *will;
    let mut properties = will.properties;
    properties.will_delay_interval = None;
    Message::new(
        will.topic,
        will.payload,
        will.qos,
        will.retain,
        properties,
        None,
    )
}

impl Shard {
    /// Attach a connection whose CONNECT was accepted to its session (new, resumed or taken over), queue
    /// the CONNACK and then whatever the session still owes the client.
    pub(crate) fn attach(
        &mut self,
        connect: &Connect,
        connack_properties: Properties,
        outbox: Rc<Outbox>,
        listener: usize,
    ) -> Attached {
        let persistent = match connect.protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0) > 0,
            _ => !connect.clean_start,
        };
        let mut resumed = None;
        if let Some(slot) = self
            .sessions
            .slot_of(&connect.client_id)
            .filter(|&slot| self.moves.is_stub(slot))
        {
            // The stub of a session that moved to another node: not this node's any more.
            self.remove_session(slot);
        }
        if let Some(slot) = self.sessions.slot_of(&connect.client_id) {
            self.close_for_takeover(slot);
            if self.sessions.contains(&connect.client_id) {
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
            None => self.sessions.insert(Session::new(
                connect.client_id.clone(),
                connect.protocol,
                !persistent,
                0,
            )),
        };
        let generation = self.sessions.next_generation(slot);
        let limits = self.settings.limits;
        let mount_len = self.mount_len(listener);
        let session = self.sessions.at_mut(slot).expect("slot just filled");
        session.generation = generation;
        session.protocol = connect.protocol;
        session.clean = !persistent;
        let durable = persistent && self.journal.is_on();
        if session.durable && !durable {
            // v5: resumed with a Session Expiry Interval of 0: it ends with this connection now.
            session.stop_keeping();
            self.journal.session_gone(&session.client_id);
        }
        session.durable = durable;
        session.expiry_interval = match connect.protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            _ if persistent => u32::MAX,
            _ => 0,
        };
        // A will left waiting by the last connection is not sent now that one came [MQTT-3.1.3-9].
        session.will = connect.will.clone();
        session.away_since = 0;
        session.listener = u16::try_from(listener).unwrap_or(u16::MAX);
        session.mount_len = mount_len;
        session.receive_maximum = connect.properties.receive_maximum.unwrap_or(0);
        session.maximum_packet_size = connect
            .properties
            .maximum_packet_size
            .filter(|_| connect.protocol == ProtocolVersion::V5)
            .unwrap_or(0);
        // Topic aliases towards the client are per connection [MQTT-3.3.2-7]: a fresh table, before
        // anything (re-sent messages included) goes out on this one.
        session.aliases = connect
            .properties
            .topic_alias_maximum
            .filter(|&m| m > 0 && connect.protocol == ProtocolVersion::V5)
            .map(|m| Box::new(OutboundAliases::new(m)));
        if !session_present {
            session.inbound_qos2.clear();
        }
        // Resumed: the QoS 2 PUBLISHes whose PUBREL has not come stay known (session state, as in
        // Mosquitto): a repeat of one after the reconnect is acknowledged, not delivered again.
        // (A zero-length username arrives as None: `connection::read_connect`.)
        let username = connect.username.as_ref();
        session.login = username.map(|username| {
            Box::new(Login {
                username: username.clone(),
                password: connect.password.clone(),
                // Set by `connection::read_connect` only once the method accepted the client.
                method: connect.properties.authentication_method.clone(),
            })
        });
        session.acl = self
            .security
            .scope(listener)
            .client_acl(connect.client_id.as_str(), username.map(|u| u.as_str()));
        if session_present {
            // The client may have come back under another username.
            session.drop_unreadable(&mut self.journal);
        }
        self.journal.session(session);
        let connack = Packet::ConnAck(ConnAck {
            session_present,
            code: ReasonCode::Success,
            properties: connack_properties,
        });
        let max = session.max_packet_size();
        outbox.write(|out| encode_into(out, connack, connect.protocol, max));
        let sent = session.resume(outbox.clone(), &limits, &mut self.journal);
        self.stats.messages_sent += sent as u64;
        self.stats.messages_expired += session.take_expired();
        self.stats.messages_dropped += session.take_too_large();
        self.member_presence(slot, true, false);
        // This connection's will (or none) replaces the one the cluster kept for the session.
        self.tell_will(slot);
        self.tell_state(slot);
        self.stats.clients_connected += 1;
        self.stats.connections_total += 1;
        Attached {
            slot,
            generation,
            protocol: connect.protocol,
            client_id: connect.client_id.clone(),
            outbox,
            will_on_disconnect: false,
            listener: u16::try_from(listener).unwrap_or(u16::MAX),
            reauth: None,
            aliases: Default::default(),
            read_at: 0,
        }
    }

    /// Session takeover [MQTT-3.1.4-2]: a new connection (here, or on another node of a cluster)
    /// takes the session in `slot`. Close its connection (v5: DISCONNECT 0x8E, Session taken over);
    /// its will goes out as for any close without DISCONNECT (a delayed one waits on the session);
    /// a clean session ends.
    pub(in crate::shard) fn close_for_takeover(&mut self, slot: u32) {
        let Some(session) = self.sessions.at_mut(slot) else {
            return;
        };
        let Some(old) = session.conn.take() else {
            return;
        };
        tracing::info!(target: log_type::NOTICE,
            "Client {} already connected, closing old connection.", session.client_id);
        if session.protocol == ProtocolVersion::V5 {
            old.write(|out| {
                codec::encode_disconnect(ReasonCode::SessionTakenOver, ProtocolVersion::V5, out)
            });
        }
        old.close(CloseReason::Takeover);
        self.stats.clients_connected -= 1;
        let will = session.will.take().filter(|w| session.may_write(&w.topic));
        let (was_clean, generation) = (session.clean, session.generation);
        if let Some(will) = will {
            // A delayed will waits on the session: the new connection resumes it (no will)
            // or starts clean (the session ends: `remove_session` sends it).
            self.leave_will(slot, generation, will, Duration::ZERO);
        }
        if was_clean {
            self.remove_session(slot);
        } else {
            self.tell_will(slot);
        }
        // Retained copies the old connection still waited for: the session's now.
        self.flush_feed(&old);
    }

    /// The connection of `a` ended for `reason`: publish its will unless it disconnected normally, and
    /// end the session if it was not persistent. A connection already taken over does nothing here.
    pub(crate) fn detach(&mut self, a: &Attached, reason: CloseReason) {
        let Some(session) = self.sessions.get_mut(a.slot, a.generation) else {
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
        if clean {
            drop(self.feeds.take(&a.outbox));
        } else {
            self.flush_feed(&a.outbox);
        }
        self.stats.clients_connected -= 1;
        let publish_will = match reason {
            CloseReason::ClientDisconnect => a.will_on_disconnect,
            // Mosquitto drops the will of a client it disconnects as no longer authorised.
            CloseReason::NotAuthorised => false,
            // Shutdown is the broker's own doing; Mosquitto publishes wills then too.
            _ => true,
        };
        if let (true, Some(will)) = (publish_will, will) {
            self.leave_will(a.slot, a.generation, will, Duration::ZERO);
        }
        if clean {
            self.release_client_id(a.slot);
            self.remove_session(a.slot);
        } else {
            self.member_presence(a.slot, false, false);
            // Recorded with the will left waiting, if any (not sent again after a restart otherwise).
            self.mark_away(a.slot);
            self.schedule_expiry(a.slot, a.generation, Duration::ZERO);
            // Sent or dropped, or left waiting out its delay (then still the cluster's to keep).
            self.tell_will(a.slot);
        }
    }

    /// A DISCONNECT: `Err` with the reason the connection ends for (a v5 client may ask for its will,
    /// or change its session expiry within what [MQTT-3.14.2-2] allows).
    pub(super) fn client_disconnect(
        &mut self,
        a: &mut Attached,
        d: Disconnect,
    ) -> Result<(), CloseReason> {
        tracing::debug!(target: log_type::DEBUG, "Received DISCONNECT from {}", a.client_id);
        if a.protocol == ProtocolVersion::V5 {
            if d.reason == ReasonCode::DisconnectWithWillMessage {
                a.will_on_disconnect = true;
            }
            // [MQTT-3.14.2-2]: a session expiry of 0 at CONNECT cannot become non-zero now.
            if let Some(expiry) = d.properties.session_expiry_interval {
                let s = self
                    .sessions
                    .get_mut(a.slot, a.generation)
                    .expect("checked by caller");
                if s.clean && expiry > 0 {
                    return Err(CloseReason::ProtocolError(ReasonCode::ProtocolError));
                }
                if expiry == 0 {
                    s.clean = true;
                }
                s.expiry_interval = expiry;
                if !s.clean {
                    self.journal.session(s);
                }
                self.tell_state(a.slot);
            }
        }
        Err(CloseReason::ClientDisconnect)
    }

    /// End a session: its subscriptions leave the trie (and the interest map, telling the other shards when
    /// this shard loses its last subscription to a filter), its id leaves the directory.
    pub(in crate::shard) fn remove_session(&mut self, slot: u32) {
        // What it had not acknowledged for shared subscriptions goes to other members.
        self.member_presence(slot, false, true);
        self.moves.forget(slot);
        let Some(mut session) = self.sessions.take(slot) else {
            return;
        };
        if session.durable {
            self.journal.session_gone(&session.client_id);
        }
        self.send_releases(session.holding.take());
        for filter in session.subscriptions.keys() {
            self.unsubscribe_filter(slot, filter);
        }
        self.sessions.free(slot);
        // The session ends: a will still waiting out its delay goes now [MQTT-3.1.3-9]. (A client
        // away with a will is always one waiting: `detach` takes every other.)
        if !session.is_connected() {
            if let Some(will) = session.will.take() {
                self.route(will_message(will));
            }
        }
        if let Some(link) = self.link {
            self.mail
                .send(link, super::super::will::will_mail(&session));
            let client_id = session.client_id.clone();
            self.mail.send(
                link,
                crate::router::Mail::State {
                    client_id,
                    image: None,
                },
            );
        }
    }

    /// The session in `slot` (at `generation`) was left by its client `waited` ago (not zero only at a
    /// restart): note when it expires.
    pub(in crate::shard) fn schedule_expiry(
        &mut self,
        slot: u32,
        generation: u32,
        waited: Duration,
    ) {
        let Some(session) = self.sessions.at(slot) else {
            return;
        };
        if let Some(after) = expiry_after(
            session.expiry_interval,
            self.settings.persistent_client_expiration,
        ) {
            let left = after.saturating_sub(waited);
            self.expiries.push(Instant::now() + left, slot, generation);
        }
    }

    /// On the tick: end the sessions whose deadline passed and whose client has not come back.
    pub(in crate::shard) fn expire_sessions(&mut self, now: Instant) {
        while let Some((slot, generation)) = self.expiries.pop_due(now) {
            let Some(session) = self.sessions.at(slot) else {
                continue;
            };
            if session.generation != generation || session.is_connected() {
                continue;
            }
            tracing::info!(target: log_type::NOTICE,
                "Expiring client {} due to timeout.", session.client_id);
            self.release_client_id(slot);
            self.remove_session(slot);
        }
    }
}
