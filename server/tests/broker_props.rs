//! Property tests of the broker core: random sequences of operations (create
//! and delete topics, subscribe with `last_n` or `since` with the right or a
//! stale epoch, subscribe to and unsubscribe from patterns, unsubscribe,
//! publish, drain part of a queue, a failed write, disconnect) over a few
//! topics and connections, with queues small enough that both slow-consumer
//! policies fire. Unsubscribe and delete discard the topic's queued events
//! at once (second edition).
//!
//! The model knows matching (a topic is followed when the connection
//! subscribed to its name or holds a pattern that matches it, including
//! topics created afterwards, announced by `topic_created`) and that a
//! connection gets each event once however many of its subscriptions match.
//!
//! A model of the contract runs beside the broker: topics with `seq` and
//! history, subscriptions, and each connection's queue of replies and
//! replays plus, per followed topic, the live events it has not been sent
//! (its cursor's distance to the topic's head), with its policy applied when
//! the connection's writer reads that topic. After every step:
//! - every frame drained is one the model allows, in order: replies and
//!   replays in push order (acks with their `seq`, `replayed` and
//!   `recovered`, `topic_deleted`), a topic's live events oldest first once
//!   the replies before them are written, except those a reply waits for
//!   (a subscribe to a topic already followed is acked after the events
//!   published before it), and every batch as full as what is left allows;
//! - per topic, each connection sees strictly increasing `seq`s, contiguous
//!   unless a `SLOW_CONSUMER` notice announced at least the gap, and no event
//!   while unsubscribed; once its queue is empty it has been told of every
//!   event dropped for it;
//! - per topic, enqueued = delivered + dropped + live events not yet sent,
//!   with delivered settled as the session's writer does;
//! - the subscriber, subscription and connection gauges match the model.
//!
//! At the end every connection is disconnected: no subscription is left and
//! every topic's counters balance with nothing queued.

use proptest::prelude::*;
use protocol::{ErrorCode, InfoKind, PublishMessage, ServerFrame, Since};
use pubsub_server::broker::frame::Frame;
use pubsub_server::broker::{
    Broker, BrokerConfig, Connection, DrainBuf, Drained, End, Replay, SlowConsumerPolicy,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const TOPICS: [&str; 3] = ["t.a", "t.b", "t.c"];
/// Patterns over `TOPICS`: all of them twice over, and one of them.
const PATTERNS: [&str; 3] = ["t.*", ">", "*.b"];

fn matches(pattern: &str, name: &str) -> bool {
    protocol::pattern::Pattern::parse(pattern)
        .expect("a valid pattern")
        .matches(name)
}
const CONNECTIONS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Delete(usize),
    Subscribe {
        conn: usize,
        topic: usize,
        last_n: Option<u64>,
        /// `since.seq`, and whether `since.epoch` is the topic's.
        since: Option<(u64, bool)>,
    },
    Unsubscribe {
        conn: usize,
        topic: usize,
    },
    SubscribePattern {
        conn: usize,
        pattern: usize,
        last_n: Option<u64>,
    },
    UnsubscribePattern {
        conn: usize,
        pattern: usize,
    },
    Publish(usize),
    /// The writer takes up to `max` frames; `write_fails`: the socket write
    /// fails and the connection ends.
    Drain {
        conn: usize,
        max: usize,
        write_fails: bool,
    },
    Disconnect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let topic = 0..TOPICS.len();
    let conn = 0..CONNECTIONS;
    prop_oneof![
        2 => topic.clone().prop_map(Op::Create),
        1 => topic.clone().prop_map(Op::Delete),
        4 => (
            conn.clone(),
            topic.clone(),
            prop::option::of(0u64..8),
            prop::option::weighted(0.4, (0u64..12, prop::bool::weighted(0.8))),
        )
            .prop_map(|(conn, topic, last_n, since)| Op::Subscribe { conn, topic, last_n, since }),
        1 => (conn.clone(), topic.clone()).prop_map(|(conn, topic)| Op::Unsubscribe { conn, topic }),
        2 => (conn.clone(), 0..PATTERNS.len(), prop::option::of(0u64..8))
            .prop_map(|(conn, pattern, last_n)| Op::SubscribePattern { conn, pattern, last_n }),
        1 => (conn.clone(), 0..PATTERNS.len())
            .prop_map(|(conn, pattern)| Op::UnsubscribePattern { conn, pattern }),
        6 => topic.prop_map(Op::Publish),
        3 => (conn.clone(), 1usize..6, prop::bool::weighted(0.05))
            .prop_map(|(conn, max, write_fails)| Op::Drain { conn, max, write_fails }),
        1 => conn.prop_map(Op::Disconnect),
    ]
}

