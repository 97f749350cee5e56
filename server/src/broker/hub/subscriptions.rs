//! Subscribing, unsubscribing and closing: the changes to what a connection
//! follows, each atomic with the publishing of the topics it touches.
//!
//! A connection follows a topic once, whatever made it (its name, one or
//! more of its patterns): the topic's subscriber map holds the connection
//! once, and [`super::connection::Follow`] says why. A subscription that
//! starts following a topic queues its `ack`, then the replayed events,
//! then joins the subscriber map, all under the topic's lock, so no publish
//! falls between replay and live. A pattern subscribe does that for every
//! topic that matches at once: it locks them all, in name order (nothing
//! else holds two topic locks, so the order cannot deadlock), and holds the
//! hub's pattern list for writing meanwhile, so a topic created at that
//! moment is either among them or attaches the new pattern itself, never
//! both and never neither.

use super::connection::{Connection, Subscriptions};
use super::frame::Frame;
use super::outbox::End;
use super::tally::Limit;
use super::topic::{Member, PublishedEvent, Subscriber, Topic, TopicState};
use super::{clamp, Hub};
use crate::broker::error::{check_topic_name, BrokerError};
use parking_lot::MutexGuard;
use protocol::pattern::Pattern;
use protocol::{Ack, AckTopic, ErrorCode, InfoKind, PresenceClient, Since};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// One pattern subscription, in the hub's list of them.
pub(crate) struct PatternSubscription {
    pub(super) text: Arc<str>,
    pub(super) pattern: Arc<Pattern>,
    pub(super) conn: Arc<Connection>,
}

/// Where a new follow of one topic starts.
#[derive(Clone, Copy)]
pub(crate) struct Start<'a> {
    pub(crate) last_n: Option<u64>,
    pub(crate) since: Option<&'a Since>,
}

/// Who subscribes by name, for presence.
#[derive(Debug, Clone, Copy, Default)]
pub struct Joining<'a> {
    /// The subscribe's `client_id` (1 to 128 characters).
    pub client_id: Option<&'a str>,
    /// `join`/`leave` notices of the topic's other exact subscriptions.
    pub presence_events: bool,
}

