//! pubsub-bench: drives one workload against one broker and prints the
//! result as one JSON object; `scripts/bench.sh` runs every scenario against
//! every broker (each pinned to the same core) and writes BENCHMARKS.md.
//!
//! The generator is single-threaded (one tokio thread, to be pinned to its
//! own core) and reads with raw sockets, scanning each message only for its
//! send time, so that it measures the broker and not itself; its own CPU
//! use is printed beside every figure.

mod attack;
mod chaos;
mod floor;
mod http;
mod procstat;
mod proto;
mod report;
mod soak;
mod ws;

use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use proto::{Conn, Target};
use serde::Serialize;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
#[command(
    name = "pubsub-bench",
    about = "Load generator for pubsub-server and its peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// (a) 1 publisher, 1 topic, N subscribers: the highest rate delivered without loss;
    /// with --topics and --publishers, (b) many topics.
    Fanout(FanoutArgs),
    /// (c) Latency at a fixed rate.
    Latency(LatencyArgs),
    /// (d) Many idle connections with one subscription each, then one broadcast.
    Idle(IdleArgs),
    /// Soak and chaos: correctness over a long run (10 min by default) at
    /// half the maximum rate, with abrupt disconnects and resumes, then a
    /// graceful shutdown under load. Starts the server itself (pubsub only).
    Soak(Box<soak::SoakArgs>),
    /// The attack suite: each attack on the resource bounds against a fresh
    /// server with default limits, RSS and queued bytes against the bound,
    /// a bystander that must get every event (starts the server itself).
    Attack(attack::AttackArgs),
    /// The cluster chaos soak: three instances and their nats-server under
    /// load, nodes killed and restarted, NATS restarted; no acknowledged
    /// publish lost, no gap without a notice, every resume recovered.
    Chaos(chaos::ChaosArgs),
    /// (e) The floor: a server that writes pre-encoded frames with no broker logic.
    Floor {
        #[arg(long, default_value = "127.0.0.1:4300")]
        addr: SocketAddr,
    },
    /// Writes BENCHMARKS.md and the chart from a results file (JSON lines).
    Report {
        results: std::path::PathBuf,
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: std::path::PathBuf,
        #[arg(long, default_value = "bench/results/benchmarks.svg")]
        chart: std::path::PathBuf,
        /// The command that produced the results, quoted in the report.
        #[arg(long)]
        command: String,
        /// Soak results (JSON lines); the newest gets its own section.
        #[arg(long)]
        soak: Option<std::path::PathBuf>,
    },
}

#[derive(Args, Clone)]
struct Common {
    #[arg(long, value_enum)]
    target: Target,
    #[arg(long)]
    addr: SocketAddr,
    /// The broker's pid, for its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Source addresses 127.0.0.2 … 127.0.0.(1+N) for the connections.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// HTTP address for pubsub's REST API (topic creation).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Cluster mode: publishers connect here (one pubsub instance) while
    /// subscribers connect to --addr (another); the results are then the
    /// `cluster-fanout` and `cluster-latency` scenarios.
    #[arg(long)]
    publish_addr: Option<SocketAddr>,
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// A label for the report (e.g. the broker's version).
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Seconds per rate step.
    #[arg(long, default_value_t = 2.0)]
    step_secs: f64,
    #[arg(long, default_value_t = 500.0)]
    start_rate: f64,
    #[arg(long, default_value_t = 1.4)]
    factor: f64,
    #[arg(long, default_value_t = 100_000.0)]
    max_rate: f64,
    /// Topics; the subscribers are spread evenly over them ((b): 1,000 topics
    /// × 10 subscribers).
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Publisher connections; each owns every P-th topic.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Steps spent bisecting between the last clean and the first lossy rate.
    #[arg(long, default_value_t = 3)]
    bisections: u32,
}

