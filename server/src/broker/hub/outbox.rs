//! One connection's way out: its replies, and a cursor into the ring of
//! every topic it follows, with the slow-consumer policies of the contract.
//!
//! A publish appends its event to the topic's ring once and stores nothing
//! here; it only acts on this connection if its writer is parked: with a
//! direct socket (WebSocket over TCP) it claims the connection for the
//! flusher (`ws::flusher`), which writes for the writer in one pass over
//! all the claimed connections; otherwise it wakes the writer. Whoever
//! writes (see [`Park`] for who may) drains the queued replies (and
//! replayed events), then the events between its cursors and the rings'
//! heads. A
//! cursor further behind than the connection's bound (`capacity` events,
//! or more bytes than the bound leaves beside the queued replies) skips
//! forward to it: under `drop_oldest` the skipped events are counted as
//! dropped and owed to the client as one `SLOW_CONSUMER` notice before
//! that topic's next event; under `disconnect` the connection ends. The
//! bound applies to each followed topic's cursor.
//!
//! Replies (`ack`, `error`, `pong`, `info`) are never dropped; instead the
//! connection's reader stops reading requests while `reply_limit` replies,
//! or half the byte bound in replies, are unread.
//!
//! Order: replies and replays in push order, and a topic's events in `seq`
//! order after everything queued when they were gathered. A subscribe
//! queues its `ack` and replay and sets its cursor under the topic's lock,
//! so live events follow the replay; unsubscribing (or deleting) removes
//! the cursor and the topic's queued replays at once, so nothing of it
//! follows the `ack`.
//!
//! Counters: a cursor's distance to its topic's head is what is queued for
//! the connection, so `enqueued = delivered + dropped + queued` holds with
//! events counted as enqueued when appended (once per subscriber).

use super::frame::Frame;
use super::tally::{Settlement, TopicTally};
use super::topic::{History, PublishedEvent, Topic};
use crate::signal::Signal;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicU64, AtomicU8};
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

/// What waits in the queue: replies and replayed events, in push order.
enum Item {
    /// A reply, and the events that must be written before it: per topic,
    /// up to which `index` (see [`Outbox::push_reply_after`]).
    Reply(Frame, Option<Fence>),
    /// Replayed from history: written like any event, but not counted as
    /// delivered or dropped.
    Replay(Arc<PublishedEvent>),
}

/// Per topic, the `index` up to which its events go before a reply.
type Fence = Box<[(Arc<Topic>, u64)]>;

/// Where the connection is in one followed topic's ring.
struct Cursor {
    topic: Arc<Topic>,
    /// The `index` of the last event taken (or where it started).
    index: u64,
    /// The topic's bytes up to and including that event.
    offset: u64,
    /// `index`, for the topic to see how far its slowest cursor is.
    shared: Arc<AtomicU64>,
    /// Events skipped since the last `SLOW_CONSUMER` notice.
    owed: u64,
}

impl Cursor {
    /// Events and bytes between it and its topic's head.
    fn distance(&self) -> (u64, u64) {
        let head = self.topic.head.load(Acquire);
        let bytes = self.topic.head_bytes.load(Acquire);
        (
            head.saturating_sub(self.index),
            bytes.saturating_sub(self.offset),
        )
    }

    /// Moves to the head, counting what it passes as dropped; returns how
    /// many. Called under the topic's lock, or once no publish can count
    /// more for the connection (it is closed).
    fn skip_to_head(&mut self, stats: &Mutex<ConnStats>) -> u64 {
        let (head, bytes) = (
            self.topic.head.load(Acquire),
            self.topic.head_bytes.load(Acquire),
        );
        self.skip_to(head, bytes, stats)
    }

    /// Moves to the event `index` (the topic's bytes up to it: `offset`),
    /// counting the events it passes as dropped; returns how many.
    fn skip_to(&mut self, index: u64, offset: u64, stats: &Mutex<ConnStats>) -> u64 {
        let skipped = index.saturating_sub(self.index);
        if skipped > 0 {
            self.topic.tally.add_dropped(skipped);
            stats.lock().add_dropped(&self.topic.tally, skipped);
            self.index = index;
            self.offset = offset;
            self.shared.store(index, Relaxed);
        }
        skipped
    }
}

