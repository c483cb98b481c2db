//! [`DynamoStore`]: an `EventStore` whose snapshots are always right.
//!
//! cqrs-es 0.5's `PersistedEventStore` builds a snapshot by applying the
//! committed events to the context's aggregate. Under `CqrsFramework` that
//! aggregate has already had them applied by `Aggregate::handle` (through
//! `EventSink::write`), so every snapshot it writes holds each event twice.
//!
//! `DynamoStore` keeps, in its context, the state as it was loaded: the
//! stored snapshot's payload, still encoded, and the events replayed on top
//! of it. A
//! snapshot is that state plus the committed events applied exactly once,
//! whether or not the caller already applied them to
//! [`DynamoAggregateContext::aggregate`].
//!
//! The cost: the stored snapshot bytes (compressed, if the codec compresses)
//! and, in snapshot mode, the events after it stay in memory until the
//! commit, and a commit that writes a snapshot decodes those bytes once more.
//! Commits that write no snapshot pay nothing. Loading decodes the stored
//! bytes straight into the aggregate, with no intermediate JSON value.
//!
//! Snapshots `DynamoStore` writes carry
//! [`SNAPSHOT_WRITER`](crate::item::SNAPSHOT_WRITER) = `"dynamo-es"` on
//! their head item. A snapshot without it (written by upstream `dynamo-es`,
//! or by cqrs-es's `PersistedEventStore` over
//! [`DynamoEventRepository`]) is not trusted: its state is ignored and the
//! aggregate is rebuilt from all its events, while its version (and chunk
//! count) are kept so the next snapshot replaces it.
//!
//! Snapshots never block commits: a snapshot that does not fit beside the
//! commit's events in one transaction, or that decodes to more than the
//! codec's `max_decoded_size`, is left out and the events are committed
//! alone (see [`SnapshotPolicy`]).
//!
//! A load reads the snapshot and the newest events concurrently, and
//! returns what a sequential load (the snapshot, then the events after it)
//! could return; the argument is in the `load` module.
//!
//! **Invariant:** every snapshot `DynamoStore` writes is the state of the
//! events up to its `CurrentSequence`, each applied exactly once, and every
//! context it loads holds the state of the events up to its
//! `current_sequence`, built from a trusted snapshot and exactly the events
//! after it.

mod cache;
mod hot;
mod load;
mod retry;

pub use cache::HotCache;
pub use retry::execute_with_retry;

use std::collections::HashMap;
use std::marker::PhantomData;

use cqrs_es::persist::{EventUpcaster, PersistenceError, SerializedEvent};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use tracing::{field, Instrument};

use crate::codec::Codec;
use crate::error::{in_span, Error, Result};
use crate::event_repository::{DynamoEventRepository, SnapshotUpdate};

/// When a [`DynamoStore`] writes a snapshot.
///
/// Whatever the policy, a load reads the snapshot (if the policy writes
/// any) and every event stored after the sequence it covers, so a snapshot
/// that is missing, behind, unreadable or not trusted only costs a longer
/// replay, never a wrong state.
///
/// A snapshotting load takes one round trip: the snapshot's `GetItem` and a
/// `Query` of the newest events (newest first) run concurrently, both
/// strongly consistent. The query reads at most `n - 1` events for
/// `Every(n)` (up to 100), and 4 for `Always`: the events a snapshot is
/// normally behind by, and, for `Every(n)`, on average about half of them
/// from before the snapshot, which cost read units but are not decoded.
/// When those events do not reach back to the snapshot (a snapshot was
/// skipped, a commit raced the load, or the snapshot's state is not used and
/// every event is needed), a second query reads the events after the
/// snapshot, as a sequential load would.
///
/// A snapshot is written in the same transaction as the commit's events. If
/// it cannot be (the transaction would exceed DynamoDB's 100 items or
/// 4 MB with it, stale-chunk deletes included; it decodes to more than the
/// codec's [`max_decoded_size`](crate::Codec::max_decoded_size), so readers
/// would refuse it; or the server refuses the transaction with a
/// `ValidationException`), the commit writes its events alone, with the same
/// conflict checks, logs a warning and records `snapshot_skipped` on its
/// `dynamo_es.persist` span. The stored snapshot stays as it was, and the
/// next commit that writes a snapshot under the policy tries again.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Never: aggregates are rebuilt from their events (cqrs-es's "event store").
    Never,
    /// Every `n` events (cqrs-es's "snapshot store"): a commit that reaches
    /// or passes a multiple of `n` writes a snapshot at the last multiple it
    /// reaches, and loads normally replay at most `n - 1` events after it
    /// (more after a skipped snapshot).
    ///
    /// `Every(0)` means the same as [`Always`](SnapshotPolicy::Always).
    Every(usize),
    /// After every commit (cqrs-es's "aggregate store"): a snapshot of the
    /// state after the commit's events. Loads read the snapshot and then
    /// query the events after it, which are normally none (there are some
    /// when a snapshot was skipped, is not trusted, or was written by
    /// another policy).
    Always,
}

