//! Shared subscriptions on a shard: joining and leaving groups (every shard keeps the broker's
//! membership, `index::shared`), picking one member per matching group when this shard routes a
//! message, delivering to a member here, and giving a message back to its group when its member is
//! gone or went away without acknowledging it.
//!
//! - A member subscribes on its own shard: the session keeps `$share/{group}/{filter}` among its
//!   subscriptions (so UNSUBSCRIBE, persistence and a repeated SUBSCRIBE treat it like any other), this
//!   shard's copy of the groups gains the member, and `Mail::ShareJoin` tells the others (urgent
//!   mail, as interest changes: a publish another shard routes after that sees the member). The
//!   SUBACK waits for every shard's acknowledgement, as for new interest. No retained messages are
//!   sent for a shared subscription [MQTT-4.8.2].
//! - Routing (on the publisher's shard, [`Shard::route`]): one member per matching group, chosen by
//!   the group's strategy among its online members (all of them when none is online: a persistent
//!   member queues it), and sent straight to its shard (`Mail::Shared`), which the journal counts as
//!   it counts `Mail::Publish`, so a durable publisher's acknowledgement waits for the member's log too.
//! - The member's shard delivers at min(publish QoS, its subscription's QoS), with its own options.
//!   A member whose session left the group meanwhile passes the message on to another member.
//! - A member that goes away gives back the QoS 1/2 messages it has not acknowledged (queued, or in
//!   flight without PUBREC): to another online member when there is one (a persistent member keeps
//!   them otherwise), and always when its session ends. MQTT 5.0 section 4.8.2 allows this ("MAY
//!   attempt to send the message to another Client as soon as it loses its connection"); Mosquitto
//!   keeps them with the member (its issue 2662). A QoS 1 message in flight may so reach two members;
//!   a QoS 2 message is given back only before its PUBREC.
//!
//! A member that falls behind holds the publishers feeding it (`session::hold`) unless the policy is
//! `drop`, whatever the other members do: taking turns, they are as loaded (`least_inflight` steers
//! around a slow one instead).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::packets::{delivery_qos, tally};
use super::Shard;
use crate::codec::{SubscriptionOptions, Utf8Bytes};
use crate::index::{Member, MemberState};
use crate::logging::log_type;
use crate::message::Message;
use crate::router::Mail;
use crate::session::{Delivery, Framed, SlowSubscriberPolicy};
use crate::shard::subscriptions::SubToken;

/// How many times a message may be passed on by members that left their group meanwhile.
const MAX_HOPS: u8 = 4;

/// The hasher `hash` strategy keys are made with: fixed seeds, so that every shard agrees.
fn key_of(bytes: &[u8]) -> u64 {
    ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(bytes)
}

impl Shard {
    /// SUBSCRIBE to the shared subscription `full` (`$share/{group}/{filter}`, mount point applied to
    /// `filter`) for the session in `token.slot`. Returns whether its SUBACK waits for other shards.
    /// `since`: when the kernel received the SUBSCRIBE (`lookback`).
    pub(super) fn subscribe_shared(
        &mut self,
        token: SubToken,
        full: Utf8Bytes,
        filter: Utf8Bytes,
        opts: SubscriptionOptions,
        since: u64,
    ) -> bool {
        let Some(session) = self.sessions.at_mut(token.slot) else {
            return false;
        };
        let existed = session.subscriptions.insert(full.clone(), opts).is_some();
        self.journal.subscribe(session, &full, opts);
        if !existed {
            let online = session.is_connected();
            let state = session
                .shared
                .get_or_insert_with(|| {
                    let s = Arc::new(MemberState::default());
                    s.set_online(online);
                    s
                })
                .clone();
            self.stats.subscriptions += 1;
            self.join_group(token.slot, full.clone(), filter, state, since);
        }
        self.subs.wait_for_interest(&full, token)
    }

    /// The session in `slot` joins group `full` here and, by mail, everywhere. From a SUBSCRIBE the
    /// kernel received at `since` (not 0): SUBACKs on `full` wait for the other shards (and the
    /// cluster link: the other nodes) to have it,
    /// and a group it starts gets what was routed since (`replay_shared`). 0: restored at start-up.
    pub(super) fn join_group(
        &mut self,
        slot: u32,
        full: Utf8Bytes,
        filter: Utf8Bytes,
        state: Arc<MemberState>,
        since: u64,
    ) {
        let group = crate::topic::parse_shared(&full).map_or("", |(g, _)| g);
        let strategy = self.settings.shared_strategies.for_group(group);
        let me = self.id;
        let new = self.shared.join(
            &full,
            &filter,
            strategy,
            Member {
                shard: me,
                slot,
                state: state.clone(),
            },
        );
        if self.shards > 1 || self.link.is_some() {
            if since != 0 {
                self.subs.expect_acks(&full);
            }
            // The cluster link too: it announces the group to the other nodes (`cluster::groups`).
            self.mail.tell_interest(|| Mail::ShareJoin {
                from: me,
                slot,
                full: full.clone(),
                filter: filter.clone(),
                state: state.clone(),
                since,
            });
        }
        if new {
            self.replay_shared(me, slot, &full, &filter, since);
        }
    }

