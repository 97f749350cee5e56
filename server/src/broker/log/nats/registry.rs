//! The registry's decisions, without I/O: which topic (name, epoch) this
//! instance follows, given the registry entries it has read so far.
//!
//! Entries reach an instance by two roads that race: the registry watch
//! (every entry, in revision order) and lookups of a name the watch has
//! not brought yet (one entry, read a moment ago, maybe older than what
//! the watch already delivered). A stream follower also reports a stream
//! found gone. Whatever the order, the state must be *the newest entry read
//! per name*: a put newer than what is followed replaces it, an older one
//! changes nothing, and a delete is remembered (a tombstone with its
//! revision) so that an older put read late does not bring the topic back.
//! Tombstones live [`TOMBSTONE_TTL`]: longer than any lookup can be
//! in flight, so deletes do not grow memory for the life of the process.
//!
//! `M` is what the caller keeps per followed topic (its mirror and
//! follower); the tests use a plain value. The caller holds the registry
//! under one lock, so a decision and the change it makes are one step.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a delete's tombstone is kept: it guards against adopting a
/// registration read just before the delete (a lookup racing the watch),
/// which is at most one request (3 s) old.
pub(super) const TOMBSTONE_TTL: Duration = Duration::from_secs(60);
/// Tombstones held before expired ones are pruned.
const PRUNE_AT: usize = 1024;

/// One followed topic.
pub(super) struct Followed<M> {
    pub(super) epoch: String,
    /// The registry revision of the entry that created it.
    pub(super) revision: u64,
    pub(super) mirror: M,
}

pub(super) struct Registry<M> {
    followed: HashMap<Arc<str>, Followed<M>>,
    /// Per name, the revision of the newest delete read, and when.
    tombstones: HashMap<Arc<str>, (u64, Instant)>,
}

/// What [`Registry::adopt`] decided.
pub(super) enum Adopted<M> {
    /// Followed already (this epoch, or a newer entry): nothing changes.
    Held(M),
    /// Followed now, in place of `replaced` (an older epoch) if any.
    New { mirror: M, replaced: Option<M> },
    /// A delete newer than this entry was read: not followed. `held` is
    /// what is followed instead, if anything.
    Refused { held: Option<M> },
}

impl<M> Default for Registry<M> {
    fn default() -> Self {
        Registry {
            followed: HashMap::new(),
            tombstones: HashMap::new(),
        }
    }
}

impl<M: Clone> Registry<M> {
    /// What is followed under `name`.
    pub(super) fn get(&self, name: &str) -> Option<&Followed<M>> {
        self.followed.get(name)
    }

    /// An entry `name -> epoch` at `revision` was read. `follow` makes what
    /// is kept for it, and is called only when it is to be followed.
    pub(super) fn adopt(
        &mut self,
        name: &str,
        epoch: &str,
        revision: u64,
        follow: impl FnOnce() -> M,
    ) -> Adopted<M> {
        let held = self.followed.get(name);
        if let Some(held) = held {
            if held.epoch == epoch || held.revision > revision {
                return Adopted::Held(held.mirror.clone());
            }
        }
        if self
            .tombstones
            .get(name)
            .is_some_and(|(deleted_at, _)| *deleted_at > revision)
        {
            return Adopted::Refused {
                held: held.map(|h| h.mirror.clone()),
            };
        }
        let mirror = follow();
        let replaced = self.followed.insert(
            Arc::from(name),
            Followed {
                epoch: epoch.to_owned(),
                revision,
                mirror: mirror.clone(),
            },
        );
        Adopted::New {
            mirror,
            replaced: replaced.map(|r| r.mirror),
        }
    }

