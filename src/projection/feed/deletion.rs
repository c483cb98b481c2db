//! Deletions in a feed. An aggregate's tombstone
//! ([`DynamoEventRepository::delete_aggregate`](crate::DynamoEventRepository::delete_aggregate)),
//! written by a repository with slices, is in the slice index at the
//! sequence after the aggregate's last event (`N + 1`, with
//! `DeletedThrough = N`): the reader delivers it as the aggregate's next
//! item, and the [`Dispatcher`](crate::projection::Dispatcher) passes it to
//! [`Projection::deleted`](crate::projection::Projection::deleted). A feed
//! that was behind when the events were deleted reads the tombstone after a
//! gap: the events it deleted are gone from the table and the index.
//!
//! **Invariant:** a sequence missing before an aggregate's held run is
//! taken as deleted (no gap, [`Gone`]) only if a tombstone of the aggregate
//! read with it deleted through it (`DeletedThrough` at or above it) *and*
//! a strongly consistent read of the table finds it absent. An event still
//! in the table is what it always was (late in the index: waited for, or
//! read by key and delivered first); an event missing below anything but a
//! tombstone stops the feed with [`Error::FeedGap`] as before.

use aws_sdk_dynamodb::Client;

use super::position::{Gone, Seen};
use crate::error::Error as StoreError;
use crate::item::{aggregate_key, get_n, AGGREGATE_ID_SEQUENCE};
use crate::projection::Error;
use crate::tables::requests::sequences_between;

/// The tombstone of `aggregate_id` among `seen` that deleted `sequence`:
/// its sequence and `DeletedThrough`.
pub(super) fn tombstone_over(
    seen: &[Seen],
    aggregate_id: &str,
    sequence: usize,
) -> Option<(usize, usize)> {
    seen.iter().find_map(|event| match event.deleted_through {
        Some(through)
            if event.aggregate_id == aggregate_id
                && sequence <= through
                && through < event.sequence =>
        {
            Some((event.sequence, through))
        }
        _ => None,
    })
}

/// Reads whether the table still holds the events a tombstone deleted.
pub(super) struct Deleted<'a> {
    pub(super) client: &'a Client,
    pub(super) table: &'a str,
    pub(super) aggregate_type: &'a str,
}

impl Deleted<'_> {
    /// The first sequence in `first..=last` of `aggregate_id` the table
    /// holds (strongly consistent, keys only), if any.
    pub(super) async fn first_held(
        &self,
        aggregate_id: &str,
        first: usize,
        last: usize,
    ) -> Result<Option<usize>, Error> {
        let key = aggregate_key(self.aggregate_type, aggregate_id);
        let out = sequences_between(self.client, self.table, &key, first, last)
            .projection_expression("#key, #seq")
            .limit(1)
            .send()
            .await
            .map_err(|err| StoreError::from_sdk_on("Query", self.table, err))?;
        match out.items.unwrap_or_default().first() {
            Some(item) => Ok(Some(
                get_n(item, &key, AGGREGATE_ID_SEQUENCE).map_err(Error::Store)?,
            )),
            None => Ok(None),
        }
    }

    /// Whether event `sequence` of `aggregate_id` was deleted with its
    /// aggregate: a tombstone in `seen` deleted it and the table no longer
    /// holds it.
    pub(super) async fn gone(
        &self,
        seen: &[Seen],
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<bool, Error> {
        Ok(tombstone_over(seen, aggregate_id, sequence).is_some()
            && self
                .first_held(aggregate_id, sequence, sequence)
                .await?
                .is_none())
    }

    /// For `sequence`, missing before a held run of `aggregate_id`: if a
    /// tombstone in `seen` deleted it and the table no longer holds it,
    /// records in `gone` the absent sequences from it to the next item the
    /// table holds, and says so (plan again); `false` otherwise (it is
    /// checked as any missing event).
    pub(super) async fn account(
        &self,
        aggregate_id: &str,
        sequence: usize,
        seen: &[Seen],
        gone: &mut Gone,
    ) -> Result<bool, Error> {
        let Some((tombstone, through)) = tombstone_over(seen, aggregate_id, sequence) else {
            return Ok(false);
        };
        let held = self.first_held(aggregate_id, sequence, tombstone).await?;
        match held {
            Some(held) if held == sequence => Ok(false),
            held => {
                let last = held.map_or(through, |held| held - 1).min(through);
                tracing::debug!(
                    table = %self.table,
                    aggregate_id,
                    first = sequence,
                    last,
                    "events deleted with their aggregate, taken as accounted for by its tombstone"
                );
                gone.insert(aggregate_id, sequence, last);
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_runs_are_skipped_and_only_they() {
        let mut gone = Gone::default();
        gone.insert("a", 2, 4);
        gone.insert("a", 5, 6);
        assert_eq!(gone.skip("a", 1), 1);
        assert_eq!(gone.skip("a", 2), 7);
        assert_eq!(gone.skip("a", 7), 7);
        assert_eq!(gone.skip("b", 2), 2);
    }

    #[test]
    fn only_a_later_tombstone_that_deleted_the_sequence_accounts_for_it() {
        let seen = |sequence, deleted_through| Seen {
            aggregate_id: "a".into(),
            sequence,
            micros: 1,
            deleted_through,
        };
        let events = [seen(3, None), seen(6, Some(5))];
        assert_eq!(tombstone_over(&events, "a", 2), Some((6, 5)));
        assert_eq!(tombstone_over(&events, "a", 6), None);
        assert_eq!(tombstone_over(&events, "b", 2), None);
        assert_eq!(tombstone_over(&events[..1], "a", 2), None);
    }
}
