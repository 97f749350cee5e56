//! Counters: per topic and for the whole server.
//!
//! The contract's invariant, per topic and at any moment:
//! `enqueued` (the sum over its messages of the subscribers at publish time)
//! = `delivered` + `dropped` + events still queued. Every place that moves an
//! event out of a queue settles it here exactly once, as delivered or dropped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Upper bounds of the delivery-latency histogram's buckets, in seconds
/// (the last, implicit bucket is +Inf).
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Publish-to-write latency of delivered events, as a cumulative-ready
/// histogram (per-bucket counts; the exposition sums them).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// `buckets[i]` counts latencies in `(bounds[i-1], bounds[i]]`; the last
    /// one counts those above every bound.
    pub buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    pub sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Latencies counted: the sum of the buckets (not a counter of its own,
    /// one atomic add less per written batch).
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
}

fn bucket_of(seconds: f64) -> usize {
    LATENCY_BOUNDS
        .iter()
        .position(|b| seconds <= *b)
        .unwrap_or(LATENCY_BOUNDS.len())
}

/// Server-wide counters and gauges.
#[derive(Debug, Default)]
pub struct Totals {
    pub published: AtomicU64,
    /// Publishes answered as duplicates of a message published within
    /// `dedup_window` (not published again).
    pub duplicates: AtomicU64,
    /// Bytes allocated for the message ids remembered for idempotent
    /// publish, over all topics (a gauge, held within `max_dedup_bytes`).
    pub dedup_bytes: AtomicU64,
    /// Live events put into connection queues (the sum of fan-outs).
    pub enqueued: AtomicU64,
    /// `SLOW_CONSUMER` signals: notices sent and connections closed.
    pub slow_consumer_events: AtomicU64,
    pub delivery_latency: LatencyHistogram,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    /// Open WebSocket connections (a gauge).
    pub connections: AtomicU64,
    /// Subscriptions over all topics and connections (a gauge).
    pub subscriptions: AtomicU64,
    /// Bytes of history retained over all topics (a gauge).
    pub history_bytes: AtomicU64,
    /// Messages evicted from history to keep `max_history_bytes`.
    pub history_evicted: AtomicU64,
    /// Requests and connections refused by a limit, per limit.
    pub refused: [AtomicU64; Limit::ALL.len()],
}

/// A limit that refuses requests or connections, counted in
/// `pubsub_refused_total{limit}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MaxConnections,
    MaxHttpConnections,
    MaxTopics,
    MaxSubscriptions,
    PublishRate,
    HostNotAllowed,
    OriginNotAllowed,
}

impl Limit {
    pub const ALL: [Limit; 7] = [
        Limit::MaxConnections,
        Limit::MaxHttpConnections,
        Limit::MaxTopics,
        Limit::MaxSubscriptions,
        Limit::PublishRate,
        Limit::HostNotAllowed,
        Limit::OriginNotAllowed,
    ];

    /// The label value: the knob's name, or what was refused.
    pub fn label(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::MaxHttpConnections => "max_http_connections",
            Limit::MaxTopics => "max_topics",
            Limit::MaxSubscriptions => "max_subscriptions",
            Limit::PublishRate => "publish_rate",
            Limit::HostNotAllowed => "host",
            Limit::OriginNotAllowed => "origin",
        }
    }
}

impl Totals {
    /// Counts one refusal by `limit`.
    pub fn refuse(&self, limit: Limit) {
        self.refused[limit as usize].fetch_add(1, Relaxed);
    }

    pub fn refused(&self, limit: Limit) -> u64 {
        self.refused[limit as usize].load(Relaxed)
    }
}

/// The counters of one topic. Events point at it, so the connection that
/// writes or drops an event can settle it without looking the topic up.
#[derive(Debug)]
pub struct TopicTally {
    pub name: Arc<str>,
    /// Messages published (the topic's `seq`, readable without its lock).
    pub published: AtomicU64,
    /// Live events put into subscriber queues (replays excluded).
    pub enqueued: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    totals: Arc<Totals>,
}

impl TopicTally {
    pub fn new(name: Arc<str>, totals: Arc<Totals>) -> Self {
        TopicTally {
            name,
            published: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            totals,
        }
    }

