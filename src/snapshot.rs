//! Snapshot items: the single-item upstream layout for snapshots that fit,
//! and chunking past 400 KB.
//!
//! A snapshot whose encoded payload fits in one item is stored exactly as
//! upstream stores it. A larger one keeps a small head item at the upstream
//! key (no `Payload`; `PayloadChunks`, `PayloadSize` and `PayloadHash`
//! instead) and puts its bytes in chunk items of the same table, keyed by
//! [`chunk_key`]. Head and chunks are written in the same transaction as the
//! commit's events, under the head's `CurrentSnapshot` condition.
//!
//! Every chunk carries the xxh3-64 hash of the whole payload, and a reader
//! checks each chunk's hash, the total length and the hash of the joined
//! bytes against the head: chunks of two different snapshot versions can
//! never be mixed. Chunk keys depend only on the aggregate and the chunk
//! index, so a snapshot that grows overwrites its old chunks; when it
//! shrinks, [`DynamoStore`](crate::DynamoStore) deletes the chunks past the
//! new end in the same transaction, and any it could not delete are never
//! read (the head says how many chunks there are).
//!
//! Heads written by [`DynamoStore`](crate::DynamoStore) carry
//! [`SNAPSHOT_WRITER`](crate::item::SNAPSHOT_WRITER) = `"dynamo-es"`; a
//! reader reports whether the head it read has it
//! ([`LoadedSnapshot::trusted`]).

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use cqrs_es::persist::SerializedSnapshot;
use xxhash_rust::xxh3::xxh3_64;

use crate::codec::Codec;
use crate::error::{Error, Limit, Result};
use crate::item::{
    aggregate_key, b, chunk_key, get_b, get_n, get_s, n, s, Item, AGGREGATE_ID, AGGREGATE_TYPE,
    AGGREGATE_TYPE_AND_ID, CHUNK_INDEX, CHUNK_OF, CURRENT_SEQUENCE, CURRENT_SNAPSHOT,
    EVENTS_THROUGH, PAYLOAD, PAYLOAD_CHUNKS, PAYLOAD_HASH, PAYLOAD_SIZE, SNAPSHOT_WRITER,
};
use crate::size::{item_size, MAX_ITEM_SIZE, MAX_PARTITION_KEY_SIZE};

/// How many times a reader re-reads a chunked snapshot that changed under it.
const READ_ATTEMPTS: u32 = 5;

/// The value of [`SNAPSHOT_WRITER`] on heads written by `DynamoStore`.
pub(crate) const WRITER_MARK: &str = "dynamo-es";

/// One write of a transaction, with the size it counts for.
#[derive(Debug, Clone)]
pub(crate) struct PlannedWrite {
    pub write: TransactWriteItem,
    pub size: usize,
    pub subject: String,
}

/// The writes that store one snapshot.
pub(crate) struct SnapshotPlan {
    pub writes: Vec<PlannedWrite>,
    /// Chunk items written (0 for the single-item layout).
    pub chunks: usize,
}

/// A snapshot as read: its payload still encoded, as stored.
#[derive(Debug)]
pub(crate) struct LoadedSnapshot {
    /// The stored payload bytes (decode with any [`Codec`]).
    pub payload: Vec<u8>,
    /// The last event sequence the snapshot includes.
    pub current_sequence: usize,
    /// The snapshot's version.
    pub current_snapshot: usize,
    /// Chunk items it occupies (0 for a single item).
    pub chunks: usize,
    /// True if the head carries [`SNAPSHOT_WRITER`] = [`WRITER_MARK`]: the
    /// state was built by `DynamoStore`, each event applied once.
    pub trusted: bool,
    /// The head's [`EVENTS_THROUGH`] claim, if it carries one.
    pub events_through: Option<usize>,
    /// The head's [`EXPIRES_AT`](crate::item::EXPIRES_AT), if it has one.
    pub expires_at: Option<u64>,
}

/// True if a snapshot head carries this crate's writer mark.
pub(crate) fn is_marked(head: &Item) -> bool {
    matches!(head.get(SNAPSHOT_WRITER), Some(AttributeValue::S(mark)) if mark == WRITER_MARK)
}

impl LoadedSnapshot {
    /// Decodes the payload into cqrs-es's form, naming the item on error.
    pub(crate) fn into_serialized(
        self,
        aggregate_type: &str,
        aggregate_id: &str,
        codec: &Codec,
    ) -> Result<SerializedSnapshot> {
        let aggregate = codec
            .decode(&self.payload)
            .map_err(|err| err.in_item(&aggregate_key(aggregate_type, aggregate_id), PAYLOAD))?;
        Ok(SerializedSnapshot {
            aggregate_id: aggregate_id.to_string(),
            aggregate,
            current_sequence: self.current_sequence,
            current_snapshot: self.current_snapshot,
        })
    }
}

