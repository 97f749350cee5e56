//! The real binary: flags, `--help`, and a graceful stop on SIGTERM/SIGINT
//! that exits 0 after telling its WebSocket clients.

mod common;

use common::{Closed, Ws};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pubsub-server");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(port: u16) -> Child {
    Command::new(BIN)
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--heartbeat-interval",
            "1h",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server")
}

async fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + common::PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the server did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        let port = free_port();
        let mut child = start(port);
        wait_until_listening(port).await;
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
    let port = free_port();
    let mut child = Command::new(BIN)
        .env("PUBSUB_ADDR", format!("127.0.0.1:{port}"))
        .env("PUBSUB_HEARTBEAT_INTERVAL", "100ms")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_listening(port).await;
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
