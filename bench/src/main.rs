//! pubsub-bench: drives one workload against one broker and prints the
//! result as one JSON object; `scripts/bench.sh` runs every scenario against
//! every broker (each pinned to the same core) and writes BENCHMARKS.md.
//!
//! The generator is single-threaded (one tokio thread, to be pinned to its
//! own core) and reads with raw sockets, scanning each message only for its
//! send time, so that it measures the broker and not itself; its own CPU
//! use is printed beside every figure.
//!
//! This file is the command line; the throughput scenarios (fan-out,
//! latency, idle) live in [`throughput`], the soak, the attack suite and the
//! chaos soak in their own modules, `report` writes BENCHMARKS.md.

mod attack;
mod chaos;
mod corebench;
mod floor;
mod http;
mod procstat;
mod proto;
mod report;
mod soak;
mod throughput;
mod ws;

use clap::{Args, Parser, Subcommand};
use proto::Target;
use serde::Serialize;
use std::net::SocketAddr;

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
        /// Results files of several full runs (e.g. bench/results/runs/*.jsonl):
        /// the targets table adds each figure's min / median / max over
        /// those with every scenario, and how many met the goal.
        #[arg(long, num_args = 1..)]
        spread: Vec<std::path::PathBuf>,
    },
    /// Prints the core microbenchmark's result lines (JSON): each criterion
    /// median of a group, and the allocation counts from the bench's output.
    CoreResults {
        /// The criterion group's folder.
        #[arg(long, default_value = "target/criterion/fanout")]
        criterion: std::path::PathBuf,
        /// The bench binary's output (for its allocation counts).
        #[arg(long)]
        log: Option<std::path::PathBuf>,
        /// Only benches measured since this file was last modified.
        #[arg(long)]
        since: Option<std::path::PathBuf>,
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
            Command::Fanout(a) => print(&throughput::fanout::run(a).await?),
            Command::Latency(a) => print(&throughput::latency::run(a).await?),
            Command::Idle(a) => print(&throughput::idle::run(a).await?),
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
                spread,
            } => report::write(&results, &out, &chart, &command, soak.as_deref(), &spread)?,
            Command::CoreResults {
                criterion,
                log,
                since,
            } => {
                let since = since.and_then(|f| std::fs::metadata(f).ok()?.modified().ok());
                for line in corebench::medians(&criterion, since) {
                    print(&line);
                }
                let log = log.and_then(|l| std::fs::read_to_string(l).ok());
                if let Some(line) = log.as_deref().and_then(corebench::allocations) {
                    print(&line);
                }
            }
        }
        Ok(())
    })
}

fn print<T: Serialize>(result: &T) {
    println!("{}", serde_json::to_string(result).unwrap_or_default());
}

pub use throughput::source_ip;
