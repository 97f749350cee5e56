//! `GET /metrics`: the server's metrics in the Prometheus text format
//! (version 0.0.4), encoded by the Prometheus project's `prometheus-client`
//! from one [`Registry`]. This module owns the catalogue: every metric is
//! declared here once (name, type, help, labels) and registered once, in
//! [`Metrics::new`]; the README's table is held to the registry by a test.
//!
//! Where the numbers come from:
//! - The broker already counts messages, deliveries, drops, latencies and
//!   refusals in its own atomics (`broker::Totals`, the per-topic tallies),
//!   on the per-message path. Counting them again here would add work to
//!   that path, so [`BrokerReadings`] is a `Collector` that reads those
//!   atomics when Prometheus scrapes, and nothing else.
//! - HTTP requests are counted here, by [`track`], in a `Family` of
//!   counters: one increment per request, never per message.
//!
//! Names: the registry adds the `pubsub_` prefix and the encoder adds
//! `_total` to a counter's name, so the names declared below carry neither
//! (`published` is exposed as `pubsub_published_total`).
//!
//! Per-topic series are bounded by `--metrics-topic-limit`: the busiest
//! topics by messages get their own label, the rest are summed under
//! `topic="(other)"` (parentheses cannot occur in topic names). HTTP
//! requests are counted by the template of the route they reached
//! ([`route_label`]), never by raw path.

use crate::broker::{Broker, Limit, TopicCounts, LATENCY_BOUNDS};
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

/// The registry behind `/metrics`, and the one metric counted here rather
/// than read from the broker.
pub(crate) struct Metrics {
    registry: Registry,
    http_requests: Family<HttpRequest, Counter>,
}

/// The labels of `pubsub_http_requests_total`, in this order.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRequest {
    route: &'static str,
    method: &'static str,
    status: u16,
}

impl Metrics {
    /// Registers every metric, once. `topic_limit` is
    /// `--metrics-topic-limit`.
    pub(crate) fn new(broker: Broker, topic_limit: usize) -> Self {
        let mut registry = Registry::with_prefix("pubsub");
        let http_requests = Family::default();
        // The registry ends a registered help text with a full stop; the
        // collector's help texts below are written whole.
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        registry.register_collector(Box::new(BrokerReadings {
            broker,
            topic_limit,
        }));
        Metrics {
            registry,
            http_requests,
        }
    }

    /// Counts one HTTP request answered. A read lock and an atomic add once
    /// the series exists; the write lock only for a new (route, method,
    /// status), of which there are a bounded few.
    pub(crate) fn count_request(&self, route: &'static str, method: &'static str, status: u16) {
        self.http_requests
            .get_or_create(&HttpRequest {
                route,
                method,
                status,
            })
            .inc();
    }

    /// The whole exposition. (Writing to a `String` cannot fail; an error
    /// could only come from a collector.)
    pub(crate) fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The `route` label of a request: the template of the route it reached
/// (axum's `MatchedPath`, so the label is the route as declared), the
/// bundle's files as one, and anything no route matched as
/// `/api/(unknown)` or `(other)`. Templates are a bounded set, so neither a
/// million topics nor a scanner can explode the label count.
pub(crate) fn route_label(matched: Option<&str>, path: &str) -> &'static str {
    match matched {
        Some(route) if route == "/pkg" || route.starts_with("/pkg/") => "/pkg/:file",
        Some(route) if !crate::auth::is_fallback(route) => intern(route),
        _ if path == "/api" || path.starts_with("/api/") => "/api/(unknown)",
        _ => "(other)",
    }
}

/// A route template as a `'static` label, its parameters written `:name`
/// (label values with braces trip common exposition parsers). Each distinct
/// template is kept once for the life of the process (there are a few
/// dozen).
fn intern(route: &str) -> &'static str {
    static SEEN: std::sync::OnceLock<DashMap<String, &'static str>> = std::sync::OnceLock::new();
    let seen = SEEN.get_or_init(DashMap::new);
    if let Some(label) = seen.get(route) {
        return *label;
    }
    *seen
        .entry(route.to_owned())
        .or_insert_with(|| Box::leak(route.replace('{', ":").replace('}', "").into_boxed_str()))
}

