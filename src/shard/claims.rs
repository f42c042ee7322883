//! Cluster mode: one session per client id across the nodes (docs/CLUSTER.md, "Sessions across
//! nodes"). The shard's side of it; the link does the NATS part (`cluster::sessions`).
//!
//! - A CONNECT about to be attached here first asks the link to claim its client id
//!   ([`Shard::claim`], `Mail::Claim`), and the connection task waits for the answer
//!   (`Mail::Claimed`, [`Shard::claimed`]): the session the client had on another node, which is
//!   installed here before the attach resumes it (session present), or nothing.
//! - The node that had the client gets `Mail::Evict` ([`Shard::evict`]): its connection is closed
//!   as in a takeover on one broker (v5: DISCONNECT 0x8E), and the session leaves this node: written
//!   whole ([`super::journal::write_session`], the snapshot format of `persist::image`) for the new
//!   node unless the new connection starts clean, then ended here without its will, which moved
//!   with it.
//!
//! - The link keeps, for each persistent session here, what another node needs to resume it if this
//!   node dies ([`Shard::tell_state`], `Mail::State`, `cluster::state`): told at connect, SUBSCRIBE,
//!   UNSUBSCRIBE, a DISCONNECT changing the expiry, a restart, and the session's end. A dead node's
//!   session comes to this node as `Mail::Adopt` ([`Shard::adopt`]).
//!
//! Who calls what: `connection.rs` claims; `executor.rs` hands the link's mail here.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;
use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::moves::Followed;
use super::packets::{delivery_qos, tally};
use super::Shard;
use crate::codec::{Connect, SubscriptionOptions, Utf8Bytes};
use crate::logging::log_type;
use crate::message::Message;
use crate::persist::image::{ShardImage, SnapshotWriter};
use crate::persist::record;
use crate::router::{Lately, Mail};
use crate::session::Framed;
use crate::topic;

/// The CONNECTs waiting for the link's answer, by ticket.
#[derive(Default)]
pub(super) struct Claims {
    next: u64,
    waiting: AHashMap<u64, oneshot::Sender<()>>,
}

impl Shard {
    /// In cluster mode, asks the link to claim `connect`'s client id; the connection attaches once
    /// the receiver is ready (or dropped). None when there is no cluster.
    pub(super) fn claim(&mut self, connect: &Connect) -> Option<oneshot::Receiver<()>> {
        let link = self.link?;
        let (tx, rx) = oneshot::channel();
        self.claims.next += 1;
        let ticket = self.claims.next;
        self.claims.waiting.insert(ticket, tx);
        let from = self.id;
        self.mail.send(
            link,
            Mail::Claim {
                from,
                ticket,
                client_id: connect.client_id.clone(),
                clean_start: connect.clean_start,
            },
        );
        Some(rx)
    }

    /// The link's answer to a claim: install the session that moved here, then let the connection
    /// attach.
    pub(super) fn claimed(&mut self, ticket: u64, session: Option<Bytes>, lately: Option<&Lately>) {
        if let Some(bytes) = session {
            self.import_session(&bytes, lately);
        }
        if let Some(tx) = self.claims.waiting.remove(&ticket) {
            let _ = tx.send(());
        }
    }

    /// Client `client_id` connected on another node: close it here, and end its session here (sent
    /// to the link first when `keep`).
    pub(super) fn evict(&mut self, ticket: u64, client_id: &Utf8Bytes, keep: bool) {
        let (mut session, mut lately) = (None, Lately::default());
        if let Some(slot) = self.sessions.slot_of(client_id) {
            self.close_for_takeover(slot);
            let stub = self.moves.is_stub(slot);
            if keep && !stub {
                // Copies still waiting for their twins (it came here lately) go with it.
                self.give_waiting(slot);
            }
            match self.sessions.at_mut(slot) {
                // A stub's session went already.
                Some(s) if keep && !s.clean && !stub => {
                    let mut w = SnapshotWriter::new(self.id, self.shards as u16);
                    super::journal::write_session(&mut w, s, true);
                    session = Some(w.finish().freeze());
                    let mut seen = self.moves.seen_by(slot, s);
                    // And what it was given here within the lookback's window: a twin of one of
                    // those sent to the new node directly may come there after the session (a QoS
                    // 1 message given twice without DUP under heavy churn, 2 of ~10 runs).
                    self.lookback.ids_matching(&s.subscriptions, &mut seen);
                    // Its young subscriptions are not for a message received before their
                    // SUBSCRIBE that reaches the new node late (tests/31_cluster_model.rs, seed
                    // 1796670826555557946, 500 steps, 64 shards: 1 run in 4).
                    lately = Lately {
                        seen,
                        subscribed: self.lookback.subscribed_of(slot),
                    };
                    // Its will, delayed or not, went with it.
                    s.will = None;
                    self.leave_stub(slot);
                }
                Some(_) => self.remove_session(slot),
                None => {}
            }
            tracing::info!(target: log_type::NOTICE,
                "Client {client_id} connected on another node{}.",
                if session.is_some() { "; its session moves there" } else { "" });
        }
        if let Some(link) = self.link {
            self.mail.send(
                link,
                Mail::Evicted {
                    ticket,
                    session,
                    lately,
                },
            );
        }
    }

