//! [`DynamoEventRepository`]: cqrs-es's `PersistedEventRepository` on DynamoDB.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnConsumedCapacity, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use tracing::{field, Instrument};
use xxhash_rust::xxh3::Xxh3;

use crate::codec::Codec;
use crate::error::{Error, Limit, Result};
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
}

/// A snapshot to write with a commit.
#[derive(Debug, Clone, Default)]
pub(crate) struct SnapshotUpdate {
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// Its size as plain JSON, if measured.
    pub plain_len: Option<usize>,
    /// The last event sequence the snapshot includes.
    pub current_sequence: usize,
    /// The snapshot's version; the write expects `current_snapshot - 1` stored.
    pub current_snapshot: usize,
    /// Chunk items of the snapshot being replaced, to delete the stale ones.
    pub previous_chunks: usize,
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
            aggregate_type,
            aggregate_id,
            items = field::Empty,
            stored_bytes = field::Empty,
            consumed_capacity = field::Empty,
        );
        async {
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
            Ok(events)
        }
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
            aggregate_type,
            aggregate_id,
            chunks = field::Empty,
            stored_bytes = field::Empty,
        );
        async {
            let loaded = snapshot::read(
                &self.client,
                &self.snapshot_table,
                aggregate_type,
                aggregate_id,
            )
            .await?;
            if let Some(loaded) = &loaded {
                let span = tracing::Span::current();
                span.record("chunks", loaded.chunks);
                span.record("stored_bytes", loaded.payload.len());
            }
            Ok(loaded)
        }
        .instrument(span)
        .await
    }

    /// Commits events, and optionally a snapshot, in one transaction.
    pub(crate) async fn commit(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[SerializedEvent],
        snapshot: Option<SnapshotUpdate>,
    ) -> Result<()> {
        let key = aggregate_key(aggregate_type, aggregate_id);
        let span = tracing::info_span!(
            "dynamo_es.persist",
            aggregate_type,
            aggregate_id,
            events = events.len(),
            items = field::Empty,
            plain_bytes = field::Empty,
            stored_bytes = field::Empty,
            codec = %self.codec.name(),
            snapshot_chunks = field::Empty,
            consumed_capacity = field::Empty,
        );
        async {
            if key.len() > MAX_PARTITION_KEY_SIZE {
                return Err(Error::LimitExceeded {
                    aggregate: key.clone(),
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
                    return Err(Error::Dynamo {
                        operation: "TransactWriteItems",
                        source: format!(
                            "a commit for {key} holds an event of {}:{}",
                            event.aggregate_type, event.aggregate_id
                        )
                        .into(),
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
            if let Some(update) = snapshot {
                bytes += PayloadBytes {
                    plain: update.plain_len.unwrap_or(update.payload.len()),
                    stored: update.payload.len(),
                };
                let plan = snapshot::plan(SnapshotSpec {
                    table: &self.snapshot_table,
                    aggregate_type,
                    aggregate_id,
                    payload: update.payload,
                    current_sequence: update.current_sequence,
                    current_snapshot: update.current_snapshot,
                    condition: Some(snapshot::version_condition(update.current_snapshot)),
                    previous_chunks: update.previous_chunks,
                })?;
                tracing::Span::current().record("snapshot_chunks", plan.chunks);
                writes.extend(plan.writes);
            }
            let span = tracing::Span::current();
            span.record("items", writes.len());
            span.record("plain_bytes", bytes.plain);
            span.record("stored_bytes", bytes.stored);
            let first = events.first().map(|e| e.sequence).unwrap_or_default();
            let last = events.last().map(|e| e.sequence).unwrap_or_default();
            let capacity = self.transact(&key, writes, first, last).await?;
            span.record("consumed_capacity", capacity);
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Encodes a snapshot payload for [`commit`](Self::commit), measuring its
    /// plain JSON size only when tracing wants it.
    pub(crate) fn encode_snapshot<T: serde::Serialize>(
        &self,
        state: &T,
    ) -> Result<(Vec<u8>, Option<usize>)> {
        let payload = self.codec.encode_serialize(state)?;
        let plain_len = if tracing::enabled!(tracing::Level::INFO) {
            if self.codec.compression_level().is_none()
                && self.codec.format() == crate::codec::Format::Json
            {
                Some(payload.len())
            } else {
                serde_json::to_vec(state).ok().map(|v| v.len())
            }
        } else {
            None
        };
        Ok((payload, plain_len))
    }

    /// Checks a planned transaction against DynamoDB's limits, then sends it
    /// with an idempotency token. Nothing is sent if a limit would break.
    pub(crate) async fn transact(
        &self,
        key: &str,
        writes: Vec<PlannedWrite>,
        first: usize,
        last: usize,
    ) -> Result<f64> {
        check_limits(key, &writes)?;
        if writes.is_empty() {
            return Ok(0.0);
        }
        let items: Vec<TransactWriteItem> = writes.into_iter().map(|w| w.write).collect();
        let out = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(request_token(key, first, last))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .customize()
            .config_override(
                aws_sdk_dynamodb::config::Builder::default()
                    .retry_classifier(ThrottledCancellation),
            )
            .send()
            .await
            .map_err(|err| Error::from_transact(key, err))?;
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

/// Makes the SDK retry, with its throttling backoff, a transaction that
/// DynamoDB cancelled only because an item was throttled (a `ThrottlingError`
/// cancellation reason). The SDK retries throttling errors reported for the
/// whole request on its own, but not these. The retry carries the same
/// `ClientRequestToken`; when retries run out the error is
/// [`Error::Throttled`], never a conflict.
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

/// Rejects a plan that breaks an item, count or size limit.
pub(crate) fn check_limits(aggregate: &str, writes: &[PlannedWrite]) -> Result<()> {
    if let Some(write) = writes.iter().find(|w| w.size > MAX_ITEM_SIZE) {
        return Err(Error::LimitExceeded {
            aggregate: aggregate.to_string(),
            subject: write.subject.clone(),
            limit: Limit::ItemSize,
            size: write.size,
            max: MAX_ITEM_SIZE,
        });
    }
    if writes.len() > MAX_TRANSACTION_ITEMS {
        return Err(Error::LimitExceeded {
            aggregate: aggregate.to_string(),
            subject: "transaction".into(),
            limit: Limit::TransactionItems,
            size: writes.len(),
            max: MAX_TRANSACTION_ITEMS,
        });
    }
    let total: usize = writes.iter().map(|w| w.size).sum();
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
                let (payload, plain_len) = self.encode_snapshot(&payload)?;
                Some(SnapshotUpdate {
                    payload,
                    plain_len,
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
            aggregate_type = A::TYPE,
            aggregate_id,
            events = field::Empty,
            pages = field::Empty,
            consumed_capacity = field::Empty,
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
        );
        Ok(self.replay(
            Pages::scan(scan, Some(self.page_size())),
            Some(A::TYPE.to_string()),
            span,
        ))
    }
}
