//! The broker: topics, subscriptions, publishing, history and stats, in
//! plain Rust with no HTTP in sight. [`Broker`] is the one handle the rest
//! of the server holds (REST, WebSocket, metrics, the stats sampler); it is
//! a facade over two parts, in the shape of centrifuge's Node, Hub and
//! Broker:
//!
//! - [`hub`] (`pub(crate)`): this instance's connections, their outboxes
//!   and subscriptions, and its copy of every topic (history ring,
//!   subscribers). It applies `(seq, event)` and fans out; it decides
//!   nothing about existence or `seq`.
//! - [`log`]: where a topic's existence, epoch, `seq` and history are
//!   decided: in this process ([`log::memory`], the default) or in NATS
//!   JetStream, followed by every instance ([`log::nats`], cluster mode).
//!
//! Beside them: [`error`] (errors with the contract's codes and the name
//! rules), [`clock`] (timestamps) and [`sampler`] (the stats collector's
//! last minutes).
//!
//! What callers may do is what this file offers; the hub's own methods are
//! out of their reach, so no caller can assign a `seq` behind the log's
//! back (in cluster mode that would fork the cluster's `seq`).

pub(crate) mod clock;
pub(crate) mod error;
mod hub;
pub(crate) mod log;
pub(crate) mod sampler;

pub use error::BrokerError;
pub use hub::connection::{Connection, Permits, Transport};
pub use hub::frame::{self, EventDraft, Frame};
pub use hub::outbox::{
    Batch, Bounds, DrainBuf, Drained, End, Handover, Owner, Queued, SlowConsumerPolicy,
};
pub use hub::tally::{Limit, Totals, LATENCY_BOUNDS};
pub use hub::topic::PublishedEvent;
pub use hub::Flush;
pub use hub::Joining;
pub use log::Publishing;

use hub::Hub;
use log::memory::MemoryLog;
use log::nats::NatsLog;
use protocol::pattern::{is_pattern, Pattern};
use protocol::{self as wire, ErrorCode, PublishMessage, Since, SinceArg};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::shutdown::Shutdown;

/// The broker's knobs. Each is declared once, here, as a flag of the
/// server's command line (flattened into [`crate::config::Config`]): its
/// doc comment is its `--help` text, and it is also an environment variable
/// and a key of the config file. [`Default`] is the flags' defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerConfig {
    /// Messages kept per topic for replay (`last_n`, `since`, REST history).
    #[arg(long, env = "PUBSUB_HISTORY_SIZE", default_value_t = 100)]
    pub history_size: usize,

    /// Events queued per connection before the slow-consumer policy applies.
    #[arg(long, env = "PUBSUB_SUBSCRIBER_QUEUE", default_value_t = 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub subscriber_queue: usize,

    /// Bytes of frames (events and replies) queued per connection before the
    /// slow-consumer policy applies; unread replies stop the connection's
    /// requests being read at half of it.
    #[arg(long, env = "PUBSUB_MAX_QUEUE_BYTES", default_value_t = 16 << 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_queue_bytes: usize,

    /// Bytes of retained history over all topics: past it, the oldest
    /// messages of the topics holding the most bytes are evicted (a `since`
    /// into them is then `recovered: false`); 0: no budget beyond
    /// --history-size per topic.
    #[arg(long, env = "PUBSUB_MAX_HISTORY_BYTES", default_value_t = 256 << 20)]
    pub max_history_bytes: usize,

    /// What happens to a connection whose queue is full.
    #[arg(
        long,
        env = "PUBSUB_SLOW_CONSUMER_POLICY",
        value_enum,
        default_value = "drop_oldest"
    )]
    pub slow_consumer_policy: SlowConsumerPolicy,

    /// Largest serialized message payload, in bytes (PAYLOAD_TOO_LARGE above).
    #[arg(long, env = "PUBSUB_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,

    /// Topics on this server, or on the whole cluster in cluster mode
    /// (RATE_LIMITED above).
    #[arg(long, env = "PUBSUB_MAX_TOPICS", default_value_t = 10_000)]
    pub max_topics: usize,

    /// Subscriptions per WebSocket connection (RATE_LIMITED above).
    #[arg(long, env = "PUBSUB_MAX_SUBSCRIPTIONS", default_value_t = 1_024)]
    pub max_subscriptions: usize,

    /// Publishes per second per WebSocket connection, a token bucket
    /// (RATE_LIMITED when empty); 0 turns the limit off.
    #[arg(long, env = "PUBSUB_PUBLISH_RATE", default_value_t = 10_000)]
    pub publish_rate: u32,

    /// Publishes a connection may burst above the rate; 0 means one
    /// second's worth (the rate).
    #[arg(long, env = "PUBSUB_PUBLISH_BURST", default_value_t = 0)]
    pub publish_burst: u32,

    /// How long a topic remembers a published message's id: a publish with
    /// the same id within it is answered like the original (its `seq`,
    /// `duplicate: true`) and not published again, so a client may retry
    /// safely; 0 turns it off. Cluster mode: JetStream's duplicate window.
    #[arg(long, env = "PUBSUB_DEDUP_WINDOW", default_value = "120s", value_parser = parse_window)]
    pub dedup_window: std::time::Duration,

    /// Ids a topic remembers at most within --dedup-window, oldest
    /// forgotten first (about 60 bytes each); in cluster mode NATS keeps
    /// them, for the whole window.
    #[arg(long, env = "PUBSUB_DEDUP_IDS", default_value_t = 100_000)]
    pub dedup_ids: usize,

    /// Bytes allocated for remembered ids over all topics (about 60 per
    /// id): past it, a topic that publishes forgets two of its own oldest
    /// ids per new one (keeping its newest), so the busiest topics'
    /// windows shrink first.
    #[arg(long, env = "PUBSUB_MAX_DEDUP_BYTES", default_value_t = 256 << 20)]
    pub max_dedup_bytes: usize,
}

