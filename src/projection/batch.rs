//! What the [`Dispatcher`](super::Dispatcher) hands a projection that
//! commits a whole batch at once (a
//! [`Transactional`](super::Transactional) projection): the batch's
//! aggregate runs and, from the stream projector, the shard position to
//! commit with them.
//!
//! **Invariant:** a run holds consecutive events of one aggregate in
//! sequence order, or its deletion alone (no events), and `first_record` is
//! the index of its first record in the batch (the tombstone's, for a
//! deletion); a position is written only by the lease's owner, and only
//! over the checkpoint it last wrote.

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope};

use super::{ChangeRecord, Error};

/// Consecutive events of one aggregate, or its deletion, and the index of
/// its first record.
pub(crate) struct Run<A: Aggregate> {
    /// The index of the run's first record in the batch.
    pub first_record: usize,
    /// The aggregate.
    pub aggregate_id: String,
    /// Its events, in sequence order (none in a deletion's run).
    pub events: Vec<EventEnvelope<A>>,
    /// For a deletion's run: the sequence of the aggregate's last event
    /// (its tombstone's is the next one).
    pub deleted: Option<usize>,
}

/// A shard's position as a transaction writes it: the lease item, its
/// owner, and the checkpoint the owner last wrote (the condition).
#[derive(Debug, Clone)]
pub(crate) struct ShardPosition {
    /// The checkpoint table.
    pub table: String,
    /// The lease item's key.
    pub key: String,
    /// The shard.
    pub shard_id: String,
    /// The lease's owner.
    pub owner: String,
    /// The checkpoint the owner last wrote (`None`: none yet).
    pub previous: Option<String>,
}

/// A projection that commits a batch's runs itself, with the position.
#[async_trait]
pub(crate) trait BatchCommit<A: Aggregate>: Send + Sync {
    /// Commits `runs`, the events of `records[..end]`, with `position` (if
    /// given) moving as parts commit. Returns the last record whose
    /// position was committed, or the index of the first record not applied
    /// and why.
    async fn commit(
        &self,
        records: &[ChangeRecord],
        runs: &[Run<A>],
        end: usize,
        position: Option<ShardPosition>,
    ) -> Result<Option<String>, (usize, Error)>;
}