impl Hub {
    /// Subscribes `conn` to the topic `name`. Queues the `ack`, then the
    /// replayed events, then registers for live events, all under the
    /// topic's lock. A repeated subscribe is acked and replays nothing; so
    /// is one to a topic a pattern already follows.
    pub(crate) fn subscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        start: Start<'_>,
        joining: Joining<'_>,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        if !conn.permits.subscribe {
            return Err(forbidden());
        }
        let topic = self.topic(name)?;
        let mut st = topic.state.lock();
        if st.deleted {
            return Err(BrokerError::topic_not_found(name));
        }
        let mut subs = conn.subscriptions.lock();
        let followed = subs
            .follows
            .get(name)
            .filter(|f| Arc::ptr_eq(&f.topic, &topic))
            .map(|f| f.exact);
        if followed != Some(true) && subs.count() >= self.config.max_subscriptions {
            return Err(self.too_many_subscriptions());
        }
        let (mut events, recovered) = replay(&topic, &st, start);
        if followed.is_some() {
            // Followed already: nothing to replay, as for a repeat.
            events.clear();
        }
        let ack = Frame::ack(Ack {
            seq: Some(st.seq),
            epoch: Some(topic.epoch.clone()),
            replayed: Some(events.len() as u64),
            recovered,
            ..Frame::ack_of(request_id, name)
        });
        if followed.is_some() {
            // Its `seq` is the last before the events that follow it.
            conn.outbox.push_reply_after(ack, &[&topic]);
        } else {
            conn.outbox.push_reply(ack);
        }
        match followed {
            Some(true) => {
                st.presence.set_events(conn.id, joining.presence_events);
                return Ok(());
            }
            Some(false) => subs.set_exact(name, true),
            None => {
                if conn.is_disconnected() {
                    // Closed meanwhile: registering now would leak it.
                    return Ok(());
                }
                for event in &events {
                    conn.outbox.push_replay(event);
                }
                let from = st.seq - events.len() as u64;
                self.join_topic(&mut st, &mut subs, conn, &topic, from, None);
            }
        }
        if let Some(follow) = subs.follows.get_mut(name) {
            follow.client_id = joining.client_id.map(Arc::from);
        }
        let member = Member {
            client_id: joining.client_id.map(Arc::from),
            joined_at: crate::broker::clock::now_millis(),
            presence_events: joining.presence_events,
        };
        self.presence_changed(&topic, &st, conn.id, &member, InfoKind::Join);
        st.presence.join(conn.id, member);
        Ok(())
    }

    /// The topic's exact-name subscriptions, oldest first.
    pub(crate) fn presence(&self, name: &str) -> Result<Vec<PresenceClient>, BrokerError> {
        let topic = self.topic(name)?;
        let st = topic.state.lock();
        Ok(st
            .presence
            .oldest_first()
            .into_iter()
            .map(|(id, member)| presence_client(id, member, self.node.get()))
            .collect())
    }

    /// Subscribes `conn` to a pattern: every topic that matches now is
    /// followed as a single-topic subscribe would be (`since` per topic
    /// name, `last_n` for the others), and every topic created later that
    /// matches from its first message. One `ack` lists them all.
    pub(crate) fn subscribe_pattern(
        &self,
        conn: &Arc<Connection>,
        pattern: Pattern,
        last_n: Option<u64>,
        since: &BTreeMap<String, Since>,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        if !conn.permits.subscribe {
            return Err(forbidden());
        }
        let text: Arc<str> = Arc::from(pattern.as_str());
        let mut index = self.patterns.write();
        let (repeat, pattern) = {
            let mut subs = conn.subscriptions.lock();
            match subs.patterns.get(&text) {
                Some(held) => (true, Arc::clone(held)),
                None if subs.count() >= self.config.max_subscriptions => {
                    return Err(self.too_many_subscriptions());
                }
                None if conn.is_disconnected() => return Ok(()),
                None => {
                    let pattern = Arc::new(pattern);
                    subs.patterns
                        .insert(Arc::clone(&text), Arc::clone(&pattern));
                    index.push(PatternSubscription {
                        text: Arc::clone(&text),
                        pattern: Arc::clone(&pattern),
                        conn: Arc::clone(conn),
                    });
                    (false, pattern)
                }
            }
        };
        let mut matching: Vec<Arc<Topic>> = self
            .topics
            .iter()
            .filter(|t| pattern.matches(t.key()))
            .map(|t| Arc::clone(t.value()))
            .collect();
        matching.sort_by(|a, b| a.name.cmp(&b.name));
        let mut locked: Vec<(Arc<Topic>, MutexGuard<'_, TopicState>)> = Vec::new();
        for topic in &matching {
            let st = topic.state.lock();
            if !st.deleted {
                locked.push((Arc::clone(topic), st));
            }
        }
        let mut subs = conn.subscriptions.lock();
        let mut acked = BTreeMap::new();
        let mut replays: Vec<Vec<Arc<PublishedEvent>>> = Vec::with_capacity(locked.len());
        let mut followed: Vec<&Arc<Topic>> = Vec::new();
        for (topic, st) in &locked {
            let follow = subs
                .follows
                .get_mut(&*topic.name)
                .filter(|f| Arc::ptr_eq(&f.topic, topic));
            let start = Start {
                last_n,
                since: since.get(&*topic.name),
            };
            let (mut events, recovered) = replay(topic, st, start);
            if follow.is_some() {
                followed.push(topic);
            }
            if let Some(follow) = follow {
                // Followed already: nothing to replay, as for a repeat.
                if !repeat && !follow.patterns.contains(&text) {
                    follow.patterns.push(Arc::clone(&text));
                }
                events.clear();
            } else if repeat {
                events.clear();
            }
            acked.insert(
                topic.name.to_string(),
                AckTopic {
                    seq: st.seq,
                    epoch: topic.epoch.clone(),
                    replayed: events.len() as u64,
                    recovered,
                },
            );
            replays.push(events);
        }
        // Each listed `seq` is the last before the events that follow.
        conn.outbox.push_reply_after(
            Frame::ack(Ack {
                pattern: Some(true),
                topics: Some(acked),
                ..Frame::ack_of(request_id, &text)
            }),
            &followed,
        );
        if repeat || conn.is_disconnected() {
            return Ok(());
        }
        for ((topic, st), events) in locked.iter_mut().zip(replays) {
            if subs.follows.contains_key(&*topic.name) {
                continue;
            }
            for event in &events {
                conn.outbox.push_replay(event);
            }
            let from = st.seq - events.len() as u64;
            self.join_topic(st, &mut subs, conn, topic, from, Some(&text));
        }
        drop(index);
        Ok(())
    }

    /// A topic being created (not yet visible to publishers): every pattern
    /// subscription that matches follows it from its first message, with
    /// `info topic_created` first. `patterns` is the hub's list, held for
    /// reading from before the topic was built until it is visible.
    pub(super) fn attach_patterns(&self, patterns: &[PatternSubscription], topic: &Arc<Topic>) {
        let matching = patterns.iter().filter(|p| p.pattern.matches(&topic.name));
        let mut st = topic.state.lock();
        for sub in matching {
            let mut subs = sub.conn.subscriptions.lock();
            // Unsubscribed or closed since it was listed.
            if sub.conn.is_disconnected() || !subs.patterns.contains_key(&sub.text) {
                continue;
            }
            if let Some(follow) = subs.follows.get_mut(&*topic.name) {
                if Arc::ptr_eq(&follow.topic, topic) {
                    if !follow.patterns.contains(&sub.text) {
                        follow.patterns.push(Arc::clone(&sub.text));
                    }
                    continue;
                }
            }
            sub.conn
                .outbox
                .push_reply(Frame::topic_created(&topic.name, &topic.epoch));
            let from = st.seq;
            self.join_topic(&mut st, &mut subs, &sub.conn, topic, from, Some(&sub.text));
        }
    }

    /// Unsubscribes `conn` from a topic name or a pattern, then queues the
    /// `ack`; acked also when the connection was not subscribed. A topic
    /// nothing makes the connection follow any more is left at once: its
    /// events still queued are discarded (counted as dropped, no
    /// `SLOW_CONSUMER` notice) and nothing of it follows the `ack`. A topic
    /// another subscription still matches keeps coming.
    pub(crate) fn unsubscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        request_id: Option<String>,
    ) -> Result<(), BrokerError> {
        self.end_subscription(conn, name)?;
        conn.outbox
            .push_reply(Frame::ack(Frame::ack_of(request_id, name)));
        Ok(())
    }

    /// What [`Hub::unsubscribe`] does but the `ack`: ends the subscription
    /// to a name or a pattern, if there is one.
    pub(crate) fn end_subscription(
        &self,
        conn: &Arc<Connection>,
        name: &str,
    ) -> Result<(), BrokerError> {
        if protocol::pattern::is_pattern(name) {
            Pattern::parse(name).map_err(BrokerError::bad_request)?;
            self.unsubscribe_pattern(conn, name);
        } else {
            check_topic_name(name)?;
            let topic = conn
                .subscriptions
                .lock()
                .follows
                .get(name)
                .map(|f| Arc::clone(&f.topic));
            if let Some(topic) = topic {
                self.leave(conn, &topic, |subs| subs.set_exact(name, false));
            }
        }
        Ok(())
    }

    fn unsubscribe_pattern(&self, conn: &Arc<Connection>, text: &str) {
        // Out of the connection's patterns first: a topic being created
        // that still finds it in the hub's list then skips it.
        let (text, topics): (Arc<str>, Vec<Arc<Topic>>) = {
            let mut subs = conn.subscriptions.lock();
            let Some((text, _)) = subs.patterns.remove_entry(text) else {
                return;
            };
            let topics = subs
                .follows
                .values()
                .filter(|f| f.patterns.contains(&text))
                .map(|f| Arc::clone(&f.topic))
                .collect();
            (text, topics)
        };
        self.patterns
            .write()
            .retain(|p| !(p.conn.id == conn.id && p.text == text));
        for topic in topics {
            self.leave(conn, &topic, |subs| {
                if let Some(follow) = subs.follows.get_mut(&*topic.name) {
                    follow.patterns.retain(|p| *p != text);
                }
            });
        }
    }

    /// Applies `change` to what makes `conn` follow `topic`, under the
    /// topic's lock, and stops following it when nothing is left.
    fn leave(
        &self,
        conn: &Arc<Connection>,
        topic: &Arc<Topic>,
        change: impl FnOnce(&mut Subscriptions),
    ) {
        let mut st = topic.state.lock();
        let mut subs = conn.subscriptions.lock();
        let same = subs
            .follows
            .get(&*topic.name)
            .is_some_and(|f| Arc::ptr_eq(&f.topic, topic));
        if !same {
            return;
        }
        change(&mut subs);
        let exact = subs.follows.get(&*topic.name).is_some_and(|f| f.exact);
        if !exact {
            if let Some(member) = st.presence.leave(conn.id) {
                self.presence_changed(topic, &st, conn.id, &member, InfoKind::Leave);
            }
        }
        if subs.follows.get(&*topic.name).is_some_and(|f| f.is_idle()) {
            subs.unfollow(&topic.name);
            self.leave_topic(&mut st, conn, topic);
        }
    }

    /// Makes `conn` a subscriber of `topic` (by name, or for `pattern`),
    /// reading it from its head: its cursor and its entry in the subscriber
    /// map come and go together, under the topic's lock, so the events
    /// after the cursor are exactly those counted as enqueued for it.
    /// `from` is the `seq` the board's lag counts from.
    fn join_topic(
        &self,
        st: &mut TopicState,
        subs: &mut Subscriptions,
        conn: &Arc<Connection>,
        topic: &Arc<Topic>,
        from: u64,
        pattern: Option<&Arc<str>>,
    ) {
        let at = conn.outbox.follow(topic, from);
        subs.follow(topic, pattern.is_none(), pattern);
        st.subscribers.insert(
            conn.id,
            Subscriber {
                conn: Arc::clone(conn),
                at,
            },
        );
        self.totals.subscriptions.fetch_add(1, Relaxed);
    }

    /// The reverse of [`Hub::join_topic`]: out of the subscriber map, and
    /// what its cursor had not reached counted as dropped.
    fn leave_topic(&self, st: &mut TopicState, conn: &Arc<Connection>, topic: &Arc<Topic>) {
        if st.subscribers.swap_remove(&conn.id).is_some() {
            self.totals.subscriptions.fetch_sub(1, Relaxed);
        }
        conn.outbox.discard_topic(topic);
    }

    /// Closes a connection: removes all its subscriptions at once and drops
    /// (and counts) what is still queued. Idempotent.
    pub(crate) fn disconnect(&self, conn: &Arc<Connection>, end: End) {
        let (follows, patterns) = {
            // Under the subscriptions lock, so a concurrent subscribe (or a
            // topic attaching a pattern) either registers before (and is
            // removed here) or sees the flag.
            let mut subs = conn.subscriptions.lock();
            if conn
                .disconnected
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                return;
            }
            subs.take()
        };
        if !patterns.is_empty() {
            self.patterns.write().retain(|p| p.conn.id != conn.id);
        }
        for follow in follows {
            let mut st = follow.topic.state.lock();
            // What it had not written of the topic is dropped, including
            // what was published after an earlier close.
            self.leave_topic(&mut st, conn, &follow.topic);
            if let Some(member) = st.presence.leave(conn.id) {
                self.presence_changed(&follow.topic, &st, conn.id, &member, InfoKind::Leave);
            }
        }
        conn.outbox.close(end);
        self.connections.remove(&conn.id);
        self.totals.connections.fetch_sub(1, Relaxed);
    }

    fn too_many_subscriptions(&self) -> BrokerError {
        self.totals.refuse(Limit::MaxSubscriptions);
        BrokerError::new(
            ErrorCode::RateLimited,
            format!(
                "this connection holds its limit of {} subscriptions (max_subscriptions)",
                self.config.max_subscriptions
            ),
        )
    }
}