struct State {
    queue: VecDeque<Item>,
    /// Replies among `queue`, and their bytes.
    replies: usize,
    reply_bytes: usize,
    /// Bytes of the replayed events in `queue`.
    replay_bytes: usize,
    /// Replayed events in `queue`.
    replays: usize,
    cursors: Vec<Cursor>,
    /// The cursor the next drain looks at first (round robin across topics).
    next_cursor: usize,
    end: Option<End>,
}

impl State {
    fn queued_bytes(&self) -> usize {
        self.reply_bytes + self.replay_bytes
    }

    /// Queues an item, keeping the counts of replies and replays.
    fn push(&mut self, item: Item) {
        match &item {
            Item::Reply(frame, _) => {
                self.replies += 1;
                self.reply_bytes += frame.bytes().len();
            }
            Item::Replay(event) => {
                self.replays += 1;
                self.replay_bytes += event.frame.bytes().len();
            }
        }
        self.queue.push_back(item);
    }

    /// Takes the oldest item, keeping the counts.
    fn pop(&mut self) -> Option<Item> {
        let item = self.queue.pop_front()?;
        match &item {
            Item::Reply(frame, _) => {
                self.replies -= 1;
                self.reply_bytes -= frame.bytes().len();
            }
            Item::Replay(event) => {
                self.replays -= 1;
                self.replay_bytes -= event.frame.bytes().len();
            }
        }
        Some(item)
    }

    /// Events and bytes between the cursors and their topics' heads.
    fn backlog(&self) -> (u64, u64) {
        self.cursors
            .iter()
            .map(Cursor::distance)
            .fold((0, 0), |(e, b), (de, db)| (e + de, b + db))
    }

    fn cursor_of(&self, topic: &Arc<Topic>) -> Option<usize> {
        self.cursors
            .iter()
            .position(|c| Arc::ptr_eq(&c.topic, topic))
    }
}

/// Who may write to the connection's socket, on a cache line of its own:
/// every publish to a followed topic reads it.
///
/// - `RUNNING`: the connection's own writer (its task) is at work.
/// - `PARKED`: nobody is; the writer waits on its signal. A publish that
///   finds it here claims it: for a connection with a direct socket, as
///   `FLUSHING`, and the flusher writes to the socket in its pass over the
///   claimed connections (no task woken); otherwise as `RUNNING`, and the
///   writer is woken.
/// - `FLUSHING`: the flusher is writing. A writer woken meanwhile (a
///   reply, a pong, the heartbeat, a close) adds `WANTED` and waits; the
///   flusher then hands the socket over (`RUNNING`, signal) instead of
///   parking.
///
/// The owner parks only when a drain took nothing (after writing what it
/// took), so that nobody else writes while it still holds a batch.
#[repr(align(64))]
#[derive(Default)]
struct Park {
    state: AtomicU8,
}

const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const FLUSHING: u8 = 2;
const WANTED: u8 = 4;

/// Who drains: the connection's writer, or the flusher on its behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Writer,
    Flusher,
}

impl Owner {
    fn state(self) -> u8 {
        match self {
            Owner::Writer => RUNNING,
            Owner::Flusher => FLUSHING,
        }
    }
}

/// What a publish's wake-up did to a connection's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Nothing to do: the writer is at work (or the flusher is).
    Busy,
    /// The writer was parked and is woken.
    Woken,
    /// It was parked, with a direct socket: the caller hands it to the
    /// flusher, which owns its socket now.
    Claimed,
}

/// What a flusher that stopped part-way leaves the writer: the batch it
/// took (frames and the fates they owe) and how far it was written.
pub struct Handover {
    pub buf: Box<DrainBuf>,
    pub frame: usize,
    pub offset: usize,
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
    /// Left unsettled for a [`Handover`]: the writer settles it.
    kept: bool,
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

