//! Recode on the embedded emulator: tables written by upstream `dynamo-es`,
//! by our JSON codec (snapshots over 400 KB in chunks) and by a tool that
//! pretty-prints JSON are moved to the target codec without changing what
//! any aggregate or view loads, safely against concurrent writers, and
//! resumably.
//!
//! The target is `json+zstd-3` with `compression`, else `msgpack` with
//! `msgpack`, else plain JSON. A payload already in the format the target
//! writes is never re-serialized, only (by a zstd target) compressed when it
//! is at least 1 KB: so the pretty-printed items a test needs rewritten are
//! over 1 KB and compressible, and a plain JSON target rewrites nothing here.
//! Tests whose point is a rewrite run only with `compression` or `msgpack`;
//! the others assert, under default features, that nothing is rewritten.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent, ViewContext, ViewRepository};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use dynamo_es::codec::DEFAULT_MIN_COMPRESS_SIZE;
use dynamo_es::item::{chunk_key, describe_key, Item};
use dynamo_es::recode::{
    RecodeOptions, Recoder, Report, StopHandle, Table, TableKind, TableReport,
};
use dynamo_es::size::MAX_ITEM_SIZE;
use dynamo_es::testing::fixtures::ledger_snapshot;
use dynamo_es::testing::{unique_name, TestTables};
use dynamo_es::{Codec, DynamoEventRepository, DynamoStore};
use serde_json::{json, Value};
use upstream_dynamo_es as upstream;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

/// Realistic, compressible text without quotes (so JSON does not escape it).
fn text(len: usize, seed: u64) -> String {
    let ledger = serde_json::to_string(&ledger_snapshot(len, seed))
        .unwrap()
        .replace('"', "'");
    ledger.chars().take(len).collect()
}

/// What was written, by kind.
#[derive(Debug, Clone, Default)]
struct Seeded {
    accounts: Vec<String>,
    ledgers: Vec<String>,
    views: Vec<String>,
}

