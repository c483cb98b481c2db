//! Events by slice: the item attributes that put every event of a sliced
//! events table into the `EventsBySlice` global secondary index, from which
//! a projection reads all events of its aggregate types, from any point in
//! history (see [`crate::projection::feed`]).
//!
//! An event item of a sliced table carries two more attributes:
//!
//! | attribute | type | value |
//! |---|---|---|
//! | [`SLICE`] | S | `{aggregate type}#{slice}`, the index's partition key |
//! | [`COMMIT_TIME`] | N | the writer's clock at the commit, in microseconds since the Unix epoch, the index's sort key |
//!
//! The slice of an aggregate is `xxh3_64(aggregate id) mod N`, where `N`,
//! the table's slice count (1 to [`MAX_SLICES`]), is fixed when the index
//! is created and recorded on the table as the tag [`SLICES_TAG`]. Every
//! event of one aggregate is in one slice, so a slice holds each of its
//! aggregates' events whole, and a reader of slice `s` sees an aggregate's
//! events in sequence order once it orders events of equal time by
//! sequence.
//!
//! **Invariant:** the slice of an aggregate is a pure function of its type,
//! its id and `N`: every writer, backfill and reader configured with the
//! table's `N` computes the same key, on every platform and release (xxh3
//! with seed 0 is a fixed function of the bytes). A writer with another `N`
//! would put events where readers never look; [`check_slices`](crate::tables::check_slices) refuses
//! a mismatch before anything is written or read.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::item::{n, s, Item};

/// The sliced events' index partition key: `{aggregate type}#{slice}` (S).
pub const SLICE: &str = "Slice";
/// The sliced events' index sort key: the commit's time, microseconds since
/// the Unix epoch (N).
pub const COMMIT_TIME: &str = "CommitTime";
/// The name of the global secondary index on ([`SLICE`], [`COMMIT_TIME`]).
pub const SLICE_INDEX: &str = "EventsBySlice";
/// The table tag that records the table's slice count.
pub const SLICES_TAG: &str = "dynamo-es:slices";
/// The most slices a table may have.
pub const MAX_SLICES: u16 = 1024;

/// A table's slice count, `N`: 1 to [`MAX_SLICES`].
///
/// ```
/// use dynamo_es::slice::Slices;
///
/// let slices = Slices::new(64).unwrap();
/// let slice = slices.of("account-1");
/// assert!(slice < 64);
/// assert_eq!(slices.key("Account", slice), format!("Account#{slice}"));
/// assert!(Slices::new(0).is_none() && Slices::new(1025).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slices(u16);

impl Slices {
    /// `count` slices, if `count` is 1 to [`MAX_SLICES`].
    #[must_use]
    pub fn new(count: u16) -> Option<Self> {
        (1..=MAX_SLICES).contains(&count).then_some(Slices(count))
    }

    /// How many slices there are.
    #[must_use]
    pub fn count(self) -> u16 {
        self.0
    }

    /// The slice of the aggregate `aggregate_id`: `xxh3_64(id) mod N`.
    #[must_use]
    pub fn of(self, aggregate_id: &str) -> u16 {
        let hash = xxhash_rust::xxh3::xxh3_64(aggregate_id.as_bytes());
        // The remainder is below N <= 1024, so it fits.
        u16::try_from(hash % u64::from(self.0)).unwrap_or_default()
    }

    /// The index partition key of `slice` of `aggregate_type`.
    #[must_use]
    pub fn key(self, aggregate_type: &str, slice: u16) -> String {
        format!("{aggregate_type}#{slice}")
    }

    /// The two attributes a sliced event item carries: its slice key and
    /// its commit time.
    #[must_use]
    pub fn attributes(
        self,
        aggregate_type: &str,
        aggregate_id: &str,
        commit_micros: u64,
    ) -> [(String, AttributeValue); 2] {
        [
            (
                SLICE.to_string(),
                s(self.key(aggregate_type, self.of(aggregate_id))),
            ),
            (COMMIT_TIME.to_string(), n(commit_micros)),
        ]
    }

    /// Adds [`attributes`](Self::attributes) to an event item.
    pub(crate) fn stamp(
        self,
        item: &mut Item,
        aggregate_type: &str,
        aggregate_id: &str,
        micros: u64,
    ) {
        item.extend(self.attributes(aggregate_type, aggregate_id, micros));
    }

    /// Whether `tag`, the value of a table's [`SLICES_TAG`], is this count.
    #[must_use]
    pub fn matches_tag(self, tag: &str) -> bool {
        tag.trim().parse::<u16>().ok() == Some(self.0)
    }
}

impl std::fmt::Display for Slices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} slices", self.0)
    }
}

/// Microseconds since the Unix epoch of `time` (0 before the epoch).
#[must_use]
pub fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The time `micros` microseconds after the Unix epoch.
#[must_use]
pub fn from_micros(micros: u64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_slice_is_a_fixed_function_of_the_id() {
        // Pinned: a change here moves every aggregate of every sliced
        // table to another slice, where readers no longer look.
        let slices = Slices::new(1024).unwrap();
        let pinned: Vec<u16> = ["a", "account-1", "order-42", ""]
            .iter()
            .map(|id| slices.of(id))
            .collect();
        let expected: Vec<u16> = vec![543, 538, 572, 194];
        assert_eq!(pinned, expected);
        assert_eq!(Slices::new(1).unwrap().of("anything"), 0);
    }

    #[test]
    fn slices_spread_aggregates() {
        let slices = Slices::new(16).unwrap();
        let mut seen = [0usize; 16];
        for i in 0..1600 {
            seen[usize::from(slices.of(&format!("agg-{i}")))] += 1;
        }
        assert!(seen.iter().all(|&count| count > 50), "{seen:?}");
    }

    #[test]
    fn tags_match_only_their_count() {
        let slices = Slices::new(64).unwrap();
        assert!(slices.matches_tag("64") && slices.matches_tag(" 64 "));
        assert!(!slices.matches_tag("63") && !slices.matches_tag("sixty-four"));
    }

    #[test]
    fn micros_round_trip() {
        let time = from_micros(1_700_000_000_123_456);
        assert_eq!(micros(time), 1_700_000_000_123_456);
    }
}
