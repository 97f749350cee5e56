//! The attack suite (`scripts/bench.sh --attack`): what a hostile client can
//! do against the contract's "Resource bounds", each attack against a fresh
//! release server with the default limits, measured from outside: the
//! server's RSS (from /proc, sampled every 50 ms), its queued and history
//! bytes (from /metrics), and a bystander, a well-behaved WebSocket client
//! that publishes and receives on its own topic all along and must get
//! every event, in order.
//!
//! Each attack states its bound; the run fails when a figure passes it.
//! `--quick` (in the test command) runs every attack with fewer attackers.

use crate::soak::server::Server;
use crate::ws;
use serde::Serialize;
use std::cell::Cell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;

#[derive(clap::Args)]
pub struct AttackArgs {
    /// The pubsub-server binary to start for each attack.
    #[arg(long)]
    server: PathBuf,
    #[arg(long, default_value = "127.0.0.1:4427")]
    addr: SocketAddr,
    /// Fewer attackers per attack (seconds in all, for the test command).
    #[arg(long)]
    quick: bool,
    /// Where the server's logs go (one file per attack).
    #[arg(long, default_value = "target")]
    logs: PathBuf,
    /// The Markdown section to write (BENCHMARKS.md includes it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only the attacks of these names (repeatable; default: all).
    #[arg(long)]
    only: Vec<String>,
}

/// One attack's figures.
#[derive(Debug, Serialize)]
struct Outcome {
    attack: &'static str,
    what: String,
    bound: String,
    rss_before: u64,
    rss_peak: u64,
    rss_bound: u64,
    queued_peak: u64,
    history_peak: u64,
    bystander_events: u64,
    bystander_missing: u64,
    detail: String,
    passed: bool,
}

pub async fn run(args: AttackArgs) -> std::io::Result<()> {
    let n = if args.quick { 4 } else { 16 };
    let mut outcomes = Vec::new();
    for attack in ATTACKS {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == attack.name()) {
            continue;
        }
        let outcome = attack_once(&args, attack, n).await?;
        println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
        outcomes.push(outcome);
    }
    if let Some(out) = &args.out {
        std::fs::write(out, section(&outcomes, args.quick))?;
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.attack)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "attacks over their bound: {failed:?}"
        )))
    }
}

#[derive(Clone, Copy)]
enum Attack {
    UnreadHistory,
    UnreadPongs,
    StalledSubscribers,
    HistoryFill,
    DedupFill,
    SlowHeads,
    Shutdown,
}

const ATTACKS: [Attack; 7] = [
    Attack::UnreadHistory,
    Attack::UnreadPongs,
    Attack::StalledSubscribers,
    Attack::HistoryFill,
    Attack::DedupFill,
    Attack::SlowHeads,
    Attack::Shutdown,
];

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::UnreadHistory => "unread-history",
            Attack::UnreadPongs => "unread-pongs",
            Attack::StalledSubscribers => "stalled-subscribers",
            Attack::HistoryFill => "history-fill",
            Attack::DedupFill => "dedup-fill",
            Attack::SlowHeads => "slow-heads",
            Attack::Shutdown => "shutdown",
        }
    }
}

