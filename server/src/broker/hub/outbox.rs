//! The bounded outbound queue of one connection, with the slow-consumer
//! policies of the contract.
//!
//! Publishers push into it while holding their topic's lock; the
//! connection's writer drains it in batches. A queue never blocks a
//! publisher: when it holds `capacity` events, or an event would take its
//! frames past the byte bound (events and replies together), `drop_oldest`
//! evicts the oldest events (counted, and owed to the client as one
//! `SLOW_CONSUMER` notice per topic), and `disconnect` ends the connection.
//! Replies (`ack`, `error`, `pong`, `info`) are never evicted; instead the
//! connection's reader stops reading requests while `reply_limit` replies,
//! or half the byte bound in replies, are unread.
//!
//! Order is push order: an `ack` pushed before replayed events is written
//! before them. Unsubscribing (or deleting) a topic discards its queued
//! events at once, so nothing of it follows the `ack`.

use super::frame::Frame;
use super::tally::{Settlement, TopicTally};
use super::topic::PublishedEvent;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// Unread replies at which a connection's requests stop being read. At
/// least this many, so a client may pipeline requests, whatever the event
/// queue's size.
const MIN_REPLY_LIMIT: usize = 1024;

/// What to do with a connection whose queue is full (the values of
/// `--slow-consumer-policy`, spelled as in the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SlowConsumerPolicy {
    /// Discard the oldest queued events and send SLOW_CONSUMER with the count.
    #[default]
    #[value(name = "drop_oldest", alias = "drop-oldest")]
    DropOldest,
    /// Send SLOW_CONSUMER and close the connection with code 4008.
    #[value(name = "disconnect")]
    Disconnect,
}

/// Why a connection's queue accepts nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The `disconnect` policy fired: tell the client, then close with 4008.
    Kicked { topic: String, dropped: u64 },
    /// Close with this code and reason (e.g. 1009 for an oversized frame).
    Close { code: u16, reason: String },
    /// An admin closed it (`DELETE /api/connections/{id}`): tell the
    /// client, then close with 4010.
    ClosedByAdmin,
    /// The connection's token expired without a refresh: tell the client,
    /// then close with 4401.
    TokenExpired,
    /// The peer is gone; nothing more can be written.
    Gone,
}

/// What one connection was sent, in total and per topic it follows, for
/// the connections board. Updated once per written batch (the writer) and
/// per evicted or discarded event (under the queue's lock), never per
/// event published.
#[derive(Default)]
pub struct ConnStats {
    /// Live events written to the connection.
    pub delivered: u64,
    /// Live events dropped for it (evicted, discarded, lost in a failed write).
    pub dropped: u64,
    /// Per topic, sorted by the address of its tally: a connection
    /// usually follows a few topics, and a small sorted `Vec` costs a
    /// fraction of a hash map's smallest table (idle connections are
    /// counted in bytes).
    topics: Vec<TopicStats>,
}

/// One followed topic's share of [`ConnStats`].
pub struct TopicStats {
    pub tally: Arc<TopicTally>,
    pub delivered: u64,
    pub dropped: u64,
    /// The `seq` of the newest event of the topic written to the
    /// connection (replays included), or where its subscription started.
    pub written: u64,
}

impl ConnStats {
    fn key(tally: &Arc<TopicTally>) -> usize {
        Arc::as_ptr(tally) as usize
    }

    fn topic(&mut self, tally: &Arc<TopicTally>) -> &mut TopicStats {
        let key = Self::key(tally);
        let at = match self
            .topics
            .binary_search_by_key(&key, |t| Self::key(&t.tally))
        {
            Ok(at) => at,
            Err(at) => {
                self.topics.insert(
                    at,
                    TopicStats {
                        tally: Arc::clone(tally),
                        delivered: 0,
                        dropped: 0,
                        written: 0,
                    },
                );
                at
            }
        };
        &mut self.topics[at]
    }

    /// The share of the topic whose tally this is, if it has one.
    pub fn of(&self, tally: &Arc<TopicTally>) -> Option<&TopicStats> {
        let key = Self::key(tally);
        self.topics
            .binary_search_by_key(&key, |t| Self::key(&t.tally))
            .ok()
            .map(|at| &self.topics[at])
    }

    fn forget(&mut self, tally: &Arc<TopicTally>) {
        let key = Self::key(tally);
        if let Ok(at) = self
            .topics
            .binary_search_by_key(&key, |t| Self::key(&t.tally))
        {
            self.topics.remove(at);
        }
    }

