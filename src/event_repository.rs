//! [`DynamoEventRepository`]: cqrs-es's `PersistedEventRepository` on DynamoDB.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnConsumedCapacity, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::interceptors::context::{
    FinalizerInterceptorContextRef, InterceptorContext,
};
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use tracing::{field, Instrument};
use xxhash_rust::xxh3::Xxh3;

use crate::codec::Codec;
use crate::error::{in_span, Error, Limit, Result};
use crate::item::{
    aggregate_key, event_to_item, item_to_event, n, s, PayloadBytes, AGGREGATE_ID_SEQUENCE,
    AGGREGATE_TYPE, AGGREGATE_TYPE_AND_ID,
};
use crate::size::{
    MAX_ITEM_SIZE, MAX_PARTITION_KEY_SIZE, MAX_TRANSACTION_ITEMS, MAX_TRANSACTION_SIZE,
};
use crate::snapshot::{self, LoadedSnapshot, PlannedWrite, SnapshotSpec};
use crate::stream::{self, Pages};

/// The default events table name, as upstream.
pub const DEFAULT_EVENT_TABLE: &str = "Events";
/// The default snapshots table name, as upstream.
pub const DEFAULT_SNAPSHOT_TABLE: &str = "Snapshots";
/// The default replay channel size (events buffered ahead of the consumer), as upstream.
pub const DEFAULT_STREAMING_CHANNEL_SIZE: usize = 200;

/// An event repository on DynamoDB, compatible with upstream `dynamo-es` tables.
///
/// ```
/// use aws_sdk_dynamodb::Client;
/// use dynamo_es::{Codec, DynamoEventRepository};
///
/// fn configure(client: Client) -> DynamoEventRepository {
///     DynamoEventRepository::new(client)
///         .with_tables("my_events", "my_snapshots")
///         .with_streaming_channel_size(1000)
///         .with_codec(Codec::json())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoEventRepository {
    client: Client,
    event_table: String,
    snapshot_table: String,
    stream_channel_size: usize,
    codec: Codec,
    /// Shared by clones: the codec is logged once per repository.
    codec_logged: std::sync::Arc<std::sync::Once>,
}

/// A snapshot to write with a commit.
#[derive(Debug, Clone, Default)]
pub(crate) struct SnapshotUpdate {
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// Its size as plain JSON, if measured.
    pub plain_len: Option<usize>,
    /// The size of the payload once decoded: what a reader's zstd
    /// decompression produces (the JSON text or tagged MessagePack), or the
    /// payload itself when it is not compressed. Compared with the codec's
    /// [`max_decoded_size`](Codec::max_decoded_size).
    pub decoded_len: usize,
    /// True to mark the head as written by `DynamoStore`
    /// ([`SNAPSHOT_WRITER`](crate::item::SNAPSHOT_WRITER)).
    pub marked: bool,
    /// The last event sequence the snapshot includes.
    pub current_sequence: usize,
    /// The snapshot's version; the write expects `current_snapshot - 1` stored.
    pub current_snapshot: usize,
    /// Chunk items of the snapshot being replaced, to delete the stale ones.
    pub previous_chunks: usize,
}

/// An encoded snapshot payload and its sizes.
#[derive(Debug, Clone)]
pub(crate) struct EncodedSnapshot {
    /// The payload as it will be stored.
    pub payload: Vec<u8>,
    /// Its size as plain JSON, measured only when tracing wants it.
    pub plain_len: Option<usize>,
    /// Its decoded size (see [`SnapshotUpdate::decoded_len`]).
    pub decoded_len: usize,
}

/// Why a commit went without its snapshot.
struct SkippedSnapshot {
    /// A stable keyword, recorded as the span's `snapshot_skipped` field.
    reason: &'static str,
    /// What did not fit, for the log.
    detail: String,
}

/// The snapshot writes planned with a commit, or why there are none.
enum SnapshotWrites {
    /// No snapshot was asked for.
    None,
    /// The snapshot goes with the events.
    Planned {
        writes: Vec<PlannedWrite>,
        chunks: usize,
        bytes: PayloadBytes,
    },
    /// The snapshot was left out; the events go alone.
    Skipped(SkippedSnapshot),
}

/// What a commit stored, for its log event.
struct Committed {
    /// Items written (events, snapshot head and chunks, chunk deletes).
    items: usize,
    /// Stored payload bytes.
    stored_bytes: usize,
    /// Write capacity units DynamoDB reported.
    consumed_capacity: f64,
    /// `none`, `written` or `skipped`.
    snapshot: &'static str,
}

