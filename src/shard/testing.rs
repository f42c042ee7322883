//! Test support for a shard without sockets: shard 0 of a broker of N shards built directly, sessions
//! attached to it, and packets handed to [`Shard::handle_packet`] as a connection's reader would. The
//! other shards are their mailboxes only: what shard 0 sends them is read from `matrix`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::codec::{
    Connect, Packet, Properties, ProtocolVersion, QoS, Subscribe, SubscribeFilter,
    SubscriptionOptions, Utf8Bytes,
};
use crate::router::{Mail, MailboxMatrix};
use crate::session::Outbox;
use crate::settings::Settings;
use crate::shard::attached::Attached;
use crate::shard::{ConnectionCounts, Shard};

pub(crate) struct Fixture {
    pub(crate) shard: Shard,
    /// Keeps the other shards' mailboxes open; read what shard 0 sent them with [`Fixture::mail_to`].
    pub(crate) matrix: MailboxMatrix,
    /// Shard 1's sending end, for mail "from" it.
    pub(crate) other: Option<crate::router::MailSenders>,
}

impl Fixture {
    /// Shard 0 of `settings.shards` shards.
    pub(crate) fn new(settings: Settings) -> Fixture {
        let settings_shards = settings.shards;
        let mut matrix = MailboxMatrix::new(settings.shards);
        let mut outboxes = std::mem::take(&mut matrix.mail_out).into_iter();
        let own = outboxes.next().expect("shard 0");
        let other = outboxes.next();
        let shard = Shard::new(
            0,
            Arc::new(settings),
            own,
            matrix.inboxes[0].urgent(),
            Arc::new(ConnectionCounts::new(1)),
            Instant::now(),
            1,
            crate::shard::RetainedStripes::new(settings_shards),
        );
        Fixture {
            shard,
            matrix,
            other,
        }
    }

    /// The mail shard 0 sent shard `to` since the last call, in order (urgent mail first).
    pub(crate) fn mail_to(&self, to: usize) -> Vec<Mail> {
        let mut batch = Vec::new();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = self.matrix.inboxes[to].poll_recv(&mut cx, &mut batch);
        batch
    }
}

/// A 3.1.1 client `id` attached to `shard` (clean session, keep-alive 60).
pub(crate) fn connect(shard: &mut Shard, id: &'static str) -> Attached {
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
    shard.attach(&connect, Properties::default(), Rc::new(Outbox::new()), 0)
}

/// `a` subscribes to `filter` at `qos` (packet id 1).
pub(crate) fn subscribe(shard: &mut Shard, a: &mut Attached, filter: &'static str, qos: QoS) {
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