fn config() -> impl Strategy<Value = BrokerConfig> {
    (
        1usize..=4,
        0usize..=5,
        prop_oneof![
            Just(SlowConsumerPolicy::DropOldest),
            Just(SlowConsumerPolicy::Disconnect)
        ],
    )
        .prop_map(|(queue, history, policy)| BrokerConfig {
            subscriber_queue: queue,
            history_size: history,
            slow_consumer_policy: policy,
            ..BrokerConfig::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn broker_keeps_its_guarantees(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        let mut world = World::new(config);
        for op in &ops {
            world.apply(op);
            world.check_counters();
        }
        world.finish();
    }
}

// ------------------------------------------------------------------ model

/// What the client must read next from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    SubscribeAck {
        topic: String,
        seq: u64,
        replayed: u64,
        recovered: Option<bool>,
    },
    UnsubscribeAck {
        topic: String,
    },
    /// Per matching topic: (seq, replayed).
    PatternAck {
        pattern: String,
        topics: BTreeMap<String, (u64, u64)>,
    },
    TopicCreated {
        topic: String,
    },
    TopicDeleted {
        topic: String,
    },
    Event {
        topic: String,
        seq: u64,
    },
}

#[derive(Debug)]
enum Item {
    /// A reply; whether reading it leaves the client's view of its topic as
    /// it was (an unsubscribe while a pattern still matches); and per topic,
    /// the `seq` up to which its live events come before it.
    Reply(Expected, bool, Vec<Fence>),
    /// A replayed event.
    Event {
        topic: String,
        /// Which incarnation of the topic (a name can be created again).
        instance: u64,
        seq: u64,
    },
}

/// A reply waits for the live events of this topic instance up to `seq`.
#[derive(Debug)]
struct Fence {
    topic: String,
    instance: u64,
    seq: u64,
}

/// The live events of one followed topic not yet sent to a connection.
#[derive(Debug)]
struct Backlog {
    instance: u64,
    seqs: VecDeque<u64>,
    /// Skipped by `drop_oldest` and not announced yet.
    owed: u64,
}

struct ModelTopic {
    instance: u64,
    epoch: String,
    seq: u64,
    history: VecDeque<u64>,
    /// Connection ids.
    subscribers: BTreeSet<u64>,
}

/// One connection: the broker's and the model's side of it, and what its
/// client has read.
struct Client {
    conn: Arc<Connection>,
    queue: VecDeque<Item>,
    /// Per followed topic name.
    backlog: BTreeMap<String, Backlog>,
    /// The topics followed: name → instance.
    subscriptions: BTreeMap<String, u64>,
    /// Subscribed by name.
    exact: BTreeSet<String>,
    /// Patterns held (indexes into `PATTERNS`).
    patterns: BTreeSet<usize>,
    /// Events evicted by `drop_oldest`, per topic name, since connecting.
    evicted: HashMap<String, u64>,
    /// `SLOW_CONSUMER` counts read, per topic name.
    announced: HashMap<String, u64>,
    view: HashMap<String, TopicView>,
}

/// The client's own check of the stream of one topic.
#[derive(Default)]
struct TopicView {
    subscribed: bool,
    next_seq: u64,
    /// Dropped events announced since the topic's last event.
    announced: u64,
}

/// The output of a broker call, which in memory is ready at its first poll.
fn now<F: std::future::Future>(future: F) -> F::Output {
    futures_util::FutureExt::now_or_never(future).expect("in memory, the broker answers at once")
}

