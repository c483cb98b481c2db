//! zstd dictionaries: dictionary-compressed events read back equal on every
//! read path, unknown or corrupt dictionaries are typed errors, and a table
//! mixing plain and dictionary payloads under two dictionaries reads back.
#![cfg(feature = "compression")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod dictionary_support;
mod projection_common;

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, EventStore};
use dictionary_support::*;
use dynamo_es::dictionary::{self, DictionaryStore, TrainOptions};
use dynamo_es::item::{item_to_event, Item, AGGREGATE_TYPE_AND_ID, PAYLOAD};
use dynamo_es::size::item_size;
use dynamo_es::testing::scan_all;
use dynamo_es::{Codec, DynamoStore, Error};

/// The events stored under `key`, as items.
async fn items_of(db: &dynamo_es::testing::TestTables, key: &str) -> Vec<Item> {
    let mut items: Vec<Item> = scan_all(&db.client, &db.events)
        .await
        .unwrap()
        .into_iter()
        .filter(|item| {
            matches!(item.get(AGGREGATE_TYPE_AND_ID), Some(aws_sdk_dynamodb::types::AttributeValue::S(k)) if k == key)
        })
        .collect();
    items.sort_by_key(|item| item_to_event(item, &Codec::json()).map(|e| e.sequence).ok());
    items
}

/// Every event `stream` yields, as serialized events.
async fn streamed<A: Aggregate<Event = OrderEvent>>(
    mut stream: cqrs_es::persist::ReplayStream,
    expected: &[SerializedEvent],
) -> Vec<SerializedEvent> {
    let mut out = Vec::new();
    while let Some(envelope) = common::next_within_bound::<A>(&mut stream).await {
        let envelope = envelope.unwrap();
        let event_type = expected
            .iter()
            .find(|e| e.aggregate_id == envelope.aggregate_id && e.sequence == envelope.sequence)
            .map(|e| e.event_type.clone())
            .unwrap_or_default();
        out.push(as_serialized(&envelope, &event_type));
    }
    out.sort_by(|a, b| (&a.aggregate_id, a.sequence).cmp(&(&b.aggregate_id, b.sequence)));
    out
}

#[tokio::test]
async fn dictionary_events_read_back_equal_on_every_read_path() {
    let db = common::tables().await;
    let trained = seeded_and_trained::<Order>(&db, 1000, 1).await;
    let id = trained.dictionary.id();
    assert_eq!(trained.savings.events, 100, "{}", trained.savings);
    assert!(trained.savings.ratio() >= 2.5, "{}", trained.savings);

    // 50 fixture events never trained on, written with the dictionary.
    let writer = writer::<Order>(&db, &trained.dictionary);
    let fixture = events(Order::TYPE, "fixture", 1, 50, 1_000_000);
    commit::<Order>(&writer, &fixture).await;
    let stored = items_of(&db, "Order:fixture").await;
    assert_eq!(stored.len(), 50);
    for item in &stored {
        assert_eq!(dictionaries_of(item)[0], Some(id), "{item:?}");
    }

    // The same events as plain JSON, for sizes.
    let plain_repo = db.repository().with_codec(Codec::json());
    commit::<Order>(&plain_repo, &events(Order::TYPE, "plain", 1, 50, 1_000_000)).await;
    let plain = items_of(&db, "Order:plain").await;
    let payload_bytes = |items: &[Item]| -> usize {
        items
            .iter()
            .map(|item| {
                ["Payload", "Metadata"]
                    .iter()
                    .map(|a| dynamo_es::item::get_b(item, "k", a).unwrap().len())
                    .sum::<usize>()
            })
            .sum()
    };
    let (plain_bytes, dict_bytes) = (payload_bytes(&plain), payload_bytes(&stored));
    let plain_items: usize = plain.iter().map(item_size).sum();
    let dict_items: usize = stored.iter().map(item_size).sum();
    println!(
        "payloads: {plain_bytes} plain, {dict_bytes} with dictionary; items: {plain_items} plain, {dict_items} with dictionary"
    );
    assert!(
        plain_bytes * 10 >= dict_bytes * 25,
        "{plain_bytes} vs {dict_bytes}"
    );

    // A fresh reader (its own cache): every path, one dictionary load.
    let reader = db.repository().with_codec(Codec::json());
    assert!(reader.dictionary_cache().is_empty());
    assert_eq!(
        reader.get_events::<Order>("fixture").await.unwrap(),
        fixture
    );
    assert_eq!(reader.dictionary_cache().ids(), vec![id]);
    assert_eq!(
        reader
            .get_last_events::<Order>("fixture", 40)
            .await
            .unwrap(),
        fixture[40..]
    );
    let fresh = db.repository().with_codec(Codec::json());
    let stream = fresh.stream_events::<Order>("fixture").await.unwrap();
    assert_eq!(streamed::<Order>(stream, &fixture).await, fixture);
    assert_eq!(fresh.dictionary_cache().ids(), vec![id]);
    for segments in [1, 3] {
        let fresh = db.repository().with_scan_segments(segments);
        let all = fresh.stream_all_events::<Order>().await.unwrap();
        let all = streamed::<Order>(all, &fixture).await;
        let replayed: Vec<_> = all
            .into_iter()
            .filter(|e| e.aggregate_id == "fixture")
            .collect();
        assert_eq!(replayed, fixture, "{segments} segments");
    }
    // A load (the store's tail read), on a clone sharing the cache.
    let fresh = db.repository();
    let store = DynamoStore::<Order>::new(fresh.clone(), dynamo_es::SnapshotPolicy::Never);
    let context = store.load_aggregate("fixture").await.unwrap();
    assert_eq!(context.aggregate.applied, 50);
    assert_eq!(fresh.dictionary_cache().ids(), vec![id]);

    // The projections' decoding: item_to_event with a repository's codec.
    for (item, event) in stored.iter().zip(&fixture) {
        assert_eq!(&item_to_event(item, fresh.codec()).unwrap(), event);
    }
}

