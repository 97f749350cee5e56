//! One topic: its sequence, epoch, ring of recent events and subscribers.
//!
//! Everything that must be ordered with respect to publishing (assigning
//! `seq`, appending to the ring, subscribing with replay, deleting) happens
//! under the topic's own lock. Topics never share a lock, so publishers to
//! different topics never wait for each other.
//!
//! Fan-out is one append: the topic's ring ([`History`]) holds each event
//! once, and every subscribed connection reads it through its own cursor
//! (see [`super::outbox`]). A publish stores nothing per subscriber; it
//! only acts on the writers that are parked, idle with nothing to write:
//! those with a direct socket go to the flusher together (one pass writes
//! to all of them), the others are woken. The
//! ring keeps the newest `history_size` events for history and replay and,
//! while the topic has subscribers, up to the connections' queue bound
//! beyond them (in events and in bytes) for the cursors still behind.

use super::connection::Connection;
use super::frame::Frame;
use super::tally::TopicTally;
use indexmap::IndexMap;
use parking_lot::{Mutex, RwLock};
use protocol::{HistoryMessage, ServerFrame};
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// A published message as stored in history and queued to subscribers:
/// the `event` frame, encoded once.
#[derive(Debug)]
pub struct PublishedEvent {
    pub seq: u64,
    /// Its place among the events this copy of the topic appended (1, 2,
    /// ...): contiguous where `seq` may jump (cluster mode), so a cursor's
    /// distance to the head is a count of events.
    pub index: u64,
    /// Bytes of the frames of the topic's events up to and including this
    /// one: a cursor's distance to the head in bytes.
    pub end: u64,
    /// `seq`s this copy never received right before this event (cluster
    /// mode): a cursor reaching it owes its client a `SLOW_CONSUMER` notice
    /// of that many first.
    pub missed: u64,
    pub frame: Frame,
    pub tally: Arc<TopicTally>,
    /// When it was published: delivery latency is measured from here.
    pub published_at: std::time::Instant,
}

impl PublishedEvent {
    /// Bytes of the topic's frames before this one.
    pub fn start(&self) -> u64 {
        self.end - self.frame.bytes().len() as u64
    }

    /// The message as the REST history returns it, read back from the frame.
    pub fn history_message(&self) -> Option<HistoryMessage> {
        match serde_json::from_str(self.frame.as_str()) {
            Ok(ServerFrame::Event(ev)) => Some(HistoryMessage {
                id: ev.message.id,
                payload: ev.message.payload,
                seq: ev.seq,
                ts: ev.ts,
            }),
            _ => None,
        }
    }
}

pub struct Topic {
    pub name: Arc<str>,
    /// Chosen at creation; a topic created again under the same name gets a
    /// new one, so a client resuming with a stale `since` is detected.
    pub epoch: String,
    pub created_at: String,
    pub tally: Arc<TopicTally>,
    /// Bytes its ring holds, history and what subscribers have not been
    /// sent (written under `state`'s lock, read without it when the broker
    /// picks the biggest topics to evict from).
    pub(super) history_bytes: std::sync::atomic::AtomicUsize,
    /// Bytes its remembered ids hold (written under `state`'s lock, read
    /// without it by the sweep that forgets expired ids).
    pub(super) dedup_bytes: std::sync::atomic::AtomicUsize,
    /// The newest event's `index` and `end` (0 before the first): what a
    /// cursor compares itself with without a lock. Written under `ring`'s
    /// write lock (itself under `state`), `head` with `SeqCst` so that a
    /// writer parking and a publisher waking it cannot miss each other.
    pub(super) head: AtomicU64,
    pub(super) head_bytes: AtomicU64,
    pub(super) state: Mutex<TopicState>,
    /// The recent events. Lock order: `state`, then this; a connection's
    /// writer reads it under its outbox's lock (outbox, then this) and
    /// never holds `state`.
    pub(super) ring: RwLock<History>,
}

