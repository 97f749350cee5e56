//! The registry watch: every topic created anywhere in the cluster is
//! followed here, every topic deleted anywhere is deleted here. What to do
//! with each entry is decided by [`super::registry`]; this is its I/O.

use super::{name_of, registry_stream, NatsLog, Registration, BUCKET, RETRY};
use crate::shutdown::Shutdown;
use async_nats::jetstream::{kv, stream};
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

impl NatsLog {
    /// Keeps the registry watched: every topic created anywhere is followed
    /// here, every topic deleted anywhere is deleted here.
    pub(super) async fn keep_registry(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.triggered() => return,
                result = self.watch_registry() => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "topic registry watch ended; starting again");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.triggered() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    async fn watch_registry(self: &Arc<Self>) -> Result<(), async_nats::Error> {
        // The bucket's stream as `create_key_value` would make it; that call
        // itself reads account fields nats-server 2.9 does not send. Creating
        // an identical stream again is a no-op, so every instance may.
        self.js
            .create_stream(stream::Config {
                name: registry_stream(),
                description: Some("pubsub-server topics: name -> epoch".into()),
                subjects: vec![format!("$KV.{BUCKET}.>")],
                max_messages_per_subject: 1,
                discard: stream::DiscardPolicy::New,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await?;
        let store = self.js.get_key_value(BUCKET).await?;
        // Topics deleted while this instance was not watching: those
        // registered before this snapshot of the registry and not in it.
        let snapshot = self.registry_revision().await?;
        let mut keys = store.keys().await?;
        let mut registered = HashSet::new();
        while let Some(key) = keys.next().await {
            if let Some(name) = name_of(&key?) {
                registered.insert(name);
            }
        }
        let gone = self
            .registry
            .lock()
            .resync(&registered, snapshot, std::time::Instant::now());
        for (name, followed) in gone {
            self.stop_following(&name, followed);
        }
        let mut watch = store.watch_with_history(">").await?;
        *self.store.write() = Some(store);
        tracing::info!(url = %self.url, "following the cluster's topic registry");
        while let Some(entry) = watch.next().await {
            let entry = entry?;
            let revision = entry.revision;
            let Some(name) = name_of(&entry.key) else {
                self.registry_seen
                    .send_modify(|seen| *seen = (*seen).max(revision));
                continue;
            };
            match entry.operation {
                kv::Operation::Put => match serde_json::from_slice::<Registration>(&entry.value) {
                    Ok(registration) => {
                        let _ = self.adopt(&name, &registration, entry.revision);
                    }
                    Err(e) => {
                        tracing::warn!(key = entry.key, error = %e, "unreadable registration")
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => self.forsake(&name, entry.revision),
            }
            self.registry_seen
                .send_modify(|seen| *seen = (*seen).max(revision));
        }
        Ok(())
    }
}