#[derive(Args)]
struct LatencyArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Seconds per measurement window.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Measurement windows, back to back: the result is the one with the
    /// median p99 (one window's tail says little on a noisy machine).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 19_000)]
    connections: usize,
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        match cli.command {
            Command::Fanout(a) => print(&fanout(a).await?),
            Command::Latency(a) => print(&latency(a).await?),
            Command::Idle(a) => print(&idle(a).await?),
            Command::Soak(a) => soak::run(*a).await?,
            Command::Attack(a) => attack::run(a).await?,
            Command::Chaos(a) => chaos::run(a).await?,
            Command::Floor { addr } => floor::serve(addr).await?,
            Command::Report {
                results,
                out,
                chart,
                command,
                soak,
            } => report::write(&results, &out, &chart, &command, soak.as_deref())?,
        }
        Ok(())
    })
}

fn print<T: Serialize>(result: &T) {
    println!("{}", serde_json::to_string(result).unwrap_or_default());
}

const TOPIC: &str = "bench";
const WAVE: usize = 100;

/// `bench` alone, or `bench-0` … `bench-(n-1)`.
fn topic_names(n: usize) -> Vec<String> {
    if n <= 1 {
        vec![TOPIC.to_owned()]
    } else {
        (0..n).map(|i| format!("{TOPIC}-{i}")).collect()
    }
}

fn source(common: &Common, i: usize) -> Option<IpAddr> {
    source_ip(common.sources, i)
}

/// The source address of connection `i`: 127.0.0.2 … 127.0.0.(1+sources),
/// or the default when `sources` is 0.
pub fn source_ip(sources: u8, i: usize) -> Option<IpAddr> {
    (sources > 0).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % sources as usize) as u8)))
}