    /// The frames are left, unsettled, in their buffer, for a
    /// [`Handover`]: whoever writes the rest settles them (through
    /// [`Outbox::resume`]).
    pub fn keep(mut self) {
        self.kept = true;
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
        if self.kept {
            return;
        }
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
    park: Park,
    /// A flusher's unfinished batch, for the writer (see [`Handover`]).
    handover: Mutex<Option<Handover>>,
    /// Wakes the writer when something is queued, an event is published to
    /// a followed topic while it is parked, or the queue ends.
    writable: Signal,
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
                queue: VecDeque::new(),
                replies: 0,
                reply_bytes: 0,
                replay_bytes: 0,
                replays: 0,
                cursors: Vec::new(),
                next_cursor: 0,
                end: None,
            }),
            capacity,
            max_bytes,
            reply_limit: capacity.max(MIN_REPLY_LIMIT),
            reply_byte_limit: (max_bytes / 2).max(1),
            stats: Mutex::default(),
            policy,
            park: Park {
                state: AtomicU8::new(RUNNING),
            },
            handover: Mutex::new(None),
            writable: Signal::new(false),
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
            self.enqueue(st, Item::Reply(frame, None));
        }
    }

    /// Queues an item on an open queue (its lock held) and wakes the writer
    /// if the queue was empty.
    fn enqueue(&self, mut st: parking_lot::MutexGuard<'_, State>, item: Item) {
        let was_empty = st.queue.is_empty();
        st.push(item);
        drop(st);
        if was_empty {
            self.writable.raise();
        }
    }

    /// Queues a reply that must follow what the connection was sent of
    /// `topics` so far: their events published before it, which its
    /// cursors have not reached yet, are written first. A subscribe to a
    /// topic the connection follows already answers this way, so that its
    /// `ack`'s `seq` is the last before the events that follow it. Called
    /// under the topics' locks.
    pub(super) fn push_reply_after(&self, frame: Frame, topics: &[&Arc<Topic>]) {
        let st = self.state.lock();
        if st.end.is_some() {
            return;
        }
        let fence: Vec<(Arc<Topic>, u64)> = topics
            .iter()
            .filter_map(|topic| {
                let cursor = &st.cursors[st.cursor_of(topic)?];
                let head = topic.head.load(Acquire);
                (cursor.index < head).then(|| (Arc::clone(topic), head))
            })
            .collect();
        let fence = (!fence.is_empty()).then(|| fence.into_boxed_slice());
        self.enqueue(st, Item::Reply(frame, fence));
    }

    /// Queues a best-effort notice (presence `join`/`leave`): like a reply,
    /// but only while the connection is under half its bounds in events
    /// (queued and behind its cursors) and in bytes. Under backpressure it
    /// is discarded, before any event would be, and counted nowhere: the
    /// presence request is the source of truth. Whether it was queued.
    pub fn push_notice(&self, frame: Frame) -> bool {
        let st = self.state.lock();
        if st.end.is_some() {
            return false;
        }
        let (events, bytes) = st.backlog();
        let (events, bytes) = (events + st.replays as u64, bytes + st.queued_bytes() as u64);
        if events >= (self.capacity / 2).max(1) as u64
            || bytes + frame.bytes().len() as u64 > (self.max_bytes / 2) as u64
        {
            return false;
        }
        self.enqueue(st, Item::Reply(frame, None));
        true
    }

    /// Queues an event replayed from history (a subscribe's `last_n` or
    /// `since`): written in push order, never dropped, not counted.
    pub fn push_replay(&self, event: &Arc<PublishedEvent>) {
        let st = self.state.lock();
        if st.end.is_none() {
            self.enqueue(st, Item::Replay(Arc::clone(event)));
        }
    }

    /// Starts reading `topic` from its head: called under the topic's lock
    /// as the connection joins its subscriber map (so the events after the
    /// head are exactly those counted as enqueued for it). `seq` is where
    /// the board's lag counts from (before the replayed events). Returns
    /// the cursor's position, for the subscriber map.
    pub(super) fn follow(&self, topic: &Arc<Topic>, seq: u64) -> Arc<AtomicU64> {
        let index = topic.head.load(Acquire);
        let shared = Arc::new(AtomicU64::new(index));
        let mut st = self.state.lock();
        if let Some(i) = st.cursor_of(topic) {
            st.cursors.swap_remove(i);
        }
        st.cursors.push(Cursor {
            topic: Arc::clone(topic),
            index,
            offset: topic.head_bytes.load(Acquire),
            shared: Arc::clone(&shared),
            owed: 0,
        });
        drop(st);
        self.stats.lock().topic(&topic.tally).written = seq;
        shared
    }

    /// Wakes the writer if it is parked: called by a publish to a followed
    /// topic after it moved the topic's head (with `SeqCst`, as the owner
    /// parks with it). A connection with a `direct` socket (one the flusher
    /// may write to) is claimed for the flusher instead ([`Wake::Claimed`]).
    #[inline]
    pub(super) fn wake(&self, direct: bool) -> Wake {
        if self.park.state.load(SeqCst) != PARKED {
            return Wake::Busy;
        }
        let to = if direct { FLUSHING } else { RUNNING };
        if self
            .park
            .state
            .compare_exchange(PARKED, to, SeqCst, Relaxed)
            .is_err()
        {
            return Wake::Busy;
        }
        if to == FLUSHING {
            Wake::Claimed
        } else {
            self.writable.raise();
            Wake::Woken
        }
    }

    /// The writer takes the socket back before writing, after any wait:
    /// true when it owns it (it was parked, or handed over); false when the
    /// flusher is writing, which then hands it over (and raises the signal)
    /// instead of parking.
    pub fn claim(&self) -> bool {
        let state = &self.park.state;
        let mut now = state.load(SeqCst);
        loop {
            let want = match now {
                RUNNING => return true,
                PARKED => RUNNING,
                _ if now & WANTED != 0 => return false,
                _ => FLUSHING | WANTED,
            };
            match state.compare_exchange(now, want, SeqCst, SeqCst) {
                Ok(_) => return want == RUNNING,
                Err(actual) => now = actual,
            }
        }
    }

    /// Waits until the writer owns the socket ([`Outbox::claim`]): at once,
    /// or once the flusher hands it over.
    pub async fn own_socket(&self) {
        while !self.claim() {
            self.writable().await;
        }
    }

    /// The flusher stops part-way (a full socket, an error, the end): the
    /// writer gets the socket, the batch left (if any), and a wake-up.
    pub fn hand_over(&self, rest: Option<Handover>) {
        if rest.is_some() {
            *self.handover.lock() = rest;
        }
        self.park.state.store(RUNNING, SeqCst);
        self.writable.raise();
    }

    /// What a flusher left the writer to finish, if anything.
    pub fn take_handover(&self) -> Option<Handover> {
        self.handover.lock().take()
    }

    /// Stops reading a topic (it was unsubscribed or deleted; called under
    /// its lock): what the cursor had not reached is counted as dropped,
    /// its replayed events still queued are discarded, and the notice owed
    /// for it is forgotten: the client asked to hear no more of the topic.
    /// Returns how many live events were discarded.
    pub fn discard_topic(&self, topic: &Arc<Topic>) -> u64 {
        let mut st = self.state.lock();
        let mut discarded = 0;
        if let Some(i) = st.cursor_of(topic) {
            let mut cursor = st.cursors.swap_remove(i);
            discarded = cursor.skip_to_head(&self.stats);
        }
        if st.replays > 0 {
            let mut removed = 0;
            let mut bytes = 0;
            st.queue.retain(|item| match item {
                Item::Replay(e) if Arc::ptr_eq(&e.tally, &topic.tally) => {
                    removed += 1;
                    bytes += e.frame.bytes().len();
                    false
                }
                _ => true,
            });
            st.replays -= removed;
            st.replay_bytes -= bytes;
        }
        drop(st);
        // Not followed any more: off the board.
        self.stats.lock().forget(&topic.tally);
        discarded
    }

    /// Ends the queue: what is still queued or behind a cursor is dropped
    /// and counted, and the writer is woken to close the connection. The
    /// first end wins. The cursors stay until the connection leaves its
    /// topics, which counts what was published meanwhile.
    pub fn close(&self, end: End) {
        let mut st = self.state.lock();
        if st.end.is_none() {
            self.drop_all(&mut st);
            st.end = Some(end);
        }
        drop(st);
        self.writable.raise();
        self.drained.notify_waiters();
    }

    /// Drops everything queued and behind the cursors (counting the live
    /// events); returns how many live events that was.
    fn drop_all(&self, st: &mut State) -> u64 {
        let mut dropped = 0;
        for cursor in &mut st.cursors {
            dropped += cursor.skip_to_head(&self.stats);
            cursor.owed = 0;
        }
        st.queue.clear();
        st.replies = 0;
        st.reply_bytes = 0;
        st.replays = 0;
        st.replay_bytes = 0;
        dropped
    }

    /// Whether the queue ended (the connection is closing).
    pub fn is_closed(&self) -> bool {
        self.state.lock().end.is_some()
    }

    /// `(frames, bytes)` queued now: replies, replays and the events
    /// between the cursors and their topics' heads.
    pub fn depth(&self) -> (usize, usize) {
        let mut st = self.state.lock();
        self.enforce(&mut st);
        let (events, bytes) = st.backlog();
        (
            st.queue.len() + events as usize,
            st.queued_bytes() + bytes as usize,
        )
    }

    /// Takes up to `max` frames (and at most about [`DRAIN_BYTES`]): the
    /// queued replies and replays in push order, then, once the queue is
    /// empty, events from the cursors, with the `SLOW_CONSUMER` notices
    /// that are due before them. The caller writes the batch's frames, then
    /// says whether they were delivered or dropped.
    ///
    /// A drain that took frames never parks: the writer writes them, then
    /// drains again, and parks on the drain that finds nothing.
    pub fn drain<'b>(&'b self, buf: &'b mut DrainBuf, max: usize) -> Batch<'b> {
        self.drain_as(buf, max, Owner::Writer)
    }

    /// [`Outbox::drain`] for `owner`: the flusher drains a connection it
    /// claimed; a drain of its that finds nothing parks it again, or hands
    /// it over to its writer if that one asked meanwhile. An ended queue is
    /// the writer's to finish (the flusher hands over).
    pub fn drain_as<'b>(&'b self, buf: &'b mut DrainBuf, max: usize, owner: Owner) -> Batch<'b> {
        buf.frames.clear();
        let status = self.take(&mut buf.frames, &mut buf.settle, max, owner);
        Batch {
            buf,
            status,
            stats: &self.stats,
            kept: false,
        }
    }

    /// A batch a flusher left (see [`Handover`]), to settle once written.
    pub fn resume<'b>(&'b self, buf: &'b mut DrainBuf) -> Batch<'b> {
        Batch {
            buf,
            status: Drained::More,
            stats: &self.stats,
            kept: false,
        }
    }

    /// What this connection was sent, in total and per topic.
    pub fn stats(&self) -> parking_lot::MutexGuard<'_, ConnStats> {
        self.stats.lock()
    }

    fn take(
        &self,
        out: &mut Vec<Queued>,
        settle: &mut Settlement,
        max: usize,
        owner: Owner,
    ) -> Drained {
        let mut st = self.state.lock();
        if let Some(end) = &st.end {
            return Drained::End(end.clone());
        }
        if owner == Owner::Writer {
            // A caller that did not claim (a test, a stream without a
            // direct socket) takes it here.
            let _ = self
                .park
                .state
                .compare_exchange(PARKED, RUNNING, SeqCst, Relaxed);
        }
        let had_room = self.has_room(&st);
        let mut room = Room {
            frames: max.max(1),
            bytes: DRAIN_BYTES,
        };
        while room.left() {
            // A reply behind a fence: its topics' events first.
            if let Some(Item::Reply(_, Some(fence))) = st.queue.front() {
                let fence: Vec<(Arc<Topic>, u64)> = fence.to_vec();
                let mut reached = true;
                for (topic, upto) in fence {
                    let Some(i) = st.cursor_of(&topic) else {
                        continue;
                    };
                    match self.read_cursor(&mut st, i, out, settle, &mut room, upto) {
                        Ok(true) => {}
                        Ok(false) => reached = false,
                        Err(end) => return Drained::End(end),
                    }
                }
                if !reached || !room.left() {
                    break;
                }
            }
            let Some(item) = st.pop() else {
                break;
            };
            let taken = match item {
                Item::Reply(frame, _) => Queued::Reply(frame),
                Item::Replay(event) => Queued::Event(event),
            };
            room.take(taken.bytes().len());
            out.push(taken);
        }
        let mut more = !st.queue.is_empty();
        if !more {
            match self.gather(&mut st, out, settle, &mut room) {
                Ok(gathered_all) => more = !gathered_all,
                Err(end) => return Drained::End(end),
            }
        }
        let mut handed_over = false;
        if !more && out.is_empty() {
            // Park, then look again: a publish that moved a head before
            // seeing the state is seen here (both sides `SeqCst`).
            let state = &self.park.state;
            let mine = owner.state();
            if state
                .compare_exchange(mine, PARKED, SeqCst, Relaxed)
                .is_err()
            {
                // Only the flusher's state changes under it: the writer
                // asked for the socket (`WANTED`), and gets it.
                handed_over = true;
            } else if st
                .cursors
                .iter()
                .any(|c| c.topic.head.load(SeqCst) != c.index)
            {
                // Unless a publish claimed it meanwhile (then it is that
                // one's to write), keep going.
                more = state
                    .compare_exchange(PARKED, mine, SeqCst, Relaxed)
                    .is_ok();
            }
        } else if !out.is_empty() {
            // Written first, then drained again: parked on a drain that
            // takes nothing.
            more = true;
        }
        let freed_reply_room = !had_room && self.has_room(&st);
        drop(st);
        if freed_reply_room {
            self.drained.notify_waiters();
        }
        if handed_over {
            self.hand_over(None);
        }
        if more {
            Drained::More
        } else {
            Drained::Empty
        }
    }

    /// Takes events from the cursors, round robin across topics, within
    /// `room`. `Ok(true)` when every cursor reached its head; `Err` when the
    /// `disconnect` policy ended the connection.
    fn gather(
        &self,
        st: &mut State,
        out: &mut Vec<Queued>,
        settle: &mut Settlement,
        room: &mut Room,
    ) -> Result<bool, End> {
        let n = st.cursors.len();
        let first = st.next_cursor;
        for k in 0..n {
            let i = (first + k) % n;
            if !self.read_cursor(st, i, out, settle, room, u64::MAX)? {
                st.next_cursor = (i + 1) % n;
                return Ok(false);
            }
        }
        st.next_cursor = (first + 1) % n.max(1);
        Ok(true)
    }

    /// Takes cursor `i`'s events up to `index` `upto` (or its head) within
    /// `room`, the bound applied first, with the notices due before them.
    /// `Ok(true)` when it got there.
    fn read_cursor(
        &self,
        st: &mut State,
        i: usize,
        out: &mut Vec<Queued>,
        settle: &mut Settlement,
        room: &mut Room,
        upto: u64,
    ) -> Result<bool, End> {
        let byte_bound = self.byte_bound(st);
        let cursor = &mut st.cursors[i];
        let upto = upto.min(cursor.topic.head.load(Acquire));
        if cursor.index >= upto && cursor.owed == 0 {
            return Ok(true);
        }
        if !room.left() {
            return Ok(false);
        }
        let topic = Arc::clone(&cursor.topic);
        let ring = topic.ring.read();
        let Some(at) = self.bound(cursor, &ring, byte_bound) else {
            drop(ring);
            return Err(self.kick(st, i));
        };
        let mut reached = true;
        for event in ring.range_from(at) {
            if event.index > upto {
                break;
            }
            if !room.left() {
                reached = false;
                break;
            }
            if cursor.owed > 0 {
                out.push(Queued::Reply(slow_consumer_notice(
                    &topic.tally,
                    cursor.owed,
                )));
                cursor.owed = 0;
            }
            if event.missed > 0 {
                out.push(Queued::Reply(slow_consumer_notice(
                    &topic.tally,
                    event.missed,
                )));
            }
            room.take(event.frame.bytes().len());
            settle.add(&topic.tally, event.published_at);
            cursor.index = event.index;
            cursor.offset = event.end;
            out.push(Queued::Event(Arc::clone(event)));
        }
        drop(ring);
        if cursor.owed > 0 && reached {
            // The skipped events are the `owed` right before the cursor;
            // before a reply that waits for the events up to `upto`, only
            // those up to it are announced, the others after the reply.
            let first_owed = cursor.index - cursor.owed + 1;
            let due = (upto + 1).saturating_sub(first_owed).min(cursor.owed);
            if due > 0 {
                out.push(Queued::Reply(slow_consumer_notice(&topic.tally, due)));
                cursor.owed -= due;
            }
        }
        cursor.shared.store(cursor.index, Relaxed);
        Ok(reached)
    }

    /// Applies the bound to one cursor, its topic's ring read: the oldest
    /// event it may still write is past what the ring no longer holds,
    /// within `capacity` events of the head and within `byte_bound` bytes
    /// of it (one event is always let through, however big). Under
    /// `drop_oldest` a cursor behind that skips to it, counting the skipped
    /// events as dropped and owing its client a notice; returns where in
    /// the ring it reads from. `None`: under `disconnect`, it fell behind.
    fn bound(&self, cursor: &mut Cursor, ring: &History, byte_bound: u64) -> Option<usize> {
        let (head, head_bytes) = match ring.newest() {
            Some(e) => (e.index, e.end),
            None => (
                cursor.topic.head.load(Acquire),
                cursor.topic.head_bytes.load(Acquire),
            ),
        };
        let mut at = ring.after_index(cursor.index);
        let behind = ring.range_from(at).len();
        let lost = head.saturating_sub(cursor.index) > behind as u64;
        // Within the bound, the usual case: nothing to skip.
        if !lost
            && behind <= self.capacity
            && head_bytes.saturating_sub(cursor.offset) <= byte_bound
        {
            return Some(at);
        }
        if behind > 0 {
            at += behind.saturating_sub(self.capacity);
            at = ring.starting_at(at, head_bytes.saturating_sub(byte_bound));
            at = at.min(ring.len() - 1);
        }
        let (to_index, to_offset) = match ring.range_from(at).next() {
            Some(e) => (e.index - 1, e.start()),
            None => (head, head_bytes),
        };
        if to_index > cursor.index && self.policy == SlowConsumerPolicy::Disconnect {
            return None;
        }
        cursor.owed += cursor.skip_to(to_index, to_offset, &self.stats);
        Some(at)
    }

    /// What the byte bound leaves for a cursor's events beside the queued
    /// replies.
    fn byte_bound(&self, st: &State) -> u64 {
        self.max_bytes.saturating_sub(st.reply_bytes).max(1) as u64
    }

    /// Applies the slow-consumer policy to the cursors past the bound now
    /// (see [`Outbox::enforce`]).
    pub(super) fn enforce_bound(&self) {
        let mut st = self.state.lock();
        self.enforce(&mut st);
    }

    /// Applies the bound to every cursor past it, as its writer would: the
    /// policy holds whenever the connection is looked at, not only when
    /// its writer drains (a stalled writer drains nothing).
    fn enforce(&self, st: &mut State) {
        if st.end.is_some() {
            return;
        }
        let byte_bound = self.byte_bound(st);
        for i in 0..st.cursors.len() {
            let cursor = &mut st.cursors[i];
            let (events, bytes) = cursor.distance();
            if events <= self.capacity as u64 && bytes <= byte_bound {
                continue;
            }
            let topic = Arc::clone(&cursor.topic);
            let ring = topic.ring.read();
            if self.bound(cursor, &ring, byte_bound).is_none() {
                drop(ring);
                self.kick(st, i);
                return;
            }
        }
    }

    /// The `disconnect` policy: cursor `i` fell out of the bound. Every
    /// event not yet written is dropped and counted, and the connection
    /// ends with a `SLOW_CONSUMER` naming that topic and the count.
    fn kick(&self, st: &mut State, i: usize) -> End {
        let tally = Arc::clone(&st.cursors[i].topic.tally);
        let dropped = self.drop_all(st);
        tally.count_slow_consumer_event();
        let end = End::Kicked {
            topic: tally.name.to_string(),
            dropped,
        };
        st.end = Some(end.clone());
        self.writable.raise();
        self.drained.notify_waiters();
        end
    }

    /// Whether the reader may take another request: fewer than
    /// `reply_limit` replies and their bytes under half the byte bound.
    fn has_room(&self, st: &State) -> bool {
        st.replies < self.reply_limit && st.reply_bytes < self.reply_byte_limit
    }

    /// Whether a request may be read now (see [`Outbox::reply_room`]).
    pub fn may_read(&self) -> bool {
        let st = self.state.lock();
        self.has_room(&st) || st.end.is_some()
    }

    /// Wakes the writer for something outside the queue (a pong owed).
    pub fn wake_writer(&self) {
        self.writable.raise();
    }

    /// Waits until the writer has something to do. Use after
    /// [`Outbox::drain`] returned [`Drained::Empty`].
    pub async fn writable(&self) {
        self.writable.wait().await;
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

/// What one drain may still take.
struct Room {
    frames: usize,
    bytes: usize,
}

impl Room {
    fn left(&self) -> bool {
        self.frames > 0 && self.bytes > 0
    }

    fn take(&mut self, bytes: usize) {
        self.frames -= 1;
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// A `SLOW_CONSUMER` notice, counted.
fn slow_consumer_notice(tally: &TopicTally, dropped: u64) -> Frame {
    tally.count_slow_consumer_event();
    Frame::slow_consumer(&tally.name, dropped)
}
