//! The commit path: a commit's events, and the snapshot planned beside
//! them, checked against DynamoDB's limits and written at once.
//!
//! A commit of exactly one event with no snapshot to write (none asked for,
//! or one left out) is a conditional `PutItem` (1 write unit per KB instead
//! of a transaction's 2; see [`super::single_put`]); every other commit is
//! one `TransactWriteItems` ([`super::transact`]).
//!
//! **Invariant:** a commit writes all of its items or none. Every event is
//! written under `attribute_not_exists(AggregateIdSequence)`, a snapshot
//! under its version condition, so a commit that lost a race writes nothing
//! and is [`Error::Conflict`]. The events must fit DynamoDB's limits on
//! their own ([`Error::LimitExceeded`] otherwise, nothing sent); a snapshot
//! goes with them only if it fits too, else it is left out and the events
//! are committed alone (a snapshot never blocks a commit).

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use cqrs_es::persist::SerializedEvent;
use tracing::{field, Instrument, Level};

use super::claim::HeadClaim;
use super::limits::{check_key, check_limits, check_limits_of};
use super::{log_codec_once, single_put, DynamoEventRepository};
use crate::error::{aggregate_span, Error, Result};
use crate::item::{aggregate_key, event_to_item, PayloadBytes};
use crate::outcome::Attempts;
use crate::snapshot::{self, PlannedWrite, SnapshotSpec};

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
    /// [`max_decoded_size`](crate::Codec::max_decoded_size).
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
    /// The aggregate store's claim the head makes
    /// ([`EVENTS_THROUGH`](crate::item::EVENTS_THROUGH)), if any.
    pub events_through: Option<usize>,
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

/// The operation of a transactional commit, as spans and errors name it.
const TRANSACT_WRITE_ITEMS: &str = "TransactWriteItems";

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

/// What a commit stored, as its caller needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommitOutcome {
    /// The chunk items of the snapshot written with the commit, or `None`
    /// when it wrote none (none asked for, or one left out).
    pub snapshot_chunks: Option<usize>,
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
    /// The chunk items of the snapshot written, if one was.
    snapshot_chunks: Option<usize>,
    /// The DynamoDB operation that wrote it: `PutItem` or
    /// `TransactWriteItems`.
    operation: &'static str,
}

