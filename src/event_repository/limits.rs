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

/// Rejects an aggregate key (`{type}:{id}`) over DynamoDB's partition key
/// size limit.
pub(super) fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_PARTITION_KEY_SIZE {
        return Err(Error::LimitExceeded {
            aggregate: key.to_string(),
            subject: "aggregate key".into(),
            limit: Limit::PartitionKeySize,
            size: key.len(),
            max: MAX_PARTITION_KEY_SIZE,
        });
    }
    Ok(())
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
    if let Some(write) = writes.clone().find(|w| w.size > MAX_ITEM_SIZE) {
        return Err(Error::LimitExceeded {
            aggregate: aggregate.to_string(),
            subject: write.subject.clone(),
            limit: Limit::ItemSize,
            size: write.size,
            max: MAX_ITEM_SIZE,
        });
    }
    let count = writes.clone().count();
    if count > MAX_TRANSACTION_ITEMS {
        return Err(Error::LimitExceeded {
            aggregate: aggregate.to_string(),
            subject: "transaction".into(),
            limit: Limit::TransactionItems,
            size: count,
            max: MAX_TRANSACTION_ITEMS,
        });
    }
    let total: usize = writes.map(|w| w.size).sum();
    if total > MAX_TRANSACTION_SIZE {
        return Err(Error::LimitExceeded {
            aggregate: aggregate.to_string(),
            subject: "transaction".into(),
            limit: Limit::TransactionSize,
            size: total,
            max: MAX_TRANSACTION_SIZE,
        });
    }
    Ok(())
}
