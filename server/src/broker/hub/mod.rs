//! The hub: this instance's copy of every topic (its `seq`, epoch, history
//! ring and subscribers) and its connections (their outboxes and
//! subscriptions). It applies events whose `seq` a log decided
//! ([`super::log`]) and fans them out; it never decides a topic's existence
//! or a `seq` on its own, so the facade ([`super::Broker`]) is the only
//! way in from outside (`pub(crate)`).
//!
//! - [`topic`]: a topic with its `seq`, `epoch`, history ring and subscribers,
//!   behind its own lock (no lock is shared by all topics on the publish path).
//! - [`connection`] and [`outbox`]: a connection's subscriptions and its
//!   bounded outbound queue with the slow-consumer policies.
//! - [`board`]: one connection as the admin's connections board shows it.
//! - [`subscriptions`]: subscribing (a name or a pattern), unsubscribing
//!   and disconnecting, each atomic with the publishing of the topics it
//!   touches.
//! - [`frame`]: server frames, each event encoded once per publish.
//! - [`tally`]: counters per topic and in total, with the contract's invariant.
//!
//! A topic's subscriber map has one entry per connection that follows it,
//! whatever made it follow (its name, patterns), so an event reaches a
//! connection once and fan-out costs the same with or without patterns.
//! Patterns are matched when a subscription or a topic is created, never
//! per event: a new topic is attached to the pattern subscriptions that
//! match it before anyone can publish to it.

mod board;
pub mod connection;
pub(crate) mod dedup;
pub mod frame;
pub mod outbox;
mod subscriptions;
pub use subscriptions::Joining;
pub(crate) use subscriptions::{LocalPresence, Start};
pub mod tally;
pub mod topic;

use super::error::{self, BrokerError};
use super::{BrokerConfig, HistoryRange, TopicCounts, TopicInfo};
use connection::{Connection, Permits, Transport};
use dashmap::DashMap;
use frame::{EventDraft, Frame};
use outbox::Bounds;
use protocol::{ErrorCode, InfoKind};
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::Arc;
use std::time::Instant;
use tally::{Limit, TopicTally, Totals};
use topic::{PublishedEvent, Subscriber, Topic};

/// How many events beyond its history a topic's ring holds before it
/// looks for its slowest cursor to drop what every cursor has passed: the
/// look reads every subscriber's position, so it is paid once per this
/// many publishes.
const TRIM_EVERY: usize = 128;

/// Where [`Hub::append_next`] put a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub seq: u64,
    /// Published within the dedup window already, as `seq`.
    pub duplicate: bool,
}

pub(crate) struct Hub {
    config: BrokerConfig,
    /// A sharded map: looking a topic up on the publish path takes one
    /// shard's read lock, never a lock common to all topics.
    topics: DashMap<Arc<str>, Arc<Topic>>,
    totals: Arc<Totals>,
    /// Open connections by id (for the queued-bytes gauge and, later, the
    /// connections list); a connection leaves it when disconnected.
    connections: DashMap<u64, Arc<Connection>>,
    /// Every pattern subscription, for the topics created later. Lock
    /// order: this first (a pattern subscribe holds it for writing while it
    /// attaches to the topics that exist; a topic's creation for reading
    /// while it attaches the patterns that match), then a topic map shard,
    /// then topic locks.
    patterns: parking_lot::RwLock<Vec<subscriptions::PatternSubscription>>,
    /// Held by the one caller evicting history for the byte budget.
    evicting: parking_lot::Mutex<()>,
    /// Cluster mode: this node's name, shown beside its connection ids.
    pub(crate) node: std::sync::OnceLock<Arc<str>>,
    /// Cluster mode: where this node's presence changes go (to the other
    /// nodes).
    pub(crate) presence_out: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<LocalPresence>>,
    /// Writes to the sockets of parked writers that a publish claimed
    /// (see [`Flush`]); without one, claimed writers are woken instead.
    pub(crate) flusher: std::sync::OnceLock<Arc<dyn Flush>>,
    next_connection: AtomicU64,
    started: Instant,
}

