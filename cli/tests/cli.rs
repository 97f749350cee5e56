//! The `pubsub` binary against a real server on 127.0.0.1:0.

use pubsub_server::config::Config;
use pubsub_server::shutdown::Shutdown;
use pubsub_server::AppState;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_pubsub");

/// A server on its own runtime thread, for the test's lifetime.
fn server() -> SocketAddr {
    server_with(Config::default_for_tests())
}

fn server_with(config: Config) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let state = AppState::new(config, Shutdown::new());
            let _ = pubsub_server::serve(listener, state).await;
        });
    });
    rx.recv().unwrap()
}

fn pubsub(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--server")
        .arg(format!("http://{addr}"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn topics_can_be_created_listed_shown_and_deleted() {
    let addr = server();
    assert!(pubsub(addr, &["topics", "create", "orders"])
        .status
        .success());
    assert!(pubsub(addr, &["topics", "create", "alerts"])
        .status
        .success());
    let list = pubsub(addr, &["topics", "list"]);
    let names: Vec<String> = stdout(&list)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alerts", "orders"]);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&pubsub(addr, &["topics", "list", "--json"]))).unwrap();
    assert_eq!(json["topics"].as_array().unwrap().len(), 2);
    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&pubsub(addr, &["topics", "show", "orders"]))).unwrap();
    assert_eq!(shown["seq"], 0);

    let dup = pubsub(addr, &["topics", "create", "orders"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("TOPIC_EXISTS"), "{}", stderr(&dup));
    let bad = pubsub(addr, &["topics", "create", "no spaces"]);
    assert!(stderr(&bad).contains("BAD_REQUEST"));

    assert!(pubsub(addr, &["topics", "delete", "orders"])
        .status
        .success());
    let gone = pubsub(addr, &["topics", "delete", "orders"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("TOPIC_NOT_FOUND"));
}

#[test]
fn pub_and_sub_and_history() {
    let addr = server();
    pubsub(addr, &["topics", "create", "t"]);
    let one = pubsub(addr, &["pub", "t", r#"{"n":1}"#, "--id", "first"]);
    assert!(one.status.success(), "{}", stderr(&one));
    let ack: serde_json::Value = serde_json::from_str(stdout(&one).trim()).unwrap();
    assert_eq!(
        (ack["seq"].as_u64(), ack["id"].as_str()),
        (Some(1), Some("first"))
    );
    assert_eq!(
        pubsub(addr, &["pub", "t", "{not json"]).status.code(),
        Some(2)
    );

    // Lines from stdin, one message each; a bad line is reported and skipped.
    let mut child = Command::new(BIN)
        .args(["--server", &format!("http://{addr}"), "pub", "t", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"n\":2}\n[3]\noops\n\"four\"\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "one line was refused");
    let seqs: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert!(stderr(&out).contains("oops"));

    // sub: replay, one JSON event per line.
    let sub = pubsub(addr, &["sub", "t", "--last-n", "3", "--count", "3"]);
    assert!(sub.status.success(), "{}", stderr(&sub));
    let events: Vec<serde_json::Value> = stdout(&sub)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(events[2]["message"]["payload"], "four");
    assert!(stderr(&sub).contains("replaying 3"));

    // --since resumes after a seq of the current epoch.
    let since = pubsub(addr, &["sub", "t", "--since", "3", "--count", "1"]);
    let event: serde_json::Value = serde_json::from_str(stdout(&since).trim()).unwrap();
    assert_eq!(event["seq"], 4);
    assert!(stderr(&since).contains("recovered: true"));

    let history = pubsub(addr, &["history", "t", "--last-n", "2"]);
    let seqs: Vec<u64> = stdout(&history)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [3, 4]);

    let missing = pubsub(addr, &["sub", "nope", "--count", "1"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("TOPIC_NOT_FOUND"));
}

#[test]
fn live_sub_sees_messages_published_meanwhile() {
    let addr = server();
    pubsub(addr, &["topics", "create", "live"]);
    let sub = Command::new(BIN)
        .args([
            "--server",
            &format!("http://{addr}"),
            "sub",
            "live",
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Publish until the subscriber has both (it may subscribe after the first publishes).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut n = 0;
    while std::time::Instant::now() < deadline {
        let subscribers: serde_json::Value =
            serde_json::from_str(&stdout(&pubsub(addr, &["topics", "show", "live"]))).unwrap();
        if subscribers["subscribers"] == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for _ in 0..2 {
        n += 1;
        assert!(pubsub(addr, &["pub", "live", &n.to_string()])
            .status
            .success());
    }
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2);
}

#[test]
fn stats_and_health() {
    let addr = server();
    let stats: serde_json::Value =
        serde_json::from_str(&stdout(&pubsub(addr, &["stats"]))).unwrap();
    assert!(stats["totals"]["published"].is_u64());
    let health = pubsub(addr, &["health"]);
    assert!(health.status.success());
    assert_eq!(stdout(&health).trim(), "ok");
    let down = Command::new(BIN)
        .args(["--server", "http://127.0.0.1:9", "health"])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(2), "unreachable is exit 2");
}

#[test]
fn the_api_key_goes_with_rest_and_websocket_calls() {
    let mut config = Config::default_for_tests();
    config.api_keys = vec!["k=admin,publish,subscribe".parse().unwrap()];
    let addr = server_with(config);
    let refused = pubsub(addr, &["topics", "create", "t"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("UNAUTHORIZED"),
        "{}",
        stderr(&refused)
    );
    let with_key = |args: &[&str]| {
        let mut all = vec!["--api-key", "k"];
        all.extend_from_slice(args);
        pubsub(addr, &all)
    };
    assert!(with_key(&["topics", "create", "t"]).status.success());
    let published = with_key(&["pub", "t", "{\"n\":1}"]);
    assert!(published.status.success(), "{}", stderr(&published));
    let got = with_key(&["sub", "t", "--last-n", "1", "--count", "1"]);
    assert!(got.status.success(), "{}", stderr(&got));
    assert!(stdout(&got).contains("\"n\":1"), "{}", stdout(&got));
}

#[test]
fn a_minted_token_is_accepted_by_a_server_with_the_same_secret() {
    const SECRET: &str = "a development secret of at least 32 bytes";
    let config = Config::load_from(["x", "--addr", "127.0.0.1:0", "--token-secret", SECRET])
        .expect("config");
    let addr = server_with(config);
    let mint = |args: &[&str]| {
        let mut all = vec!["token", "--secret", SECRET];
        all.extend_from_slice(args);
        pubsub(addr, &all)
    };
    let admin = mint(&["--sub", "ops", "--roles", "admin", "--ttl", "1m"]);
    assert!(admin.status.success(), "{}", stderr(&admin));
    let admin = stdout(&admin).trim().to_owned();
    for topic in ["orders.eu", "users.x"] {
        let created = pubsub(addr, &["--api-key", &admin, "topics", "create", topic]);
        assert!(created.status.success(), "{}", stderr(&created));
    }
    let browser = mint(&[
        "--sub",
        "browser",
        "--roles",
        "publish,subscribe",
        "--publish",
        "orders.*",
        "--subscribe",
        "orders.*",
        "--ttl",
        "10m",
    ]);
    assert!(browser.status.success(), "{}", stderr(&browser));
    let browser = stdout(&browser).trim().to_owned();
    assert_eq!(browser.split('.').count(), 3, "{browser}");
    let published = pubsub(addr, &["--api-key", &browser, "pub", "orders.eu", "1"]);
    assert!(published.status.success(), "{}", stderr(&published));
    let refused = pubsub(addr, &["--api-key", &browser, "pub", "users.x", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("FORBIDDEN"),
        "{}",
        stderr(&refused)
    );
    let history = pubsub(addr, &["--api-key", &browser, "history", "orders.eu"]);
    assert_eq!(stdout(&history).lines().count(), 1, "{}", stderr(&history));
    // Without a credential, or with another secret's token: 401.
    let anonymous = pubsub(addr, &["topics", "list"]);
    assert!(stderr(&anonymous).contains("UNAUTHORIZED"));
    let other = pubsub(
        addr,
        &[
            "token",
            "--secret",
            "another secret that is also long enough",
        ],
    );
    let other = stdout(&other).trim().to_owned();
    let refused = pubsub(addr, &["--api-key", &other, "topics", "list"]);
    assert!(
        stderr(&refused).contains("UNAUTHORIZED"),
        "{}",
        stderr(&refused)
    );
    // What the server would refuse is refused before signing.
    for bad in [
        vec!["token", "--secret", "short"],
        vec!["token", "--secret", SECRET, "--roles", "root"],
        vec!["token", "--secret", SECRET, "--publish", "ord*"],
        vec!["token", "--secret", SECRET, "--ttl", "soon"],
    ] {
        let out = pubsub(addr, &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{bad:?}");
    }
}

/// A server on its own thread that can be stopped (gracefully) and started
/// again on the same port, empty: an in-memory server's restart.
/// With `nats`, in cluster mode: topics, seq and history live in NATS
/// JetStream and survive the restart.
struct Restartable {
    addr: SocketAddr,
    nats: Option<String>,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Restartable {
    fn start_on(addr: SocketAddr) -> Self {
        Restartable::start_with_topics(addr, &[])
    }

    /// Listening on `addr` with `topics` created before the first request.
    fn start_with_topics(addr: SocketAddr, topics: &[&str]) -> Self {
        Restartable::start_full(addr, topics, None)
    }

    fn start_full(addr: SocketAddr, topics: &[&str], nats: Option<String>) -> Self {
        let mut config = Config::default_for_tests();
        config.cluster_nats = nats.clone();
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                // The previous server may hold the port for a moment.
                let deadline = std::time::Instant::now() + PATIENCE;
                let listener = loop {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => break l,
                        Err(e) => {
                            assert!(std::time::Instant::now() < deadline, "bind {addr}: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                };
                let state = AppState::start(config, stop).await.expect("start");
                for t in &topics {
                    state.broker.create_topic(t).await.expect("create");
                }
                tx.send(listener.local_addr().unwrap()).unwrap();
                let _ = pubsub_server::serve(listener, state).await;
            });
        });
        let addr = rx.recv_timeout(PATIENCE).expect("the server listens");
        Restartable {
            addr,
            nats,
            shutdown,
            thread: Some(thread),
        }
    }

    fn restart(mut self) -> Self {
        self.shutdown.trigger();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the server thread ends");
        }
        Restartable::start_full(self.addr, &[], self.nats.take())
    }
}

const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// The lines a child writes to a pipe, as they come.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads `lines` until one satisfies `check`; fails after `PATIENCE`.
fn wait_for_line(
    lines: &std::sync::mpsc::Receiver<String>,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if check(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line {what} in time"),
        }
    }
}

fn subscribers(addr: SocketAddr, topic: &str) -> Option<u64> {
    let shown = pubsub(addr, &["topics", "show", topic]);
    serde_json::from_str::<serde_json::Value>(&stdout(&shown)).ok()?["subscribers"].as_u64()
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn sub_follows_across_a_restart_and_says_it_did_not_recover() {
    let server = Restartable::start_on("127.0.0.1:0".parse().unwrap());
    let addr = server.addr;
    assert!(pubsub(addr, &["topics", "create", "follow"])
        .status
        .success());
    let mut sub = Command::new(BIN)
        .args(["--server", &format!("http://{addr}"), "sub", "follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = lines_of(sub.stdout.take().unwrap());
    let notices = lines_of(sub.stderr.take().unwrap());
    wait_until("subscribed", || subscribers(addr, "follow") == Some(1));
    assert!(pubsub(addr, &["pub", "follow", "\"before\""])
        .status
        .success());
    wait_for_line(&events, "with the first event", |l| l.contains("before"));

    // Restarted empty: the subscriber keeps trying until the topic exists
    // again, then says it could not recover, and goes on printing.
    let server = server.restart();
    assert!(pubsub(addr, &["topics", "create", "follow"])
        .status
        .success());
    wait_until("subscribed again", || {
        subscribers(addr, "follow") == Some(1)
    });
    let after = pubsub(addr, &["pub", "follow", "\"after\""]);
    assert!(after.status.success(), "{}", stderr(&after));
    let line = wait_for_line(&events, "after the restart", |l| l.contains("after"));
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["seq"].as_u64()),
        (Some("event"), Some(1))
    );
    let notice = wait_for_line(&notices, "about the resume", |l| {
        l.contains("resumed follow")
    });
    assert!(
        notice.contains("NOT recovered") && notice.contains("after seq 1 of the old epoch"),
        "{notice}"
    );
    let _ = sub.kill();
    let _ = sub.wait();
    drop(server);
}

#[test]
fn pub_retries_until_the_server_is_back_and_a_repeated_id_is_a_duplicate() {
    // The port is held by a listener that drops every connection: the
    // publish fails in transit, and is retried.
    let refuser = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = refuser.local_addr().unwrap();
    let publish = Command::new(BIN)
        .args([
            "--server",
            &format!("http://{addr}"),
            "pub",
            "t",
            "{\"n\":1}",
            "--id",
            "once",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (dropped, _) = refuser.accept().unwrap();
    drop(dropped);
    drop(refuser);
    // The server comes (back) with the topic; the retry gets through.
    let _server = Restartable::start_with_topics(addr, &["t"]);
    let out = publish.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(first, serde_json::json!({"seq": 1, "id": "once"}));

    // The same id again is the same message: answered, not published again.
    let again = pubsub(addr, &["pub", "t", "{\"n\":1}", "--id", "once"]);
    let second: serde_json::Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert_eq!(
        second,
        serde_json::json!({"seq": 1, "id": "once", "duplicate": true})
    );
    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&pubsub(addr, &["topics", "show", "t"]))).unwrap();
    assert_eq!(shown["seq"], 1);

    // A refusal is not retried: exit 1 at once.
    let missing = pubsub(addr, &["pub", "nope", "1"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("TOPIC_NOT_FOUND"));
}

/// A nats-server with JetStream on a port of its choosing (Debian's
/// `nats-server`, which the test command installs), killed on drop.
struct Nats {
    child: std::process::Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Nats {
    fn start() -> Self {
        let store = tempfile::tempdir().unwrap();
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server");
        let log = lines_of(child.stderr.take().unwrap());
        let marker = "Listening for client connections on ";
        let line = wait_for_line(&log, "where nats-server listens", |l| l.contains(marker));
        let at = &line[line.find(marker).unwrap() + marker.len()..];
        let url = format!("nats://{}", at.split_whitespace().next().unwrap());
        // Keep draining its log, so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in log {});
        Nats {
            child,
            url,
            _store: store,
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sub_follows_a_cluster_node_across_its_restart_and_recovers_everything() {
    let nats = Nats::start();
    let server =
        Restartable::start_full("127.0.0.1:0".parse().unwrap(), &[], Some(nats.url.clone()));
    let addr = server.addr;
    // The node reaches NATS in the background: UNAVAILABLE until then.
    wait_until("the topic created", || {
        pubsub(addr, &["topics", "create", "kept"]).status.success()
    });
    let mut sub = Command::new(BIN)
        .args(["--server", &format!("http://{addr}"), "sub", "kept"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = lines_of(sub.stdout.take().unwrap());
    let notices = lines_of(sub.stderr.take().unwrap());
    wait_until("subscribed", || subscribers(addr, "kept") == Some(1));
    let seq_of = |line: &str| -> u64 {
        serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let mut seqs = Vec::new();
    for n in 1..=2 {
        assert!(pubsub(addr, &["pub", "kept", &n.to_string()])
            .status
            .success());
        seqs.push(seq_of(&wait_for_line(&events, "an event", |_| true)));
    }

    // Restarted: the topic, its seq and its history are still in NATS. The
    // publishes retry until the node is back with NATS; the subscriber
    // resumes where it was and recovers what it missed.
    let server = server.restart();
    for n in 3..=4 {
        let out = pubsub(addr, &["pub", "kept", &n.to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    while seqs.last() != Some(&4) {
        seqs.push(seq_of(&wait_for_line(&events, "an event", |_| true)));
    }
    assert_eq!(seqs, [1, 2, 3, 4]);
    let notice = wait_for_line(&notices, "about the resume", |l| l.contains("resumed kept"));
    assert!(
        notice.contains("after seq 2: recovered, nothing missed"),
        "{notice}"
    );
    let _ = sub.kill();
    let _ = sub.wait();
    drop(server);
}
