//! One client connection as the broker sees it: an outbound queue, what it
//! subscribed to and the topics that follows (so that closing it removes
//! them all), what it may do and how fast it may publish.

use super::outbox::{Bounds, Outbox, SlowConsumerPolicy};
use super::topic::Topic;
use parking_lot::Mutex;
use protocol::pattern::Pattern;
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

/// How a connection reaches the server, as the connections board names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/ws`: requests and replies both ways.
    WebSocket,
    /// Server-Sent Events (`/api/topics/{name}/events`, `/api/events`):
    /// subscriptions fixed by the request, events one way.
    Sse,
}

impl Transport {
    /// The board's `transport` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }
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
    /// When it connected (unix milliseconds), and from where, for the board.
    pub connected_at: i64,
    pub remote: Option<std::net::SocketAddr>,
    pub transport: Transport,
    pub outbox: Outbox,
    /// Lock order: a topic's lock, then this one; never the reverse.
    pub(super) subscriptions: Mutex<Subscriptions>,
    pub(super) disconnected: AtomicBool,
    pub permits: Permits,
    /// Only the connection's reader publishes, so this lock is uncontended.
    publish_bucket: Option<Mutex<Bucket>>,
    /// A WebSocket over TCP: its socket, which the flusher writes to for a
    /// parked writer (see `ws::flusher`). Set once, before it subscribes.
    direct: std::sync::OnceLock<Arc<tokio::net::TcpStream>>,
}

impl Connection {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: u64,
        remote: Option<std::net::SocketAddr>,
        transport: Transport,
        queue: Bounds,
        policy: SlowConsumerPolicy,
        permits: Permits,
        rate: Rate,
    ) -> Self {
        Connection {
            id,
            connected_at: crate::broker::clock::now_millis(),
            remote,
            transport,
            outbox: Outbox::new(queue, policy),
            subscriptions: Mutex::default(),
            disconnected: AtomicBool::new(false),
            permits,
            publish_bucket: Bucket::new(rate).map(Mutex::new),
            direct: std::sync::OnceLock::new(),
        }
    }

    /// Lets the flusher write to `socket` for this connection's writer
    /// while it is parked (a publish then wakes no task: see
    /// [`super::outbox::Wake::Claimed`]).
    pub fn set_direct(&self, socket: Arc<tokio::net::TcpStream>) {
        let _ = self.direct.set(socket);
    }

    /// The socket the flusher writes to, if it may.
    pub fn direct(&self) -> Option<&Arc<tokio::net::TcpStream>> {
        self.direct.get()
    }

    /// Whether the publish rate allows one more publish now.
    pub(crate) fn take_publish_token(&self) -> bool {
        self.publish_bucket
            .as_ref()
            .is_none_or(|b| b.lock().take(Instant::now()))
    }

    /// Names of the topics this connection follows (by name or through a
    /// pattern), sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .subscriptions
            .lock()
            .follows
            .keys()
            .map(|k| k.to_string())
            .collect();
        names.sort();
        names
    }

    /// What the connection subscribed to: the names it subscribed to
    /// exactly and its patterns, sorted.
    pub fn subscriptions(&self) -> Vec<String> {
        let subs = self.subscriptions.lock();
        let mut held: Vec<String> = subs
            .follows
            .iter()
            .filter(|(_, f)| f.exact)
            .map(|(name, _)| name.to_string())
            .chain(subs.patterns.keys().map(|p| p.to_string()))
            .collect();
        drop(subs);
        held.sort();
        held
    }

    /// Drops what follows `topic` (it was deleted), unless the name now
    /// stands for a newer topic of the same name. Pattern subscriptions
    /// stay.
    pub(super) fn forget(&self, topic: &Arc<Topic>) {
        let mut subs = self.subscriptions.lock();
        if subs
            .follows
            .get(&topic.name)
            .is_some_and(|f| Arc::ptr_eq(&f.topic, topic))
        {
            subs.unfollow(&topic.name);
        }
    }

    pub fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Acquire)
    }
}

/// What a connection subscribed to, and the topics that follows. A topic is
/// followed once however many subscriptions match it, so each event of it
/// reaches the connection once.
#[derive(Default)]
pub(crate) struct Subscriptions {
    /// The topics followed, by name.
    pub(super) follows: HashMap<Arc<str>, Follow>,
    /// The pattern subscriptions, by the text the client wrote.
    pub(super) patterns: HashMap<Arc<str>, Arc<Pattern>>,
    /// Follows with `exact` set: with `patterns`, what counts towards
    /// `max_subscriptions`.
    exact: usize,
}

/// Why a connection follows one topic.
pub(crate) struct Follow {
    pub(super) topic: Arc<Topic>,
    /// Subscribed by this exact name.
    pub(super) exact: bool,
    /// The `client_id` of the exact subscription.
    pub(super) client_id: Option<Arc<str>>,
    /// The connection's patterns that match it.
    pub(super) patterns: Vec<Arc<str>>,
}

impl Follow {
    /// Whether nothing makes the connection follow the topic any more.
    pub(super) fn is_idle(&self) -> bool {
        !self.exact && self.patterns.is_empty()
    }
}

impl Subscriptions {
    /// Subscriptions held: exact names and patterns.
    pub(super) fn count(&self) -> usize {
        self.exact + self.patterns.len()
    }

    /// Starts following `topic` (`exact`, or for `pattern`).
    pub(super) fn follow(&mut self, topic: &Arc<Topic>, exact: bool, pattern: Option<&Arc<str>>) {
        self.exact += usize::from(exact);
        self.follows.insert(
            Arc::clone(&topic.name),
            Follow {
                topic: Arc::clone(topic),
                exact,
                client_id: None,
                patterns: pattern.into_iter().cloned().collect(),
            },
        );
    }

    /// Marks a followed topic as subscribed by name too.
    pub(super) fn set_exact(&mut self, name: &str, exact: bool) {
        if let Some(follow) = self.follows.get_mut(name) {
            if follow.exact != exact {
                follow.exact = exact;
                if exact {
                    self.exact += 1;
                } else {
                    self.exact -= 1;
                }
            }
        }
    }

    /// Stops following `name`, whatever made it followed.
    pub(super) fn unfollow(&mut self, name: &str) -> Option<Follow> {
        let follow = self.follows.remove(name)?;
        self.exact -= usize::from(follow.exact);
        Some(follow)
    }

    /// Everything, as the connection closes.
    pub(super) fn take(&mut self) -> (Vec<Follow>, Vec<Arc<str>>) {
        self.exact = 0;
        let follows = self.follows.drain().map(|(_, f)| f).collect();
        let patterns = self.patterns.drain().map(|(text, _)| text).collect();
        (follows, patterns)
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
