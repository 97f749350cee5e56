//! Server-Sent Events over real sockets: every line of the contract's
//! "Server-Sent Events" section (record format byte by byte, replay and
//! resume, the multi-topic stream with patterns, deletion, both
//! slow-consumer policies, heartbeats, counters, the board, admin close,
//! authentication, shutdown), and the real `curl -N` reading a stream.

mod common;

use common::{TestServer, PATIENCE};
use pubsub_server::broker::SlowConsumerPolicy;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One SSE record as read: its fields, and its bytes as sent.
#[derive(Debug, Default)]
struct Record {
    raw: String,
    id: Option<String>,
    event: Option<String>,
    retry: Option<String>,
    data: Option<String>,
    comment: Option<String>,
}

impl Record {
    fn json(&self) -> Value {
        let data = self.data.as_deref().expect("a data line");
        serde_json::from_str(data).unwrap_or_else(|e| panic!("data is JSON ({e}): {data}"))
    }

    fn is_ping(&self) -> bool {
        self.comment.as_deref() == Some("ping") && self.event.is_none()
    }
}

/// A client reading one stream, record by record.
struct Sse {
    response: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    async fn open(s: &TestServer, path: &str) -> Sse {
        Self::open_with(s, path, &[]).await
    }

    async fn open_with(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut request = s.http.get(s.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::time::timeout(PATIENCE, request.send())
            .await
            .expect("answered in time")
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        Sse {
            response,
            buf: Vec::new(),
        }
    }

    /// The next record, pings included; `None` when the stream ended.
    async fn next_any(&mut self) -> Option<Record> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Some(parse(String::from_utf8(raw).expect("UTF-8")));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("a record within the patience");
            match chunk {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) | Err(_) => {
                    assert!(self.buf.is_empty(), "a partial record at the end");
                    return None;
                }
            }
        }
    }

    /// The next record that is not a ping; panics if the stream ended.
    async fn next(&mut self) -> Record {
        loop {
            let record = self.next_any().await.expect("the stream goes on");
            if !record.is_ping() {
                return record;
            }
        }
    }

    /// The next `message` record's data (`event` frame).
    async fn message(&mut self) -> (Option<String>, Value) {
        let r = self.next().await;
        assert_eq!(r.event.as_deref(), Some("message"), "a message: {}", r.raw);
        (r.id.clone(), r.json())
    }

    /// The stream ends (after pings, if any) without another record.
    async fn ends(&mut self) {
        while let Some(r) = self.next_any().await {
            assert!(r.is_ping(), "expected the end, got {}", r.raw);
        }
    }
}

