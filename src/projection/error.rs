//! [`Error`]: every error of [`projection`](crate::projection). Each names
//! what it is about (the item key, the shard, the record) so an operator can
//! act on the message alone.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::BoxError;

/// An error reading, decoding or dispatching stream records, or keeping
/// checkpoints and leases.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An event item of the projected aggregate type could not be decoded
    /// into an [`EventEnvelope`](cqrs_es::EventEnvelope): a missing or
    /// malformed attribute, a corrupt payload, or a payload the event type
    /// does not deserialize from (an upcaster may be missing).
    #[error("cannot decode event item {key}: {source}")]
    Decode {
        /// The item key, `{type}:{id}#{sequence}`.
        key: String,
        /// What was wrong with it.
        #[source]
        source: crate::Error,
    },
    /// An `INSERT` of an event item arrived without its new image: the
    /// stream's view type is `KEYS_ONLY` or `OLD_IMAGE`.
    #[error(
        "stream record {sequence_number} for event item {key} has no new image; \
         the table's stream must have view type NEW_IMAGE or NEW_AND_OLD_IMAGES"
    )]
    MissingImage {
        /// The item key, `{type}:{id}#{sequence}`.
        key: String,
        /// The stream record's sequence number.
        sequence_number: String,
    },
    /// A stream record lacks something every record has (a sequence
    /// number, keys) or carries a value this SDK does not know.
    #[error("invalid stream record {record}: {reason}")]
    InvalidRecord {
        /// The record's sequence number or event id, as far as known.
        record: String,
        /// What is wrong.
        reason: String,
    },
    /// A feed cannot deliver an event that later events of its aggregate
    /// need first: it is not in the `EventsBySlice` index (written without
    /// a slice) or not in the table. Nothing of that aggregate after it was
    /// delivered.
    #[error("feed on {table}: event {event} is missing from the feed: {reason}")]
    FeedGap {
        /// The events table.
        table: String,
        /// The missing event, `{type}:{id}#{sequence}`.
        event: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Another process saved a feed position this process read: two feeds
    /// of one projection read the same slice. Nothing was saved; this
    /// process stops (give each process its own slice range).
    #[error("feed position {key} in {table} was saved by another process meanwhile")]
    FeedPositionTaken {
        /// The checkpoint table.
        table: String,
        /// The position's item key.
        key: String,
    },
    /// A DynamoDB error (on the events, view or checkpoint table).
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// A DynamoDB Streams call failed.
    #[error("DynamoDB Streams {operation} on {target} failed: {message}")]
    Streams {
        /// The operation (`GetRecords`, `GetShardIterator`, `DescribeStream`...).
        operation: &'static str,
        /// The stream ARN or shard id it was called on.
        target: String,
        /// What the service or the SDK said.
        message: String,
    },
    /// Records the projection had not read were trimmed (DynamoDB Streams
    /// keeps records 24 hours): those after its checkpoint in the shard, a
    /// checkpointed shard that is no longer in the stream's description, a
    /// child shard whose first records are gone, or a shard this projection
    /// never read whose children are left (`checkpoint` is then `none`).
    /// Events were lost to this projection, and only a rebuild from the
    /// events table recovers it. The projector stops before dispatching
    /// anything after the gap.
    #[error(
        "shard {shard_id} of {stream_arn}: records after checkpoint {checkpoint} were trimmed \
         (past the 24-hour stream retention) before this projection read them; \
         the projection misses events: rebuild it from the events table"
    )]
    Trimmed {
        /// The stream ARN.
        stream_arn: String,
        /// The shard.
        shard_id: String,
        /// The last sequence number the projection processed (`none` if it
        /// had none).
        checkpoint: String,
    },
    /// The projection's last [`Rebuild`](super::Rebuild) started but never
    /// finished (it is still running, or it failed): its start marker
    /// would move the projector past records whose events the rebuild may
    /// not have dispatched, so the projector does not start.
    #[error(
        "projection {projection} in checkpoint table {table}: its rebuild started at \
         {started_at_ms} (Unix ms) has not finished (still running, or it failed); \
         starting the projector would miss the events the rebuild did not dispatch: \
         wait for it, or run the rebuild again to completion, then start the projector"
    )]
    RebuildUnfinished {
        /// The projection's name.
        projection: String,
        /// The checkpoint table.
        table: String,
        /// When the rebuild started, Unix milliseconds.
        started_at_ms: u64,
    },
    /// Another owner took the shard's lease (this one stopped renewing it
    /// in time): this process must stop processing the shard.
    #[error("lease on shard {shard_id} was lost by {owner}: another projector took it over")]
    LeaseLost {
        /// The shard.
        shard_id: String,
        /// This process's owner id.
        owner: String,
    },
    /// A view write kept conflicting with concurrent writers.
    #[error("view {view_id} in {table}: still conflicting after {attempts} attempts")]
    ViewContention {
        /// The view id.
        view_id: String,
        /// The view table.
        table: String,
        /// How many writes were tried.
        attempts: u32,
    },
    /// A user projection failed.
    #[error("projection failed: {0}")]
    Projection(#[source] BoxError),
    /// The writes a [`TransactionalProjection`](super::TransactionalProjection)
    /// returned for one aggregate's events, with the per-aggregate sequence
    /// and the position, exceed one DynamoDB transaction (100 items, 4 MB):
    /// a batch is split only at aggregate boundaries.
    #[error(
        "transactional projection {projection}: the writes for the events of aggregate \
         {aggregate_id} from sequence {sequence} need {items} items and about {bytes} bytes, \
         more than one TransactWriteItems allows (100 items, 4 MB, position included); \
         write fewer, merged items per event (for example one item per view, not per event)"
    )]
    TransactionTooLarge {
        /// The projection's name.
        projection: String,
        /// The aggregate whose events alone do not fit.
        aggregate_id: String,
        /// The sequence of its first event in the part.
        sequence: usize,
        /// Items the transaction would hold.
        items: usize,
        /// Its estimated request size.
        bytes: usize,
    },
    /// A `ConditionCheck` (or a condition on a `Put`, `Update` or
    /// `Delete`) the projection wrote was not met: the part starting at the
    /// aggregate's first event was not applied, nor its position.
    #[error(
        "transactional projection {projection}: a condition of its writes failed for the \
         events of aggregate {aggregate_id} from sequence {sequence} (stream record \
         {record}): nothing of that part was applied; {reason}"
    )]
    TransactionRefused {
        /// The projection's name.
        projection: String,
        /// The aggregate of the refused part.
        aggregate_id: String,
        /// The sequence of its first event in the part.
        sequence: usize,
        /// The stream record of that event.
        record: String,
        /// What DynamoDB said about the refused write.
        reason: String,
    },
    /// DynamoDB refused the transaction because two of its operations
    /// target one item: a handler must merge its writes to one item within
    /// a call (and not write the checkpoint table's own items).
    #[error(
        "transactional projection {projection}: the writes for the events from aggregate \
         {aggregate_id} sequence {sequence} touch one item twice ({message}); a \
         TransactionalProjection handler must merge all its changes to one item into a \
         single Put, Update or Delete per call"
    )]
    TransactionDuplicateItem {
        /// The projection's name.
        projection: String,
        /// The first aggregate of the part.
        aggregate_id: String,
        /// The sequence of its first event in the part.
        sequence: usize,
        /// What DynamoDB said.
        message: String,
    },
    /// Another source (a rebuild, a second projector, a retried Lambda
    /// batch) kept applying the same aggregates' events concurrently: the
    /// per-aggregate sequence changed between read and commit every time.
    #[error(
        "transactional projection {projection}: the applied sequence of aggregate \
         {aggregate_id} kept changing under {attempts} commits (another source applies the \
         same events); retry later, or run one source at a time"
    )]
    SequenceContention {
        /// The projection's name.
        projection: String,
        /// The first aggregate of the part.
        aggregate_id: String,
        /// Commits tried.
        attempts: u32,
    },
    /// A typed view does not fit in one item (400 KB).
    #[error(
        "view {key} in {table}: {bytes} bytes encoded, over DynamoDB's 400 KB item limit; \
         keep less in one view (split it by key) or use a compressing codec"
    )]
    ViewTooLarge {
        /// The view table.
        table: String,
        /// The view's key.
        key: String,
        /// The item size.
        bytes: usize,
    },
}

impl Error {
    /// Wraps the error of a user projection.
    pub fn projection(err: impl Into<BoxError>) -> Self {
        Error::Projection(err.into())
    }

    /// Maps an `aws-sdk-dynamodbstreams` error of `operation` on `target`
    /// (a stream ARN or shard id) to [`Error::Streams`], keeping the
    /// service's error code and message.
    pub fn from_streams<E, R>(operation: &'static str, target: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let message = match err.as_service_error() {
            Some(service) => format!(
                "{}: {}",
                service.code().unwrap_or("unknown error"),
                service.message().unwrap_or("no message")
            ),
            None => DisplayErrorContext(&err).to_string(),
        };
        Error::Streams {
            operation,
            target: target.to_string(),
            message,
        }
    }
}