/// Creates the topic on pubsub through its REST API (other brokers need
/// none). A cluster instance answers 503 until it has reached NATS: that is
/// retried for up to 10 s.
async fn create_topic(common: &Common, topic: &str) -> std::io::Result<()> {
    if common.target != Target::Pubsub {
        return Ok(());
    }
    let http = common.http.unwrap_or(common.addr);
    let body = format!("{{\"name\":\"{topic}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = crate::http::request(http, "POST", "/api/topics", Some(&body))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if status == 201 || status == 409 {
            return Ok(());
        }
        if status != 503 || Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "creating topic {topic}: status {status}: {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What all subscriber tasks add to.
struct Tally {
    received: u64,
    latency: Histogram<u64>,
    errors: u64,
    base: Instant,
}

impl Tally {
    fn new(base: Instant) -> Rc<RefCell<Tally>> {
        Rc::new(RefCell::new(Tally {
            received: 0,
            latency: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .expect("histogram bounds"),
            errors: 0,
            base,
        }))
    }
}

/// Opens and subscribes `n` connections, then reads each in its own task.
async fn subscribers(
    common: &Common,
    n: usize,
    topics: &[String],
    tally: &Rc<RefCell<Tally>>,
) -> std::io::Result<Duration> {
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    // Open in waves of 100 handshakes: more at once overflow the listen
    // backlog (somaxconn) and cost a one-second SYN retransmission.
    for chunk_start in (0..n).step_by(WAVE) {
        let mut opening = Vec::new();
        for i in chunk_start..(chunk_start + WAVE).min(n) {
            let common = common.clone();
            let topic = topics[i % topics.len()].clone();
            opening.push(tokio::task::spawn_local(async move {
                let mut c = Conn::open(common.target, common.addr, source(&common, i)).await?;
                c.subscribe(&topic).await?;
                Ok::<_, std::io::Error>(c)
            }));
        }
        for o in opening {
            conns.push(o.await.map_err(std::io::Error::other)??);
        }
    }
    let elapsed = started.elapsed();
    for mut c in conns {
        let tally = Rc::clone(tally);
        tokio::task::spawn_local(async move {
            loop {
                let mut got = 0u64;
                let mut times = [0u64; 64];
                let mut timed = 0;
                let result = c
                    .read_some(|m| {
                        if let Some(t) = proto::send_time(m) {
                            got += 1;
                            if timed < times.len() {
                                times[timed] = t;
                                timed += 1;
                            }
                        }
                    })
                    .await;
                let mut t = tally.borrow_mut();
                if result.is_err() {
                    t.errors += 1;
                    return;
                }
                t.received += got;
                let now = t.base.elapsed().as_nanos() as u64;
                for sent in &times[..timed] {
                    let _ = t.latency.record(now.saturating_sub(*sent).max(1_000));
                }
            }
        });
    }
    Ok(elapsed)
}

/// A publisher connection whose replies (acks, PUBLISH counts) are drained.
async fn publisher(common: &Common) -> std::io::Result<tokio::net::tcp::OwnedWriteHalf> {
    let addr = common.publish_addr.unwrap_or(common.addr);
    let conn = Conn::open(common.target, addr, None).await?;
    let target = conn.target;
    let std = conn.stream.into_std()?;
    let stream = tokio::net::TcpStream::from_std(std)?;
    let (mut read, write) = stream.into_split();
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 64 * 1024];
        // NATS may PING the publisher; it is answered by nobody, which is
        // fine for the few seconds of a step (nats waits minutes).
        let _ = target;
        while let Ok(n) = tokio::io::AsyncReadExt::read(&mut read, &mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    Ok(write)
}

fn publish_bytes(common: &Common, topic: &str, base: Instant, n: usize) -> Vec<u8> {
    // A throwaway Conn-less framing: reuse the framing rules by target.
    let mut out = Vec::with_capacity(n * (common.payload + 64));
    for _ in 0..n {
        let p = proto::payload(base.elapsed().as_nanos() as u64, common.payload);
        proto::frame_publish(common.target, &mut out, topic, &p);
    }
    out
}

/// Publishes at `rate` messages a second in total for `secs`, in 1 ms
/// ticks: message k goes to topic k mod T, sent by the publisher that owns
/// that topic (topic j belongs to publisher j mod P), so each topic has one
/// publisher and keeps its order.
async fn publish_at(
    common: &Common,
    outs: &mut [tokio::net::tcp::OwnedWriteHalf],
    topics: &[String],
    base: Instant,
    rate: f64,
    secs: f64,
) -> std::io::Result<u64> {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); outs.len()];
    while start.elapsed().as_secs_f64() < secs {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let topic = (sent % topics.len() as u64) as usize;
            let p = proto::payload(base.elapsed().as_nanos() as u64, common.payload);
            proto::frame_publish(
                common.target,
                &mut buffers[topic % outs.len()],
                &topics[topic],
                &p,
            );
            sent += 1;
        }
        for (out, buf) in outs.iter_mut().zip(buffers.iter_mut()) {
            if !buf.is_empty() {
                out.write_all(buf).await?;
                buf.clear();
            }
        }
    }
    Ok(sent)
}

#[derive(Serialize)]
struct Step {
    rate: f64,
    published: u64,
    expected: u64,
    received: u64,
    deliveries_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    server_cpu: f64,
    generator_cpu: f64,
    clean: bool,
}

