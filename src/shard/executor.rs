//! The executor's side of a shard: its main future ([`run`]), the mail loop and what a piece of mail
//! does, the ticker's beat, a security reload, and shutdown. Runs on the shard's thread; it spawns the
//! connection tasks (`connection.rs`) and calls into packet handling (`packets/`) and the parts.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{connection, shutdown, ConnectionCounts, Shard};
use crate::auth::Security;
use crate::message::Message;
use crate::router::{Control, Inbox, Mail, MailSenders, ShardId};
use crate::session::HoldStamp;
use crate::settings::Settings;
use crate::stats::ShardStats;

/// How long shutdown waits for connections to flush and close before the executor ends anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Everything a shard thread is started with.
pub struct ShardStart {
    pub id: ShardId,
    pub settings: Arc<Settings>,
    /// Bound, listening sockets (SO_REUSEPORT, the same on every shard), each with the index of its
    /// listener: one per address of each listener (IPv4 and IPv6 when it has no bind address).
    pub listeners: Vec<(usize, OwnedFd)>,
    pub mail_out: MailSenders,
    pub inbox: Inbox,
    pub counts: Arc<ConnectionCounts>,
    /// When the broker started (for `$SYS/broker/uptime`).
    pub started: Instant,
    /// With `persistence true`: the state read back at start-up and the log to append to.
    pub restore: Option<super::ShardRestore>,
    /// The broker's retained store, the same for every shard.
    pub retained: Arc<super::RetainedStripes>,
    /// Cluster mode: what the link counts, for shard 0's `$SYS`.
    pub cluster: Option<Arc<crate::cluster::figures::ClusterFigures>>,
}

impl Shard {
    /// Apply the urgent mail (interest changes, holds) other shards have sent so far.
    pub(super) fn apply_urgent_mail(&mut self) {
        // Called for every publish: the common case is one atomic load and nothing else.
        if !self.mail.has_urgent_mail() {
            return;
        }
        // Taken out for the drain so mail can be handled meanwhile (rare: the placeholder allocates).
        let inbox = self.mail.take_urgent_inbox();
        inbox.drain(|m| {
            let handoff = self.handle_mail(m);
            debug_assert!(handoff.is_none());
        });
        self.mail.restore_urgent_inbox(inbox);
    }

    /// Handle one piece of mail; a hand-off comes back for the caller to spawn.
    pub(super) fn handle_mail(&mut self, mail: Mail) -> Option<Box<crate::router::Handoff>> {
        match mail {
            Mail::Publish(msg, stamp) => {
                self.deliver_local(&msg, &stamp, None);
                self.lookback.push(&msg, false);
                self.journal.note_received(&msg, false);
            }
            Mail::Taken { msg, custody } => {
                self.deliver_local(&msg, &HoldStamp::default(), Some(custody));
                self.lookback.push(&msg, false);
                self.journal.note_received(&msg, false);
            }
            Mail::Replay(msg) => self.replayed(msg),
            Mail::Retain(msg) => {
                self.journal.retained(&msg);
                self.journal.note_received(&msg, true);
            }
            Mail::Durable { from, count } => self.journal.confirmed(from, count),
            Mail::Handoff(h) => return Some(h),
            Mail::InterestAdd {
                from,
                filter,
                since,
            } => {
                self.replay_to(from, &filter, since);
                self.subs.add_remote_interest(&filter, from);
                let me = self.id;
                self.mail.send(from, Mail::InterestAck { filter, from: me });
            }
            Mail::InterestRemove { from, filter } => {
                self.subs.remove_remote_interest(&filter, from);
            }
            Mail::InterestAck { filter, from } => self.interest_acked(&filter, from),
            m @ (Mail::ShareJoin { .. } | Mail::ShareLeave { .. } | Mail::Shared { .. }) => {
                self.shared_mail(m)
            }
            Mail::Hold {
                slot,
                from,
                signal,
                insist,
            } => self.sessions.hold_publisher(slot, from, signal, insist),
            Mail::Release { slot, from } => {
                let policy = self.settings.limits.slow_subscriber_policy;
                self.sessions.release_publisher(slot, from, policy);
            }
            Mail::Object { slot, from } => self.sessions.object_to_publisher(slot, from),
            Mail::StatsQuery { reply_to } => {
                let stats = self.snapshot_stats();
                self.mail.send(reply_to, Mail::StatsReply(stats));
            }
            Mail::StatsReply(stats) => self.sys_reply(&stats),
            Mail::Claimed {
                ticket,
                session,
                lately,
            } => self.claimed(ticket, session, lately.as_ref()),
            Mail::Evict {
                ticket,
                client_id,
                keep,
            } => self.evict(ticket, &client_id, keep),
            // The link's own mail.
            Mail::Route(msg) => {
                self.route(Message::clone(&msg));
            }
            Mail::Adopt(image) => self.adopt(&image),
            Mail::Owed { clients, msg } => self.deliver_owed(&clients, &msg),
            Mail::Claim { .. }
            | Mail::Evicted { .. }
            | Mail::Will { .. }
            | Mail::State { .. }
            | Mail::Unclaim { .. }
            | Mail::RetainedSync { .. }
            | Mail::Follow { .. } => {
                debug_assert!(false, "mail for the cluster link reached a shard");
            }
        }
        None
    }

