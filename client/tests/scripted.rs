//! Against a scripted WebSocket server, for what a real one does not do on
//! demand: going silent (the subscription must notice within its liveness
//! deadline and reconnect, having pinged meanwhile); garbage, a
//! slow-consumer notice and a seq jump (skipped, reported, reported); a
//! topic found with a new epoch on resume (replayed from its start).

mod common;

use common::{client, next};
use futures_util::{SinkExt, StreamExt};
use pubsub_client::{Delivery, SubscribeOptions};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Accepts the next connection and reads its subscribe.
async fn accept(listener: &TcpListener) -> (Socket, Value) {
    let (tcp, _) = listener.accept().await.expect("accept");
    let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                if v["type"] == "subscribe" {
                    return (ws, v);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("no subscribe: {other:?}"),
        }
    }
}

/// An ack at `seq` of epoch `e1` that replays `replayed` events.
fn ack(subscribe: &Value, seq: u64, replayed: u64, recovered: Option<bool>) -> Message {
    ack_in("e1", subscribe, seq, replayed, recovered)
}

fn ack_in(
    epoch: &str,
    request: &Value,
    seq: u64,
    replayed: u64,
    recovered: Option<bool>,
) -> Message {
    let mut a = json!({"type": "ack", "request_id": request["request_id"], "topic": "t",
        "status": "ok", "seq": seq, "epoch": epoch, "replayed": replayed, "ts": "2026-01-01T00:00:00.000Z"});
    if let Some(r) = recovered {
        a["recovered"] = r.into();
    }
    Message::text(a.to_string())
}

fn event(seq: u64) -> Message {
    Message::text(
        json!({"type": "event", "topic": "t", "message": {"id": format!("m{seq}"), "payload": seq},
            "seq": seq, "ts": "2026-01-01T00:00:00.000Z"})
        .to_string(),
    )
}

#[tokio::test]
async fn a_silent_connection_is_replaced_and_pings_are_sent_meanwhile() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut ws, sub) = accept(&listener).await;
        ws.send(ack(&sub, 0, 0, None)).await.expect("ack");
        // Silent from here: read (and count) pings, answer nothing.
        let mut pings = 0;
        let mut open = true;
        let second = loop {
            tokio::select! {
                frame = ws.next(), if open => match frame {
                    Some(Ok(Message::Text(t))) if t.as_str().contains("\"ping\"") => pings += 1,
                    Some(Ok(_)) => {}
                    _ => open = false, // the client gave up on this one
                },
                second = accept(&listener) => break second,
            }
        };
        let (mut ws2, resume) = second;
        assert_eq!(
            resume["since"],
            json!({"seq": 0, "epoch": "e1"}),
            "{resume}"
        );
        ws2.send(ack(&resume, 1, 1, Some(true))).await.expect("ack");
        ws2.send(event(1)).await.expect("event");
        (pings, ws, ws2)
    });

    let c = client(addr);
    let mut sub = c
        .subscribe(
            SubscribeOptions::new("t").heartbeat(Duration::from_millis(50), Duration::from_secs(1)),
        )
        .await
        .expect("subscribe");
    let Delivery::Disconnected { reason } = next(&mut sub).await else {
        panic!("disconnected first")
    };
    assert!(reason.contains("nothing received"), "{reason}");
    assert!(matches!(
        next(&mut sub).await,
        Delivery::Resumed {
            recovered: true,
            ..
        }
    ));
    let d = next(&mut sub).await;
    assert!(matches!(&d, Delivery::Event(e) if e.seq == 1), "{d:?}");
    let (pings, _first, _second) = server.await.expect("server");
    assert!(pings >= 1, "the client pinged while waiting");
}