async fn attack_once(args: &AttackArgs, attack: Attack, n: usize) -> std::io::Result<Outcome> {
    let log = args.logs.join(format!("attack-{}.log", attack.name()));
    let server = Server::spawn(
        vec![
            args.server.display().to_string(),
            "--addr".into(),
            args.addr.to_string(),
        ],
        &log,
    )?;
    server.wait_listening(args.addr).await?;
    let addr = args.addr;
    let rss = Rss::start(server.pid);
    let rss_before = rss.now();
    let bystander = Bystander::start(addr).await?;
    let watch = Watch::start(addr);
    let mut o = Outcome {
        attack: attack.name(),
        what: String::new(),
        bound: String::new(),
        rss_before,
        rss_peak: 0,
        rss_bound: 0,
        queued_peak: 0,
        history_peak: 0,
        bystander_events: 0,
        bystander_missing: 0,
        detail: String::new(),
        passed: true,
    };
    let big = format!("\"{}\"", "x".repeat(65_000));
    match attack {
        Attack::UnreadHistory => {
            create(addr, "big").await?;
            for _ in 0..100 {
                publish(addr, "big", &big).await?;
            }
            let readers = 6 * n;
            o.what = format!(
                "{readers} GETs of a full history (100 x 64 KB) whose responses are never read"
            );
            o.bound = "hyper's 64 KiB buffer per response beyond the shared history; cut after 10 s without progress".into();
            o.rss_bound = 7 * MIB + readers as u64 * 128 * 1024 + 32 * MIB;
            let mut held = Vec::new();
            for _ in 0..readers {
                let mut tcp = small_window(addr).await?;
                tcp.write_all(b"GET /api/topics/big/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    .await?;
                held.push(tcp);
            }
            // Past the 10 s write deadline, then read what is left.
            tokio::time::sleep(Duration::from_secs(11)).await;
            let mut cut = 0;
            let mut chunk = vec![0u8; 64 << 10];
            for tcp in &mut held {
                let mut got = 0;
                let closed = loop {
                    match tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut chunk)).await {
                        Err(_) => break false,
                        Ok(Ok(0)) | Ok(Err(_)) => break true,
                        Ok(Ok(n)) => got += n,
                    }
                };
                if closed && got < 6_000_000 {
                    cut += 1;
                }
            }
            o.detail = format!("{cut} of {readers} responses cut by the server once stalled");
            o.passed &= cut == readers;
        }
        Attack::UnreadPongs => {
            let conns = n;
            o.what = format!("{conns} WebSockets sending 1 MB-request_id pings, reading nothing");
            o.bound =
                "unread replies <= 8 MiB (half of max_queue_bytes) + one reply per connection"
                    .into();
            o.rss_bound = conns as u64 * 12 * MIB + 32 * MIB;
            let ping = format!(
                "{{\"type\":\"ping\",\"request_id\":\"{}\"}}",
                "r".repeat(1_000_000)
            );
            let mut frame = Vec::new();
            ws::encode_client(&mut frame, 1, ping.as_bytes());
            let frame = Rc::new(frame);
            let mut writers = Vec::new();
            for _ in 0..conns {
                let mut tcp = TcpStream::connect(addr).await?;
                ws::handshake(&mut tcp, &addr.to_string(), "/ws").await?;
                let frame = Rc::clone(&frame);
                writers.push(tokio::task::spawn_local(async move {
                    for _ in 0..32 {
                        if tcp.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                    tcp
                }));
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let blocked = writers.iter().filter(|w| !w.is_finished()).count();
            o.detail = format!("{blocked} of {conns} attackers no longer read by the server");
            o.passed &= blocked == conns;
            let queued = watch.queued.get();
            o.passed &= queued <= conns as u64 * (9 * MIB);
            for w in writers {
                w.abort();
            }
        }
        Attack::StalledSubscribers => {
            create(addr, "big").await?;
            let conns = n;
            o.what =
                format!("{conns} subscribers that read nothing while 600 x 64 KB are published");
            o.bound =
                "queued <= max_queue_bytes (16 MiB) per connection; events shared between queues"
                    .into();
            o.rss_bound = 16 * MIB + 7 * MIB + 48 * MIB;
            let mut held = Vec::new();
            for _ in 0..conns {
                let mut tcp = TcpStream::connect(addr).await?;
                ws::handshake(&mut tcp, &addr.to_string(), "/ws").await?;
                let mut sub = Vec::new();
                ws::encode_client(&mut sub, 1, br#"{"type":"subscribe","topic":"big"}"#);
                tcp.write_all(&sub).await?;
                held.push(tcp);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            for _ in 0..600 {
                publish(addr, "big", &big).await?;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let queued = watch.queued.get();
            o.passed &= queued <= conns as u64 * 16 * MIB;
            o.detail = format!(
                "{:.1} MiB queued at most over {conns} connections",
                queued as f64 / MIB as f64
            );
            drop(held);
        }
        Attack::HistoryFill => {
            // Past the 256 MiB budget either way.
            let topics = if n < 16 { 220 } else { 400 };
            o.what = format!(
                "{topics} topics x 20 x 64 KB published ({} MB)",
                topics * 20 * 65 / 1000
            );
            o.bound = "history <= max_history_bytes (256 MiB) over all topics".into();
            o.rss_bound = 256 * MIB + 48 * MIB;
            for t in 0..topics {
                let name = format!("fill-{t}");
                create(addr, &name).await?;
                for _ in 0..20 {
                    publish(addr, &name, &big).await?;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            o.passed &= watch.history.get() <= 256 * MIB;
            o.detail = format!(
                "{:.1} MiB of history at most",
                watch.history.get() as f64 / MIB as f64
            );
        }
        Attack::DedupFill => {
            // Past the 256 MiB budget of remembered ids (about 4.5 M ids
            // at 60 bytes), within each topic's 100,000 (64 topics).
            const TOPICS: usize = 64;
            const BATCH: usize = 1_000;
            let batches = 5_600;
            o.what = format!(
                "{} M message ids published in batches of {BATCH} over {TOPICS} topics, 4 at a time",
                batches * BATCH / 1_000_000
            );
            o.bound = "remembered ids <= max_dedup_bytes (256 MiB) over all topics, plus one table doubling".into();
            // Beyond the budget: a table being rebuilt (two at once for a
            // moment), the small history, and the allocator's slack.
            o.rss_bound = 256 * MIB + 96 * MIB;
            for t in 0..TOPICS {
                create(addr, &format!("ids-{t}")).await?;
            }
            let next = Rc::new(Cell::new(0usize));
            let mut workers = Vec::new();
            for _ in 0..4 {
                let next = Rc::clone(&next);
                workers.push(tokio::task::spawn_local(async move {
                    loop {
                        let b = next.get();
                        if b >= batches {
                            return Ok::<(), std::io::Error>(());
                        }
                        next.set(b + 1);
                        let mut body = String::with_capacity(BATCH * 48);
                        body.push_str("{\"messages\":[");
                        for i in 0..BATCH {
                            if i > 0 {
                                body.push(',');
                            }
                            let topic = (b * BATCH + i) % TOPICS;
                            body.push_str(&format!(
                                "{{\"topic\":\"ids-{topic}\",\"message\":{{\"payload\":{i}}}}}"
                            ));
                        }
                        body.push_str("]}");
                        let (status, _) =
                            crate::http::request(addr, "POST", "/api/publish", Some(&body))
                                .await
                                .map_err(|e| std::io::Error::other(e.to_string()))?;
                        if status != 200 {
                            return Err(std::io::Error::other(format!("batch: {status}")));
                        }
                    }
                }));
            }
            for worker in workers {
                worker
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))??;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let peak = watch.dedup.get();
            o.passed &= peak <= 256 * MIB + 8 * MIB && peak > 200 * MIB;
            o.detail = format!(
                "{:.1} MiB of remembered ids at most",
                peak as f64 / MIB as f64
            );
        }
        Attack::SlowHeads => {
            let conns = if n < 16 { 1_100 } else { 2_000 };
            o.what = format!("{conns} connections sending half a request head, then nothing");
            o.bound = "max_http_connections (1,024) open, the rest 429; each closed after header_read_timeout (10 s)".into();
            o.rss_bound = 1_024 * 96 * 1024 + 32 * MIB;
            let mut held = Vec::new();
            let mut refused = 0;
            for _ in 0..conns {
                let Ok(mut tcp) = TcpStream::connect(addr).await else {
                    continue;
                };
                if tcp
                    .write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-")
                    .await
                    .is_ok()
                {
                    held.push(tcp);
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            // The refused ones were answered 429 and closed at once.
            let mut open = Vec::new();
            for mut tcp in held {
                let mut byte = [0u8; 16];
                match tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut byte)).await {
                    Ok(Ok(n)) if n > 0 && byte.starts_with(b"HTTP/1.1 429") => refused += 1,
                    Ok(_) => {}
                    Err(_) => open.push(tcp),
                }
            }
            let cut = count_cut(&mut open, Duration::from_secs(12)).await;
            o.detail = format!(
                "{refused} answered 429 at once, {cut} of {} closed by the header timeout",
                open.len()
            );
            o.passed &=
                open.len() <= 1_024 && refused + open.len() >= conns - 1 && cut == open.len();
            let health = crate::http::get_json(addr, "/api/health").await;
            o.passed &= health.is_ok();
        }
        Attack::Shutdown => {
            create(addr, "big").await?;
            o.what =
                "SIGTERM with a half-sent head, an unread history, a stalled subscriber".into();
            o.bound = "exit 0 within shutdown_timeout (5 s) + 1 s".into();
            o.rss_bound = 64 * MIB;
            let mut stalled = TcpStream::connect(addr).await?;
            ws::handshake(&mut stalled, &addr.to_string(), "/ws").await?;
            let mut sub = Vec::new();
            ws::encode_client(&mut sub, 1, br#"{"type":"subscribe","topic":"big"}"#);
            stalled.write_all(&sub).await?;
            for _ in 0..100 {
                publish(addr, "big", &big).await?;
            }
            let mut half = TcpStream::connect(addr).await?;
            half.write_all(b"GET /api/health HTTP/1.1\r\nHo").await?;
            let mut unread = small_window(addr).await?;
            unread
                .write_all(b"GET /api/topics/big/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let events = bystander.stop().await;
            o.bystander_events = events.0;
            o.bystander_missing = events.1;
            let sent = server.terminate()?;
            let exit = server.wait_exit(Duration::from_secs(10)).await;
            let took = exit.as_ref().map(|e| e.at.saturating_duration_since(sent));
            o.detail = match (&exit, took) {
                (Some(e), Some(t)) => format!("exited {} after {} ms", e.describe, t.as_millis()),
                _ => "still running after 10 s".into(),
            };
            o.passed &= exit.as_ref().is_some_and(|e| e.code == Some(0))
                && took.is_some_and(|t| t <= Duration::from_secs(6));
            o.rss_peak = rss.peak();
            o.queued_peak = watch.queued.get();
            o.history_peak = watch.history.get();
            o.passed &= o.rss_peak <= o.rss_before + o.rss_bound && o.bystander_missing == 0;
            drop((stalled, half, unread));
            return Ok(o);
        }
    }
    let (events, missing) = bystander.stop().await;
    o.bystander_events = events;
    o.bystander_missing = missing;
    o.rss_peak = rss.peak();
    o.queued_peak = watch.queued.get();
    o.history_peak = watch.history.get();
    o.passed &= o.rss_peak <= o.rss_before + o.rss_bound;
    o.passed &= events > 0 && missing == 0;
    // Gone before the next attack takes the port.
    server.terminate()?;
    if server.wait_exit(Duration::from_secs(10)).await.is_none() {
        o.passed = false;
        o.detail.push_str("; did not exit within 10 s of SIGTERM");
    }
    Ok(o)
}

/// Waits until each socket is closed by the server (reading and dropping
/// whatever comes, slowly at first); how many were within `limit`.
async fn count_cut(held: &mut [TcpStream], limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    let mut cut = 0;
    let mut chunk = vec![0u8; 64 << 10];
    for tcp in held.iter_mut() {
        loop {
            match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    cut += 1;
                    break;
                }
                Ok(Ok(_)) => {}
            }
        }
    }
    cut
}

async fn small_window(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    socket.connect(addr).await
}

async fn create(addr: SocketAddr, topic: &str) -> std::io::Result<()> {
    let body = format!("{{\"name\":\"{topic}\"}}");
    let (status, _) = crate::http::request(addr, "POST", "/api/topics", Some(&body))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if status == 201 || status == 409 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("create {topic}: {status}")))
    }
}

async fn publish(addr: SocketAddr, topic: &str, payload: &str) -> std::io::Result<()> {
    let body = format!("{{\"payload\":{payload}}}");
    let path = format!("/api/topics/{topic}/messages");
    let (status, _) = crate::http::request(addr, "POST", &path, Some(&body))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if status == 201 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "publish to {topic}: {status}"
        )))
    }
}

