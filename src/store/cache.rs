//! [`HotCache`]: the state of recently committed aggregates, kept in
//! memory so the next command on them loads without a request.
//!
//! After a successful commit a [`DynamoStore`](crate::DynamoStore) with a
//! cache keeps the aggregate's new state (the loaded state with the
//! committed events applied once, encoded by the store's codec), its
//! sequence, and the version and chunk count of its stored snapshot. A load
//! of a cached aggregate sends nothing, so a command on a hot aggregate
//! costs one round trip: its commit. The store that committed also keeps
//! the decoded state for the next load (`DynamoStore`'s handoff), so that
//! load decodes nothing: a hot command decodes its state once, in the
//! commit (which needs the state as loaded, before `handle` changed it).
//!
//! **Invariant:** a cached state is the state of the events up to its
//! sequence, each applied once (it was computed from a context that held
//! that, plus the events its commit stored). It may be stale (another
//! process committed since), never wrong: the next commit writes its events
//! at the sequences after the cached one under `attribute_not_exists`, and
//! its snapshot under the cached snapshot version, so a stale entry makes
//! the commit conflict ([`Error::Conflict`](crate::Error::Conflict), cqrs-es's
//! `AggregateConflict`) and never overwrites. Every failed commit drops the
//! entry (a conflict, or an error whose outcome is unknown), so the retry
//! loads from the table.
//!
//! What a stale entry can still do is what any stale read does: a command
//! that commits nothing (it is refused, or emits no event) was decided on
//! the cached state. Bound how stale with
//! [`with_max_age`](HotCache::with_max_age) (Equinox's `AllowStale`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A bounded, per-process cache of aggregate states for
/// [`DynamoStore::with_cache`](crate::DynamoStore::with_cache).
///
/// Bounded by entries and by bytes (the encoded state, as the store's codec
/// writes snapshots, plus the key); the least recently used entries are
/// evicted first. A clone shares the same entries: hand clones to the
/// stores that should share them (entries are keyed by table, aggregate
/// type and id, so stores of different aggregates or tables may share one
/// cache; give them one codec: an entry a store's codec cannot decode is
/// dropped and loaded from the table). Two processes never share a cache;
/// the conditional writes keep them correct (see the module's invariant).
///
/// ```
/// use std::time::Duration;
/// use dynamo_es::HotCache;
///
/// // At most 10,000 aggregates and 64 MiB, none used after 5 minutes.
/// let cache = HotCache::new(10_000, 64 << 20).with_max_age(Duration::from_secs(300));
/// assert!(cache.is_empty());
/// ```
#[derive(Clone)]
pub struct HotCache {
    entries: Arc<Mutex<Entries>>,
    max_entries: usize,
    max_bytes: usize,
    max_age: Option<Duration>,
}

/// A cached aggregate: what a load would return, without the aggregate
/// decoded.
#[derive(Debug, Clone)]
pub(crate) struct CachedState {
    /// The state, encoded by the store's codec (shared: a hit copies no
    /// bytes).
    pub payload: Arc<[u8]>,
    /// The last event sequence it includes.
    pub sequence: usize,
    /// The version of the stored snapshot, if any.
    pub snapshot: Option<usize>,
    /// The chunk items of the stored snapshot.
    pub chunks: usize,
    /// The aggregate store's claim the stored head carries.
    pub claim: Option<crate::event_repository::HeadClaim>,
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// A fresh entry.
    Hit(CachedState),
    /// No entry.
    Miss,
    /// An entry older than the maximum age, now dropped.
    Expired,
}

impl Lookup {
    /// The keyword recorded in the load span's `cache` field.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Lookup::Hit(_) => "hit",
            Lookup::Miss => "miss",
            Lookup::Expired => "expired",
        }
    }
}

struct Entry {
    state: CachedState,
    inserted: Instant,
    used: u64,
    bytes: usize,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, String>,
    bytes: usize,
    clock: u64,
}

impl Entries {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        self.order.remove(&entry.used);
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Evicts the least recently used entries until both bounds hold.
    fn evict(&mut self, max_entries: usize, max_bytes: usize) -> usize {
        let mut evicted = 0;
        while self.map.len() > max_entries || self.bytes > max_bytes {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.map.remove(&key) {
                self.bytes -= entry.bytes;
                evicted += 1;
            }
        }
        evicted
    }
}

