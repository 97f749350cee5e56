//! A live subscription from the browser: the contract's WebSocket protocol
//! with reconnect-and-resume, for one topic or a pattern.
//!
//! One session per "Subscribe" press. It subscribes (with `last_n` the first
//! time), turns frames into log entries, and when the connection drops it
//! reconnects with backoff and resubscribes with `since`, then says whether
//! the server could fill the gap from history. For a topic `since` is the
//! last `seq` seen; for a pattern it is a map with one such position per
//! topic the pattern follows, so each topic resumes where it stopped.
//! Entries are buffered and handed to the page in batches (every 100 ms),
//! so a thousand messages a second do not re-render a thousand times.

use crate::wire::pattern::is_pattern;
use crate::wire::{AckTopic, ServerFrame, Since, SinceArg};
use leptos::prelude::*;
use std::collections::BTreeMap;

/// Rows kept in the log; older ones fall off.
pub const MAX_ROWS: usize = 500;

/// `last_n` of a resubscribe to a pattern: it applies only to the matching
/// topics the `since` map does not list, which are those created while the
/// page was away, and those are followed "from their first message" by
/// the contract. The server replays what its history still holds.
const REPLAY_NEW_TOPICS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    Info,
    Good,
    Warn,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    Event {
        /// The event's topic, when the subscription is a pattern (an exact
        /// subscription's rows all have the page's topic).
        topic: Option<String>,
        seq: u64,
        id: String,
        ts: String,
        payload: String,
    },
    Notice {
        level: Level,
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub key: u64,
    pub kind: EntryKind,
}

impl LogEntry {
    pub fn is_event(&self) -> bool {
        matches!(self.kind, EntryKind::Event { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Idle,
    Connecting,
    Live,
    Reconnecting,
    Ended,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Idle => "not subscribed",
            Status::Connecting => "connecting…",
            Status::Live => "live",
            Status::Reconnecting => "connection lost, reconnecting…",
            Status::Ended => "ended",
        }
    }
}

/// Where a session writes what it sees. All signals: the page renders them.
#[derive(Clone, Copy)]
pub struct LiveView {
    /// Newest first, at most [`MAX_ROWS`].
    pub rows: RwSignal<Vec<LogEntry>>,
    pub status: RwSignal<Status>,
    pub paused: RwSignal<bool>,
    /// Events received by this page since the subscribe.
    pub received: RwSignal<u64>,
    /// Messages held back while paused (notices are not counted).
    pub held: RwSignal<usize>,
    /// Topics a pattern subscription follows now (0 for a topic).
    pub following: RwSignal<usize>,
    /// Bumped to stop the running session.
    pub generation: RwSignal<u64>,
}

impl LiveView {
    pub fn new() -> Self {
        LiveView {
            rows: RwSignal::new(Vec::new()),
            status: RwSignal::new(Status::Idle),
            paused: RwSignal::new(false),
            received: RwSignal::new(0),
            held: RwSignal::new(0),
            following: RwSignal::new(0),
            generation: RwSignal::new(0),
        }
    }

    /// Stops the running session, if any.
    pub fn stop(&self) {
        self.generation.try_update(|g| *g += 1);
        self.status.try_set(Status::Idle);
    }
}

impl Default for LiveView {
    fn default() -> Self {
        Self::new()
    }
}

/// What one session subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// A topic name or a pattern.
    pub topic: String,
    /// Replayed on the first subscribe only.
    pub last_n: Option<u64>,
    /// Shown in the topic's presence (exact subscriptions).
    pub client_id: Option<String>,
}

/// Tracks `seq` per topic across events and reconnects and writes the
/// notices a person needs: gaps, drops, recovery, topics created and
/// deleted. Pure logic, so it is tested without a browser.
#[derive(Debug)]
pub struct Tracker {
    /// The topic or pattern subscribed to.
    topic: String,
    pattern: bool,
    /// The last `seq` seen and the epoch, per topic once subscribed: one
    /// entry for a topic, one per followed topic for a pattern. An empty
    /// epoch marks a topic whose epoch this page never learnt (not resumed
    /// by `since`). The wire's own map type: already in the WASM.
    positions: BTreeMap<String, Since>,
    /// Whether an `ack` came: later ones are acks of a resubscribe.
    subscribed: bool,
    next_key: u64,
}

