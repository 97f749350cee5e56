//! Cluster mode: NATS JetStream as the log of several instances.
//!
//! - The topic registry is the key-value bucket `pubsub_topics`: key = the
//!   topic name (`.` written `=2E`, which KV keys cannot hold as-is), value =
//!   `{"epoch","created_at"}`. Creating is the bucket's atomic create, so two
//!   instances creating one name at once get one `201` and one `409`.
//!   The bucket also holds the cluster's topic count, which a create takes
//!   a slot of first, so `max_topics` holds across instances ([`slots`]).
//! - Each topic is the stream `PUBSUB_<epoch>` on subject
//!   `pubsub.topic.<epoch>`, file-backed, keeping `history_size` messages
//!   plus room for a lagging instance ([`LAG_ROOM`]).
//!   Its stream sequence is the topic's `seq`: JetStream orders concurrent
//!   publishers from every instance. A topic created again gets a new epoch
//!   and so a new stream.
//! - Every instance watches the registry and follows each topic's stream
//!   with an ordered push consumer, taking every message in stream order
//!   into its hub (history ring and its own subscribers). A publish is
//!   answered with JetStream's acknowledgement; the publisher's own
//!   instance, like every other, delivers the event when it reads it back.
//! - Reads that must see the whole cluster (history, topic info, a
//!   subscribe with `last_n` or a `since` ahead of this instance's copy)
//!   first wait until this instance has taken in the stream's last
//!   sequence. Other subscribes are served from the copy: live events
//!   follow on from it without a gap. Clients may cause at most
//!   [`CLIENT_REQUESTS_PER_SEC`] JetStream requests a second per instance.
//! - A stream keeps at most two histories of the largest messages on disk
//!   (`max_bytes`, within `max_history_bytes`); delete tombstones live a
//!   minute.
//!
//! The parts: this file answers the facade (create, delete, publish,
//! catch-up); [`registry`] decides, without I/O, which topics this instance
//! follows given the registry entries it read; [`registry_watch`] reads them;
//! [`follower`] takes each followed topic's stream into the hub; [`slots`]
//! keeps the cluster's topic count.

mod follower;
mod presence;
mod registry;
mod registry_watch;
mod slots;

use super::super::hub::topic::Topic;
use super::super::hub::{self, Hub};
use super::super::{clock, BrokerError, Prepared, Receipt, TopicInfo};
use async_nats::jetstream::{self, kv, stream};
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use protocol::ErrorCode;
use registry::{Adopted, Followed, Registry};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::shutdown::Shutdown;

/// The registry bucket.
const BUCKET: &str = "pubsub_topics";
/// How long one JetStream request (publish acknowledgement, stream info,
/// registry read) may take before the caller gets `UNAVAILABLE`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a read waits for this instance to take in what the cluster
/// already published.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages a topic's stream keeps beyond `history_size`: the room an
/// instance's follower may lag behind the publishers (a burst, a pause)
/// before the stream discards what it has not read yet. Past that the
/// instance's subscribers get `SLOW_CONSUMER` naming the gap.
const LAG_ROOM: usize = 10_000;
/// Pause before a failed registry watch or stream follower starts again.
const RETRY: Duration = Duration::from_millis(250);
/// JetStream requests clients may cause on this instance per second (a
/// lookup of a name it does not know, a catch-up before a read), with as
/// many saved up: one client cannot saturate the shared NATS's API. Past
/// it, reads answer from this instance's copy and lookups of unknown names
/// are `RATE_LIMITED`.
const CLIENT_REQUESTS_PER_SEC: f64 = 2_000.0;

