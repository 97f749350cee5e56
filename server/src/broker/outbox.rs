//! The bounded outbound queue of one connection, with the slow-consumer
//! policies of the contract.
//!
//! Publishers push into it while holding their topic's lock; the
//! connection's writer drains it in batches. A queue never blocks a
//! publisher: when it holds `capacity` events, `drop_oldest` evicts the
//! oldest event (counted, and owed to the client as one `SLOW_CONSUMER`
//! notice per topic), and `disconnect` ends the connection. Replies (`ack`,
//! `error`, `pong`, `info`) are never evicted; instead the connection's
//! reader stops reading requests while `reply_limit` replies are unread.
//!
//! One FIFO holds both kinds, so order is simply push order: an `ack` pushed
//! before replayed events is written before them, and an `unsubscribe` ack
//! is written after every event of that topic that was queued before it.

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

/// What to do with a connection whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Evict the oldest queued event, count it, and tell the client.
    #[default]
    DropOldest,
    /// Send `SLOW_CONSUMER` and close the connection with 4008.
    Disconnect,
}

/// Why a connection's queue accepts nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The `disconnect` policy fired: tell the client, then close with 4008.
    Kicked { topic: String, dropped: u64 },
    /// Close with this code and reason (e.g. 1009 for an oversized frame).
    Close { code: u16, reason: String },
    /// The peer is gone; nothing more can be written.
    Gone,
}

enum Outgoing {
    Reply(Frame),
    Event {
        event: Arc<PublishedEvent>,
        /// Replayed from history: written like any event, but not counted
        /// as delivered or dropped.
        replay: bool,
    },
}

struct State {
    queue: VecDeque<Outgoing>,
    events: usize,
    replies: usize,
    /// `SLOW_CONSUMER` notices owed: per topic, events dropped since the
    /// last notice, in order of first drop.
    owed: Vec<(Arc<TopicTally>, u64)>,
    end: Option<End>,
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

/// What [`Outbox::drain_into`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// The queue is empty now.
    Empty,
    /// More is queued: write this batch, then drain again.
    More,
    /// Write this batch (if any), then end the connection this way.
    End(End),
}

pub struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    reply_limit: usize,
    policy: SlowConsumerPolicy,
    /// Wakes the writer when the queue turns non-empty or ends.
    writable: Notify,
    /// Wakes a reader waiting for reply room.
    drained: Notify,
}

impl Outbox {
    pub fn new(capacity: usize, policy: SlowConsumerPolicy) -> Self {
        let capacity = capacity.max(1);
        Outbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                events: 0,
                replies: 0,
                owed: Vec::new(),
                end: None,
            }),
            capacity,
            reply_limit: capacity.max(MIN_REPLY_LIMIT),
            policy,
            writable: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Queues a reply. Replies are never evicted; a closed queue discards it.
    pub fn push_reply(&self, frame: Frame) {
        let mut st = self.state.lock();
        if st.end.is_some() {
            return;
        }
        let was_empty = st.queue.is_empty();
        st.queue.push_back(Outgoing::Reply(frame));
        st.replies += 1;
        drop(st);
        if was_empty {
            self.writable.notify_one();
        }
    }

    /// Queues an event, applying the slow-consumer policy when full.
    /// Called with the event's topic locked, so events of one topic enter
    /// every queue in `seq` order.
    pub fn push_event(&self, event: &Arc<PublishedEvent>, replay: bool) {
        let mut st = self.state.lock();
        if st.end.is_some() {
            if !replay {
                event.tally.add_dropped(1);
            }
            return;
        }
        if st.events >= self.capacity {
            match self.policy {
                SlowConsumerPolicy::DropOldest => evict_oldest_event(&mut st),
                SlowConsumerPolicy::Disconnect => {
                    let mut dropped = drop_queued_events(&mut st);
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
        let was_empty = st.queue.is_empty();
        st.queue.push_back(Outgoing::Event {
            event: Arc::clone(event),
            replay,
        });
        st.events += 1;
        drop(st);
        if was_empty {
            self.writable.notify_one();
        }
    }

    /// Ends the queue: what is still queued is dropped and counted, and the
    /// writer is woken to close the connection. The first end wins.
    pub fn close(&self, end: End) {
        let mut st = self.state.lock();
        if st.end.is_none() {
            drop_queued_events(&mut st);
            st.queue.clear();
            st.replies = 0;
            st.end = Some(end);
        }
        drop(st);
        self.writable.notify_one();
        self.drained.notify_waiters();
    }

    /// Moves up to `max` queued frames into `out`, in order, with the
    /// `SLOW_CONSUMER` notices that are due: before the next event of a
    /// topic that lost events, or, for every such topic, once the queue is
    /// empty. Live events taken are added to `settle`; the caller settles
    /// them as delivered or dropped once it knows which.
    pub fn drain_into(
        &self,
        out: &mut Vec<Queued>,
        settle: &mut Settlement,
        max: usize,
    ) -> Drained {
        let mut st = self.state.lock();
        if let Some(end) = &st.end {
            return Drained::End(end.clone());
        }
        let replies_before = st.replies;
        let mut taken = 0;
        while taken < max {
            let Some(item) = st.queue.pop_front() else {
                break;
            };
            taken += 1;
            match item {
                Outgoing::Reply(frame) => {
                    st.replies -= 1;
                    out.push(Queued::Reply(frame));
                }
                Outgoing::Event { event, replay } => {
                    st.events -= 1;
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
            }
        }
        let empty = st.queue.is_empty();
        if empty {
            for (tally, n) in st.owed.drain(..) {
                out.push(Queued::Reply(slow_consumer_notice(&tally, n)));
            }
        }
        let freed_reply_room = replies_before >= self.reply_limit && st.replies < self.reply_limit;
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

    /// Waits until the writer has something to do. Use after
    /// [`Outbox::drain_into`] returned [`Drained::Empty`].
    pub async fn writable(&self) {
        self.writable.notified().await;
    }

    /// Waits until fewer than `reply_limit` replies are unread (or the queue
    /// ended): the reader's backpressure.
    pub async fn reply_room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.state.lock();
                if st.replies < self.reply_limit || st.end.is_some() {
                    return;
                }
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

/// `drop_oldest`: evicts the first event (replies stay), counts it, and owes
/// the client a notice for its topic.
fn evict_oldest_event(st: &mut State) {
    let Some(i) = st
        .queue
        .iter()
        .position(|o| matches!(o, Outgoing::Event { .. }))
    else {
        return;
    };
    let Some(Outgoing::Event { event, replay }) = st.queue.remove(i) else {
        return;
    };
    st.events -= 1;
    if !replay {
        event.tally.add_dropped(1);
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

/// Removes every queued event, counting the live ones as dropped; returns
/// how many events were removed. Replies stay.
fn drop_queued_events(st: &mut State) -> u64 {
    let mut removed = 0;
    st.queue.retain(|o| match o {
        Outgoing::Reply(_) => true,
        Outgoing::Event { event, replay } => {
            if !replay {
                event.tally.add_dropped(1);
            }
            removed += 1;
            false
        }
    });
    st.events = 0;
    st.owed.clear();
    removed
}