/// Fills the tables. Ids are fixed, so two calls on two sets of tables
/// produce identical items.
async fn seed(db: &TestTables, big: bool) -> Seeded {
    let mut seeded = Seeded::default();

    // Upstream dynamo-es: events, small snapshots and views.
    let up = upstream::DynamoEventRepository::new(db.client.clone())
        .with_tables(&db.events, &db.snapshots);
    let up_views =
        upstream::DynamoViewRepository::<AccountView, Account>::new(&db.views, db.client.clone());
    for k in 0..3i64 {
        let id = format!("upstream-{k}");
        let events: Vec<_> = (1..=3)
            .map(|s| deposit_event(Account::TYPE, &id, s, 5 * k))
            .collect();
        let state = Account {
            total: 15 * k,
            applied: 3,
            notes: vec![format!("upstream {k}")],
        };
        up.persist::<Account>(
            &events,
            Some((id.clone(), serde_json::to_value(state).unwrap(), 1)),
        )
        .await
        .unwrap();
        let view = AccountView {
            deposits: 3,
            total: 15 * k,
            last_sequence: 3,
        };
        up_views
            .update_view(view, ViewContext::new(id.clone(), 0))
            .await
            .unwrap();
        seeded.accounts.push(id.clone());
        seeded.views.push(id);
    }

    // Our JSON codec through DynamoStore: snapshots of mixed sizes, the
    // large ones chunked.
    let repo = db.repository().with_codec(Codec::json());
    let store = DynamoStore::<Account>::new_aggregate_store(repo.clone());
    let notes: Vec<Vec<usize>> = if big {
        vec![
            vec![1_000],
            vec![50_000],
            vec![150_000, 150_000],
            vec![250_000, 250_000],
            vec![250_000; 5],
        ]
    } else {
        vec![vec![2_000], vec![240_000, 240_000]]
    };
    for (k, lens) in notes.iter().enumerate() {
        let id = format!("ours-{k}");
        for (j, len) in lens.iter().enumerate() {
            let context = store.load_aggregate(&id).await.unwrap();
            let events = vec![
                AccountEvent::Noted {
                    text: text(*len, (k * 10 + j) as u64),
                },
                AccountEvent::Deposited { amount: 1 },
            ];
            let metadata = HashMap::from([("user".to_string(), format!("user-{k}"))]);
            store.commit(events, context, metadata).await.unwrap();
        }
        seeded.accounts.push(id);
    }

    // Raw JSON snapshots of another aggregate type.
    let ledgers: &[usize] = if big { &[20_000, 600_000] } else { &[20_000] };
    for (k, size) in ledgers.iter().enumerate() {
        let id = format!("ledger-{k}");
        let value = ledger_snapshot(*size, 100 + k as u64);
        repo.persist::<Other>(
            &[deposit_event(Other::TYPE, &id, 1, 1)],
            Some((id.clone(), value, 1)),
        )
        .await
        .unwrap();
        seeded.ledgers.push(id);
    }

    // Pretty-printed JSON from some other tool: small events (under 1 KB,
    // so a zstd target leaves them), a view with a wide indent and a single
    // snapshot carrying an extra attribute (both over 1 KB), and a chunked
    // snapshot whose compressed or MessagePack form fits in one item.
    let id = "pretty-0";
    let key = format!("Account:{id}");
    for seq in 1..=3 {
        let item = Item::from([
            ("AggregateTypeAndId".into(), s(&key)),
            ("AggregateIdSequence".into(), n(seq)),
            ("AggregateType".into(), s("Account")),
            ("AggregateId".into(), s(id)),
            ("EventType".into(), s("Deposited")),
            ("EventVersion".into(), s("1.0")),
            (
                "Payload".into(),
                b(serde_json::to_vec_pretty(&json!({"Deposited": {"amount": 7}})).unwrap()),
            ),
            (
                "Metadata".into(),
                b(
                    serde_json::to_vec_pretty(&json!({"user": "pretty", "seq": seq.to_string()}))
                        .unwrap(),
                ),
            ),
        ]);
        put(db, &db.events, item).await;
    }
    let state = Account {
        total: 21,
        applied: 3,
        notes: vec!["pretty".into(); 100],
    };
    let payload = serde_json::to_vec_pretty(&state).unwrap();
    assert!(
        payload.len() > DEFAULT_MIN_COMPRESS_SIZE,
        "{}",
        payload.len()
    );
    let head = Item::from([
        ("AggregateTypeAndId".into(), s(&key)),
        ("AggregateType".into(), s("Account")),
        ("AggregateId".into(), s(id)),
        ("CurrentSequence".into(), n(3)),
        ("CurrentSnapshot".into(), n(1)),
        ("Payload".into(), b(payload)),
        ("ExpiresAt".into(), n(1_999_999_999u64)),
    ]);
    put(db, &db.snapshots, head).await;
    let view = AccountView {
        deposits: 3,
        total: 21,
        last_sequence: 3,
    };
    let view_item = Item::from([
        ("ViewId".into(), s(id)),
        ("ViewVersion".into(), n(2)),
        ("Payload".into(), b(pretty_wide(&view))),
    ]);
    put(db, &db.views, view_item).await;
    seeded.accounts.push(id.to_string());
    seeded.views.push(id.to_string());

    let ledger_id = "pretty-ledger";
    let pretty = serde_json::to_vec_pretty(&ledger_snapshot(300_000, 7)).unwrap();
    assert!(
        pretty.len() > MAX_ITEM_SIZE,
        "the pretty ledger must need chunks: {}",
        pretty.len()
    );
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&pretty));
    let parts: Vec<&[u8]> = pretty.chunks(300_000).collect();
    for (index, part) in parts.iter().enumerate() {
        let chunk = Item::from([
            (
                "AggregateTypeAndId".into(),
                s(&chunk_key(Other::TYPE, ledger_id, index)),
            ),
            ("ChunkOf".into(), s(&format!("Other:{ledger_id}"))),
            ("ChunkIndex".into(), n(index)),
            ("PayloadHash".into(), s(&hash)),
            ("Payload".into(), b(part.to_vec())),
        ]);
        put(db, &db.snapshots, chunk).await;
    }
    let head = Item::from([
        (
            "AggregateTypeAndId".into(),
            s(&format!("Other:{ledger_id}")),
        ),
        ("AggregateType".into(), s("Other")),
        ("AggregateId".into(), s(ledger_id)),
        ("CurrentSequence".into(), n(1)),
        ("CurrentSnapshot".into(), n(1)),
        ("PayloadChunks".into(), n(parts.len())),
        ("PayloadSize".into(), n(pretty.len())),
        ("PayloadHash".into(), s(&hash)),
    ]);
    put(db, &db.snapshots, head).await;
    seeded.ledgers.push(ledger_id.to_string());
    seeded
}

