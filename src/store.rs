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
//! A snapshot store's load reads the snapshot and the newest events
//! concurrently (from the snapshot the process last saw, if any), and
//! returns what a sequential load (the snapshot, then the events after it)
//! could return; an aggregate store's load reads the snapshot alone while
//! it claims to be current. The arguments are in the `load` module.
//!
//! **Invariant:** every snapshot `DynamoStore` writes is the state of the
//! events up to its `CurrentSequence`, each applied exactly once, and every
//! context it loads holds the state of the events up to its
//! `current_sequence`, built from a trusted snapshot and exactly the events
//! after it.

mod cache;
mod consistency;
mod delete;
mod hot;
mod load;
mod policy;
mod retry;

pub use cache::HotCache;
pub use consistency::{ParseReadConsistencyError, ReadConsistency};
pub use policy::SnapshotPolicy;
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
use crate::event_repository::{DynamoEventRepository, HeadClaim, SnapshotUpdate};

/// How a load went, for its log event.
struct Loaded {
    /// `none`, `used`, `untrusted` or `unreadable`.
    snapshot: &'static str,
    /// Events applied after the snapshot (or from the start).
    replayed: usize,
    /// How the events were read: `none` (no snapshot policy: one query),
    /// `current` (an aggregate store's head claimed to be current: no
    /// query), `after` (an aggregate store's query of the events after the
    /// head), `covered` (the newest events, read with the snapshot, were all
    /// the load needed), `hinted` (the same, bounded by the snapshot hint)
    /// or `fallback` (a second query read them).
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

/// The loaded state, kept apart from what `handle` may change: the stored
/// snapshot payload (or the cached state's), plus the events replayed on it.
struct Base<A: Aggregate> {
    /// The snapshot payload, still encoded (compact: a compressed payload
    /// stays compressed until a snapshot is written).
    snapshot: Option<Payload>,
    events: Vec<A::Event>,
    chunks: usize,
    /// The aggregate store's claim the stored head carried.
    claim: Option<HeadClaim>,
}

/// An encoded state: a snapshot's payload as read, or a cached state's,
/// shared with the cache (a hit copies no bytes).
enum Payload {
    Stored(Vec<u8>),
    Cached(std::sync::Arc<[u8]>),
}

impl Payload {
    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Stored(bytes) => bytes,
            Payload::Cached(bytes) => bytes,
        }
    }
}