/// Publishes at `rate` for `secs`, waits up to `settle` for the last
/// deliveries, and measures what arrived, the latency, and both CPUs.
#[allow(clippy::too_many_arguments)]
async fn run_step(
    c: &Common,
    outs: &mut [tokio::net::tcp::OwnedWriteHalf],
    topics: &[String],
    base: Instant,
    tally: &Rc<RefCell<Tally>>,
    subscribers: usize,
    rate: f64,
    secs: f64,
    settle: Duration,
) -> std::io::Result<Step> {
    tally.borrow_mut().latency.reset();
    let before = tally.borrow().received;
    let server_before = c.server_pid.and_then(procstat::sample);
    let me_before = procstat::sample(std::process::id());
    let t0 = Instant::now();
    let published = publish_at(c, outs, topics, base, rate, secs).await?;
    // `subscribers` is the fan-out of one message: subscribers per topic.
    let expected = published * subscribers as u64;
    let settling = Instant::now();
    while tally.borrow().received - before < expected && settling.elapsed() < settle {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = t0.elapsed();
    let share = |b: Option<procstat::Sample>, a: Option<procstat::Sample>| match (b, a) {
        (Some(b), Some(a)) => procstat::cpu_share(b, a, wall),
        _ => 0.0,
    };
    let t = tally.borrow();
    let received = t.received - before;
    Ok(Step {
        rate,
        published,
        expected,
        received,
        deliveries_per_sec: received as f64 / secs,
        p50_us: pct(&t.latency, 0.5),
        p99_us: pct(&t.latency, 0.99),
        p999_us: pct(&t.latency, 0.999),
        server_cpu: share(server_before, c.server_pid.and_then(procstat::sample)),
        generator_cpu: share(me_before, procstat::sample(std::process::id())),
        clean: received >= expected && t.errors == 0,
    })
}

#[derive(Serialize)]
struct FanoutResult {
    scenario: &'static str,
    target: Target,
    topics: usize,
    publishers: usize,
    label: String,
    subscribers: usize,
    payload: usize,
    connect_secs: f64,
    /// The highest step delivered without loss.
    best: Option<Step>,
    steps: Vec<Step>,
    server_rss_bytes: Option<u64>,
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn fanout(a: FanoutArgs) -> std::io::Result<FanoutResult> {
    let c = a.common.clone();
    let topics = topic_names(a.topics);
    for t in &topics {
        create_topic(&c, t).await?;
    }
    let base = Instant::now();
    let tally = Tally::new(base);
    let connect = subscribers(&c, a.subscribers, &topics, &tally).await?;
    let mut outs = Vec::with_capacity(a.publishers);
    for _ in 0..a.publishers.max(1) {
        outs.push(publisher(&c).await?);
    }
    let per_topic = a.subscribers / topics.len();
    let mut steps: Vec<Step> = Vec::new();
    let mut rate = a.start_rate;
    let (mut low, mut high, mut bisections) = (0.0f64, None::<f64>, 0);
    while rate <= a.max_rate {
        let step = run_step(
            &c,
            &mut outs,
            &topics,
            base,
            &tally,
            per_topic,
            rate,
            a.step_secs,
            Duration::from_secs(1),
        )
        .await?;
        let (clean, server_cpu, generator_cpu) = (step.clean, step.server_cpu, step.generator_cpu);
        eprintln!(
            "{:?} rate {rate:.0}/s: {:.0} deliveries/s, p99 {:.0} µs, server cpu {:.0}%, generator cpu {:.0}%{}",
            c.target,
            step.deliveries_per_sec,
            step.p99_us,
            server_cpu * 100.0,
            generator_cpu * 100.0,
            if clean { "" } else { "  ← loss" }
        );
        let errors = tally.borrow().errors;
        steps.push(step);
        // Grow geometrically until a step loses messages, then bisect
        // between the last clean rate and the lossy one (while no
        // subscriber was disconnected, which would spoil later steps).
        if clean {
            low = rate;
        } else {
            high = Some(rate);
        }
        match high {
            None => rate *= a.factor,
            Some(h) if errors == 0 && bisections < a.bisections && low > 0.0 => {
                bisections += 1;
                rate = (low + h) / 2.0;
                // Let the backlog of the lossy step drain first.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = tally.borrow().received;
            }
            Some(_) => break,
        }
    }
    let best_index = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.clean)
        .max_by(|a, b| a.1.rate.total_cmp(&b.1.rate))
        .map(|(i, _)| i);
    let best = best_index.map(|i| steps.remove(i));
    Ok(FanoutResult {
        scenario: match (c.publish_addr.is_some(), topics.len() > 1) {
            (true, _) => "cluster-fanout",
            (false, true) => "topics",
            (false, false) => "fanout",
        },
        target: c.target,
        topics: topics.len(),
        publishers: outs.len(),
        label: c.label.clone(),
        subscribers: a.subscribers,
        payload: c.payload,
        connect_secs: connect.as_secs_f64(),
        best,
        steps,
        server_rss_bytes: c.server_pid.and_then(procstat::sample).map(|s| s.rss_bytes),
    })
}

#[derive(Serialize)]
struct LatencyResult {
    scenario: &'static str,
    target: Target,
    label: String,
    subscribers: usize,
    rate: f64,
    /// The window with the median p99.
    step: Step,
    /// Every window's p99, in the order they ran.
    p99_windows_us: Vec<f64>,
}

async fn latency(a: LatencyArgs) -> std::io::Result<LatencyResult> {
    let c = a.common.clone();
    let topics = topic_names(1);
    create_topic(&c, TOPIC).await?;
    let base = Instant::now();
    let tally = Tally::new(base);
    subscribers(&c, a.subscribers, &topics, &tally).await?;
    let mut outs = [publisher(&c).await?];
    // Warm up for a second, then measure.
    publish_at(&c, &mut outs, &topics, base, a.rate, 1.0).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut windows = Vec::with_capacity(a.repeat.max(1));
    for _ in 0..a.repeat.max(1) {
        let step = run_step(
            &c,
            &mut outs,
            &topics,
            base,
            &tally,
            a.subscribers,
            a.rate,
            a.secs,
            Duration::from_secs(2),
        )
        .await?;
        eprintln!(
            "{:?} latency at {:.0}/s: p50 {:.0} µs p99 {:.0} µs p99.9 {:.0} µs",
            c.target, a.rate, step.p50_us, step.p99_us, step.p999_us
        );
        windows.push(step);
    }
    let p99_windows_us: Vec<f64> = windows.iter().map(|w| w.p99_us).collect();
    windows.sort_by(|x, y| x.p99_us.total_cmp(&y.p99_us));
    let step = windows.swap_remove(windows.len() / 2);
    Ok(LatencyResult {
        scenario: if c.publish_addr.is_some() {
            "cluster-latency"
        } else {
            "latency"
        },
        target: c.target,
        label: c.label.clone(),
        subscribers: a.subscribers,
        rate: a.rate,
        step,
        p99_windows_us,
    })
}

#[derive(Serialize)]
struct IdleResult {
    scenario: &'static str,
    target: Target,
    label: String,
    connections: usize,
    connect_secs: f64,
    connects_per_sec: f64,
    rss_before_bytes: Option<u64>,
    rss_after_bytes: Option<u64>,
    rss_per_connection_bytes: Option<f64>,
    broadcast_ms: Option<f64>,
    received: u64,
}

async fn idle(a: IdleArgs) -> std::io::Result<IdleResult> {
    let c = a.common.clone();
    create_topic(&c, TOPIC).await?;
    let rss_before = c.server_pid.and_then(procstat::sample).map(|s| s.rss_bytes);
    let base = Instant::now();
    let tally = Tally::new(base);
    let connect = subscribers(&c, a.connections, &topic_names(1), &tally).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = c.server_pid.and_then(procstat::sample).map(|s| s.rss_bytes);
    let mut out = publisher(&c).await?;
    let t0 = Instant::now();
    out.write_all(&publish_bytes(&c, TOPIC, base, 1)).await?;
    let mut done = None;
    while t0.elapsed() < Duration::from_secs(10) {
        if tally.borrow().received >= a.connections as u64 {
            done = Some(t0.elapsed());
            break;
        }
        tokio::task::yield_now().await;
    }
    let received = tally.borrow().received;
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a2)) => Some(a2.saturating_sub(b) as f64 / a.connections as f64),
        _ => None,
    };
    eprintln!(
        "{:?} idle: {} connections in {:.1} s, {:.0} B/connection, broadcast {:?}",
        c.target,
        a.connections,
        connect.as_secs_f64(),
        per_conn.unwrap_or(0.0),
        done
    );
    Ok(IdleResult {
        scenario: "idle",
        target: c.target,
        label: c.label.clone(),
        connections: a.connections,
        connect_secs: connect.as_secs_f64(),
        connects_per_sec: a.connections as f64 / connect.as_secs_f64().max(1e-9),
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_per_connection_bytes: per_conn,
        broadcast_ms: done.map(|d| d.as_secs_f64() * 1000.0),
        received,
    })
}