/// Everything the application can load.
#[derive(Debug, Default, PartialEq)]
struct Loaded {
    events: Vec<Vec<SerializedEvent>>,
    snapshots: Vec<Option<(Value, usize, usize)>>,
    aggregates: Vec<Account>,
    views: Vec<Option<AccountView>>,
}

impl Loaded {
    /// Adds the events and the snapshot stored for `id`, as an `A`.
    async fn push_stored<A: Aggregate>(&mut self, repo: &DynamoEventRepository, id: &str) {
        self.events.push(repo.get_events::<A>(id).await.unwrap());
        let snapshot = repo.get_snapshot::<A>(id).await.unwrap();
        self.snapshots
            .push(snapshot.map(|s| (s.aggregate, s.current_sequence, s.current_snapshot)));
    }
}

async fn load_everything(db: &TestTables, seeded: &Seeded) -> Loaded {
    let repo = db.repository();
    let store = DynamoStore::<Account>::new_aggregate_store(repo.clone());
    let mut loaded = Loaded::default();
    for id in &seeded.accounts {
        loaded.push_stored::<Account>(&repo, id).await;
        loaded
            .aggregates
            .push(store.load_aggregate(id).await.unwrap().aggregate);
    }
    for id in &seeded.ledgers {
        loaded.push_stored::<Other>(&repo, id).await;
    }
    let views = db.view_repository::<AccountView, Account>();
    for id in &seeded.views {
        loaded.views.push(views.load(id).await.unwrap());
    }
    loaded
}

/// Every item of every table, by key.
async fn scan_tables(db: &TestTables) -> Vec<BTreeMap<String, Item>> {
    let mut all = Vec::new();
    for table in db.recode_tables() {
        all.push(items_by_key(&db.client, &table.name).await);
    }
    all
}

fn heads(items: &BTreeMap<String, Item>) -> impl Iterator<Item = &Item> {
    items.values().filter(|item| !item.contains_key("ChunkOf"))
}

fn chunked_heads(items: &BTreeMap<String, Item>) -> u64 {
    heads(items)
        .filter(|item| !item.contains_key("Payload"))
        .count() as u64
}

/// How many snapshot heads are chunked, and how many chunk items there are.
fn chunking(items: &BTreeMap<String, Item>) -> (u64, u64) {
    let chunks = items
        .values()
        .filter(|item| item.contains_key("ChunkOf"))
        .count();
    (chunked_heads(items), chunks as u64)
}

/// A report with the table name blanked, to compare runs on two table sets.
fn anonymous(report: &TableReport) -> Value {
    let mut value = serde_json::to_value(report).unwrap();
    value["table"] = json!("");
    value
}

