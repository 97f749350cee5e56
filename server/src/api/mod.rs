//! The REST API under `/api`: a thin adapter from HTTP to the broker.
//!
//! Bodies are read as bytes and parsed here, so that every malformed body,
//! whatever its content type, is a contract `BAD_REQUEST` with a message
//! saying what is wrong, and an oversized one is `PAYLOAD_TOO_LARGE`.

mod error;

pub use error::ApiError;

use crate::broker::{HistoryRange, TopicInfo};
use crate::AppState;
use app::wire::StatsHistory;
use app::wire::{
    CreateTopic, ErrorCode, Health, HistoryPage, PublishMessage, Published, Stats, StatsTotals,
    TopicChanged, TopicDetail, TopicList, TopicStats, TopicSummary,
};
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::sync::atomic::Ordering::Relaxed;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/stats/history", get(stats_history))
        .route("/topics", get(list_topics).post(create_topic))
        .route("/topics/{name}", get(get_topic).delete(delete_topic))
        .route("/topics/{name}/messages", get(history).post(publish))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

type ApiResult<T> = Result<T, ApiError>;

async fn health(State(state): State<AppState>) -> Json<Health> {
    let b = &state.broker;
    Json(Health {
        status: "ok".into(),
        uptime_sec: b.uptime_sec(),
        topics: b.topic_count(),
        subscribers: b.totals().subscriptions.load(Relaxed),
        connections: b.totals().connections.load(Relaxed),
    })
}

async fn stats(State(state): State<AppState>) -> Json<Stats> {
    let b = &state.broker;
    let t = b.totals();
    let topics = b
        .all_topic_counts()
        .into_iter()
        .map(|(name, c)| {
            let stats = TopicStats {
                messages: c.messages,
                subscribers: c.subscribers,
                delivered: c.delivered,
                dropped: c.dropped,
            };
            (name, stats)
        })
        .collect();
    Json(Stats {
        uptime_sec: b.uptime_sec(),
        totals: StatsTotals {
            topics: b.topic_count(),
            subscribers: t.subscriptions.load(Relaxed),
            connections: t.connections.load(Relaxed),
            published: t.published.load(Relaxed),
            delivered: t.delivered.load(Relaxed),
            dropped: t.dropped.load(Relaxed),
        },
        topics,
    })
}

/// `GET /api/stats/history[?last_n=N]`: per-second samples of the counters
/// for the last minutes, oldest first (an addition to the contract).
async fn stats_history(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<StatsHistory>> {
    let last_n = match history_range(query.as_deref().unwrap_or(""))? {
        HistoryRange::All => None,
        HistoryRange::LastN(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        HistoryRange::SinceSeq(_) => {
            return Err(ApiError::bad_request("stats history takes last_n only"))
        }
    };
    Ok(Json(StatsHistory {
        interval_ms: crate::STATS_INTERVAL.as_millis() as u64,
        samples: state.sampler.last(last_n),
    }))
}

async fn list_topics(State(state): State<AppState>) -> Json<TopicList> {
    let topics = state
        .broker
        .list_topics()
        .into_iter()
        .map(summary)
        .collect();
    Json(TopicList { topics })
}

async fn create_topic(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<TopicChanged>)> {
    let CreateTopic { name } = json_body(body)?;
    state.broker.create_topic(&name)?;
    Ok((
        StatusCode::CREATED,
        Json(TopicChanged {
            status: "created".into(),
            topic: name,
        }),
    ))
}

async fn get_topic(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<TopicDetail>> {
    let t = state.broker.topic_info(&name)?;
    Ok(Json(TopicDetail {
        name: t.name,
        subscribers: t.subscribers,
        messages: t.messages,
        created_at: t.created_at,
        seq: t.seq,
        epoch: t.epoch,
    }))
}

async fn delete_topic(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<TopicChanged>> {
    state.broker.delete_topic(&name)?;
    Ok(Json(TopicChanged {
        status: "deleted".into(),
        topic: name,
    }))
}

async fn publish(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Published>)> {
    let message: PublishMessage = json_body(body)?;
    let receipt = state.broker.publish(&name, message)?;
    Ok((
        StatusCode::CREATED,
        Json(Published {
            status: "published".into(),
            topic: name,
            id: receipt.id,
            seq: receipt.seq,
        }),
    ))
}

async fn history(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<HistoryPage>> {
    let range = history_range(query.as_deref().unwrap_or(""))?;
    let (epoch, events) = state.broker.history(&name, range)?;
    let messages = events.iter().filter_map(|e| e.history_message()).collect();
    Ok(Json(HistoryPage {
        topic: name,
        epoch,
        messages,
    }))
}

/// `?last_n=N` or `?since_seq=S` (not both); neither means the whole history.
fn history_range(query: &str) -> ApiResult<HistoryRange> {
    let mut last_n = None;
    let mut since_seq = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "last_n" => &mut last_n,
            "since_seq" => &mut since_seq,
            _ => continue,
        };
        let n: u64 = value.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "{key} must be a non-negative integer, got {value:?}"
            ))
        })?;
        *slot = Some(n);
    }
    match (last_n, since_seq) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("give last_n or since_seq, not both")),
        (Some(n), None) => Ok(HistoryRange::LastN(n)),
        (None, Some(s)) => Ok(HistoryRange::SinceSeq(s)),
        (None, None) => Ok(HistoryRange::All),
    }
}

fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "request body is over the size limit",
            )
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn summary(t: TopicInfo) -> TopicSummary {
    TopicSummary {
        name: t.name,
        subscribers: t.subscribers,
        messages: t.messages,
        created_at: t.created_at,
    }
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no such endpoint: {}", uri.path()),
    )
}

/// 405 for a known route with the wrong method. The contract has no code of
/// its own for it; `BAD_REQUEST` is the closest, with the status saying 405.
async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: ErrorCode::BadRequest,
        message: format!("method {method} is not allowed: {method} {}", uri.path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_query_parsing() {
        assert_eq!(history_range("").unwrap(), HistoryRange::All);
        assert_eq!(history_range("last_n=3").unwrap(), HistoryRange::LastN(3));
        assert_eq!(
            history_range("since_seq=7&x=1").unwrap(),
            HistoryRange::SinceSeq(7)
        );
        assert!(history_range("last_n=1&since_seq=2").is_err());
        assert!(history_range("last_n=-1").is_err());
        assert!(history_range("last_n=").is_err());
    }
}
