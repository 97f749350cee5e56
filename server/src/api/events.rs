//! Server-Sent Events: `GET /api/topics/{name}/events` (one topic,
//! resumable) and `GET /api/events?topic=…` (several topics or patterns on
//! one stream).
//!
//! Everything that can be refused is refused here, before the stream
//! starts, as an ordinary JSON REST error: the query and `Last-Event-ID`,
//! the topic names, the connection limit, and each subscribe (a missing
//! topic is 404). Then the hub connection, subscribed, becomes the body
//! ([`crate::sse::Events`]).

use super::openapi::{
    BadRequest, Forbidden, StreamLimited, TopicNotFound, Unauthorized, Unavailable,
};
use super::{ApiError, ApiResult, TopicName};
use crate::auth::{Credential, Role};
use crate::broker::{error::check_topic_name, Limit, Permits, Replay, Transport};
use crate::http_server::Peer;
use crate::sse::record::Records;
use crate::sse::{Events, Guard};
use crate::AppState;
use axum::extract::{RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use protocol::{ErrorCode, Since, SinceArg};

/// A topic's events as Server-Sent Events
///
/// `text/event-stream`. The first record is always `subscribed`, with
/// `retry: 1000` (an `EventSource` reconnects one second after the stream
/// is cut) and `data` `{"topic","seq","epoch","replayed","recovered"?}`
/// (`seq`: the topic's seq when the stream started). Then each message as
///
/// ```text
/// id: EPOCH:SEQ
/// event: message
/// data: {"type":"event","topic":"orders","message":{"id":"…","payload":…},"seq":7,"ts":"…"}
/// ```
///
/// (`data` is the WebSocket `event` frame, always on one line), and:
/// `event: slow_consumer` with `data` `{"topic","dropped"}` when this
/// stream's bounded queue (`subscriber_queue` events, `max_queue_bytes`
/// bytes) dropped events (policy `drop_oldest`; with `disconnect` the
/// stream ends after it); `event: topic_deleted` with `data` `{"topic"}`,
/// after which the stream ends; a comment line `: ping` every
/// `heartbeat_interval` while nothing else is sent. The stream also ends
/// when an admin closes it (`DELETE /api/connections/{id}`: it is listed
/// with `transport: "sse"`) and at shutdown, once what is queued is
/// written.
///
/// Start point: `last_n` replays the newest N messages first; a
/// `Last-Event-ID: EPOCH:SEQ` header (what `EventSource` sends when it
/// reconnects) or, for clients that cannot set it, `?last_event_id=`,
/// resumes after that message like a WebSocket `since`: every later message
/// still in history, with no gap and no duplicate (`recovered: true`), or
/// nothing replayed and `recovered: false` when the epoch is not the
/// topic's (it was re-created) or history no longer holds them. The header
/// wins over the parameter (a browser keeps the URL it started with and
/// sends the newest id in the header), and either wins over `last_n`. An
/// empty one counts as absent.
///
/// With authentication on (role `subscribe`), the key may also be given as
/// `?token=KEY`, since `EventSource` cannot set headers (this route and
/// `GET /api/events` only). Errors before the stream starts are the usual
/// JSON errors. A client that takes no byte of the stream for
/// `header_read_timeout` is disconnected.
#[utoipa::path(
    get,
    path = "/topics/{name}/events",
    tag = "events",
    security(("bearer" = []), ("apiKey" = []), ("token" = [])),
    params(
        ("name" = protocol::schema::TopicName, Path, description = "The topic's name (not a pattern: use `GET /api/events?topic=` for patterns)."),
        ("last_n" = Option<u64>, Query, format = "uint64", minimum = 0, maximum = 18446744073709551615_u64,
         description = "Replay the newest min(N, history) messages first."),
        ("last_event_id" = Option<String>, Query,
         description = "Resume after this message, `EPOCH:SEQ` as in a record's `id:` line (the `Last-Event-ID` header wins over it)."),
        ("Last-Event-ID" = Option<String>, Header,
         description = "Resume after this message, `EPOCH:SEQ`; `EventSource` sends it by itself when it reconnects."),
    ),
    responses(
        (status = 200, description = "The stream of records (see above); it stays open.",
         content_type = "text/event-stream", body = String,
         example = json!("event: subscribed\nretry: 1000\ndata: {\"topic\":\"orders\",\"seq\":7,\"epoch\":\"…\",\"replayed\":0}\n\nid: …:8\nevent: message\ndata: {\"type\":\"event\",\"topic\":\"orders\",\"message\":{\"id\":\"a\",\"payload\":1},\"seq\":8,\"ts\":\"2026-11-26T21:00:00.123Z\"}\n\n")),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = TopicNotFound),
        (status = 429, response = StreamLimited),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn topic_events(
    State(state): State<AppState>,
    credential: Credential,
    TopicName(name): TopicName,
    RawQuery(query): RawQuery,
    request: Request,
) -> ApiResult<Response> {
    check_topic_name(&name)?;
    let asked = Asked::parse(query.as_deref().unwrap_or(""))?;
    let since = match last_event_id(request.headers())? {
        Some(since) => Some(since),
        None => asked.last_event_id,
    };
    let replay = Replay {
        last_n: asked.last_n,
        since: since.map(SinceArg::Topic),
    };
    let request = request.into_parts().0;
    stream(&state, &request, &credential, vec![name], replay, true).await
}

/// Several topics or patterns as one stream of Server-Sent Events
///
/// `text/event-stream`, as `GET /api/topics/{name}/events` with these
/// differences: one `subscribed` record per `topic` parameter, in request
/// order (a pattern's carries `pattern: true` and `topics`
/// `{NAME: {"seq","epoch","replayed"}}`, as its WebSocket `ack`); each
/// message's `data` names its topic; a topic a pattern of the stream
/// matches that is created later is announced by `event: topic_created`
/// (`data` `{"topic","epoch"}`) before its first message; `topic_deleted`
/// ends the stream only when no requested topic or pattern is left (a
/// pattern never goes).
///
/// This stream cannot be resumed: `Last-Event-ID` (or `?last_event_id=`)
/// is refused with 400 (use one stream per topic to resume), and its
/// `message` records carry no `id:` line, so that a browser's
/// `EventSource` never sends one when it reconnects by itself: it starts
/// again from `last_n` (or from now).
///
/// A pattern's `>` must be percent-encoded in the URL (`orders.%3E`): HTTP
/// parsers refuse a raw one. At most `max_subscriptions` distinct topics
/// and patterns (429 beyond).
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    security(("bearer" = []), ("apiKey" = []), ("token" = [])),
    params(
        ("topic" = Vec<String>, Query, explode = true, min_items = 1,
         description = "A topic name or a pattern (`orders.*`, `orders.%3E`); repeat for more."),
        ("last_n" = Option<u64>, Query, format = "uint64", minimum = 0, maximum = 18446744073709551615_u64,
         description = "Replay the newest min(N, history) messages of each topic first (a pattern's topics in name order)."),
    ),
    responses(
        (status = 200, description = "The stream of records; it stays open.",
         content_type = "text/event-stream", body = String,
         example = json!("event: subscribed\nretry: 1000\ndata: {\"topic\":\"orders.*\",\"pattern\":true,\"topics\":{\"orders.eu\":{\"seq\":3,\"epoch\":\"…\",\"replayed\":0}}}\n\nevent: message\ndata: {\"type\":\"event\",\"topic\":\"orders.eu\",\"message\":{\"id\":\"a\",\"payload\":1},\"seq\":4,\"ts\":\"2026-11-26T21:00:00.123Z\"}\n\n")),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = TopicNotFound),
        (status = 429, response = StreamLimited),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn events(
    State(state): State<AppState>,
    credential: Credential,
    RawQuery(query): RawQuery,
    request: Request,
) -> ApiResult<Response> {
    let asked = Asked::parse(query.as_deref().unwrap_or(""))?;
    if asked.last_event_id.is_some() || last_event_id(request.headers())?.is_some() {
        return Err(ApiError::bad_request(
            "a stream of several topics cannot be resumed: use one stream per topic \
             (GET /api/topics/{name}/events) to resume with Last-Event-ID",
        ));
    }
    if asked.topics.is_empty() {
        return Err(ApiError::bad_request(
            "give at least one topic or pattern: /api/events?topic=T&topic=U (a pattern's > as %3E)",
        ));
    }
    let mut distinct = asked.topics.clone();
    distinct.sort();
    distinct.dedup();
    let limit = state.broker.config().max_subscriptions;
    if distinct.len() > limit {
        state.broker.totals().refuse(Limit::MaxSubscriptions);
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "{} topics and patterns asked; a stream holds at most {limit} (max_subscriptions)",
                distinct.len()
            ),
        ));
    }
    let replay = Replay {
        last_n: asked.last_n,
        since: None,
    };
    let request = request.into_parts().0;
    stream(&state, &request, &credential, asked.topics, replay, false).await
}

