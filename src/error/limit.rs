//! The DynamoDB limits a write can break, as [`Error::LimitExceeded`]
//! names them: each with the unit it is counted in.
//!
//! [`Error::LimitExceeded`]: super::Error::LimitExceeded

use std::fmt;

/// Which DynamoDB limit a write would break.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// 400 KB (409,600 bytes) per item, attribute names included.
    ItemSize,
    /// 100 items per `TransactWriteItems` call.
    TransactionItems,
    /// 4 MB (4,194,304 bytes) per transaction, summed over its items.
    TransactionSize,
    /// 2,048 bytes per partition key value.
    PartitionKeySize,
}

impl Limit {
    /// The unit the limit is counted in.
    pub fn unit(self) -> &'static str {
        match self {
            Limit::TransactionItems => "items",
            _ => "bytes",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::ItemSize => "item size",
            Limit::TransactionItems => "items per transaction",
            Limit::TransactionSize => "transaction size",
            Limit::PartitionKeySize => "partition key size",
        })
    }
}
