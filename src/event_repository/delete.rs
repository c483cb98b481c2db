//! Deleting an aggregate: a tombstone that keeps its last sequence, then its
//! events and snapshot items removed in bounded, resumable batches.
//!
//! 1. **The tombstone.** One `TransactWriteItems`: a `Put` of the tombstone
//!    at the sequence after the last event (`N + 1`, under
//!    `attribute_not_exists`, so a commit that raced the deletion makes it
//!    read again) carrying [`DELETED_THROUGH`] = `N`, [`DELETED_AT`] and
//!    [`DELETED_CHUNKS`] (with [slices](DynamoEventRepository::with_slices),
//!    also its slice and a commit time, so feeds read it after every event
//!    of the aggregate), and a `Delete` of the snapshot head under its
//!    version (or its absence). From then on every read path refuses the
//!    aggregate ([`Error::AggregateDeleted`]), a commit from any state that
//!    was current (`N`) fails its condition on the tombstone's key, and the
//!    aggregate store's claim is gone with the head.
//! 2. **The snapshot chunks** the head had, then **the events** below the
//!    tombstone, oldest first, at most one `BatchWriteItem` of up to 25
//!    deletes per batch; unprocessed items are sent again with a backoff
//!    (and [`Error::Throttled`] if they never go).
//!
//! **Invariant:** the tombstone is written before anything is deleted and is
//! never deleted itself, so at every moment the aggregate either loads whole
//! or is refused, never half. Every step is idempotent: running the deletion
//! again after an interruption (an error, a stop after a number of batches, a
//! crash) finds the tombstone and finishes the job.

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, Select, TransactWriteItem, WriteRequest,
};

use super::DynamoEventRepository;
use crate::error::{or_refused, Error, Result};
use crate::item::{
    aggregate_key, chunk_key, get_n, get_s, is_tombstone, n, s, Item, AGGREGATE_ID,
    AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE, AGGREGATE_TYPE_AND_ID, CURRENT_SNAPSHOT, DELETED_AT,
    DELETED_CHUNKS, DELETED_THROUGH, PAYLOAD_CHUNKS,
};

/// DynamoDB's limit of requests in one `BatchWriteItem`.
const MAX_BATCH: usize = 25;
/// Attempts at writing the tombstone while commits keep racing it.
const TOMBSTONE_ATTEMPTS: u32 = 8;
/// Attempts at one batch while DynamoDB leaves some of it unprocessed.
const BATCH_ATTEMPTS: u32 = 8;

/// How [`delete_aggregate_with`](DynamoEventRepository::delete_aggregate_with)
/// proceeds: the deletes per batch and where to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOptions {
    batch_size: usize,
    max_batches: Option<usize>,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        DeleteOptions {
            batch_size: MAX_BATCH,
            max_batches: None,
        }
    }
}

impl DeleteOptions {
    /// Batches of 25 deletes (DynamoDB's maximum), until done.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes at most `size` items per `BatchWriteItem` (clamped to 1..=25).
    pub fn with_batch_size(self, size: usize) -> Self {
        DeleteOptions {
            batch_size: size.clamp(1, MAX_BATCH),
            ..self
        }
    }

    /// Stops after `batches` batches of deletes (the tombstone is always
    /// written first): the deletion returns with
    /// [`Deletion::finished`] false, and running it again goes on.
    pub fn with_max_batches(self, batches: usize) -> Self {
        DeleteOptions {
            max_batches: Some(batches),
            ..self
        }
    }
}

/// What a deletion did (also passed to its progress callback after each
/// batch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deletion {
    /// The sequence of the aggregate's last event, kept by the tombstone
    /// (0 for an aggregate that had none).
    pub last_sequence: usize,
    /// True if this run wrote the tombstone, false if it found one (a
    /// deletion resumed or repeated).
    pub tombstone_written: bool,
    /// Event items this run deleted.
    pub events_deleted: usize,
    /// Snapshot items (head and chunks) this run deleted or found gone.
    pub snapshot_items_deleted: usize,
    /// Batches of deletes sent.
    pub batches: usize,
    /// True when nothing of the aggregate is left but its tombstone; false
    /// if the run stopped at [`DeleteOptions::with_max_batches`].
    pub finished: bool,
}

