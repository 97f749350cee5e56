//! The broker core without I/O: one publish fanned out to N subscriber
//! queues, and the queues drained as their writers would. Reports
//! deliveries per second (criterion's throughput) and allocations per
//! publish (a counting allocator). "with 10,000 idle patterns" is the same
//! fan-out to 1,000 subscribers beside 10,000 pattern subscriptions that
//! match nothing: patterns are matched when a topic is created, so it
//! should cost what the plain case costs.
//!
//! `cargo bench -p pubsub-server --bench core`

use criterion::{criterion_group, Criterion, Throughput};
use protocol::PublishMessage;
use pubsub_server::broker::{
    Broker, BrokerConfig, Connection, DrainBuf, Joining, Permits, Replay, Transport,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn setup(subscribers: usize) -> (Broker, Vec<Arc<Connection>>) {
    setup_with_patterns(subscribers, 0)
}

/// `subscribers` on the topic `bench`, and `patterns` subscriptions to
/// patterns that match nothing, spread over 100 other connections.
fn setup_with_patterns(subscribers: usize, patterns: usize) -> (Broker, Vec<Arc<Connection>>) {
    setup_with(subscribers, patterns, BrokerConfig::default())
}

fn setup_with(
    subscribers: usize,
    patterns: usize,
    config: BrokerConfig,
) -> (Broker, Vec<Arc<Connection>>) {
    setup_full(subscribers, patterns, false, config)
}

/// With `presence`, every subscriber names itself (`client_id`): the
/// topic's presence lists all of them.
fn setup_full(
    subscribers: usize,
    patterns: usize,
    presence: bool,
    config: BrokerConfig,
) -> (Broker, Vec<Arc<Connection>>) {
    let broker = Broker::new(BrokerConfig {
        subscriber_queue: 4096,
        max_subscriptions: patterns.max(1),
        ..config
    });
    let idle: Vec<_> = (0..100.min(patterns)).map(|_| broker.connect()).collect();
    for i in 0..patterns {
        let pattern = format!("other{}.*", i % 1000);
        let c = &idle[i % idle.len()];
        let pattern = format!("{pattern}.p{}", i / 1000);
        now(broker.subscribe(c, &pattern, Replay::default(), None)).unwrap();
    }
    now(broker.create_topic("bench")).unwrap();
    let conns: Vec<_> = (0..subscribers)
        .map(|i| {
            let c = broker.connect();
            let client_id = format!("client-{i}");
            let joining = Joining {
                client_id: presence.then_some(client_id.as_str()),
                presence_events: false,
            };
            now(broker.subscribe_as(&c, "bench", Replay::default(), joining, None)).unwrap();
            c
        })
        .collect();
    drain(&conns);
    (broker, conns)
}

/// Messages with ids of their own: a reused id would be a retry
/// (idempotent publish), answered without publishing.
struct Messages {
    payload: serde_json::Value,
    n: u64,
}

impl Messages {
    fn new() -> Self {
        Messages {
            payload: serde_json::json!({"t": 1234567890, "p": "x".repeat(100)}),
            n: 0,
        }
    }

    fn next(&mut self) -> PublishMessage {
        self.n += 1;
        PublishMessage {
            id: Some(format!("m-{}", self.n)),
            payload: self.payload.clone(),
        }
    }
}

/// Takes everything queued, as the writers would (without the socket).
fn drain(conns: &[Arc<Connection>]) -> usize {
    let mut buf = DrainBuf::default();
    let mut n = 0;
    for c in conns {
        let batch = c.outbox.drain(&mut buf, 256);
        n += batch.frames().len();
        let _ = batch.delivered();
    }
    n
}

fn fanout(c: &mut Criterion) {
    for subscribers in [1_000usize, 10_000] {
        let (broker, conns) = setup(subscribers);
        let mut msg = Messages::new();
        let mut group = c.benchmark_group("fanout");
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(format!("publish+drain to {subscribers}"), |b| {
            b.iter(|| {
                now(broker.publish("bench", msg.next())).unwrap();
                drain(&conns)
            })
        });
        // Batched like a busy server: 32 publishes, then one drain round.
        group.throughput(Throughput::Elements(32 * subscribers as u64));
        group.bench_function(format!("32 publishes, one drain, {subscribers}"), |b| {
            b.iter(|| {
                for _ in 0..32 {
                    now(broker.publish("bench", msg.next())).unwrap();
                }
                drain(&conns)
            })
        });
        group.finish();
    }
    let (broker, conns) = setup_with_patterns(1_000, 10_000);
    let mut msg = Messages::new();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("publish+drain to 1000 with 10,000 idle patterns", |b| {
        b.iter(|| {
            now(broker.publish("bench", msg.next())).unwrap();
            drain(&conns)
        })
    });
    let (broker, conns) = setup_full(1_000, 0, true, BrokerConfig::default());
    group.bench_function("publish+drain to 1000 with presence", |b| {
        b.iter(|| {
            now(broker.publish("bench", msg.next())).unwrap();
            drain(&conns)
        })
    });
    // SSE streams are the hub's connections too (another writer drains
    // the same outbox): here half the subscribers are.
    let broker = Broker::new(BrokerConfig {
        subscriber_queue: 4096,
        ..BrokerConfig::default()
    });
    now(broker.create_topic("bench")).unwrap();
    let conns: Vec<_> = (0..1_000)
        .map(|i| {
            let c = if i % 2 == 0 {
                broker.connect()
            } else {
                broker.connect_via(Transport::Sse, Permits::ALL, None)
            };
            now(broker.subscribe(&c, "bench", Replay::default(), None)).unwrap();
            c
        })
        .collect();
    drain(&conns);
    group.bench_function("publish+drain to 1000, half of them SSE streams", |b| {
        b.iter(|| {
            now(broker.publish("bench", msg.next())).unwrap();
            drain(&conns)
        })
    });
    group.finish();

    // What remembering ids costs a publish (--dedup-window, default 120 s,
    // against 0), where it weighs most: one subscriber. The window holds
    // up to the default 100,000 ids, as a busy topic's would.
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Elements(1));
    for (name, window) in [
        ("on (120 s)", std::time::Duration::from_secs(120)),
        ("off", std::time::Duration::ZERO),
    ] {
        let config = BrokerConfig {
            dedup_window: window,
            ..BrokerConfig::default()
        };
        let (broker, conns) = setup_with(1, 0, config);
        let mut msg = Messages::new();
        group.bench_function(format!("publish+drain to 1, dedup {name}"), |b| {
            b.iter(|| {
                now(broker.publish("bench", msg.next())).unwrap();
                drain(&conns)
            })
        });
    }
    group.finish();
}

fn allocations() {
    let (broker, conns) = setup(1000);
    let mut msg = Messages::new();
    let publishes = 1000;
    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..publishes {
        now(broker.publish("bench", msg.next())).unwrap();
    }
    let publish_allocs = ALLOCATIONS.load(Relaxed) - before;
    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..publishes {
        now(broker.publish("bench", msg.next())).unwrap();
        drain(&conns);
    }
    let with_drain = ALLOCATIONS.load(Relaxed) - before;
    println!(
        "allocations per publish to 1000 subscribers: {:.1} (publish only, queues filling), {:.1} (publish and drain)",
        publish_allocs as f64 / publishes as f64,
        with_drain as f64 / publishes as f64
    );
}

criterion_group!(benches, fanout);

fn main() {
    allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

/// The output of a broker call, which in memory is ready at its first poll.
fn now<F: std::future::Future>(future: F) -> F::Output {
    futures_util::FutureExt::now_or_never(future).expect("in memory, the broker answers at once")
}
