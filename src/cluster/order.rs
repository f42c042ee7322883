//! One node's copies to another keep their order across the two paths they take (docs/CLUSTER.md,
//! "Order across QoS levels"): QoS 0 on core NATS, QoS 1/2 in batches through JetStream. Either
//! may come first: core NATS is usually a millisecond ahead, but a batch stored on the receiving
//! node's own NATS server can overtake a core message crossing a busy route. A client that
//! publishes at QoS 1 then QoS 0, or QoS 0 then QoS 1, would have a subscriber on another node get
//! them the other way round, which a single broker (and Mosquitto) never does.
//!
//! So the sending link numbers, per receiving node, the batches it starts and the QoS 0 copies it
//! sends. A QoS 0 copy names the batch and frame it comes after (the node's open batch and the
//! frames in it so far, or the whole of the last batch) and its own number
//! (`Shardmq-After: <node> <run> <batch> <frame> <copy>`); a batch names itself and the number of
//! QoS 0 copies sent before it was handed to NATS (`Shardmq-Batch: <node> <run> <batch> <copies>`),
//! those sent while it was open included. The receiving link ([`Holding`]) holds a copy until the
//! frame before it was routed, and a batch until the copies before it, and among it, came; it
//! routes those among it between its frames. Batching stays as it was: a QoS 0 copy does not cut
//! a batch short. Each waits a bounded time: a QoS 0 copy may be lost (NATS drops them for a slow
//! consumer), a batch may have been taken by this node's previous run or kept by a sender that
//! died during a NATS outage. Batches come in order already (one sender's JetStream publishes are
//! stored in the order sent, one pull consumer reads them in stream order), and so do one sender's
//! core messages.
//!
//! Sans-IO: no NATS here, the link passes headers in and takes what to route out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// The header of a JetStream batch: `<node> <run> <batch> <copies>`, its sender, the sender's run
/// (its start time), its number among the batches that run started for the receiving node, and
/// how many QoS 0 copies the run sent that node before it.
pub const BATCH_HEADER: &str = "Shardmq-Batch";
/// The header of a QoS 0 copy: `<node> <run> <batch> <frame> <copy>`, the batch for its node it
/// comes after (the open one, or the last one) and the frames of that batch before it ([`WHOLE`]:
/// all), and its own number among the QoS 0 copies for that node.
pub const AFTER_HEADER: &str = "Shardmq-After";

/// The frame number of a copy that comes after the whole of its batch.
pub const WHOLE: u64 = u64::MAX;

/// The longest a QoS 0 copy waits for the batch before it.
pub const HOLD_LIMIT: Duration = Duration::from_secs(3);

/// The longest a batch waits for the QoS 0 copies before it (they may have been dropped); the link
/// takes no other batch meanwhile.
pub const BATCH_WAIT: Duration = Duration::from_millis(250);

/// Copies held for one sender, at most; past it the oldest go out unordered.
pub const HELD_MAX: usize = 10_000;

/// How long a sender with nothing held is remembered after its last copy.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// The sending side: per receiving node, batches started and QoS 0 copies sent, in this run.
pub struct Numbering {
    /// `<node> <run>`.
    tag: String,
    /// Receiving node -> (batches, copies).
    sent: AHashMap<String, (u64, u64)>,
}

impl Numbering {
    pub fn new(node: &str, run: u64) -> Numbering {
        Numbering {
            tag: format!("{node} {run:x}"),
            sent: AHashMap::new(),
        }
    }

    /// A batch for `to` starts: its number.
    pub fn start_batch(&mut self, to: &str) -> u64 {
        let (batches, _) = self.sent.entry(to.to_owned()).or_default();
        *batches += 1;
        *batches
    }

    /// Batch `n` for `to` is handed to NATS: the value of its [`BATCH_HEADER`].
    pub fn batch_header(&self, to: &str, n: u64) -> String {
        let copies = self.sent.get(to).map_or(0, |s| s.1);
        format!("{} {n} {copies}", self.tag)
    }

