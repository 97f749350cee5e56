//! A live subscription from the browser: the contract's WebSocket protocol
//! with reconnect-and-resume.
//!
//! One session per "Subscribe" press. It subscribes (with `last_n` the first
//! time), turns frames into log entries, and when the connection drops it
//! reconnects with backoff and resubscribes with `since` = the last `seq`
//! it saw, then says whether the server could fill the gap from history.
//! Entries are buffered and handed to the page in batches (every 100 ms),
//! so a thousand messages a second do not re-render a thousand times.

use crate::wire::ServerFrame;
use leptos::prelude::*;

/// Rows kept in the log; older ones fall off.
pub const MAX_ROWS: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    Info,
    Good,
    Warn,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    Event {
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

/// Tracks `seq` across events and reconnects and writes the notices a
/// person needs: gaps, drops, recovery, deletion. Pure logic, so it is
/// tested without a browser.
#[derive(Debug, Default)]
pub struct Tracker {
    /// `(last seq seen, epoch)` once subscribed.
    pub position: Option<(u64, String)>,
    next_key: u64,
}

/// What the session should do after a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// The subscription is over for good (topic deleted or missing).
    Finish,
}

impl Tracker {
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

    /// The `since` to resubscribe with after a reconnect.
    pub fn since(&self) -> Option<crate::wire::Since> {
        self.position
            .as_ref()
            .map(|(seq, epoch)| crate::wire::Since {
                seq: *seq,
                epoch: epoch.clone(),
            })
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
                let seq = ack.seq.unwrap_or(0);
                let epoch = ack.epoch.unwrap_or_default();
                let replayed = ack.replayed.unwrap_or(0);
                match (ack.recovered, self.position.take()) {
                    (Some(true), Some(pos)) => {
                        let missed = seq.saturating_sub(pos.0);
                        out.push(self.notice(
                            Level::Good,
                            format!("Reconnected and recovered: {missed} message(s) published meanwhile replayed from history."),
                        ));
                        self.position = Some(pos);
                    }
                    (Some(false), Some((last, _))) => {
                        out.push(self.notice(
                            Level::Warn,
                            format!(
                                "Reconnected, but could not recover: the history no longer holds everything after seq {last} \
                                 (or the topic was re-created). Continuing from seq {seq}."
                            ),
                        ));
                        self.position = Some((seq, epoch));
                    }
                    _ => {
                        out.push(self.notice(
                            Level::Info,
                            format!("Subscribed at seq {seq}; replaying {replayed} message(s) from history."),
                        ));
                        self.position = Some((seq.saturating_sub(replayed), epoch));
                    }
                }
                Next::Continue
            }
            ServerFrame::Ack(_) | ServerFrame::Pong(_) | ServerFrame::Presence(_) => Next::Continue,
            ServerFrame::Event(ev) => {
                if let Some((last, _)) = &mut self.position {
                    if ev.seq > *last + 1 {
                        let (from, to) = (*last + 1, ev.seq - 1);
                        *last = ev.seq;
                        let text = if from == to {
                            format!("Gap: message seq {from} was not received.")
                        } else {
                            format!("Gap: messages seq {from} to {to} were not received.")
                        };
                        out.push(self.notice(Level::Warn, text));
                    }
                    if let Some((last, _)) = &mut self.position {
                        *last = (*last).max(ev.seq);
                    }
                }
                let payload = serde_json::to_string_pretty(&ev.message.payload).unwrap_or_default();
                out.push(self.entry(EntryKind::Event {
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
                        out.push(self.notice(
                            Level::Warn,
                            format!("SLOW_CONSUMER: the server dropped {n} message(s) because this page fell behind."),
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
                    InfoKind::TopicDeleted => {
                        out.push(self.notice(
                            Level::Warn,
                            "The topic was deleted: this subscription has ended.",
                        ));
                        Next::Finish
                    }
                    InfoKind::ShuttingDown => {
                        out.push(self.notice(Level::Warn, "The server is shutting down."));
                        Next::Continue
                    }
                    // Only pattern subscriptions get it; this panel follows one topic.
                    InfoKind::TopicCreated => Next::Continue,
                    // Only subscriptions with presence_events get these.
                    InfoKind::Join | InfoKind::Leave => Next::Continue,
                    InfoKind::ClosedByAdmin => {
                        out.push(self.notice(Level::Warn, "An admin closed this connection."));
                        Next::Continue
                    }
                }
            }
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
pub fn start(_view: LiveView, _topic: String, _last_n: Option<u64>) {}

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
    }

    impl Inbox {
        fn take(&mut self, entries: Vec<LogEntry>) {
            self.events += entries.iter().filter(|e| e.is_event()).count() as u64;
            self.entries.extend(entries);
        }
    }
    const FLUSH_MS: u32 = 100;
    const BACKOFF_MS: [u32; 5] = [500, 1000, 2000, 4000, 8000];

    fn ws_url() -> String {
        let location = window().location();
        let scheme = if location.protocol().as_deref() == Ok("https:") {
            "wss"
        } else {
            "ws"
        };
        format!(
            "{scheme}://{}/ws{}",
            location.host().unwrap_or_default(),
            crate::auth::token_query()
        )
    }

    /// Starts a session for `topic`; a previous one of this view stops.
    pub fn start(view: LiveView, topic: String, last_n: Option<u64>) {
        view.generation.update(|g| *g += 1);
        let generation = view.generation.get_untracked();
        view.rows.set(Vec::new());
        view.received.set(0);
        view.held.set(0);
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
            let mut tracker = Tracker::default();
            let mut attempt: u32 = 0;
            while alive() {
                let mut socket = match WebSocket::open(&ws_url()) {
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
                    topic: topic.clone(),
                    client_id: Some("web-ui".into()),
                    last_n: if tracker.position.is_none() {
                        last_n
                    } else {
                        None
                    },
                    since: tracker.since().map(crate::wire::SinceArg::Topic),
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
                        let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) else {
                            continue;
                        };
                        let mut out = Vec::new();
                        let next = tracker.handle(frame, REQUEST_ID, &mut out);
                        if tracker.position.is_some()
                            && view.status.try_get_untracked() != Some(Status::Live)
                        {
                            view.status.try_set(Status::Live);
                            attempt = 0;
                        }
                        pending.borrow_mut().take(out);
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
                let delay = BACKOFF_MS[(attempt as usize).min(BACKOFF_MS.len() - 1)];
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
            pattern: None,
            topics: None,
            ts: String::new(),
        })
    }

    fn event(seq: u64) -> ServerFrame {
        ServerFrame::Event(EventFrame {
            topic: "t".into(),
            message: Message {
                id: format!("m{seq}"),
                payload: serde_json::json!({"n": seq}),
            },
            seq,
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

    #[test]
    fn replay_then_live_without_gap_notices() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.handle(ack(10, 2, None), "r", &mut out);
        for s in 9..=11 {
            t.handle(event(s), "r", &mut out);
        }
        assert_eq!(notices(&out).len(), 1, "only the subscribe notice: {out:?}");
        assert_eq!(t.since().unwrap().seq, 11);
    }

    #[test]
    fn gaps_and_slow_consumer_are_noticed() {
        let mut t = Tracker::default();
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
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.handle(ack(5, 0, None), "r", &mut out);
        t.handle(event(6), "r", &mut out);
        assert_eq!(t.since().unwrap().seq, 6);
        t.handle(ack(9, 3, Some(true)), "r", &mut out);
        assert!(notices(&out).last().unwrap().contains("recovered: 3"));
        t.handle(ack(20, 0, Some(false)), "r", &mut out);
        assert!(notices(&out).last().unwrap().contains("could not recover"));
        assert_eq!(t.since().unwrap().seq, 20);
    }

    #[test]
    fn deletion_finishes_the_subscription() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let info = ServerFrame::Info(Info {
            msg: InfoKind::TopicDeleted,
            topic: Some("t".into()),
            epoch: None,
            client: None,
            ts: String::new(),
        });
        assert_eq!(t.handle(info, "r", &mut out), Next::Finish);
    }

    #[test]
    fn prepend_keeps_newest_first_and_bounded() {
        let mut t = Tracker::default();
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
