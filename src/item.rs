//! Pure mapping between cqrs-es values and DynamoDB items: attribute names,
//! key formats, payload encoding. No I/O, so all of it is tested without a
//! server.
//!
//! The attribute names and key functions are public so that tools working on
//! the same tables (a TTL job, an export, a migration) use the same names;
//! the low-level helpers that build and read items are not part of the
//! documented API.
//!
//! The layout is upstream `dynamo-es`'s, attribute for attribute:
//!
//! | table | key | other attributes |
//! |---|---|---|
//! | events | `AggregateTypeAndId` (S, `{type}:{id}`), `AggregateIdSequence` (N) | `AggregateType`, `AggregateId`, `EventType`, `EventVersion` (S), `Payload`, `Metadata` (B) |
//! | snapshots | `AggregateTypeAndId` (S) | `AggregateType`, `AggregateId` (S), `CurrentSequence`, `CurrentSnapshot` (N), `Payload` (B) |
//! | views | `ViewId` (S) | `ViewVersion` (N), `Payload` (B) |
//!
//! An event committed alone (one event, no snapshot) is written by a
//! conditional `PutItem` and also carries [`COMMIT_ID`] (S), which upstream
//! ignores; events written by a transaction do not.
//!
//! A snapshot too large for one item keeps its head item at the upstream key,
//! without `Payload` but with `PayloadChunks`, `PayloadSize` and
//! `PayloadHash`; its bytes live in chunk items of the same table (see
//! [`chunk_key`]).

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use cqrs_es::persist::SerializedEvent;

use crate::codec::Codec;
use crate::error::{Error, Result};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Partition key of events and snapshots: `{type}:{id}`.
pub const AGGREGATE_TYPE_AND_ID: &str = "AggregateTypeAndId";
/// Sort key of events.
pub const AGGREGATE_ID_SEQUENCE: &str = "AggregateIdSequence";
/// The aggregate type.
pub const AGGREGATE_TYPE: &str = "AggregateType";
/// The aggregate id.
pub const AGGREGATE_ID: &str = "AggregateId";
/// The event type.
pub const EVENT_TYPE: &str = "EventType";
/// The event version.
pub const EVENT_VERSION: &str = "EventVersion";
/// The encoded payload (event, snapshot or view).
pub const PAYLOAD: &str = "Payload";
/// The encoded event metadata.
pub const METADATA: &str = "Metadata";
/// The last event sequence a snapshot includes.
pub const CURRENT_SEQUENCE: &str = "CurrentSequence";
/// The snapshot's own version, for optimistic locking.
pub const CURRENT_SNAPSHOT: &str = "CurrentSnapshot";
/// Partition key of views.
pub const VIEW_ID: &str = "ViewId";
/// The view's version, for optimistic locking.
pub const VIEW_VERSION: &str = "ViewVersion";
/// On a view item written by
/// [`ViewProjection`](crate::projection::ViewProjection): the last aggregate
/// sequence applied to the view (N).
pub const LAST_SEQUENCE: &str = "LastSequence";
/// On a chunked snapshot's head: how many chunk items hold the payload.
pub const PAYLOAD_CHUNKS: &str = "PayloadChunks";
/// On a chunked snapshot's head: the payload's total length in bytes.
pub const PAYLOAD_SIZE: &str = "PayloadSize";
/// On a chunked snapshot's head and each of its chunks: the xxh3-64 of the
/// whole payload, in hex.
pub const PAYLOAD_HASH: &str = "PayloadHash";
/// On a snapshot head (single-item or chunked) written by
/// [`DynamoStore`](crate::DynamoStore): the string `"dynamo-es"`. It marks
/// the snapshot's state as built by this crate (each event applied exactly
/// once). `DynamoStore` ignores the state of a snapshot without it (such as
/// one written by upstream `dynamo-es` 0.5.0, whose snapshots hold events
/// applied twice) and rebuilds from the events instead. Upstream ignores the
/// attribute.
pub const SNAPSHOT_WRITER: &str = "SnapshotWriter";
/// On a snapshot head written by an aggregate store
/// ([`SnapshotPolicy::Always`](crate::SnapshotPolicy::Always)): the last
/// event sequence stored when the head was written, equal to its
/// `CurrentSequence` (N). It claims the snapshot is current: a load of the
/// aggregate store reads the head alone and queries no events while the
/// claim holds. Any `DynamoStore` commit that stores events without
/// replacing the head removes the claim first; recode drops it. Upstream
/// ignores the attribute.
pub const EVENTS_THROUGH: &str = "EventsThrough";
/// On an event item committed alone by a conditional `PutItem`: a random
/// 128-bit id of that commit, in hex (32 characters), the same on every
/// attempt of the commit and never shared by two commits. When a retried
/// `PutItem` fails its `attribute_not_exists` condition on an item carrying
/// its own id, an earlier attempt was applied (its response was lost) and
/// the commit succeeded; any other item there is a conflict. Events written
/// by a transaction rely on its `ClientRequestToken` instead and carry no
/// commit id. Upstream, and every reader here, ignore the attribute.
pub const COMMIT_ID: &str = "CommitId";
/// On an aggregate's tombstone (an item of the events table written by
/// [`delete_aggregate`](crate::DynamoEventRepository::delete_aggregate) at
/// the sequence after its last event): that last event's sequence (N). The
/// tombstone keeps the sequence taken, so no commit can ever reuse it, and
/// marks the aggregate deleted for every read. Upstream does not know it.
pub const DELETED_THROUGH: &str = "DeletedThrough";
/// On an aggregate's tombstone: when the deletion began, in UTC
/// (`2026-12-07T08:00:00Z`).
pub const DELETED_AT: &str = "DeletedAt";
/// On an aggregate's tombstone: the chunk items of the snapshot head the
/// deletion removed (N), so an interrupted deletion still finds them.
pub const DELETED_CHUNKS: &str = "DeletedChunks";
/// On an event or snapshot item of an aggregate type with a time to live
/// ([`with_expiry`](crate::DynamoEventRepository::with_expiry)): when it
/// expires, in seconds since the epoch (N), DynamoDB's TTL attribute. Every
/// read treats an item past it as gone.
pub const EXPIRES_AT: &str = "ExpiresAt";
/// On a chunk item: the head's key.
pub const CHUNK_OF: &str = "ChunkOf";
/// On a chunk item: its position, from 0.
pub const CHUNK_INDEX: &str = "ChunkIndex";

