//! [`SliceReader`]: reads one slice of one aggregate type from the
//! `EventsBySlice` index, from a [`SlicePosition`], and returns the events
//! to deliver as [`ChangeRecord`]s, in the order the position's plan
//! allows (see [`super::position`] for why nothing is skipped or repeated).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::deletion;
use super::position::{Gone, Plan, Seen, SlicePosition};
use super::positions::FeedPositions;
use crate::error::Error as StoreError;
use crate::item::{
    aggregate_key, describe_key, get_n, get_s, n, s, Item, AGGREGATE_ID, AGGREGATE_ID_SEQUENCE,
    AGGREGATE_TYPE_AND_ID, DELETED_THROUGH,
};
use crate::projection::{ChangeKind, ChangeRecord, Error};
use crate::slice::{from_micros, micros, Slices, COMMIT_TIME, SLICE, SLICE_INDEX};
use crate::stream::Pages;
use crate::tables::requests::sequences_between;

/// The default [window](SliceReader::with_window): how late an event may
/// become visible in the index after its commit time (index propagation
/// plus the writers' clock skew).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// The default most events one [`SliceReader::read`] returns.
pub const DEFAULT_MAX_EVENTS: usize = 1_000;

/// Reads slices of one aggregate type from an events table's
/// `EventsBySlice` index.
#[derive(Debug, Clone)]
pub struct SliceReader {
    pub(super) client: Client,
    pub(super) table: String,
    pub(super) aggregate_type: String,
    pub(super) slices: Slices,
    pub(super) window: Duration,
    pub(super) max_events: usize,
}

/// What one [`SliceReader::read`] found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SliceRead {
    /// The events to deliver, in order, as the stream would carry them
    /// (`shard_id` is the slice key, `sequence_number` the commit time and
    /// sequence, `created` the commit time); an aggregate's tombstone (its
    /// deletion) among them, after its events, as the stream carries it.
    pub records: Vec<ChangeRecord>,
    /// The position once `records` are delivered.
    pub position: SlicePosition,
    /// Events read again that were delivered before, dropped.
    pub duplicates: usize,
    /// Events held back because an earlier event of their aggregate is not
    /// visible yet.
    pub held: bool,
    /// Of `records`, how many became visible later than the previous read
    /// (their commit time was before it), and the most any was late by.
    pub late: Option<(usize, Duration)>,
    /// Of `records`, how many were read from the table by key, not from
    /// the index: their index entries came later than twice the window,
    /// below the band a read starts in, and a later event of their
    /// aggregate (or an [audit](super::FeedProjector::audit)) showed them
    /// missing.
    pub recovered: usize,
    /// Whether the read stopped at [`with_max_events`](SliceReader::with_max_events)
    /// with more to read.
    pub more: bool,
    /// Per aggregate in `records`: its last sequence and latest commit
    /// time, for the feed's per-aggregate records.
    pub(crate) delivered: Vec<(String, usize, u64)>,
}

impl SliceReader {
    /// A reader of `aggregate_type`'s events in the events table `table`,
    /// which has `slices` slices.
    pub fn new(client: Client, table: &str, aggregate_type: &str, slices: Slices) -> Self {
        SliceReader {
            client,
            table: table.to_string(),
            aggregate_type: aggregate_type.to_string(),
            slices,
            window: DEFAULT_WINDOW,
            max_events: DEFAULT_MAX_EVENTS,
        }
    }

    /// How late after its commit time an event may become visible in the
    /// index: the index's propagation delay plus the largest difference
    /// between a writer's clock and this reader's. The watermark trails the
    /// read time by this much, so events are read again for this long
    /// (and dropped as duplicates). Reads log a warning when events come
    /// later than half of it; one later than twice the window is read from
    /// the table by key when a later event of its aggregate shows it
    /// missing, or found by an [audit](super::FeedProjector::audit).
    #[must_use]
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The most events one read returns (at least 1).
    #[must_use]
    pub fn with_max_events(mut self, events: usize) -> Self {
        self.max_events = events.max(1);
        self
    }

    /// The reader's window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The number of slices.
    pub fn slices(&self) -> Slices {
        self.slices
    }

    /// The aggregate type read.
    pub fn aggregate_type(&self) -> &str {
        &self.aggregate_type
    }