    /// Member `slot` of shard `shard` started group `full` (no member had it here) with a SUBSCRIBE
    /// the kernel received at `since`: the messages this shard routed since then that `filter`
    /// matches went to no member; this one gets them, once (a group's messages are picked on their
    /// publisher's shard only, and only the join that starts the group here replays). Issue 17,
    /// "subscribe takes effect when it is read", for shared subscriptions (`shard::replay`).
    fn replay_shared(&mut self, shard: u16, slot: u32, full: &Utf8Bytes, filter: &str, since: u64) {
        if since == 0 {
            return;
        }
        let late: SmallVec<[Arc<Message>; 4]> = self
            .lookback
            .received_after(since)
            .filter(|(m, routed_here)| *routed_here && crate::topic::matches(filter, &m.topic))
            .map(|(m, _)| m.clone())
            .collect();
        self.stats.messages_replayed += late.len() as u64;
        for msg in late {
            self.send_to_member(&msg, shard, slot, full.clone(), 0);
        }
    }

    /// The session in `slot` left group `full` (UNSUBSCRIBE, or its session ended).
    pub(super) fn leave_group(&mut self, slot: u32, full: &Utf8Bytes) {
        let me = self.id;
        if self.shared.leave(full, me, slot) {
            self.stats.subscriptions -= 1;
            self.mail.tell_interest(|| Mail::ShareLeave {
                from: me,
                slot,
                full: full.clone(),
            });
        }
    }

    /// Mail about shared subscriptions from other shards.
    pub(super) fn shared_mail(&mut self, mail: Mail) {
        match mail {
            Mail::ShareJoin {
                from,
                slot,
                full,
                filter,
                state,
                since,
            } => {
                let group = crate::topic::parse_shared(&full).map_or("", |(g, _)| g);
                let strategy = self.settings.shared_strategies.for_group(group);
                let member = Member {
                    shard: from,
                    slot,
                    state,
                };
                if self.shared.join(&full, &filter, strategy, member) {
                    self.replay_shared(from, slot, &full, &filter, since);
                }
                let me = self.id;
                self.mail.send(
                    from,
                    Mail::InterestAck {
                        filter: full,
                        from: me,
                    },
                );
            }
            Mail::ShareLeave { from, slot, full } => {
                self.shared.leave(&full, from, slot);
            }
            Mail::Shared {
                msg,
                slot,
                full,
                counted,
                hops,
            } => {
                self.deliver_shared(&msg, slot, &full, hops);
                if counted {
                    self.journal.note_received(&msg, false);
                }
            }
            _ => unreachable!("not shared subscription mail"),
        }
    }

    /// Routing `msg` on its publisher's shard: one member of each matching group gets it. Adds the
    /// shards it was sent to to `reached`.
    pub(super) fn route_shared(
        &mut self,
        msg: &Arc<Message>,
        reached: &mut crate::index::ShardSet,
    ) {
        let (me, sessions) = (self.id, &self.sessions);
        let key = || publisher_key(me, sessions, msg);
        let mut picks: SmallVec<[(Utf8Bytes, u16, u32); 2]> = SmallVec::new();
        self.shared.pick(&msg.topic, key, None, |full, m| {
            picks.push((full.clone(), m.shard, m.slot))
        });
        for (full, shard, slot) in picks {
            self.send_to_member(msg, shard, slot, full, 0);
            reached.insert(shard);
        }
    }

    fn send_to_member(
        &mut self,
        msg: &Arc<Message>,
        shard: u16,
        slot: u32,
        full: Utf8Bytes,
        hops: u8,
    ) {
        if shard == self.id {
            self.deliver_shared(msg, slot, &full, hops);
            return;
        }
        // Counted only when sent by the message's own shard: the journal pairs what a shard sent with
        // what the receiver got from that shard (`shard::journal`).
        let counted = msg.origin.is_some_and(|o| o.0 == self.id);
        if counted {
            self.journal.note_sent(shard, msg, false);
        }
        self.mail.send(
            shard,
            Mail::Shared {
                msg: msg.clone(),
                slot,
                full,
                counted,
                hops,
            },
        );
    }

