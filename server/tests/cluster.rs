//! Cluster mode: three real server processes sharing one nats-server with
//! JetStream (Debian's `nats-server`, which the test command installs).
//! Each test starts its own nats-server on a free port with its own store,
//! so that one can stop and restart it and another can kill a node.

mod common;

use common::{port_after, server_port, spawn_listening, Listening, Rest, Ws, PATIENCE};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pubsub-server");

/// A nats-server with JetStream on loopback, its store in a temp dir.
struct Nats {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl Nats {
    async fn start() -> Self {
        let store = tempfile::tempdir().expect("temp dir");
        let Listening { child, port, .. } = spawn_listening(
            nats_command(-1, store.path()),
            "nats-server",
            |line| port_after(line, "Listening for client connections on "),
            true,
        );
        Nats {
            child: Some(child),
            port,
            store,
        }
    }

    /// Starts again on the same port and store.
    async fn resume(mut self) -> Self {
        let Listening { child, .. } = spawn_listening(
            nats_command(i32::from(self.port), self.store.path()),
            "nats-server",
            |line| port_after(line, "Listening for client connections on "),
            true,
        );
        self.child = Some(child);
        self
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nats-server with JetStream on loopback (`-p -1`: a port of the kernel's
/// choosing). Debian's package; the test command installs it.
fn nats_command(port: i32, store: &Path) -> Command {
    let mut command = Command::new("nats-server");
    command
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store);
    command
}

/// One pubsub-server process in cluster mode.
struct Node {
    child: Child,
    port: u16,
    /// Its REST API (`node.get(…)` and the like, through `Deref`).
    rest: Rest,
}

impl std::ops::Deref for Node {
    type Target = Rest;

    fn deref(&self) -> &Rest {
        &self.rest
    }
}

impl Node {
    async fn start(nats: &Nats) -> Self {
        Node::start_with(nats, &[]).await
    }

    /// A node with `extra` flags after the usual ones.
    async fn start_with(nats: &Nats, extra: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command
            .args([
                "--addr",
                "127.0.0.1:0",
                "--cluster-nats",
                &nats.url(),
                "--heartbeat-interval",
                "1h",
                "--history-size",
                "50",
                "--publish-rate",
                "0",
                "--log-format",
                "json",
            ])
            .args(extra)
            .env("RUST_LOG", "warn,pubsub_server=info");
        let Listening { child, port, .. } =
            spawn_listening(command, "pubsub-server", server_port, true);
        let node = Node {
            child,
            port,
            rest: Rest::new(([127, 0, 0, 1], port).into()),
        };
        node.until("healthy", |status, _| status == 200, "/api/health")
            .await;
        node
    }

    async fn ws(&self) -> Ws {
        Ws::connect(&format!("ws://127.0.0.1:{}/ws", self.port)).await
    }

    /// Polls `path` until `check(status, body)` holds.
    async fn until(&self, what: &str, check: impl Fn(u16, &Value) -> bool, path: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, body) = self.get(path).await;
            if check(status, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "node :{} not {what}: {status} {body}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn cluster() -> (Nats, Vec<Node>) {
    let nats = Nats::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&nats).await);
    }
    (nats, nodes)
}

/// The next `event` of a subscription, skipping nothing else: any other
/// frame first is a test failure.
async fn next_event(ws: &mut Ws) -> Value {
    let frame = ws.recv_skipping_pings().await;
    assert_eq!(frame["type"], "event", "expected an event, got {frame}");
    frame
}

#[tokio::test]
async fn a_topic_and_its_messages_are_the_same_on_every_node() {
    let (_nats, nodes) = cluster().await;
    let [a, b, c] = &nodes[..] else {
        unreachable!()
    };

    // Created on one node, it exists on the others at once: a node that has
    // not heard of it yet asks the registry.
    a.create_topic("orders.eu").await;
    let (status, list) = b.get("/api/topics").await;
    assert_eq!(
        (status, &list["topics"][0]["name"]),
        (200, &json!("orders.eu")),
        "{list}"
    );
    let (status, topic) = c.get("/api/topics/orders.eu").await;
    assert_eq!(status, 200, "{topic}");
    let epoch = topic["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(b.get("/api/topics/orders.eu").await.1["epoch"], epoch);
    let (status, body) = b.post("/api/topics", json!({ "name": "orders.eu" })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("TOPIC_EXISTS"))
    );

    // Subscribers on B and C; publishes from A (REST) and C (WebSocket).
    let mut on_b = b.ws().await;
    let ack = on_b.subscribe("orders.eu", json!({})).await;
    assert_eq!(
        (ack["seq"].as_u64(), ack["epoch"].as_str()),
        (Some(0), Some(&*epoch))
    );
    let mut on_c = c.ws().await;
    on_c.subscribe("orders.eu", json!({})).await;
    assert_eq!(a.publish("orders.eu", json!({"n": 1})).await, 1);
    on_c.send(
        json!({"type": "publish", "topic": "orders.eu", "request_id": "p2",
                     "message": {"id": "m-2", "payload": {"n": 2}}}),
    )
    .await;
    let mut seen_c = Vec::new();
    let mut ack_seq = None;
    while seen_c.len() < 2 || ack_seq.is_none() {
        let frame = on_c.recv_skipping_pings().await;
        match frame["type"].as_str() {
            Some("ack") => ack_seq = frame["seq"].as_u64(),
            Some("event") => seen_c.push((frame["seq"].as_u64(), frame["message"].clone())),
            _ => panic!("unexpected {frame}"),
        }
    }
    assert_eq!(ack_seq, Some(2));
    for ws in [&mut on_b] {
        for n in 1..=2u64 {
            let ev = next_event(ws).await;
            assert_eq!(
                (ev["seq"].as_u64(), &ev["message"]["payload"]["n"]),
                (Some(n), &json!(n))
            );
        }
    }
    assert_eq!(
        seen_c[1],
        (Some(2), json!({"id": "m-2", "payload": {"n": 2}}))
    );

    // History and topic counts are the cluster's on every node.
    for node in &nodes {
        let (_, page) = node.get("/api/topics/orders.eu/messages?last_n=5").await;
        let seqs: Vec<u64> = page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["seq"].as_u64())
            .collect();
        assert_eq!(seqs, vec![1, 2], "history on :{}", node.port);
        assert_eq!(node.get("/api/topics/orders.eu").await.1["messages"], 2);
        let list = node.get("/api/topics").await.1;
        assert_eq!(
            (&list["topics"][0]["name"], &list["topics"][0]["messages"]),
            (&json!("orders.eu"), &json!(2))
        );
    }
    let mut late = a.ws().await;
    let ack = late.subscribe("orders.eu", json!({"last_n": 1})).await;
    assert_eq!(ack["replayed"], 1);
    assert_eq!(next_event(&mut late).await["seq"], 2);

