//! Unit tests of the broker core through its facade, in memory and
//! without any I/O: a connection's queue is drained by hand where a socket
//! writer would drain it. In memory the facade's futures are ready at
//! their first poll ([`Now::now`]).

use super::*;
use futures_util::FutureExt;
use hub::Hub;
use protocol::InfoKind;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;

trait Now: Future + Sized {
    /// The output of a future that must be ready at once.
    fn now(self) -> Self::Output {
        self.now_or_never()
            .expect("in memory, the broker answers at once")
    }
}

impl<F: Future> Now for F {}
use protocol::{ErrorCode, ServerFrame};
use serde_json::json;

fn broker_with(queue: usize, history: usize, policy: SlowConsumerPolicy) -> Broker {
    Broker::new(BrokerConfig {
        history_size: history,
        subscriber_queue: queue,
        slow_consumer_policy: policy,
        max_message_bytes: 1024,
        ..BrokerConfig::default()
    })
}

fn msg(v: serde_json::Value) -> PublishMessage {
    PublishMessage {
        id: None,
        payload: v,
    }
}

/// Everything queued for `conn`, as the client would read it; counts the
/// live events as delivered.
fn read_all(conn: &Connection) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    let mut buf = DrainBuf::default();
    loop {
        let batch = conn.outbox.drain(&mut buf, 64);
        frames.extend(
            batch
                .frames()
                .iter()
                .map(|f| serde_json::from_str::<ServerFrame>(f.as_str()).expect("valid frame")),
        );
        if batch.delivered() != Drained::More {
            return frames;
        }
    }
}

fn event_seqs(frames: &[ServerFrame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Event(e) => Some(e.seq),
            _ => None,
        })
        .collect()
}

fn assert_invariant(broker: &Broker, topic: &str, still_queued: u64) {
    let c = broker.topic_counts(topic).unwrap();
    assert_eq!(
        c.enqueued,
        c.delivered + c.dropped + still_queued,
        "counter invariant for {topic}: {c:?}"
    );
}

#[test]
fn topics_are_created_listed_and_deleted() {
    let b = Broker::new(BrokerConfig::default());
    b.create_topic("b").now().unwrap();
    b.create_topic("a").now().unwrap();
    assert_eq!(
        b.create_topic("a").now().unwrap_err().code,
        ErrorCode::TopicExists
    );
    assert_eq!(
        b.create_topic("bad name").now().unwrap_err().code,
        ErrorCode::BadRequest
    );
    let names: Vec<_> = b
        .list_topics()
        .now()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let info = b.topic_info("a").now().unwrap();
    assert_eq!((info.seq, info.messages, info.subscribers), (0, 0, 0));
    b.delete_topic("a").now().unwrap();
    assert_eq!(
        b.delete_topic("a").now().unwrap_err().code,
        ErrorCode::TopicNotFound
    );
    assert_eq!(
        b.topic_info("a").now().unwrap_err().code,
        ErrorCode::TopicNotFound
    );
    b.create_topic("a").now().unwrap();
    assert_ne!(
        b.topic_info("a").now().unwrap().epoch,
        info.epoch,
        "a new epoch after re-creation"
    );
}

