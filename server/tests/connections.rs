//! The connections board over real sockets: the list and one connection
//! with exact lag, queue and counters; closing one (info closed_by_admin,
//! close 4010, presence leave); the errors for unknown and malformed ids.

mod common;

use common::{Closed, TestServer};
use serde_json::{json, Value};

fn subscription<'a>(conn: &'a Value, topic: &str) -> &'a Value {
    conn["subscriptions"]
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["topic"] == topic))
        .unwrap_or_else(|| panic!("no subscription {topic}: {conn}"))
}

#[tokio::test]
async fn the_board_lists_each_connection_with_exact_lag_and_counters() {
    let s = TestServer::start().await;
    s.create_topic("b.a").await;
    s.create_topic("b.b").await;
    s.publish("b.a", json!(0)).await;
    let mut reader = s.ws().await;
    reader
        .subscribe("b.a", json!({"client_id": "reader", "last_n": 1}))
        .await;
    assert_eq!(reader.recv_skipping_pings().await["seq"], 1, "the replay");
    reader.subscribe("b.*", json!({})).await;
    for n in 0..3 {
        s.publish("b.a", json!(n)).await;
    }
    s.publish("b.b", json!(9)).await;
    for _ in 0..4 {
        assert_eq!(reader.recv_skipping_pings().await["type"], "event");
    }

    let (status, list) = s.get("/api/connections").await;
    assert_eq!(status, 200);
    let conns = list["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), 1, "{list}");
    let conn = &conns[0];
    assert_eq!(conn["transport"], "websocket");
    assert_eq!(conn["client_ids"], json!(["reader"]));
    assert!(conn["remote_addr"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    assert!(conn["connected_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    // Everything was read: no lag; delivered counts live events only.
    let exact = subscription(conn, "b.a");
    assert_eq!(
        (
            &exact["pattern"],
            &exact["lag"],
            &exact["delivered"],
            &exact["dropped"]
        ),
        (&json!(false), &json!(0), &json!(3), &json!(0)),
        "{conn}"
    );
    let pattern = subscription(conn, "b.*");
    assert_eq!(
        (&pattern["pattern"], &pattern["lag"], &pattern["delivered"]),
        (&json!(true), &json!(0), &json!(4)),
        "the sum over b.a and b.b: {conn}"
    );
    assert_eq!(
        (&conn["delivered"], &conn["dropped"]),
        (&json!(4), &json!(0))
    );

    // The queue's bounds, for the board's fill bar: the broker's own.
    let bounds = &s.state.config.broker;
    assert_eq!(
        (&conn["queue_limit"], &conn["queue_bytes_limit"]),
        (
            &json!(bounds.subscriber_queue),
            &json!(bounds.max_queue_bytes)
        ),
        "{conn}"
    );

    let id = conn["id"].as_u64().expect("id");
    let (status, one) = s.get(&format!("/api/connections/{id}")).await;
    assert_eq!((status, &one["id"]), (200, &json!(id)));
}

#[tokio::test]
async fn lag_grows_while_a_subscriber_stalls_and_closing_it_ends_it_with_4010() {
    let s = TestServer::start_with(|c| c.broker.subscriber_queue = 100_000).await;
    s.create_topic("lag").await;
    let mut watcher = s.ws().await;
    watcher
        .subscribe("lag", json!({"presence_events": true}))
        .await;
    let mut stalled = s.ws().await;
    stalled.subscribe("lag", json!({"client_id": "slow"})).await;
    assert_eq!(watcher.recv_skipping_pings().await["msg"], "join");
    // The watcher keeps reading (presence notices give way to a full
    // queue), and hands on the notices it gets.
    let (notices, mut notice) = tokio::sync::mpsc::unbounded_channel();
    let watching = tokio::spawn(async move {
        while let Ok(frame) = watcher.recv_or_close().await {
            if frame["type"] == "info" && frame["msg"] != "ping" && notices.send(frame).is_err() {
                break;
            }
        }
    });
    let (_, list) = s.get("/api/connections").await;
    let id = list["connections"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["client_ids"] == json!(["slow"])))
        .and_then(|c| c["id"].as_u64())
        .expect("the stalled connection");

    // Big events until the stalled reader's socket buffers are full and
    // the rest waits in its queue: its lag is what was not written.
    let payload = json!("x".repeat(60_000));
    let lag = |conn: &Value| subscription(conn, "lag")["lag"].as_u64().unwrap_or(0);
    let mut published = 0u64;
    let mut last_lag = 0;
    while published < 400 {
        published = s.publish("lag", payload.clone()).await;
        if published.is_multiple_of(50) {
            let (_, conn) = s.get(&format!("/api/connections/{id}")).await;
            last_lag = lag(&conn);
            if last_lag > 0 && conn["queued"].as_u64().unwrap_or(0) > 0 {
                break;
            }
        }
    }
    assert!(last_lag > 0, "a stalled reader lags");
    let (_, conn) = s.get(&format!("/api/connections/{id}")).await;
    assert_eq!(conn["queue_limit"], 100_000, "the configured bound");
    let queued = conn["queued"].as_u64().unwrap_or(0);
    assert!(
        lag(&conn) >= queued,
        "what is queued is not written yet: {conn}"
    );
    assert!(conn["queued_bytes"].as_u64().unwrap_or(0) >= queued * 60_000);

    let (status, closed) = s.delete(&format!("/api/connections/{id}")).await;
    assert_eq!(
        (status, &closed),
        (200, &json!({"status": "closed", "connection": id}))
    );
    // Closed while events were queued: they are dropped; then the notice
    // and 4010 (after whatever the socket buffers held).
    let mut saw_notice = false;
    let close = loop {
        match stalled.recv_or_close().await {
            Ok(frame) if frame["msg"] == "closed_by_admin" => saw_notice = true,
            Ok(_) => {}
            Err(closed) => break closed,
        }
    };
    assert!(saw_notice);
    match close {
        Closed::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4010),
        other => panic!("expected close 4010, got {other:?}"),
    }
    let leave = tokio::time::timeout(common::PATIENCE, notice.recv())
        .await
        .expect("a leave notice in time")
        .expect("the watcher is reading");
    assert_eq!(
        (&leave["msg"], &leave["client"]["client_id"]),
        (&json!("leave"), &json!("slow")),
        "{leave}"
    );
    // Gone: 404 for a second close and for a read.
    s.eventually("the connection is gone", || async {
        s.get(&format!("/api/connections/{id}")).await.0 == 404
    })
    .await;
    let (status, body) = s.delete(&format!("/api/connections/{id}")).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")));
    let counts = s.stats().await;
    let t = &counts["topics"]["lag"];
    assert_eq!(t["subscribers"], 1, "only the watcher");
    watching.abort();
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_refused() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/api/connections/999").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")));
    let (status, body) = s.delete("/api/connections/999").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")));
    let (status, body) = s.get("/api/connections/abc").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("BAD_REQUEST"))
    );
    let (status, body) = s.get("/api/connections").await;
    assert_eq!((status, &body["connections"]), (200, &json!([])));
}

#[tokio::test]
async fn the_board_is_for_admins() {
    let s = TestServer::start_with(|c| {
        c.api_keys = vec![
            "sub=subscribe,publish".parse().expect("a key"),
            "root=admin".parse().expect("a key"),
        ];
    })
    .await;
    for (key, status) in [("sub", 403), ("root", 200)] {
        let response = reqwest::Client::new()
            .get(format!("http://{}/api/connections", s.addr))
            .header("Authorization", format!("Bearer {key}"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status().as_u16(), status, "{key}");
    }
}