/// What deleting an aggregate would delete, read without writing
/// ([`plan_deletion`](DynamoEventRepository::plan_deletion)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeletionPlan {
    /// Event items stored (below the tombstone, if there is one).
    pub events: usize,
    /// Snapshot items stored: the head and its chunks.
    pub snapshot_items: usize,
    /// The sequence the tombstone keeps, or would keep.
    pub last_sequence: usize,
    /// True if the aggregate already has its tombstone (a deletion began).
    pub deleted: bool,
}

/// The tombstone of an aggregate, as read back.
struct Tombstone {
    last_sequence: usize,
    chunks: usize,
    /// True if the transaction that wrote it deleted a snapshot head.
    deleted_head: bool,
}

impl DynamoEventRepository {
    /// Deletes aggregate `A` `aggregate_id`: writes its tombstone, then
    /// deletes its events and snapshot items in batches of 25 (see
    /// [`delete_aggregate_with`](Self::delete_aggregate_with)).
    pub async fn delete_aggregate<A: cqrs_es::Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Deletion> {
        self.delete_aggregate_with(A::TYPE, aggregate_id, DeleteOptions::default(), |_| {})
            .await
    }

    /// Deletes the aggregate `aggregate_type:aggregate_id`.
    ///
    /// First a tombstone in the events table at the sequence after the last
    /// event, keeping that sequence for good, written with the removal of
    /// the snapshot head in one transaction: from then on a load is
    /// [`Error::AggregateDeleted`], and a commit from the last state fails
    /// on the tombstone. Then the snapshot's chunk items and the events, in
    /// batches of `options`' size; `progress` sees the totals after each
    /// batch. Running it again after an interruption finishes the job; on a
    /// deleted aggregate it only removes what is left (the tombstone
    /// stays). An aggregate that never existed gets a tombstone too, so its
    /// id can never be used.
    ///
    /// A writer that loaded the aggregate before commits it then missed
    /// (its own commit would conflict) and commits after those events are
    /// deleted stores an event below the tombstone: loads still refuse the
    /// aggregate, and running the deletion again removes it.
    pub async fn delete_aggregate_with(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        options: DeleteOptions,
        mut progress: impl FnMut(&Deletion),
    ) -> Result<Deletion> {
        let key = aggregate_key(aggregate_type, aggregate_id);
        let (tombstone, written) = self
            .write_tombstone(aggregate_type, aggregate_id, &key)
            .await?;
        let mut done = Deletion {
            last_sequence: tombstone.last_sequence,
            tombstone_written: written,
            snapshot_items_deleted: usize::from(tombstone.deleted_head),
            ..Deletion::default()
        };
        // A head written after the tombstone's transaction (a stale
        // writer's) goes too, with its chunks.
        let head_chunks = match self.read_head(&key).await? {
            Some(head) => {
                let chunks = get_n::<usize>(&head, &key, PAYLOAD_CHUNKS).unwrap_or(0);
                self.delete_keys(&self.snapshot_table, vec![head_key(&key)])
                    .await?;
                done.snapshot_items_deleted += 1;
                chunks
            }
            None => 0,
        };
        let chunk_keys: Vec<Item> = (0..tombstone.chunks.max(head_chunks))
            .map(|index| head_key(&chunk_key(aggregate_type, aggregate_id, index)))
            .collect();
        for batch in chunk_keys.chunks(options.batch_size) {
            if options.max_batches.is_some_and(|max| done.batches >= max) {
                return Ok(done);
            }
            self.delete_keys(&self.snapshot_table, batch.to_vec())
                .await?;
            done.batches += 1;
            done.snapshot_items_deleted += batch.len();
            progress(&done);
        }
        loop {
            if options.max_batches.is_some_and(|max| done.batches >= max) {
                return Ok(done);
            }
            let keys = self
                .events_below(
                    aggregate_type,
                    aggregate_id,
                    tombstone.last_sequence + 1,
                    options.batch_size,
                )
                .await?;
            if keys.is_empty() {
                break;
            }
            let count = keys.len();
            self.delete_keys(&self.event_table, keys).await?;
            done.batches += 1;
            done.events_deleted += count;
            progress(&done);
        }
        done.finished = true;
        tracing::info!(
            aggregate = %key,
            table = %self.event_table,
            last_sequence = done.last_sequence,
            events_deleted = done.events_deleted,
            snapshot_items_deleted = done.snapshot_items_deleted,
            "aggregate deleted"
        );
        Ok(done)
    }