pub(crate) struct NatsLog {
    hub: Arc<Hub>,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The registry bucket, once JetStream answered.
    store: RwLock<Option<kv::Store>>,
    /// The topics this instance follows, by name, and the deletes it read
    /// ([`registry`]). One lock: registry entries are rare (creates and
    /// deletes); a lookup on the publish path holds it for a map read.
    registry: Mutex<Registry<Arc<Mirror>>>,
    /// Tokens for the JetStream requests clients cause
    /// ([`CLIENT_REQUESTS_PER_SEC`]): (tokens, last refill).
    client_requests: parking_lot::Mutex<(f64, std::time::Instant)>,
    /// The newest registry revision the watch has taken in, for
    /// [`NatsLog::catch_up_registry`].
    registry_seen: watch::Sender<u64>,
    url: String,
    history_size: usize,
    /// This node's name (a NATS subject token), for presence and the board.
    node: Arc<str>,
    /// The other nodes' presence ([`presence`]).
    presence: presence::OthersLock,
}

/// A topic this instance follows.
struct Mirror {
    topic: Arc<Topic>,
    epoch: String,
    /// The newest `seq` taken in, for [`NatsLog::catch_up`].
    seq: watch::Sender<u64>,
    stop: CancellationToken,
}

/// What the registry holds per topic.
#[derive(Serialize, Deserialize)]
struct Registration {
    epoch: String,
    created_at: String,
}

/// A message as its stream keeps it (readable with `nats stream view`).
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(borrow)]
    ts: Cow<'a, str>,
}

