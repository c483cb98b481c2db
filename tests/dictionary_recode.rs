//! Moving existing events onto a zstd dictionary and back, with the
//! library's `Recoder` and with the `dynamo-es` binary (train → recode →
//! report), on the embedded emulator: lossless, conditional, and only the
//! events of the dictionary's aggregate type.
#![cfg(feature = "compression")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod dictionary_support;

use std::collections::BTreeMap;

#[cfg(feature = "cli")]
use common::cli;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use dictionary_support::*;
use dynamo_es::dictionary::DictionaryStore;
use dynamo_es::item::{describe_key, Item};
use dynamo_es::recode::{RecodeOptions, Recoder, Table};
use dynamo_es::testing::{scan_all, TestTables};
use dynamo_es::Codec;

/// Every item of `table`, by key.
async fn by_key(db: &TestTables, table: &str) -> BTreeMap<String, Item> {
    scan_all(&db.client, table)
        .await
        .unwrap()
        .into_iter()
        .map(|item| (describe_key(&item), item))
        .collect()
}

/// 600 `Order` events (ten per aggregate) and 50 `Payment` events, plain.
async fn seeded() -> TestTables {
    let db = common::tables().await;
    seed_training::<Order>(&db, 600, 21).await;
    let repo = db.repository().with_codec(Codec::json());
    commit::<Payment>(&repo, &events(Payment::TYPE, "p", 1, 50, 77)).await;
    db
}

fn count_with(items: &BTreeMap<String, Item>, id: Option<u32>) -> usize {
    items
        .values()
        .filter(|item| dictionaries_of(item)[0] == id)
        .count()
}

#[tokio::test]
async fn recode_onto_a_dictionary_then_back_to_plain_json_leaves_every_event_equal() {
    let db = seeded().await;
    let store = DictionaryStore::new(db.client.clone(), &db.snapshots);
    let dictionary = trained::<Order>(&db).await.dictionary;
    let id = dictionary.id();
    let original = by_key(&db, &db.events).await;
    let snapshots_before = by_key(&db, &db.snapshots).await;
    assert_eq!(snapshots_before.len(), 1, "the dictionary item");

    let onto = Recoder::new(db.client.clone(), Codec::json())
        .with_dictionary_store(store.clone())
        .with_dictionary(dictionary.clone());
    assert_eq!(onto.target_name(), format!("json+dictionary-{id}(Order)"));
    let tables = db.recode_tables();
    let report = onto.report(&tables).await.unwrap();
    let events = &report.tables[0].counts;
    assert_eq!(events.items_scanned, 650);
    assert_eq!(events.items_recoded, 600, "every Order event shrinks");
    assert_eq!(events.items_unreadable + events.items_not_convertible, 0);
    assert!(
        events.bytes_before >= events.bytes_after * 17 / 10,
        "{events:?}"
    );
    assert_eq!(
        report.tables[1].counts.items_scanned, 0,
        "dictionary items are no snapshots"
    );
    assert_eq!(
        by_key(&db, &db.events).await,
        original,
        "a report writes nothing"
    );

    let ran = onto.run(&tables).await.unwrap();
    assert_eq!(ran.tables[0].counts.items_recoded, 600);
    let moved = by_key(&db, &db.events).await;
    assert_eq!(count_with(&moved, Some(id)), 600);
    assert_eq!(
        count_with(&moved, None),
        50,
        "Payment events keep plain JSON"
    );
    assert_eq!(by_key(&db, &db.snapshots).await, snapshots_before);
    // Every event reads back equal, through a fresh repository.
    let reader = db.repository();
    for n in [0, 17, 59] {
        let id = format!("train-{n}");
        let expected: Vec<_> = original
            .values()
            .filter(|item| describe_key(item).starts_with(&format!("Order:{id}#")))
            .map(|item| dynamo_es::item::item_to_event(item, &Codec::json()).unwrap())
            .collect();
        let mut read = reader.get_events::<Order>(&id).await.unwrap();
        read.sort_by_key(|e| e.sequence);
        let mut expected = expected;
        expected.sort_by_key(|e| e.sequence);
        assert_eq!(read, expected);
    }
    // Again: nothing left to do.
    let again = onto.report(&tables).await.unwrap();
    assert_eq!(again.tables[0].counts.items_recoded, 0);

    // Back to plain JSON: larger, so only with allow_growth.
    let back = Recoder::new(db.client.clone(), Codec::json()).with_dictionary_store(store.clone());
    let refused = back.report(&tables).await.unwrap();
    assert_eq!(refused.tables[0].counts.items_other_format, 600);
    let back = back.with_options(RecodeOptions::default().with_allow_growth(true));
    let ran = back.run(&tables).await.unwrap();
    assert_eq!(ran.tables[0].counts.items_recoded, 600);
    assert_eq!(by_key(&db, &db.events).await, original, "byte for byte");

    // Without the dictionaries table, dictionary payloads are unreadable,
    // counted and left alone.
    onto.run(&tables).await.unwrap();
    let blind = Recoder::new(db.client.clone(), Codec::json())
        .with_options(RecodeOptions::default().with_allow_growth(true));
    let report = blind.run(&[Table::events(&db.events)]).await.unwrap();
    assert_eq!(report.tables[0].counts.items_unreadable, 600);
    assert_eq!(count_with(&by_key(&db, &db.events).await, Some(id)), 600);

    // To upstream: plain JSON, whatever dictionary it is given.
    let upstream = Recoder::to_upstream(db.client.clone())
        .with_dictionary_store(store)
        .with_dictionary(dictionary);
    assert_eq!(upstream.target_name(), "upstream");
    let ran = upstream.run(&[Table::events(&db.events)]).await.unwrap();
    assert_eq!(ran.tables[0].counts.items_recoded, 600);
    assert_eq!(by_key(&db, &db.events).await, original);
}

