//! [`DynamoEventRepository`]: cqrs-es's `PersistedEventRepository` on DynamoDB.
//!
//! This file holds the repository, its reads and the cqrs-es trait; the
//! write path lives in submodules: `commit` (a commit and its snapshot
//! planned against DynamoDB's limits), `transact` (a transaction with an
//! idempotency token) and `single_put` (a lone event as a conditional
//! `PutItem` carrying a commit id). What those share sits below them:
//! `limits` (the checks against DynamoDB's limits) and `token` (the nonce
//! and the transaction's request token). Beside them: `claim` (the
//! aggregate store's claim on a snapshot head, removed before events are
//! stored behind it) and `hints` (where each aggregate's snapshot was last
//! seen, for the snapshot store's bounded tail query, which `tail` reads),
//! `delete` (an aggregate's tombstone, then its items removed in resumable
//! batches) and `gone` (what reads treat as gone: tombstones and expired
//! items).
//!
//! **Invariant:** every read is strongly consistent unless its caller asks
//! otherwise (the store's `ReadConsistency::Eventual`, which checks what it
//! applies), and says how much it covers: [`read_events`](DynamoEventRepository::read_events) follows
//! `LastEvaluatedKey` to the end, and the bounded tail read
//! ([`read_tail`](DynamoEventRepository::read_tail)) reports whether it
//! reached the first event. Every commit writes all of its items or none,
//! and one that reports success is stored exactly once, whatever responses
//! were lost on the way.

mod claim;
mod commit;
mod delete;
mod dictionaries;
mod gone;
mod hints;
mod limits;
mod personal;
mod single_put;
mod slices;
mod tail;
mod token;
mod transact;

use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use aws_sdk_dynamodb::Client;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use tracing::{field, Instrument, Level};

use crate::codec::Codec;
use crate::error::{aggregate_span, in_span, read_span, Result};
use crate::item::{
    aggregate_key, n, s, Item, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE, AGGREGATE_TYPE_AND_ID,
};
use crate::slice::Slices;
use crate::snapshot::{self, LoadedSnapshot};
use crate::stream::{self, Pages};

pub(crate) use claim::HeadClaim;
pub(crate) use commit::SnapshotUpdate;
pub use delete::{DeleteOptions, Deletion, DeletionPlan};
pub(crate) use limits::check_limits;
pub(crate) use tail::Tail;
pub(crate) use token::request_token;

/// The default events table name, as upstream.
pub const DEFAULT_EVENT_TABLE: &str = "Events";
/// The default snapshots table name, as upstream.
pub const DEFAULT_SNAPSHOT_TABLE: &str = "Snapshots";
/// The default replay channel size (events buffered ahead of the consumer), as upstream.
pub const DEFAULT_STREAMING_CHANNEL_SIZE: usize = 200;
/// The default number of segments `stream_all_events` scans concurrently:
/// one, the plain scan upstream makes. See
/// [`with_scan_segments`](DynamoEventRepository::with_scan_segments).
pub const DEFAULT_SCAN_SEGMENTS: u32 = 1;

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
    scan_segments: u32,
    codec: Codec,
    /// Shared by clones: the codec is logged once per repository.
    codec_logged: std::sync::Arc<std::sync::Once>,
    /// zstd dictionaries: per-type writers and the cache reads use.
    dictionaries: dictionaries::Dictionaries,
    /// Where each aggregate's snapshot was last seen (shared by clones).
    hints: hints::SnapshotHints,
    /// The data keys personal data is sealed with (feature `encryption`).
    #[cfg(feature = "encryption")]
    keys: Option<crate::encryption::KeyStore>,
    /// The events table's slice count, if its events feed the
    /// `EventsBySlice` index.
    slices: Option<Slices>,
    /// The time to live per aggregate type, and the clock.
    expiry: crate::expiry::Expiry,
}

