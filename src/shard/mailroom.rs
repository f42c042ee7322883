//! The shard's mailroom: its mail to the other shards and the urgent mail it takes outside the mail
//! loop. One per shard, owned by its [`Shard`](super::Shard) and touched on that shard's thread only:
//! packet handling (`packets/`) sends through it, the executor (`executor.rs`) re-sends what was held
//! back and drains the urgent inbox, and connection readers (`connection.rs`) pause on it while mail
//! is held back.
//!
//! Mail that does not fit its destination's bounded mailbox waits here, per destination and in order,
//! for the overflow task; while any waits, readers pause (back-pressure to the publishers). It also
//! remembers the stances this shard told other shards on holding their publishers (`session::hold`),
//! so that it tells each at most once per half lease.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use ahash::AHashMap;

use crate::router::{Mail, MailSenders, ShardId, UrgentInbox};
use crate::session::{HoldSignal, Origin, HOLD_LEASE};

pub(super) struct Mailroom {
    /// This shard.
    me: ShardId,
    shards: usize,
    /// Cluster mode: the link's mailbox (id `shards`), which gets interest changes and the publishes
    /// that match remote interest; in no broadcast to the shards.
    link: Option<ShardId>,
    mail_out: MailSenders,
    /// Urgent mail from other shards (interest changes, holds), drained before each publish is routed.
    urgent_inbox: UrgentInbox,
    /// Mail that did not fit its mailbox, per destination, in order.
    overflow: Vec<VecDeque<Mail>>,
    overflow_len: usize,
    overflow_waker: Option<Waker>,
    /// Connection readers paused while mail is held back (see `overloaded`), woken when the last of it
    /// went out: an event, so thousands of paused readers cost nothing while they wait.
    overload_waiters: Vec<Waker>,
    /// `hold_if_all_behind`: publishers of other shards whose shard this one told where it stands on
    /// holding them (agrees: a hold or a consent, or objects), and when; so it tells each at most once
    /// per half lease (see `session::hold`).
    stances: AHashMap<Origin, (Instant, bool)>,
}

impl Mailroom {
    pub(super) fn new(
        me: ShardId,
        shards: usize,
        link: Option<ShardId>,
        mail_out: MailSenders,
        urgent_inbox: UrgentInbox,
    ) -> Mailroom {
        // Indexed by destination mailbox: the link's included.
        let mailboxes = shards + usize::from(link.is_some());
        Mailroom {
            me,
            shards,
            link,
            mail_out,
            urgent_inbox,
            overflow: (0..mailboxes).map(|_| VecDeque::new()).collect(),
            overflow_len: 0,
            overflow_waker: None,
            overload_waiters: Vec::new(),
            stances: AHashMap::new(),
        }
    }

    /// Send mail to another shard, keeping order behind anything already held back for it. Urgent
    /// mail (interest changes, holds) takes the urgent FIFO instead, ahead of held-back mail (see `router`).
    pub(super) fn send(&mut self, to: ShardId, mail: Mail) {
        if mail.is_urgent() {
            self.mail_out.send_urgent(to, mail);
            return;
        }
        let q = &mut self.overflow[to as usize];
        if q.is_empty() {
            match self.mail_out.try_send(to, mail) {
                Ok(()) => return,
                Err(mail) => q.push_back(mail),
            }
        } else {
            q.push_back(mail);
        }
        self.overflow_len += 1;
        if let Some(w) = self.overflow_waker.take() {
            w.wake();
        }
    }

    /// Tell every other shard, and the cluster link, of an interest change (`InterestAdd` or
    /// `InterestRemove`).
    pub(super) fn tell_interest(&mut self, mut make: impl FnMut() -> Mail) {
        self.broadcast(&mut make);
        if let Some(link) = self.link {
            self.send(link, make());
        }
    }

    /// Send a copy of some mail to every other shard (not to the cluster link).
    pub(super) fn broadcast(&mut self, mut make: impl FnMut() -> Mail) {
        for to in 0..self.shards as ShardId {
            if to != self.me {
                let m = make();
                self.send(to, m);
            }
        }
    }

