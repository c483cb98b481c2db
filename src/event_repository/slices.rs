//! The repository's slices: with them, every event it writes carries its
//! slice and commit time, so that it appears in the events table's
//! `EventsBySlice` index (see [`crate::slice`]).
//!
//! **Invariant:** the attributes are stamped on every item of every commit
//! path (the one-event `PutItem` and transactions) in
//! [`commit`](super::commit), from one clock reading per commit.

use super::DynamoEventRepository;
use crate::slice::Slices;

impl DynamoEventRepository {
    /// Writes every event with its slice and commit time (see
    /// [`crate::slice`]), so that it appears in the events table's
    /// `EventsBySlice` index and in every [feed](crate::projection::feed)
    /// that reads its aggregate type. `slices` must be the table's slice
    /// count (the one [`TableOptions::with_slices`](crate::tables::TableOptions::with_slices)
    /// or [`add_slice_index`](crate::tables::add_slice_index) recorded):
    /// check it once at start with [`check_slices`](crate::tables::check_slices).
    /// Events written by a repository without it are in the feed only after
    /// a [backfill](crate::recode::backfill_slices).
    ///
    /// ```
    /// use aws_sdk_dynamodb::Client;
    /// use dynamo_es::slice::Slices;
    /// use dynamo_es::DynamoEventRepository;
    ///
    /// fn sliced(client: Client) -> DynamoEventRepository {
    ///     DynamoEventRepository::new(client).with_slices(Slices::new(64).unwrap())
    /// }
    /// ```
    #[must_use]
    pub fn with_slices(self, slices: Slices) -> Self {
        DynamoEventRepository {
            slices: Some(slices),
            ..self
        }
    }

    /// The slice count events are written with, if any.
    pub fn slices(&self) -> Option<Slices> {
        self.slices
    }
}