    fn add_dropped(&mut self, tally: &Arc<TopicTally>, n: u64) {
        self.dropped += n;
        self.topic(tally).dropped += n;
    }
}

/// An event waiting in the queue, with its place in push order.
struct QueuedEvent {
    order: u64,
    event: Arc<PublishedEvent>,
    /// Replayed from history: written like any event, but not counted
    /// as delivered or dropped.
    replay: bool,
}

/// Events and replies wait in two queues, each in push order, and every
/// item carries its place in the one order of pushes: the writer merges
/// them back by it. Two queues because `drop_oldest` evicts the oldest
/// *event*: with one FIFO it had to scan past (and then shift) every unread
/// reply, under the publisher's lock; here it is a `pop_front`.
struct State {
    events: VecDeque<QueuedEvent>,
    replies: VecDeque<(u64, Frame)>,
    /// The next push's place.
    next: u64,
    /// Bytes of the queued events' and replies' frames.
    event_bytes: usize,
    reply_bytes: usize,
    /// `SLOW_CONSUMER` notices owed: per topic, events dropped since the
    /// last notice, in order of first drop.
    owed: Vec<(Arc<TopicTally>, u64)>,
    end: Option<End>,
}

impl State {
    fn bytes(&self) -> usize {
        self.event_bytes + self.reply_bytes
    }

    fn place(&mut self) -> u64 {
        let order = self.next;
        self.next += 1;
        order
    }

    /// Takes the oldest event (counting it as dropped if live); `None`
    /// when no event is queued.
    fn pop_event(&mut self) -> Option<QueuedEvent> {
        let item = self.events.pop_front()?;
        self.event_bytes -= item.event.frame.bytes().len();
        Some(item)
    }
}

/// A frame taken from the queue for writing. An event stays the shared
/// [`PublishedEvent`] (moved out of the queue, not copied), so draining
/// costs no reference count per delivery.
#[derive(Debug)]
pub enum Queued {
    Reply(Frame),
    Event(Arc<PublishedEvent>),
}

impl AsRef<Frame> for Queued {
    fn as_ref(&self) -> &Frame {
        self.frame()
    }
}

impl Queued {
    pub fn frame(&self) -> &Frame {
        match self {
            Queued::Reply(frame) => frame,
            Queued::Event(event) => &event.frame,
        }
    }

    pub fn bytes(&self) -> &bytes::Bytes {
        self.frame().bytes()
    }

    pub fn as_str(&self) -> &str {
        self.frame().as_str()
    }
}

/// What [`Outbox::drain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drained {
    /// The queue is empty now.
    Empty,
    /// More is queued: write this batch, then drain again.
    More,
    /// Write this batch (if any), then end the connection this way.
    End(End),
}

/// A writer's buffers for [`Outbox::drain`], kept across drains so a busy
/// connection allocates nothing per batch.
#[derive(Default)]
pub struct DrainBuf {
    frames: Vec<Queued>,
    settle: Settlement,
}

impl DrainBuf {
    /// Gives the frame buffer's memory back if it grew (an idle connection
    /// should not hold a busy moment's batch).
    pub fn shrink(&mut self) {
        if self.frames.capacity() > 16 {
            self.frames = Vec::new();
        }
    }
}

/// What one [`Outbox::drain`] took: the frames to write, in push order, and
/// the live events among them, which the counters owe a fate. Saying what
/// became of them ([`Batch::delivered`], [`Batch::dropped`]) consumes the
/// batch; a batch let go without either (an early return, a panic) counts
/// its live events as dropped, so `enqueued = delivered + dropped + queued`
/// holds whatever the caller does.
#[must_use = "say whether the batch was delivered or dropped"]
pub struct Batch<'a> {
    buf: &'a mut DrainBuf,
    status: Drained,
    stats: &'a Mutex<ConnStats>,
}

