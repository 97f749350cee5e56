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
//! - **A byte budget over all topics** (`--max-dedup-bytes`, counted at
//!   [`ENTRY_BYTES`] an id): `dedup_ids` bounds one topic, but ten thousand
//!   busy topics would hold ten thousand windows. Past the budget, a topic
//!   that records an id forgets one more of its own oldest (keeping at
//!   least the newest), so the total stops growing and the topics that
//!   publish most pay for it; a quiet
//!   topic keeps its window (its ids expire by age, and are pruned at its
//!   next publish or when it is deleted).
//! - The clock is monotonic milliseconds since the process started: wall
//!   clock jumps do not stretch or cut the window.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The process's two SipHash keys (from the OS's randomness, like
/// `HashMap`'s), fixed for its life so that one id always has one digest.
static KEYS: LazyLock<(RandomState, RandomState)> =
    LazyLock::new(|| (RandomState::new(), RandomState::new()));

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// An id's digest: two independently keyed SipHash-1-3 values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest([u64; 2]);

impl std::hash::Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0[0]);
    }
}

impl Digest {
    fn of(id: &str) -> Self {
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

/// What one remembered id is counted as against `--max-dedup-bytes`: its
/// entry in the expiry queue (32 bytes) and in the table (24 bytes, with
/// the control byte and the load factor about 28).
pub(crate) const ENTRY_BYTES: usize = 60;

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
    pub(crate) fn lookup(&self, window: Window, id: &str, now: u64) -> Option<u64> {
        if !window.enabled() || self.order.is_empty() {
            return None;
        }
        let seq = *self.seqs.get(&Digest::of(id))?;
        // The entry for `seq` is in `order`, sorted by seq: find its time.
        let at = self
            .order
            .binary_search_by_key(&seq, |(_, s, _)| *s)
            .ok()
            .map(|i| self.order[i].0)?;
        (now.saturating_sub(at) < window.span_ms()).then_some(seq)
    }

    /// Remembers that `id` was published as `seq` (increasing from call to
    /// call), forgetting what is past the window or over the count, and one
    /// more of the oldest when `over_budget`. Returns the change in the
    /// number of ids remembered.
    pub(crate) fn record(
        &mut self,
        window: Window,
        id: &str,
        seq: u64,
        now: u64,
        over_budget: bool,
    ) -> isize {
        if !window.enabled() {
            return 0;
        }
        let before = self.order.len() as isize;
        let digest = Digest::of(id);
        self.seqs.insert(digest, seq);
        self.order.push_back((now, seq, digest));
        let span = window.span_ms();
        // Over budget, one more goes, but never the id just recorded: each
        // topic keeps at least its newest (the total stays within the
        // budget plus one id per topic).
        let mut extra = usize::from(over_budget);
        while let Some(&(at, old_seq, old)) = self.order.front() {
            if self.order.len() <= window.ids && now.saturating_sub(at) < span {
                if extra == 0 || self.order.len() == 1 {
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
        // A burst that is gone leaves a large table behind; give the
        // memory back once it is mostly empty.
        if self.seqs.capacity() > 1024 && self.seqs.len() < self.seqs.capacity() / 4 {
            self.seqs.shrink_to(self.seqs.len() * 2);
            self.order.shrink_to(self.order.len() * 2);
        }
        self.order.len() as isize - before
    }

    /// Forgets everything (the topic is deleted); returns how many ids.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.order.len();
        *self = Dedup::default();
        n
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
        assert_eq!(d.lookup(WINDOW, "a", 0), None);
        d.record(WINDOW, "a", 1, 0, false);
        d.record(WINDOW, "b", 2, 10, false);
        assert_eq!(d.lookup(WINDOW, "a", 119_999), Some(1));
        assert_eq!(d.lookup(WINDOW, "b", 120_009), Some(2));
        assert_eq!(d.lookup(WINDOW, "a", 120_000), None, "past the window");
        assert_eq!(d.lookup(WINDOW, "c", 5), None);
        assert_eq!(d.lookup(WINDOW, "A", 5), None, "ids are compared exactly");
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_count_or_the_window() {
        let mut d = Dedup::default();
        for (seq, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            d.record(WINDOW, id, seq as u64 + 1, 0, false);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.lookup(WINDOW, "a", 0), None, "over dedup_ids: forgotten");
        assert_eq!(d.lookup(WINDOW, "d", 0), Some(4));
        // Time passes: the next record prunes everything expired.
        d.record(WINDOW, "e", 5, 200_000, false);
        assert_eq!(d.len(), 1);
        assert_eq!(d.lookup(WINDOW, "b", 200_000), None);
    }

    #[test]
    fn an_id_published_again_after_expiry_keeps_its_new_seq() {
        let mut d = Dedup::default();
        d.record(WINDOW, "a", 1, 0, false);
        d.record(WINDOW, "a", 2, 130_000, false);
        // Pruning a's first entry must not forget its second.
        d.record(WINDOW, "b", 3, 130_001, false);
        assert_eq!(d.lookup(WINDOW, "a", 130_002), Some(2));
    }

    #[test]
    fn over_the_budget_a_topic_forgets_one_more_of_its_own() {
        let mut d = Dedup::default();
        assert_eq!(d.record(WINDOW, "a", 1, 0, false), 1);
        assert_eq!(d.record(WINDOW, "b", 2, 0, false), 1);
        // Over budget: the new id is remembered and the oldest goes.
        assert_eq!(d.record(WINDOW, "c", 3, 0, true), 0);
        assert_eq!(d.lookup(WINDOW, "a", 0), None);
        assert_eq!(d.record(WINDOW, "d", 4, 0, true), 0);
        assert_eq!(
            (d.lookup(WINDOW, "c", 0), d.lookup(WINDOW, "d", 0)),
            (Some(3), Some(4))
        );
        assert_eq!(d.clear(), 2);
        // A topic that holds nothing keeps the id it records.
        assert_eq!(d.record(WINDOW, "e", 5, 0, true), 1);
        assert_eq!(d.record(WINDOW, "f", 6, 0, true), 0);
        assert_eq!(d.lookup(WINDOW, "f", 0), Some(6));
        assert_eq!(d.lookup(WINDOW, "d", 0), None);
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let off = Window {
            span: Duration::ZERO,
            ids: 3,
        };
        let mut d = Dedup::default();
        d.record(off, "a", 1, 0, false);
        assert_eq!(d.len(), 0);
        assert_eq!(d.lookup(off, "a", 0), None);
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
            assert_eq!(d.lookup(window, &id, seq), None, "{id} is new");
            d.record(window, &id, seq, seq, false);
        }
        assert_eq!(d.len(), 10_000);
        assert_eq!(d.lookup(window, "id-50000", 50_000), Some(50_000));
        assert_eq!(d.lookup(window, "id-40001", 50_000), Some(40_001));
        assert_eq!(d.lookup(window, "id-40000", 50_000), None);
    }
}