    /// A QoS 0 copy for `to` is sent after `frames` frames of that node's open batch (None: there
    /// is none open): the value of its [`AFTER_HEADER`]. None before the first batch for `to`:
    /// such copies are not numbered, so that a node sent only QoS 0 pays nothing for this.
    pub fn copy(&mut self, to: &str, frames: Option<u64>) -> Option<String> {
        let (batches, copies) = self.sent.get_mut(to)?;
        *copies += 1;
        let frame = frames.unwrap_or(WHOLE);
        Some(format!("{} {batches} {frame} {copies}", self.tag))
    }
}

/// A header's value: its sender (`<node> <run>`) and its `N` numbers.
pub fn parse<const N: usize>(value: &str) -> Option<(&str, [u64; N])> {
    let mut parts = value.rsplitn(N + 1, ' ');
    let mut numbers = [0u64; N];
    for n in numbers.iter_mut().rev() {
        *n = parts.next()?.parse().ok()?;
    }
    let tag = parts.next()?;
    tag.contains(' ').then_some(())?;
    Some((tag, numbers))
}

/// What the receiving link routes, in this order.
#[derive(Debug, PartialEq, Eq)]
pub enum Take<C, B> {
    Copy(C),
    /// A batch, its sender and number: the caller routes its frames in order, calling
    /// [`Holding::frame_done`] after each and [`Holding::batch_done`] after the last.
    Batch(B, String, u64),
}

/// The receiving side: per sender, what came, and what is held for what did not.
pub struct Holding<C, B> {
    senders: AHashMap<String, Sender<C>>,
    /// A batch waiting for the QoS 0 copies before it: its sender, number, copies before it,
    /// since when.
    batch: Option<(String, u64, u64, Instant, B)>,
}

struct Sender<C> {
    /// The last batch routed.
    batches: u64,
    /// The last QoS 0 copy that came.
    copies: u64,
    held: VecDeque<Held<C>>,
    last: Instant,
}

struct Held<C> {
    /// The batch and frame it comes after.
    after: (u64, u64),
    since: Instant,
    item: C,
}

impl<C, B> Default for Holding<C, B> {
    fn default() -> Self {
        Holding {
            senders: AHashMap::new(),
            batch: None,
        }
    }
}

impl<C, B> Holding<C, B> {
    fn sender(&mut self, tag: &str, now: Instant) -> &mut Sender<C> {
        if !self.senders.contains_key(tag) {
            self.senders.insert(
                tag.to_owned(),
                Sender {
                    batches: 0,
                    copies: 0,
                    held: VecDeque::new(),
                    last: now,
                },
            );
        }
        let s = self.senders.get_mut(tag).expect("just put");
        s.last = now;
        s
    }

    /// QoS 0 copy number `copy` from `tag`, sent after frame `after.1` of its batch `after.0`:
    /// into `out` now, or held.
    pub fn copy(
        &mut self,
        tag: &str,
        after: (u64, u64),
        copy: u64,
        item: C,
        now: Instant,
        out: &mut Vec<Take<C, B>>,
    ) {
        let s = self.sender(tag, now);
        s.copies = s.copies.max(copy);
        if s.held.is_empty() && after.0 <= s.batches {
            out.push(Take::Copy(item));
        } else {
            s.held.push_back(Held {
                after,
                since: now,
                item,
            });
            if s.held.len() > HELD_MAX {
                let h = s.held.pop_front().expect("not empty");
                s.batches = s.batches.max(h.after.0);
                out.push(Take::Copy(h.item));
                s.release(out);
            }
        }
        let copies = s.copies;
        if self
            .batch
            .as_ref()
            .is_some_and(|b| b.0 == tag && b.2 <= copies)
        {
            self.release_batch(now, out);
        }
    }