fn parse(raw: String) -> Record {
    let mut r = Record::default();
    for line in raw.lines().filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix(':') {
            r.comment = Some(c.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        let slot = match field {
            "id" => &mut r.id,
            "event" => &mut r.event,
            "retry" => &mut r.retry,
            "data" => {
                assert!(r.data.is_none(), "data on one line: {raw}");
                &mut r.data
            }
            other => panic!("unknown field {other:?} in {raw:?}"),
        };
        *slot = Some(value.to_owned());
    }
    r.raw = raw;
    r
}

async fn epoch(s: &TestServer, topic: &str) -> String {
    let (status, t) = s.get(&format!("/api/topics/{topic}")).await;
    assert_eq!(status, 200);
    t["epoch"].as_str().unwrap().to_owned()
}

/// The `subscribed` record, checked for its fixed parts.
async fn subscribed(sse: &mut Sse) -> Value {
    let r = sse.next().await;
    assert_eq!(r.event.as_deref(), Some("subscribed"), "{}", r.raw);
    assert_eq!(r.retry.as_deref(), Some("1000"), "{}", r.raw);
    r.json()
}

async fn publish_n(s: &TestServer, topic: &str, range: std::ops::RangeInclusive<u64>) {
    for n in range {
        s.publish(topic, json!({ "n": n })).await;
    }
}

/// The connections board's entries of transport `sse`.
async fn sse_connections(s: &TestServer) -> Vec<Value> {
    let (status, board) = s.get("/api/connections").await;
    assert_eq!(status, 200);
    board["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["transport"] == "sse")
        .cloned()
        .collect()
}

#[tokio::test]
async fn records_are_byte_exact_with_one_line_data_and_retry_on_subscribed() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    s.publish("t", json!("old")).await;
    let epoch = epoch(&s, "t").await;

    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    let first = sse.next().await;
    assert_eq!(
        first.raw,
        format!(
            "event: subscribed\nretry: 1000\ndata: {{\"topic\":\"t\",\"seq\":1,\"epoch\":\"{epoch}\",\"replayed\":0}}\n\n"
        )
    );

    // A payload with line breaks inside strings stays on one line.
    let message = json!({"id": "m-2", "payload": {"text": "a\nb\r\nc", "n": [1, 2]}});
    let (status, _) = s.post("/api/topics/t/messages", message).await;
    assert_eq!(status, 201);
    let r = sse.next().await;
    let data = r.json();
    let ts = data["ts"].as_str().unwrap();
    assert_eq!(
        r.raw,
        format!(
            "id: {epoch}:2\nevent: message\ndata: {{\"type\":\"event\",\"topic\":\"t\",\"message\":{{\"id\":\"m-2\",\"payload\":{{\"text\":\"a\\nb\\r\\nc\",\"n\":[1,2]}}}},\"seq\":2,\"ts\":\"{ts}\"}}\n\n"
        )
    );
    // `data` is the WebSocket `event` frame.
    let frame: protocol::ServerFrame = serde_json::from_value(data).unwrap();
    assert!(matches!(frame, protocol::ServerFrame::Event(e) if e.seq == 2));
}

#[tokio::test]
async fn last_n_replays_the_newest_then_live_events_follow() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    publish_n(&s, "t", 1..=5).await;
    let epoch = epoch(&s, "t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events?last_n=2").await;
    let ack = subscribed(&mut sse).await;
    assert_eq!(
        ack,
        json!({"topic": "t", "seq": 5, "epoch": epoch, "replayed": 2})
    );
    for seq in [4, 5] {
        let (id, ev) = sse.message().await;
        assert_eq!(id, Some(format!("{epoch}:{seq}")));
        assert_eq!(ev["seq"], seq);
        assert_eq!(ev["message"]["payload"]["n"], seq);
    }
    s.publish("t", json!({"n": 6})).await;
    assert_eq!(sse.message().await.1["seq"], 6);
}

/// Reads messages `from..=to` (checking order and ids) and returns the
/// last id seen.
async fn expect_seqs(sse: &mut Sse, epoch: &str, seqs: std::ops::RangeInclusive<u64>) -> String {
    let mut last = String::new();
    for seq in seqs {
        let (id, ev) = sse.message().await;
        assert_eq!(ev["seq"], seq, "no gap, no duplicate");
        last = id.expect("an id on a single-topic stream");
        assert_eq!(last, format!("{epoch}:{seq}"));
    }
    last
}

#[tokio::test]
async fn last_event_id_header_resumes_exactly_after_what_was_seen() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let epoch = epoch(&s, "t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
    publish_n(&s, "t", 1..=3).await;
    let last = expect_seqs(&mut sse, &epoch, 1..=3).await;
    drop(sse);
    // Missed while disconnected.
    publish_n(&s, "t", 4..=6).await;
    // `last_n` loses to the resume point, as `since` wins on the WebSocket.
    let mut sse = Sse::open_with(
        &s,
        "/api/topics/t/events?last_n=50",
        &[("Last-Event-ID", &last)],
    )
    .await;
    let ack = subscribed(&mut sse).await;
    assert_eq!(
        ack,
        json!({"topic": "t", "seq": 6, "epoch": epoch, "replayed": 3, "recovered": true})
    );
    expect_seqs(&mut sse, &epoch, 4..=6).await;
    s.publish("t", json!({"n": 7})).await;
    expect_seqs(&mut sse, &epoch, 7..=7).await;
}

