//! Feeds: projections that read an events table's `EventsBySlice` index
//! (see [`crate::slice`]) instead of its stream, from the beginning of
//! history or any saved position, for one aggregate type only, and then
//! follow new events, with no 24-hour limit.
//!
//! A [`FeedProjector`] reads a range of slices with a [`SliceReader`],
//! hands what it reads to the same [`Dispatcher`] a stream
//! [`Projector`](super::Projector) uses (same projections, decoder,
//! dictionaries, upcasters and tracing), and saves each slice's
//! [`SlicePosition`] in the checkpoint table ([`FeedPositions`]) after the
//! batch was dispatched.
//!
//! **Invariant:** within a slice, each event is dispatched after every
//! earlier event of its aggregate, and an event already dispatched is not
//! dispatched again unless the process stopped between a dispatch and the
//! save of its position (then the batch comes again, as with the stream:
//! a [`ViewProjection`](super::ViewProjection) drops it by sequence). The
//! proof is on [`SlicePosition`]; it assumes every event shows in the
//! index within twice the reader's [window](SliceReader::with_window) of
//! its commit time. One that shows later is never skipped silently past:
//! when a later event of its aggregate is read, the gap in the sequences
//! makes the reader fetch it from the table by key and deliver it first;
//! otherwise an [audit](FeedProjector::audit) finds it (if it showed
//! within the audit's depth). An aggregate's tombstone (its deletion,
//! written with a slice) is delivered as its next item, once, in the same
//! way; events its deletion removed before they were read are no gap (see
//! `feed::deletion`). Other types: [`GlobalReader`] merges several
//! aggregate types by commit time; [`Rebuild::with_feed`](super::Rebuild::with_feed)
//! rebuilds a stream projection from the feed.
//!
//! ```no_run
//! # async fn demo<A: cqrs_es::Aggregate + 'static>(
//! #     client: dynamo_es::aws_sdk_dynamodb::Client,
//! #     dispatcher: dynamo_es::projection::Dispatcher<A>,
//! # ) -> Result<(), dynamo_es::projection::Error> {
//! use dynamo_es::projection::feed::{FeedPositions, FeedProjector, FeedStart, SliceReader};
//! use dynamo_es::tables::slices_of;
//!
//! let slices = slices_of(&client, "Events").await?.expect("the table has the slice index");
//! let reader = SliceReader::new(client.clone(), "Events", A::TYPE, slices);
//! let positions = FeedPositions::new(client, "Checkpoints", "account-views");
//! FeedProjector::new(reader, positions, dispatcher)
//!     .with_start(FeedStart::Beginning)
//!     .run(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(()) }
//! ```

mod audit;
mod deletion;
mod leases;
mod merge;
mod position;
mod positions;
mod reader;

use std::collections::BTreeSet;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cqrs_es::Aggregate;

pub use merge::{GlobalEvent, GlobalReader};
pub use position::{FeedStart, SlicePosition};
pub use positions::{FeedPositions, SavedPosition, SliceStatus};
pub use reader::{SliceRead, SliceReader, DEFAULT_MAX_EVENTS, DEFAULT_WINDOW};

use super::{Dispatcher, Error};
use crate::slice::micros;

/// What one [`FeedProjector::catch_up`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedReport {
    /// Events dispatched (an aggregate's deletion, its tombstone, counts
    /// as one).
    pub events: usize,
    /// Events read again and dropped.
    pub duplicates: usize,
    /// Slices with events held back (an earlier event of their aggregate
    /// not visible yet).
    pub held: usize,
    /// Index reads made.
    pub reads: usize,
    /// Of `events`, how many came later than twice the reader's window:
    /// read from the table by key, or found by an [audit](FeedProjector::audit).
    pub recovered: usize,
}

/// What a pass over a slice reads.
#[derive(Debug, Clone, Copy)]
enum Pass {
    /// From the band below the watermark on.
    Follow,
    /// The band `depth` (microseconds) below the watermark, down to where
    /// reads start.
    Audit(u64),
}

/// Reads a range of slices of one aggregate type and dispatches the events.
pub struct FeedProjector<A: Aggregate> {
    reader: SliceReader,
    positions: FeedPositions,
    dispatcher: Dispatcher<A>,
    range: Range<u16>,
    start: FeedStart,
    poll: Duration,
    save_every: Duration,
    /// Per slice: the position saved last (with its version), and the
    /// position reached since.
    slices: Vec<Option<(SavedPosition, SlicePosition)>>,
    /// Set when [`run`](Self::run) is asked to stop.
    stop: Arc<AtomicBool>,
    /// When feed processes share the slices: this process's leases, and
    /// the slices it holds.
    leases: Option<(leases::SliceLeases, BTreeSet<u16>)>,
    lease_duration: Duration,
    /// [`run`](Self::run)'s audits: how deep, how often.
    audits: Option<(Duration, Duration)>,
}

