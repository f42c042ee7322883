//! Wills and their delay. A connection that ends without a normal DISCONNECT leaves its will
//! (MQTT 5.0 §3.1.3.2): at once when it has no Will Delay Interval or its session ends with the
//! connection, otherwise when the delay has passed, unless a new connection to the session came first
//! [MQTT-3.1.3-9] (attach replaces the will with the new connection's), and at the latest when the
//! session ends (expiry, or a clean start taking it over: [`Shard::remove_session`] sends it).
//!
//! A will waiting out its delay stays on its session (`Session::will`, the client away); a deadline,
//! tagged with the session's generation like a session expiry (`expiry`), says when to send it. With
//! persistence the session record keeps both the will and when the client went away, so a restart sends
//! it when its delay runs out counting the time the broker was down ([`Shard::restore`]), and a clean
//! stop leaves it waiting (the session goes on) where Mosquitto, which does not keep it, sends it.

use std::time::{Duration, Instant};

use std::sync::Arc;

use super::expiry::unix_now;
use super::packets::will_message;
use super::Shard;
use crate::codec::LastWill;
use crate::router::Mail;

/// The will's delay: its Will Delay Interval (v5; none for 3.x).
pub(super) fn will_delay(will: &LastWill) -> Duration {
    Duration::from_secs(u64::from(will.properties.will_delay_interval.unwrap_or(0)))
}

impl Shard {
    /// The connection of the session in `slot` (at `generation`) ended in a way that sends its will
    /// (already checked against what the client may publish): send it now, or leave it on the session
    /// until its delay has passed. `waited` is how long ago the connection ended (not zero only at a
    /// restart).
    pub(super) fn leave_will(
        &mut self,
        slot: u32,
        generation: u32,
        will: Box<LastWill>,
        waited: Duration,
    ) {
        let delay = will_delay(&will);
        let Some(session) = self.sessions.at_mut(slot) else {
            return;
        };
        if delay <= waited || session.clean {
            self.route(will_message(will));
            return;
        }
        session.will = Some(will);
        self.will_delays
            .push(Instant::now() + (delay - waited), slot, generation);
    }

    /// On the tick: send the wills whose delay has passed with their client still away.
    pub(super) fn send_delayed_wills(&mut self, now: Instant) {
        while let Some((slot, generation)) = self.will_delays.pop_due(now) {
            let Some(session) = self.sessions.at_mut(slot) else {
                continue;
            };
            if session.generation != generation || session.is_connected() {
                continue;
            }
            let Some(will) = session.will.take() else {
                continue;
            };
            // Sent: not again after a restart, nor by the cluster.
            self.journal.session(session);
            if let Some(link) = self.link {
                self.mail.send(link, will_mail(session));
            }
            self.route(will_message(will));
        }
    }

    /// Cluster mode: tell the link the will of the session in `slot` as it is now, at a moment it
    /// may have changed (a connection came or went, a delayed will went out). The link keeps it in
    /// the cluster's wills bucket, for another node to send if this one dies (`cluster::wills`).
    pub(super) fn tell_will(&mut self, slot: u32) {
        let Some(link) = self.link else { return };
        if let Some(session) = self.sessions.at(slot) {
            let mail = will_mail(session);
            self.mail.send(link, mail);
        }
    }

    /// The client of `slot` went away now: note it (its session's record says so when the session is
    /// kept on disk, see `Record::Session::away_since`).
    pub(super) fn mark_away(&mut self, slot: u32) {
        if let Some(session) = self.sessions.at_mut(slot) {
            session.away_since = unix_now();
            if session.durable {
                self.journal.session(session);
            }
        }
    }
}

/// The `Mail::Will` telling the link of `session`'s will as it is now (the link ignores a None for
/// a client whose will it does not keep).
pub(super) fn will_mail(session: &crate::session::Session) -> Mail {
    let will = session.will.as_ref().map(|w| {
        // Sent when its delay runs out or its session ends, whichever is first (`leave_will`).
        let delay = match session.clean {
            true => 0,
            false => w
                .properties
                .will_delay_interval
                .unwrap_or(0)
                .min(session.expiry_interval),
        };
        (Arc::new(will_message(w.clone())), delay)
    });
    Mail::Will {
        client_id: session.client_id.clone(),
        will,
    }
}
