//! Presence over real sockets: every line of the contract's "Presence"
//! part (client ids, the REST and WebSocket presence requests, join and
//! leave notices) and the bad input the issue names.

mod common;

use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

fn clients(presence: &Value) -> Vec<(Value, u64)> {
    presence["clients"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    assert!(
                        c["joined_at"].as_str().is_some_and(|t| t.ends_with('Z')),
                        "{c}"
                    );
                    (
                        c["client_id"].clone(),
                        c["connection_id"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn presence_lists_exact_subscriptions_oldest_first_over_rest_and_websocket() {
    let s = TestServer::start().await;
    s.create_topic("room").await;
    let (status, empty) = s.get("/api/topics/room/presence").await;
    assert_eq!((status, &empty["count"]), (200, &json!(0)));

    let mut alice = s.ws().await;
    alice.subscribe("room", json!({"client_id": "alice"})).await;
    let mut anon = s.ws().await;
    anon.subscribe("room", json!({})).await;
    // Patterns are not presence.
    let mut pattern = s.ws().await;
    pattern.subscribe(">", json!({})).await;

    let (status, presence) = s.get("/api/topics/room/presence").await;
    assert_eq!(status, 200);
    assert_eq!(
        (&presence["topic"], &presence["count"]),
        (&json!("room"), &json!(2))
    );
    let listed = clients(&presence);
    assert_eq!(listed[0].0, json!("alice"));
    assert_eq!(listed[1].0, Value::Null, "no client_id: null");
    assert!(listed[0].1 != listed[1].1, "connection ids differ");

    anon.send(json!({"type": "presence", "topic": "room", "request_id": "p"}))
        .await;
    let frame = anon.recv_skipping_pings().await;
    assert_eq!(
        (
            &frame["type"],
            &frame["request_id"],
            &frame["topic"],
            &frame["count"]
        ),
        (&json!("presence"), &json!("p"), &json!("room"), &json!(2)),
        "{frame}"
    );
    assert_eq!(clients(&frame), listed);
    assert!(frame["ts"].is_string());

    // A repeated subscribe keeps its place; an unsubscribe leaves.
    alice.subscribe("room", json!({"client_id": "alice"})).await;
    alice
        .send(json!({"type": "unsubscribe", "topic": "room", "request_id": "u"}))
        .await;
    alice.recv_skipping_pings().await;
    let (_, presence) = s.get("/api/topics/room/presence").await;
    assert_eq!(clients(&presence), [listed[1].clone()]);
}

#[tokio::test]
async fn unknown_topics_and_bad_client_ids_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    s.create_topic("room").await;
    let (status, body) = s.get("/api/topics/nope/presence").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("TOPIC_NOT_FOUND"))
    );
    let mut ws = s.ws().await;
    ws.send(json!({"type": "presence", "topic": "nope", "request_id": "p"}))
        .await;
    let reply = ws.recv_skipping_pings().await;
    assert_eq!(
        (&reply["error"]["code"], &reply["request_id"]),
        (&json!("TOPIC_NOT_FOUND"), &json!("p"))
    );
    for (i, client_id) in [json!("x".repeat(129)), json!(""), json!(7)]
        .iter()
        .enumerate()
    {
        ws.send(
            json!({"type": "subscribe", "topic": "room", "client_id": client_id,
                       "request_id": format!("s{i}")}),
        )
        .await;
        let reply = ws.recv_skipping_pings().await;
        assert_eq!(
            reply["error"]["code"], "BAD_REQUEST",
            "{client_id}: {reply}"
        );
    }
    let (_, presence) = s.get("/api/topics/room/presence").await;
    assert_eq!(presence["count"], 0, "nothing subscribed");
    let (_, health) = s.get("/api/health").await;
    assert_eq!(health["subscribers"], 0);
    // 128 characters are fine.
    ws.subscribe("room", json!({"client_id": "y".repeat(128)}))
        .await;
}

#[tokio::test]
async fn presence_events_announce_others_joining_and_leaving() {
    let s = TestServer::start().await;
    s.create_topic("room").await;
    let mut watcher = s.ws().await;
    watcher
        .subscribe("room", json!({"client_id": "w", "presence_events": true}))
        .await;
    let mut quiet = s.ws().await;
    quiet.subscribe("room", json!({"client_id": "q"})).await;

    let join = watcher.recv_skipping_pings().await;
    assert_eq!(
        (
            &join["type"],
            &join["msg"],
            &join["topic"],
            &join["client"]["client_id"]
        ),
        (&json!("info"), &json!("join"), &json!("room"), &json!("q")),
        "{join}"
    );
    let q_id = join["client"]["connection_id"].clone();
    assert!(join["client"]["joined_at"].is_string());

    // A pattern subscription is no presence: no notice.
    let mut by_pattern = s.ws().await;
    by_pattern.subscribe("*", json!({})).await;

    // Leaving by unsubscribe, then by closing.
    quiet
        .send(json!({"type": "unsubscribe", "topic": "room", "request_id": "u"}))
        .await;
    let leave = watcher.recv_skipping_pings().await;
    assert_eq!(
        (&leave["msg"], &leave["client"]["connection_id"]),
        (&json!("leave"), &q_id),
        "{leave}"
    );
    let mut brief = s.ws().await;
    brief.subscribe("room", json!({"client_id": "b"})).await;
    let join = watcher.recv_skipping_pings().await;
    assert_eq!(
        (&join["msg"], &join["client"]["client_id"]),
        (&json!("join"), &json!("b"))
    );
    drop(brief);
    let leave = watcher.recv_skipping_pings().await;
    assert_eq!(
        (&leave["msg"], &leave["client"]["client_id"]),
        (&json!("leave"), &json!("b"))
    );
    watcher.expect_silence(Duration::from_millis(100)).await;
    // The others asked for nothing and get nothing.
    assert_eq!(quiet.recv_skipping_pings().await["request_id"], "u");
    quiet.expect_silence(Duration::from_millis(50)).await;
    // Notices are not counted as events.
    let stats = s.stats().await;
    assert_eq!(stats["topics"]["room"]["dropped"], 0);
}

#[tokio::test]
async fn presence_needs_the_subscribe_role() {
    let s = TestServer::start_with(|c| {
        c.api_keys = vec![
            "pub-only=publish".parse().expect("a key"),
            "sub=subscribe".parse().expect("a key"),
            "root=admin".parse().expect("a key"),
        ];
    })
    .await;
    let rest = protocol::client::Client::new(&s.addr.to_string()).with_api_key(Some("root".into()));
    rest.create_topic("room").await.expect("created");
    for (key, status) in [("pub-only", 403), ("sub", 200)] {
        let response = reqwest::Client::new()
            .get(format!("http://{}/api/topics/room/presence", s.addr))
            .header("Authorization", format!("Bearer {key}"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status().as_u16(), status, "{key}");
    }
}
