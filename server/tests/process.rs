//! The real binary: flags, `--help`, and a graceful stop on SIGTERM/SIGINT
//! that exits 0 after telling its WebSocket clients.

mod common;

use common::{server_port, spawn_listening, Closed, Listening, Ws};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pubsub-server");

/// The binary with `args`, on a port the kernel picks, once it listens.
fn start(args: &[&str], env: &[(&str, &str)]) -> Listening {
    let mut command = Command::new(BIN);
    command
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn,pubsub_server=info");
    for (k, v) in env {
        command.env(k, v);
    }
    spawn_listening(command, "pubsub-server", server_port, true)
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn help_lists_every_flag_with_its_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, var) in [
        ("--addr", "PUBSUB_ADDR"),
        ("--history-size", "PUBSUB_HISTORY_SIZE"),
        ("--subscriber-queue", "PUBSUB_SUBSCRIBER_QUEUE"),
        ("--slow-consumer-policy", "PUBSUB_SLOW_CONSUMER_POLICY"),
        ("--heartbeat-interval", "PUBSUB_HEARTBEAT_INTERVAL"),
        ("--max-message-bytes", "PUBSUB_MAX_MESSAGE_BYTES"),
        ("--max-frame-bytes", "PUBSUB_MAX_FRAME_BYTES"),
        ("--shutdown-timeout", "PUBSUB_SHUTDOWN_TIMEOUT"),
        ("--api-key", "PUBSUB_API_KEYS"),
        ("--api-keys-file", "PUBSUB_API_KEYS_FILE"),
        ("--allowed-origin", "PUBSUB_ALLOWED_ORIGINS"),
        ("--max-connections", "PUBSUB_MAX_CONNECTIONS"),
        ("--max-subscriptions", "PUBSUB_MAX_SUBSCRIPTIONS"),
        ("--max-topics", "PUBSUB_MAX_TOPICS"),
        ("--publish-rate", "PUBSUB_PUBLISH_RATE"),
        ("--publish-burst", "PUBSUB_PUBLISH_BURST"),
        ("--max-body-bytes", "PUBSUB_MAX_BODY_BYTES"),
    ] {
        assert!(
            help.contains(flag) && help.contains(var),
            "{flag} / {var} in:\n{help}"
        );
    }
}