    /// Reads slice `slice` from `position`; `positions` holds the feed's
    /// last delivered sequence of each aggregate.
    ///
    /// An event that must come before one read and became visible too
    /// late to be read from the index (later than twice the window) is
    /// read from the table by key and delivered first
    /// ([`SliceRead::recovered`]).
    ///
    /// [`Error::FeedGap`] if such an event is not in the index at all
    /// (written without a slice: run the backfill) or is missing from the
    /// table; [`Error::Store`] if a request fails;
    /// [`Error::InvalidRecord`] for an index item without its keys.
    pub async fn read(
        &self,
        slice: u16,
        position: &SlicePosition,
        positions: &FeedPositions,
    ) -> Result<SliceRead, Error> {
        let now = micros(SystemTime::now());
        let key = self.slices.key(&self.aggregate_type, slice);
        let mut known: HashMap<String, usize> = HashMap::new();
        let mut limit = self.max_events;
        let window = u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX);
        let (items, indexed, more, seen, plan) = loop {
            // From a window below the watermark: an event that became
            // visible up to a window after the watermark passed its commit
            // time is still read, and delivered in order.
            let from = position.watermark.saturating_sub(window);
            let (mut items, more) = self.query(&key, from, None, limit).await?;
            let indexed = items.len();
            let (seen, plan) = self
                .settle(&mut items, position, positions, &mut known)
                .await?;
            // A page with nothing to deliver (events read again, or held
            // ones whose predecessor comes later in the index: a writer's
            // clock behind) says nothing new: read further rather than
            // stop on it, or the feed would read that page forever.
            if plan.deliver.is_empty() && more {
                limit = limit.saturating_mul(2);
                continue;
            }
            break (items, indexed, more, seen, plan);
        };
        let mut next = position.clone();
        next.record(&seen, &plan.deliver);
        let cut_at = more
            .then(|| indexed.checked_sub(1).map(|last| seen[last].micros))
            .flatten();
        next.advance(now, window, plan.held_from, cut_at);
        next.seen_to = cut_at.unwrap_or(now);
        let recovered = plan.deliver.iter().filter(|&&i| i >= indexed).count();
        if recovered > 0 {
            tracing::warn!(
                table = %self.table,
                slice = %key,
                events = recovered,
                window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX),
                "events were read from the table, not the slice index: their index entries \
                 came later than twice the feed's window (a writer's clock runs behind, or the \
                 index lags); they are delivered in order, but such an event with no later \
                 event of its aggregate is only found by an audit \
                 (FeedProjector::with_audit): raise the window (SliceReader::with_window)"
            );
        }
        let late = late(&seen, &plan.deliver, position.seen_to);
        if let Some((count, by)) = late {
            if by > self.window / 2 {
                tracing::warn!(
                    table = %self.table,
                    slice = %key,
                    events = count,
                    late_ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX),
                    window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX),
                    "events became visible in the slice index late, past half the feed's \
                     window: a writer's clock runs behind, or the index lags; raise the \
                     window (SliceReader::with_window) above the lateness, or events later \
                     than it will be missed"
                );
            }
        }
        let delivered = delivered(&seen, &plan.deliver);
        let records = plan
            .deliver
            .iter()
            .map(|&index| record(&key, &seen[index], items[index].clone()))
            .collect();
        Ok(SliceRead {
            records,
            position: next,
            duplicates: plan.duplicates,
            held: plan.held_from.is_some(),
            delivered,
            late,
            recovered,
            more,
        })
    }

    /// Plans the events of `items` (index items, then any read by key):
    /// learns the last delivered sequence of aggregates the position does
    /// not know, and reads from the table by key the events held runs miss
    /// that will never show in a read (appended to `items`), until the
    /// plan is final.
    pub(super) async fn settle(
        &self,
        items: &mut Vec<Item>,
        position: &SlicePosition,
        positions: &FeedPositions,
        known: &mut HashMap<String, usize>,
    ) -> Result<(Vec<Seen>, Plan), Error> {
        let mut gone = Gone::default();
        loop {
            let seen = items.iter().map(seen_of).collect::<Result<Vec<_>, _>>()?;
            let mut plan = position.plan(&seen, known, &gone);
            if !plan.unknown.is_empty() {
                let unknown = std::mem::take(&mut plan.unknown);
                self.resolve(known, unknown, position, positions, &seen)
                    .await?;
                plan = position.plan(&seen, known, &gone);
            }
            let checked = self
                .check_missing(&plan.missing, position, known, &seen, &mut gone)
                .await?;
            if !checked.recovered.is_empty() {
                // Events whose index entries came too late to be read:
                // delivered from the table, in order, with the rest.
                items.extend(checked.recovered);
                continue;
            }
            if checked.replan {
                // An aggregate's missing event predates the feed's start,
                // or was deleted with its aggregate.
                continue;
            }
            return Ok((seen, plan));
        }
    }

    /// Learns the last delivered sequence of each aggregate not in the
    /// position's `recent` (`(id, first sequence read)`), from the feed's
    /// records; one never delivered in a feed that started at a time
    /// counts as delivered up to the event before its first one read if
    /// that event was committed before the start (if the first one read is
    /// a tombstone whose predecessor is gone, it stays at 0: the plan then
    /// finds the deleted events gone).
    pub(super) async fn resolve(
        &self,
        known: &mut HashMap<String, usize>,
        unknown: Vec<(String, usize)>,
        position: &SlicePosition,
        positions: &FeedPositions,
        seen: &[Seen],
    ) -> Result<(), Error> {
        let ids: Vec<String> = unknown.iter().map(|(id, _)| id.clone()).collect();
        let last = positions.last_sequences(&self.aggregate_type, &ids).await?;
        for (id, first) in unknown {
            let mut delivered = last.get(&id).copied().unwrap_or_default();
            if delivered == 0
                && position.origin > 0
                && first > 1
                && !self.deleted().gone(seen, &id, first - 1).await?
            {
                let time = self.commit_time(&id, first - 1).await?;
                if time < position.origin {
                    delivered = first - 1;
                }
            }
            known.insert(id, delivered);
        }
        Ok(())
    }

    /// Checks the events held runs wait for. One that predates the feed's
    /// start for an aggregate never delivered counts as delivered (`known`
    /// learns it, and `replan` says to plan again). One committed below the
    /// band a read starts in (a window below the watermark) will never be
    /// read from the index: it and the events up to the held run's first
    /// are read from the table by key (`recovered`), so the run is
    /// delivered whole and in order. One a tombstone read here deleted and
    /// the table no longer holds is `gone` (see `feed::deletion`).
    /// Otherwise it is only late, and waits.
    async fn check_missing(
        &self,
        missing: &[(String, usize)],
        position: &SlicePosition,
        known: &mut HashMap<String, usize>,
        seen: &[Seen],
        gone: &mut Gone,
    ) -> Result<Checked, Error> {
        let mut checked = Checked::default();
        let window = u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX);
        for (aggregate_id, sequence) in missing {
            if self
                .deleted()
                .account(aggregate_id, *sequence, seen, gone)
                .await?
            {
                checked.replan = true;
                continue;
            }
            let time = self.commit_time(aggregate_id, *sequence).await?;
            let never_delivered = !position.recent.contains_key(aggregate_id)
                && known.get(aggregate_id).is_none_or(|d| *d < *sequence);
            if time < position.origin && never_delivered {
                known.insert(aggregate_id.clone(), *sequence);
                checked.replan = true;
                continue;
            }
            if time < position.watermark.saturating_sub(window) {
                // The held run starts at the first sequence read after it.
                let until = seen
                    .iter()
                    .filter(|e| e.aggregate_id == *aggregate_id && e.sequence > *sequence)
                    .map(|e| e.sequence)
                    .min()
                    .unwrap_or(*sequence + 1);
                checked
                    .recovered
                    .extend(self.events_between(aggregate_id, *sequence, until).await?);
            }
        }
        Ok(checked)
    }

    /// Events `first..until` of `aggregate_id`, read from the table
    /// (strongly consistent), every one of them sliced.
    pub(super) async fn events_between(
        &self,
        aggregate_id: &str,
        first: usize,
        until: usize,
    ) -> Result<Vec<Item>, Error> {
        let key = aggregate_key(&self.aggregate_type, aggregate_id);
        let last = until.saturating_sub(1);
        let query = sequences_between(&self.client, &self.table, &key, first, last);
        let (items, _) = Pages::query(query, None).collect().await?;
        for (offset, item) in items.iter().enumerate() {
            let expected = first + offset;
            let sequence: usize = get_n(item, &key, AGGREGATE_ID_SEQUENCE).map_err(Error::Store)?;
            if sequence != expected || !item.contains_key(COMMIT_TIME) {
                // Missing from the table, or not sliced: the look-up of
                // `expected` says which, with the fix.
                self.commit_time(aggregate_id, expected).await?;
            }
        }
        if items.len() < until.saturating_sub(first).max(1) {
            self.commit_time(aggregate_id, first + items.len()).await?;
        }
        Ok(items)
    }

    /// Every index item of `key` from `from` on (before `to` if given), up
    /// to `limit`; and whether more are left.
    pub(super) async fn query(
        &self,
        key: &str,
        from: u64,
        to: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Item>, bool), Error> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let left = limit - items.len();
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(SLICE_INDEX)
                .key_condition_expression(match to {
                    Some(_) => "#slice = :slice AND #time BETWEEN :from AND :to",
                    None => "#slice = :slice AND #time >= :from",
                })
                .expression_attribute_names("#slice", SLICE)
                .expression_attribute_names("#time", COMMIT_TIME)
                .expression_attribute_values(":slice", s(key))
                .expression_attribute_values(":from", n(from));
            if let Some(to) = to {
                query = query.expression_attribute_values(":to", n(to.saturating_sub(1).max(from)));
            }
            let out = query
                .limit(i32::try_from(left).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| StoreError::from_sdk_on("Query", &self.table, err))?;
            let last = out.last_evaluated_key;
            items.extend(out.items.unwrap_or_default());
            match last {
                Some(last) if items.len() < limit => start = Some(last),
                Some(_) => return Ok((items, true)),
                None => return Ok((items, false)),
            }
        }
    }

    /// The look-ups of events a tombstone deleted.
    fn deleted(&self) -> deletion::Deleted<'_> {
        deletion::Deleted {
            client: &self.client,
            table: &self.table,
            aggregate_type: &self.aggregate_type,
        }
    }

    /// The commit time of event `sequence` of `aggregate_id`, read from the
    /// table (strongly consistent).
    async fn commit_time(&self, aggregate_id: &str, sequence: usize) -> Result<u64, Error> {
        let key = aggregate_key(&self.aggregate_type, aggregate_id);
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(AGGREGATE_TYPE_AND_ID, s(&key))
            .key(AGGREGATE_ID_SEQUENCE, n(sequence))
            .projection_expression("#time")
            .expression_attribute_names("#time", COMMIT_TIME)
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| StoreError::from_sdk_on("GetItem", &self.table, err))?;
        let gap = |reason: &str| Error::FeedGap {
            table: self.table.clone(),
            event: format!("{key}#{sequence}"),
            reason: reason.to_string(),
        };
        let Some(item) = got.item else {
            return Err(gap("it is not in the table (deleted?)"));
        };
        match item.get(COMMIT_TIME) {
            None => Err(gap(
                "it has no slice, so it is not in the feed: it was written by a writer \
                 without slices (upstream, or an older release); run the backfill \
                 (`dynamo-es backfill-slices`) and start the feed again",
            )),
            Some(_) => get_n(&item, COMMIT_TIME, "CommitTime").map_err(Error::Store),
        }
    }
}

