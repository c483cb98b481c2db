//! The rewrite of one item: re-encode its payloads, and write it back only
//! if it is unchanged since it was read.
//!
//! Every write is conditioned on the item exactly as read: an event on its
//! old `Payload` and `Metadata`, a view on its `ViewVersion` and old
//! `Payload`, a snapshot (one transaction: head, chunks, deletion of stale
//! chunks) on its head's `CurrentSnapshot`, `CurrentSequence` and old
//! payload (or, chunked, its `PayloadHash` and `PayloadChunks`). A lost
//! condition is never an error: the item is read again and retried, then
//! left as it is and counted. Only payload encodings change; every other
//! attribute is written back as it was. An item whose payload cannot be
//! decoded, or cannot be shown to re-encode to exactly the same value, is
//! counted and never written.

use std::fmt;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};

use super::run::TableRun;
use super::stats::{snapshot_recode_wcu, ItemStats, Layout, Outcome};
use super::TableKind;
use crate::codec::Codec;
use crate::error::{or_refused, Error, Result};
use crate::event_repository::{check_limits, request_token};
use crate::item::{
    aggregate_key, b, describe_key, get_b, get_n, get_s, Item, AGGREGATE_ID, AGGREGATE_TYPE,
    AGGREGATE_TYPE_AND_ID, CURRENT_SEQUENCE, CURRENT_SNAPSHOT, EVENTS_THROUGH, METADATA, PAYLOAD,
    PAYLOAD_CHUNKS, PAYLOAD_HASH, PAYLOAD_SIZE, VIEW_VERSION,
};
use crate::outcome::Attempts;
use crate::size::item_size;
use crate::snapshot::{self, SnapshotSpec};

/// Attributes of a snapshot head that its layout owns; any other attribute
/// is carried over unchanged. The aggregate store's claim
/// ([`EVENTS_THROUGH`]) is not carried over either.
const SNAPSHOT_LAYOUT: [&str; 10] = [
    AGGREGATE_TYPE_AND_ID,
    AGGREGATE_TYPE,
    AGGREGATE_ID,
    CURRENT_SEQUENCE,
    CURRENT_SNAPSHOT,
    PAYLOAD,
    PAYLOAD_CHUNKS,
    PAYLOAD_SIZE,
    PAYLOAD_HASH,
    // Dropped: a store may remove the claim while the rewrite is under
    // way, and a rewrite restoring it would make a stale head look current.
    EVENTS_THROUGH,
];

/// A condition on attributes as read: each attribute and its placeholder.
type Condition = &'static [(&'static str, &'static str)];

/// The head condition of a single-item snapshot rewrite.
const SINGLE_SNAPSHOT: Condition = &[
    (CURRENT_SNAPSHOT, ":old_snapshot"),
    (CURRENT_SEQUENCE, ":old_sequence"),
    (PAYLOAD, ":old_payload"),
];

/// The head condition of a chunked snapshot rewrite.
const CHUNKED_SNAPSHOT: Condition = &[
    (CURRENT_SNAPSHOT, ":old_snapshot"),
    (CURRENT_SEQUENCE, ":old_sequence"),
    (PAYLOAD_HASH, ":old_hash"),
    (PAYLOAD_CHUNKS, ":old_chunks"),
];

/// How a record stored in one item (an event or a view) is rewritten.
struct OneItem {
    /// The payload attributes re-encoded.
    payloads: &'static [&'static str],
    /// What the conditional put compares: every payload, and any other
    /// attribute a writer changes with it.
    condition: Condition,
}

/// An event: `Payload` and `Metadata`, conditioned on both.
const EVENT: OneItem = OneItem {
    payloads: &[PAYLOAD, METADATA],
    condition: &[(PAYLOAD, ":old_payload"), (METADATA, ":old_metadata")],
};

/// A view: `Payload`, conditioned on it and on `ViewVersion`.
const VIEW: OneItem = OneItem {
    payloads: &[PAYLOAD],
    condition: &[(VIEW_VERSION, ":old_version"), (PAYLOAD, ":old_payload")],
};

/// What becomes of one payload.
enum Transcoded {
    /// Kept: the target stores it exactly so, or it is in the target's
    /// format and the target would not shrink it; [`Kept`] says which.
    Keep(Kept),
    /// Rewritten as these bytes.
    Rewrite(Vec<u8>),
    /// Kept: not in the target's format, but the target would not shrink
    /// it (and growth is not allowed).
    OtherFormat,
}