/// The server's RSS, sampled every 50 ms; the peak so far.
struct Rss {
    pid: u32,
    peak: Rc<Cell<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Rss {
    fn start(pid: u32) -> Rss {
        let peak = Rc::new(Cell::new(0));
        let task = {
            let peak = Rc::clone(&peak);
            tokio::task::spawn_local(async move {
                loop {
                    if let Some(s) = crate::procstat::sample(pid) {
                        peak.set(peak.get().max(s.rss_bytes));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        Rss { pid, peak, task }
    }

    fn now(&self) -> u64 {
        crate::procstat::sample(self.pid).map_or(0, |s| s.rss_bytes)
    }

    fn peak(&self) -> u64 {
        self.peak.get().max(self.now())
    }
}

impl Drop for Rss {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The peaks of `pubsub_queued_bytes` and `pubsub_history_bytes`, scraped
/// every 100 ms (over a WebSocket-free connection of its own each time; a
/// scrape refused while the HTTP slots are taken is skipped).
struct Watch {
    queued: Rc<Cell<u64>>,
    history: Rc<Cell<u64>>,
    dedup: Rc<Cell<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    fn start(addr: SocketAddr) -> Watch {
        let queued = Rc::new(Cell::new(0));
        let history = Rc::new(Cell::new(0));
        let dedup = Rc::new(Cell::new(0));
        let task = {
            let (queued, history) = (Rc::clone(&queued), Rc::clone(&history));
            let dedup = Rc::clone(&dedup);
            tokio::task::spawn_local(async move {
                loop {
                    if let Ok(text) = crate::http::get_text(addr, "/metrics").await {
                        let get = |name| crate::http::metric(&text, name).unwrap_or(0.0) as u64;
                        queued.set(queued.get().max(get("pubsub_queued_bytes")));
                        history.set(history.get().max(get("pubsub_history_bytes")));
                        dedup.set(dedup.get().max(get("pubsub_dedup_bytes")));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Watch {
            queued,
            history,
            dedup,
            task,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A well-behaved client: one WebSocket that publishes to `calm` every
/// 20 ms and is subscribed to it; it checks that its events arrive with
/// contiguous `seq`s and that every acked publish comes back.
struct Bystander {
    stop: Rc<Cell<bool>>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Bystander {
    async fn start(addr: SocketAddr) -> std::io::Result<Bystander> {
        create(addr, "calm").await?;
        let mut tcp = TcpStream::connect(addr).await?;
        let mut buf = ws::handshake(&mut tcp, &addr.to_string(), "/ws").await?;
        let mut sub = Vec::new();
        ws::encode_client(&mut sub, 1, br#"{"type":"subscribe","topic":"calm"}"#);
        tcp.write_all(&sub).await?;
        let stop = Rc::new(Cell::new(false));
        let flag = Rc::clone(&stop);
        let task = tokio::task::spawn_local(async move {
            let (mut events, mut missing, mut last, mut sent) = (0u64, 0u64, 0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut chunk = vec![0u8; 16 << 10];
            let mut stopping_at: Option<Instant> = None;
            loop {
                if flag.get() && stopping_at.is_none() {
                    stopping_at = Some(Instant::now());
                }
                // After the stop, up to 2 s for the last events to arrive.
                if stopping_at
                    .is_some_and(|t| events >= sent || t.elapsed() > Duration::from_secs(2))
                {
                    return (events, missing + sent.saturating_sub(events));
                }
                tokio::select! {
                    _ = tick.tick(), if stopping_at.is_none() => {
                        let mut frame = Vec::new();
                        let text = format!(r#"{{"type":"publish","topic":"calm","message":{{"payload":{sent}}}}}"#);
                        ws::encode_client(&mut frame, 1, text.as_bytes());
                        if tcp.write_all(&frame).await.is_err() {
                            return (events, u64::MAX);
                        }
                        sent += 1;
                    }
                    read = tcp.read(&mut chunk) => {
                        match read {
                            Ok(0) | Err(_) => return (events, u64::MAX),
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(f) = ws::parse(&mut buf) {
                            let text = String::from_utf8_lossy(&buf[f.start..f.end]).into_owned();
                            buf.drain(..f.end);
                            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                            if v["type"] == "event" {
                                let seq = v["seq"].as_u64().unwrap_or(0);
                                if seq != last + 1 {
                                    missing += seq.saturating_sub(last + 1).max(1);
                                }
                                last = seq;
                                events += 1;
                            }
                        }
                    }
                }
            }
        });
        Ok(Bystander { stop, task })
    }

    /// (events received, events missing or out of order).
    async fn stop(self) -> (u64, u64) {
        self.stop.set(true);
        self.task.await.unwrap_or((0, u64::MAX))
    }
}

/// The Markdown section BENCHMARKS.md includes.
fn section(outcomes: &[Outcome], quick: bool) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Attacks tried, bound, RSS seen\n");
    let _ = writeln!(
        md,
        "`scripts/bench.sh --attack`{}: each attack against a fresh release server with the default \
         limits; a bystander WebSocket publishes to and receives from its own topic every 20 ms all along. \
         RSS from /proc every 50 ms; queued and history bytes from /metrics every 100 ms.\n",
        if quick { " --quick (fewer attackers)" } else { "" }
    );
    let _ = writeln!(md, "| attack | what | bound | RSS before → peak (bound) | queued peak | history peak | bystander | seen | verdict |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / MIB as f64);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} → {} (+{}) | {} | {} | {} events, {} missing | {} | {} |",
            o.attack,
            o.what,
            o.bound,
            mib(o.rss_before),
            mib(o.rss_peak),
            mib(o.rss_bound),
            mib(o.queued_peak),
            mib(o.history_peak),
            o.bystander_events,
            o.bystander_missing,
            o.detail,
            if o.passed { "within" } else { "**over**" }
        );
    }
    md
}