#[tokio::test]
async fn last_event_id_query_resumes_too_and_the_header_wins_over_it() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let epoch = epoch(&s, "t").await;
    publish_n(&s, "t", 1..=6).await;
    let mut sse = Sse::open(&s, &format!("/api/topics/t/events?last_event_id={epoch}:2")).await;
    let ack = subscribed(&mut sse).await;
    assert_eq!(
        (ack["replayed"].clone(), ack["recovered"].clone()),
        (json!(4), json!(true))
    );
    expect_seqs(&mut sse, &epoch, 3..=6).await;
    drop(sse);

    // A browser keeps its URL and sends its newest id in the header.
    let newer = format!("{epoch}:5");
    let mut sse = Sse::open_with(
        &s,
        &format!("/api/topics/t/events?last_event_id={epoch}:2"),
        &[("last-event-id", &newer)],
    )
    .await;
    assert_eq!(subscribed(&mut sse).await["replayed"], 1);
    expect_seqs(&mut sse, &epoch, 6..=6).await;
}

#[tokio::test]
async fn a_stale_epoch_is_not_recovered_and_replays_nothing() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let old = epoch(&s, "t").await;
    s.delete("/api/topics/t").await;
    s.create_topic("t").await;
    publish_n(&s, "t", 1..=3).await;
    let new = epoch(&s, "t").await;
    assert_ne!(old, new);
    let mut sse = Sse::open_with(
        &s,
        "/api/topics/t/events?last_n=2",
        &[("Last-Event-ID", &format!("{old}:1"))],
    )
    .await;
    let ack = subscribed(&mut sse).await;
    assert_eq!(
        ack,
        json!({"topic": "t", "seq": 3, "epoch": new, "replayed": 0, "recovered": false})
    );
    s.publish("t", json!({"n": 4})).await;
    expect_seqs(&mut sse, &new, 4..=4).await;
}