/// What the session should do after a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// The subscription is over for good (topic deleted or missing, refused,
    /// or the connection closed by an admin).
    Finish,
}

impl Tracker {
    pub fn new(topic: &str) -> Self {
        Tracker {
            topic: topic.to_owned(),
            pattern: is_pattern(topic),
            positions: BTreeMap::new(),
            subscribed: false,
            next_key: 0,
        }
    }

    pub fn is_pattern(&self) -> bool {
        self.pattern
    }

    /// Whether the server acknowledged the subscription.
    pub fn subscribed(&self) -> bool {
        self.subscribed
    }

    /// Topics the subscription follows now.
    pub fn following(&self) -> usize {
        self.positions.len()
    }

    fn entry(&mut self, kind: EntryKind) -> LogEntry {
        self.next_key += 1;
        LogEntry {
            key: self.next_key,
            kind,
        }
    }

    fn notice(&mut self, level: Level, text: impl Into<String>) -> LogEntry {
        self.entry(EntryKind::Notice {
            level,
            text: text.into(),
        })
    }

    /// The `since` to resubscribe with after a reconnect: one position for
    /// a topic, a map by topic name for a pattern.
    pub fn since(&self) -> Option<SinceArg> {
        let mut known = self.positions.clone();
        known.retain(|_, since| !since.epoch.is_empty());
        if self.pattern {
            (!known.is_empty()).then_some(SinceArg::PerTopic(known))
        } else {
            known.into_values().next().map(SinceArg::Topic)
        }
    }

    /// The `last_n` of the next subscribe: the page's choice the first time;
    /// on a resubscribe none for a topic (`since` resumes it) and, for a
    /// pattern, all of history for the topics created meanwhile.
    pub fn last_n(&self, first: Option<u64>) -> Option<u64> {
        match (self.subscribed, self.pattern) {
            (false, _) => first,
            (true, false) => None,
            (true, true) => Some(REPLAY_NEW_TOPICS),
        }
    }

