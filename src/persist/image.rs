//! What a shard's records add up to ([`ShardImage`]), built by applying them in order, and written
//! back as a compact snapshot ([`SnapshotWriter`]): one `Session` record per session, its
//! subscriptions, the messages it is owed (each message written once per file however many sessions
//! owe it) and the retained messages the file's shard owns. Sans-IO: bytes in, bytes out.
//!
//! The start-up path (`super::recover`) replays every shard's file into an image, merges them,
//! re-homes the sessions when the shard count changed and writes each new shard's snapshot; the shards
//! then write their own snapshots from their live state when their logs grow (compaction) with the
//! same [`SnapshotWriter`].

use std::collections::VecDeque;
use std::sync::Arc;

use ahash::AHashMap;
use bytes::BytesMut;

use super::record::{self, Record, RecordEncodeError, StoredMessage};
use crate::codec::{LastWill, ProtocolVersion, QoS, SubscriptionOptions, Utf8Bytes};
use crate::message::{DurableKey, Message};

/// A message owed to a persistent session, in the order it is owed: first those sent and not yet
/// acknowledged (with their packet id), then those queued.
#[derive(Debug, Clone)]
pub struct Owed {
    pub message: Arc<Message>,
    /// Delivery QoS (min of publish and subscription QoS) and retain flag for this session.
    pub qos: QoS,
    pub retain: bool,
    /// Set once sent: the packet id it went out with (re-sent with it, DUP set [MQTT-4.4.0-1]).
    pub packet_id: Option<u16>,
    /// QoS 2 only: PUBREC received, PUBREL sent.
    pub released: bool,
    /// Its id in the file being read or written (see [`Record::Message`]).
    pub message_id: u64,
}

/// A persistent session as its records describe it.
#[derive(Debug, Clone)]
pub struct SessionImage {
    pub client_id: Utf8Bytes,
    pub protocol: ProtocolVersion,
    pub expiry_interval: u32,
    pub will: Option<Box<LastWill>>,
    pub username: Option<Utf8Bytes>,
    pub listener: u16,
    /// As [`Record::Session`]'s: when the client went away (0: it was connected).
    pub away_since: u64,
    /// Filter → options, as granted.
    pub subscriptions: crate::session::SeededMap<Utf8Bytes, SubscriptionOptions>,
    pub owed: VecDeque<Owed>,
    /// As a publisher: QoS 2 packet ids whose PUBREL has not come yet, with the message's key and,
    /// while not every shard had it on disk, the message (see [`Record::Accepted`]).
    pub accepted: AHashMap<u16, (u64, Option<Arc<Message>>)>,
    /// As a publisher: QoS 2 packet ids whose exchange ended here (PUBREL received) and whose
    /// PUBCOMP the client may not have got: a PUBREL for one is answered with success, not 0x92.
    pub completed: ahash::AHashSet<u16>,
}

impl SessionImage {
    /// Where the message sent with `packet_id` is in `owed`.
    fn in_flight(&self, packet_id: u16) -> Result<usize, Orphan> {
        self.owed
            .iter()
            .position(|o| o.packet_id == Some(packet_id))
            .ok_or(Orphan::Owed)
    }
}

/// Why a record could not be applied: it names something the file never created. Such a record is
/// skipped (and counted): the file was written by this code, in order, so it means damage the
/// checksums did not catch or a bug, neither of which should cost the rest of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphan {
    /// A session-scoped record for a client id with no `Session` record before it.
    Session,
    /// A `Queue` naming a message id with no `Message` record before it.
    Message,
    /// An `Inflight`, `Released`, `Done` or `Discard` naming nothing owed.
    Owed,
}

/// The state one shard's file describes.
#[derive(Debug, Default)]
pub struct ShardImage {
    pub sessions: AHashMap<Utf8Bytes, SessionImage>,
    /// Topic → retained message.
    pub retained: AHashMap<Utf8Bytes, Arc<Message>>,
    /// Messages by id, while the file is read (only those some session may still owe).
    messages: AHashMap<u64, Arc<Message>>,
    /// Above every message id the file used.
    pub next_message_id: u64,
    /// Records skipped because they named nothing (see [`Orphan`]).
    pub orphans: usize,
    /// The accepted QoS 2 messages this file recorded (`Message` with a key, `Seen`): key, publisher
    /// and packet id, and from a `Message`, the message.
    pub keyed: Vec<(DurableKey, Option<Arc<Message>>)>,
    /// Keys whose exchange ended (`AcceptedDone`).
    pub done: ahash::AHashSet<u64>,
    /// Keys that every shard they went to had on disk (`Routed`).
    pub routed: ahash::AHashSet<u64>,
}

impl ShardImage {
    /// Apply one record, in file order.
    pub fn apply(&mut self, record: Record) {
        if let Err(_orphan) = self.try_apply(record) {
            self.orphans += 1;
        }
    }

