//! pubsub-server: a real-time pub/sub broker over REST and WebSocket with a
//! Leptos web UI.
//!
//! A map of the modules:
//! - [`broker`]: the core (topics, subscriptions, publishing, history,
//!   stats), plain Rust with its own tests: one facade, [`broker::Broker`],
//!   over this instance's hub and a log (in memory, or NATS JetStream in
//!   cluster mode). Everything else adapts it and holds only the facade.
//! - [`api`]: the REST API under `/api`.
//! - [`auth`]: API keys and roles, and the browser origins allowed.
//! - [`ws`]: the WebSocket endpoint at `/ws`.
//! - [`sse`]: Server-Sent Events, a hub connection's queue written as an
//!   HTTP response (the routes are in [`api`]).
//! - [`ui`]: the server-rendered, hydrated web UI at `/`.
//! - [`metrics`]: `GET /metrics` for Prometheus.
//! - [`config`]: flags, environment variables and the config file.
//! - [`http_server`]: the accept loop, with the HTTP bounds (connections,
//!   header time, stalled responses, a shutdown that always ends).
//! - [`shutdown`]: graceful shutdown, passed down as a value.
//!
//! Only what the tests, the fuzz harness and the benches reach is `pub`
//! (the broker's facade, the WebSocket session, config, shutdown); the
//! HTTP adapters and the broker's hub are `pub(crate)`.

pub(crate) mod api;
pub(crate) mod auth;
pub mod broker;
pub mod config;
pub(crate) mod http_server;
pub(crate) mod metrics;
pub mod shutdown;
pub(crate) mod signal;
pub(crate) mod sse;
pub(crate) mod ui;
pub mod ws;

use axum::extract::FromRef;
use axum::http::{HeaderName, Method, Request};
use axum::routing::{any, get};
use axum::Router;
use broker::sampler::Sampler;
use broker::Broker;
use config::Config;
use leptos::config::LeptosOptions;
use shutdown::Shutdown;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// How often the stats collector samples the counters.
pub const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Samples kept: five minutes at one a second.
pub const STATS_HISTORY_SAMPLES: usize = 300;

/// What every handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The one handle to the core: topics, `seq` and history as the log
    /// decides them (this process, or NATS in cluster mode), and this
    /// instance's connections, subscriptions and counters.
    pub broker: Broker,
    pub sampler: Arc<Sampler>,
    /// What `/metrics` exposes: the registry, and the HTTP request counts.
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub config: Arc<Config>,
    pub shutdown: Shutdown,
    pub leptos_options: LeptosOptions,
    pub keys: Arc<auth::Keys>,
    /// Set from the address actually listened on (see [`AppState::origins`]).
    pub origins: Arc<std::sync::OnceLock<auth::Origins>>,
    /// One permit per open WebSocket (`max_connections`).
    pub connection_slots: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// A single instance holding everything in memory (`cluster_nats` is
    /// not looked at; see [`AppState::start`]).
    pub fn new(config: Config, shutdown: Shutdown) -> Self {
        let broker = Broker::new(config.broker.clone());
        Self::with(broker, config, shutdown)
    }

    /// The state `config` asks for: in cluster mode it connects to NATS
    /// (retrying in the background while NATS is not there).
    pub async fn start(config: Config, shutdown: Shutdown) -> Result<Self, String> {
        let broker = match &config.cluster_nats {
            None => Broker::new(config.broker.clone()),
            Some(url) => {
                let node = config.node_name();
                Broker::cluster(config.broker.clone(), url, &node, shutdown.clone()).await?
            }
        };
        Ok(Self::with(broker, config, shutdown))
    }

    fn with(broker: Broker, config: Config, shutdown: Shutdown) -> Self {
        let leptos_options = ui::options(&config);
        let metrics = metrics::Metrics::new(broker.clone(), config.metrics_topic_limit);
        AppState {
            broker,
            sampler: Arc::new(Sampler::new(STATS_HISTORY_SAMPLES)),
            metrics: Arc::new(metrics),
            keys: Arc::new(auth::Keys::new(
                config.api_keys.clone(),
                config.tokens.clone(),
            )),
            origins: Arc::default(),
            connection_slots: Arc::new(tokio::sync::Semaphore::new(
                config
                    .max_connections
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            config: Arc::new(config),
            shutdown,
            leptos_options,
        }
    }
}

impl AppState {
    /// The origin and `Host` policy, for the address the server listens on
    /// (known once bound: tests listen on port 0).
    pub fn origins(&self) -> &auth::Origins {
        self.origins
            .get_or_init(|| self.origins_for(self.config.addr))
    }

    fn origins_for(&self, addr: std::net::SocketAddr) -> auth::Origins {
        auth::Origins::new(
            &self.config.public_origins,
            &self.config.allowed_origins,
            addr,
        )
    }
}

/// The whole HTTP surface: `/api`, `/ws` and the UI.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let (api, mut access) = api::router();
    // The upgrade authorizes itself: the key may also come as `?api_key=`.
    access.declare(Method::GET, "/ws", auth::Need::Open);
    access.declare(Method::GET, "/metrics", auth::Need::AnyKey);
    let access = Arc::new(access);
    let routes = Router::new()
        .nest("/api", api)
        .route("/ws", any(ws::upgrade))
        .route("/metrics", get(metrics::scrape))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit));
    let request_id = HeaderName::from_static("x-request-id");
    // `Router::layer` runs these after routing, so both see the route's
    // template (`MatchedPath`): the guard for its need, `track` for its label.
    ui::routes(routes, &state, access.clone())
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), access),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        // Outermost first: every request gets an id (or keeps the caller's),
        // its span carries it, and the response echoes it.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
        .with_state(state)
}

/// The span of one HTTP request: method, path and request id. Its events
/// (request start and end) are at DEBUG, so nothing is logged per message
/// at the default level.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::debug_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
}

/// Serves until `state.shutdown` is triggered, then lets the connections
/// and WebSocket sessions finish for up to `shutdown_timeout` and returns,
/// whatever clients do.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    tokio::spawn(sample_stats(
        state.broker.clone(),
        Arc::clone(&state.sampler),
        state.shutdown.clone(),
    ));
    tokio::spawn(wake_writers_at_shutdown(
        state.broker.clone(),
        state.shutdown.clone(),
    ));
    if let Ok(addr) = listener.local_addr() {
        let _ = state.origins.set(state.origins_for(addr));
    }
    let app = router(state.clone());
    http_server::run(listener, app, &state).await;
    Ok(())
}

/// At shutdown, wakes every connection's writer once: a parked WebSocket
/// writer waits on its outbox alone (not on the shutdown too, which cost a
/// lock and a registration each time it parked) and looks at the shutdown
/// flag when it wakes.
async fn wake_writers_at_shutdown(broker: Broker, shutdown: Shutdown) {
    shutdown.triggered().await;
    broker.wake_writers();
}

/// Samples the counters every [`STATS_INTERVAL`] until shutdown, and
/// forgets the message ids past `dedup_window` of topics that stopped
/// publishing.
async fn sample_stats(broker: Broker, sampler: Arc<Sampler>, shutdown: Shutdown) {
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
        broker.forget_expired_ids();
    }
}
