//! What a [`crate::Subscription`] yields: events, and every notice a caller
//! needs to know that what it received is complete (or that it is not).

use protocol::client::Error;
use protocol::Since;
use serde_json::Value;

/// One item of a subscription's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A message, delivered once, in strictly increasing `seq` per topic.
    Event(Event),
    /// The connection came back and the subscription was renewed with
    /// `since`. With `recovered: true` nothing was missed: the events after
    /// `after.seq` follow. With `recovered: false` the server could not
    /// replay them (history too short, or the topic was deleted and created
    /// again: a new epoch); delivery goes on after `now`, and what lies
    /// between `after` and `now` is lost to this subscription (see
    /// [`Delivery::missing`]). When an exact topic's epoch changed, the new
    /// epoch's messages still in history are replayed (`now.seq` is then
    /// 0 unless its history no longer starts at seq 1).
    Resumed {
        topic: String,
        recovered: bool,
        /// The last position delivered before the connection was lost (for
        /// a topic a pattern started to match while disconnected: seq 0 of
        /// its epoch).
        after: Since,
        /// The position delivery continues after: the next event has seq
        /// `now.seq + 1` in `now.epoch`.
        now: Since,
    },
    /// Events `first..=last` of `epoch` were never delivered (the server
    /// dropped them for a slow consumer, see [`Delivery::SlowConsumer`]).
    Gap {
        topic: String,
        epoch: String,
        first: u64,
        last: u64,
    },
    /// The server dropped `dropped` events of `topic` for this connection
    /// (`SLOW_CONSUMER`); a [`Delivery::Gap`] names them when the next event
    /// arrives.
    SlowConsumer { topic: String, dropped: u64 },
    /// A topic the pattern matches was created; its events follow.
    TopicCreated { topic: String, epoch: String },
    /// The topic was deleted. For an exact subscription,
    /// [`Delivery::Closed`] follows; a pattern subscription goes on.
    TopicDeleted { topic: String },
    /// The connection was lost; the subscription is reconnecting. Said when
    /// the outage starts, and again when renewing fails in a new way (the
    /// server is back but the topic is missing, say); a
    /// [`Delivery::Resumed`] per topic ends it.
    Disconnected { reason: String },
    /// The last item: the stream ends after it.
    Closed(CloseReason),
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseReason {
    /// [`crate::Subscription::close`] was called (or the subscription dropped).
    ByCaller,
    /// The (exact) topic was deleted.
    TopicDeleted,
    /// The server ended the subscription (`info unsubscribed`: a refreshed
    /// token no longer allows it).
    Unsubscribed,
    /// Renewing the subscription was refused for a reason that retrying
    /// cannot fix (`UNAUTHORIZED`, `FORBIDDEN`, `BAD_REQUEST`).
    Refused(Error),
}

/// A message as the subscription delivers it, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: String,
    /// The topic's epoch the `seq` belongs to.
    pub epoch: String,
    pub seq: u64,
    pub id: String,
    pub payload: Value,
    pub ts: String,
}

impl Event {
    /// Where to resume after this event (`Start::Since`).
    pub fn position(&self) -> Since {
        Since {
            seq: self.seq,
            epoch: self.epoch.clone(),
        }
    }
}

/// What a [`Delivery::Resumed`] with `recovered: false` lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Same epoch: exactly the messages `first..=last` (`first > last`
    /// means none).
    Range { first: u64, last: u64 },
    /// The topic was created again: the old epoch's messages after
    /// `after.seq` (how many is unknown) and the new epoch's
    /// `1..=new_epoch_seq` (none when it is 0).
    EpochChanged { new_epoch_seq: u64 },
}

impl Delivery {
    /// For a `Resumed` that did not recover, what was lost; `None` for
    /// anything else.
    pub fn missing(&self) -> Option<Missing> {
        let Delivery::Resumed {
            recovered: false,
            after,
            now,
            ..
        } = self
        else {
            return None;
        };
        Some(if after.epoch == now.epoch {
            Missing::Range {
                first: after.seq + 1,
                last: now.seq,
            }
        } else {
            Missing::EpochChanged {
                new_epoch_seq: now.seq,
            }
        })
    }
}