/// The snapshot's key attributes.
fn head_base(aggregate_type: &str, aggregate_id: &str, sequence: usize, snapshot: usize) -> Item {
    Item::from([
        (
            AGGREGATE_TYPE_AND_ID.to_string(),
            s(aggregate_key(aggregate_type, aggregate_id)),
        ),
        (AGGREGATE_TYPE.to_string(), s(aggregate_type)),
        (AGGREGATE_ID.to_string(), s(aggregate_id)),
        (CURRENT_SEQUENCE.to_string(), n(sequence)),
        (CURRENT_SNAPSHOT.to_string(), n(snapshot)),
    ])
}

/// Hex of the xxh3-64 hash of `bytes`.
pub(crate) fn payload_hash(bytes: &[u8]) -> String {
    format!("{:016x}", xxh3_64(bytes))
}

/// Input for [`plan`].
pub(crate) struct SnapshotSpec<'a> {
    pub table: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    /// The encoded payload.
    pub payload: Vec<u8>,
    pub current_sequence: usize,
    pub current_snapshot: usize,
    /// The condition on the head, or `None` for an unconditional put
    /// (recode uses its own condition).
    pub condition: Option<(String, Vec<(String, AttributeValue)>)>,
    /// Chunks the snapshot being replaced had, so stale ones are deleted.
    pub previous_chunks: usize,
    /// The head's [`EVENTS_THROUGH`] claim, if it makes one.
    pub events_through: Option<usize>,
    /// The [`EXPIRES_AT`](crate::item::EXPIRES_AT) of the head and every
    /// chunk, if the aggregate type has a time to live.
    pub expires_at: Option<u64>,
}

/// The head's version condition for a write of snapshot `current_snapshot`.
pub(crate) fn version_condition(
    current_snapshot: usize,
) -> (String, Vec<(String, AttributeValue)>) {
    match current_snapshot.checked_sub(1) {
        Some(expected) if expected > 0 => (
            "attribute_not_exists(CurrentSnapshot) OR CurrentSnapshot = :expected_snapshot".into(),
            vec![(":expected_snapshot".into(), n(expected))],
        ),
        _ => ("attribute_not_exists(CurrentSnapshot)".into(), vec![]),
    }
}

fn put(
    table: &str,
    item: Item,
    condition: &Option<(String, Vec<(String, AttributeValue)>)>,
) -> Result<TransactWriteItem> {
    let mut put = Put::builder().table_name(table).set_item(Some(item));
    if let Some((expression, values)) = condition {
        put = put.condition_expression(expression);
        for (name, value) in values {
            put = put.expression_attribute_values(name, value.clone());
        }
    }
    Ok(TransactWriteItem::builder().put(put.build()?).build())
}

/// Plans the writes of one snapshot: a single upstream-layout item when it
/// fits, else a head and chunks. Fails with a typed error naming the
/// aggregate when even that cannot be stored. The head carries no writer
/// mark (recode carries over the one the old head had).
pub(crate) fn plan(spec: SnapshotSpec<'_>) -> Result<SnapshotPlan> {
    plan_with(spec, false)
}

/// Like [`plan`], with [`SNAPSHOT_WRITER`] = [`WRITER_MARK`] on the head
/// (counted in its size): for snapshots `DynamoStore` built.
pub(crate) fn plan_marked(spec: SnapshotSpec<'_>) -> Result<SnapshotPlan> {
    plan_with(spec, true)
}