#[tokio::test]
async fn recode_keeps_every_state_and_the_report_matches_the_tables() {
    let db = tables().await;
    let seeded = seed(&db, true).await;
    let loaded_before = load_everything(&db, &seeded).await;
    let before = scan_tables(&db).await;
    let snapshots_before = &before[1];
    assert!(
        chunked_heads(snapshots_before) >= 4,
        "mixed sizes, some chunked"
    );

    let tables = db.recode_tables();
    let recoder = Recoder::new(db.client.clone(), target())
        .with_options(RecodeOptions::default().with_segments(3).with_page_size(5));

    // The dry run measures exactly what is stored, and writes nothing.
    let dry = recoder.report(&tables).await.unwrap();
    assert!(dry.complete);
    assert_eq!(scan_tables(&db).await, before, "a dry run writes nothing");
    for (report, items) in dry.tables.iter().zip(&before) {
        assert!(report.dry_run && report.complete, "{report:?}");
        assert_eq!(report.codec, target().name());
        assert_eq!(
            report.counts.bytes_before,
            bytes(items.values()),
            "{}",
            report.table
        );
        if rewrites() {
            assert!(report.counts.items_recoded > 0, "{report:?}");
            assert!(
                report.counts.bytes_after < report.counts.bytes_before,
                "{report:?}"
            );
        } else {
            // Every payload here is JSON already: nothing to rewrite.
            assert_eq!(report.counts.items_recoded, 0, "{report:?}");
            assert_eq!(
                report.counts.bytes_after, report.counts.bytes_before,
                "{report:?}"
            );
        }
        assert_eq!(
            report.counts.items_scanned,
            report.counts.items_recoded + report.counts.items_skipped,
            "{report:?}"
        );
        assert!(
            report.counts.wcu_per_rewrite_after <= report.counts.wcu_per_rewrite_before,
            "{report:?}"
        );
        assert!(
            report.counts.rcu_per_load_after <= report.counts.rcu_per_load_before,
            "{report:?}"
        );
    }
    assert_eq!(dry.tables[0].counts.items_scanned, before[0].len() as u64);
    assert_eq!(
        dry.tables[1].counts.items_scanned,
        heads(snapshots_before).count() as u64
    );
    let counts = dry.tables[1].counts;
    assert_eq!(
        (counts.chunked_before, counts.chunk_items_before),
        chunking(snapshots_before)
    );
    if rewrites() {
        // The pretty chunked ledger, compressed or in MessagePack.
        assert!(dry.tables[1].counts.newly_fit >= 1, "{:?}", dry.tables[1]);
    } else {
        assert_eq!(dry.tables[1].counts.newly_fit, 0, "{:?}", dry.tables[1]);
    }
    let text = dry.to_string();
    println!("{text}");
    assert!(
        text.contains(&db.snapshots) && text.contains("total") && text.contains("newly fit"),
        "{text}"
    );

    // The recode does what the dry run said, and the tables say so too.
    let done = recoder.run(&tables).await.unwrap();
    assert!(done.complete);
    let after = scan_tables(&db).await;
    for ((report, dry), (items_before, items_after)) in done
        .tables
        .iter()
        .zip(&dry.tables)
        .zip(before.iter().zip(&after))
    {
        assert!(!report.dry_run);
        assert_eq!(
            report.counts.bytes_before,
            bytes(items_before.values()),
            "{}",
            report.table
        );
        assert_eq!(
            report.counts.bytes_after,
            bytes(items_after.values()),
            "{}",
            report.table
        );
        assert_eq!(
            report.counts.bytes_after, dry.counts.bytes_after,
            "{}",
            report.table
        );
        assert_eq!(
            report.counts.items_recoded, dry.counts.items_recoded,
            "{}",
            report.table
        );
        assert_eq!(
            (
                report.counts.conflicts_skipped,
                report.counts.items_unreadable
            ),
            (0, 0)
        );
    }
    let snapshots_after = &after[1];
    let counts = done.tables[1].counts;
    assert_eq!(
        (counts.chunked_after, counts.chunk_items_after),
        chunking(snapshots_after)
    );
    assert_eq!(
        done.tables[1].counts.newly_fit,
        done.tables[1].counts.chunked_before - done.tables[1].counts.chunked_after
    );
    assert_eq!(
        after[0].len(),
        before[0].len(),
        "events are rewritten in place"
    );

    // Every aggregate, snapshot and view loads exactly as before.
    assert_eq!(load_everything(&db, &seeded).await, loaded_before);
    // Versions, sequences and foreign attributes are kept.
    for head in heads(snapshots_before) {
        let key = describe_key(head);
        let new = &snapshots_after[&key];
        for name in [
            "CurrentSnapshot",
            "CurrentSequence",
            "AggregateType",
            "AggregateId",
        ] {
            assert_eq!(new.get(name), head.get(name), "{key} {name}");
        }
    }
    // The pretty snapshot is rewritten (its foreign attribute kept) by every
    // target but plain JSON, which leaves it, like every JSON payload, as it is.
    let pretty_payload =
        |items: &BTreeMap<String, Item>| items["Account:pretty-0"]["Payload"].clone();
    assert_eq!(
        pretty_payload(snapshots_after) != pretty_payload(snapshots_before),
        rewrites()
    );
    assert_eq!(
        snapshots_after["Account:pretty-0"]["ExpiresAt"],
        n(1_999_999_999u64)
    );
    for (key, view) in &before[2] {
        assert_eq!(after[2][key]["ViewVersion"], view["ViewVersion"]);
    }
    #[cfg(feature = "compression")]
    {
        let zstd = |items: &BTreeMap<String, Item>| {
            items.values().filter(|i| matches!(i.get("Payload"), Some(AttributeValue::B(p)) if p.as_ref().starts_with(&[0x28, 0xB5, 0x2F, 0xFD]))).count()
        };
        assert!(zstd(snapshots_after) >= 4, "large snapshots are compressed");
    }
    if !rewrites() {
        assert_eq!(
            after, before,
            "a plain JSON target rewrites no JSON payload"
        );
        // Plain JSON stays readable by upstream.
        let up = upstream::DynamoEventRepository::new(db.client.clone())
            .with_tables(&db.events, &db.snapshots);
        let snapshot = up
            .get_snapshot::<Account>("pretty-0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            snapshot.aggregate,
            loaded_before.snapshots[seeded.accounts.len() - 1]
                .clone()
                .unwrap()
                .0
        );
    }

    // A second run changes nothing.
    let again = recoder.run(&tables).await.unwrap();
    assert_eq!(scan_tables(&db).await, after);
    for (report, items) in again.tables.iter().zip(&after) {
        assert_eq!(report.counts.items_recoded, 0, "{report:?}");
        assert_eq!(report.counts.items_skipped, report.counts.items_scanned);
        assert_eq!(
            (report.counts.bytes_before, report.counts.bytes_after),
            (bytes(items.values()), bytes(items.values()))
        );
        assert_eq!(report.counts.recode_wcu, 0);
    }
}