/// A duration that may be zero (`0` turns the feature off).
fn parse_window(text: &str) -> Result<std::time::Duration, String> {
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (try e.g. 120s, 10m or 0)"))
}

impl Default for BrokerConfig {
    /// The flags' defaults, as declared above; the environment is not read.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let command = Self::augment_args(clap::Command::new("defaults"))
            .mut_args(|arg| arg.env(None::<&str>));
        command
            .try_get_matches_from(["defaults"])
            .and_then(|matches| Self::from_arg_matches(&matches))
            .unwrap_or_else(|e| unreachable!("the declared defaults parse: {e}"))
    }
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    pub last_n: Option<u64>,
    /// Wins over `last_n` when both are given: one position for a topic, a
    /// map of them by topic name for a pattern.
    pub since: Option<SinceArg>,
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
pub(crate) struct Prepared {
    pub(crate) id: String,
    pub(crate) payload: Box<serde_json::value::RawValue>,
}

/// What a publish produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    pub seq: u64,
    /// The id was published within `dedup_window` already: nothing was
    /// published, and `seq` is the original's.
    pub duplicate: bool,
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

/// The one handle to the core (cheap to clone). Everything REST, WebSocket
/// and metrics do goes through it. One pointer wide: every WebSocket
/// session holds one, and idle connections are counted in bytes.
#[derive(Clone)]
pub struct Broker(Arc<Core>);

/// What the facade holds (its parts stay private to the broker).
pub struct Core {
    hub: Arc<Hub>,
    log: Log,
}

impl std::ops::Deref for Broker {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.0
    }
}

/// Which log decides topics and `seq`.
#[derive(Clone)]
enum Log {
    Memory(Arc<MemoryLog>),
    Nats(Arc<NatsLog>),
}

impl Broker {
    /// A single instance holding everything in memory.
    pub fn new(config: BrokerConfig) -> Self {
        let hub = Arc::new(Hub::new(config));
        let log = Log::Memory(Arc::new(MemoryLog::new(Arc::clone(&hub))));
        Broker(Arc::new(Core { hub, log }))
    }

