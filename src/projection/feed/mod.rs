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
//! proof is in [`position`]'s module docs; it assumes every event shows in
//! the index within the reader's [window](SliceReader::with_window) of its
//! commit time, and the reader warns when events come close to that.
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

mod position;
mod positions;
mod reader;

use std::future::Future;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use cqrs_es::Aggregate;

pub use position::SlicePosition;
pub use positions::{FeedPositions, SavedPosition, SliceStatus};
pub use reader::{SliceRead, SliceReader, DEFAULT_MAX_EVENTS, DEFAULT_WINDOW};

use super::{Dispatcher, Error};
use crate::slice::micros;

/// Where a feed projection starts in a slice it has no saved position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedStart {
    /// Every event in the index.
    #[default]
    Beginning,
    /// The events committed at or after this time.
    At(SystemTime),
}

/// What one [`FeedProjector::catch_up`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedReport {
    /// Events dispatched.
    pub events: usize,
    /// Events read again and dropped.
    pub duplicates: usize,
    /// Slices with events held back (an earlier event of their aggregate
    /// not visible yet).
    pub held: usize,
    /// Index reads made.
    pub reads: usize,
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

    /// One pass over the slices: reads each until it has nothing more,
    /// dispatching and saving as it goes.
    pub async fn catch_up(&mut self) -> Result<FeedReport, Error> {
        let mut report = FeedReport::default();
        for slice in self.range.clone() {
            self.catch_up_slice(slice, &mut report).await?;
        }
        Ok(report)
    }

    async fn catch_up_slice(&mut self, slice: u16, report: &mut FeedReport) -> Result<(), Error> {
        let index = usize::from(slice);
        let aggregate_type = self.reader.aggregate_type().to_string();
        let (mut saved, mut position) = match self.slices.get(index).cloned().flatten() {
            Some(state) => state,
            None => {
                let start = match self.start {
                    FeedStart::Beginning => SlicePosition::default(),
                    FeedStart::At(time) => SlicePosition::from_micros(micros(time)),
                };
                let saved = self.positions.load(&aggregate_type, slice, &start).await?;
                let position = saved.position.clone();
                (saved, position)
            }
        };
        let save_every = u64::try_from(self.save_every.as_micros()).unwrap_or(u64::MAX);
        loop {
            let read = self.reader.read(slice, &position).await?;
            report.reads += 1;
            report.duplicates += read.duplicates;
            let dispatched = !read.records.is_empty();
            if dispatched {
                self.dispatcher
                    .dispatch(&read.records)
                    .await
                    .map_err(|failure| failure.error)?;
                report.events += read.records.len();
            }
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
            if !read.more {
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
    /// dispatched nothing. Ends with the first error.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::pin!(shutdown);
        loop {
            let report = tokio::select! {
                () = &mut shutdown => return Ok(()),
                report = self.catch_up() => report?,
            };
            if report.events == 0 {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(self.poll) => {}
                }
            }
        }
    }
}
