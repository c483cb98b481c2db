//! How a [`DynamoStore`] uses its [`HotCache`]: a load served from it, the
//! state a successful commit leaves in it, and the entry a failed commit
//! drops (the argument is in the `cache` module).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cqrs_es::{Aggregate, EventEnvelope};

use super::cache::{CachedState, Lookup};
use super::{Base, DynamoAggregateContext, DynamoStore, HotCache, Payload};
use crate::error::{Error, Result};
use crate::event_repository::HeadClaim;

/// The decoded states a store's commits left, by cache key, each with the
/// sequence it is at: the next load of the aggregate takes it instead of
/// decoding the cached payload (an aggregate is not `Clone`: the commit
/// computed the state, the load can only move it). At most
/// [`DynamoStore::HANDOFF_MAX`] states; past that, the map is emptied.
pub(super) struct Handoff<A> {
    states: Mutex<HashMap<String, (usize, A)>>,
}

impl<A> Default for Handoff<A> {
    fn default() -> Self {
        Handoff {
            states: Mutex::new(HashMap::new()),
        }
    }
}

impl<A> Handoff<A> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (usize, A)>> {
        // Any state of the map is valid: a poisoned one is used as is.
        self.states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn put(&self, key: &str, sequence: usize, state: A, max: usize) {
        let mut states = self.lock();
        if states.len() >= max && !states.contains_key(key) {
            states.clear();
        }
        states.insert(key.to_string(), (sequence, state));
    }

    /// The state of `key` at `sequence`, if one was left; any other is dropped.
    fn take(&self, key: &str, sequence: usize) -> Option<A> {
        match self.lock().remove(key) {
            Some((at, state)) if at == sequence => Some(state),
            _ => None,
        }
    }

    fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// What a successful commit leaves for the cache.
pub(super) struct Committed<A> {
    /// The state after the commit's events, computed with its snapshot.
    pub state: Option<A>,
    /// The snapshot's payload and the sequence it covers, if one was sent.
    pub written: Option<(Vec<u8>, usize)>,
    /// The chunk items of the snapshot written, or `None` if none was.
    pub snapshot_chunks: Option<usize>,
}

impl<A: Aggregate> DynamoStore<A> {
    /// The most decoded states a store keeps for the next loads of the
    /// aggregates it committed (see [`with_cache`](Self::with_cache)).
    pub const HANDOFF_MAX: usize = 256;

    /// The key of `aggregate_id` in the cache: table, type and id.
    fn cache_key(&self, aggregate_id: &str) -> String {
        format!(
            "{}/{}",
            self.repo.event_table(),
            crate::item::aggregate_key(A::TYPE, aggregate_id)
        )
    }

    /// The context of a cached state: the decoded state this store's
    /// commit left, if no load took it yet, else the payload decoded. The
    /// payload (shared, not copied) is the base the commit decodes.
    fn cached_context(
        &self,
        key: &str,
        aggregate_id: &str,
        state: CachedState,
    ) -> Result<DynamoAggregateContext<A>> {
        let aggregate = match self.handoff.take(key, state.sequence) {
            Some(aggregate) => aggregate,
            None => self.repo.codec().decode_deserialize::<A>(&state.payload)?,
        };
        Ok(DynamoAggregateContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate,
            current_sequence: state.sequence,
            current_snapshot: state.snapshot,
            base: Base {
                snapshot: Some(Payload::Cached(state.payload)),
                events: Vec::new(),
                chunks: state.chunks,
                claim: state.claim,
            },
        })
    }

