//! A server on `127.0.0.1:0` per test, and small clients that speak the
//! real protocol to it: the protocol crate's client for REST, tokio-tungstenite
//! for WebSocket, the protocol crate's frame encoder for raw sockets.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use protocol::client::{Client, Method};
use protocol::ServerFrame;
use pubsub_server::config::Config;
use pubsub_server::shutdown::Shutdown;
use pubsub_server::AppState;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    /// Its REST API (`s.get(…)`, `s.http`, `s.url(…)` reach it through `Deref`).
    pub rest: Rest,
    served: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::ops::Deref for TestServer {
    type Target = Rest;

    fn deref(&self) -> &Rest {
        &self.rest
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default_for_tests();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = AppState::new(config, Shutdown::new());
        let served = tokio::spawn(pubsub_server::serve(listener, state.clone()));
        TestServer {
            addr,
            state,
            rest: Rest::new(addr),
            served: Some(served),
        }
    }

    pub async fn ws(&self) -> Ws {
        Ws::connect(&format!("ws://{}/ws", self.addr)).await
    }

    /// Triggers a graceful shutdown and waits until `serve` returned.
    pub async fn shut_down(&mut self) -> std::io::Result<()> {
        self.state.shutdown.trigger();
        let served = self.served.take().expect("not shut down twice");
        tokio::time::timeout(PATIENCE, served)
            .await
            .expect("shutdown in time")
            .expect("join")
    }

    /// Polls `check` until it holds (the server settles asynchronously).
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A client of one server's REST API with the contract's common calls, on
/// the protocol crate's client; every call panics on what a test did not
/// expect, and the raw ones return the status and the body as JSON.
pub struct Rest {
    pub client: Client,
    pub http: reqwest::Client,
}

impl Rest {
    pub fn new(addr: SocketAddr) -> Self {
        let client = Client::new(&format!("http://{addr}"));
        Rest {
            http: client.http().clone(),
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.client.url(path)
    }

    async fn answer(&self, request: reqwest::RequestBuilder, what: &str) -> (u16, Value) {
        let reply = self.client.send(request).await.expect(what);
        (reply.status, reply.json())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.answer(self.client.request(Method::GET, path), "GET")
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let request = self.client.request(Method::POST, path).json(&body);
        self.answer(request, "POST").await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let request = self.client.request(Method::POST, path).body(body);
        self.answer(request, "POST").await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.answer(self.client.request(Method::DELETE, path), "DELETE")
            .await
    }

    pub async fn create_topic(&self, name: &str) {
        if let Err(e) = self.client.create_topic(name).await {
            panic!("create {name}: {e}");
        }
    }

    pub async fn publish(&self, topic: &str, payload: Value) -> u64 {
        let message = protocol::PublishMessage { id: None, payload };
        match self.client.publish(topic, &message).await {
            Ok(published) => published.seq,
            Err(e) => panic!("publish to {topic}: {e}"),
        }
    }

    pub async fn stats(&self) -> Value {
        self.get("/api/stats").await.1
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    }

    /// A gauge or counter from `/metrics` (an unlabelled one, or one series).
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    }
}

/// A WebSocket client.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a read found besides a text frame.
#[derive(Debug)]
pub enum Closed {
    Close(Option<CloseFrame>),
    Eof,
}

impl Ws {
    pub async fn connect(url: &str) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connect");
        Ws { stream }
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("send");
    }

    /// The next text frame, as JSON; panics on close or after `PATIENCE`.
    pub async fn recv_json(&mut self) -> Value {
        match self.recv_or_close().await {
            Ok(v) => v,
            Err(c) => panic!("connection closed while waiting for a frame: {c:?}"),
        }
    }

    pub async fn recv_or_close(&mut self) -> Result<Value, Closed> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("a frame within the patience");
            match next {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("frames are JSON"))
                }
                Some(Ok(Message::Close(c))) => return Err(Closed::Close(c)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Closed::Eof),
            }
        }
    }

    /// The next frame, typed.
    pub async fn recv(&mut self) -> ServerFrame {
        let v = self.recv_json().await;
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("not a server frame ({e}): {v}"))
    }

    /// Skips heartbeats.
    pub async fn recv_skipping_pings(&mut self) -> Value {
        loop {
            let v = self.recv_json().await;
            if !(v["type"] == "info" && v["msg"] == "ping") {
                return v;
            }
        }
    }

    /// Nothing arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(wait, self.stream.next()).await {
            panic!("expected silence, got {m:?}");
        }
    }

    pub async fn subscribe(&mut self, topic: &str, extra: Value) -> Value {
        let mut frame = serde_json::json!({ "type": "subscribe", "topic": topic, "request_id": format!("sub-{topic}") });
        if let (Some(f), Some(e)) = (frame.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                f.insert(k.clone(), v.clone());
            }
        }
        self.send(frame).await;
        let ack = self.recv_skipping_pings().await;
        assert_eq!(ack["type"], "ack", "subscribe to {topic} acked: {ack}");
        ack
    }
}

