//! The cluster-wide topic count, so `max_topics` holds across instances.
//!
//! - The key [`KEY`] in the registry bucket holds the number of registered
//!   topics (`=` never occurs in a topic name, so the registry watch passes
//!   over it). A create first takes a slot, a compare-and-set on the key's
//!   revision, and only then registers the name: of two instances racing for
//!   the last slot one gets it and the other answers `RATE_LIMITED`. A
//!   create that fails after taking its slot, and every delete, gives the
//!   slot back the same way.
//! - Between the two steps the count is one higher than the registered
//!   topics, never lower, so the limit is never passed. An instance that
//!   dies there (or an answer lost on the way) leaves the count too high;
//!   [`Quiet`] says when the registry has not changed for a whole
//!   [`QUIET`] period, i.e. no create or delete is between its steps, and
//!   the count is then set to the registered topics again.
//! - A bucket written before the count existed gets it on first use: the
//!   registered names counted once.

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::time::Duration;

/// The count's key.
pub(super) const KEY: &str = "=topic-count";
/// How long the registry must stay unchanged before a drifted count is
/// corrected: far longer than the two steps of a create or delete take
/// (each at most one 3 s request).
pub(super) const QUIET: Duration = Duration::from_secs(10);
/// Compare-and-set attempts before a create or delete gives up with
/// `UNAVAILABLE` (only under hundreds of concurrent topic changes).
const TRIES: u32 = 32;

/// What taking a slot came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Taken,
    /// All `max_topics` are in use.
    Full,
}

/// Takes one slot of `max`.
pub(super) async fn take(store: &kv::Store, max: usize) -> Result<Slot, String> {
    for attempt in 0..TRIES {
        let (count, revision) = read(store).await?;
        if count >= max as u64 {
            return Ok(Slot::Full);
        }
        match store.update(KEY, encode(count + 1), revision).await {
            Ok(_) => return Ok(Slot::Taken),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => back_off(attempt).await,
            Err(e) => return Err(format!("taking a topic slot: {e}")),
        }
    }
    Err("too many topic creations at once; try again".into())
}

/// Gives one slot back (never below zero). A failure only leaves the count
/// high until the registry is quiet; it is logged, not returned.
pub(super) async fn give_back(store: &kv::Store) {
    for attempt in 0..TRIES {
        let (count, revision) = match read(store).await {
            Ok(read) => read,
            Err(e) => return tracing::warn!(error = %e, "topic slot not given back"),
        };
        match store
            .update(KEY, encode(count.saturating_sub(1)), revision)
            .await
        {
            Ok(_) => return,
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => back_off(attempt).await,
            Err(e) => return tracing::warn!(error = %e, "topic slot not given back"),
        }
    }
    tracing::warn!("topic slot not given back: too many concurrent topic changes");
}

/// Sets the count to the registered topics when it differs. Called only
/// when [`Quiet`] said so; `revision` is the registry's revision it saw,
/// and nothing is written when the registry moved on meanwhile.
pub(super) async fn correct(
    store: &kv::Store,
    registered: u64,
    count: (u64, u64),
) -> Result<(), String> {
    let (count, revision) = count;
    if count == registered {
        return Ok(());
    }
    match store.update(KEY, encode(registered), revision).await {
        Ok(_) => {
            tracing::info!(
                from = count,
                to = registered,
                "cluster topic count corrected after an interrupted create or delete"
            );
            Ok(())
        }
        // A create or delete came first: the next quiet period looks again.
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(()),
        Err(e) => Err(format!("correcting the topic count: {e}")),
    }
}

/// The count and its revision, creating it from the registered names when
/// the bucket has none yet.
pub(super) async fn read(store: &kv::Store) -> Result<(u64, u64), String> {
    loop {
        let entry = store
            .entry(KEY)
            .await
            .map_err(|e| format!("reading the topic count: {e}"))?;
        if let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) {
            let count = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("the topic count {KEY:?} is not a number"))?;
            return Ok((count, entry.revision));
        }
        let registered = registered(store).await?;
        match store.create(KEY, encode(registered)).await {
            Ok(revision) => return Ok((registered, revision)),
            // Another instance created it first: read theirs.
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("creating the topic count: {e}")),
        }
    }
}

/// The number of topic names in the registry.
pub(super) async fn registered(store: &kv::Store) -> Result<u64, String> {
    let mut keys = store
        .keys()
        .await
        .map_err(|e| format!("listing the registry: {e}"))?;
    let mut n = 0;
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| format!("listing the registry: {e}"))?;
        if super::name_of(&key).is_some() {
            n += 1;
        }
    }
    Ok(n)
}

fn encode(count: u64) -> bytes::Bytes {
    count.to_string().into()
}

/// A short pause after losing a compare-and-set, spread so that racing
/// instances do not collide again in step.
async fn back_off(attempt: u32) {
    let ceiling = 2u64 << attempt.min(5);
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % ceiling;
    tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
}

/// Decides when the registry has been quiet long enough to correct the
/// count: the same registry revision seen at two looks a [`QUIET`] period
/// apart, and not yet checked at that revision.
#[derive(Default)]
pub(super) struct Quiet {
    seen: Option<u64>,
    checked: Option<u64>,
}

impl Quiet {
    /// Takes in the registry's revision at this look; true when the count
    /// should be checked now.
    pub(super) fn look(&mut self, revision: u64) -> bool {
        let quiet = self.seen == Some(revision) && self.checked != Some(revision);
        self.seen = Some(revision);
        quiet
    }

    /// The check at `revision` is done (or the registry moved on).
    pub(super) fn checked(&mut self, revision: u64) {
        self.checked = Some(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_checked_once_per_quiet_period() {
        let mut quiet = Quiet::default();
        assert!(!quiet.look(5), "a first look has nothing to compare");
        assert!(quiet.look(5), "unchanged for a whole period");
        quiet.checked(5);
        assert!(!quiet.look(5), "already checked at this revision");
        assert!(!quiet.look(6), "the registry moved");
        assert!(!quiet.look(7), "and again");
        assert!(quiet.look(7), "quiet again");
        quiet.checked(7);
        assert!(!quiet.look(7));
    }

    #[test]
    fn the_key_is_no_topic_name() {
        assert!(super::super::name_of(KEY).is_none());
    }
}
