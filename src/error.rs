//! The crate's one error type, and its mapping into cqrs-es errors.

use std::fmt;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use cqrs_es::persist::PersistenceError;
use cqrs_es::AggregateError;

use crate::outcome::is_throttling;

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
    #[error("optimistic lock conflict on {key}{}", TablePhrase("in", table))]
    Conflict {
        /// The key (`{type}:{id}` or the view id) that was written concurrently.
        key: String,
        /// The table(s) written, comma-separated (empty if not recorded).
        table: String,
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
    /// A zstd dictionary could not be found, read, stored or trained. See
    /// [`crate::dictionary::Error`]; a payload's is wrapped in
    /// [`Error::Item`], naming the item.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    #[error(transparent)]
    Dictionary(Box<crate::dictionary::Error>),
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
        #[cfg(feature = "compression")]
        if let Error::Dictionary(err) = self {
            use crate::dictionary::Error as D;
            return matches!(
                **err,
                D::NotFound { .. } | D::NotLoaded { .. } | D::Corrupt { .. } | D::Mismatch { .. }
            );
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

    /// Maps an SDK error of `operation` on `table` (several tables
    /// comma-separated) to a typed error whose message carries the
    /// operation, the table and what DynamoDB or the SDK said.
    pub(crate) fn from_sdk_on<E, R>(
        operation: &'static str,
        table: &str,
        err: SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let table = table.to_string();
        match &err {
            SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_) => {
                if let Some(reason) = misconfiguration(&err) {
                    return Error::Configuration {
                        operation,
                        table,
                        reason: reason.into(),
                        source: Box::new(err),
                    };
                }
                if matches!(err, SdkError::ConstructionFailure(_)) {
                    return Error::Dynamo {
                        operation,
                        message: causes(&err).into(),
                        table,
                        source: Box::new(err),
                    };
                }
                Error::Connection {
                    operation,
                    message: causes(&err).into(),
                    table,
                    source: Box::new(err),
                }
            }
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Error::Connection {
                operation,
                message: causes(&err).into(),
                table,
                source: Box::new(err),
            },
            SdkError::ServiceError(service) if is_throttling(service.err().code()) => {
                Error::Throttled {
                    operation,
                    message: service_message(service.err(), &table).into(),
                    table,
                    source: Box::new(err),
                }
            }
            SdkError::ServiceError(service) => Error::Dynamo {
                operation,
                message: service_message(service.err(), &table).into(),
                table,
                source: Box::new(err),
            },
            _ => Error::Dynamo {
                operation,
                message: causes(&err).into(),
                table,
                source: Box::new(err),
            },
        }
    }

    /// Maps a `TransactWriteItems` error on `table` (several tables
    /// comma-separated); cancellations for a failed condition or a
    /// conflicting transaction become [`Error::Conflict`] on `key`.
    pub(crate) fn from_transact_on(
        table: &str,
        key: &str,
        err: SdkError<TransactWriteItemsError>,
    ) -> Self {
        const OPERATION: &str = "TransactWriteItems";
        if let SdkError::ServiceError(service) = &err {
            // A previous attempt with the same token is still being applied:
            // whether it lands is unknown, as after a lost response.
            if let TransactWriteItemsError::TransactionInProgressException(_) = service.err() {
                return Error::Connection {
                    operation: OPERATION,
                    table: table.to_string(),
                    message: service_message(service.err(), table).into(),
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
                        table: table.to_string(),
                    };
                }
                let throttled = cancel
                    .cancellation_reasons()
                    .iter()
                    .any(|reason| is_throttling(reason.code()));
                if throttled {
                    return Error::Throttled {
                        operation: OPERATION,
                        table: table.to_string(),
                        message: service_message(service.err(), table).into(),
                        source: Box::new(err),
                    };
                }
            }
        }
        Error::from_sdk_on(OPERATION, table, err)
    }
}

