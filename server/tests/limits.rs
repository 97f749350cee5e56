//! Every limit over the network: hit it, get the contract's error, nothing
//! happens for anyone else, and the room comes back when freed.

mod common;

use common::{TestServer, Ws};
use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;

#[tokio::test]
async fn connections_over_the_limit_are_refused_until_one_leaves() {
    let s = TestServer::start_with(|c| c.max_connections = 2).await;
    let url = format!("ws://{}/ws", s.addr);
    let mut first = Ws::connect(&url).await;
    let _second = Ws::connect(&url).await;
    match tokio_tungstenite::connect_async(&url).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("a JSON error body");
            assert_eq!(body["error"]["code"], "RATE_LIMITED");
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // The connections that are in keep working.
    first.send(json!({"type": "ping"})).await;
    assert_eq!(first.recv_json().await["type"], "pong");
    drop(first);
    s.eventually("a slot is free again", || async {
        tokio_tungstenite::connect_async(&url).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let s = TestServer::start_with(|c| c.broker.max_subscriptions = 2).await;
    for t in ["a", "b", "c"] {
        s.create_topic(t).await;
    }
    let mut ws = s.ws().await;
    ws.subscribe("a", json!({})).await;
    ws.subscribe("b", json!({})).await;
    ws.send(json!({"type": "subscribe", "topic": "c", "request_id": "third"}))
        .await;
    let e = ws.recv_json().await;
    assert_eq!(
        (&e["error"]["code"], &e["request_id"]),
        (&json!("RATE_LIMITED"), &json!("third")),
        "{e}"
    );
    ws.subscribe("a", json!({})).await; // a repeat is no new subscription
    ws.send(json!({"type": "unsubscribe", "topic": "a", "request_id": "u"}))
        .await;
    assert_eq!(ws.recv_json().await["type"], "ack");
    ws.subscribe("c", json!({})).await;
    let mut other = s.ws().await;
    other.subscribe("a", json!({})).await; // the limit is per connection
    let (_, stats) = s.get("/api/stats").await;
    assert_eq!(stats["totals"]["subscribers"], 3);
}

#[tokio::test]
async fn topics_are_limited() {
    let s = TestServer::start_with(|c| c.broker.max_topics = 2).await;
    s.create_topic("a").await;
    s.create_topic("b").await;
    let (status, body) = s.post("/api/topics", json!({"name": "c"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("RATE_LIMITED"))
    );
    // A duplicate is still a duplicate, not a limit.
    let (status, _) = s.post("/api/topics", json!({"name": "a"})).await;
    assert_eq!(status, 409);
    assert_eq!(s.delete("/api/topics/a").await.0, 200);
    s.create_topic("c").await;
    let (_, topics) = s.get("/api/topics").await;
    assert_eq!(topics["topics"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn publishes_over_the_rate_are_refused_and_not_published() {
    let s = TestServer::start_with(|c| {
        c.broker.publish_rate = 5;
        c.broker.publish_burst = 5;
    })
    .await;
    s.create_topic("t").await;
    let mut ws = s.ws().await;
    let sent = 30;
    for i in 0..sent {
        ws.send(json!({"type": "publish", "topic": "t", "message": {"payload": i}, "request_id": i.to_string()}))
            .await;
    }
    let (mut acked, mut limited) = (0, 0);
    for _ in 0..sent {
        let reply = ws.recv_json().await;
        match (reply["type"].as_str(), reply["error"]["code"].as_str()) {
            (Some("ack"), _) => acked += 1,
            (Some("error"), Some("RATE_LIMITED")) => limited += 1,
            other => panic!("unexpected reply {other:?}: {reply}"),
        }
    }
    assert_eq!(acked + limited, sent);
    assert!(acked >= 5, "the burst passes: {acked}");
    assert!(limited > 0, "30 publishes at once exceed a burst of 5");
    let (_, detail) = s.get("/api/topics/t").await;
    assert_eq!(detail["seq"], acked, "refused publishes took no seq");
    // Another connection has its own bucket.
    let mut other = s.ws().await;
    other
        .send(json!({"type": "publish", "topic": "t", "message": {"payload": 0}}))
        .await;
    assert_eq!(other.recv_json().await["type"], "ack");
}

#[tokio::test]
async fn rest_bodies_over_the_limit_are_413() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 1000).await;
    s.create_topic("t").await;
    let (status, body) = s
        .post_raw(
            "/api/topics/t/messages",
            format!("{{\"payload\":\"{}\"}}", "x".repeat(2000)),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("PAYLOAD_TOO_LARGE"))
    );
    let (status, _) = s
        .post("/api/topics/t/messages", json!({"payload": "small"}))
        .await;
    assert_eq!(status, 201);
}