    /// Whether urgent mail (interest changes, holds) from other shards waits to be applied (one atomic
    /// load).
    pub(super) fn has_urgent_mail(&self) -> bool {
        self.urgent_inbox.has_mail()
    }

    /// The urgent inbox, taken out so that its mail can be handled while it drains; given back with
    /// [`Self::restore_urgent_inbox`].
    pub(super) fn take_urgent_inbox(&mut self) -> UrgentInbox {
        std::mem::take(&mut self.urgent_inbox)
    }

    pub(super) fn restore_urgent_inbox(&mut self, inbox: UrgentInbox) {
        self.urgent_inbox = inbox;
    }

    /// Retry held-back mail; returns whether some is still waiting. When none is left, the readers
    /// paused by [`Self::overloaded`] are woken.
    pub(super) fn flush_overflow(&mut self) -> bool {
        for to in 0..self.overflow.len() {
            while let Some(mail) = self.overflow[to].pop_front() {
                match self.mail_out.try_send(to as ShardId, mail) {
                    Ok(()) => self.overflow_len -= 1,
                    Err(mail) => {
                        self.overflow[to].push_front(mail);
                        break;
                    }
                }
            }
        }
        if self.overflow_len == 0 {
            for w in self.overload_waiters.drain(..) {
                w.wake();
            }
        }
        self.overflow_len > 0
    }

    /// Whether readers should pause because other shards are not keeping up with this one's output:
    /// any mail held back for a full mailbox (bounded mailboxes, back-pressure to the publishers).
    pub(super) fn overloaded(&self) -> bool {
        self.overflow_len > 0
    }

    /// Ready once some mail is held back; otherwise the overflow task's waker waits for it.
    pub(super) fn poll_overflow(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.overflow_len > 0 {
            Poll::Ready(())
        } else {
            self.overflow_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Ready once every piece of held-back mail went out; otherwise Pending until a receiving shard
    /// took mail from one of this shard's mailboxes (see `MailSenders::prepare_space_wait`).
    pub(super) fn poll_overflow_sent(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.flush_overflow() {
            return Poll::Ready(());
        }
        self.mail_out.prepare_space_wait(cx);
        // The re-check after the park mark: a receiver that drained before it is seen here.
        if !self.flush_overflow() {
            self.mail_out.cancel_space_wait();
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Ready once nothing is held back; otherwise the reader's waker waits in `overload_waiters`.
    pub(super) fn poll_unpaused(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.overloaded() {
            return Poll::Ready(());
        }
        // No search for a waker already listed: a paused reader is polled again only when woken
        // (the list is drained then), and a scan per pause would be quadratic with thousands paused.
        self.overload_waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// A subscriber here holds publisher `origin` of another shard: tell its shard, and note that this
    /// shard agrees to the hold.
    pub(super) fn send_hold(
        &mut self,
        origin: Origin,
        signal: HoldSignal,
        insist: bool,
        now: Instant,
    ) {
        self.stances.insert(origin, (now, true));
        self.send(
            origin.0,
            Mail::Hold {
                slot: origin.1,
                from: self.me,
                signal,
                insist,
            },
        );
    }

    /// Tell the shard of publisher `origin` that this shard agrees to it being held (nobody here keeps
    /// up: [`HoldSignal::Consent`]) or objects (`Mail::Object`), unless it was told so within half a
    /// lease.
    pub(super) fn tell_stance(&mut self, origin: Origin, agree: bool, now: Instant) {
        let told = self.stances.get(&origin).is_some_and(|&(sent, agreed)| {
            agreed == agree && now.saturating_duration_since(sent) < HOLD_LEASE / 2
        });
        if told {
            return;
        }
        self.stances.insert(origin, (now, agree));
        let (slot, from) = (origin.1, self.me);
        let mail = if agree {
            Mail::Hold {
                slot,
                from,
                signal: HoldSignal::Consent,
                insist: false,
            }
        } else {
            Mail::Object { slot, from }
        };
        self.send(origin.0, mail);
    }

    /// Forget the stances told whose lease ran out (on every tick).
    pub(super) fn forget_stances(&mut self, now: Instant) {
        if !self.stances.is_empty() {
            self.stances
                .retain(|_, (sent, _)| now.saturating_duration_since(*sent) < HOLD_LEASE);
        }
    }
}
