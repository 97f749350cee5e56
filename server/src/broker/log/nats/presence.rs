//! Cluster-wide presence, over core NATS (no JetStream: presence is about
//! connections that live and die with their node, nothing to store).
//!
//! Every node:
//! - publishes each change of its own presence (an exact subscription
//!   joining or leaving) on `pubsub.presence.delta`, numbered: the node's
//!   presence `version`;
//! - says it is alive every [`BEAT`] on `pubsub.presence.beat`, with its
//!   version;
//! - answers `pubsub.presence.sync.<node>` with all of its presence;
//! - keeps the other nodes' presence: deltas are applied as they come (by
//!   (topic, connection), so applying one twice changes nothing); a node
//!   heard of for the first time, or whose beat or delta shows a version
//!   this node has not seen in order, is asked for all of it again;
//! - forgets a node not heard for [`SILENCE`]: its clients leave presence
//!   (with `leave` notices) within that time plus one [`BEAT`].
//!
//! Join and leave notices for the other nodes' subscriptions go to this
//! node's watchers as they are applied. A node's presence request merges
//! its own and what it keeps of the others.

use super::NatsLog;
use crate::broker::hub::LocalPresence;
use crate::shutdown::Shutdown;
use futures_util::StreamExt;
use parking_lot::Mutex;
use protocol::{InfoKind, PresenceClient};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How often a node says it is alive.
pub(super) const BEAT: Duration = Duration::from_secs(1);
/// How long a node may stay silent before its clients leave presence.
pub(super) const SILENCE: Duration = Duration::from_secs(3);

const DELTA: &str = "pubsub.presence.delta";
const BEATS: &str = "pubsub.presence.beat";

fn sync_subject(node: &str) -> String {
    format!("pubsub.presence.sync.{node}")
}