#[tokio::test]
async fn recode_while_commits_continue_loses_no_commit() {
    let db = tables().await;
    let repo = db.repository().with_codec(Codec::json());
    let store = Arc::new(DynamoStore::<Account>::new_aggregate_store(repo.clone()));
    let ids: Vec<String> = (0..4).map(|k| format!("busy-{k}")).collect();
    let mut expected: HashMap<String, usize> = HashMap::new();
    for (k, id) in ids.iter().enumerate() {
        // Some large (chunked) snapshots, some small.
        let len = if k % 2 == 0 { 200_000 } else { 3_000 };
        for j in 0..3 {
            let context = store.load_aggregate(id).await.unwrap();
            let events = vec![AccountEvent::Noted {
                text: text(len, (k * 3 + j) as u64),
            }];
            store.commit(events, context, no_metadata()).await.unwrap();
        }
        expected.insert(id.clone(), 3);
    }

    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, ids, acknowledged) = (store.clone(), ids.clone(), acknowledged.clone());
        tokio::spawn(async move {
            let mut counts = HashMap::new();
            for round in 0..12i64 {
                for id in &ids {
                    loop {
                        let context = store.load_aggregate(id).await.unwrap();
                        let events = vec![
                            AccountEvent::Deposited { amount: round },
                            AccountEvent::Noted {
                                text: format!("r{round}"),
                            },
                        ];
                        match store.commit(events, context, no_metadata()).await {
                            Ok(_) => break,
                            Err(AggregateError::AggregateConflict) => continue,
                            Err(err) => panic!("commit failed: {err:?}"),
                        }
                    }
                    *counts.entry(id.clone()).or_insert(0usize) += 2;
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
            }
            counts
        })
    };

    let tables = [Table::snapshots(&db.snapshots), Table::events(&db.events)];
    let recoder = Recoder::new(db.client.clone(), target())
        .with_options(RecodeOptions::default().with_segments(2).with_page_size(2));
    let mut runs = 0;
    let mut recoded = 0;
    while !writer.is_finished() {
        let report = recoder.run(&tables).await.unwrap();
        assert!(report.complete);
        recoded += report
            .tables
            .iter()
            .map(|t| t.counts.items_recoded)
            .sum::<u64>();
        runs += 1;
    }
    let counts = writer.await.unwrap();
    let last = recoder.run(&tables).await.unwrap();
    recoded += last
        .tables
        .iter()
        .map(|t| t.counts.items_recoded)
        .sum::<u64>();
    assert_eq!(acknowledged.load(Ordering::SeqCst), 12 * 4);
    println!("{runs} recode runs during the commits, {recoded} items recoded");
    assert!(runs >= 1);
    if target() != Codec::json() {
        assert!(
            recoded > 0,
            "the recode rewrote items while commits went on"
        );
    }

    for id in &ids {
        let (replayed, sequences) = replay(&repo, id).await;
        let committed = expected[id] + counts[id];
        assert_eq!(
            sequences,
            (1..=committed).collect::<Vec<_>>(),
            "{id}: every acknowledged event is stored"
        );
        let snapshot = repo.get_snapshot::<Account>(id).await.unwrap().unwrap();
        assert_eq!(snapshot.current_sequence, committed, "{id}");
        let state: Account = serde_json::from_value(snapshot.aggregate).unwrap();
        assert_eq!(
            state, replayed,
            "{id}: the snapshot equals a replay of all events"
        );
        assert_eq!(store.load_aggregate(id).await.unwrap().aggregate, replayed);
    }
}