/// Why a payload in the target's format is kept, in the order an item of
/// several payloads reports them (the largest wins): all under the
/// compression threshold, else already as the target writes it, else one
/// the target would not shrink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kept {
    /// Stored plain because it is under the target's compression threshold.
    UnderThreshold,
    /// Stored exactly as the target writes it (already recoded).
    Same,
    /// The target's encoding of it would not be smaller.
    NotSmaller,
}

impl Kept {
    /// Why `old`, which `target` stores as it is, is kept.
    fn of(old: &[u8], target: &Codec) -> Kept {
        #[cfg(feature = "compression")]
        let dictionary = target.dictionary().is_some();
        #[cfg(not(feature = "compression"))]
        let dictionary = false;
        let compresses = target.compression_level().is_some() || dictionary;
        let plain = !matches!(
            crate::codec::Encoding::detect(old),
            Ok(crate::codec::Encoding::Zstd)
        );
        match (compresses && plain, !dictionary) {
            (true, true) if old.len() < target.min_compress_size() => Kept::UnderThreshold,
            (true, _) => Kept::NotSmaller,
            (false, _) => Kept::Same,
        }
    }

    /// The item's outcome when every payload is kept, the largest reason
    /// being this one.
    fn outcome(self) -> Outcome {
        match self {
            Kept::UnderThreshold => Outcome::UnderThreshold,
            Kept::Same => Outcome::Skipped,
            Kept::NotSmaller => Outcome::NotSmaller,
        }
    }
}

/// One attempt at an item.
enum Attempt {
    Done(ItemStats),
    /// The item changed since it was read (or is changing): read it again.
    Changed(Layout),
}

impl TableRun {
    /// Recodes one item, re-reading it while a concurrent writer changes it.
    pub(super) async fn process(&self, mut item: Item) -> Result<ItemStats> {
        if crate::expiry::is_expired_at(&item, std::time::SystemTime::now()) {
            // Past its expiry: gone for every read, and DynamoDB removes it;
            // a rewrite would only pay for it.
            let layout = Layout::of(self.table.kind, item_size(&item), &[]);
            return Ok(ItemStats::unchanged(layout, Outcome::Skipped));
        }
        let mut attempts = 0u32;
        loop {
            self.dictionaries.prefetch(&item).await?;
            let attempt = match self.table.kind {
                TableKind::Events => self.one_item(&item, &EVENT).await?,
                TableKind::Snapshots => self.snapshot(&item).await?,
                TableKind::Views => self.one_item(&item, &VIEW).await?,
            };
            let layout = match attempt {
                Attempt::Done(stats) => return Ok(stats),
                Attempt::Changed(layout) => layout,
            };
            attempts += 1;
            let key = describe_key(&item);
            if attempts > self.options.conflict_retries {
                tracing::warn!(%key, "item kept changing during recode; left as it is");
                return Ok(ItemStats::unchanged(layout, Outcome::Conflict));
            }
            tracing::debug!(%key, attempts, "item changed during recode; reading it again");
            match self.reread(&item).await? {
                Some(fresh) => item = fresh,
                // Deleted meanwhile: nothing left to recode or to count.
                None => return Ok(ItemStats::unchanged(Layout::default(), Outcome::Conflict)),
            }
        }
    }

