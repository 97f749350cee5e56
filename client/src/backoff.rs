//! How long to wait before the next attempt: exponential, capped, with
//! jitter, and back to the start after a success. Shared by reconnecting
//! subscriptions and retried publishes.

use std::time::Duration;

/// The delays between attempts (see [`crate::Client::with_retry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay; each failed attempt doubles it up to `max_delay`.
    pub initial_delay: Duration,
    /// The cap of the delay.
    pub max_delay: Duration,
    /// A publish gives up (and returns the last error) once the next attempt
    /// would start later than this after the first. Keep it well under the
    /// server's `dedup_window` (default 120 s): a retry is only safe while
    /// the server still remembers the id.
    pub publish_deadline: Duration,
    /// One publish attempt that has not been answered after this is treated
    /// as a transport failure (and retried under the same id).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            publish_deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// The delays of one series of attempts.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        let initial = policy.initial_delay.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: policy.max_delay.max(initial),
            next: initial,
        }
    }

    /// The delay before the next attempt: a random point in the upper half
    /// of the current step, so that clients cut off together (a server
    /// restart) do not come back together.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(unit_random())
    }

    /// After a success: the next failure starts again from the first delay.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A number in `[0, 1)`, good enough for jitter: std's `RandomState` is
/// seeded randomly per process and per instance, so no extra crate is
/// needed for this.
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_and_reset() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            ..RetryPolicy::default()
        };
        let mut b = Backoff::new(&policy);
        let steps: Vec<u64> = [100, 200, 400, 800, 800, 800].to_vec();
        for step in steps {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                (step / 2..=step).contains(&d),
                "{d} ms within the upper half of {step} ms"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