#[tokio::test]
async fn garbage_is_skipped_and_drops_are_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut ws, sub) = accept(&listener).await;
        ws.send(ack(&sub, 0, 0, None)).await.expect("ack");
        for m in [
            Message::text("not json"),
            Message::text(r#"{"type":"event","topic":"t"}"#),
            Message::text(r#"{"type":"brand_new","x":1}"#),
            Message::binary(vec![0u8, 1, 2]),
            event(1),
            event(1),
            Message::text(
                json!({"type": "error", "error": {"code": "SLOW_CONSUMER", "message": "m"},
                    "topic": "t", "dropped": 2, "ts": "2026-01-01T00:00:00.000Z"})
                .to_string(),
            ),
            event(4),
        ] {
            ws.send(m).await.expect("send");
        }
        ws
    });
    let c = client(addr);
    let mut sub = c
        .subscribe(SubscribeOptions::new("t"))
        .await
        .expect("subscribe");
    assert!(matches!(next(&mut sub).await, Delivery::Event(e) if e.seq == 1));
    assert_eq!(
        next(&mut sub).await,
        Delivery::SlowConsumer {
            topic: "t".into(),
            dropped: 2
        }
    );
    assert_eq!(
        next(&mut sub).await,
        Delivery::Gap {
            topic: "t".into(),
            epoch: "e1".into(),
            first: 2,
            last: 3
        }
    );
    assert!(matches!(next(&mut sub).await, Delivery::Event(e) if e.seq == 4));
    let _ws = server.await.expect("server");
    sub.close().await;
}

/// The next text frame a client sent, as JSON.
async fn read(ws: &mut Socket) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                if v["type"] != "ping" {
                    return v;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("no frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_topic_with_a_new_epoch_is_replayed_from_its_start() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut ws, sub) = accept(&listener).await;
        ws.send(ack(&sub, 3, 0, None)).await.expect("ack");
        ws.send(event(4)).await.expect("event");
        // Gone; back with the topic created again, two messages in.
        ws.close(None).await.expect("close");
        let (mut ws, resume) = accept(&listener).await;
        assert_eq!(
            resume["since"],
            json!({"seq": 4, "epoch": "e1"}),
            "{resume}"
        );
        ws.send(ack_in("e2", &resume, 2, 0, Some(false)))
            .await
            .expect("ack");
        // A live event between the two answers: replayed below, so the
        // client must not deliver it twice.
        ws.send(event(3)).await.expect("event");
        let unsubscribe = read(&mut ws).await;
        assert_eq!(unsubscribe["type"], "unsubscribe", "{unsubscribe}");
        ws.send(ack_in("e2", &unsubscribe, 0, 0, None))
            .await
            .expect("ack");
        let again = read(&mut ws).await;
        assert_eq!(again["since"], json!({"seq": 0, "epoch": "e2"}), "{again}");
        ws.send(ack_in("e2", &again, 3, 3, Some(true)))
            .await
            .expect("ack");
        for seq in 1..=3 {
            ws.send(event(seq)).await.expect("event");
        }
        ws
    });
    let c = client(addr);
    let mut sub = c
        .subscribe(SubscribeOptions::new("t"))
        .await
        .expect("subscribe");
    assert!(matches!(next(&mut sub).await, Delivery::Event(e) if e.seq == 4));
    assert!(matches!(
        next(&mut sub).await,
        Delivery::Disconnected { .. }
    ));
    let resumed = next(&mut sub).await;
    let Delivery::Resumed {
        recovered: false,
        after,
        now,
        ..
    } = &resumed
    else {
        panic!("not recovered: {resumed:?}")
    };
    assert_eq!((after.seq, after.epoch.as_str()), (4, "e1"));
    assert_eq!((now.seq, now.epoch.as_str()), (0, "e2"));
    assert_eq!(
        resumed.missing(),
        Some(pubsub_client::Missing::EpochChanged { new_epoch_seq: 0 })
    );
    for seq in 1..=3 {
        let d = next(&mut sub).await;
        assert!(
            matches!(&d, Delivery::Event(e) if e.seq == seq && e.epoch == "e2"),
            "{seq}: {d:?}"
        );
    }
    let _ws = server.await.expect("server");
    sub.close().await;
}
