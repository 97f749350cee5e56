//! The cluster chaos soak (`scripts/bench.sh --chaos`): three pubsub-server
//! instances and their nats-server, under load, while nodes are killed
//! (SIGKILL) and restarted and NATS itself is restarted once.
//!
//! - One publisher per node publishes to three topics over WebSocket and
//!   books every acknowledged `(seq, id)`; when its node dies it moves on to
//!   the next one. An `UNAVAILABLE` answer is booked apart: such a publish
//!   may or may not be stored (the contract promises nothing of it).
//! - Two subscribers per node follow every topic; when their node dies they
//!   resume on another with `since`. Each checks that `seq`s arrive in
//!   order and contiguous, a gap being allowed only where a
//!   `SLOW_CONSUMER` notice announced it, and that every resume within
//!   history says `recovered: true`.
//! - At the end every acknowledged publish must be in the cluster's history
//!   (history is large enough to hold the whole run) under its `seq`, and
//!   every subscriber must have reached the topic's last `seq`.

use crate::soak::server::Server;
use crate::ws;
use serde::Serialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPICS: [&str; 3] = ["chaos-0", "chaos-1", "chaos-2"];
const NODES: usize = 3;
const HISTORY: usize = 200_000;

#[derive(clap::Args)]
pub struct ChaosArgs {
    #[arg(long)]
    server: PathBuf,
    /// Seconds of chaos.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Publishes a second per publisher (one per node).
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// A node is killed and restarted every this many seconds.
    #[arg(long, default_value_t = 8)]
    kill_every: u64,
    /// NATS listens here, the nodes on the next three ports.
    #[arg(long, default_value_t = 4520)]
    base_port: u16,
    #[arg(long, default_value = "target")]
    logs: PathBuf,
    /// The Markdown section to write (BENCHMARKS.md includes it).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Book {
    acked: u64,
    unavailable: u64,
    other_errors: u64,
    publisher_moves: u64,
    node_kills: u64,
    nats_restarts: u64,
    resumes: u64,
    recovered: u64,
    not_recovered: u64,
    events: u64,
    announced_gaps: u64,
    silent_gaps: u64,
    out_of_order: u64,
    lost_acked: u64,
    behind_at_end: u64,
    secs: u64,
    passed: bool,
}

/// What every task books into.
#[derive(Default)]
struct Shared {
    book: Book,
    /// Per topic: seq -> id of every acknowledged publish.
    acked: HashMap<String, BTreeMap<u64, String>>,
    /// Per subscriber, per topic: the last `seq` it received.
    followed: Vec<HashMap<String, u64>>,
    stop: bool,
}

/// Subscriber-topic pairs that have not reached the topic's last `seq`.
fn behind(s: &Shared, finals: &HashMap<String, u64>) -> u64 {
    s.followed
        .iter()
        .flat_map(|f| {
            TOPICS
                .iter()
                .map(move |t| f.get(*t).copied().unwrap_or(0) < finals[*t])
        })
        .filter(|b| *b)
        .count() as u64
}

type State = Rc<RefCell<Shared>>;

