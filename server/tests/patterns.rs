//! Wildcard subscriptions over real sockets: every line of the contract's
//! "Wildcard subscriptions (patterns)" section, and the bad input the
//! issue names (malformed patterns, too many, a `since` map with unknown
//! topics or wrong types).

mod common;

use common::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

/// The next frame that is not a heartbeat, as (type, topic, seq) for a
/// short comparison.
async fn next(ws: &mut common::Ws) -> Value {
    ws.recv_skipping_pings().await
}

fn event(v: &Value) -> (String, u64) {
    assert_eq!(v["type"], "event", "an event: {v}");
    (
        v["topic"].as_str().unwrap_or_default().to_owned(),
        v["seq"].as_u64().unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_pattern_subscribe_lists_what_matches_and_replays_each_topic_in_name_order() {
    let s = TestServer::start().await;
    for name in ["orders.us", "orders.eu", "orders.eu.paid", "billing.eu"] {
        s.create_topic(name).await;
    }
    s.publish("orders.us", json!(1)).await;
    s.publish("orders.us", json!(2)).await;
    s.publish("orders.eu", json!(3)).await;
    s.publish("billing.eu", json!(4)).await;

    let mut ws = s.ws().await;
    let ack = ws.subscribe("orders.*", json!({"last_n": 5})).await;
    assert_eq!(ack["pattern"], true, "{ack}");
    assert!(
        ack.get("seq").is_none() && ack.get("epoch").is_none(),
        "{ack}"
    );
    let topics = ack["topics"].as_object().expect("topics");
    assert_eq!(
        topics.keys().collect::<Vec<_>>(),
        ["orders.eu", "orders.us"],
        "`*` is one token: orders.eu.paid and billing.eu do not match"
    );
    assert_eq!(topics["orders.us"]["seq"], 2);
    assert_eq!(topics["orders.us"]["replayed"], 2);
    assert_eq!(topics["orders.eu"]["replayed"], 1);
    assert!(topics["orders.eu"]["epoch"].is_string());
    assert!(topics["orders.eu"].get("recovered").is_none());
    // Replays in topic name order, each topic's in seq order.
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(event(&next(&mut ws).await));
    }
    assert_eq!(
        replayed,
        [
            ("orders.eu".to_owned(), 1),
            ("orders.us".to_owned(), 1),
            ("orders.us".to_owned(), 2)
        ]
    );
    // Live events of both topics; none of the others.
    s.publish("billing.eu", json!(5)).await;
    s.publish("orders.eu.paid", json!(6)).await;
    s.publish("orders.eu", json!(7)).await;
    assert_eq!(event(&next(&mut ws).await), ("orders.eu".to_owned(), 2));
    ws.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn no_match_is_an_empty_ack_and_later_topics_are_followed_from_their_first_message() {
    let s = TestServer::start().await;
    let mut ws = s.ws().await;
    let ack = ws.subscribe("orders.>", json!({})).await;
    assert_eq!(ack["topics"], json!({}), "no TOPIC_NOT_FOUND: {ack}");

    s.create_topic("orders.eu.paid").await;
    s.publish("orders.eu.paid", json!(1)).await;
    let created = next(&mut ws).await;
    assert_eq!(
        (&created["type"], &created["msg"], &created["topic"]),
        (
            &json!("info"),
            &json!("topic_created"),
            &json!("orders.eu.paid")
        )
    );
    let (_, detail) = s.get("/api/topics/orders.eu.paid").await;
    assert_eq!(created["epoch"], detail["epoch"]);
    assert_eq!(
        event(&next(&mut ws).await),
        ("orders.eu.paid".to_owned(), 1)
    );

    // `>` needs at least one token after `orders.`.
    s.create_topic("orders").await;
    s.publish("orders", json!(2)).await;
    ws.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn deleting_a_topic_tells_pattern_subscribers_and_the_pattern_stays() {
    let s = TestServer::start().await;
    s.create_topic("a.x").await;
    let mut ws = s.ws().await;
    ws.subscribe("a.*", json!({})).await;
    s.delete("/api/topics/a.x").await;
    let deleted = next(&mut ws).await;
    assert_eq!(
        (&deleted["msg"], &deleted["topic"]),
        (&json!("topic_deleted"), &json!("a.x"))
    );
    // Created again: a new epoch, followed again.
    s.create_topic("a.x").await;
    let created = next(&mut ws).await;
    assert_eq!(created["msg"], "topic_created");
    s.publish("a.x", json!(1)).await;
    assert_eq!(event(&next(&mut ws).await), ("a.x".to_owned(), 1));
    let (_, stats) = s.get("/api/stats").await;
    assert_eq!(stats["topics"]["a.x"]["subscribers"], 1);
}

#[tokio::test]
async fn a_connection_gets_each_event_once_however_many_subscriptions_match() {
    let s = TestServer::start().await;
    s.create_topic("o.eu").await;
    s.publish("o.eu", json!(1)).await;
    let mut ws = s.ws().await;
    ws.subscribe("o.eu", json!({"last_n": 10})).await;
    assert_eq!(event(&next(&mut ws).await), ("o.eu".to_owned(), 1));
    // Already followed: the patterns replay nothing for it.
    let ack = ws.subscribe("o.*", json!({"last_n": 10})).await;
    assert_eq!(ack["topics"]["o.eu"]["replayed"], 0, "{ack}");
    let ack = ws.subscribe(">", json!({"last_n": 10})).await;
    assert_eq!(ack["topics"]["o.eu"]["replayed"], 0, "{ack}");

    s.publish("o.eu", json!(2)).await;
    assert_eq!(event(&next(&mut ws).await), ("o.eu".to_owned(), 2));
    ws.expect_silence(Duration::from_millis(100)).await;
    // One connection, one subscriber, however many subscriptions.
    let (_, topic) = s.get("/api/topics/o.eu").await;
    assert_eq!(topic["subscribers"], 1);
    let (_, health) = s.get("/api/health").await;
    assert_eq!(health["subscribers"], 1);

    // Unsubscribing one of them: the others still match.
    ws.send(json!({"type": "unsubscribe", "topic": "o.eu", "request_id": "u1"}))
        .await;
    assert_eq!(next(&mut ws).await["request_id"], "u1");
    ws.send(json!({"type": "unsubscribe", "topic": "o.*", "request_id": "u2"}))
        .await;
    assert_eq!(next(&mut ws).await["request_id"], "u2");
    s.publish("o.eu", json!(3)).await;
    assert_eq!(event(&next(&mut ws).await), ("o.eu".to_owned(), 3));
    // The last one: nothing more.
    ws.send(json!({"type": "unsubscribe", "topic": ">", "request_id": "u3"}))
        .await;
    assert_eq!(next(&mut ws).await["request_id"], "u3");
    s.publish("o.eu", json!(4)).await;
    ws.expect_silence(Duration::from_millis(100)).await;
    let (_, topic) = s.get("/api/topics/o.eu").await;
    assert_eq!(topic["subscribers"], 0);
    let stats = s.stats().await;
    let t = &stats["topics"]["o.eu"];
    // Published 4, subscribed for 3 of them, each delivered once.
    assert_eq!(
        (&t["messages"], &t["delivered"], &t["dropped"]),
        (&json!(4), &json!(2), &json!(0)),
        "{stats}"
    );
}

#[tokio::test]
async fn since_per_topic_resumes_the_listed_topics_and_last_n_serves_the_others() {
    let s = TestServer::start().await;
    s.create_topic("p.a").await;
    s.create_topic("p.b").await;
    for n in 0..4 {
        s.publish("p.a", json!(n)).await;
        s.publish("p.b", json!(n)).await;
    }
    let (_, a) = s.get("/api/topics/p.a").await;
    let mut ws = s.ws().await;
    let ack = ws
        .subscribe(
            "p.*",
            json!({"last_n": 1, "since": {"p.a": {"seq": 2, "epoch": a["epoch"]}}}),
        )
        .await;
    let topics = &ack["topics"];
    assert_eq!(
        (&topics["p.a"]["recovered"], &topics["p.a"]["replayed"]),
        (&json!(true), &json!(2)),
        "{ack}"
    );
    assert_eq!(topics["p.b"]["replayed"], 1);
    assert!(topics["p.b"].get("recovered").is_none());
    let got: Vec<_> = [
        next(&mut ws).await,
        next(&mut ws).await,
        next(&mut ws).await,
    ]
    .iter()
    .map(event)
    .collect();
    assert_eq!(
        got,
        [
            ("p.a".to_owned(), 3),
            ("p.a".to_owned(), 4),
            ("p.b".to_owned(), 4)
        ]
    );

    // A stale epoch: recovered false, nothing replayed for that topic.
    let mut other = s.ws().await;
    let ack = other
        .subscribe(
            "p.*",
            json!({"since": {"p.a": {"seq": 1, "epoch": "not-it"}}}),
        )
        .await;
    assert_eq!(ack["topics"]["p.a"]["recovered"], false);
    assert_eq!(ack["topics"]["p.a"]["replayed"], 0);
}

#[tokio::test]
async fn bad_patterns_and_since_maps_are_bad_requests_and_change_nothing() {
    let s = TestServer::start().await;
    s.create_topic("q.a").await;
    let mut ws = s.ws().await;
    let cases = [
        json!({"topic": "ord*"}),
        json!({"topic": "a.>b"}),
        json!({"topic": "a.>.b"}),
        json!({"topic": "a.*", "since": {"seq": 1, "epoch": "e"}}),
        json!({"topic": "q.*", "since": {"other.a": {"seq": 1, "epoch": "e"}}}),
        json!({"topic": "q.*", "since": {"q.a": {"seq": "one", "epoch": "e"}}}),
        json!({"topic": "q.*", "since": {"bad name!": {"seq": 1, "epoch": "e"}}}),
        json!({"topic": "q.a", "since": {"q.a": {"seq": 1, "epoch": "e"}}}),
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut frame = case.clone();
        frame["type"] = json!("subscribe");
        frame["request_id"] = json!(format!("r{i}"));
        ws.send(frame).await;
        let reply = next(&mut ws).await;
        assert_eq!(
            (
                &reply["type"],
                &reply["error"]["code"],
                &reply["request_id"]
            ),
            (
                &json!("error"),
                &json!("BAD_REQUEST"),
                &json!(format!("r{i}"))
            ),
            "{case}: {reply}"
        );
    }
    ws.send(json!({"type": "unsubscribe", "topic": "a.>b", "request_id": "u"}))
        .await;
    assert_eq!(next(&mut ws).await["error"]["code"], "BAD_REQUEST");
    // Nothing was subscribed: publishing reaches no one.
    s.publish("q.a", json!(1)).await;
    ws.expect_silence(Duration::from_millis(100)).await;
    let (_, health) = s.get("/api/health").await;
    assert_eq!(health["subscribers"], 0);
}

#[tokio::test]
async fn a_pattern_counts_once_towards_max_subscriptions() {
    let s = TestServer::start_with(|c| c.broker.max_subscriptions = 2).await;
    for name in ["m.a", "m.b", "m.c"] {
        s.create_topic(name).await;
    }
    let mut ws = s.ws().await;
    let ack = ws.subscribe("m.*", json!({})).await;
    assert_eq!(ack["topics"].as_object().map(|t| t.len()), Some(3));
    ws.subscribe("m.a", json!({})).await;
    ws.send(json!({"type": "subscribe", "topic": "x.*", "request_id": "over"}))
        .await;
    let refused = next(&mut ws).await;
    assert_eq!(refused["error"]["code"], "RATE_LIMITED", "{refused}");
    // A repeat is no new subscription.
    let again = ws.subscribe("m.*", json!({"last_n": 5})).await;
    assert_eq!(again["pattern"], true);
}

#[tokio::test]
async fn rest_lists_the_topics_a_pattern_matches() {
    let s = TestServer::start().await;
    for name in ["r.a", "r.b.c", "s.a"] {
        s.create_topic(name).await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["topics"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (status, body) = s.get("/api/topics?pattern=r.%3E").await;
    assert_eq!(status, 200);
    assert_eq!(names(&body), ["r.a", "r.b.c"]);
    let (_, body) = s.get("/api/topics?pattern=*.a").await;
    assert_eq!(names(&body), ["r.a", "s.a"]);
    let (_, body) = s.get("/api/topics?pattern=r.b.c").await;
    assert_eq!(
        names(&body),
        ["r.b.c"],
        "a name is a pattern matching itself"
    );
    let (status, body) = s.get("/api/topics?pattern=r*").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("BAD_REQUEST"))
    );
}

#[tokio::test]
async fn closing_a_connection_removes_its_patterns() {
    let s = TestServer::start().await;
    {
        let mut ws = s.ws().await;
        ws.subscribe("z.*", json!({})).await;
    }
    // The server notices the close; a topic created afterwards has no one.
    s.eventually("the connection is gone", || async {
        s.get("/api/health").await.1["connections"] == 0
    })
    .await;
    s.create_topic("z.a").await;
    let (_, topic) = s.get("/api/topics/z.a").await;
    assert_eq!(topic["subscribers"], 0);
}