    pub fn count_slow_consumer_event(&self) {
        self.totals.slow_consumer_events.fetch_add(1, Relaxed);
    }

    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
        self.totals.dropped.fetch_add(n, Relaxed);
    }
}

/// Live events taken out of one queue and not yet counted, grouped in runs
/// of the same topic so that a batch costs one atomic add per run, not one
/// per event; with their latencies, binned as they are taken.
///
/// Latency runs from publish to the moment the writer takes the event, just
/// before its write: one clock read per batch, and no publish instant kept
/// per event (a busy connection held 16 bytes per event of its batch for
/// them). A write that then waits for a full socket is not in it.
#[derive(Default)]
pub struct Settlement {
    runs: Vec<(Arc<TopicTally>, u64)>,
    /// When the batch was taken (read at its first live event).
    taken_at: Option<Instant>,
    counts: [u64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: u64,
}

impl Settlement {
    /// Whether live events are waiting to be settled.
    pub fn has_live(&self) -> bool {
        !self.runs.is_empty()
    }

    pub fn add(&mut self, tally: &Arc<TopicTally>, published_at: Instant) {
        match self.runs.last_mut() {
            Some((last, n)) if Arc::ptr_eq(last, tally) => *n += 1,
            _ => self.runs.push((Arc::clone(tally), 1)),
        }
        let now = *self.taken_at.get_or_insert_with(Instant::now);
        let latency = now.saturating_duration_since(published_at);
        self.counts[bucket_of(latency.as_secs_f64())] += 1;
        self.sum_nanos = self
            .sum_nanos
            .saturating_add(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Each run of live events waiting: its topic and how many.
    pub fn runs(&self, mut each: impl FnMut(&Arc<TopicTally>, u64)) {
        for (tally, n) in &self.runs {
            each(tally, *n);
        }
    }

    /// The events reached the connection now. Costs a few atomic adds per
    /// batch (one per topic, the total, the latency histogram), whatever
    /// its size.
    pub fn delivered(&mut self) {
        let Some((first, _)) = self.runs.first() else {
            return;
        };
        let totals: &Totals = &first.totals;
        let mut delivered = 0;
        for (tally, n) in &self.runs {
            tally.delivered.fetch_add(*n, Relaxed);
            delivered += n;
        }
        totals.delivered.fetch_add(delivered, Relaxed);
        let h = &totals.delivery_latency;
        for (bucket, n) in h.buckets.iter().zip(self.counts) {
            if n > 0 {
                bucket.fetch_add(n, Relaxed);
            }
        }
        h.sum_nanos.fetch_add(self.sum_nanos, Relaxed);
        self.runs.clear();
        self.reset_latency();
    }

    /// The events were lost (the connection failed while writing them).
    pub fn dropped(&mut self) {
        self.reset_latency();
        for (tally, n) in self.runs.drain(..) {
            tally.add_dropped(n);
        }
    }

    fn reset_latency(&mut self) {
        self.taken_at = None;
        self.counts = [0; LATENCY_BOUNDS.len() + 1];
        self.sum_nanos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.0001), 0);
        assert_eq!(bucket_of(0.0002), 1);
        assert_eq!(bucket_of(3.0), LATENCY_BOUNDS.len());
    }

    #[test]
    fn settling_counts_runs_and_latencies() {
        let totals = Arc::new(Totals::default());
        let a = Arc::new(TopicTally::new("a".into(), Arc::clone(&totals)));
        let b = Arc::new(TopicTally::new("b".into(), Arc::clone(&totals)));
        let mut s = Settlement::default();
        let at = Instant::now();
        for t in [&a, &a, &b, &a] {
            s.add(t, at);
        }
        s.delivered();
        assert_eq!(
            (a.delivered.load(Relaxed), b.delivered.load(Relaxed)),
            (3, 1)
        );
        assert_eq!(totals.delivered.load(Relaxed), 4);
        assert_eq!(totals.delivery_latency.count(), 4);
        s.add(&b, at);
        s.dropped();
        assert_eq!(
            (b.dropped.load(Relaxed), totals.delivery_latency.count()),
            (1, 4)
        );
        assert!(s.is_empty());
    }
}
