//! Idempotent publish in memory: the ids a topic saw within `dedup_window`,
//! so that a retried publish is answered like the original instead of
//! being published again.
//!
//! Decisions:
//!
//! - **Ids are kept as keyed 128-bit digests**, not as text: an id may be
//!   128 characters, and a topic may remember `dedup_ids` (default 100,000)
//!   of them. An entry costs 32 bytes in the expiry queue and about 28 in
//!   the map (digest and `seq`, with the table's control byte and load
//!   factor), so a full window is about 6 MB per topic whatever the ids'
//!   length. The key is drawn once per process, so nobody can aim at a
//!   collision; two different ids collide with probability about
//!   n²/2¹²⁹ (below 10⁻²⁸ for a full window).
//! - **Oldest forgotten first**: entries are queued in publish order; the
//!   front goes when it is older than the window or the count is over
//!   `dedup_ids`. A lookup also checks the age, so an entry past the window
//!   is never answered even before it is pruned.
//! - **Under the topic's lock**: the check and the append of the new
//!   message are one step, so two concurrent publishes of one id cannot
//!   both be published.
//! - **A byte budget over all topics** (`--max-dedup-bytes`, counted as
//!   the tables' allocated capacity, [`Dedup::bytes`], not their length,
//!   so the slack of a grown table counts): `dedup_ids` bounds one topic,
//!   but ten thousand busy topics would hold ten thousand windows. Past the
//!   budget, a topic that records an id first forgets two of its own oldest
//!   (it keeps the new one), so the total falls by one id per publish and
//!   the topics that publish most pay for it; a table left half empty is
//!   shrunk. The overshoot is one table doubling at once.
//! - **Expired ids are swept** once a second by the stats task
//!   ([`Dedup::prune`]), so a topic that stopped publishing gives its
//!   window back when it expires, and a burst that filled the budget
//!   degrades the others' windows for at most `dedup_window`.
//! - The clock is monotonic milliseconds since the process started: wall
//!   clock jumps do not stretch or cut the window.

use hashbrown::HashMap;
use std::collections::VecDeque;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The process's two SipHash keys (from the OS's randomness, like
/// `HashMap`'s), fixed for its life so that one id always has one digest.
static KEYS: LazyLock<(RandomState, RandomState)> =
    LazyLock::new(|| (RandomState::new(), RandomState::new()));

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// An id's digest: two independently keyed SipHash-1-3 values. Computed
/// once per publish, before the topic's lock is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Digest([u64; 2]);

impl std::hash::Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0[0]);
    }
}

impl Digest {
    pub(crate) fn of(id: &str) -> Self {
        Digest([KEYS.0.hash_one(id), KEYS.1.hash_one(id)])
    }
}

/// The digest is already uniformly distributed: the map uses its first
/// word as the hash instead of hashing it again.
#[derive(Default)]
struct FirstWord(u64);

impl Hasher for FirstWord {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `Digest` writes one u64; this keeps any other input correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

/// Bytes of one slot of the expiry queue.
const QUEUED_BYTES: usize = std::mem::size_of::<(u64, u64, Digest)>();

/// Milliseconds since the process started.
pub(crate) fn now_ms() -> u64 {
    START.elapsed().as_millis() as u64
}

/// One topic's remembered ids.
#[derive(Default)]
pub(crate) struct Dedup {
    seqs: HashMap<Digest, u64, BuildHasherDefault<FirstWord>>,
    /// `(published at, seq, digest)`, oldest first.
    order: VecDeque<(u64, u64, Digest)>,
}

/// How long and how many ids a topic remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub span: Duration,
    pub ids: usize,
}

impl Window {
    pub(crate) fn enabled(self) -> bool {
        !self.span.is_zero() && self.ids > 0
    }

    fn span_ms(self) -> u64 {
        self.span.as_millis().min(u128::from(u64::MAX)) as u64
    }
}

impl Dedup {
    /// The `seq` of the message published with `id` within the window, if
    /// one was.
    pub(crate) fn lookup(&self, window: Window, id: Digest, now: u64) -> Option<u64> {
        if !window.enabled() || self.order.is_empty() {
            return None;
        }
        let seq = *self.seqs.get(&id)?;
        // The entry for `seq` is in `order`, sorted by seq: find its time.
        let at = self
            .order
            .binary_search_by_key(&seq, |(_, s, _)| *s)
            .ok()
            .map(|i| self.order[i].0)?;
        (now.saturating_sub(at) < window.span_ms()).then_some(seq)
    }

    /// Bytes allocated for the remembered ids: the table's allocation as
    /// it stands (tombstones and free buckets included) and the queue's
    /// capacity.
    pub(crate) fn bytes(&self) -> usize {
        self.seqs.allocation_size() + self.order.capacity() * QUEUED_BYTES
    }

