//! [`Rebuild`]: a projection rebuilt from the events table, then handed to
//! the live stream with no gap.
//!
//! **Invariant:** every event committed before the rebuild's start marker
//! (T0 minus the safety margin) is in its scan, and every event committed
//! after it is on the stream after the marker, so the scan and a projector
//! started afterwards together see every event; an event near T0 may be
//! seen by both (an overlap of at most the margin plus the scan's length).
//! Why is argued on [`Rebuild`]. With a feed ([`Rebuild::with_feed`]) the
//! scan is replaced by a catch-up of the `EventsBySlice` index until every
//! slice's watermark passes T0, which dispatches every event committed
//! before T0 by its writer's clock.
//!
//! Per-aggregate order: the scan yields each aggregate's events in
//! sequence order (all of them in one segment, see `stream::scan`); pages
//! of one segment are dispatched one after the other by that segment's
//! worker, and segments hold disjoint aggregates, so each projection sees
//! each aggregate's events in order.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::Client;
use cqrs_es::Aggregate;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::checkpoint::RebuildMarker;
use super::feed::{FeedPositions, FeedProjector, FeedStart, SliceReader};
use super::fields::{millis, time_of};
use super::{ChangeKind, ChangeRecord, CheckpointStore, Dispatcher, Error, Image};
use crate::item::{Item, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID};
use crate::stream::{key_prefix_scan, parallel_scan, ParallelScan};

/// The default [safety margin](Rebuild::with_safety_margin).
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(300);

/// The default number of [scan segments](Rebuild::with_segments).
pub const DEFAULT_REBUILD_SEGMENTS: u32 = 4;

/// How far a rebuild got, reported after every dispatched page.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebuildProgress {
    /// Scan pages dispatched.
    pub pages: u64,
    /// Items read (events of the aggregate type).
    pub items: u64,
    /// Events dispatched to the projections.
    pub events: u64,
    /// Read capacity the scan consumed so far.
    pub consumed_capacity: f64,
    /// Time since the rebuild started.
    pub elapsed: Duration,
}

/// What a finished rebuild did.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    /// T0: when it started, before the scan.
    pub started_at: SystemTime,
    /// The marker written: T0 minus the safety margin. Projectors skip
    /// stream records created before it on shards without a checkpoint.
    pub start_after: SystemTime,
    /// The totals.
    pub progress: RebuildProgress,
    /// Decode errors skipped (with
    /// [`DecodeErrorPolicy::SkipAndReport`](super::DecodeErrorPolicy)).
    pub skipped: Vec<String>,
    /// The shards whose checkpoints predated the rebuild and were deleted:
    /// projectors read them again from the marker.
    pub superseded: Vec<String>,
}

type ProgressFn = Arc<dyn Fn(RebuildProgress) + Send + Sync>;