impl DynamoEventRepository {
    /// Commits events, and optionally a snapshot, in one transaction (one
    /// conditional `PutItem` for a lone event without a snapshot).
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
    ///
    /// `claim` is the aggregate store's claim the head carried when the
    /// caller loaded it: a commit that stores its events without replacing
    /// the head removes it first (see [`super::claim`]).
    pub(crate) async fn commit(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[SerializedEvent],
        snapshot: Option<SnapshotUpdate>,
        claim: Option<HeadClaim>,
    ) -> Result<CommitOutcome> {
        log_codec_once(&self.codec_logged, &self.codec, &self.event_table);
        let key = aggregate_key(aggregate_type, aggregate_id);
        let span = aggregate_span!(
            Level::INFO,
            "dynamo_es.persist",
            self.event_table,
            (aggregate_type, aggregate_id),
            events = events.len(),
            items = field::Empty,
            plain_bytes = field::Empty,
            stored_bytes = field::Empty,
            codec = %self.codec.name(),
            snapshot_table = field::Empty,
            snapshot_chunks = field::Empty,
            snapshot_skipped = field::Empty,
            operation = field::Empty,
            consumed_capacity = field::Empty
        );
        async {
            match self
                .commit_in_span(&key, aggregate_type, aggregate_id, events, snapshot, claim)
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
                        operation = done.operation,
                        "commit stored"
                    );
                    Ok(CommitOutcome {
                        snapshot_chunks: done.snapshot_chunks,
                    })
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
        claim: Option<HeadClaim>,
    ) -> Result<Committed> {
        check_key(key)?;
        // Personal data sealed before anything is encoded; refused (and
        // nothing written) when it cannot be.
        let sealed = self.seal_events(events).await?;
        let events: &[SerializedEvent] = &sealed;
        let mut writes = Vec::with_capacity(events.len() + 1);
        let mut bytes = PayloadBytes::default();
        let codec = self.codec_for(aggregate_type);
        // One commit, one time: its events sort together in their slice.
        let commit_micros = crate::slice::micros(std::time::SystemTime::now());
        let expires_at = self.expiry().expires_at(aggregate_type);
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
            let (mut item, event_bytes) = event_to_item(event, &codec)?;
            if let Some(slices) = self.slices() {
                slices.stamp(&mut item, aggregate_type, aggregate_id, commit_micros);
            }
            if let Some(at) = expires_at {
                item.insert(crate::item::EXPIRES_AT.to_string(), crate::item::n(at));
            }
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
        let (snapshot_writes, snapshot_bytes, outcome, snapshot_chunks) = match snapshot {
            SnapshotWrites::None => (None, PayloadBytes::default(), "none", 0),
            SnapshotWrites::Skipped(skipped) => {
                skip_snapshot(key, &self.snapshot_table, &skipped);
                (None, PayloadBytes::default(), "skipped", 0)
            }
            SnapshotWrites::Planned {
                writes,
                chunks,
                bytes,
            } => {
                span.record("snapshot_table", field::display(&self.snapshot_table));
                span.record("snapshot_chunks", chunks);
                (Some(writes), bytes, "written", chunks)
            }
        };
        let Some(snapshot_writes) = snapshot_writes else {
            if let Some(claim) = claim {
                self.drop_claim(aggregate_type, aggregate_id, claim).await?;
            }
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
        span.record("operation", TRANSACT_WRITE_ITEMS);
        let attempts = Attempts::default();
        match self.send(key, with_snapshot, first, last, &attempts).await {
            Ok(capacity) => {
                span.record("consumed_capacity", capacity);
                Ok(Committed {
                    items,
                    stored_bytes: all_bytes.stored,
                    consumed_capacity: capacity,
                    snapshot: outcome,
                    snapshot_chunks: Some(snapshot_chunks),
                    operation: TRANSACT_WRITE_ITEMS,
                })
            }
            // A refusal of the whole request, unless an earlier attempt may
            // have been applied: then the events must not be sent again alone.
            Err(err) if is_validation_error(&err) && !attempts.lost() => {
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
                if let Some(claim) = claim {
                    self.drop_claim(aggregate_type, aggregate_id, claim).await?;
                }
                self.commit_events_alone(key, writes, bytes, first, last, "skipped")
                    .await
            }
            Err(err) => {
                Err(attempts.classify(Error::from_transact_on(&self.commit_tables(), key, err)))
            }
        }
    }

    /// Commits the events of a commit without a snapshot: a lone event as a
    /// conditional `PutItem` when it still fits one item with its commit id,
    /// else one transaction.
    async fn commit_events_alone(
        &self,
        key: &str,
        mut writes: Vec<PlannedWrite>,
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
        let (operation, capacity) = match single_put::take_lone_item(&mut writes) {
            Some(item) => {
                span.record("operation", single_put::PUT_ITEM);
                (single_put::PUT_ITEM, self.put_one(key, item).await?)
            }
            None => {
                span.record("operation", TRANSACT_WRITE_ITEMS);
                let capacity = self.transact(key, writes, first, last).await?;
                (TRANSACT_WRITE_ITEMS, capacity)
            }
        };
        span.record("consumed_capacity", capacity);
        Ok(Committed {
            items,
            stored_bytes: bytes.stored,
            consumed_capacity: capacity,
            snapshot,
            snapshot_chunks: None,
            operation,
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
            events_through: update.events_through,
            expires_at: self.expiry().expires_at(aggregate_type),
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
    ///
    /// A state no reader could read back (a map holding a key twice, nesting
    /// too deep) is [`Error::Refused`] naming the snapshot of `key`; one over
    /// the codec's `max_decoded_size` is encoded, and left out of the commit
    /// by [`commit`](Self::commit).
    pub(crate) fn encode_snapshot<T: serde::Serialize>(
        &self,
        key: &str,
        state: &T,
    ) -> Result<EncodedSnapshot> {
        let (payload, decoded_len) = self
            .codec
            .encode_serialize_sized(state)
            .map_err(|err| err.naming_payload(|| format!("snapshot of {key}")))?;
        let plain_len = if tracing::enabled!(tracing::Level::INFO) {
            if self.codec.compression_level().is_none()
                && self.codec.format() == crate::codec::Format::Json
            {
                Some(payload.len())
            } else {
                Some(crate::item::plain_json_len(state))
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
