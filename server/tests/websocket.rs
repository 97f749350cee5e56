//! The WebSocket protocol over real sockets: frames, replay, ordering,
//! errors and the lifecycle of a connection.

mod common;

use common::{masked, raw_upgrade, Closed, TestServer, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// Reads `n` events of `topic` (skipping heartbeats), returning their seqs.
async fn read_events(ws: &mut Ws, n: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let v = ws.recv_skipping_pings().await;
        assert_eq!(v["type"], "event", "{v}");
        seqs.push(seq(&v));
    }
    seqs
}

#[tokio::test]
async fn ping_gets_pong() {
    let s = TestServer::start().await;
    let mut ws = s.ws().await;
    ws.send(json!({"type": "ping", "request_id": "p1"})).await;
    let pong = ws.recv_json().await;
    assert_eq!(
        (&pong["type"], &pong["request_id"]),
        (&json!("pong"), &json!("p1"))
    );
    assert!(pong["ts"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn subscribe_then_receive_published_events() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let mut ws = s.ws().await;
    let ack = ws.subscribe("t", json!({"client_id": "c1"})).await;
    assert_eq!(ack["request_id"], "sub-t");
    assert_eq!(
        (&ack["topic"], &ack["status"], &ack["seq"], &ack["replayed"]),
        (&json!("t"), &json!("ok"), &json!(0), &json!(0))
    );
    assert!(ack["epoch"].is_string() && ack["ts"].is_string());
    assert!(
        ack.get("recovered").is_none(),
        "recovered only when since was given"
    );

    s.post(
        "/api/topics/t/messages",
        json!({"id": "m1", "payload": {"hello": "world"}}),
    )
    .await;
    let ev = ws.recv_json().await;
    assert_eq!(ev["type"], "event");
    assert_eq!(ev["topic"], "t");
    assert_eq!(
        ev["message"],
        json!({"id": "m1", "payload": {"hello": "world"}})
    );
    assert_eq!(ev["seq"], 1);
    assert!(ev["ts"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn publish_over_websocket_is_acked_with_id_and_seq() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let mut ws = s.ws().await;
    ws.send(json!({"type": "publish", "topic": "t", "message": {"payload": [1, 2]}, "request_id": "r9"})).await;
    let ack = ws.recv_json().await;
    assert_eq!(
        (
            &ack["type"],
            &ack["request_id"],
            &ack["topic"],
            &ack["status"],
            &ack["seq"]
        ),
        (
            &json!("ack"),
            &json!("r9"),
            &json!("t"),
            &json!("ok"),
            &json!(1)
        )
    );
    assert!(ack["id"].as_str().is_some_and(|id| !id.is_empty()));
    ws.send(json!({"type": "publish", "topic": "t", "message": {"id": "x", "payload": null}}))
        .await;
    let ack = ws.recv_json().await;
    assert_eq!(
        (&ack["id"], &ack["seq"], &ack["request_id"]),
        (&json!("x"), &json!(2), &Value::Null)
    );
}

#[tokio::test]
async fn missing_topics_are_errors_and_the_connection_stays_usable() {
    let s = TestServer::start().await;
    let mut ws = s.ws().await;
    ws.send(json!({"type": "subscribe", "topic": "nope", "request_id": "a"}))
        .await;
    let e = ws.recv_json().await;
    assert_eq!(
        (&e["type"], &e["request_id"], &e["error"]["code"]),
        (&json!("error"), &json!("a"), &json!("TOPIC_NOT_FOUND"))
    );
    ws.send(
        json!({"type": "publish", "topic": "nope", "message": {"payload": 1}, "request_id": "b"}),
    )
    .await;
    let e = ws.recv_json().await;
    assert_eq!(
        (&e["request_id"], &e["error"]["code"]),
        (&json!("b"), &json!("TOPIC_NOT_FOUND"))
    );
    ws.send(json!({"type": "ping", "request_id": "still"}))
        .await;
    assert_eq!(ws.recv_json().await["request_id"], "still");
}

#[tokio::test]
async fn every_kind_of_bad_frame_is_a_bad_request() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let mut ws = s.ws().await;
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("not json at all", None),
        ("[1,2,3]", None),
        ("42", None),
        (r#"{"request_id":"r1"}"#, Some("r1")),
        (r#"{"type":"dance","request_id":"r2"}"#, Some("r2")),
        (r#"{"type":"subscribe","request_id":"r3"}"#, Some("r3")),
        (
            r#"{"type":"subscribe","topic":"t","last_n":"five","request_id":"r4"}"#,
            Some("r4"),
        ),
        (
            r#"{"type":"subscribe","topic":"t","last_n":-1,"request_id":"r5"}"#,
            Some("r5"),
        ),
        (
            r#"{"type":"subscribe","topic":"t","since":{"seq":1},"request_id":"r6"}"#,
            Some("r6"),
        ),
        (
            r#"{"type":"subscribe","topic":"bad name!","request_id":"r7"}"#,
            Some("r7"),
        ),
        (
            r#"{"type":"publish","topic":"t","request_id":"r8"}"#,
            Some("r8"),
        ),
        (
            r#"{"type":"publish","topic":"t","message":{"id":"i"},"request_id":"r9"}"#,
            Some("r9"),
        ),
        (
            r#"{"type":"publish","topic":"t","message":"hi","request_id":"r10"}"#,
            Some("r10"),
        ),
        (
            r#"{"type":"publish","topic":"t","message":{"id":"","payload":1},"request_id":"r11"}"#,
            Some("r11"),
        ),
        (
            r#"{"type":"unsubscribe","topic":7,"request_id":"r12"}"#,
            Some("r12"),
        ),
        (r#"{"type":"ping","request_id":5}"#, None),
        // serde alone would read these arrays as structs.
        (r#"["ping"]"#, None),
        (r#"["subscribe","t"]"#, None),
        (
            r#"{"type":"publish","topic":"t","message":["id",1],"request_id":"r14"}"#,
            Some("r14"),
        ),
        (
            r#"{"type":"subscribe","topic":"t","since":[1,"e"],"request_id":"r15"}"#,
            Some("r15"),
        ),
        (
            r#"{"type":"publish","topic":"t","message":{"payload":1},"request_id":"r13"#,
            None,
        ),
    ];
    for (text, request_id) in cases {
        ws.send_text(text).await;
        let e = ws.recv_json().await;
        assert_eq!(e["type"], "error", "{text} -> {e}");
        assert_eq!(e["error"]["code"], "BAD_REQUEST", "{text} -> {e}");
        assert!(e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(e["request_id"].as_str(), request_id, "{text} -> {e}");
    }
    ws.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    let e = ws.recv_json().await;
    assert_eq!(e["error"]["code"], "BAD_REQUEST", "binary frame: {e}");

    ws.send(json!({"type": "ping", "request_id": "alive"}))
        .await;
    assert_eq!(
        ws.recv_json().await["type"],
        "pong",
        "the connection survived every bad frame"
    );
    let (_, detail) = s.get("/api/topics/t").await;
    assert_eq!(detail["seq"], 0, "nothing was published by a bad frame");
}

#[tokio::test]
async fn oversized_payload_is_refused_and_oversized_frame_closes_1009() {
    let s = TestServer::start_with(|c| {
        c.broker.max_message_bytes = 100;
        c.max_frame_bytes = 2000;
    })
    .await;
    s.create_topic("t").await;
    let mut ws = s.ws().await;
    ws.send(json!({"type": "publish", "topic": "t", "message": {"payload": "x".repeat(200)}, "request_id": "big"})).await;
    let e = ws.recv_json().await;
    assert_eq!(
        (&e["error"]["code"], &e["request_id"]),
        (&json!("PAYLOAD_TOO_LARGE"), &json!("big"))
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv_json().await["type"], "pong");

    ws.send(json!({"type": "publish", "topic": "t", "message": {"payload": "x".repeat(5000)}}))
        .await;
    match ws.recv_or_close().await {
        Err(Closed::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    let (_, detail) = s.get("/api/topics/t").await;
    assert_eq!(detail["seq"], 0);
}

#[tokio::test]
async fn last_n_and_since_replay_from_history() {
    let s = TestServer::start_with(|c| c.broker.history_size = 5).await;
    s.create_topic("t").await;
    for n in 1..=8 {
        s.publish("t", json!(n)).await;
    }
    let (_, detail) = s.get("/api/topics/t").await;
    let epoch = detail["epoch"].as_str().unwrap().to_owned();

    let mut ws = s.ws().await;
    let ack = ws.subscribe("t", json!({"last_n": 3})).await;
    assert_eq!((&ack["seq"], &ack["replayed"]), (&json!(8), &json!(3)));
    assert_eq!(read_events(&mut ws, 3).await, [6, 7, 8]);

    let mut ws = s.ws().await;
    let ack = ws.subscribe("t", json!({"last_n": 100})).await;
    assert_eq!(ack["replayed"], 5, "min(N, history)");
    assert_eq!(read_events(&mut ws, 5).await, [4, 5, 6, 7, 8]);

    let mut ws = s.ws().await;
    let ack = ws
        .subscribe(
            "t",
            json!({"since": {"seq": 5, "epoch": epoch}, "last_n": 1}),
        )
        .await;
    assert_eq!(
        (&ack["recovered"], &ack["replayed"]),
        (&json!(true), &json!(3)),
        "since wins over last_n"
    );
    assert_eq!(read_events(&mut ws, 3).await, [6, 7, 8]);

    let mut ws = s.ws().await;
    let ack = ws
        .subscribe("t", json!({"since": {"seq": 1, "epoch": epoch}}))
        .await;
    assert_eq!(
        (&ack["recovered"], &ack["replayed"]),
        (&json!(false), &json!(0)),
        "history no longer holds 2 and 3"
    );

    let mut ws = s.ws().await;
    let ack = ws
        .subscribe("t", json!({"since": {"seq": 6, "epoch": "stale"}}))
        .await;
    assert_eq!(
        (&ack["recovered"], &ack["replayed"]),
        (&json!(false), &json!(0)),
        "another epoch"
    );
    s.publish("t", json!(9)).await;
    assert_eq!(
        read_events(&mut ws, 1).await,
        [9],
        "live events flow after a failed recovery"
    );
}

#[tokio::test]
async fn recreated_topics_get_a_new_epoch() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    s.publish("t", json!(1)).await;
    let old = s.get("/api/topics/t").await.1["epoch"].clone();
    s.delete("/api/topics/t").await;
    s.create_topic("t").await;
    let mut ws = s.ws().await;
    let ack = ws
        .subscribe("t", json!({"since": {"seq": 0, "epoch": old}}))
        .await;
    assert_ne!(ack["epoch"], old);
    assert_eq!(ack["recovered"], false);
}

#[tokio::test]
async fn subscribing_twice_is_idempotent_and_unsubscribe_is_always_acked() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    s.publish("t", json!(1)).await;
    let mut ws = s.ws().await;
    assert_eq!(ws.subscribe("t", json!({"last_n": 5})).await["replayed"], 1);
    assert_eq!(read_events(&mut ws, 1).await, [1]);
    assert_eq!(
        ws.subscribe("t", json!({"last_n": 5})).await["replayed"],
        0,
        "the repeat replays nothing"
    );
    s.publish("t", json!(2)).await;
    assert_eq!(read_events(&mut ws, 1).await, [2]);
    ws.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(s.get("/api/topics/t").await.1["subscribers"], 1);

    ws.send(json!({"type": "unsubscribe", "topic": "t", "request_id": "u"}))
        .await;
    let ack = ws.recv_json().await;
    assert_eq!(
        (&ack["type"], &ack["request_id"], &ack["topic"]),
        (&json!("ack"), &json!("u"), &json!("t"))
    );
    s.publish("t", json!(3)).await;
    ws.expect_silence(Duration::from_millis(200)).await;

    ws.send(json!({"type": "unsubscribe", "topic": "never-subscribed", "request_id": "u2"}))
        .await;
    assert_eq!(ws.recv_json().await["type"], "ack");
    assert_eq!(s.get("/api/topics/t").await.1["subscribers"], 0);
}

#[tokio::test]
async fn deleting_a_topic_notifies_its_subscribers() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let mut a = s.ws().await;
    let mut b = s.ws().await;
    a.subscribe("t", json!({})).await;
    b.subscribe("t", json!({})).await;
    s.publish("t", json!(1)).await;
    s.delete("/api/topics/t").await;
    for ws in [&mut a, &mut b] {
        assert_eq!(read_events(ws, 1).await, [1]);
        let info = ws.recv_skipping_pings().await;
        assert_eq!(
            (&info["type"], &info["msg"], &info["topic"]),
            (&json!("info"), &json!("topic_deleted"), &json!("t"))
        );
    }
    assert_eq!(s.stats().await["totals"]["subscribers"], 0);
    // Recreated: the old subscription is gone, nothing arrives.
    s.create_topic("t").await;
    s.publish("t", json!(2)).await;
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn heartbeats_arrive_on_idle_connections() {
    let s = TestServer::start_with(|c| c.heartbeat_interval = Duration::from_millis(100)).await;
    let mut ws = s.ws().await;
    for _ in 0..2 {
        let info = ws.recv_json().await;
        assert_eq!(
            (&info["type"], &info["msg"]),
            (&json!("info"), &json!("ping"))
        );
    }
}

#[tokio::test]
async fn concurrent_publishers_get_contiguous_seqs_in_their_own_order() {
    let s = TestServer::start_with(|c| c.broker.subscriber_queue = 100_000).await;
    s.create_topic("t").await;
    let mut sub = s.ws().await;
    sub.subscribe("t", json!({})).await;
    const PUBLISHERS: usize = 8;
    const EACH: usize = 250;
    let url = format!("ws://{}/ws", s.addr);
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut ws = Ws::connect(&url).await;
                for i in 0..EACH {
                    ws.send(json!({"type": "publish", "topic": "t", "message": {"payload": {"p": p, "i": i}}})).await;
                }
                let mut seqs = Vec::new();
                while seqs.len() < EACH {
                    let ack = ws.recv_skipping_pings().await;
                    assert_eq!(ack["type"], "ack", "{ack}");
                    seqs.push(seq(&ack));
                }
                seqs
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "a publisher's acks are in increasing seq"
        );
        acked.extend(seqs);
    }
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=(PUBLISHERS * EACH) as u64).collect::<Vec<_>>(),
        "every seq once"
    );

    let mut last_i = [None::<u64>; PUBLISHERS];
    for expected in 1..=(PUBLISHERS * EACH) as u64 {
        let ev = sub.recv_skipping_pings().await;
        assert_eq!(seq(&ev), expected, "contiguous for the subscriber");
        let p = ev["message"]["payload"]["p"].as_u64().unwrap() as usize;
        let i = ev["message"]["payload"]["i"].as_u64().unwrap();
        assert!(
            last_i[p].is_none_or(|last| last < i),
            "publisher {p}'s messages stay in its order"
        );
        last_i[p] = Some(i);
    }
}

#[tokio::test]
async fn subscribing_with_last_n_during_publishing_has_no_gap_or_duplicate() {
    let s = TestServer::start_with(|c| {
        c.broker.subscriber_queue = 100_000;
        c.broker.history_size = 50;
    })
    .await;
    s.create_topic("t").await;
    const TOTAL: u64 = 3000;
    let url = format!("ws://{}/ws", s.addr);
    let publisher = tokio::spawn(async move {
        let mut ws = Ws::connect(&url).await;
        for i in 0..TOTAL {
            ws.send(json!({"type": "publish", "topic": "t", "message": {"payload": i}}))
                .await;
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for _ in 0..TOTAL {
            ws.recv_skipping_pings().await;
        }
    });
    let mut subscribers = Vec::new();
    for _ in 0..10 {
        let mut ws = s.ws().await;
        let ack = ws.subscribe("t", json!({"last_n": 20})).await;
        subscribers.push((ws, ack));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publisher.await.unwrap();
    for (mut ws, ack) in subscribers {
        let at = seq(&ack);
        let replayed = ack["replayed"].as_u64().unwrap();
        let first = at - replayed + 1;
        let seqs = read_events(&mut ws, (TOTAL - first + 1) as usize).await;
        assert_eq!(
            seqs,
            (first..=TOTAL).collect::<Vec<_>>(),
            "replay joins live exactly (ack at seq {at})"
        );
        ws.expect_silence(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_loses_events_others_do_not_and_counters_add_up() {
    // 2000 events of 16 KiB (32 MiB) are far more than a 512-event queue
    // plus the socket buffers hold.
    const QUEUE: usize = 512;
    const TOTAL: u64 = 2000;
    let s = TestServer::start_with(|c| {
        c.broker.subscriber_queue = QUEUE;
        c.broker.history_size = 10;
    })
    .await;
    s.create_topic("t").await;
    let mut stalled = s.ws().await;
    stalled.subscribe("t", json!({})).await;
    let mut fast = s.ws().await;
    fast.subscribe("t", json!({})).await;

    let payload = "x".repeat(16 * 1024);
    let mut publisher = s.ws().await;
    // Published in windows of 100 that the fast reader reads before the
    // next window: it can never fall a queue behind, however loaded the
    // machine is, while the stalled one falls further behind every window.
    const WINDOW: u64 = 100;
    let mut fast_seqs = Vec::new();
    for _ in 0..TOTAL / WINDOW {
        for _ in 0..WINDOW {
            publisher
                .send(json!({"type": "publish", "topic": "t", "message": {"payload": payload}}))
                .await;
        }
        for _ in 0..WINDOW {
            assert_eq!(
                publisher.recv_skipping_pings().await["type"],
                "ack",
                "publishers are never refused"
            );
        }
        fast_seqs.extend(read_events(&mut fast, WINDOW as usize).await);
    }
    assert_eq!(
        fast_seqs,
        (1..=TOTAL).collect::<Vec<_>>(),
        "the reading subscriber gets everything"
    );

    // Memory stays bounded: at most one queue and one batch in flight are held.
    let counts = s.state.broker.topic_counts("t").unwrap();
    let held = counts.enqueued - counts.delivered - counts.dropped;
    assert!(held <= (QUEUE + 256) as u64, "held {held}: {counts:?}");
    assert!(
        counts.dropped > 0,
        "the stalled reader lost events: {counts:?}"
    );

    // Now it reads: a SLOW_CONSUMER notice precedes the first event after the gap.
    let mut dropped_signalled = 0;
    let mut seqs = Vec::new();
    let mut last = 0;
    while last < TOTAL {
        let v = stalled.recv_skipping_pings().await;
        match v["type"].as_str() {
            Some("event") => {
                last = seq(&v);
                seqs.push(last);
            }
            Some("error") => {
                assert_eq!(
                    (&v["error"]["code"], &v["topic"]),
                    (&json!("SLOW_CONSUMER"), &json!("t")),
                    "{v}"
                );
                dropped_signalled += v["dropped"].as_u64().unwrap();
            }
            _ => panic!("unexpected {v}"),
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    assert_eq!(
        seqs.len() as u64 + dropped_signalled,
        TOTAL,
        "each event was delivered or signalled as dropped"
    );

    s.eventually("counters settle", || async {
        let c = s.state.broker.topic_counts("t").unwrap();
        c.delivered + c.dropped == c.enqueued
    })
    .await;
    let stats = s.stats().await;
    let t = &stats["topics"]["t"];
    assert_eq!(
        t["delivered"].as_u64().unwrap() + t["dropped"].as_u64().unwrap(),
        2 * TOTAL,
        "{stats}"
    );
    assert_eq!(t["dropped"].as_u64().unwrap(), dropped_signalled);
    assert_eq!(stats["totals"]["dropped"], t["dropped"]);
}

#[tokio::test]
async fn disconnect_policy_closes_a_slow_consumer_with_4008() {
    let s = TestServer::start_with(|c| {
        c.broker.subscriber_queue = 8;
        c.broker.slow_consumer_policy = pubsub_server::broker::SlowConsumerPolicy::Disconnect;
    })
    .await;
    s.create_topic("t").await;
    let mut stalled = s.ws().await;
    stalled.subscribe("t", json!({})).await;
    let payload = "x".repeat(16 * 1024);
    for _ in 0..1000 {
        let (status, _) = s
            .post("/api/topics/t/messages", json!({"payload": payload}))
            .await;
        assert_eq!(status, 201, "publishers are never slowed or refused");
        if s.state.broker.topic_counts("t").unwrap().subscribers == 0 {
            break;
        }
    }
    let mut saw_notice = false;
    loop {
        match stalled.recv_or_close().await {
            Ok(v) if v["type"] == "error" => {
                assert_eq!(v["error"]["code"], "SLOW_CONSUMER");
                assert!(v["dropped"].as_u64().unwrap() > 0);
                saw_notice = true;
            }
            Ok(_) => {}
            Err(Closed::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4008);
                break;
            }
            Err(other) => panic!("expected close 4008, got {other:?}"),
        }
    }
    assert!(saw_notice, "SLOW_CONSUMER before the close");
    s.eventually("the connection is forgotten", || async {
        s.stats().await["totals"]["connections"] == 0
    })
    .await;
    assert_eq!(s.get("/api/topics/t").await.1["subscribers"], 0);
}

#[tokio::test]
async fn abrupt_disconnects_remove_every_subscription() {
    let s = TestServer::start().await;
    for t in ["a", "b", "c"] {
        s.create_topic(t).await;
    }
    let mut ws = s.ws().await;
    for t in ["a", "b", "c"] {
        ws.subscribe(t, json!({})).await;
    }
    assert_eq!(s.stats().await["totals"]["subscribers"], 3);
    // Drop the TCP connection without a close handshake.
    drop(ws);
    s.eventually("all subscriptions are gone", || async {
        let stats = s.stats().await;
        stats["totals"]["subscribers"] == 0 && stats["totals"]["connections"] == 0
    })
    .await;
    for t in ["a", "b", "c"] {
        assert_eq!(s.get(&format!("/api/topics/{t}")).await.1["subscribers"], 0);
        s.publish(t, json!(1)).await;
    }
    let stats = s.stats().await;
    assert_eq!(stats["totals"]["delivered"], 0);
}

#[tokio::test]
async fn graceful_shutdown_says_so_flushes_and_closes_1001() {
    let mut s = TestServer::start().await;
    s.create_topic("t").await;
    let mut ws = s.ws().await;
    ws.subscribe("t", json!({})).await;
    for n in 1..=100 {
        s.publish("t", json!(n)).await;
    }
    s.shut_down().await.expect("serve returns cleanly");
    let mut events = 0;
    let mut saw_shutting_down = false;
    loop {
        match ws.recv_or_close().await {
            Ok(v) if v["type"] == "event" => {
                assert!(
                    !saw_shutting_down,
                    "events queued before the shutdown come first"
                );
                events += 1;
            }
            Ok(v) if v["msg"] == "shutting_down" => saw_shutting_down = true,
            Ok(v) => panic!("unexpected {v}"),
            Err(Closed::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001);
                break;
            }
            Err(other) => panic!("expected close 1001, got {other:?}"),
        }
    }
    assert_eq!(events, 100, "everything queued was flushed");
    assert!(saw_shutting_down);
    assert!(
        s.http.get(s.url("/api/health")).send().await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn payloads_keep_their_key_order() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let mut ws = s.ws().await;
    ws.subscribe("t", json!({})).await;
    s.post_raw(
        "/api/topics/t/messages",
        r#"{"payload": {"zeta": 1, "alpha": {"y": 2, "b": 3}}}"#,
    )
    .await;
    let tokio_tungstenite::tungstenite::Message::Text(text) =
        futures_util::StreamExt::next(&mut ws.stream)
            .await
            .unwrap()
            .unwrap()
    else {
        panic!("a text frame")
    };
    assert!(
        text.as_str()
            .contains(r#""payload":{"zeta":1,"alpha":{"y":2,"b":3}}"#),
        "the payload as sent, compacted: {text}"
    );
}

/// A peer that stops answering (here: never reads, so never pongs) is
/// closed after two unanswered heartbeats; one that reads stays.
#[tokio::test]
async fn dead_peers_are_closed_live_ones_are_kept() {
    let s = TestServer::start_with(|c| c.heartbeat_interval = Duration::from_millis(100)).await;
    s.create_topic("t").await;
    let mut silent = s.ws().await;
    silent.subscribe("t", json!({})).await;
    let url = format!("ws://{}/ws", s.addr);
    let alive = tokio::spawn(async move {
        let mut ws = Ws::connect(&url).await;
        // Reading answers the server's pings (tokio-tungstenite pongs).
        let mut heartbeats = 0;
        while heartbeats < 15 {
            if ws.recv_json().await["msg"] == "ping" {
                heartbeats += 1;
            }
        }
        heartbeats
    });
    s.eventually("the silent connection is closed", || async {
        s.stats().await["totals"]["subscribers"] == 0
    })
    .await;
    assert_eq!(
        s.stats().await["totals"]["connections"],
        1,
        "the answering one is still there"
    );
    assert_eq!(
        alive.await.unwrap(),
        15,
        "the answering connection saw 15 heartbeats, open throughout"
    );
    // The silent client finds a close (1001) or a closed socket when it reads.
    match silent.recv_or_close().await {
        Err(Closed::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
        Err(_) => {}
        Ok(v) if v["type"] == "info" => {}
        Ok(v) => panic!("unexpected {v}"),
    }
}

#[tokio::test]
async fn peers_that_stop_reading_are_closed_by_the_write_deadline() {
    let s = TestServer::start_with(|c| {
        c.heartbeat_interval = Duration::from_millis(200);
        c.broker.max_message_bytes = 1 << 20;
        c.max_body_bytes = 2 << 20;
    })
    .await;
    s.create_topic("t").await;
    // Subscribes, then never reads again: the socket's buffers fill and the
    // server's write to it cannot finish. It keeps sending pings, so it is
    // not silent: only the write deadline can close it.
    let mut stalled = s.ws().await;
    stalled.subscribe("t", json!({})).await;
    let (mut to_server, _unread) = stalled.stream.split();
    let pinger = tokio::spawn(async move {
        let ping = Message::Ping(Default::default());
        while to_server.send(ping.clone()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // 20 MiB: more than the loopback socket buffers hold, so the writer
    // blocks (the idle-time ping cannot be what closes it).
    let big = "x".repeat(1 << 19);
    let published = 40;
    for _ in 0..published {
        s.publish("t", json!(big)).await;
    }
    s.eventually("the stalled connection is gone", || async {
        s.stats().await["totals"]["connections"] == 0
    })
    .await;
    // What it was owed is accounted for: the blocked batch and the queue
    // behind it were dropped, not lost from the counters.
    let t = &s.stats().await["topics"]["t"];
    let delivered = t["delivered"].as_u64().unwrap_or(0);
    let dropped = t["dropped"].as_u64().unwrap_or(0);
    assert!(dropped > 0, "{t}");
    assert!(delivered + dropped <= published, "{t}");
    pinger.abort();
    // Others are unaffected.
    let mut fresh = s.ws().await;
    fresh.send(json!({"type": "ping"})).await;
    assert_eq!(fresh.recv_json().await["type"], "pong");
}

/// Reads until `want` bytes arrived (or the peer closed).
async fn read_at_least(tcp: &mut tokio::net::TcpStream, mut got: Vec<u8>, want: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    while got.len() < want {
        let n = tokio::time::timeout(common::PATIENCE, tcp.read(&mut chunk))
            .await
            .expect("bytes in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

#[tokio::test]
async fn frames_sent_with_the_upgrade_request_and_split_anywhere_are_read() {
    let s = TestServer::start().await;
    // A ping frame in the same packet as the upgrade request, then one
    // frame fragmented in three, one byte at a time.
    let ping = br#"{"type":"ping","request_id":"early"}"#;
    let (mut tcp, rest) = raw_upgrade(s.addr, &masked(0x81, ping)).await;
    let mut stream = masked(0x01, br#"{"type":"ping","#);
    stream.extend(masked(0x89, b"hb")); // a control frame between fragments
    stream.extend(masked(0x00, br#""request_id""#));
    stream.extend(masked(0x80, br#":"split"}"#));
    use tokio::io::AsyncWriteExt;
    for b in stream {
        tcp.write_all(&[b]).await.expect("write");
    }
    let got = read_at_least(&mut tcp, rest, 120).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains(r#""request_id":"early""#), "{text}");
    assert!(text.contains(r#""request_id":"split""#), "{text}");
    // The client's ping got its pong with the same payload.
    assert!(
        got.windows(4).any(|w| w == [0x8A, 2, b'h', b'b']),
        "{got:?}"
    );
}

#[tokio::test]
async fn protocol_errors_close_with_their_codes() {
    let s = TestServer::start().await;
    for (frame, code) in [
        (masked(0x81, &[0xC3, 0x28]), 1007u16), // not UTF-8
        (vec![0x81, 0x01, b'x'], 1002),         // not masked
        (masked(0x83, b"x"), 1002),             // unknown opcode
        (masked(0x80, b"x"), 1002),             // continuation of nothing
    ] {
        let (mut tcp, rest) = raw_upgrade(s.addr, &frame).await;
        let got = read_at_least(&mut tcp, rest, 4).await;
        assert_eq!(
            got.first(),
            Some(&0x88),
            "a close frame for {frame:?}: {got:?}"
        );
        assert_eq!(
            got.get(2..4),
            Some(&code.to_be_bytes()[..]),
            "close {code} for {frame:?}"
        );
    }
    s.eventually("every refused connection is gone", || async {
        s.stats().await["totals"]["connections"] == 0
    })
    .await;
}

#[tokio::test]
async fn requests_that_are_not_websocket_upgrades_get_contract_errors() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/ws").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("BAD_REQUEST"))
    );
    let (status, body) = s.post("/ws", json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (405, &json!("BAD_REQUEST"))
    );
    let old = s
        .http
        .get(s.url("/ws"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .send()
        .await
        .expect("request");
    assert_eq!(old.status().as_u16(), 400);
    assert_eq!(
        old.headers()
            .get("sec-websocket-version")
            .map(|v| v.as_bytes()),
        Some(&b"13"[..])
    );
}

#[tokio::test]
async fn a_slow_reader_that_keeps_reading_is_signalled_not_disconnected() {
    let s = TestServer::start_with(|c| {
        c.broker.subscriber_queue = 16;
        c.broker.max_message_bytes = 128 * 1024;
    })
    .await;
    s.create_topic("t").await;
    // A client with a small receive buffer, so its backlog waits in the
    // server's bounded queue (the server keeps its own socket buffer small)
    // rather than in megabytes of kernel buffer.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    socket.connect(&s.addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let tcp = tokio::net::TcpStream::from_std(socket.into()).expect("tokio stream");
    let (stream, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", s.addr), tcp)
        .await
        .expect("upgrade");
    let mut slow = Ws {
        stream: tokio_tungstenite::WebSocketStream::from_raw_socket(
            tokio_tungstenite::MaybeTlsStream::Plain(stream.into_inner()),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await,
    };
    slow.subscribe("t", json!({})).await;
    // The reader takes a frame every 20 ms: always making progress, far
    // behind a publisher of 64 KiB messages.
    let reader = tokio::spawn(async move {
        let (mut notices, mut last_seq, mut closed) = (0, 0, None);
        while last_seq < 300 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match slow.recv_or_close().await {
                Ok(v) if v["type"] == "event" => last_seq = v["seq"].as_u64().unwrap_or(0),
                Ok(v) if v["error"]["code"] == "SLOW_CONSUMER" => notices += 1,
                Ok(_) => {}
                Err(c) => {
                    closed = Some(format!("{c:?} after seq {last_seq}"));
                    break;
                }
            }
        }
        (notices, last_seq, closed)
    });
    // Publishes pipelined on one connection, acks read after.
    let big = "x".repeat(64 * 1024);
    let mut publisher = s.ws().await;
    for _ in 0..300 {
        publisher
            .send(json!({"type": "publish", "topic": "t", "message": {"payload": big}}))
            .await;
    }
    for _ in 0..300 {
        assert_eq!(publisher.recv_skipping_pings().await["type"], "ack");
    }
    let (notices, last_seq, closed) = reader.await.expect("reader");
    assert_eq!(closed, None, "a reader that keeps reading stays connected");
    assert_eq!(last_seq, 300, "drop_oldest keeps the newest");
    assert!(notices > 0, "the dropped events were signalled");
    let t = &s.stats().await["topics"]["t"];
    assert!(t["dropped"].as_u64().unwrap_or(0) > 0, "{t}");
}

/// The flusher writes a publish's events to parked subscribers' sockets
/// itself, and hands a socket it finds full to the connection's writer with
/// the rest of its batch (see `ws::flusher`). A subscriber that stops
/// reading while megabytes are published (more than the kernel's buffers
/// hold, within its bound) gets every event, whole and in order, once it
/// reads again; then, parked again, it gets the next publish.
#[tokio::test]
async fn a_full_socket_is_handed_to_the_writer_and_nothing_is_lost_or_torn() {
    const EVENTS: u64 = 6_000;
    let s = TestServer::start_with(|c| {
        c.broker.subscriber_queue = 10_000;
        c.broker.max_queue_bytes = 64 << 20;
        c.broker.max_history_bytes = 0;
    })
    .await;
    s.create_topic("bulk").await;
    let mut sub = s.ws().await;
    sub.subscribe("bulk", json!({})).await;
    // 2 KB payloads, each with its own number: 12 MB in all, published
    // while the subscriber reads nothing.
    let filler = "x".repeat(2_000);
    for chunk in 0..EVENTS / 200 {
        let messages: Vec<Value> = (0..200)
            .map(|i| {
                let n = chunk * 200 + i;
                json!({"topic": "bulk", "message": {"payload": {"n": n, "fill": filler}}})
            })
            .collect();
        let (status, answer) = s
            .post("/api/publish", json!({ "messages": messages }))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    for n in 0..EVENTS {
        let event = sub.recv_skipping_pings().await;
        assert_eq!(event["type"], "event", "{event}");
        assert_eq!(event["seq"], n + 1);
        assert_eq!(event["message"]["payload"]["n"], n);
        assert_eq!(
            event["message"]["payload"]["fill"].as_str().map(str::len),
            Some(2_000)
        );
    }
    s.publish("bulk", json!("after")).await;
    let event = sub.recv_skipping_pings().await;
    assert_eq!(event["seq"], EVENTS + 1, "{event}");
    assert_eq!(event["message"]["payload"], "after");
    assert_eq!(s.metric("pubsub_dropped_total").await, 0.0);
}
