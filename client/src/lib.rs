//! A client library for pubsub-server (`shared/spec/PROTOCOL.md`): what a
//! program needs to follow topics through server restarts and to publish
//! without losing or doubling messages.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use pubsub_client::{Client, Delivery, Start, SubscribeOptions};
//!
//! # async fn run() -> Result<(), pubsub_client::Error> {
//! let client = Client::new("http://127.0.0.1:4000");
//! let mut orders = client
//!     .subscribe(SubscribeOptions::new("orders.*").start(Start::LastN(10)))
//!     .await?;
//! client.publish("orders.eu", serde_json::json!({"n": 1}), None).await?;
//! while let Some(delivery) = orders.next().await {
//!     match delivery {
//!         Delivery::Event(e) => println!("{} #{}: {}", e.topic, e.seq, e.payload),
//!         Delivery::Resumed { recovered: false, topic, .. } => {
//!             eprintln!("{topic}: messages were lost while disconnected")
//!         }
//!         Delivery::Closed(_) => break,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! - [`Client`] (this file): the facade; cheap to clone.
//! - `subscription`: [`Subscription`], one WebSocket and one task per
//!   subscription, reconnecting and resuming.
//! - `cursor`: the per-topic positions behind the guarantees below.
//! - `delivery`: [`Delivery`], what the stream yields.
//! - `publish`: [`Client::publish`] and its retries.
//! - `backoff`: [`RetryPolicy`], exponential backoff with jitter.
//!
//! It is built on the protocol crate's low-level client
//! ([`protocol::client::Client`], REST calls and the WebSocket upgrade),
//! whose [`Error`] it returns.
//!
//! # Decisions
//!
//! - One WebSocket per [`Subscription`], with its own task: a subscription's
//!   reconnects, resumes and slow reading are its own, and closing it is
//!   closing its connection. A program following many topics can use one
//!   pattern subscription instead of many connections.
//! - Deliveries go through a bounded buffer ([`SubscribeOptions::buffer`]):
//!   a caller that stops reading stops the connection being read, and the
//!   server's slow-consumer policy then applies (reported, see below); the
//!   client's memory stays bounded.
//! - Publishes go over REST, one request each, retried with backoff; the
//!   retries are what make the id matter.
//! - Liveness: the client pings every [`SubscribeOptions::ping_interval`];
//!   any frame (a pong, an event, the server's heartbeat) proves the
//!   connection alive, and none for [`SubscribeOptions::liveness_timeout`]
//!   makes it reconnect.
//!
//! # What a subscription guarantees
//!
//! - Per topic, events reach the caller in strictly increasing `seq`, each
//!   at most once, also across reconnects: an event at or below the last
//!   delivered `seq` of its topic and epoch is dropped.
//! - No silent gap. Every event not delivered is announced: after a
//!   reconnect, [`Delivery::Resumed`] says for each topic whether the
//!   server replayed everything missed (`recovered: true`) or not (then
//!   [`Delivery::missing`] says what); a jump in `seq` on a live connection
//!   (the server dropped events for a slow consumer) is a
//!   [`Delivery::Gap`] before the next event.
//! - A connection that is closed, fails, or stays silent past the liveness
//!   deadline (the client pings; the server sends heartbeats) is replaced:
//!   reconnects back off exponentially with jitter up to a cap, and start
//!   from the first delay again after a success.
//! - Only a refusal that retrying cannot fix (`UNAUTHORIZED`, `FORBIDDEN`,
//!   `BAD_REQUEST`), a deleted topic, or [`Subscription::close`] ends the
//!   stream, always with [`Delivery::Closed`] last. A missing topic on
//!   resume is retried (an in-memory server that restarted has it again
//!   once it is created), and reported as `recovered: false` then.
//!
//! # What a publish guarantees
//!
//! Each publish has an id (given, or a UUID v4) and retries send the same
//! id, which the server deduplicates within its `dedup_window`: a retried
//! publish is stored once. The retry deadline
//! ([`RetryPolicy::publish_deadline`]) must stay below that window.
//!
//! Nothing the server sends makes this library panic: unknown or malformed
//! frames are skipped, refusals are values.

mod backoff;
mod cursor;
mod delivery;
mod publish;
mod subscription;

pub use backoff::RetryPolicy;
pub use delivery::{CloseReason, Delivery, Event, Missing};
pub use protocol::client::Error;
pub use protocol::Since;
pub use publish::Receipt;
pub use subscription::{Start, SubscribeOptions, Subscription};

use serde_json::Value;

/// One server, for subscribing and publishing. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    rest: protocol::client::Client,
    policy: RetryPolicy,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`; a bare
    /// `host:port` means `http://`).
    pub fn new(base: &str) -> Self {
        Client {
            rest: protocol::client::Client::new(base),
            policy: RetryPolicy::default(),
        }
    }

    /// An API key or a token, sent as `Authorization: Bearer` on every
    /// request and on the WebSocket upgrade.
    pub fn with_credential(mut self, credential: impl Into<String>) -> Self {
        self.rest = self.rest.with_api_key(Some(credential.into()));
        self
    }

    /// The delays of reconnects and publish retries.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The low-level client, for the REST calls this one does not wrap
    /// (topics, history, stats).
    pub fn rest(&self) -> &protocol::client::Client {
        &self.rest
    }

    /// Publishes `payload` to `topic` under `id` (a new UUID v4 when
    /// `None`), retrying transport failures, `UNAVAILABLE` and
    /// `RATE_LIMITED` under the same id with backoff until
    /// [`RetryPolicy::publish_deadline`]; any other refusal is returned at
    /// once.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Value,
        id: Option<String>,
    ) -> Result<Receipt, Error> {
        publish::publish(&self.rest, &self.policy, topic, payload, id).await
    }

    /// Subscribes. Returns once the server acknowledged: a refusal or an
    /// unreachable server is an error here, after that the subscription
    /// reconnects by itself.
    pub async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, Error> {
        Subscription::open(self.rest.clone(), self.policy.clone(), options).await
    }
}