struct World {
    broker: Broker,
    capacity: usize,
    policy: SlowConsumerPolicy,
    history_size: usize,
    topics: BTreeMap<String, ModelTopic>,
    next_instance: u64,
    clients: Vec<Client>,
    /// `SLOW_CONSUMER` signals: notices read plus connections kicked.
    slow_consumer_signals: u64,
}

impl World {
    fn new(config: BrokerConfig) -> Self {
        let capacity = config.subscriber_queue.max(1);
        let policy = config.slow_consumer_policy;
        let history_size = config.history_size;
        let broker = Broker::new(config);
        let clients = (0..CONNECTIONS)
            .map(|_| Client::new(broker.connect()))
            .collect();
        let mut world = World {
            broker,
            capacity,
            policy,
            history_size,
            topics: BTreeMap::new(),
            next_instance: 0,
            clients,
            slow_consumer_signals: 0,
        };
        for i in 0..TOPICS.len() {
            world.apply(&Op::Create(i));
        }
        world
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create(t) => self.create(TOPICS[t]),
            Op::Delete(t) => self.delete(TOPICS[t]),
            Op::Subscribe {
                conn,
                topic,
                last_n,
                since,
            } => self.subscribe(conn, TOPICS[topic], last_n, since),
            Op::Unsubscribe { conn, topic } => self.unsubscribe(conn, TOPICS[topic]),
            Op::SubscribePattern {
                conn,
                pattern,
                last_n,
            } => self.subscribe_pattern(conn, pattern, last_n),
            Op::UnsubscribePattern { conn, pattern } => self.unsubscribe_pattern(conn, pattern),
            Op::Publish(t) => self.publish(TOPICS[t]),
            Op::Drain {
                conn,
                max,
                write_fails,
            } => self.drain(conn, max, write_fails),
            Op::Disconnect(c) => self.disconnect(c),
        }
    }

    fn create(&mut self, name: &str) {
        let result = now(self.broker.create_topic(name));
        if self.topics.contains_key(name) {
            assert_eq!(result.unwrap_err().code, ErrorCode::TopicExists);
            return;
        }
        let info = result.expect("create a new topic");
        self.next_instance += 1;
        let mut subscribers = BTreeSet::new();
        for client in &mut self.clients {
            if client.patterns.iter().any(|&p| matches(PATTERNS[p], name)) {
                client.push_reply(Expected::TopicCreated {
                    topic: name.to_owned(),
                });
                client
                    .subscriptions
                    .insert(name.to_owned(), self.next_instance);
                client.follow(name, self.next_instance);
                subscribers.insert(client.conn.id);
            }
        }
        // New, with the pattern subscriptions that match it already on.
        assert_eq!((info.seq, info.subscribers), (0, subscribers.len() as u64));
        self.topics.insert(
            name.to_owned(),
            ModelTopic {
                instance: self.next_instance,
                epoch: info.epoch,
                seq: 0,
                history: VecDeque::new(),
                subscribers,
            },
        );
    }

    fn delete(&mut self, name: &str) {
        let result = now(self.broker.delete_topic(name));
        let Some(topic) = self.topics.remove(name) else {
            assert_eq!(result.unwrap_err().code, ErrorCode::TopicNotFound);
            return;
        };
        result.expect("delete an existing topic");
        for client in &mut self.clients {
            if topic.subscribers.contains(&client.conn.id) {
                client.discard(name, topic.instance);
                client.push_reply(Expected::TopicDeleted {
                    topic: name.to_owned(),
                });
                client.subscriptions.remove(name);
                client.exact.remove(name);
            }
        }
    }

    fn subscribe(&mut self, c: usize, name: &str, last_n: Option<u64>, since: Option<(u64, bool)>) {
        let since = since.map(|(seq, right_epoch)| Since {
            seq,
            epoch: match self.topics.get(name) {
                Some(t) if right_epoch => t.epoch.clone(),
                _ => "stale-epoch".into(),
            },
        });
        let replay = Replay {
            last_n,
            since: since.clone().map(protocol::SinceArg::Topic),
        };
        let result = now(self
            .broker
            .subscribe(&self.clients[c].conn, name, replay, None));
        let Some(topic) = self.topics.get_mut(name) else {
            assert_eq!(result.unwrap_err().code, ErrorCode::TopicNotFound);
            return;
        };
        result.expect("subscribe to an existing topic");
        let client = &mut self.clients[c];
        // Subscribed by name before, or followed through a pattern: no replay.
        let repeat = topic.subscribers.contains(&client.conn.id);
        client.exact.insert(name.to_owned());
        // The contract: `since` wins; it replays everything after its seq
        // when the epoch matches and history still holds all of it.
        let (events, recovered): (Vec<u64>, Option<bool>) = match (&since, last_n) {
            (Some(since), _) => {
                let held = since.epoch == topic.epoch
                    && since.seq <= topic.seq
                    && topic.seq - since.seq <= topic.history.len() as u64;
                if held {
                    let events = topic
                        .history
                        .iter()
                        .copied()
                        .filter(|&s| s > since.seq)
                        .collect();
                    (events, Some(true))
                } else {
                    (Vec::new(), Some(false))
                }
            }
            (None, Some(n)) => {
                let skip = topic.history.len().saturating_sub(n as usize);
                (topic.history.iter().copied().skip(skip).collect(), None)
            }
            (None, None) => (Vec::new(), None),
        };
        let events = if repeat { Vec::new() } else { events };
        let fence = if repeat {
            vec![Fence {
                topic: name.to_owned(),
                instance: topic.instance,
                seq: topic.seq,
            }]
        } else {
            Vec::new()
        };
        client.push_reply_after(
            Expected::SubscribeAck {
                topic: name.to_owned(),
                seq: topic.seq,
                replayed: events.len() as u64,
                recovered,
            },
            fence,
        );
        if repeat {
            return;
        }
        for seq in events {
            client.queue.push_back(Item::Event {
                topic: name.to_owned(),
                instance: topic.instance,
                seq,
            });
        }
        topic.subscribers.insert(client.conn.id);
        client.subscriptions.insert(name.to_owned(), topic.instance);
        client.follow(name, topic.instance);
    }

    fn unsubscribe(&mut self, c: usize, name: &str) {
        let client = &mut self.clients[c];
        self.broker
            .unsubscribe(&client.conn, name, None)
            .expect("unsubscribe is always acked");
        client.exact.remove(name);
        let still = client.patterns.iter().any(|&p| matches(PATTERNS[p], name));
        if !still {
            if let Some(instance) = client.subscriptions.remove(name) {
                let topic = self
                    .topics
                    .get_mut(name)
                    .expect("a subscribed topic exists");
                topic.subscribers.remove(&client.conn.id);
                client.discard(name, instance);
            }
        }
        let keep = still && client.subscriptions.contains_key(name);
        client.push_reply_keeping(
            Expected::UnsubscribeAck {
                topic: name.to_owned(),
            },
            keep,
        );
    }

    fn subscribe_pattern(&mut self, c: usize, p: usize, last_n: Option<u64>) {
        let pattern = PATTERNS[p];
        let replay = Replay {
            last_n,
            since: None,
        };
        now(self
            .broker
            .subscribe(&self.clients[c].conn, pattern, replay, None))
        .expect("a pattern subscribe is always acked");
        let client = &mut self.clients[c];
        let repeat = !client.patterns.insert(p);
        let mut acked = BTreeMap::new();
        let mut replays = Vec::new();
        let mut fence = Vec::new();
        for (name, topic) in &mut self.topics {
            if !matches(pattern, name) {
                continue;
            }
            let followed = topic.subscribers.contains(&client.conn.id);
            if followed {
                fence.push(Fence {
                    topic: name.clone(),
                    instance: topic.instance,
                    seq: topic.seq,
                });
            }
            let events: Vec<u64> = match last_n {
                Some(n) if !followed && !repeat => {
                    let skip = topic.history.len().saturating_sub(n as usize);
                    topic.history.iter().copied().skip(skip).collect()
                }
                _ => Vec::new(),
            };
            acked.insert(name.clone(), (topic.seq, events.len() as u64));
            if !followed && !repeat {
                replays.push((name.clone(), topic.instance, events));
                topic.subscribers.insert(client.conn.id);
                client.subscriptions.insert(name.clone(), topic.instance);
            }
        }
        client.push_reply_after(
            Expected::PatternAck {
                pattern: pattern.to_owned(),
                topics: acked,
            },
            fence,
        );
        for (name, instance, events) in replays {
            for seq in events {
                client.queue.push_back(Item::Event {
                    topic: name.clone(),
                    instance,
                    seq,
                });
            }
            client.follow(&name, instance);
        }
    }

    fn unsubscribe_pattern(&mut self, c: usize, p: usize) {
        let pattern = PATTERNS[p];
        let client = &mut self.clients[c];
        self.broker
            .unsubscribe(&client.conn, pattern, None)
            .expect("unsubscribe is always acked");
        if client.patterns.remove(&p) {
            let followed: Vec<(String, u64)> = client
                .subscriptions
                .iter()
                .map(|(n, i)| (n.clone(), *i))
                .collect();
            for (name, instance) in followed {
                let still = client.exact.contains(&name)
                    || client.patterns.iter().any(|&q| matches(PATTERNS[q], &name));
                if !still {
                    client.subscriptions.remove(&name);
                    let topic = self.topics.get_mut(&name).expect("a followed topic exists");
                    topic.subscribers.remove(&client.conn.id);
                    client.discard(&name, instance);
                }
            }
        }
        client.push_reply(Expected::UnsubscribeAck {
            topic: pattern.to_owned(),
        });
    }

    fn publish(&mut self, name: &str) {
        let message = PublishMessage {
            id: None,
            payload: serde_json::json!({ "n": self.next_instance }),
        };
        let result = now(self.broker.publish(name, message));
        let Some(topic) = self.topics.get_mut(name) else {
            assert_eq!(result.unwrap_err().code, ErrorCode::TopicNotFound);
            return;
        };
        topic.seq += 1;
        assert_eq!(result.expect("publish to an existing topic").seq, topic.seq);
        if self.history_size > 0 {
            if topic.history.len() == self.history_size {
                topic.history.pop_front();
            }
            topic.history.push_back(topic.seq);
        }
        for client in &mut self.clients {
            if topic.subscribers.contains(&client.conn.id) {
                let backlog = client
                    .backlog
                    .get_mut(name)
                    .expect("a subscriber follows the topic");
                assert_eq!(backlog.instance, topic.instance);
                backlog.seqs.push_back(topic.seq);
            }
        }
    }

    /// What the session's writer does with one batch.
    fn drain(&mut self, c: usize, max: usize, write_fails: bool) {
        let capacity = self.capacity;
        let client = &mut self.clients[c];
        let mut buf = DrainBuf::default();
        let conn = Arc::clone(&client.conn);
        let batch = conn.outbox.drain(&mut buf, max);
        let mut taken = 0;
        let batch_was_empty = batch.is_empty();
        for frame in batch.frames() {
            if !client.read(frame.frame(), capacity, &mut self.slow_consumer_signals) {
                taken += 1;
            }
        }
        assert!(taken <= max.max(1), "{taken} frames for {max}");
        let status = batch.status().clone();
        if let Drained::End(End::Kicked { topic, dropped }) = &status {
            assert_eq!(self.policy, SlowConsumerPolicy::Disconnect);
            let behind = client.backlog.get(topic).map_or(0, |b| b.seqs.len());
            assert!(
                behind > capacity,
                "{topic}: kicked with {behind} behind, bound {capacity}"
            );
            let unsent: usize = client.backlog.values().map(|b| b.seqs.len()).sum();
            assert_eq!(
                *dropped, unsent as u64,
                "the kick counts every unsent event"
            );
            self.slow_consumer_signals += 1;
            // The writer writes the batch, sends SLOW_CONSUMER, closes, and
            // the session ends.
            let _ = batch.delivered();
            self.disconnect(c);
            return;
        }
        let left = client.has_more();
        if taken < max.max(1) {
            assert!(!left, "a batch short of {max} left {:?}", client.queue);
        }
        let status = if write_fails {
            batch.dropped()
        } else {
            batch.delivered()
        };
        // A drain that took frames never parks: the writer drains again
        // after writing them, and the drain that finds nothing parks.
        let expected = if left || !batch_was_empty {
            Drained::More
        } else {
            Drained::Empty
        };
        assert_eq!(status, expected);
        if !left {
            assert_eq!(
                client.announced, client.evicted,
                "a drained connection has announced every dropped event"
            );
        }
        if write_fails {
            client.conn.outbox.close(End::Gone);
            self.disconnect(c);
        }
    }

    /// Closes connection `c` and opens a new one in its place.
    fn disconnect(&mut self, c: usize) {
        let old = std::mem::replace(&mut self.clients[c], Client::new(self.broker.connect()));
        self.forget(&old);
    }

    fn forget(&mut self, client: &Client) {
        self.broker.disconnect(&client.conn, End::Gone);
        for name in client.subscriptions.keys() {
            let topic = self
                .topics
                .get_mut(name)
                .expect("a subscribed topic exists");
            topic.subscribers.remove(&client.conn.id);
        }
    }

    /// Counters and gauges against the model, after every step.
    fn check_counters(&self) {
        for (name, topic) in &self.topics {
            let c = self
                .broker
                .topic_counts(name)
                .expect("a topic of the model");
            let queued: u64 = self
                .clients
                .iter()
                .filter_map(|client| client.backlog.get(name))
                .filter(|b| b.instance == topic.instance)
                .map(|b| b.seqs.len() as u64)
                .sum();
            assert_eq!(
                c.enqueued,
                c.delivered + c.dropped + queued,
                "{name}: enqueued = delivered + dropped + queued ({queued}): {c:?}"
            );
            assert_eq!(c.messages, topic.seq, "{name}: messages");
            assert_eq!(
                c.subscribers,
                topic.subscribers.len() as u64,
                "{name}: subscribers"
            );
        }
        let totals = self.broker.totals();
        let subscriptions: usize = self.topics.values().map(|t| t.subscribers.len()).sum();
        assert_eq!(totals.subscriptions.load(Relaxed), subscriptions as u64);
        assert_eq!(totals.connections.load(Relaxed), CONNECTIONS as u64);
        assert_eq!(
            totals.slow_consumer_events.load(Relaxed),
            self.slow_consumer_signals
        );
        assert_eq!(self.broker.topic_count(), self.topics.len() as u64);
    }

    /// Reads what is left, then disconnects everyone.
    fn finish(mut self) {
        for c in 0..CONNECTIONS {
            for _ in 0..1000 {
                let empty = !self.clients[c].has_more();
                self.drain(c, 64, false);
                if empty {
                    break;
                }
            }
        }
        let clients = std::mem::take(&mut self.clients);
        for client in &clients {
            self.forget(client);
        }
        for (name, c) in self.broker.all_topic_counts() {
            assert_eq!(c.subscribers, 0, "{name}: subscribers left");
            assert_eq!(c.enqueued, c.delivered + c.dropped, "{name}: {c:?}");
        }
        let totals = self.broker.totals();
        assert_eq!(totals.subscriptions.load(Relaxed), 0, "subscriptions left");
        assert_eq!(totals.connections.load(Relaxed), 0, "connections left");
    }
}

