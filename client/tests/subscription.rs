//! Subscriptions and publishes against a real server in this process:
//! the round trip, a resume after an admin closed the connection, a resume
//! after an in-memory restart (which cannot recover, and says so), and a
//! pattern's resume topic by topic.

mod common;

use common::{client, events, kick, next, until, Server};
use pubsub_client::{CloseReason, Delivery, Missing, Start, SubscribeOptions};
use serde_json::json;
use std::time::Duration;

/// Options of the tests' subscriptions: frequent pings, a liveness deadline
/// far above any scheduling hiccup.
fn options(topic: &str) -> SubscribeOptions {
    SubscribeOptions::new(topic).heartbeat(Duration::from_millis(500), Duration::from_secs(20))
}

fn is_event(d: &Delivery, topic: &str, seq: u64) -> bool {
    matches!(d, Delivery::Event(e) if e.topic == topic && e.seq == seq)
}

#[tokio::test]
async fn publish_and_subscribe_round_trip() {
    let server = Server::start().await;
    let c = client(server.addr);
    c.rest().create_topic("t").await.expect("create");

    let mut sub = c.subscribe(options("t")).await.expect("subscribe");
    assert_eq!(sub.ack().seq, Some(0));
    let first = c
        .publish("t", json!({"n": 1}), Some("one".into()))
        .await
        .expect("publish");
    assert_eq!(
        (first.id.as_str(), first.seq, first.attempts),
        ("one", 1, 1)
    );
    let second = c
        .publish("t", json!({"n": 2}), None)
        .await
        .expect("publish");
    assert_eq!(second.seq, 2);
    assert_eq!(second.id.len(), 36, "a UUID: {}", second.id);

    let Delivery::Event(e) = next(&mut sub).await else {
        panic!("an event")
    };
    assert_eq!(
        (e.seq, e.id.as_str(), &e.payload),
        (1, "one", &json!({"n": 1}))
    );
    assert_eq!(e.epoch, sub.ack().epoch.clone().unwrap_or_default());
    let Delivery::Event(e) = next(&mut sub).await else {
        panic!("an event")
    };
    assert_eq!((e.seq, e.id), (2, second.id));

    // Refusals are values, returned at once.
    let missing = c.publish("nope", json!(1), None).await.unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");
    let bad = c.subscribe(options("nope")).await.err().expect("refused");
    assert!(bad.to_string().contains("TOPIC_NOT_FOUND"), "{bad}");

    // Replay on request, then a graceful close ends the stream.
    let mut replay = c
        .subscribe(options("t").start(Start::LastN(1)))
        .await
        .expect("subscribe");
    assert_eq!(replay.ack().replayed, Some(1));
    assert!(is_event(&next(&mut replay).await, "t", 2));

    // Closed, or just dropped: either way the connection goes.
    let health = c.rest().health().await.expect("health");
    assert_eq!(health.connections, 2);
    replay.close().await;
    drop(sub);
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while c.rest().health().await.expect("health").connections > 0 {
        assert!(tokio::time::Instant::now() < deadline, "connections closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_connection_closed_by_an_admin_resumes_with_no_duplicate_and_no_gap() {
    let server = Server::start().await;
    let c = client(server.addr);
    c.rest().create_topic("orders").await.expect("create");
    let mut sub = c.subscribe(options("orders")).await.expect("subscribe");
    for n in 1..=5 {
        c.publish("orders", json!(n), None).await.expect("publish");
    }
    let mut got = until(&mut sub, |d| is_event(d, "orders", 5)).await;

    assert_eq!(kick(&c, "orders").await, 1);
    // Published while the subscription is away (or coming back).
    for n in 6..=10 {
        c.publish("orders", json!(n), None).await.expect("publish");
    }
    got.extend(until(&mut sub, |d| is_event(d, "orders", 10)).await);

    let seqs: Vec<u64> = events(&got).into_iter().map(|(_, s)| s).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "{got:?}");
    assert!(
        got.iter().any(|d| matches!(
            d,
            Delivery::Disconnected { reason } if reason == "an admin closed the connection (close 4010)"
        )),
        "{got:?}"
    );
    let resumes: Vec<bool> = got
        .iter()
        .filter_map(|d| match d {
            Delivery::Resumed { recovered, .. } => Some(*recovered),
            _ => None,
        })
        .collect();
    assert!(!resumes.is_empty() && resumes.iter().all(|r| *r), "{got:?}");
    assert!(!got.iter().any(|d| matches!(d, Delivery::Gap { .. })));
    sub.close().await;
}

#[tokio::test]
async fn an_in_memory_restart_is_reported_as_not_recovered() {
    let server = Server::start().await;
    let c = client(server.addr);
    c.rest().create_topic("t").await.expect("create");
    let mut sub = c.subscribe(options("t")).await.expect("subscribe");
    let old_epoch = sub.ack().epoch.clone().expect("an epoch");
    for n in 1..=3 {
        c.publish("t", json!(n), None).await.expect("publish");
    }
    until(&mut sub, |d| is_event(d, "t", 3)).await;

    // Restarted empty: the subscription keeps trying (the topic is missing)
    // until the topic exists again, with a new epoch and one message.
    let server = server.restart().await;
    c.rest().create_topic("t").await.expect("create again");
    c.publish("t", json!("new"), None).await.expect("publish");
    let got = until(&mut sub, |d| matches!(d, Delivery::Resumed { .. })).await;
    let resumed = got.last().expect("resumed");
    let Delivery::Resumed {
        recovered,
        after,
        now,
        ..
    } = resumed
    else {
        unreachable!()
    };
    assert!(!recovered, "{resumed:?}");
    assert_eq!((after.seq, &after.epoch), (3, &old_epoch));
    assert_ne!(now.epoch, old_epoch);
    // Whether it resumed before or after the first new message, that
    // message is delivered: a new epoch is replayed from its start.
    assert_eq!(now.seq, 0, "{resumed:?}");
    assert_eq!(
        resumed.missing(),
        Some(Missing::EpochChanged { new_epoch_seq: 0 })
    );
    assert!(events(&got).is_empty(), "{got:?}");

    c.publish("t", json!("next"), None).await.expect("publish");
    let rest = until(&mut sub, |d| is_event(d, "t", 2)).await;
    let seqs: Vec<u64> = events(&rest).into_iter().map(|(_, s)| s).collect();
    assert_eq!(seqs, [1, 2], "{rest:?}");
    let Some(Delivery::Event(e)) = rest.last() else {
        unreachable!()
    };
    assert_eq!(e.epoch, now.epoch);

    // A deleted topic ends an exact subscription, said twice: the notice,
    // then the end.
    c.rest().delete_topic("t").await.expect("delete");
    assert_eq!(
        next(&mut sub).await,
        Delivery::TopicDeleted { topic: "t".into() }
    );
    assert_eq!(
        next(&mut sub).await,
        Delivery::Closed(CloseReason::TopicDeleted)
    );
    assert!(futures_util::StreamExt::next(&mut sub).await.is_none());
    drop(server);
}

#[tokio::test]
async fn a_pattern_resumes_every_topic_including_one_created_meanwhile() {
    let server = Server::start().await;
    let c = client(server.addr);
    for t in ["p.a", "p.b"] {
        c.rest().create_topic(t).await.expect("create");
    }
    let mut sub = c.subscribe(options("p.*")).await.expect("subscribe");
    assert_eq!(sub.ack().pattern, Some(true));
    c.publish("p.a", json!(1), None).await.expect("publish");
    c.publish("p.b", json!(1), None).await.expect("publish");
    let mut got = until(&mut sub, |d| is_event(d, "p.b", 1)).await;

    assert_eq!(kick(&c, "p.*").await, 1);
    c.publish("p.a", json!(2), None).await.expect("publish");
    c.rest().create_topic("p.c").await.expect("create");
    for n in 1..=3 {
        c.publish("p.c", json!(n), None).await.expect("publish");
    }
    got.extend(until(&mut sub, |d| is_event(d, "p.c", 3)).await);
    c.publish("p.b", json!(2), None).await.expect("publish");
    got.extend(until(&mut sub, |d| is_event(d, "p.b", 2)).await);

    for (topic, last) in [("p.a", 2), ("p.b", 2), ("p.c", 3)] {
        let seqs: Vec<u64> = events(&got)
            .into_iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "{topic}: {got:?}");
    }
    // Whether p.c's creation was seen live or found on resume, nothing of
    // it was lost, and every resume recovered.
    assert!(got.iter().all(|d| !matches!(
        d,
        Delivery::Resumed {
            recovered: false,
            ..
        } | Delivery::Gap { .. }
    )));
    sub.close().await;
}