/// One subscribed connection, as the topic's subscriber map holds it.
pub(crate) struct Subscriber {
    pub conn: Arc<Connection>,
    /// The `index` its cursor reached (stored by its writer after each
    /// batch): the ring keeps nothing older than the slowest cursor needs
    /// beyond its history.
    pub at: Arc<AtomicU64>,
}

pub(super) struct TopicState {
    pub seq: u64,
    /// Keyed by connection id; `swap_remove` keeps removal O(1) and the
    /// values dense for the wake-up loop.
    pub subscribers: IndexMap<u64, Subscriber>,
    /// The ring looks for the slowest cursor again once `head` passes this.
    pub next_trim: u64,
    /// The exact-name subscriptions (presence). Not on the publish path.
    pub presence: Presence,
    /// Ids published within `dedup_window` (in memory; in cluster mode
    /// JetStream remembers them and this stays empty).
    pub dedup: super::dedup::Dedup,
    pub deleted: bool,
}

/// One exact-name subscription of a topic, as presence shows it.
pub(crate) struct Member {
    pub client_id: Option<Arc<str>>,
    /// Unix milliseconds.
    pub joined_at: i64,
    /// It asked for `join`/`leave` notices of the others.
    pub presence_events: bool,
}

/// A topic's exact-name subscriptions, by connection id.
///
/// Joining and leaving are O(1) (`swap_remove`, the join order kept beside
/// each member and sorted by when listed): with the order kept by
/// `shift_remove`, 19,000 subscribers leaving one topic at once took
/// O(n²), a third of a second under the topic's lock, and a join or leave
/// looked through every member for those watching. Listing is rare (a
/// presence request), so it pays the sort.
#[derive(Default)]
pub(crate) struct Presence {
    /// By connection id: the join order, and the member.
    members: IndexMap<u64, (u64, Member)>,
    next: u64,
    /// Members that asked for `join`/`leave` notices.
    watching: usize,
}

impl Presence {
    /// `id` joins (again, if it had: last in the order then).
    pub fn join(&mut self, id: u64, member: Member) {
        self.watching += usize::from(member.presence_events);
        if let Some((_, old)) = self.members.insert(id, (self.next, member)) {
            self.watching -= usize::from(old.presence_events);
        }
        self.next += 1;
    }

    /// `id` leaves; what it was, if it was a member.
    pub fn leave(&mut self, id: u64) -> Option<Member> {
        let (_, member) = self.members.swap_remove(&id)?;
        self.watching -= usize::from(member.presence_events);
        Some(member)
    }

    /// Whether `id` gets `join`/`leave` notices from now on.
    pub fn set_events(&mut self, id: u64, on: bool) {
        if let Some((_, member)) = self.members.get_mut(&id) {
            self.watching = self.watching - usize::from(member.presence_events) + usize::from(on);
            member.presence_events = on;
        }
    }

    pub fn clear(&mut self) {
        self.members.clear();
        self.watching = 0;
    }

    /// Every member, oldest first.
    pub fn oldest_first(&self) -> Vec<(u64, &Member)> {
        let mut all: Vec<(u64, u64, &Member)> = self
            .members
            .iter()
            .map(|(id, (order, member))| (*order, *id, member))
            .collect();
        all.sort_unstable_by_key(|(order, ..)| *order);
        all.into_iter().map(|(_, id, m)| (id, m)).collect()
    }

    /// Every member, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Member)> {
        self.members.iter().map(|(id, (_, m))| (*id, m))
    }

    /// The members that asked for notices (none looked at when none did).
    pub fn watchers(&self) -> impl Iterator<Item = u64> + '_ {
        let any = self.watching > 0;
        self.members
            .iter()
            .take_while(move |_| any)
            .filter(|(_, (_, m))| m.presence_events)
            .map(|(id, _)| *id)
    }
}

