//! zstd dictionaries belong to their table: a payload is only ever decoded
//! with the dictionary of its own table's id (never with another table's
//! dictionary of the same id, which would decode it to another value),
//! and every snapshot read path fetches the dictionaries it needs, so a
//! fresh process reads snapshots written with a dictionary.
#![cfg(feature = "compression")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod dictionary_support;

use aws_sdk_dynamodb::types::AttributeValue;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate, CqrsFramework, EventStore};
use dictionary_support::*;
use dynamo_es::dictionary::{self, DictionaryStore, TrainOptions};
use dynamo_es::item::{aggregate_key, b, s, Item, PAYLOAD};
use dynamo_es::testing::costs::Meter;
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoEventRepository, DynamoStore, Error, SnapshotPolicy};
use serde_json::{json, Value};

use common::{Account, AccountCommand};

/// A priced event whose currency is `CHF` or `EUR`.
fn priced(id: &str, sequence: usize, seed: u64) -> SerializedEvent {
    let currency = if seed.is_multiple_of(2) { "CHF" } else { "EUR" };
    SerializedEvent::new(
        id.to_string(),
        sequence,
        Order::TYPE.to_string(),
        "Priced".to_string(),
        "1.0".to_string(),
        json!({
            "event_type": "Priced",
            "amount": seed * 7 % 1000,
            "currency": currency,
            "account": format!("acct-{}", seed % 13),
        }),
        json!({"user": format!("user-{}", seed % 5)}),
    )
}

/// `bytes` with every `"CHF"` and `"EUR"` swapped: a valid dictionary of
/// the same id and size that decodes a frame of the original to another
/// value.
fn swap_currencies(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut swapped = 0;
    let mut i = 0;
    while i + 5 <= out.len() {
        let window = &out[i..i + 5];
        let other: Option<&[u8; 5]> = match window {
            b"\"CHF\"" => Some(b"\"EUR\""),
            b"\"EUR\"" => Some(b"\"CHF\""),
            _ => None,
        };
        if let Some(other) = other {
            out[i..i + 5].copy_from_slice(other);
            swapped += 1;
            i += 5;
        } else {
            i += 1;
        }
    }
    assert!(swapped > 0, "the dictionary holds no currency code");
    out
}

/// Stores in `to`'s snapshots table a dictionary with the id of `from`'s
/// dictionary `id`, its currency codes swapped (hash recomputed: a whole,
/// valid item).
async fn store_swapped(from: &TestTables, to: &TestTables, id: u32) {
    let mut item: Item = common::items_by_key(&from.client, &from.snapshots)
        .await
        .remove(&dictionary::dictionary_key(id))
        .unwrap();
    let Some(AttributeValue::B(bytes)) = item.get("DictionaryBytes") else {
        panic!("no dictionary bytes");
    };
    let swapped = swap_currencies(bytes.as_ref());
    item.insert(
        "DictionaryHash".into(),
        s(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&swapped))),
    );
    item.insert("DictionaryBytes".into(), b(swapped));
    common::put(to, &to.snapshots, item).await;
}

