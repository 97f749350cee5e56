//! Topics: `GET` and `POST /api/topics`, `GET` and `DELETE
//! /api/topics/{name}`.

use super::openapi::{
    BadRequest, Forbidden, PayloadTooLarge, RateLimited, TopicExists, TopicNotFound, Unauthorized,
    Unavailable,
};
use super::{json_body, ApiResult, TopicName};
use crate::auth::{Credential, Role};
use crate::broker::{Broker, BrokerError, TopicInfo};
use crate::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use protocol::pattern::Pattern;
use protocol::{CreateTopic, Presence, TopicChanged, TopicDetail, TopicList, TopicSummary};

/// Every topic, sorted by name
///
/// The topics of the service with their counts; `subscribers` counts the
/// connections on this instance that follow the topic. With `pattern`,
/// only the topics it matches (`orders.*`, `orders.>`; a plain name
/// matches itself).
#[utoipa::path(
    get,
    path = "/topics",
    tag = "topics",
    security(("bearer" = []), ("apiKey" = [])),
    params(
        ("pattern" = Option<String>, Query, max_length = 255,
         description = "Only topics this pattern matches: `.`-separated tokens, `*` for one token, a last `>` for one or more."),
    ),
    responses(
        (status = 200, description = "The topics, sorted by name.", body = TopicList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn list_topics(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<TopicList>> {
    let pattern = pattern_of(query.as_deref().unwrap_or(""))?;
    Ok(Json(topic_list(&state.broker, pattern.as_ref()).await?))
}

/// What `GET /api/topics` answers (the UI renders the same), only the
/// topics `pattern` matches when one is given.
pub(crate) async fn topic_list(
    broker: &Broker,
    pattern: Option<&Pattern>,
) -> Result<TopicList, BrokerError> {
    let topics = broker
        .list_topics()
        .await?
        .into_iter()
        .filter(|t| pattern.is_none_or(|p| p.matches(&t.name)))
        .map(summary)
        .collect();
    Ok(TopicList { topics })
}

/// The `pattern` query parameter, checked.
fn pattern_of(query: &str) -> ApiResult<Option<Pattern>> {
    let Some((_, text)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "pattern")
    else {
        return Ok(None);
    };
    Pattern::parse(&text)
        .map(Some)
        .map_err(super::ApiError::bad_request)
}

/// Create a topic
///
/// Its `seq` starts at 0 and it gets a new `epoch`. Needs the `admin` role
/// when authentication is on.
#[utoipa::path(
    post,
    path = "/topics",
    tag = "topics",
    security(("bearer" = []), ("apiKey" = [])),
    request_body(content = CreateTopic, content_type = "application/json",
        description = "The new topic's name. The body is read as JSON whatever its Content-Type."),
    responses(
        (status = 201, description = "The topic was created.", body = TopicChanged,
         example = json!({"status": "created", "topic": "orders"})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = TopicExists),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn create_topic(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<TopicChanged>)> {
    let CreateTopic { name } = json_body(body)?;
    state.broker.create_topic(&name).await?;
    Ok((
        StatusCode::CREATED,
        Json(TopicChanged {
            status: "created".into(),
            topic: name,
        }),
    ))
}

/// One topic, with its `seq` and `epoch`
#[utoipa::path(
    get,
    path = "/topics/{name}",
    tag = "topics",
    security(("bearer" = []), ("apiKey" = [])),
    params(("name" = protocol::schema::TopicName, Path, description = "The topic's name.")),
    responses(
        (status = 200, description = "The topic.", body = TopicDetail),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = TopicNotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn get_topic(
    State(state): State<AppState>,
    TopicName(name): TopicName,
) -> ApiResult<Json<TopicDetail>> {
    Ok(Json(topic_detail(&state.broker, &name).await?))
}

/// What `GET /api/topics/{name}` answers (the UI renders the same).
pub(crate) async fn topic_detail(broker: &Broker, name: &str) -> Result<TopicDetail, BrokerError> {
    let t = broker.topic_info(name).await?;
    Ok(TopicDetail {
        name: t.name,
        subscribers: t.subscribers,
        messages: t.messages,
        created_at: t.created_at,
        seq: t.seq,
        epoch: t.epoch,
    })
}

/// Who is subscribed to a topic by name
///
/// The topic's presence: its exact-name WebSocket subscriptions (pattern
/// subscriptions are not presence), oldest first, each with the
/// `client_id` its subscribe gave (or `null`).
#[utoipa::path(
    get,
    path = "/topics/{name}/presence",
    tag = "topics",
    security(("bearer" = []), ("apiKey" = [])),
    params(("name" = protocol::schema::TopicName, Path, description = "The topic's name.")),
    responses(
        (status = 200, description = "The topic's presence.", body = Presence),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = TopicNotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn presence(
    State(state): State<AppState>,
    credential: Credential,
    TopicName(name): TopicName,
) -> ApiResult<Json<Presence>> {
    credential.may(Role::Subscribe, &name)?;
    Ok(Json(presence_of(&state.broker, name).await?))
}

/// The body of `GET /api/topics/{name}/presence` (the UI's topic page
/// renders it too).
pub(crate) async fn presence_of(broker: &Broker, name: String) -> Result<Presence, BrokerError> {
    let clients = broker.presence(&name).await?;
    Ok(Presence {
        topic: name,
        count: clients.len() as u64,
        clients,
    })
}

/// Delete a topic
///
/// Every subscriber gets `info topic_deleted` over its WebSocket and loses
/// the subscription; the history is gone. Needs the `admin` role when
/// authentication is on.
#[utoipa::path(
    delete,
    path = "/topics/{name}",
    tag = "topics",
    security(("bearer" = []), ("apiKey" = [])),
    params(("name" = protocol::schema::TopicName, Path, description = "The topic's name.")),
    responses(
        (status = 200, description = "The topic was deleted.", body = TopicChanged,
         example = json!({"status": "deleted", "topic": "orders"})),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = TopicNotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn delete_topic(
    State(state): State<AppState>,
    TopicName(name): TopicName,
) -> ApiResult<Json<TopicChanged>> {
    state.broker.delete_topic(&name).await?;
    Ok(Json(TopicChanged {
        status: "deleted".into(),
        topic: name,
    }))
}

fn summary(t: TopicInfo) -> TopicSummary {
    TopicSummary {
        name: t.name,
        subscribers: t.subscribers,
        messages: t.messages,
        created_at: t.created_at,
    }
}
