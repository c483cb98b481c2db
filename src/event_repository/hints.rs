//! Where each aggregate's snapshot was, as this process last saw it: the
//! hint a snapshot store ([`SnapshotPolicy::Every`](crate::SnapshotPolicy::Every))
//! bounds its tail query with.
//!
//! A hint is learned from what the reads and writes already tell: the
//! sequence of the trusted snapshot a load used, or of the snapshot a
//! commit wrote (where the policy put it). It is shared by the clones of a
//! repository, and bounded: at [`MAX_HINTS`] entries, the map is emptied
//! (a missing hint costs a longer tail query, never a wrong state).
//!
//! **Invariant:** a hint is only ever a guess. The load that uses it checks
//! the events it read against the snapshot it read (see the store's `load`
//! module) and falls back to a sequential query whenever the guess was
//! wrong, so a stale, lost or wrong hint changes what a load costs, never
//! what it returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The most aggregates whose snapshot positions a repository remembers.
pub const MAX_HINTS: usize = 10_000;

/// Snapshot sequences by aggregate key, shared by clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct SnapshotHints {
    map: Arc<Mutex<HashMap<String, usize>>>,
}

impl SnapshotHints {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // A hint map is valid in any state: a poisoned one is used as is.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The snapshot sequence last seen for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<usize> {
        self.lock().get(key).copied()
    }

    /// Remembers that `key`'s snapshot is at `sequence`.
    pub(crate) fn learn(&self, key: &str, sequence: usize) {
        let mut map = self.lock();
        if map.len() >= MAX_HINTS && !map.contains_key(key) {
            map.clear();
        }
        map.insert(key.to_string(), sequence);
    }

    /// Forgets `key`'s snapshot (none is stored, or none is used).
    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::{SnapshotHints, MAX_HINTS};

    #[test]
    fn hints_are_shared_by_clones_and_bounded() {
        let hints = SnapshotHints::default();
        let clone = hints.clone();
        hints.learn("a", 50);
        assert_eq!(clone.get("a"), Some(50));
        clone.forget("a");
        assert_eq!(hints.get("a"), None);
        for i in 0..MAX_HINTS {
            hints.learn(&i.to_string(), i);
        }
        assert_eq!(hints.get("7"), Some(7));
        hints.learn("new", 1);
        assert_eq!((hints.get("7"), hints.get("new")), (None, Some(1)));
    }
}
