//! The library across a server process that is SIGKILLed and started again
//! on the same port, in cluster mode (topics, seq and history in NATS
//! JetStream, so the restarted node keeps every epoch): the subscriber
//! gets every message exactly once, in order, told that it recovered; the
//! publisher's retries store no message twice.

mod common;

use common::{client, events, next, spawn_server, Nats, PATIENCE};
use pubsub_client::{Delivery, SubscribeOptions};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// Not a test: the server process of [`common::spawn_server`].
#[test]
fn serve_as_child() {
    common::serve_if_asked();
}

/// Messages published in all; the node is killed once the subscriber has
/// `KILL_AT`, and the publisher pauses after `PAUSE_AT` until it was, so
/// that the kill always falls while it publishes.
const TOTAL: u64 = 200;
const KILL_AT: u64 = 50;
const PAUSE_AT: u64 = 100;

fn node_args(nats: &Nats, addr: &str) -> Vec<String> {
    [
        "--addr",
        addr,
        "--cluster-nats",
        &nats.url(),
        "--heartbeat-interval",
        "1s",
        "--history-size",
        "1000",
        "--publish-rate",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test]
async fn a_killed_and_restarted_node_loses_and_doubles_nothing() {
    let nats = Nats::start();
    let mut node = spawn_server(&node_args(&nats, "127.0.0.1:0"));
    let port = node.port;
    let c = client(([127, 0, 0, 1], port).into());
    // The node connects to NATS in the background: UNAVAILABLE until then.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while let Err(e) = c.rest().create_topic("counted").await {
        assert!(tokio::time::Instant::now() < deadline, "create: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sub = c
        .subscribe(
            SubscribeOptions::new("counted")
                .heartbeat(Duration::from_millis(500), Duration::from_secs(20)),
        )
        .await
        .expect("subscribe");

    let (killed_tx, mut killed) = tokio::sync::watch::channel(false);
    let publisher = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut receipts = Vec::new();
            for n in 1..=TOTAL {
                if n == PAUSE_AT + 1 {
                    let _ = killed.wait_for(|k| *k).await;
                }
                let id = format!("m-{n}");
                match c.publish("counted", json!(n), Some(id)).await {
                    Ok(r) => receipts.push(r),
                    Err(e) => panic!("publish {n}: {e}"),
                }
            }
            receipts
        })
    };

    let mut publisher = publisher;
    let mut got = Vec::new();
    let mut restarted = None;
    let mut last_seq = 0;
    // Read until the publisher is done and the subscriber has the topic's
    // last seq (TOTAL when nothing was stored twice).
    let mut done: Option<(Vec<pubsub_client::Receipt>, u64)> = None;
    loop {
        if let Some((_, final_seq)) = &done {
            if last_seq >= *final_seq {
                break;
            }
        }
        tokio::select! {
            d = next(&mut sub) => {
                if let Delivery::Event(e) = &d {
                    last_seq = e.seq;
                }
                got.push(d);
                if restarted.is_none() && last_seq >= KILL_AT {
                    node.kill();
                    let addr = format!("127.0.0.1:{port}");
                    restarted = Some(spawn_server(&node_args(&nats, &addr)));
                    let _ = killed_tx.send(true);
                }
            }
            receipts = &mut publisher, if done.is_none() => {
                let receipts = receipts.expect("publisher ok");
                let final_seq = c.rest().topic("counted").await.expect("topic").seq;
                done = Some((receipts, final_seq));
            }
        }
    }
    let (receipts, final_seq) = done.expect("done");

    // The subscriber: every seq once, contiguous, and told it recovered.
    let seqs: Vec<u64> = events(&got).into_iter().map(|(_, s)| s).collect();
    assert_eq!(seqs, (1..=final_seq).collect::<Vec<_>>(), "{got:?}");
    let resumed: Vec<bool> = got
        .iter()
        .filter_map(|d| match d {
            Delivery::Resumed { recovered, .. } => Some(*recovered),
            _ => None,
        })
        .collect();
    assert!(
        !resumed.is_empty() && resumed.iter().all(|r| *r),
        "resumed and recovered: {resumed:?}"
    );
    assert!(!got.iter().any(|d| matches!(d, Delivery::Gap { .. })));

    // The publisher: one message per id. A publish the node stored but
    // could not answer before it died was retried under its id, and the
    // server's dedup (JetStream's Nats-Msg-Id) answered it as a duplicate.
    assert_eq!(receipts.len() as u64, TOTAL);
    let ids: BTreeSet<String> = got
        .iter()
        .filter_map(|d| match d {
            Delivery::Event(e) => Some(e.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len() as u64, TOTAL, "every id delivered");
    let retried = receipts.iter().filter(|r| r.attempts > 1).count();
    let duplicates = receipts.iter().filter(|r| r.duplicate).count();
    eprintln!("{retried} publish(es) retried, {duplicates} answered as duplicates");
    assert_eq!(final_seq, TOTAL, "a retried publish was stored twice");
    sub.close().await;
    drop(restarted);
}