/// What a new follow of `topic` replays: `since` when given (and whether
/// history still held it), else the newest `last_n`.
fn replay(
    topic: &Topic,
    st: &TopicState,
    start: Start<'_>,
) -> (Vec<Arc<PublishedEvent>>, Option<bool>) {
    match start.since {
        Some(since) => {
            let ring = topic.ring.read();
            let held = (since.epoch == topic.epoch)
                .then(|| ring.after(since.seq, st.seq))
                .flatten();
            match held {
                Some(events) => (events.cloned().collect(), Some(true)),
                None => (Vec::new(), Some(false)),
            }
        }
        None => match start.last_n {
            Some(n) => (topic.ring.read().last_n(clamp(n)).cloned().collect(), None),
            None => (Vec::new(), None),
        },
    }
}

/// Tells the topic's exact subscribers that asked for presence events
/// (but `except`, the one it is about) that `client` joined or left (best
/// effort: see `Outbox::push_notice`).
fn announce(
    topic: &Topic,
    st: &TopicState,
    except: Option<u64>,
    client: &PresenceClient,
    msg: InfoKind,
) {
    let watchers = st
        .presence
        .watchers()
        .filter(|other| Some(*other) != except);
    let mut notice = None;
    for other in watchers {
        if let Some(Subscriber { conn, .. }) = st.subscribers.get(&other) {
            let frame = notice
                .get_or_insert_with(|| Frame::presence_notice(msg, &topic.name, client.clone()))
                .clone();
            conn.outbox.push_notice(frame);
        }
    }
}