/// The method as a label value: the standard ones, anything else `OTHER`
/// (clients may send any token as a method).
pub(crate) fn method_of(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Middleware counting every HTTP request by route, method and status.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>();
    let route = route_label(matched.map(MatchedPath::as_str), request.uri().path());
    let method = method_of(request.method());
    let response = next.run(request).await;
    state
        .metrics
        .count_request(route, method, response.status().as_u16());
    response
}

/// `GET /metrics`. The Prometheus text format 0.0.4 rather than
/// OpenMetrics: it is what every scraper reads, and what this endpoint has
/// always answered.
pub(crate) async fn scrape(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response(),
        Err(_) => {
            tracing::error!("encoding the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The broker's counters and gauges, read when scraped.
struct BrokerReadings {
    broker: Broker,
    topic_limit: usize,
}

// `Collector` asks for `Debug`; the broker has nothing useful to print.
impl fmt::Debug for BrokerReadings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerReadings")
            .field("topic_limit", &self.topic_limit)
            .finish_non_exhaustive()
    }
}

/// The two kinds of plain number exposed.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        }
    }

    fn encode(self, value: u64, encoder: MetricEncoder) -> fmt::Result {
        match self {
            Kind::Counter => ConstCounter::new(value).encode(encoder),
            Kind::Gauge => ConstGauge::new(value).encode(encoder),
        }
    }
}

/// One unlabelled number of the whole server.
struct Scalar {
    /// Without the `pubsub_` prefix, nor a counter's `_total`.
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&BrokerReadings) -> u64,
}

const SCALARS: [Scalar; 16] = [
    Scalar {
        name: "uptime_seconds",
        kind: Kind::Gauge,
        help: "Seconds since the server started.",
        read: |r| r.broker.uptime_sec(),
    },
    Scalar {
        name: "connections",
        kind: Kind::Gauge,
        help: "Open WebSocket connections and SSE streams.",
        read: |r| r.broker.totals().connections.load(Relaxed),
    },
    Scalar {
        name: "subscriptions",
        kind: Kind::Gauge,
        help: "Subscriptions over all topics and connections.",
        read: |r| r.broker.totals().subscriptions.load(Relaxed),
    },
    Scalar {
        name: "topics",
        kind: Kind::Gauge,
        help: "Topics that exist.",
        read: |r| r.broker.topic_count(),
    },
    Scalar {
        name: "published",
        kind: Kind::Counter,
        help: "Messages published.",
        read: |r| r.broker.totals().published.load(Relaxed),
    },
    Scalar {
        name: "publish_duplicates",
        kind: Kind::Counter,
        help: "Publishes answered as duplicates of a message published within dedup_window (not published again).",
        read: |r| r.broker.totals().duplicates.load(Relaxed),
    },
    Scalar {
        name: "dedup_bytes",
        kind: Kind::Gauge,
        help: "Bytes allocated for the message ids remembered for idempotent publish, over all topics (within max_dedup_bytes).",
        read: |r| r.broker.totals().dedup_bytes.load(Relaxed),
    },
    Scalar {
        name: "delivered",
        kind: Kind::Counter,
        help: "Events written to subscriber connections.",
        read: |r| r.broker.totals().delivered.load(Relaxed),
    },
    Scalar {
        name: "dropped",
        kind: Kind::Counter,
        help: "Events discarded for slow consumers or closed connections.",
        read: |r| r.broker.totals().dropped.load(Relaxed),
    },
    Scalar {
        name: "queued_events",
        kind: Kind::Gauge,
        help: "Live events in connection queues or being written (queue depth, summed over connections).",
        read: |r| {
            let t = r.broker.totals();
            let settled = t.delivered.load(Relaxed) + t.dropped.load(Relaxed);
            t.enqueued.load(Relaxed).saturating_sub(settled)
        },
    },
    Scalar {
        name: "queued_bytes",
        kind: Kind::Gauge,
        help: "Bytes of frames (events and replies) in connection queues, summed over connections.",
        read: |r| r.broker.queued().1,
    },
    Scalar {
        name: "history_bytes",
        kind: Kind::Gauge,
        help: "Bytes of history retained over all topics (bounded by max_history_bytes).",
        read: |r| r.broker.totals().history_bytes.load(Relaxed),
    },
    Scalar {
        name: "history_evicted",
        kind: Kind::Counter,
        help: "Messages evicted from history to stay within max_history_bytes.",
        read: |r| r.broker.totals().history_evicted.load(Relaxed),
    },
    Scalar {
        name: "slow_consumer_events",
        kind: Kind::Counter,
        help: "SLOW_CONSUMER signals: notices sent and connections closed by the disconnect policy.",
        read: |r| r.broker.totals().slow_consumer_events.load(Relaxed),
    },
    Scalar {
        name: "metrics_topic_limit",
        kind: Kind::Gauge,
        help: "Topics that get their own per-topic series (--metrics-topic-limit).",
        read: |r| r.topic_limit as u64,
    },
    Scalar {
        name: "backplane_up",
        kind: Kind::Gauge,
        help: "1 while the log serves (always in memory; in cluster mode, NATS reachable), else 0.",
        read: |r| u64::from(r.broker.health().is_ok()),
    },
];

