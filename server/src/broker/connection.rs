//! One client connection as the broker sees it: an outbound queue and the
//! set of topics it is subscribed to, so that closing it removes them all.

use super::outbox::{Outbox, SlowConsumerPolicy};
use super::topic::Topic;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Connection {
    pub id: u64,
    pub outbox: Outbox,
    /// Lock order: a topic's lock, then this one; never the reverse.
    pub(super) subscriptions: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
    pub(super) disconnected: AtomicBool,
}

impl Connection {
    pub(super) fn new(id: u64, queue: usize, policy: SlowConsumerPolicy) -> Self {
        Connection {
            id,
            outbox: Outbox::new(queue, policy),
            subscriptions: Mutex::new(HashMap::new()),
            disconnected: AtomicBool::new(false),
        }
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
