//! Stream records read from the emulator's DynamoDB Stream decode into the
//! events a load returns: every codec, upstream-written items, upcasters;
//! other records are skipped and broken event items are typed errors naming
//! their key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projection_common;

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope, EventStore};
use dynamo_es::item::{self, b, event_to_item, n, s, Item};
use dynamo_es::projection::{ChangeKind, ChangeRecord, Error, EventDecoder};
use dynamo_es::testing::codecs_at_levels;
use dynamo_es::{Codec, DynamoStore, SnapshotPolicy};
use projection_common::{change_records, stream_tables};
use serde_json::json;

type Seen = (String, usize, AccountEvent, HashMap<String, String>);

fn seen(event: EventEnvelope<Account>) -> Seen {
    (
        event.aggregate_id,
        event.sequence,
        event.payload,
        event.metadata,
    )
}

fn decode_all(decoder: &EventDecoder<Account>, records: &[ChangeRecord]) -> Vec<Seen> {
    records
        .iter()
        .filter_map(|record| decoder.decode(record).unwrap())
        .map(seen)
        .collect()
}

#[tokio::test]
async fn events_committed_with_every_codec_decode_as_the_store_loads_them() {
    let (db, arn) = stream_tables().await;
    let codecs = codecs_at_levels(&[1, 19]);
    let mut ids = Vec::new();
    for codec in &codecs {
        let repo = db.repository().with_codec(codec.clone());
        let cqrs = cqrs::<Account>(repo, SnapshotPolicy::Never);
        let id = format!("{}-{}", codec.name(), new_id());
        cqrs.execute(&id, AccountCommand::deposit(3, 2))
            .await
            .unwrap();
        // Long enough to be compressed by the zstd codecs.
        let text: String = (0..3000u32)
            .map(|i| char::from_digit(i * 7 % 36, 36).unwrap())
            .collect();
        cqrs.execute(&id, AccountCommand::note(text)).await.unwrap();
        ids.push((codec.clone(), id));
    }
    let records = change_records(&arn).await;
    assert_eq!(records.len(), 3 * codecs.len());
    assert!(records.iter().all(|r| r.event_name == ChangeKind::Insert));
    assert!(records
        .iter()
        .all(|r| r.created.is_some() && !r.shard_id.is_empty()));

    // The decoder's codec does not matter for reading.
    let decoder = EventDecoder::<Account>::new(Codec::json());
    let decoded = decode_all(&decoder, &records);
    let store = DynamoStore::<Account>::new_event_store(db.repository());
    let mut expected = Vec::new();
    for (codec, id) in &ids {
        let loaded = store.load_events(id).await.unwrap();
        assert_eq!(loaded.len(), 3);
        // The stream carried the codec's own encoding of the payload.
        let record = records
            .iter()
            .find(|r| {
                r.keys[item::AGGREGATE_TYPE_AND_ID] == s(format!("Account:{id}"))
                    && r.keys[item::AGGREGATE_ID_SEQUENCE] == n(3)
            })
            .unwrap();
        let stored = stored_events::<Account>(&db, id).await;
        let image = record.new_image.as_ref().unwrap();
        assert_eq!(
            image[item::PAYLOAD],
            b(codec.encode(&stored[2].payload).unwrap()),
            "{}",
            codec.name()
        );
        expected.extend(loaded.into_iter().map(seen));
    }
    assert_eq!(decoded, expected);
}

#[tokio::test]
async fn events_written_by_upstream_decode() {
    let (db, arn) = stream_tables().await;
    let upstream = upstream_repo(&db);
    let id = new_id();
    let events = deposit_events(&id, 3, 5);
    upstream.persist::<Account>(&events, None).await.unwrap();

    let records = change_records(&arn).await;
    let decoded = decode_all(&EventDecoder::new(Codec::default()), &records);
    let expected: Vec<Seen> = events
        .into_iter()
        .map(|event| seen(event.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, expected);
}

#[tokio::test]
async fn other_types_modifies_removes_and_non_event_items_are_skipped() {
    let (db, arn) = stream_tables().await;
    let id = new_id();
    let account = deposit_event(Account::TYPE, &id, 1, 4);
    let other = deposit_event(Other::TYPE, &id, 1, 4);
    // A type whose name starts with "Account:" must not pass for Account.
    let lookalike = deposit_event("Account:x", &id, 1, 4);
    let repo = db.repository();
    repo.persist::<Account>(std::slice::from_ref(&account), None)
        .await
        .unwrap();
    repo.persist::<Other>(&[other], None).await.unwrap();
    put(
        &db,
        &db.events,
        event_to_item(&lookalike, &Codec::json()).unwrap().0,
    )
    .await;
    let key = || {
        HashMap::from([
            (
                item::AGGREGATE_TYPE_AND_ID.to_string(),
                s(format!("Account:{id}")),
            ),
            (item::AGGREGATE_ID_SEQUENCE.to_string(), n(1)),
        ])
    };
    db.client
        .update_item()
        .table_name(&db.events)
        .set_key(Some(key()))
        .update_expression("SET Extra = :x")
        .expression_attribute_values(":x", s("x"))
        .send()
        .await
        .unwrap();
    db.client
        .delete_item()
        .table_name(&db.events)
        .set_key(Some(key()))
        .send()
        .await
        .unwrap();

    let records = change_records(&arn).await;
    let kinds: Vec<ChangeKind> = records.iter().map(|r| r.event_name).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Insert,
            ChangeKind::Insert,
            ChangeKind::Insert,
            ChangeKind::Modify,
            ChangeKind::Remove
        ]
    );
    let decoder = EventDecoder::<Account>::new(Codec::default());
    assert_eq!(
        decode_all(&decoder, &records),
        [seen(account.clone().try_into().unwrap())]
    );
    let others = decode_all_other(&records);
    assert_eq!(others.len(), 1);

    // An item without the sort key (not an event) is skipped even if it has a type.
    let mut not_event = records[0].clone();
    not_event.keys.remove(item::AGGREGATE_ID_SEQUENCE);
    assert!(decoder.decode(&not_event).unwrap().is_none());
}

