//! End-to-end store benchmarks on the embedded emulator (dynoxide), under
//! every codec this build has:
//!
//! * `store_commit_1_event` / `store_commit_10_events`: `EventStore::commit`
//!   of one command's events on a fresh aggregate (an event store: no
//!   snapshot). The empty load before each commit is not timed.
//! * `store_load_1000_events`: `EventStore::load_aggregate` of an aggregate
//!   of 1,000 events (one query, every event decoded and applied).
//! * `store_persist_snapshot_1_5mb`: in an aggregate store, `commit` of one
//!   event plus the 1.5 MB ledger snapshot, in one transaction (the load
//!   before it is not timed).
//! * `store_load_snapshot_1_5mb`: `load_aggregate` of that aggregate: the
//!   snapshot (head and chunks) and the (empty) events after it.
//!
//! The timings mostly measure the emulator (SQLite behind HTTP). The cost
//! that transfers to real DynamoDB is the capacity each workload consumes,
//! which a benchmarking run (`--bench`) computes from the stored items and
//! writes to `$CARGO_TARGET_DIR/criterion/dynamo-es/store.json` for
//! `scripts/bench_report.py`.
//!
//! Run with `cargo bench --all-features --bench store` (or `scripts/bench.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use common::{codecs, write_record, Sampling};
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent, EventStore};
use criterion::{BenchmarkId, Criterion};
use dynamo_es::item::{
    aggregate_key, event_to_item, Item, AGGREGATE_TYPE_AND_ID, CHUNK_OF, PAYLOAD,
};
use dynamo_es::size::{item_size, read_units, write_units, MAX_PAGE_SIZE};
use dynamo_es::testing::aggregates::{Ledger, LedgerEvent};
use dynamo_es::testing::fixtures::{small_event, snapshot_1_5_mb};
use dynamo_es::testing::{dynamodb_with, scan_all, EmbeddedDynamo, TestTables};
use dynamo_es::{Codec, DynamoEventRepository, DynamoStore};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

/// `count` postings, each one of the fixtures' realistic small events,
/// seeded from `first_seed`. `Ledger` only counts them, so its snapshot
/// (the fixtures' 1.5 MB ledger in the snapshot workload) keeps its size
/// from commit to commit.
fn events(first_seed: u64, count: u64) -> Vec<LedgerEvent> {
    (first_seed..first_seed + count)
        .map(|seed| LedgerEvent::Posted(small_event(seed)))
        .collect()
}

/// The metadata every command carries.
fn metadata() -> HashMap<String, String> {
    HashMap::from([
        (
            "correlation_id".to_string(),
            "5f0c6d1e-8a42-4b7e-9c1d-2e3f4a5b6c7d".to_string(),
        ),
        ("user_id".to_string(), "user-0042817".to_string()),
    ])
}