#[derive(Serialize, Deserialize)]
struct Beat {
    node: String,
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct Delta {
    node: String,
    version: u64,
    topic: String,
    epoch: String,
    /// A join carries the client; a leave only its connection id.
    #[serde(default)]
    client: Option<PresenceClient>,
    connection_id: u64,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    node: String,
    version: u64,
    members: Vec<Entry>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Entry {
    topic: String,
    epoch: String,
    client: PresenceClient,
}

/// What this node keeps of one other node's presence.
struct Node {
    heard: Instant,
    version: u64,
    /// By (topic, connection id).
    members: HashMap<(String, u64), Entry>,
}

/// The other nodes' presence, by node name.
#[derive(Default)]
pub(super) struct Others {
    nodes: HashMap<String, Node>,
}

impl Others {
    /// The other nodes' exact subscriptions of `topic` (this epoch of it).
    pub(super) fn of(&self, topic: &str, epoch: &str) -> Vec<PresenceClient> {
        self.nodes
            .values()
            .flat_map(|n| n.members.values())
            .filter(|e| e.topic == topic && e.epoch == epoch)
            .map(|e| e.client.clone())
            .collect()
    }
}

/// A notice owed to this node's watchers after a change of the others.
type Notice = (Entry, InfoKind);

impl NatsLog {
    /// Keeps presence cluster-wide until `shutdown` (see the module).
    pub(super) async fn keep_presence(
        self: Arc<Self>,
        mut local: UnboundedReceiver<LocalPresence>,
        shutdown: Shutdown,
    ) {
        let mut version: u64 = 0;
        let mut beat = tokio::time::interval(BEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let subscribed = async {
                let deltas = self.client.subscribe(DELTA).await?;
                let beats = self.client.subscribe(BEATS).await?;
                let syncs = self.client.subscribe(sync_subject(&self.node)).await?;
                Ok::<_, async_nats::SubscribeError>((deltas, beats, syncs))
            };
            let (mut deltas, mut beats, mut syncs) = tokio::select! {
                _ = shutdown.triggered() => return,
                subscribed = subscribed => match subscribed {
                    Ok(subscriptions) => subscriptions,
                    Err(e) => {
                        tracing::warn!(error = %e, "presence: cannot subscribe; trying again");
                        tokio::time::sleep(super::RETRY).await;
                        continue;
                    }
                },
            };
            loop {
                tokio::select! {
                    _ = shutdown.triggered() => return,
                    change = local.recv() => {
                        let Some(change) = change else { return };
                        version += 1;
                        self.publish_delta(change, version).await;
                    }
                    _ = beat.tick() => {
                        let me = Beat { node: self.node.to_string(), version };
                        self.send(BEATS, &me).await;
                        self.expire();
                    }
                    Some(message) = deltas.next() => {
                        if let Ok(delta) = serde_json::from_slice::<Delta>(&message.payload) {
                            self.take_delta(delta).await;
                        }
                    }
                    Some(message) = beats.next() => {
                        if let Ok(beat) = serde_json::from_slice::<Beat>(&message.payload) {
                            self.take_beat(beat).await;
                        }
                    }
                    Some(message) = syncs.next() => {
                        // Everything this node holds, as of `version` (a
                        // change still in the channel is in the snapshot
                        // already; its delta, applied again, changes nothing).
                        let members = self
                            .hub
                            .local_presence()
                            .into_iter()
                            .map(|(topic, epoch, client)| Entry { topic: topic.to_string(), epoch, client })
                            .collect();
                        let snapshot = Snapshot { node: self.node.to_string(), version, members };
                        if let (Some(reply), Ok(body)) = (message.reply, serde_json::to_vec(&snapshot)) {
                            let _ = self.client.publish(reply, body.into()).await;
                        }
                    }
                    else => break,
                }
            }
        }
    }

    async fn publish_delta(&self, change: LocalPresence, version: u64) {
        let delta = match change {
            LocalPresence::Join {
                topic,
                epoch,
                client,
            } => Delta {
                node: self.node.to_string(),
                version,
                topic: topic.to_string(),
                epoch,
                connection_id: client.connection_id,
                client: Some(client),
            },
            LocalPresence::Leave {
                topic,
                epoch,
                connection_id,
            } => Delta {
                node: self.node.to_string(),
                version,
                topic: topic.to_string(),
                epoch,
                connection_id,
                client: None,
            },
        };
        self.send(DELTA, &delta).await;
    }

    async fn send<T: Serialize>(&self, subject: &'static str, body: &T) {
        if let Ok(body) = serde_json::to_vec(body) {
            let _ = self.client.publish(subject, body.into()).await;
        }
    }

    async fn take_delta(&self, delta: Delta) {
        if *delta.node == *self.node {
            return;
        }
        let (notice, in_order) = {
            let mut others = self.presence.lock();
            let node = others
                .nodes
                .entry(delta.node.clone())
                .or_insert_with(|| Node {
                    heard: Instant::now(),
                    version: 0,
                    members: HashMap::new(),
                });
            node.heard = Instant::now();
            let in_order = delta.version == node.version + 1;
            node.version = node.version.max(delta.version);
            let key = (delta.topic.clone(), delta.connection_id);
            let notice = match delta.client {
                Some(client) => {
                    let entry = Entry {
                        topic: delta.topic,
                        epoch: delta.epoch,
                        client,
                    };
                    let new = node.members.insert(key, entry.clone()).is_none();
                    new.then_some((entry, InfoKind::Join))
                }
                None => node.members.remove(&key).map(|e| (e, InfoKind::Leave)),
            };
            (notice, in_order)
        };
        self.tell(notice.into_iter());
        if !in_order {
            self.sync(&delta.node).await;
        }
    }

    async fn take_beat(&self, beat: Beat) {
        if *beat.node == *self.node {
            return;
        }
        let behind = {
            let mut others = self.presence.lock();
            match others.nodes.get_mut(&beat.node) {
                Some(node) => {
                    node.heard = Instant::now();
                    node.version != beat.version
                }
                None => true,
            }
        };
        if behind {
            self.sync(&beat.node).await;
        }
    }

    /// Asks `node` for all of its presence and takes it in, telling this
    /// node's watchers what changed.
    async fn sync(&self, node: &str) {
        let reply = tokio::time::timeout(
            super::REQUEST_TIMEOUT,
            self.client.request(sync_subject(node), Vec::new().into()),
        )
        .await;
        let Ok(Ok(reply)) = reply else {
            return;
        };
        let Ok(snapshot) = serde_json::from_slice::<Snapshot>(&reply.payload) else {
            return;
        };
        let notices = {
            let mut others = self.presence.lock();
            let fresh: HashMap<(String, u64), Entry> = snapshot
                .members
                .into_iter()
                .map(|e| ((e.topic.clone(), e.client.connection_id), e))
                .collect();
            let old = others
                .nodes
                .insert(
                    snapshot.node,
                    Node {
                        heard: Instant::now(),
                        version: snapshot.version,
                        members: fresh.clone(),
                    },
                )
                .map(|n| n.members)
                .unwrap_or_default();
            let mut notices: Vec<Notice> = old
                .iter()
                .filter(|(k, _)| !fresh.contains_key(*k))
                .map(|(_, e)| (e.clone(), InfoKind::Leave))
                .collect();
            notices.extend(
                fresh
                    .iter()
                    .filter(|(k, _)| !old.contains_key(*k))
                    .map(|(_, e)| (e.clone(), InfoKind::Join)),
            );
            notices
        };
        self.tell(notices.into_iter());
    }

    /// Forgets the nodes silent for [`SILENCE`]: their clients leave.
    fn expire(&self) {
        let gone: Vec<Node> = {
            let mut others = self.presence.lock();
            let silent: Vec<String> = others
                .nodes
                .iter()
                .filter(|(_, n)| n.heard.elapsed() > SILENCE)
                .map(|(name, _)| name.clone())
                .collect();
            silent
                .iter()
                .filter_map(|name| others.nodes.remove(name))
                .collect()
        };
        for node in gone {
            self.tell(node.members.into_values().map(|e| (e, InfoKind::Leave)));
        }
    }

    fn tell(&self, notices: impl Iterator<Item = Notice>) {
        for (entry, kind) in notices {
            self.hub
                .announce_remote(&entry.topic, &entry.epoch, &entry.client, kind);
        }
    }

    /// The other nodes' exact subscriptions of `topic`.
    pub(crate) fn others_presence(&self, topic: &str, epoch: &str) -> Vec<PresenceClient> {
        self.presence.lock().of(topic, epoch)
    }
}

/// What this node keeps of the others, behind one lock.
pub(super) type OthersLock = Mutex<Others>;