    /// One instance of a cluster whose log is NATS JetStream at `url`
    /// (connecting in the background while NATS is not there), following
    /// the cluster's topics until `shutdown`.
    pub async fn cluster(
        config: BrokerConfig,
        url: &str,
        node: &str,
        shutdown: Shutdown,
    ) -> Result<Self, String> {
        let hub = Arc::new(Hub::new(config));
        let nats = NatsLog::connect(url, node, Arc::clone(&hub), shutdown).await?;
        Ok(Broker(Arc::new(Core {
            hub,
            log: Log::Nats(nats),
        })))
    }

    pub fn config(&self) -> &BrokerConfig {
        self.hub.config()
    }

    /// `Err(reason)` while this instance cannot serve the contract (cluster
    /// mode with NATS unreachable).
    pub fn health(&self) -> Result<(), String> {
        match &self.log {
            Log::Memory(_) => Ok(()),
            Log::Nats(nats) => nats.health(),
        }
    }

    /// Whether the log is NATS (cluster mode).
    pub fn is_cluster(&self) -> bool {
        matches!(self.log, Log::Nats(_))
    }

    // ------------------------------------------------------------ topics

    pub async fn create_topic(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        match &self.log {
            Log::Memory(memory) => memory.create_topic(name),
            Log::Nats(nats) => Box::pin(nats.create_topic(name)).await,
        }
    }

