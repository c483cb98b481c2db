//! The crate's one error type, [`Error`], and [`Result`].
//!
//! Every error this crate returns is an [`Error`]; a subsystem with errors
//! of its own (`recode::Error`, `projection::Error`, `dictionary::Error`,
//! `codec::Refused`) is wrapped in one of its variants. What lives around it
//! is split by concept, each file using this one and none used by it:
//! - `limit`: the DynamoDB limits a write can break ([`Limit`]);
//! - `classify`: an AWS SDK error of an operation on a table, as a typed
//!   [`Error`] (conflict, throttling, connection, configuration, DynamoDB);
//! - `message`: the wording of what DynamoDB or the SDK said, with hints;
//! - `misconfiguration`: recognising a client that cannot sign or address a
//!   request, and what to set;
//! - `span`: recording a failure on the current tracing span;
//! - `persistence`: the mapping into cqrs-es errors.

use std::fmt;

mod classify;
#[cfg(feature = "compression")]
pub(crate) mod dictionary;
mod limit;
mod message;
mod misconfiguration;
mod persistence;
mod span;

pub(crate) use classify::or_refused;
pub use limit::Limit;
pub(crate) use message::sdk_message;
pub(crate) use span::{aggregate_span, in_span, read_span};

/// A boxed error from a lower layer (the AWS SDK, serde, zstd).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every error this crate returns.
///
/// It converts into [`PersistenceError`](cqrs_es::persist::PersistenceError) and
/// [`AggregateError`](cqrs_es::AggregateError), so it can
/// flow through cqrs-es unchanged; the original is kept as the boxed source
/// and can be recovered with `downcast_ref::<dynamo_es::Error>()`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A conditional write lost: another writer committed first
    /// (`ConditionalCheckFailed` or `TransactionConflict`).
    #[error("optimistic lock conflict on {key}{}", TablePhrase("in", table))]
    Conflict {
        /// The key (`{type}:{id}` or the view id) that was written concurrently.
        key: String,
        /// The table(s) written, comma-separated (empty if not recorded).
        table: String,
    },
    /// The aggregate was deleted
    /// ([`delete_aggregate`](crate::DynamoEventRepository::delete_aggregate)):
    /// its tombstone keeps its sequence, so it can be neither loaded nor
    /// written again. Use another aggregate id.
    #[error(
        "aggregate {aggregate_type}:{id} was deleted (its events through sequence \
         {last_sequence}; tombstone in table {table}): it cannot be loaded or changed; \
         use another aggregate id"
    )]
    AggregateDeleted {
        /// The aggregate type.
        aggregate_type: Box<str>,
        /// The aggregate id.
        id: Box<str>,
        /// The sequence of its last event, kept by the tombstone.
        last_sequence: usize,
        /// The events table holding the tombstone.
        table: Box<str>,
    },
    /// Every item of the aggregate is past its expiry
    /// ([`with_expiry`](crate::DynamoEventRepository::with_expiry)): it is
    /// gone, and refused as a deleted one is, until DynamoDB removes its
    /// items (then its id starts afresh).
    #[error(
        "aggregate {aggregate_type}:{id} expired (every event through sequence {last_sequence} \
         in table {table} is past its ExpiresAt): it is gone; DynamoDB removes its items \
         within days, after which the id can be used again"
    )]
    AggregateExpired {
        /// The aggregate type.
        aggregate_type: Box<str>,
        /// The aggregate id.
        id: Box<str>,
        /// The sequence of its last expired event.
        last_sequence: usize,
        /// The events table.
        table: Box<str>,
    },
    /// Some events of the aggregate are past their expiry and later ones
    /// are not: it cannot be loaded whole, and is not loaded in part.
    #[error(
        "aggregate {aggregate_type}:{id} is partly expired: its events through sequence \
         {sequence} in table {table} are past their ExpiresAt and later ones are not; it cannot \
         be loaded whole (raise the type's time to live above the aggregate's life, or \
         snapshot it so a snapshot covers the expired events)"
    )]
    PartlyExpired {
        /// The aggregate type.
        aggregate_type: Box<str>,
        /// The aggregate id.
        id: Box<str>,
        /// The sequence of an expired event followed by live ones.
        sequence: usize,
        /// The events table.
        table: Box<str>,
    },
    /// DynamoDB throttled the request and the SDK's retries ran out.
    #[error(
        "{operation}{} throttled by DynamoDB after retries: {message}",
        TablePhrase("on", table)
    )]
    Throttled {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The table(s) the call addressed, comma-separated (empty if not
        /// recorded).
        table: String,
        /// What DynamoDB said: the error code and message.
        message: Box<str>,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// The request never got a usable answer: connection refused or reset,
    /// a timeout, or a response cut off or garbled in transit; or a
    /// `TransactWriteItems` answered `TransactionInProgressException` (an
    /// earlier attempt of the same transaction is still being applied).
    /// Whether a write was applied is unknown.
    #[error(
        "{operation}{} could not reach DynamoDB: {message}",
        TablePhrase("on", table)
    )]
    Connection {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The table(s) the call addressed, comma-separated (empty if not
        /// recorded).
        table: String,
        /// What went wrong, each cause of the SDK error in turn.
        message: Box<str>,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// DynamoDB answered with an error this crate has no special meaning for:
    /// a missing table (`ResourceNotFoundException`), a table whose key
    /// schema is not this crate's (`ValidationException`), missing
    /// permissions (`AccessDeniedException`), and so on. The message is
    /// DynamoDB's, with a hint for the usual causes.
    #[error("{operation}{} failed: {message}", TablePhrase("on", table))]
    Dynamo {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The table(s) the call addressed, comma-separated (empty if not
        /// recorded).
        table: String,
        /// What DynamoDB said: the error code and message, and a hint for a
        /// missing table or a key schema that is not this crate's.
        message: Box<str>,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// The AWS client cannot sign or address a request, so nothing was sent:
    /// no region is configured, no credentials were found, the credentials
    /// configuration is invalid, or no endpoint can be resolved.
    ///
    /// Retrying cannot help and no write happened: fix the configuration.
    /// `reason` says what to set, for example `set AWS_REGION` or
    /// `set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`. It
    /// maps to `PersistenceError::UnknownError`
    /// (`AggregateError::UnexpectedError`), never to a connection error.
    #[error("{operation}{} was not sent: {reason}", TablePhrase("on", table))]
    Configuration {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The table(s) the call addressed, comma-separated (empty if not
        /// recorded).
        table: String,
        /// What is missing or wrong, and how to fix it.
        reason: Box<str>,
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
    /// A table's DynamoDB stream cannot feed projections: its records do
    /// not carry the new item (view type `KEYS_ONLY` or `OLD_IMAGE`), or no
    /// stream showed after enabling one (see [`crate::tables::enable_stream`]).
    /// Nothing was changed.
    #[error("table {table} has stream view type {found}, projections need {expected}")]
    TableStream {
        /// The table.
        table: String,
        /// The view types that work, e.g. `NEW_IMAGE (or NEW_AND_OLD_IMAGES)`.
        expected: String,
        /// The view type the stream has, or `none`.
        found: String,
    },
    /// An events table's `EventsBySlice` index is missing, or was made for
    /// another slice count than the writer's or reader's (see
    /// [`crate::slice`]), or the table's slice tag is missing or changed.
    /// Nothing was written or read: configure the table's slice count
    /// (`dynamo-es report` shows it), or add the index with
    /// [`crate::tables::add_slice_index`].
    #[error("table {table}: expected {expected}, found {found}")]
    TableSlices {
        /// The events table.
        table: String,
        /// What the caller needs.
        expected: String,
        /// What the table has.
        found: String,
    },
    /// The table's Time to Live is on another attribute than
    /// [`EXPIRES_AT`](crate::item::EXPIRES_AT) (a table has one): see
    /// [`crate::tables::enable_ttl`].
    #[error(
        "table {table} expires items by attribute {found}, not ExpiresAt, which dynamo-es \
         writes: disable its Time to Live (UpdateTimeToLive) before enabling it for ExpiresAt"
    )]
    TableTtl {
        /// The table.
        table: String,
        /// Its TTL attribute.
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
    /// A payload was refused before anything was sent, because a reader
    /// would refuse or misread it (a duplicate map key, nesting too deep, a
    /// decoded size over the codec's limit). See [`crate::codec::Refused`].
    #[error(transparent)]
    Refused(Box<crate::codec::Refused>),
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
    /// Personal data could not be sealed or opened, or its key had: see
    /// [`crate::encryption::Error`]. Nothing was written.
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    #[error(transparent)]
    Encryption(Box<crate::encryption::Error>),
    /// A zstd dictionary could not be found, read, stored or trained. See
    /// [`crate::dictionary::Error`]; a payload's is wrapped in
    /// [`Error::Item`], naming the item.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    #[error(transparent)]
    Dictionary(Box<dictionary::Error>),
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

    /// True if the aggregate was deleted ([`Error::AggregateDeleted`]).
    pub fn is_deleted(&self) -> bool {
        matches!(self, Error::AggregateDeleted { .. })
    }

    /// True where the stored data (not the request) is at fault.
    pub fn is_data_error(&self) -> bool {
        #[cfg(feature = "compression")]
        if let Error::Dictionary(err) = self {
            use dictionary::Error as D;
            return matches!(
                **err,
                D::NotFound { .. } | D::NotLoaded { .. } | D::Corrupt { .. } | D::Mismatch { .. }
            );
        }
        #[cfg(feature = "encryption")]
        if let Error::Encryption(err) = self {
            return err.is_data_error();
        }
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

    /// True when the AWS client is misconfigured (no region, no
    /// credentials): nothing was sent, and retrying cannot help.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Error::Configuration { .. })
    }
}

/// ` {preposition} table {table}` (` {preposition} tables {a, b}`), or
/// nothing for no table: `TablePhrase("on", "events")` is ` on table events`.
struct TablePhrase<'a>(&'static str, &'a str);

impl fmt::Display for TablePhrase<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TablePhrase(preposition, table) = *self;
        match table {
            "" => Ok(()),
            table if table.contains(", ") => write!(f, " {preposition} tables {table}"),
            table => write!(f, " {preposition} table {table}"),
        }
    }
}