    fn snapshot_stats(&self) -> ShardStats {
        let mut s = self.stats;
        s.sessions = self.sessions.len() as u64;
        s.retained_messages = self.retained.len() as u64;
        s.clients_parked = super::parking::parked_here();
        s
    }

    /// Close every connection and stop accepting. v5 clients get DISCONNECT 0x8B (Server shutting
    /// down), or with a `server_reference` 0x9C (Use another server) or 0x9D (Server moved) naming it.
    fn begin_shutdown(&mut self) {
        let disconnect = shutdown_disconnect(self.settings.redirect.as_ref());
        for (fd, outbox) in self.conns.begin_shutdown() {
            match outbox {
                Some(o) => {
                    if let Some(v5) = self.sessions.protocol_of(&o) {
                        if v5 {
                            o.write(|out| {
                                out.extend_from_slice(&disconnect);
                            });
                        }
                    }
                    o.close(crate::session::CloseReason::Shutdown);
                }
                // Not attached yet (waiting for CONNECT): wake its read with EOF.
                // SAFETY: `fd` belongs to a live connection task of this shard (it unregisters before
                // its stream is dropped), and shutdown(2) does not invalidate it.
                None => unsafe {
                    libc::shutdown(fd, libc::SHUT_RDWR);
                },
            }
        }
    }
}

/// The DISCONNECT every v5 client gets at shutdown, encoded once.
fn shutdown_disconnect(redirect: Option<&crate::settings::Redirect>) -> bytes::BytesMut {
    use crate::codec::{Disconnect, Packet, Properties, ProtocolVersion, ReasonCode};
    let packet = Packet::Disconnect(Disconnect {
        reason: redirect
            .and_then(|r| r.code(true))
            .unwrap_or(ReasonCode::ServerShuttingDown),
        properties: Properties {
            server_reference: redirect.map(|r| r.reference.clone().into()),
            ..Properties::default()
        },
    });
    let mut out = bytes::BytesMut::new();
    // Only a reference over 65,535 bytes cannot be encoded: the clients are then closed without a word.
    let _ = crate::codec::encode(&packet, ProtocolVersion::V5, &mut out);
    out
}

/// Shares of the CPU the setup queue gets while established clients have work too (the default
/// queue has 1,000): a connect storm then takes a sixth of a busy shard and all of an idle one.
const SETUP_SHARES: usize = 200;

/// How long the setup queue runs before the executor looks at its sockets, mailboxes and other
/// queues again. glommio's default slice is 100 ms, and a message that arrived during a connect
/// storm waited for the rest of it (docs/PERFORMANCE.md, "Issue 18, fourth session"). The slice
/// takes effect when the queue activates, not at the next `poll_io` (vendor/glommio/PATCHES.md,
/// patch 9).
const SETUP_SLICE: Duration = Duration::from_millis(1);

