//! [`Dispatcher`]: stream records to projections, exactly in stream order.
//! Consecutive events of one aggregate go to each projection in one call;
//! nothing is reordered, so each aggregate's events arrive in sequence order.
//! An aggregate's tombstone (its deletion) goes to
//! [`Projection::deleted`] in its place in the stream.
//! A failure reports the first record not known to be applied to every
//! projection, and every record before it is.
//!
//! Before decoding a batch, the dispatcher loads the zstd dictionaries its
//! events reference ([`EventDecoder::prefetch`]), so projections read
//! dictionary-compressed events as every other read path does; a batch
//! referencing none makes no request. A referenced dictionary that is not
//! stored (or is corrupt) is a decode error of each record referencing it
//! ([`Error::Decode`] naming the item key and the dictionary id), under the
//! [`DecodeErrorPolicy`]; failing to read one (a DynamoDB error) fails the
//! batch at its first record whatever the policy.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cqrs_es::{Aggregate, Query};
use tracing::{field, Instrument};

use super::batch::{BatchCommit, Run, ShardPosition};
use super::{ChangeRecord, Error, EventDecoder, Projection, QueryProjection};

/// What the dispatcher does with a record it cannot decode
/// ([`Error::Decode`], [`Error::MissingImage`]), including one whose
/// dictionary is not stored.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecodeErrorPolicy {
    /// Stop at the record: the dispatch fails there, and it is retried until
    /// the cause is fixed (an upcaster deployed, a codec feature enabled).
    #[default]
    Stop,
    /// Log the error, report it in [`DispatchReport::skipped`], and go on:
    /// the projections never see that event.
    SkipAndReport,
}

/// What a successful [`Dispatcher::dispatch`] did.
#[derive(Debug, Default)]
pub struct DispatchReport {
    /// Records in the batch.
    pub records: usize,
    /// Events dispatched (records that were events of the aggregate type).
    pub events: usize,
    /// Decode errors skipped under [`DecodeErrorPolicy::SkipAndReport`].
    pub skipped: Vec<Error>,
    /// The largest lag in the batch: now minus the oldest record's creation
    /// time (`None` if no record carried one).
    pub max_lag: Option<Duration>,
    /// The last record whose shard position a
    /// [`Transactional`](super::Transactional) projection committed with
    /// its writes (`None` if it committed none, or there is none).
    pub committed: Option<String>,
}

/// A failed [`Dispatcher::dispatch`].
#[derive(Debug)]
pub struct DispatchFailure {
    /// The index of the first record not known to be applied: every record
    /// before it was applied by every projection; retry from this one.
    pub first_failed: usize,
    /// Why.
    pub error: Error,
}

impl std::fmt::Display for DispatchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dispatch failed at record {}: {}",
            self.first_failed, self.error
        )
    }
}

impl std::error::Error for DispatchFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Dispatches stream records, in order, to every projection.
///
/// Build the decoder with [`EventDecoder::from_repository`] (or give it
/// [`with_dictionaries`](EventDecoder::with_dictionaries)) if events may be
/// written with a zstd dictionary.
///
/// ```
/// # use cqrs_es::{Aggregate, Query};
/// use dynamo_es::projection::{DecodeErrorPolicy, Dispatcher, EventDecoder};
/// use dynamo_es::Codec;
///
/// fn dispatcher<A: Aggregate + 'static>(query: impl Query<A> + 'static) -> Dispatcher<A> {
///     Dispatcher::new(EventDecoder::new(Codec::default()))
///         .with_query(query)
///         .with_decode_error_policy(DecodeErrorPolicy::Stop)
/// }
/// ```
pub struct Dispatcher<A: Aggregate> {
    decoder: EventDecoder<A>,
    projections: Vec<Arc<dyn Projection<A>>>,
    transactional: Option<Arc<dyn BatchCommit<A>>>,
    policy: DecodeErrorPolicy,
}

impl<A: Aggregate> Clone for Dispatcher<A> {
    fn clone(&self) -> Self {
        Dispatcher {
            decoder: self.decoder.clone(),
            projections: self.projections.clone(),
            transactional: self.transactional.clone(),
            policy: self.policy,
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for Dispatcher<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("decoder", &self.decoder)
            .field("projections", &self.projections.len())
            .field("transactional", &self.transactional.is_some())
            .field("policy", &self.policy)
            .finish()
    }
}

impl<A: Aggregate + 'static> Dispatcher<A> {
    /// A dispatcher with no projections, stopping on decode errors.
    pub fn new(decoder: EventDecoder<A>) -> Self {
        Dispatcher {
            decoder,
            projections: Vec::new(),
            transactional: None,
            policy: DecodeErrorPolicy::default(),
        }
    }