    /// Cluster mode: tell the link the session in `slot` as another node would resume it if this
    /// node died now: its settings and subscriptions, without its will (the cluster keeps that
    /// apart, `tell_will`) or messages (in flight, they would come twice); nothing for a session
    /// that ends with its connection.
    pub(super) fn tell_state(&mut self, slot: u32) {
        let Some(link) = self.link else { return };
        let Some(s) = self.sessions.at(slot) else {
            return;
        };
        let image = (!s.clean).then(|| {
            let mut w = SnapshotWriter::new(self.id, self.shards as u16);
            let mut settings = super::journal::session_record(s);
            if let record::Record::Session { will, .. } = &mut settings {
                *will = None;
            }
            w.session(
                &settings,
                s.subscriptions.iter().map(|(f, o)| (f.clone(), *o)),
            );
            w.finish().freeze()
        });
        let client_id = s.client_id.clone();
        self.mail.send(link, Mail::State { client_id, image });
    }

    /// Cluster mode: the session in `slot` ends for good here (not moved, not taken over): the
    /// link releases its client id in the cluster. Called before the session is removed.
    pub(super) fn release_client_id(&mut self, slot: u32) {
        let Some(link) = self.link else { return };
        if let Some(s) = self.sessions.at(slot) {
            let client_id = s.client_id.clone();
            self.mail.send(link, Mail::Unclaim { client_id });
        }
    }

    /// A dead node's session, adopted by this node (`cluster::state`): installed as a session whose
    /// client is away, until it comes back here or on another node (which claims it from here).
    pub(super) fn adopt(&mut self, bytes: &[u8]) {
        self.import_session(bytes, None);
    }

    /// A message the queue of a dead node held for its subscriptions (`cluster::state`): to each of
    /// `clients` here (sessions this node adopted from it) with a subscription it matches, as that
    /// node would have delivered it: at the highest QoS of those subscriptions, with all their
    /// identifiers.
    pub(super) fn deliver_owed(&mut self, clients: &[Utf8Bytes], msg: &Arc<Message>) {
        let now = Instant::now();
        for id in clients {
            let Some(slot) = self.sessions.slot_of(id) else {
                continue;
            };
            if self.moves.is_stub(slot) {
                // It moved on meanwhile: after it.
                self.follow_stub(slot, msg, true);
                continue;
            }
            if self.moves.followed(slot, msg) == Followed::Drop {
                continue;
            }
            self.give_owed(slot, msg, now);
            // Copies sent directly that waited behind it for their twins, which came.
            let next = self.moves.twinned_front(slot);
            if !next.is_empty() {
                self.give_late(slot, next);
            }
        }
    }