impl Error {
    /// Records this error on the current span's `error` field and logs it
    /// at debug level as the failure of `what` (the error itself is returned
    /// to the caller, who decides how loud it is). A lost optimistic-lock
    /// race is logged as a conflict.
    pub(crate) fn record_in_span(&self, what: &'static str) {
        tracing::Span::current().record("error", tracing::field::display(self));
        match self {
            Error::Conflict { key, table } => tracing::debug!(
                %key,
                %table,
                "{what}: conflict, another writer committed first; nothing was written"
            ),
            _ => tracing::debug!(error = %self, "{what} failed"),
        }
    }
}

/// Runs `operation`; if it fails, records the error on the current span and
/// logs it ([`Error::record_in_span`]).
pub(crate) async fn in_span<T>(
    what: &'static str,
    operation: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let result = operation.await;
    if let Err(err) = &result {
        err.record_in_span(what);
    }
    result
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

/// What DynamoDB or the SDK said about `err` on `table`, as the typed
/// errors word it: a service error's code and message, or each cause of a
/// failure to get an answer.
pub(crate) fn sdk_message<E, R>(err: &SdkError<E, R>, table: &str) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(service) => service_message(service.err(), table),
        _ => causes(err),
    }
}

/// A service error as `Code: message`, with a hint for a missing table or
/// a key schema that is not this crate's. A cancelled transaction also
/// lists each item's cancellation reason and its message.
fn service_message<E>(err: &E, table: &str) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut text = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        (None, Some(message)) => message.to_string(),
        (None, None) => causes(err),
    };
    let mut messages = vec![err.message().unwrap_or_default().to_string()];
    let transact =
        (err as &(dyn std::error::Error + 'static)).downcast_ref::<TransactWriteItemsError>();
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = transact {
        for (index, reason) in cancel.cancellation_reasons().iter().enumerate() {
            let (Some(code), message) = (reason.code(), reason.message()) else {
                continue;
            };
            if code == "None" {
                continue;
            }
            match message {
                Some(message) => text.push_str(&format!("; item {index}: {code}: {message}")),
                None => text.push_str(&format!("; item {index}: {code}")),
            }
            messages.push(message.unwrap_or_default().to_string());
        }
    }
    let code = err.code().unwrap_or_default();
    if code == "ResourceNotFoundException" {
        let exists = match table {
            "" => "does the table exist".to_string(),
            table if table.contains(", ") => format!("do tables {table} exist"),
            table => format!("does table {table} exist"),
        };
        text.push_str(&format!(
            " ({exists} in this account and region? dynamo_es::create_event_tables and \
             create_view_table create the tables)"
        ));
    } else if messages
        .iter()
        .any(|message| is_key_schema_message(message))
    {
        let which = match table {
            "" => "the table does".to_string(),
            table if table.contains(", ") => format!("one of tables {table} does"),
            table => format!("table {table} does"),
        };
        text.push_str(&format!(
            " ({which} not have the key schema dynamo-es expects: events HASH \
             AggregateTypeAndId (S), RANGE AggregateIdSequence (N); snapshots HASH \
             AggregateTypeAndId (S); views HASH ViewId (S))"
        ));
    }
    text
}

/// True for DynamoDB's ways of saying a request's key is not the table's.
fn is_key_schema_message(message: &str) -> bool {
    [
        "key element does not match the schema",
        "Missing the key",
        "missed key schema element",
        "Query key condition not supported",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// An error and each of its sources, `: `-separated, without the repeats
/// the SDK's layers produce (and without `DisplayErrorContext`'s debug dump).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut last = String::new();
    let mut current = Some(err);
    while let Some(err) = current {
        let part = err.to_string();
        if !part.is_empty() && part != last {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        last = part;
        current = err.source();
    }
    text
}

/// What to set when no region is configured.
const SET_REGION: &str = "no AWS region is configured: set AWS_REGION (or `region` in the \
    profile's ~/.aws/config section), or call `.region(...)` on the SDK config";

/// What to set when no credentials were found.
const SET_CREDENTIALS: &str = "no AWS credentials: set AWS_ACCESS_KEY_ID and \
    AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a profile in ~/.aws/credentials or ~/.aws/config \
    (run `aws sso login` for an SSO profile), or call `.credentials_provider(...)` on the SDK config";

/// If `err` failed before anything was sent because the client is
/// misconfigured (no region, no credentials, no endpoint), what to fix.
///
/// The SDK reports these as a dispatch (or construction) failure whose
/// cause is an error from the signer, the endpoint resolver, the auth
/// scheme resolver or a credentials provider. Those error types are private
/// to the SDK's inner crates or absent from this crate's dependencies, so
/// they are recognised by the type name their `Debug` output starts with
/// (and, for the credentials errors, their message); `tests/errors.rs` pins
/// each case against the SDK in use.
fn misconfiguration<E, R>(err: &SdkError<E, R>) -> Option<String>
where
    E: std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    match err {
        // The request never left: nothing was sent to be lost or cut off.
        SdkError::DispatchFailure(failure) if !failure.is_io() && !failure.is_timeout() => {}
        SdkError::ConstructionFailure(_) => {}
        _ => return None,
    }
    let mut current = std::error::Error::source(err);
    while let Some(cause) = current {
        match debug_name(cause).as_str() {
            // aws-runtime's SigV4SigningError: no region to sign for.
            "MissingSigningRegion" | "MissingSigningRegionSet" => {
                return Some(SET_REGION.to_string())
            }
            // The endpoint rules need a region (no endpoint URL is set), or
            // the endpoint settings contradict each other.
            "ResolveEndpointError" => {
                let detail = causes(cause);
                return Some(if detail.contains("Missing Region") {
                    SET_REGION.to_string()
                } else {
                    format!(
                        "no DynamoDB endpoint can be resolved ({detail}): check AWS_REGION, \
                         AWS_ENDPOINT_URL_DYNAMODB and the SDK config's endpoint settings"
                    )
                });
            }
            // No credentials provider at all: nothing to sign with.
            "NoMatchingAuthSchemeError" => return Some(SET_CREDENTIALS.to_string()),
            // aws-credential-types' CredentialsError (whose messages all
            // say "credential"): every provider of the chain came up empty,
            // the configuration is broken, or a provider failed in a way it
            // does not expect (a profile provider reports its error once,
            // then "initialization error already taken").
            "CredentialsNotLoaded" if cause.to_string().contains("credential") => {
                return Some(format!("{SET_CREDENTIALS} ({})", causes(cause)))
            }
            "InvalidConfiguration" if cause.to_string().contains("credential") => {
                return Some(format!(
                    "the AWS credentials configuration is invalid ({}): check ~/.aws/config, \
                     ~/.aws/credentials and AWS_PROFILE, or set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY",
                    causes(cause)
                ))
            }
            "Unhandled" if cause.to_string().contains("credentials error") => {
                return Some(format!(
                    "AWS credentials could not be loaded ({}): set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or AWS_PROFILE to a working profile",
                    causes(cause)
                ))
            }
            _ => {}
        }
        current = cause.source();
    }
    None
}

/// The type or variant name an error's `Debug` output starts with
/// (`MissingSigningRegion` for `MissingSigningRegion`,
/// `ResolveEndpointError` for `ResolveEndpointError { .. }`), formatting no
/// more than that.
fn debug_name(err: &dyn std::error::Error) -> String {
    struct Name(String);
    impl fmt::Write for Name {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            for c in text.chars() {
                if c.is_alphanumeric() || c == '_' {
                    self.0.push(c);
                } else {
                    // Stops the formatting: the name is complete.
                    return Err(fmt::Error);
                }
            }
            Ok(())
        }
    }
    let mut name = Name(String::new());
    let _ = fmt::write(&mut name, format_args!("{err:?}"));
    name.0
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
            // Nothing was sent and a retry cannot help: never a connection
            // error, which invites reloading and retrying.
            err @ Error::Configuration { .. } => PersistenceError::UnknownError(Box::new(err)),
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
