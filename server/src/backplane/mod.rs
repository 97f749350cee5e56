//! Where a topic's existence, `seq`, epoch and history are decided.
//!
//! - [`Backplane::Memory`] (the default): in this process. The broker
//!   assigns `seq` under the topic's lock and fans out at once.
//! - [`Backplane::Nats`] (cluster mode, `--cluster-nats`): in NATS
//!   JetStream, shared by every instance. A key-value bucket is the topic
//!   registry and each topic is a stream whose sequence is the topic's `seq`;
//!   every instance follows the streams and fans out to its own WebSocket
//!   subscribers through the same broker, which here is a mirror.
//!
//! REST and WebSocket call the backplane for everything that changes
//! shared state or must read it fresh; connection-local work (queues,
//! subscriptions, stats) stays with [`Broker`].
//!
//! The NATS futures are boxed: they are several KiB, and every WebSocket
//! session's task would otherwise carry that much (it awaits these calls)
//! even on the in-memory backplane, where idle connections are counted in
//! bytes.

pub mod nats;
mod slots;

use crate::broker::Broker;
use crate::broker::{
    BrokerError, Connection, HistoryRange, PublishedEvent, Receipt, Replay, TopicInfo,
};
use futures_util::future::BoxFuture;
use protocol::{ErrorCode, PublishMessage};
use std::sync::Arc;

/// A publish that was sent: its outcome, or (cluster mode) the wait for
/// its acknowledgement.
pub enum Publishing {
    Done(Result<Receipt, BrokerError>),
    Waiting(BoxFuture<'static, Result<Receipt, BrokerError>>),
}

impl Publishing {
    pub async fn finish(self) -> Result<Receipt, BrokerError> {
        match self {
            Publishing::Done(result) => result,
            Publishing::Waiting(acknowledged) => acknowledged.await,
        }
    }
}

#[derive(Clone)]
pub enum Backplane {
    Memory(Arc<Broker>),
    Nats(Arc<nats::NatsBackplane>),
}

impl Backplane {
    /// This instance's broker: its connections, subscriptions and counters.
    pub fn broker(&self) -> &Arc<Broker> {
        match self {
            Backplane::Memory(broker) => broker,
            Backplane::Nats(nats) => nats.broker(),
        }
    }

    /// `Err(reason)` while this instance cannot serve the contract (cluster
    /// mode with NATS unreachable).
    pub fn health(&self) -> Result<(), String> {
        match self {
            Backplane::Memory(_) => Ok(()),
            Backplane::Nats(nats) => nats.health(),
        }
    }

    pub async fn create_topic(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        match self {
            Backplane::Memory(broker) => broker.create_topic(name),
            Backplane::Nats(nats) => Box::pin(nats.create_topic(name)).await,
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        match self {
            Backplane::Memory(broker) => broker.delete_topic(name),
            Backplane::Nats(nats) => Box::pin(nats.delete_topic(name)).await,
        }
    }

    /// Every topic, sorted by name, including every topic created or
    /// deleted anywhere in the cluster before the call (from this
    /// instance's copy while NATS cannot be reached).
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, BrokerError> {
        if let Backplane::Nats(nats) = self {
            match Box::pin(nats.catch_up_registry()).await {
                Err(e) if !out_of_reach(nats, &e) => return Err(e),
                _ => {}
            }
        }
        Ok(self.broker().list_topics())
    }

    /// A topic's metadata, as of now across the cluster.
    pub async fn topic_info(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        self.fresh(name).await?;
        self.broker().topic_info(name)
    }

    /// Before a read: in cluster mode, takes in everything the cluster
    /// published to `name` so far. While NATS cannot be reached, a topic
    /// this instance knows is read from its copy as it stands: what it
    /// missed follows in order once NATS is back, so a subscriber still
    /// gets no gap and no duplicate.
    async fn fresh(&self, name: &str) -> Result<(), BrokerError> {
        let Backplane::Nats(nats) = self else {
            return Ok(());
        };
        match Box::pin(nats.catch_up(name)).await {
            Err(e) if out_of_reach(nats, &e) && self.broker().topic(name).is_ok() => Ok(()),
            other => other,
        }
    }

    /// Messages from a topic's history, including every message published
    /// anywhere before this call.
    pub async fn history(
        &self,
        name: &str,
        range: HistoryRange,
    ) -> Result<(String, Vec<Arc<PublishedEvent>>), BrokerError> {
        self.fresh(name).await?;
        self.broker().history(name, range)
    }

    /// Publishes one message (REST: no connection, no rate).
    pub async fn publish(
        &self,
        name: &str,
        message: PublishMessage,
    ) -> Result<Receipt, BrokerError> {
        self.start_publish(name, message).await.finish().await
    }

    /// Publishes for a WebSocket connection (its role and rate first), in
    /// two steps: this sends the message, the returned [`Publishing`]
    /// waits for its acknowledgement. Messages
    /// one connection starts one after the other keep that order (in
    /// cluster mode NATS receives them in it), so a connection may have
    /// several publishes in flight.
    pub async fn start_publish_from(
        &self,
        conn: &Connection,
        name: &str,
        message: PublishMessage,
    ) -> Publishing {
        if let Err(e) = self.broker().may_publish(conn) {
            return Publishing::Done(Err(e));
        }
        self.start_publish(name, message).await
    }

    async fn start_publish(&self, name: &str, message: PublishMessage) -> Publishing {
        match self {
            Backplane::Memory(broker) => Publishing::Done(broker.publish(name, message)),
            Backplane::Nats(nats) => match Box::pin(nats.start_publish(name, message)).await {
                Ok(acknowledged) => Publishing::Waiting(acknowledged),
                Err(e) => Publishing::Done(Err(e)),
            },
        }
    }

    /// Subscribes a connection. In cluster mode, when the subscribe replays
    /// (`last_n`, or a `since` ahead of this instance's copy) or names a
    /// topic this instance does not know yet, it first takes in every
    /// message published anywhere before the call, so replay and the
    /// `ack`'s `seq` are the cluster's. Otherwise it is served from the copy
    /// (one JetStream request less per subscribe): live events follow on
    /// from it without a gap or a duplicate.
    pub async fn subscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        replay: Replay,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        if conn.permits.subscribe && !self.copy_serves(name, &replay) {
            self.fresh(name).await?;
        }
        self.broker().subscribe(conn, name, replay, request_id)
    }

    /// Whether this instance's copy of `name` can answer this subscribe as
    /// well as the cluster would (always, in memory).
    fn copy_serves(&self, name: &str, replay: &Replay) -> bool {
        let Backplane::Nats(_) = self else {
            return true;
        };
        let Ok(topic) = self.broker().topic(name) else {
            return false;
        };
        match (&replay.since, replay.last_n) {
            (Some(since), _) => since.epoch == topic.epoch && since.seq <= topic.snapshot().0,
            (None, Some(_)) => false,
            (None, None) => true,
        }
    }
}

/// Whether a catch-up failed because NATS is out of reach, the one case in
/// which this instance answers from its copy: a node that is merely behind
/// must not answer from a stale one.
fn out_of_reach(nats: &nats::NatsBackplane, e: &BrokerError) -> bool {
    e.code == ErrorCode::Unavailable && nats.health().is_err()
}