/// The partition key of an aggregate's events and snapshot, as upstream
/// writes it.
pub fn aggregate_key(aggregate_type: &str, aggregate_id: &str) -> String {
    format!("{aggregate_type}:{aggregate_id}")
}

/// The key of chunk `index` of the snapshot of `{aggregate_type}:{aggregate_id}`.
///
/// Every aggregate key contains a `:`. Chunk keys escape `%`, `:` and `/`
/// in the type and id and so contain no `:` at all: they can never collide
/// with an aggregate's key, whatever its id holds, and distinct
/// (type, id, index) give distinct keys.
pub fn chunk_key(aggregate_type: &str, aggregate_id: &str, index: usize) -> String {
    format!(
        "~chunk/{}/{}/{index}",
        escape(aggregate_type),
        escape(aggregate_id)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// True if `item` is an aggregate's tombstone (it carries
/// [`DELETED_THROUGH`]): not an event, the mark of a deleted aggregate.
pub fn is_tombstone(item: &Item) -> bool {
    item.contains_key(DELETED_THROUGH)
}

#[doc(hidden)]
/// A short description of an item's key, for error messages.
pub fn describe_key(item: &Item) -> String {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        Some(AttributeValue::N(n)) => Some(n.clone()),
        Some(other) => Some(format!("{other:?}")),
        None => None,
    };
    match (
        part(AGGREGATE_TYPE_AND_ID),
        part(AGGREGATE_ID_SEQUENCE),
        part(VIEW_ID),
    ) {
        (Some(key), Some(seq), _) => format!("{key}#{seq}"),
        (Some(key), None, _) => key,
        (None, _, Some(view)) => view,
        _ => "<item without key>".to_string(),
    }
}

#[doc(hidden)]
/// Reads a string attribute.
pub fn get_s<'a>(item: &'a Item, key: &str, name: &'static str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        Some(_) => Err(invalid(key, name, "a string")),
        None => Err(missing(key, name)),
    }
}

