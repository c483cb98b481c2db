//! Audits: reads of the index band below the one a feed's reads start in,
//! for events whose index entries came so late that no read saw them (a
//! writer's clock far behind, or an index lagging by more than twice the
//! window) and that no later event of their aggregate revealed.
//!
//! **Invariant:** an audit delivers an event only if it follows its
//! aggregate's last delivered event (by the position's `recent`, else by
//! the feed's per-aggregate records), so it never delivers one twice and
//! never out of order; a missing predecessor is read from the table by key
//! and delivered first. It never moves the watermark.

use std::collections::{BTreeMap, HashMap};

use super::position::SlicePosition;
use super::positions::FeedPositions;
use super::reader::{delivered, record, seen_of, SliceRead, SliceReader};
use crate::projection::Error;

impl SliceReader {
    /// One page of an audit of slice `slice` over the commit times
    /// `from..to` (`to > from`): the events there after their aggregate's
    /// last delivered one, as [`read`](Self::read) would deliver them. The
    /// returned position only adds the delivered events to `recent`; `more`
    /// says whether another page follows, from the commit time returned.
    pub(super) async fn audit(
        &self,
        slice: u16,
        position: &SlicePosition,
        positions: &FeedPositions,
        from: u64,
        to: u64,
    ) -> Result<(SliceRead, Option<u64>), Error> {
        let key = self.slices.key(&self.aggregate_type, slice);
        let mut limit = self.max_events;
        let (mut items, more) = loop {
            let (items, more) = self.query(&key, from, Some(to), limit).await?;
            // A page of one commit time could not move on: read it whole.
            let stuck = items
                .first()
                .zip(items.last())
                .is_some_and(|(first, last)| {
                    matches!(
                        (seen_of(first), seen_of(last)),
                        (Ok(a), Ok(b)) if a.micros == b.micros
                    )
                });
            if more && stuck {
                limit = limit.saturating_mul(2);
                continue;
            }
            break (items, more);
        };
        let indexed = items.len();
        let seen = items.iter().map(seen_of).collect::<Result<Vec<_>, _>>()?;
        let next = more
            .then(|| seen.last().map(|event| event.micros))
            .flatten();
        // Below the band, `recent` does not know every aggregate: ask the
        // records for all the others.
        let mut firsts: BTreeMap<String, usize> = BTreeMap::new();
        for event in &seen {
            if !position.recent.contains_key(&event.aggregate_id) {
                let first = firsts
                    .entry(event.aggregate_id.clone())
                    .or_insert(usize::MAX);
                *first = (*first).min(event.sequence);
            }
        }
        let mut known: HashMap<String, usize> = HashMap::new();
        self.resolve(
            &mut known,
            firsts.into_iter().collect(),
            position,
            positions,
            &seen,
        )
        .await?;
        let (seen, plan) = self
            .settle(&mut items, position, positions, &mut known)
            .await?;
        let mut position = position.clone();
        position.record(&seen, &plan.deliver);
        if !plan.deliver.is_empty() {
            tracing::warn!(
                table = %self.table,
                slice = %key,
                events = plan.deliver.len(),
                from_table = plan.deliver.iter().filter(|&&i| i >= indexed).count(),
                window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX),
                "the feed's audit found events no read delivered: their index entries came \
                 later than twice the feed's window (a writer's clock runs behind, or the \
                 index lags); they are delivered now, in order; raise the window \
                 (SliceReader::with_window) above the lateness"
            );
        }
        let read = SliceRead {
            records: plan
                .deliver
                .iter()
                .map(|&index| record(&key, &seen[index], items[index].clone()))
                .collect(),
            position,
            duplicates: plan.duplicates,
            held: plan.held_from.is_some(),
            late: None,
            recovered: plan.deliver.len(),
            more,
            delivered: delivered(&seen, &plan.deliver),
        };
        Ok((read, next))
    }
}
