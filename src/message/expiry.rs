//! Message expiry (MQTT 5.0 §3.3.2.3.3): a message with a Message Expiry Interval is not sent once
//! the interval has passed since the broker received it, and each subscriber's copy carries what is
//! left of the interval, in whole seconds [MQTT-3.3.2-6].
//!
//! The clock starts when the message entered this process ([`super::Message::new`]). A stored
//! record (`persist::record::StoredMessage::from_message`) keeps what was left of the interval
//! when it was written, and its reader counts from then: a message read back from disk after a
//! restart (the time the broker was down not counted: no subscriber could receive it meanwhile
//! either), or owed to a session that moves to another node of a cluster. A copy from another
//! node counts from when the publishing node received it (`cluster::wire` carries that time;
//! [`Message::received_ago`]).
//!
//! An interval of 0 never expires and is forwarded as 0, as Mosquitto does (it treats 0 as "no
//! expiry time").

use std::time::Instant;

use super::Message;
use crate::codec::Properties;

/// Whether a message with `properties` can expire.
pub(super) fn can_expire(properties: &Properties) -> bool {
    properties.message_expiry_interval.is_some_and(|i| i > 0)
}

/// What is left of a message's Message Expiry Interval at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    /// No expiry interval (or 0): sent as it is.
    Never,
    /// Not expired and it waited less than a second: the interval goes out unchanged, so the copy
    /// may share the frame encoded for every subscriber (docs/ARCHITECTURE.md, invariant 3).
    Unchanged,
    /// Not expired and it waited whole seconds: this copy goes out with `n` seconds left (>= 1), and
    /// needs a header of its own.
    Left(u32),
    /// Its interval has passed: not to be sent.
    Expired,
}

impl Remaining {
    /// The Message Expiry Interval a copy must carry instead of the message's own, if any.
    pub fn replacement(self) -> Option<u32> {
        match self {
            Remaining::Left(n) => Some(n),
            _ => None,
        }
    }
}

impl Message {
    /// Whether the message can expire at all (only then is [`Self::remaining`] worth a clock read).
    #[inline]
    pub fn can_expire(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.received.is_some())
    }

    /// What is left of the expiry interval at `now`: the interval less the whole seconds since the
    /// message was received; expired once none is left.
    pub fn remaining(&self, now: Instant) -> Remaining {
        let Some((interval, received)) = self
            .extra
            .as_ref()
            .and_then(|e| Some((e.properties.message_expiry_interval?, e.received?)))
        else {
            return Remaining::Never;
        };
        let waited = now.saturating_duration_since(received).as_secs();
        match u64::from(interval).checked_sub(waited) {
            None | Some(0) => Remaining::Expired,
            Some(_) if waited == 0 => Remaining::Unchanged,
            Some(left) => Remaining::Left(left as u32),
        }
    }

    /// When the expiry interval passes (None: never).
    pub fn expires_at(&self) -> Option<Instant> {
        let e = self.extra.as_ref()?;
        let interval = e.properties.message_expiry_interval?;
        Some(e.received? + std::time::Duration::from_secs(u64::from(interval)))
    }

    /// The message as received `ago` before this process got it (a copy from another node, whose
    /// clock started when the publishing node received it).
    pub fn received_ago(&mut self, ago: std::time::Duration) {
        if let Some(r) = self.extra.as_mut().and_then(|e| e.received.as_mut()) {
            if let Some(earlier) = r.checked_sub(ago) {
                *r = earlier;
            }
        }
    }

    /// Tests: the message as if received `secs` seconds before now.
    #[cfg(test)]
    pub(crate) fn age_by(&mut self, secs: u64) {
        if let Some(r) = self.extra.as_mut().and_then(|e| e.received.as_mut()) {
            *r -= std::time::Duration::from_secs(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::codec::{QoS, Utf8Bytes};

    fn with_expiry(interval: Option<u32>) -> Message {
        Message::new(
            Utf8Bytes::from_static("t"),
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
            Properties {
                message_expiry_interval: interval,
                ..Properties::default()
            },
            None,
        )
    }

    #[test]
    fn the_interval_is_decremented_by_whole_seconds_and_expires() {
        let m = with_expiry(Some(3));
        assert!(m.can_expire());
        let t0 = m.extra.as_ref().unwrap().received.unwrap();
        assert_eq!(m.remaining(t0), Remaining::Unchanged);
        assert_eq!(
            m.remaining(t0 + Duration::from_millis(999)),
            Remaining::Unchanged
        );
        assert_eq!(
            m.remaining(t0 + Duration::from_millis(1000)),
            Remaining::Left(2)
        );
        assert_eq!(
            m.remaining(t0 + Duration::from_millis(2999)),
            Remaining::Left(1)
        );
        assert_eq!(m.remaining(t0 + Duration::from_secs(3)), Remaining::Expired);
        assert_eq!(
            m.remaining(t0 + Duration::from_secs(99)),
            Remaining::Expired
        );
        assert_eq!(Remaining::Left(2).replacement(), Some(2));
        assert_eq!(Remaining::Unchanged.replacement(), None);
    }

    #[test]
    fn no_interval_or_zero_never_expires() {
        for m in [
            with_expiry(None),
            with_expiry(Some(0)),
            Message::new(
                Utf8Bytes::from_static("t"),
                Bytes::new(),
                QoS::AtMostOnce,
                false,
                Properties::default(),
                None,
            ),
        ] {
            assert!(!m.can_expire());
            let later = Instant::now() + Duration::from_secs(1 << 20);
            assert_eq!(m.remaining(later), Remaining::Never);
        }
    }
}