    fn try_apply(&mut self, record: Record) -> Result<(), Orphan> {
        match record {
            Record::Session {
                client_id,
                protocol,
                expiry_interval,
                will,
                username,
                listener,
                away_since,
            } => {
                let s = self
                    .sessions
                    .entry(client_id.clone())
                    .or_insert_with(|| SessionImage {
                        client_id,
                        protocol,
                        expiry_interval,
                        will: None,
                        username: None,
                        listener: 0,
                        away_since: 0,
                        subscriptions: Default::default(),
                        owed: VecDeque::new(),
                        accepted: AHashMap::new(),
                        completed: ahash::AHashSet::new(),
                    });
                s.protocol = protocol;
                s.expiry_interval = expiry_interval;
                s.will = will;
                s.username = username;
                s.listener = listener;
                s.away_since = away_since;
            }
            Record::SessionGone { client_id } => {
                self.sessions.remove(&client_id);
            }
            Record::Subscribe {
                client_id,
                filter,
                options,
            } => {
                self.session(&client_id)?
                    .subscriptions
                    .insert(filter, options);
            }
            Record::Unsubscribe { client_id, filter } => {
                self.session(&client_id)?.subscriptions.remove(&filter);
            }
            Record::Message {
                message_id,
                key,
                message,
            } => {
                self.next_message_id = self.next_message_id.max(message_id.saturating_add(1));
                let message = Arc::new(message.into_message());
                if let Some(k) = key {
                    self.keyed.push((k, Some(message.clone())));
                }
                self.messages.insert(message_id, message);
            }
            Record::Queue {
                client_id,
                message_id,
                qos,
                retain,
            } => {
                let message = self
                    .messages
                    .get(&message_id)
                    .ok_or(Orphan::Message)?
                    .clone();
                self.session(&client_id)?.owed.push_back(Owed {
                    message,
                    qos,
                    retain,
                    packet_id: None,
                    released: false,
                    message_id,
                });
            }
            Record::Inflight {
                client_id,
                message_id,
                packet_id,
            } => {
                let s = self.session(&client_id)?;
                let o = s
                    .owed
                    .iter_mut()
                    .find(|o| o.message_id == message_id && o.packet_id.is_none())
                    .ok_or(Orphan::Owed)?;
                o.packet_id = Some(packet_id);
            }
            Record::Released {
                client_id,
                packet_id,
            } => {
                let s = self.session(&client_id)?;
                let at = s.in_flight(packet_id)?;
                s.owed[at].released = true;
            }
            Record::Done {
                client_id,
                packet_id,
            } => {
                let s = self.session(&client_id)?;
                let at = s.in_flight(packet_id)?;
                s.owed.remove(at);
            }
            Record::Discard {
                client_id,
                message_id,
            } => {
                let s = self.session(&client_id)?;
                let at = s
                    .owed
                    .iter()
                    .position(|o| o.message_id == message_id)
                    .ok_or(Orphan::Owed)?;
                s.owed.remove(at);
            }
            Record::Accepted {
                client_id,
                packet_id,
                key,
                message,
            } => {
                let message = message.map(|m| Arc::new(m.into_message()));
                let s = self.session(&client_id)?;
                s.completed.remove(&packet_id);
                s.accepted.insert(packet_id, (key, message));
            }
            Record::AcceptedDone {
                client_id,
                packet_id,
                key,
            } => {
                self.done.insert(key);
                let s = self.session(&client_id)?;
                s.accepted.remove(&packet_id);
                s.completed.insert(packet_id);
            }
            Record::Routed { key } => {
                self.routed.insert(key);
            }
            Record::Seen(k) => {
                self.keyed.push((k, None));
            }
            Record::Retain { message } => {
                let topic = message.topic.clone();
                self.retained
                    .insert(topic, Arc::new(message.into_message()));
            }
            Record::RetainClear { topic } => {
                self.retained.remove(&topic);
            }
        }
        Ok(())
    }

    fn session(&mut self, client_id: &Utf8Bytes) -> Result<&mut SessionImage, Orphan> {
        self.sessions.get_mut(client_id).ok_or(Orphan::Session)
    }

    /// The file is read: messages that no session owes any more are forgotten.
    pub fn finish(&mut self) {
        self.messages.clear();
    }

    /// Messages owed to the sessions, counted once per session that owes them.
    pub fn owed_count(&self) -> usize {
        self.sessions.values().map(|s| s.owed.len()).sum()
    }
}

/// Writes a snapshot: records that recreate a shard's state, each message once (by id).
pub struct SnapshotWriter {
    out: BytesMut,
    /// Message ids already written to this snapshot.
    written: ahash::AHashSet<u64>,
}

