//! Client requests: a text frame parsed against the contract, checked
//! against the connection's credential (a refusal is an error reply, the
//! connection stays) and turned into a broker call, its reply queued in
//! request order (publishes awaiting the log's acknowledgement included).

use super::standing::{Refreshed, Standing};
use crate::auth::{Refusal, Role};
use crate::broker::{Broker, BrokerError, Connection, Frame, Joining, Publishing, Receipt, Replay};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use protocol::{Ack, ClientFrame, ErrorCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// Publishes sent to the log whose acknowledgement has not come yet
/// (cluster mode: NATS answers after storing them). A connection may have
/// up to [`Inflight::MAX`] in flight; their replies, and every reply after
/// them, keep the order of the requests.
///
/// Made on the first publish that has to wait (cluster mode only): an empty
/// `FuturesOrdered` already allocates, and idle connections count bytes
/// (boxed for that reason too: inline, it is 64 bytes of every
/// connection's future).
#[derive(Default)]
pub struct Inflight {
    replies: Option<Box<FuturesOrdered<BoxFuture<'static, Frame>>>>,
}

impl Inflight {
    const MAX: usize = 256;

    pub(super) fn is_empty(&self) -> bool {
        self.replies.as_ref().is_none_or(|r| r.is_empty())
    }

    pub(super) fn is_full(&self) -> bool {
        self.replies.as_ref().is_some_and(|r| r.len() >= Self::MAX)
    }

    fn queue(&mut self, reply: BoxFuture<'static, Frame>) {
        self.replies
            .get_or_insert_with(|| Box::new(FuturesOrdered::new()))
            .push_back(reply);
    }

    /// Queues the reply to a publish: at once when it is known and nothing
    /// is in flight before it, else behind the others.
    fn push(
        &mut self,
        conn: &Connection,
        publishing: Publishing,
        request_id: Option<String>,
        topic: String,
    ) {
        match publishing {
            Publishing::Done(result) if self.is_empty() => {
                conn.outbox
                    .push_reply(publish_reply(result, request_id, &topic));
            }
            Publishing::Done(result) => {
                let reply = publish_reply(result, request_id, &topic);
                self.queue(Box::pin(std::future::ready(reply)));
            }
            Publishing::Waiting(acknowledged) => {
                self.queue(Box::pin(async move {
                    publish_reply(acknowledged.await, request_id, &topic)
                }));
            }
        }
    }

    /// Waits for the oldest publish in flight and queues its reply.
    pub(super) async fn answer_next(&mut self, conn: &Connection) {
        let Some(replies) = self.replies.as_mut() else {
            return;
        };
        if let Some(reply) = replies.next().await {
            conn.outbox.push_reply(reply);
        }
    }

    /// Answers every publish in flight, in order.
    pub async fn flush(&mut self, conn: &Connection) {
        while !self.is_empty() {
            self.answer_next(conn).await;
        }
    }

    /// At shutdown: answers what NATS acknowledges within a second.
    pub(super) async fn settle(&mut self, conn: &Connection) {
        let _ = timeout(Duration::from_secs(1), self.flush(conn)).await;
    }
}

fn publish_reply(
    result: Result<Receipt, BrokerError>,
    request_id: Option<String>,
    topic: &str,
) -> Frame {
    match result {
        Ok(receipt) => Frame::ack(Ack {
            seq: Some(receipt.seq),
            id: Some(receipt.id),
            duplicate: receipt.duplicate,
            ..Frame::ack_of(request_id, topic)
        }),
        Err(e) => Frame::error(request_id, e.code, e.message),
    }
}

/// Answers one client frame. Every reply goes through the outbox, so it is
/// ordered with the events of this connection.
///
/// Public for the `ws_frames` fuzz target and its corpus replay test
/// (`server/tests/fuzz_corpus.rs`), which call it without a socket.
///
/// With the in-memory log the future is ready at its first poll and
/// nothing stays in `inflight`. In cluster mode a publish is sent and its
/// acknowledgement awaited in `inflight`; any other request first waits
/// for the publishes before it, so replies keep the order of requests.
pub async fn handle_text(
    broker: &Broker,
    conn: &Arc<Connection>,
    text: &str,
    inflight: &mut Inflight,
    standing: &mut Standing,
) {
    let frame = match parse_frame(text) {
        Ok(frame) => frame,
        Err(problem) => {
            let reply = Frame::error(
                readable_request_id(text),
                ErrorCode::BadRequest,
                format!("invalid frame: {problem}"),
            );
            inflight.flush(conn).await;
            conn.outbox.push_reply(reply);
            return;
        }
    };
    if !matches!(frame, ClientFrame::Publish { .. }) {
        inflight.flush(conn).await;
    }
    match frame {
        ClientFrame::Subscribe {
            topic,
            client_id,
            last_n,
            since,
            presence_events,
            request_id,
        } => {
            if let Err(refusal) = may_subscribe(standing, &topic, client_id.as_deref()) {
                conn.outbox.push_reply(refused(request_id, &refusal));
                return;
            }
            let joining = Joining {
                // A token's connection is its `sub`.
                client_id: client_id.as_deref().or(standing.credential().client_id()),
                presence_events,
            };
            if let Err(e) = broker
                .subscribe_as(
                    conn,
                    &topic,
                    Replay { last_n, since },
                    joining,
                    request_id.clone(),
                )
                .await
            {
                conn.outbox
                    .push_reply(Frame::error(request_id, e.code, e.message));
            }
        }
        ClientFrame::Unsubscribe {
            topic,
            client_id: _,
            request_id,
        } => {
            if let Err(e) = broker.unsubscribe(conn, &topic, request_id.clone()) {
                conn.outbox
                    .push_reply(Frame::error(request_id, e.code, e.message));
            }
        }
        ClientFrame::Publish {
            topic,
            message,
            request_id,
        } => {
            let publishing = match standing.may(Role::Publish, &topic) {
                Ok(()) => broker.start_publish_from(conn, &topic, message).await,
                Err(refusal) => {
                    Publishing::Done(Err(BrokerError::new(refusal.code(), refusal.message())))
                }
            };
            inflight.push(conn, publishing, request_id, topic);
        }
        ClientFrame::Ping { request_id } => conn.outbox.push_reply(Frame::pong(request_id)),
        ClientFrame::Presence { topic, request_id } => {
            if let Err(refusal) = standing.may(Role::Subscribe, &topic) {
                conn.outbox.push_reply(refused(request_id, &refusal));
                return;
            }
            let reply = match broker.presence(&topic).await {
                Ok(clients) => Frame::presence(request_id, &topic, clients),
                Err(e) => Frame::error(request_id, e.code, e.message),
            };
            conn.outbox.push_reply(reply);
        }
        ClientFrame::Refresh { token, request_id } => match standing.refresh(&token) {
            // Without token configuration a refresh changes nothing.
            Ok(Refreshed::Nothing) => conn
                .outbox
                .push_reply(Frame::ack(Frame::ack_of(request_id, ""))),
            Ok(Refreshed::Token) => {
                // What the new token no longer allows ends first, so that
                // nothing of it follows the ack.
                for held in conn.subscriptions() {
                    if standing.may(Role::Subscribe, &held).is_err() {
                        broker.end_subscription(conn, &held);
                    }
                }
                conn.outbox
                    .push_reply(Frame::ack(Frame::ack_of(request_id, "")));
            }
            Err(refusal) => conn.outbox.push_reply(refused(request_id, &refusal)),
        },
    }
}

/// Whether the connection may subscribe to `topic` (a name or a pattern)
/// as `client_id`: a token's connection is its `sub`, and names no other.
/// A malformed pattern is let through, for the broker's `BAD_REQUEST`.
fn may_subscribe(standing: &Standing, topic: &str, client_id: Option<&str>) -> Result<(), Refusal> {
    if protocol::pattern::is_pattern(topic) && protocol::pattern::Pattern::parse(topic).is_err() {
        return match standing.credential().allows(Role::Subscribe) {
            true => Ok(()),
            false => Err(Refusal::Forbidden(Role::Subscribe)),
        };
    }
    standing.may(Role::Subscribe, topic)?;
    match (standing.credential().client_id(), client_id) {
        (Some(sub), Some(asked)) if sub != asked => Err(Refusal::Denied(format!(
            "client_id {asked:?} is not this token's sub {sub:?}: a token's connection is its sub"
        ))),
        _ => Ok(()),
    }
}

fn refused(request_id: Option<String>, refusal: &Refusal) -> Frame {
    Frame::error(request_id, refusal.code(), refusal.message())
}

/// A client frame. serde would also read a struct from a JSON array
/// (`["ping"]`), which the contract does not allow: the frame, its
/// `message` and its `since` must be objects.
fn parse_frame(text: &str) -> Result<ClientFrame, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(fields) = value.as_object() else {
        return Err("a frame is one JSON object".into());
    };
    for key in ["message", "since"] {
        if fields
            .get(key)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return Err(format!("`{key}` must be an object"));
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The `request_id` of a frame that did not parse, when it can be read.
fn readable_request_id(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("request_id")?.as_str().map(str::to_owned)
}
