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