    /// The item with the key of `item`, read again.
    async fn reread(&self, item: &Item) -> Result<Option<Item>> {
        let key = self
            .table
            .kind
            .key_attributes()
            .iter()
            .filter_map(|name| item.get(*name).map(|v| ((*name).to_string(), v.clone())))
            .collect();
        let out = self
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| Error::from_sdk_on("GetItem", &self.table.name, err))?;
        Ok(out.item)
    }

    /// The payload re-encoded exactly for the target, or why `old` is
    /// kept. [`Error::Inexact`] when it cannot be shown to be the same value.
    fn transcode(&self, old: &[u8], target: &Codec) -> Result<Transcoded> {
        let new = target.reencode(old)?;
        Ok(if new == old {
            Transcoded::Keep(Kept::of(old, target))
        } else if self.upstream || new.len() < old.len() {
            Transcoded::Rewrite(new)
        } else if target.is_native(old) {
            Transcoded::Keep(Kept::NotSmaller)
        } else if self.options.allow_growth {
            Transcoded::Rewrite(new)
        } else {
            Transcoded::OtherFormat
        })
    }

    /// Rewrites the payloads of an event or a view with a conditional put
    /// on their exact old values (and, for a view, its version).
    async fn one_item(&self, item: &Item, how: &OneItem) -> Result<Attempt> {
        let kind = self.table.kind;
        let key = describe_key(item);
        let before_size = item_size(item);
        let before = Layout::of(kind, before_size, &[]);
        if crate::item::is_tombstone(item) {
            // A deleted aggregate's tombstone holds no payload: left as it
            // is (it must stay, keeping the aggregate's last sequence).
            return Ok(Attempt::Done(ItemStats::unchanged(
                before,
                Outcome::Skipped,
            )));
        }
        let guards = how.condition.iter().map(|(name, _)| *name);
        if let Some(attribute) = guards
            .filter(|name| !how.payloads.contains(name))
            .find(|name| !item.contains_key(*name))
        {
            let err = Error::MissingAttribute {
                key: key.clone(),
                attribute,
            };
            return Ok(unreadable(&key, before, err));
        }
        let target = self.dictionaries.target_for(&self.target, kind, item);
        let mut new_item = item.clone();
        let mut changed = false;
        let mut other_format = false;
        let mut kept = None;
        for &name in how.payloads {
            let old = match get_b(item, &key, name) {
                Ok(old) => old,
                Err(err) => return Ok(unreadable(&key, before, err)),
            };
            match self.transcode(old, &target) {
                Ok(Transcoded::Rewrite(new)) => {
                    new_item.insert(name.to_string(), b(new));
                    changed = true;
                }
                Ok(Transcoded::Keep(why)) => kept = kept.max(Some(why)),
                Ok(Transcoded::OtherFormat) => other_format = true,
                Err(err) => return failed(&key, before, name, err),
            }
        }
        if !changed {
            let outcome = if other_format {
                Outcome::OtherFormat
            } else {
                kept.map_or(Outcome::Skipped, Kept::outcome)
            };
            return Ok(left(before, outcome));
        }
        let stats = ItemStats::single_item(kind, &key, before, before_size, &new_item);
        if self.options.dry_run || stats.outcome != Outcome::Recoded {
            return Ok(Attempt::Done(stats));
        }
        let (condition, values) = condition_as_read(item, how.condition);
        let put = self.client.put_item().table_name(&self.table.name);
        let attempts = Attempts::default();
        let result = put
            .set_item(Some(new_item))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .customize()
            .config_override(
                aws_sdk_dynamodb::config::Builder::default().interceptor(attempts.interceptor()),
            )
            .send()
            .await;
        let refused = PutItemError::is_conditional_check_failed_exception;
        match or_refused(result, "PutItem", &self.table.name, refused) {
            Ok(Some(_)) => Ok(Attempt::Done(stats)),
            Ok(None) => Ok(Attempt::Changed(before)),
            Err(err) => Err(attempts.classify(err)),
        }
    }

    /// Rewrites a snapshot (single item or chunked) in one transaction
    /// conditioned on the head as read.
    async fn snapshot(&self, head: &Item) -> Result<Attempt> {
        let key = describe_key(head);
        let head_size = item_size(head);
        let head_only = Layout::of(TableKind::Snapshots, head_size, &[]);
        let names = get_s(head, &key, AGGREGATE_TYPE)
            .and_then(|aggregate_type| Ok((aggregate_type, get_s(head, &key, AGGREGATE_ID)?)));
        let (aggregate_type, aggregate_id) = match names {
            Ok(names) => names,
            Err(err) => return Ok(unreadable(&key, head_only, err)),
        };
        if aggregate_key(aggregate_type, aggregate_id) != key {
            let err = Error::InvalidAttribute {
                key: key.clone(),
                attribute: AGGREGATE_TYPE_AND_ID,
                expected: "`{AggregateType}:{AggregateId}`",
            };
            return Ok(unreadable(&key, head_only, err));
        }
        let stored = match snapshot::stored_payload(
            &self.client,
            &self.table.name,
            &key,
            head,
            aggregate_type,
            aggregate_id,
        )
        .await
        {
            Ok(Ok(stored)) => stored,
            // The chunks changed under us: a writer is at work.
            Ok(Err(_)) => return Ok(Attempt::Changed(head_only)),
            Err(err) if err.is_data_error() => return Ok(unreadable(&key, head_only, err)),
            Err(err) => return Err(err),
        };
        let before = Layout::of(TableKind::Snapshots, head_size, &stored.chunk_sizes);
        if !stored.chunk_sizes.is_empty() {
            // A chunked payload's frame header is in its first chunk, which
            // the head's prefetch did not see.
            self.dictionaries
                .prefetch_payload(&key, &stored.payload)
                .await?;
        }
        let sequence = get_n::<usize>(head, &key, CURRENT_SEQUENCE)
            .and_then(|sequence| Ok((sequence, get_n::<usize>(head, &key, CURRENT_SNAPSHOT)?)));
        let (current_sequence, current_snapshot) = match sequence {
            Ok(numbers) => numbers,
            Err(err) => return Ok(unreadable(&key, before, err)),
        };
        let new = match self.transcode(&stored.payload, &self.target) {
            Ok(Transcoded::Rewrite(new)) => new,
            // Plain JSON already, but chunked: upstream reads one item only.
            Ok(Transcoded::Keep(_)) if self.upstream && !stored.chunk_sizes.is_empty() => {
                stored.payload
            }
            Ok(Transcoded::Keep(why)) => return Ok(left(before, why.outcome())),
            Ok(Transcoded::OtherFormat) => return Ok(left(before, Outcome::OtherFormat)),
            Err(err) => return failed(&key, before, PAYLOAD, err),
        };
        let plan = match snapshot::plan(SnapshotSpec {
            table: &self.table.name,
            aggregate_type,
            aggregate_id,
            payload: new,
            current_sequence,
            current_snapshot,
            condition: Some(snapshot_condition(head)),
            previous_chunks: stored.chunk_sizes.len(),
            events_through: None,
            // Kept as the writer set it.
            expires_at: crate::expiry::expires_at_of(head),
        }) {
            Ok(plan) => plan,
            Err(err @ Error::LimitExceeded { .. }) => return Ok(too_large(&key, before, &err)),
            Err(err) => return Err(err),
        };
        if self.upstream && plan.chunks > 0 {
            return Ok(not_convertible(
                &key,
                before,
                "does not fit in one item as plain JSON, which upstream needs",
            ));
        }
        let mut writes = plan.writes;
        // Carry over any attribute the layout does not own (a TTL, ...).
        if let Some(first) = writes.first_mut() {
            if let Some(put) = first.write.put.as_mut() {
                for (name, value) in head {
                    if !SNAPSHOT_LAYOUT.contains(&name.as_str()) {
                        put.item.insert(name.clone(), value.clone());
                    }
                }
                first.size = item_size(&put.item);
            }
        }
        if let Err(err) = check_limits(&key, &writes) {
            return Ok(too_large(&key, before, &err));
        }
        let put_sizes: Vec<usize> = writes
            .iter()
            .filter(|w| w.write.put.is_some())
            .map(|w| w.size)
            .collect();
        let (new_head, new_chunks) = put_sizes.split_first().unwrap_or((&0, &[]));
        let stats = ItemStats {
            before,
            after: Layout::of(TableKind::Snapshots, *new_head, new_chunks),
            outcome: Outcome::Recoded,
            recode_wcu: snapshot_recode_wcu(head_size, &stored.chunk_sizes, *new_head, new_chunks),
        };
        if self.options.dry_run {
            return Ok(Attempt::Done(stats));
        }
        let items: Vec<TransactWriteItem> = writes.into_iter().map(|w| w.write).collect();
        let attempts = Attempts::default();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(request_token(&key, current_sequence, current_snapshot))
            .customize()
            .config_override(
                aws_sdk_dynamodb::config::Builder::default().interceptor(attempts.interceptor()),
            )
            .send()
            .await;
        match result
            .map_err(|err| attempts.classify(Error::from_transact_on(&self.table.name, &key, err)))
        {
            Ok(_) => Ok(Attempt::Done(stats)),
            Err(Error::Conflict { .. }) => Ok(Attempt::Changed(before)),
            Err(err) => Err(err),
        }
    }
}