/// One number per topic, labelled `topic`.
struct PerTopic {
    /// Without the `pubsub_` prefix, nor a counter's `_total`.
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&TopicCounts) -> u64,
}

const PER_TOPIC: [PerTopic; 4] = [
    PerTopic {
        name: "topic_messages",
        kind: Kind::Counter,
        help: "Messages published to the topic.",
        read: |c| c.messages,
    },
    PerTopic {
        name: "topic_delivered",
        kind: Kind::Counter,
        help: "Events of the topic written to subscribers.",
        read: |c| c.delivered,
    },
    PerTopic {
        name: "topic_dropped",
        kind: Kind::Counter,
        help: "Events of the topic dropped for slow consumers.",
        read: |c| c.dropped,
    },
    PerTopic {
        name: "topic_subscribers",
        kind: Kind::Gauge,
        help: "Subscribers of the topic.",
        read: |c| c.subscribers,
    },
];

impl Collector for BrokerReadings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.scalars(&mut encoder)?;
        self.refusals(&mut encoder)?;
        self.per_topic(&mut encoder)?;
        self.delivery_latency(&mut encoder)
    }
}

impl BrokerReadings {
    fn scalars(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        for scalar in &SCALARS {
            let value = (scalar.read)(self);
            let metric = encoder.encode_descriptor(
                scalar.name,
                scalar.help,
                None,
                scalar.kind.metric_type(),
            )?;
            scalar.kind.encode(value, metric)?;
        }
        Ok(())
    }

