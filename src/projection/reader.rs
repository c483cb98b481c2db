//! Reading one leased shard: iterator, `GetRecords` loop, dispatch,
//! checkpoint, heartbeat, and the shard's end.
//!
//! **Invariant:** a batch's last sequence number is checkpointed only after
//! the whole batch was dispatched (at-least-once); a shard without a
//! checkpoint opens at its first record or, if that is gone, at the trim
//! horizon only if the oldest record left predates the point from which
//! the projection wants the shard's records, or none is left and the shard
//! was closed at that point (see `ShardReader::horizon`; else
//! [`Error::Trimmed`]), never at `LATEST`; the only records ever passed over are a leading run
//! of records created before the run's `start_after`, on a shard opened
//! without a checkpoint; data trimmed before the reader got to it is
//! [`Error::Trimmed`], raised before the batch after it is dispatched; the
//! lease is renewed
//! while the reader reads, waits and dispatches (see [`super::heartbeat`]),
//! and a lost lease, or one not renewed within its duration, stops the
//! reader at once, abandoning a dispatch in progress, without a checkpoint;
//! only one batch per shard is in memory at a time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use cqrs_es::Aggregate;
use tokio::sync::watch;
use tracing::{field, Instrument};

use super::heartbeat::Heartbeat;
use super::lag::{Batch, LagHandle};
use super::shards::Opening;
use super::{ChangeRecord, Dispatcher, Error};
use super::{CheckpointStore, Lease};

/// Where a new projection starts reading the stream.
///
/// It applies to the projection's first start: the projector records it,
/// with the time and the shards it started from, in the checkpoint table,
/// and every later start (of any projector of the projection) keeps it.
/// Either way, a shard created later (a split, a rollover) is read from its
/// first record once its parent was read to its end, and a shard reopened
/// before its first checkpoint (after a restart, a takeover, an expired
/// iterator) loses nothing: if records it may have been given were trimmed
/// meanwhile, the projector stops with [`Error::Trimmed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartPosition {
    /// At the oldest record the stream still holds (the last 24 hours).
    #[default]
    TrimHorizon,
    /// From the moment the projection first started: records created
    /// before it are skipped, by their `ApproximateCreationDateTime`
    /// (DynamoDB's clock, rounded down to the second) against the
    /// projector's clock at its first start less 5 seconds. So records
    /// written up to about 5 seconds before the start may be dispatched
    /// too, and none written after it is skipped unless the projector's
    /// clock ran more than 5 seconds ahead of DynamoDB's.
    Latest,
}

/// The settings a reader runs with (set through the projector's builders).
#[derive(Debug, Clone)]
pub(crate) struct ReaderSettings {
    pub batch_size: i32,
    pub idle_min: Duration,
    pub idle_max: Duration,
    pub heartbeat: Duration,
    pub start: StartPosition,
    pub dispatch_attempts: u32,
    /// On a shard opened without a checkpoint, the leading records created
    /// before this are skipped (a finished rebuild covered them, or the
    /// projection started later with [`StartPosition::Latest`]). Its closed
    /// shards are those described by the finished rebuild before its
    /// marker, or by the first start of a `Latest` projection: one whose
    /// every record was trimmed lost nothing wanted.
    pub start_after: Option<Cutoff>,
    /// When the projection's origin started, and the shards closed then: a
    /// root opened for the first time (see [`Lease::created`]) whose first
    /// record is gone is read from the trim horizon only if the oldest
    /// record left was created before it (without a `start_after`).
    pub origin: Cutoff,
}

/// A moment, and the shards that were closed at it (described before it
/// was taken): each of those holds only records created before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cutoff {
    /// The moment.
    pub at: SystemTime,
    /// The shards closed at it.
    pub closed: HashSet<String>,
}

impl Cutoff {
    /// No moment: before every record, with no shard closed.
    pub fn epoch() -> Self {
        Cutoff {
            at: SystemTime::UNIX_EPOCH,
            closed: HashSet::new(),
        }
    }

    /// What the first record left of `shard_id` must show for the records
    /// trimmed before it to be ones created before this moment.
    fn guard(&self, shard_id: &str) -> Guard {
        Guard {
            before: self.at,
            closed_then: self.closed.contains(shard_id),
        }
    }
}