    /// Handles one server frame; returns the log entries it produced.
    pub fn handle(
        &mut self,
        frame: ServerFrame,
        request_id: &str,
        out: &mut Vec<LogEntry>,
    ) -> Next {
        match frame {
            ServerFrame::Ack(ack) if ack.request_id.as_deref() == Some(request_id) => {
                if ack.pattern == Some(true) {
                    self.pattern_ack(ack.topics.unwrap_or_default(), out);
                } else {
                    let topic = AckTopic {
                        seq: ack.seq.unwrap_or(0),
                        epoch: ack.epoch.unwrap_or_default(),
                        replayed: ack.replayed.unwrap_or(0),
                        recovered: ack.recovered,
                    };
                    self.topic_ack(topic, out);
                }
                self.subscribed = true;
                Next::Continue
            }
            ServerFrame::Ack(_) | ServerFrame::Pong(_) | ServerFrame::Presence(_) => Next::Continue,
            ServerFrame::Event(ev) => {
                let name = if self.pattern {
                    ev.topic.clone()
                } else {
                    self.topic.clone()
                };
                let mut gap = None;
                match self.positions.get_mut(&name) {
                    Some(at) => {
                        if ev.seq > at.seq + 1 {
                            gap = Some((at.seq + 1, ev.seq - 1));
                        }
                        at.seq = at.seq.max(ev.seq);
                    }
                    // Not announced (no ack entry, no topic_created): follow
                    // it from here; without its epoch it cannot be resumed.
                    None => {
                        self.positions
                            .insert(name.clone(), position(ev.seq, String::new()));
                    }
                }
                if let Some((from, to)) = gap {
                    let on = if self.pattern {
                        format!(" of {name}")
                    } else {
                        String::new()
                    };
                    let text = if from == to {
                        format!("Gap: message seq {from}{on} was not received.")
                    } else {
                        format!("Gap: messages seq {from} to {to}{on} were not received.")
                    };
                    out.push(self.notice(Level::Warn, text));
                }
                let payload = serde_json::to_string_pretty(&ev.message.payload).unwrap_or_default();
                out.push(self.entry(EntryKind::Event {
                    topic: self.pattern.then_some(name),
                    seq: ev.seq,
                    id: ev.message.id,
                    ts: ev.ts,
                    payload,
                }));
                Next::Continue
            }
            ServerFrame::Error(e) => {
                use crate::wire::ErrorCode;
                match e.error.code {
                    ErrorCode::SlowConsumer => {
                        let n = e.dropped.unwrap_or(0);
                        let on = match (&e.topic, self.pattern) {
                            (Some(topic), true) => format!(" of {topic}"),
                            _ => String::new(),
                        };
                        out.push(self.notice(
                            Level::Warn,
                            format!("SLOW_CONSUMER: the server dropped {n} message(s){on} because this page fell behind."),
                        ));
                        Next::Continue
                    }
                    code => {
                        out.push(self.notice(Level::Warn, format!("{code}: {}", e.error.message)));
                        if e.request_id.as_deref() == Some(request_id) {
                            Next::Finish
                        } else {
                            Next::Continue
                        }
                    }
                }
            }
            ServerFrame::Info(info) => {
                use crate::wire::InfoKind;
                match info.msg {
                    InfoKind::Ping => Next::Continue,
                    InfoKind::TopicDeleted if self.pattern => {
                        let topic = info.topic.unwrap_or_default();
                        self.positions.remove(&topic);
                        out.push(self.notice(
                            Level::Warn,
                            format!(
                                "Topic {topic} was deleted; the pattern {} goes on.",
                                self.topic
                            ),
                        ));
                        Next::Continue
                    }
                    InfoKind::TopicDeleted => {
                        out.push(self.notice(
                            Level::Warn,
                            "The topic was deleted: this subscription has ended.",
                        ));
                        Next::Finish
                    }
                    InfoKind::TopicCreated => {
                        let topic = info.topic.unwrap_or_default();
                        let epoch = info.epoch.unwrap_or_default();
                        self.positions.insert(topic.clone(), position(0, epoch));
                        out.push(self.notice(
                            Level::Info,
                            format!("Topic {topic} was created and matches {}: following it from its first message.", self.topic),
                        ));
                        Next::Continue
                    }
                    InfoKind::ShuttingDown => {
                        out.push(self.notice(Level::Warn, "The server is shutting down."));
                        Next::Continue
                    }
                    // Only subscriptions with presence_events get these.
                    InfoKind::Join | InfoKind::Leave => Next::Continue,
                    // Reconnecting would undo what the admin did.
                    InfoKind::ClosedByAdmin => {
                        out.push(self.notice(
                            Level::Warn,
                            "An admin closed this connection: subscribe again to go on.",
                        ));
                        Next::Finish
                    }
                    InfoKind::Unsubscribed => {
                        out.push(self.notice(
                            Level::Warn,
                            "The token no longer allows this subscription: it has ended.",
                        ));
                        Next::Finish
                    }
                    // Reconnecting with the same token would be refused.
                    InfoKind::TokenExpired => {
                        out.push(
                            self.notice(Level::Warn, "The token expired: give a new one to go on."),
                        );
                        Next::Finish
                    }
                }
            }
        }
    }