#[tokio::test]
async fn a_payload_never_decodes_with_another_tables_dictionary_of_the_same_id() {
    // Two tenants' tables, each with a dictionary of the same id: the
    // same content but for two currency codes swapped.
    let a = common::tables().await;
    let b = common::tables().await;
    let sample: Vec<_> = (0..300).map(|n| priced("t", n + 1, n as u64)).collect();
    let options = TrainOptions::default().with_size(4096);
    let candidate = dictionary::train(Order::TYPE, &a.events, &sample, &options).unwrap();
    let dict_a = DictionaryStore::new(a.client.clone(), &a.snapshots)
        .put(candidate)
        .await
        .unwrap();
    let id = dict_a.id();
    store_swapped(&a, &b, id).await;
    let dict_b = DictionaryStore::new(b.client.clone(), &b.snapshots)
        .get(id)
        .await
        .unwrap();
    assert_eq!(dict_b.id(), id);
    assert_ne!(dict_b.bytes(), dict_a.bytes());

    // Each tenant stores a CHF event with its own table's dictionary.
    let chf = priced("x", 1, 0);
    assert_eq!(chf.payload["currency"], "CHF");
    for (db, dictionary) in [(&a, &dict_a), (&b, &dict_b)] {
        commit::<Order>(&writer::<Order>(db, dictionary), std::slice::from_ref(&chf)).await;
    }
    let frame_a = common::items_by_key(&a.client, &a.events)
        .await
        .remove(&format!("{}#1", aggregate_key(Order::TYPE, "x")))
        .unwrap();
    assert_eq!(frame_dictionary(&frame_a, PAYLOAD), Some(id));

    // One process, one repository and its clones for both tenants: each
    // reads its own value, whichever table's dictionary it loaded first.
    let reader = DynamoEventRepository::new(a.client.clone()).with_tables(&b.events, &b.snapshots);
    let read_b = reader.get_events::<Order>("x").await.unwrap();
    assert_eq!(read_b[0].payload, chf.payload);
    let on_a = reader.clone().with_tables(&a.events, &a.snapshots);
    let read_a = on_a.get_events::<Order>("x").await.unwrap();
    assert_eq!(read_a[0].payload["currency"], "CHF", "tenant a's event");
    assert_eq!(read_a[0].payload, chf.payload);

    // A repository writing with tenant a's dictionary, moved onto tenant
    // b's tables, reads b's event with b's dictionary.
    let moved = writer::<Order>(&a, &dict_a).with_tables(&b.events, &b.snapshots);
    let read = moved.get_events::<Order>("x").await.unwrap();
    assert_eq!(read[0].payload, chf.payload);
    let streamed =
        common::drain::<Order>(&mut moved.stream_events::<Order>("x").await.unwrap()).await;
    assert_eq!((streamed.0, streamed.1.is_none()), (1, true));

    // A frame decoded with the wrong dictionary of its id, by hand: a
    // typed error, never another value.
    let Some(AttributeValue::B(bytes)) = frame_a.get(PAYLOAD) else {
        panic!("no payload");
    };
    let wrong = Codec::json().with_dictionary(&dict_b);
    match wrong.decode(bytes.as_ref()) {
        Ok(value) => panic!("decoded with another table's dictionary to {value}"),
        Err(Error::Dictionary(err)) => {
            assert!(
                matches!(*err, dictionary::Error::Mismatch { id: i, ref table } if i == id && *table == b.snapshots),
                "{err}"
            );
        }
        Err(other) => panic!("not a dictionary error: {other}"),
    }
    // And with the right one, the value.
    let right: Value = Codec::json()
        .with_dictionary(&dict_a)
        .decode(bytes.as_ref())
        .unwrap();
    assert_eq!(right, chf.payload);
}

/// A repository on `db` writing every payload (events and snapshots) with
/// `dictionary`.
fn dictionary_codec_repo(
    db: &TestTables,
    dictionary: &dynamo_es::dictionary::Dictionary,
) -> DynamoEventRepository {
    db.repository()
        .with_codec(Codec::json().with_dictionary(dictionary))
}

/// The snapshot item of `Account:id`, which must exist.
async fn snapshot_item(db: &TestTables, id: &str) -> Item {
    common::items_by_key(&db.client, &db.snapshots)
        .await
        .remove(&aggregate_key(Account::TYPE, id))
        .expect("a snapshot")
}

/// A note long enough that every snapshot holding it compresses.
fn long_note() -> String {
    "CHF 100 to account 7, ".repeat(20)
}

/// Tables holding a trained `Order` dictionary.
async fn tables_with_dictionary(seed: u64) -> (TestTables, dynamo_es::dictionary::Dictionary) {
    let db = common::tables().await;
    let dictionary = seeded_and_trained::<Order>(&db, 200, seed).await.dictionary;
    (db, dictionary)
}

/// Runs a long note, then nine deposits, on `id` through `cqrs`, and
/// asserts the snapshot of `id` is framed with `dictionary`.
async fn note_then_nine_deposits<ES: EventStore<Account>>(
    cqrs: &CqrsFramework<Account, ES>,
    db: &TestTables,
    id: &str,
    dictionary: &dynamo_es::dictionary::Dictionary,
) {
    cqrs.execute(id, AccountCommand::note(long_note()))
        .await
        .unwrap();
    cqrs.execute(id, AccountCommand::deposit(1, 9))
        .await
        .unwrap();
    let head = snapshot_item(db, id).await;
    assert_eq!(frame_dictionary(&head, PAYLOAD), Some(dictionary.id()));
}

/// A fresh process's repository on `db`: a new client metered by `meter`,
/// no dictionary given.
fn fresh_repository(meter: &Meter, db: &TestTables) -> DynamoEventRepository {
    DynamoEventRepository::new(meter.client(&db.client)).with_tables(&db.events, &db.snapshots)
}

