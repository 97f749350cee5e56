//! Stream followers: one task per followed topic takes its stream into
//! this instance's hub, in stream order, resuming after the last `seq` it
//! took in whenever the consumer is lost, until the topic is forsaken.

use super::{is_stream_not_found, stream_name, Mirror, NatsLog, Stored, RETRY};
use crate::broker::{clock, EventDraft};
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde_json::value::RawValue;
use std::sync::Arc;

impl NatsLog {
    /// Takes a topic's stream into this instance until it is forsaken,
    /// resuming after its last `seq` whenever the consumer is lost.
    pub(super) async fn follow(self: Arc<Self>, mirror: Arc<Mirror>) {
        let stream = stream_name(&mirror.epoch);
        let mut first = true;
        loop {
            tokio::select! {
                biased;
                _ = mirror.stop.cancelled() => return,
                result = self.follow_once(&mirror, &stream, first) => match result {
                    Ok(RunEnded::StreamGone) => {
                        self.forsake_epoch(&mirror.topic.name, &mirror.epoch);
                        return;
                    }
                    Ok(RunEnded::Ended) => {}
                    Err(e) => {
                        tracing::debug!(topic = %mirror.topic.name, error = %e, "stream follower restarts");
                    }
                }
            }
            first = false;
            tokio::select! {
                _ = mirror.stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    async fn follow_once(
        &self,
        mirror: &Mirror,
        stream: &str,
        first: bool,
    ) -> Result<RunEnded, async_nats::Error> {
        let stream = match self.js.get_stream(stream).await {
            Ok(stream) => stream,
            Err(e) if is_stream_not_found(&e) => return Ok(RunEnded::StreamGone),
            Err(e) => return Err(e.into()),
        };
        let seq = mirror.topic.snapshot().0;
        let start_sequence = if seq == 0 && first {
            // New here: the history's worth of the newest messages.
            let last = stream.cached_info().state.last_sequence;
            last.saturating_sub(self.history_size as u64) + 1
        } else {
            seq + 1
        };
        let deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence };
        let consumer = stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                deliver_policy,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            match message {
                Ok(message) => self.take_in(mirror, &message)?,
                // The ordered consumer recreates itself after these.
                Err(e) if e.kind() == consumer::push::OrderedErrorKind::MissingHeartbeat => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(RunEnded::Ended)
    }

    fn take_in(
        &self,
        mirror: &Mirror,
        message: &jetstream::Message,
    ) -> Result<(), async_nats::Error> {
        let seq = message.info()?.stream_sequence;
        let topic = &mirror.topic;
        let draft = match serde_json::from_slice::<Stored>(&message.payload) {
            Ok(stored) => EventDraft::new(&topic.name, &stored.id, stored.payload, &stored.ts),
            Err(e) => {
                // Not written by pubsub-server. It still takes its `seq`, so
                // that every instance numbers the topic alike.
                tracing::warn!(topic = %topic.name, seq, error = %e, "foreign message on a topic stream");
                let null = RawValue::from_string("null".into())?;
                EventDraft::new(
                    &topic.name,
                    &format!("foreign-{seq}"),
                    &null,
                    &clock::now_rfc3339(),
                )
            }
        };
        let now = self.hub.apply_event(topic, seq, draft);
        mirror.seq.send_replace(now);
        Ok(())
    }
}

/// How a stream follower's run ended without an error.
enum RunEnded {
    /// Its messages ended (the consumer went away): follow again.
    Ended,
    /// The stream does not exist (the topic was deleted).
    StreamGone,
}