#[allow(unused_imports)] // used by the raw-socket tests only
pub use protocol::testing::masked;

/// Upgrades a raw TCP connection, sending `early` in the same write as the
/// request; returns the socket and what followed the 101 response.
pub async fn raw_upgrade(
    addr: std::net::SocketAddr,
    early: &[u8],
) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = protocol::testing::upgrade_request(&addr.to_string(), "/ws").into_bytes();
    request.extend_from_slice(early);
    tcp.write_all(&request).await.expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&chunk[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let accept = format!(
        "sec-websocket-accept: {}",
        protocol::testing::SAMPLE_ACCEPT.to_lowercase()
    );
    assert!(head.contains(&accept), "{head}");
    (tcp, got[end..].to_vec())
}

/// A child process and the port it said it listens on.
pub struct Listening {
    pub child: std::process::Child,
    pub port: u16,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Listening {
    /// Everything the process wrote to stderr so far (when it was kept).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// All of stderr, once the process has exited (its pipe closed).
    pub fn stderr_after_exit(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.stderr()
    }
}

/// The one way tests give a process a port: it binds one the kernel picks
/// (`--addr 127.0.0.1:0`, nats-server's `-p -1`) and says which in its log;
/// `find` recognizes that line. Nothing races for a port between tests
/// running in parallel. The rest of stderr is read in a thread and kept
/// when `keep` (else the pipe is closed once the port is known, as a dead
/// log reader would close it).
pub fn spawn_listening(
    mut command: std::process::Command,
    what: &str,
    find: fn(&str) -> Option<u16>,
    keep: bool,
) -> Listening {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let stderr = child.stderr.take().expect("piped stderr");
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let kept = std::sync::Arc::clone(&text);
    let (found, port) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut found = Some(found);
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if let Ok(mut t) = kept.lock() {
                t.push_str(&line);
                t.push('\n');
            }
            if let Some(port) = find(&line) {
                if let Some(found) = found.take() {
                    let _ = found.send(port);
                    if !keep {
                        break;
                    }
                }
            }
        }
    });
    match port.recv_timeout(PATIENCE) {
        Ok(port) => Listening {
            child,
            port,
            stderr: text,
            reader: Some(reader),
        },
        Err(_) => {
            let _ = child.kill();
            panic!("{what} did not say where it listens");
        }
    }
}

/// The port pubsub-server logged as listening on (text or JSON logs, at
/// `info` for `pubsub_server`).
pub fn server_port(line: &str) -> Option<u16> {
    port_after(line, "listening: UI at http://")
}

/// The port after the last `:` of `text`'s first token that has one, after `marker`.
pub fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let token = rest
        .split(|c: char| c.is_whitespace() || c == '"' || c == '/')
        .find(|t| t.contains(':'))?;
    token.rsplit(':').next()?.parse().ok()
}