/// What [`SliceReader::check_missing`] found.
#[derive(Default)]
struct Checked {
    /// Plan again: `known` learned an aggregate's start.
    replan: bool,
    /// Events read from the table by key, to deliver with the read.
    recovered: Vec<Item>,
}

/// Per aggregate among `seen[i]` for `i` in `deliver`: its last sequence
/// and latest commit time.
pub(super) fn delivered(seen: &[Seen], deliver: &[usize]) -> Vec<(String, usize, u64)> {
    let mut last: HashMap<&str, (usize, u64)> = HashMap::new();
    for &index in deliver {
        let event = &seen[index];
        let entry = last.entry(&event.aggregate_id).or_default();
        *entry = (entry.0.max(event.sequence), entry.1.max(event.micros));
    }
    last.into_iter()
        .map(|(id, (sequence, micros))| (id.to_string(), sequence, micros))
        .collect()
}

/// The ordering facts of an index item.
pub(super) fn seen_of(item: &Item) -> Result<Seen, Error> {
    let invalid = |err: StoreError| Error::InvalidRecord {
        record: describe_key(item),
        reason: err.to_string(),
    };
    Ok(Seen {
        aggregate_id: get_s(item, AGGREGATE_ID, "AggregateId")
            .map_err(invalid)?
            .to_string(),
        sequence: get_n(item, AGGREGATE_ID_SEQUENCE, "AggregateIdSequence").map_err(invalid)?,
        micros: get_n(item, COMMIT_TIME, "CommitTime").map_err(invalid)?,
        deleted_through: match item.get(DELETED_THROUGH) {
            Some(_) => Some(get_n(item, DELETED_THROUGH, "DeletedThrough").map_err(invalid)?),
            None => None,
        },
    })
}