impl HotCache {
    /// A cache of at most `max_entries` aggregates and `max_bytes` bytes of
    /// encoded state (a state larger than `max_bytes` is never cached), with
    /// no maximum age.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        HotCache {
            entries: Arc::new(Mutex::new(Entries::default())),
            max_entries,
            max_bytes,
            max_age: None,
        }
    }

    /// Uses an entry only while it is younger than `max_age` (counted from
    /// the commit that stored it); an older one is dropped and the aggregate
    /// loaded from the table. Bounds how stale a state a command that
    /// commits nothing can see (Equinox's `AllowStale`).
    pub fn with_max_age(self, max_age: Duration) -> Self {
        HotCache {
            max_age: Some(max_age),
            ..self
        }
    }

    /// The number of cached aggregates.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the cached entries count against `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.map.clear();
        entries.order.clear();
        entries.bytes = 0;
    }

    /// The entries; a panic while they were locked leaves them consistent
    /// (each method restores the bounds before returning), so a poisoned
    /// lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The entry of `key`, marked as used, if it is young enough.
    pub(crate) fn get(&self, key: &str) -> Lookup {
        let mut entries = self.lock();
        let Some(entry) = entries.map.get(key) else {
            return Lookup::Miss;
        };
        if self
            .max_age
            .is_some_and(|max_age| entry.inserted.elapsed() >= max_age)
        {
            entries.remove(key);
            return Lookup::Expired;
        }
        let old = entry.used;
        let used = entries.tick();
        entries.order.remove(&old);
        entries.order.insert(used, key.to_string());
        match entries.map.get_mut(key) {
            Some(entry) => {
                entry.used = used;
                Lookup::Hit(entry.state.clone())
            }
            None => Lookup::Miss,
        }
    }

    /// Keeps `state` for `key`, unless a newer state is already kept;
    /// returns how many entries were evicted to make room.
    pub(crate) fn insert(&self, key: &str, state: CachedState) -> usize {
        let bytes = state.payload.len() + key.len();
        let mut entries = self.lock();
        if entries
            .map
            .get(key)
            .is_some_and(|entry| entry.state.sequence > state.sequence)
        {
            return 0;
        }
        entries.remove(key);
        if bytes > self.max_bytes || self.max_entries == 0 {
            return 0;
        }
        let used = entries.tick();
        entries.order.insert(used, key.to_string());
        entries.bytes += bytes;
        entries.map.insert(
            key.to_string(),
            Entry {
                state,
                inserted: Instant::now(),
                used,
                bytes,
            },
        );
        entries.evict(self.max_entries, self.max_bytes)
    }

    /// True if the entry of `key` holds the state at `sequence`.
    pub(crate) fn contains(&self, key: &str, sequence: usize) -> bool {
        self.lock()
            .map
            .get(key)
            .is_some_and(|entry| entry.state.sequence == sequence)
    }

    /// Drops the entry of `key`; true if there was one.
    pub(crate) fn remove(&self, key: &str) -> bool {
        self.lock().remove(key).is_some()
    }
}

impl fmt::Debug for HotCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.lock();
        f.debug_struct("HotCache")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("max_age", &self.max_age)
            .field("entries", &entries.map.len())
            .field("bytes", &entries.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{CachedState, HotCache, Lookup};

    fn state(sequence: usize, bytes: usize) -> CachedState {
        CachedState {
            payload: vec![0; bytes].into(),
            sequence,
            snapshot: None,
            chunks: 0,
            claim: None,
        }
    }

    fn sequence(cache: &HotCache, key: &str) -> Option<usize> {
        match cache.get(key) {
            Lookup::Hit(state) => Some(state.sequence),
            Lookup::Miss | Lookup::Expired => None,
        }
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = HotCache::new(2, 1 << 20);
        cache.insert("a", state(1, 10));
        cache.insert("b", state(1, 10));
        assert_eq!(sequence(&cache, "a"), Some(1)); // b is now the oldest use
        assert_eq!(cache.insert("c", state(1, 10)), 1);
        assert_eq!(sequence(&cache, "b"), None);
        assert_eq!(sequence(&cache, "a"), Some(1));
        assert_eq!(sequence(&cache, "c"), Some(1));
        assert_eq!(cache.bytes(), 22);
    }

    #[test]
    fn bytes_bound_the_cache_and_an_oversized_state_is_not_kept() {
        let cache = HotCache::new(100, 50);
        cache.insert("a", state(1, 20));
        cache.insert("b", state(1, 20));
        assert_eq!(cache.insert("c", state(1, 20)), 1);
        assert_eq!((cache.len(), cache.bytes()), (2, 42));
        cache.insert("b", state(2, 60));
        assert_eq!(sequence(&cache, "b"), None, "over max_bytes: dropped");
        assert_eq!((cache.len(), cache.bytes()), (1, 21));
    }

    #[test]
    fn an_older_state_never_replaces_a_newer_one() {
        let cache = HotCache::new(10, 1 << 20);
        cache.insert("a", state(5, 1));
        cache.insert("a", state(4, 1));
        assert_eq!(sequence(&cache, "a"), Some(5));
        assert!(cache.remove("a"));
        assert!(cache.is_empty());
    }
}