#[cfg(feature = "cli")]
/// The report a `--json` run of the binary prints.
async fn json_report(args: &[&str]) -> dynamo_es::recode::Report {
    serde_json::from_str(&stdout(&cli(args).await)).unwrap()
}

#[cfg(feature = "cli")]
fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The arguments of `dynamo-es <verb>` of the events table `events` with
/// the `json` codec and `options`, printing JSON without progress.
#[cfg(feature = "cli")]
fn to_json<'a>(verb: &'a str, events: &'a str, options: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![verb, "--events-table", events, "--codec", "json"];
    args.extend_from_slice(options);
    args.extend(["--no-progress", "--json"]);
    args
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn cli_train_then_recode_then_report() {
    let db = seeded().await;
    let original = by_key(&db, &db.events).await;
    let (events, snapshots) = (db.events.as_str(), db.snapshots.as_str());

    let out = stdout(
        &cli(&[
            "dictionary",
            "train",
            "--events-table",
            events,
            "--snapshots-table",
            snapshots,
            "--aggregate-type",
            "Order",
            "--sample",
            "500",
            "--size",
            "8192",
        ])
        .await,
    );
    let id: u32 = out
        .split_whitespace()
        .nth(2)
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.contains("trained on 450 events"), "{out}");
    assert!(out.contains("50 held-out events"), "{out}");
    let listed = stdout(&cli(&["dictionary", "list", "--snapshots-table", snapshots]).await);
    assert!(
        listed.contains(&id.to_string()) && listed.contains("1 dictionaries"),
        "{listed}"
    );
    let stored = DictionaryStore::new(db.client.clone(), snapshots)
        .get(id)
        .await
        .unwrap();
    assert_eq!(stored.info().size, 8192);

    let id_arg = id.to_string();
    let recode = to_json(
        "recode",
        events,
        &["--snapshots-table", snapshots, "--dictionary", &id_arg],
    );
    let report = json_report(&recode).await;
    assert_eq!(report.tables[0].counts.items_recoded, 600);
    assert_eq!(report.tables[1].counts.items_scanned, 0);
    let moved = by_key(&db, &db.events).await;
    assert_eq!(count_with(&moved, Some(id)), 600);

    let report_args = to_json(
        "report",
        events,
        &["--dictionaries-table", snapshots, "--dictionary", &id_arg],
    );
    let report = json_report(&report_args).await;
    let counts = &report.tables[0].counts;
    assert_eq!(
        (counts.items_recoded, counts.items_unreadable),
        (0, 0),
        "{counts:?}"
    );

    // Every event reads back equal; then back to plain JSON, byte for byte.
    let reader = db.repository();
    let read = reader.get_events::<Order>("train-3").await.unwrap();
    assert_eq!(read.len(), 10);
    let back = to_json(
        "recode",
        events,
        &["--dictionaries-table", snapshots, "--allow-growth"],
    );
    let report = json_report(&back).await;
    assert_eq!(report.tables[0].counts.items_recoded, 600);
    assert_eq!(by_key(&db, &db.events).await, original);
}