impl SnapshotWriter {
    /// A snapshot of shard `shard` of `shards`: the file header first.
    pub fn new(shard: u16, shards: u16) -> SnapshotWriter {
        let mut out = BytesMut::new();
        record::encode_header(shard, shards, &mut out);
        SnapshotWriter {
            out,
            written: ahash::AHashSet::new(),
        }
    }

    fn put(&mut self, r: &Record) {
        // What the shard held came from packets the codec accepted, and records bound nothing tighter
        // than packets do; a record that cannot be encoded is a bug, and skipping it keeps the rest.
        if let Err(e) = record::encode(r, &mut self.out) {
            report_unencodable(r, e);
        }
    }

    /// A session's settings (a `Record::Session`) and subscriptions.
    pub fn session(
        &mut self,
        settings: &Record,
        subscriptions: impl IntoIterator<Item = (Utf8Bytes, SubscriptionOptions)>,
    ) {
        let Record::Session { client_id, .. } = settings else {
            return;
        };
        self.put(settings);
        for (filter, options) in subscriptions {
            self.put(&Record::Subscribe {
                client_id: client_id.clone(),
                filter,
                options,
            });
        }
    }

    /// A message owed to the session last given to [`Self::session`], in order.
    #[allow(clippy::too_many_arguments)]
    pub fn owed(
        &mut self,
        client_id: &Utf8Bytes,
        message_id: u64,
        message: &Message,
        qos: QoS,
        retain: bool,
        packet_id: Option<u16>,
        released: bool,
    ) {
        if self.written.insert(message_id) {
            self.put(&Record::Message {
                message_id,
                key: message.durable.as_deref().cloned(),
                message: StoredMessage::from_message(message),
            });
        }
        self.put(&Record::Queue {
            client_id: client_id.clone(),
            message_id,
            qos,
            retain,
        });
        if let Some(packet_id) = packet_id {
            self.put(&Record::Inflight {
                client_id: client_id.clone(),
                message_id,
                packet_id,
            });
            if released {
                self.put(&Record::Released {
                    client_id: client_id.clone(),
                    packet_id,
                });
            }
        }
    }

    /// A QoS 2 exchange of the session last given to [`Self::session`] that awaits its PUBREL
    /// (`message` with its key while not every shard had it on disk).
    pub fn accepted(
        &mut self,
        client_id: &Utf8Bytes,
        packet_id: u16,
        key: u64,
        message: Option<StoredMessage>,
    ) {
        self.put(&Record::Accepted {
            client_id: client_id.clone(),
            packet_id,
            key,
            message,
        });
    }

    /// A QoS 2 exchange of the session last given to [`Self::session`] that ended here, its PUBCOMP
    /// perhaps not received (see [`SessionImage::completed`]).
    pub fn completed(&mut self, client_id: &Utf8Bytes, packet_id: u16) {
        self.put(&Record::AcceptedDone {
            client_id: client_id.clone(),
            packet_id,
            key: 0,
        });
    }

    /// A message key this shard recorded (see [`Record::Seen`]).
    pub fn seen(&mut self, key: &DurableKey) {
        self.put(&Record::Seen(key.clone()));
    }

    /// A retained message this shard owns.
    pub fn retained(&mut self, message: &Message) {
        self.put(&Record::Retain {
            message: StoredMessage::from_message(message),
        });
    }

    /// The whole image (its sessions and the retained messages `owns` accepts).
    pub fn image(&mut self, image: &ShardImage, owns: impl Fn(&Utf8Bytes) -> bool) {
        for s in image.sessions.values() {
            self.session(
                &Record::Session {
                    client_id: s.client_id.clone(),
                    protocol: s.protocol,
                    expiry_interval: s.expiry_interval,
                    will: s.will.clone(),
                    username: s.username.clone(),
                    listener: s.listener,
                    away_since: s.away_since,
                },
                s.subscriptions.iter().map(|(f, o)| (f.clone(), *o)),
            );
            for (&packet_id, (key, message)) in &s.accepted {
                let message = message.as_deref().map(StoredMessage::from_message);
                self.accepted(&s.client_id, packet_id, *key, message);
            }
            for &packet_id in &s.completed {
                self.completed(&s.client_id, packet_id);
            }
            for o in &s.owed {
                self.owed(
                    &s.client_id,
                    o.message_id,
                    &o.message,
                    o.qos,
                    o.retain,
                    o.packet_id,
                    o.released,
                );
            }
        }
        for (topic, m) in &image.retained {
            if owns(topic) {
                self.retained(m);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.len() <= record::HEADER_LEN
    }

    pub fn finish(self) -> BytesMut {
        self.out
    }
}

#[cold]
fn report_unencodable(r: &Record, e: RecordEncodeError) {
    let what = match r {
        Record::Message { message, .. } | Record::Retain { message } => message.topic.as_str(),
        _ => "",
    };
    tracing::error!("Error: a persistence record could not be written ({e}) {what}");
}

#[cfg(test)]
mod tests;