impl Client {
    fn new(conn: Arc<Connection>) -> Self {
        Client {
            conn,
            queue: VecDeque::new(),
            backlog: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            exact: BTreeSet::new(),
            patterns: BTreeSet::new(),
            evicted: HashMap::new(),
            announced: HashMap::new(),
            view: HashMap::new(),
        }
    }

    /// Starts following a topic instance: nothing sent yet.
    fn follow(&mut self, name: &str, instance: u64) {
        self.backlog.insert(
            name.to_owned(),
            Backlog {
                instance,
                seqs: VecDeque::new(),
                owed: 0,
            },
        );
    }

    /// Whether anything is left to send: replies, replays, live events or
    /// an owed notice.
    fn has_more(&self) -> bool {
        !self.queue.is_empty()
            || self
                .backlog
                .values()
                .any(|b| !b.seqs.is_empty() || b.owed > 0)
    }

    /// Unsubscribe and delete: the topic's unsent events are discarded at
    /// once and its owed `SLOW_CONSUMER` notice is forgotten.
    fn discard(&mut self, name: &str, of: u64) {
        self.queue.retain(
            |item| !matches!(item, Item::Event { topic, instance, .. } if topic == name && *instance == of),
        );
        if self.backlog.get(name).is_some_and(|b| b.instance == of) {
            self.backlog.remove(name);
        }
        match self.announced.get(name) {
            Some(&announced) => self.evicted.insert(name.to_owned(), announced),
            None => self.evicted.remove(name),
        };
    }

