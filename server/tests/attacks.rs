//! What a hostile client can do, over real sockets, against the contract's
//! "Resource bounds" (second edition): each attack runs against a fresh
//! server with the default limits (a timeout shortened only where the test
//! would otherwise wait for it), and checks the bound the README states and
//! that a well-behaved client on the same server is still served.
//!
//! The long forms, with RSS, are `scripts/bench.sh --attack`.

mod common;

use common::{masked, raw_upgrade, TestServer, PATIENCE};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (Ok(bytes read)) or `within` passes (Err).
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> Result<usize, ()> {
    let mut total = 0;
    let mut chunk = vec![0u8; 64 << 10];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Err(_) => return Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(total),
            Ok(Ok(n)) => total += n,
        }
    }
}

/// A socket with a small receive buffer, so that an unread response stays
/// on the server's side.
async fn small_window(addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect")
}

/// The server answers a well-behaved client at once.
async fn still_serves(s: &TestServer) {
    let (status, body) = tokio::time::timeout(PATIENCE, s.get("/api/health"))
        .await
        .expect("health answered while under attack");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_header_timeout() {
    let s = TestServer::start_with(|c| c.header_read_timeout = Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(s.addr).await.expect("connect");
    slow.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    let closed = read_until_closed(&mut slow, PATIENCE).await;
    assert!(closed.is_ok(), "the server closed the slow head");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the timeout: {:?}",
        started.elapsed()
    );
    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(s.addr).await.expect("connect");
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    assert!(read_until_closed(&mut idle, PATIENCE)
        .await
        .is_ok_and(|n| n > 0));
    still_serves(&s).await;
}

#[tokio::test]
async fn plain_http_connections_are_limited() {
    let s = TestServer::start_with(|c| c.max_http_connections = 4).await;
    // Four connections that send nothing hold every slot...
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so the fifth is answered 429 and closed, without being read.
    let mut fifth = TcpStream::connect(s.addr).await.expect("connect");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, fifth.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("\"RATE_LIMITED\"") && answer.contains("max_http_connections"));
    // A slot comes back when a connection ends.
    held.pop();
    let mut served = false;
    for _ in 0..50 {
        if let Ok(r) = s.http.get(s.url("/api/health")).send().await {
            served = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a freed slot serves again");
    drop(held);
    s.eventually("the refusal is counted", || async {
        s.metric("pubsub_refused_total{limit=\"max_http_connections\"}")
            .await
            >= 1.0
    })
    .await;
}

/// DNS rebinding: a foreign page whose name now resolves to 127.0.0.1
/// sends its own name as Host and Origin. Neither is the server's.
#[tokio::test]
async fn dns_rebinding_is_refused() {
    let s = TestServer::start().await;
    s.create_topic("t").await;
    let foreign = format!("evil.example:{}", s.addr.port());
    for (method, path) in [
        ("GET", "/api/topics"),
        ("GET", "/api/topics/t/messages"),
        ("DELETE", "/api/topics/t"),
    ] {
        let r = s
            .http
            .request(method.parse().expect("method"), s.url(path))
            .header("host", &foreign)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 403, "{method} {path} with Host {foreign}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "FORBIDDEN");
    }
    // Host right (the page may also reach it by IP), Origin foreign.
    let r = s
        .http
        .post(s.url("/api/topics/t/messages"))
        .header("origin", format!("http://{foreign}"))
        .json(&json!({"payload": 1}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    // The same origin rule for the WebSocket upgrade, Host foreign or not.
    for (host, origin) in [
        (foreign.clone(), format!("http://{foreign}")),
        (s.addr.to_string(), format!("http://{foreign}")),
    ] {
        let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.expect("read");
        assert_eq!(
            &head, b"HTTP/1.1 403",
            "upgrade with Host {host}, Origin {origin}"
        );
    }
    // Nothing changed; the UI's own origins still work.
    let (_, topic) = s.get("/api/topics/t").await;
    assert_eq!(topic["seq"], 0);
    for own in [
        format!("http://{}", s.addr),
        format!("http://localhost:{}", s.addr.port()),
    ] {
        let r = s
            .http
            .post(s.url("/api/topics/t/messages"))
            .header("origin", &own)
            .json(&json!({"payload": 1}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 201, "{own}");
    }
    assert_eq!(s.metric("pubsub_refused_total{limit=\"host\"}").await, 4.0);
    assert_eq!(
        s.metric("pubsub_refused_total{limit=\"origin\"}").await,
        2.0
    );
}

#[tokio::test]
async fn head_needs_the_role_get_needs() {
    let s = TestServer::start_with(|c| {
        c.api_keys = ["adm=admin", "sub=subscribe"]
            .iter()
            .map(|k| k.parse().expect("key spec"))
            .collect();
    })
    .await;
    let r = s
        .http
        .post(s.url("/api/topics"))
        .bearer_auth("adm")
        .json(&json!({"name": "t"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    for (key, want) in [("adm", 403), ("sub", 200)] {
        let r = s
            .http
            .head(s.url("/api/topics/t/messages"))
            .bearer_auth(key)
            .send()
            .await
            .expect("HEAD");
        assert_eq!(r.status(), want, "HEAD history with {key}");
    }
}

/// 1 MB `request_id`s echoed in pongs that are never read: the reader stops
/// taking requests at half the queue's byte bound, so the connection holds
/// about 8 MiB of replies, not a gigabyte.
#[tokio::test]
async fn unread_replies_are_bounded_by_bytes() {
    let s = TestServer::start().await;
    let (mut attacker, _) = raw_upgrade(s.addr, b"").await;
    let ping = json!({"type": "ping", "request_id": "r".repeat(1_000_000)}).to_string();
    let frame = masked(0x81, ping.as_bytes());
    // 64 of them (64 MB) would be 64 MB of pongs; the socket stops taking
    // them once the server stops reading.
    let writer = tokio::spawn(async move {
        for _ in 0..64 {
            if attacker.write_all(&frame).await.is_err() {
                break;
            }
        }
        attacker
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let queued = s.metric("pubsub_queued_bytes").await;
    assert!(
        queued >= 4_000_000.0,
        "the attack reached the server: {queued} bytes queued"
    );
    assert!(
        queued <= (8 << 20) as f64 + 1_100_000.0,
        "replies within half the 16 MiB bound plus one: {queued} bytes queued"
    );
    assert!(
        !writer.is_finished(),
        "the server stopped reading the attacker"
    );
    // Another connection is answered at once.
    let mut ws = s.ws().await;
    ws.send(json!({"type": "ping", "request_id": "ok"})).await;
    assert_eq!(ws.recv_json().await["request_id"], "ok");
    still_serves(&s).await;
    writer.abort();
}

/// A subscriber that reads nothing while 64 KB messages pour in holds at
/// most `max_queue_bytes` (16 MiB) of them; a reading subscriber on the
/// same server gets every event, in order.
#[tokio::test]
async fn a_stalled_subscriber_holds_at_most_its_byte_bound() {
    let s = TestServer::start_with(|c| c.broker.publish_rate = 0).await;
    s.create_topic("big").await;
    let subscribe = json!({"type": "subscribe", "topic": "big"}).to_string();
    let (_stalled, _) = raw_upgrade(s.addr, &masked(0x81, subscribe.as_bytes())).await;
    let mut reader = s.ws().await;
    reader.subscribe("big", json!({})).await;
    let payload = "x".repeat(65_000);
    let received = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < 400 {
            let v = reader.recv_skipping_pings().await;
            assert_eq!(v["type"], "event", "{v}");
            seqs.push(v["seq"].as_u64().expect("seq"));
        }
        seqs
    });
    let mut most = 0.0f64;
    for i in 0..400 {
        s.publish("big", json!(payload)).await;
        if i % 50 == 49 {
            most = most.max(s.metric("pubsub_queued_bytes").await);
        }
    }
    let seqs = tokio::time::timeout(PATIENCE, received)
        .await
        .expect("the reader got everything in time")
        .expect("join");
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
    assert!(most > 8_000_000.0, "the stalled queue filled: {most}");
    assert!(most <= (16 << 20) as f64, "{most} bytes queued");
    let (_, stats) = s.get("/api/stats").await;
    let dropped = stats["topics"]["big"]["dropped"].as_u64().expect("dropped");
    assert!(
        dropped >= 100,
        "the stalled one lost what did not fit: {dropped}"
    );
}

/// A history response the client does not read is cut once it takes no
/// byte for the header timeout, and its connection slot comes back.
#[tokio::test]
async fn an_unread_history_response_is_cut() {
    let s = TestServer::start_with(|c| {
        c.header_read_timeout = Duration::from_millis(500);
        c.max_http_connections = 2;
    })
    .await;
    s.create_topic("t").await;
    let payload = "x".repeat(65_000);
    for _ in 0..100 {
        s.publish("t", json!(payload)).await;
    }
    let mut slow = small_window(s.addr).await;
    slow.write_all(b"GET /api/topics/t/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 15];
    slow.read_exact(&mut head)
        .await
        .expect("the response starts");
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    // Read nothing more for a while: the server gives up on it.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let got = read_until_closed(&mut slow, PATIENCE)
        .await
        .expect("closed");
    assert!(got < 6_000_000, "the response was cut: {got} bytes came");
    still_serves(&s).await;
}

/// SIGTERM's promise: serve returns within `shutdown_timeout` plus one
/// second whatever clients do: a half-sent head, an unread history
/// response, a WebSocket that reads nothing while its queue is full, an
/// SSE stream that reads nothing while its queue is full.
#[tokio::test]
async fn shutdown_ends_in_time_whatever_clients_do() {
    let mut s = TestServer::start_with(|c| {
        c.shutdown_timeout = Duration::from_secs(1);
        c.broker.publish_rate = 0;
    })
    .await;
    s.create_topic("t").await;
    let subscribe = json!({"type": "subscribe", "topic": "t"}).to_string();
    let (_stalled_ws, _) = raw_upgrade(s.addr, &masked(0x81, subscribe.as_bytes())).await;
    let mut stalled_sse = small_window(s.addr).await;
    stalled_sse
        .write_all(b"GET /api/topics/t/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    s.eventually("the stream is subscribed", || async {
        s.stats().await["topics"]["t"]["subscribers"] == 2
    })
    .await;
    let payload = "x".repeat(65_000);
    for _ in 0..200 {
        s.publish("t", json!(payload)).await;
    }
    let mut half = TcpStream::connect(s.addr).await.expect("connect");
    half.write_all(b"GET /api/health HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let mut unread = small_window(s.addr).await;
    unread
        .write_all(b"GET /api/topics/t/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    s.shut_down().await.expect("serve ends");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}
