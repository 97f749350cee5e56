//! The REST API over a real socket, row by row of the contract.

mod common;

use common::TestServer;
use serde_json::json;

fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn health_reports_counts() {
    let s = TestServer::start().await;
    s.create_topic("a").await;
    let (status, body) = s.get("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["topics"], 1);
    assert_eq!(body["subscribers"], 0);
    assert_eq!(body["connections"], 0);
    assert!(body["uptime_sec"].is_u64());
}

#[tokio::test]
async fn topics_are_created_listed_read_and_deleted() {
    let s = TestServer::start().await;
    let (status, body) = s.post("/api/topics", json!({"name": "orders.eu"})).await;
    assert_eq!(
        (status, body),
        (201, json!({"status": "created", "topic": "orders.eu"}))
    );
    s.create_topic("alpha").await;

    let (status, body) = s.post("/api/topics", json!({"name": "alpha"})).await;
    assert_error(status, &body, 409, "TOPIC_EXISTS");

    let (status, body) = s.get("/api/topics").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "orders.eu"], "sorted by name");
    let first = &body["topics"][0];
    assert_eq!(
        (first["subscribers"].as_u64(), first["messages"].as_u64()),
        (Some(0), Some(0))
    );
    let created = first["created_at"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.len() == 24,
        "RFC 3339 with ms: {created}"
    );

    let (status, body) = s.get("/api/topics/alpha").await;
    assert_eq!(status, 200);
    for key in [
        "name",
        "subscribers",
        "messages",
        "created_at",
        "seq",
        "epoch",
    ] {
        assert!(body.get(key).is_some(), "{key} in {body}");
    }
    assert_eq!(body["seq"], 0);

    let (status, body) = s.delete("/api/topics/alpha").await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "deleted", "topic": "alpha"}))
    );
    let (status, body) = s.delete("/api/topics/alpha").await;
    assert_error(status, &body, 404, "TOPIC_NOT_FOUND");
    let (status, body) = s.get("/api/topics/alpha").await;
    assert_error(status, &body, 404, "TOPIC_NOT_FOUND");
}

#[tokio::test]
async fn bad_topic_requests_are_bad_requests() {
    let s = TestServer::start().await;
    for body in [
        json!({"name": ""}),
        json!({"name": "has space"}),
        json!({"name": "x".repeat(256)}),
        json!({"name": 5}),
        json!({}),
        json!([1, 2]),
    ] {
        let (status, answer) = s.post("/api/topics", body.clone()).await;
        assert_error(status, &answer, 400, "BAD_REQUEST");
    }
    let (status, answer) = s.post_raw("/api/topics", "{not json").await;
    assert_error(status, &answer, 400, "BAD_REQUEST");
    let (status, answer) = s.get("/api/topics/bad%20name").await;
    assert_error(status, &answer, 400, "BAD_REQUEST");
    s.create_topic(&"x".repeat(255)).await;
}

#[tokio::test]
async fn publishing_assigns_ids_and_contiguous_seqs() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let (status, body) = s
        .post("/api/topics/t/messages", json!({"payload": {"n": 1}}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["status"], &body["topic"], &body["seq"]),
        (&json!("published"), &json!("t"), &json!(1))
    );
    let assigned = body["id"].as_str().unwrap();
    assert!(!assigned.is_empty());

    let (_, body) = s
        .post(
            "/api/topics/t/messages",
            json!({"id": "mine-1", "payload": null}),
        )
        .await;
    assert_eq!((&body["id"], &body["seq"]), (&json!("mine-1"), &json!(2)));

    let (_, other) = s
        .post("/api/topics/t/messages", json!({"payload": [1]}))
        .await;
    assert_ne!(
        other["id"].as_str().unwrap(),
        assigned,
        "assigned ids are unique"
    );

    let (status, body) = s
        .post("/api/topics/nope/messages", json!({"payload": 1}))
        .await;
    assert_error(status, &body, 404, "TOPIC_NOT_FOUND");
    for bad in [
        json!({}),
        json!({"id": "", "payload": 1}),
        json!({"id": "x".repeat(129), "payload": 1}),
        json!({"id": 7, "payload": 1}),
    ] {
        let (status, body) = s.post("/api/topics/t/messages", bad).await;
        assert_error(status, &body, 400, "BAD_REQUEST");
    }
    let (_, detail) = s.get("/api/topics/t").await;
    assert_eq!(
        (&detail["seq"], &detail["messages"]),
        (&json!(3), &json!(3)),
        "refused messages take no seq"
    );
}