impl Hub {
    /// A local subscription joined or left `topic`'s presence: its
    /// watchers here are told, and so is the cluster (when there is one).
    fn presence_changed(
        &self,
        topic: &Topic,
        st: &TopicState,
        id: u64,
        member: &Member,
        msg: InfoKind,
    ) {
        let client = presence_client(id, member, self.node.get());
        announce(topic, st, Some(id), &client, msg);
        if let Some(cluster) = self.presence_out.get() {
            let change = match msg {
                InfoKind::Join => LocalPresence::Join {
                    topic: Arc::clone(&topic.name),
                    epoch: topic.epoch.clone(),
                    client,
                },
                _ => LocalPresence::Leave {
                    topic: Arc::clone(&topic.name),
                    epoch: topic.epoch.clone(),
                    connection_id: id,
                },
            };
            let _ = cluster.send(change);
        }
    }

    /// A subscription on another node joined or left `topic` (this epoch of
    /// it): the watchers here are told.
    pub(crate) fn announce_remote(
        &self,
        topic: &str,
        epoch: &str,
        client: &PresenceClient,
        msg: InfoKind,
    ) {
        let Ok(topic) = self.topic(topic) else {
            return;
        };
        if topic.epoch != epoch {
            return;
        }
        let st = topic.state.lock();
        announce(&topic, &st, None, client, msg);
    }