/// A request that must be refused before any stream starts.
async fn refused(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = s.http.get(s.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("answered in time")
        .expect("request");
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/json", "{path}");
    let body = tokio::time::timeout(PATIENCE, response.json::<Value>())
        .await
        .expect("a whole body")
        .expect("JSON");
    (status, body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn errors_before_the_stream_are_plain_rest_errors() {
    let s = TestServer::start_with(|c| c.broker.max_subscriptions = 2).await;
    s.create_topic("t").await;
    s.create_topic("u").await;
    s.create_topic("v").await;
    for (path, headers, status, want) in [
        (
            "/api/topics/t/events",
            vec![("Last-Event-ID", "nope")],
            400,
            "BAD_REQUEST",
        ),
        (
            "/api/topics/t/events",
            vec![("Last-Event-ID", "e:-1")],
            400,
            "BAD_REQUEST",
        ),
        (
            "/api/topics/t/events?last_event_id=12",
            vec![],
            400,
            "BAD_REQUEST",
        ),
        ("/api/topics/t/events?last_n=x", vec![], 400, "BAD_REQUEST"),
        ("/api/topics/t/events?last_n=-1", vec![], 400, "BAD_REQUEST"),
        ("/api/topics/missing/events", vec![], 404, "TOPIC_NOT_FOUND"),
        ("/api/topics/a%20b/events", vec![], 400, "BAD_REQUEST"),
        ("/api/topics/t.*/events", vec![], 400, "BAD_REQUEST"),
        ("/api/topics/%FF/events", vec![], 400, "BAD_REQUEST"),
        ("/api/events", vec![], 400, "BAD_REQUEST"),
        ("/api/events?topic=", vec![], 400, "BAD_REQUEST"),
        ("/api/events?topic=t&topic=a*", vec![], 400, "BAD_REQUEST"),
        (
            "/api/events?topic=t&topic=missing",
            vec![],
            404,
            "TOPIC_NOT_FOUND",
        ),
        (
            "/api/events?topic=t&last_event_id=e:1",
            vec![],
            400,
            "BAD_REQUEST",
        ),
        (
            "/api/events?topic=t",
            vec![("Last-Event-ID", "e:1")],
            400,
            "BAD_REQUEST",
        ),
        (
            "/api/events?topic=t&topic=u&topic=v",
            vec![],
            429,
            "RATE_LIMITED",
        ),
    ] {
        let (got, body) = refused(&s, path, &headers).await;
        assert_eq!(
            (got, code(&body)),
            (status, want),
            "{path} {headers:?}: {body}"
        );
    }
    let (_, body) = refused(&s, "/api/topics/t/events", &[("Last-Event-ID", "nope")]).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EPOCH:SEQ"),
        "{body}"
    );
    let (_, body) = refused(&s, "/api/events?topic=t&last_event_id=e:1", &[]).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("one stream per topic"),
        "{body}"
    );
    // A repeated topic counts once towards the limit.
    let mut sse = Sse::open(&s, "/api/events?topic=t&topic=u&topic=t").await;
    for topic in ["t", "u", "t"] {
        assert_eq!(subscribed(&mut sse).await["topic"], topic);
    }
    // Refused streams left nothing behind.
    s.eventually("only the accepted stream is open", || async {
        sse_connections(&s).await.len() == 1
    })
    .await;
}

#[tokio::test]
async fn a_multi_topic_stream_acks_each_request_in_order_with_patterns() {
    let s = TestServer::start().await;
    for name in ["b", "orders.eu", "orders.us", "a"] {
        s.create_topic(name).await;
    }
    s.publish("orders.us", json!(1)).await;
    let eu = epoch(&s, "orders.eu").await;
    let mut sse = Sse::open(&s, "/api/events?topic=b&topic=orders.%3E&topic=a&last_n=5").await;
    let first = subscribed(&mut sse).await;
    assert_eq!(first["topic"], "b");
    assert_eq!(first["replayed"], 0);
    let pattern = subscribed(&mut sse).await;
    assert_eq!(pattern["topic"], "orders.>");
    assert_eq!(pattern["pattern"], true);
    assert!(pattern.get("seq").is_none(), "{pattern}");
    assert_eq!(
        pattern["topics"]["orders.eu"],
        json!({"seq": 0, "epoch": eu, "replayed": 0})
    );
    assert_eq!(pattern["topics"]["orders.us"]["replayed"], 1);
    // The pattern's replay follows its ack, before the next ack.
    let r = sse.next().await;
    assert_eq!(r.event.as_deref(), Some("message"));
    assert_eq!(r.id, None, "no ids on a multi-topic stream");
    assert_eq!(r.json()["topic"], "orders.us");
    assert_eq!(subscribed(&mut sse).await["topic"], "a");

    s.publish("a", json!("to a")).await;
    s.publish("orders.eu", json!("to eu")).await;
    for topic in ["a", "orders.eu"] {
        let (id, ev) = sse.message().await;
        assert_eq!((id, ev["topic"].as_str()), (None, Some(topic)));
    }
    // A new topic the pattern matches is announced, then followed.
    s.create_topic("orders.jp").await;
    let created = sse.next().await;
    assert_eq!(
        created.event.as_deref(),
        Some("topic_created"),
        "{}",
        created.raw
    );
    let jp = epoch(&s, "orders.jp").await;
    assert_eq!(created.json(), json!({"topic": "orders.jp", "epoch": jp}));
    s.publish("orders.jp", json!(1)).await;
    assert_eq!(sse.message().await.1["topic"], "orders.jp");
    // Deleting every named topic leaves the pattern: the stream goes on.
    for topic in ["a", "b"] {
        s.delete(&format!("/api/topics/{topic}")).await;
        let r = sse.next().await;
        assert_eq!(r.event.as_deref(), Some("topic_deleted"));
        assert_eq!(r.json(), json!({"topic": topic}));
    }
    s.publish("orders.eu", json!(2)).await;
    assert_eq!(sse.message().await.1["topic"], "orders.eu");
}

#[tokio::test]
async fn topic_deleted_ends_a_single_topic_stream() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
    s.delete("/api/topics/t").await;
    let r = sse.next().await;
    assert_eq!(r.raw, "event: topic_deleted\ndata: {\"topic\":\"t\"}\n\n");
    sse.ends().await;
    s.eventually("the stream's connection is gone", || async {
        sse_connections(&s).await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_multi_topic_stream_ends_when_its_last_topic_is_deleted() {
    let s = TestServer::start().await;
    s.create_topic("a").await;
    s.create_topic("b").await;
    let mut sse = Sse::open(&s, "/api/events?topic=a&topic=b").await;
    subscribed(&mut sse).await;
    subscribed(&mut sse).await;
    s.delete("/api/topics/a").await;
    assert_eq!(sse.next().await.event.as_deref(), Some("topic_deleted"));
    s.publish("b", json!(1)).await;
    assert_eq!(sse.message().await.1["topic"], "b");
    s.delete("/api/topics/b").await;
    let r = sse.next().await;
    assert_eq!(
        (r.event.as_deref(), r.json()),
        (Some("topic_deleted"), json!({"topic": "b"}))
    );
    sse.ends().await;
}

/// Publishes 32 KB messages to `topic` while the stream is not read, until
/// the board shows the stream dropped some (or was kicked); returns how
/// many were published.
async fn overflow(s: &TestServer, topic: &str) -> u64 {
    let payload = json!("x".repeat(32 << 10));
    for n in 1..=4000u64 {
        s.publish(topic, payload.clone()).await;
        let board = sse_connections(s).await;
        if board.is_empty() || board[0]["dropped"].as_u64().unwrap_or(0) > 0 {
            return n;
        }
    }
    panic!("the queue never overflowed");
}

#[tokio::test]
async fn a_slow_reader_gets_slow_consumer_and_the_gap_under_drop_oldest() {
    let s = TestServer::start_with(|c| {
        c.broker.subscriber_queue = 4;
        c.broker.slow_consumer_policy = SlowConsumerPolicy::DropOldest;
        c.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    s.create_topic("t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
    let published = overflow(&s, "t").await;
    s.publish("t", json!("last")).await;
    let published = published + 1;
    let (mut received, mut dropped, mut last_seq) = (0u64, 0u64, 0u64);
    while last_seq < published {
        let r = sse.next().await;
        match r.event.as_deref() {
            Some("message") => {
                let seq = r.json()["seq"].as_u64().unwrap();
                assert!(seq > last_seq, "increasing seq");
                received += 1;
                last_seq = seq;
            }
            Some("slow_consumer") => {
                let d = r.json();
                assert_eq!(d["topic"], "t");
                dropped += d["dropped"].as_u64().unwrap();
            }
            other => panic!("unexpected {other:?}: {}", r.raw),
        }
    }
    assert!(dropped > 0, "some events were dropped and said so");
    assert_eq!(
        received + dropped,
        published,
        "every event delivered or counted"
    );
    s.eventually("the counters agree", || async {
        let stats = s.stats().await;
        stats["topics"]["t"]["dropped"] == dropped && stats["topics"]["t"]["delivered"] == received
    })
    .await;
}

#[tokio::test]
async fn the_disconnect_policy_ends_the_stream_after_slow_consumer() {
    let s = TestServer::start_with(|c| {
        c.broker.subscriber_queue = 4;
        c.broker.slow_consumer_policy = SlowConsumerPolicy::Disconnect;
        c.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    s.create_topic("t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
    overflow(&s, "t").await;
    loop {
        let r = sse.next().await;
        match r.event.as_deref() {
            Some("message") => continue,
            Some("slow_consumer") => {
                assert_eq!(r.json()["topic"], "t");
                assert!(r.json()["dropped"].as_u64().unwrap() > 0);
                break;
            }
            other => panic!("unexpected {other:?}: {}", r.raw),
        }
    }
    sse.ends().await;
}

#[tokio::test]
async fn an_idle_stream_gets_pings_and_outlives_the_header_timeout() {
    let s = TestServer::start_with(|c| {
        c.heartbeat_interval = Duration::from_millis(200);
        c.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    s.create_topic("t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let r = sse.next_any().await.expect("still open");
        assert_eq!(r.raw, ": ping\n\n");
        pings += 1;
    }
    assert!(pings >= 4, "{pings} pings in 1.5 s at 200 ms");
    s.publish("t", json!(1)).await;
    assert_eq!(sse.message().await.1["seq"], 1);
}

#[tokio::test]
async fn streams_count_as_subscribers_and_show_on_the_board_as_sse() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
    assert_eq!(s.stats().await["topics"]["t"]["subscribers"], 1);
    publish_n(&s, "t", 1..=3).await;
    for _ in 0..3 {
        sse.message().await;
    }
    s.eventually("delivered counts the stream", || async {
        s.stats().await["topics"]["t"]["delivered"] == 3
    })
    .await;
    let board = sse_connections(&s).await;
    assert_eq!(board.len(), 1, "{board:?}");
    let c = &board[0];
    assert!(
        c["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{c}"
    );
    assert_eq!(c["delivered"], 3);
    assert_eq!(
        c["subscriptions"],
        json!([{"topic": "t", "pattern": false, "lag": 0, "delivered": 3, "dropped": 0}])
    );
    let (status, health) = s.get("/api/health").await;
    assert_eq!((status, health["connections"].as_u64()), (200, Some(1)));
    // An exact-name subscription without a client id, as presence lists it.
    let (_, presence) = s.get("/api/topics/t/presence").await;
    assert_eq!(presence["count"], 1, "{presence}");
    assert_eq!(presence["clients"][0]["client_id"], Value::Null);
    assert_eq!(presence["clients"][0]["connection_id"], c["id"]);
    // A client that goes away takes its subscription with it.
    drop(sse);
    s.eventually("the stream is gone", || async {
        sse_connections(&s).await.is_empty() && s.stats().await["topics"]["t"]["subscribers"] == 0
    })
    .await;
}

#[tokio::test]
async fn an_admin_close_ends_the_stream() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
    let id = sse_connections(&s).await[0]["id"].as_u64().unwrap();
    let (status, body) = s.delete(&format!("/api/connections/{id}")).await;
    assert_eq!(status, 200, "{body}");
    sse.ends().await;
    let (status, _) = s.get(&format!("/api/connections/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_connection_limit_counts_streams() {
    let s = TestServer::start_with(|c| c.max_connections = 1).await;
    s.create_topic("t").await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
    let (status, body) = refused(&s, "/api/topics/t/events", &[]).await;
    assert_eq!((status, code(&body)), (429, "RATE_LIMITED"), "{body}");
    drop(sse);
    s.eventually("the slot is free again", || async {
        sse_connections(&s).await.is_empty()
    })
    .await;
    let mut sse = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut sse).await;
}

#[tokio::test]
async fn with_keys_the_stream_needs_subscribe_and_takes_token_in_the_query() {
    let s = TestServer::start_with(|c| {
        c.api_keys = ["adm=admin", "pub=publish", "sub=subscribe"]
            .iter()
            .map(|k| k.parse().expect("key spec"))
            .collect();
    })
    .await;
    let created = s
        .http
        .post(s.url("/api/topics"))
        .header("authorization", "Bearer adm")
        .json(&json!({"name": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for (path, headers, status, want) in [
        ("/api/topics/t/events", vec![], 401, "UNAUTHORIZED"),
        (
            "/api/topics/t/events?token=nope",
            vec![],
            401,
            "UNAUTHORIZED",
        ),
        ("/api/topics/t/events?token=pub", vec![], 403, "FORBIDDEN"),
        ("/api/events?topic=t", vec![], 401, "UNAUTHORIZED"),
        ("/api/events?topic=t&token=pub", vec![], 403, "FORBIDDEN"),
        (
            "/api/topics/t/events",
            vec![("authorization", "Bearer pub")],
            403,
            "FORBIDDEN",
        ),
        // Keys in URLs are for the streams only.
        (
            "/api/topics/t/messages?token=sub",
            vec![],
            401,
            "UNAUTHORIZED",
        ),
    ] {
        let (got, body) = refused(&s, path, &headers).await;
        assert_eq!((got, code(&body)), (status, want), "{path}: {body}");
    }
    let mut sse = Sse::open(&s, "/api/topics/t/events?token=sub").await;
    assert_eq!(subscribed(&mut sse).await["topic"], "t");
    let mut multi = Sse::open(&s, "/api/events?topic=t&token=sub").await;
    assert_eq!(subscribed(&mut multi).await["topic"], "t");
    let mut bearer = Sse::open_with(&s, "/api/topics/t/events", &[("x-api-key", "sub")]).await;
    assert_eq!(subscribed(&mut bearer).await["topic"], "t");
}

#[tokio::test]
async fn shutdown_ends_streams_in_time_even_unread_ones() {
    let mut s = TestServer::start_with(|c| {
        c.shutdown_timeout = Duration::from_millis(500);
        c.header_read_timeout = Duration::from_secs(60);
        c.broker.subscriber_queue = 100_000;
        c.broker.max_queue_bytes = 256 << 20;
    })
    .await;
    s.create_topic("t").await;
    let mut reading = Sse::open(&s, "/api/topics/t/events").await;
    subscribed(&mut reading).await;
    // This one never reads: its socket and queue fill up.
    let _stalled = Sse::open(&s, "/api/topics/t/events").await;
    let payload = json!("y".repeat(32 << 10));
    for _ in 0..300 {
        s.publish("t", payload.clone()).await;
    }
    for _ in 0..300 {
        reading.message().await;
    }
    let started = Instant::now();
    s.shut_down().await.expect("served");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "shutdown took {:?}",
        started.elapsed()
    );
    reading.ends().await;
}

/// The real `curl -N` reads a stream as it comes.
#[tokio::test]
async fn curl_reads_the_stream_as_it_comes() {
    use std::io::BufRead;
    let s = TestServer::start().await;
    s.create_topic("demo").await;
    let epoch = epoch(&s, "demo").await;
    let mut curl = std::process::Command::new("curl")
        .args(["-N", "-s", &s.url("/api/topics/demo/events")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl is installed");
    let stdout = curl.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    for _ in 0..4 {
        lines.push(next_line(&mut rx).await);
    }
    assert_eq!(lines[..2], ["event: subscribed", "retry: 1000"]);
    assert!(
        lines[2].starts_with("data: {\"topic\":\"demo\""),
        "{lines:?}"
    );
    assert_eq!(lines[3], "");
    // Published after curl connected: it arrives at once (nothing buffers it).
    s.publish("demo", json!({"hello": "curl"})).await;
    assert_eq!(next_line(&mut rx).await, format!("id: {epoch}:1"));
    assert_eq!(next_line(&mut rx).await, "event: message");
    let data = next_line(&mut rx).await;
    let ev: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(ev["message"]["payload"], json!({"hello": "curl"}));
    assert_eq!(next_line(&mut rx).await, "");
    let _ = curl.kill();
    let _ = curl.wait();
    let _ = reader.join();
}

async fn next_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a line in time")
        .expect("curl still running")
}

/// A reader that stops reading holds neither memory nor the server: its
/// queue stays within its bound, and once its socket takes no byte for
/// `header_read_timeout` the stream is cut and its connection forgotten.
#[tokio::test]
async fn a_reader_that_stops_reading_is_cut_and_forgotten() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start_with(|c| {
        c.header_read_timeout = Duration::from_millis(500);
        c.broker.subscriber_queue = 16;
    })
    .await;
    s.create_topic("t").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(s.addr).await.unwrap();
    stalled
        .write_all(b"GET /api/topics/t/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    s.eventually("the stream is open", || async {
        sse_connections(&s).await.len() == 1
    })
    .await;
    let payload = json!("z".repeat(32 << 10));
    let mut most_queued = 0;
    let started = Instant::now();
    while !sse_connections(&s).await.is_empty() {
        assert!(
            started.elapsed() < PATIENCE,
            "the stalled stream was never cut"
        );
        s.publish("t", payload.clone()).await;
        if let Some(c) = sse_connections(&s).await.first() {
            most_queued = most_queued.max(c["queued"].as_u64().unwrap_or(0));
        }
    }
    assert!(
        most_queued <= 16 + 1,
        "queue within its bound: {most_queued}"
    );
    let stats = s.stats().await;
    assert_eq!(stats["topics"]["t"]["subscribers"], 0);
    assert!(
        stats["topics"]["t"]["dropped"].as_u64().unwrap() > 0,
        "{stats}"
    );
    drop(stalled);
}
