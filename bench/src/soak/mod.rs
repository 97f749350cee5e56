//! The soak: a long run at half the measured maximum rate, with subscribers
//! that drop their connections abruptly and resume with `since`, then a
//! graceful shutdown under load. It checks correctness over time, not
//! speed; its result is one JSON line that the report renders.
//!
//! - [`wire`]: WebSocket frames and the server's JSON frames, parsed strictly.
//! - [`session`]: one subscriber connection and its `seq` checks.
//! - [`subscriber`], [`publisher`]: the clients.
//! - [`ledger`]: what the clients count, shared by a phase.
//! - [`server`]: the server process the soak starts, signals and waits for.
//! - [`shutdown`]: SIGTERM under load and what every client saw.
//!
//! The phases: (1) the soak itself for `--duration`; (2) publishers stop,
//! every subscriber reads to the end and closes, and once the server has
//! settled (no connection, no subscription, nothing queued) its per-topic
//! counters are checked against the clients' books; (3) fresh clients,
//! publishing at the same rate, then SIGTERM.

mod ledger;
mod publisher;
pub mod report;
pub(crate) mod server;
mod session;
mod shutdown;
mod subscriber;
mod wire;

use crate::http;
use crate::procstat;
use clap::Args;
use ledger::{Base, Checks, Errors, Ledger, TopicLedger};
use serde::Serialize;
use server::{LogSummary, Server};
use session::Ended;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct SoakArgs {
    /// Where the server the soak starts listens.
    #[arg(long, default_value = "127.0.0.1:4426")]
    addr: SocketAddr,
    /// The server binary.
    #[arg(long, default_value = "target/release/pubsub-server")]
    server: PathBuf,
    /// The CPU the server is pinned to (`taskset -c`); empty: not pinned.
    #[arg(long, default_value = "0")]
    server_cpu: String,
    /// More server flags, e.g. `--server-arg=--subscriber-queue=2048`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// How long the soak publishes and churns (`10m`, `45s`).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    duration: Duration,
    /// Messages per second over all topics; by default half the maximum
    /// measured in `--max-from` (see `Rate`).
    #[arg(long)]
    rate: Option<f64>,
    /// The results of the last full `scripts/bench.sh` run.
    #[arg(long, default_value = "bench/results/bench-results.jsonl")]
    max_from: PathBuf,
    #[arg(long, default_value_t = 10)]
    topics: usize,
    /// Subscriber connections.
    #[arg(long, default_value_t = 500)]
    subscribers: usize,
    /// Topics each subscriber connection subscribes to (i, i+1, … mod topics).
    #[arg(long, default_value_t = 2)]
    topics_per_subscriber: usize,
    /// Publisher connections; publisher p owns the topics t with t mod P = p.
    #[arg(long, default_value_t = 5)]
    publishers: usize,
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// The mean (exponential) life of a subscriber connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    mean_lifetime: Duration,
    /// Subscriber connections (in percent) that read slowly (2 KB every
    /// 100 ms) for the first half of their life.
    #[arg(long, default_value_t = 10)]
    slow_percent: u64,
    /// A subscriber waits up to this long before it reconnects.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    max_reconnect_delay: Duration,
    /// The server's `--heartbeat-interval`. The soak's clients answer
    /// pings, so a short one also exercises dead-peer detection (stalls).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// The server's `--history-size`.
    #[arg(long, default_value_t = 100)]
    history_size: u64,
    /// The server's `--shutdown-timeout`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// How often the server's memory is sampled.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    sample_every: Duration,
    /// The drift is measured from the first sample after this; by default
    /// min(60 s, duration / 5).
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Publishing time in the shutdown phase before SIGTERM.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    shutdown_after: Duration,
    /// Seed of the chaos (lifetimes, delays, ways of letting go).
    #[arg(long)]
    seed: Option<u64>,
    /// Source addresses 127.0.0.2 … 127.0.0.(1+N) for the subscribers.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// The server's log (stderr, JSON lines).
    #[arg(long, default_value = "target/soak-server.log")]
    server_log: PathBuf,
    /// Appends the result line here as well as printing it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// For the report: the command, date, version and machine of this run.
    #[arg(long, default_value = "")]
    command: String,
    #[arg(long, default_value = "")]
    date: String,
    #[arg(long, default_value = "")]
    version: String,
    #[arg(long, default_value = "")]
    machine: String,
}