impl Batch<'_> {
    pub fn frames(&self) -> &[Queued] {
        &self.buf.frames
    }

    pub fn is_empty(&self) -> bool {
        self.buf.frames.is_empty()
    }

    /// Whether live events (not replays, not replies) are among the frames.
    pub fn has_live(&self) -> bool {
        self.buf.settle.has_live()
    }

    /// What the queue looks like after this batch.
    pub fn status(&self) -> &Drained {
        &self.status
    }

    /// The frames reached the connection: their events count as delivered
    /// (with their latencies). Returns what the queue looks like now.
    pub fn delivered(mut self) -> Drained {
        {
            let mut stats = self.stats.lock();
            self.buf.settle.runs(|tally, n| {
                stats.delivered += n;
                stats.topic(tally).delivered += n;
            });
            // The newest seq written per topic: frames of one topic come
            // in increasing seq, so the last one of a run is its newest.
            let mut last: Option<(&Arc<TopicTally>, u64)> = None;
            for frame in &self.buf.frames {
                let Queued::Event(event) = frame else {
                    continue;
                };
                if let Some((tally, seq)) = last {
                    if !Arc::ptr_eq(tally, &event.tally) {
                        let t = stats.topic(tally);
                        t.written = t.written.max(seq);
                    }
                }
                last = Some((&event.tally, event.seq));
            }
            if let Some((tally, seq)) = last {
                let t = stats.topic(tally);
                t.written = t.written.max(seq);
            }
        }
        self.buf.settle.delivered();
        std::mem::replace(&mut self.status, Drained::Empty)
    }

    /// The frames were lost (the write failed): their events count as
    /// dropped.
    pub fn dropped(mut self) -> Drained {
        self.settle_dropped();
        std::mem::replace(&mut self.status, Drained::Empty)
    }

    fn settle_dropped(&mut self) {
        let mut stats = self.stats.lock();
        self.buf.settle.runs(|tally, n| stats.add_dropped(tally, n));
        drop(stats);
        self.buf.settle.dropped();
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.buf.settle.has_live() {
            self.settle_dropped();
        }
        self.buf.frames.clear();
    }
}

/// The bounds of one connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Events queued before the slow-consumer policy applies.
    pub events: usize,
    /// Bytes of events and replies queued before the policy applies to
    /// events; unread replies stop the reader at half of it.
    pub bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            events: 1024,
            bytes: 16 << 20,
        }
    }
}

/// Bytes of frames one drain hands the writer at most (at least one frame):
/// what a connection holds outside its queue while a batch is written.
pub const DRAIN_BYTES: usize = 256 << 10;

pub struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    max_bytes: usize,
    reply_limit: usize,
    reply_byte_limit: usize,
    policy: SlowConsumerPolicy,
    /// Wakes the writer when the queue turns non-empty or ends.
    writable: Notify,
    /// Wakes a reader waiting for reply room.
    drained: Notify,
    /// What was sent, for the connections board. Lock order: `state`, then
    /// this.
    stats: Mutex<ConnStats>,
}

impl Outbox {
    pub fn new(bounds: Bounds, policy: SlowConsumerPolicy) -> Self {
        let capacity = bounds.events.max(1);
        let max_bytes = bounds.bytes.max(1);
        Outbox {
            state: Mutex::new(State {
                events: VecDeque::new(),
                replies: VecDeque::new(),
                next: 0,
                event_bytes: 0,
                reply_bytes: 0,
                owed: Vec::new(),
                end: None,
            }),
            capacity,
            max_bytes,
            reply_limit: capacity.max(MIN_REPLY_LIMIT),
            reply_byte_limit: (max_bytes / 2).max(1),
            stats: Mutex::default(),
            policy,
            writable: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// The bounds this queue applies the slow-consumer policy at.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            events: self.capacity,
            bytes: self.max_bytes,
        }
    }

    /// Queues a reply. Replies are never evicted; a closed queue discards it.
    pub fn push_reply(&self, frame: Frame) {
        let st = self.state.lock();
        if st.end.is_none() {
            self.queue_reply(st, frame);
        }
    }

    /// Queues a reply on an open queue (its lock held) and wakes the writer
    /// if the queue was empty.
    fn queue_reply(&self, mut st: parking_lot::MutexGuard<'_, State>, frame: Frame) {
        let was_empty = st.events.is_empty() && st.replies.is_empty();
        let order = st.place();
        st.reply_bytes += frame.bytes().len();
        st.replies.push_back((order, frame));
        drop(st);
        if was_empty {
            self.writable.notify_one();
        }
    }

    /// Queues an event, applying the slow-consumer policy when the queue
    /// holds `capacity` events or the event would pass its byte bound.
    /// Called with the event's topic locked, so events of one topic enter
    /// every queue in `seq` order.
    /// Queues a best-effort notice (presence `join`/`leave`): like a reply,
    /// but only while the queue is under half its bounds in events and in
    /// bytes. Under backpressure it is discarded, before any event would
    /// be, and counted nowhere: the presence request is the source of
    /// truth. Whether it was queued.
    pub fn push_notice(&self, frame: Frame) -> bool {
        let st = self.state.lock();
        if st.end.is_some()
            || st.events.len() >= (self.capacity / 2).max(1)
            || st.bytes() + frame.bytes().len() > self.max_bytes / 2
        {
            return false;
        }
        self.queue_reply(st, frame);
        true
    }