    /// Remembers that the id of `digest` was published as `seq` (increasing from call to
    /// call), after forgetting what is past the window or over the count,
    /// and, when `over_budget`, two more of the oldest (so the topic gives
    /// back one id per publish while the total is over the budget; the id
    /// just recorded always stays). Returns the change in [`Dedup::bytes`].
    pub(crate) fn record(
        &mut self,
        window: Window,
        digest: Digest,
        seq: u64,
        now: u64,
        over_budget: bool,
    ) -> isize {
        if !window.enabled() {
            return 0;
        }
        let before = self.bytes() as isize;
        // Room first: a full table is not grown for an id that replaces one.
        let extra = if over_budget { 2 } else { 0 };
        self.forget(window, now, window.ids - 1, extra);
        // Removals leave tombstones, and hashbrown doubles a table with no
        // room left that is over half full, though it may hold fewer ids
        // than ever (as here, where every insert follows a removal). Under
        // the budget that is allowed (and counted): the doubled table then
        // rehashes in place rarely. Over it, a table with no room is
        // rebuilt for one more id than it holds, the same size without
        // the tombstones (O(n), once the room is used up).
        if over_budget && self.seqs.capacity() == self.seqs.len() {
            let mut rebuilt =
                HashMap::with_capacity_and_hasher(self.seqs.len() + 1, Default::default());
            rebuilt.extend(self.seqs.drain());
            self.seqs = rebuilt;
        }
        self.seqs.insert(digest, seq);
        self.order.push_back((now, seq, digest));
        self.shrink(over_budget);
        self.bytes() as isize - before
    }

    /// Forgets what is past the window (the broker's sweep, once a second,
    /// so that a topic that stopped publishing gives its ids back too).
    /// Returns the change in [`Dedup::bytes`].
    pub(crate) fn prune(&mut self, window: Window, now: u64) -> isize {
        if self.order.is_empty() && self.seqs.capacity() == 0 {
            return 0;
        }
        let before = self.bytes() as isize;
        self.forget(window, now, window.ids, 0);
        self.shrink(false);
        self.bytes() as isize - before
    }

    /// Pops the oldest while they are past the window or more than
    /// `keep_at_most`, and `extra` more.
    fn forget(&mut self, window: Window, now: u64, keep_at_most: usize, mut extra: usize) {
        let span = window.span_ms();
        while let Some(&(at, old_seq, old)) = self.order.front() {
            if self.order.len() <= keep_at_most && now.saturating_sub(at) < span {
                if extra == 0 {
                    break;
                }
                extra -= 1;
            }
            self.order.pop_front();
            // The id may have been published again since (after its first
            // entry expired): only its own entry is removed.
            if self.seqs.get(&old) == Some(&old_seq) {
                self.seqs.remove(&old);
            }
        }
    }

    /// Gives memory back: all of it when nothing is remembered; a table
    /// left mostly empty by a burst that is gone (half empty while over
    /// the budget) is shrunk.
    fn shrink(&mut self, over_budget: bool) {
        let len = self.seqs.len();
        let capacity = self.seqs.capacity();
        if len == 0 {
            if capacity > 0 || self.order.capacity() > 0 {
                *self = Dedup::default();
            }
            return;
        }
        let slack = if over_budget { 2 } else { 4 };
        if (over_budget || capacity > 1024) && len < capacity / slack {
            self.seqs.shrink_to(len * 2);
            self.order.shrink_to(len * 2);
        }
    }

    /// Forgets everything (the topic is deleted); returns the bytes freed.
    pub(crate) fn clear(&mut self) -> usize {
        let freed = self.bytes();
        *self = Dedup::default();
        freed
    }