#[tokio::test]
async fn oversized_payloads_and_bodies_are_refused_whole() {
    let s = TestServer::start_with(|c| {
        c.broker.max_message_bytes = 1000;
        c.max_body_bytes = 10_000;
    })
    .await;
    s.create_topic("t").await;
    // The serialized payload `"xxx…"` is 998 + 2 quotes = 1000 bytes: allowed.
    let (status, _) = s
        .post(
            "/api/topics/t/messages",
            json!({"payload": "x".repeat(998)}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = s
        .post(
            "/api/topics/t/messages",
            json!({"payload": "x".repeat(999)}),
        )
        .await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");
    let (status, body) = s
        .post(
            "/api/topics/t/messages",
            json!({"payload": "x".repeat(20_000)}),
        )
        .await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");
    let (_, detail) = s.get("/api/topics/t").await;
    assert_eq!(
        detail["seq"], 1,
        "nothing of the refused messages was published"
    );
}

#[tokio::test]
async fn history_reads_last_n_since_or_everything() {
    let s = TestServer::start_with(|c| c.broker.history_size = 5).await;
    s.create_topic("t").await;
    for n in 1..=7 {
        s.publish("t", json!({"n": n})).await;
    }
    let seqs = |body: &serde_json::Value| -> Vec<u64> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    let (status, body) = s.get("/api/topics/t/messages").await;
    assert_eq!(status, 200);
    assert_eq!(
        seqs(&body),
        [3, 4, 5, 6, 7],
        "the whole history, oldest first"
    );
    assert_eq!(body["topic"], "t");
    let (_, detail) = s.get("/api/topics/t").await;
    assert_eq!(body["epoch"], detail["epoch"]);
    let m = &body["messages"][4];
    assert_eq!(m["payload"], json!({"n": 7}));
    assert!(m["id"].is_string() && m["ts"].as_str().unwrap().ends_with('Z'));

    assert_eq!(
        seqs(&s.get("/api/topics/t/messages?last_n=2").await.1),
        [6, 7]
    );
    assert_eq!(
        seqs(&s.get("/api/topics/t/messages?last_n=0").await.1),
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(&s.get("/api/topics/t/messages?since_seq=5").await.1),
        [6, 7]
    );
    assert_eq!(
        seqs(&s.get("/api/topics/t/messages?since_seq=7").await.1),
        Vec::<u64>::new()
    );

    for q in [
        "last_n=1&since_seq=1",
        "last_n=-1",
        "last_n=abc",
        "since_seq=",
    ] {
        let (status, body) = s.get(&format!("/api/topics/t/messages?{q}")).await;
        assert_error(status, &body, 400, "BAD_REQUEST");
    }
    let (status, body) = s.get("/api/topics/nope/messages").await;
    assert_error(status, &body, 404, "TOPIC_NOT_FOUND");
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/api/nope").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/nope"),
        "{body}"
    );
    let r = s.http.delete(s.url("/api/topics")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET,HEAD,POST");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_REQUEST");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DELETE /api/topics"),
        "{body}"
    );
    let (status, _) = s.post("/api/health", json!({})).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn stats_add_up() {
    let s = TestServer::start().await;
    s.create_topic("a").await;
    s.create_topic("b").await;
    let mut ws = s.ws().await;
    ws.subscribe("a", json!({})).await;
    s.publish("a", json!(1)).await;
    s.publish("a", json!(2)).await;
    s.publish("b", json!(3)).await;
    ws.recv_skipping_pings().await;
    ws.recv_skipping_pings().await;
    s.eventually("both events are counted as delivered", || async {
        s.stats().await["totals"]["delivered"] == 2
    })
    .await;
    let stats = s.stats().await;
    let totals = &stats["totals"];
    assert_eq!(
        (
            &totals["topics"],
            &totals["subscribers"],
            &totals["connections"],
            &totals["published"],
            &totals["dropped"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(3), &json!(0))
    );
    assert_eq!(
        stats["topics"]["a"],
        json!({"messages": 2, "subscribers": 1, "delivered": 2, "dropped": 0})
    );
    assert_eq!(
        stats["topics"]["b"],
        json!({"messages": 1, "subscribers": 0, "delivered": 0, "dropped": 0})
    );
    assert!(stats["uptime_sec"].is_u64());
}

#[tokio::test]
async fn the_ui_is_served_at_the_root() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<title>pubsub</title>"), "{html}");
    // The bundle's path carries its version when a site is built here.
    let script = html
        .split("src=\"")
        .chain(html.split("href=\""))
        .filter_map(|s| s.split('"').next())
        .find(|s| s.starts_with("/pkg/") && s.ends_with("/pubsub.js"));
    assert!(script.is_some(), "hydration script: {html}");
}

#[tokio::test]
async fn stats_history_keeps_per_second_samples() {
    let s = TestServer::start().await;
    s.create_topic("busy").await;
    s.create_topic("quiet").await;
    for n in 0..3 {
        s.publish("busy", json!(n)).await;
    }
    s.publish("quiet", json!(0)).await;
    s.eventually("two samples are taken", || async {
        s.get("/api/stats/history").await.1["samples"]
            .as_array()
            .is_some_and(|a| a.len() >= 2)
    })
    .await;
    let (status, body) = s.get("/api/stats/history").await;
    assert_eq!(status, 200);
    assert_eq!(body["interval_ms"], 1000);
    let samples = body["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    assert_eq!(
        (&last["published"], &last["topics"]),
        (&json!(4), &json!(2))
    );
    let ranked: Vec<&serde_json::Value> = samples
        .iter()
        .flat_map(|x| x["busiest"].as_array().unwrap())
        .collect();
    // A sample may fall between the publishes: each topic's messages add
    // up over the samples, and the busiest leads the first it appears in.
    let sum = |name: &str| -> u64 {
        ranked
            .iter()
            .filter(|r| r["name"] == name)
            .filter_map(|r| r["messages"].as_u64())
            .sum()
    };
    assert_eq!((sum("busy"), sum("quiet")), (3, 1), "{body}");
    assert_eq!(ranked[0]["name"], "busy", "{body}");
    assert!(samples
        .windows(2)
        .all(|w| w[0]["t"].as_u64() < w[1]["t"].as_u64()));
    let (_, one) = s.get("/api/stats/history?last_n=1").await;
    assert_eq!(one["samples"].as_array().unwrap().len(), 1);
    let (status, _) = s.get("/api/stats/history?last_n=x").await;
    assert_eq!(status, 400);
}