    /// Batch `n` from `tag`, sent after its QoS 0 copy `copies`: into `out` now, after the copies
    /// sent before it, or held until they come ([`Holding::waiting`]).
    pub fn batch(
        &mut self,
        tag: &str,
        n: u64,
        copies: u64,
        item: B,
        now: Instant,
        out: &mut Vec<Take<C, B>>,
    ) {
        debug_assert!(self.batch.is_none(), "one batch held at a time");
        self.batch = Some((tag.to_owned(), n, copies, now, item));
        if self.sender(tag, now).copies >= copies {
            self.release_batch(now, out);
        }
    }

    /// Until when the batch held waits, if one is: the link takes no other meanwhile.
    pub fn waiting(&self) -> Option<Instant> {
        self.batch.as_ref().map(|b| b.3 + BATCH_WAIT)
    }

    fn release_batch(&mut self, now: Instant, out: &mut Vec<Take<C, B>>) {
        let Some((tag, n, copies, _, item)) = self.batch.take() else {
            return;
        };
        let s = self.sender(&tag, now);
        // The copies sent before it go first; those it lacks are taken as lost.
        s.copies = s.copies.max(copies);
        s.batches = s.batches.max(n.saturating_sub(1));
        s.release(out);
        out.push(Take::Batch(item, tag, n));
    }

    /// Frame `frame` of batch `n` from `tag` was routed: `out` gets the copies sent after it.
    pub fn frame_done(&mut self, tag: &str, n: u64, frame: u64, out: &mut Vec<C>) {
        if let Some(s) = self.senders.get_mut(tag) {
            s.release_while(|(b, f)| b < n || (b == n && f <= frame), |c| out.push(c));
        }
    }

    /// Batch `n` from `tag` was routed, every frame: `out` gets the copies sent after it.
    pub fn batch_done(&mut self, tag: &str, n: u64, now: Instant, out: &mut Vec<C>) {
        let s = self.sender(tag, now);
        s.batches = s.batches.max(n);
        let batches = s.batches;
        s.release_while(|(b, _)| b <= batches, |c| out.push(c));
    }

    /// What waited too long, into `out`: a batch held past [`BATCH_WAIT`], copies held past
    /// [`HOLD_LIMIT`] and those behind them that may go with them (their batches are taken as
    /// come: lost, or read by this node's previous run).
    pub fn expired(&mut self, now: Instant, out: &mut Vec<Take<C, B>>) {
        if self.waiting().is_some_and(|until| until <= now) {
            self.release_batch(now, out);
        }
        self.senders.retain(|_, s| {
            while let Some(h) = s.held.front() {
                if now.saturating_duration_since(h.since) < HOLD_LIMIT {
                    break;
                }
                let h = s.held.pop_front().expect("not empty");
                s.batches = s.batches.max(h.after.0);
                out.push(Take::Copy(h.item));
                s.release(out);
            }
            !s.held.is_empty() || now.saturating_duration_since(s.last) < FORGET_AFTER
        });
    }

    /// Copies held, in all.
    pub fn held_copies(&self) -> usize {
        self.senders.values().map(|s| s.held.len()).sum()
    }
}

impl<C> Sender<C> {
    /// The copies whose batches came, in order, into `out`.
    fn release<B>(&mut self, out: &mut Vec<Take<C, B>>) {
        let batches = self.batches;
        self.release_while(|(b, _)| b <= batches, |c| out.push(Take::Copy(c)));
    }