/// Needs a target that rewrites the snapshots: plain JSON leaves them alone,
/// so there would be no write to lose to.
#[cfg(any(feature = "compression", feature = "msgpack"))]
#[tokio::test]
async fn a_writer_that_commits_after_the_scan_wins() {
    let db = tables().await;
    let repo = db.repository().with_codec(Codec::json());
    let store = DynamoStore::<Account>::new_aggregate_store(repo.clone());
    let ids: Vec<String> = (0..5).map(|k| format!("slow-{k}")).collect();
    for id in &ids {
        // Pretty-printed with a wide indent (over 1 KB, compressible), so
        // the target rewrites it.
        let key = format!("Account:{id}");
        let state = Account {
            total: 1,
            applied: 1,
            notes: vec![],
        };
        put(
            &db,
            &db.events,
            Item::from([
                ("AggregateTypeAndId".into(), s(&key)),
                ("AggregateIdSequence".into(), n(1)),
                ("AggregateType".into(), s("Account")),
                ("AggregateId".into(), s(id)),
                ("EventType".into(), s("Deposited")),
                ("EventVersion".into(), s("1.0")),
                (
                    "Payload".into(),
                    b(br#"{"Deposited":{"amount":1}}"#.to_vec()),
                ),
                ("Metadata".into(), b(b"{}".to_vec())),
            ]),
        )
        .await;
        put(
            &db,
            &db.snapshots,
            Item::from([
                ("AggregateTypeAndId".into(), s(&key)),
                ("AggregateType".into(), s("Account")),
                ("AggregateId".into(), s(id)),
                ("CurrentSequence".into(), n(1)),
                ("CurrentSnapshot".into(), n(1)),
                ("Payload".into(), b(pretty_wide(&state))),
            ]),
        )
        .await;
    }
    // One item per second: the last items are written seconds after the
    // page holding them was read.
    let recoder = Recoder::new(db.client.clone(), target()).with_options(
        RecodeOptions::default()
            .with_items_per_second(1)
            .with_page_size(5)
            .with_conflict_retries(0),
    );
    let table = Table::snapshots(&db.snapshots);
    let running = tokio::spawn(async move { recoder.run_table(&table).await });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for id in &ids {
        let context = store.load_aggregate(id).await.unwrap();
        commit_deposit(&store, context, 10).await;
    }
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.counts.items_scanned, 5);
    assert!(report.counts.conflicts_skipped >= 1, "{report:?}");
    for id in &ids {
        let snapshot = repo.get_snapshot::<Account>(id).await.unwrap().unwrap();
        assert_eq!(
            (snapshot.current_sequence, snapshot.current_snapshot),
            (2, 2),
            "{id}"
        );
        let state: Account = serde_json::from_value(snapshot.aggregate).unwrap();
        assert_eq!(
            state,
            Account {
                total: 11,
                applied: 2,
                notes: vec![]
            },
            "{id}: the commit was kept"
        );
    }
}

