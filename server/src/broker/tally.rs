//! Counters: per topic and for the whole server.
//!
//! The contract's invariant, per topic and at any moment:
//! `enqueued` (the sum over its messages of the subscribers at publish time)
//! = `delivered` + `dropped` + events still queued. Every place that moves an
//! event out of a queue settles it here exactly once, as delivered or dropped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Server-wide counters and gauges.
#[derive(Debug, Default)]
pub struct Totals {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    /// Open WebSocket connections (a gauge).
    pub connections: AtomicU64,
    /// Subscriptions over all topics and connections (a gauge).
    pub subscriptions: AtomicU64,
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

    pub fn add_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Relaxed);
        self.totals.delivered.fetch_add(n, Relaxed);
    }

    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
        self.totals.dropped.fetch_add(n, Relaxed);
    }
}

/// Live events taken out of one queue and not yet counted, grouped in runs
/// of the same topic so that a batch costs one atomic add per run, not one
/// per event.
#[derive(Default)]
pub struct Settlement {
    runs: Vec<(Arc<TopicTally>, u64)>,
}

impl Settlement {
    pub fn add(&mut self, tally: &Arc<TopicTally>) {
        match self.runs.last_mut() {
            Some((last, n)) if Arc::ptr_eq(last, tally) => *n += 1,
            _ => self.runs.push((Arc::clone(tally), 1)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The events reached the connection.
    pub fn delivered(&mut self) {
        for (tally, n) in self.runs.drain(..) {
            tally.add_delivered(n);
        }
    }

    /// The events were lost (the connection failed while writing them).
    pub fn dropped(&mut self) {
        for (tally, n) in self.runs.drain(..) {
            tally.add_dropped(n);
        }
    }
}