#[doc(hidden)]
/// Reads a number attribute as `T`.
pub fn get_n<T: FromStr>(item: &Item, key: &str, name: &'static str) -> Result<T> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| invalid(key, name, "a non-negative integer in range")),
        Some(_) => Err(invalid(key, name, "a number")),
        None => Err(missing(key, name)),
    }
}

#[doc(hidden)]
/// Reads a binary attribute.
pub fn get_b<'a>(item: &'a Item, key: &str, name: &'static str) -> Result<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(b)) => Ok(b.as_ref()),
        Some(_) => Err(invalid(key, name, "a binary value")),
        None => Err(missing(key, name)),
    }
}

fn missing(key: &str, attribute: &'static str) -> Error {
    Error::MissingAttribute {
        key: key.to_string(),
        attribute,
    }
}

fn invalid(key: &str, attribute: &'static str, expected: &'static str) -> Error {
    Error::InvalidAttribute {
        key: key.to_string(),
        attribute,
        expected,
    }
}

#[doc(hidden)]
/// Decodes a binary payload attribute with `codec`, naming the item on error.
pub fn get_payload(
    item: &Item,
    key: &str,
    name: &'static str,
    codec: &Codec,
) -> Result<serde_json::Value> {
    let bytes = get_b(item, key, name)?;
    codec.decode(bytes).map_err(|err| err.in_item(key, name))
}

#[doc(hidden)]
/// A string attribute value.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

#[doc(hidden)]
/// A number attribute value.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[doc(hidden)]
/// A binary attribute value.
pub fn b(bytes: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(bytes))
}

#[doc(hidden)]
/// The bytes of an event before and after the codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PayloadBytes {
    /// Payload and metadata as plain JSON.
    pub plain: usize,
    /// Payload and metadata as stored.
    pub stored: usize,
}

impl std::ops::AddAssign for PayloadBytes {
    fn add_assign(&mut self, other: Self) {
        self.plain += other.plain;
        self.stored += other.stored;
    }
}

#[doc(hidden)]
/// Builds the item for one event, encoding payload and metadata with `codec`.
pub fn event_to_item(event: &SerializedEvent, codec: &Codec) -> Result<(Item, PayloadBytes)> {
    let name = |attribute: &'static str| {
        let key = aggregate_key(&event.aggregate_type, &event.aggregate_id);
        move || format!("event {} ({attribute}) of {key}", event.sequence)
    };
    let payload = codec
        .encode(&event.payload)
        .map_err(|err| err.naming_payload(name("payload")))?;
    let metadata = codec
        .encode(&event.metadata)
        .map_err(|err| err.naming_payload(name("metadata")))?;
    let plain = plain_json_len(&event.payload) + plain_json_len(&event.metadata);
    let bytes = PayloadBytes {
        plain,
        stored: payload.len() + metadata.len(),
    };
    let item = Item::from([
        (
            AGGREGATE_TYPE_AND_ID.to_string(),
            s(aggregate_key(&event.aggregate_type, &event.aggregate_id)),
        ),
        (AGGREGATE_ID_SEQUENCE.to_string(), n(event.sequence)),
        (AGGREGATE_TYPE.to_string(), s(&event.aggregate_type)),
        (AGGREGATE_ID.to_string(), s(&event.aggregate_id)),
        (EVENT_TYPE.to_string(), s(&event.event_type)),
        (EVENT_VERSION.to_string(), s(&event.event_version)),
        (PAYLOAD.to_string(), b(payload)),
        (METADATA.to_string(), b(metadata)),
    ]);
    Ok((item, bytes))
}

#[doc(hidden)]
/// The length of `value` as compact JSON, without allocating it.
pub fn plain_json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
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

#[doc(hidden)]
/// Reads an event item back, decoding its payloads in whatever format they
/// are stored.
pub fn item_to_event(item: &Item, codec: &Codec) -> Result<SerializedEvent> {
    // The key only names the item in an error: formatting it for every
    // event read cost about 2% of a load of 1,000 events (callgrind), so
    // it is built when a read fails, and the read is repeated with it.
    read_event(item, codec, "").or_else(|_| read_event(item, codec, &describe_key(item)))
}