fn plan_with(spec: SnapshotSpec<'_>, marked: bool) -> Result<SnapshotPlan> {
    let aggregate = aggregate_key(spec.aggregate_type, spec.aggregate_id);
    let stored = spec.payload.len();
    let mut head = head_base(
        spec.aggregate_type,
        spec.aggregate_id,
        spec.current_sequence,
        spec.current_snapshot,
    );
    if marked {
        head.insert(SNAPSHOT_WRITER.to_string(), s(WRITER_MARK));
    }
    if let Some(through) = spec.events_through {
        head.insert(EVENTS_THROUGH.to_string(), n(through));
    }
    let expiring = |mut item: Item| {
        if let Some(at) = spec.expires_at {
            item.insert(crate::item::EXPIRES_AT.to_string(), n(at));
        }
        item
    };
    head = expiring(head);
    let head_overhead = item_size(&head);
    let mut writes = Vec::new();
    let chunks;
    if head_overhead + PAYLOAD.len() + stored <= MAX_ITEM_SIZE {
        head.insert(PAYLOAD.to_string(), b(spec.payload));
        let size = item_size(&head);
        writes.push(PlannedWrite {
            write: put(spec.table, head, &spec.condition)?,
            size,
            subject: "snapshot".into(),
        });
        chunks = 0;
    } else {
        let hash = payload_hash(&spec.payload);
        // The largest chunk item's fixed part, with the longest index it may carry.
        let probe = expiring(chunk_item(
            spec.aggregate_type,
            spec.aggregate_id,
            usize::MAX,
            &hash,
            Vec::new(),
        ));
        let chunk_key_len = chunk_key(spec.aggregate_type, spec.aggregate_id, usize::MAX).len();
        if chunk_key_len > MAX_PARTITION_KEY_SIZE {
            return Err(Error::LimitExceeded {
                aggregate,
                subject: "snapshot chunk key".into(),
                limit: Limit::PartitionKeySize,
                size: chunk_key_len,
                max: MAX_PARTITION_KEY_SIZE,
            });
        }
        let capacity = MAX_ITEM_SIZE - item_size(&probe);
        chunks = stored.div_ceil(capacity);
        for (index, part) in spec.payload.chunks(capacity).enumerate() {
            let item = expiring(chunk_item(
                spec.aggregate_type,
                spec.aggregate_id,
                index,
                &hash,
                part.to_vec(),
            ));
            let size = item_size(&item);
            writes.push(PlannedWrite {
                write: put(spec.table, item, &None)?,
                size,
                subject: format!("snapshot chunk {index}"),
            });
        }
        head.insert(PAYLOAD_CHUNKS.to_string(), n(chunks));
        head.insert(PAYLOAD_SIZE.to_string(), n(stored));
        head.insert(PAYLOAD_HASH.to_string(), s(hash));
        let size = item_size(&head);
        writes.insert(
            0,
            PlannedWrite {
                write: put(spec.table, head, &spec.condition)?,
                size,
                subject: "snapshot head".into(),
            },
        );
    }
    for index in chunks..spec.previous_chunks {
        let key = chunk_key(spec.aggregate_type, spec.aggregate_id, index);
        let size = AGGREGATE_TYPE_AND_ID.len() + key.len();
        let delete = Delete::builder()
            .table_name(spec.table)
            .key(AGGREGATE_TYPE_AND_ID, s(key))
            .build()?;
        writes.push(PlannedWrite {
            write: TransactWriteItem::builder().delete(delete).build(),
            size,
            subject: format!("stale snapshot chunk {index}"),
        });
    }
    Ok(SnapshotPlan { writes, chunks })
}

fn chunk_item(
    aggregate_type: &str,
    aggregate_id: &str,
    index: usize,
    hash: &str,
    part: Vec<u8>,
) -> Item {
    Item::from([
        (
            AGGREGATE_TYPE_AND_ID.to_string(),
            s(chunk_key(aggregate_type, aggregate_id, index)),
        ),
        (
            CHUNK_OF.to_string(),
            s(aggregate_key(aggregate_type, aggregate_id)),
        ),
        (CHUNK_INDEX.to_string(), n(index)),
        (PAYLOAD_HASH.to_string(), s(hash)),
        (PAYLOAD.to_string(), b(part)),
    ])
}

/// True for a chunk item (not a snapshot head).
pub(crate) fn is_chunk(item: &Item) -> bool {
    item.contains_key(CHUNK_OF)
}

/// Reads the head item of a snapshot.
async fn read_head(client: &Client, table: &str, key: &str) -> Result<Option<Item>> {
    crate::tables::requests::get_item(client, table, (AGGREGATE_TYPE_AND_ID, key)).await
}

/// A snapshot's payload as stored, with the size of each chunk item.
pub(crate) struct StoredPayload {
    /// The joined payload bytes.
    pub payload: Vec<u8>,
    /// The DynamoDB size of each chunk item, by index (empty for a single item).
    pub chunk_sizes: Vec<usize>,
}

