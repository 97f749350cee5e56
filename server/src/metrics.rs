//! `GET /metrics`: the server's counters in the Prometheus text format
//! (version 0.0.4), written by hand: a few dozen lines need no registry.
//!
//! Per-topic series are bounded by `--metrics-topic-limit`: the busiest
//! topics by messages get their own label, the rest are summed under
//! `topic="(other)"` (parentheses cannot occur in topic names). HTTP
//! requests are counted by the template of the route they reached
//! ([`route_label`]), never by raw path.

use crate::broker::TopicCounts;
use crate::broker::LATENCY_BOUNDS;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// HTTP requests answered, by (route, method, status).
#[derive(Default)]
pub struct HttpRequests {
    counts: DashMap<(&'static str, &'static str, u16), AtomicU64>,
}

impl HttpRequests {
    pub fn count(&self, route: &'static str, method: &'static str, status: u16) {
        let key = (route, method, status);
        if let Some(n) = self.counts.get(&key) {
            n.fetch_add(1, Relaxed);
            return;
        }
        self.counts.entry(key).or_default().fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> Vec<((&'static str, &'static str, u16), u64)> {
        let mut rows: Vec<_> = self
            .counts
            .iter()
            .map(|e| (*e.key(), e.value().load(Relaxed)))
            .collect();
        rows.sort();
        rows
    }
}

/// The `route` label of a request: the template of the route it reached
/// (axum's `MatchedPath`, so the label is the route as declared), the
/// bundle's files as one, and anything no route matched as
/// `/api/(unknown)` or `(other)`. Templates are a bounded set, so neither a
/// million topics nor a scanner can explode the label count.
pub fn route_label(matched: Option<&str>, path: &str) -> &'static str {
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
pub fn method_of(method: &axum::http::Method) -> &'static str {
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
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>();
    let route = route_label(matched.map(MatchedPath::as_str), request.uri().path());
    let method = method_of(request.method());
    let response = next.run(request).await;
    state
        .http_requests
        .count(route, method, response.status().as_u16());
    response
}

pub async fn scrape(State(state): State<AppState>) -> Response {
    let text = render(&state);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// A metric family drawn from `T`: name, type, help, and the value.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(state: &AppState) -> String {
    let b = &state.broker;
    let t = b.totals();
    let mut out = String::with_capacity(4096);
    let (_, queued_bytes) = b.queued();
    let simple: [(&str, &str, &str, u64); 14] = [
        ("pubsub_uptime_seconds", "gauge", "Seconds since the server started.", b.uptime_sec()),
        ("pubsub_connections", "gauge", "Open WebSocket connections.", t.connections.load(Relaxed)),
        ("pubsub_subscriptions", "gauge", "Subscriptions over all topics and connections.", t.subscriptions.load(Relaxed)),
        ("pubsub_topics", "gauge", "Topics that exist.", b.topic_count()),
        ("pubsub_published_total", "counter", "Messages published.", t.published.load(Relaxed)),
        ("pubsub_delivered_total", "counter", "Events written to subscriber connections.", t.delivered.load(Relaxed)),
        ("pubsub_dropped_total", "counter", "Events discarded for slow consumers or closed connections.", t.dropped.load(Relaxed)),
        (
            "pubsub_queued_events",
            "gauge",
            "Live events in connection queues or being written (queue depth, summed over connections).",
            t.enqueued.load(Relaxed).saturating_sub(t.delivered.load(Relaxed) + t.dropped.load(Relaxed)),
        ),
        (
            "pubsub_queued_bytes",
            "gauge",
            "Bytes of frames (events and replies) in connection queues, summed over connections.",
            queued_bytes,
        ),
        (
            "pubsub_history_bytes",
            "gauge",
            "Bytes of history retained over all topics (bounded by max_history_bytes).",
            t.history_bytes.load(Relaxed),
        ),
        (
            "pubsub_history_evicted_total",
            "counter",
            "Messages evicted from history to stay within max_history_bytes.",
            t.history_evicted.load(Relaxed),
        ),
        (
            "pubsub_slow_consumer_events_total",
            "counter",
            "SLOW_CONSUMER signals: notices sent and connections closed by the disconnect policy.",
            t.slow_consumer_events.load(Relaxed),
        ),
        (
            "pubsub_metrics_topic_limit",
            "gauge",
            "Topics that get their own per-topic series (--metrics-topic-limit).",
            state.config.metrics_topic_limit as u64,
        ),
        (
            "pubsub_backplane_up",
            "gauge",
            "1 while the log serves (always in memory; in cluster mode, NATS reachable), else 0.",
            u64::from(state.broker.health().is_ok()),
        ),
    ];
    for (name, kind, help, value) in simple {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "pubsub_refused_total",
        "counter",
        "Requests and connections refused by a limit (the knob's name), or for their Host or Origin.",
    );
    for limit in crate::broker::Limit::ALL {
        let _ = writeln!(
            out,
            "pubsub_refused_total{{limit=\"{}\"}} {}",
            limit.label(),
            t.refused(limit)
        );
    }

    // Per topic, bounded.
    let mut topics = b.all_topic_counts();
    topics.sort_by(|a, b| b.1.messages.cmp(&a.1.messages).then_with(|| a.0.cmp(&b.0)));
    let limit = state.config.metrics_topic_limit;
    let mut other = TopicCounts::default();
    let rest = topics.split_off(limit.min(topics.len()));
    for (_, c) in &rest {
        other.messages += c.messages;
        other.subscribers += c.subscribers;
        other.delivered += c.delivered;
        other.dropped += c.dropped;
    }
    let mut rows: Vec<(String, TopicCounts)> = topics;
    if !rest.is_empty() {
        rows.push(("(other)".to_owned(), other));
    }
    let per_topic: [Family<TopicCounts>; 4] = [
        (
            "pubsub_topic_messages_total",
            "counter",
            "Messages published to the topic.",
            |c| c.messages,
        ),
        (
            "pubsub_topic_delivered_total",
            "counter",
            "Events of the topic written to subscribers.",
            |c| c.delivered,
        ),
        (
            "pubsub_topic_dropped_total",
            "counter",
            "Events of the topic dropped for slow consumers.",
            |c| c.dropped,
        ),
        (
            "pubsub_topic_subscribers",
            "gauge",
            "Subscribers of the topic.",
            |c| c.subscribers,
        ),
    ];
    for (name, kind, help, pick) in per_topic {
        family(&mut out, name, kind, help);
        for (topic, c) in &rows {
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {}", escape(topic), pick(c));
        }
    }

    // Delivery latency.
    let h = &t.delivery_latency;
    let name = "pubsub_delivery_latency_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from publish to the event's write to a subscriber connection.",
    );
    let mut cumulative = 0;
    for (i, bound) in LATENCY_BOUNDS.iter().enumerate() {
        cumulative += h.buckets[i].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += h.buckets[LATENCY_BOUNDS.len()].load(Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", h.sum_nanos.load(Relaxed) as f64 / 1e9);
    let _ = writeln!(out, "{name}_count {}", h.count.load(Relaxed));

    // HTTP.
    let name = "pubsub_http_requests_total";
    family(
        &mut out,
        name,
        "counter",
        "HTTP requests answered, by route template, method and status.",
    );
    for ((route, method, status), n) in state.http_requests.snapshot() {
        let _ = writeln!(
            out,
            "{name}{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
            escape(route),
            escape(method)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::route_label;

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