    fn push_reply(&mut self, expected: Expected) {
        self.push_reply_keeping(expected, false);
    }

    fn push_reply_keeping(&mut self, expected: Expected, keep_view: bool) {
        self.queue
            .push_back(Item::Reply(expected, keep_view, Vec::new()));
    }

    /// A reply that waits for the live events of `fence`'s topics up to
    /// their `seq`s (only those still unsent matter).
    fn push_reply_after(&mut self, expected: Expected, fence: Vec<Fence>) {
        self.queue.push_back(Item::Reply(expected, false, fence));
    }

    /// `drop_oldest` as the writer applies it when it reads a topic: what
    /// is beyond the bound is skipped, counted and owed.
    fn bound(&mut self, name: &str, capacity: usize) {
        let Some(backlog) = self.backlog.get_mut(name) else {
            return;
        };
        while backlog.seqs.len() > capacity {
            backlog.seqs.pop_front();
            backlog.owed += 1;
            *self.evicted.entry(name.to_owned()).or_default() += 1;
        }
    }

    /// Reads one frame: a `SLOW_CONSUMER` notice, a live event the model
    /// allows now, or the next queued reply or replay. Whether it was a
    /// notice.
    fn read(&mut self, frame: &Frame, capacity: usize, signals: &mut u64) -> bool {
        let parsed: ServerFrame =
            serde_json::from_slice(frame.bytes()).expect("a server frame is valid JSON");
        if let ServerFrame::Error(e) = &parsed {
            assert_eq!(
                e.error.code,
                ErrorCode::SlowConsumer,
                "unexpected error {e:?}"
            );
            let topic = e.topic.clone().expect("SLOW_CONSUMER names its topic");
            let dropped = e.dropped.expect("SLOW_CONSUMER counts");
            assert!(dropped > 0);
            self.bound(&topic, capacity);
            let backlog = self
                .backlog
                .get_mut(&topic)
                .unwrap_or_else(|| panic!("a notice for {topic}, not followed"));
            // All of the skip, or (before a reply that waits for this
            // topic's older events) the part of it before the reply.
            assert!(
                dropped <= backlog.owed,
                "{topic}: the notice counts the skip"
            );
            backlog.owed -= dropped;
            *signals += 1;
            *self.announced.entry(topic.clone()).or_default() += dropped;
            self.view.entry(topic).or_default().announced += dropped;
            return true;
        }
        if let ServerFrame::Event(e) = &parsed {
            let replayed = matches!(
                self.queue.front(),
                Some(Item::Event { topic, seq, .. }) if *topic == e.topic && *seq == e.seq
            );
            if !replayed {
                // A live event: once nothing is queued before it, or before
                // a reply that waits for it.
                let instance = self.backlog.get(&e.topic).map(|b| b.instance);
                let allowed = match self.queue.front() {
                    None => true,
                    Some(Item::Reply(_, _, fence)) => fence.iter().any(|f| {
                        f.topic == e.topic && Some(f.instance) == instance && e.seq <= f.seq
                    }),
                    Some(other) => panic!("event {} {} before {other:?}", e.topic, e.seq),
                };
                assert!(
                    allowed,
                    "event {} {} before {:?}",
                    e.topic,
                    e.seq,
                    self.queue.front()
                );
                self.bound(&e.topic, capacity);
                let backlog = self
                    .backlog
                    .get_mut(&e.topic)
                    .unwrap_or_else(|| panic!("an event of {}, not followed", e.topic));
                assert_eq!(
                    backlog.seqs.pop_front(),
                    Some(e.seq),
                    "{}: oldest first",
                    e.topic
                );
                self.see(&Expected::Event {
                    topic: e.topic.clone(),
                    seq: e.seq,
                });
                return false;
            }
        }
        let item = self
            .queue
            .pop_front()
            .unwrap_or_else(|| panic!("a frame the model did not expect: {}", frame.as_str()));
        let (want, keep_view) = match item {
            Item::Reply(e, keep_view, fence) => {
                for f in fence {
                    if let Some(b) = self.backlog.get(&f.topic) {
                        assert!(
                            b.instance != f.instance || b.seqs.front().is_none_or(|s| *s > f.seq),
                            "{e:?} before the events it waits for: {f:?} {b:?}"
                        );
                    }
                }
                (e, keep_view)
            }
            Item::Event { topic, seq, .. } => (Expected::Event { topic, seq }, false),
        };
        let got = match parsed {
            ServerFrame::Ack(a) if a.pattern == Some(true) => Expected::PatternAck {
                pattern: a.topic,
                topics: a
                    .topics
                    .expect("a pattern ack lists its topics")
                    .into_iter()
                    .map(|(name, t)| (name, (t.seq, t.replayed)))
                    .collect(),
            },
            ServerFrame::Info(i) if i.msg == InfoKind::TopicCreated => Expected::TopicCreated {
                topic: i.topic.expect("topic_created names its topic"),
            },
            ServerFrame::Ack(a) if a.epoch.is_some() => Expected::SubscribeAck {
                topic: a.topic,
                seq: a.seq.expect("seq"),
                replayed: a.replayed.expect("replayed"),
                recovered: a.recovered,
            },
            ServerFrame::Ack(a) => Expected::UnsubscribeAck { topic: a.topic },
            ServerFrame::Info(i) if i.msg == InfoKind::TopicDeleted => Expected::TopicDeleted {
                topic: i.topic.expect("topic_deleted names its topic"),
            },
            ServerFrame::Event(e) => Expected::Event {
                topic: e.topic,
                seq: e.seq,
            },
            other => panic!("unexpected frame {other:?}"),
        };
        assert_eq!(got, want);
        if !keep_view {
            self.see(&got);
        }
        false
    }