    // Deleted on one node, it is deleted everywhere and every subscriber is told.
    assert_eq!(b.delete("/api/topics/orders.eu").await.0, 200);
    for ws in [&mut on_b, &mut on_c, &mut late] {
        let notice = ws.recv_skipping_pings().await;
        assert_eq!(
            (notice["msg"].as_str(), notice["topic"].as_str()),
            (Some("topic_deleted"), Some("orders.eu")),
            "{notice}"
        );
    }
    // Gone at once everywhere, by name and from the list.
    for node in &nodes {
        assert_eq!(node.get("/api/topics/orders.eu").await.0, 404);
        assert_eq!(node.get("/api/topics").await.1["topics"], json!([]));
    }
    let (status, body) = c
        .post("/api/topics/orders.eu/messages", json!({"payload": 3}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("TOPIC_NOT_FOUND"))
    );
    // Created again: a new epoch, seq from 0.
    c.create_topic("orders.eu").await;
    let again = a.get("/api/topics/orders.eu").await.1;
    assert_ne!(again["epoch"], epoch);
    assert_eq!(again["seq"], 0);
}

#[tokio::test]
async fn concurrent_publishers_on_different_nodes_get_one_order() {
    const EACH: usize = 150;
    let (_nats, nodes) = cluster().await;
    nodes[0].create_topic("race").await;
    let mut subscribers = Vec::new();
    for node in &nodes {
        let mut ws = node.ws().await;
        ws.subscribe("race", json!({})).await;
        subscribers.push(ws);
    }
    // One publisher per node, all at once, each waiting for nothing.
    let mut publishers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut ws = node.ws().await;
        publishers.push(tokio::spawn(async move {
            for k in 0..EACH {
                ws.send(
                    json!({"type": "publish", "topic": "race", "request_id": format!("{k}"),
                               "message": {"id": format!("p{i}-{k}"), "payload": k}}),
                )
                .await;
            }
            let mut seqs = Vec::new();
            while seqs.len() < EACH {
                let ack = ws.recv_skipping_pings().await;
                assert_eq!(ack["type"], "ack", "{ack}");
                seqs.push(ack["seq"].as_u64().expect("seq"));
            }
            seqs
        }));
    }
    let mut acked = Vec::new();
    for p in publishers {
        let seqs = p.await.expect("publisher");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one connection's publishes keep their order: {seqs:?}"
        );
        acked.extend(seqs);
    }
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=(3 * EACH) as u64).collect::<Vec<_>>(),
        "every seq once"
    );

    // Every node delivers the same seq -> id mapping, contiguous from 1.
    let mut orders: Vec<BTreeMap<u64, String>> = Vec::new();
    for ws in &mut subscribers {
        let mut order = BTreeMap::new();
        for expected in 1..=(3 * EACH) as u64 {
            let ev = next_event(ws).await;
            assert_eq!(ev["seq"].as_u64(), Some(expected), "contiguous, increasing");
            order.insert(
                expected,
                ev["message"]["id"].as_str().expect("id").to_owned(),
            );
        }
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[1], orders[2]);
    // Each publisher's messages keep its order inside the common one.
    for i in 0..3 {
        let mine: Vec<usize> = orders[0]
            .values()
            .filter_map(|id| {
                id.strip_prefix(&format!("p{i}-"))
                    .and_then(|k| k.parse().ok())
            })
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_killed_node_loses_nothing_for_clients_that_resume_elsewhere() {
    let (nats, mut nodes) = cluster().await;
    nodes[1].create_topic("feed").await;
    let mut on_a = nodes[0].ws().await;
    let ack = on_a.subscribe("feed", json!({})).await;
    let epoch = ack["epoch"].as_str().expect("epoch").to_owned();
    for n in 1..=5 {
        nodes[1].publish("feed", json!(n)).await;
    }
    let mut last = 0;
    for _ in 0..5 {
        last = next_event(&mut on_a).await["seq"].as_u64().expect("seq");
    }
    assert_eq!(last, 5);

    nodes[0].kill();
    // The client is cut off; the cluster goes on without node A.
    for n in 6..=12 {
        nodes[1].publish("feed", json!(n)).await;
    }
    let mut on_c = nodes[2].ws().await;
    let ack = on_c
        .subscribe("feed", json!({"since": {"seq": last, "epoch": epoch}}))
        .await;
    assert_eq!(
        (ack["recovered"].as_bool(), ack["replayed"].as_u64()),
        (Some(true), Some(7)),
        "{ack}"
    );
    for expected in 6..=12 {
        let ev = next_event(&mut on_c).await;
        assert_eq!(
            (ev["seq"].as_u64(), &ev["message"]["payload"]),
            (Some(expected), &json!(expected))
        );
    }
    nodes[1].publish("feed", json!(13)).await;
    assert_eq!(
        next_event(&mut on_c).await["seq"],
        13,
        "live after the replay"
    );

    // A new node joining later (or the killed one restarted) knows every
    // topic and holds the history at once.
    let joined = Node::start(&nats).await;
    let list = joined.get("/api/topics").await.1;
    assert_eq!(
        (&list["topics"][0]["name"], &list["topics"][0]["messages"]),
        (&json!("feed"), &json!(13))
    );
    let mut on_joined = joined.ws().await;
    let ack = on_joined
        .subscribe("feed", json!({"since": {"seq": 10, "epoch": epoch}}))
        .await;
    assert_eq!(
        (ack["recovered"].as_bool(), ack["replayed"].as_u64()),
        (Some(true), Some(3)),
        "{ack}"
    );
    for expected in 11..=13 {
        assert_eq!(next_event(&mut on_joined).await["seq"], expected);
    }
}

#[tokio::test]
async fn nats_down_is_said_and_survived() {
    let (mut nats, nodes) = cluster().await;
    nodes[0].create_topic("weather").await;
    let mut on_b = nodes[1].ws().await;
    on_b.subscribe("weather", json!({})).await;
    nodes[2].publish("weather", json!("sun")).await;
    assert_eq!(next_event(&mut on_b).await["seq"], 1);

    nats.stop();
    for node in &nodes {
        let body = node
            .until(
                "reporting NATS down",
                |status, _| status == 503,
                "/api/health",
            )
            .await;
        assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
        let metrics = node.metrics().await;
        assert!(metrics.contains("\npubsub_backplane_up 0\n"), "{metrics}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("NATS"),
            "{body}"
        );
    }
    let (status, body) = nodes[0]
        .post("/api/topics/weather/messages", json!({"payload": "rain"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{body}"
    );
    let (status, body) = nodes[1]
        .post("/api/topics", json!({"name": "climate"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{body}"
    );
    let (status, _) = nodes[2].delete("/api/topics/weather").await;
    assert_eq!(status, 503);
    let mut on_c = nodes[2].ws().await;
    on_c.send(json!({"type": "publish", "topic": "weather", "request_id": "r", "message": {"payload": "hail"}})).await;
    let reply = on_c.recv_skipping_pings().await;
    assert_eq!(
        (
            reply["error"]["code"].as_str(),
            reply["request_id"].as_str()
        ),
        (Some("UNAVAILABLE"), Some("r")),
        "{reply}"
    );
    // Reads go on from the node's copy: history, and a subscription that
    // will continue without a gap when NATS is back.
    let (status, page) = nodes[2].get("/api/topics/weather/messages").await;
    assert_eq!(
        (status, page["messages"][0]["payload"].as_str()),
        (200, Some("sun")),
        "{page}"
    );
    let ack = on_c.subscribe("weather", json!({"last_n": 5})).await;
    assert_eq!(
        (ack["seq"].as_u64(), ack["replayed"].as_u64()),
        (Some(1), Some(1)),
        "{ack}"
    );
    assert_eq!(next_event(&mut on_c).await["seq"], 1);

    // NATS comes back (same store): every node recovers by itself, nothing
    // refused was published, and the subscriber that stayed gets what follows.
    let nats = nats.resume().await;
    for node in &nodes {
        node.until("healthy again", |status, _| status == 200, "/api/health")
            .await;
    }
    let deadline = Instant::now() + PATIENCE;
    let seq = loop {
        let (status, body) = nodes[0]
            .post("/api/topics/weather/messages", json!({"payload": "fog"}))
            .await;
        if status == 201 {
            break body["seq"].as_u64().expect("seq");
        }
        assert!(
            Instant::now() < deadline,
            "publishing again: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seq, 2, "the refused publishes left no message behind");
    for ws in [&mut on_b, &mut on_c] {
        let ev = next_event(ws).await;
        assert_eq!(
            (ev["seq"].as_u64(), &ev["message"]["payload"]),
            (Some(2), &json!("fog"))
        );
    }
    nodes[1].create_topic("climate").await;
    drop(nats);
}

/// A topic's stream is bounded in bytes on NATS's disk too: two histories
/// of the largest messages (here 2 x 50 x (64 KiB + 512)), within the
/// history budget.
#[tokio::test]
async fn a_topic_stream_is_bounded_in_bytes() {
    let (nats, nodes) = cluster().await;
    nodes[0].create_topic("bounded").await;
    let (_, info) = nodes[1].get("/api/topics/bounded").await;
    let epoch = info["epoch"].as_str().expect("epoch");
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(format!("PUBSUB_{epoch}"))
        .await
        .expect("the topic's stream");
    let config = &stream.cached_info().config;
    assert_eq!(config.max_bytes, 2 * 50 * (65_536 + 512));
    assert_eq!(config.max_messages, 50 + 10_000);
}

/// `max_topics` counts the cluster's topics, not each node's: creates
/// racing on every node for the last slots get exactly that many `201`s.
#[tokio::test]
async fn max_topics_holds_across_the_cluster() {
    let nats = Nats::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start_with(&nats, &["--max-topics", "6"]).await);
    }
    let creates = (0..18).map(|i| {
        let node = &nodes[i % 3];
        async move {
            node.post("/api/topics", json!({"name": format!("race-{i}")}))
                .await
        }
    });
    let answers = futures_util::future::join_all(creates).await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 6, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    }
    for node in &nodes {
        node.until(
            "showing the six topics",
            |_, body| body["topics"].as_array().is_some_and(|t| t.len() == 6),
            "/api/topics",
        )
        .await;
    }

    // A delete anywhere frees a slot everywhere, once.
    let (_, list) = nodes[0].get("/api/topics").await;
    let name = list["topics"][0]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let (status, _) = nodes[1].delete(&format!("/api/topics/{name}")).await;
    assert_eq!(status, 200);
    let (status, body) = nodes[2].post("/api/topics", json!({"name": "after"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = nodes[0].post("/api/topics", json!({"name": "over"})).await;
    assert_eq!(status, 429, "{body}");

    // A failed create gives its slot back: an existing name is a 409 and
    // leaves the count as it was.
    let (status, _) = nodes[1].delete("/api/topics/after").await;
    assert_eq!(status, 200);
    let existing = name_of_any(&nodes[1]).await;
    let (status, _) = nodes[0]
        .post("/api/topics", json!({"name": existing}))
        .await;
    assert_eq!(status, 409);
    let (status, body) = nodes[2].post("/api/topics", json!({"name": "last"})).await;
    assert_eq!(status, 201, "{body}");
}

async fn name_of_any(node: &Node) -> String {
    let (_, list) = node.get("/api/topics").await;
    list["topics"][0]["name"]
        .as_str()
        .expect("a name")
        .to_owned()
}

/// A count left too high (a node that died between taking a slot and
/// registering its topic) is set right once the registry has been quiet
/// for a while; until then creates are refused, never let past the bound.
#[tokio::test]
async fn a_drifted_topic_count_is_set_right_when_the_registry_is_quiet() {
    let nats = Nats::start().await;
    let node = Node::start_with(&nats, &["--max-topics", "2"]).await;
    node.create_topic("one").await;
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let bucket = js.get_key_value("pubsub_topics").await.expect("registry");
    bucket
        .put("=topic-count", "2".into())
        .await
        .expect("the count");
    let (status, body) = node.post("/api/topics", json!({"name": "two"})).await;
    assert_eq!(status, 429, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = node.post("/api/topics", json!({"name": "two"})).await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(Instant::now() < deadline, "the count was never corrected");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, _) = node.post("/api/topics", json!({"name": "three"})).await;
    assert_eq!(status, 429, "the bound holds after the correction");
}

/// Patterns across nodes: a pattern subscriber on B follows a topic
/// created on C (announced, then its events from any node), replays what
/// the cluster holds for topics that existed before, and `?pattern=`
/// lists the cluster's topics on every node.
#[tokio::test]
async fn a_pattern_on_one_node_follows_topics_created_on_another() {
    let (_nats, nodes) = cluster().await;
    let [a, b, c] = &nodes[..] else {
        unreachable!()
    };
    a.create_topic("shop.eu").await;
    a.publish("shop.eu", json!(1)).await;
    a.publish("shop.eu", json!(2)).await;

    let mut on_b = b.ws().await;
    let ack = on_b.subscribe("shop.*", json!({"last_n": 10})).await;
    assert_eq!(
        ack["topics"]["shop.eu"]["seq"], 2,
        "the cluster's seq: {ack}"
    );
    assert_eq!(ack["topics"]["shop.eu"]["replayed"], 2);
    for n in 1..=2u64 {
        assert_eq!(next_event(&mut on_b).await["seq"], n);
    }

    c.create_topic("shop.us").await;
    let created = on_b.recv_skipping_pings().await;
    assert_eq!(
        (&created["msg"], &created["topic"]),
        (&json!("topic_created"), &json!("shop.us")),
        "{created}"
    );
    assert_eq!(c.publish("shop.us", json!("x")).await, 1);
    let ev = next_event(&mut on_b).await;
    assert_eq!((&ev["topic"], &ev["seq"]), (&json!("shop.us"), &json!(1)));
    // Each event once, from whichever node it was published on.
    a.publish("shop.eu", json!(3)).await;
    let ev = next_event(&mut on_b).await;
    assert_eq!((&ev["topic"], &ev["seq"]), (&json!("shop.eu"), &json!(3)));

    for node in [a, b, c] {
        let (status, list) = node.get("/api/topics?pattern=shop.%3E").await;
        assert_eq!(status, 200);
        let names: Vec<&str> = list["topics"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["shop.eu", "shop.us"], "on :{}", node.port);
    }
}

/// Presence across nodes: a subscription on any node is listed by every
/// node (with its node's name), watchers on another node get `join` and
/// `leave`, and a killed node's clients leave presence within the bound
/// the README states (3 s of silence, checked every second).
#[tokio::test]
async fn presence_is_cluster_wide_and_a_killed_nodes_clients_leave_it() {
    let (_nats, mut nodes) = cluster().await;
    nodes[0].create_topic("room").await;
    let mut watcher = nodes[1].ws().await;
    watcher
        .subscribe("room", json!({"client_id": "w", "presence_events": true}))
        .await;
    let mut alice = nodes[0].ws().await;
    alice.subscribe("room", json!({"client_id": "alice"})).await;
    let mut carol = nodes[2].ws().await;
    carol.subscribe("room", json!({"client_id": "carol"})).await;

    let ids = |presence: &Value| -> Vec<String> {
        let mut ids: Vec<String> = presence["clients"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["client_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    for node in &nodes {
        let presence = node
            .until(
                "listing every node's subscriptions",
                |status, body| status == 200 && body["count"] == 3,
                "/api/topics/room/presence",
            )
            .await;
        assert_eq!(ids(&presence), ["alice", "carol", "w"], "on :{}", node.port);
        assert!(
            presence["clients"]
                .as_array()
                .is_some_and(|a| a.iter().all(|c| c["node"].is_string())),
            "{presence}"
        );
    }
    // The watcher on node B heard both joins.
    let mut joined = Vec::new();
    while joined.len() < 2 {
        let notice = watcher.recv_skipping_pings().await;
        assert_eq!(notice["msg"], "join", "{notice}");
        joined.push(
            notice["client"]["client_id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    joined.sort();
    assert_eq!(joined, ["alice", "carol"]);

    // Alice leaves by unsubscribing: a leave on node B.
    alice
        .send(json!({"type": "unsubscribe", "topic": "room", "request_id": "u"}))
        .await;
    let leave = watcher.recv_skipping_pings().await;
    assert_eq!(
        (&leave["msg"], &leave["client"]["client_id"]),
        (&json!("leave"), &json!("alice"))
    );

    // Node C is killed: carol leaves presence within the stated bound.
    let killed = Instant::now();
    nodes[2].kill();
    let leave = watcher.recv_skipping_pings().await;
    assert_eq!(
        (&leave["msg"], &leave["client"]["client_id"]),
        (&json!("leave"), &json!("carol")),
        "{leave}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "carol left after {:?}",
        killed.elapsed()
    );
    let (_, presence) = nodes[0].get("/api/topics/room/presence").await;
    assert_eq!(ids(&presence), ["w"]);

    // The board names each connection's node.
    let (_, board) = nodes[1].get("/api/connections").await;
    assert!(
        board["connections"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|c| c["node"].is_string())),
        "{board}"
    );
}

/// Idempotent publish is cluster-wide: a retry on another node is answered
/// with the original's `seq` and `duplicate`, and no node fans it out
/// again. That includes the retry after an `UNAVAILABLE` whose publish NATS
/// had in fact stored: played here by storing a message in the topic's
/// stream directly, as a publish whose acknowledgement was lost would be.
#[tokio::test]
async fn a_retry_on_any_node_is_a_duplicate_even_after_a_lost_acknowledgement() {
    let (nats, nodes) = cluster().await;
    let [a, b, c] = &nodes[..] else {
        unreachable!()
    };
    a.create_topic("orders").await;
    let mut on_c = c.ws().await;
    on_c.subscribe("orders", json!({})).await;

    let (status, first) = a
        .post(
            "/api/topics/orders/messages",
            json!({"id": "o-1", "payload": 1}),
        )
        .await;
    assert_eq!((status, &first["seq"]), (201, &json!(1)), "{first}");
    assert!(first.get("duplicate").is_none());
    let (status, retry) = b
        .post(
            "/api/topics/orders/messages",
            json!({"id": "o-1", "payload": "again"}),
        )
        .await;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(
        (&retry["seq"], &retry["duplicate"]),
        (&json!(1), &json!(true))
    );
    let mut ws = b.ws().await;
    ws.send(
        json!({"type": "publish", "topic": "orders", "request_id": "p",
                   "message": {"id": "o-1", "payload": 3}}),
    )
    .await;
    let ack = ws.recv_skipping_pings().await;
    assert_eq!(
        (&ack["seq"], &ack["duplicate"]),
        (&json!(1), &json!(true)),
        "{ack}"
    );
    let metrics = b.metrics().await;
    assert!(
        metrics.contains("pubsub_publish_duplicates_total 2"),
        "B answered two duplicates: {metrics}"
    );

    // The publish NATS stored but whose acknowledgement never came back.
    let (_, info) = a.get("/api/topics/orders").await;
    let epoch = info["epoch"].as_str().expect("epoch");
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let stored = js
        .send_publish(
            format!("pubsub.topic.{epoch}"),
            async_nats::jetstream::message::PublishMessage::build()
                .payload(r#"{"id":"o-2","payload":2,"ts":"2026-12-06T00:00:00.000Z"}"#.into())
                .message_id("o-2"),
        )
        .await
        .expect("sent")
        .await
        .expect("stored");
    assert_eq!(stored.sequence, 2);
    let (status, retry) = c
        .post(
            "/api/topics/orders/messages",
            json!({"id": "o-2", "payload": 2}),
        )
        .await;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(
        (&retry["seq"], &retry["duplicate"]),
        (&json!(2), &json!(true))
    );

    // A batch through the cluster: in order, duplicates answered as such.
    let (status, batch) = b
        .post(
            "/api/publish",
            json!({"messages": [
                {"topic": "orders", "message": {"id": "o-3", "payload": 3}},
                {"topic": "orders", "message": {"id": "o-1", "payload": 1}},
                {"topic": "orders", "message": {"id": "o-4", "payload": 4}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    let seqs: Vec<(Value, Value)> = batch["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["seq"].clone(), r["duplicate"].clone()))
        .collect();
    assert_eq!(
        seqs,
        [
            (json!(3), Value::Null),
            (json!(1), json!(true)),
            (json!(4), Value::Null)
        ]
    );

    // C's subscriber saw each message once: 1, 2, 3, 4.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(next_event(&mut on_c).await["seq"].clone());
    }
    assert_eq!(seen, [json!(1), json!(2), json!(3), json!(4)]);
    on_c.expect_silence(Duration::from_millis(300)).await;
}

/// Reads an SSE response until `records` records (blank-line separated,
/// pings aside) have come, within `PATIENCE`: their texts.
async fn sse_records(response: &mut reqwest::Response, records: usize) -> Vec<String> {
    let mut text = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while out.len() < records {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .expect("the records in time")
            .expect("the stream")
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let record: String = text.drain(..end + 2).collect();
            if !record.starts_with(':') {
                out.push(record.trim_end().to_owned());
            }
        }
    }
    out
}

/// Server-Sent Events in cluster mode: a stream on one node follows what
/// another publishes, with the cluster's `seq` and epoch in its ids, and a
/// stream opened on a third node resumes from `Last-Event-ID`.
#[tokio::test]
async fn an_sse_stream_on_any_node_follows_and_resumes_the_cluster() {
    let (_nats, nodes) = cluster().await;
    let [a, b, c] = &nodes[..] else {
        unreachable!()
    };
    a.create_topic("feed").await;
    let (_, info) = a.get("/api/topics/feed").await;
    let epoch = info["epoch"].as_str().expect("epoch").to_owned();
    let mut on_b = b
        .http
        .get(b.url("/api/topics/feed/events"))
        .send()
        .await
        .expect("GET events");
    assert_eq!(on_b.status(), 200);
    let first = sse_records(&mut on_b, 1).await;
    assert!(first[0].starts_with("event: subscribed\n"), "{first:?}");
    for n in 1..=3 {
        a.publish("feed", json!({"n": n})).await;
    }
    let records = sse_records(&mut on_b, 3).await;
    for (record, seq) in records.iter().zip(1..) {
        assert!(
            record.starts_with(&format!("id: {epoch}:{seq}\nevent: message\ndata: ")),
            "{record}"
        );
    }

    let mut on_c = c
        .http
        .get(c.url("/api/topics/feed/events"))
        .header("last-event-id", format!("{epoch}:2"))
        .send()
        .await
        .expect("GET events");
    assert_eq!(on_c.status(), 200);
    let resumed = sse_records(&mut on_c, 2).await;
    let subscribed: Value = serde_json::from_str(
        resumed[0]
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("data"),
    )
    .expect("JSON");
    assert_eq!(
        (&subscribed["recovered"], &subscribed["replayed"]),
        (&json!(true), &json!(1)),
        "{subscribed}"
    );
    assert!(
        resumed[1].starts_with(&format!("id: {epoch}:3\n")),
        "{resumed:?}"
    );
}