    /// The context of `aggregate_id` from the cache, if it holds a fresh
    /// and readable entry, and the keyword the load span records.
    pub(super) fn load_cached(
        &self,
        aggregate_id: &str,
    ) -> (Option<DynamoAggregateContext<A>>, &'static str) {
        let Some(cache) = &self.cache else {
            return (None, "off");
        };
        let key = self.cache_key(aggregate_id);
        let lookup = cache.get(&key);
        let name = lookup.name();
        let Lookup::Hit(state) = lookup else {
            tracing::debug!(
                aggregate_type = A::TYPE,
                aggregate_id,
                cache = name,
                "hot cache miss"
            );
            return (None, name);
        };
        match self.cached_context(&key, aggregate_id, state) {
            Ok(context) => {
                tracing::debug!(
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    sequence = context.current_sequence,
                    cache = name,
                    "hot cache hit"
                );
                (Some(context), name)
            }
            Err(err) => {
                cache.remove(&key);
                tracing::warn!(
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    error = %err,
                    "hot cache entry no longer decodes; dropped, loading from the table"
                );
                (None, "unreadable")
            }
        }
    }

    /// Keeps the state after a successful commit in the cache.
    pub(super) fn cache_commit(
        &self,
        cache: &HotCache,
        context: &DynamoAggregateContext<A>,
        envelopes: &[EventEnvelope<A>],
        committed: Committed<A>,
    ) {
        let Committed {
            state,
            written,
            snapshot_chunks,
        } = committed;
        let key = self.cache_key(&context.aggregate_id);
        let sequence = context.current_sequence + envelopes.len();
        let payload = match (written, &state) {
            // The snapshot written covers every event: its payload is the state.
            (Some((payload, covers)), _) if covers == sequence => Ok(payload),
            (_, Some(state)) => self
                .repo
                .codec()
                .encode_serialize_sized(state)
                .map(|(payload, _)| payload),
            (_, None) => Err(Error::InvalidCommit {
                aggregate: crate::item::aggregate_key(A::TYPE, &context.aggregate_id),
                reason: "the state after it was not computed for the cache".into(),
            }),
        };
        let payload = match payload {
            Ok(payload) => payload,
            Err(err) => {
                cache.remove(&key);
                tracing::warn!(
                    aggregate_type = A::TYPE,
                    aggregate_id = %context.aggregate_id,
                    error = %err,
                    "hot cache: the committed state does not encode; not cached"
                );
                return;
            }
        };
        // The head as the commit left it: replaced (claiming to be current
        // if the policy makes the claim), or as loaded without its claim
        // (a commit that replaces no head removes it).
        let (snapshot, chunks, claim) = match snapshot_chunks {
            Some(chunks) => {
                let version = context.current_snapshot.map_or(1, |v| v + 1);
                let claim = (self.policy == super::SnapshotPolicy::Always).then_some(HeadClaim {
                    version,
                    through: sequence,
                });
                (Some(version), chunks, claim)
            }
            None => (context.current_snapshot, context.base.chunks, None),
        };
        let evicted = cache.insert(
            &key,
            CachedState {
                payload: Arc::from(payload),
                sequence,
                snapshot,
                chunks,
                claim,
            },
        );
        if let Some(state) = state {
            if cache.contains(&key, sequence) {
                self.handoff.put(&key, sequence, state, Self::HANDOFF_MAX);
            }
        }
        tracing::debug!(
            aggregate_type = A::TYPE,
            aggregate_id = %context.aggregate_id,
            sequence,
            evicted,
            "hot cache stored"
        );
    }

    /// Drops the entry of `aggregate_id` (and its handed-off state), as a
    /// deletion does: the next load reads the table and finds the tombstone.
    pub(super) fn forget_deleted(&self, aggregate_id: &str) {
        let key = self.cache_key(aggregate_id);
        self.handoff.remove(&key);
        if let Some(cache) = &self.cache {
            cache.remove(&key);
        }
    }

    /// Drops the entry of `aggregate_id` after a failed commit: a conflict
    /// means it was stale, and any other failure may have been applied;
    /// either way the next load reads the table.
    pub(super) fn forget_failed_commit(&self, cache: &HotCache, aggregate_id: &str, err: &Error) {
        let key = self.cache_key(aggregate_id);
        self.handoff.remove(&key);
        let dropped = cache.remove(&key);
        tracing::debug!(
            aggregate_type = A::TYPE,
            aggregate_id,
            conflict = err.is_conflict(),
            dropped,
            "hot cache entry dropped after a failed commit"
        );
    }
}