/// `A = :a AND B = :b ...` over `condition`, with the values of `item` as
/// read (NULL for a missing one, which matches no stored value).
fn condition_as_read(item: &Item, condition: Condition) -> (String, Vec<(String, AttributeValue)>) {
    let clauses: Vec<String> = condition
        .iter()
        .map(|(name, placeholder)| format!("{name} = {placeholder}"))
        .collect();
    let values = condition
        .iter()
        .map(|(name, placeholder)| {
            let value = item.get(*name).cloned();
            (
                placeholder.to_string(),
                value.unwrap_or(AttributeValue::Null(true)),
            )
        })
        .collect();
    (clauses.join(" AND "), values)
}

/// The head condition of a snapshot rewrite: the version, the sequence and
/// the exact payload (or, chunked, its hash and chunk count) as read.
fn snapshot_condition(head: &Item) -> (String, Vec<(String, AttributeValue)>) {
    if head.contains_key(PAYLOAD) {
        condition_as_read(head, SINGLE_SNAPSHOT)
    } else {
        condition_as_read(head, CHUNKED_SNAPSHOT)
    }
}

/// The item is left as it is, as `outcome`.
fn left(layout: Layout, outcome: Outcome) -> Attempt {
    Attempt::Done(ItemStats::unchanged(layout, outcome))
}