#[tokio::test]
async fn an_interrupted_recode_resumes_to_the_same_result() {
    let (a, b) = tokio::join!(tables(), tables());
    let (seeded_a, seeded_b) = tokio::join!(seed(&a, false), seed(&b, false));
    assert_eq!(seeded_a.accounts, seeded_b.accounts);
    let loaded_before = load_everything(&b, &seeded_b).await;
    let options = || RecodeOptions::default().with_segments(2).with_page_size(3);

    let whole = Recoder::new(a.client.clone(), target())
        .with_options(options())
        .run(&a.recode_tables())
        .await
        .unwrap();
    assert!(whole.complete);
    for report in &whole.tables {
        // What is resumed rewrites items in every table (none under plain
        // JSON, where resuming must still give the same report and tables).
        if rewrites() {
            assert!(report.counts.items_recoded > 0, "{report:?}");
        } else {
            assert_eq!(report.counts.items_recoded, 0, "{report:?}");
        }
    }

    let checkpoint =
        std::env::temp_dir().join(format!("{}.json", unique_name("recode-checkpoint")));
    let tables_b = b.recode_tables();
    // Stopped by a handle after the first page.
    let stop = StopHandle::new();
    let stopper = stop.clone();
    let first = Recoder::new(b.client.clone(), target())
        .with_options(
            options()
                .with_checkpoint(&checkpoint)
                .with_stop(stop)
                .with_progress(move |p| {
                    if p.items_scanned > 0 {
                        stopper.stop()
                    }
                }),
        )
        .run(&tables_b)
        .await
        .unwrap();
    assert!(!first.complete);
    assert!(checkpoint.exists());
    assert!(
        first.tables[0].counts.items_scanned < whole.tables[0].counts.items_scanned,
        "{first:?}"
    );
    // Then by an item budget, until done.
    let mut runs = 1;
    let resumed: Report = loop {
        let report = Recoder::new(b.client.clone(), target())
            .with_options(options().with_checkpoint(&checkpoint).with_max_items(4))
            .run(&tables_b)
            .await
            .unwrap();
        runs += 1;
        if report.complete {
            break report;
        }
        assert!(runs < 100, "no progress");
    };
    assert!(runs > 3, "the run was interrupted several times ({runs})");

    assert_eq!(resumed.tables.len(), whole.tables.len());
    for (resumed, whole) in resumed.tables.iter().zip(&whole.tables) {
        assert_eq!(anonymous(resumed), anonymous(whole));
    }
    assert_eq!(
        scan_tables(&b).await,
        scan_tables(&a).await,
        "same items, byte for byte"
    );
    assert_eq!(load_everything(&b, &seeded_b).await, loaded_before);

    // A finished checkpoint returns its report without scanning again.
    let rerun = Recoder::new(b.client.clone(), target())
        .with_options(options().with_checkpoint(&checkpoint))
        .run(&tables_b)
        .await
        .unwrap();
    assert_eq!(rerun, resumed);
    // Other settings do not silently mix with the stored progress.
    let err = Recoder::new(b.client.clone(), target())
        .with_options(options().with_segments(3).with_checkpoint(&checkpoint))
        .run(&tables_b)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("segments"), "{err}");
    std::fs::remove_file(&checkpoint).unwrap();
}

#[tokio::test]
async fn unreadable_payloads_are_counted_and_left_alone() {
    let db = tables().await;
    // Over 1 KB and compressible: rewritten by every target but plain JSON.
    let good = pretty_wide(&AccountView {
        deposits: 1,
        total: 2,
        last_sequence: 3,
    });
    for (id, payload) in [
        ("good", good),
        ("corrupt", vec![0xC1, 0x7F, 1, 2]),
        ("not-json", b"{not json".to_vec()),
    ] {
        put(
            &db,
            &db.views,
            Item::from([
                ("ViewId".into(), s(id)),
                ("ViewVersion".into(), n(1)),
                ("Payload".into(), b(payload)),
            ]),
        )
        .await;
    }
    put(
        &db,
        &db.views,
        Item::from([
            ("ViewId".into(), s("no-payload")),
            ("ViewVersion".into(), n(1)),
        ]),
    )
    .await;
    let before = items_by_key(&db.client, &db.views).await;
    let report = Recoder::new(db.client.clone(), target())
        .run_table(&Table::views(&db.views))
        .await
        .unwrap();
    assert_eq!(
        (
            report.counts.items_scanned,
            report.counts.items_recoded,
            report.counts.items_unreadable,
            report.counts.items_not_convertible
        ),
        (4, u64::from(rewrites()), 3, 0),
        "{report:?}"
    );
    assert_eq!(report.kind, TableKind::Views);
    let after = items_by_key(&db.client, &db.views).await;
    for id in ["corrupt", "not-json", "no-payload"] {
        assert_eq!(after[id], before[id], "{id} untouched");
    }
    assert_eq!(
        after["good"] != before["good"],
        rewrites(),
        "the readable view is rewritten by every target but plain JSON"
    );
    assert_eq!(report.counts.bytes_after, bytes(after.values()));
}