/// A fresh aggregate id. Every id has the same length (a 3-character
/// prefix and 8 digits), so stored item sizes do not drift between them.
fn fresh_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    assert_eq!(prefix.len(), 3);
    format!("{prefix}-{:08}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The events `DynamoStore::commit` serializes for `events` at `first_sequence`.
fn serialized(id: &str, first_sequence: usize, events: &[LedgerEvent]) -> Vec<SerializedEvent> {
    let metadata = serde_json::to_value(metadata()).unwrap();
    events
        .iter()
        .zip(first_sequence..)
        .map(|(event, sequence)| SerializedEvent {
            aggregate_id: id.to_string(),
            sequence,
            aggregate_type: Ledger::TYPE.to_string(),
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(event).unwrap(),
            metadata: metadata.clone(),
        })
        .collect()
}

/// The event items the repository builds for `events`, exactly.
fn event_items(codec: &Codec, events: &[SerializedEvent]) -> Vec<Item> {
    events
        .iter()
        .map(|event| event_to_item(event, codec).unwrap().0)
        .collect()
}

/// Strongly consistent RCU of a query returning `items`: each 1 MB page's
/// summed size rounded up to 4 KB (a query returning nothing still costs 1).
fn query_read_units(items: &[Item]) -> u64 {
    let mut pages = vec![0usize];
    for size in items.iter().map(item_size) {
        let page = pages.last_mut().unwrap();
        if *page > 0 && *page + size > MAX_PAGE_SIZE {
            pages.push(size);
        } else {
            *page += size;
        }
    }
    pages.into_iter().map(|size| read_units(size, false)).sum()
}

/// Every item of an aggregate's events, as stored.
async fn stored_events(client: &Client, table: &str, id: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .consistent_read(true)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", AGGREGATE_TYPE_AND_ID)
            .expression_attribute_values(":k", AttributeValue::S(aggregate_key(Ledger::TYPE, id)))
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

fn payload_len(item: &Item) -> usize {
    match item.get(PAYLOAD) {
        Some(AttributeValue::B(bytes)) => bytes.as_ref().len(),
        _ => 0,
    }
}

fn sizes(items: &[Item]) -> Vec<usize> {
    items.iter().map(item_size).collect()
}

/// One codec's own emulator, tables and stores.
///
/// Every workload and codec gets a fresh emulator: dynoxide keeps each
/// `ClientRequestToken` for ten minutes and scans them all on every
/// transaction, so on a shared emulator each commit would slow down the
/// ones measured after it.
struct Setup {
    codec: Codec,
    tables: TestTables,
    event_store: DynamoStore<Ledger>,
    aggregate_store: DynamoStore<Ledger>,
    // Last, so the clients go before the server stops.
    _server: EmbeddedDynamo,
}

impl Setup {
    fn new(rt: &Runtime, codec: &Codec) -> Self {
        let server = EmbeddedDynamo::start().unwrap();
        let tables = rt.block_on(dynamodb_with(server.client())).unwrap();
        let repo = DynamoEventRepository::new(tables.client.clone())
            .with_tables(&tables.events, &tables.snapshots)
            .with_codec(codec.clone());
        Setup {
            codec: codec.clone(),
            event_store: DynamoStore::new_event_store(repo.clone()),
            aggregate_store: DynamoStore::new_aggregate_store(repo),
            tables,
            _server: server,
        }
    }

    fn repo(&self) -> &DynamoEventRepository {
        self.event_store.repository()
    }
}

/// What one workload stores or reads, and costs, under one codec: `items`
/// are the sizes of the items written (transactionally) or read.
fn record(
    workload: &str,
    codec: &Codec,
    items: &[usize],
    wcu: u64,
    rcu: u64,
    extra: Value,
) -> Value {
    json!({
        "workload": workload,
        "codec": codec.name(),
        "items": items.len(),
        "item_bytes": items.iter().sum::<usize>(),
        "wcu": wcu,
        "rcu": rcu,
        "detail": extra,
    })
}

/// WCU of writing items of these sizes in one transaction.
fn transact_write_units(sizes: &[usize]) -> u64 {
    sizes.iter().map(|&size| write_units(size, true)).sum()
}

/// Sampling of the slow workloads (1,000 events, the 1.5 MB snapshot).
const SLOW: Sampling = Sampling::flat(10, Duration::from_secs(1), Duration::from_secs(4));

/// Sampling of the commits.
const FAST: Sampling = Sampling::auto(20, Duration::from_secs(1), Duration::from_secs(3));

/// Commits of `count` events, each on a fresh aggregate.
fn bench_commit(
    c: &mut Criterion,
    rt: &Runtime,
    codecs: &[Codec],
    count: u64,
    records: &mut Vec<Value>,
) {
    let name = if count == 1 {
        "store_commit_1_event".to_string()
    } else {
        format!("store_commit_{count}_events")
    };
    let prefix = format!("c{count:02}");
    let batch = events(1000, count);
    let mut group = c.benchmark_group(&name);
    FAST.apply(&mut group);
    for codec in codecs {
        let setup = &Setup::new(rt, codec);
        let store = &setup.event_store;
        let batch = &batch;
        let prefix = prefix.as_str();
        group.bench_function(BenchmarkId::from_parameter(codec.name()), |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let context = store.load_aggregate(&fresh_id(prefix)).await.unwrap();
                    let (events, metadata) = (batch.clone(), metadata());
                    let start = Instant::now();
                    store.commit(events, context, metadata).await.unwrap();
                    elapsed += start.elapsed();
                }
                elapsed
            });
        });

        // Capacity, from the items exactly as the repository builds them;
        // checked against what a commit actually stored.
        let id = fresh_id(prefix);
        let items = event_items(codec, &serialized(&id, 1, batch));
        rt.block_on(async {
            let context = store.load_aggregate(&id).await.unwrap();
            store
                .commit(batch.clone(), context, metadata())
                .await
                .unwrap();
            let stored = stored_events(&setup.tables.client, &setup.tables.events, &id).await;
            assert_eq!(sizes(&stored), sizes(&items), "{}", codec.name());
        });
        let payload_bytes: usize = items
            .iter()
            .map(|item| {
                payload_len(item)
                    + match item.get("Metadata") {
                        Some(AttributeValue::B(b)) => b.as_ref().len(),
                        _ => 0,
                    }
            })
            .sum();
        let written = sizes(&items);
        records.push(record(
            &name,
            codec,
            &written,
            transact_write_units(&written),
            0,
            json!({ "events": count, "stored_payload_bytes": payload_bytes }),
        ));
    }
    group.finish();
}