fn decode_all_other(records: &[ChangeRecord]) -> Vec<EventEnvelope<Other>> {
    let decoder = EventDecoder::<Other>::new(Codec::default());
    records
        .iter()
        .filter_map(|record| decoder.decode(record).unwrap())
        .collect()
}

/// An item with every attribute type, beside an event item's keys (numbers
/// in canonical form: DynamoDB normalizes them).
fn every_type(id: &str) -> Item {
    let m = HashMap::from([
        ("s".to_string(), s("inner")),
        (
            "l".to_string(),
            AttributeValue::L(vec![n("1.5"), AttributeValue::Null(true)]),
        ),
    ]);
    Item::from([
        (
            item::AGGREGATE_TYPE_AND_ID.to_string(),
            s(format!("Other:{id}")),
        ),
        (item::AGGREGATE_ID_SEQUENCE.to_string(), n(1)),
        ("S".to_string(), s("text ü")),
        ("N".to_string(), n("-12.34")),
        ("B".to_string(), b(vec![0, 1, 255])),
        (
            "SS".to_string(),
            AttributeValue::Ss(vec!["a".into(), "b".into()]),
        ),
        (
            "NS".to_string(),
            AttributeValue::Ns(vec!["1".into(), "2000".into()]),
        ),
        (
            "BS".to_string(),
            AttributeValue::Bs(vec![Blob::new(vec![1]), Blob::new(vec![2, 3])]),
        ),
        ("M".to_string(), AttributeValue::M(m)),
        (
            "L".to_string(),
            AttributeValue::L(vec![s("x"), AttributeValue::Bool(false)]),
        ),
        ("BOOL".to_string(), AttributeValue::Bool(true)),
        ("NULL".to_string(), AttributeValue::Null(true)),
    ])
}

#[tokio::test]
async fn images_convert_every_attribute_type() {
    let (db, arn) = stream_tables().await;
    let item = every_type(&new_id());
    put(&db, &db.events, item.clone()).await;
    let records = change_records(&arn).await;
    assert_eq!(records.len(), 1);
    let image = records[0].new_image.clone().unwrap();
    // Sets come back in any order: compare them as sorted lists.
    assert_eq!(normalized(image), normalized(item));
}

fn normalized(item: Item) -> Item {
    item.into_iter()
        .map(|(name, value)| {
            let value = match value {
                AttributeValue::Ss(mut v) => {
                    v.sort();
                    AttributeValue::Ss(v)
                }
                AttributeValue::Ns(mut v) => {
                    v.sort();
                    AttributeValue::Ns(v)
                }
                AttributeValue::Bs(mut v) => {
                    v.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
                    AttributeValue::Bs(v)
                }
                other => other,
            };
            (name, value)
        })
        .collect()
}