/// What the query asks for (`token` is the guard's; unknown parameters are
/// ignored, as on every route).
#[derive(Debug, Default, PartialEq)]
struct Asked {
    topics: Vec<String>,
    last_n: Option<u64>,
    last_event_id: Option<Since>,
}

impl Asked {
    fn parse(query: &str) -> ApiResult<Self> {
        let mut asked = Asked::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "topic" => asked.topics.push(value.into_owned()),
                "last_n" => {
                    asked.last_n = Some(value.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "last_n must be a non-negative integer, got {value:?}"
                        ))
                    })?)
                }
                "last_event_id" => asked.last_event_id = position(&value)?,
                _ => {}
            }
        }
        Ok(asked)
    }
}

/// The `Last-Event-ID` header, if any.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<Since>> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(value) => position(value.to_str().map_err(|_| {
            ApiError::bad_request("Last-Event-ID must be EPOCH:SEQ in visible ASCII")
        })?),
    }
}

/// `EPOCH:SEQ` as a record's `id:` line gives it (the epoch is what is
/// before the last `:`); empty: none.
fn position(text: &str) -> ApiResult<Option<Since>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ApiError::bad_request(format!(
            "Last-Event-ID must be EPOCH:SEQ as in a record's id: line (the topic's epoch, a colon, a seq), got {text:?}"
        ))
    };
    let (epoch, seq) = text.rsplit_once(':').ok_or_else(bad)?;
    if epoch.is_empty() {
        return Err(bad());
    }
    let seq = seq.parse().map_err(|_| bad())?;
    Ok(Some(Since {
        seq,
        epoch: epoch.to_owned(),
    }))
}

