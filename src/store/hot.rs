//! How a [`DynamoStore`] uses its [`HotCache`]: a load served from it, the
//! state a successful commit leaves in it, and the entry a failed commit
//! drops (the argument is in the `cache` module).

use cqrs_es::{Aggregate, EventEnvelope};

use super::cache::{CachedState, Lookup};
use super::{Base, DynamoAggregateContext, DynamoStore, HotCache};
use crate::error::{Error, Result};

impl<A: Aggregate> DynamoStore<A> {
    /// The key of `aggregate_id` in the cache: table, type and id.
    fn cache_key(&self, aggregate_id: &str) -> String {
        format!(
            "{}/{}",
            self.repo.event_table(),
            crate::item::aggregate_key(A::TYPE, aggregate_id)
        )
    }

    /// The context of a cached state, decoded.
    fn cached_context(
        &self,
        aggregate_id: &str,
        state: CachedState,
    ) -> Result<DynamoAggregateContext<A>> {
        let aggregate = self.repo.codec().decode_deserialize::<A>(&state.payload)?;
        Ok(DynamoAggregateContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate,
            current_sequence: state.sequence,
            current_snapshot: state.snapshot,
            base: Base {
                snapshot: Some(state.payload),
                events: Vec::new(),
                chunks: state.chunks,
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
        match self.cached_context(aggregate_id, state) {
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
        snapshot: Option<(Vec<u8>, usize)>,
        snapshot_chunks: Option<usize>,
    ) {
        let key = self.cache_key(&context.aggregate_id);
        let sequence = context.current_sequence + envelopes.len();
        let payload = match snapshot {
            // The snapshot written covers every event: its payload is the state.
            Some((payload, covers)) if covers == sequence => Ok(payload),
            _ => context
                .state_with(self.repo.codec(), envelopes.iter().map(|e| &e.payload))
                .and_then(|state| self.repo.codec().encode_serialize_sized(&state))
                .map(|(payload, _)| payload),
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
        let (snapshot, chunks) = match snapshot_chunks {
            Some(chunks) => (Some(context.current_snapshot.map_or(1, |v| v + 1)), chunks),
            None => (context.current_snapshot, context.base.chunks),
        };
        let evicted = cache.insert(
            &key,
            CachedState {
                payload,
                sequence,
                snapshot,
                chunks,
            },
        );
        tracing::debug!(
            aggregate_type = A::TYPE,
            aggregate_id = %context.aggregate_id,
            sequence,
            evicted,
            "hot cache stored"
        );
    }

    /// Drops the entry of `aggregate_id` after a failed commit: a conflict
    /// means it was stale, and any other failure may have been applied;
    /// either way the next load reads the table.
    pub(super) fn forget_failed_commit(&self, cache: &HotCache, aggregate_id: &str, err: &Error) {
        let dropped = cache.remove(&self.cache_key(aggregate_id));
        tracing::debug!(
            aggregate_type = A::TYPE,
            aggregate_id,
            conflict = err.is_conflict(),
            dropped,
            "hot cache entry dropped after a failed commit"
        );
    }
}