#[tokio::test]
async fn a_fresh_persisted_event_store_reads_snapshots_written_with_a_dictionary() {
    let (db, dictionary) = tables_with_dictionary(77).await;
    // cqrs-es's PersistedEventStore, snapshotting every command.
    let writer = dictionary_codec_repo(&db, &dictionary);
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Account>::new_snapshot_store(writer.clone(), 1),
        vec![],
        (),
    );
    note_then_nine_deposits(&cqrs, &db, "p", &dictionary).await;
    // A fresh process: a new client and repository, no dictionary given.
    let meter = Meter::new();
    let fresh = fresh_repository(&meter, &db);
    let snapshot = fresh.get_snapshot::<Account>("p").await.unwrap().unwrap();
    assert_eq!(snapshot.current_sequence, 10);
    let store = PersistedEventStore::<_, Account>::new_snapshot_store(fresh.clone(), 1);
    let (loaded, costs) = meter.measure(store.load_aggregate("p")).await;
    // The state the writer's process loads (cqrs-es 0.5 builds its
    // snapshots applying events twice: compare with the same store).
    let same_process = PersistedEventStore::<_, Account>::new_snapshot_store(writer, 1)
        .load_aggregate("p")
        .await
        .unwrap();
    assert_eq!(loaded.unwrap().aggregate, same_process.aggregate);
    // The snapshot, then the events after it: the dictionary is cached.
    assert_eq!(
        costs.operations,
        ["GetItem", "Query"],
        "{:?}",
        costs.operations
    );
}

#[tokio::test]
async fn a_fresh_dynamo_store_uses_snapshots_written_with_a_dictionary() {
    let (db, dictionary) = tables_with_dictionary(78).await;
    let expected = Account {
        total: 9,
        applied: 10,
        notes: vec![long_note()],
    };
    // DynamoStore, snapshotting every commit.
    let cqrs = common::cqrs::<Account>(
        dictionary_codec_repo(&db, &dictionary),
        SnapshotPolicy::Always,
    );
    note_then_nine_deposits(&cqrs, &db, "d", &dictionary).await;
    let meter = Meter::new();
    let store = DynamoStore::<Account>::new(fresh_repository(&meter, &db), SnapshotPolicy::Always);
    let (loaded, costs) = meter.measure(store.load_aggregate("d")).await;
    assert_eq!(loaded.unwrap().aggregate, expected);
    // The snapshot (and its dictionary, once), current: no query of the
    // events at all.
    let queries = costs.operations.iter().filter(|op| *op == "Query").count();
    assert_eq!(queries, 0, "{:?}", costs.operations);
    assert_eq!(
        costs
            .operations
            .iter()
            .filter(|op| *op == "GetItem")
            .count(),
        2,
        "{:?}",
        costs.operations
    );
}

/// Dictionaries kept by the caller, not by a `DictionaryCache`: the codec
/// decodes with whatever `DictionarySource` it is handed.
#[derive(Debug)]
struct Held(Vec<dynamo_es::dictionary::Dictionary>, String);

impl dynamo_es::codec::DictionarySource for Held {
    fn table(&self) -> &str {
        &self.1
    }

    fn dictionary(&self, id: u32) -> Option<dynamo_es::dictionary::Dictionary> {
        self.0.iter().find(|d| d.id() == id).cloned()
    }
}

#[tokio::test]
async fn a_codec_decodes_with_the_dictionaries_it_is_handed_and_reads_no_table() {
    let (db, dictionary) = tables_with_dictionary(5).await;
    let value = json!({"amount": 42, "currency": "CHF", "account": "acct-3", "note": long_note()});
    let frame = Codec::json()
        .with_dictionary(&dictionary)
        .encode(&value)
        .unwrap();

    // Handed the dictionary of its table: decodes, with no request made.
    let reader =
        Codec::json().with_dictionaries(Held(vec![dictionary.clone()], db.snapshots.clone()));
    assert_eq!(reader.dictionary_table(), Some(db.snapshots.as_str()));
    assert_eq!(reader.decode(&frame).unwrap(), value);

    // Handed none: not loaded, never another value.
    let empty = Codec::json().with_dictionaries(Held(Vec::new(), db.snapshots.clone()));
    match empty.decode(&frame) {
        Err(Error::Dictionary(err)) => assert!(
            matches!(*err, dictionary::Error::NotLoaded { id } if id == dictionary.id()),
            "{err}"
        ),
        other => panic!("expected NotLoaded, got {other:?}"),
    }
}
