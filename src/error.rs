//! The crate's one error type, and its mapping into cqrs-es errors.

use std::fmt;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use cqrs_es::persist::PersistenceError;
use cqrs_es::AggregateError;

/// A boxed error from a lower layer (the AWS SDK, serde, zstd).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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

/// Every error this crate returns.
///
/// It converts into [`PersistenceError`] and [`AggregateError`], so it can
/// flow through cqrs-es unchanged; the original is kept as the boxed source
/// and can be recovered with `downcast_ref::<dynamo_es::Error>()`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A conditional write lost: another writer committed first
    /// (`ConditionalCheckFailed` or `TransactionConflict`).
    #[error("optimistic lock conflict on {key}")]
    Conflict {
        /// The key (`{type}:{id}` or the view id) that was written concurrently.
        key: String,
    },
    /// DynamoDB throttled the request and the SDK's retries ran out.
    #[error("{operation} throttled by DynamoDB after retries: {source}")]
    Throttled {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// The request never got a usable answer: connection refused or reset,
    /// a timeout, or a response cut off or garbled in transit; or a
    /// `TransactWriteItems` answered `TransactionInProgressException` (an
    /// earlier attempt of the same transaction is still being applied).
    /// Whether a write was applied is unknown.
    #[error("{operation} could not reach DynamoDB: {source}")]
    Connection {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// DynamoDB answered with an error this crate has no special meaning for.
    #[error("{operation} failed: {source}")]
    Dynamo {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// A write would break a DynamoDB limit. Nothing was sent.
    #[error("{aggregate}: {subject} is {size} {unit}, over the DynamoDB {limit} limit of {max}", unit = limit.unit())]
    LimitExceeded {
        /// The aggregate (`{type}:{id}`) or view id being written.
        aggregate: String,
        /// What is too big, e.g. `event 7` or `transaction`.
        subject: String,
        /// Which limit.
        limit: Limit,
        /// The size planned.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A table did not become ACTIVE in time after it was created.
    #[error("table {table} is still {status} after {waited:?}; it never became ACTIVE")]
    TableNotActive {
        /// The table.
        table: String,
        /// Its last status (`CREATING`, `UPDATING`, ...).
        status: String,
        /// How long it was waited for.
        waited: std::time::Duration,
    },
    /// An existing table's key schema is not the one this crate needs
    /// (see [`crate::tables`]). Nothing was created or changed.
    #[error("table {table} has key schema {found}, expected {expected}")]
    TableSchema {
        /// The table.
        table: String,
        /// The key schema needed, e.g. `HASH AggregateTypeAndId (S)`.
        expected: String,
        /// The key schema the table has.
        found: String,
    },
    /// A stored item lacks an attribute.
    #[error("item {key}: missing attribute {attribute}")]
    MissingAttribute {
        /// The item's key.
        key: String,
        /// The attribute name.
        attribute: &'static str,
    },
    /// A stored attribute has the wrong type or an unparsable value.
    #[error("item {key}: attribute {attribute} is not {expected}")]
    InvalidAttribute {
        /// The item's key.
        key: String,
        /// The attribute name.
        attribute: &'static str,
        /// What was expected, e.g. `a binary value` or `a non-negative integer`.
        expected: &'static str,
    },
    /// A stored payload could not be decoded.
    #[error("item {key}: attribute {attribute}: {source}")]
    Item {
        /// The item's key.
        key: String,
        /// The attribute name.
        attribute: &'static str,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A chunked snapshot's chunks do not match its head item (missing,
    /// of another version, or not hashing to the head's hash) although the
    /// head did not change between reads: the stored data is inconsistent.
    #[error("snapshot {key}: {reason}")]
    Snapshot {
        /// The snapshot's key.
        key: String,
        /// What did not match.
        reason: String,
    },
    /// A chunked snapshot was rewritten by another writer while it was being
    /// read, on every attempt: its head item changed between reads, so the
    /// chunks read never matched one version. Nothing is wrong with the
    /// stored data; this is transient (it maps to
    /// `PersistenceError::ConnectionError`): retry the command. A snapshot
    /// whose chunks stay inconsistent under an unchanged head is corrupt and
    /// is [`Error::Snapshot`] instead.
    #[error("snapshot {key} kept changing while being read ({reason}); retry")]
    SnapshotChanging {
        /// The snapshot's key.
        key: String,
        /// The last mismatch seen.
        reason: String,
    },
    /// A commit is malformed (for example it holds an event of another
    /// aggregate): a caller error, not a DynamoDB one. Nothing was sent.
    #[error("invalid commit for {aggregate}: {reason}")]
    InvalidCommit {
        /// The aggregate (`{type}:{id}`) being committed.
        aggregate: String,
        /// What is wrong with the commit.
        reason: String,
    },
    /// A payload is stored in a format whose cargo feature is off.
    #[error("payload is {format}; enable the `{feature}` feature of dynamo-es to read it")]
    FeatureDisabled {
        /// The stored format's stable name.
        format: &'static str,
        /// The cargo feature that reads it.
        feature: &'static str,
    },
    /// A payload is not valid in the format its bytes claim.
    #[error("corrupt {format} payload: {reason}")]
    Corrupt {
        /// The stored format's stable name.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A value cannot be stored or read back exactly in the data model every
    /// codec shares (for example an integer beyond 128 bits, a non-finite
    /// float, a map key that is not a string, or an integer beyond 64 bits
    /// read into a `serde_json::Value`). Nothing was written.
    #[error("not exact in the {format} data model: {reason}")]
    Inexact {
        /// The format that could not hold the value exactly.
        format: &'static str,
        /// What could not be held.
        reason: String,
    },
    /// A payload decodes to more bytes than the codec allows.
    #[error("payload decodes to {size} bytes, over the limit of {max}")]
    DecodedTooLarge {
        /// The size declared or reached (at least).
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A value could not be serialized or deserialized.
    #[error("serde: {0}")]
    Serde(#[source] BoxError),
    /// A request could not be built.
    #[error("request build: {0}")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
    /// An I/O error (the embedded emulator).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A recode run failed for a reason of its own: its checkpoint file,
    /// a scan segment task, its own state. See [`crate::recode::Error`].
    #[error(transparent)]
    Recode(#[from] Box<crate::recode::Error>),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a payload error with the item key and attribute it came from.
    pub(crate) fn in_item(self, key: &str, attribute: &'static str) -> Self {
        Error::Item {
            key: key.to_string(),
            attribute,
            source: Box::new(self),
        }
    }

    /// True for a lost optimistic-lock race.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// True where the stored data (not the request) is at fault.
    pub fn is_data_error(&self) -> bool {
        matches!(
            self,
            Error::MissingAttribute { .. }
                | Error::InvalidAttribute { .. }
                | Error::Item { .. }
                | Error::Snapshot { .. }
                | Error::FeatureDisabled { .. }
                | Error::Corrupt { .. }
                | Error::DecodedTooLarge { .. }
                | Error::Inexact { .. }
                | Error::Serde(_)
        )
    }

    /// Maps an SDK error of `operation` to a typed error.
    pub(crate) fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        match &err {
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => Error::Connection {
                operation,
                source: Box::new(err),
            },
            SdkError::ServiceError(service) if is_throttling(service.err().code()) => {
                Error::Throttled {
                    operation,
                    source: Box::new(err),
                }
            }
            _ => Error::Dynamo {
                operation,
                source: Box::new(err),
            },
        }
    }

    /// Maps a `TransactWriteItems` error; cancellations for a failed condition
    /// or a conflicting transaction become [`Error::Conflict`] on `key`.
    pub(crate) fn from_transact(key: &str, err: SdkError<TransactWriteItemsError>) -> Self {
        if let SdkError::ServiceError(service) = &err {
            // A previous attempt with the same token is still being applied:
            // whether it lands is unknown, as after a lost response.
            if let TransactWriteItemsError::TransactionInProgressException(_) = service.err() {
                return Error::Connection {
                    operation: "TransactWriteItems",
                    source: Box::new(err),
                };
            }
            if let TransactWriteItemsError::TransactionCanceledException(cancel) = service.err() {
                let conflict = cancel.cancellation_reasons().iter().any(|reason| {
                    matches!(
                        reason.code(),
                        Some("ConditionalCheckFailed") | Some("TransactionConflict")
                    )
                });
                if conflict {
                    return Error::Conflict {
                        key: key.to_string(),
                    };
                }
                let throttled = cancel
                    .cancellation_reasons()
                    .iter()
                    .any(|reason| is_throttling(reason.code()));
                if throttled {
                    return Error::Throttled {
                        operation: "TransactWriteItems",
                        source: Box::new(err),
                    };
                }
            }
        }
        Error::from_sdk("TransactWriteItems", err)
    }
}

/// True when DynamoDB cancelled a transaction only because items were
/// throttled (no failed condition, no conflicting transaction), so sending
/// the same transaction again may succeed.
pub(crate) fn cancelled_by_throttling(
    cancel: &aws_sdk_dynamodb::types::error::TransactionCanceledException,
) -> bool {
    let reasons = cancel.cancellation_reasons();
    !reasons.iter().any(|reason| {
        matches!(
            reason.code(),
            Some("ConditionalCheckFailed") | Some("TransactionConflict")
        )
    }) && reasons.iter().any(|reason| is_throttling(reason.code()))
}

fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingError"
                | "ThrottlingException"
                | "ProvisionedThroughputExceeded"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "ThrottlingReasonException"
        )
    )
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Serde(Box::new(err))
    }
}

impl From<Error> for PersistenceError {
    fn from(err: Error) -> Self {
        match err {
            Error::Conflict { .. } => PersistenceError::OptimisticLockError,
            Error::Throttled { .. } | Error::Connection { .. } | Error::SnapshotChanging { .. } => {
                PersistenceError::ConnectionError(Box::new(err))
            }
            err if err.is_data_error() => PersistenceError::DeserializationError(Box::new(err)),
            err @ Error::Recode(_) => PersistenceError::UnknownError(Box::new(err)),
            err => PersistenceError::UnknownError(Box::new(err)),
        }
    }
}

impl<T: std::error::Error> From<Error> for AggregateError<T> {
    fn from(err: Error) -> Self {
        PersistenceError::from(err).into()
    }
}