/// [`item_to_event`], naming the item `key` in errors.
fn read_event(item: &Item, codec: &Codec, key: &str) -> Result<SerializedEvent> {
    Ok(SerializedEvent {
        aggregate_id: get_s(item, key, AGGREGATE_ID)?.to_string(),
        sequence: get_n(item, key, AGGREGATE_ID_SEQUENCE)?,
        aggregate_type: get_s(item, key, AGGREGATE_TYPE)?.to_string(),
        event_type: get_s(item, key, EVENT_TYPE)?.to_string(),
        event_version: get_s(item, key, EVENT_VERSION)?.to_string(),
        payload: get_payload(item, key, PAYLOAD, codec)?,
        metadata: get_payload(item, key, METADATA, codec)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn event() -> SerializedEvent {
        SerializedEvent {
            aggregate_id: "a:b/c%".into(),
            sequence: 7,
            aggregate_type: "Order".into(),
            event_type: "Placed".into(),
            event_version: "1.0".into(),
            payload: json!({"Placed": {"total": 12}}),
            metadata: json!({"user": "x"}),
        }
    }

    #[test]
    fn events_round_trip_with_upstream_attributes() {
        let (item, bytes) = event_to_item(&event(), &Codec::json()).unwrap();
        assert_eq!(item[AGGREGATE_TYPE_AND_ID], s("Order:a:b/c%"));
        assert_eq!(item[AGGREGATE_ID_SEQUENCE], n(7));
        assert_eq!(
            get_b(&item, "k", PAYLOAD).unwrap(),
            br#"{"Placed":{"total":12}}"#
        );
        assert_eq!(bytes.plain, bytes.stored);
        assert_eq!(item_to_event(&item, &Codec::json()).unwrap(), event());
    }

    #[test]
    fn broken_items_name_key_and_attribute() {
        let (mut item, _) = event_to_item(&event(), &Codec::json()).unwrap();
        item.remove(EVENT_TYPE);
        let err = item_to_event(&item, &Codec::json()).unwrap_err();
        assert!(
            matches!(&err, Error::MissingAttribute { key, attribute: "EventType" } if key == "Order:a:b/c%#7"),
            "{err}"
        );

        for (attribute, value) in [
            (AGGREGATE_ID_SEQUENCE, n("seven")),
            (PAYLOAD, s("not binary")),
        ] {
            let (mut item, _) = event_to_item(&event(), &Codec::json()).unwrap();
            item.insert(attribute.into(), value);
            let err = item_to_event(&item, &Codec::json()).unwrap_err();
            assert!(
                matches!(err, Error::InvalidAttribute { attribute: a, .. } if a == attribute),
                "{err}"
            );
        }

        let (mut item, _) = event_to_item(&event(), &Codec::json()).unwrap();
        item.insert(METADATA.into(), b(vec![0xC1, 0x42, 1]));
        let err = item_to_event(&item, &Codec::json()).unwrap_err();
        assert!(
            matches!(&err, Error::Item { key, attribute: "Metadata", .. } if key == "Order:a:b/c%#7"),
            "{err}"
        );
    }

    #[test]
    fn chunk_keys_never_look_like_aggregate_keys() {
        for (t, id) in [
            ("Order", "1"),
            ("Order", "x:y"),
            ("A:B", "/0/1"),
            ("Order", "%3A"),
        ] {
            let key = chunk_key(t, id, 3);
            assert!(!key.contains(':'), "{key}");
        }
        assert_ne!(chunk_key("Order", "a/1", 2), chunk_key("Order", "a", 12));
        assert_ne!(chunk_key("Order", "%3A", 0), chunk_key("Order", ":", 0));
    }

    #[test]
    fn plain_json_len_matches_to_vec() {
        let v = json!({"a": [1, 2.5, "ü"], "b": null});
        assert_eq!(plain_json_len(&v), serde_json::to_vec(&v).unwrap().len());
    }
}
