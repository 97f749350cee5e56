//! The broker core: topics, subscriptions, publishing and stats, in plain
//! Rust with no HTTP in sight. REST and WebSocket are thin adapters over it.
//!
//! - [`topic`]: a topic with its `seq`, `epoch`, history ring and subscribers,
//!   behind its own lock (no lock is shared by all topics on the publish path).
//! - [`connection`] and [`outbox`]: a connection's subscriptions and its
//!   bounded outbound queue with the slow-consumer policies.
//! - [`frame`]: server frames, each event encoded once per publish.
//! - [`tally`]: counters per topic and in total, with the contract's invariant.

pub mod clock;
pub mod connection;
pub mod error;
pub mod frame;
pub mod outbox;
pub mod sampler;
pub mod tally;
pub mod topic;

pub use connection::{Connection, Permits};
use dashmap::DashMap;
pub use error::BrokerError;
pub use frame::EventDraft;
use frame::Frame;
pub use outbox::{Batch, Bounds, DrainBuf, Drained, End, Queued, SlowConsumerPolicy};
use protocol::{self as wire, Ack, InfoKind, PublishMessage, Since};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use tally::TopicTally;
pub use tally::{Limit, Totals};
pub use topic::{PublishedEvent, Topic};

use protocol::ErrorCode;

/// A fresh epoch: 16 hex digits, random, so that a topic deleted and
/// created again (here or on any instance of a cluster) never continues an
/// old `seq` (`since` with another epoch is `recovered: false`).
pub fn new_epoch() -> String {
    let mut epoch = uuid::Uuid::new_v4().simple().to_string();
    epoch.truncate(16);
    epoch
}

/// The broker's knobs (the server's flags map onto these).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Messages kept per topic for replay.
    pub history_size: usize,
    /// Events queued per connection before the slow-consumer policy applies.
    pub subscriber_queue: usize,
    /// Bytes queued per connection (events and replies) before the
    /// slow-consumer policy applies.
    pub max_queue_bytes: usize,
    /// Bytes of history kept over all topics (0: no budget beyond
    /// `history_size` per topic).
    pub max_history_bytes: usize,
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// Largest serialized payload accepted.
    pub max_message_bytes: usize,
    /// Topics that may exist at once.
    pub max_topics: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Publishes per second per connection, checked by [`Broker::may_publish`]
    /// (0: unlimited), with `publish_burst` tokens of headroom.
    pub publish_rate: u32,
    pub publish_burst: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            history_size: 100,
            subscriber_queue: 1024,
            max_queue_bytes: 16 << 20,
            max_history_bytes: 256 << 20,
            slow_consumer_policy: SlowConsumerPolicy::DropOldest,
            max_message_bytes: 65_536,
            max_topics: 10_000,
            max_subscriptions: 1_024,
            publish_rate: 0,
            publish_burst: 0,
        }
    }
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    pub last_n: Option<u64>,
    /// Wins over `last_n` when both are given.
    pub since: Option<Since>,
}

/// Which part of a topic's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRange {
    All,
    LastN(u64),
    SinceSeq(u64),
}

/// A message checked for publishing, not yet published.
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    pub payload: Box<serde_json::value::RawValue>,
}

/// What a publish produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    pub seq: u64,
}

/// A topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub subscribers: u64,
    pub messages: u64,
    pub created_at: String,
    pub seq: u64,
    pub epoch: String,
}

/// A topic's counters, for tests of the invariant and for stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicCounts {
    pub messages: u64,
    pub subscribers: u64,
    pub enqueued: u64,
    pub delivered: u64,
    pub dropped: u64,
}

pub struct Broker {
    config: BrokerConfig,
    /// A sharded map: looking a topic up on the publish path takes one
    /// shard's read lock, never a lock common to all topics.
    topics: DashMap<Arc<str>, Arc<Topic>>,
    /// Topics created and not deleted, counted before insertion so that
    /// concurrent creates cannot pass `max_topics` together.
    topic_slots: AtomicUsize,
    totals: Arc<Totals>,
    /// Open connections by id (for the queued-bytes gauge and, later, the
    /// connections list); a connection leaves it when disconnected.
    connections: DashMap<u64, Arc<Connection>>,
    /// Held by the one caller evicting history for the byte budget.
    evicting: parking_lot::Mutex<()>,
    next_connection: AtomicU64,
    started: Instant,
    /// Whether this broker decides topics and `seq` itself ([`Broker::new`])
    /// or mirrors a log that does ([`Broker::mirror`]).
    authority: bool,
}