    /// What [`delete_aggregate_with`](Self::delete_aggregate_with) would
    /// delete, read without writing: the event items (counted with `Query`
    /// `Select=COUNT`), the snapshot head and its chunks.
    pub async fn plan_deletion(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<DeletionPlan> {
        let key = aggregate_key(aggregate_type, aggregate_id);
        let newest = self.newest_item(aggregate_type, aggregate_id).await?;
        let (last_sequence, deleted, below) = match &newest {
            Some(item) if is_tombstone(item) => {
                let tombstone = read_tombstone(item, &key)?;
                (tombstone.last_sequence, true, tombstone.last_sequence + 1)
            }
            Some(item) => {
                let last = get_n::<usize>(item, &key, AGGREGATE_ID_SEQUENCE)?;
                (last, false, last + 1)
            }
            None => (0, false, 1),
        };
        let events = self
            .count_events_below(aggregate_type, aggregate_id, below)
            .await?;
        let snapshot_items = match self.read_head(&key).await? {
            Some(head) => 1 + get_n::<usize>(&head, &key, PAYLOAD_CHUNKS).unwrap_or(0),
            None => 0,
        };
        Ok(DeletionPlan {
            events,
            snapshot_items,
            last_sequence,
            deleted,
        })
    }

    /// The tombstone of `key`, written now (true) or found (false).
    async fn write_tombstone(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        key: &str,
    ) -> Result<(Tombstone, bool)> {
        let tables = format!("{}, {}", self.event_table, self.snapshot_table);
        for _ in 0..TOMBSTONE_ATTEMPTS {
            let last_sequence = match self.newest_item(aggregate_type, aggregate_id).await? {
                Some(item) if is_tombstone(&item) => {
                    return Ok((read_tombstone(&item, key)?, false));
                }
                Some(item) => get_n::<usize>(&item, key, AGGREGATE_ID_SEQUENCE)?,
                None => 0,
            };
            let head = self.read_head(key).await?;
            let (chunks, head_delete) = match &head {
                Some(head) => (
                    get_n::<usize>(head, key, PAYLOAD_CHUNKS).unwrap_or(0),
                    Delete::builder()
                        .table_name(&self.snapshot_table)
                        .set_key(Some(head_key(key)))
                        .condition_expression("#version = :version")
                        .expression_attribute_names("#version", CURRENT_SNAPSHOT)
                        .expression_attribute_values(
                            ":version",
                            n(get_n::<usize>(head, key, CURRENT_SNAPSHOT)?),
                        ),
                ),
                None => (
                    0,
                    Delete::builder()
                        .table_name(&self.snapshot_table)
                        .set_key(Some(head_key(key)))
                        .condition_expression("attribute_not_exists(#key)")
                        .expression_attribute_names("#key", AGGREGATE_TYPE_AND_ID),
                ),
            };
            let mut tombstone = Item::from([
                (AGGREGATE_TYPE_AND_ID.to_string(), s(key)),
                (AGGREGATE_ID_SEQUENCE.to_string(), n(last_sequence + 1)),
                (AGGREGATE_TYPE.to_string(), s(aggregate_type)),
                (AGGREGATE_ID.to_string(), s(aggregate_id)),
                (DELETED_THROUGH.to_string(), n(last_sequence)),
                (DELETED_CHUNKS.to_string(), n(chunks)),
                (
                    DELETED_AT.to_string(),
                    s(crate::utc::rfc3339_millis(SystemTime::now())),
                ),
            ]);
            // In the slice index after every event of the aggregate, as an
            // event would be: feeds learn of the deletion.
            if let Some(slices) = self.slices() {
                let now = crate::slice::micros(SystemTime::now());
                slices.stamp(&mut tombstone, aggregate_type, aggregate_id, now);
            }
            let put = Put::builder()
                .table_name(&self.event_table)
                .set_item(Some(tombstone))
                .condition_expression("attribute_not_exists(#seq)")
                .expression_attribute_names("#seq", AGGREGATE_ID_SEQUENCE)
                .build()?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .delete(head_delete.build()?)
                        .build(),
                )
                .send()
                .await;
            let written = or_refused(result, "TransactWriteItems", &tables, |err| {
                matches!(
                    err,
                    TransactWriteItemsError::TransactionCanceledException(_)
                )
            })?;
            if written.is_some() {
                tracing::info!(
                    aggregate = %key,
                    table = %self.event_table,
                    last_sequence,
                    "aggregate tombstone written"
                );
                return Ok((
                    Tombstone {
                        last_sequence,
                        chunks,
                        deleted_head: head.is_some(),
                    },
                    true,
                ));
            }
            tracing::debug!(aggregate = %key, "a commit raced the tombstone; reading again");
        }
        Err(Error::Conflict {
            key: key.to_string(),
            table: tables,
        })
    }