    /// Deletes a topic; every subscriber gets `info topic_deleted` and loses
    /// the subscription, and the topic's events still queued to it are
    /// discarded (counted as dropped).
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        match &self.log {
            Log::Memory(memory) => memory.delete_topic(name),
            Log::Nats(nats) => Box::pin(nats.delete_topic(name)).await,
        }
    }

    /// Every topic, sorted by name, including every topic created or
    /// deleted anywhere in the cluster before the call (from this
    /// instance's copy while NATS cannot be reached).
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, BrokerError> {
        if let Log::Nats(nats) = &self.log {
            match Box::pin(nats.catch_up_registry()).await {
                Err(e) if !out_of_reach(nats, &e) => return Err(e),
                _ => {}
            }
        }
        Ok(self.hub.list_topics())
    }

    /// A topic's metadata, as of now across the cluster.
    pub async fn topic_info(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        self.fresh(name).await?;
        self.hub.topic_info(name)
    }

    /// Messages from a topic's history, oldest first, with its epoch,
    /// including every message published anywhere before this call.
    pub async fn history(
        &self,
        name: &str,
        range: HistoryRange,
    ) -> Result<(String, Vec<Arc<PublishedEvent>>), BrokerError> {
        self.fresh(name).await?;
        self.hub.history(name, range)
    }

    /// Before a read: in cluster mode, takes in everything the cluster
    /// published to `name` so far. While NATS cannot be reached, a topic
    /// this instance knows is read from its copy as it stands: what it
    /// missed follows in order once NATS is back, so a subscriber still
    /// gets no gap and no duplicate.
    async fn fresh(&self, name: &str) -> Result<(), BrokerError> {
        let Log::Nats(nats) = &self.log else {
            return Ok(());
        };
        match Box::pin(nats.catch_up(name)).await {
            Err(e) if out_of_reach(nats, &e) && self.hub.topic(name).is_ok() => Ok(()),
            other => other,
        }
    }

    // ------------------------------------------------------ publishing

    /// Publishes one message (REST: no connection, no rate).
    pub async fn publish(
        &self,
        name: &str,
        message: PublishMessage,
    ) -> Result<Receipt, BrokerError> {
        self.start_publish(name, message).await.finish().await
    }

    /// Publishes for a connection (its role and rate first), in two steps:
    /// this sends the message, the returned [`Publishing`] waits for its
    /// acknowledgement. Messages one connection starts one after the other
    /// keep that order (in cluster mode NATS receives them in it), so a
    /// connection may have several publishes in flight.
    pub async fn start_publish_from(
        &self,
        conn: &Connection,
        name: &str,
        message: PublishMessage,
    ) -> Publishing {
        if let Err(e) = self.may_publish(conn) {
            return Publishing::Done(Err(e));
        }
        self.start_publish(name, message).await
    }

    /// Publishes without a connection (REST), in two steps like
    /// [`Broker::start_publish_from`]: a batch starts every message in its
    /// order, then waits for their acknowledgements together.
    pub async fn start_publish(&self, name: &str, message: PublishMessage) -> Publishing {
        let prepared = match self.prepare(name, message) {
            Ok(prepared) => prepared,
            Err(e) => return Publishing::Done(Err(e)),
        };
        match &self.log {
            Log::Memory(memory) => Publishing::Done(memory.publish(name, prepared)),
            Log::Nats(nats) => match Box::pin(nats.start_publish(name, prepared)).await {
                Ok(acknowledged) => Publishing::Waiting(acknowledged),
                Err(e) => Publishing::Done(Err(e)),
            },
        }
    }

    /// Whether `conn` may publish one more message now (its key's role and
    /// its publish rate); takes a token from its rate when it may.
    fn may_publish(&self, conn: &Connection) -> Result<(), BrokerError> {
        if !conn.permits.publish {
            return Err(BrokerError::new(
                ErrorCode::Forbidden,
                "this connection's key lacks the \"publish\" role needed to publish",
            ));
        }
        if !conn.take_publish_token() {
            self.hub.totals().refuse(Limit::PublishRate);
            return Err(BrokerError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} publishes a second on this connection (publish_rate); slow down",
                    self.config().publish_rate
                ),
            ));
        }
        Ok(())
    }

    /// Checks a message before it goes to any log: the topic name, the id
    /// (or a new one) and the payload's serialized size.
    fn prepare(&self, name: &str, message: PublishMessage) -> Result<Prepared, BrokerError> {
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
        let max = self.config().max_message_bytes;
        if size > max {
            return Err(BrokerError::new(
                ErrorCode::PayloadTooLarge,
                format!("payload is {size} bytes serialized; at most {max} are allowed"),
            ));
        }
        Ok(Prepared { id, payload })
    }

    // --------------------------------------------------- connections

    /// Opens a connection that may publish and subscribe.
    pub fn connect(&self) -> Arc<Connection> {
        self.hub.connect_with(Permits::ALL, None)
    }

    /// Opens a connection: its queue, (empty) subscription set, what it may
    /// do and its publish rate.
    pub fn connect_with(&self, permits: Permits) -> Arc<Connection> {
        self.hub.connect_with(permits, None)
    }

    /// [`Broker::connect_with`] for a client at `remote` (shown on the
    /// connections board).
    pub fn connect_from(
        &self,
        permits: Permits,
        remote: Option<std::net::SocketAddr>,
    ) -> Arc<Connection> {
        self.hub.connect_with(permits, remote)
    }

    /// [`Broker::connect_from`] over another transport than the WebSocket
    /// (an SSE stream): the same queue, policies, counters and board.
    pub fn connect_via(
        &self,
        transport: Transport,
        permits: Permits,
        remote: Option<std::net::SocketAddr>,
    ) -> Arc<Connection> {
        self.hub.connect_via(transport, permits, remote)
    }

    /// Wakes every open connection's writer once (at shutdown: writers
    /// look at the shutdown flag when woken).
    pub fn wake_writers(&self) {
        self.hub.wake_writers();
    }

    /// Installs the flusher `make` builds, unless there is one: publishes
    /// hand it the parked writers of connections with a direct socket.
    pub fn ensure_flusher<F: Flush + 'static>(&self, make: impl FnOnce() -> Arc<F>) {
        self.hub.flusher.get_or_init(|| make() as Arc<dyn Flush>);
    }

    /// This instance's open connections, as the connections board shows
    /// them, by id.
    pub fn connections(&self) -> Vec<protocol::ConnectionInfo> {
        self.hub
            .connections()
            .iter()
            .map(|c| self.describe(c))
            .collect()
    }

    /// One open connection of this instance, as the board shows it.
    pub fn connection(&self, id: u64) -> Option<protocol::ConnectionInfo> {
        self.hub.connection(id).map(|c| self.describe(&c))
    }

    fn describe(&self, conn: &Connection) -> protocol::ConnectionInfo {
        let mut info = self.hub.describe(conn);
        if let Log::Nats(nats) = &self.log {
            info.node = Some(nats.node().to_owned());
        }
        info
    }

    /// Closes an open connection for an admin: a WebSocket gets `info
    /// closed_by_admin` and close 4010, an SSE stream ends. Whether there was one to close.
    pub fn close_connection(&self, id: u64) -> bool {
        match self.hub.connection(id) {
            Some(conn) if !conn.is_disconnected() && !conn.outbox.is_closed() => {
                conn.outbox.close(End::ClosedByAdmin);
                true
            }
            _ => false,
        }
    }

    /// Closes a connection: removes all its subscriptions at once and drops
    /// (and counts) what is still queued. Idempotent.
    pub fn disconnect(&self, conn: &Arc<Connection>, end: End) {
        self.hub.disconnect(conn, end)
    }

    /// Subscribes a connection to a topic or a pattern: its `ack`, then the
    /// replayed events, then live events, with no gap and no duplicate
    /// between replay and live. A repeated subscribe is acked and replays
    /// nothing; so does one to a topic the connection follows already.
    ///
    /// In cluster mode, when the subscribe replays (`last_n`, or a `since`
    /// ahead of this instance's copy) or names a topic this instance does
    /// not know yet, it first takes in every message published anywhere
    /// before the call, so replay and the `ack`'s `seq` are the cluster's.
    /// Otherwise it is served from the copy (one JetStream request less per
    /// subscribe): live events follow on from it without a gap or a
    /// duplicate. A pattern first takes in every topic created anywhere.
    pub async fn subscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        replay: Replay,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        self.subscribe_as(conn, name, replay, Joining::default(), request_id)
            .await
    }

    /// [`Broker::subscribe`], saying who joins for presence (`client_id`,
    /// and whether it wants `join`/`leave` notices; both ignored for a
    /// pattern).
    pub async fn subscribe_as(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        replay: Replay,
        joining: Joining<'_>,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        if let Some(client_id) = joining.client_id {
            if let Some(problem) = wire::client_id_problem(client_id) {
                return Err(BrokerError::bad_request(problem));
            }
        }
        if is_pattern(name) {
            return self.subscribe_pattern(conn, name, replay, request_id).await;
        }
        let since = match replay.since {
            None => None,
            Some(SinceArg::Topic(since)) => Some(since),
            Some(SinceArg::PerTopic(_)) => {
                return Err(BrokerError::bad_request(
                    "`since` on a topic is one position, {\"seq\", \"epoch\"}; a map by topic name is for patterns",
                ))
            }
        };
        if conn.permits.subscribe && !self.copy_serves(name, replay.last_n, since.as_ref()) {
            self.fresh(name).await?;
        }
        let start = hub::Start {
            last_n: replay.last_n,
            since: since.as_ref(),
        };
        self.hub.subscribe(conn, name, start, joining, request_id)
    }

    /// A topic's presence: its exact-name subscriptions on this instance,
    /// oldest first.
    pub async fn presence(&self, name: &str) -> Result<Vec<protocol::PresenceClient>, BrokerError> {
        self.fresh(name).await?;
        let mut clients = self.hub.presence(name)?;
        if let Log::Nats(nats) = &self.log {
            let epoch = self.hub.topic(name)?.epoch.clone();
            clients.extend(nats.others_presence(name, &epoch));
            // Oldest first across nodes (RFC 3339 UTC sorts as text).
            clients.sort_by(|a, b| a.joined_at.cmp(&b.joined_at));
        }
        Ok(clients)
    }

    async fn subscribe_pattern(
        &self,
        conn: &Arc<Connection>,
        text: &str,
        replay: Replay,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        let pattern = Pattern::parse(text).map_err(BrokerError::bad_request)?;
        let since = match replay.since {
            None => BTreeMap::new(),
            Some(SinceArg::PerTopic(since)) => since,
            Some(SinceArg::Topic(_)) => {
                return Err(BrokerError::bad_request(
                    "`since` on a pattern is an object keyed by topic name: {\"NAME\": {\"seq\", \"epoch\"}, ...}",
                ))
            }
        };
        for name in since.keys() {
            error::check_topic_name(name)?;
            if !pattern.matches(name) {
                return Err(BrokerError::bad_request(format!(
                    "`since` names {name:?}, which the pattern {text:?} does not match"
                )));
            }
        }
        if let Log::Nats(nats) = &self.log {
            if conn.permits.subscribe {
                match Box::pin(nats.catch_up_registry()).await {
                    Err(e) if !out_of_reach(nats, &e) => return Err(e),
                    _ => {}
                }
                for topic in self.hub.list_topics() {
                    let since = since.get(&topic.name);
                    if pattern.matches(&topic.name)
                        && !self.copy_serves(&topic.name, replay.last_n, since)
                    {
                        self.fresh(&topic.name).await?;
                    }
                }
            }
        }
        self.hub
            .subscribe_pattern(conn, pattern, replay.last_n, &since, request_id)
    }

    /// Whether this instance's copy of `name` can answer this subscribe as
    /// well as the cluster would (always, in memory).
    fn copy_serves(&self, name: &str, last_n: Option<u64>, since: Option<&Since>) -> bool {
        let Log::Nats(_) = &self.log else {
            return true;
        };
        let Ok(topic) = self.hub.topic(name) else {
            return false;
        };
        match (since, last_n) {
            (Some(since), _) => since.epoch == topic.epoch && since.seq <= topic.snapshot().0,
            (None, Some(_)) => false,
            (None, None) => true,
        }
    }

    /// Unsubscribes `conn` from a topic or a pattern, then queues the `ack`
    /// (also when it was not subscribed). A topic nothing makes the
    /// connection follow any more is left at once: its events still queued
    /// are discarded (counted as dropped, no `SLOW_CONSUMER` notice) and
    /// nothing of it follows the `ack`; a topic another of its subscriptions
    /// matches keeps coming.
    pub fn unsubscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        self.hub.unsubscribe(conn, name, request_id)
    }

    /// Ends one subscription of `conn` (a name or a pattern, as it
    /// subscribed) because its credential no longer allows it: as an
    /// unsubscribe, but with `info unsubscribed` instead of an `ack`.
    pub fn end_subscription(&self, conn: &Arc<Connection>, name: &str) {
        if self.hub.end_subscription(conn, name).is_ok() {
            conn.outbox.push_reply(Frame::info(
                protocol::InfoKind::Unsubscribed,
                Some(name.to_owned()),
            ));
        }
    }

    // ------------------------------------------------------------ stats

    pub fn totals(&self) -> &Totals {
        self.hub.totals()
    }

    pub fn uptime_sec(&self) -> u64 {
        self.hub.uptime_sec()
    }

    /// Topics this instance knows.
    pub fn topic_count(&self) -> u64 {
        self.hub.topic_count()
    }

    /// A topic's counters, as this instance counts them.
    pub fn topic_counts(&self, name: &str) -> Result<TopicCounts, BrokerError> {
        self.hub.topic_counts(name)
    }

    /// Per-topic counters, sorted by name.
    pub fn all_topic_counts(&self) -> Vec<(String, TopicCounts)> {
        self.hub.all_topic_counts()
    }

    /// Forgets the message ids remembered past `dedup_window` in every
    /// topic (a publish does it for its own topic; this reaches the topics
    /// that stopped publishing). One short lock per topic that holds ids.
    pub fn forget_expired_ids(&self) {
        self.hub.forget_expired_ids();
    }

    /// Each topic's messages published so far, without taking topic locks.
    pub fn published_per_topic(&self) -> Vec<(Arc<str>, u64)> {
        self.hub.published_per_topic()
    }

    /// `(frames, bytes)` queued over every open connection.
    pub fn queued(&self) -> (u64, u64) {
        self.hub.queued()
    }
}

/// Whether a catch-up failed because NATS is out of reach, the one case in
/// which this instance answers from its copy: a node that is merely behind
/// must not answer from a stale one.
fn out_of_reach(nats: &NatsLog, e: &BrokerError) -> bool {
    e.code == ErrorCode::Unavailable && nats.health().is_err()
}

#[cfg(test)]
mod tests;
