//! One client connection as the broker sees it: an outbound queue, the set
//! of topics it is subscribed to (so that closing it removes them all), what
//! it may do and how fast it may publish.

use super::outbox::{Bounds, Outbox, SlowConsumerPolicy};
use super::topic::Topic;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What a connection may do (from its API key's roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permits {
    pub publish: bool,
    pub subscribe: bool,
}

impl Permits {
    pub const ALL: Permits = Permits {
        publish: true,
        subscribe: true,
    };
}

/// A publish rate: `per_sec` tokens a second (0: unlimited), at most
/// `burst` saved up.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

/// A token bucket, refilled from the clock when a token is asked for.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: Rate) -> Option<Bucket> {
        (rate.per_sec > 0).then(|| {
            let burst = f64::from(rate.burst.max(1));
            Bucket {
                rate: f64::from(rate.per_sec),
                burst,
                tokens: burst,
                at: Instant::now(),
            }
        })
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct Connection {
    pub id: u64,
    pub outbox: Outbox,
    /// Lock order: a topic's lock, then this one; never the reverse.
    pub(super) subscriptions: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
    pub(super) disconnected: AtomicBool,
    pub permits: Permits,
    /// Only the connection's reader publishes, so this lock is uncontended.
    publish_bucket: Option<Mutex<Bucket>>,
}

impl Connection {
    pub(super) fn new(
        id: u64,
        queue: Bounds,
        policy: SlowConsumerPolicy,
        permits: Permits,
        rate: Rate,
    ) -> Self {
        Connection {
            id,
            outbox: Outbox::new(queue, policy),
            subscriptions: Mutex::new(HashMap::new()),
            disconnected: AtomicBool::new(false),
            permits,
            publish_bucket: Bucket::new(rate).map(Mutex::new),
        }
    }

    /// Whether the publish rate allows one more publish now.
    pub(crate) fn take_publish_token(&self) -> bool {
        self.publish_bucket
            .as_ref()
            .is_none_or(|b| b.lock().take(Instant::now()))
    }

    /// Names of the topics this connection is subscribed to, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .subscriptions
            .lock()
            .keys()
            .map(|k| k.to_string())
            .collect();
        names.sort();
        names
    }

    /// Drops the subscription entry for `topic`, unless the name now stands
    /// for a newer topic of the same name.
    pub(super) fn forget(&self, topic: &Arc<Topic>) {
        let mut subs = self.subscriptions.lock();
        if subs.get(&topic.name).is_some_and(|t| Arc::ptr_eq(t, topic)) {
            subs.remove(&topic.name);
        }
    }

    pub fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(Rate {
            per_sec: 10,
            burst: 3,
        })
        .unwrap();
        let t0 = b.at;
        assert!((0..3).all(|_| b.take(t0)), "the burst");
        assert!(!b.take(t0), "empty");
        assert!(!b.take(t0 + Duration::from_millis(50)), "half a token");
        assert!(
            b.take(t0 + Duration::from_millis(100)),
            "one token after 1/rate"
        );
        // Idle for long: refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
        assert!(
            Bucket::new(Rate {
                per_sec: 0,
                burst: 5
            })
            .is_none(),
            "0 = unlimited"
        );
    }
}