/// The task queue for connections being set up: accepting, the TLS and WebSocket handshakes, the
/// CONNECT and attaching its session; a connection's serving task then runs in the default queue with
/// the mail and the readiness driver. Why a queue of its own: glommio runs a queue's tasks in the
/// order they woke, and a storm of new clients (~100 us each) put thousands of them ahead of a busy
/// client's next packet. Its own queue, with a short slice and fewer shares, lets the executor poll
/// for I/O every millisecond while a storm lasts and serve established clients first.
fn setup_queue() -> glommio::TaskQueueHandle {
    glommio::executor().create_task_queue(
        glommio::Shares::Static(SETUP_SHARES),
        glommio::Latency::Matters(SETUP_SLICE),
        "setup",
    )
}

/// Spawn into a queue that exists (this shard's own): scheduled, not run at once.
pub(super) fn spawn_into<T: 'static>(
    future: impl std::future::Future<Output = T> + 'static,
    queue: glommio::TaskQueueHandle,
) -> glommio::Task<T> {
    glommio::spawn_local_into(future, queue).expect("the shard's task queues live as long as it")
}

/// The executor's main future: serve until told to shut down, then close everything.
pub async fn run(start: ShardStart) {
    let ShardStart {
        id,
        settings,
        listeners,
        mail_out,
        inbox,
        counts,
        started,
        restore,
        retained,
        cluster,
    } = start;
    let next_message_id = restore.as_ref().map_or(1, |r| r.image.next_message_id);
    let persistence = settings.persistence.clone();
    let shard = Rc::new(RefCell::new(Shard::new(
        id,
        settings,
        mail_out,
        inbox.urgent(),
        counts,
        started,
        next_message_id,
        retained,
    )));
    shard.borrow_mut().sys.set_cluster(cluster);
    let mut journal = None;
    if let (Some(restore), Some(persistence)) = (restore, persistence) {
        let generation = restore.generation;
        let log_len = restore.log_len;
        shard.borrow_mut().restore(restore);
        journal = Some(glommio::spawn_local(super::journal::journal_task(
            shard.clone(),
            persistence,
            generation,
            log_len,
        )));
    }
    let setup = setup_queue();
    shard.borrow_mut().setup_queue = setup;
    let mut tasks = Vec::new();
    for (index, fd) in listeners {
        let accepting = connection::accept_loop(shard.clone(), fd, index);
        tasks.push(spawn_into(accepting, setup).detach());
    }
    tasks.push(glommio::spawn_local(overflow_task(shard.clone())).detach());
    if id == 0 {
        shard.borrow_mut().start_sys();
    }
    mail_loop(&shard, &inbox).await;
    shutdown::drain_mail(&shard, &inbox).await;
    for t in &tasks {
        t.cancel();
    }
    drop(tasks);
    shard.borrow_mut().begin_shutdown();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    // Shutdown only: poll until every connection task finished or the grace period ends.
    while !shard.borrow().conns.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    // Last: what the closing connections changed (wills cleared, sessions detached) is written.
    if let Some(task) = journal {
        shard.borrow_mut().journal.stop();
        task.await;
    }
}

impl Shard {
    /// The ticker's beat: close silent connections, publish `$SYS` when due.
    fn tick(&mut self, now: Instant) {
        self.keepalive.check(now);
        self.mail.forget_stances(now);
        self.expire_sessions(now);
        self.end_moves(now);
        self.send_delayed_wills(now);
        self.expire_retained(now);
        self.sys_tick(now);
        self.lookback.expire(super::lookback::now_ns());
        self.parking.tick();
    }

    /// Retained messages whose v5 Message Expiry Interval passed leave the store: each shard removes
    /// those of its stripe at its tick and records the removal in its log (the stripe's topics are
    /// the ones its log keeps), so that a restart does not bring them back.
    fn expire_retained(&mut self, now: Instant) {
        for topic in self.retained.remove_expired(now) {
            let clear = Message::new(
                topic,
                bytes::Bytes::new(),
                crate::codec::QoS::AtMostOnce,
                true,
                crate::codec::Properties::default(),
                None,
            );
            self.journal.retained(&clear);
        }
    }

