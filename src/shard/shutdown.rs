//! The broker's own shutdown (SIGTERM, SIGINT), in two steps driven by `crate::server`:
//!
//! 1. [`Shard::publish_wills_for_shutdown`] (on `Control::Wills`): stop taking new clients and publish
//!    the will of every client still connected (a delayed will of a session kept on disk waits on, see
//!    `shard::will`), as Mosquitto 2.0 does when it stops
//!    (`context__send_will` for every context in `mosquitto.c`), while every connection is still open
//!    to receive them. The server waits for every shard to finish this step before the next one, so
//!    wills routed to other shards are in their mailboxes by then.
//! 2. On `Control::Shutdown` the mail loop ends; [`drain_mail`] then delivers the mail already queued
//!    (those wills) before the connections close, and the writers flush it.
//!
//! Concurrency: runs on the shard's thread like the rest of the shard; no borrow is held across an
//! `.await`.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;

use futures_lite::future::poll_once;

use super::expiry::unix_now;
use super::packets::will_message;
use super::will::will_delay;
use super::Shard;
use crate::router::Inbox;

impl Shard {
    /// Shutdown step 1: refuse new clients from now on and publish the will of every connected client
    /// (only where its client could have published it, as on any other will). Returns how many went
    /// out. A will published here is taken from its session, so the close that follows sends none.
    pub(super) fn publish_wills_for_shutdown(&mut self) -> usize {
        self.conns.stop_accepting();
        let mut wills = Vec::new();
        let now = unix_now();
        for session in self.sessions.iter_mut() {
            if session.conn.is_none() {
                // A will waiting out its delay: its session ends with the broker unless it is kept on
                // disk (then the delay goes on counting, `shard::will`).
                if !session.durable {
                    wills.extend(session.will.take());
                }
                continue;
            }
            let had_will = session.will.is_some();
            match session.will.take().filter(|w| session.may_write(&w.topic)) {
                Some(will) if session.durable && !will_delay(&will).is_zero() => {
                    // Left waiting on a session that outlives the broker: the client is away now.
                    session.will = Some(will);
                    session.away_since = now;
                }
                Some(will) => wills.push(will),
                None => {}
            }
            if had_will {
                // Sent (or left waiting): not again after the restart.
                self.journal.session(session);
            }
        }
        let count = wills.len();
        for will in wills {
            self.route(will_message(will));
        }
        // Mail another shard's full mailbox held back goes out now if it can; the rest follows from
        // the overflow task while the server waits for the other shards.
        if self.mail.overloaded() {
            self.mail.flush_overflow();
        }
        count
    }
}

/// Shutdown step 2, after the mail loop ended: handle the mail already queued for this shard (wills
/// other shards published in step 1) so that it reaches this shard's subscribers before their
/// connections close. Control commands still queued (ticks) are skipped; connections handed over
/// meanwhile are dropped (closed): the broker is stopping. Mail sent after this looked is not waited for.
pub(super) async fn drain_mail(shard: &Rc<RefCell<Shard>>, inbox: &Inbox) {
    let mut batch = Vec::new();
    // Bounded, in case other shards keep sending.
    for _ in 0..1024 {
        match poll_once(poll_fn(|cx| inbox.poll_recv(cx, &mut batch))).await {
            None => return,
            Some(Some(_control)) => continue,
            Some(None) => {
                let mut s = shard.borrow_mut();
                for mail in batch.drain(..) {
                    drop(s.handle_mail(mail));
                }
            }
        }
    }
}
