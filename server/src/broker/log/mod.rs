//! Where a topic's existence, epoch, `seq` and history are decided; the
//! hub applies what a log decides.
//!
//! - [`memory`] (the default): in this process. `seq` is assigned under
//!   the topic's lock and fanned out at once.
//! - [`nats`] (cluster mode, `--cluster-nats`): in NATS JetStream, shared
//!   by every instance. A key-value bucket is the topic registry and each
//!   topic is a stream whose sequence is the topic's `seq`; every instance
//!   follows the streams into its own hub.
//!
//! The NATS futures are boxed by the facade: they are several KiB, and
//! every WebSocket session's task would otherwise carry that much (it
//! awaits these calls) even in memory, where idle connections are counted
//! in bytes.

pub(crate) mod memory;
pub(crate) mod nats;

use super::{BrokerError, Receipt};
use futures_util::future::BoxFuture;

/// A fresh epoch: 16 hex digits, random, so that a topic deleted and
/// created again (here or on any instance of a cluster) never continues an
/// old `seq` (`since` with another epoch is `recovered: false`).
pub(crate) fn new_epoch() -> String {
    let mut epoch = uuid::Uuid::new_v4().simple().to_string();
    epoch.truncate(16);
    epoch
}

/// A publish that was sent: its outcome, or (cluster mode) the wait for
/// its acknowledgement.
pub enum Publishing {
    Done(Result<Receipt, BrokerError>),
    Waiting(BoxFuture<'static, Result<Receipt, BrokerError>>),
}

impl Publishing {
    pub async fn finish(self) -> Result<Receipt, BrokerError> {
        match self {
            Publishing::Done(result) => result,
            Publishing::Waiting(acknowledged) => acknowledged.await,
        }
    }
}
