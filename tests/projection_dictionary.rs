//! Projections read dictionary-compressed events: the dispatcher loads the
//! dictionaries a batch references (once per process, none for plain
//! events) before decoding, on the records the emulator's stream returned
//! and in a rebuild; a dictionary that is not stored is a decode error
//! naming the item key and the dictionary id, under the decode policy.
#![cfg(feature = "compression")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod dictionary_support;
mod projection_collect;
mod projection_common;

use cqrs_es::Aggregate;
use dictionary_support::*;
use dynamo_es::dictionary::{Dictionary, DictionaryStore};
use dynamo_es::item::describe_key;
use dynamo_es::projection::{
    ChangeRecord, CheckpointStore, DecodeErrorPolicy, Dispatcher, Error, EventDecoder, Rebuild,
};
use dynamo_es::testing::costs::Meter;
use dynamo_es::testing::faults::{client_on, quick_retries, short_timeouts, Canned, Scripted};
use dynamo_es::testing::{unique_name, TestTables};
use dynamo_es::{Codec, DynamoEventRepository};
use projection_collect::{missing_dictionary, Collected};
use projection_common::{change_records, stream_tables};

/// A dictionary trained on `db`'s events (stored in its snapshots table).
async fn dictionary(db: &TestTables, seed: u64) -> Dictionary {
    seeded_and_trained::<Order>(db, 300, seed).await.dictionary
}

/// The stream's records of the events of `Order:{aggregate_id}`.
fn records_of<'a>(records: &'a [ChangeRecord], aggregate_id: &str) -> Vec<&'a ChangeRecord> {
    let prefix = format!("Order:{aggregate_id}#");
    records
        .iter()
        .filter(|r| {
            r.new_image
                .as_ref()
                .is_some_and(|image| describe_key(image).starts_with(&prefix))
        })
        .collect()
}

/// A dispatcher decoding as a fresh reader process of `repository` does
/// (empty dictionary cache), projecting into `collected`.
fn dispatcher(repository: &DynamoEventRepository, collected: &Collected) -> Dispatcher<Order> {
    Dispatcher::new(EventDecoder::from_repository(repository)).with_projection(collected.clone())
}

#[tokio::test]
async fn dictionary_events_reach_a_projection_equal_through_the_dispatcher() {
    let (db, arn) = stream_tables().await;
    let dictionary = dictionary(&db, 40).await;
    let writer = writer::<Order>(&db, &dictionary);
    let first = events(Order::TYPE, "projected-1", 1, 20, 123_456);
    let second = events(Order::TYPE, "projected-2", 1, 15, 654_321);
    commit::<Order>(&writer, &first).await;
    commit::<Order>(&writer, &second).await;

    let records = change_records(&arn).await;
    let written = records_of(&records, "projected-1");
    assert_eq!(written.len(), 20);
    // The payloads on the stream are dictionary frames.
    for record in &written {
        let image = record.new_image.as_ref().unwrap();
        assert_eq!(dictionaries_of(image)[0], Some(dictionary.id()));
    }

    // A reader process: the repository's codec, its cache still empty.
    let reader = db.repository();
    assert!(reader.dictionary_cache().is_empty());
    let collected = Collected::default();
    let report = dispatcher(&reader, &collected)
        .dispatch(&records)
        .await
        .unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(collected.of("projected-1"), first);
    assert_eq!(collected.of("projected-2"), second);
    assert_eq!(reader.dictionary_cache().ids(), vec![dictionary.id()]);
    // Every Order event on the stream was projected: training events too.
    assert_eq!(report.events, 300 + 35);

    // A decoder given the store explicitly, on a codec without a cache.
    let explicit = Collected::default();
    let decoder = EventDecoder::new(Codec::json()).with_dictionaries(reader.dictionary_store());
    Dispatcher::new(decoder)
        .with_projection(explicit.clone())
        .dispatch(&records)
        .await
        .unwrap();
    assert_eq!(explicit.of("projected-1"), first);
}

/// The stream of [`missing_dictionary`]'s tables, as change records.
async fn missing_dictionary_records() -> (TestTables, Vec<ChangeRecord>, u32) {
    let (db, arn, id) = missing_dictionary().await;
    let records = change_records(&arn).await;
    assert_eq!(records.len(), 7);
    (db, records, id)
}

#[tokio::test]
async fn a_dictionary_not_stored_stops_the_batch_naming_the_id_and_item() {
    let (db, records, id) = missing_dictionary_records().await;
    let collected = Collected::default();
    let failure = dispatcher(&db.repository(), &collected)
        .with_decode_error_policy(DecodeErrorPolicy::Stop)
        .dispatch(&records)
        .await
        .unwrap_err();
    // The records before it were applied; it is the first not applied.
    assert_eq!(failure.first_failed, 2);
    assert_eq!(collected.of("plain-1").len(), 2);
    assert!(collected.of("dict").is_empty());
    assert!(collected.of("plain-2").is_empty());
    let Error::Decode { key, source } = &failure.error else {
        panic!("{:?}", failure.error);
    };
    assert_eq!(key, "Order:dict#1");
    let message = failure.error.to_string();
    assert!(
        message.contains(&format!(
            "zstd dictionary {id} is not stored in table {}",
            db.snapshots
        )),
        "{message}"
    );
    assert!(
        matches!(source, dynamo_es::Error::Item { .. }),
        "{source:?}"
    );
}