#[tokio::test]
async fn broken_event_items_are_errors_naming_their_key() {
    let (db, arn) = stream_tables().await;
    let id = new_id();
    let good = deposit_event(Account::TYPE, &id, 1, 4);
    let (base, _) = event_to_item(&good, &Codec::json()).unwrap();
    let with = |sequence: usize, change: &dyn Fn(&mut Item)| {
        let mut item = base.clone();
        item.insert(item::AGGREGATE_ID_SEQUENCE.into(), n(sequence));
        change(&mut item);
        item
    };
    let broken = [
        // A corrupt payload.
        with(2, &|item| {
            item.insert(item::PAYLOAD.into(), b(vec![0xC1, 0x42, 1]));
        }),
        // A missing attribute (and no type attribute: claimed by its key).
        with(3, &|item| {
            item.remove(item::EVENT_TYPE);
            item.remove(item::AGGREGATE_TYPE);
        }),
        // Valid JSON that is not an AccountEvent.
        with(4, &|item| {
            item.insert(
                item::PAYLOAD.into(),
                b(br#"{"Withdrawn":{"amount":1}}"#.to_vec()),
            );
        }),
    ];
    for item in broken {
        put(&db, &db.events, item).await;
    }
    // A broken item of another type is not Account's concern.
    let mut other = with(5, &|item| {
        item.insert(item::PAYLOAD.into(), b(vec![0xC1, 0x42, 1]));
    });
    other.insert(item::AGGREGATE_TYPE.into(), s(Other::TYPE));
    other.insert(item::AGGREGATE_TYPE_AND_ID.into(), s(format!("Other:{id}")));
    put(&db, &db.events, other).await;

    let records = change_records(&arn).await;
    assert_eq!(records.len(), 4);
    let decoder = EventDecoder::<Account>::new(Codec::default());
    for (record, sequence) in records.iter().take(3).zip(2..) {
        let err = decoder.decode(record).unwrap_err();
        let key = format!("Account:{id}#{sequence}");
        assert!(
            matches!(&err, Error::Decode { key: k, .. } if *k == key),
            "{err:?}"
        );
        assert!(err.to_string().contains(&key), "{err}");
    }
    assert!(decoder.decode(&records[3]).unwrap().is_none());

    // Without a new image (a KEYS_ONLY stream), an event of A is an error.
    let mut keys_only = records[0].clone();
    keys_only.new_image = None;
    let err = decoder.decode(&keys_only).unwrap_err();
    assert!(
        matches!(&err, Error::MissingImage { key, .. } if *key == format!("Account:{id}#2")),
        "{err}"
    );
}

/// Renames `amt` to `amount` in version 0.1 `Deposited` events.
fn rename_amount() -> Box<dyn EventUpcaster> {
    Box::new(SemanticVersionEventUpcaster::new(
        "Deposited",
        "0.2.0",
        Box::new(|mut payload: serde_json::Value| {
            if let Some(amt) = payload["Deposited"]
                .as_object_mut()
                .and_then(|o| o.remove("amt"))
            {
                payload["Deposited"]["amount"] = amt;
            }
            payload
        }),
    ))
}

#[tokio::test]
async fn upcasters_apply_before_deserializing() {
    let (db, arn) = stream_tables().await;
    let id = new_id();
    let old = SerializedEvent {
        event_version: "0.1.0".into(),
        payload: json!({"Deposited": {"amt": 9}}),
        ..deposit_event(Account::TYPE, &id, 1, 0)
    };
    db.repository()
        .persist::<Account>(&[old], None)
        .await
        .unwrap();
    let records = change_records(&arn).await;

    let plain = EventDecoder::<Account>::new(Codec::default());
    assert!(matches!(
        plain.decode(&records[0]),
        Err(Error::Decode { .. })
    ));
    let upcasting = plain.with_upcasters(vec![rename_amount()]);
    let event = upcasting.decode(&records[0]).unwrap().unwrap();
    assert_eq!(event.payload, AccountEvent::Deposited { amount: 9 });
    // The store with the same upcasters loads the same event.
    let store = DynamoStore::<Account>::new_event_store(db.repository())
        .with_upcasters(vec![rename_amount()]);
    let loaded = store.load_events(&id).await.unwrap();
    assert_eq!(seen(loaded.into_iter().next().unwrap()), seen(event));
}

#[test]
fn records_missing_what_every_record_has_are_invalid() {
    use aws_sdk_dynamodbstreams::types::{
        AttributeValue as StreamValue, OperationType, Record, StreamRecord,
    };
    let keys = HashMap::from([
        (
            "AggregateTypeAndId".to_string(),
            StreamValue::S("Account:a".into()),
        ),
        (
            "AggregateIdSequence".to_string(),
            StreamValue::N("1".into()),
        ),
    ]);
    let change = || {
        StreamRecord::builder()
            .sequence_number("000000000000000000101")
            .set_keys(Some(keys.clone()))
    };
    let record = |name: Option<OperationType>, change: Option<StreamRecord>| {
        Record::builder()
            .event_id("e-1")
            .set_event_name(name)
            .set_dynamodb(change)
            .build()
    };
    let valid = ChangeRecord::from_stream(
        "shard-7",
        record(Some(OperationType::Insert), Some(change().build())),
    )
    .unwrap();
    assert_eq!(valid.keys[item::AGGREGATE_ID_SEQUENCE], n(1));
    assert_eq!(valid.new_image, None);

    let cases = [
        (
            record(Some(OperationType::Insert), None),
            "e-1",
            "no `dynamodb` part",
        ),
        (
            record(
                Some(OperationType::Insert),
                Some(StreamRecord::builder().set_keys(Some(keys.clone())).build()),
            ),
            "e-1",
            "no sequence number",
        ),
        (
            record(None, Some(change().build())),
            "000000000000000000101",
            "unknown event name",
        ),
        (
            record(
                Some(OperationType::Insert),
                Some(change().set_keys(None).build()),
            ),
            "000000000000000000101",
            "no keys",
        ),
    ];
    for (record, names, reason) in cases {
        let err = ChangeRecord::from_stream("shard-7", record).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidRecord { .. }), "{text}");
        for part in [names, "shard-7", reason] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }
}