    /// Reloaded security files, applied as Mosquitto applies them after SIGHUP: a connected client whose
    /// credentials no longer pass is disconnected (no will), and every session, connected or not, gets
    /// its ACL again for its client id and username.
    fn apply_security(&mut self, security: Arc<Security>) {
        self.security = security;
        for session in self.sessions.iter_mut() {
            let login = session.login.as_deref();
            let username = login.map(|l| l.username.as_str());
            let password = login.and_then(|l| l.password.as_deref());
            // The files of the listener it came through (`per_listener_settings`).
            let listener = usize::from(session.listener);
            let scope = self.security.scope(listener);
            let acl = scope.client_acl(session.client_id.as_str(), username);
            let allow_anonymous = self
                .settings
                .listeners
                .get(listener)
                .is_some_and(|l| l.allow_anonymous);
            let authorised = match (login.and_then(|l| l.method.as_ref()), username) {
                // Enhanced authentication: the user must still be in the method's file.
                (Some(method), Some(user)) => self.security.still_known(method.as_str(), user),
                _ => scope.authenticate(allow_anonymous, username, password),
            };
            session.acl = acl;
            session.drop_unreadable(&mut self.journal);
            if let (false, Some(conn)) = (authorised, &session.conn) {
                conn.close(crate::session::CloseReason::NotAuthorised);
            }
        }
    }
}

/// Receive and handle mail until a shutdown command.
async fn mail_loop(shard: &Rc<RefCell<Shard>>, inbox: &Inbox) {
    let mut batch = Vec::with_capacity(256);
    loop {
        let control = std::future::poll_fn(|cx| inbox.poll_recv(cx, &mut batch)).await;
        match control {
            Some(Control::Shutdown) => return,
            Some(Control::Wills(done)) => {
                shard.borrow_mut().publish_wills_for_shutdown();
                let _ = done.send(());
            }
            Some(Control::Tick) => shard.borrow_mut().tick(Instant::now()),
            Some(Control::BeginWriting) => shard.borrow_mut().journal.begin(),
            Some(Control::Security(security, done)) => {
                shard.borrow_mut().apply_security(security);
                let _ = done.send(());
            }
            None => {}
        }
        let mut handoffs = Vec::new();
        {
            let mut s = shard.borrow_mut();
            for mail in batch.drain(..) {
                if let Some(h) = s.handle_mail(mail) {
                    handoffs.push(h);
                }
            }
            if s.mail.overloaded() {
                s.mail.flush_overflow();
            }
        }
        let setup = shard.borrow().setup_queue;
        for h in handoffs {
            spawn_into(connection::run_handoff(shard.clone(), h), setup).detach();
        }
        // Let connection tasks run between batches: a mail flood must not starve the sockets, above all
        // the subscribers' acknowledgements that open their windows (else their queues overflow).
        futures_lite::future::yield_now().await;
    }
}

/// Re-sends held-back mail while there is some; parks otherwise.
async fn overflow_task(shard: Rc<RefCell<Shard>>) {
    loop {
        std::future::poll_fn(|cx| shard.borrow_mut().mail.poll_overflow(cx)).await;
        // Receivers wake this task when they take mail from a mailbox it found full (an event, not a
        // timer): retry then, until everything went out.
        std::future::poll_fn(|cx| shard.borrow_mut().mail.poll_overflow_sent(cx)).await;
    }
}

/// `$SYS` rounds on shard 0: the counters of every shard gathered by mail, then published through
/// `route` (see `sys.rs`).
impl Shard {
    /// First `$SYS` round at start-up, then one every `sys_interval` (on the tick that follows it).
    fn start_sys(&mut self) {
        if let Some(interval) = self.settings.sys_interval {
            self.start_sys_round();
            self.sys.schedule(Instant::now() + interval);
        }
    }

    /// Called on every tick: publish `$SYS` when due.
    fn sys_tick(&mut self, now: Instant) {
        let Some(interval) = self.settings.sys_interval else {
            return;
        };
        if self.sys.due(now) {
            self.start_sys_round();
            // From now, not from `next`: a shard that was too busy to tick does not publish in a burst.
            self.sys.schedule(now + interval);
        }
    }

    fn start_sys_round(&mut self) {
        if self.sys.begin_round(self.snapshot_stats(), self.shards - 1) {
            self.publish_sys();
            return;
        }
        let reply_to = self.id;
        self.mail.broadcast(|| Mail::StatsQuery { reply_to });
    }

    fn sys_reply(&mut self, s: &ShardStats) {
        if self.sys.reply(s) {
            self.publish_sys();
        }
    }

    fn publish_sys(&mut self) {
        for msg in self.sys.messages(self.shards) {
            self.route(msg);
        }
    }
}