impl Topic {
    pub(super) fn new(
        name: Arc<str>,
        epoch: String,
        created_at: String,
        tally: Arc<TopicTally>,
        history_size: usize,
    ) -> Self {
        Topic {
            name,
            epoch,
            created_at,
            tally,
            history_bytes: std::sync::atomic::AtomicUsize::new(0),
            dedup_bytes: std::sync::atomic::AtomicUsize::new(0),
            head: AtomicU64::new(0),
            head_bytes: AtomicU64::new(0),
            ring: RwLock::new(History::new(history_size)),
            state: Mutex::new(TopicState {
                seq: 0,
                next_trim: 0,
                subscribers: IndexMap::new(),
                presence: Presence::default(),
                dedup: Default::default(),
                deleted: false,
            }),
        }
    }

    /// `(seq, subscribers)` right now.
    pub fn snapshot(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.seq, st.subscribers.len() as u64)
    }
}

/// A topic's recent events, oldest first, and the bytes of their frames
/// (the broker keeps the sum over topics within `max_history_bytes` by
/// evicting the oldest from the biggest).
///
/// History and replay see the newest `keep` (`history_size`) of them; the
/// older ones are held only for cursors that have not reached them yet.
pub struct History {
    ring: VecDeque<Arc<PublishedEvent>>,
    keep: usize,
    bytes: usize,
}

/// How far beyond its history a topic's ring reaches for its cursors: the
/// connections' queue bound (0 events when nobody subscribes).
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    pub events: usize,
    pub bytes: usize,
}

impl Reach {
    pub const NONE: Reach = Reach {
        events: 0,
        bytes: 0,
    };
}

impl History {
    pub fn new(keep: usize) -> Self {
        History {
            ring: VecDeque::with_capacity(keep.min(1024)),
            keep,
            bytes: 0,
        }
    }

    /// Appends an event, then drops the oldest beyond `max(keep,
    /// reach.events)`, and beyond `keep` while the ring holds more than
    /// `reach.bytes`. Returns the change in bytes held (positive: grew).
    pub fn push(&mut self, event: Arc<PublishedEvent>, reach: Reach) -> isize {
        let before = self.bytes as isize;
        self.bytes += event.frame.bytes().len();
        self.ring.push_back(event);
        let cap = self.keep.max(reach.events);
        while self.ring.len() > cap || (self.ring.len() > self.keep && self.bytes > reach.bytes) {
            self.pop_oldest();
        }
        self.bytes as isize - before
    }

    /// Drops the events beyond `keep` that every cursor has passed (those
    /// with an `index` up to `reached`); returns the bytes freed.
    pub fn trim(&mut self, reached: u64) -> usize {
        let mut freed = 0;
        while self.ring.len() > self.keep && self.ring.front().is_some_and(|e| e.index <= reached) {
            freed += self.pop_oldest();
        }
        freed
    }

    /// Drops the oldest event; returns its bytes (0 when empty).
    pub fn pop_oldest(&mut self) -> usize {
        let freed = self.ring.pop_front().map_or(0, |e| e.frame.bytes().len());
        self.bytes -= freed;
        freed
    }

    /// Drops everything; returns the bytes freed.
    pub fn clear(&mut self) -> usize {
        self.ring.clear();
        std::mem::take(&mut self.bytes)
    }

    /// Bytes of the frames held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The newest event held.
    pub fn newest(&self) -> Option<&Arc<PublishedEvent>> {
        self.ring.back()
    }

    /// Where the first event with an `index` above `index` is (the ring's
    /// length when none is).
    pub fn after_index(&self, index: u64) -> usize {
        // Indexes are contiguous in the ring: one look at the oldest.
        match self.ring.front() {
            Some(front) => (index + 1)
                .saturating_sub(front.index)
                .min(self.ring.len() as u64) as usize,
            None => 0,
        }
    }

    /// Where, from `at` on, the first event is that starts at or after
    /// byte `offset` of the topic.
    pub fn starting_at(&self, at: usize, offset: u64) -> usize {
        // Starts grow along the ring: the first one at or after `offset`
        // in the whole ring, or `at` if that is further.
        self.ring.partition_point(|e| e.start() < offset).max(at)
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// The events from position `at` on (cursors read the whole ring).
    pub fn range_from(
        &self,
        at: usize,
    ) -> std::collections::vec_deque::Iter<'_, Arc<PublishedEvent>> {
        self.ring.range(at.min(self.ring.len())..)
    }