#[test]
fn publish_assigns_contiguous_seq_and_checks_input() {
    let b = broker_with(16, 10, SlowConsumerPolicy::DropOldest);
    assert_eq!(
        b.publish("t", msg(json!(1))).now().unwrap_err().code,
        ErrorCode::TopicNotFound
    );
    b.create_topic("t").now().unwrap();
    for i in 1..=3 {
        assert_eq!(b.publish("t", msg(json!(i))).now().unwrap().seq, i);
    }
    let r = b
        .publish(
            "t",
            PublishMessage {
                id: Some("mine".into()),
                payload: json!(null),
            },
        )
        .now()
        .unwrap();
    assert_eq!((r.id.as_str(), r.seq), ("mine", 4));
    let big = json!("x".repeat(2000));
    assert_eq!(
        b.publish("t", msg(big)).now().unwrap_err().code,
        ErrorCode::PayloadTooLarge
    );
    let bad_id = PublishMessage {
        id: Some(String::new()),
        payload: json!(1),
    };
    assert_eq!(
        b.publish("t", bad_id).now().unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(
        b.topic_info("t").now().unwrap().seq,
        4,
        "refused messages take no seq"
    );
    assert_eq!(b.totals().published.load(Relaxed), 4);
}

#[test]
fn subscribe_acks_then_replays_then_goes_live() {
    let b = broker_with(64, 10, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    for i in 1..=5 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    let c = b.connect();
    b.subscribe(
        &c,
        "t",
        Replay {
            last_n: Some(2),
            since: None,
        },
        Some("r1".into()),
    )
    .now()
    .unwrap();
    b.publish("t", msg(json!(6))).now().unwrap();
    let frames = read_all(&c);
    let ServerFrame::Ack(ack) = &frames[0] else {
        panic!("ack first: {frames:?}")
    };
    assert_eq!(ack.request_id.as_deref(), Some("r1"));
    assert_eq!(
        (ack.seq, ack.replayed, ack.recovered),
        (Some(5), Some(2), None)
    );
    assert_eq!(event_seqs(&frames), [4, 5, 6]);
    assert_invariant(&b, "t", 0);
    let counts = b.topic_counts("t").unwrap();
    assert_eq!(
        (counts.enqueued, counts.delivered),
        (1, 1),
        "replays are not counted"
    );
}

#[test]
fn since_recovers_when_history_holds_it() {
    let b = broker_with(64, 3, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    let epoch = b.topic_info("t").now().unwrap().epoch;
    for i in 1..=5 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    let sub = |since: Since, last_n: Option<u64>| {
        let c = b.connect();
        b.subscribe(
            &c,
            "t",
            Replay {
                last_n,
                since: Some(SinceArg::Topic(since)),
            },
            None,
        )
        .now()
        .unwrap();
        let frames = read_all(&c);
        let ServerFrame::Ack(ack) = &frames[0] else {
            panic!()
        };
        (ack.recovered, event_seqs(&frames))
    };
    assert_eq!(
        sub(
            Since {
                seq: 3,
                epoch: epoch.clone()
            },
            Some(1)
        ),
        (Some(true), vec![4, 5]),
        "since wins over last_n"
    );
    assert_eq!(
        sub(
            Since {
                seq: 2,
                epoch: epoch.clone()
            },
            None
        ),
        (Some(true), vec![3, 4, 5])
    );
    assert_eq!(
        sub(
            Since {
                seq: 5,
                epoch: epoch.clone()
            },
            None
        ),
        (Some(true), vec![])
    );
    assert_eq!(
        sub(
            Since {
                seq: 1,
                epoch: epoch.clone()
            },
            None
        ),
        (Some(false), vec![]),
        "seq 2 fell out"
    );
    assert_eq!(
        sub(
            Since {
                seq: 9,
                epoch: epoch.clone()
            },
            None
        ),
        (Some(false), vec![])
    );
    assert_eq!(
        sub(
            Since {
                seq: 4,
                epoch: "other".into()
            },
            None
        ),
        (Some(false), vec![])
    );
}

#[test]
fn repeated_subscribe_is_idempotent() {
    let b = broker_with(64, 10, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    b.publish("t", msg(json!(1))).now().unwrap();
    let c = b.connect();
    b.subscribe(
        &c,
        "t",
        Replay {
            last_n: Some(5),
            since: None,
        },
        None,
    )
    .now()
    .unwrap();
    b.subscribe(
        &c,
        "t",
        Replay {
            last_n: Some(5),
            since: None,
        },
        None,
    )
    .now()
    .unwrap();
    b.publish("t", msg(json!(2))).now().unwrap();
    let frames = read_all(&c);
    let acks: Vec<_> = frames
        .iter()
        .filter_map(|f| {
            if let ServerFrame::Ack(a) = f {
                a.replayed
            } else {
                None
            }
        })
        .collect();
    assert_eq!(acks, [1, 0]);
    assert_eq!(event_seqs(&frames), [1, 2]);
    assert_eq!(b.topic_info("t").now().unwrap().subscribers, 1);
}

/// Second edition: unsubscribing discards the topic's queued events at
/// once (counted as dropped, no `SLOW_CONSUMER` notice); events of other
/// topics stay, and nothing of the topic follows the ack.
#[test]
fn unsubscribe_discards_queued_events_and_stops_delivery() {
    let b = broker_with(64, 10, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    b.create_topic("other").now().unwrap();
    let c = b.connect();
    b.unsubscribe(&c, "t", Some("never".into())).unwrap();
    b.subscribe(&c, "t", Replay::default(), None).now().unwrap();
    b.subscribe(&c, "other", Replay::default(), None)
        .now()
        .unwrap();
    b.publish("t", msg(json!(1))).now().unwrap();
    b.publish("other", msg(json!("kept"))).now().unwrap();
    b.publish("t", msg(json!(2))).now().unwrap();
    assert_eq!(c.outbox.depth().0, 6, "3 acks and 3 events queued");
    b.unsubscribe(&c, "t", Some("u".into())).unwrap();
    b.publish("t", msg(json!(3))).now().unwrap();
    let frames = read_all(&c);
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| match f {
            ServerFrame::Ack(a) if a.request_id.as_deref() == Some("u") => "unsub-ack".into(),
            ServerFrame::Ack(_) => "ack".into(),
            ServerFrame::Event(e) => format!("event {}", e.topic),
            other => format!("{other:?}"),
        })
        .collect();
    // Replies are written before the events gathered after them.
    assert_eq!(kinds, ["ack", "ack", "ack", "unsub-ack", "event other"]);
    let t = b.topic_counts("t").unwrap();
    assert_eq!((t.enqueued, t.delivered, t.dropped), (2, 0, 2));
    assert_invariant(&b, "t", 0);
    assert_invariant(&b, "other", 0);
    assert_eq!(b.topic_info("t").now().unwrap().subscribers, 0);
    assert_eq!(b.totals().subscriptions.load(Relaxed), 1);
    assert_eq!(b.totals().slow_consumer_events.load(Relaxed), 0);
}

/// An owed `SLOW_CONSUMER` notice of an unsubscribed topic is forgotten.
#[test]
fn unsubscribe_forgets_the_owed_notice() {
    let b = broker_with(2, 10, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    let c = b.connect();
    b.subscribe(&c, "t", Replay::default(), None).now().unwrap();
    let _ = read_all(&c);
    for i in 0..5 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    b.unsubscribe(&c, "t", None).unwrap();
    let frames = read_all(&c);
    assert_eq!(frames.len(), 1, "only the ack: {frames:?}");
    assert_invariant(&b, "t", 0);
    assert_eq!(b.topic_counts("t").unwrap().dropped, 5);
}

#[test]
fn drop_oldest_evicts_counts_and_signals_once_per_topic() {
    let b = broker_with(4, 100, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    let slow = b.connect();
    let fast = b.connect();
    b.subscribe(&slow, "t", Replay::default(), None)
        .now()
        .unwrap();
    b.subscribe(&fast, "t", Replay::default(), None)
        .now()
        .unwrap();
    let mut fast_frames = read_all(&fast);
    let _ = read_all(&slow); // the ack
    for i in 1..=10 {
        b.publish("t", msg(json!(i))).now().unwrap();
        fast_frames.extend(read_all(&fast));
    }
    assert_eq!(
        event_seqs(&fast_frames),
        (1..=10).collect::<Vec<_>>(),
        "the fast one loses nothing"
    );
    // The bound applies whenever the connection is looked at: its writer
    // (stalled here) or its depth, as the board and the gauges read it.
    assert_invariant(&b, "t", 10);
    assert_eq!(slow.outbox.depth().0, 4, "the slow one holds its bound");
    assert_invariant(&b, "t", 4);
    assert_eq!(b.topic_counts("t").unwrap().dropped, 6);

    let frames = read_all(&slow);
    let ServerFrame::Error(e) = &frames[0] else {
        panic!("notice before the next event: {frames:?}")
    };
    assert_eq!(
        (e.error.code, e.topic.as_deref(), e.dropped),
        (ErrorCode::SlowConsumer, Some("t"), Some(6))
    );
    assert_eq!(event_seqs(&frames), [7, 8, 9, 10]);
    assert_invariant(&b, "t", 0);
    assert_eq!(b.totals().dropped.load(Relaxed), 6);
}

#[test]
fn replies_are_never_evicted() {
    let b = broker_with(2, 100, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    let c = b.connect();
    b.subscribe(&c, "t", Replay::default(), Some("s".into()))
        .now()
        .unwrap();
    for i in 1..=5 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    let frames = read_all(&c);
    assert!(matches!(&frames[0], ServerFrame::Ack(a) if a.request_id.as_deref() == Some("s")));
    assert_eq!(event_seqs(&frames), [4, 5]);
}

#[test]
fn disconnect_policy_ends_the_connection() {
    let b = broker_with(3, 100, SlowConsumerPolicy::Disconnect);
    b.create_topic("t").now().unwrap();
    let c = b.connect();
    b.subscribe(&c, "t", Replay::default(), None).now().unwrap();
    for i in 1..=5 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    let mut buf = DrainBuf::default();
    let batch = c.outbox.drain(&mut buf, 64);
    let status = batch.status().clone();
    drop(batch);
    assert_eq!(
        status,
        Drained::End(End::Kicked {
            topic: "t".into(),
            dropped: 5
        })
    );
    let counts = b.topic_counts("t").unwrap();
    assert_eq!(
        (counts.enqueued, counts.dropped),
        (5, 5),
        "3 was the bound: the connection ended with all 5 unwritten"
    );
    b.disconnect(&c, End::Gone);
    assert_eq!(b.topic_info("t").now().unwrap().subscribers, 0);
}

#[test]
fn disconnect_removes_every_subscription_and_counts_the_queue() {
    let b = broker_with(16, 10, SlowConsumerPolicy::DropOldest);
    let c = b.connect();
    for t in ["a", "b", "c"] {
        b.create_topic(t).now().unwrap();
        b.subscribe(&c, t, Replay::default(), None).now().unwrap();
    }
    assert_eq!(b.totals().subscriptions.load(Relaxed), 3);
    b.publish("a", msg(json!(1))).now().unwrap();
    b.disconnect(&c, End::Gone);
    b.disconnect(&c, End::Gone);
    for t in ["a", "b", "c"] {
        assert_eq!(b.topic_info(t).now().unwrap().subscribers, 0);
    }
    assert_eq!(b.totals().subscriptions.load(Relaxed), 0);
    assert_eq!(b.totals().connections.load(Relaxed), 0);
    assert_eq!(b.topic_counts("a").unwrap().dropped, 1);
    assert_invariant(&b, "a", 0);
    // Publishing afterwards reaches nobody.
    b.publish("a", msg(json!(2))).now().unwrap();
    assert_eq!(b.topic_counts("a").unwrap().enqueued, 1);
}

/// Second edition: deleting discards the topic's queued events (counted
/// as dropped) and notifies at once.
#[test]
fn delete_discards_queued_events_and_notifies() {
    let b = broker_with(16, 10, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    let c = b.connect();
    b.subscribe(&c, "t", Replay::default(), None).now().unwrap();
    b.publish("t", msg(json!(1))).now().unwrap();
    let counts = b.topic_counts("t").unwrap();
    b.delete_topic("t").now().unwrap();
    let frames = read_all(&c);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let ServerFrame::Info(info) = &frames[1] else {
        panic!("{frames:?}")
    };
    assert_eq!(
        (info.msg, info.topic.as_deref()),
        (InfoKind::TopicDeleted, Some("t"))
    );
    assert_eq!(counts.enqueued, 1);
    assert_eq!(b.totals().dropped.load(Relaxed), 1, "the discarded event");
    assert!(c.topics().is_empty());
    assert_eq!(b.totals().subscriptions.load(Relaxed), 0);
    assert_eq!(b.totals().history_bytes.load(Relaxed), 0, "history freed");
    assert_eq!(
        b.subscribe(&c, "t", Replay::default(), None)
            .now()
            .unwrap_err()
            .code,
        ErrorCode::TopicNotFound
    );
}

/// A queue is bounded by bytes as well as events: 64 KiB events into a
/// 256 KiB queue keep at most 4 of them, the rest evicted and signalled.
#[test]
fn the_queue_is_bounded_by_bytes() {
    let b = Broker::new(BrokerConfig {
        subscriber_queue: 1024,
        max_queue_bytes: 256 << 10,
        max_message_bytes: 65_536,
        ..BrokerConfig::default()
    });
    b.create_topic("t").now().unwrap();
    let c = b.connect();
    b.subscribe(&c, "t", Replay::default(), None).now().unwrap();
    let _ = read_all(&c);
    let big = "x".repeat(65_000);
    for _ in 0..100 {
        b.publish("t", msg(json!(big))).now().unwrap();
        let (_, bytes) = c.outbox.depth();
        assert!(bytes <= 256 << 10, "{bytes} bytes queued");
    }
    assert_eq!(c.outbox.depth().0, 4);
    assert_eq!(b.queued(), (4, c.outbox.depth().1 as u64));
    let frames = read_all(&c);
    let ServerFrame::Error(e) = &frames[0] else {
        panic!("{:?}", frames[0])
    };
    assert_eq!(
        (e.error.code, e.dropped),
        (ErrorCode::SlowConsumer, Some(96))
    );
    assert_eq!(event_seqs(&frames), vec![97, 98, 99, 100]);
    assert_invariant(&b, "t", 0);
}

/// Unread replies stop the reader at half the byte bound, whatever their
/// count: 1 MiB pongs are not read past 8 MiB by default.
#[tokio::test]
async fn unread_reply_bytes_backpressure_the_reader() {
    let b = Broker::new(BrokerConfig::default());
    let c = b.connect();
    let id = "r".repeat(1 << 20);
    let mut pushed = 0;
    while c.outbox.may_read() {
        c.outbox.push_reply(Frame::pong(Some(id.clone())));
        pushed += 1;
    }
    assert_eq!(pushed, 8, "8 MiB of pongs, then no room");
    let (_, bytes) = c.outbox.depth();
    assert!(bytes <= (8 << 20) + 64 * 8, "{bytes}");
    // One drain hands over at most DRAIN_BYTES (and at least one frame).
    let mut buf = DrainBuf::default();
    let batch = c.outbox.drain(&mut buf, 256);
    assert_eq!(batch.frames().len(), 1, "one 1 MiB frame per drain");
    assert_eq!(batch.delivered(), Drained::More);
    tokio::time::timeout(std::time::Duration::from_secs(5), c.outbox.reply_room())
        .await
        .expect("room again after a drain");
}

/// History has a byte budget over all topics: past it, the topics holding
/// the most bytes lose their oldest messages first, and `since` into what
/// is gone is `recovered: false`.
#[test]
fn history_is_kept_within_its_byte_budget() {
    let b = Broker::new(BrokerConfig {
        history_size: 100,
        max_history_bytes: 1 << 20,
        max_message_bytes: 65_536,
        ..BrokerConfig::default()
    });
    b.create_topic("big").now().unwrap();
    b.create_topic("small").now().unwrap();
    for i in 0..10 {
        b.publish("small", msg(json!(i))).now().unwrap();
    }
    let small_bytes = b.totals().history_bytes.load(Relaxed);
    let big = "x".repeat(20_000);
    for _ in 0..1000 {
        b.publish("big", msg(json!(big))).now().unwrap();
        let held = b.totals().history_bytes.load(Relaxed);
        assert!(held <= (1 << 20) + 21_000, "{held} bytes of history");
    }
    let (_, small) = b.history("small", HistoryRange::All).now().unwrap();
    assert_eq!(small.len(), 10, "the small topic keeps everything");
    let (_, kept) = b.history("big", HistoryRange::All).now().unwrap();
    // 1 MiB less the 1/16 slack, in 20 KB messages.
    assert!((45..=52).contains(&kept.len()), "{}", kept.len());
    assert_eq!(kept.last().unwrap().seq, 1000);
    let held: usize = kept.iter().map(|e| e.frame.bytes().len()).sum();
    assert_eq!(
        b.totals().history_bytes.load(Relaxed),
        (held as u64) + small_bytes,
        "the gauge is exact"
    );
    assert!(b.totals().history_evicted.load(Relaxed) > 0);
    // `since` before what history still holds: not recovered.
    let c = b.connect();
    let epoch = b.topic_info("big").now().unwrap().epoch;
    b.subscribe(
        &c,
        "big",
        Replay {
            last_n: None,
            since: Some(SinceArg::Topic(Since { seq: 850, epoch })),
        },
        None,
    )
    .now()
    .unwrap();
    let ServerFrame::Ack(ack) = &read_all(&c)[0] else {
        panic!()
    };
    assert_eq!(ack.recovered, Some(false));
}

#[test]
fn history_ranges() {
    let b = broker_with(16, 3, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    for i in 1..=5 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    let seqs = |r| {
        b.history("t", r)
            .now()
            .unwrap()
            .1
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(HistoryRange::All), [3, 4, 5]);
    assert_eq!(seqs(HistoryRange::LastN(2)), [4, 5]);
    assert_eq!(seqs(HistoryRange::LastN(0)), Vec::<u64>::new());
    assert_eq!(seqs(HistoryRange::SinceSeq(3)), [4, 5]);
    assert_eq!(seqs(HistoryRange::SinceSeq(0)), [3, 4, 5]);
}

/// Subscribing with `last_n` while other threads publish: the replayed
/// events and the live ones join with no gap and no duplicate.
#[test]
fn subscribe_is_atomic_with_concurrent_publishing() {
    let b = Arc::new(broker_with(1 << 16, 50, SlowConsumerPolicy::DropOldest));
    b.create_topic("t").now().unwrap();
    let publishers: Vec<_> = (0..3)
        .map(|_| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                for i in 0..2000 {
                    b.publish("t", msg(json!(i))).now().unwrap();
                }
            })
        })
        .collect();
    let mut conns = Vec::new();
    for _ in 0..50 {
        let c = b.connect();
        b.subscribe(
            &c,
            "t",
            Replay {
                last_n: Some(50),
                since: None,
            },
            None,
        )
        .now()
        .unwrap();
        conns.push(c);
        std::thread::yield_now();
    }
    for p in publishers {
        p.join().unwrap();
    }
    for c in &conns {
        let frames = read_all(c);
        let ServerFrame::Ack(ack) = &frames[0] else {
            panic!()
        };
        let seqs = event_seqs(&frames);
        let at = ack.seq.unwrap();
        let first = seqs.first().copied().unwrap_or(at + 1);
        assert_eq!(
            first,
            at.saturating_sub(ack.replayed.unwrap()) + 1,
            "replay starts right"
        );
        let expected: Vec<u64> = (first..=6000).collect();
        assert_eq!(seqs, expected, "contiguous from replay into live");
    }
    assert_invariant(&b, "t", 0);
}

/// Replies are never dropped: a connection that leaves `reply_limit`
/// replies unread is not read any further (its reader waits) until it drains.
#[tokio::test]
async fn unread_replies_backpressure_the_reader() {
    let b = broker_with(16, 10, SlowConsumerPolicy::DropOldest);
    let c = b.connect();
    for _ in 0..1024 {
        c.outbox.push_reply(Frame::pong(None));
    }
    let waiting =
        tokio::time::timeout(std::time::Duration::from_millis(50), c.outbox.reply_room()).await;
    assert!(waiting.is_err(), "no room while 1,024 replies are unread");
    let frames = read_all(&c);
    assert_eq!(frames.len(), 1024, "every reply is kept");
    tokio::time::timeout(std::time::Duration::from_secs(5), c.outbox.reply_room())
        .await
        .expect("room again once drained");
}

/// A batch settles itself: delivered or dropped as the writer says, and
/// dropped when let go without a word (an early return), so the counter
/// invariant holds whatever the caller does.
#[test]
fn a_batch_let_go_unsettled_counts_its_events_as_dropped() {
    let b = broker_with(16, 16, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    let c = b.connect();
    b.subscribe(&c, "t", Replay::default(), None).now().unwrap();
    read_all(&c); // the subscribe ack
    let mut buf = DrainBuf::default();
    for i in 1..=3 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    let batch = c.outbox.drain(&mut buf, 2);
    assert!(batch.has_live());
    assert_eq!(batch.delivered(), Drained::More);
    {
        let batch = c.outbox.drain(&mut buf, 64);
        assert_eq!(batch.frames().len(), 1);
        // Let go without delivered() or dropped().
    }
    let counts = b.topic_counts("t").unwrap();
    assert_eq!(
        (counts.enqueued, counts.delivered, counts.dropped),
        (3, 2, 1)
    );
    assert_eq!(c.outbox.depth(), (0, 0));
}

/// In cluster mode the log is JetStream and the hub only applies what it
/// decided: an event seen already is skipped, a jump over `seq`s the
/// instance never received is announced, and a drop is the log's.
#[test]
fn the_hub_applies_the_logs_seq() {
    let hub = Hub::new(BrokerConfig::default());
    let (topic, new) = hub.adopt_topic("t", "0123456789abcdef", "2026-12-04T00:00:00.000Z");
    assert!(new);
    let c = hub.connect_with(Permits::ALL, None);
    let start = hub::Start {
        last_n: None,
        since: None,
    };
    hub.subscribe(&c, "t", start, Joining::default(), None)
        .unwrap();
    let draft = |n: u64| {
        EventDraft::new(
            "t",
            "id",
            &serde_json::value::to_raw_value(&json!(n)).unwrap(),
            "ts",
        )
    };
    assert_eq!(hub.apply_event(&topic, 1, draft(1)), 1);
    assert_eq!(hub.apply_event(&topic, 1, draft(1)), 1, "seen: skipped");
    assert_eq!(hub.apply_event(&topic, 4, draft(4)), 4, "the log's seq");
    let frames = read_all(&c);
    assert_eq!(event_seqs(&frames), vec![1, 4]);
    // The jump travels with the event after it: the notice comes right
    // before seq 4, naming the two this copy never got.
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| match f {
            ServerFrame::Event(e) => format!("event {}", e.seq),
            ServerFrame::Error(e) => format!("{:?} {:?}", e.error.code, e.dropped),
            _ => "reply".into(),
        })
        .collect();
    assert_eq!(
        kinds,
        ["reply", "event 1", "SlowConsumer Some(2)", "event 4"],
        "the jump over 2 and 3 is announced before 4"
    );
    // One that subscribes after the jump hears nothing of it.
    let later = hub.connect_with(Permits::ALL, None);
    hub.subscribe(&later, "t", start, Joining::default(), None)
        .unwrap();
    assert_eq!(hub.apply_event(&topic, 5, draft(5)), 5);
    let frames = read_all(&later);
    assert_eq!(event_seqs(&frames), vec![5]);
    assert!(
        !frames.iter().any(|f| matches!(f, ServerFrame::Error(_))),
        "{frames:?}"
    );
    let (same, new) = hub.adopt_topic("t", "0123456789abcdef", "later");
    assert!(
        !new && Arc::ptr_eq(&same, &topic),
        "adopting twice is one topic"
    );
    assert!(hub.drop_topic("t", None), "the log's delete, applied");
    assert!(hub.topic("t").is_err());
}

/// Presence notices are best effort: a watcher whose queue is half full
/// or more gets none (and nothing is counted as dropped); one with room
/// gets them, ordered with its events.
#[test]
fn presence_notices_give_way_under_backpressure() {
    let b = broker_with(4, 10, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    let watching = Joining {
        client_id: Some("w"),
        presence_events: true,
    };
    let busy = b.connect();
    b.subscribe_as(&busy, "t", Replay::default(), watching, None)
        .now()
        .unwrap();
    let idle = b.connect();
    b.subscribe_as(&idle, "t", Replay::default(), watching, None)
        .now()
        .unwrap();
    read_all(&busy);
    read_all(&idle);
    b.publish("t", msg(json!(1))).now().unwrap();
    b.publish("t", msg(json!(2))).now().unwrap();
    read_all(&idle);
    // busy holds 2 of its 4 events: at half, the join is given up.
    let joiner = b.connect();
    b.subscribe_as(&joiner, "t", Replay::default(), Joining::default(), None)
        .now()
        .unwrap();
    let notices = |frames: &[ServerFrame]| -> Vec<InfoKind> {
        frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Info(i) => Some(i.msg),
                _ => None,
            })
            .collect()
    };
    let busy_frames = read_all(&busy);
    assert_eq!(event_seqs(&busy_frames), vec![1, 2]);
    assert!(notices(&busy_frames).is_empty(), "{busy_frames:?}");
    assert_eq!(notices(&read_all(&idle)), vec![InfoKind::Join]);
    b.disconnect(&joiner, End::Gone);
    assert_eq!(notices(&read_all(&busy)), vec![InfoKind::Leave]);
    assert_eq!(b.topic_counts("t").unwrap().dropped, 0);
}

/// Issue 16: a subscribe to a topic the connection follows already is
/// acked after the events published before it, so that the ack's `seq` is
/// the last before what follows; other replies go ahead of the backlog.
#[test]
fn a_repeat_subscribe_is_acked_after_the_events_before_it() {
    let b = broker_with(64, 10, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    let c = b.connect();
    b.subscribe(&c, "t", Replay::default(), Some("first".into()))
        .now()
        .unwrap();
    for i in 1..=3 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    c.outbox.push_reply(Frame::pong(Some("ping".into())));
    b.subscribe(&c, "t", Replay::default(), Some("again".into()))
        .now()
        .unwrap();
    b.publish("t", msg(json!(4))).now().unwrap();
    let kinds: Vec<String> = read_all(&c)
        .iter()
        .map(|f| match f {
            ServerFrame::Ack(a) => {
                format!("ack {} {:?}", a.request_id.as_deref().unwrap_or(""), a.seq)
            }
            ServerFrame::Pong(_) => "pong".into(),
            ServerFrame::Event(e) => format!("event {}", e.seq),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ack first Some(0)",
            "pong",
            "event 1",
            "event 2",
            "event 3",
            "ack again Some(3)",
            "event 4"
        ]
    );
    assert_invariant(&b, "t", 0);
}

/// Issue 16: a topic's events are held once, in its ring; the ring keeps
/// nothing beyond history that every cursor has passed, holds what a
/// stalled reader has not been sent within the bound, and its bytes count
/// in the history budget, whose eviction a lagging reader is told of.
#[test]
fn the_ring_holds_what_readers_need_within_the_budgets() {
    let b = Broker::new(BrokerConfig {
        history_size: 10,
        subscriber_queue: 1000,
        max_history_bytes: 64 << 10,
        ..BrokerConfig::default()
    });
    b.create_topic("t").now().unwrap();
    let reader = b.connect();
    b.subscribe(&reader, "t", Replay::default(), None)
        .now()
        .unwrap();
    let _ = read_all(&reader);
    let one = |b: &Broker| b.totals().history_bytes.load(Relaxed);
    // Read as published: the ring stays near its history.
    b.publish("t", msg(json!("x".repeat(100)))).now().unwrap();
    let _ = read_all(&reader);
    let per_event = one(&b);
    for _ in 0..1000 {
        b.publish("t", msg(json!("x".repeat(100)))).now().unwrap();
        let _ = read_all(&reader);
    }
    assert!(
        one(&b) <= per_event * (10 + 128),
        "{} bytes held, {per_event} per event",
        one(&b)
    );
    // Stalled: the ring holds what it was not sent, within the history
    // budget; the oldest were evicted and are announced.
    let stalled = b.connect();
    b.subscribe(&stalled, "t", Replay::default(), None)
        .now()
        .unwrap();
    for _ in 0..2000 {
        b.publish("t", msg(json!("x".repeat(100)))).now().unwrap();
        let _ = read_all(&reader);
    }
    assert!(one(&b) <= 64 << 10, "{} bytes over the budget", one(&b));
    let frames = read_all(&stalled);
    let notices: u64 = frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Error(e) => e.dropped,
            _ => None,
        })
        .sum();
    let events = event_seqs(&frames);
    assert!(notices > 0, "the evicted events are announced");
    assert_eq!(
        notices + events.len() as u64,
        2000,
        "each one sent or announced"
    );
    assert_eq!(events.last(), Some(&3001));
    assert_invariant(&b, "t", 0);
}

/// Issue 16: a publish wakes a parked writer (and only the writers of its
/// subscribers).
#[tokio::test]
async fn a_publish_wakes_parked_writers() {
    let b = broker_with(64, 10, SlowConsumerPolicy::DropOldest);
    b.create_topic("t").now().unwrap();
    b.create_topic("other").now().unwrap();
    let c = b.connect();
    b.subscribe(&c, "t", Replay::default(), None).now().unwrap();
    let _ = read_all(&c); // parks
                          // The ack left a wake-up stored (a writer may get a spurious one).
    let _ = tokio::time::timeout(std::time::Duration::from_millis(10), c.outbox.writable()).await;
    let woken = tokio::time::timeout(std::time::Duration::from_millis(50), c.outbox.writable());
    b.publish("other", msg(json!(0))).now().unwrap();
    assert!(
        woken.await.is_err(),
        "another topic's publish leaves it parked"
    );
    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), c.outbox.writable());
    b.publish("t", msg(json!(1))).now().unwrap();
    assert!(woken.await.is_ok(), "its topic's publish wakes it");
    assert_eq!(event_seqs(&read_all(&c)), [1]);
}

/// Issue 16: the bound holds for a reader whose writer never drains (a
/// stalled socket): every 128 events the topic makes its laggards skip,
/// so what the counters call queued stays within the bound plus 128, and
/// under `disconnect` such a reader is ended without a drain.
#[test]
fn a_stalled_reader_is_bounded_without_its_writer() {
    /// A broker with a bound of 4 events and a subscriber of "t" whose
    /// writer never drains.
    fn stalled(policy: SlowConsumerPolicy) -> (Broker, Arc<Connection>) {
        let b = broker_with(4, 10, policy);
        b.create_topic("t").now().unwrap();
        let stalled = b.connect();
        b.subscribe(&stalled, "t", Replay::default(), None)
            .now()
            .unwrap();
        (b, stalled)
    }

    let (b, _stalled) = stalled(SlowConsumerPolicy::DropOldest);
    for i in 0..1000 {
        b.publish("t", msg(json!(i))).now().unwrap();
        let c = b.topic_counts("t").unwrap();
        let queued = c.enqueued - c.delivered - c.dropped;
        assert!(queued <= 4 + 128, "{queued} queued after {i}: {c:?}");
    }
    assert!(b.topic_counts("t").unwrap().dropped >= 1000 - 4 - 128);

    let (b, stalled) = stalled(SlowConsumerPolicy::Disconnect);
    for i in 0..200 {
        b.publish("t", msg(json!(i))).now().unwrap();
    }
    assert!(stalled.outbox.is_closed(), "ended without a drain");
    let mut buf = DrainBuf::default();
    let batch = stalled.outbox.drain(&mut buf, 64);
    assert!(matches!(batch.status(), Drained::End(End::Kicked { .. })));
}

/// A flusher that keeps what publishes hand it, for the tests to play it.
#[derive(Default)]
struct Recording {
    claimed: parking_lot::Mutex<Vec<Arc<Connection>>>,
}

impl Flush for Recording {
    fn flush(&self, claimed: &mut Vec<Arc<Connection>>) {
        self.claimed.lock().append(claimed);
    }
}

/// A TCP stream to give a connection as its direct socket.
async fn a_socket() -> (Arc<tokio::net::TcpStream>, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    (Arc::new(accepted.unwrap().0), client.unwrap())
}

/// Issue 16, the batched wake-up: a publish claims a parked writer that has
/// a direct socket for the flusher (no task woken), once; a writer that
/// wants its socket meanwhile waits for the flusher to hand it over; a
/// flusher with nothing left parks it again, and the next publish claims
/// it again. Connections without a direct socket are woken as before.
#[tokio::test]
async fn a_publish_claims_parked_direct_writers_for_the_flusher() {
    let b = broker_with(64, 10, SlowConsumerPolicy::DropOldest);
    let flusher = Arc::new(Recording::default());
    b.ensure_flusher(|| Arc::clone(&flusher));
    b.create_topic("t").now().unwrap();
    let direct = b.connect();
    let (socket, _peer) = a_socket().await;
    direct.set_direct(socket);
    let plain = b.connect();
    for c in [&direct, &plain] {
        b.subscribe(c, "t", Replay::default(), None).now().unwrap();
        let _ = read_all(c); // the ack; parks
    }
    let _ = tokio::time::timeout(
        std::time::Duration::from_millis(10),
        plain.outbox.writable(),
    )
    .await;

    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), plain.outbox.writable());
    b.publish("t", msg(json!(1))).now().unwrap();
    assert!(woken.await.is_ok(), "the plain writer is woken");
    let claimed: Vec<u64> = flusher.claimed.lock().iter().map(|c| c.id).collect();
    assert_eq!(claimed, [direct.id], "only the direct one is claimed");
    // Claimed once: another publish while it is being flushed adds nothing.
    b.publish("t", msg(json!(2))).now().unwrap();
    assert_eq!(flusher.claimed.lock().len(), 1);

    // Its writer wakes (a reply, say) and wants the socket: not yet.
    assert!(!direct.outbox.claim(), "the flusher holds the socket");
    // The flusher writes both events, then finds nothing and, since the
    // writer asked, hands the socket over with a wake-up.
    let mut buf = DrainBuf::default();
    let batch = direct.outbox.drain_as(&mut buf, 64, Owner::Flusher);
    assert_eq!(event_seqs(&frames_of(&batch)), [1, 2]);
    assert_eq!(batch.delivered(), Drained::More, "took frames: not parked");
    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), direct.outbox.writable());
    let batch = direct.outbox.drain_as(&mut buf, 64, Owner::Flusher);
    assert!(batch.is_empty());
    assert_eq!(batch.delivered(), Drained::Empty);
    assert!(woken.await.is_ok(), "handed over with a wake-up");
    assert!(direct.outbox.claim(), "the writer has it now");

    // The writer parks; a publish claims it for the flusher again, whose
    // empty drain (nobody asked) parks it, and so on.
    flusher.claimed.lock().clear();
    assert!(read_all(&direct).is_empty());
    b.publish("t", msg(json!(3))).now().unwrap();
    assert_eq!(flusher.claimed.lock().len(), 1);
    let batch = direct.outbox.drain_as(&mut buf, 64, Owner::Flusher);
    assert_eq!(event_seqs(&frames_of(&batch)), [3]);
    let _ = batch.delivered();
    let batch = direct.outbox.drain_as(&mut buf, 64, Owner::Flusher);
    assert_eq!(batch.delivered(), Drained::Empty);
    flusher.claimed.lock().clear();
    b.publish("t", msg(json!(4))).now().unwrap();
    assert_eq!(
        flusher.claimed.lock().len(),
        1,
        "parked by the flusher, claimed again"
    );

    // A closed connection's end is the writer's: the flusher's drain says
    // so, and the flusher hands over.
    direct.outbox.close(End::Gone);
    let batch = direct.outbox.drain_as(&mut buf, 64, Owner::Flusher);
    assert_eq!(batch.delivered(), Drained::End(End::Gone));
    direct.outbox.hand_over(None);
    assert!(direct.outbox.claim());
    assert_eq!(event_seqs(&read_all(&plain)), [1, 2, 3, 4]);
    assert_invariant(&b, "t", 0);
}

fn frames_of(batch: &Batch<'_>) -> Vec<ServerFrame> {
    batch
        .frames()
        .iter()
        .map(|f| serde_json::from_str::<ServerFrame>(f.as_str()).expect("valid frame"))
        .collect()
}