    /// A delete of `name` at `revision` was read (or the name was found
    /// missing from the registry as of `revision`): what was followed from
    /// an older entry is returned, to be stopped and deleted here.
    pub(super) fn forsake(
        &mut self,
        name: &str,
        revision: u64,
        now: Instant,
    ) -> Option<Followed<M>> {
        if self.tombstones.len() >= PRUNE_AT {
            self.tombstones
                .retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_TTL);
        }
        self.tombstones
            .entry(Arc::from(name))
            .and_modify(|(rev, at)| {
                *rev = (*rev).max(revision);
                *at = now;
            })
            .or_insert((revision, now));
        self.unfollow(name, |f| f.revision < revision)
    }

    /// The stream of `name`'s `epoch` was found gone: stop following it if
    /// that epoch is still what is followed. The topic was deleted after
    /// the entry that created it, so that entry and older ones (a lookup
    /// racing the watch) are refused from now on, as after a delete.
    pub(super) fn forsake_epoch(
        &mut self,
        name: &str,
        epoch: &str,
        now: Instant,
    ) -> Option<Followed<M>> {
        let revision = self
            .followed
            .get(name)
            .filter(|f| f.epoch == epoch)?
            .revision;
        self.forsake(name, revision + 1, now)
    }

    fn unfollow(
        &mut self,
        name: &str,
        stale: impl FnOnce(&Followed<M>) -> bool,
    ) -> Option<Followed<M>> {
        if self.followed.get(name).is_some_and(stale) {
            self.followed.remove(name)
        } else {
            None
        }
    }

    /// The names followed here that a fresh read of the registry, as of
    /// `revision`, does not hold (deleted while this instance was not
    /// watching): each is forsaken as if deleted just after `revision`.
    pub(super) fn resync(
        &mut self,
        registered: &HashSet<String>,
        revision: u64,
        now: Instant,
    ) -> Vec<(Arc<str>, Followed<M>)> {
        let gone: Vec<Arc<str>> = self
            .followed
            .keys()
            .filter(|name| !registered.contains(&***name))
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|name| {
                let followed = self.forsake(&name, revision + 1, now)?;
                Some((name, followed))
            })
            .collect()
    }

    #[cfg(test)]
    fn tombstones(&self) -> usize {
        self.tombstones.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const NAMES: [&str; 3] = ["a", "b", "c"];

    /// What the registry did, in revision order (revision = index + 1).
    #[derive(Debug, Clone)]
    enum Change {
        /// Created `NAMES[name]` (a new epoch), if it does not exist.
        Create(usize),
        /// Deleted it, if it exists.
        Delete(usize),
    }

    /// One registry entry as an instance reads it.
    #[derive(Debug, Clone, PartialEq)]
    enum Entry {
        Put {
            name: usize,
            epoch: String,
            revision: u64,
        },
        Delete {
            name: usize,
            revision: u64,
        },
    }

    /// The registry's history: every entry written, and the state at the end.
    fn history(changes: &[Change]) -> (Vec<Entry>, BTreeMap<usize, (String, u64)>) {
        let mut entries = Vec::new();
        let mut live: BTreeMap<usize, (String, u64)> = BTreeMap::new();
        for change in changes {
            let revision = entries.len() as u64 + 1;
            match *change {
                Change::Create(name) if !live.contains_key(&name) => {
                    let epoch = format!("e{revision}");
                    live.insert(name, (epoch.clone(), revision));
                    entries.push(Entry::Put {
                        name,
                        epoch,
                        revision,
                    });
                }
                Change::Delete(name) if live.remove(&name).is_some() => {
                    entries.push(Entry::Delete { name, revision });
                }
                _ => {}
            }
        }
        (entries, live)
    }

    /// A step of one instance: an entry read (by the watch or a lookup,
    /// in any order, again and again), a stream found gone, a resync.
    #[derive(Debug, Clone)]
    enum Step {
        Read(usize),
        StreamGone(usize),
        Resync(usize),
    }

    fn read(registry: &mut Registry<String>, entry: &Entry, now: Instant) {
        match entry {
            Entry::Put {
                name,
                epoch,
                revision,
            } => {
                let _ = registry.adopt(NAMES[*name], epoch, *revision, || epoch.clone());
            }
            Entry::Delete { name, revision } => {
                let _ = registry.forsake(NAMES[*name], *revision, now);
            }
        }
    }

    /// The registry as of `revision`: name -> (epoch, revision of its put).
    fn state_at(entries: &[Entry], revision: u64) -> BTreeMap<usize, (String, u64)> {
        let mut live = BTreeMap::new();
        for entry in entries.iter().take(revision as usize) {
            match entry {
                Entry::Put {
                    name,
                    epoch,
                    revision,
                } => {
                    live.insert(*name, (epoch.clone(), *revision));
                }
                Entry::Delete { name, .. } => {
                    live.remove(name);
                }
            }
        }
        live
    }

    fn followed(registry: &Registry<String>) -> BTreeMap<usize, (String, u64)> {
        (0..NAMES.len())
            .filter_map(|i| {
                let f = registry.get(NAMES[i])?;
                assert_eq!(f.mirror, f.epoch, "the mirror made for this epoch");
                Some((i, (f.epoch.clone(), f.revision)))
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the order in which entries are read (lookups racing
        /// the watch, entries read twice), streams found gone and resyncs:
        /// (1) a topic is never followed from an entry older than a delete
        /// of its name already read, and never from an entry older than
        /// the one followed before; (2) once the watch has delivered the
        /// registry in order, this instance follows exactly what the
        /// registry holds.
        #[test]
        fn the_newest_entry_read_wins(
            changes in prop::collection::vec(
                prop_oneof![(0..3usize).prop_map(Change::Create), (0..3usize).prop_map(Change::Delete)],
                1..24,
            ),
            steps in prop::collection::vec(
                prop_oneof![
                    4 => (0..64usize).prop_map(Step::Read),
                    1 => (0..64usize).prop_map(Step::StreamGone),
                    1 => (0..64usize).prop_map(Step::Resync),
                ],
                0..48,
            ),
        ) {
            let (entries, last) = history(&changes);
            prop_assume!(!entries.is_empty());
            let now = Instant::now();
            let mut registry = Registry::<String>::default();
            // Per name: the newest delete read, and the newest revision followed.
            let mut deleted_at: BTreeMap<usize, u64> = BTreeMap::new();
            let mut newest_followed: BTreeMap<usize, u64> = BTreeMap::new();
            for step in &steps {
                match *step {
                    Step::Read(i) => {
                        let entry = &entries[i % entries.len()];
                        read(&mut registry, entry, now);
                        if let Entry::Delete { name, revision } = entry {
                            let at = deleted_at.entry(*name).or_default();
                            *at = (*at).max(*revision);
                        }
                    }
                    Step::StreamGone(i) => {
                        // Only a deleted topic's stream goes.
                        if let Entry::Put { name, epoch, revision } = &entries[i % entries.len()] {
                            let deleted = entries.iter().any(|e| matches!(e,
                                Entry::Delete { name: n, revision: r } if n == name && r > revision));
                            if deleted {
                                let _ = registry.forsake_epoch(NAMES[*name], epoch, now);
                            }
                        }
                    }
                    Step::Resync(i) => {
                        let revision = (i % entries.len()) as u64 + 1;
                        let registered: HashSet<String> = state_at(&entries, revision)
                            .keys()
                            .map(|n| NAMES[*n].to_owned())
                            .collect();
                        // What the instance read before is older than the snapshot.
                        let max_read = deleted_at.values().chain(newest_followed.values()).max().copied().unwrap_or(0);
                        if revision >= max_read {
                            for (name, _) in registry.resync(&registered, revision, now) {
                                let i = NAMES.iter().position(|n| **n == *name).unwrap();
                                // Deleted at or before the snapshot.
                                let at = deleted_at.entry(i).or_default();
                                *at = (*at).max(revision);
                            }
                        }
                    }
                }
                for (name, (_, revision)) in followed(&registry) {
                    prop_assert!(
                        deleted_at.get(&name).is_none_or(|d| *d < revision),
                        "{} followed from revision {revision}, older than a delete read", NAMES[name]
                    );
                    let newest = newest_followed.entry(name).or_default();
                    if let Some(d) = deleted_at.get(&name) {
                        // A delete in between starts the name over.
                        if *d > *newest { *newest = 0; }
                    }
                    prop_assert!(revision >= *newest, "went back from {newest} to {revision}");
                    *newest = revision;
                }
            }
            // The watch: every entry, in order.
            for entry in &entries {
                read(&mut registry, entry, now);
            }
            prop_assert_eq!(followed(&registry), last);
        }
    }

    #[test]
    fn a_late_put_does_not_bring_a_deleted_topic_back() {
        let now = Instant::now();
        let mut r = Registry::<u32>::default();
        assert!(matches!(
            r.adopt("t", "e1", 1, || 1),
            Adopted::New { replaced: None, .. }
        ));
        assert_eq!(r.forsake("t", 2, now).map(|f| f.mirror), Some(1));
        assert!(matches!(
            r.adopt("t", "e1", 1, || 9),
            Adopted::Refused { held: None }
        ));
        assert!(matches!(
            r.adopt("t", "e3", 3, || 3),
            Adopted::New { replaced: None, .. }
        ));
        assert!(matches!(r.adopt("t", "e1", 1, || 9), Adopted::Held(3)));
        assert!(
            r.forsake("t", 2, now).is_none(),
            "an older delete leaves the newer topic"
        );
        assert!(matches!(
            r.adopt("t", "e4", 4, || 4),
            Adopted::New {
                replaced: Some(3),
                ..
            }
        ));
    }

    #[test]
    fn tombstones_expire() {
        let start = Instant::now();
        let mut r = Registry::<u32>::default();
        for i in 0..PRUNE_AT {
            let _ = r.forsake(&format!("t{i}"), 1, start);
        }
        assert_eq!(r.tombstones(), PRUNE_AT);
        let later = start + TOMBSTONE_TTL + Duration::from_secs(1);
        let _ = r.forsake("fresh", 1, later);
        assert_eq!(r.tombstones(), 1, "only the fresh one is left");
    }
}