    /// The newest item of an aggregate in the events table (an event or
    /// its tombstone), strongly consistent.
    async fn newest_item(&self, aggregate_type: &str, aggregate_id: &str) -> Result<Option<Item>> {
        let out = self
            .events_query(aggregate_type, aggregate_id, None, true)
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|err| Error::from_sdk_on("Query", &self.event_table, err))?;
        Ok(out.items.and_then(|items| items.into_iter().next()))
    }

    /// The snapshot head of `key`, strongly consistent.
    async fn read_head(&self, key: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.snapshot_table)
            .set_key(Some(head_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| Error::from_sdk_on("GetItem", &self.snapshot_table, err))?;
        Ok(out.item)
    }

    /// The keys of at most `limit` events of `key` below sequence `below`,
    /// oldest first.
    async fn events_below(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        below: usize,
        limit: usize,
    ) -> Result<Vec<Item>> {
        let out = self
            .below_query(aggregate_type, aggregate_id, below)
            .projection_expression("#key, #seq")
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|err| Error::from_sdk_on("Query", &self.event_table, err))?;
        Ok(out.items.unwrap_or_default())
    }

    /// The number of events of `key` below sequence `below`, every page.
    async fn count_events_below(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        below: usize,
    ) -> Result<usize> {
        let mut count = 0;
        let mut start = None;
        loop {
            let out = self
                .below_query(aggregate_type, aggregate_id, below)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| Error::from_sdk_on("Query", &self.event_table, err))?;
            count += usize::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(count),
            }
        }
    }

    /// The events query of an aggregate, bounded to the sequences below
    /// `below`.
    fn below_query(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        below: usize,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.events_query(aggregate_type, aggregate_id, None, true)
            .key_condition_expression("#key = :key AND #seq < :below")
            .expression_attribute_names("#seq", AGGREGATE_ID_SEQUENCE)
            .expression_attribute_values(":below", n(below))
    }

    /// Deletes the items of `keys` from `table` with one `BatchWriteItem`,
    /// sending what DynamoDB leaves unprocessed again with a backoff.
    async fn delete_keys(&self, table: &str, keys: Vec<Item>) -> Result<()> {
        let mut requests = keys
            .into_iter()
            .map(|key| {
                let delete = DeleteRequest::builder().set_key(Some(key)).build()?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=BATCH_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(|err| Error::from_sdk_on("BatchWriteItem", table, err))?;
            requests = out
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            tracing::debug!(
                table,
                attempt,
                unprocessed = requests.len(),
                "BatchWriteItem left deletes unprocessed; sending them again"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        Err(Error::Throttled {
            operation: "BatchWriteItem",
            table: table.to_string(),
            message: format!(
                "{} deletes still unprocessed after {BATCH_ATTEMPTS} attempts; run the \
                 deletion again later (it resumes), or raise the table's write capacity",
                requests.len()
            )
            .into(),
            source: "unprocessed items".into(),
        })
    }
}

/// The key of an item whose table has only a partition key.
fn head_key(key: &str) -> Item {
    Item::from([(
        AGGREGATE_TYPE_AND_ID.to_string(),
        AttributeValue::S(key.to_string()),
    )])
}

fn read_tombstone(item: &Item, key: &str) -> Result<Tombstone> {
    Ok(Tombstone {
        last_sequence: get_n(item, key, DELETED_THROUGH)?,
        chunks: get_n(item, key, DELETED_CHUNKS).unwrap_or(0),
        deleted_head: false,
    })
}

impl DynamoEventRepository {
    /// [`Error::AggregateDeleted`] for the tombstone `item`.
    pub(crate) fn deleted_error(&self, item: &Item) -> Error {
        deleted_error(item, &self.event_table)
    }
}

/// [`Error::AggregateDeleted`] for the tombstone `item` of `table`.
pub(crate) fn deleted_error(item: &Item, table: &str) -> Error {
    Error::AggregateDeleted {
        aggregate_type: get_s(item, "", AGGREGATE_TYPE).unwrap_or_default().into(),
        id: get_s(item, "", AGGREGATE_ID).unwrap_or_default().into(),
        last_sequence: get_n(item, "", DELETED_THROUGH).unwrap_or(0),
        table: table.into(),
    }
}
