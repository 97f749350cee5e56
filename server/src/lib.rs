//! pubsub-server: a real-time pub/sub broker over REST and WebSocket with a
//! Leptos web UI.
//!
//! A map of the modules:
//! - [`broker`]: the core (topics, subscriptions, publishing, history,
//!   stats), plain Rust with its own tests. Everything else adapts it.
//! - [`api`]: the REST API under `/api`.
//! - [`ws`]: the WebSocket endpoint at `/ws`.
//! - [`ui`]: the server-rendered, hydrated web UI at `/`.
//! - [`config`]: flags and environment variables.
//! - [`shutdown`]: graceful shutdown, passed down as a value.

pub mod api;
pub mod broker;
pub mod config;
pub mod shutdown;
pub mod ui;
pub mod ws;

use axum::extract::FromRef;
use axum::routing::any;
use axum::Router;
use broker::sampler::Sampler;
use broker::Broker;
use config::Config;
use leptos::config::LeptosOptions;
use shutdown::Shutdown;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How often the stats collector samples the counters.
pub const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Samples kept: five minutes at one a second.
pub const STATS_HISTORY_SAMPLES: usize = 300;

/// What every handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub sampler: Arc<Sampler>,
    pub config: Arc<Config>,
    pub shutdown: Shutdown,
    pub leptos_options: LeptosOptions,
}

impl AppState {
    pub fn new(config: Config, shutdown: Shutdown) -> Self {
        let broker = Arc::new(Broker::new(config.broker()));
        let leptos_options = ui::options(&config);
        AppState {
            broker,
            sampler: Arc::new(Sampler::new(STATS_HISTORY_SAMPLES)),
            config: Arc::new(config),
            shutdown,
            leptos_options,
        }
    }
}

/// The whole HTTP surface: `/api`, `/ws` and the UI.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_frame_bytes;
    let routes = Router::new()
        .nest("/api", api::router())
        .route("/ws", any(ws::upgrade))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit));
    ui::routes(routes, &state).with_state(state)
}

/// Serves until `state.shutdown` is triggered, then lets the WebSocket
/// sessions flush (up to `shutdown_timeout`) and returns.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let deadline = state.config.shutdown_timeout;
    tokio::spawn(sample_stats(
        Arc::clone(&state.broker),
        Arc::clone(&state.sampler),
        shutdown.clone(),
    ));
    let app = router(state);
    let stop = shutdown.token();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    let unfinished = shutdown.drain(deadline).await;
    if unfinished > 0 {
        tracing::warn!(
            unfinished,
            "shutdown deadline passed with sessions still flushing"
        );
    }
    Ok(())
}

/// Samples the counters every [`STATS_INTERVAL`] until shutdown.
async fn sample_stats(broker: Arc<Broker>, sampler: Arc<Sampler>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.triggered() => return,
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        sampler.sample(&broker, now_ms);
    }
}
