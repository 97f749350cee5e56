//! A subscription as a stream that outlives its connections.
//!
//! Each [`Subscription`] owns one WebSocket and one task. The task reads
//! frames, turns them into [`Delivery`] items through [`Cursors`], and when
//! the connection dies (closed, reset, or silent past the liveness
//! deadline) it reconnects with backoff and subscribes again with `since`.
//! One connection per subscription keeps a subscription's failure and
//! resume its own: nothing another subscription does can stall or drop it.
//!
//! The task hands deliveries over a bounded channel: a caller that does not
//! read stops the task reading the socket, and then the server's
//! slow-consumer policy applies (reported as `SlowConsumer` and `Gap`),
//! so the client's memory stays bounded too.

use crate::backoff::{Backoff, RetryPolicy};
use crate::cursor::Cursors;
use crate::delivery::{CloseReason, Delivery};
use futures_util::{SinkExt, Stream, StreamExt};
use protocol::client::{Client as Rest, Error, WebSocket};
use protocol::pattern::is_pattern;
use protocol::{Ack, ClientFrame, ErrorCode, InfoKind, ServerFrame, Since, SinceArg};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Where a new subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// With the next message published.
    Now,
    /// With the newest `n` messages from history (of each matching topic,
    /// for a pattern), then live.
    LastN(u64),
    /// After this position of the topic (exact subscriptions). The first
    /// delivery is a [`Delivery::Resumed`] that says whether everything
    /// after it was recovered.
    Since(Since),
    /// After these positions, per topic (pattern subscriptions); the other
    /// matching topics start now. The first deliveries answer each listed
    /// topic: [`Delivery::Resumed`], or [`Delivery::TopicDeleted`] for one
    /// that no longer exists.
    SinceEach(BTreeMap<String, Since>),
}

/// What to subscribe to and how.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// A topic name, or a pattern (`orders.*`, `orders.>`).
    pub topic: String,
    pub start: Start,
    /// Sent as the subscribe's `client_id` (presence).
    pub client_id: Option<String>,
    /// A `ping` is sent this often (its `pong` proves the connection alive).
    pub ping_interval: Duration,
    /// A connection on which nothing arrived for this long is dead: the
    /// subscription reconnects. It must exceed `ping_interval` plus a round
    /// trip; the server's own heartbeat (`heartbeat_interval`, default
    /// 30 s) also keeps a healthy connection under it.
    pub liveness_timeout: Duration,
    /// Deliveries buffered for a caller that reads slower than they come.
    pub buffer: usize,
}

impl SubscribeOptions {
    /// `topic` from now, with a ping every 15 s and a 45 s liveness deadline.
    pub fn new(topic: impl Into<String>) -> Self {
        SubscribeOptions {
            topic: topic.into(),
            start: Start::Now,
            client_id: None,
            ping_interval: Duration::from_secs(15),
            liveness_timeout: Duration::from_secs(45),
            buffer: 1024,
        }
    }

    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Sets `ping_interval` and `liveness_timeout` together.
    pub fn heartbeat(mut self, ping_interval: Duration, liveness_timeout: Duration) -> Self {
        self.ping_interval = ping_interval;
        self.liveness_timeout = liveness_timeout;
        self
    }
}