/// Rebuilds a projection from the events of `A` in the events table.
///
/// [`run`](Self::run) notes T0, writes the start marker for the projection
/// ([`CheckpointStore::start_after`]), scans the events of `A` in parallel
/// segments (a consistent `Scan` filtered by the `{A::TYPE}:` key prefix)
/// and dispatches them through the [`Dispatcher`] in per-aggregate order.
/// Then start the [`Projector`](super::Projector) with the same checkpoint
/// store: shards without a checkpoint begin at the trim horizon and skip
/// what the scan covered.
///
/// Why nothing is missed:
///
/// 1. T0 is taken, and the marker (T0 minus the margin) is written to the
///    checkpoint table, *before* the scan starts;
/// 2. the scan reads consistently, so it returns every item committed
///    before it started, hence before T0;
/// 3. a projector reading a shard without a checkpoint skips only records
///    whose `ApproximateCreationDateTime` is before the marker. The margin
///    (default 5 minutes) covers the rounding of that time and the clock
///    difference between this machine and DynamoDB. So an event committed
///    after the marker is on the stream and dispatched by the projector,
///    and one committed before it was in the scan.
///
/// Events committed between the marker and the end of the scan may reach
/// the projections twice: [`ViewProjection`](super::ViewProjection)
/// (exactly-once) skips them, other (at-least-once) projections see them
/// again.
///
/// A finished rebuild supersedes the projection's checkpoints that predate
/// it: once every page is dispatched, it deletes each shard item whose
/// checkpoint and finished flag are still what they were before the marker
/// was written (a conditional delete; see [`RebuildReport::superseded`]).
/// So a projection stopped with [`Error::Trimmed`](super::Error::Trimmed)
/// recovers by running the rebuild on the same [`CheckpointStore`] and
/// restarting its projectors: the trimmed shards restart from the marker.
/// A checkpoint a live projector moved during the rebuild is kept (it read
/// on without a gap). A live owner of a superseded shard is fenced: its
/// next write fails with [`Error::LeaseLost`](super::Error::LeaseLost) and
/// it stops reading the shard; restart projectors after a rebuild, as they
/// read the marker when they start.
///
/// To rebuild a view from scratch, empty the view table first (or give the
/// projection a new name). A failed rebuild records its error in the marker
/// and supersedes nothing; run it again: exactly-once views skip what they
/// already applied.
///
/// ```no_run
/// # use cqrs_es::Aggregate;
/// # async fn demo<A: Aggregate + 'static>(
/// #     client: dynamo_es::aws_sdk_dynamodb::Client,
/// #     streams: dynamo_es::aws_sdk_dynamodbstreams::Client,
/// #     dispatcher: dynamo_es::projection::Dispatcher<A>,
/// # ) -> Result<(), dynamo_es::projection::Error> {
/// use dynamo_es::projection::{CheckpointStore, Rebuild};
///
/// let checkpoints = CheckpointStore::new(client.clone(), "Checkpoints", "balances-v2");
/// let stream = dynamo_es::projection::stream_arn(&client, "Events").await?;
/// let report = Rebuild::new(client, "Events", checkpoints, dispatcher)
///     .with_stream(streams, &stream)
///     .with_segments(8)
///     .with_progress(|p| eprintln!("{} events dispatched", p.events))
///     .run()
///     .await?;
/// eprintln!("rebuilt {} events; now start the projector", report.progress.events);
/// # Ok(()) }
/// ```
pub struct Rebuild<A: Aggregate> {
    client: Client,
    events_table: String,
    checkpoints: CheckpointStore,
    dispatcher: Dispatcher<A>,
    segments: u32,
    page_size: Option<i32>,
    safety_margin: Duration,
    progress: Option<ProgressFn>,
    stream: Option<(aws_sdk_dynamodbstreams::Client, String)>,
    /// Read from the slice index instead of scanning the table.
    feed: Option<SliceReader>,
}

impl<A: Aggregate> fmt::Debug for Rebuild<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rebuild")
            .field("events_table", &self.events_table)
            .field("projection", &self.checkpoints.projection())
            .field("segments", &self.segments)
            .field("page_size", &self.page_size)
            .field("safety_margin", &self.safety_margin)
            .finish_non_exhaustive()
    }
}

/// Counters the segment workers share.
#[derive(Default)]
struct Totals {
    pages: AtomicU64,
    items: AtomicU64,
    events: AtomicU64,
    capacity: Mutex<f64>,
    skipped: Mutex<Vec<String>>,
    /// Set by the first failure (a worker's, or the scan's): no segment
    /// starts another page once it is set.
    failed: AtomicBool,
}

impl Totals {
    fn progress(&self, started: Instant) -> RebuildProgress {
        RebuildProgress {
            pages: self.pages.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            consumed_capacity: *lock(&self.capacity),
            elapsed: started.elapsed(),
        }
    }
}

