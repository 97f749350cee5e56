//! Servers for the library's tests: in this process (restarted on the same
//! port with empty memory), or as a child process that can be SIGKILLed,
//! and a nats-server with JetStream for cluster mode. Every wait has a
//! deadline; nothing sleeps a fixed time to let something happen.

#![allow(dead_code)]

use futures_util::StreamExt;
use pubsub_client::{Client, Delivery, RetryPolicy, Subscription};
use pubsub_server::config::Config;
use pubsub_server::shutdown::Shutdown;
use pubsub_server::AppState;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen soon (generous:
/// the machine is shared and noisy).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Quick retries, so that tests spend little time in backoff.
pub fn client(addr: SocketAddr) -> Client {
    Client::new(&format!("http://{addr}")).with_retry(RetryPolicy {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        publish_deadline: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(10),
    })
}

/// A server in this process.
pub struct Server {
    pub addr: SocketAddr,
    state: AppState,
    served: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start() -> Self {
        Server::start_on("127.0.0.1:0".parse().expect("an address")).await
    }

    /// On `addr`, retrying the bind until the previous server let go of it.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "bind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let addr = listener.local_addr().expect("addr");
        let state = AppState::new(Config::default_for_tests(), Shutdown::new());
        let served = tokio::spawn(pubsub_server::serve(listener, state.clone()));
        Server {
            addr,
            state,
            served,
        }
    }

    /// Stops gracefully (`shutting_down`, close 1001) and starts an empty
    /// server on the same port: every topic is gone, created again gets a
    /// new epoch.
    pub async fn restart(self) -> Self {
        let addr = self.addr;
        self.state.shutdown.trigger();
        let _ = tokio::time::timeout(PATIENCE, self.served)
            .await
            .expect("shut down in time");
        Server::start_on(addr).await
    }
}

/// The next delivery, or a failure after `PATIENCE`.
pub async fn next(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("a delivery in time")
        .expect("the stream goes on")
}

/// Deliveries until `until` holds for one (included).
pub async fn until(sub: &mut Subscription, until: impl Fn(&Delivery) -> bool) -> Vec<Delivery> {
    let mut got = Vec::new();
    loop {
        let d = next(sub).await;
        let done = until(&d);
        got.push(d);
        if done {
            return got;
        }
    }
}

/// `(topic, seq)` of the events among `deliveries`.
pub fn events(deliveries: &[Delivery]) -> Vec<(String, u64)> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Event(e) => Some((e.topic.clone(), e.seq)),
            _ => None,
        })
        .collect()
}

/// Closes connection(s) of `addr` that subscribe to `topic`, as an admin
/// would (`DELETE /api/connections/{id}`); returns how many.
pub async fn kick(client: &Client, topic: &str) -> usize {
    let list: protocol::ConnectionList = client
        .rest()
        .get("/api/connections")
        .await
        .expect("connections");
    let mut kicked = 0;
    for c in list.connections {
        if c.subscriptions.iter().any(|s| s.topic == topic) {
            let path = format!("/api/connections/{}", c.id);
            let _: protocol::ConnectionClosed = client
                .rest()
                .call::<(), _>(protocol::client::Method::DELETE, &path, None)
                .await
                .expect("close a connection");
            kicked += 1;
        }
    }
    kicked
}

/// A process and the port it said it listens on.
pub struct Process {
    child: Child,
    pub port: u16,
}

impl Process {
    /// Starts `command` and reads its stderr until `find` recognizes the
    /// port it listens on; the rest of stderr is drained in a thread.
    pub fn spawn(mut command: Command, what: &str, find: fn(&str) -> Option<u16>) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = find(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(port) => Process { child, port },
            Err(_) => {
                let _ = child.kill();
                panic!("{what} did not say where it listens");
            }
        }
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The port after `marker` on a log line (`...on 127.0.0.1:4222`).
pub fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let token = rest.split_whitespace().next()?;
    token.rsplit(':').next()?.parse().ok()
}

/// A nats-server with JetStream on loopback, its store in a temp dir
/// (Debian's `nats-server`, which the test command installs).
pub struct Nats {
    pub process: Process,
    _store: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Self {
        let store = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(store.path());
        let process = Process::spawn(command, "nats-server", |line| {
            port_after(line, "Listening for client connections on ")
        });
        Nats {
            process,
            _store: store,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.process.port)
    }
}

/// Which environment variable turns a test binary into a server (see
/// [`serve_if_asked`]).
pub const SERVE_ARGS: &str = "PUBSUB_CLIENT_TEST_SERVER_ARGS";

/// A pubsub-server in a child process that can be SIGKILLed: the test
/// binary itself, running only the test `serve_as_child` (which calls
/// [`serve_if_asked`]) with the server's flags in [`SERVE_ARGS`]. Cargo
/// builds no binary of a dependency, so this is how the library's tests get
/// a server process without building one outside cargo.
pub fn spawn_server(args: &[String]) -> Process {
    let exe = std::env::current_exe().expect("the test binary");
    let mut command = Command::new(exe);
    command
        .args([
            "serve_as_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(SERVE_ARGS, serde_json::to_string(args).expect("json"));
    Process::spawn(command, "pubsub-server (child)", |line| {
        port_after(line, "child server listening on ")
    })
}

/// In a child started by [`spawn_server`]: serves until killed. Elsewhere:
/// returns at once.
pub fn serve_if_asked() {
    let Ok(args) = std::env::var(SERVE_ARGS) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("server args");
    let config = Config::load_from(std::iter::once("pubsub-server".to_owned()).chain(args))
        .expect("server flags");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        // The port may still be held for a moment by the killed process.
        let listener = loop {
            match tokio::net::TcpListener::bind(config.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("bind {}: {e}", config.addr),
            }
        };
        let addr = listener.local_addr().expect("addr");
        let state = AppState::start(config, Shutdown::new())
            .await
            .expect("server start");
        eprintln!("child server listening on {addr}");
        let _ = pubsub_server::serve(listener, state).await;
    });
    std::process::exit(0);
}