impl SnapshotPolicy {
    /// How many of `new_events` events, committed after `current_sequence`,
    /// the snapshot written with them includes (0: no snapshot).
    pub fn events_in_snapshot(self, current_sequence: usize, new_events: usize) -> usize {
        match self {
            SnapshotPolicy::Never => 0,
            SnapshotPolicy::Always => new_events,
            SnapshotPolicy::Every(0) => new_events,
            SnapshotPolicy::Every(size) => {
                let last = current_sequence + new_events;
                let boundary = last - last % size;
                boundary.saturating_sub(current_sequence)
            }
        }
    }
}

/// How a load went, for its log event.
struct Loaded {
    /// `none`, `used`, `untrusted` or `unreadable`.
    snapshot: &'static str,
    /// Events applied after the snapshot (or from the start).
    replayed: usize,
    /// How the events were read: `none` (no snapshot policy: one query),
    /// `covered` (the newest events, read with the snapshot, were all the
    /// load needed) or `fallback` (a second query read them).
    tail: &'static str,
}

/// An aggregate as loaded by a [`DynamoStore`].
pub struct DynamoAggregateContext<A: Aggregate> {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The aggregate, which `CqrsFramework` hands to `handle`.
    pub aggregate: A,
    /// The last event sequence applied.
    pub current_sequence: usize,
    /// The version of the stored snapshot, if there is one (also when its
    /// state was not used: the next snapshot write expects this version).
    pub current_snapshot: Option<usize>,
    base: Base<A>,
}

/// The loaded state, kept apart from what `handle` may change.
struct Base<A: Aggregate> {
    /// The stored snapshot payload, still encoded (compact: a compressed
    /// payload stays compressed until a snapshot is written).
    snapshot: Option<Vec<u8>>,
    events: Vec<A::Event>,
    chunks: usize,
}

impl<A: Aggregate> AggregateContext<A> for DynamoAggregateContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A: Aggregate> DynamoAggregateContext<A> {
    /// The state after the loaded events and `new_events`, applying each
    /// exactly once.
    fn state_with<'a>(
        &self,
        codec: &Codec,
        new_events: impl IntoIterator<Item = &'a A::Event>,
    ) -> Result<A>
    where
        A::Event: 'a,
    {
        let mut state: A = match &self.base.snapshot {
            Some(payload) => codec.decode_deserialize(payload)?,
            None => A::default(),
        };
        for event in &self.base.events {
            state.apply(event.clone());
        }
        for event in new_events {
            state.apply(event.clone());
        }
        Ok(state)
    }
}