pub async fn run(args: ChaosArgs) -> std::io::Result<()> {
    let store = std::env::temp_dir().join(format!("pubsub-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    std::fs::create_dir_all(&store)?;
    let nats_port = args.base_port;
    let nats_cmd = vec![
        "nats-server".to_owned(),
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        nats_port.to_string(),
        "-js".into(),
        "-sd".into(),
        store.display().to_string(),
    ];
    let nats_addr: SocketAddr = ([127, 0, 0, 1], nats_port).into();
    let mut nats = Server::spawn(nats_cmd.clone(), &args.logs.join("chaos-nats.log"))?;
    nats.wait_listening(nats_addr).await?;
    let addrs: Vec<SocketAddr> = (1..=NODES as u16)
        .map(|i| ([127, 0, 0, 1], args.base_port + i).into())
        .collect();
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        nodes.push(start_node(&args, i, *addr, nats_port).await?);
    }
    for topic in TOPICS {
        let body = format!("{{\"name\":\"{topic}\"}}");
        // 503 until the node has reached NATS's registry.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, _) = crate::http::request(addrs[0], "POST", "/api/topics", Some(&body))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if status == 201 || status == 409 {
                break;
            }
            if status != 503 || Instant::now() > deadline {
                return Err(std::io::Error::other(format!("create {topic}: {status}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let state: State = Rc::default();
    let mut tasks = Vec::new();
    for i in 0..NODES {
        tasks.push(tokio::task::spawn_local(publisher(
            Rc::clone(&state),
            addrs.clone(),
            i,
            args.rate,
        )));
    }
    let mut followers = Vec::new();
    state.borrow_mut().followed = vec![HashMap::new(); 2 * NODES];
    for i in 0..2 * NODES {
        followers.push(tokio::task::spawn_local(subscriber(
            Rc::clone(&state),
            addrs.clone(),
            i,
        )));
    }
    let started = Instant::now();
    let mut next_kill = 0;
    let mut nats_restarted = false;
    while started.elapsed() < Duration::from_secs(args.secs) {
        tokio::time::sleep(Duration::from_secs(args.kill_every)).await;
        if !nats_restarted && started.elapsed() >= Duration::from_secs(args.secs / 2) {
            // NATS goes away for two seconds and comes back on its store.
            drop(nats);
            tokio::time::sleep(Duration::from_secs(2)).await;
            nats = Server::spawn(nats_cmd.clone(), &args.logs.join("chaos-nats-2.log"))?;
            nats.wait_listening(nats_addr).await?;
            state.borrow_mut().book.nats_restarts += 1;
            nats_restarted = true;
            continue;
        }
        // SIGKILL (Server's drop), a second down, then back on its port.
        let i = next_kill % NODES;
        next_kill += 1;
        drop(nodes.remove(i));
        state.borrow_mut().book.node_kills += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        nodes.insert(i, start_node(&args, i, addrs[i], nats_port).await?);
    }
    // Quiet: publishers stop, everyone catches up.
    state.borrow_mut().stop = true;
    for t in tasks {
        let _ = t.await;
    }
    // Every node back on NATS (a restart of NATS or of a node is recent).
    for addr in &addrs {
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::http::get_json(*addr, "/api/health").await.is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "{addr} not healthy 30 s after the chaos"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let finals = final_seqs(addrs[0]).await?;
    let settle = Instant::now();
    loop {
        let behind = behind(&state.borrow(), &finals);
        if behind == 0 || settle.elapsed() > Duration::from_secs(10) {
            state.borrow_mut().book.behind_at_end = behind;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for f in followers {
        f.abort();
    }
    // Every acknowledged publish is in the history, under its seq.
    let mut lost = 0;
    for topic in TOPICS {
        let held = history(addrs[1], topic).await?;
        if let Some(acked) = state.borrow().acked.get(topic) {
            lost += acked
                .iter()
                .filter(|(seq, id)| held.get(seq) != Some(id))
                .count() as u64;
        }
    }
    let mut s = state.borrow_mut();
    s.book.lost_acked = lost;
    s.book.secs = started.elapsed().as_secs();
    let b = &mut s.book;
    b.passed = b.acked > 0
        && b.events > 0
        && b.lost_acked == 0
        && b.silent_gaps == 0
        && b.out_of_order == 0
        && b.not_recovered == 0
        && b.behind_at_end == 0;
    println!("{}", serde_json::to_string(&*b).unwrap_or_default());
    if let Some(out) = &args.out {
        std::fs::write(out, section(b, &args))?;
    }
    let passed = b.passed;
    drop(s);
    drop(nodes);
    drop(nats);
    let _ = std::fs::remove_dir_all(&store);
    if passed {
        Ok(())
    } else {
        Err(std::io::Error::other("the chaos soak found a violation"))
    }
}

async fn start_node(
    args: &ChaosArgs,
    i: usize,
    addr: SocketAddr,
    nats_port: u16,
) -> std::io::Result<Server> {
    let log = args.logs.join(format!("chaos-node-{i}.log"));
    let command = vec![
        args.server.display().to_string(),
        "--addr".into(),
        addr.to_string(),
        "--cluster-nats".into(),
        format!("nats://127.0.0.1:{nats_port}"),
        "--history-size".into(),
        HISTORY.to_string(),
        "--publish-rate".into(),
        "0".into(),
        "--heartbeat-interval".into(),
        "2s".into(),
        "--log-format".into(),
        "json".into(),
    ];
    // A killed node's port may take a moment to be free again.
    for _ in 0..50 {
        let node = Server::spawn(command.clone(), &log)?;
        if node.wait_listening(addr).await.is_ok() {
            return Ok(node);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(std::io::Error::other(format!(
        "node {i} did not start on {addr}"
    )))
}

/// A WebSocket client speaking JSON frames.
struct Client {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let mut tcp = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        let buf = ws::handshake(&mut tcp, &addr.to_string(), "/ws").await?;
        Ok(Client { tcp, buf })
    }

    async fn send(&mut self, frame: &Value) -> std::io::Result<()> {
        let mut out = Vec::new();
        ws::encode_client(&mut out, 1, frame.to_string().as_bytes());
        self.tcp.write_all(&out).await
    }

    /// The next JSON frame (pings and other opcodes skipped); an error when
    /// the connection closed or nothing came within `wait`.
    async fn next(&mut self, wait: Duration) -> std::io::Result<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            while let Some(f) = ws::parse(&mut self.buf) {
                let (opcode, start, end) = (f.opcode, f.start, f.end);
                let text = self.buf[start..end].to_vec();
                self.buf.drain(..end);
                match opcode {
                    1 => {
                        if let Ok(v) = serde_json::from_slice::<Value>(&text) {
                            return Ok(v);
                        }
                    }
                    8 => return Err(std::io::Error::other("closed")),
                    _ => {}
                }
            }
            let n = tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk))
                .await
                .map_err(|_| std::io::Error::other("silent"))??;
            if n == 0 {
                return Err(std::io::Error::other("closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Publishes round-robin to the topics from node `home`, moving on to the
/// next node whenever its connection fails.
async fn publisher(state: State, addrs: Vec<SocketAddr>, home: usize, rate: u64) {
    let mut at = home;
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    'connect: loop {
        if state.borrow().stop {
            return;
        }
        let Ok(mut client) = Client::connect(addrs[at]).await else {
            at = (at + 1) % addrs.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            tick.tick().await;
            if state.borrow().stop {
                return;
            }
            let topic = TOPICS[(n % TOPICS.len() as u64) as usize];
            let id = format!("p{home}-{n}");
            n += 1;
            let frame = json!({"type": "publish", "topic": topic, "request_id": id,
                               "message": {"id": id, "payload": {"n": n}}});
            if client.send(&frame).await.is_err() {
                break;
            }
            let reply = loop {
                match client.next(Duration::from_secs(10)).await {
                    Ok(v) if v["request_id"] == id.as_str() => break Ok(v),
                    Ok(_) => continue,
                    Err(e) => break Err(e),
                }
            };
            let Ok(reply) = reply else { break };
            let mut s = state.borrow_mut();
            match (reply["type"].as_str(), reply["error"]["code"].as_str()) {
                (Some("ack"), _) => {
                    let seq = reply["seq"].as_u64().unwrap_or(0);
                    s.book.acked += 1;
                    s.acked.entry(topic.to_owned()).or_default().insert(seq, id);
                }
                (_, Some("UNAVAILABLE")) => s.book.unavailable += 1,
                _ => s.book.other_errors += 1,
            }
        }
        state.borrow_mut().book.publisher_moves += 1;
        at = (at + 1) % addrs.len();
        continue 'connect;
    }
}

/// Follows every topic from node `me % NODES`, resuming elsewhere with
/// `since` whenever its connection fails; books what it sees.
async fn subscriber(state: State, addrs: Vec<SocketAddr>, me: usize) {
    let mut at = me % addrs.len();
    // Per topic: (epoch, last seq).
    let mut pos: HashMap<String, (String, u64)> = HashMap::new();
    let mut announced: HashMap<String, u64> = HashMap::new();
    loop {
        let Ok(mut client) = Client::connect(addrs[at]).await else {
            at = (at + 1) % addrs.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut ok = true;
        for topic in TOPICS {
            let mut frame = json!({"type": "subscribe", "topic": topic, "request_id": topic});
            if let Some((epoch, seq)) = pos.get(topic) {
                frame["since"] = json!({"seq": seq, "epoch": epoch});
            }
            if client.send(&frame).await.is_err() {
                ok = false;
                break;
            }
            // Events of topics subscribed before may come first.
            let ack = loop {
                match client.next(Duration::from_secs(10)).await {
                    Ok(v) if v["type"] == "ack" && v["request_id"] == topic => break Some(v),
                    Ok(v) if v["type"] == "error" && v["request_id"] == topic => break None,
                    Ok(v) => see(&state, me, &v, &mut pos, &mut announced),
                    Err(_) => break None,
                }
            };
            let Some(ack) = ack else {
                ok = false;
                break;
            };
            let epoch = ack["epoch"].as_str().unwrap_or("").to_owned();
            if pos.contains_key(topic) {
                let mut s = state.borrow_mut();
                s.book.resumes += 1;
                match ack["recovered"].as_bool() {
                    Some(true) => s.book.recovered += 1,
                    Some(false) => s.book.not_recovered += 1,
                    None => {}
                }
            }
            pos.entry(topic.to_owned())
                .or_insert((epoch, ack["seq"].as_u64().unwrap_or(0)));
        }
        while ok {
            match client.next(Duration::from_secs(10)).await {
                Ok(v) => see(&state, me, &v, &mut pos, &mut announced),
                Err(_) => ok = false,
            }
        }
        at = (at + 1) % addrs.len();
    }
}

/// Books one frame a subscriber read.
fn see(
    state: &State,
    me: usize,
    v: &Value,
    pos: &mut HashMap<String, (String, u64)>,
    announced: &mut HashMap<String, u64>,
) {
    let topic = v["topic"].as_str().unwrap_or("").to_owned();
    if v["type"] == "error" && v["error"]["code"] == "SLOW_CONSUMER" {
        *announced.entry(topic).or_default() += v["dropped"].as_u64().unwrap_or(0);
        return;
    }
    if v["type"] != "event" {
        return;
    }
    let seq = v["seq"].as_u64().unwrap_or(0);
    let Some((_, last)) = pos.get_mut(&topic) else {
        return;
    };
    let mut s = state.borrow_mut();
    s.book.events += 1;
    if seq <= *last {
        s.book.out_of_order += 1;
        return;
    }
    let gap = seq - *last - 1;
    if gap > 0 {
        let told = announced.entry(topic.clone()).or_default();
        if *told >= gap {
            s.book.announced_gaps += 1;
        } else {
            s.book.silent_gaps += 1;
        }
    }
    announced.insert(topic.clone(), 0);
    *last = seq;
    if let Some(f) = s.followed.get_mut(me) {
        f.insert(topic, seq);
    }
}

/// Each topic's last `seq`, from a node.
async fn final_seqs(addr: SocketAddr) -> std::io::Result<HashMap<String, u64>> {
    let mut out = HashMap::new();
    for topic in TOPICS {
        let info = crate::http::get_json(addr, &format!("/api/topics/{topic}"))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        out.insert(topic.to_owned(), info["seq"].as_u64().unwrap_or(0));
    }
    Ok(out)
}

/// A topic's whole history (seq -> id), from a node.
async fn history(addr: SocketAddr, topic: &str) -> std::io::Result<HashMap<u64, String>> {
    let page = crate::http::get_json(addr, &format!("/api/topics/{topic}/messages"))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(page["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["seq"].as_u64().unwrap_or(0),
                        m["id"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The Markdown section BENCHMARKS.md includes.
fn section(b: &Book, args: &ChaosArgs) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Cluster chaos soak
"
    );
    let _ = writeln!(
        md,
        "`scripts/bench.sh --chaos`: three instances and their nats-server on this machine for {} s; one WebSocket publisher per node ({} msg/s each, round-robin over 3 topics) and two subscribers per node following all three; every {} s a node is killed (SIGKILL) and restarted a second later, and once, half-way, NATS itself is stopped for two seconds and restarted on its store. Clients whose node dies move to the next one and resume with `since`.\n",
        b.secs, args.rate, args.kill_every
    );
    let _ = writeln!(md, "| figure | value |\n|---|---|");
    for (k, v) in [
        ("publishes acknowledged", b.acked.to_string()),
        (
            "answered UNAVAILABLE (may or may not be stored)",
            b.unavailable.to_string(),
        ),
        ("other errors", b.other_errors.to_string()),
        (
            "node kills / NATS restarts",
            format!("{} / {}", b.node_kills, b.nats_restarts),
        ),
        (
            "publisher moves to another node",
            b.publisher_moves.to_string(),
        ),
        (
            "subscriber resumes (recovered / not)",
            format!("{} ({} / {})", b.resumes, b.recovered, b.not_recovered),
        ),
        ("events received", b.events.to_string()),
        (
            "gaps announced by SLOW_CONSUMER / silent",
            format!("{} / {}", b.announced_gaps, b.silent_gaps),
        ),
        ("out of order or duplicate", b.out_of_order.to_string()),
        (
            "acknowledged publishes missing from history",
            b.lost_acked.to_string(),
        ),
        (
            "subscriber-topic pairs behind at the end",
            b.behind_at_end.to_string(),
        ),
        (
            "verdict",
            if b.passed {
                "passed".into()
            } else {
                "**failed**".into()
            },
        ),
    ] {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    md
}