/// `500ms`, `45s`, `10m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (ms, s, m, h)")),
    };
    if !(secs >= 0.0 && secs.is_finite()) {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A small, seedable generator (splitmix64): the chaos is reproducible
/// from the seed the result records.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Exponentially distributed with this mean.
    pub fn exp(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(-(1.0 - self.unit()).ln())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Publish, read, churn.
    Run,
    /// Publishers stopped and answered: subscribers read to the end and close.
    Drain,
}

/// What the clients of one phase share.
pub struct Ctx {
    pub addr: SocketAddr,
    pub sources: u8,
    pub ledger: RefCell<Ledger>,
    pub phase: Cell<Phase>,
    pub heartbeat: Duration,
    pub history_size: u64,
    /// The mean life of a subscriber connection; `None`: no chaos.
    pub lifetime: Option<Duration>,
    pub max_reconnect_delay: Duration,
    /// Connections (in percent) that read slowly for half their life.
    pub slow_percent: u64,
    /// The shutdown phase: the server's `shutting_down` and close are the
    /// expected end of every connection.
    pub expect_shutdown: bool,
    pub endings: RefCell<Vec<Ending>>,
    pub seed: u64,
}

/// How the server ended one client's connection (the shutdown phase).
#[derive(Debug, Clone)]
pub struct Ending {
    pub publisher: bool,
    pub shutting_down_at: Option<f64>,
    pub ended: Option<Ended>,
    pub ended_at: f64,
    pub events_after_notice: u64,
    /// Per topic: the last `seq` received (subscriber) or acked (publisher).
    pub last: Vec<(usize, u64)>,
}

/// Where the rate comes from.
#[derive(Debug, Serialize)]
pub struct Rate {
    pub messages_per_sec: f64,
    pub deliveries_per_sec: f64,
    /// How it was chosen, in words.
    pub basis: String,
}

/// Half the lower of pubsub's best fan-out and many-topics deliveries/s in
/// the last full run: the soak's shape (a few topics, many subscribers
/// each) lies between the two.
fn rate(a: &SoakArgs, per_topic: f64) -> Result<Rate, String> {
    if let Some(r) = a.rate {
        return Ok(Rate {
            messages_per_sec: r,
            deliveries_per_sec: r * per_topic,
            basis: "given with --rate".into(),
        });
    }
    let text = std::fs::read_to_string(&a.max_from).map_err(|e| {
        format!(
            "{}: {e} (run scripts/bench.sh first, or give --rate)",
            a.max_from.display()
        )
    })?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let date = rows
        .iter()
        .find(|r| r["scenario"] == "meta")
        .and_then(|r| r["date"].as_str())
        .unwrap_or("?")
        .to_owned();
    let best = rows
        .iter()
        .filter(|r| {
            r["target"] == "pubsub" && (r["scenario"] == "fanout" || r["scenario"] == "topics")
        })
        .filter_map(|r| {
            Some((
                r["scenario"].as_str()?,
                r["best"]["deliveries_per_sec"].as_f64()?,
            ))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or_else(|| format!("{}: no pubsub fan-out result", a.max_from.display()))?;
    let deliveries = best.1 / 2.0;
    Ok(Rate {
        messages_per_sec: deliveries / per_topic,
        deliveries_per_sec: deliveries,
        basis: format!(
            "half of {} deliveries/s, pubsub's lower maximum (scenario {}) in {} of {date}",
            report::int(&best.1.into()),
            best.0,
            a.max_from
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    })
}

#[derive(Debug, Serialize)]
struct Config {
    duration_secs: f64,
    topics: usize,
    subscribers: usize,
    topics_per_subscriber: usize,
    subscriptions_per_topic: f64,
    publishers: usize,
    payload: usize,
    mean_lifetime_secs: f64,
    max_reconnect_delay_ms: f64,
    slow_percent: u64,
    heartbeat_secs: f64,
    history_size: u64,
    shutdown_timeout_secs: f64,
    seed: u64,
    server_command: String,
}

/// (seconds, RSS bytes, connections, subscriptions, events queued to
/// connections: `pubsub_queued_events`).
type MemorySample = (f64, u64, u64, u64, u64);

#[derive(Debug, Default, Serialize)]
struct Memory {
    /// One every `--sample-every`.
    samples: Vec<MemorySample>,
    warmup_secs: f64,
    start: u64,
    after_warmup: u64,
    end: u64,
    max: u64,
    drift: i64,
    /// Once every client left (history and topics remain).
    after_settle: u64,
}

#[derive(Debug, Serialize)]
struct TopicCheck {
    name: String,
    /// Server: messages published in the soak; clients: publishes acked.
    messages: u64,
    acked: u64,
    /// Server: delivered + dropped (nothing queued any more).
    delivered: u64,
    dropped: u64,
    /// Clients: live events read; the bounds of Σ subscribers at publish time.
    received: u64,
    lower: u64,
    upper: u64,
    ok: bool,
}

#[derive(Debug, Default, Serialize)]
struct Invariant {
    ok: bool,
    settled: bool,
    settle_secs: f64,
    connections: u64,
    subscribers: u64,
    queued_events: Option<f64>,
    published_total: u64,
    topics: Vec<TopicCheck>,
    /// Seconds after a client let go in which the server may still count
    /// a publish to its subscription (the upper bound).
    grace_secs: f64,
    /// Subscriptions that ended, and by how many events per ended
    /// subscription the server's count exceeds the lower bound (publishes
    /// that reached a subscription after its client let go).
    ended_subscriptions: u64,
    excess_per_ended: f64,
    note: String,
}

/// CPU use over the soak phase, as a share of one core.
#[derive(Debug, Serialize)]
struct Cpu {
    server: f64,
    generator: f64,
}

#[derive(Debug, Serialize)]
struct SoakResult {
    scenario: &'static str,
    command: String,
    date: String,
    version: String,
    machine: String,
    config: Config,
    rate: Rate,
    elapsed_secs: f64,
    published: u64,
    cpu: Cpu,
    memory: Memory,
    checks: Checks,
    errors: Errors,
    error_count: u64,
    invariant: Invariant,
    shutdown: Option<shutdown::ShutdownResult>,
    server_log: LogSummary,
    ok: bool,
    failures: Vec<String>,
}

/// Runs the soak and prints (and appends to `--out`) its result: (1) the
/// load, (2) drain and the counter invariant, (3) SIGTERM under load, then
/// the verdict.
pub async fn run(a: SoakArgs) -> std::io::Result<()> {
    let per_topic =
        (a.subscribers * a.topics_per_subscriber.min(a.topics)) as f64 / a.topics.max(1) as f64;
    let rate = rate(&a, per_topic).map_err(std::io::Error::other)?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let command = server_command(&a);
    let config = Config::new(&a, per_topic, seed, &command);
    eprintln!(
        "soak: {:.0} messages/s ({:.0} deliveries/s: {}) for {:.0} s; server: {}",
        rate.messages_per_sec,
        rate.deliveries_per_sec,
        rate.basis,
        config.duration_secs,
        config.server_command
    );
    let server = Server::spawn(command, &a.server_log)?;
    server.wait_listening(a.addr).await?;
    let topics = open_topics(a.addr, a.topics).await?;
    let ctx = Rc::new(Ctx::for_soak(&a, topics, seed));
    let mut failures = Vec::new();

    let loaded = load(
        &a,
        &ctx,
        &config,
        &server,
        rate.messages_per_sec,
        &mut failures,
    )
    .await;
    let mut memory = loaded.memory;

    eprintln!("soak: {:.0} s done; draining", loaded.elapsed);
    ctx.phase.set(Phase::Drain);
    let (publishers, subscribers) = loaded.clients;
    for p in publishers {
        let _ = p.await;
    }
    for s in subscribers {
        let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
    }
    loaded.timeline.abort();
    ctx.ledger.borrow_mut().sample_timeline();
    let invariant = settle_and_check(a.addr, &ctx).await;
    memory.after_settle = procstat::sample(server.pid)
        .map(|s| s.rss_bytes)
        .unwrap_or(0);

    eprintln!("soak: shutdown under load");
    let shutdown = if server.exit().is_none() {
        Some(shutdown::run(&server, &ctx, &a, &config, rate.messages_per_sec, seed).await)
    } else {
        None
    };

    let published = judge_ledger(&ctx, &mut failures);
    if !invariant.ok {
        failures.push(format!("counter invariant: {}", invariant.note));
    }
    match &shutdown {
        Some(s) => failures.extend(s.failures.iter().map(|f| format!("shutdown: {f}"))),
        None => failures.push("no shutdown phase: the server was gone".into()),
    }
    let log = server.log().await;
    if log.errors > 0 || log.unparsed > 0 {
        failures.push(format!(
            "the server logged {} errors and {} non-JSON lines (panics?)",
            log.errors, log.unparsed
        ));
    }
    let (checks, errors) = {
        let mut ledger = ctx.ledger.borrow_mut();
        (
            std::mem::take(&mut ledger.checks),
            std::mem::take(&mut ledger.errors),
        )
    };
    let result = SoakResult {
        scenario: "soak",
        command: a.command.clone(),
        date: a.date.clone(),
        version: a.version.clone(),
        machine: a.machine.clone(),
        config,
        rate,
        elapsed_secs: loaded.elapsed,
        published,
        cpu: loaded.cpu,
        memory,
        error_count: errors.total(),
        checks,
        errors,
        invariant,
        shutdown,
        server_log: log,
        ok: failures.is_empty(),
        failures,
    };
    record(&result, a.out.as_deref())
}

/// The server's command line: the soak's settings, then `--server-arg`s.
fn server_command(a: &SoakArgs) -> Vec<String> {
    let mut command = Vec::new();
    if !a.server_cpu.is_empty() {
        command.extend(["taskset".to_string(), "-c".into(), a.server_cpu.clone()]);
    }
    command.push(a.server.display().to_string());
    command.extend([
        "--addr".to_string(),
        a.addr.to_string(),
        "--heartbeat-interval".into(),
        format!("{}ms", a.heartbeat.as_millis()),
        "--history-size".into(),
        a.history_size.to_string(),
        "--shutdown-timeout".into(),
        format!("{}ms", a.shutdown_timeout.as_millis()),
        "--log-format".into(),
        "json".into(),
    ]);
    command.extend(a.server_args.iter().cloned());
    command
}

impl Config {
    fn new(a: &SoakArgs, per_topic: f64, seed: u64, command: &[String]) -> Self {
        Config {
            duration_secs: a.duration.as_secs_f64(),
            topics: a.topics,
            subscribers: a.subscribers,
            topics_per_subscriber: a.topics_per_subscriber.min(a.topics),
            subscriptions_per_topic: per_topic,
            publishers: a.publishers.clamp(1, a.topics.max(1)),
            payload: a.payload,
            mean_lifetime_secs: a.mean_lifetime.as_secs_f64(),
            max_reconnect_delay_ms: a.max_reconnect_delay.as_secs_f64() * 1000.0,
            slow_percent: a.slow_percent.min(100),
            heartbeat_secs: a.heartbeat.as_secs_f64(),
            history_size: a.history_size,
            shutdown_timeout_secs: a.shutdown_timeout.as_secs_f64(),
            seed,
            server_command: shown_command(command),
        }
    }
}

impl Ctx {
    /// The clients of the soak phase: churn and slow readers as asked.
    fn for_soak(a: &SoakArgs, topics: Vec<TopicLedger>, seed: u64) -> Self {
        Ctx {
            addr: a.addr,
            sources: a.sources,
            ledger: RefCell::new(Ledger::new(topics)),
            phase: Cell::new(Phase::Run),
            heartbeat: a.heartbeat,
            history_size: a.history_size,
            lifetime: Some(a.mean_lifetime),
            max_reconnect_delay: a.max_reconnect_delay,
            slow_percent: a.slow_percent,
            expect_shutdown: false,
            endings: RefCell::default(),
            seed,
        }
    }
}

/// What the load phase leaves for the next ones.
struct Loaded {
    elapsed: f64,
    cpu: Cpu,
    memory: Memory,
    clients: (Tasks, Tasks),
    timeline: tokio::task::JoinHandle<()>,
}

/// (1) The load: clients publish, read and churn for `--duration` while
/// CPU and memory are sampled; a server that exits is a failure.
async fn load(
    a: &SoakArgs,
    ctx: &Rc<Ctx>,
    config: &Config,
    server: &Server,
    rate: f64,
    failures: &mut Vec<String>,
) -> Loaded {
    let started = Instant::now();
    let cpu_before = (
        procstat::sample(server.pid),
        procstat::sample(std::process::id()),
    );
    let timeline = tokio::task::spawn_local(sample_timeline(Rc::clone(ctx)));
    let memory_samples = Rc::new(RefCell::new(Vec::new()));
    let sampler = tokio::task::spawn_local(sample_memory(
        server.pid,
        a.addr,
        a.sample_every,
        started,
        Rc::clone(&memory_samples),
    ));
    let clients = start_clients(ctx, config, rate).await;
    while started.elapsed() < a.duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(exit) = server.exit() {
            failures.push(format!(
                "the server exited during the soak: {}",
                exit.describe
            ));
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let share = |before: Option<procstat::Sample>, pid: u32| match (before, procstat::sample(pid)) {
        (Some(b), Some(a)) => procstat::cpu_share(b, a, started.elapsed()),
        _ => 0.0,
    };
    let cpu = Cpu {
        server: share(cpu_before.0, server.pid),
        generator: share(cpu_before.1, std::process::id()),
    };
    sampler.abort();
    let memory = memory_figures(
        &memory_samples.borrow(),
        a.warmup
            .unwrap_or(Duration::from_secs_f64((elapsed / 5.0).min(60.0))),
    );
    Loaded {
        elapsed,
        cpu,
        memory,
        clients,
        timeline,
    }
}

/// The clients' checks that must all be zero, and the errors they met,
/// as failures; returns the messages published (acknowledged).
fn judge_ledger(ctx: &Ctx, failures: &mut Vec<String>) -> u64 {
    let ledger = ctx.ledger.borrow();
    let c = &ledger.checks;
    // Long stalls are reported, not required to end: a stalled client
    // that events keep flowing to is judged by its writes (its kernel
    // buffers hold the events until it resumes or they fill and the
    // write deadline closes it); only idle ones are pinged away. A
    // survivor that resumed is held to the gap and order checks.
    let must_be_zero: [(&str, u64); 5] = [
        ("gaps without a SLOW_CONSUMER notice", c.gaps_without_notice),
        ("events out of order", c.out_of_order),
        ("recovered replays not gapless", c.replays_bad),
        (
            "since refused although history held it",
            c.not_recovered_but_held,
        ),
        ("epoch changes", c.epoch_changes),
    ];
    for (what, n) in must_be_zero {
        if n > 0 {
            failures.push(format!("{n} {what}"));
        }
    }
    if ledger.errors.total() > 0 {
        failures.push(format!(
            "{} errors: {}",
            ledger.errors.total(),
            report::errors_line(&serde_json::to_value(&ledger.errors).unwrap_or_default())
        ));
    }
    ledger.topics.iter().map(|t| t.acked).sum()
}

/// Prints the result as one JSON line (appended to `out` too) and the
/// verdict on stderr.
fn record(result: &SoakResult, out: Option<&std::path::Path>) -> std::io::Result<()> {
    let line = serde_json::to_string(result).map_err(std::io::Error::other)?;
    println!("{line}");
    if let Some(out) = out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)?;
        writeln!(f, "{line}")?;
    }
    eprintln!(
        "soak: {}{}",
        if result.ok { "ok" } else { "FAILED: " },
        result.failures.join("; ")
    );
    Ok(())
}

/// Creates `soak-0` … (or finds them) and reads their epoch and counters.
async fn open_topics(addr: SocketAddr, n: usize) -> std::io::Result<Vec<TopicLedger>> {
    let fail = |e: http::HttpError| std::io::Error::other(format!("setting the topics up: {e}"));
    let mut topics = Vec::new();
    for i in 0..n {
        let name = format!("soak-{i}");
        let body = format!("{{\"name\":\"{name}\"}}");
        let (status, answer) = http::request(addr, "POST", "/api/topics", Some(&body))
            .await
            .map_err(fail)?;
        if status != 201 && status != 409 {
            return Err(fail(http::HttpError::Refused {
                status,
                code: None,
                message: String::from_utf8_lossy(&answer).into_owned(),
            }));
        }
        topics.push(name);
    }
    read_topics(addr, &topics).await.map_err(fail)
}

/// The topics' epochs and current counters, as a fresh phase's ledger.
async fn read_topics(
    addr: SocketAddr,
    names: &[String],
) -> Result<Vec<TopicLedger>, http::HttpError> {
    let stats = http::get_json(addr, "/api/stats").await?;
    let mut out = Vec::new();
    for name in names {
        let info = http::get_json(addr, &format!("/api/topics/{name}")).await?;
        let epoch = info["epoch"]
            .as_str()
            .ok_or_else(|| http::HttpError::Body(format!("topic {name} without epoch")))?;
        let seq = info["seq"]
            .as_u64()
            .ok_or_else(|| http::HttpError::Body(format!("topic {name} without seq")))?;
        let counts = &stats["topics"][name];
        let base = Base {
            seq,
            delivered: counts["delivered"].as_u64().unwrap_or(0),
            dropped: counts["dropped"].as_u64().unwrap_or(0),
        };
        out.push(TopicLedger::new(name.clone(), epoch.to_owned(), base));
    }
    Ok(out)
}

type Tasks = Vec<tokio::task::JoinHandle<()>>;

/// Subscribers, then publishers.
async fn start_clients(ctx: &Rc<Ctx>, config: &Config, rate: f64) -> (Tasks, Tasks) {
    let subscribers = spawn_subscribers(ctx, config).await;
    (spawn_publishers(ctx, config, rate), subscribers)
}

/// One task per subscriber connection, each on `topics_per_subscriber`
/// consecutive topics, started in waves of 100 so the listen backlog never
/// overflows.
async fn spawn_subscribers(ctx: &Rc<Ctx>, config: &Config) -> Tasks {
    let mut subscribers = Vec::new();
    for i in 0..config.subscribers {
        let topics: Vec<usize> = (0..config.topics_per_subscriber)
            .map(|k| (i + k) % config.topics)
            .collect();
        subscribers.push(tokio::task::spawn_local(subscriber::run(
            i,
            topics,
            Rc::clone(ctx),
        )));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    subscribers
}

/// One task per publisher, each owning every `publishers`-th topic and its
/// share of `rate` (messages per second in total).
fn spawn_publishers(ctx: &Rc<Ctx>, config: &Config, rate: f64) -> Tasks {
    let p = config.publishers;
    (0..p)
        .map(|id| {
            let owned: Vec<usize> = (0..config.topics).filter(|t| t % p == id).collect();
            let share = rate * owned.len() as f64 / config.topics as f64;
            tokio::task::spawn_local(publisher::run(owned, share, config.payload, Rc::clone(ctx)))
        })
        .collect()
}

async fn sample_timeline(ctx: Rc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        ctx.ledger.borrow_mut().sample_timeline();
    }
}

async fn sample_memory(
    pid: u32,
    addr: SocketAddr,
    every: Duration,
    started: Instant,
    out: Rc<RefCell<Vec<MemorySample>>>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(s) = procstat::sample(pid) else {
            return;
        };
        let t = started.elapsed().as_secs_f64();
        let (conns, subs) = match http::get_json(addr, "/api/stats").await {
            Ok(v) => (
                v["totals"]["connections"].as_u64().unwrap_or(0),
                v["totals"]["subscribers"].as_u64().unwrap_or(0),
            ),
            Err(_) => (0, 0),
        };
        let queued = match http::get_text(addr, "/metrics").await {
            Ok(m) => http::metric(&m, "pubsub_queued_events").unwrap_or(0.0) as u64,
            Err(_) => 0,
        };
        out.borrow_mut().push((t, s.rss_bytes, conns, subs, queued));
    }
}

fn memory_figures(samples: &[MemorySample], warmup: Duration) -> Memory {
    let warmup = warmup.as_secs_f64();
    let rss = |i: usize| samples.get(i).map(|s| s.1).unwrap_or(0);
    let after = samples
        .iter()
        .find(|s| s.0 >= warmup)
        .or(samples.last())
        .map(|s| s.1)
        .unwrap_or(0);
    let end = rss(samples.len().saturating_sub(1));
    Memory {
        samples: samples.to_vec(),
        warmup_secs: warmup,
        start: rss(0),
        after_warmup: after,
        end,
        max: samples.iter().map(|s| s.1).max().unwrap_or(0),
        drift: end as i64 - after as i64,
        after_settle: 0,
    }
}

/// Waits until no connection, subscription or queued event is left, then
/// compares the server's per-topic counters with the clients' books.
async fn settle_and_check(addr: SocketAddr, ctx: &Ctx) -> Invariant {
    let started = Instant::now();
    let mut inv = Invariant {
        // A publish can reach a subscription the client has let go until
        // the server notices the FIN or RST (every way of letting go ends
        // in one): milliseconds, seconds on a loaded machine.
        grace_secs: 2.0,
        ..Invariant::default()
    };
    let mut stats = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(20) {
        match (
            http::get_json(addr, "/api/stats").await,
            http::get_text(addr, "/metrics").await,
        ) {
            (Ok(s), Ok(m)) => {
                inv.connections = s["totals"]["connections"].as_u64().unwrap_or(u64::MAX);
                inv.subscribers = s["totals"]["subscribers"].as_u64().unwrap_or(u64::MAX);
                inv.queued_events = http::metric(&m, "pubsub_queued_events");
                stats = s;
                if inv.connections == 0 && inv.subscribers == 0 && inv.queued_events == Some(0.0) {
                    inv.settled = true;
                    break;
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                ctx.ledger.borrow_mut().errors.http(e.key(), e.to_string())
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    inv.settle_secs = started.elapsed().as_secs_f64();
    let ledger = ctx.ledger.borrow();
    inv.published_total = stats["totals"]["published"].as_u64().unwrap_or(0);
    let mut notes = Vec::new();
    if !inv.settled {
        notes.push(format!(
            "not settled after {:.0} s: {} connections, {} subscriptions, {:?} queued",
            inv.settle_secs, inv.connections, inv.subscribers, inv.queued_events
        ));
    }
    for t in &ledger.topics {
        let s = &stats["topics"][&t.name];
        let messages = s["messages"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(t.base.seq);
        let delivered = s["delivered"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(t.base.delivered);
        let dropped = s["dropped"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(t.base.dropped);
        let upper = t.upper(inv.grace_secs);
        let settled = delivered + dropped;
        let ok = messages == t.acked
            && t.acked_seq - t.base.seq == t.acked
            && t.lower <= settled
            && settled <= upper
            && delivered >= t.live;
        if !ok {
            notes.push(format!(
                "{}: messages {messages} (acked {}), delivered + dropped {settled} not within [{}, {upper}] \
                 or below the {} events read",
                t.name, t.acked, t.lower, t.live
            ));
        }
        inv.topics.push(TopicCheck {
            name: t.name.clone(),
            messages,
            acked: t.acked,
            delivered,
            dropped,
            received: t.live,
            lower: t.lower,
            upper,
            ok,
        });
    }
    inv.ended_subscriptions = ledger.topics.iter().map(|t| t.ended.len() as u64).sum();
    let excess: u64 = inv
        .topics
        .iter()
        .map(|t| (t.delivered + t.dropped).saturating_sub(t.lower))
        .sum();
    inv.excess_per_ended = excess as f64 / inv.ended_subscriptions.max(1) as f64;
    inv.ok = inv.settled && notes.is_empty() && !inv.topics.is_empty();
    inv.note = notes.join("; ");
    inv
}

/// The server's command line as results record it: paths relative to the
/// working directory, so committed results name no machine's folders.
fn shown_command(command: &[String]) -> String {
    let here = std::env::current_dir().unwrap_or_default();
    command
        .iter()
        .map(|arg| {
            std::path::Path::new(arg)
                .strip_prefix(&here)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| arg.clone())
        })
        .collect::<Vec<_>>()
        .join(" ")
}
