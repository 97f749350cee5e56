//! The in-memory log, the default: this process decides. A topic exists
//! once it is in the hub; its epoch is drawn here and its `seq` is the next
//! number, taken under the topic's lock by [`Hub::append_next`] so that the
//! order of `seq` is the order of fan-out.

use super::super::hub::Hub;
use super::super::{clock, BrokerError, EventDraft, Prepared, Receipt, TopicInfo};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

pub(crate) struct MemoryLog {
    hub: Arc<Hub>,
    /// Topics created and not deleted, counted before insertion so that
    /// concurrent creates of different names cannot pass `max_topics`
    /// together.
    topics: AtomicUsize,
}

impl MemoryLog {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        MemoryLog {
            hub,
            topics: AtomicUsize::new(0),
        }
    }

    pub(crate) fn create_topic(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        super::super::error::check_topic_name(name)?;
        let max = self.hub.config().max_topics;
        self.hub.insert_topic(name, super::new_epoch(), || {
            self.topics
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .map(drop)
                .map_err(|_| self.hub.too_many_topics())
        })
    }

    pub(crate) fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        super::super::error::check_topic_name(name)?;
        if self.hub.drop_topic(name, None) {
            self.topics.fetch_sub(1, Relaxed);
            Ok(())
        } else {
            Err(BrokerError::topic_not_found(name))
        }
    }

    /// Appends a checked message at the topic's next `seq` and fans it out.
    pub(crate) fn publish(&self, name: &str, message: Prepared) -> Result<Receipt, BrokerError> {
        let topic = self.hub.topic(name)?;
        // The expensive part (serializing the payload) happens before the lock.
        let draft = EventDraft::new(name, &message.id, &message.payload, &clock::now_rfc3339());
        match self.hub.append_next(&topic, &message.id, draft) {
            Some(appended) => Ok(Receipt {
                id: message.id,
                seq: appended.seq,
                duplicate: appended.duplicate,
            }),
            None => Err(BrokerError::topic_not_found(name)),
        }
    }
}