    /// The events history shows: the newest `keep`.
    fn kept(&self) -> std::collections::vec_deque::Iter<'_, Arc<PublishedEvent>> {
        self.range_from(self.ring.len().saturating_sub(self.keep))
    }

    /// The newest `n` events of history, oldest first.
    pub fn last_n(&self, n: usize) -> impl Iterator<Item = &Arc<PublishedEvent>> {
        let kept = self.kept();
        let len = kept.len();
        kept.skip(len.saturating_sub(n))
    }

    /// Every event of history after `seq`, or `None` when history no
    /// longer holds all of them (`current` is the topic's seq).
    pub fn after(
        &self,
        seq: u64,
        current: u64,
    ) -> Option<impl Iterator<Item = &Arc<PublishedEvent>>> {
        if seq > current {
            return None;
        }
        let kept = self.kept();
        let missing = current - seq;
        if missing > kept.len() as u64 {
            return None;
        }
        let held = kept.clone().skip(kept.len() - missing as usize);
        // `missing` events with increasing seqs from seq + 1 to `current`
        // are exactly seq + 1 ..= current; a copy with a hole (cluster
        // mode, after a lag beyond the stream's room) is not recovered from.
        let contiguous = missing == 0
            || (held.clone().next().is_some_and(|e| e.seq == seq + 1)
                && self.ring.back().is_some_and(|e| e.seq == current));
        contiguous.then_some(held)
    }

    /// Every event of history.
    pub fn all(&self) -> impl Iterator<Item = &Arc<PublishedEvent>> {
        self.kept()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Totals;

    fn member(watching: bool) -> Member {
        Member {
            client_id: None,
            joined_at: 0,
            presence_events: watching,
        }
    }

    /// Members leaving from the middle (O(1) each) keep the others oldest
    /// first; a member who joins again is the newest; only the members
    /// watching are told of changes.
    #[test]
    fn presence_lists_oldest_first_whoever_left() {
        let mut p = Presence::default();
        for id in 1..=6 {
            p.join(id, member(id % 2 == 0));
        }
        assert_eq!(p.leave(2).map(|m| m.presence_events), Some(true));
        assert!(p.leave(2).is_none());
        p.leave(5);
        p.join(1, member(false));
        let ids: Vec<u64> = p.oldest_first().iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [3, 4, 6, 1]);
        let mut watching: Vec<u64> = p.watchers().collect();
        watching.sort_unstable();
        assert_eq!(watching, [4, 6]);
        p.set_events(4, false);
        p.set_events(6, false);
        assert_eq!(p.watching, 0);
        assert_eq!(p.watchers().count(), 0);
        p.set_events(3, true);
        p.set_events(3, true);
        assert_eq!(p.watchers().collect::<Vec<_>>(), [3]);
        assert_eq!(p.watching, 1);
        p.clear();
        assert!(p.oldest_first().is_empty());
        assert_eq!(p.watching, 0);
    }

    fn event(seq: u64) -> Arc<PublishedEvent> {
        let tally = Arc::new(TopicTally::new("t".into(), Arc::new(Totals::default())));
        let payload = serde_json::value::to_raw_value(&seq).unwrap();
        let frame = super::super::frame::EventDraft::new("t", "i", &payload, "ts").finish(seq);
        Arc::new(PublishedEvent {
            seq,
            index: seq,
            // Every frame of this test's topic is given 100 bytes.
            end: seq * 100,
            missed: 0,
            frame,
            tally,
            published_at: std::time::Instant::now(),
        })
    }

    fn seqs<'a>(it: impl Iterator<Item = &'a Arc<PublishedEvent>>) -> Vec<u64> {
        it.map(|e| e.seq).collect()
    }

    #[test]
    fn history_keeps_the_newest() {
        let mut h = History::new(3);
        for s in 1..=5 {
            h.push(event(s), Reach::NONE);
        }
        assert_eq!(seqs(h.all()), vec![3, 4, 5]);
        assert_eq!(seqs(h.last_n(2)), vec![4, 5]);
        assert_eq!(seqs(h.last_n(10)), vec![3, 4, 5]);
        assert_eq!(seqs(h.last_n(0)), Vec::<u64>::new());
    }

    #[test]
    fn after_replays_only_what_history_holds() {
        let mut h = History::new(3);
        for s in 1..=5 {
            h.push(event(s), Reach::NONE);
        }
        assert_eq!(seqs(h.after(2, 5).unwrap()), vec![3, 4, 5]);
        assert_eq!(seqs(h.after(4, 5).unwrap()), vec![5]);
        assert_eq!(seqs(h.after(5, 5).unwrap()), Vec::<u64>::new());
        assert!(h.after(1, 5).is_none(), "seq 2 is gone");
        assert!(h.after(6, 5).is_none(), "from the future");
    }

    #[test]
    fn after_refuses_a_copy_with_a_hole() {
        // A cluster node's copy that missed 4..=9.
        let mut h = History::new(10);
        for s in [1, 2, 3, 10] {
            h.push(event(s), Reach::NONE);
        }
        assert!(h.after(8, 10).is_none(), "9 is not held");
        assert!(h.after(2, 10).is_none(), "4..=9 are not held");
        assert_eq!(seqs(h.after(9, 10).unwrap()), vec![10]);
        assert_eq!(seqs(h.after(10, 10).unwrap()), Vec::<u64>::new());
    }

    #[test]
    fn zero_history_keeps_nothing() {
        let mut h = History::new(0);
        h.push(event(1), Reach::NONE);
        assert!(h.is_empty());
        assert!(h.after(0, 1).is_none());
        assert!(h.after(1, 1).is_some());
    }

    #[test]
    fn history_message_reads_back_the_frame() {
        let m = event(7).history_message().unwrap();
        assert_eq!(
            (m.seq, m.id.as_str(), m.payload.clone()),
            (7, "i", serde_json::json!(7))
        );
    }

    #[test]
    fn the_ring_reaches_beyond_history_for_cursors_and_trims_behind_them() {
        let len = event(1).frame.bytes().len() as u64;
        let reach = Reach {
            events: 5,
            bytes: usize::MAX,
        };
        let mut h = History::new(2);
        for s in 1..=7 {
            h.push(event(s), reach);
        }
        assert_eq!(seqs(h.range_from(0)), vec![3, 4, 5, 6, 7], "5 for cursors");
        assert_eq!(seqs(h.all()), vec![6, 7], "2 for history");
        assert!(h.after(4, 7).is_none(), "replay sees history only");
        assert_eq!(h.after_index(4), 2);
        assert_eq!(h.after_index(0), 0);
        assert_eq!(h.after_index(7), 5);
        // Frames start at (seq - 1) * 100 here.
        assert_eq!(h.starting_at(0, 450), 3, "seq 6 starts at 500");
        assert_eq!(h.starting_at(4, 0), 4, "never before `at`");
        assert_eq!(h.starting_at(0, 10_000), 5);
        assert_eq!(h.trim(4), 2 * len as usize, "3 and 4 passed by all");
        assert_eq!(seqs(h.range_from(0)), vec![5, 6, 7]);
        assert_eq!(h.trim(7), len as usize, "never into history");
        assert_eq!(seqs(h.range_from(0)), vec![6, 7]);
        // In bytes: beyond `keep`, at most `reach.bytes`.
        let mut h = History::new(1);
        let reach = Reach {
            events: 100,
            // Seqs from 10 on take a byte more.
            bytes: 3 * len as usize + 3,
        };
        for s in 1..=10 {
            h.push(event(s), reach);
        }
        assert_eq!(seqs(h.range_from(0)), vec![8, 9, 10]);
        // Nobody subscribed: history only.
        h.push(event(11), Reach::NONE);
        assert_eq!(seqs(h.range_from(0)), vec![11]);
    }
}