    /// Gives `msg`, passed on or owed, to the session in `slot` by its subscriptions that match.
    pub(super) fn give_owed(&mut self, slot: u32, msg: &Arc<Message>, now: Instant) {
        let limits = self.settings.limits;
        let upgrade = self.settings.upgrade_outgoing_qos;
        let Some(session) = self.sessions.at_mut(slot) else {
            return;
        };
        // Subscriptions made after the message was received (it was on its way meanwhile)
        // are not for it, as on one broker (`lookback`).
        let younger = self.lookback.subscribed_after(slot, msg);
        let mut best: Option<SubscriptionOptions> = None;
        let mut ids: SmallVec<[u32; 2]> = SmallVec::new();
        for (filter, o) in &session.subscriptions {
            if filter.starts_with(topic::SHARED_PREFIX)
                || !topic::matches(filter, &msg.topic)
                || younger.contains(&filter)
            {
                continue;
            }
            // Its own message, published here and waiting for its twin (`moves`).
            if o.no_local && msg.origin == Some((self.id, slot)) {
                continue;
            }
            if o.identifier != 0 {
                ids.push(o.identifier);
            }
            if best.map_or(true, |b| o.qos as u8 > b.qos as u8) {
                best = Some(*o);
            }
        }
        let Some(opts) = best else { return };
        if !session.may_read(&msg.topic) {
            return;
        }
        let qos = delivery_qos(msg.qos, opts.qos, upgrade);
        // A QoS 0 copy older than the client's connection (it waited in line, or was passed on,
        // while the client came back): not for it (`Session::missed`).
        if session.missed(msg, qos, &limits) {
            return;
        }
        let retain = opts.retain_as_published && msg.retain;
        let local = Rc::new(Framed::new(msg.clone(), false));
        let delivery =
            session.deliver(&local, qos, retain, &ids, &limits, false, &mut self.journal);
        tally(&mut self.stats, session, delivery, qos, &limits, now);
    }

    /// A session written by [`Shard::evict`] on another node, or kept by a dead one: installed
    /// here as a session whose client is away, which the waiting CONNECT resumes. `seen`, when a
    /// live node sent it: the ids of what it was given lately there, not to be given again here
    /// (`moves`).
    fn import_session(&mut self, bytes: &[u8], lately: Option<&Lately>) {
        let mut image = ShardImage::default();
        let scan = record::scan(bytes, |r| image.apply(r));
        image.finish();
        if scan.tail != record::Tail::Clean {
            tracing::warn!(target: log_type::WARNING,
                "Warning: a session from another node was damaged ({:?}); what was readable is kept.",
                scan.tail);
        }
        for (_, image) in image.sessions {
            if let Some(slot) = self.sessions.slot_of(&image.client_id) {
                // A session here too (the client was on both nodes' books): the moved one wins.
                self.close_for_takeover(slot);
                self.remove_session(slot);
            }
            let (mut s, will, subscriptions) = self.session_of_image(image);
            // Its copies were numbered by the other node's snapshot, not by a log here: a copy
            // queued here later, unnumbered, would get the same number in the next snapshot
            // (`journal::write_session`) and stand for another message.
            s.forget_message_ids();
            s.away_since = super::expiry::unix_now();
            s.will = will;
            let slot = self.sessions.insert(s);
            let generation = self.sessions.next_generation(slot);
            let s = self.sessions.at_mut(slot).expect("just inserted");
            s.generation = generation;
            s.subscriptions = subscriptions.clone();
            for (filter, options) in &subscriptions {
                self.stats.subscriptions += 1;
                match crate::topic::parse_shared(filter) {
                    Some((_, inner)) => {
                        let state = self
                            .sessions
                            .at_mut(slot)
                            .expect("just inserted")
                            .shared
                            .get_or_insert_with(Default::default)
                            .clone();
                        let inner = Utf8Bytes::from(inner.to_owned());
                        self.join_group(slot, filter.clone(), inner, state, 0);
                    }
                    None => {
                        self.subs.insert(filter, slot, *options);
                        if self.subs.add_interest(filter) {
                            let (from, filter) = (self.id, filter.clone());
                            self.mail.tell_interest(|| Mail::InterestAdd {
                                from,
                                filter: filter.clone(),
                                since: 0,
                            });
                        }
                    }
                }
            }
            // What other nodes send it may come twice for a while (`moves`).
            self.arrived(slot, lately.map(|l| &l.seen[..]));
            for (filter, since) in lately.map_or(&[][..], |l| &l.subscribed[..]) {
                self.lookback.subscribed(slot, filter, *since);
            }
            // Away until the waiting CONNECT attaches; if it never does (it failed meanwhile),
            // the session expires here as any other.
            self.schedule_expiry(slot, generation, Duration::ZERO);
            // Now this node's to keep for the cluster.
            self.tell_state(slot);
        }
    }
}

#[cfg(test)]
mod tests;