impl<A: Aggregate + 'static> Rebuild<A> {
    /// A rebuild of the projection of `checkpoints` from `events_table`,
    /// dispatching through `dispatcher`, with [`DEFAULT_REBUILD_SEGMENTS`]
    /// segments and a [`DEFAULT_SAFETY_MARGIN`].
    pub fn new(
        client: Client,
        events_table: &str,
        checkpoints: CheckpointStore,
        dispatcher: Dispatcher<A>,
    ) -> Self {
        Rebuild {
            client,
            events_table: events_table.to_string(),
            checkpoints,
            dispatcher,
            segments: DEFAULT_REBUILD_SEGMENTS,
            page_size: None,
            safety_margin: DEFAULT_SAFETY_MARGIN,
            progress: None,
            stream: None,
            feed: None,
        }
    }

    /// Scans in `segments` parallel segments (at least 1), each dispatched
    /// by its own task.
    pub fn with_segments(mut self, segments: u32) -> Self {
        self.segments = segments.max(1);
        self
    }

    /// Reads pages of at most `items` items, at least 1 (DynamoDB's 1 MB
    /// pages without).
    pub fn with_page_size(mut self, items: i32) -> Self {
        self.page_size = Some(items.max(1));
        self
    }

    /// How far before T0 the start marker is put: stream records created
    /// within it are dispatched again by the projector. It must exceed the
    /// difference between this machine's clock and DynamoDB's plus the
    /// rounding of `ApproximateCreationDateTime` (DynamoDB rounds it down to
    /// the second).
    pub fn with_safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = margin;
        self
    }

    /// Describes `stream_arn` (the events table's stream, see
    /// [`stream_arn`](super::stream_arn)) before the marker is written, and
    /// records in it which shards were closed then. A projector that finds
    /// every record of such a shard trimmed knows the scan covered them;
    /// without this it cannot tell them from records written after the
    /// marker, and stops with [`Error::Trimmed`](super::Error::Trimmed).
    /// Use it when recovering from `Trimmed`: one `DescribeStream` call per
    /// 100 shards.
    pub fn with_stream(
        mut self,
        streams: aws_sdk_dynamodbstreams::Client,
        stream_arn: &str,
    ) -> Self {
        self.stream = Some((streams, stream_arn.to_string()));
        self
    }

    /// Reads the events from the `EventsBySlice` index with `reader` (a
    /// [feed](super::feed)) instead of scanning the table: only the
    /// events of `A` are read, at the index's cost, and the rebuild ends
    /// once every slice's watermark has passed T0, a window after it at the
    /// earliest. Why nothing is missed: an event the projector skips was
    /// created before the marker (T0 minus the margin) by DynamoDB's clock,
    /// so before T0 by its writer's (the margin covers the difference, as
    /// for the scan), and the feed dispatched every event committed before
    /// its watermarks. The feed's positions are kept under the projection
    /// `{projection}#rebuild` while it runs, deleted when it starts and
    /// when it succeeds (a rebuild always reads from the beginning);
    /// [`RebuildProgress`] counts its index reads as pages (segments and the
    /// page size do not apply; the reader's `with_max_events` does).
    #[must_use]
    pub fn with_feed(mut self, reader: SliceReader) -> Self {
        self.feed = Some(reader);
        self
    }

    /// Calls `progress` after every dispatched page (from the segment
    /// workers: keep it quick).
    pub fn with_progress(
        mut self,
        progress: impl Fn(RebuildProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    /// Runs the rebuild; see the [type docs](Self). The start marker is
    /// written first; at the end the checkpoints that predate it are
    /// superseded and the marker is marked finished with the totals.
    ///
    /// The first error (a scan, a decode under
    /// [`DecodeErrorPolicy::Stop`](super::DecodeErrorPolicy), a projection,
    /// a checkpoint table write) stops every segment: none starts another
    /// page, a page being dispatched finishes. It is recorded in the marker
    /// (which stays unfinished, so projectors skip nothing on its account,
    /// and `projections status` shows it) and returned. Nothing is
    /// superseded then: run the rebuild again.
    pub async fn run(self) -> Result<RebuildReport, Error> {
        let started = Instant::now();
        // Described before T0: a shard closed then holds only records
        // created before T0, whose events the scan reads.
        let (stream_arn, closed_shards) = match &self.stream {
            Some((streams, stream_arn)) => {
                let mut closed: Vec<String> = super::shards::describe(streams, stream_arn)
                    .await?
                    .closed()
                    .into_iter()
                    .collect();
                closed.sort();
                (Some(stream_arn.clone()), closed)
            }
            None => (None, Vec::new()),
        };
        // Whole milliseconds, as stored; rounding down only widens the overlap.
        let started_at = time_of(millis(SystemTime::now()));
        let start_after = started_at
            .checked_sub(self.safety_margin)
            .map_or(SystemTime::UNIX_EPOCH, |time| time_of(millis(time)));
        let mut marker = RebuildMarker {
            started_at,
            start_after,
            finished_at: None,
            events: 0,
            failed_at: None,
            error: None,
            stream_arn,
            closed_shards,
        };
        // The shards as they were before the marker: those whose progress
        // is still the same after the scan are superseded by the rebuild.
        let before = self.checkpoints.list().await?;
        self.checkpoints.put_rebuild_marker(&marker).await?;
        tracing::info!(
            projection = self.checkpoints.projection(),
            table = %self.events_table,
            segments = self.segments,
            "rebuild started; the start marker is written"
        );

        let totals = Arc::new(Totals::default());
        let read = match &self.feed {
            Some(reader) => self.read_feed(reader, started_at, &totals, started).await,
            None => self.scan_and_dispatch(&totals, started).await,
        };
        let dispatched = match read {
            Ok(()) => self.checkpoints.supersede(&before).await,
            Err(err) => Err(err),
        };
        let superseded = match dispatched {
            Ok(superseded) => superseded,
            Err(err) => {
                marker.events = totals.progress(started).events;
                marker.failed_at = Some(SystemTime::now());
                marker.error = Some(err.to_string());
                if let Err(unrecorded) = self.checkpoints.put_rebuild_marker(&marker).await {
                    tracing::warn!(
                        projection = self.checkpoints.projection(),
                        error = %unrecorded,
                        "the rebuild's failure could not be recorded in its marker"
                    );
                }
                return Err(err);
            }
        };

        let progress = totals.progress(started);
        marker.finished_at = Some(SystemTime::now());
        marker.events = progress.events;
        self.checkpoints.put_rebuild_marker(&marker).await?;
        tracing::info!(
            projection = self.checkpoints.projection(),
            events = progress.events,
            items = progress.items,
            superseded = superseded.len(),
            elapsed_ms = u64::try_from(progress.elapsed.as_millis()).unwrap_or(u64::MAX),
            "rebuild finished; start the projector"
        );
        let skipped = std::mem::take(&mut *lock(&totals.skipped));
        Ok(RebuildReport {
            started_at,
            start_after,
            progress,
            skipped,
            superseded,
        })
    }

    /// Catches a feed of `A` up to `until` (see [`with_feed`](Self::with_feed)).
    async fn read_feed(
        &self,
        reader: &SliceReader,
        until: SystemTime,
        totals: &Totals,
        started: Instant,
    ) -> Result<(), Error> {
        let positions = FeedPositions::new(
            self.client.clone(),
            self.checkpoints.table(),
            &format!("{}#rebuild", self.checkpoints.projection()),
        );
        positions.reset().await?;
        let poll = (reader.window() / 10).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let report = FeedProjector::new(reader.clone(), positions.clone(), self.dispatcher.clone())
            .with_start(FeedStart::Beginning)
            .with_poll_interval(poll)
            .catch_up_until(until)
            .await?;
        positions.reset().await?;
        let events = len_u64(report.events);
        totals
            .pages
            .fetch_add(len_u64(report.reads), Ordering::Relaxed);
        totals.items.fetch_add(events, Ordering::Relaxed);
        totals.events.fetch_add(events, Ordering::Relaxed);
        if let Some(progress) = &self.progress {
            progress(totals.progress(started));
        }
        Ok(())
    }

    /// Reads the scan and hands each page to its segment's worker.
    async fn scan_and_dispatch(&self, totals: &Arc<Totals>, started: Instant) -> Result<(), Error> {
        let scan = key_prefix_scan(&self.client, &self.events_table, format!("{}:", A::TYPE))
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total);
        let mut pages = parallel_scan(scan, self.segments, self.page_size);
        let mut workers = JoinSet::new();
        let mut queues = Vec::new();
        for segment in 0..self.segments {
            // One page waits per segment: memory stays bounded.
            let (sender, receiver) = mpsc::channel::<Vec<Item>>(1);
            queues.push(sender);
            workers.spawn(dispatch_segment(
                self.dispatcher.clone(),
                receiver,
                segment,
                Arc::clone(totals),
                self.progress.clone(),
                started,
            ));
        }
        let failure = feed(&mut pages, &queues, &mut workers, totals).await;
        // Whatever ended the feed, no segment starts another page after a
        // failure; without one, the workers drain their queues and end.
        if failure.is_some() {
            totals.failed.store(true, Ordering::SeqCst);
        }
        drop(queues);
        drop(pages);
        let mut failure = failure;
        while let Some(joined) = workers.join_next().await {
            if let (Err(err), None) = (worker_result(joined), &failure) {
                totals.failed.store(true, Ordering::SeqCst);
                failure = Some(err);
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Hands each scanned page to its segment's worker until the scan ends
/// or fails, or a worker fails (watched while waiting for a page and
/// while a full queue waits for its worker): returns the first error.
async fn feed(
    pages: &mut ParallelScan,
    queues: &[mpsc::Sender<Vec<Item>>],
    workers: &mut JoinSet<Result<(), Error>>,
    totals: &Totals,
) -> Option<Error> {
    loop {
        let page = tokio::select! {
            biased;
            Some(joined) = workers.join_next() => match worker_result(joined) {
                // A worker ends early only when stopped by another's
                // failure, which is joined too.
                Ok(()) => continue,
                Err(err) => return Some(err),
            },
            page = pages.next() => page,
        };
        let page = match page {
            None => return None,
            Some(Ok(page)) => page,
            Some(Err(err)) => return Some(Error::Store(err)),
        };
        if totals.failed.load(Ordering::SeqCst) {
            // A worker failed: the join above returns its error next.
            continue;
        }
        *lock(&totals.capacity) += page.page.consumed_capacity;
        let Some(queue) = usize::try_from(page.segment)
            .ok()
            .and_then(|index| queues.get(index))
        else {
            return Some(Error::projection(format!(
                "the scan returned a page of segment {} of {}",
                page.segment,
                queues.len()
            )));
        };
        // A closed queue (its worker ended on an error, joined next) or a
        // worker's failure drops the page: the rebuild fails anyway.
        let _sent = tokio::select! {
            biased;
            Some(joined) = workers.join_next() => match worker_result(joined) {
                Ok(()) => continue,
                Err(err) => return Some(err),
            },
            sent = queue.send(page.page.items) => sent.is_ok(),
        };
    }
}

/// A worker's result; a worker that panicked or was cancelled is an error.
fn worker_result(joined: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    joined.unwrap_or_else(|err| {
        Err(Error::projection(format!(
            "a rebuild worker stopped: {err}"
        )))
    })
}

/// Dispatches the pages of one segment, in order.
async fn dispatch_segment<A: Aggregate + 'static>(
    dispatcher: Dispatcher<A>,
    mut pages: mpsc::Receiver<Vec<Item>>,
    segment: u32,
    totals: Arc<Totals>,
    progress: Option<ProgressFn>,
    started: Instant,
) -> Result<(), Error> {
    let shard_id = format!("rebuild-segment-{segment}");
    while let Some(items) = pages.recv().await {
        if totals.failed.load(Ordering::SeqCst) {
            // Another segment failed: no page is started after that.
            return Ok(());
        }
        let records: Vec<ChangeRecord> = items
            .into_iter()
            .map(|item| record_of(&shard_id, item))
            .collect();
        let report = match dispatcher.dispatch(&records).await {
            Ok(report) => report,
            Err(failure) => {
                // Before this worker ends, so no other starts a page after it.
                totals.failed.store(true, Ordering::SeqCst);
                return Err(failure.error);
            }
        };
        totals.pages.fetch_add(1, Ordering::Relaxed);
        totals
            .items
            .fetch_add(len_u64(records.len()), Ordering::Relaxed);
        totals
            .events
            .fetch_add(len_u64(report.events), Ordering::Relaxed);
        if !report.skipped.is_empty() {
            lock(&totals.skipped).extend(report.skipped.iter().map(ToString::to_string));
        }
        if let Some(progress) = &progress {
            progress(totals.progress(started));
        }
    }
    Ok(())
}

/// A scanned event item as the insert that wrote it.
fn record_of(shard_id: &str, item: Item) -> ChangeRecord {
    let keys: Image = [AGGREGATE_TYPE_AND_ID, AGGREGATE_ID_SEQUENCE]
        .into_iter()
        .filter_map(|name| Some((name.to_string(), item.get(name)?.clone())))
        .collect();
    ChangeRecord {
        shard_id: shard_id.to_string(),
        sequence_number: String::new(),
        event_name: ChangeKind::Insert,
        created: None,
        keys,
        new_image: Some(item),
    }
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
