//! One topic: its sequence, epoch, history ring and subscribers.
//!
//! Everything that must be ordered with respect to publishing (assigning
//! `seq`, appending to history, fanning out, subscribing with replay,
//! deleting) happens under the topic's own lock. Topics never share a lock,
//! so publishers to different topics never wait for each other.

use super::connection::Connection;
use super::frame::Frame;
use super::tally::TopicTally;
use indexmap::IndexMap;
use parking_lot::Mutex;
use protocol::{HistoryMessage, ServerFrame};
use std::collections::VecDeque;
use std::sync::Arc;

/// A published message as stored in history and queued to subscribers:
/// the `event` frame, encoded once.
#[derive(Debug)]
pub struct PublishedEvent {
    pub seq: u64,
    pub frame: Frame,
    pub tally: Arc<TopicTally>,
    /// When it was published: delivery latency is measured from here.
    pub published_at: std::time::Instant,
}

impl PublishedEvent {
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
    /// Bytes its history holds (written under `state`'s lock, read without
    /// it when the broker picks the biggest topics to evict from).
    pub(super) history_bytes: std::sync::atomic::AtomicUsize,
    /// Bytes its remembered ids hold (written under `state`'s lock, read
    /// without it by the sweep that forgets expired ids).
    pub(super) dedup_bytes: std::sync::atomic::AtomicUsize,
    pub(super) state: Mutex<TopicState>,
}

pub(super) struct TopicState {
    pub seq: u64,
    pub history: History,
    /// Keyed by connection id; `swap_remove` keeps removal O(1) and the
    /// values dense for the fan-out loop.
    pub subscribers: IndexMap<u64, Arc<Connection>>,
    /// The exact-name subscriptions (presence), by connection id, oldest
    /// first (`shift_remove` keeps that order). Not on the publish path.
    pub presence: IndexMap<u64, Member>,
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
            state: Mutex::new(TopicState {
                seq: 0,
                history: History::new(history_size),
                subscribers: IndexMap::new(),
                presence: IndexMap::new(),
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

/// The last `capacity` events of a topic, oldest first, and the bytes of
/// their frames (the broker keeps the sum over topics within
/// `max_history_bytes` by evicting the oldest from the biggest).
pub struct History {
    ring: VecDeque<Arc<PublishedEvent>>,
    capacity: usize,
    bytes: usize,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            ring: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            bytes: 0,
        }
    }

    /// Appends an event, dropping the oldest when full. Returns the change
    /// in bytes held (positive: grew).
    pub fn push(&mut self, event: Arc<PublishedEvent>) -> isize {
        if self.capacity == 0 {
            return 0;
        }
        let mut change = event.frame.bytes().len() as isize;
        if self.ring.len() == self.capacity {
            change -= self.pop_oldest() as isize;
        }
        self.bytes += event.frame.bytes().len();
        self.ring.push_back(event);
        change
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

    /// The newest `n` events, oldest first.
    pub fn last_n(&self, n: usize) -> impl Iterator<Item = &Arc<PublishedEvent>> {
        self.ring.iter().skip(self.ring.len().saturating_sub(n))
    }

    /// Every event after `seq`, or `None` when history no longer holds all
    /// of them (`current` is the topic's seq).
    pub fn after(
        &self,
        seq: u64,
        current: u64,
    ) -> Option<impl Iterator<Item = &Arc<PublishedEvent>>> {
        if seq > current {
            return None;
        }
        let missing = current - seq;
        if missing > self.ring.len() as u64 {
            return None;
        }
        let held = self.ring.iter().skip(self.ring.len() - missing as usize);
        // `missing` events with increasing seqs from seq + 1 to `current`
        // are exactly seq + 1 ..= current; a copy with a hole (cluster
        // mode, after a lag beyond the stream's room) is not recovered from.
        let contiguous = missing == 0
            || (held.clone().next().is_some_and(|e| e.seq == seq + 1)
                && self.ring.back().is_some_and(|e| e.seq == current));
        contiguous.then_some(held)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<PublishedEvent>> {
        self.ring.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Totals;

    fn event(seq: u64) -> Arc<PublishedEvent> {
        let tally = Arc::new(TopicTally::new("t".into(), Arc::new(Totals::default())));
        let payload = serde_json::value::to_raw_value(&seq).unwrap();
        let frame = super::super::frame::EventDraft::new("t", "i", &payload, "ts").finish(seq);
        Arc::new(PublishedEvent {
            seq,
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
            h.push(event(s));
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
            h.push(event(s));
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
            h.push(event(s));
        }
        assert!(h.after(8, 10).is_none(), "9 is not held");
        assert!(h.after(2, 10).is_none(), "4..=9 are not held");
        assert_eq!(seqs(h.after(9, 10).unwrap()), vec![10]);
        assert_eq!(seqs(h.after(10, 10).unwrap()), Vec::<u64>::new());
    }

    #[test]
    fn zero_history_keeps_nothing() {
        let mut h = History::new(0);
        h.push(event(1));
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
}
