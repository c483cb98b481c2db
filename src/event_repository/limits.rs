//! The DynamoDB limits a commit is checked against before anything is
//! sent: the partition key's size, each item's size, and a transaction's
//! item count and total size.
//!
//! **Invariant:** a write that breaks a limit is refused here with
//! [`Error::LimitExceeded`], naming the aggregate, what is too big, its size
//! and the limit; nothing of it is sent. The commit path, the transaction
//! and recode all check through these functions.

use crate::error::{Error, Limit, Result};
use crate::size::{
    MAX_ITEM_SIZE, MAX_PARTITION_KEY_SIZE, MAX_TRANSACTION_ITEMS, MAX_TRANSACTION_SIZE,
};
use crate::snapshot::PlannedWrite;

/// [`Error::LimitExceeded`] for `subject` of `aggregate` if `size` is over
/// `max`, the value of `limit`.
fn within(aggregate: &str, subject: &str, limit: Limit, size: usize, max: usize) -> Result<()> {
    if size > max {
        return Err(Error::LimitExceeded {
            aggregate: aggregate.to_string(),
            subject: subject.into(),
            limit,
            size,
            max,
        });
    }
    Ok(())
}

/// Rejects an aggregate key (`{type}:{id}`) over DynamoDB's partition key
/// size limit.
pub(super) fn check_key(key: &str) -> Result<()> {
    within(
        key,
        "aggregate key",
        Limit::PartitionKeySize,
        key.len(),
        MAX_PARTITION_KEY_SIZE,
    )
}

/// Rejects a plan that breaks an item, count or size limit.
pub(crate) fn check_limits(aggregate: &str, writes: &[PlannedWrite]) -> Result<()> {
    check_limits_of(aggregate, writes.iter())
}

/// [`check_limits`] over writes from several lists.
pub(super) fn check_limits_of<'a>(
    aggregate: &str,
    writes: impl Iterator<Item = &'a PlannedWrite> + Clone,
) -> Result<()> {
    for write in writes.clone() {
        within(
            aggregate,
            &write.subject,
            Limit::ItemSize,
            write.size,
            MAX_ITEM_SIZE,
        )?;
    }
    let count = writes.clone().count();
    within(
        aggregate,
        "transaction",
        Limit::TransactionItems,
        count,
        MAX_TRANSACTION_ITEMS,
    )?;
    let total: usize = writes.map(|w| w.size).sum();
    within(
        aggregate,
        "transaction",
        Limit::TransactionSize,
        total,
        MAX_TRANSACTION_SIZE,
    )
}
