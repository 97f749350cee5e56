//! The server's own state: `GET /api/health`, `GET /api/stats` and the
//! per-second history of the stats (`GET /api/stats/history`).

use super::openapi::{BadRequest, Unauthorized, Unavailable};
use super::{history_range, ApiError, ApiResult};
use crate::broker::sampler::Sampler;
use crate::broker::{Broker, BrokerError, HistoryRange};
use crate::AppState;
use axum::extract::{RawQuery, State};
use axum::Json;
use protocol::{ErrorCode, Health, Stats, StatsHistory, StatsTotals, TopicStats};
use std::sync::atomic::Ordering::Relaxed;

/// Liveness, with the main gauges
///
/// Always open, even when authentication is on (a load balancer's or
/// container's health check needs no key). In cluster mode it is 503
/// `UNAVAILABLE`, naming the reason, while NATS cannot be reached; the
/// gauges are this instance's except `topics` (the cluster's).
#[utoipa::path(
    get,
    path = "/health",
    tag = "server",
    responses(
        (status = 200, description = "The server is up.", body = Health),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn health(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    state
        .broker
        .health()
        .map_err(|reason| BrokerError::new(ErrorCode::Unavailable, reason))?;
    let b = &state.broker;
    Ok(Json(Health {
        status: "ok".into(),
        uptime_sec: b.uptime_sec(),
        topics: b.topic_count(),
        subscribers: b.totals().subscriptions.load(Relaxed),
        connections: b.totals().connections.load(Relaxed),
    }))
}

/// Counters, in total and per topic
///
/// `messages` counts messages published to a topic; `delivered` counts
/// events written to subscriber connections; `dropped` counts events
/// discarded for slow consumers. Replayed events are in neither. For every
/// topic, at any moment, the sum over its messages of the subscribers at
/// publish time = delivered + dropped + events still queued.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "server",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The counters.", body = Stats),
        (status = 401, response = Unauthorized),
    ),
)]
pub(super) async fn stats(State(state): State<AppState>) -> Json<Stats> {
    Json(stats_of(&state.broker))
}

/// What `GET /api/stats` answers (the UI renders the same).
pub(crate) fn stats_of(b: &Broker) -> Stats {
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
    Stats {
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
    }
}

/// The last five minutes of stats, one sample a second
///
/// Oldest first. `published`, `delivered` and `dropped` are cumulative (a
/// rate is the difference of two samples); the others are gauges. An
/// addition to the contract, for the dashboard's charts.
#[utoipa::path(
    get,
    path = "/stats/history",
    tag = "server",
    security(("bearer" = []), ("apiKey" = [])),
    params(
        ("last_n" = Option<u64>, Query, format = "uint64", minimum = 0, maximum = 18446744073709551615_u64,
         description = "Only the newest N samples (fewer when the server has not run that long)."),
    ),
    responses(
        (status = 200, description = "The samples, oldest first.", body = StatsHistory),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
    ),
)]
pub(super) async fn stats_history(
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
    Ok(Json(stats_history_of(&state.sampler, last_n)))
}

/// What `GET /api/stats/history` answers for `last_n` (all samples when
/// `None`; the UI renders the same).
pub(crate) fn stats_history_of(sampler: &Sampler, last_n: Option<usize>) -> StatsHistory {
    StatsHistory {
        interval_ms: crate::STATS_INTERVAL.as_millis() as u64,
        samples: sampler.last(last_n),
    }
}
