//! The throughput scenarios against any target (pubsub, nats, redis, the
//! floor): [`fanout`] (the highest rate delivered without loss), [`latency`]
//! (at a fixed rate) and [`idle`] (many idle subscribers, one broadcast);
//! what they share is here: topic names, connecting subscribers from
//! several source addresses, the publisher and its pacing.

pub mod fanout;
pub mod idle;
pub mod latency;

use crate::proto::{self, Conn, Target};
use crate::{procstat, Common, FanoutArgs, IdleArgs, LatencyArgs};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

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
    /// The server's resident memory at the end of the step (fan-out: the
    /// memory held under load, against the fan-out's `rss_before_bytes`).
    server_rss_bytes: Option<u64>,
    /// pubsub: the bytes its topics' id windows hold (idempotent publish
    /// remembers every published id, the server's own included, up to
    /// `dedup_ids` per topic), from its `pubsub_dedup_bytes` gauge at the
    /// end of the step. Per-topic memory, not per-connection: the report
    /// shows memory per connection with and without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_dedup_bytes: Option<u64>,
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
    let server_after = c.server_pid.and_then(procstat::sample);
    let server_dedup_bytes = dedup_bytes(c).await;
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
        server_cpu: share(server_before, server_after),
        generator_cpu: share(me_before, procstat::sample(std::process::id())),
        server_rss_bytes: server_after.map(|s| s.rss_bytes),
        server_dedup_bytes,
        clean: received >= expected && t.errors == 0,
    })
}

/// pubsub's `pubsub_dedup_bytes` gauge (None for the other brokers, or if
/// the metrics do not answer).
async fn dedup_bytes(c: &Common) -> Option<u64> {
    if c.target != Target::Pubsub {
        return None;
    }
    let metrics = crate::http::get_text(c.http.unwrap_or(c.addr), "/metrics")
        .await
        .ok()?;
    crate::http::metric(&metrics, "pubsub_dedup_bytes").map(|b| b as u64)
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}
