//! The connections board: one connection as an admin sees it (its
//! subscriptions with their lag, its queue against its bounds, what it was
//! sent), read from
//! the connection's own records without touching any topic's lock.

use super::connection::Connection;
use super::Hub;
use protocol::{ConnectionInfo, SubscriptionInfo};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;

impl Hub {
    /// How `conn` stands now.
    pub(crate) fn describe(&self, conn: &Connection) -> ConnectionInfo {
        let subs = conn.subscriptions.lock();
        let stats = conn.outbox.stats();
        // (lag, delivered, dropped) of one followed topic.
        let standing = |follow: &super::connection::Follow| {
            let seq = follow.topic.tally.published.load(Relaxed);
            match stats.of(&follow.topic.tally) {
                Some(t) => (seq.saturating_sub(t.written), t.delivered, t.dropped),
                None => (0, 0, 0),
            }
        };
        let mut subscriptions: Vec<SubscriptionInfo> = subs
            .follows
            .values()
            .filter(|f| f.exact)
            .map(|f| {
                let (lag, delivered, dropped) = standing(f);
                SubscriptionInfo {
                    topic: f.topic.name.to_string(),
                    pattern: false,
                    lag,
                    delivered,
                    dropped,
                }
            })
            .collect();
        for text in subs.patterns.keys() {
            let mut sum = SubscriptionInfo {
                topic: text.to_string(),
                pattern: true,
                lag: 0,
                delivered: 0,
                dropped: 0,
            };
            for follow in subs.follows.values().filter(|f| f.patterns.contains(text)) {
                let (lag, delivered, dropped) = standing(follow);
                sum.lag += lag;
                sum.delivered += delivered;
                sum.dropped += dropped;
            }
            subscriptions.push(sum);
        }
        subscriptions.sort_by(|a, b| a.topic.cmp(&b.topic));
        let client_ids: BTreeSet<String> = subs
            .follows
            .values()
            .filter_map(|f| f.client_id.as_deref().map(str::to_owned))
            .collect();
        let (delivered, dropped) = (stats.delivered, stats.dropped);
        drop(stats);
        drop(subs);
        let (queued, queued_bytes) = conn.outbox.depth();
        let bounds = conn.outbox.bounds();
        ConnectionInfo {
            id: conn.id,
            node: None,
            remote_addr: conn.remote.map(|a| a.to_string()),
            connected_at: crate::broker::clock::rfc3339_of_millis(conn.connected_at),
            transport: conn.transport.as_str().into(),
            client_ids: client_ids.into_iter().collect(),
            subscriptions,
            queued: queued as u64,
            queued_bytes: queued_bytes as u64,
            queue_limit: bounds.events as u64,
            queue_bytes_limit: bounds.bytes as u64,
            delivered,
            dropped,
        }
    }
}
