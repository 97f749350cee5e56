//! The stats collector's memory: one sample of the counters per interval,
//! kept for the last few minutes, so the dashboard's charts are full the
//! moment it opens.

use super::Broker;
use parking_lot::Mutex;
use protocol::{StatsSample, TopicRate};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Topics listed per sample as the busiest.
const BUSIEST: usize = 10;

pub struct Sampler {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    samples: VecDeque<StatsSample>,
    /// Each topic's `published` at the previous sample.
    last_published: HashMap<Arc<str>, u64>,
}

impl Sampler {
    /// Keeps the last `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Sampler {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// Takes a sample of `broker` at unix time `t_ms`.
    pub fn sample(&self, broker: &Broker, t_ms: u64) {
        let totals = broker.totals();
        let per_topic = broker.published_per_topic();
        let mut st = self.state.lock();
        let mut busiest: Vec<TopicRate> = per_topic
            .iter()
            .filter_map(|(name, published)| {
                let before = st.last_published.get(name).copied().unwrap_or(0);
                let messages = published.saturating_sub(before);
                (messages > 0).then(|| TopicRate {
                    name: name.to_string(),
                    messages,
                })
            })
            .collect();
        busiest.sort_by(|a, b| {
            b.messages
                .cmp(&a.messages)
                .then_with(|| a.name.cmp(&b.name))
        });
        busiest.truncate(BUSIEST);
        // Deleted topics drop out of the map here.
        st.last_published = per_topic.into_iter().collect();
        let sample = StatsSample {
            t: t_ms,
            published: totals.published.load(Relaxed),
            delivered: totals.delivered.load(Relaxed),
            dropped: totals.dropped.load(Relaxed),
            connections: totals.connections.load(Relaxed),
            subscribers: totals.subscriptions.load(Relaxed),
            topics: broker.topic_count(),
            busiest,
        };
        if st.samples.len() == self.capacity {
            st.samples.pop_front();
        }
        st.samples.push_back(sample);
    }

    /// The newest `n` samples (all when `None`), oldest first.
    pub fn last(&self, n: Option<usize>) -> Vec<StatsSample> {
        let st = self.state.lock();
        let skip = n.map_or(0, |n| st.samples.len().saturating_sub(n));
        st.samples.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerConfig;
    use protocol::PublishMessage;

    async fn publish(b: &Broker, topic: &str, n: usize) {
        for _ in 0..n {
            let message = PublishMessage {
                id: None,
                payload: serde_json::json!(1),
            };
            b.publish(topic, message).await.unwrap();
        }
    }

    #[tokio::test]
    async fn samples_count_and_rank_topics_per_interval() {
        let b = Broker::new(BrokerConfig::default());
        let s = Sampler::new(3);
        b.create_topic("a").await.unwrap();
        b.create_topic("b").await.unwrap();
        publish(&b, "a", 2).await;
        publish(&b, "b", 5).await;
        s.sample(&b, 1000);
        publish(&b, "a", 4).await;
        s.sample(&b, 2000);
        s.sample(&b, 3000);
        s.sample(&b, 4000);

        let all = s.last(None);
        assert_eq!(
            all.iter().map(|x| x.t).collect::<Vec<_>>(),
            [2000, 3000, 4000],
            "the oldest fell out"
        );
        assert_eq!(all[0].published, 11);
        assert_eq!(all[0].topics, 2);
        assert_eq!(
            all[0].busiest,
            [TopicRate {
                name: "a".into(),
                messages: 4
            }]
        );
        assert!(
            all[1].busiest.is_empty(),
            "nothing published in that interval"
        );
        assert_eq!(s.last(Some(1)).len(), 1);
        assert_eq!(s.last(Some(10)).len(), 3);
    }

    #[tokio::test]
    async fn the_first_sample_ranks_by_everything_so_far() {
        let b = Broker::new(BrokerConfig::default());
        let s = Sampler::new(10);
        b.create_topic("a").await.unwrap();
        b.create_topic("b").await.unwrap();
        publish(&b, "a", 1).await;
        publish(&b, "b", 3).await;
        s.sample(&b, 1);
        let names: Vec<_> = s.last(None)[0]
            .busiest
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(names, ["b", "a"]);
    }
}