/// The raw stored payload of a snapshot head, reading its chunks if it has
/// any, with the size of each chunk item (for recode's report).
/// `Ok(Err(reason))` means the chunks did not match the head (a concurrent
/// rewrite): read the head again.
pub(crate) async fn stored_payload(
    client: &Client,
    table: &str,
    key: &str,
    head: &Item,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<std::result::Result<StoredPayload, String>> {
    if head.contains_key(PAYLOAD) {
        return Ok(Ok(StoredPayload {
            payload: get_b(head, key, PAYLOAD)?.to_vec(),
            chunk_sizes: Vec::new(),
        }));
    }
    let count: usize = get_n(head, key, PAYLOAD_CHUNKS)?;
    let size: usize = get_n(head, key, PAYLOAD_SIZE)?;
    let hash = get_s(head, key, PAYLOAD_HASH)?.to_string();
    // A head is written with its chunks in one transaction, and each chunk
    // holds between one byte and one item of the payload. A head claiming
    // otherwise is corrupt: refuse it before allocating what it claims.
    if count == 0
        || count > crate::size::MAX_TRANSACTION_ITEMS
        || size < count
        || size > count.saturating_mul(MAX_ITEM_SIZE)
    {
        return Err(Error::Snapshot {
            key: key.to_string(),
            reason: format!("head declares {count} chunks holding {size} bytes"),
        });
    }
    let keys: Vec<String> = (0..count)
        .map(|index| chunk_key(aggregate_type, aggregate_id, index))
        .collect();
    let mut parts: Vec<Option<Vec<u8>>> = vec![None; count];
    let mut chunk_sizes = vec![0usize; count];
    for item in
        crate::tables::requests::get_items(client, table, AGGREGATE_TYPE_AND_ID, &keys).await?
    {
        let chunk_key_text = crate::item::describe_key(&item);
        let index: usize = get_n(&item, &chunk_key_text, CHUNK_INDEX)?;
        if get_s(&item, &chunk_key_text, PAYLOAD_HASH)? != hash {
            return Ok(Err(format!(
                "chunk {index} belongs to another snapshot version"
            )));
        }
        let Some(slot) = parts.get_mut(index) else {
            return Ok(Err(format!("chunk index {index} out of range")));
        };
        *slot = Some(get_b(&item, &chunk_key_text, PAYLOAD)?.to_vec());
        if let Some(size) = chunk_sizes.get_mut(index) {
            *size = item_size(&item);
        }
    }
    let mut payload = Vec::with_capacity(size);
    for (index, part) in parts.into_iter().enumerate() {
        match part {
            Some(part) => payload.extend_from_slice(&part),
            None => return Ok(Err(format!("chunk {index} is missing"))),
        }
    }
    if payload.len() != size || payload_hash(&payload) != hash {
        return Ok(Err(
            "joined chunks do not match the head's size and hash".into()
        ));
    }
    Ok(Ok(StoredPayload {
        payload,
        chunk_sizes,
    }))
}

/// Reads a snapshot, joining and checking its chunks if it has any. The
/// payload is returned as stored; nothing is decoded.
///
/// Chunks that do not match the head are read again with the head, up to
/// [`READ_ATTEMPTS`] times. If the head changed between attempts, a writer
/// was at work and the failure is transient ([`Error::SnapshotChanging`]);
/// if it never changed, the stored snapshot is inconsistent
/// ([`Error::Snapshot`], a data error).
pub(crate) async fn read(
    client: &Client,
    table: &str,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<LoadedSnapshot>> {
    let key = aggregate_key(aggregate_type, aggregate_id);
    let mut last_reason = String::new();
    let mut previous_head: Option<Item> = None;
    let mut head_changed = false;
    for attempt in 0..READ_ATTEMPTS {
        let Some(head) = read_head(client, table, &key).await? else {
            return Ok(None);
        };
        match stored_payload(client, table, &key, &head, aggregate_type, aggregate_id).await? {
            Ok(StoredPayload {
                payload,
                chunk_sizes,
            }) => {
                return Ok(Some(LoadedSnapshot {
                    payload,
                    current_sequence: get_n(&head, &key, CURRENT_SEQUENCE)?,
                    current_snapshot: get_n(&head, &key, CURRENT_SNAPSHOT)?,
                    chunks: chunk_sizes.len(),
                    trusted: is_marked(&head),
                    events_through: get_n(&head, &key, EVENTS_THROUGH).ok(),
                    expires_at: crate::expiry::expires_at_of(&head),
                }));
            }
            Err(reason) => {
                tracing::debug!(%key, attempt, %reason, "chunked snapshot changed while reading; retrying");
                if previous_head
                    .as_ref()
                    .is_some_and(|previous| *previous != head)
                {
                    head_changed = true;
                }
                previous_head = Some(head);
                last_reason = reason;
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
        }
    }
    if head_changed {
        Err(Error::SnapshotChanging {
            key,
            reason: last_reason,
        })
    } else {
        Err(Error::Snapshot {
            key,
            reason: format!("chunks do not match an unchanged head ({last_reason})"),
        })
    }
}