    /// The copies at the front whose (batch, frame) is `due`, in order.
    fn release_while(&mut self, due: impl Fn((u64, u64)) -> bool, mut out: impl FnMut(C)) {
        while self.held.front().is_some_and(|h| due(h.after)) {
            out(self.held.pop_front().expect("not empty").item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = Take<&'static str, &'static str>;

    /// Routes what `out` says as the link does, a batch being `frames` frames named
    /// `<batch>/<frame>`, and gives the order.
    fn route(h: &mut Holding<&'static str, &'static str>, out: Vec<T>, frames: u64) -> Vec<String> {
        let mut routed = Vec::new();
        for t in out {
            match t {
                Take::Copy(c) => routed.push(c.to_owned()),
                Take::Batch(b, tag, n) => {
                    for f in 1..=frames {
                        routed.push(format!("{b}/{f}"));
                        let mut copies = Vec::new();
                        h.frame_done(&tag, n, f, &mut copies);
                        routed.extend(copies.into_iter().map(str::to_owned));
                    }
                    let mut after = Vec::new();
                    h.batch_done(&tag, n, Instant::now(), &mut after);
                    routed.extend(after.into_iter().map(str::to_owned));
                }
            }
        }
        routed
    }

    #[test]
    fn numbers_count_batches_and_copies_per_node_and_parse_back() {
        let mut n = Numbering::new("n1", 0xab);
        assert_eq!(n.copy("n2", None), None, "no batch yet: not numbered");
        assert_eq!(n.start_batch("n2"), 1);
        assert_eq!(n.copy("n2", Some(3)).as_deref(), Some("n1 ab 1 3 1"));
        assert_eq!(n.batch_header("n2", 1), "n1 ab 1 1");
        assert_eq!(
            n.copy("n2", None),
            Some(format!("n1 ab 1 {WHOLE} 2")),
            "after the whole of batch 1"
        );
        assert_eq!(n.start_batch("n2"), 2);
        assert_eq!(n.batch_header("n2", 2), "n1 ab 2 2");
        assert_eq!(n.start_batch("n3"), 1);
        assert_eq!(n.batch_header("n3", 1), "n1 ab 1 0");
        assert_eq!(parse::<2>("n1 ab 2 7"), Some(("n1 ab", [2, 7])));
        assert_eq!(parse::<3>("n1 ab 2 5 7"), Some(("n1 ab", [2, 5, 7])));
        assert_eq!(parse::<2>("n1 ab x 7"), None);
        assert_eq!(parse::<2>("ab 2 7"), None, "a sender is a node and a run");
        assert_eq!(parse::<3>("n1 ab 2 7"), None);
        assert_eq!(parse::<2>(""), None);
    }

    #[test]
    fn copies_go_between_the_frames_they_were_sent_between() {
        let now = Instant::now();
        let mut h = Holding::default();
        let mut out: Vec<T> = Vec::new();
        // Batch 1 (3 frames) was open when x (after its frame 1) and y (after frame 3) were sent;
        // z after the whole of it. They come first.
        h.copy("a 1", (1, 1), 1, "x", now, &mut out);
        h.copy("a 1", (1, 3), 2, "y", now, &mut out);
        h.copy("a 1", (1, WHOLE), 3, "z", now, &mut out);
        // Another sender is not held by this one.
        h.copy("b 1", (0, WHOLE), 1, "other", now, &mut out);
        assert_eq!(h.held_copies(), 3);
        h.batch("a 1", 1, 2, "B1", now, &mut out);
        assert_eq!(
            route(&mut h, std::mem::take(&mut out), 3),
            ["other", "B1/1", "x", "B1/2", "B1/3", "y", "z"]
        );
        h.copy("a 1", (1, WHOLE), 4, "w", now, &mut out);
        assert_eq!(route(&mut h, std::mem::take(&mut out), 3), ["w"]);
    }

    #[test]
    fn a_batch_waits_for_the_copies_sent_before_and_among_it() {
        let now = Instant::now();
        let mut h = Holding::default();
        let mut out: Vec<T> = Vec::new();
        h.batch("a 1", 1, 0, "B1", now, &mut out);
        assert_eq!(route(&mut h, std::mem::take(&mut out), 1), ["B1/1"]);
        // Copy 1 before batch 2, copy 2 after its first frame: it waits for both.
        h.batch("a 1", 2, 2, "B2", now, &mut out);
        assert!(out.is_empty());
        assert_eq!(h.waiting(), Some(now + BATCH_WAIT));
        h.copy("a 1", (1, WHOLE), 1, "c1", now, &mut out);
        assert_eq!(route(&mut h, std::mem::take(&mut out), 2), ["c1"]);
        h.copy("a 1", (2, 1), 2, "c2", now, &mut out);
        assert_eq!(
            route(&mut h, std::mem::take(&mut out), 2),
            ["B2/1", "c2", "B2/2"]
        );
        assert_eq!(h.waiting(), None);
        // A copy lost before batch 3: the batch goes when its wait is over.
        h.batch("a 1", 3, 3, "B3", now, &mut out);
        h.expired(now + BATCH_WAIT / 2, &mut out);
        assert!(out.is_empty());
        h.expired(now + BATCH_WAIT, &mut out);
        assert_eq!(route(&mut h, std::mem::take(&mut out), 1), ["B3/1"]);
        h.copy("a 1", (3, WHOLE), 4, "c4", now + BATCH_WAIT, &mut out);
        assert_eq!(route(&mut h, std::mem::take(&mut out), 1), ["c4"]);
    }

    #[test]
    fn a_copy_that_never_gets_its_batch_waits_at_most_the_limit() {
        let now = Instant::now();
        let mut h = Holding::default();
        let mut out: Vec<T> = Vec::new();
        h.copy("a 1", (5, WHOLE), 1, "1", now, &mut out);
        h.copy("a 1", (5, WHOLE), 2, "2", now + HOLD_LIMIT / 2, &mut out);
        h.copy("a 1", (6, WHOLE), 3, "3", now + HOLD_LIMIT / 2, &mut out);
        h.expired(now + HOLD_LIMIT / 2, &mut out);
        assert!(out.is_empty());
        h.expired(now + HOLD_LIMIT, &mut out);
        // 1 expired; 2 waited for the same batch, now taken as come; 3 still waits for batch 6.
        assert_eq!(route(&mut h, std::mem::take(&mut out), 1), ["1", "2"]);
        h.copy("a 1", (6, WHOLE), 4, "4", now + HOLD_LIMIT, &mut out);
        assert!(out.is_empty(), "behind 3");
        h.batch("a 1", 6, 3, "B6", now + HOLD_LIMIT, &mut out);
        assert_eq!(
            route(&mut h, std::mem::take(&mut out), 1),
            ["B6/1", "3", "4"]
        );
    }

    #[test]
    fn too_many_held_go_out_oldest_first() {
        let now = Instant::now();
        let mut h: Holding<usize, ()> = Holding::default();
        let mut out = Vec::new();
        for i in 0..HELD_MAX {
            h.copy("a 1", (1, WHOLE), i as u64 + 1, i, now, &mut out);
        }
        assert!(out.is_empty());
        h.copy(
            "a 1",
            (1, WHOLE),
            HELD_MAX as u64 + 1,
            HELD_MAX,
            now,
            &mut out,
        );
        // The oldest went, and with batch 1 taken as come, every one waiting for it.
        let got: Vec<usize> = out
            .iter()
            .map(|t| match t {
                Take::Copy(i) => *i,
                Take::Batch(..) => panic!("no batch"),
            })
            .collect();
        assert_eq!(got, (0..=HELD_MAX).collect::<Vec<_>>());
        assert_eq!(h.held_copies(), 0);
    }

    #[test]
    fn a_quiet_sender_is_forgotten() {
        let now = Instant::now();
        let mut h: Holding<u8, u8> = Holding::default();
        let mut out = Vec::new();
        h.batch("a 1", 3, 0, 0, now, &mut out);
        h.batch_done("a 1", 3, now, &mut Vec::new());
        h.expired(now + FORGET_AFTER, &mut out);
        assert!(h.senders.is_empty());
    }
}