/// Opens the hub connection, subscribes it to `topics` in order and, when
/// every subscribe succeeded, answers with its stream. Any refusal closes
/// the connection again (its guard) and is the answer.
async fn stream(
    state: &AppState,
    request: &Parts,
    credential: &Credential,
    topics: Vec<String>,
    replay: Replay,
    ids: bool,
) -> ApiResult<Response> {
    if state.shutdown.is_triggered() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the server is shutting down",
        ));
    }
    for topic in &topics {
        credential.may(Role::Subscribe, topic)?;
    }
    let Ok(slot) = state.connection_slots.clone().try_acquire_owned() else {
        state.broker.totals().refuse(Limit::MaxConnections);
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "this server holds its limit of {} connections (max_connections)",
                state.config.max_connections
            ),
        ));
    };
    let remote = request.extensions.get::<Peer>().map(|p| p.0);
    // The guard's role check let this request in: it may subscribe, and an
    // SSE stream publishes nothing.
    let permits = Permits {
        publish: false,
        subscribe: true,
    };
    let conn = state.broker.connect_via(Transport::Sse, permits, remote);
    let guard = Guard::new(state.broker.clone(), conn);
    for topic in &topics {
        state
            .broker
            .subscribe(guard.conn(), topic, replay.clone(), None)
            .await?;
    }
    let records = Records::new(&topics, ids);
    let events = Events::new(
        guard,
        records,
        state.config.heartbeat_interval,
        state.shutdown.clone(),
        slot,
    )
    // A stream opened with a token ends when the token expires.
    .until(credential.remaining());
    let mut response = events.into_body().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) would otherwise buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_as_epoch_colon_seq() {
        let p = position("ab:cd:42").unwrap().unwrap();
        assert_eq!((p.epoch.as_str(), p.seq), ("ab:cd", 42));
        assert_eq!(position(" ").unwrap(), None);
        for bad in ["42", ":42", "e:", "e:-1", "e:x", "e:18446744073709551616"] {
            assert!(position(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_keep_topics_in_order_and_decode_them() {
        let asked = Asked::parse("topic=b&topic=a.%3E&last_n=2&token=k&x=1").unwrap();
        assert_eq!(asked.topics, ["b", "a.>"]);
        assert_eq!(asked.last_n, Some(2));
        assert!(Asked::parse("last_n=-1").is_err());
        assert!(Asked::parse("last_event_id=nope").is_err());
    }
}
