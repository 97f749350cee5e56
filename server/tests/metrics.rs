//! `GET /metrics`, scraped and parsed with a Prometheus text-format parser.

mod common;

use common::TestServer;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

async fn scrape(s: &TestServer) -> Scrape {
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = r.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition")
}

fn value(v: &Value) -> f64 {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

fn find<'a>(scrape: &'a Scrape, metric: &str, label: Option<(&str, &str)>) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
}

fn get(scrape: &Scrape, metric: &str, label: Option<(&str, &str)>) -> f64 {
    value(
        &find(scrape, metric, label)
            .unwrap_or_else(|| panic!("{metric} {label:?} is exposed"))
            .value,
    )
}

#[tokio::test]
async fn metrics_follow_the_traffic() {
    let s = TestServer::start().await;
    s.create_topic("a").await;
    s.create_topic("b").await;
    let mut ws = s.ws().await;
    ws.subscribe("a", json!({})).await;
    for n in 0..5 {
        s.publish("a", json!(n)).await;
    }
    s.publish("b", json!(1)).await;
    for _ in 0..5 {
        ws.recv_skipping_pings().await;
    }
    s.eventually("the deliveries are counted", || async {
        s.stats().await["totals"]["delivered"] == 5
    })
    .await;

    let m = scrape(&s).await;
    let kind = |metric| find(&m, metric, None).map(|s| &s.value);
    assert!(
        matches!(kind("pubsub_published_total"), Some(Value::Counter(_))),
        "a counter's TYPE line names it with its _total: {:?}",
        kind("pubsub_published_total")
    );
    assert!(matches!(kind("pubsub_connections"), Some(Value::Gauge(_))));
    assert_eq!(get(&m, "pubsub_connections", None), 1.0);
    assert_eq!(
        get(&m, "pubsub_backplane_up", None),
        1.0,
        "in memory, always up"
    );
    assert_eq!(get(&m, "pubsub_subscriptions", None), 1.0);
    assert_eq!(get(&m, "pubsub_topics", None), 2.0);
    assert_eq!(get(&m, "pubsub_published_total", None), 6.0);
    assert_eq!(get(&m, "pubsub_delivered_total", None), 5.0);
    assert_eq!(get(&m, "pubsub_dropped_total", None), 0.0);
    assert_eq!(get(&m, "pubsub_queued_events", None), 0.0);
    assert_eq!(get(&m, "pubsub_slow_consumer_events_total", None), 0.0);
    assert_eq!(
        get(&m, "pubsub_topic_messages_total", Some(("topic", "a"))),
        5.0
    );
    assert_eq!(
        get(&m, "pubsub_topic_delivered_total", Some(("topic", "a"))),
        5.0
    );
    assert_eq!(
        get(&m, "pubsub_topic_subscribers", Some(("topic", "a"))),
        1.0
    );
    assert_eq!(
        get(&m, "pubsub_topic_messages_total", Some(("topic", "b"))),
        1.0
    );

    let latency = find(&m, "pubsub_delivery_latency_seconds", None).expect("histogram");
    let Value::Histogram(buckets) = &latency.value else {
        panic!("{:?}", latency.value)
    };
    let inf = buckets
        .iter()
        .find(|b| b.less_than == f64::INFINITY)
        .expect("+Inf bucket");
    assert_eq!(inf.count, 5.0, "one observation per delivered event");
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "cumulative"
    );

    let created = get(
        &m,
        "pubsub_http_requests_total",
        Some(("route", "/api/topics")),
    );
    assert_eq!(created, 2.0, "two POSTs to /api/topics");
    let published = find(
        &m,
        "pubsub_http_requests_total",
        Some(("route", "/api/topics/:name/messages")),
    )
    .unwrap();
    assert_eq!(
        (
            published.labels.get("method"),
            published.labels.get("status")
        ),
        (Some("POST"), Some("201"))
    );
    assert_eq!(value(&published.value), 6.0);
}

#[tokio::test]
async fn per_topic_series_are_bounded() {
    let s = TestServer::start_with(|c| c.metrics_topic_limit = 3).await;
    for i in 0..10 {
        let name = format!("t{i}");
        s.create_topic(&name).await;
        for n in 0..i {
            s.publish(&name, json!(n)).await;
        }
    }
    let m = scrape(&s).await;
    let topics: Vec<&str> = m
        .samples
        .iter()
        .filter(|x| x.metric == "pubsub_topic_messages_total")
        .filter_map(|x| x.labels.get("topic"))
        .collect();
    assert_eq!(
        topics,
        ["t9", "t8", "t7", "(other)"],
        "the busiest three, then the rest summed"
    );
    assert_eq!(
        get(
            &m,
            "pubsub_topic_messages_total",
            Some(("topic", "(other)"))
        ),
        (0..7).sum::<u64>() as f64
    );
}

#[tokio::test]
async fn unknown_paths_do_not_add_label_values() {
    let s = TestServer::start().await;
    for i in 0..20 {
        s.get(&format!("/api/nope/{i}")).await;
        s.get(&format!("/random-{i}")).await;
        let method = reqwest::Method::from_bytes(format!("SCAN{i}").as_bytes()).unwrap();
        s.http
            .request(method, s.url("/api/health"))
            .send()
            .await
            .unwrap();
    }
    let m = scrape(&s).await;
    let routes: std::collections::BTreeSet<&str> = m
        .samples
        .iter()
        .filter(|x| x.metric == "pubsub_http_requests_total")
        .filter_map(|x| x.labels.get("route"))
        .collect();
    assert_eq!(
        routes.into_iter().collect::<Vec<_>>(),
        ["(other)", "/api/(unknown)", "/api/health"]
    );
    let methods: std::collections::BTreeSet<&str> = m
        .samples
        .iter()
        .filter(|x| x.metric == "pubsub_http_requests_total")
        .filter_map(|x| x.labels.get("method"))
        .collect();
    assert_eq!(
        methods.into_iter().collect::<Vec<_>>(),
        ["GET", "OTHER"],
        "twenty invented methods are one label value"
    );
    assert_eq!(
        get(
            &m,
            "pubsub_http_requests_total",
            Some(("route", "/api/(unknown)"))
        ),
        20.0
    );
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/api/health")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let r = s
        .http
        .get(s.url("/api/health"))
        .header("x-request-id", "mine-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-request-id"],
        "mine-1",
        "the caller's id is kept"
    );
}