    /// The `ack` of a topic subscribe: the first, or a resume.
    fn topic_ack(&mut self, ack: AckTopic, out: &mut Vec<LogEntry>) {
        let topic = self.topic.clone();
        let AckTopic {
            seq,
            epoch,
            replayed,
            recovered,
        } = ack;
        match (recovered, self.positions.remove(&topic)) {
            (Some(true), Some(pos)) => {
                let missed = seq.saturating_sub(pos.seq);
                out.push(self.notice(
                    Level::Good,
                    format!("Reconnected and recovered: {missed} message(s) published meanwhile replayed from history."),
                ));
                self.positions.insert(topic, pos);
            }
            (Some(false), Some(Since { seq: last, .. })) => {
                out.push(self.notice(
                    Level::Warn,
                    format!(
                        "Reconnected, but could not recover: the history no longer holds everything after seq {last} \
                         (or the topic was re-created). Continuing from seq {seq}."
                    ),
                ));
                self.positions.insert(topic, position(seq, epoch));
            }
            _ => {
                out.push(self.notice(
                    Level::Info,
                    format!(
                        "Subscribed at seq {seq}; replaying {replayed} message(s) from history."
                    ),
                ));
                self.positions
                    .insert(topic, position(seq.saturating_sub(replayed), epoch));
            }
        }
    }

    /// The `ack` of a pattern subscribe: every topic that matches now,
    /// each resumed, or new to this page.
    fn pattern_ack(&mut self, topics: BTreeMap<String, AckTopic>, out: &mut Vec<LogEntry>) {
        let mut before = std::mem::take(&mut self.positions);
        let resumed = self.subscribed;
        let (mut recovered, mut replayed) = (0u64, 0u64);
        let mut lost = Vec::new();
        let mut new = Vec::new();
        for (name, t) in topics {
            match (t.recovered, before.remove(&name)) {
                (Some(true), Some(pos)) => {
                    recovered += t.seq.saturating_sub(pos.seq);
                    self.positions.insert(name, pos);
                }
                (Some(false), Some(Since { seq: last, .. })) => {
                    lost.push(format!("{name} after seq {last} (now at {})", t.seq));
                    self.positions.insert(name, position(t.seq, t.epoch));
                }
                _ => {
                    replayed += t.replayed;
                    if resumed && t.replayed < t.seq {
                        lost.push(format!(
                            "{name} (new; {} of its {} message(s) are no longer in history)",
                            t.seq - t.replayed,
                            t.seq
                        ));
                    } else if resumed {
                        new.push(name.clone());
                    }
                    self.positions
                        .insert(name, position(t.seq.saturating_sub(t.replayed), t.epoch));
                }
            }
        }
        let pattern = self.topic.clone();
        if !resumed {
            let names: Vec<&str> = self.positions.keys().map(String::as_str).collect();
            let text = match names.len() {
                0 => format!(
                    "Subscribed to {pattern}: no topic matches yet; topics created later that match will follow."
                ),
                n => format!(
                    "Subscribed to {pattern}: {n} topic(s) match ({}); replaying {replayed} message(s) from history.",
                    list(&names)
                ),
            };
            out.push(self.notice(Level::Info, text));
            return;
        }
        out.push(self.notice(
            Level::Good,
            format!(
                "Reconnected: {recovered} message(s) published meanwhile recovered from history."
            ),
        ));
        if !new.is_empty() {
            let names: Vec<&str> = new.iter().map(String::as_str).collect();
            out.push(self.notice(
                Level::Info,
                format!(
                    "Created meanwhile and followed now: {}; replaying their {replayed} message(s).",
                    list(&names)
                ),
            ));
        }
        if !lost.is_empty() {
            let names: Vec<&str> = lost.iter().map(String::as_str).collect();
            out.push(self.notice(
                Level::Warn,
                format!("Could not recover everything: {}.", list(&names)),
            ));
        }
        if !before.is_empty() {
            let names: Vec<&str> = before.keys().map(String::as_str).collect();
            out.push(self.notice(
                Level::Warn,
                format!("No longer there (deleted meanwhile): {}.", list(&names)),
            ));
        }
    }

    pub fn lost(&mut self, attempt: u32, delay_ms: u32) -> LogEntry {
        self.notice(
            Level::Warn,
            format!(
                "Connection lost; reconnecting in {:.1} s (attempt {attempt}).",
                f64::from(delay_ms) / 1000.0
            ),
        )
    }
}

fn position(seq: u64, epoch: String) -> Since {
    Since { seq, epoch }
}