/// The batched wake-up: a publish hands the connections whose writers were
/// parked (and that have a direct socket) to this, in one call per
/// publish, instead of waking each one's task; it writes their events in
/// one pass and hands a full socket back to its writer.
pub trait Flush: Send + Sync {
    /// Takes the connections out of `claimed` (the flusher owns their
    /// sockets until it parks them or hands them over).
    fn flush(&self, claimed: &mut Vec<Arc<Connection>>);
}

thread_local! {
    /// The connections one publish claimed, handed to the flusher: kept per
    /// thread so a publish allocates nothing for them.
    static CLAIMED: std::cell::RefCell<Vec<Arc<Connection>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Hub {
    pub(crate) fn new(config: BrokerConfig) -> Self {
        Hub {
            config,
            topics: DashMap::new(),
            totals: Arc::new(Totals::default()),
            connections: DashMap::new(),
            patterns: parking_lot::RwLock::default(),
            evicting: parking_lot::Mutex::new(()),
            node: std::sync::OnceLock::new(),
            presence_out: std::sync::OnceLock::new(),
            flusher: std::sync::OnceLock::new(),
            next_connection: AtomicU64::new(1),
            started: Instant::now(),
        }
    }

    pub(crate) fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub(crate) fn totals(&self) -> &Totals {
        &self.totals
    }

    pub(crate) fn uptime_sec(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    // ------------------------------------------------------------ topics

    /// The error of a create over `max_topics` (counted as a refusal).
    pub(crate) fn too_many_topics(&self) -> BrokerError {
        self.totals.refuse(Limit::MaxTopics);
        BrokerError::new(
            ErrorCode::RateLimited,
            format!(
                "this server holds its limit of {} topics (max_topics); delete one first",
                self.config.max_topics
            ),
        )
    }

    fn new_topic(&self, name: Arc<str>, epoch: String, created_at: String) -> Arc<Topic> {
        let tally = Arc::new(TopicTally::new(Arc::clone(&name), Arc::clone(&self.totals)));
        Arc::new(Topic::new(
            name,
            epoch,
            created_at,
            tally,
            self.config.history_size,
        ))
    }

    /// Makes a topic the in-memory log decided to create exist, unless one
    /// of that name is here: `admit` (the log's `max_topics` check) runs
    /// only when the name is free, under the map's entry, so two creates of
    /// one name cannot both pass it.
    pub(crate) fn insert_topic(
        &self,
        name: &str,
        epoch: String,
        admit: impl FnOnce() -> Result<(), BrokerError>,
    ) -> Result<TopicInfo, BrokerError> {
        let key: Arc<str> = Arc::from(name);
        let patterns = self.patterns.read();
        match self.topics.entry(Arc::clone(&key)) {
            dashmap::Entry::Occupied(_) => Err(BrokerError::topic_exists(name)),
            dashmap::Entry::Vacant(slot) => {
                admit()?;
                let topic = self.new_topic(key, epoch, super::clock::now_rfc3339());
                self.attach_patterns(&patterns, &topic);
                let info = info_of(&topic);
                slot.insert(topic);
                Ok(info)
            }
        }
    }

    /// Makes a topic decided elsewhere (the cluster's registry) exist here
    /// with that epoch. A topic of the same name with another epoch was
    /// deleted and created again meanwhile: its subscribers get
    /// `topic_deleted` first. Returns the topic and whether it is new here.
    /// `max_topics` is the registry's to enforce, not the hub's.
    pub(crate) fn adopt_topic(
        &self,
        name: &str,
        epoch: &str,
        created_at: &str,
    ) -> (Arc<Topic>, bool) {
        loop {
            if let Some(topic) = self.topics.get(name) {
                if topic.epoch == epoch {
                    return (Arc::clone(topic.value()), false);
                }
            }
            self.drop_topic(name, None);
            let key: Arc<str> = Arc::from(name);
            let patterns = self.patterns.read();
            if let dashmap::Entry::Vacant(slot) = self.topics.entry(Arc::clone(&key)) {
                let topic = self.new_topic(key, epoch.to_owned(), created_at.to_owned());
                self.attach_patterns(&patterns, &topic);
                slot.insert(Arc::clone(&topic));
                return (topic, true);
            }
        }
    }

    /// Removes a topic (only with this epoch when one is given) and tells
    /// its subscribers. Whether there was one to remove.
    pub(crate) fn drop_topic(&self, name: &str, epoch: Option<&str>) -> bool {
        let removed = self
            .topics
            .remove_if(name, |_, topic| epoch.is_none_or(|e| *topic.epoch == *e));
        let Some((_, topic)) = removed else {
            return false;
        };
        let mut st = topic.state.lock();
        st.deleted = true;
        st.presence.clear();
        let freed = topic.ring.write().clear();
        topic.history_bytes.store(0, Relaxed);
        self.totals.history_bytes.fetch_sub(freed as u64, Relaxed);
        let forgotten = st.dedup.clear();
        topic.dedup_bytes.store(0, Relaxed);
        self.totals.dedup_bytes.fetch_sub(forgotten as u64, Relaxed);
        let notice = Frame::info(InfoKind::TopicDeleted, Some(name.to_owned()));
        for (_, Subscriber { conn, .. }) in st.subscribers.drain(..) {
            conn.outbox.discard_topic(&topic);
            conn.outbox.push_reply(notice.clone());
            conn.forget(&topic);
            self.totals.subscriptions.fetch_sub(1, Relaxed);
        }
        true
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        error::check_topic_name(name)?;
        self.topics
            .get(name)
            .map(|t| Arc::clone(t.value()))
            .ok_or_else(|| BrokerError::topic_not_found(name))
    }

    pub(crate) fn topic_info(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        Ok(info_of(&*self.topic(name)?))
    }

    /// Every topic, sorted by name.
    pub(crate) fn list_topics(&self) -> Vec<TopicInfo> {
        let topics: Vec<Arc<Topic>> = self.topics.iter().map(|e| Arc::clone(e.value())).collect();
        let mut infos: Vec<TopicInfo> = topics.iter().map(|t| info_of(t)).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    pub(crate) fn topic_count(&self) -> u64 {
        self.topics.len() as u64
    }

    pub(crate) fn topic_counts(&self, name: &str) -> Result<TopicCounts, BrokerError> {
        Ok(counts_of(&*self.topic(name)?))
    }

    /// Per-topic counters, sorted by name.
    pub(crate) fn all_topic_counts(&self) -> Vec<(String, TopicCounts)> {
        let topics: Vec<Arc<Topic>> = self.topics.iter().map(|e| Arc::clone(e.value())).collect();
        let mut out: Vec<(String, TopicCounts)> = topics
            .iter()
            .map(|t| (t.name.to_string(), counts_of(t)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Each topic's messages published so far, without taking topic locks.
    pub(crate) fn published_per_topic(&self) -> Vec<(Arc<str>, u64)> {
        self.topics
            .iter()
            .map(|e| {
                (
                    Arc::clone(&e.value().name),
                    e.value().tally.published.load(Relaxed),
                )
            })
            .collect()
    }

    /// Messages from a topic's history, oldest first, with its epoch.
    pub(crate) fn history(
        &self,
        name: &str,
        range: HistoryRange,
    ) -> Result<(String, Vec<Arc<PublishedEvent>>), BrokerError> {
        let topic = self.topic(name)?;
        let ring = topic.ring.read();
        let events: Vec<Arc<PublishedEvent>> = match range {
            HistoryRange::All => ring.all().cloned().collect(),
            HistoryRange::LastN(n) => ring.last_n(clamp(n)).cloned().collect(),
            // Whatever history still holds after `seq`; a REST reader sees
            // the gap from the first `seq` it gets.
            HistoryRange::SinceSeq(seq) => ring.all().filter(|e| e.seq > seq).cloned().collect(),
        };
        drop(ring);
        Ok((topic.epoch.clone(), events))
    }

    // ------------------------------------------------------ publishing

    /// Appends a message at the next `seq`, the in-memory log's decision,
    /// made under the topic's lock so that `seq` and the order of fan-out
    /// are one: history and every subscriber get it at once. `None` when
    /// the topic was deleted meanwhile.
    ///
    /// A message whose `id` the topic published within `dedup_window` is
    /// not appended: the original's `seq` comes back with `duplicate`.
    pub(crate) fn append_next(
        &self,
        topic: &Topic,
        id: &str,
        draft: EventDraft,
    ) -> Option<Appended> {
        let window = self.dedup_window();
        let (now, digest) = if window.enabled() {
            (dedup::now_ms(), dedup::Digest::of(id))
        } else {
            (0, dedup::Digest::default())
        };
        let mut st = topic.state.lock();
        if st.deleted {
            return None;
        }
        if let Some(seq) = st.dedup.lookup(window, digest, now) {
            drop(st);
            self.totals.duplicates.fetch_add(1, Relaxed);
            return Some(Appended {
                seq,
                duplicate: true,
            });
        }
        let seq = st.seq + 1;
        self.fan_out(topic, &mut st, seq, 0, draft);
        let over = self.totals.dedup_bytes.load(Relaxed) >= self.config.max_dedup_bytes as u64;
        let change = st.dedup.record(window, digest, seq, now, over);
        if change != 0 {
            topic.dedup_bytes.store(st.dedup.bytes(), Relaxed);
            // Under the lock, so that a delete (which subtracts what the
            // topic holds, under it too) never subtracts bytes not added.
            self.add_dedup_bytes(change);
        }
        drop(st);
        self.enforce_history_budget();
        Some(Appended {
            seq,
            duplicate: false,
        })
    }

    /// See [`crate::broker::Broker::forget_expired_ids`]. Topics holding no
    /// ids (their `dedup_bytes` is 0) are skipped without their lock.
    pub(crate) fn forget_expired_ids(&self) {
        let window = self.dedup_window();
        if self.totals.dedup_bytes.load(Relaxed) == 0 {
            return;
        }
        let now = dedup::now_ms();
        let topics: Vec<Arc<Topic>> = self
            .topics
            .iter()
            .filter(|e| e.value().dedup_bytes.load(Relaxed) > 0)
            .map(|e| Arc::clone(e.value()))
            .collect();
        for topic in topics {
            let mut st = topic.state.lock();
            let change = st.dedup.prune(window, now);
            topic.dedup_bytes.store(st.dedup.bytes(), Relaxed);
            self.add_dedup_bytes(change);
            drop(st);
        }
    }

    fn add_dedup_bytes(&self, change: isize) {
        add_signed(&self.totals.dedup_bytes, change);
    }

    fn dedup_window(&self) -> dedup::Window {
        dedup::Window {
            span: self.config.dedup_window,
            ids: self.config.dedup_ids,
        }
    }

    /// Takes in an event whose `seq` was decided elsewhere (the cluster's
    /// stream), in order: one at or below the topic's `seq` was seen already
    /// and is skipped. Subscribers are told of a jump over `seq`s this node
    /// never received (the stream dropped them before it read them) with a
    /// `SLOW_CONSUMER` error naming how many. Returns the topic's `seq`.
    pub(crate) fn apply_event(&self, topic: &Topic, seq: u64, draft: EventDraft) -> u64 {
        let mut st = topic.state.lock();
        if st.deleted || seq <= st.seq {
            return st.seq;
        }
        let mut missed = seq - st.seq - 1;
        // A jump from 0 is where a new copy starts, unless someone already
        // waits there. The cursors that reach the event tell their clients.
        if st.seq == 0 && st.subscribers.is_empty() {
            missed = 0;
        }
        self.fan_out(topic, &mut st, seq, missed, draft);
        drop(st);
        self.enforce_history_budget();
        seq
    }

    /// Makes `seq` the topic's newest event: appends it to the ring once
    /// and wakes the subscribers' writers that are parked. Nothing is
    /// stored per subscriber: each reads the ring through its cursor.
    fn fan_out(
        &self,
        topic: &Topic,
        st: &mut topic::TopicState,
        seq: u64,
        missed: u64,
        draft: EventDraft,
    ) {
        st.seq = seq;
        let frame = draft.finish(seq);
        let index = topic.head.load(Relaxed) + 1;
        let end = topic.head_bytes.load(Relaxed) + frame.bytes().len() as u64;
        let event = Arc::new(PublishedEvent {
            seq,
            index,
            end,
            missed,
            frame,
            tally: Arc::clone(&topic.tally),
            published_at: std::time::Instant::now(),
        });
        topic.tally.published.store(seq, Relaxed);
        let fan_out = st.subscribers.len() as u64;
        topic.tally.enqueued.fetch_add(fan_out, Relaxed);
        self.totals.enqueued.fetch_add(fan_out, Relaxed);
        let reach = if fan_out == 0 {
            topic::Reach::NONE
        } else {
            topic::Reach {
                events: self.config.subscriber_queue,
                bytes: self.config.max_queue_bytes,
            }
        };
        let mut ring = topic.ring.write();
        let mut change = ring.push(event, reach);
        topic.head_bytes.store(end, Relaxed);
        // SeqCst: a writer parks (flag, then heads) the other way round.
        topic.head.store(index, SeqCst);
        // Once per TRIM_EVERY events, a look at every cursor: the ring
        // keeps nothing beyond history that all of them have passed, and a
        // cursor past the bound is made to skip now (its writer may be
        // stalled), so that what the counters call queued stays near it.
        let mut laggards = Vec::new();
        if fan_out > 0 && index >= st.next_trim {
            st.next_trim = index + TRIM_EVERY as u64;
            let bound = self.config.subscriber_queue as u64;
            let mut slowest = index;
            for sub in st.subscribers.values() {
                let at = sub.at.load(Relaxed);
                slowest = slowest.min(at);
                if index.saturating_sub(at) > bound {
                    laggards.push(Arc::clone(&sub.conn));
                }
            }
            change -= ring.trim(slowest) as isize;
        }
        topic.history_bytes.store(ring.bytes(), Relaxed);
        drop(ring);
        add_signed(&self.totals.history_bytes, change);
        for conn in laggards {
            conn.outbox.enforce_bound();
        }
        self.wake_subscribers(st);
        self.totals.published.fetch_add(1, Relaxed);
    }

    /// Wakes the parked writers of `st`'s subscribers: those with a
    /// direct socket are claimed and handed to the flusher together, the
    /// others' tasks are woken.
    fn wake_subscribers(&self, st: &topic::TopicState) {
        CLAIMED.with_borrow_mut(|claimed| {
            for sub in st.subscribers.values() {
                if sub.conn.outbox.wake(sub.conn.direct().is_some()) == outbox::Wake::Claimed {
                    claimed.push(Arc::clone(&sub.conn));
                }
            }
            if claimed.is_empty() {
                return;
            }
            match self.flusher.get() {
                Some(flusher) => flusher.flush(claimed),
                None => {
                    for conn in claimed.drain(..) {
                        conn.outbox.hand_over(None);
                    }
                }
            }
        });
    }

    /// Keeps the history of all topics within `max_history_bytes`: once
    /// past it, evicts the oldest messages of the topics that hold the most
    /// bytes, down to 1/16 under the budget, so that one pass (a look at
    /// every topic) serves many publishes. Called with no topic locked;
    /// one caller evicts at a time, the others go on.
    fn enforce_history_budget(&self) {
        let budget = self.config.max_history_bytes as u64;
        if budget == 0 || self.totals.history_bytes.load(Relaxed) <= budget {
            return;
        }
        let Some(_evicting) = self.evicting.try_lock() else {
            return;
        };
        let target = budget - budget / 16;
        let topics: Vec<Arc<Topic>> = self
            .topics
            .iter()
            .filter(|e| e.value().history_bytes.load(Relaxed) > 0)
            .map(|e| Arc::clone(e.value()))
            .collect();
        // (bytes, index into `topics`): the biggest on top.
        let mut biggest: std::collections::BinaryHeap<(usize, usize)> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.history_bytes.load(Relaxed), i))
            .collect();
        while self.totals.history_bytes.load(Relaxed) > target {
            let Some((_, i)) = biggest.pop() else {
                break;
            };
            let topic = &topics[i];
            // Down to the next biggest topic's size, then look again.
            let floor = biggest.peek().map_or(0, |(b, _)| *b);
            let st = topic.state.lock();
            let mut ring = topic.ring.write();
            let mut evicted = 0;
            loop {
                let freed = ring.pop_oldest();
                if freed == 0 {
                    break;
                }
                evicted += 1;
                self.totals.history_bytes.fetch_sub(freed as u64, Relaxed);
                if ring.bytes() <= floor || self.totals.history_bytes.load(Relaxed) <= target {
                    break;
                }
            }
            let left = ring.bytes();
            topic.history_bytes.store(left, Relaxed);
            drop(ring);
            drop(st);
            self.totals.history_evicted.fetch_add(evicted, Relaxed);
            if left > 0 {
                biggest.push((left, i));
            }
        }
    }

    // --------------------------------------------------- subscriptions

    /// Opens a connection: its queue, (empty) subscription set, what it may
    /// do and its publish rate.
    pub(crate) fn connect_with(
        &self,
        permits: Permits,
        remote: Option<std::net::SocketAddr>,
    ) -> Arc<Connection> {
        self.connect_via(Transport::WebSocket, permits, remote)
    }

    /// [`Hub::connect_with`] over `transport`.
    pub(crate) fn connect_via(
        &self,
        transport: Transport,
        permits: Permits,
        remote: Option<std::net::SocketAddr>,
    ) -> Arc<Connection> {
        let id = self.next_connection.fetch_add(1, Relaxed);
        self.totals.connections.fetch_add(1, Relaxed);
        let conn = Arc::new(Connection::new(
            id,
            remote,
            transport,
            Bounds {
                events: self.config.subscriber_queue,
                bytes: self.config.max_queue_bytes,
            },
            self.config.slow_consumer_policy,
            permits,
            connection::Rate {
                per_sec: self.config.publish_rate,
                // 0: one second's worth.
                burst: match self.config.publish_burst {
                    0 => self.config.publish_rate,
                    burst => burst,
                },
            },
        ));
        self.connections.insert(id, Arc::clone(&conn));
        conn
    }

    /// An open connection by id.
    pub(crate) fn connection(&self, id: u64) -> Option<Arc<Connection>> {
        self.connections.get(&id).map(|c| Arc::clone(c.value()))
    }

    /// Every open connection, by id.
    pub(crate) fn connections(&self) -> Vec<Arc<Connection>> {
        let mut all: Vec<Arc<Connection>> = self
            .connections
            .iter()
            .map(|c| Arc::clone(c.value()))
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// Wakes every open connection's writer (shutdown).
    pub(crate) fn wake_writers(&self) {
        for c in self.connections.iter() {
            c.value().outbox.wake_writer();
        }
    }

    /// `(frames, bytes)` queued over every open connection.
    pub(crate) fn queued(&self) -> (u64, u64) {
        let conns: Vec<Arc<Connection>> = self
            .connections
            .iter()
            .map(|c| Arc::clone(c.value()))
            .collect();
        conns.iter().fold((0, 0), |(f, b), c| {
            let (frames, bytes) = c.outbox.depth();
            (f + frames as u64, b + bytes as u64)
        })
    }
}

/// `u64` counts from clients, as an in-memory length.
pub(super) fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn counts_of(topic: &Topic) -> TopicCounts {
    let (seq, subscribers) = topic.snapshot();
    TopicCounts {
        messages: seq,
        subscribers,
        enqueued: topic.tally.enqueued.load(Relaxed),
        delivered: topic.tally.delivered.load(Relaxed),
        dropped: topic.tally.dropped.load(Relaxed),
    }
}

pub(crate) fn info_of(topic: &Topic) -> TopicInfo {
    let (seq, subscribers) = topic.snapshot();
    TopicInfo {
        name: topic.name.to_string(),
        subscribers,
        messages: seq,
        created_at: topic.created_at.clone(),
        seq,
        epoch: topic.epoch.clone(),
    }
}

/// Adds a signed change to a byte gauge.
fn add_signed(gauge: &std::sync::atomic::AtomicU64, change: isize) {
    if change >= 0 {
        gauge.fetch_add(change as u64, Relaxed);
    } else {
        gauge.fetch_sub(change.unsigned_abs() as u64, Relaxed);
    }
}