/// A live subscription: a [`Stream`] of [`Delivery`] items that ends after
/// [`Delivery::Closed`].
pub struct Subscription {
    ack: Ack,
    deliveries: mpsc::Receiver<Delivery>,
    close: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Subscription {
    /// Connects, subscribes and waits for the ack. Refusals (a missing
    /// topic, a bad pattern, a missing role) and an unreachable server are
    /// errors here; once this returned, connection failures are handled
    /// inside the stream.
    pub(crate) async fn open(
        rest: Rest,
        policy: RetryPolicy,
        options: SubscribeOptions,
    ) -> Result<Self, Error> {
        let pattern = is_pattern(&options.topic);
        let (last_n, since) = match &options.start {
            Start::Now => (None, None),
            Start::LastN(n) => (Some(*n), None),
            Start::Since(s) => (None, Some(SinceArg::Topic(s.clone()))),
            Start::SinceEach(map) => (None, Some(SinceArg::PerTopic(map.clone()))),
        };
        let mut ws = rest.websocket().await?;
        let ack = subscribe(&mut ws, &options, last_n, since.clone(), "subscribe").await?;
        let mut cursors = Cursors::default();
        let first = cursors.start(&ack, since.as_ref());
        let (tx, deliveries) = mpsc::channel(options.buffer.max(1));
        let (close, closing) = oneshot::channel();
        let session = Session {
            rest,
            policy,
            options,
            pattern,
            cursors,
            tx,
            closing,
        };
        let task = tokio::spawn(session.run(ws, first));
        Ok(Subscription {
            ack,
            deliveries,
            close: Some(close),
            task: Some(task),
        })
    }

    /// The first subscribe's ack: the topic's `seq` and `epoch` (for a
    /// pattern, `topics`), how many events are replayed, and `recovered`
    /// when it started with `since`.
    pub fn ack(&self) -> &Ack {
        &self.ack
    }

    /// Ends the subscription: sends a close frame, waits (briefly) for the
    /// server's, and ends the stream. Deliveries not read yet are dropped.
    pub async fn close(mut self) {
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
        self.deliveries.close();
        while self.deliveries.recv().await.is_some() {}
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.deliveries.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The task sees the closed signal (or the closed channel) and
        // closes its connection by itself.
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
    }
}

/// Sends a subscribe and waits for its ack.
async fn subscribe(
    ws: &mut WebSocket,
    options: &SubscribeOptions,
    last_n: Option<u64>,
    since: Option<SinceArg>,
    request_id: &str,
) -> Result<Ack, Error> {
    let frame = ClientFrame::Subscribe {
        topic: options.topic.clone(),
        client_id: options.client_id.clone(),
        last_n,
        since,
        presence_events: false,
        request_id: Some(request_id.to_owned()),
    };
    request(ws, &frame, request_id, options.liveness_timeout).await
}

/// Sends `frame` and waits for the ack with `request_id`; an error frame
/// for it is a refusal. Other frames before it are skipped: heartbeats,
/// and (when a subscription is replaced on one connection) events that
/// the replacement replays.
async fn request(
    ws: &mut WebSocket,
    frame: &ClientFrame,
    request_id: &str,
    patience: Duration,
) -> Result<Ack, Error> {
    let text = serde_json::to_string(frame).map_err(|e| Error::Body(e.to_string()))?;
    ws.send(WsMessage::text(text))
        .await
        .map_err(|e| Error::Transport(format!("sending a request: {e}")))?;
    loop {
        let next = tokio::time::timeout(patience, ws.next())
            .await
            .map_err(|_| Error::Transport(format!("no answer to {request_id}")))?;
        let text = match next {
            Some(Ok(WsMessage::Text(text))) => text,
            Some(Ok(WsMessage::Close(close))) => {
                let why = close.map(|c| c.to_string()).unwrap_or_default();
                return Err(Error::Transport(format!("the server closed: {why}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Error::Transport(e.to_string())),
            None => return Err(Error::Transport("the connection ended".into())),
        };
        match serde_json::from_str::<ServerFrame>(text.as_str()) {
            Ok(ServerFrame::Ack(ack)) if ack.request_id.as_deref() == Some(request_id) => {
                return Ok(ack)
            }
            Ok(ServerFrame::Error(e)) if e.request_id.as_deref() == Some(request_id) => {
                return Err(Error::Refused {
                    status: e.error.code.http_status(),
                    code: Some(e.error.code),
                    message: e.error.message,
                })
            }
            _ => {}
        }
    }
}

/// Renews an exact subscription whose topic has a new epoch from the new
/// epoch's start: unsubscribes (no event of it after that ack) and
/// subscribes with `since` seq 0, which replays what history holds
/// atomically. The answer keeps the first ack's `recovered: false`.
async fn replay_new_epoch(
    ws: &mut WebSocket,
    options: &SubscribeOptions,
    first: Ack,
    from: Since,
    request_id: &str,
) -> Result<Ack, Error> {
    let unsubscribe = ClientFrame::Unsubscribe {
        topic: options.topic.clone(),
        client_id: options.client_id.clone(),
        request_id: Some(format!("{request_id}-unsubscribe")),
    };
    let id = format!("{request_id}-unsubscribe");
    request(ws, &unsubscribe, &id, options.liveness_timeout).await?;
    let id = format!("{request_id}-replay");
    let again = subscribe(ws, options, None, Some(SinceArg::Topic(from)), &id).await?;
    Ok(Ack {
        seq: again.seq,
        epoch: again.epoch,
        replayed: again.replayed,
        ..first
    })
}

/// Whether renewing a subscription after `e` is worth another attempt. A
/// missing topic is: an in-memory server that restarted has it again once
/// someone creates it.
fn worth_retrying(e: &Error) -> bool {
    match e {
        Error::Transport(_) => true,
        Error::Refused { code, status, .. } => match code {
            Some(code) => matches!(
                code,
                ErrorCode::TopicNotFound
                    | ErrorCode::Unavailable
                    | ErrorCode::RateLimited
                    | ErrorCode::Internal
            ),
            None => matches!(status, 429 | 500..=599),
        },
        Error::Body(_) => true,
    }
}

/// How a connection ended.
enum End {
    /// It broke: reconnect.
    Lost(String),
    /// The subscription is over.
    Closed(CloseReason),
}

/// The task behind a [`Subscription`].
struct Session {
    rest: Rest,
    policy: RetryPolicy,
    options: SubscribeOptions,
    pattern: bool,
    cursors: Cursors,
    tx: mpsc::Sender<Delivery>,
    closing: oneshot::Receiver<()>,
}

impl Session {
    /// Delivers `first` (the answers to the caller's own positions), then
    /// reads, reconnecting as needed.
    async fn run(mut self, connection: WebSocket, first: Vec<Delivery>) {
        let mut ws = Some(connection);
        let mut backoff = Backoff::new(&self.policy);
        for d in first {
            if !self.deliver(d).await {
                return;
            }
        }
        let reason = loop {
            let connection = match ws.take() {
                Some(c) => c,
                None => match self.reconnect(&mut backoff).await {
                    Ok(c) => c,
                    Err(reason) => break reason,
                },
            };
            match self.pump(connection).await {
                End::Closed(reason) => break reason,
                End::Lost(why) => {
                    if !self.deliver(Delivery::Disconnected { reason: why }).await {
                        break CloseReason::ByCaller;
                    }
                }
            }
        };
        let _ = self.tx.send(Delivery::Closed(reason)).await;
    }

    /// Hands `d` to the caller; `false` when the caller is gone.
    async fn deliver(&mut self, d: Delivery) -> bool {
        tokio::select! {
            sent = self.tx.send(d) => sent.is_ok(),
            _ = &mut self.closing => false,
        }
    }

    /// Reconnects and renews the subscription with `since`, with backoff
    /// between attempts, until it works, the caller closes, or the server
    /// refuses for good.
    async fn reconnect(&mut self, backoff: &mut Backoff) -> Result<WebSocket, CloseReason> {
        let mut attempt: u64 = 0;
        // The kind of the last failure: a new kind (the server is back but
        // the topic is missing, say) is told to the caller, a repeat is not.
        let mut failing: Option<String> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                _ = &mut self.closing => return Err(CloseReason::ByCaller),
            }
            attempt += 1;
            let since = self.cursors.since(&self.options.topic, self.pattern);
            // A pattern also asks for the whole history of topics it did
            // not know yet (created while disconnected).
            let last_n = self.pattern.then_some(u64::MAX);
            let request_id = format!("resume-{attempt}");
            let renewed = async {
                let mut ws = self.rest.websocket().await?;
                let mut ack = subscribe(&mut ws, &self.options, last_n, since, &request_id).await?;
                if let Some(from) = self.cursors.new_epoch_replay(&ack) {
                    ack = replay_new_epoch(&mut ws, &self.options, ack, from, &request_id).await?;
                }
                Ok::<_, Error>((ws, ack))
            };
            let outcome = tokio::select! {
                outcome = renewed => outcome,
                _ = &mut self.closing => return Err(CloseReason::ByCaller),
            };
            match outcome {
                Ok((ws, ack)) => {
                    backoff.reset();
                    for d in self.cursors.resume(&ack) {
                        if !self.deliver(d).await {
                            return Err(CloseReason::ByCaller);
                        }
                    }
                    return Ok(ws);
                }
                Err(e) if worth_retrying(&e) => {
                    let kind = e.key();
                    if attempt > 1 && failing.as_ref() != Some(&kind) {
                        let reason = format!("renewing the subscription failed: {e}");
                        if !self.deliver(Delivery::Disconnected { reason }).await {
                            return Err(CloseReason::ByCaller);
                        }
                    }
                    failing = Some(kind);
                }
                Err(e) => return Err(CloseReason::Refused(e)),
            }
        }
    }

    /// Reads one connection until it ends.
    async fn pump(&mut self, mut ws: WebSocket) -> End {
        let mut ping = tokio::time::interval(self.options.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await; // the first tick is immediate
        let mut pings: u64 = 0;
        // Any frame proves the connection alive; the deadline moves only
        // then (not when we ping: a ping is not an answer).
        let mut deadline = tokio::time::Instant::now() + self.options.liveness_timeout;
        // Why the server said it will close, when it said so.
        let mut announced: Option<&'static str> = None;
        loop {
            let next = tokio::select! {
                // A frame that is there wins over an expired deadline.
                biased;
                next = ws.next() => next,
                () = tokio::time::sleep_until(deadline) => {
                    return End::Lost(format!(
                        "nothing received for {:?}",
                        self.options.liveness_timeout
                    ));
                }
                _ = ping.tick() => {
                    pings += 1;
                    let frame = ClientFrame::Ping { request_id: Some(format!("ping-{pings}")) };
                    let text = serde_json::to_string(&frame).unwrap_or_default();
                    let limit = self.options.liveness_timeout;
                    match tokio::time::timeout(limit, ws.send(WsMessage::text(text))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return End::Lost(format!("sending a ping failed: {e}")),
                        Err(_) => return End::Lost(format!("a ping not taken for {limit:?}")),
                    }
                    continue;
                }
                _ = &mut self.closing => {
                    close_gracefully(ws).await;
                    return End::Closed(CloseReason::ByCaller);
                }
            };
            deadline = tokio::time::Instant::now() + self.options.liveness_timeout;
            let text = match next {
                Some(Ok(WsMessage::Text(text))) => text,
                Some(Ok(WsMessage::Close(close))) => {
                    let code = close
                        .map(|c| u16::from(c.code).to_string())
                        .unwrap_or_else(|| "no code".into());
                    let why = announced.unwrap_or("the server closed the connection");
                    return End::Lost(format!("{why} (close {code})"));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return End::Lost(format!("the connection failed: {e}")),
                None => return End::Lost("the connection ended".into()),
            };
            let Ok(frame) = serde_json::from_str::<ServerFrame>(text.as_str()) else {
                continue; // not ours to understand; never a reason to stop
            };
            if let ServerFrame::Info(info) = &frame {
                announced = announced.or(match info.msg {
                    InfoKind::ShuttingDown => Some("the server is shutting down"),
                    InfoKind::ClosedByAdmin => Some("an admin closed the connection"),
                    InfoKind::TokenExpired => Some("the token expired"),
                    _ => None,
                });
            }
            let (deliveries, end) = self.on_frame(frame);
            for d in deliveries {
                if !self.deliver(d).await {
                    close_gracefully(ws).await;
                    return End::Closed(CloseReason::ByCaller);
                }
            }
            // Time spent waiting for a slow caller is not the server's
            // silence: the frames meanwhile wait in the socket.
            deadline = tokio::time::Instant::now() + self.options.liveness_timeout;
            if let Some(reason) = end {
                close_gracefully(ws).await;
                return End::Closed(reason);
            }
        }
    }

    /// What a frame means for the caller, and whether it ends the
    /// subscription.
    fn on_frame(&mut self, frame: ServerFrame) -> (Vec<Delivery>, Option<CloseReason>) {
        match frame {
            ServerFrame::Event(e) => (self.cursors.event(e), None),
            ServerFrame::Error(e) if e.error.code == ErrorCode::SlowConsumer => {
                let d = Delivery::SlowConsumer {
                    topic: e.topic.unwrap_or_else(|| self.options.topic.clone()),
                    dropped: e.dropped.unwrap_or(0),
                };
                (vec![d], None)
            }
            ServerFrame::Info(info) => match info.msg {
                InfoKind::TopicCreated | InfoKind::TopicDeleted => {
                    let deleted = info.msg == InfoKind::TopicDeleted;
                    let d: Vec<Delivery> = self.cursors.info(&info).into_iter().collect();
                    let end = (deleted && !self.pattern).then_some(CloseReason::TopicDeleted);
                    (d, end)
                }
                InfoKind::Unsubscribed
                    if info.topic.as_deref() == Some(self.options.topic.as_str()) =>
                {
                    (Vec::new(), Some(CloseReason::Unsubscribed))
                }
                // Heartbeats only prove liveness; shutting_down,
                // closed_by_admin and token_expired are followed by a close,
                // which reconnects.
                _ => (Vec::new(), None),
            },
            // Acks of pings, pongs, answers to nothing we asked.
            _ => (Vec::new(), None),
        }
    }
}

/// Sends a close frame and waits a moment for the server's answer.
async fn close_gracefully(mut ws: WebSocket) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