#[tokio::test]
async fn unknown_or_corrupt_dictionaries_are_typed_errors_naming_id_and_item() {
    let source = common::tables().await;
    let trained = seeded_and_trained::<Order>(&source, 300, 7).await;
    let id = trained.dictionary.id();

    // Events written with it into tables whose snapshots table lacks it.
    let db = common::tables().await;
    let writer = writer::<Order>(&db, &trained.dictionary);
    commit::<Order>(&writer, &events(Order::TYPE, "x", 1, 3, 5)).await;

    let reader = db.repository();
    let err = reader.get_events::<Order>("x").await.unwrap_err();
    match common::typed(&err) {
        Error::Item {
            key,
            attribute: "Payload",
            source,
        } => {
            assert_eq!(key, "Order:x#1");
            assert!(
                matches!(&**source, Error::Dictionary(e) if **e == dictionary::Error::NotFound { id, table: db.snapshots.clone() }),
                "{source}"
            );
        }
        other => panic!("{other}"),
    }
    let stream = reader.stream_events::<Order>("x").await.unwrap();
    let mut stream = stream;
    let (events_read, err) = common::drain::<Order>(&mut stream).await;
    assert_eq!(events_read, 0);
    assert!(err
        .unwrap()
        .to_string()
        .contains(&format!("dictionary {id}")));

    // A codec with no cache at all: NotLoaded, naming the id.
    let item = &items_of(&db, "Order:x").await[0];
    let err = item_to_event(item, &Codec::json()).unwrap_err();
    assert!(
        matches!(&err, Error::Item { source, .. } if matches!(&**source, Error::Dictionary(e) if **e == dictionary::Error::NotLoaded { id })),
        "{err}"
    );

    // A damaged dictionary item: Corrupt, naming the id; never garbage.
    let mut stored = common::items_by_key(&source.client, &source.snapshots)
        .await
        .remove(&dictionary::dictionary_key(id))
        .unwrap();
    let Some(aws_sdk_dynamodb::types::AttributeValue::B(bytes)) = stored.get("DictionaryBytes")
    else {
        panic!("no bytes");
    };
    let mut bytes = bytes.clone().into_inner();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    stored.insert("DictionaryBytes".into(), dynamo_es::item::b(bytes));
    common::put(&db, &db.snapshots, stored).await;
    let err = db.repository().get_events::<Order>("x").await.unwrap_err();
    assert!(
        matches!(common::typed(&err), Error::Item { source, .. } if matches!(&**source, Error::Dictionary(e) if matches!(**e, dictionary::Error::Corrupt { id: i, .. } if i == id))),
        "{}",
        common::typed(&err)
    );
}