    /// Ids remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seqs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Window = Window {
        span: Duration::from_secs(120),
        ids: 3,
    };

    #[test]
    fn a_seen_id_answers_its_seq_within_the_window() {
        let mut d = Dedup::default();
        assert_eq!(d.lookup(WINDOW, Digest::of("a"), 0), None);
        d.record(WINDOW, Digest::of("a"), 1, 0, false);
        d.record(WINDOW, Digest::of("b"), 2, 10, false);
        assert_eq!(d.lookup(WINDOW, Digest::of("a"), 119_999), Some(1));
        assert_eq!(d.lookup(WINDOW, Digest::of("b"), 120_009), Some(2));
        assert_eq!(
            d.lookup(WINDOW, Digest::of("a"), 120_000),
            None,
            "past the window"
        );
        assert_eq!(d.lookup(WINDOW, Digest::of("c"), 5), None);
        assert_eq!(
            d.lookup(WINDOW, Digest::of("A"), 5),
            None,
            "ids are compared exactly"
        );
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_count_or_the_window() {
        let mut d = Dedup::default();
        for (seq, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            d.record(WINDOW, Digest::of(id), seq as u64 + 1, 0, false);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(
            d.lookup(WINDOW, Digest::of("a"), 0),
            None,
            "over dedup_ids: forgotten"
        );
        assert_eq!(d.lookup(WINDOW, Digest::of("d"), 0), Some(4));
        // Time passes: the next record prunes everything expired.
        d.record(WINDOW, Digest::of("e"), 5, 200_000, false);
        assert_eq!(d.len(), 1);
        assert_eq!(d.lookup(WINDOW, Digest::of("b"), 200_000), None);
    }

    #[test]
    fn an_id_published_again_after_expiry_keeps_its_new_seq() {
        let mut d = Dedup::default();
        d.record(WINDOW, Digest::of("a"), 1, 0, false);
        d.record(WINDOW, Digest::of("a"), 2, 130_000, false);
        // Pruning a's first entry must not forget its second.
        d.record(WINDOW, Digest::of("b"), 3, 130_001, false);
        assert_eq!(d.lookup(WINDOW, Digest::of("a"), 130_002), Some(2));
    }

    #[test]
    fn over_the_budget_a_topic_gives_back_one_id_per_publish() {
        let mut d = Dedup::default();
        assert!(
            d.record(WINDOW, Digest::of("a"), 1, 0, false) > 0,
            "a table was allocated"
        );
        d.record(WINDOW, Digest::of("b"), 2, 0, false);
        d.record(WINDOW, Digest::of("c"), 3, 0, false);
        // Full (dedup_ids 3) and over budget: one goes for the count and two
        // more for the budget; the new id stays.
        d.record(WINDOW, Digest::of("d"), 4, 0, true);
        assert_eq!((d.len(), d.lookup(WINDOW, Digest::of("c"), 0)), (1, None));
        assert_eq!(d.lookup(WINDOW, Digest::of("d"), 0), Some(4));
        d.record(WINDOW, Digest::of("e"), 5, 0, false);
        assert_eq!(
            (d.len(), d.lookup(WINDOW, Digest::of("d"), 0)),
            (2, Some(4))
        );
        d.record(WINDOW, Digest::of("e2"), 6, 0, true);
        assert_eq!(
            (d.len(), d.lookup(WINDOW, Digest::of("e2"), 0)),
            (1, Some(6))
        );
        d.record(WINDOW, Digest::of("f"), 7, 0, true);
        assert_eq!(
            (d.len(), d.lookup(WINDOW, Digest::of("f"), 0)),
            (1, Some(7)),
            "the newest stays"
        );
        let held = d.bytes();
        assert!(held > 0);
        assert_eq!(d.clear(), held);
        assert_eq!((d.bytes(), d.lookup(WINDOW, Digest::of("f"), 0)), (0, None));
    }

    #[test]
    fn the_sweep_gives_back_what_expired_without_a_publish() {
        let mut d = Dedup::default();
        let mut total = d.record(WINDOW, Digest::of("a"), 1, 0, false);
        total += d.record(WINDOW, Digest::of("b"), 2, 60_000, false);
        assert_eq!(d.prune(WINDOW, 119_999), 0, "nothing expired yet");
        total += d.prune(WINDOW, 120_000);
        assert_eq!(
            (d.len(), d.lookup(WINDOW, Digest::of("b"), 120_000)),
            (1, Some(2))
        );
        total += d.prune(WINDOW, 180_000);
        assert_eq!((d.len(), d.bytes()), (0, 0), "all memory given back");
        assert_eq!(total, 0);
    }

    #[test]
    fn bytes_follow_the_allocation_and_shrink_back_over_budget() {
        let window = Window {
            span: Duration::from_secs(120),
            ids: 100_000,
        };
        let mut d = Dedup::default();
        let mut total: isize = 0;
        for seq in 1..=10_000u64 {
            total += d.record(window, Digest::of(&format!("id-{seq}")), seq, 0, false);
        }
        assert_eq!(total, d.bytes() as isize, "the changes add up to the bytes");
        assert!(d.bytes() >= 10_000 * (24 + QUEUED_BYTES), "{}", d.bytes());
        let full = d.bytes();
        // Over budget each record removes two and adds one: it drains to
        // its newest, shrinking on the way.
        for seq in 10_001..=20_000u64 {
            total += d.record(window, Digest::of(&format!("id-{seq}")), seq, 0, true);
        }
        assert_eq!(total, d.bytes() as isize);
        assert_eq!(d.len(), 1);
        assert!(d.bytes() < full / 100, "{} of {full} bytes left", d.bytes());
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let off = Window {
            span: Duration::ZERO,
            ids: 3,
        };
        let mut d = Dedup::default();
        d.record(off, Digest::of("a"), 1, 0, false);
        assert_eq!(d.len(), 0);
        assert_eq!(d.lookup(off, Digest::of("a"), 0), None);
    }

    #[test]
    fn many_ids_stay_bounded_and_distinct() {
        let window = Window {
            span: Duration::from_secs(120),
            ids: 10_000,
        };
        let mut d = Dedup::default();
        for seq in 1..=50_000u64 {
            let id = format!("id-{seq}");
            assert_eq!(d.lookup(window, Digest::of(&id), seq), None, "{id} is new");
            d.record(window, Digest::of(&id), seq, seq, false);
        }
        assert_eq!(d.len(), 10_000);
        assert_eq!(
            d.lookup(window, Digest::of("id-50000"), 50_000),
            Some(50_000)
        );
        assert_eq!(
            d.lookup(window, Digest::of("id-40001"), 50_000),
            Some(40_001)
        );
        assert_eq!(d.lookup(window, Digest::of("id-40000"), 50_000), None);
    }
}