    pub fn push_event(&self, event: &Arc<PublishedEvent>, replay: bool) {
        let mut st = self.state.lock();
        if st.end.is_some() {
            if !replay {
                event.tally.add_dropped(1);
            }
            return;
        }
        let size = event.frame.bytes().len();
        let full = |st: &State| {
            !st.events.is_empty()
                && (st.events.len() >= self.capacity || st.bytes() + size > self.max_bytes)
        };
        if full(&st) {
            match self.policy {
                SlowConsumerPolicy::DropOldest => {
                    while full(&st) {
                        evict_oldest_event(&mut st, &self.stats);
                    }
                }
                SlowConsumerPolicy::Disconnect => {
                    let mut dropped = drop_queued_events(&mut st, None, &self.stats);
                    if !replay {
                        event.tally.add_dropped(1);
                    }
                    dropped += 1;
                    event.tally.count_slow_consumer_event();
                    st.end = Some(End::Kicked {
                        topic: event.tally.name.to_string(),
                        dropped,
                    });
                    drop(st);
                    self.writable.notify_one();
                    self.drained.notify_waiters();
                    return;
                }
            }
        }
        let was_empty = st.events.is_empty() && st.replies.is_empty();
        let order = st.place();
        st.event_bytes += size;
        st.events.push_back(QueuedEvent {
            order,
            event: Arc::clone(event),
            replay,
        });
        drop(st);
        if was_empty {
            self.writable.notify_one();
        }
    }

    /// Discards every queued event of one topic (it was unsubscribed or
    /// deleted), counting the live ones as dropped, and forgets the
    /// `SLOW_CONSUMER` notice owed for it: the client asked to hear no more
    /// of the topic. Returns how many events were discarded.
    pub fn discard_topic(&self, tally: &Arc<TopicTally>) -> u64 {
        let mut st = self.state.lock();
        st.owed.retain(|(t, _)| !Arc::ptr_eq(t, tally));
        let discarded = drop_queued_events(&mut st, Some(tally), &self.stats);
        // Not followed any more: off the board.
        self.stats.lock().forget(tally);
        discarded
    }

    /// Ends the queue: what is still queued is dropped and counted, and the
    /// writer is woken to close the connection. The first end wins.
    pub fn close(&self, end: End) {
        let mut st = self.state.lock();
        if st.end.is_none() {
            drop_queued_events(&mut st, None, &self.stats);
            st.replies.clear();
            st.reply_bytes = 0;
            st.end = Some(end);
        }
        drop(st);
        self.writable.notify_one();
        self.drained.notify_waiters();
    }

    /// Whether the queue ended (the connection is closing).
    pub fn is_closed(&self) -> bool {
        self.state.lock().end.is_some()
    }