/// `a, b, c` or `a, b, c and 7 more`: a notice stays a line long.
fn list(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// Adds `fresh` (oldest first) to `rows` (newest first), keeping [`MAX_ROWS`].
pub fn prepend(rows: &mut Vec<LogEntry>, fresh: Vec<LogEntry>) {
    let mut merged: Vec<LogEntry> = fresh.into_iter().rev().take(MAX_ROWS).collect();
    let room = MAX_ROWS - merged.len();
    merged.extend(rows.drain(..).take(room));
    *rows = merged;
}

#[cfg(feature = "hydrate")]
pub use browser::start;

#[cfg(not(feature = "hydrate"))]
/// Live subscriptions run in the browser only.
pub fn start(_view: LiveView, _request: Request) {}

#[cfg(feature = "hydrate")]
mod browser {
    use super::*;
    use crate::wire::ClientFrame;
    use futures_util::future::{select, Either};
    use futures_util::{SinkExt, StreamExt};
    use gloo_net::websocket::{futures::WebSocket, Message};
    use gloo_timers::future::TimeoutFuture;
    use std::cell::RefCell;
    use std::rc::Rc;

    const REQUEST_ID: &str = "live-subscribe";

    /// What the reader has seen and the batcher has not shown yet.
    #[derive(Default)]
    struct Inbox {
        entries: Vec<LogEntry>,
        /// Events received since the subscribe (shown or not).
        events: u64,
        /// Events that fell off while paused.
        hidden: u64,
        /// Topics followed, as the tracker counts them.
        following: usize,
    }

    impl Inbox {
        fn take(&mut self, entries: Vec<LogEntry>) {
            self.events += entries.iter().filter(|e| e.is_event()).count() as u64;
            self.entries.extend(entries);
        }
    }
    const FLUSH_MS: u32 = 100;

    /// Starts a session for `request`; a previous one of this view stops.
    pub fn start(view: LiveView, request: Request) {
        view.generation.update(|g| *g += 1);
        let generation = view.generation.get_untracked();
        view.rows.set(Vec::new());
        view.received.set(0);
        view.held.set(0);
        view.following.set(0);
        view.status.set(Status::Connecting);
        // The page may be gone by the time a task runs: every write below
        // is a `try_` write, which does nothing on a disposed signal.
        let pending: Rc<RefCell<Inbox>> = Rc::default();
        let alive = move || view.generation.try_get_untracked() == Some(generation);

        // The batcher: moves pending entries into the view every FLUSH_MS.
        {
            let pending = Rc::clone(&pending);
            leptos::task::spawn_local(async move {
                let mut notices: u64 = 0;
                while alive() {
                    TimeoutFuture::new(FLUSH_MS).await;
                    let mut inbox = pending.borrow_mut();
                    view.received.try_set(inbox.events);
                    if view.following.try_get_untracked() != Some(inbox.following) {
                        view.following.try_set(inbox.following);
                    }
                    if view.paused.try_get_untracked().unwrap_or(false) {
                        // Hold back at most a log's worth; count what falls off.
                        let excess = inbox.entries.len().saturating_sub(MAX_ROWS);
                        let hidden = inbox
                            .entries
                            .drain(..excess)
                            .filter(|e| e.is_event())
                            .count() as u64;
                        inbox.hidden += hidden;
                        view.held
                            .try_set(inbox.entries.iter().filter(|e| e.is_event()).count());
                        continue;
                    }
                    let mut fresh: Vec<LogEntry> = Vec::with_capacity(inbox.entries.len() + 1);
                    if inbox.hidden > 0 {
                        notices += 1;
                        fresh.push(LogEntry {
                            key: u64::MAX - notices,
                            kind: EntryKind::Notice {
                                level: Level::Info,
                                text: format!(
                                    "{} message(s) arrived while paused and are not shown: the log keeps the newest {MAX_ROWS}.",
                                    inbox.hidden
                                ),
                            },
                        });
                        inbox.hidden = 0;
                    }
                    fresh.append(&mut inbox.entries);
                    drop(inbox);
                    if !fresh.is_empty() && alive() {
                        view.rows.try_update(|rows| prepend(rows, fresh));
                        view.held.try_set(0);
                    }
                }
            });
        }

        leptos::task::spawn_local(async move {
            let mut tracker = Tracker::new(&request.topic);
            let mut attempt: u32 = 0;
            while alive() {
                let mut socket = match WebSocket::open(&crate::socket::url()) {
                    Ok(socket) => socket,
                    Err(e) => {
                        pending.borrow_mut().entries.push(
                            tracker.notice(Level::Warn, format!("Cannot open the WebSocket: {e}")),
                        );
                        view.status.try_set(Status::Ended);
                        return;
                    }
                };
                let subscribe = ClientFrame::Subscribe {
                    topic: request.topic.clone(),
                    client_id: request
                        .client_id
                        .clone()
                        .filter(|_| !crate::auth::holds_token()),
                    last_n: tracker.last_n(request.last_n),
                    since: tracker.since(),
                    presence_events: false,
                    request_id: Some(REQUEST_ID.into()),
                };
                let text = serde_json::to_string(&subscribe).unwrap_or_default();
                let mut finished = false;
                if socket.send(Message::Text(text)).await.is_ok() {
                    let (mut sink, mut stream) = socket.split();
                    loop {
                        let next = stream.next();
                        let tick = TimeoutFuture::new(250);
                        let frame = match select(next, tick).await {
                            Either::Left((frame, _)) => frame,
                            Either::Right(((), _)) => {
                                if alive() {
                                    continue;
                                }
                                let _ = sink.close().await;
                                return;
                            }
                        };
                        if !alive() {
                            let _ = sink.close().await;
                            return;
                        }
                        let text = match frame {
                            Some(Ok(Message::Text(text))) => text,
                            Some(Ok(Message::Bytes(_))) => continue,
                            Some(Err(_)) | None => break,
                        };
                        let Some(frame) = crate::socket::parse(&text) else {
                            continue;
                        };
                        let mut out = Vec::new();
                        let next = tracker.handle(frame, REQUEST_ID, &mut out);
                        if tracker.subscribed()
                            && view.status.try_get_untracked() != Some(Status::Live)
                        {
                            view.status.try_set(Status::Live);
                            attempt = 0;
                        }
                        {
                            let mut inbox = pending.borrow_mut();
                            inbox.take(out);
                            inbox.following = tracker.following();
                        }
                        if next == Next::Finish {
                            finished = true;
                            let _ = sink.close().await;
                            break;
                        }
                    }
                }
                if finished || !alive() {
                    if alive() {
                        view.status.try_set(Status::Ended);
                    }
                    return;
                }
                let delay = crate::socket::backoff(attempt);
                attempt += 1;
                pending
                    .borrow_mut()
                    .entries
                    .push(tracker.lost(attempt, delay));
                view.status.try_set(Status::Reconnecting);
                TimeoutFuture::new(delay).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ack, ErrorBody, ErrorCode, ErrorFrame, EventFrame, Info, InfoKind, Message};

    fn ack(seq: u64, replayed: u64, recovered: Option<bool>) -> ServerFrame {
        ServerFrame::Ack(Ack {
            request_id: Some("r".into()),
            topic: "t".into(),
            status: "ok".into(),
            seq: Some(seq),
            epoch: Some("e".into()),
            replayed: Some(replayed),
            recovered,
            id: None,
            duplicate: false,
            pattern: None,
            topics: None,
            ts: String::new(),
        })
    }

    /// A pattern ack: `(topic, seq, replayed, recovered)` per matching topic.
    fn pattern_ack(topics: &[(&str, u64, u64, Option<bool>)]) -> ServerFrame {
        let topics = topics
            .iter()
            .map(|(name, seq, replayed, recovered)| {
                let t = AckTopic {
                    seq: *seq,
                    epoch: format!("e-{name}"),
                    replayed: *replayed,
                    recovered: *recovered,
                };
                (name.to_string(), t)
            })
            .collect();
        ServerFrame::Ack(Ack {
            request_id: Some("r".into()),
            topic: "o.*".into(),
            status: "ok".into(),
            seq: None,
            epoch: None,
            replayed: None,
            recovered: None,
            id: None,
            duplicate: false,
            pattern: Some(true),
            topics: Some(topics),
            ts: String::new(),
        })
    }

    fn event_on(topic: &str, seq: u64) -> ServerFrame {
        ServerFrame::Event(EventFrame {
            topic: topic.into(),
            message: Message {
                id: format!("m{seq}"),
                payload: serde_json::json!({"n": seq}),
            },
            seq,
            ts: String::new(),
        })
    }

    fn event(seq: u64) -> ServerFrame {
        event_on("t", seq)
    }

    fn info(msg: InfoKind, topic: &str) -> ServerFrame {
        ServerFrame::Info(Info {
            msg,
            topic: Some(topic.into()),
            epoch: Some(format!("e-{topic}")),
            client: None,
            ts: String::new(),
        })
    }

    fn notices(out: &[LogEntry]) -> Vec<String> {
        out.iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Notice { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    fn topic_since(t: &Tracker) -> u64 {
        match t.since() {
            Some(SinceArg::Topic(since)) => since.seq,
            other => panic!("a topic's since: {other:?}"),
        }
    }

    fn per_topic(t: &Tracker) -> BTreeMap<String, u64> {
        match t.since() {
            Some(SinceArg::PerTopic(map)) => map.into_iter().map(|(k, v)| (k, v.seq)).collect(),
            other => panic!("a pattern's since: {other:?}"),
        }
    }

    #[test]
    fn replay_then_live_without_gap_notices() {
        let mut t = Tracker::new("t");
        let mut out = Vec::new();
        assert_eq!(t.since(), None);
        assert_eq!(t.last_n(Some(2)), Some(2));
        t.handle(ack(10, 2, None), "r", &mut out);
        for s in 9..=11 {
            t.handle(event(s), "r", &mut out);
        }
        assert_eq!(notices(&out).len(), 1, "only the subscribe notice: {out:?}");
        assert_eq!(topic_since(&t), 11);
        assert_eq!(t.last_n(Some(2)), None, "a resume replays by since only");
    }

    #[test]
    fn gaps_and_slow_consumer_are_noticed() {
        let mut t = Tracker::new("t");
        let mut out = Vec::new();
        t.handle(ack(0, 0, None), "r", &mut out);
        t.handle(event(1), "r", &mut out);
        t.handle(
            ServerFrame::Error(ErrorFrame {
                request_id: None,
                error: ErrorBody {
                    code: ErrorCode::SlowConsumer,
                    message: String::new(),
                },
                topic: Some("t".into()),
                dropped: Some(3),
                ts: String::new(),
            }),
            "r",
            &mut out,
        );
        t.handle(event(5), "r", &mut out);
        let n = notices(&out);
        assert!(n[1].contains("dropped 3"), "{n:?}");
        assert!(n[2].contains("seq 2 to 4"), "{n:?}");
    }

    #[test]
    fn reconnect_reports_recovery() {
        let mut t = Tracker::new("t");
        let mut out = Vec::new();
        t.handle(ack(5, 0, None), "r", &mut out);
        t.handle(event(6), "r", &mut out);
        assert_eq!(topic_since(&t), 6);
        t.handle(ack(9, 3, Some(true)), "r", &mut out);
        assert!(notices(&out).last().unwrap().contains("recovered: 3"));
        t.handle(ack(20, 0, Some(false)), "r", &mut out);
        assert!(notices(&out).last().unwrap().contains("could not recover"));
        assert_eq!(topic_since(&t), 20);
    }

    #[test]
    fn deletion_finishes_a_topic_subscription() {
        let mut t = Tracker::new("t");
        let mut out = Vec::new();
        assert_eq!(
            t.handle(info(InfoKind::TopicDeleted, "t"), "r", &mut out),
            Next::Finish
        );
    }

    #[test]
    fn a_pattern_follows_each_topic_and_those_created_later() {
        let mut t = Tracker::new("o.*");
        assert!(t.is_pattern());
        let mut out = Vec::new();
        t.handle(
            pattern_ack(&[("o.a", 4, 2, None), ("o.b", 0, 0, None)]),
            "r",
            &mut out,
        );
        assert!(
            notices(&out)[0].contains("2 topic(s) match (o.a, o.b); replaying 2"),
            "{out:?}"
        );
        for frame in [event_on("o.a", 3), event_on("o.a", 4), event_on("o.b", 1)] {
            t.handle(frame, "r", &mut out);
        }
        assert_eq!(
            t.handle(info(InfoKind::TopicCreated, "o.c"), "r", &mut out),
            Next::Continue
        );
        t.handle(event_on("o.c", 1), "r", &mut out);
        // A gap is per topic.
        t.handle(event_on("o.b", 3), "r", &mut out);
        let n = notices(&out);
        assert!(n[1].contains("o.c was created"), "{n:?}");
        assert!(n[2].contains("seq 2 of o.b was not received"), "{n:?}");
        assert_eq!(n.len(), 3, "{n:?}");
        let topics: Vec<Option<String>> = out
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Event { topic, .. } => Some(topic.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(topics[0].as_deref(), Some("o.a"), "rows name their topic");
        assert_eq!(
            per_topic(&t),
            BTreeMap::from([("o.a".into(), 4), ("o.b".into(), 3), ("o.c".into(), 1)])
        );
        assert_eq!(t.following(), 3);

        // A deleted topic leaves the map; the pattern goes on.
        assert_eq!(
            t.handle(info(InfoKind::TopicDeleted, "o.b"), "r", &mut out),
            Next::Continue
        );
        assert!(notices(&out).last().unwrap().contains("o.b was deleted"));
        assert_eq!(t.following(), 2);
    }

    #[test]
    fn a_pattern_resumes_per_topic() {
        let mut t = Tracker::new("o.*");
        let mut out = Vec::new();
        t.handle(
            pattern_ack(&[
                ("o.a", 2, 0, None),
                ("o.b", 5, 0, None),
                ("o.gone", 1, 0, None),
            ]),
            "r",
            &mut out,
        );
        assert_eq!(
            t.last_n(Some(3)),
            Some(REPLAY_NEW_TOPICS),
            "for topics created meanwhile"
        );
        out.clear();
        t.handle(
            pattern_ack(&[
                ("o.a", 4, 2, Some(true)),
                ("o.b", 300, 0, Some(false)),
                ("o.new", 2, 2, None),
            ]),
            "r",
            &mut out,
        );
        let n = notices(&out);
        assert!(
            n[0].contains("2 message(s) published meanwhile recovered"),
            "{n:?}"
        );
        assert!(n[1].contains("o.new"), "{n:?}");
        assert!(n[2].contains("o.b after seq 5"), "{n:?}");
        assert!(n[3].contains("o.gone"), "{n:?}");
        assert_eq!(
            per_topic(&t),
            BTreeMap::from([("o.a".into(), 2), ("o.b".into(), 300), ("o.new".into(), 0)])
        );
    }

    #[test]
    fn an_admin_close_ends_the_session() {
        let mut t = Tracker::new("t");
        let mut out = Vec::new();
        assert_eq!(
            t.handle(info(InfoKind::ClosedByAdmin, "t"), "r", &mut out),
            Next::Finish
        );
    }

    #[test]
    fn prepend_keeps_newest_first_and_bounded() {
        let mut t = Tracker::new("t");
        let mut rows = Vec::new();
        let batch: Vec<LogEntry> = (0..600)
            .map(|i| t.notice(Level::Info, i.to_string()))
            .collect();
        prepend(&mut rows, batch);
        assert_eq!(rows.len(), MAX_ROWS);
        assert_eq!(rows[0].key, 600, "newest first");
        prepend(&mut rows, vec![t.notice(Level::Info, "x")]);
        assert_eq!((rows.len(), rows[0].key), (MAX_ROWS, 601));
    }
}