fn unreadable(key: &str, layout: Layout, err: Error) -> Attempt {
    tracing::warn!(%key, error = %err, "payload cannot be decoded; left as it is");
    left(layout, Outcome::Unreadable)
}

fn not_convertible(key: &str, layout: Layout, reason: impl fmt::Display) -> Attempt {
    tracing::warn!(%key, %reason, "item cannot be converted exactly; left as it is");
    left(layout, Outcome::NotConvertible)
}

fn too_large(key: &str, layout: Layout, err: &Error) -> Attempt {
    tracing::warn!(%key, error = %err, "recoded snapshot cannot be stored; left as it is");
    left(layout, Outcome::Skipped)
}

/// Sorts a failed re-encoding of `attribute`: not exact, unreadable, or a
/// failure of the run.
fn failed(key: &str, layout: Layout, attribute: &'static str, err: Error) -> Result<Attempt> {
    match err {
        Error::Inexact { .. } => Ok(not_convertible(key, layout, err.in_item(key, attribute))),
        err if err.is_data_error() => Ok(unreadable(key, layout, err.in_item(key, attribute))),
        err => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_rewrites_are_conditioned_on_the_head_as_read() {
        let single = Item::from([
            (CURRENT_SNAPSHOT.to_string(), AttributeValue::N("4".into())),
            (CURRENT_SEQUENCE.to_string(), AttributeValue::N("17".into())),
            (PAYLOAD.to_string(), b(b"{}".to_vec())),
        ]);
        let (expression, values) = snapshot_condition(&single);
        assert_eq!(
            expression,
            "CurrentSnapshot = :old_snapshot AND CurrentSequence = :old_sequence AND Payload = :old_payload"
        );
        assert!(values.contains(&(":old_payload".into(), b(b"{}".to_vec()))));
        let chunked = Item::from([
            (CURRENT_SNAPSHOT.to_string(), AttributeValue::N("4".into())),
            (CURRENT_SEQUENCE.to_string(), AttributeValue::N("17".into())),
            (PAYLOAD_HASH.to_string(), AttributeValue::S("00ff".into())),
            (PAYLOAD_CHUNKS.to_string(), AttributeValue::N("3".into())),
        ]);
        let (expression, values) = snapshot_condition(&chunked);
        assert!(expression.ends_with("PayloadHash = :old_hash AND PayloadChunks = :old_chunks"));
        assert!(values.contains(&(":old_snapshot".into(), AttributeValue::N("4".into()))));
        assert!(values.contains(&(":old_chunks".into(), AttributeValue::N("3".into()))));
    }

    #[test]
    fn events_and_views_are_conditioned_on_their_old_values() {
        let payload = (PAYLOAD, ":old_payload", b(b"{\"a\":1}".to_vec()));
        let cases = [
            (
                &EVENT,
                (METADATA, ":old_metadata", b(b"{}".to_vec())),
                false,
            ),
            (
                &VIEW,
                (VIEW_VERSION, ":old_version", AttributeValue::N("2".into())),
                true,
            ),
        ];
        for (how, other, other_first) in cases {
            let mut expected = vec![payload.clone(), other];
            if other_first {
                expected.reverse();
            }
            let item: Item = expected
                .iter()
                .map(|(name, _, value)| (name.to_string(), value.clone()))
                .collect();
            let (expression, values) = condition_as_read(&item, how.condition);
            let clauses: Vec<String> = expected
                .iter()
                .map(|(name, placeholder, _)| format!("{name} = {placeholder}"))
                .collect();
            assert_eq!(expression, clauses.join(" AND "));
            let expected: Vec<(String, AttributeValue)> = expected
                .into_iter()
                .map(|(_, placeholder, value)| (placeholder.to_string(), value))
                .collect();
            assert_eq!(values, expected);
        }
        assert_eq!(
            condition_as_read(&Item::new(), EVENT.condition).0,
            "Payload = :old_payload AND Metadata = :old_metadata"
        );
        // Every payload rewritten is also compared.
        for how in [&EVENT, &VIEW] {
            for payload in how.payloads {
                assert!(how.condition.iter().any(|(name, _)| name == payload));
            }
        }
    }
}
