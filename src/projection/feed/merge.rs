//! [`GlobalReader`]: the events of several aggregate types, every slice,
//! merged into one order by commit time (a k-way merge of per-slice reads),
//! for sagas and reports that need "what happened before what" across
//! aggregates.
//!
//! **Invariant:** events come out in increasing [`GlobalEvent::order`]
//! (order time, aggregate type, aggregate id, sequence), each once, and each
//! aggregate's in sequence order with none skipped. The order time of an
//! event is its commit time, raised to its predecessor's order time when
//! its writer's clock ran behind, and to what was already emitted when it
//! came late (so the order never goes back). Why, and how precise the
//! order is across aggregates: see [`GlobalReader`]. A deleted aggregate's
//! tombstone comes once, after its events, marked
//! ([`GlobalEvent::deleted_through`]); the events its deletion removed
//! before they were read are not a gap (see `feed::deletion`).

use std::collections::HashMap;
use std::time::SystemTime;

use super::position::{FeedStart, SlicePosition};
use super::positions::FeedPositions;
use super::reader::{seen_of, SliceReader};
use crate::projection::{ChangeRecord, Error};
use crate::slice::from_micros;

/// One event in a [`GlobalReader`]'s order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GlobalEvent {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The event's sequence in its aggregate.
    pub sequence: usize,
    /// Its commit time, by its writer's clock.
    pub committed: SystemTime,
    /// The time it is ordered by, microseconds since the epoch: the commit
    /// time, or later (see [`GlobalReader`]).
    pub order_micros: u64,
    /// The event as a projection reads it (decode it with the
    /// [`EventDecoder`](crate::projection::EventDecoder) of its type).
    pub record: ChangeRecord,
    /// `Some(last)` when this is not an event but the aggregate's deletion
    /// (its tombstone, at `sequence`, after every event it had; `last` is
    /// the last event's sequence): `EventDecoder::decode` returns `None`
    /// for it, [`EventDecoder::deletion`](crate::projection::EventDecoder::deletion)
    /// reads it. It comes once, in its place in the order.
    pub deleted_through: Option<usize>,
}

impl GlobalEvent {
    /// The key the events are sorted by: order time, aggregate type,
    /// aggregate id, sequence.
    pub fn order(&self) -> (u64, &str, &str, usize) {
        (
            self.order_micros,
            &self.aggregate_type,
            &self.aggregate_id,
            self.sequence,
        )
    }
}

/// Reads every slice of several aggregate types and returns their events
/// merged in one order: by [`GlobalEvent::order`], each aggregate's in
/// sequence order, each event once.
///
/// *Why.* Each slice is read by a [`SliceReader`], which delivers each
/// aggregate's events in sequence order and keeps a watermark below which
/// every event of the slice was delivered. Read events wait in a buffer;
/// only those whose order time is below the **frontier**, the lowest
/// watermark over all slices, are emitted, sorted. An event read later has
/// a commit time at or after its slice's watermark when it was read, hence
/// at or after the frontier of every earlier emission, unless it came
/// later than twice the window (then it is raised to that frontier): so it
/// never sorts before an emitted one.
///
/// *Precision.* Within one aggregate, the order is its sequence order.
/// Across aggregates, it is the writers' clocks: two events committed by
/// different writers within their clocks' skew of each other may come in
/// either order. Events come out a window (the readers'
/// [window](SliceReader::with_window)) after their commit time at the
/// earliest.
///
/// The reader keeps its slice positions in memory and starts from a
/// [`FeedStart`]; the per-aggregate records the slice readers need go to
/// the checkpoint table under its `positions`' projection name, which must
/// be its own (they are deleted when it starts). For a durable projection
/// of one type, use a [`FeedProjector`](super::FeedProjector).
#[derive(Debug)]
pub struct GlobalReader {
    readers: Vec<SliceReader>,
    positions: FeedPositions,
    start: FeedStart,
    /// Per slice of every reader: the reader's index, the slice, its
    /// position (the start's until the first read).
    slices: Vec<(usize, u16, SlicePosition)>,
    /// Events read and not emitted yet.
    buffer: Vec<GlobalEvent>,
    /// Per aggregate with buffered events: the order time of its last.
    pending: HashMap<(String, String), u64>,
    /// The frontier of the last emission: every later event orders at or
    /// after it.
    floor: u64,
    started: bool,
}

impl GlobalReader {
    /// A reader of the types `readers` read (one [`SliceReader`] each, on
    /// the same events table), from `start`, recording per-aggregate
    /// sequences under `positions`.
    pub fn new(readers: Vec<SliceReader>, positions: FeedPositions, start: FeedStart) -> Self {
        let origin = SlicePosition::start(start);
        let slices = readers
            .iter()
            .enumerate()
            .flat_map(|(index, reader)| {
                let origin = origin.clone();
                (0..reader.slices().count()).map(move |slice| (index, slice, origin.clone()))
            })
            .collect();
        GlobalReader {
            readers,
            positions,
            start,
            slices,
            buffer: Vec::new(),
            pending: HashMap::new(),
            floor: 0,
            started: false,
        }
    }

    /// Where the reader started.
    pub fn start(&self) -> FeedStart {
        self.start
    }

    /// Every event committed before this time (by its writer's clock) has
    /// been returned, or is in the buffer with a later order time.
    pub fn frontier(&self) -> SystemTime {
        from_micros(self.floor)
    }

    /// One pass: reads one page of every slice and returns the events now
    /// below the frontier, in order (none if nothing new is ready: call it
    /// again after a pause). The first call deletes the per-aggregate
    /// records a previous run left under the positions' name.
    ///
    /// Errors as [`SliceReader::read`].
    pub async fn next(&mut self) -> Result<Vec<GlobalEvent>, Error> {
        if !self.started {
            self.positions.reset().await?;
            self.started = true;
        }
        for (reader, slice, position) in &mut self.slices {
            let Some(reader) = self.readers.get(*reader) else {
                continue;
            };
            let read = reader.read(*slice, position, &self.positions).await?;
            if !read.records.is_empty() {
                self.positions
                    .record_sequences(reader.aggregate_type(), &read.delivered)
                    .await?;
            }
            *position = read.position;
            for record in read.records {
                let Some(image) = &record.new_image else {
                    continue;
                };
                let seen = seen_of(image)?;
                let key = (reader.aggregate_type().to_string(), seen.aggregate_id);
                let after = self.pending.get(&key).copied().unwrap_or_default();
                let order_micros = seen.micros.max(after).max(self.floor);
                self.pending.insert(key.clone(), order_micros);
                self.buffer.push(GlobalEvent {
                    aggregate_type: key.0,
                    aggregate_id: key.1,
                    sequence: seen.sequence,
                    committed: from_micros(seen.micros),
                    order_micros,
                    record,
                    deleted_through: seen.deleted_through,
                });
            }
        }
        let frontier = self
            .slices
            .iter()
            .map(|(_, _, position)| position.watermark)
            .min()
            .unwrap_or_default();
        if frontier <= self.floor {
            return Ok(Vec::new());
        }
        self.floor = frontier;
        let (mut ready, waiting): (Vec<GlobalEvent>, Vec<GlobalEvent>) =
            std::mem::take(&mut self.buffer)
                .into_iter()
                .partition(|event| event.order_micros < frontier);
        self.buffer = waiting;
        self.pending.retain(|_, last| *last >= frontier);
        ready.sort_by(|a, b| a.order().cmp(&b.order()));
        Ok(ready)
    }
}
