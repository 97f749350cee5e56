//! Idempotent publish and batch publish over real sockets: the contract's
//! "Idempotent publish" and "Batch publish (REST)" line by line, and the
//! bad input the issue names (a duplicate id with another payload, a batch
//! mixing good and bad items).

mod common;

use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

async fn publish(s: &TestServer, topic: &str, message: Value) -> (u16, Value) {
    s.post(&format!("/api/topics/{topic}/messages"), message)
        .await
}

/// The `pubsub_dedup_bytes` gauge.
async fn dedup_bytes(s: &TestServer) -> u64 {
    s.metric("pubsub_dedup_bytes").await as u64
}

async fn history(s: &TestServer, topic: &str) -> Vec<Value> {
    let (status, page) = s.get(&format!("/api/topics/{topic}/messages")).await;
    assert_eq!(status, 200, "{page}");
    page["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_reused_id_is_answered_like_the_original_and_published_once() {
    let s = TestServer::start().await;
    s.create_topic("orders").await;
    let mut sub = s.ws().await;
    sub.subscribe("orders", json!({})).await;

    let (status, first) = publish(&s, "orders", json!({"id": "o-1", "payload": 1})).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["seq"], 1);
    assert!(first.get("duplicate").is_none(), "absent when new: {first}");

    // Only the id is compared: another payload is still a retry.
    let (status, again) = publish(&s, "orders", json!({"id": "o-1", "payload": "other"})).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(
        again,
        json!({"status": "published", "topic": "orders", "id": "o-1", "seq": 1, "duplicate": true})
    );

    // Over the WebSocket too, with the original's seq.
    let mut publisher = s.ws().await;
    publisher
        .send(
            json!({"type": "publish", "topic": "orders", "request_id": "p",
                     "message": {"id": "o-1", "payload": 3}}),
        )
        .await;
    let ack = publisher.recv_skipping_pings().await;
    assert_eq!(
        (&ack["type"], &ack["seq"], &ack["id"], &ack["duplicate"]),
        (&json!("ack"), &json!(1), &json!("o-1"), &json!(true)),
        "{ack}"
    );

    // A new id goes on at seq 2; the subscriber got each message once.
    let (_, next) = publish(&s, "orders", json!({"id": "o-2", "payload": 2})).await;
    assert_eq!(next["seq"], 2);
    let one = sub.recv_skipping_pings().await;
    let two = sub.recv_skipping_pings().await;
    assert_eq!(
        (&one["seq"], &one["message"]["payload"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(two["seq"], 2, "no second event for the retries: {two}");
    sub.expect_silence(Duration::from_millis(200)).await;

    let kept = history(&s, "orders").await;
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0]["payload"], 1, "the original stays");
    let stats = s.stats().await;
    assert_eq!(stats["topics"]["orders"]["messages"], 2);
    assert_eq!(stats["totals"]["published"], 2);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("pubsub_publish_duplicates_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ids_are_per_topic_per_epoch_and_server_assigned_ones_count() {
    let s = TestServer::start().await;
    s.create_topic("a").await;
    s.create_topic("b").await;
    let (_, on_a) = publish(&s, "a", json!({"id": "x", "payload": 1})).await;
    let (_, on_b) = publish(&s, "b", json!({"id": "x", "payload": 1})).await;
    assert_eq!((&on_a["seq"], &on_b["seq"]), (&json!(1), &json!(1)));
    assert!(on_b.get("duplicate").is_none(), "another topic: {on_b}");

    // An id the server assigned is remembered like a given one.
    let (_, assigned) = publish(&s, "a", json!({"payload": 2})).await;
    let id = assigned["id"].as_str().expect("an id");
    let (_, retry) = publish(&s, "a", json!({"id": id, "payload": 2})).await;
    assert_eq!(
        (&retry["seq"], &retry["duplicate"]),
        (&json!(2), &json!(true))
    );

    // A topic deleted and created again is a new epoch: nothing remembered.
    s.delete("/api/topics/a").await;
    s.create_topic("a").await;
    let (_, fresh) = publish(&s, "a", json!({"id": "x", "payload": 1})).await;
    assert_eq!(fresh["seq"], 1);
    assert!(fresh.get("duplicate").is_none(), "{fresh}");
}

#[tokio::test]
async fn the_window_and_the_id_count_bound_what_is_remembered() {
    let s = TestServer::start_with(|c| {
        c.broker.dedup_window = Duration::from_millis(300);
        c.broker.dedup_ids = 3;
    })
    .await;
    s.create_topic("t").await;
    for id in ["a", "b", "c", "d"] {
        publish(&s, "t", json!({"id": id, "payload": id})).await;
    }
    // Over dedup_ids: the oldest is forgotten, the newest remembered.
    let (_, a) = publish(&s, "t", json!({"id": "a", "payload": 0})).await;
    assert_eq!(a["seq"], 5, "a was forgotten: {a}");
    let (_, d) = publish(&s, "t", json!({"id": "d", "payload": 0})).await;
    assert_eq!((&d["seq"], &d["duplicate"]), (&json!(4), &json!(true)));
    // Past the window nothing is.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, late) = publish(&s, "t", json!({"id": "d", "payload": 0})).await;
    assert_eq!(late["seq"], 6, "past the window: {late}");
    assert!(late.get("duplicate").is_none());

    // A topic that stops publishing gives its ids back once they expire
    // (the once-a-second sweep), without another publish.
    assert!(dedup_bytes(&s).await > 0);
    s.eventually("the expired ids are forgotten", || async {
        dedup_bytes(&s).await == 0
    })
    .await;
}

#[tokio::test]
async fn a_zero_window_turns_it_off() {
    let s = TestServer::start_with(|c| c.broker.dedup_window = Duration::ZERO).await;
    s.create_topic("t").await;
    publish(&s, "t", json!({"id": "same", "payload": 1})).await;
    let (_, second) = publish(&s, "t", json!({"id": "same", "payload": 1})).await;
    assert_eq!(second["seq"], 2);
    assert!(second.get("duplicate").is_none());
}

// ------------------------------------------------------------ batch

#[tokio::test]
async fn a_batch_publishes_in_order_and_answers_each_item() {
    let s = TestServer::start().await;
    s.create_topic("orders").await;
    s.create_topic("audit").await;
    let mut sub = s.ws().await;
    sub.subscribe("orders", json!({})).await;
    let big = "x".repeat(70_000);
    let (status, body) = s
        .post(
            "/api/publish",
            json!({"messages": [
                {"topic": "orders", "message": {"id": "o-1", "payload": 1}},
                {"topic": "bad name", "message": {"payload": 2}},
                {"topic": "missing", "message": {"payload": 3}},
                {"topic": "audit", "message": {"payload": big}},
                {"topic": "audit"},
                {"topic": 7, "message": {"payload": 4}},
                {"topic": "audit", "message": [1]},
                {"topic": "audit", "message": {"id": "", "payload": 5}},
                {"topic": "orders", "message": {"id": "o-2", "payload": 6}},
                {"topic": "orders", "message": {"id": "o-1", "payload": "retry"}},
                {"topic": "audit", "message": {"payload": 7}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    let codes: Vec<Value> = results.iter().map(|r| r["error"]["code"].clone()).collect();
    assert_eq!(
        codes,
        [
            Value::Null,
            json!("BAD_REQUEST"),
            json!("TOPIC_NOT_FOUND"),
            json!("PAYLOAD_TOO_LARGE"),
            json!("BAD_REQUEST"),
            json!("BAD_REQUEST"),
            json!("BAD_REQUEST"),
            json!("BAD_REQUEST"),
            Value::Null,
            Value::Null,
            Value::Null,
        ],
        "{body}"
    );
    for r in results.iter().filter(|r| r.get("error").is_some()) {
        assert!(
            r["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{r}"
        );
    }
    assert_eq!(
        results[0],
        json!({"status": "published", "topic": "orders", "id": "o-1", "seq": 1})
    );
    assert_eq!(results[8]["seq"], 2);
    assert_eq!(
        (&results[9]["seq"], &results[9]["duplicate"]),
        (&json!(1), &json!(true))
    );
    assert_eq!(
        (&results[10]["topic"], &results[10]["seq"]),
        (&json!("audit"), &json!(1))
    );

    // The subscriber saw orders' two messages once each, in order.
    assert_eq!(sub.recv_skipping_pings().await["seq"], 1);
    assert_eq!(sub.recv_skipping_pings().await["seq"], 2);
    sub.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_batch_keeps_its_order_within_a_topic() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let messages: Vec<Value> = (0..200)
        .map(|i| json!({"topic": "t", "message": {"id": format!("m{i}"), "payload": i}}))
        .collect();
    let (status, body) = s
        .post("/api/publish", json!({ "messages": messages }))
        .await;
    assert_eq!(status, 200);
    let seqs: Vec<u64> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["seq"].as_u64().expect("published"))
        .collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    let kept = history(&s, "t").await;
    let payloads: Vec<Value> = kept.iter().map(|m| m["payload"].clone()).collect();
    assert_eq!(payloads, (100..200).map(|i| json!(i)).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_batch_of_the_wrong_shape_publishes_nothing() {
    let s = TestServer::start_with(|c| c.max_batch = 3).await;
    s.create_topic("t").await;
    let item = json!({"topic": "t", "message": {"payload": 1}});
    let refused = [
        json!({"messages": []}),
        json!({"messages": [item, item, item, item]}),
        json!({}),
        json!({"messages": {"topic": "t"}}),
        json!({"messages": [item, 5]}),
        json!({"messages": [item, null]}),
        json!([item]),
        json!({"messages": null}),
    ];
    for body in refused {
        let (status, answer) = s.post("/api/publish", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], "BAD_REQUEST", "{answer}");
    }
    let (status, answer) = s.post_raw("/api/publish", "{\"messages\": [").await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("BAD_REQUEST"))
    );
    assert!(history(&s, "t").await.is_empty(), "nothing was published");
}

#[tokio::test]
async fn a_batch_over_the_body_limit_is_413() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 10_000).await;
    s.create_topic("t").await;
    let messages: Vec<Value> = (0..10)
        .map(|_| json!({"topic": "t", "message": {"payload": "y".repeat(2_000)}}))
        .collect();
    let (status, answer) = s
        .post("/api/publish", json!({ "messages": messages }))
        .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (413, &json!("PAYLOAD_TOO_LARGE"))
    );
    assert!(history(&s, "t").await.is_empty());
}

#[tokio::test]
async fn remembered_ids_stay_within_the_byte_budget_over_all_topics() {
    const BUDGET: u64 = 64 << 10;
    let s = TestServer::start_with(|c| c.broker.max_dedup_bytes = BUDGET as usize).await;
    let mut peak = 0;
    for topic in ["a", "b", "c"] {
        s.create_topic(topic).await;
        for batch in 0..10 {
            let messages: Vec<Value> = (0..200)
                .map(|i| json!({"topic": topic, "message": {"id": format!("{topic}-{batch}-{i}"), "payload": i}}))
                .collect();
            let (status, _) = s
                .post("/api/publish", json!({ "messages": messages }))
                .await;
            assert_eq!(status, 200);
            peak = peak.max(dedup_bytes(&s).await);
        }
    }
    // Within the budget, give or take one table growing at once (a topic's
    // table doubles when it fills: here at most 2,048 ids, about 120 KB).
    eprintln!("dedup bytes peak {peak} for a budget of {BUDGET}");
    assert!(peak > BUDGET / 2, "the budget was reached: {peak}");
    assert!(
        peak <= BUDGET + (128 << 10),
        "{peak} bytes over a budget of {BUDGET}"
    );
    // Every topic still knows its newest id: a retry of it is a duplicate.
    for topic in ["a", "b", "c"] {
        let id = format!("{topic}-9-199");
        let (_, retry) = publish(&s, topic, json!({"id": id, "payload": 0})).await;
        assert_eq!(
            (&retry["seq"], &retry["duplicate"]),
            (&json!(2000), &json!(true)),
            "{retry}"
        );
    }
    // A deleted topic's ids are given back.
    for topic in ["a", "b", "c"] {
        s.delete(&format!("/api/topics/{topic}")).await;
    }
    assert_eq!(dedup_bytes(&s).await, 0);
}