    /// Deliver `msg` to the member in `slot` of group `full`, or pass it on if that session is no
    /// longer in the group.
    fn deliver_shared(&mut self, msg: &Arc<Message>, slot: u32, full: &Utf8Bytes, hops: u8) {
        let opts = self
            .sessions
            .at(slot)
            .and_then(|s| s.subscriptions.get(full).copied());
        let Some(opts) = opts else {
            self.give_back(msg.clone(), full.clone(), Some((self.id, slot)), hops + 1);
            return;
        };
        let limits = self.settings.limits;
        let upgrade_qos = self.settings.upgrade_outgoing_qos;
        let check_acl = self.security.has_acl_file();
        let session = self.sessions.at_mut(slot).expect("looked up above");
        if check_acl && !session.may_read(&msg.topic) {
            return;
        }
        let qos = delivery_qos(msg.qos, opts.qos, upgrade_qos);
        // Late for this connection (`Session::missed`): as for a subscriber away, no other member
        // gets it instead.
        if session.missed(msg, qos, &limits) {
            return;
        }
        let retain = opts.retain_as_published && msg.retain;
        let framed = Rc::new(Framed::for_share(msg.clone(), full.clone()));
        // A member falling behind holds the publisher (`session::hold`) whatever the other members do:
        // they are as loaded, the group taking turns (`drop` never holds).
        let may_hold = limits.slow_subscriber_policy != SlowSubscriberPolicy::Drop;
        let now = Instant::now();
        let ids = [opts.identifier];
        let ids = if opts.identifier == 0 {
            &[][..]
        } else {
            &ids[..]
        };
        let delivery = session.deliver(
            &framed,
            qos,
            retain,
            ids,
            &limits,
            may_hold,
            &mut self.journal,
        );
        if delivery == Delivery::Sent {
            tracing::debug!(target: log_type::DEBUG,
                "Sending PUBLISH to {} (d0, q{}, r{}, m?, '{}', ... ({} bytes)) for {}",
                session.client_id, qos as u8, u8::from(retain), msg.topic, msg.payload.len(), full);
        }
        let behind = tally(&mut self.stats, session, delivery, qos, &limits, now);
        note_backlog(session);
        let origin = msg
            .origin
            .filter(|o| may_hold && behind && *o != (self.id, slot));
        if let Some(origin) = origin {
            if let Some(signal) = session.holding.note(origin, now) {
                if origin.0 == self.id {
                    self.sessions
                        .hold_publisher(origin.1, self.id, signal, true);
                } else {
                    self.mail.send_hold(origin, signal, true, now);
                }
            }
        }
    }

    /// A member (`from`) no longer takes `msg` for group `full`: another member of the group gets it,
    /// if there is one.
    fn give_back(
        &mut self,
        msg: Arc<Message>,
        full: Utf8Bytes,
        from: Option<(u16, u32)>,
        hops: u8,
    ) {
        if hops > MAX_HOPS {
            self.stats.messages_dropped += 1;
            return;
        }
        let (me, sessions) = (self.id, &self.sessions);
        let picked = self
            .shared
            .pick_in(&full, || publisher_key(me, sessions, &msg), from);
        match picked {
            Some(m) => self.send_to_member(&msg, m.shard, m.slot, full, hops),
            None => {
                tracing::debug!(target: log_type::DEBUG,
                    "No other member of {full} for a message on '{}': dropped.", msg.topic);
                self.stats.messages_dropped += 1;
            }
        }
    }

    /// The client of `slot` connected (`online`) or went away: the groups it is in learn it, and
    /// when it went away, what it had not acknowledged goes to another online member (`ended`: its
    /// session ends, so to any other member).
    pub(super) fn member_presence(&mut self, slot: u32, online: bool, ended: bool) {
        let Some(session) = self.sessions.at_mut(slot) else {
            return;
        };
        let Some(state) = session.shared.clone() else {
            return;
        };
        state.set_online(online);
        if online {
            return;
        }
        let me = self.id;
        // Kept with a persistent member unless another member is online to take them.
        let groups = &self.shared;
        let taken = session.take_shared(&mut self.journal, |full| {
            ended || groups.has_other_online(full, (me, slot))
        });
        note_backlog(session);
        for (msg, full) in taken {
            self.give_back(msg, full, Some((me, slot)), 0);
        }
    }
}

/// `hash` strategy key of `msg` routed on shard `me`: its publisher's client id (the topic for wills,
/// `$SYS`, and messages from other shards). Computed only for `hash` groups.
fn publisher_key(me: u16, sessions: &super::sessions::SessionTable, msg: &Message) -> u64 {
    let publisher = msg
        .origin
        .filter(|o| o.0 == me)
        .and_then(|o| sessions.at(o.1));
    match publisher {
        Some(s) => key_of(s.client_id.as_bytes()),
        None => key_of(msg.topic.as_bytes()),
    }
}

/// Publishers' shards see the member's backlog (`least_inflight`).
fn note_backlog(session: &crate::session::Session) {
    if let Some(state) = &session.shared {
        let (inflight, queued) = session.pending_len();
        state.set_backlog(inflight + queued);
    }
}