/// What the first record read from a shard opened at the trim horizon must
/// show for the records trimmed before it to be ones the projection does
/// not want (see [`ShardReader::horizon`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guard {
    /// The first record left must have been created before this.
    pub before: SystemTime,
    /// The shard was closed by then: all its records predate `before`, so
    /// it may have no record left at all.
    pub closed_then: bool,
}

/// How a reader ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReaderEnd {
    /// The shard was closed and all its records processed: marked finished.
    Finished,
    /// Stopped on request: checkpointed and released.
    Stopped,
    /// Another owner took the lease: stopped without a checkpoint.
    LeaseLost,
}

/// Reads one shard under its lease.
pub(crate) struct ShardReader<A: Aggregate> {
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub checkpoints: CheckpointStore,
    pub dispatcher: Dispatcher<A>,
    pub settings: Arc<ReaderSettings>,
    pub lag: LagHandle,
    pub stop: watch::Receiver<bool>,
    /// Where the shard starts if it has no checkpoint.
    pub opening: Opening,
    /// Still skipping the leading records created before
    /// [`ReaderSettings::start_after`] (set by [`run`](Self::run)).
    pub skipping: bool,
    /// Read from the trim horizon because the shard's first record is
    /// gone: the first record read must have been created before the
    /// guard's time (see [`horizon`](Self::horizon)), or the shard must
    /// have been closed then, else records the projection wanted were
    /// trimmed.
    pub guard: Option<Guard>,
    /// The shard is opened for the first time by the projection (this
    /// reader's lease created its item) and no record was read from it yet.
    pub first_open: bool,
}

/// The first record read from a shard opened at the trim horizon is
/// recorded (`OpenedAt`) before it is dispatched.
fn opened_at_horizon(lease: &Lease, guard: Option<Guard>) -> bool {
    guard.is_some() && lease.checkpoint.is_none() && lease.opened_at().is_none()
}

/// What one `GetRecords` call gave.
enum Page {
    Records(Vec<ChangeRecord>, Option<String>),
    Expired,
}