/// A cqrs-es `EventStore` on DynamoDB with correct snapshots.
///
/// ```no_run
/// # use cqrs_es::{Aggregate, CqrsFramework};
/// # fn demo<A: Aggregate>(client: aws_sdk_dynamodb::Client, services: A::Services) {
/// use dynamo_es::{DynamoEventRepository, DynamoStore, SnapshotPolicy};
///
/// let repo = DynamoEventRepository::new(client);
/// let store = DynamoStore::<A>::new(repo, SnapshotPolicy::Every(50));
/// let cqrs = CqrsFramework::new(store, vec![], services);
/// # }
/// ```
pub struct DynamoStore<A: Aggregate> {
    repo: DynamoEventRepository,
    policy: SnapshotPolicy,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    cache: Option<HotCache>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> DynamoStore<A> {
    /// A store over `repo` that snapshots according to `policy`.
    pub fn new(repo: DynamoEventRepository, policy: SnapshotPolicy) -> Self {
        DynamoStore {
            repo,
            policy,
            upcasters: Vec::new(),
            cache: None,
            _aggregate: PhantomData,
        }
    }

    /// An event store: no snapshots.
    pub fn new_event_store(repo: DynamoEventRepository) -> Self {
        Self::new(repo, SnapshotPolicy::Never)
    }

    /// A snapshot store: a snapshot every `snapshot_size` events.
    pub fn new_snapshot_store(repo: DynamoEventRepository, snapshot_size: usize) -> Self {
        Self::new(repo, SnapshotPolicy::Every(snapshot_size))
    }

    /// An aggregate store: a snapshot after every commit.
    pub fn new_aggregate_store(repo: DynamoEventRepository) -> Self {
        Self::new(repo, SnapshotPolicy::Always)
    }

    /// Upcasts stored events before they are deserialized.
    pub fn with_upcasters(self, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        DynamoStore { upcasters, ..self }
    }

    /// Keeps the state of every aggregate this store commits in `cache`,
    /// so the next load of it sends no request (see [`HotCache`]).
    ///
    /// A hot command then costs one round trip, its commit. A stale entry
    /// (another process committed since) makes the commit conflict
    /// (cqrs-es's `AggregateConflict`) and drops the entry: run commands
    /// with [`execute_with_retry`] so that costs one retry, not an error.
    ///
    /// The cost, per commit: the new state is computed from the loaded
    /// state and the committed events (as a snapshot is) and encoded by the
    /// codec, unless the commit's snapshot already covers every event
    /// ([`SnapshotPolicy::Always`]), whose payload is reused; and a
    /// [`SnapshotPolicy::Never`] store keeps the loaded events in its
    /// context until the commit, as a snapshotting store does.
    pub fn with_cache(self, cache: HotCache) -> Self {
        DynamoStore {
            cache: Some(cache),
            ..self
        }
    }

    /// The hot-aggregate cache, if the store has one.
    pub fn cache(&self) -> Option<&HotCache> {
        self.cache.as_ref()
    }

    /// The repository underneath.
    pub fn repository(&self) -> &DynamoEventRepository {
        &self.repo
    }

    /// The snapshot policy.
    pub fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    fn to_envelopes(&self, events: Vec<SerializedEvent>) -> Result<Vec<EventEnvelope<A>>> {
        events
            .into_iter()
            .map(|event| {
                // An upcast event is named by its stored key, as read.
                let mut stored_key = None;
                let event = self.upcasters.iter().fold(event, |event, upcaster| {
                    if upcaster.can_upcast(&event.event_type, &event.event_version) {
                        stored_key.get_or_insert_with(|| event_key(&event));
                        upcaster.upcast(event)
                    } else {
                        event
                    }
                });
                to_envelope(event, stored_key)
            })
            .collect()
    }

    /// Loads an aggregate in a `dynamo_es.load` span, logging the result.
    async fn load_context(&self, aggregate_id: &str) -> Result<DynamoAggregateContext<A>> {
        let span = tracing::debug_span!(
            "dynamo_es.load",
            table = %self.repo.event_table(),
            snapshot_table = %self.repo.snapshot_table(),
            aggregate_type = A::TYPE,
            aggregate_id,
            sequence = field::Empty,
            snapshot = field::Empty,
            replayed = field::Empty,
            tail = field::Empty,
            cache = field::Empty,
            error = field::Empty,
        );
        in_span("load", async {
            let span = tracing::Span::current();
            let (cached, cache) = self.load_cached(aggregate_id);
            span.record("cache", cache);
            if let Some(context) = cached {
                span.record("sequence", context.current_sequence);
                return Ok(context);
            }
            let (context, loaded) = self.load_in_span(aggregate_id).await?;
            span.record("sequence", context.current_sequence);
            span.record("snapshot", loaded.snapshot);
            span.record("replayed", loaded.replayed);
            span.record("tail", loaded.tail);
            tracing::debug!(
                table = %self.repo.event_table(),
                aggregate_type = A::TYPE,
                aggregate_id,
                sequence = context.current_sequence,
                snapshot = loaded.snapshot,
                replayed = loaded.replayed,
                tail = loaded.tail,
                "aggregate loaded"
            );
            Ok(context)
        })
        .instrument(span)
        .await
    }

    async fn commit_events(
        &self,
        events: Vec<A::Event>,
        context: DynamoAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>> {
        let in_snapshot = self
            .policy
            .events_in_snapshot(context.current_sequence, events.len());
        let snapshot = if in_snapshot == 0 {
            None
        } else {
            let state = context.state_with(
                self.repo.codec(),
                events.get(..in_snapshot).unwrap_or(&events),
            )?;
            let encoded = self
                .repo
                .encode_sealed_snapshot(A::TYPE, &context.aggregate_id, &state)
                .await?;
            Some(SnapshotUpdate {
                payload: encoded.payload,
                plain_len: encoded.plain_len,
                decoded_len: encoded.decoded_len,
                marked: true,
                current_sequence: context.current_sequence + in_snapshot,
                current_snapshot: context.current_snapshot.map_or(1, |v| v + 1),
                previous_chunks: context.base.chunks,
            })
        };
        let envelopes: Vec<EventEnvelope<A>> = events
            .into_iter()
            .zip(context.current_sequence + 1..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: context.aggregate_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
            .collect();
        let key = format!("{}:{}", A::TYPE, context.aggregate_id);
        let name = |envelope: &EventEnvelope<A>, attribute: &'static str| {
            let (sequence, key) = (envelope.sequence, key.clone());
            move || format!("event {sequence} ({attribute}) of {key}")
        };
        let serialized = envelopes
            .iter()
            .map(|envelope| {
                Ok(SerializedEvent {
                    aggregate_id: envelope.aggregate_id.clone(),
                    sequence: envelope.sequence,
                    aggregate_type: A::TYPE.to_string(),
                    event_type: envelope.payload.event_type(),
                    event_version: envelope.payload.event_version(),
                    payload: crate::codec::to_value(&envelope.payload)
                        .map_err(|err| err.naming_payload(name(envelope, "payload")))?,
                    metadata: crate::codec::to_value(&envelope.metadata)
                        .map_err(|err| err.naming_payload(name(envelope, "metadata")))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if serialized.is_empty() && snapshot.is_none() {
            return Ok(envelopes);
        }
        // The snapshot's payload and the sequence it covers, for the cache.
        let written = match (&self.cache, &snapshot) {
            (Some(_), Some(update)) => Some((update.payload.clone(), update.current_sequence)),
            _ => None,
        };
        let committed = self
            .repo
            .commit(A::TYPE, &context.aggregate_id, &serialized, snapshot)
            .await;
        let Some(cache) = &self.cache else {
            committed?;
            return Ok(envelopes);
        };
        match committed {
            Ok(outcome) => {
                self.cache_commit(
                    cache,
                    &context,
                    &envelopes,
                    written,
                    outcome.snapshot_chunks,
                );
                Ok(envelopes)
            }
            Err(err) => {
                self.forget_failed_commit(cache, &context.aggregate_id, &err);
                Err(err)
            }
        }
    }
}

/// The key of the item `event` was read from, `{type}:{id}#{sequence}`.
fn event_key(event: &SerializedEvent) -> String {
    format!(
        "{}:{}#{}",
        event.aggregate_type, event.aggregate_id, event.sequence
    )
}

/// Deserializes one (upcast) event, as cqrs-es's
/// `EventEnvelope::try_from` does, naming its item on error: `stored_key`
/// if it was upcast, else its own key.
///
/// The key only names the item in an error: formatting it for every event
/// cost about 2M instructions of a 1,000-event load (callgrind), so it is
/// built only when deserializing fails (or the event is upcast).
fn to_envelope<A: Aggregate>(
    event: SerializedEvent,
    stored_key: Option<String>,
) -> Result<EventEnvelope<A>> {
    let SerializedEvent {
        aggregate_id,
        sequence,
        aggregate_type,
        payload,
        metadata,
        ..
    } = event;
    let decoded = serde_json::from_value(payload)
        .and_then(|payload| Ok((payload, serde_json::from_value(metadata)?)));
    match decoded {
        Ok((payload, metadata)) => Ok(EventEnvelope {
            aggregate_id,
            sequence,
            payload,
            metadata,
        }),
        Err(err) => {
            let key =
                stored_key.unwrap_or_else(|| format!("{aggregate_type}:{aggregate_id}#{sequence}"));
            Err(Error::Serde(Box::new(PersistenceError::from(err)))
                .in_item(&key, crate::item::PAYLOAD))
        }
    }
}

impl<A: Aggregate> EventStore<A> for DynamoStore<A> {
    type AC = DynamoAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let events = self.repo.read_events(A::TYPE, aggregate_id, None).await?;
        Ok(self.to_envelopes(events)?)
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<DynamoAggregateContext<A>, AggregateError<A::Error>> {
        Ok(self.load_context(aggregate_id).await?)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: DynamoAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        Ok(self.commit_events(events, context, metadata).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotPolicy;

    #[test]
    fn snapshot_boundaries_match_cqrs_es() {
        // Same cases as cqrs-es's own `test_source_of_truth`.
        assert_eq!(SnapshotPolicy::Never.events_in_snapshot(5, 3), 0);
        assert_eq!(SnapshotPolicy::Always.events_in_snapshot(5, 3), 3);
        assert_eq!(SnapshotPolicy::Every(5).events_in_snapshot(5, 3), 0);
        assert_eq!(SnapshotPolicy::Every(4).events_in_snapshot(5, 3), 3);
        assert_eq!(SnapshotPolicy::Every(4).events_in_snapshot(5, 4), 3);
        assert_eq!(SnapshotPolicy::Every(4).events_in_snapshot(5, 8), 7);
        assert_eq!(SnapshotPolicy::Every(3).events_in_snapshot(0, 2), 0);
        assert_eq!(SnapshotPolicy::Every(3).events_in_snapshot(2, 1), 1);
    }
}