impl DynamoEventRepository {
    /// A repository on the tables `Events` and `Snapshots`, writing with
    /// [`Codec::default()`].
    pub fn new(client: Client) -> Self {
        DynamoEventRepository {
            client,
            event_table: DEFAULT_EVENT_TABLE.to_string(),
            snapshot_table: DEFAULT_SNAPSHOT_TABLE.to_string(),
            stream_channel_size: DEFAULT_STREAMING_CHANNEL_SIZE,
            codec: Codec::default(),
            codec_logged: std::sync::Arc::new(std::sync::Once::new()),
        }
    }

    /// Uses the given event and snapshot tables.
    pub fn with_tables(self, event_table: &str, snapshot_table: &str) -> Self {
        DynamoEventRepository {
            event_table: event_table.to_string(),
            snapshot_table: snapshot_table.to_string(),
            ..self
        }
    }

    /// Sets how many events a replay stream buffers ahead of its consumer;
    /// it is also the page size of the reads behind the stream.
    pub fn with_streaming_channel_size(self, stream_channel_size: usize) -> Self {
        DynamoEventRepository {
            stream_channel_size: stream_channel_size.max(1),
            ..self
        }
    }

    /// Writes payloads with `codec`. Reads accept every format regardless.
    pub fn with_codec(self, codec: Codec) -> Self {
        DynamoEventRepository { codec, ..self }
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The codec payloads are written with.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The events table.
    pub fn event_table(&self) -> &str {
        &self.event_table
    }

    /// The snapshots table.
    pub fn snapshot_table(&self) -> &str {
        &self.snapshot_table
    }

    fn events_query(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: Option<usize>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let query = self
            .client
            .query()
            .table_name(&self.event_table)
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .expression_attribute_names("#key", AGGREGATE_TYPE_AND_ID)
            .expression_attribute_values(":key", s(aggregate_key(aggregate_type, aggregate_id)));
        match after {
            None => query.key_condition_expression("#key = :key"),
            Some(sequence) => query
                .key_condition_expression("#key = :key AND #seq > :seq")
                .expression_attribute_names("#seq", AGGREGATE_ID_SEQUENCE)
                .expression_attribute_values(":seq", n(sequence)),
        }
    }

    /// All events of an aggregate after `after` (or all), every page.
    pub(crate) async fn read_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: Option<usize>,
    ) -> Result<Vec<SerializedEvent>> {
        let span = tracing::debug_span!(
            "dynamo_es.read_events",
            table = %self.event_table,
            aggregate_type,
            aggregate_id,
            after = after.map(field::display),
            items = field::Empty,
            stored_bytes = field::Empty,
            consumed_capacity = field::Empty,
            error = field::Empty,
        );
        in_span("reading events", async {
            let pages = Pages::query(self.events_query(aggregate_type, aggregate_id, after), None);
            let (items, capacity) = pages.collect().await?;
            let mut stored = 0usize;
            let events = items
                .iter()
                .map(|item| {
                    stored += crate::size::item_size(item);
                    item_to_event(item, &self.codec)
                })
                .collect::<Result<Vec<_>>>()?;
            let span = tracing::Span::current();
            span.record("items", events.len());
            span.record("stored_bytes", stored);
            span.record("consumed_capacity", capacity);
            tracing::trace!(
                items = events.len(),
                stored_bytes = stored,
                consumed_capacity = capacity,
                "events read"
            );
            Ok(events)
        })
        .instrument(span)
        .await
    }

    /// Reads a snapshot and how it is stored.
    pub(crate) async fn read_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<LoadedSnapshot>> {
        let span = tracing::debug_span!(
            "dynamo_es.read_snapshot",
            table = %self.snapshot_table,
            aggregate_type,
            aggregate_id,
            chunks = field::Empty,
            stored_bytes = field::Empty,
            error = field::Empty,
        );
        in_span("reading the snapshot", async {
            let loaded = snapshot::read(
                &self.client,
                &self.snapshot_table,
                aggregate_type,
                aggregate_id,
            )
            .await?;
            match &loaded {
                Some(loaded) => {
                    let span = tracing::Span::current();
                    span.record("chunks", loaded.chunks);
                    span.record("stored_bytes", loaded.payload.len());
                    tracing::trace!(
                        chunks = loaded.chunks,
                        stored_bytes = loaded.payload.len(),
                        current_snapshot = loaded.current_snapshot,
                        current_sequence = loaded.current_sequence,
                        trusted = loaded.trusted,
                        "snapshot read"
                    );
                }
                None => tracing::trace!("no snapshot stored"),
            }
            Ok(loaded)
        })
        .instrument(span)
        .await
    }