impl DynamoEventRepository {
    /// A repository on the tables `Events` and `Snapshots`, writing with
    /// [`Codec::default()`].
    pub fn new(client: Client) -> Self {
        let dictionaries = dictionaries::Dictionaries::default();
        DynamoEventRepository {
            client,
            event_table: DEFAULT_EVENT_TABLE.to_string(),
            snapshot_table: DEFAULT_SNAPSHOT_TABLE.to_string(),
            stream_channel_size: DEFAULT_STREAMING_CHANNEL_SIZE,
            scan_segments: DEFAULT_SCAN_SEGMENTS,
            codec: dictionaries.attach(Codec::default(), DEFAULT_SNAPSHOT_TABLE),
            codec_logged: std::sync::Arc::new(std::sync::Once::new()),
            dictionaries,
            hints: hints::SnapshotHints::default(),
            #[cfg(feature = "encryption")]
            keys: None,
            slices: None,
            expiry: crate::expiry::Expiry::default(),
        }
    }

    /// Uses the given event and snapshot tables. Reads decode dictionary
    /// payloads with the dictionaries of `snapshot_table` only (the cache
    /// stays shared with the clones on other tables, keyed by table).
    pub fn with_tables(self, event_table: &str, snapshot_table: &str) -> Self {
        DynamoEventRepository {
            event_table: event_table.to_string(),
            snapshot_table: snapshot_table.to_string(),
            codec: self.dictionaries.attach(self.codec, snapshot_table),
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

    /// Replays every event of an aggregate type
    /// ([`stream_all_events`](PersistedEventRepository::stream_all_events))
    /// with `segments` parallel `Scan` segments (`Segment`/`TotalSegments`),
    /// read concurrently, clamped to 1 to 1,000,000 (DynamoDB's limit).
    ///
    /// The events of each aggregate still arrive in sequence order, none
    /// lost or repeated, but the aggregates interleave in another order
    /// than a one-segment scan's. Up to `segments` pages (of the
    /// [streaming channel size](Self::with_streaming_channel_size) in items)
    /// wait ahead of the consumer, plus one being read per segment, and each
    /// segment makes at least one request, however small the table: more
    /// segments pay off on large tables with the read capacity to serve
    /// them. The default, [`DEFAULT_SCAN_SEGMENTS`], is
    /// one segment: the requests upstream makes.
    ///
    /// ```
    /// use aws_sdk_dynamodb::Client;
    /// use dynamo_es::DynamoEventRepository;
    ///
    /// fn for_replay(client: Client) -> DynamoEventRepository {
    ///     DynamoEventRepository::new(client).with_scan_segments(8)
    /// }
    /// ```
    pub fn with_scan_segments(self, segments: u32) -> Self {
        DynamoEventRepository {
            scan_segments: segments.clamp(1, stream::MAX_SCAN_SEGMENTS),
            ..self
        }
    }

    /// The number of segments [`stream_all_events`](PersistedEventRepository::stream_all_events) scans concurrently.
    pub fn scan_segments(&self) -> u32 {
        self.scan_segments
    }

    /// Writes payloads with `codec`. Reads accept every format regardless.
    pub fn with_codec(self, codec: Codec) -> Self {
        DynamoEventRepository {
            codec: self.dictionaries.attach(codec, &self.snapshot_table),
            ..self
        }
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
        consistent: bool,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let query = self
            .client
            .query()
            .table_name(&self.event_table)
            .consistent_read(consistent)
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

    /// All events of an aggregate after `after` (or all), every page,
    /// strongly consistent.
    pub(crate) async fn read_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: Option<usize>,
    ) -> Result<Vec<SerializedEvent>> {
        self.read_events_with(aggregate_type, aggregate_id, after, true)
            .await
    }

    /// All events of an aggregate after `after` (or all), every page,
    /// strongly consistent if `consistent`.
    pub(crate) async fn read_events_with(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: Option<usize>,
        consistent: bool,
    ) -> Result<Vec<SerializedEvent>> {
        let span = read_span!(
            "dynamo_es.read_events",
            self.event_table,
            (aggregate_type, aggregate_id),
            after = after.map(field::display),
            consistent,
            items = field::Empty,
            stored_bytes = field::Empty,
            consumed_capacity = field::Empty
        );
        in_span("reading events", async {
            let pages = Pages::query(
                self.events_query(aggregate_type, aggregate_id, after, consistent),
                None,
            );
            let (items, capacity) = pages.collect().await?;
            self.prefetch_dictionaries(&items).await?;
            let span = tracing::Span::current();
            let stored = stored_bytes(&span, &items);
            // Each item is dropped once decoded, so its memory serves the
            // next one's decoding.
            let mut events = self.decode_events(items)?;
            self.open_events(&mut events).await?;
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

    /// The snapshot hints of this repository and its clones.
    pub(crate) fn hints(&self) -> &hints::SnapshotHints {
        &self.hints
    }

    /// Reads a snapshot and how it is stored.
    pub(crate) async fn read_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<LoadedSnapshot>> {
        let span = read_span!(
            "dynamo_es.read_snapshot",
            self.snapshot_table,
            (aggregate_type, aggregate_id),
            chunks = field::Empty,
            stored_bytes = field::Empty
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

    fn replay(
        &self,
        pages: impl Into<stream::ReplaySource>,
        aggregate_type: Option<String>,
        span: tracing::Span,
    ) -> ReplayStream {
        let prep = self.page_prep();
        let finish = self.event_finish();
        let filter = self.replay_filter(aggregate_type);
        stream::replay(pages, self.stream_channel_size, span, prep, finish, filter)
    }

    fn page_size(&self) -> i32 {
        i32::try_from(self.stream_channel_size).unwrap_or(i32::MAX)
    }
}

/// The stored size of `items`, for the fields of `span` and of a trace event
/// beside it: 0 when neither is recorded, as computing it costs about 700
/// instructions an item.
fn stored_bytes(span: &tracing::Span, items: &[Item]) -> usize {
    if span.is_disabled() && !tracing::enabled!(tracing::Level::TRACE) {
        return 0;
    }
    items.iter().map(crate::size::item_size).sum()
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
            // Past its expiry: gone, as DynamoDB will make it.
            Some(loaded) if self.expiry.is_past(loaded.expires_at) => Ok(None),
            Some(loaded) => {
                self.prefetch_snapshot_dictionary(A::TYPE, aggregate_id, &loaded.payload)
                    .await?;
                let mut snapshot = loaded.into_serialized(A::TYPE, aggregate_id, &self.codec)?;
                self.open_snapshot(A::TYPE, aggregate_id, &mut snapshot.aggregate)
                    .await?;
                Ok(Some(snapshot))
            }
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
                let encoded = self
                    .encode_sealed_snapshot(&first.aggregate_type, &first.aggregate_id, &payload)
                    .await?;
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
                    events_through: None,
                })
            }
        };
        self.commit(A::TYPE, &first.aggregate_id, events, snapshot, None)
            .await?;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let query = self.events_query(A::TYPE, aggregate_id, None, true);
        let span = aggregate_span!(
            Level::INFO,
            "dynamo_es.stream_events",
            self.event_table,
            (A::TYPE, aggregate_id),
            events = field::Empty,
            pages = field::Empty,
            consumed_capacity = field::Empty
        );
        Ok(self.replay(Pages::query(query, Some(self.page_size())), None, span))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let scan = self
            .client
            .scan()
            .table_name(&self.event_table)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .filter_expression("#type = :type")
            .expression_attribute_names("#type", AGGREGATE_TYPE)
            .expression_attribute_values(":type", s(A::TYPE));
        let span = tracing::info_span!(
            "dynamo_es.stream_all_events",
            aggregate_type = A::TYPE,
            table = %self.event_table,
            segments = self.scan_segments,
            events = field::Empty,
            pages = field::Empty,
            consumed_capacity = field::Empty,
            error = field::Empty,
        );
        // Per-aggregate order holds across segments: see `stream::scan`.
        let pages = stream::parallel_scan(scan, self.scan_segments, Some(self.page_size()));
        Ok(self.replay(pages, Some(A::TYPE.to_string()), span))
    }
}