    fn refusals(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let totals = self.broker.totals();
        let mut metric = encoder.encode_descriptor(
            "refused",
            "Requests and connections refused by a limit (the knob's name), or for their Host or Origin.",
            None,
            MetricType::Counter,
        )?;
        for limit in Limit::ALL {
            let labels = [("limit", limit.label())];
            ConstCounter::new(totals.refused(limit)).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// One snapshot of the topics for the four families, so that they
    /// name the same topics and agree with each other.
    fn per_topic(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let rows = self.busiest_topics();
        for family in &PER_TOPIC {
            let mut metric = encoder.encode_descriptor(
                family.name,
                family.help,
                None,
                family.kind.metric_type(),
            )?;
            for (topic, counts) in &rows {
                let labels = [("topic", topic.as_str())];
                let value = (family.read)(counts);
                family.kind.encode(value, metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// The broker keeps a count per bucket; the encoder accumulates them, so
    /// `+Inf` is their sum, as cumulative `le` buckets must be.
    fn delivery_latency(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let latency = &self.broker.totals().delivery_latency;
        let buckets: [(f64, u64); LATENCY_BOUNDS.len() + 1] = std::array::from_fn(|i| {
            let bound = LATENCY_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY);
            (bound, latency.buckets[i].load(Relaxed))
        });
        encoder
            .encode_descriptor(
                "delivery_latency_seconds",
                "Time from publish to the event's being taken for the write to a subscriber connection.",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                latency.sum_nanos.load(Relaxed) as f64 / 1e9,
                latency.count(),
                &buckets,
                None,
            )
    }

    /// The busiest `topic_limit` topics by messages (ties by name), then
    /// the rest summed as `(other)` when there is a rest.
    fn busiest_topics(&self) -> Vec<(String, TopicCounts)> {
        let mut topics = self.broker.all_topic_counts();
        topics.sort_by(|a, b| b.1.messages.cmp(&a.1.messages).then_with(|| a.0.cmp(&b.0)));
        let rest = topics.split_off(self.topic_limit.min(topics.len()));
        if !rest.is_empty() {
            let mut other = TopicCounts::default();
            for (_, c) in &rest {
                other.messages += c.messages;
                other.subscribers += c.subscribers;
                other.delivered += c.delivered;
                other.dropped += c.dropped;
            }
            topics.push(("(other)".to_owned(), other));
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::{route_label, Metrics};
    use crate::broker::{Broker, BrokerConfig};
    use std::collections::BTreeMap;

    /// The README's metrics table names every metric the registry exposes,
    /// with its type, and nothing else. Read from the exposition, so the
    /// names are as scraped (prefix and `_total` included).
    #[test]
    fn the_readme_lists_every_registered_metric() {
        let metrics = Metrics::new(Broker::new(BrokerConfig::default()), 100);
        // A `Family` is exposed from its first series on.
        metrics.count_request("/", "GET", 200);
        let text = metrics.encode().expect("a String takes any text");
        let exposed: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
            .collect();

        let readme = include_str!("../../README.md");
        let table = readme
            .split("| metric | type | meaning |")
            .nth(1)
            .expect("the README has the metrics table");
        let mut listed = BTreeMap::new();
        // The rest of the header line and the `|---|` line, then the rows.
        for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = row.split('|').collect();
            let (names, kind) = (cells[1], cells[2].trim());
            for name in names.split('`').skip(1).step_by(2) {
                assert!(listed.insert(name, kind).is_none(), "{name} listed twice");
            }
        }
        assert_eq!(
            listed, exposed,
            "the README's table (left), the registry (right)"
        );
    }

    #[test]
    fn labels_are_the_declared_templates() {
        assert_eq!(route_label(Some("/"), "/"), "/");
        assert_eq!(
            route_label(Some("/api/topics/{name}"), "/api/topics/orders.eu"),
            "/api/topics/:name"
        );
        assert_eq!(
            route_label(
                Some("/api/{*__private__axum_fallback}"),
                "/api/whatever/deep"
            ),
            "/api/(unknown)"
        );
        assert_eq!(
            route_label(None, "/api/whatever/deep/path"),
            "/api/(unknown)"
        );
        assert_eq!(
            route_label(
                Some("/pkg/v-0123/{*__private__axum_nest_tail_param}"),
                "/pkg/v-0123/pubsub.wasm"
            ),
            "/pkg/:file"
        );
        assert_eq!(route_label(None, "/wp-admin/login.php"), "(other)");
        let a = route_label(Some("/topics/{name}"), "/topics/a");
        let b = route_label(Some("/topics/{name}"), "/topics/b");
        assert!(std::ptr::eq(a, b), "one label per template");
    }
}