/// A repository on `db` whose requests `meter` counts.
fn metered(db: &TestTables, meter: &Meter) -> DynamoEventRepository {
    DynamoEventRepository::new(meter.client(&db.client)).with_tables(&db.events, &db.snapshots)
}

#[tokio::test]
async fn a_dictionary_not_stored_is_reported_under_skip_and_report() {
    let (db, records, id) = missing_dictionary_records().await;
    let meter = Meter::new();
    let reader = metered(&db, &meter);
    let collected = Collected::default();
    let dispatcher =
        dispatcher(&reader, &collected).with_decode_error_policy(DecodeErrorPolicy::SkipAndReport);
    let (report, costs) = meter.measure(dispatcher.dispatch(&records)).await;
    let report = report.unwrap();
    // The plain events are projected; each dictionary event is reported.
    assert_eq!(report.events, 4);
    assert_eq!(collected.of("plain-1").len(), 2);
    assert_eq!(collected.of("plain-2").len(), 2);
    assert!(collected.of("dict").is_empty());
    let keys: Vec<String> = report
        .skipped
        .iter()
        .map(|err| match err {
            Error::Decode { key, .. } => {
                assert!(
                    err.to_string().contains(&format!("dictionary {id}")),
                    "{err}"
                );
                key.clone()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, ["Order:dict#1", "Order:dict#2", "Order:dict#3"]);
    // The missing dictionary was looked up once for the batch (an eventually
    // consistent GetItem, then a strongly consistent one), not per record.
    assert_eq!(costs.operations, ["GetItem", "GetItem"]);
}

#[tokio::test]
async fn plain_events_make_no_dictionary_request_and_a_dictionary_is_loaded_once() {
    let (db, arn) = stream_tables().await;
    let dictionary = dictionary(&db, 43).await;
    commit::<Order>(
        &db.repository().with_codec(Codec::default()),
        &events(Order::TYPE, "plain", 1, 10, 5),
    )
    .await;
    let records = change_records(&arn).await;
    let meter = Meter::new();
    let reader = metered(&db, &meter);
    let collected = Collected::default();
    let dispatcher = dispatcher(&reader, &collected);

    // 300 training events and 10 plain ones: no request at all.
    let (report, costs) = meter.measure(dispatcher.dispatch(&records)).await;
    assert_eq!(report.unwrap().events, 310);
    assert_eq!(costs.operations, Vec::<String>::new());

    // Dictionary events: one GetItem for the batch, none the next time.
    commit::<Order>(
        &writer::<Order>(&db, &dictionary),
        &events(Order::TYPE, "dict", 1, 10, 6),
    )
    .await;
    let records = change_records(&arn).await;
    let dict: Vec<ChangeRecord> = records_of(&records, "dict").into_iter().cloned().collect();
    assert_eq!(dict.len(), 10);
    let (report, costs) = meter.measure(dispatcher.dispatch(&dict)).await;
    assert_eq!(report.unwrap().events, 10);
    assert_eq!(costs.operations, ["GetItem"]);
    let (report, costs) = meter.measure(dispatcher.dispatch(&dict)).await;
    assert_eq!(report.unwrap().events, 10);
    assert_eq!(costs.operations, Vec::<String>::new());
    assert_eq!(collected.of("dict").len(), 20);
}

#[tokio::test]
async fn a_rebuild_projects_dictionary_events_equal() {
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    let dictionary = dictionary(&db, 44).await;
    let fixture = events(Order::TYPE, "rebuilt", 1, 25, 999);
    commit::<Order>(&writer::<Order>(&db, &dictionary), &fixture).await;

    let table = unique_name("checkpoints");
    dynamo_es::tables::create_checkpoint_table(&db.client, &table)
        .await
        .unwrap();
    let checkpoints = CheckpointStore::new(db.client.clone(), &table, "orders");
    let collected = Collected::default();
    let report = Rebuild::new(
        db.client.clone(),
        &db.events,
        checkpoints,
        dispatcher(&db.repository(), &collected),
    )
    .with_segments(2)
    .run()
    .await
    .unwrap();
    assert_eq!(report.progress.events, 300 + 25);
    assert_eq!(collected.of("rebuilt"), fixture);
}

#[tokio::test]
async fn a_failed_dictionary_read_fails_the_batch_whatever_the_policy() {
    let (db, arn) = stream_tables().await;
    let dictionary = dictionary(&db, 45).await;
    commit::<Order>(
        &writer::<Order>(&db, &dictionary),
        &events(Order::TYPE, "throttled", 1, 3, 8),
    )
    .await;
    let records = change_records(&arn).await;

    // The dictionary's GetItem is throttled on every attempt.
    let http = Scripted::replying([Canned::throughput_exceeded(), Canned::throughput_exceeded()]);
    let client = client_on(http.clone(), quick_retries(2), short_timeouts());
    let decoder = EventDecoder::new(Codec::json())
        .with_dictionaries(DictionaryStore::new(client, &db.snapshots));
    let collected = Collected::default();
    let failure = Dispatcher::new(decoder)
        .with_projection(collected.clone())
        .with_decode_error_policy(DecodeErrorPolicy::SkipAndReport)
        .dispatch(&records)
        .await
        .unwrap_err();
    // Not a decode error to skip: nothing is applied, the batch is retried.
    assert_eq!(failure.first_failed, 0);
    assert!(
        matches!(failure.error, Error::Store(_)),
        "{:?}",
        failure.error
    );
    assert_eq!(http.operations(), ["GetItem"; 2]);
    assert!(collected.of("throttled").is_empty());
    assert!(collected.of("train-0").is_empty());
}