    /// Commits events, and optionally a snapshot, in one transaction.
    ///
    /// Snapshots never block a commit: when the snapshot cannot go beside
    /// the events (the transaction would break DynamoDB's 100-item or 4 MB
    /// limits, stale-chunk deletes included; the snapshot decodes to more
    /// than the codec's `max_decoded_size`, so a reader would refuse it; or
    /// the server refuses the transaction with a `ValidationException`,
    /// which writes nothing), the events are committed alone, under the same
    /// conditions and in one transaction, and the snapshot item is left as it
    /// is. The skip is logged (`warn`) and recorded in the span's
    /// `snapshot_skipped` field; a later snapshot-writing commit tries again.
    /// Events that break a limit on their own are still
    /// [`Error::LimitExceeded`].
    pub(crate) async fn commit(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[SerializedEvent],
        snapshot: Option<SnapshotUpdate>,
    ) -> Result<()> {
        log_codec_once(&self.codec_logged, &self.codec, &self.event_table);
        let key = aggregate_key(aggregate_type, aggregate_id);
        let span = tracing::info_span!(
            "dynamo_es.persist",
            table = %self.event_table,
            aggregate_type,
            aggregate_id,
            events = events.len(),
            items = field::Empty,
            plain_bytes = field::Empty,
            stored_bytes = field::Empty,
            codec = %self.codec.name(),
            snapshot_table = field::Empty,
            snapshot_chunks = field::Empty,
            snapshot_skipped = field::Empty,
            consumed_capacity = field::Empty,
            error = field::Empty,
        );
        async {
            match self
                .commit_in_span(&key, aggregate_type, aggregate_id, events, snapshot)
                .await
            {
                Ok(done) => {
                    tracing::debug!(
                        table = %self.event_table,
                        aggregate = %key,
                        events = events.len(),
                        items = done.items,
                        stored_bytes = done.stored_bytes,
                        consumed_capacity = done.consumed_capacity,
                        snapshot = done.snapshot,
                        "commit stored"
                    );
                    Ok(())
                }
                Err(err) => {
                    err.record_in_span("commit");
                    Err(err)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The body of [`commit`](Self::commit), inside its span.
    async fn commit_in_span(
        &self,
        key: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[SerializedEvent],
        snapshot: Option<SnapshotUpdate>,
    ) -> Result<Committed> {
        if key.len() > MAX_PARTITION_KEY_SIZE {
            return Err(Error::LimitExceeded {
                aggregate: key.to_string(),
                subject: "aggregate key".into(),
                limit: Limit::PartitionKeySize,
                size: key.len(),
                max: MAX_PARTITION_KEY_SIZE,
            });
        }
        let mut writes = Vec::with_capacity(events.len() + 1);
        let mut bytes = PayloadBytes::default();
        for event in events {
            if event.aggregate_type != aggregate_type || event.aggregate_id != aggregate_id {
                return Err(Error::InvalidCommit {
                    aggregate: key.to_string(),
                    reason: format!(
                        "it holds an event of {}:{} (sequence {})",
                        event.aggregate_type, event.aggregate_id, event.sequence
                    ),
                });
            }
            let (item, event_bytes) = event_to_item(event, &self.codec)?;
            bytes += event_bytes;
            let size = crate::size::item_size(&item);
            let put = Put::builder()
                .table_name(&self.event_table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(AggregateIdSequence)")
                .build()?;
            writes.push(PlannedWrite {
                write: TransactWriteItem::builder().put(put).build(),
                size,
                subject: format!("event {}", event.sequence),
            });
        }
        // The events must fit on their own; the snapshot only if it fits
        // beside them.
        check_limits(key, &writes)?;
        let span = tracing::Span::current();
        let first = events.first().map(|e| e.sequence).unwrap_or_default();
        let last = events.last().map(|e| e.sequence).unwrap_or_default();
        let snapshot = match snapshot {
            None => SnapshotWrites::None,
            Some(update) => {
                self.plan_snapshot(key, aggregate_type, aggregate_id, update, &writes)?
            }
        };
        let (snapshot_writes, snapshot_bytes, outcome) = match snapshot {
            SnapshotWrites::None => (None, PayloadBytes::default(), "none"),
            SnapshotWrites::Skipped(skipped) => {
                skip_snapshot(key, &self.snapshot_table, &skipped);
                (None, PayloadBytes::default(), "skipped")
            }
            SnapshotWrites::Planned {
                writes,
                chunks,
                bytes,
            } => {
                span.record("snapshot_table", field::display(&self.snapshot_table));
                span.record("snapshot_chunks", chunks);
                (Some(writes), bytes, "written")
            }
        };
        let Some(snapshot_writes) = snapshot_writes else {
            return self
                .commit_events_alone(key, writes, bytes, first, last, outcome)
                .await;
        };
        let with_snapshot: Vec<TransactWriteItem> = writes
            .iter()
            .map(|w| w.write.clone())
            .chain(snapshot_writes.into_iter().map(|w| w.write))
            .collect();
        let mut all_bytes = bytes;
        all_bytes += snapshot_bytes;
        let items = with_snapshot.len();
        span.record("items", items);
        span.record("plain_bytes", all_bytes.plain);
        span.record("stored_bytes", all_bytes.stored);
        match self.send(key, with_snapshot, first, last).await {
            Ok(capacity) => {
                span.record("consumed_capacity", capacity);
                Ok(Committed {
                    items,
                    stored_bytes: all_bytes.stored,
                    consumed_capacity: capacity,
                    snapshot: outcome,
                })
            }
            Err(err) if is_validation_error(&err) => {
                // Nothing was written. Some DynamoDB-compatible servers
                // count transaction size more strictly than DynamoDB:
                // commit the events alone.
                skip_snapshot(
                    key,
                    &self.snapshot_table,
                    &SkippedSnapshot {
                        reason: "server_refused",
                        detail: format!(
                            "the server refused the transaction with its snapshot, \
                             nothing was written; retrying the commit without it: {}",
                            crate::error::sdk_message(&err, &self.commit_tables())
                        ),
                    },
                );
                span.record("snapshot_chunks", 0);
                self.commit_events_alone(key, writes, bytes, first, last, "skipped")
                    .await
            }
            Err(err) => Err(Error::from_transact_on(&self.commit_tables(), key, err)),
        }
    }

    /// Commits the events of a commit without a snapshot.
    async fn commit_events_alone(
        &self,
        key: &str,
        writes: Vec<PlannedWrite>,
        bytes: PayloadBytes,
        first: usize,
        last: usize,
        snapshot: &'static str,
    ) -> Result<Committed> {
        let span = tracing::Span::current();
        let items = writes.len();
        span.record("items", items);
        span.record("plain_bytes", bytes.plain);
        span.record("stored_bytes", bytes.stored);
        let capacity = self.transact(key, writes, first, last).await?;
        span.record("consumed_capacity", capacity);
        Ok(Committed {
            items,
            stored_bytes: bytes.stored,
            consumed_capacity: capacity,
            snapshot,
        })
    }

    /// The tables a commit with a snapshot writes, as errors name them.
    fn commit_tables(&self) -> String {
        if self.event_table == self.snapshot_table {
            self.event_table.clone()
        } else {
            format!("{}, {}", self.event_table, self.snapshot_table)
        }
    }

    /// Plans a snapshot's writes beside the commit's (already checked)
    /// event writes, or says why it must be left out.
    fn plan_snapshot(
        &self,
        key: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        update: SnapshotUpdate,
        events: &[PlannedWrite],
    ) -> Result<SnapshotWrites> {
        let max_decoded = self.codec.max_decoded_size();
        if update.decoded_len > max_decoded {
            return Ok(SnapshotWrites::Skipped(SkippedSnapshot {
                reason: "decoded_size",
                detail: format!(
                    "the snapshot decodes to {} bytes, over the codec's max_decoded_size of {max_decoded}: readers would refuse it",
                    update.decoded_len
                ),
            }));
        }
        let bytes = PayloadBytes {
            plain: update.plain_len.unwrap_or(update.payload.len()),
            stored: update.payload.len(),
        };
        let spec = SnapshotSpec {
            table: &self.snapshot_table,
            aggregate_type,
            aggregate_id,
            payload: update.payload,
            current_sequence: update.current_sequence,
            current_snapshot: update.current_snapshot,
            condition: Some(snapshot::version_condition(update.current_snapshot)),
            previous_chunks: update.previous_chunks,
        };
        let planned = if update.marked {
            snapshot::plan_marked(spec)
        } else {
            snapshot::plan(spec)
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(err @ Error::LimitExceeded { .. }) => {
                return Ok(SnapshotWrites::Skipped(SkippedSnapshot {
                    reason: "snapshot_limits",
                    detail: err.to_string(),
                }))
            }
            Err(err) => return Err(err),
        };
        if let Err(err) = check_limits_of(key, events.iter().chain(&plan.writes)) {
            return Ok(SnapshotWrites::Skipped(SkippedSnapshot {
                reason: "transaction_limits",
                detail: format!("the snapshot does not fit beside the events: {err}"),
            }));
        }
        Ok(SnapshotWrites::Planned {
            writes: plan.writes,
            chunks: plan.chunks,
            bytes,
        })
    }

    /// Encodes a snapshot payload for [`commit`](Self::commit), measuring its
    /// decoded size always and its plain JSON size only when tracing wants
    /// it.
    pub(crate) fn encode_snapshot<T: serde::Serialize>(
        &self,
        state: &T,
    ) -> Result<EncodedSnapshot> {
        let payload = self.codec.encode_serialize(state)?;
        let decoded_len = match decoded_len(&payload) {
            Some(len) => len,
            // A zstd frame that does not declare its size (this crate's
            // always do): measure the uncompressed encoding.
            None => self
                .codec
                .clone()
                .with_min_compress_size(usize::MAX)
                .encode_serialize(state)?
                .len(),
        };
        let plain_len = if tracing::enabled!(tracing::Level::INFO) {
            if self.codec.compression_level().is_none()
                && self.codec.format() == crate::codec::Format::Json
            {
                Some(payload.len())
            } else {
                Some(json_len(state))
            }
        } else {
            None
        };
        Ok(EncodedSnapshot {
            payload,
            plain_len,
            decoded_len,
        })
    }

    /// Checks a planned transaction of event writes against DynamoDB's
    /// limits, then sends it with an idempotency token. Nothing is sent if a
    /// limit would break.
    pub(crate) async fn transact(
        &self,
        key: &str,
        writes: Vec<PlannedWrite>,
        first: usize,
        last: usize,
    ) -> Result<f64> {
        check_limits(key, &writes)?;
        let items: Vec<TransactWriteItem> = writes.into_iter().map(|w| w.write).collect();
        self.send(key, items, first, last)
            .await
            .map_err(|err| Error::from_transact_on(&self.event_table, key, err))
    }

    /// Sends a transaction with an idempotency token, returning the SDK's
    /// error as it is. An empty transaction sends nothing.
    async fn send(
        &self,
        key: &str,
        items: Vec<TransactWriteItem>,
        first: usize,
        last: usize,
    ) -> std::result::Result<f64, SdkError<TransactWriteItemsError>> {
        if items.is_empty() {
            return Ok(0.0);
        }
        let out = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(request_token(key, first, last))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .customize()
            .config_override(
                aws_sdk_dynamodb::config::Builder::default()
                    .retry_classifier(ThrottledCancellation)
                    .interceptor(RetryLog),
            )
            .send()
            .await?;
        Ok(out
            .consumed_capacity()
            .iter()
            .filter_map(|c| c.capacity_units())
            .sum())
    }

    fn replay(
        &self,
        pages: Pages,
        aggregate_type: Option<String>,
        span: tracing::Span,
    ) -> ReplayStream {
        let codec = self.codec.clone();
        stream::replay(pages, self.stream_channel_size, span, move |item| {
            if let Some(wanted) = &aggregate_type {
                // Scans are filtered by the server; this guards the contract.
                if !matches!(item.get(AGGREGATE_TYPE), Some(AttributeValue::S(t)) if t == wanted) {
                    return None;
                }
            }
            Some(item_to_event(item, &codec))
        })
    }

    fn page_size(&self) -> i32 {
        i32::try_from(self.stream_channel_size).unwrap_or(i32::MAX)
    }
}

/// Logs, at debug level and once per repository (clones share it), the codec
/// its first commit writes with and what the features made the default, so a
/// codec changed by a feature another crate enabled shows in the logs.
fn log_codec_once(once: &std::sync::Once, codec: &Codec, table: &str) {
    once.call_once(|| {
        tracing::debug!(
            codec = %codec.name(),
            default_codec = %Codec::default().name(),
            msgpack = cfg!(feature = "msgpack"),
            compression = cfg!(feature = "compression"),
            table,
            "dynamo-es writes with this codec"
        );
    });
}

/// Makes the SDK retry, with its throttling backoff, a transaction that
/// DynamoDB cancelled only because an item was throttled (a `ThrottlingError`
/// cancellation reason). The SDK retries throttling errors reported for the
/// whole request on its own, but not these. The retry carries the same
/// `ClientRequestToken`; when retries run out the error is
/// [`Error::Throttled`], never a conflict.
///
/// It also retries a `TransactionInProgressException` (an earlier attempt
/// with the same token, e.g. one that timed out, is still being applied), as
/// DynamoDB recommends: the retry carries the same token, so it reports that
/// transaction's outcome once it completes. When retries run out the outcome
/// is unknown: [`Error::Connection`].
#[derive(Debug)]
struct ThrottledCancellation;

impl ClassifyRetry for ThrottledCancellation {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(error)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        match error
            .as_operation_error()
            .and_then(|error| error.downcast_ref::<TransactWriteItemsError>())
        {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel))
                if crate::error::cancelled_by_throttling(cancel) =>
            {
                RetryAction::throttling_error()
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                RetryAction::transient_error()
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "dynamo-es: transaction cancelled by throttling"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// Logs, at debug level, each attempt of a commit's `TransactWriteItems`
/// that [`ThrottledCancellation`] makes the SDK retry: a transaction
/// cancelled only by throttling, or one still in progress. (The classifier
/// itself runs more than once per attempt, so it cannot log.)
#[derive(Debug)]
struct RetryLog;

impl Intercept for RetryLog {
    fn name(&self) -> &'static str {
        "dynamo-es: retry log"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(Err(error)) = context.inner().output_or_error() else {
            return Ok(());
        };
        let reason = match error
            .as_operation_error()
            .and_then(|error| error.downcast_ref::<TransactWriteItemsError>())
        {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel))
                if crate::error::cancelled_by_throttling(cancel) =>
            {
                "the transaction was cancelled only because items were throttled"
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                "an earlier attempt of the same transaction is still in progress"
            }
            _ => return Ok(()),
        };
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let max_attempts = cfg.load::<RetryConfig>().map_or(1, |c| c.max_attempts());
        if attempt < max_attempts {
            tracing::debug!(
                attempt,
                max_attempts,
                "{reason}; retrying TransactWriteItems with the same ClientRequestToken"
            );
        } else {
            tracing::debug!(
                attempt,
                max_attempts,
                "{reason}; no attempts left, giving up"
            );
        }
        Ok(())
    }
}

/// Logs a snapshot left out of a commit and records why in the span.
fn skip_snapshot(key: &str, table: &str, skipped: &SkippedSnapshot) {
    let span = tracing::Span::current();
    span.record("snapshot_table", field::display(table));
    span.record("snapshot_skipped", skipped.reason);
    tracing::warn!(
        aggregate = %key,
        snapshot_table = %table,
        reason = skipped.reason,
        detail = %skipped.detail,
        "snapshot skipped; committing the events alone (a later commit tries again)"
    );
}

/// True for a `ValidationException`: the server refused the request as a
/// whole, so nothing was written.
fn is_validation_error(err: &SdkError<TransactWriteItemsError>) -> bool {
    err.as_service_error()
        .and_then(|service| service.code())
        .is_some_and(|code| code == "ValidationException")
}

/// The size `payload` decodes to: a zstd frame's declared content size, or
/// the payload's own length when it is not compressed. `None` for a frame
/// that does not declare its size.
fn decoded_len(payload: &[u8]) -> Option<usize> {
    if payload.starts_with(&crate::codec::ZSTD_MAGIC) {
        frame_content_size(payload)
    } else {
        Some(payload.len())
    }
}

#[cfg(feature = "compression")]
fn frame_content_size(frame: &[u8]) -> Option<usize> {
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) => Some(usize::try_from(size).unwrap_or(usize::MAX)),
        _ => None,
    }
}

#[cfg(not(feature = "compression"))]
fn frame_content_size(_frame: &[u8]) -> Option<usize> {
    None
}

/// The length of `value` as compact JSON, counted without allocating it
/// (0 if it does not serialize).
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// Rejects a plan that breaks an item, count or size limit.
pub(crate) fn check_limits(aggregate: &str, writes: &[PlannedWrite]) -> Result<()> {
    check_limits_of(aggregate, writes.iter())
}

/// [`check_limits`] over writes from several lists.
fn check_limits_of<'a>(
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

/// A `ClientRequestToken` for one commit: a hash of the aggregate and the
/// sequence range it writes, plus a nonce unique to this call.
///
/// The SDK re-sends the same token on its own retries, so a retry after a
/// lost response is recognised by DynamoDB as the same transaction and
/// succeeds instead of failing its own conditions. The nonce keeps two
/// different writers that happen to produce identical commits from being
/// mistaken for one another (which would acknowledge a command that was
/// never stored).
pub(crate) fn request_token(key: &str, first: usize, last: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Xxh3::new();
    hasher.update(key.as_bytes());
    hasher.update(&first.to_le_bytes());
    hasher.update(&last.to_le_bytes());
    let range = hasher.digest();
    let mut nonce = std::collections::hash_map::RandomState::new().build_hasher();
    nonce.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    nonce.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{range:016x}{:016x}", nonce.finish())
}

impl PersistedEventRepository for DynamoEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self.read_events(A::TYPE, aggregate_id, None).await?)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self
            .read_events(A::TYPE, aggregate_id, Some(last_sequence))
            .await?)
    }

    /// The stored snapshot as it is, whoever wrote it: with or without the
    /// [`SNAPSHOT_WRITER`](crate::item::SNAPSHOT_WRITER) marker, so an
    /// upstream snapshot (whose state may hold events applied twice) is
    /// returned too, as cqrs-es's `PersistedEventStore` expects.
    /// [`DynamoStore`](crate::DynamoStore) does not use this method and
    /// ignores the state of unmarked snapshots.
    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        match self.read_snapshot(A::TYPE, aggregate_id).await? {
            None => Ok(None),
            Some(loaded) => Ok(Some(loaded.into_serialized(
                A::TYPE,
                aggregate_id,
                &self.codec,
            )?)),
        }
    }

    /// Commits events, and the snapshot cqrs-es built, in one transaction.
    /// The snapshot is written without the
    /// [`SNAPSHOT_WRITER`](crate::item::SNAPSHOT_WRITER) marker (cqrs-es
    /// 0.5's `PersistedEventStore` applies events twice when it builds it),
    /// and it is left out, as in [`DynamoStore`](crate::DynamoStore), when it
    /// cannot go beside the events.
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let snapshot = match snapshot_update {
            None => None,
            Some((_, payload, current_snapshot)) => {
                let encoded = self.encode_snapshot(&payload)?;
                Some(SnapshotUpdate {
                    payload: encoded.payload,
                    plain_len: encoded.plain_len,
                    decoded_len: encoded.decoded_len,
                    // Built by cqrs-es's `PersistedEventStore`, which applies
                    // events twice under `CqrsFramework`: not trusted by
                    // `DynamoStore`.
                    marked: false,
                    // As upstream: cqrs-es passes no sequence, so the snapshot
                    // is taken to include the whole commit.
                    current_sequence: events.last().map_or(0, |e| e.sequence),
                    current_snapshot,
                    previous_chunks: 0,
                })
            }
        };
        Ok(self
            .commit(A::TYPE, &first.aggregate_id, events, snapshot)
            .await?)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let query = self.events_query(A::TYPE, aggregate_id, None);
        let span = tracing::info_span!(
            "dynamo_es.stream_events",
            table = %self.event_table,
            aggregate_type = A::TYPE,
            aggregate_id,
            events = field::Empty,
            pages = field::Empty,
            consumed_capacity = field::Empty,
            error = field::Empty,
        );
        Ok(self.replay(Pages::query(query, Some(self.page_size())), None, span))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let scan = self
            .client
            .scan()
            .table_name(&self.event_table)
            .filter_expression("#type = :type")
            .expression_attribute_names("#type", AGGREGATE_TYPE)
            .expression_attribute_values(":type", s(A::TYPE));
        let span = tracing::info_span!(
            "dynamo_es.stream_all_events",
            aggregate_type = A::TYPE,
            table = %self.event_table,
            events = field::Empty,
            pages = field::Empty,
            consumed_capacity = field::Empty,
            error = field::Empty,
        );
        Ok(self.replay(
            Pages::scan(scan, Some(self.page_size())),
            Some(A::TYPE.to_string()),
            span,
        ))
    }
}