impl<A: Aggregate + 'static> ShardReader<A> {
    /// Reads the shard of `lease` until it ends, the lease is lost, or a
    /// stop is requested.
    pub async fn run(mut self, mut lease: Lease) -> Result<ReaderEnd, Error> {
        let shard_id = lease.shard.shard_id.clone();
        self.skipping = lease.checkpoint.is_none() && self.settings.start_after.is_some();
        self.first_open = lease.created();
        self.lag.owned(&shard_id, lease.checkpoint.as_deref());
        let end = self.read(&mut lease).await;
        let finished = matches!(end, Ok(ReaderEnd::Finished));
        self.lag.released(&shard_id, finished);
        match end {
            Ok(ReaderEnd::LeaseLost) | Err(Error::LeaseLost { .. }) => Ok(ReaderEnd::LeaseLost),
            Ok(end) => {
                self.checkpoints.release(lease).await?;
                Ok(end)
            }
            Err(err) => {
                // Released, so another projector need not wait for expiry;
                // the error is what the caller needs to hear.
                let _ = self.checkpoints.release(lease).await;
                Err(err)
            }
        }
    }

    async fn read(&mut self, lease: &mut Lease) -> Result<ReaderEnd, Error> {
        let mut beat = Heartbeat::new(&self.checkpoints, lease, self.settings.heartbeat);
        let (first, guard) = self.renewing_iterator(lease, &mut beat).await?;
        self.guard = guard;
        let mut iterator = Some(first);
        let mut idle = self.settings.idle_min;
        loop {
            if *self.stop.borrow() {
                return Ok(ReaderEnd::Stopped);
            }
            beat.renew_if_due(&self.checkpoints, lease).await?;
            let Some(current) = iterator.take() else {
                self.checkpoints.finish(lease).await?;
                return Ok(ReaderEnd::Finished);
            };
            let started = Instant::now();
            let shard = lease.clone();
            let page = beat
                .keep_alive(&self.checkpoints, lease, self.get_records(&shard, current))
                .await??;
            let (records, next) = match page {
                Page::Records(records, next) => (records, next),
                Page::Expired => {
                    let (renewed, guard) = self.renewing_iterator(lease, &mut beat).await?;
                    self.guard = guard;
                    iterator = Some(renewed);
                    continue;
                }
            };
            if let (true, Some(first)) = (opened_at_horizon(lease, self.guard), records.first()) {
                if first
                    .created
                    .is_some_and(|c| self.guard.is_some_and(|g| c < g.before))
                {
                    let first = first.sequence_number.clone();
                    self.checkpoints.mark_opened(lease, &first).await?;
                }
            }
            if let Some(guard) = self.guard {
                match records.first() {
                    // Every record trimmed was created before it: none
                    // was the projection's to read.
                    Some(first) if first.created.is_some_and(|c| c < guard.before) => {
                        self.guard = None;
                    }
                    // Records the projection wanted were trimmed first.
                    Some(_) => return Err(trimmed(lease)),
                    // Closed before the projection wanted its records: an
                    // empty page (all trimmed, or a stretch without
                    // records before the first one left) loses nothing.
                    None if guard.closed_then => {
                        if next.is_none() {
                            self.guard = None;
                        }
                    }
                    // Nothing left to show when the trimmed records were
                    // created: they may be ones the projection wanted (a
                    // shard that closed, or still takes records, after that
                    // point). DynamoDB keeps records 24 hours and closes a
                    // shard within hours, so this is a shard whose records
                    // the projection wanted and retention took.
                    None => return Err(trimmed(lease)),
                }
            }
            // Reopened from here on (after an expired iterator), the shard
            // may have lost records this reader was given.
            self.first_open &= records.is_empty();
            let caught_up = records.is_empty() && next.is_some();
            self.lag
                .polled(started.elapsed(), caught_up, &lease.shard.shard_id);
            iterator = next;
            if caught_up {
                let waited = idle_for(&mut self.stop, idle);
                if beat.keep_alive(&self.checkpoints, lease, waited).await? {
                    return Ok(ReaderEnd::Stopped);
                }
                idle = (idle * 2).min(self.settings.idle_max);
                continue;
            }
            idle = self.settings.idle_min;
            let read = started.elapsed();
            if !records.is_empty() && !self.process(lease, &mut beat, records, read).await? {
                return Ok(ReaderEnd::Stopped);
            }
        }
    }

    /// [`iterator`](Self::iterator) under the heartbeat.
    async fn renewing_iterator(
        &self,
        lease: &mut Lease,
        beat: &mut Heartbeat,
    ) -> Result<(String, Option<Guard>), Error> {
        let shard = lease.clone();
        beat.keep_alive(&self.checkpoints, lease, self.iterator(&shard))
            .await?
    }

    /// A shard iterator after the lease's checkpoint, or where the shard
    /// opens if it has none: at its first record (or, if a reader opened it
    /// at the trim horizon before, at the first record that reader read,
    /// its `OpenedAt`); if that is gone, at the
    /// trim horizon with the [`horizon`](Self::horizon) the first record
    /// read must predate (returned), or [`Error::Trimmed`] if no record
    /// trimmed from it could be one the projection does not want.
    async fn iterator(&self, lease: &Lease) -> Result<(String, Option<Guard>), Error> {
        let (first, root) = match (&lease.checkpoint, &self.opening) {
            (None, Opening::Root(first)) => (first, true),
            (None, Opening::First(first @ Some(_))) => (first, false),
            _ => return Ok((self.iterator_at(lease, Some(&self.opening)).await?, None)),
        };
        // Where a reader opening it at the trim horizon started, if one did.
        let first = lease
            .opened_at()
            .map(str::to_string)
            .or_else(|| first.clone());
        if let Some(first) = first {
            let at = Opening::First(Some(first));
            match self.iterator_at(lease, Some(&at)).await {
                Ok(iterator) => return Ok((iterator, None)),
                Err(Error::Trimmed { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let Some(guard) = self.horizon(root, &lease.shard.shard_id) else {
            return Err(trimmed(lease));
        };
        Ok((self.iterator_at(lease, None).await?, Some(guard)))
    }

    /// Before when the records trimmed from the start of a shard opened
    /// without a checkpoint were all created, at most, for none of them to
    /// be one the projection wants: the finished rebuild's `start_after`
    /// (its scan covered them) or a `Latest` projection's (it skips them);
    /// else, for a root opened for the first time, the origin's start
    /// (records trimmed before the projection started were never its to
    /// read). `None` otherwise: the projection wanted every record of a
    /// child whose parent it read, and of a root a reader opened before (it
    /// stopped before its first checkpoint, and may have been given the
    /// records now trimmed). The guard also says whether `shard_id` was
    /// closed at that point (then its records all predate it, and it may
    /// have none left).
    fn horizon(&self, root: bool, shard_id: &str) -> Option<Guard> {
        match &self.settings.start_after {
            Some(cutoff) => Some(cutoff.guard(shard_id)),
            None if root && self.first_open => Some(self.settings.origin.guard(shard_id)),
            None => None,
        }
    }

    /// A shard iterator after the lease's checkpoint, else at `opening`
    /// (`None`: the trim horizon).
    async fn iterator_at(&self, lease: &Lease, opening: Option<&Opening>) -> Result<String, Error> {
        let shard = &lease.shard;
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(&shard.stream_arn)
            .shard_id(&shard.shard_id);
        let request = match (&lease.checkpoint, opening) {
            (Some(sequence), _) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            (None, None | Some(Opening::Root(_))) => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, Some(Opening::First(Some(first)))) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .sequence_number(first),
            (None, Some(Opening::First(None))) => {
                return Err(Error::Streams {
                    operation: "DescribeStream",
                    target: shard.shard_id.clone(),
                    message: "the shard has no StartingSequenceNumber: cannot read it \
                              from its first record"
                        .into(),
                })
            }
        };
        match request.send().await {
            Ok(answer) => answer.shard_iterator.ok_or_else(|| Error::Streams {
                operation: "GetShardIterator",
                target: shard.shard_id.clone(),
                message: "no iterator in the answer".into(),
            }),
            // Trimmed data, or the whole shard aged out of the stream.
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_trimmed_data_access_exception() || e.is_resource_not_found_exception()
                }) =>
            {
                Err(trimmed(lease))
            }
            Err(err) => Err(Error::from_streams(
                "GetShardIterator",
                &shard.shard_id,
                err,
            )),
        }
    }

    async fn get_records(&self, lease: &Lease, iterator: String) -> Result<Page, Error> {
        let shard_id = &lease.shard.shard_id;
        let answer = self
            .streams
            .get_records()
            .shard_iterator(iterator)
            .limit(self.settings.batch_size)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) => {
                let service = err.as_service_error();
                if service.is_some_and(|e| e.is_expired_iterator_exception()) {
                    tracing::debug!(shard = %shard_id, "shard iterator expired; renewing it from the checkpoint");
                    return Ok(Page::Expired);
                }
                if service.is_some_and(|e| {
                    e.is_trimmed_data_access_exception() || e.is_resource_not_found_exception()
                }) {
                    return Err(trimmed(lease));
                }
                return Err(Error::from_streams("GetRecords", shard_id, err));
            }
        };
        let records = answer
            .records
            .unwrap_or_default()
            .into_iter()
            .map(|record| ChangeRecord::from_stream(shard_id, record))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::Records(records, answer.next_shard_iterator))
    }

    /// Dispatches one batch and checkpoints its last record; `false` if a
    /// stop was requested while a failed dispatch waited to be retried.
    async fn process(
        &mut self,
        lease: &mut Lease,
        beat: &mut Heartbeat,
        records: Vec<ChangeRecord>,
        read: Duration,
    ) -> Result<bool, Error> {
        let Some((last, last_created)) = records
            .last()
            .map(|r| (r.sequence_number.clone(), r.created))
        else {
            return Ok(true);
        };
        let span = tracing::info_span!(
            "dynamo_es.projection.batch",
            shard = %lease.shard.shard_id,
            records = records.len(),
            read_ms = millis(read),
            skipped_before_rebuild = field::Empty,
            events = field::Empty,
            dispatch_ms = field::Empty,
            checkpoint_ms = field::Empty,
            lag_ms = field::Empty,
        );
        let mut batch = Batch {
            shard_id: lease.shard.shard_id.clone(),
            last_sequence: last.clone(),
            newest_created: records.iter().filter_map(|r| r.created).max(),
            records: records.len() as u64,
            events: 0,
            dispatch: Duration::ZERO,
            checkpoint: Duration::ZERO,
        };
        let records = self.after_rebuild(records, &span);
        let started = Instant::now();
        let dispatched = self
            .dispatch(lease, beat, &records, &mut batch)
            .instrument(span.clone())
            .await?;
        batch.dispatch = started.elapsed();
        if !dispatched {
            return Ok(false);
        }
        let started = Instant::now();
        if lease.checkpoint.as_deref() != Some(last.as_str()) {
            self.checkpoints
                .checkpoint_at(lease, &last, last_created)
                .await?;
        }
        batch.checkpoint = started.elapsed();
        span.record("events", batch.events);
        span.record("dispatch_ms", millis(batch.dispatch));
        span.record("checkpoint_ms", millis(batch.checkpoint));
        if let Some(created) = batch.newest_created {
            span.record("lag_ms", millis(super::lag::lag_since(created)));
        }
        span.in_scope(|| tracing::debug!(checkpoint = %last, "batch checkpointed"));
        self.lag.checkpointed(&batch);
        Ok(true)
    }

    /// Drops the leading records created before the start marker, on a
    /// shard opened without a checkpoint (a finished rebuild covered them,
    /// or the projection started after them with
    /// [`StartPosition::Latest`]); from the first record at or after it
    /// (or of unknown time) on, nothing is skipped.
    fn after_rebuild(
        &mut self,
        mut records: Vec<ChangeRecord>,
        span: &tracing::Span,
    ) -> Vec<ChangeRecord> {
        let Some(start_after) = (self.settings.start_after.as_ref())
            .filter(|_| self.skipping)
            .map(|cutoff| cutoff.at)
        else {
            return records;
        };
        let before = records
            .iter()
            .take_while(|r| r.created.is_some_and(|created| created < start_after))
            .count();
        if before < records.len() {
            self.skipping = false;
        }
        records.drain(..before);
        span.record("skipped_before_rebuild", before);
        records
    }

    /// Dispatches `records` under the heartbeat, retrying what failed
    /// (checkpointing what was done first) up to the configured attempts;
    /// `false` if a stop was requested meanwhile. A lost lease abandons the
    /// dispatch ([`Error::LeaseLost`]).
    async fn dispatch(
        &mut self,
        lease: &mut Lease,
        beat: &mut Heartbeat,
        records: &[ChangeRecord],
        batch: &mut Batch,
    ) -> Result<bool, Error> {
        let mut from = 0;
        let mut attempt = 1;
        let mut delay = self.settings.idle_min;
        loop {
            let rest = records.get(from..).unwrap_or_default();
            let position = self.checkpoints.position(lease);
            let dispatched = self.dispatcher.dispatch_at(rest, Some(position));
            let dispatched = beat.keep_alive(&self.checkpoints, lease, dispatched);
            let failure = match dispatched.await? {
                Ok(report) => {
                    batch.events += report.events as u64;
                    if report.committed.is_some() {
                        // A transactional projection committed it.
                        lease.checkpoint = report.committed;
                    }
                    return Ok(true);
                }
                Err(failure) => failure,
            };
            if failure.first_failed > 0 {
                from += failure.first_failed;
                if let Some(done) = records.get(from - 1) {
                    let (sequence, created) = (&done.sequence_number, done.created);
                    self.checkpoints
                        .checkpoint_at(lease, sequence, created)
                        .await?;
                }
            }
            if attempt >= self.settings.dispatch_attempts {
                return Err(failure.error);
            }
            tracing::warn!(attempt, error = %failure.error, "dispatch failed; retrying from the first record not applied");
            attempt += 1;
            let waited = idle_for(&mut self.stop, delay);
            if beat.keep_alive(&self.checkpoints, lease, waited).await? {
                return Ok(false);
            }
            delay = (delay * 2).min(self.settings.idle_max);
        }
    }
}

/// Sleeps `idle` unless a stop is requested first (then `true`).
async fn idle_for(stop: &mut watch::Receiver<bool>, idle: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(idle) => false,
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}

fn trimmed(lease: &Lease) -> Error {
    Error::Trimmed {
        stream_arn: lease.shard.stream_arn.clone(),
        shard_id: lease.shard.shard_id.clone(),
        checkpoint: lease.checkpoint.clone().unwrap_or_else(|| "none".into()),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