    /// `(frames, bytes)` queued now.
    pub fn depth(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.events.len() + st.replies.len(), st.bytes())
    }

    /// Takes up to `max` queued frames (and at most about [`DRAIN_BYTES`])
    /// in push order, with the `SLOW_CONSUMER` notices that are due: before
    /// the next event of a topic that lost events, or, for every such topic,
    /// once the queue is empty. The caller writes the batch's frames, then
    /// says whether they were delivered or dropped.
    pub fn drain<'b>(&'b self, buf: &'b mut DrainBuf, max: usize) -> Batch<'b> {
        buf.frames.clear();
        let status = self.take(&mut buf.frames, &mut buf.settle, max);
        Batch {
            buf,
            status,
            stats: &self.stats,
        }
    }

    /// What this connection was sent, in total and per topic.
    pub fn stats(&self) -> parking_lot::MutexGuard<'_, ConnStats> {
        self.stats.lock()
    }

    /// A subscription to `tally`'s topic starts at `seq` (the events after
    /// it are replayed or live): the board's lag counts from there.
    pub fn start_at(&self, tally: &Arc<TopicTally>, seq: u64) {
        let mut stats = self.stats.lock();
        let t = stats.topic(tally);
        t.written = seq;
    }

    fn take(&self, out: &mut Vec<Queued>, settle: &mut Settlement, max: usize) -> Drained {
        let mut st = self.state.lock();
        if let Some(end) = &st.end {
            return Drained::End(end.clone());
        }
        let had_room = self.has_room(&st);
        let mut taken = 0;
        let mut bytes = 0;
        while taken < max && bytes < DRAIN_BYTES {
            let next_is_reply = match (st.replies.front(), st.events.front()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((r, _)), Some(e)) => *r < e.order,
            };
            taken += 1;
            if next_is_reply {
                let Some((_, frame)) = st.replies.pop_front() else {
                    break;
                };
                st.reply_bytes -= frame.bytes().len();
                bytes += frame.bytes().len();
                out.push(Queued::Reply(frame));
                continue;
            }
            let Some(QueuedEvent { event, replay, .. }) = st.pop_event() else {
                break;
            };
            bytes += event.frame.bytes().len();
            if !st.owed.is_empty() {
                if let Some(i) = st
                    .owed
                    .iter()
                    .position(|(t, _)| Arc::ptr_eq(t, &event.tally))
                {
                    let (tally, n) = st.owed.remove(i);
                    out.push(Queued::Reply(slow_consumer_notice(&tally, n)));
                }
            }
            if !replay {
                settle.add(&event.tally, event.published_at);
            }
            out.push(Queued::Event(event));
        }
        let empty = st.events.is_empty() && st.replies.is_empty();
        if empty {
            for (tally, n) in st.owed.drain(..) {
                out.push(Queued::Reply(slow_consumer_notice(&tally, n)));
            }
        }
        let freed_reply_room = !had_room && self.has_room(&st);
        drop(st);
        if freed_reply_room {
            self.drained.notify_waiters();
        }
        if empty {
            Drained::Empty
        } else {
            Drained::More
        }
    }

    /// Whether the reader may take another request: fewer than
    /// `reply_limit` replies and their bytes under half the byte bound.
    fn has_room(&self, st: &State) -> bool {
        st.replies.len() < self.reply_limit && st.reply_bytes < self.reply_byte_limit
    }

    /// Whether a request may be read now (see [`Outbox::reply_room`]).
    pub fn may_read(&self) -> bool {
        let st = self.state.lock();
        self.has_room(&st) || st.end.is_some()
    }

    /// Waits until the writer has something to do. Use after
    /// [`Outbox::drain`] returned [`Drained::Empty`].
    pub async fn writable(&self) {
        self.writable.notified().await;
    }

    /// Waits until the unread replies are under their bounds (count and
    /// bytes) or the queue ended: the reader's backpressure. Each request
    /// adds at most one reply, so replies stay within their bound plus one.
    pub async fn reply_room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.may_read() {
                return;
            }
            drained.await;
        }
    }
}

/// A `SLOW_CONSUMER` notice, counted.
fn slow_consumer_notice(tally: &TopicTally, dropped: u64) -> Frame {
    tally.count_slow_consumer_event();
    Frame::slow_consumer(&tally.name, dropped)
}

/// `drop_oldest`: evicts the oldest event (replies stay), counts it, and
/// owes the client a notice for its topic.
fn evict_oldest_event(st: &mut State, stats: &Mutex<ConnStats>) {
    let Some(QueuedEvent { event, replay, .. }) = st.pop_event() else {
        return;
    };
    if !replay {
        event.tally.add_dropped(1);
        stats.lock().add_dropped(&event.tally, 1);
    }
    match st
        .owed
        .iter_mut()
        .find(|(t, _)| Arc::ptr_eq(t, &event.tally))
    {
        Some((_, n)) => *n += 1,
        None => st.owed.push((Arc::clone(&event.tally), 1)),
    }
}

/// Removes the queued events (of one topic, or all), counting the live
/// ones as dropped; returns how many were removed. Replies stay.
fn drop_queued_events(
    st: &mut State,
    of: Option<&Arc<TopicTally>>,
    stats: &Mutex<ConnStats>,
) -> u64 {
    let mut removed = 0;
    let mut bytes = 0;
    let mut stats = stats.lock();
    st.events.retain(|e| {
        if of.is_some_and(|t| !Arc::ptr_eq(t, &e.event.tally)) {
            return true;
        }
        if !e.replay {
            e.event.tally.add_dropped(1);
            stats.add_dropped(&e.event.tally, 1);
        }
        removed += 1;
        bytes += e.event.frame.bytes().len();
        false
    });
    st.event_bytes -= bytes;
    if of.is_none() {
        st.owed.clear();
    }
    removed
}