/// How many of the delivered events were committed before `seen_to` (the
/// previous read saw everything visible up to then, so these became
/// visible late), and the most any was late by.
fn late(seen: &[Seen], delivered: &[usize], seen_to: u64) -> Option<(usize, Duration)> {
    let lateness: Vec<u64> = delivered
        .iter()
        .map(|&i| seen[i].micros)
        .filter(|&m| m < seen_to)
        .map(|m| seen_to - m)
        .collect();
    let most = lateness.iter().max()?;
    Some((lateness.len(), Duration::from_micros(*most)))
}

/// The stream-shaped record of an index item.
pub(super) fn record(slice_key: &str, seen: &Seen, item: Item) -> ChangeRecord {
    let keys: Item = [AGGREGATE_TYPE_AND_ID, AGGREGATE_ID_SEQUENCE]
        .into_iter()
        .filter_map(|name| item.get(name).map(|v| (name.to_string(), v.clone())))
        .collect::<HashMap<String, AttributeValue>>();
    ChangeRecord {
        shard_id: slice_key.to_string(),
        sequence_number: format!("{:020}.{}", seen.micros, seen.sequence),
        event_name: ChangeKind::Insert,
        created: Some(from_micros(seen.micros)),
        keys,
        new_image: Some(item),
    }
}