impl NatsLog {
    /// Connects to NATS at `url` (retrying in the background when it is not
    /// there yet) and starts following the registry until `shutdown`.
    pub(crate) async fn connect(
        url: &str,
        node: &str,
        hub: Arc<Hub>,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, String> {
        if node.is_empty()
            || node.len() > 64
            || !node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(format!(
                "--node-name {node:?}: 1 to 64 characters from A-Z a-z 0-9 - _"
            ));
        }
        let client = async_nats::ConnectOptions::new()
            .name(format!("pubsub-server {}", env!("CARGO_PKG_VERSION")))
            .retry_on_initial_connect()
            .connection_timeout(REQUEST_TIMEOUT)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * 2u64.saturating_pow(attempts.min(4) as u32))
                    .min(Duration::from_secs(1))
            })
            .connect(url)
            .await
            .map_err(|e| format!("--cluster-nats {url}: {e}"))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .ack_timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        let history_size = hub.config().history_size;
        let node: Arc<str> = Arc::from(node);
        let _ = hub.node.set(Arc::clone(&node));
        let (presence_out, presence_in) = tokio::sync::mpsc::unbounded_channel();
        let _ = hub.presence_out.set(presence_out);
        let me = Arc::new(NatsLog {
            hub,
            client,
            js,
            store: RwLock::new(None),
            registry: Mutex::default(),
            client_requests: parking_lot::Mutex::new((
                CLIENT_REQUESTS_PER_SEC,
                std::time::Instant::now(),
            )),
            registry_seen: watch::Sender::new(0),
            url: url.to_owned(),
            history_size,
            node,
            presence: Mutex::default(),
        });
        tokio::spawn(Arc::clone(&me).keep_presence(presence_in, shutdown.clone()));
        tokio::spawn(Arc::clone(&me).keep_registry(shutdown.clone()));
        tokio::spawn(Arc::clone(&me).keep_count(shutdown));
        Ok(me)
    }

    /// JetStream's duplicate window for new topics' streams: the
    /// configured one (JetStream reads zero as its default of two minutes;
    /// with dedup off no message carries an id, so it holds nothing).
    fn dedup_window(&self) -> Duration {
        self.hub.config().dedup_window
    }

    /// This node's name.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn health(&self) -> Result<(), String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected if self.store.read().is_some() => Ok(()),
            async_nats::connection::State::Connected => Err(format!(
                "connected to NATS at {}, waiting for JetStream (the topic registry)",
                self.url
            )),
            _ => Err(format!(
                "NATS at {} is unreachable: publishes and topic changes get UNAVAILABLE until it is back",
                self.url
            )),
        }
    }

    /// The registry when NATS can be used right now, else `UNAVAILABLE`.
    fn available(&self) -> Result<kv::Store, BrokerError> {
        self.health().map_err(unavailable)?;
        self.store
            .read()
            .clone()
            .ok_or_else(|| unavailable("the topic registry is not ready"))
    }

    /// Takes a token for one JetStream request a client causes; false when
    /// this instance is over [`CLIENT_REQUESTS_PER_SEC`].
    fn may_ask(&self) -> bool {
        let mut bucket = self.client_requests.lock();
        let now = std::time::Instant::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() * CLIENT_REQUESTS_PER_SEC;
        bucket.0 = (bucket.0 + refill).min(CLIENT_REQUESTS_PER_SEC);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Bytes one topic's stream may keep on NATS's disk: two histories of
    /// the largest messages (history plus as much lag room), and never more
    /// than the whole history budget of an instance.
    fn stream_bytes(&self) -> i64 {
        let c = self.hub.config();
        let two_histories = 2 * c.history_size.max(1) * (c.max_message_bytes + 512);
        let bytes = match c.max_history_bytes {
            0 => two_histories,
            budget => two_histories.min(budget),
        };
        i64::try_from(bytes.max(1 << 20)).unwrap_or(i64::MAX)
    }

    pub(crate) async fn create_topic(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<TopicInfo, BrokerError> {
        super::super::error::check_topic_name(name)?;
        let registry = self.available()?;
        // The cluster-wide bound (this instance's copy may not have seen
        // a delete elsewhere yet): a slot first, then the name.
        match slots::take(&registry, self.hub.config().max_topics).await {
            Ok(slots::Slot::Taken) => {}
            Ok(slots::Slot::Full) => return Err(self.hub.too_many_topics()),
            Err(e) => return Err(unavailable(e)),
        }
        match self.register(&registry, name).await {
            Ok(info) => Ok(info),
            Err((e, slot_held)) => {
                if !slot_held {
                    slots::give_back(&registry).await;
                }
                Err(e)
            }
        }
    }

    /// The stream and the registry entry of a new topic, once its slot is
    /// taken. A failure says whether the slot is still in use: false when
    /// the topic surely was not registered.
    async fn register(
        self: &Arc<Self>,
        registry: &kv::Store,
        name: &str,
    ) -> Result<TopicInfo, (BrokerError, bool)> {
        let epoch = super::new_epoch();
        let registration = Registration {
            epoch,
            created_at: clock::now_rfc3339(),
        };
        let stream = stream_name(&registration.epoch);
        self.js
            .create_stream(stream::Config {
                name: stream.clone(),
                description: Some(format!("pubsub-server topic {name}")),
                subjects: vec![subject(&registration.epoch)],
                max_messages: (self.history_size + LAG_ROOM) as i64,
                max_bytes: self.stream_bytes(),
                discard: stream::DiscardPolicy::Old,
                storage: stream::StorageType::File,
                // Idempotent publish: JetStream drops a message whose
                // Nats-Msg-Id it stored within this window and acknowledges
                // it with the original's sequence and `duplicate`.
                duplicate_window: self.dedup_window(),
                ..Default::default()
            })
            .await
            .map_err(|e| (unavailable(e), false))?;
        let value = serde_json::to_vec(&registration).unwrap_or_default();
        let revision = match registry.create(key_of(name), value.into()).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Nobody can know this stream: it goes again.
                let _ = self.js.delete_stream(&stream).await;
                return Err((BrokerError::topic_exists(name), false));
            }
            Err(e) => {
                // The create may have been stored even so (a lost answer):
                // the stream goes only if the registry surely lacks it.
                match registry.entry(key_of(name)).await {
                    Ok(entry) => match entry.and_then(registered) {
                        Some((entry, held)) if held.epoch == registration.epoch => entry.revision,
                        _ => {
                            let _ = self.js.delete_stream(&stream).await;
                            return Err((unavailable(e), false));
                        }
                    },
                    // Unknown either way: the slot stays taken until the
                    // registry is quiet and the count is checked.
                    Err(_) => return Err((unavailable(e), true)),
                }
            }
        };
        // Its delete gave the slot back.
        let mirror = self.adopt(name, &registration, revision).ok_or_else(|| {
            (
                unavailable("the topic was deleted while it was being created"),
                true,
            )
        })?;
        Ok(hub::info_of(&mirror.topic))
    }

    pub(crate) async fn delete_topic(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        super::super::error::check_topic_name(name)?;
        let registry = self.available()?;
        let key = key_of(name);
        let entry = registry.entry(&key).await.map_err(unavailable)?;
        let Some((entry, registration)) = entry.and_then(registered) else {
            // The registry watch removes a copy this instance may still hold.
            return Err(BrokerError::topic_not_found(name));
        };
        // Only the revision read above: a concurrent delete (or a delete
        // and create) makes this one a 404 instead of deleting twice.
        if let Err(e) = registry
            .delete_expect_revision(&key, Some(entry.revision))
            .await
        {
            return Err(match e.kind() {
                kv::DeleteErrorKind::WrongLastRevision => BrokerError::topic_not_found(name),
                _ => unavailable(e),
            });
        }
        slots::give_back(&registry).await;
        if let Err(e) = self
            .js
            .delete_stream(stream_name(&registration.epoch))
            .await
        {
            // The topic is gone for everyone; only its storage is left.
            tracing::warn!(topic = name, error = %e, "deleted topic's stream was not removed");
        }
        self.forsake_epoch(name, &registration.epoch);
        Ok(())
    }

    /// Sends a message to its topic's stream; the future waits for
    /// JetStream's acknowledgement, which carries the `seq`.
    pub(crate) async fn start_publish(
        self: &Arc<Self>,
        name: &str,
        prepared: Prepared,
    ) -> Result<BoxFuture<'static, Result<Receipt, BrokerError>>, BrokerError> {
        self.available()?;
        let mirror = self.mirror(name).await?;
        let ts = clock::now_rfc3339();
        let body = serde_json::to_vec(&Stored {
            id: Cow::Borrowed(&prepared.id),
            payload: &prepared.payload,
            ts: Cow::Borrowed(&ts),
        })
        .unwrap_or_default();
        let mut message = jetstream::message::PublishMessage::build().payload(body.into());
        if !self.hub.config().dedup_window.is_zero() {
            message = message.message_id(msg_id(&prepared.id));
        }
        let ack = self
            .js
            .send_publish(subject(&mirror.epoch), message)
            .await
            .map_err(unavailable)?;
        let me = Arc::clone(self);
        let name = name.to_owned();
        let epoch = mirror.epoch.clone();
        Ok(Box::pin(async move {
            match ack.await {
                Ok(ack) => {
                    if ack.duplicate {
                        me.hub
                            .totals()
                            .duplicates
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(Receipt {
                        id: prepared.id,
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                    // Deleted elsewhere; the registry watch will say so too.
                    me.forsake_epoch(&name, &epoch);
                    Err(BrokerError::topic_not_found(&name))
                }
                Err(e) => Err(unavailable(format!(
                    "{e} (the message may still be stored if NATS received it: \
                     retry with the same id, and a stored one is answered as a duplicate)"
                ))),
            }
        }))
    }

    /// Waits until this instance knows every topic created or deleted in
    /// the cluster so far (the registry's last revision).
    pub(crate) async fn catch_up_registry(&self) -> Result<(), BrokerError> {
        self.available()?;
        let last = self.registry_revision().await.map_err(unavailable)?;
        reach(&self.registry_seen, last, || {
            format!("the topic registry up to revision {last}")
        })
        .await
    }

    /// The registry's newest revision: its stream's last sequence.
    async fn registry_revision(&self) -> Result<u64, jetstream::context::GetStreamError> {
        let stream = self.js.get_stream(registry_stream()).await?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// Waits until this instance has taken in every message the cluster
    /// published to `name` so far.
    pub(crate) async fn catch_up(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        super::super::error::check_topic_name(name)?;
        let mirror = self.mirror(name).await?;
        self.available()?;
        if !self.may_ask() {
            // Over the budget: this instance's copy, as it stands (what it
            // has not taken in yet follows in order).
            return Ok(());
        }
        let last = match self.js.get_stream(stream_name(&mirror.epoch)).await {
            Ok(stream) => stream.cached_info().state.last_sequence,
            Err(e) if is_stream_not_found(&e) => {
                self.forsake_epoch(name, &mirror.epoch);
                return Err(BrokerError::topic_not_found(name));
            }
            Err(e) => return Err(unavailable(e)),
        };
        reach(&mirror.seq, last, || {
            format!("topic {name:?} up to seq {last}")
        })
        .await
    }

    /// The topic as this instance follows it, or from the registry when it
    /// was created elsewhere a moment ago.
    async fn mirror(self: &Arc<Self>, name: &str) -> Result<Arc<Mirror>, BrokerError> {
        if let Some(followed) = self.registry.lock().get(name) {
            return Ok(Arc::clone(&followed.mirror));
        }
        let registry = self.available()?;
        if !self.may_ask() {
            return Err(BrokerError::new(
                ErrorCode::RateLimited,
                format!(
                    "this instance looks up more than {CLIENT_REQUESTS_PER_SEC} unknown topics a second in the cluster's registry; try again"
                ),
            ));
        }
        match registry.entry(key_of(name)).await {
            Ok(entry) => match entry.and_then(registered) {
                Some((entry, registration)) => self
                    .adopt(name, &registration, entry.revision)
                    .ok_or_else(|| BrokerError::topic_not_found(name)),
                None => Err(BrokerError::topic_not_found(name)),
            },
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Follows a registered topic, unless it does already or the entry is
    /// older than what it read ([`Registry::adopt`]). The decision and the
    /// hub's topic are made under the registry's lock, so concurrent adopts
    /// of one name (the registry watch, a lookup) cannot leave the hub's
    /// topic and the followed stream on different epochs.
    fn adopt(
        self: &Arc<Self>,
        name: &str,
        registration: &Registration,
        revision: u64,
    ) -> Option<Arc<Mirror>> {
        let adopted = self
            .registry
            .lock()
            .adopt(name, &registration.epoch, revision, || {
                let (topic, _) =
                    self.hub
                        .adopt_topic(name, &registration.epoch, &registration.created_at);
                Arc::new(Mirror {
                    seq: watch::Sender::new(topic.snapshot().0),
                    topic,
                    epoch: registration.epoch.clone(),
                    stop: CancellationToken::new(),
                })
            });
        match adopted {
            Adopted::Held(mirror) => Some(mirror),
            Adopted::Refused { held } => held,
            Adopted::New { mirror, replaced } => {
                if let Some(stale) = replaced {
                    stale.stop.cancel();
                }
                tokio::spawn(Arc::clone(self).follow(Arc::clone(&mirror)));
                Some(mirror)
            }
        }
    }

    /// A delete of `name` at `revision` was read: stops following a topic
    /// registered before it and deletes it here (its subscribers get
    /// `topic_deleted`).
    fn forsake(&self, name: &str, revision: u64) {
        let gone = self
            .registry
            .lock()
            .forsake(name, revision, std::time::Instant::now());
        if let Some(followed) = gone {
            self.stop_following(name, followed);
        }
    }

    /// Stops following `name` if it is still this epoch (whose stream was
    /// found gone) and deletes it here.
    fn forsake_epoch(&self, name: &str, epoch: &str) {
        let gone = self
            .registry
            .lock()
            .forsake_epoch(name, epoch, std::time::Instant::now());
        if let Some(followed) = gone {
            self.stop_following(name, followed);
        }
    }

    /// Stops a follower the registry let go of, and deletes its topic here
    /// (only that epoch: a newer one may be adopted already).
    fn stop_following(&self, name: &str, followed: Followed<Arc<Mirror>>) {
        followed.mirror.stop.cancel();
        self.hub.drop_topic(name, Some(&followed.epoch));
    }

    /// Sets the cluster's topic count right again after a create or
    /// delete was cut off between its steps (see [`slots`]): whenever the
    /// registry has stayed unchanged for a whole [`slots::QUIET`] period.
    async fn keep_count(self: Arc<Self>, shutdown: Shutdown) {
        let mut quiet = slots::Quiet::default();
        loop {
            tokio::select! {
                _ = shutdown.triggered() => return,
                _ = tokio::time::sleep(slots::QUIET) => {}
            }
            let Ok(store) = self.available() else {
                continue;
            };
            let Ok(before) = self.registry_revision().await else {
                continue;
            };
            if !quiet.look(before) {
                continue;
            }
            let checked = async {
                let registered = slots::registered(&store).await?;
                let count = slots::read(&store).await?;
                match self.registry_revision().await {
                    // Still quiet: nothing between its steps.
                    Ok(now) if now == before => slots::correct(&store, registered, count).await,
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            };
            match checked.await {
                Ok(()) => quiet.checked(before),
                Err(e) => tracing::warn!(error = %e, "cluster topic count not checked"),
            }
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::new(ErrorCode::Unavailable, format!("cluster backplane: {e}"))
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// A live registry entry and what it says.
fn registered(entry: kv::Entry) -> Option<(kv::Entry, Registration)> {
    if entry.operation != kv::Operation::Put {
        return None;
    }
    let registration = serde_json::from_slice(&entry.value).ok()?;
    Some((entry, registration))
}

/// Waits (at most [`CATCH_UP_TIMEOUT`]) until `progress` reaches `target`;
/// else `UNAVAILABLE`, naming `what` this instance has not yet received.
async fn reach(
    progress: &watch::Sender<u64>,
    target: u64,
    what: impl FnOnce() -> String,
) -> Result<(), BrokerError> {
    let mut progress = progress.subscribe();
    let reached = tokio::time::timeout(CATCH_UP_TIMEOUT, progress.wait_for(|p| *p >= target))
        .await
        .is_ok_and(|waited| waited.is_ok());
    if reached {
        Ok(())
    } else {
        Err(unavailable(format!(
            "this instance has not yet received {}; try again",
            what()
        )))
    }
}

/// The stream behind the registry bucket.
fn registry_stream() -> String {
    format!("KV_{BUCKET}")
}

fn stream_name(epoch: &str) -> String {
    format!("PUBSUB_{epoch}")
}

fn subject(epoch: &str) -> String {
    format!("pubsub.topic.{epoch}")
}

/// The registry key of a topic: KV keys are subject tokens, where `.`
/// separates (and `=` never occurs in a topic name).
fn key_of(name: &str) -> String {
    name.replace('.', "=2E")
}

pub(super) fn name_of(key: &str) -> Option<String> {
    let name = key.replace("=2E", ".");
    protocol::topic_name_problem(&name)
        .is_none()
        .then_some(name)
}

/// A message id as a `Nats-Msg-Id` header value: percent-encoded (an id is
/// any 1 to 128 characters, a header value may not hold a line break), and
/// injective, so two ids are one for JetStream only when they are equal.
fn msg_id(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_every_topic_name_character() {
        for name in ["a", "a.b", ".x.", "A-Z_0.9..", "..."] {
            let key = key_of(name);
            assert!(!key.contains('.'), "{key}");
            assert_eq!(name_of(&key).as_deref(), Some(name));
        }
    }

    #[test]
    fn stored_messages_read_back() {
        let payload = RawValue::from_string(r#"{"a":"\"q\""}"#.into()).unwrap();
        let body = serde_json::to_vec(&Stored {
            id: Cow::Borrowed("i\"d"),
            payload: &payload,
            ts: Cow::Borrowed("t"),
        })
        .unwrap();
        let back: Stored = serde_json::from_slice(&body).unwrap();
        assert_eq!(back.id, "i\"d");
        assert_eq!(back.payload.get(), r#"{"a":"\"q\""}"#);
    }
}