#[test]
fn invalid_flags_fail_at_start_with_a_message() {
    let out = Command::new(BIN)
        .args(["--slow-consumer-policy", "sometimes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("slow-consumer-policy"));
    let out = Command::new(BIN)
        .env("PUBSUB_HISTORY_SIZE", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn sigterm_notifies_clients_and_exits_0() {
    for sig in ["TERM", "INT"] {
        let Listening {
            mut child, port, ..
        } = start(&["--heartbeat-interval", "1h"], &[]);
        let mut ws = Ws::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
        ws.send(serde_json::json!({"type": "ping"})).await;
        assert_eq!(ws.recv_json().await["type"], "pong");

        signal(&child, sig);
        let info = ws.recv_json().await;
        assert_eq!(
            (&info["type"], &info["msg"]),
            (
                &serde_json::json!("info"),
                &serde_json::json!("shutting_down")
            )
        );
        match ws.recv_or_close().await {
            Err(Closed::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
        drop(ws);
        let status = tokio::task::spawn_blocking(move || wait_for_exit(&mut child))
            .await
            .unwrap();
        assert_eq!(status.code(), Some(0), "SIG{sig} exits 0");
    }
}

#[tokio::test]
async fn environment_variables_configure_the_server() {
    let mut command = Command::new(BIN);
    command
        .env("PUBSUB_ADDR", "127.0.0.1:0")
        .env("PUBSUB_HEARTBEAT_INTERVAL", "100ms")
        .env("RUST_LOG", "warn,pubsub_server=info");
    let Listening {
        mut child, port, ..
    } = spawn_listening(command, "pubsub-server", server_port, true);
    let mut ws = Ws::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    let info = ws.recv_json().await;
    assert_eq!(
        info["msg"], "ping",
        "heartbeat from PUBSUB_HEARTBEAT_INTERVAL"
    );
    signal(&child, "TERM");
    let status = tokio::task::spawn_blocking(move || wait_for_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pubsub.toml");
    std::fs::write(
        &file,
        "history_size = 11\nsubscriber_queue = 22\nmax_message_bytes = 33\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "--config",
            file.to_str().unwrap(),
            "--print-config",
            "--history-size",
            "1",
        ])
        .env("PUBSUB_SUBSCRIBER_QUEUE", "2")
        .env("PUBSUB_HISTORY_SIZE", "5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(
        printed["history_size"].as_integer(),
        Some(1),
        "flag over env and file"
    );
    assert_eq!(
        printed["subscriber_queue"].as_integer(),
        Some(2),
        "env over file"
    );
    assert_eq!(
        printed["max_message_bytes"].as_integer(),
        Some(33),
        "file over default"
    );
    assert_eq!(
        printed["max_frame_bytes"].as_integer(),
        Some(1_048_576),
        "default"
    );
    assert_eq!(printed["heartbeat_interval"].as_str(), Some("30s"));
}

#[test]
fn an_invalid_config_file_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pubsub.toml");
    std::fs::write(&file, "heartbeat_interval = \"often\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("heartbeat_interval") && stderr.contains("pubsub.toml"),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let mut command = Command::new(BIN);
    command
        .args(["--addr", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info");
    let mut server = spawn_listening(command, "pubsub-server", server_port, true);
    signal(&server.child, "TERM");
    let status = wait_for_exit(&mut server.child);
    assert_eq!(status.code(), Some(0));
    let text = server.stderr_after_exit();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO"
                && l["message"].as_str().unwrap_or("").contains("listening")),
        "{text}"
    );
}

#[tokio::test]
async fn api_keys_come_from_the_environment_and_a_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# operators\nfile-key=admin\n").unwrap();
    let keys_path = keys.to_string_lossy().into_owned();
    let Listening {
        mut child, port, ..
    } = start(
        &[],
        &[
            ("PUBSUB_API_KEYS", "env-a=subscribe;env-b=publish,subscribe"),
            ("PUBSUB_API_KEYS_FILE", &keys_path),
        ],
    );
    let http = reqwest::Client::new();
    let status = |key: &'static str| {
        let request = http
            .get(format!("http://127.0.0.1:{port}/api/topics"))
            .header("x-api-key", key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("env-a").await, 200);
    assert_eq!(status("env-b").await, 200);
    assert_eq!(status("file-key").await, 200);
    assert_eq!(status("other").await, 401);
    signal(&child, "TERM");
    let exit = tokio::task::spawn_blocking(move || wait_for_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));

    // Keys are never printed; a bad key spec or file stops the start, saying why.
    let out = Command::new(BIN)
        .args(["--print-config", "--api-key", "s3cret=admin"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !printed.contains("s3cret"),
        "{printed}"
    );
    assert!(printed.contains("1 API key"), "{printed}");
    let out = Command::new(BIN)
        .args(["--api-key", "k=root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
    std::fs::write(&keys, "ok=admin\nbroken\n").unwrap();
    let out = Command::new(BIN)
        .args(["--api-keys-file", keys.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[tokio::test]
async fn sigterm_stops_the_server_even_when_its_stderr_is_gone() {
    // The log reader (a supervisor, a pipe) died: writing a log line now
    // fails, and that must not stand between SIGTERM and the exit.
    let mut command = Command::new(BIN);
    command
        .args(["--addr", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info");
    // The port is read, then the pipe closed.
    let Listening { mut child, .. } = spawn_listening(command, "pubsub-server", server_port, false);
    signal(&child, "TERM");
    let status = tokio::task::spawn_blocking(move || wait_for_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