/// Loads of an aggregate of 1,000 events.
fn bench_load_events(c: &mut Criterion, rt: &Runtime, codecs: &[Codec], records: &mut Vec<Value>) {
    const EVENTS: usize = 1000;
    let name = "store_load_1000_events";
    let mut group = c.benchmark_group(name);
    SLOW.apply(&mut group);
    for codec in codecs {
        let setup = &Setup::new(rt, codec);
        let id = fresh_id("l1k");
        let all = events(0, 1000);
        let items = event_items(codec, &serialized(&id, 1, &all));
        rt.block_on(async {
            for batch in all.chunks(100) {
                let context = setup.event_store.load_aggregate(&id).await.unwrap();
                setup
                    .event_store
                    .commit(batch.to_vec(), context, metadata())
                    .await
                    .unwrap();
            }
            let stored = stored_events(&setup.tables.client, &setup.tables.events, &id).await;
            assert_eq!(stored.len(), EVENTS);
            let stored_total: usize = sizes(&stored).iter().sum();
            let built_total: usize = sizes(&items).iter().sum();
            assert_eq!(stored_total, built_total, "{}", codec.name());
        });
        let store = &setup.event_store;
        let id_ref = id.as_str();
        group.bench_function(BenchmarkId::from_parameter(codec.name()), |b| {
            b.to_async(rt).iter(|| async move {
                let context = store.load_aggregate(id_ref).await.unwrap();
                assert_eq!(context.current_sequence, EVENTS);
                context
            });
        });
        records.push(record(
            name,
            codec,
            &sizes(&items),
            0,
            query_read_units(&items),
            json!({ "events": EVENTS }),
        ));
    }
    group.finish();
}