impl<A: Aggregate> AggregateContext<A> for DynamoAggregateContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A: Aggregate> DynamoAggregateContext<A> {
    /// The loaded state, each loaded event applied exactly once: the
    /// snapshot payload decoded (once per commit), then the events.
    fn take_base_state(&mut self, codec: &Codec) -> Result<A> {
        let mut state: A = match &self.base.snapshot {
            Some(payload) => codec.decode_deserialize(payload.bytes())?,
            None => A::default(),
        };
        for event in self.base.events.drain(..) {
            state.apply(event);
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
    reads: Box<consistency::Reads>,
    /// Decoded states this store's commits left for the next load.
    handoff: Box<hot::Handoff<A>>,
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
            reads: Box::default(),
            handoff: Box::default(),
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
    /// state and the committed events (as a snapshot is, once for both) and
    /// encoded by the codec, unless the commit's snapshot already covers
    /// every event ([`SnapshotPolicy::Always`]), whose payload is reused; a
    /// [`SnapshotPolicy::Never`] store keeps the loaded events in its
    /// context until the commit, as a snapshotting store does; and the
    /// store keeps the decoded state of its last few hundred commits
    /// ([`HANDOFF_MAX`](Self::HANDOFF_MAX)) until the next load of each
    /// takes it, so a hit decodes nothing and a hot command decodes its
    /// state once, in the commit.
    ///
    /// A type with a time to live
    /// ([`DynamoEventRepository::with_expiry`]) is never cached: its state
    /// would have to expire with its oldest item, so the store keeps no
    /// cache (and says so in a `warn` log).
    pub fn with_cache(self, cache: HotCache) -> Self {
        if self.repo.expiry_of(A::TYPE).is_some() {
            tracing::warn!(
                aggregate_type = A::TYPE,
                "aggregate type with a time to live: DynamoStore keeps no hot cache for it"
            );
            return self;
        }
        DynamoStore {
            cache: Some(cache),
            ..self
        }
    }

    /// Reads the events of a load with `consistency`
    /// ([`ReadConsistency::Strong`] by default).
    ///
    /// [`ReadConsistency::Eventual`] halves the read units of the events'
    /// query of a snapshot store's load (and of an event store's replay),
    /// which then may return a state a few events behind: its commit
    /// conflicts, and the store's next load of that aggregate reads
    /// strongly, so a command run with [`execute_with_retry`] costs one
    /// retry, not an error. The snapshot and every fallback read stay
    /// strongly consistent.
    pub fn with_read_consistency(self, consistency: ReadConsistency) -> Self {
        DynamoStore {
            reads: Box::new(consistency::Reads::new(consistency)),
            ..self
        }
    }

    /// How the events of a load are read.
    pub fn read_consistency(&self) -> ReadConsistency {
        self.reads.consistency()
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
        mut context: DynamoAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>> {
        let in_snapshot = self
            .policy
            .events_in_snapshot(context.current_sequence, events.len());
        // The state after the commit, computed once (one decode of the
        // loaded snapshot at most, each event applied once) for the
        // snapshot and for the cache.
        let mut state = None;
        let mut snapshot = None;
        let mut cache_payload = None;
        if in_snapshot > 0 || (self.cache.is_some() && !events.is_empty()) {
            let mut after = context.take_base_state(self.repo.codec())?;
            let (first, rest) = events.split_at(in_snapshot.min(events.len()));
            for event in first {
                after.apply(event.clone());
            }
            if in_snapshot > 0 {
                let encoded = self
                    .repo
                    .encode_sealed_snapshot(A::TYPE, &context.aggregate_id, &after)
                    .await?;
                if self.cache.is_some() && self.repo.seals_personal_data() {
                    // The cache keeps its states in memory, opened.
                    let key = crate::item::aggregate_key(A::TYPE, &context.aggregate_id);
                    cache_payload = Some(self.repo.encode_snapshot(&key, &after)?.payload);
                }
                let current_sequence = context.current_sequence + in_snapshot;
                snapshot = Some(SnapshotUpdate {
                    payload: encoded.payload,
                    plain_len: encoded.plain_len,
                    decoded_len: encoded.decoded_len,
                    marked: true,
                    current_sequence,
                    current_snapshot: context.current_snapshot.map_or(1, |v| v + 1),
                    previous_chunks: context.base.chunks,
                    events_through: (self.policy == SnapshotPolicy::Always)
                        .then_some(current_sequence),
                });
            }
            if self.cache.is_some() {
                for event in rest {
                    after.apply(event.clone());
                }
                state = Some(after);
            }
        }
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
            (Some(_), Some(update)) => Some((
                cache_payload.unwrap_or_else(|| update.payload.clone()),
                update.current_sequence,
            )),
            _ => None,
        };
        let snapshot_at = snapshot.as_ref().map(|update| update.current_sequence);
        // Boxed: the commit's SDK futures on top of a command's would
        // overflow the stack of a test thread in debug builds.
        let committed = Box::pin(self.repo.commit(
            A::TYPE,
            &context.aggregate_id,
            &serialized,
            snapshot,
            context.base.claim,
        ))
        .await;
        match &committed {
            Ok(outcome) => {
                if let (Some(at), Some(_), SnapshotPolicy::Every(_)) =
                    (snapshot_at, outcome.snapshot_chunks, self.policy)
                {
                    let key = crate::item::aggregate_key(A::TYPE, &context.aggregate_id);
                    self.repo.hints().learn(&key, at);
                }
            }
            Err(err) => {
                if err.is_conflict() {
                    self.reads.conflicted(&context.aggregate_id);
                }
                Box::pin(self.after_conflict(&context, snapshot_at.is_some(), err)).await;
            }
        }
        let Some(cache) = &self.cache else {
            committed?;
            return Ok(envelopes);
        };
        match committed {
            Ok(outcome) => {
                let cached = hot::Committed {
                    state,
                    written,
                    snapshot_chunks: outcome.snapshot_chunks,
                };
                self.cache_commit(cache, &context, &envelopes, cached);
                Ok(envelopes)
            }
            Err(err) => {
                self.forget_failed_commit(cache, &context.aggregate_id, &err);
                Err(err)
            }
        }
    }

    /// After a failed commit from a state whose head claimed to be current
    /// and that it meant to replace: if it conflicted, removes the claim
    /// when the head is still the one loaded (another writer stored events
    /// without removing it), so the retry reads the events. (A commit that
    /// replaced no head removed the claim before writing.)
    async fn after_conflict(
        &self,
        context: &DynamoAggregateContext<A>,
        replacing_head: bool,
        err: &Error,
    ) {
        let Some(claim) = context.base.claim else {
            return;
        };
        if !replacing_head || !err.is_conflict() {
            return;
        }
        if let Err(failed) = self
            .repo
            .drop_claim(A::TYPE, &context.aggregate_id, claim)
            .await
        {
            tracing::warn!(
                aggregate_type = A::TYPE,
                aggregate_id = %context.aggregate_id,
                error = %failed,
                "after a conflict, the snapshot head's claim could not be removed; \
                 loads may keep returning the state at the claim until it is"
            );
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
