//! The link's ends of the shards' mailbox matrix: its inbox (mail from every shard) and its row of
//! mailboxes to them, with the mail held back while one is full (docs/CLUSTER.md, "The link: a
//! virtual shard").
//!
//! Owned by the link's thread. The shards wake it through the same no-lost-wake-up handshake they
//! use among themselves (`router::ParkFlag`), which works for a tokio task as for a glommio one: it
//! is a `Waker`. Mail the link sends keeps the matrix's per-pair FIFO order: interest changes on the
//! urgent lane, messages on the bounded one, held back here in order while it is full.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use crate::router::{Inbox, Mail, MailSenders, MailboxEnds, ShardId};

/// Messages held back for full shard mailboxes, in all, beyond which the link stops taking messages
/// from NATS until the shards catch up (NATS then buffers, and past its own limit drops QoS 0 for a
/// slow consumer, as a broker drops QoS 0 for a slow subscriber).
pub const HELD_LIMIT: usize = 4096;

pub struct Post {
    mail_out: MailSenders,
    inbox: Inbox,
    /// Kept so that the link's control channel stays open (nothing sends on it).
    _control: crate::router::ControlSender,
    shards: usize,
    /// Per shard, the mail that did not fit its mailbox, in order.
    held: Vec<VecDeque<Mail>>,
    held_len: usize,
}

impl Post {
    pub fn new(ends: MailboxEnds, shards: usize) -> Post {
        Post {
            mail_out: ends.mail_out,
            inbox: ends.inbox,
            _control: ends.control,
            shards,
            held: (0..shards).map(|_| VecDeque::new()).collect(),
            held_len: 0,
        }
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Send `mail` to shard `to`, behind what is held back for it.
    pub fn send(&mut self, to: ShardId, mail: Mail) {
        if mail.is_urgent() {
            self.mail_out.send_urgent(to, mail);
            return;
        }
        let q = &mut self.held[usize::from(to)];
        if q.is_empty() {
            match self.mail_out.try_send(to, mail) {
                Ok(()) => return,
                Err(mail) => q.push_back(mail),
            }
        } else {
            q.push_back(mail);
        }
        self.held_len += 1;
    }

    /// Urgent mail (interest changes) to every shard.
    pub fn tell_shards(&mut self, mut make: impl FnMut() -> Mail) {
        for to in 0..self.shards as ShardId {
            self.mail_out.send_urgent(to, make());
        }
    }

    /// Whether the link should stop taking messages from NATS for now.
    pub fn full(&self) -> bool {
        self.held_len >= HELD_LIMIT
    }

    fn flush(&mut self) -> bool {
        for (to, q) in self.held.iter_mut().enumerate() {
            while let Some(mail) = q.pop_front() {
                match self.mail_out.try_send(to as ShardId, mail) {
                    Ok(()) => self.held_len -= 1,
                    Err(mail) => {
                        q.push_front(mail);
                        break;
                    }
                }
            }
        }
        self.held_len > 0
    }

    /// Ready when mail from the shards is in `batch`, or when the last of the mail held back went
    /// out (the link may take messages from NATS again). Never ready with a control command: none is
    /// sent to the link.
    pub fn poll(&mut self, cx: &mut Context<'_>, batch: &mut Vec<Mail>) -> Poll<()> {
        if self.held_len > 0 {
            if !self.flush() {
                return Poll::Ready(());
            }
            // The shards' own overflow handshake (`Mailroom::poll_overflow_sent`): mark the wait,
            // then look once more, so a shard that made room meanwhile is not missed.
            self.mail_out.prepare_space_wait(cx);
            if !self.flush() {
                self.mail_out.cancel_space_wait();
                return Poll::Ready(());
            }
        }
        match self.inbox.poll_recv(cx, batch) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}