/// What one [`FeedProjector::balance`] round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Balance {
    /// Feed processes alive, this one included.
    pub alive: usize,
    /// Slices this process took.
    pub taken: Vec<u16>,
    /// Slices this process lost to another.
    pub lost: Vec<u16>,
    /// Slices this process holds now.
    pub held: Vec<u16>,
}

impl<A: Aggregate + 'static> FeedProjector<A> {
    /// A feed projection of every slice, starting at the beginning.
    pub fn new(reader: SliceReader, positions: FeedPositions, dispatcher: Dispatcher<A>) -> Self {
        let count = reader.slices().count();
        FeedProjector {
            reader,
            positions,
            dispatcher,
            range: 0..count,
            start: FeedStart::Beginning,
            poll: Duration::from_millis(500),
            save_every: Duration::from_secs(60),
            slices: vec![None; usize::from(count)],
            leases: None,
            lease_duration: Duration::from_secs(30),
            stop: Arc::default(),
            audits: None,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Shares the slices with the other feed processes of this projection
    /// and aggregate type, as `owner` (unique per process: host, process
    /// id and a random suffix): [`run`](Self::run) takes a fair share of
    /// the slices, takes a stopped process's slices once its heartbeat has
    /// stood still for the [lease duration](Self::with_lease_duration), and
    /// gives slices up to processes that join (see [`balance`](Self::balance)).
    /// Without it, a process reads every slice of its
    /// [range](Self::with_slices).
    #[must_use]
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.leases = Some((
            leases::SliceLeases::new(
                self.positions.client.clone(),
                &self.positions.table,
                &self.positions.projection,
                self.reader.aggregate_type(),
                owner,
                self.lease_duration,
            ),
            BTreeSet::new(),
        ));
        self
    }

    /// How long a feed process's heartbeat must stand still before others
    /// take its slices (default 30 s). [`run`](Self::run) beats every
    /// third of it. Set it before [`with_owner`](Self::with_owner).
    #[must_use]
    pub fn with_lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration;
        self
    }

    /// One round of sharing (with [`with_owner`](Self::with_owner); does
    /// nothing without): beats this process's heartbeat, reads which
    /// process holds which slice, takes free slices, a stopped process's
    /// slices and, while short of a fair share, one slice of the busiest
    /// process; drops the slices another process took.
    pub async fn balance(&mut self) -> Result<Balance, Error> {
        let count = self.reader.slices().count();
        let projection = self.positions.projection.clone();
        let Some((leases, held)) = &mut self.leases else {
            return Ok(Balance::default());
        };
        let round = leases.round(&projection).await?;
        let mut balance = Balance {
            alive: round.alive.len(),
            ..Balance::default()
        };
        for slice in held.clone() {
            if round.owners.get(&slice).cloned().flatten().as_deref() != Some(leases.owner()) {
                held.remove(&slice);
                balance.lost.push(slice);
                if let Some(state) = self.slices.get_mut(usize::from(slice)) {
                    *state = None;
                }
            }
        }
        // Slices the table says are ours (after a restart under the same
        // owner id) are read again.
        for (slice, owner) in &round.owners {
            if owner.as_deref() == Some(leases.owner()) && held.insert(*slice) {
                balance.taken.push(*slice);
            }
        }
        for (slice, holder) in leases.wanted(&round, count) {
            if leases.take(slice, holder.as_deref()).await? {
                held.insert(slice);
                balance.taken.push(slice);
                // Read the position afresh: its last owner may have saved.
                if let Some(state) = self.slices.get_mut(usize::from(slice)) {
                    *state = None;
                }
            }
        }
        balance.held = held.iter().copied().collect();
        Ok(balance)
    }

    /// The slices this process reads now.
    fn active(&self) -> Vec<u16> {
        match &self.leases {
            None => self.range.clone().collect(),
            Some((_, held)) => held
                .iter()
                .copied()
                .filter(|slice| self.range.contains(slice))
                .collect(),
        }
    }

    /// Reads only the slices in `range` (clamped to the table's slices):
    /// give each process its own range.
    #[must_use]
    pub fn with_slices(mut self, range: Range<u16>) -> Self {
        let count = self.reader.slices().count();
        self.range = range.start.min(count)..range.end.min(count);
        self
    }

    /// Where slices without a saved position start.
    #[must_use]
    pub fn with_start(mut self, start: FeedStart) -> Self {
        self.start = start;
        self
    }

    /// How long [`run`](Self::run) waits between passes that found
    /// nothing new.
    #[must_use]
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// How far a slice's watermark may move, with nothing dispatched,
    /// before its position is saved (a save costs a write; a position not
    /// saved only means reading that stretch again after a restart).
    /// Positions are always saved after a dispatch.
    #[must_use]
    pub fn with_save_interval(mut self, every: Duration) -> Self {
        self.save_every = every;
        self
    }

    /// Makes [`run`](Self::run) [audit](Self::audit) `depth` below the
    /// watermarks every `every`: an event whose index entry comes later
    /// than twice the reader's window, and that no later event of its
    /// aggregate reveals, is then still delivered if it shows within
    /// `depth` of its commit time. An audit reads `depth` of the slices'
    /// events again (at the index's read cost): choose `every` so that
    /// this stays a fraction of the reads, e.g. a depth of 10 minutes
    /// every 5 minutes.
    #[must_use]
    pub fn with_audit(mut self, depth: Duration, every: Duration) -> Self {
        self.audits = Some((depth, every));
        self
    }

    /// One pass over the slices: reads each until it has nothing more,
    /// dispatching and saving as it goes.
    pub async fn catch_up(&mut self) -> Result<FeedReport, Error> {
        self.pass(Pass::Follow).await
    }

    /// Passes until every slice this process reads has its watermark at
    /// or after `until`: then every event of the type committed before
    /// `until` (by its writer's clock) has been dispatched. The watermarks
    /// trail the clock by the reader's window, so this returns a window
    /// after `until` at the earliest; between passes that dispatched
    /// nothing it waits the [poll interval](Self::with_poll_interval).
    /// [`Rebuild::with_feed`](super::Rebuild::with_feed) hands over to the
    /// stream projector with it.
    pub async fn catch_up_until(&mut self, until: SystemTime) -> Result<FeedReport, Error> {
        let until = micros(until);
        let mut total = FeedReport::default();
        loop {
            let report = self.catch_up().await?;
            total.events += report.events;
            total.duplicates += report.duplicates;
            total.reads += report.reads;
            total.recovered += report.recovered;
            total.held = report.held;
            let reached = self.active().into_iter().all(|slice| {
                self.slices
                    .get(usize::from(slice))
                    .and_then(Option::as_ref)
                    .is_some_and(|(_, position)| position.watermark >= until)
            });
            if reached || self.stopping() {
                return Ok(total);
            }
            if report.events == 0 {
                tokio::time::sleep(self.poll).await;
            }
        }
    }

    /// One audit of the slices: reads the index from `depth` below each
    /// slice's watermark up to where [`catch_up`](Self::catch_up) reads
    /// start (a window below it), and delivers, in order, the events there
    /// that were never delivered (their index entries came later than
    /// twice the window, after the reads had passed them), with any
    /// missing predecessor read from the table by key. Nothing delivered is
    /// delivered again; the watermarks do not move.
    pub async fn audit(&mut self, depth: Duration) -> Result<FeedReport, Error> {
        let depth = u64::try_from(depth.as_micros()).unwrap_or(u64::MAX);
        self.pass(Pass::Audit(depth)).await
    }

    async fn pass(&mut self, pass: Pass) -> Result<FeedReport, Error> {
        let mut report = FeedReport::default();
        for slice in self.active() {
            if self.stopping() {
                break;
            }
            match self.catch_up_slice(slice, pass, &mut report).await {
                // Sharing: another process took the slice meanwhile.
                Err(Error::FeedPositionTaken { .. }) if self.leases.is_some() => {
                    if let Some((_, held)) = &mut self.leases {
                        held.remove(&slice);
                    }
                    if let Some(state) = self.slices.get_mut(usize::from(slice)) {
                        *state = None;
                    }
                }
                result => result?,
            }
        }
        Ok(report)
    }

    async fn catch_up_slice(
        &mut self,
        slice: u16,
        pass: Pass,
        report: &mut FeedReport,
    ) -> Result<(), Error> {
        let index = usize::from(slice);
        let aggregate_type = self.reader.aggregate_type().to_string();
        let (mut saved, mut position) = match self.slices.get(index).cloned().flatten() {
            Some(state) => state,
            None => {
                let start = SlicePosition::start(self.start);
                let saved = self.positions.load(&aggregate_type, slice, &start).await?;
                let position = saved.position.clone();
                (saved, position)
            }
        };
        let save_every = u64::try_from(self.save_every.as_micros()).unwrap_or(u64::MAX);
        let window = u64::try_from(self.reader.window().as_micros()).unwrap_or(u64::MAX);
        // An audit's band: from `depth` below the watermark (not before the
        // feed's start) to where reads start.
        let mut band = match pass {
            Pass::Follow => None,
            Pass::Audit(depth) => Some((
                position
                    .watermark
                    .saturating_sub(depth)
                    .max(position.origin),
                position.watermark.saturating_sub(window),
            )),
        };
        loop {
            let read = match band {
                None => self.reader.read(slice, &position, &self.positions).await?,
                Some((from, to)) if from >= to => break,
                Some((from, to)) => {
                    let (read, next) = self
                        .reader
                        .audit(slice, &position, &self.positions, from, to)
                        .await?;
                    band = Some((next.unwrap_or(to), to));
                    read
                }
            };
            report.reads += 1;
            report.duplicates += read.duplicates;
            report.recovered += read.recovered;
            let dispatched = !read.records.is_empty();
            if dispatched {
                self.dispatcher
                    .dispatch(&read.records)
                    .await
                    .map_err(|failure| failure.error)?;
                report.events += read.records.len();
                // Before the position: an aggregate that leaves `recent`
                // is known by these records.
                self.positions
                    .record_sequences(&aggregate_type, &read.delivered)
                    .await?;
            }
            // An audit reads its band to the end, pages of duplicates too.
            let progressed = dispatched || read.position != position || band.is_some();
            position = read.position;
            let stale = position.watermark.saturating_sub(saved.position.watermark) >= save_every;
            if position != saved.position && (dispatched || stale) {
                let version = self
                    .positions
                    .save(&aggregate_type, slice, &position, saved.version)
                    .await?;
                saved = SavedPosition {
                    position: position.clone(),
                    version,
                };
            }
            // Done with the slice for this pass: nothing more to read, or a
            // page that ended on held events (the next pass reads it again
            // once their predecessors show).
            if !read.more || !progressed || self.stopping() {
                if read.held {
                    report.held += 1;
                }
                break;
            }
        }
        if let Some(slot) = self.slices.get_mut(index) {
            *slot = Some((saved, position));
        }
        Ok(())
    }

    /// Runs passes until `shutdown` completes, waiting the
    /// [poll interval](Self::with_poll_interval) after a pass that
    /// dispatched nothing; when sharing ([`with_owner`](Self::with_owner)),
    /// balances every third of the lease duration, and on shutdown gives
    /// its slices up and leaves. Ends with the first error.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let stop = self.stop.clone();
        let wake = Arc::new(tokio::sync::Notify::new());
        let watcher = {
            let wake = wake.clone();
            async move {
                shutdown.await;
                // The pass under way ends after its current batch is
                // dispatched and saved, never in between.
                stop.store(true, Ordering::SeqCst);
                wake.notify_waiters();
                std::future::pending::<()>().await;
            }
        };
        let every = self.lease_duration / 3;
        let work = async {
            let mut balanced: Option<tokio::time::Instant> = None;
            let mut audited = tokio::time::Instant::now();
            loop {
                if self.stopping() {
                    return Ok(());
                }
                if let Some((depth, audit_every)) = self.audits {
                    if audited.elapsed() >= audit_every {
                        self.audit(depth).await?;
                        audited = tokio::time::Instant::now();
                    }
                }
                if self.leases.is_some() && balanced.is_none_or(|at| at.elapsed() >= every) {
                    self.balance().await?;
                    balanced = Some(tokio::time::Instant::now());
                }
                let report = self.catch_up().await?;
                if report.events == 0 && !self.stopping() {
                    let wait = match balanced {
                        Some(at) if self.leases.is_some() => {
                            self.poll.min(every.saturating_sub(at.elapsed()))
                        }
                        _ => self.poll,
                    };
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        };
        let result = tokio::select! {
            result = work => result,
            () = watcher => Ok(()),
        };
        if let Some((leases, held)) = &self.leases {
            for slice in held {
                leases.release(*slice).await?;
            }
            leases.leave().await?;
        }
        result
    }
}