#[tokio::test]
async fn a_table_mixing_plain_and_two_dictionaries_reads_back() {
    let db = common::tables().await;
    seed_training::<Order>(&db, 400, 11).await;
    seed_training::<Payment>(&db, 400, 5_000).await;
    let orders = trained::<Order>(&db).await.dictionary;
    let payments = trained::<Payment>(&db).await.dictionary;
    assert_ne!(orders.id(), payments.id());

    let plain = db.repository().with_codec(Codec::json());
    let compressed = db
        .repository()
        .with_codec(Codec::json().compressed(3).with_min_compress_size(0));
    let both = db
        .repository()
        .with_codec(Codec::json())
        .with_dictionary(Order::TYPE, orders.clone())
        .with_dictionary(Payment::TYPE, payments.clone());
    // One Order aggregate written in turn plain, zstd, with its dictionary;
    // Payment under its own.
    let order = events(Order::TYPE, "mixed", 1, 30, 90_000);
    commit::<Order>(&plain, &order[..10]).await;
    commit::<Order>(&both, &order[10..20]).await;
    commit::<Order>(&compressed, &order[20..25]).await;
    commit::<Order>(&both, &order[25..]).await;
    let payment = events(Payment::TYPE, "mixed", 1, 20, 95_000);
    commit::<Payment>(&both, &payment[..10]).await;
    commit::<Payment>(&plain, &payment[10..]).await;

    let ids: Vec<_> = items_of(&db, "Order:mixed")
        .await
        .iter()
        .map(|item| dictionaries_of(item)[0])
        .collect();
    assert_eq!(ids.iter().filter(|i| **i == Some(orders.id())).count(), 15);
    // Ten plain JSON, five zstd without a dictionary.
    assert_eq!(ids.iter().filter(|i| i.is_none()).count(), 15);
    let ids: Vec<_> = items_of(&db, "Payment:mixed")
        .await
        .iter()
        .map(|item| dictionaries_of(item)[0])
        .collect();
    assert_eq!(
        ids.iter().filter(|i| **i == Some(payments.id())).count(),
        10
    );

    let reader = db.repository();
    assert_eq!(reader.get_events::<Order>("mixed").await.unwrap(), order);
    assert_eq!(
        reader.get_events::<Payment>("mixed").await.unwrap(),
        payment
    );
    let mut loaded = vec![orders.id(), payments.id()];
    loaded.sort_unstable();
    assert_eq!(reader.dictionary_cache().ids(), loaded);
    let all = db.repository().with_scan_segments(2);
    let replayed =
        streamed::<Payment>(all.stream_all_events::<Payment>().await.unwrap(), &payment).await;
    assert_eq!(
        replayed
            .into_iter()
            .filter(|e| e.aggregate_id == "mixed")
            .collect::<Vec<_>>(),
        payment
    );

    // Listing shows both, with what they were trained on.
    let listed = DictionaryStore::new(db.client.clone(), &db.snapshots)
        .list()
        .await
        .unwrap();
    let mut listed_ids: Vec<_> = listed.iter().map(|d| d.id).collect();
    listed_ids.sort_unstable();
    assert_eq!(listed_ids, loaded);
    assert!(listed
        .iter()
        .all(|d| d.sample.events == 360 && d.sample.table == db.events));
}

#[tokio::test]
async fn a_dictionary_is_never_overwritten_and_collisions_get_new_ids() {
    let db = common::tables().await;
    let events: Vec<_> = events(Order::TYPE, "t", 1, 200, 3);
    let store = DictionaryStore::new(db.client.clone(), &db.snapshots);
    let options = TrainOptions::default().with_size(4096);
    let candidate = dictionary::train(Order::TYPE, &db.events, &events, &options).unwrap();
    let first = store.put(candidate.clone()).await.unwrap();
    // The same dictionary again (a retried put): the stored one.
    let again = store.put(candidate).await.unwrap();
    assert_eq!(again.id(), first.id());
    // Another dictionary with the same id in its header: another id.
    let other = dictionary::train(Payment::TYPE, &db.events, &events, &options).unwrap();
    let moved = store.put(other).await.unwrap();
    assert_ne!(moved.id(), first.id());
    assert_eq!(
        store.get(first.id()).await.unwrap().aggregate_type(),
        Order::TYPE
    );
    assert_eq!(
        store.get(moved.id()).await.unwrap().aggregate_type(),
        Payment::TYPE
    );
    assert_eq!(store.list().await.unwrap().len(), 2);
    // Payloads written with the re-id'd dictionary name its new id.
    let codec = Codec::json().with_dictionary(&moved);
    let bytes = codec.encode(&events[0].payload).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_dict_id_from_frame(&bytes).map(|i| i.get()),
        Some(moved.id())
    );
    assert_eq!(codec.decode(&bytes).unwrap(), events[0].payload);
    // A level set after the dictionary keeps it, and reads back.
    let at_19 = Codec::json().with_dictionary(&moved).compressed(19);
    assert_eq!(at_19.dictionary().map(|d| d.id()), Some(moved.id()));
    let bytes_19 = at_19.encode(&events[0].payload).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_dict_id_from_frame(&bytes_19).map(|i| i.get()),
        Some(moved.id())
    );
    assert_eq!(codec.decode(&bytes_19).unwrap(), events[0].payload);
    assert!(at_19.is_native(&bytes_19) && !Codec::json().compressed(19).is_native(&bytes_19));
    // Decoding bounds still hold with a dictionary.
    let small = Codec::json()
        .with_dictionary(&moved)
        .with_max_decoded_size(10);
    assert!(matches!(
        small.decode(&bytes),
        Err(Error::DecodedTooLarge { max: 10, .. })
    ));
    let _ = PAYLOAD;
}