    /// Adds a projection; each gets every event, in the order added.
    pub fn with_projection(mut self, projection: impl Projection<A> + 'static) -> Self {
        self.projections.push(Arc::new(projection));
        self
    }

    /// Sets the dispatcher's transactional projection (one per dispatcher:
    /// a second call replaces the first). It gets every event after the
    /// other projections applied it, a batch at a time, and commits its
    /// writes with the per-aggregate sequences and, from the
    /// [`Projector`](super::Projector), the shard's position, in one
    /// transaction per part of the batch (see [`Transactional`]).
    ///
    /// [`Transactional`]: super::Transactional
    pub fn with_transactional<P>(mut self, projection: super::Transactional<A, P>) -> Self
    where
        P: super::TransactionalProjection<A> + 'static,
    {
        self.transactional = Some(Arc::new(projection));
        self
    }

    /// Adds a cqrs-es query (as a [`QueryProjection`], which cannot fail).
    pub fn with_query(self, query: impl Query<A> + 'static) -> Self {
        self.with_projection(QueryProjection(query))
    }

    /// Sets what happens to records that cannot be decoded.
    pub fn with_decode_error_policy(self, policy: DecodeErrorPolicy) -> Self {
        Dispatcher { policy, ..self }
    }

    /// The decoder.
    pub fn decoder(&self) -> &EventDecoder<A> {
        &self.decoder
    }

    /// Dispatches `records` in order, in a `dynamo_es.projection.dispatch`
    /// span carrying the records, events, dispatch time and lag.
    ///
    /// On failure, [`DispatchFailure::first_failed`] is the first record not
    /// known to be applied: the start of the aggregate run that failed, or
    /// the record that could not be decoded. Projections that accepted that
    /// run before another failed see it again on retry (at-least-once).
    pub async fn dispatch(
        &self,
        records: &[ChangeRecord],
    ) -> Result<DispatchReport, DispatchFailure> {
        self.dispatch_at(records, None).await
    }

    /// [`dispatch`](Self::dispatch) by a process that reads a shard under
    /// `lease` itself: a transactional projection commits the lease's
    /// position (its checkpoint, conditional on the owner and the previous
    /// checkpoint) with its writes, and `lease.checkpoint` follows the last
    /// part committed. Without a transactional projection nothing is
    /// checkpointed: call [`CheckpointStore::checkpoint`] as usual.
    ///
    /// [`CheckpointStore::checkpoint`]: super::CheckpointStore::checkpoint
    pub async fn dispatch_leased(
        &self,
        records: &[ChangeRecord],
        checkpoints: &super::CheckpointStore,
        lease: &mut super::Lease,
    ) -> Result<DispatchReport, DispatchFailure> {
        let report = self
            .dispatch_at(records, Some(checkpoints.position(lease)))
            .await?;
        if report.committed.is_some() {
            lease.checkpoint.clone_from(&report.committed);
        }
        Ok(report)
    }

    /// [`dispatch`](Self::dispatch), a transactional projection committing
    /// `position` (a shard's checkpoint) with its writes.
    pub(crate) async fn dispatch_at(
        &self,
        records: &[ChangeRecord],
        position: Option<ShardPosition>,
    ) -> Result<DispatchReport, DispatchFailure> {
        let span = tracing::info_span!(
            "dynamo_es.projection.dispatch",
            aggregate_type = A::TYPE,
            shard = records.first().map(|r| r.shard_id.as_str()).unwrap_or(""),
            records = records.len(),
            events = field::Empty,
            skipped = field::Empty,
            dispatch_ms = field::Empty,
            lag_ms = field::Empty,
            first_failed = field::Empty,
        );
        let started = Instant::now();
        let result = self
            .dispatch_all(records, position)
            .instrument(span.clone())
            .await;
        span.record("dispatch_ms", elapsed_ms(started.elapsed()));
        match &result {
            Ok(report) => {
                span.record("events", report.events);
                span.record("skipped", report.skipped.len());
                if let Some(lag) = report.max_lag {
                    span.record("lag_ms", elapsed_ms(lag));
                }
                span.in_scope(|| tracing::debug!(events = report.events, "batch dispatched"));
            }
            Err(failure) => {
                span.record("first_failed", failure.first_failed);
                span.in_scope(|| {
                    tracing::warn!(
                        first_failed = failure.first_failed,
                        error = %failure.error,
                        "batch dispatch failed"
                    )
                });
            }
        }
        result
    }

    async fn dispatch_all(
        &self,
        records: &[ChangeRecord],
        position: Option<ShardPosition>,
    ) -> Result<DispatchReport, DispatchFailure> {
        let mut runs = Vec::new();
        let mut report = report_of(records);
        let stopped = self
            .apply_records(records, &mut runs, &mut report)
            .await
            .err();
        if let Some(transactional) = &self.transactional {
            let end = stopped.as_ref().map_or(records.len(), |f| f.first_failed);
            match transactional.commit(records, &runs, end, position).await {
                Ok(committed) => report.committed = committed,
                Err((first_failed, error)) => {
                    return Err(DispatchFailure {
                        first_failed,
                        error,
                    })
                }
            }
        }
        match stopped {
            Some(failure) => Err(failure),
            None => Ok(report),
        }
    }