    /// Every exact subscription held here, with its topic and epoch (what
    /// this node tells the cluster of its presence).
    pub(crate) fn local_presence(&self) -> Vec<(Arc<str>, String, PresenceClient)> {
        let topics: Vec<Arc<Topic>> = self.topics.iter().map(|t| Arc::clone(t.value())).collect();
        let mut out = Vec::new();
        for topic in topics {
            let st = topic.state.lock();
            for (id, member) in st.presence.iter() {
                out.push((
                    Arc::clone(&topic.name),
                    topic.epoch.clone(),
                    presence_client(id, member, self.node.get()),
                ));
            }
        }
        out
    }
}

/// A change of this node's presence, for the other nodes of a cluster.
pub(crate) enum LocalPresence {
    Join {
        topic: Arc<str>,
        epoch: String,
        client: PresenceClient,
    },
    Leave {
        topic: Arc<str>,
        epoch: String,
        connection_id: u64,
    },
}

fn presence_client(id: u64, member: &Member, node: Option<&Arc<str>>) -> PresenceClient {
    PresenceClient {
        client_id: member.client_id.as_deref().map(str::to_owned),
        connection_id: id,
        joined_at: crate::broker::clock::rfc3339_of_millis(member.joined_at),
        node: node.map(|n| n.to_string()),
    }
}

fn forbidden() -> BrokerError {
    BrokerError::new(
        ErrorCode::Forbidden,
        "this connection's key lacks the \"subscribe\" role needed to subscribe",
    )
}