#[tokio::test]
async fn the_projections_decoder_reads_dictionary_events_once_prefetched() {
    let (db, arn) = projection_common::stream_tables().await;
    let dictionary = seeded_and_trained::<Order>(&db, 300, 40).await.dictionary;
    let writer = writer::<Order>(&db, &dictionary);
    let fixture = events(Order::TYPE, "projected", 1, 20, 123_456);
    commit::<Order>(&writer, &fixture).await;

    let records: Vec<_> = projection_common::change_records(&arn)
        .await
        .into_iter()
        .filter(|r| {
            r.new_image.as_ref().is_some_and(|image| {
                dynamo_es::item::describe_key(image).starts_with("Order:projected#")
            })
        })
        .collect();
    assert_eq!(records.len(), 20);
    // A reader process: the repository's codec and dictionary store, its
    // cache still empty.
    let reader = db.repository();
    let decoder = dynamo_es::projection::EventDecoder::<Order>::from_repository(&reader);
    let err = decoder.decode(&records[0]).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("dictionary {} is not loaded", dictionary.id())),
        "{err}"
    );
    // What the projections' dispatcher calls before decoding a batch.
    decoder.prefetch(&records).await.unwrap();
    assert_eq!(reader.dictionary_cache().ids(), vec![dictionary.id()]);
    for (record, event) in records.iter().zip(&fixture) {
        let envelope = decoder.decode(record).unwrap().unwrap();
        assert_eq!(&as_serialized(&envelope, &event.event_type), event);
    }
    // The dispatcher does it itself, on a fresh reader.
    let fresh = dynamo_es::projection::EventDecoder::<Order>::from_repository(&db.repository());
    let report = dynamo_es::projection::Dispatcher::new(fresh)
        .dispatch(&records)
        .await
        .unwrap();
    assert_eq!((report.events, report.skipped.len()), (20, 0));
}

#[tokio::test]
async fn a_dictionary_is_loaded_once_per_process_and_plain_reads_pay_nothing() {
    let db = common::tables().await;
    let dictionary = seeded_and_trained::<Order>(&db, 200, 61).await.dictionary;
    commit::<Order>(
        &writer::<Order>(&db, &dictionary),
        &events(Order::TYPE, "d", 1, 5, 9),
    )
    .await;

    let meter = dynamo_es::testing::costs::Meter::new();
    let reader = dynamo_es::DynamoEventRepository::new(meter.client(&db.client))
        .with_tables(&db.events, &db.snapshots);
    // Plain events (with dictionary events elsewhere in the table): one
    // query, nothing else.
    let (read, costs) = meter.measure(reader.get_events::<Order>("train-3")).await;
    assert_eq!(read.unwrap().len(), 10);
    assert_eq!(costs.operations, ["Query"]);
    // The first read of dictionary events loads the dictionary once.
    let (read, costs) = meter.measure(reader.get_events::<Order>("d")).await;
    assert_eq!(read.unwrap().len(), 5);
    assert_eq!(costs.operations, ["Query", "GetItem"]);
    // Then no clone of the repository loads it again, on any path.
    let clone = reader.clone();
    let (read, costs) = meter.measure(clone.get_events::<Order>("d")).await;
    assert_eq!(read.unwrap().len(), 5);
    assert_eq!(costs.operations, ["Query"]);
    let (loaded, costs) = meter
        .measure(
            DynamoStore::<Order>::new(clone, dynamo_es::SnapshotPolicy::Never).load_aggregate("d"),
        )
        .await;
    assert_eq!(loaded.unwrap().aggregate.applied, 5);
    assert!(
        costs.operations.iter().all(|op| op != "GetItem"),
        "{:?}",
        costs.operations
    );
}