    /// Decodes `records` and applies each run to the plain projections,
    /// keeping the runs for the transactional one (if any).
    async fn apply_records(
        &self,
        records: &[ChangeRecord],
        runs: &mut Vec<Run<A>>,
        report: &mut DispatchReport,
    ) -> Result<(), DispatchFailure> {
        let now = SystemTime::now();
        let unloadable = self
            .decoder
            .load_dictionaries(records)
            .await
            .map_err(|error| DispatchFailure {
                first_failed: 0,
                error,
            })?;
        let mut run: Option<Run<A>> = None;
        for (index, record) in records.iter().enumerate() {
            if let Some(created) = record.created {
                let lag = now.duration_since(created).unwrap_or_default();
                report.max_lag = Some(report.max_lag.map_or(lag, |max| max.max(lag)));
            }
            let decoded = self
                .decoder
                .deletion(record)
                .and_then(|deleted| match deleted {
                    Some(deleted) => Ok(Some(Decoded::Deleted(deleted))),
                    None => self
                        .decoder
                        .decode_loaded(record, &unloadable)
                        .map(|event| event.map(Decoded::Event)),
                });
            let event = match decoded {
                Ok(Some(Decoded::Event(event))) => event,
                Ok(Some(Decoded::Deleted(deleted))) => {
                    if let Some(run) = run.take() {
                        self.apply(run, report, runs).await?;
                    }
                    self.apply_deletion(&deleted, index).await?;
                    if self.transactional.is_some() {
                        runs.push(Run {
                            first_record: index,
                            aggregate_id: deleted.aggregate_id,
                            events: Vec::new(),
                            deleted: Some(deleted.last_sequence),
                        });
                    }
                    continue;
                }
                Ok(None) => continue,
                Err(error) if self.policy == DecodeErrorPolicy::SkipAndReport => {
                    tracing::warn!(
                        sequence_number = %record.sequence_number,
                        %error,
                        "skipping a record that cannot be decoded"
                    );
                    report.skipped.push(error);
                    continue;
                }
                Err(error) => {
                    if let Some(run) = run.take() {
                        self.apply(run, report, runs).await?;
                    }
                    return Err(DispatchFailure {
                        first_failed: index,
                        error,
                    });
                }
            };
            match &mut run {
                Some(current) if current.aggregate_id == event.aggregate_id => {
                    current.events.push(event);
                }
                _ => {
                    if let Some(done) = run.replace(Run {
                        first_record: index,
                        aggregate_id: event.aggregate_id.clone(),
                        events: vec![event],
                        deleted: None,
                    }) {
                        self.apply(done, report, runs).await?;
                    }
                }
            }
        }
        if let Some(run) = run {
            self.apply(run, report, runs).await?;
        }
        Ok(())
    }

    /// Tells every plain projection that an aggregate was deleted (the
    /// transactional one gets it as a run of its own, committed in order).
    async fn apply_deletion(
        &self,
        deleted: &super::DeletedAggregate,
        index: usize,
    ) -> Result<(), DispatchFailure> {
        for projection in &self.projections {
            projection
                .deleted(&deleted.aggregate_id, deleted.last_sequence)
                .await
                .map_err(|error| DispatchFailure {
                    first_failed: index,
                    error,
                })?;
        }
        tracing::debug!(
            aggregate_id = %deleted.aggregate_id,
            last_sequence = deleted.last_sequence,
            "aggregate deletion dispatched"
        );
        Ok(())
    }

    /// Applies one run to every plain projection, and keeps it for the
    /// transactional one.
    async fn apply(
        &self,
        run: Run<A>,
        report: &mut DispatchReport,
        runs: &mut Vec<Run<A>>,
    ) -> Result<(), DispatchFailure> {
        for projection in &self.projections {
            projection
                .project(&run.aggregate_id, &run.events)
                .await
                .map_err(|error| DispatchFailure {
                    first_failed: run.first_record,
                    error,
                })?;
        }
        report.events += run.events.len();
        if self.transactional.is_some() {
            runs.push(run);
        }
        Ok(())
    }
}

/// A record the dispatcher passes on: an event, or an aggregate's deletion.
enum Decoded<A: Aggregate> {
    Event(cqrs_es::EventEnvelope<A>),
    Deleted(super::DeletedAggregate),
}

fn report_of(records: &[ChangeRecord]) -> DispatchReport {
    DispatchReport {
        records: records.len(),
        ..DispatchReport::default()
    }
}

fn elapsed_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