impl Broker {
    /// A broker that is the authority: it creates and deletes topics and
    /// assigns `seq` (one process, the in-memory default).
    pub fn new(config: BrokerConfig) -> Self {
        Broker {
            authority: true,
            ..Broker::mirror(config)
        }
    }

    /// A broker that mirrors a log deciding topics and `seq` elsewhere
    /// (NATS JetStream in cluster mode): it takes topics in with
    /// [`Broker::adopt_topic`] and events with [`Broker::apply_event`], and
    /// refuses to create, delete or publish on its own, which would fork
    /// `seq` from the cluster's.
    pub fn mirror(config: BrokerConfig) -> Self {
        Broker {
            authority: false,
            config,
            topics: DashMap::new(),
            topic_slots: AtomicUsize::new(0),
            totals: Arc::new(Totals::default()),
            connections: DashMap::new(),
            evicting: parking_lot::Mutex::new(()),
            next_connection: AtomicU64::new(1),
            started: Instant::now(),
        }
    }

    /// `Ok` on the authority; on a mirror, the refusal of a call only the
    /// authority may make (a programming error: logged, and INTERNAL to
    /// the client, never a forked `seq`).
    fn authority(&self, call: &str) -> Result<(), BrokerError> {
        if self.authority {
            return Ok(());
        }
        tracing::error!(
            call,
            "a mirror broker was asked to decide what its log decides"
        );
        Err(BrokerError::new(
            ErrorCode::Internal,
            "this instance does not decide topics or seq on its own",
        ))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    pub fn uptime_sec(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    // ------------------------------------------------------------ topics

    pub fn create_topic(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        self.authority("create_topic")?;
        error::check_topic_name(name)?;
        let epoch = new_epoch();
        let key: Arc<str> = Arc::from(name);
        match self.topics.entry(Arc::clone(&key)) {
            dashmap::Entry::Occupied(_) => Err(BrokerError::topic_exists(name)),
            dashmap::Entry::Vacant(_) if !self.reserve_topic_slot() => Err(self.too_many_topics()),
            dashmap::Entry::Vacant(slot) => {
                let topic = self.new_topic(key, epoch, clock::now_rfc3339());
                let info = info_of(&topic);
                slot.insert(topic);
                Ok(info)
            }
        }
    }

    /// The error of a create over `max_topics`.
    pub fn too_many_topics(&self) -> BrokerError {
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

    /// Makes a topic decided elsewhere (the cluster's registry) exist here
    /// with that epoch. A topic of the same name with another epoch was
    /// deleted and created again meanwhile: its subscribers get
    /// `topic_deleted` first. Returns the topic and whether it is new here.
    /// `max_topics` is the registry's to enforce, not a mirror's.
    pub fn adopt_topic(&self, name: &str, epoch: &str, created_at: &str) -> (Arc<Topic>, bool) {
        loop {
            if let Some(topic) = self.topics.get(name) {
                if topic.epoch == epoch {
                    return (Arc::clone(topic.value()), false);
                }
            }
            self.drop_topic(name, None);
            let key: Arc<str> = Arc::from(name);
            if let dashmap::Entry::Vacant(slot) = self.topics.entry(Arc::clone(&key)) {
                self.topic_slots.fetch_add(1, Relaxed);
                let topic = self.new_topic(key, epoch.to_owned(), created_at.to_owned());
                slot.insert(Arc::clone(&topic));
                return (topic, true);
            }
        }
    }

    /// Counts one more topic unless `max_topics` are there. Atomic, so
    /// creates racing on different shards cannot pass the limit together.
    fn reserve_topic_slot(&self) -> bool {
        let max = self.config.max_topics;
        self.topic_slots
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    /// Deletes a topic; every subscriber gets `info topic_deleted` and loses
    /// the subscription, and the topic's events still queued to it are
    /// discarded (counted as dropped).
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        self.authority("delete_topic")?;
        error::check_topic_name(name)?;
        if self.drop_topic(name, None) {
            Ok(())
        } else {
            Err(BrokerError::topic_not_found(name))
        }
    }

    /// Removes a topic (only with this epoch when one is given) and tells
    /// its subscribers. Whether there was one to remove.
    pub fn drop_topic(&self, name: &str, epoch: Option<&str>) -> bool {
        let removed = self
            .topics
            .remove_if(name, |_, topic| epoch.is_none_or(|e| *topic.epoch == *e));
        let Some((_, topic)) = removed else {
            return false;
        };
        self.topic_slots.fetch_sub(1, Relaxed);
        let mut st = topic.state.lock();
        st.deleted = true;
        let freed = st.history.clear();
        topic.history_bytes.store(0, Relaxed);
        self.totals.history_bytes.fetch_sub(freed as u64, Relaxed);
        let notice = Frame::info(InfoKind::TopicDeleted, Some(name.to_owned()));
        for (_, conn) in st.subscribers.drain(..) {
            conn.outbox.discard_topic(&topic.tally);
            conn.outbox.push_reply(notice.clone());
            conn.forget(&topic);
            self.totals.subscriptions.fetch_sub(1, Relaxed);
        }
        true
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        error::check_topic_name(name)?;
        self.topics
            .get(name)
            .map(|t| Arc::clone(t.value()))
            .ok_or_else(|| BrokerError::topic_not_found(name))
    }

    pub fn topic_info(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        Ok(info_of(&*self.topic(name)?))
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicInfo> {
        let topics: Vec<Arc<Topic>> = self.topics.iter().map(|e| Arc::clone(e.value())).collect();
        let mut infos: Vec<TopicInfo> = topics.iter().map(|t| info_of(t)).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    pub fn topic_count(&self) -> u64 {
        self.topics.len() as u64
    }

    pub fn topic_counts(&self, name: &str) -> Result<TopicCounts, BrokerError> {
        Ok(counts_of(&*self.topic(name)?))
    }

    /// Per-topic counters, sorted by name.
    pub fn all_topic_counts(&self) -> Vec<(String, TopicCounts)> {
        let topics: Vec<Arc<Topic>> = self.topics.iter().map(|e| Arc::clone(e.value())).collect();
        let mut out: Vec<(String, TopicCounts)> = topics
            .iter()
            .map(|t| (t.name.to_string(), counts_of(t)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Each topic's messages published so far, without taking topic locks.
    pub fn published_per_topic(&self) -> Vec<(Arc<str>, u64)> {
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
    pub fn history(
        &self,
        name: &str,
        range: HistoryRange,
    ) -> Result<(String, Vec<Arc<PublishedEvent>>), BrokerError> {
        let topic = self.topic(name)?;
        let st = topic.state.lock();
        let events: Vec<Arc<PublishedEvent>> = match range {
            HistoryRange::All => st.history.all().cloned().collect(),
            HistoryRange::LastN(n) => st.history.last_n(clamp(n)).cloned().collect(),
            // Whatever history still holds after `seq`; a REST reader sees
            // the gap from the first `seq` it gets.
            HistoryRange::SinceSeq(seq) => {
                st.history.all().filter(|e| e.seq > seq).cloned().collect()
            }
        };
        Ok((topic.epoch.clone(), events))
    }

    // ------------------------------------------------------ publishing

    /// Whether `conn` may publish one more message now (its key's role and
    /// its publish rate); takes a token from its rate when it may.
    pub fn may_publish(&self, conn: &Connection) -> Result<(), BrokerError> {
        if !conn.permits.publish {
            return Err(BrokerError::new(
                ErrorCode::Forbidden,
                "this connection's key lacks the \"publish\" role needed to publish",
            ));
        }
        if !conn.take_publish_token() {
            self.totals.refuse(Limit::PublishRate);
            return Err(BrokerError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} publishes a second on this connection (publish_rate); slow down",
                    self.config.publish_rate
                ),
            ));
        }
        Ok(())
    }

    /// Checks a message before it is published anywhere: the topic name,
    /// the id (or a new one) and the payload's serialized size.
    pub fn prepare(&self, name: &str, message: PublishMessage) -> Result<Prepared, BrokerError> {
        error::check_topic_name(name)?;
        let id = match message.id {
            Some(id) => {
                if let Some(problem) = wire::message_id_problem(&id) {
                    return Err(BrokerError::bad_request(problem));
                }
                id
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let payload = serde_json::value::to_raw_value(&message.payload)
            .map_err(|e| BrokerError::bad_request(format!("payload is not valid JSON: {e}")))?;
        let size = payload.get().len();
        if size > self.config.max_message_bytes {
            return Err(BrokerError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "payload is {size} bytes serialized; at most {} are allowed",
                    self.config.max_message_bytes
                ),
            ));
        }
        Ok(Prepared { id, payload })
    }

    /// Publishes one message: assigns the next `seq`, appends it to history
    /// and queues it to every subscriber, all under the topic's lock.
    pub fn publish(&self, name: &str, message: PublishMessage) -> Result<Receipt, BrokerError> {
        self.authority("publish")?;
        let Prepared { id, payload } = self.prepare(name, message)?;
        let topic = self.topic(name)?;
        // The expensive part (serializing the payload) happens before the lock.
        let draft = EventDraft::new(name, &id, &payload, &clock::now_rfc3339());

        let mut st = topic.state.lock();
        if st.deleted {
            return Err(BrokerError::topic_not_found(name));
        }
        let seq = st.seq + 1;
        self.fan_out(&topic, &mut st, seq, draft);
        drop(st);
        self.enforce_history_budget();
        Ok(Receipt { id, seq })
    }

    /// Takes in an event whose `seq` was decided elsewhere (the cluster's
    /// stream), in order: one at or below the topic's `seq` was seen already
    /// and is skipped. Subscribers are told of a jump over `seq`s this node
    /// never received (the stream dropped them before it read them) with a
    /// `SLOW_CONSUMER` error naming how many. Returns the topic's `seq`.
    pub fn apply_event(&self, topic: &Topic, seq: u64, draft: EventDraft) -> u64 {
        let mut st = topic.state.lock();
        if st.deleted || seq <= st.seq {
            return st.seq;
        }
        let missed = seq - st.seq - 1;
        // A jump from 0 is where a new copy starts, unless someone already
        // waits there.
        if missed > 0 && (st.seq > 0 || !st.subscribers.is_empty()) {
            let notice = Frame::slow_consumer(&topic.name, missed);
            for conn in st.subscribers.values() {
                conn.outbox.push_reply(notice.clone());
            }
        }
        self.fan_out(topic, &mut st, seq, draft);
        drop(st);
        self.enforce_history_budget();
        seq
    }

    /// Makes `seq` the topic's newest event: history and every subscriber.
    fn fan_out(&self, topic: &Topic, st: &mut topic::TopicState, seq: u64, draft: EventDraft) {
        st.seq = seq;
        let event = Arc::new(PublishedEvent {
            seq,
            frame: draft.finish(seq),
            tally: Arc::clone(&topic.tally),
            published_at: std::time::Instant::now(),
        });
        topic.tally.published.store(seq, Relaxed);
        let fan_out = st.subscribers.len() as u64;
        topic.tally.enqueued.fetch_add(fan_out, Relaxed);
        self.totals.enqueued.fetch_add(fan_out, Relaxed);
        for conn in st.subscribers.values() {
            conn.outbox.push_event(&event, false);
        }
        let change = st.history.push(event);
        topic.history_bytes.store(st.history.bytes(), Relaxed);
        if change >= 0 {
            self.totals.history_bytes.fetch_add(change as u64, Relaxed);
        } else {
            self.totals
                .history_bytes
                .fetch_sub(change.unsigned_abs() as u64, Relaxed);
        }
        self.totals.published.fetch_add(1, Relaxed);
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
            let mut st = topic.state.lock();
            let mut evicted = 0;
            loop {
                let freed = st.history.pop_oldest();
                if freed == 0 {
                    break;
                }
                evicted += 1;
                self.totals.history_bytes.fetch_sub(freed as u64, Relaxed);
                if st.history.bytes() <= floor || self.totals.history_bytes.load(Relaxed) <= target
                {
                    break;
                }
            }
            let left = st.history.bytes();
            topic.history_bytes.store(left, Relaxed);
            drop(st);
            self.totals.history_evicted.fetch_add(evicted, Relaxed);
            if left > 0 {
                biggest.push((left, i));
            }
        }
    }

    // --------------------------------------------------- subscriptions

    /// Opens a connection that may publish and subscribe.
    pub fn connect(&self) -> Arc<Connection> {
        self.connect_with(Permits::ALL)
    }

    /// Opens a connection: its queue, (empty) subscription set, what it may
    /// do and its publish rate.
    pub fn connect_with(&self, permits: Permits) -> Arc<Connection> {
        let id = self.next_connection.fetch_add(1, Relaxed);
        self.totals.connections.fetch_add(1, Relaxed);
        let conn = Arc::new(Connection::new(
            id,
            Bounds {
                events: self.config.subscriber_queue,
                bytes: self.config.max_queue_bytes,
            },
            self.config.slow_consumer_policy,
            permits,
            connection::Rate {
                per_sec: self.config.publish_rate,
                burst: self.config.publish_burst,
            },
        ));
        self.connections.insert(id, Arc::clone(&conn));
        conn
    }

    /// `(frames, bytes)` queued over every open connection.
    pub fn queued(&self) -> (u64, u64) {
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

    /// Closes a connection: removes all its subscriptions at once and drops
    /// (and counts) what is still queued. Idempotent.
    pub fn disconnect(&self, conn: &Arc<Connection>, end: End) {
        let subscriptions: Vec<(Arc<str>, Arc<Topic>)> = {
            // Under the subscriptions lock, so a concurrent `subscribe`
            // either registers before (and is removed here) or sees the flag.
            let mut subs = conn.subscriptions.lock();
            if conn
                .disconnected
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                return;
            }
            subs.drain().collect()
        };
        for (_, topic) in subscriptions {
            let mut st = topic.state.lock();
            if st.subscribers.swap_remove(&conn.id).is_some() {
                self.totals.subscriptions.fetch_sub(1, Relaxed);
            }
        }
        conn.outbox.close(end);
        self.connections.remove(&conn.id);
        self.totals.connections.fetch_sub(1, Relaxed);
    }

    /// Subscribes `conn` to a topic. Queues the `ack`, then the replayed
    /// events, then registers for live events, all under the topic's lock:
    /// no publish can fall between replay and live (no gap, no duplicate).
    /// A repeated subscribe is acked and replays nothing.
    pub fn subscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        replay: Replay,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        if !conn.permits.subscribe {
            return Err(BrokerError::new(
                ErrorCode::Forbidden,
                "this connection's key lacks the \"subscribe\" role needed to subscribe",
            ));
        }
        let topic = self.topic(name)?;
        let mut st = topic.state.lock();
        if st.deleted {
            return Err(BrokerError::topic_not_found(name));
        }
        let repeat = st.subscribers.contains_key(&conn.id);
        // Only this connection's reader subscribes it, so the count cannot
        // grow between this check and the insertion below.
        if !repeat && conn.subscriptions.lock().len() >= self.config.max_subscriptions {
            self.totals.refuse(Limit::MaxSubscriptions);
            return Err(BrokerError::new(
                ErrorCode::RateLimited,
                format!(
                    "this connection holds its limit of {} subscriptions (max_subscriptions)",
                    self.config.max_subscriptions
                ),
            ));
        }
        let seq = st.seq;
        let (events, recovered): (Vec<Arc<PublishedEvent>>, Option<bool>) = match &replay.since {
            Some(since) => {
                let held = (since.epoch == topic.epoch)
                    .then(|| st.history.after(since.seq, seq))
                    .flatten();
                match held {
                    Some(events) => (events.cloned().collect(), Some(true)),
                    None => (Vec::new(), Some(false)),
                }
            }
            None => match replay.last_n {
                Some(n) => (st.history.last_n(clamp(n)).cloned().collect(), None),
                None => (Vec::new(), None),
            },
        };
        let events = if repeat { Vec::new() } else { events };
        let ack = Frame::ack(Ack {
            seq: Some(seq),
            epoch: Some(topic.epoch.clone()),
            replayed: Some(events.len() as u64),
            recovered,
            ..Frame::ack_of(request_id, name)
        });
        conn.outbox.push_reply(ack);
        if repeat {
            return Ok(());
        }
        for event in &events {
            conn.outbox.push_event(event, true);
        }
        let mut subs = conn.subscriptions.lock();
        if conn.is_disconnected() {
            // Closed meanwhile: registering now would leak the subscription.
            return Ok(());
        }
        subs.insert(Arc::clone(&topic.name), Arc::clone(&topic));
        drop(subs);
        st.subscribers.insert(conn.id, Arc::clone(conn));
        self.totals.subscriptions.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Unsubscribes `conn` from a topic: its events still queued are
    /// discarded (counted as dropped, no `SLOW_CONSUMER` notice), then the
    /// `ack` is queued; nothing of the topic follows it. Acked also when the
    /// connection was not subscribed.
    pub fn unsubscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        error::check_topic_name(name)?;
        let topic = conn.subscriptions.lock().get(name).cloned();
        if let Some(topic) = topic {
            let mut st = topic.state.lock();
            if st.subscribers.swap_remove(&conn.id).is_some() {
                self.totals.subscriptions.fetch_sub(1, Relaxed);
            }
            conn.outbox.discard_topic(&topic.tally);
            conn.forget(&topic);
        }
        conn.outbox
            .push_reply(Frame::ack(Frame::ack_of(request_id, name)));
        Ok(())
    }
}

/// `u64` counts from clients, as an in-memory length.
fn clamp(n: u64) -> usize {
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

#[cfg(test)]
mod tests;