/// Persists and loads of the 1.5 MB snapshot through the aggregate store.
fn bench_snapshot(c: &mut Criterion, rt: &Runtime, codecs: &[Codec], records: &mut Vec<Value>) {
    let setups: Vec<Setup> = codecs.iter().map(|codec| Setup::new(rt, codec)).collect();
    let account = snapshot_1_5_mb();
    let account_json = serde_json::to_vec(&account).unwrap().len();
    let ids: Vec<String> = setups
        .iter()
        .map(|setup| {
            let id = fresh_id("snp");
            let first = serialized(&id, 1, &events(0, 1));
            let state = Ledger {
                postings: 1,
                account: account.clone(),
            };
            let update = (id.clone(), serde_json::to_value(&state).unwrap(), 1);
            rt.block_on(setup.repo().persist::<Ledger>(&first, Some(update)))
                .unwrap();
            id
        })
        .collect();
    let event = events(7, 1);

    let name = "store_persist_snapshot_1_5mb";
    let mut group = c.benchmark_group(name);
    SLOW.apply(&mut group);
    for (setup, id) in setups.iter().zip(&ids) {
        let store = &setup.aggregate_store;
        let (id, event) = (id.as_str(), &event);
        group.bench_function(BenchmarkId::from_parameter(setup.codec.name()), |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let context = store.load_aggregate(id).await.unwrap();
                    let (events, metadata) = (event.clone(), metadata());
                    let start = Instant::now();
                    store.commit(events, context, metadata).await.unwrap();
                    elapsed += start.elapsed();
                }
                elapsed
            });
        });
    }
    group.finish();

    let name = "store_load_snapshot_1_5mb";
    let mut group = c.benchmark_group(name);
    SLOW.apply(&mut group);
    for (setup, id) in setups.iter().zip(&ids) {
        let store = &setup.aggregate_store;
        let id = id.as_str();
        group.bench_function(BenchmarkId::from_parameter(setup.codec.name()), |b| {
            b.to_async(rt).iter(|| async move {
                let context = store.load_aggregate(id).await.unwrap();
                assert!(context.aggregate.account.is_object());
                context
            });
        });
    }
    group.finish();

    // Capacity: the snapshot items as stored (the table holds only this
    // aggregate's head and chunks), and the event committed with them.
    for (setup, id) in setups.iter().zip(&ids) {
        let (snapshot_items, sequence) = rt.block_on(async {
            let items = scan_all(&setup.tables.client, &setup.tables.snapshots)
                .await
                .unwrap();
            let context = setup.aggregate_store.load_aggregate(id).await.unwrap();
            (items, context.current_sequence)
        });
        let head_key = aggregate_key(Ledger::TYPE, id);
        assert!(snapshot_items.iter().all(|item| match item.get(CHUNK_OF) {
            Some(AttributeValue::S(of)) => *of == head_key,
            _ => item.get(AGGREGATE_TYPE_AND_ID) == Some(&AttributeValue::S(head_key.clone())),
        }));
        let chunks = snapshot_items
            .iter()
            .filter(|i| i.contains_key(CHUNK_OF))
            .count();
        let snapshot_sizes = sizes(&snapshot_items);
        let stored_payload: usize = snapshot_items.iter().map(payload_len).sum();
        let event_item = event_items(&setup.codec, &serialized(id, sequence, &event));
        let written: Vec<usize> = sizes(&event_item)
            .into_iter()
            .chain(snapshot_sizes.iter().copied())
            .collect();
        // GetItem of the head, BatchGetItem of the chunks (each item rounded
        // up on its own), then the empty query for events after the snapshot.
        let read: u64 = snapshot_sizes
            .iter()
            .map(|&size| read_units(size, false))
            .sum::<u64>()
            + query_read_units(&[]);
        let detail = json!({
            "json_bytes": account_json,
            "stored_payload_bytes": stored_payload,
            "snapshot_items": snapshot_items.len(),
            "chunks": chunks,
            "snapshot_item_bytes": snapshot_sizes.iter().sum::<usize>(),
        });
        records.push(record(
            "store_persist_snapshot_1_5mb",
            &setup.codec,
            &written,
            transact_write_units(&written),
            0,
            detail.clone(),
        ));
        records.push(record(
            "store_load_snapshot_1_5mb",
            &setup.codec,
            &snapshot_sizes,
            0,
            read,
            detail,
        ));
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let codecs = codecs();

    let mut c = common::criterion();
    let mut records = Vec::new();
    bench_commit(&mut c, &rt, &codecs, 1, &mut records);
    bench_commit(&mut c, &rt, &codecs, 10, &mut records);
    bench_load_events(&mut c, &rt, &codecs, &mut records);
    bench_snapshot(&mut c, &rt, &codecs, &mut records);
    c.final_summary();

    for r in &records {
        println!(
            "{:<30} {:<18} items {:>4} bytes {:>9} WCU {:>5} RCU {:>5}",
            r["workload"].as_str().unwrap_or_default(),
            r["codec"].as_str().unwrap_or_default(),
            r["items"],
            r["item_bytes"],
            r["wcu"],
            r["rcu"]
        );
    }
    write_record("store", json!({ "workloads": records }));
}