    /// The client's own checks, from the contract alone.
    fn see(&mut self, frame: &Expected) {
        match frame {
            Expected::SubscribeAck {
                topic,
                seq,
                replayed,
                ..
            } => {
                let view = self.view.entry(topic.clone()).or_default();
                assert!(replayed <= seq);
                view.subscribed = true;
                view.next_seq = seq - replayed + 1;
                view.announced = 0;
            }
            Expected::PatternAck { topics, .. } => {
                for (topic, (seq, replayed)) in topics {
                    let view = self.view.entry(topic.clone()).or_default();
                    assert!(replayed <= seq);
                    view.subscribed = true;
                    view.next_seq = seq - replayed + 1;
                    view.announced = 0;
                }
            }
            Expected::TopicCreated { topic } => {
                let view = self.view.entry(topic.clone()).or_default();
                view.subscribed = true;
                view.next_seq = 1;
                view.announced = 0;
            }
            Expected::UnsubscribeAck { topic } | Expected::TopicDeleted { topic } => {
                let view = self.view.entry(topic.clone()).or_default();
                view.subscribed = false;
                view.announced = 0;
            }
            Expected::Event { topic, seq } => {
                let view = self.view.entry(topic.clone()).or_default();
                assert!(view.subscribed, "{topic}: event {seq} while unsubscribed");
                assert!(
                    *seq >= view.next_seq,
                    "{topic}: seq {seq} after {}",
                    view.next_seq - 1
                );
                let gap = seq - view.next_seq;
                assert!(
                    gap <= view.announced,
                    "{topic}: {gap} event(s) missing before seq {seq}, {} announced",
                    view.announced
                );
                view.next_seq = seq + 1;
                view.announced = 0;
            }
        }
    }
}
