//! End-to-end store benchmarks on the embedded emulator (dynoxide), upstream
//! `dynamo-es` 0.5.0 against this crate under each codec, in one run:
//!
//! * `store_commit_1_event` / `store_commit_10_events`: `EventStore::commit`
//!   of one command's events on a fresh aggregate of an event store (no
//!   snapshot). The empty load before each commit is not timed.
//! * `store_load_1000_events`: `load_aggregate` of an event store's
//!   aggregate of 1,000 events.
//! * `store_load_snapshot_every_50` / `store_load_snapshot_always`:
//!   `load_aggregate` of an aggregate of 80 events, committed 10 per
//!   command, in a snapshot store (`Every(50)`: 30 events after the
//!   snapshot) and in an aggregate store (a snapshot after every commit).
//! * `store_persist_snapshot_1_5mb` / `store_load_snapshot_1_5mb`: in an
//!   aggregate store whose state is the fixtures' 1.5 MB ledger, `commit` of
//!   one event with the snapshot (the load before it is not timed), and
//!   `load_aggregate`. Upstream cannot store that snapshot (one item over
//!   DynamoDB's 400 KB): its refusal is recorded instead.
//! * `store_hot_command_1_aggregate` / `store_hot_command_100_aggregates`:
//!   a loop of 1,000 commands (a load, then a commit of one event) on one
//!   aggregate, and going round 100 aggregates, in an aggregate store: for
//!   upstream, for this crate (`json`) without the cache and with a
//!   `HotCache`. Each aggregate's first command, before the loop, fills
//!   the cache. Criterion times the whole loop; the record divides by the
//!   commands (`detail.commands`), and the counts are per command.
//!
//! Every workload and implementation gets a fresh emulator and tables:
//! dynoxide keeps each `ClientRequestToken` for ten minutes and scans them
//! all on every transaction, so on a shared emulator each commit would slow
//! down the ones measured after it.
//!
//! Each workload is timed by criterion, one implementation after the other,
//! then in interleaved rounds (`common::interleave`): the ratios against
//! upstream come from the interleaved medians, which the load drifting on a
//! shared machine cannot skew.
//!
//! Besides the timings, a benchmarking run (`--bench`) meters one
//! more run of each workload with `dynamo_es::testing::costs::Meter`
//! (capacity units as the emulator reports them, sequential round trips),
//! computes the units DynamoDB's published rules give for the items stored,
//! and writes both to `$CARGO_TARGET_DIR/criterion/dynamo-es/store.json`
//! for `scripts/bench_report.py`.
//!
//! Run with `cargo bench --all-features --bench store` (or `scripts/bench.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use common::interleave::{compare, Contender, Op};
use common::workloads::{
    events, fresh_id, hot_implementations, implementations, large_imports,
    snapshotted_implementations, Implementation, Setup, Store, AFTER_SNAPSHOT, HOT_AGGREGATES,
    HOT_COMMANDS, HOT_POLICY, SNAPSHOT_EVERY,
};
use common::{write_record, Sampling};
use cqrs_es::Aggregate;
use criterion::Criterion;
use dynamo_es::item::{aggregate_key, Item, AGGREGATE_TYPE_AND_ID, CHUNK_OF, PAYLOAD};
use dynamo_es::size::{item_size, read_units, write_units, MAX_PAGE_SIZE};
use dynamo_es::testing::aggregates::{Ledger, LedgerEvent};
use dynamo_es::testing::costs::Costs;
use dynamo_es::testing::{dynamodb_with, scan_all, EmbeddedDynamo};
use dynamo_es::SnapshotPolicy;
use serde_json::{json, Value};
use tokio::runtime::Runtime;

/// Sampling of the slow workloads (1,000 events, the 1.5 MB snapshot).
const SLOW: Sampling = Sampling::flat(10, Duration::from_secs(1), Duration::from_secs(4));

/// Sampling of the commits and the snapshotted loads.
const FAST: Sampling = Sampling::auto(20, Duration::from_secs(1), Duration::from_secs(3));

/// Interleaved rounds of the fast workloads.
const ROUNDS: usize = 200;

/// Interleaved rounds of the slow workloads.
const SLOW_ROUNDS: usize = 30;

/// Interleaved rounds of the hot command loops (each a loop of commands).
const HOT_ROUNDS: usize = 12;

/// Commands per hot loop: [`HOT_COMMANDS`], or fewer for a quick check
/// with `$STORE_BENCH_HOT_COMMANDS` (a run so limited writes no record).
const HOT_COMMANDS_VAR: &str = "STORE_BENCH_HOT_COMMANDS";

/// Commands metered per hot loop for the counts, which are per command.
const HOT_METERED: usize = 4;

fn hot_commands() -> usize {
    std::env::var(HOT_COMMANDS_VAR)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(HOT_COMMANDS)
}

/// For profiling: only the workloads whose name contains
/// `$STORE_BENCH_WORKLOADS`, and only the implementations named in the
/// comma-separated `$STORE_BENCH_IMPLEMENTATIONS`; a run so limited writes
/// no record.
const ONLY_WORKLOADS: &str = "STORE_BENCH_WORKLOADS";
const ONLY_IMPLEMENTATIONS: &str = "STORE_BENCH_IMPLEMENTATIONS";

fn limited() -> bool {
    std::env::var_os(ONLY_WORKLOADS).is_some()
        || std::env::var_os(ONLY_IMPLEMENTATIONS).is_some()
        || std::env::var_os(HOT_COMMANDS_VAR).is_some()
}

fn runs(workload: &str) -> bool {
    std::env::var(ONLY_WORKLOADS)
        .ok()
        .is_none_or(|only| workload.contains(only.as_str()))
}

/// The implementations this run compares.
fn selected() -> Vec<Implementation> {
    chosen(implementations())
}

/// Those of `all` named in `$STORE_BENCH_IMPLEMENTATIONS` (all if unset).
fn chosen(all: Vec<Implementation>) -> Vec<Implementation> {
    let only = std::env::var(ONLY_IMPLEMENTATIONS).ok();
    all.into_iter()
        .filter(|i| {
            only.as_ref()
                .is_none_or(|only| only.split(',').any(|n| n == i.name()))
        })
        .collect()
}

/// `implementation` on a fresh emulator and tables of its own.
fn setup(rt: &Runtime, implementation: Implementation) -> Setup {
    let server = EmbeddedDynamo::start().unwrap();
    let tables = rt.block_on(dynamodb_with(server.client())).unwrap();
    Setup::new(implementation, tables, Some(server))
}

/// Every [selected](selected) implementation on its own emulator, and its
/// store under `policy`.
fn setups_and_stores(rt: &Runtime, policy: SnapshotPolicy) -> (Vec<Setup>, Vec<Store>) {
    setups_and_stores_of(rt, selected(), policy)
}

/// Each of `implementations` on its own emulator, and its store under
/// `policy`.
fn setups_and_stores_of(
    rt: &Runtime,
    implementations: Vec<Implementation>,
    policy: SnapshotPolicy,
) -> (Vec<Setup>, Vec<Store>) {
    let setups: Vec<Setup> = implementations.into_iter().map(|i| setup(rt, i)).collect();
    let stores = setups.iter().map(|s| s.store(policy)).collect();
    (setups, stores)
}

/// Strongly consistent RCU of a query returning `items`: each 1 MB page's
/// summed size rounded up to 4 KB (a query returning nothing still costs 1).
fn query_read_units(sizes: &[usize]) -> u64 {
    let mut pages = vec![0usize];
    for &size in sizes {
        let page = pages.last_mut().unwrap();
        if *page > 0 && *page + size > MAX_PAGE_SIZE {
            pages.push(size);
        } else {
            *page += size;
        }
    }
    pages.into_iter().map(|size| read_units(size, false)).sum()
}

/// The sizes of every item of an aggregate's events, as stored.
async fn stored_event_sizes(client: &Client, table: &str, id: &str) -> Vec<usize> {
    let key = AttributeValue::S(aggregate_key(Ledger::TYPE, id));
    scan_all(client, table)
        .await
        .unwrap()
        .iter()
        .filter(|item| item.get(AGGREGATE_TYPE_AND_ID) == Some(&key))
        .map(item_size)
        .collect()
}

/// What one workload cost one implementation: metered `costs`, the sizes of
/// the items it wrote or read, and the units DynamoDB's published rules
/// give for them (`None` where the rules need more than the items).
fn record(
    workload: &str,
    setup: &Setup,
    costs: &Costs,
    sizes: &[usize],
    published: (Option<u64>, Option<u64>),
    detail: Value,
) -> Value {
    json!({
        "workload": workload,
        "implementation": setup.implementation.name(),
        "codec": setup.implementation.name(),
        "wcu": costs.write_units,
        "rcu": costs.read_units,
        "round_trips": costs.round_trips,
        "operations": costs.operations,
        "items": sizes.len(),
        "item_bytes": sizes.iter().sum::<usize>(),
        "published_wcu": published.0,
        "published_rcu": published.1,
        "detail": detail,
    })
}

/// A timed `load_aggregate` of `id` through `store`, checking it reached
/// sequence `expected`.
fn timed_load<'a>(store: &'a Store, id: &'a str, expected: usize) -> Op<'a> {
    Box::new(move || {
        Box::pin(async move {
            let start = Instant::now();
            let context = store.load(id).await.unwrap();
            let elapsed = start.elapsed();
            assert_eq!(context.sequence(), expected);
            elapsed
        })
    })
}

/// Each implementation's timed load of its aggregate `ids[i]`, which
/// reaches sequence `expected`.
fn loads<'a>(
    setups: &[Setup],
    stores: &'a [Store],
    ids: &'a [String],
    expected: usize,
) -> Vec<Contender<'a>> {
    setups
        .iter()
        .zip(stores)
        .zip(ids)
        .map(|((setup, store), id)| Contender {
            name: setup.implementation.name(),
            op: timed_load(store, id, expected),
        })
        .collect()
}

/// A timed `commit` of `events_of()` after a load of `id()` (not timed).
fn timed_commit<'a>(
    store: &'a Store,
    id: impl Fn() -> String + Copy + 'a,
    events_of: impl Fn() -> Vec<LedgerEvent> + Copy + 'a,
) -> Op<'a> {
    Box::new(move || {
        Box::pin(async move {
            let context = store.load(&id()).await.unwrap();
            let events = events_of();
            let start = Instant::now();
            store.commit(events, context).await.unwrap();
            start.elapsed()
        })
    })
}

/// Adds each implementation's interleaved median to its record of
/// `workload`.
fn add_interleaved(records: &mut [Value], workload: &str, medians: &HashMap<String, f64>) {
    for record in records.iter_mut().filter(|r| r["workload"] == workload) {
        let name = record["implementation"].as_str().unwrap_or_default();
        if let Some(&median) = medians.get(name) {
            record["interleaved_median_ns"] = json!(median);
        }
    }
}

/// Commits of `count` events, each on a fresh aggregate.
fn bench_commit(c: &mut Criterion, rt: &Runtime, count: usize, records: &mut Vec<Value>) {
    let name = if count == 1 {
        "store_commit_1_event".to_string()
    } else {
        format!("store_commit_{count}_events")
    };
    let (setups, stores) = setups_and_stores(rt, SnapshotPolicy::Never);
    let contenders: Vec<Contender> = setups
        .iter()
        .zip(&stores)
        .map(|(setup, store)| Contender {
            name: setup.implementation.name(),
            op: timed_commit(store, || fresh_id("cmt"), move || events(1000, count)),
        })
        .collect();
    let medians = compare(c, rt, &name, &FAST, ROUNDS, &contenders);
    for setup in &setups {
        let (id, costs) = rt.block_on(setup.commit_costs(count));
        let sizes = rt.block_on(stored_event_sizes(
            &setup.tables.client,
            &setup.tables.events,
            &id,
        ));
        assert_eq!(sizes.len(), count);
        let transactional = costs.operations != ["PutItem"];
        let published = sizes
            .iter()
            .map(|&size| write_units(size, transactional))
            .sum();
        records.push(record(
            &name,
            setup,
            &costs,
            &sizes,
            (Some(published), Some(0)),
            json!({ "events": count }),
        ));
    }
    add_interleaved(records, &name, &medians);
}

/// Loads of an event store's aggregate of 1,000 events.
fn bench_load_events(c: &mut Criterion, rt: &Runtime, records: &mut Vec<Value>) {
    const EVENTS: usize = 1000;
    let name = "store_load_1000_events";
    let (setups, stores) = setups_and_stores(rt, SnapshotPolicy::Never);
    let ids: Vec<String> = setups
        .iter()
        .zip(&stores)
        .map(|(setup, store)| {
            let id = fresh_id("l1k");
            rt.block_on(setup.seed(store, &id, EVENTS));
            id
        })
        .collect();
    let contenders = loads(&setups, &stores, &ids, EVENTS);
    let medians = compare(c, rt, name, &SLOW, SLOW_ROUNDS, &contenders);
    for ((setup, store), id) in setups.iter().zip(&stores).zip(&ids) {
        let costs = rt.block_on(setup.load_costs(store, id, EVENTS));
        let sizes = rt.block_on(stored_event_sizes(
            &setup.tables.client,
            &setup.tables.events,
            id,
        ));
        let published = query_read_units(&sizes);
        records.push(record(
            name,
            setup,
            &costs,
            &sizes,
            (Some(0), Some(published)),
            json!({ "events": EVENTS }),
        ));
    }
    add_interleaved(records, name, &medians);
}

/// Loads of an aggregate of 80 events committed 10 per command under
/// `policy` (upstream: cqrs-es's snapshot or aggregate store).
fn bench_snapshotted(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    policy: SnapshotPolicy,
    records: &mut Vec<Value>,
) {
    const EVENTS: usize = SNAPSHOT_EVERY + AFTER_SNAPSHOT;
    // A snapshot store's events may be read eventually consistent, as
    // upstream reads them; an aggregate store's load reads no events.
    let contenders = match policy {
        SnapshotPolicy::Every(_) => snapshotted_implementations(),
        _ => implementations(),
    };
    let (setups, stores) = setups_and_stores_of(rt, chosen(contenders), policy);
    let ids: Vec<String> = setups
        .iter()
        .zip(&stores)
        .map(|(setup, store)| rt.block_on(setup.snapshotted(store)))
        .collect();
    let contenders = loads(&setups, &stores, &ids, EVENTS);
    let medians = compare(c, rt, name, &FAST, ROUNDS, &contenders);
    for ((setup, store), id) in setups.iter().zip(&stores).zip(&ids) {
        let costs = rt.block_on(setup.load_costs(store, id, EVENTS));
        records.push(record(
            name,
            setup,
            &costs,
            &[],
            (Some(0), None),
            json!({ "events": EVENTS, "policy": format!("{policy:?}") }),
        ));
    }
    add_interleaved(records, name, &medians);
}

/// The snapshot items of the only aggregate in `setup`'s snapshot table:
/// their sizes, chunk count and stored payload bytes.
fn snapshot_detail(
    rt: &Runtime,
    setup: &Setup,
    id: &str,
    json_bytes: usize,
) -> (Vec<usize>, Value) {
    let items = rt
        .block_on(scan_all(&setup.tables.client, &setup.tables.snapshots))
        .unwrap();
    let head_key = aggregate_key(Ledger::TYPE, id);
    assert!(items.iter().all(|item| match item.get(CHUNK_OF) {
        Some(AttributeValue::S(of)) => *of == head_key,
        _ => item.get(AGGREGATE_TYPE_AND_ID) == Some(&AttributeValue::S(head_key.clone())),
    }));
    let payload_len = |item: &Item| match item.get(PAYLOAD) {
        Some(AttributeValue::B(bytes)) => bytes.as_ref().len(),
        _ => 0,
    };
    let sizes: Vec<usize> = items.iter().map(item_size).collect();
    let detail = json!({
        "json_bytes": json_bytes,
        "stored_payload_bytes": items.iter().map(payload_len).sum::<usize>(),
        "snapshot_items": items.len(),
        "chunks": items.iter().filter(|i| i.contains_key(CHUNK_OF)).count(),
        "snapshot_item_bytes": sizes.iter().sum::<usize>(),
    });
    (sizes, detail)
}

/// Persists and loads of the 1.5 MB ledger through an aggregate store.
fn bench_large(c: &mut Criterion, rt: &Runtime, records: &mut Vec<Value>) {
    let mut expected = Ledger::default();
    for event in large_imports() {
        expected.apply(event);
    }
    let json_bytes = serde_json::to_vec(&expected).unwrap().len();
    let mut ready = Vec::new();
    for implementation in selected() {
        let setup = setup(rt, implementation);
        let store = setup.store(SnapshotPolicy::Always);
        let id = fresh_id("big");
        match rt.block_on(store.load_and_commit(&id, large_imports())) {
            Ok(()) => {
                let context = rt.block_on(store.load(&id)).unwrap();
                assert_eq!(context.aggregate(), &expected);
                ready.push((setup, id, store));
            }
            Err(refused) => {
                for workload in ["store_persist_snapshot_1_5mb", "store_load_snapshot_1_5mb"] {
                    records.push(json!({
                        "workload": workload,
                        "implementation": setup.implementation.name(),
                        "codec": setup.implementation.name(),
                        "refused": refused,
                    }));
                }
            }
        }
    }

    let persists: Vec<Contender> = ready
        .iter()
        .map(|(setup, id, store)| {
            let id = id.as_str();
            Contender {
                name: setup.implementation.name(),
                op: timed_commit(store, move || id.to_string(), || events(7, 1)),
            }
        })
        .collect();
    let persisted = compare(
        c,
        rt,
        "store_persist_snapshot_1_5mb",
        &SLOW,
        SLOW_ROUNDS,
        &persists,
    );
    drop(persists);
    let sequences: Vec<usize> = ready
        .iter()
        .map(|(_, id, store)| rt.block_on(store.load(id)).unwrap().sequence())
        .collect();
    let loads: Vec<Contender> = ready
        .iter()
        .zip(&sequences)
        .map(|((setup, id, store), &sequence)| Contender {
            name: setup.implementation.name(),
            op: timed_load(store, id, sequence),
        })
        .collect();
    let loaded = compare(
        c,
        rt,
        "store_load_snapshot_1_5mb",
        &SLOW,
        SLOW_ROUNDS,
        &loads,
    );
    drop(loads);

    for (setup, id, store) in &ready {
        let context = rt.block_on(store.load(id)).unwrap();
        let sequence = context.sequence();
        let (committed, persist) =
            rt.block_on(setup.meter.measure(store.commit(events(9, 1), context)));
        committed.unwrap();
        let load = rt.block_on(setup.load_costs(store, id, sequence + 1));
        let (sizes, detail) = snapshot_detail(rt, setup, id, json_bytes);
        let event = rt.block_on(stored_event_sizes(
            &setup.tables.client,
            &setup.tables.events,
            id,
        ));
        let written: Vec<usize> = event
            .last()
            .copied()
            .into_iter()
            .chain(sizes.iter().copied())
            .collect();
        let persist_units = written.iter().map(|&size| write_units(size, true)).sum();
        // GetItem of the head, BatchGetItem of the chunks: each item rounded
        // up on its own; the events read with it depend on the tail query.
        records.push(record(
            "store_persist_snapshot_1_5mb",
            setup,
            &persist,
            &written,
            (Some(persist_units), Some(0)),
            detail.clone(),
        ));
        records.push(record(
            "store_load_snapshot_1_5mb",
            setup,
            &load,
            &sizes,
            (Some(0), None),
            detail,
        ));
    }
    add_interleaved(records, "store_persist_snapshot_1_5mb", &persisted);
    add_interleaved(records, "store_load_snapshot_1_5mb", &loaded);
}

/// A hot command loop of [`hot_commands`] commands going round
/// `aggregates` aggregates, for upstream and this crate without and with
/// the cache.
fn bench_hot(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    aggregates: usize,
    records: &mut Vec<Value>,
) {
    let commands = hot_commands();
    let only = std::env::var(ONLY_IMPLEMENTATIONS).ok();
    let setups: Vec<Setup> = hot_implementations()
        .into_iter()
        .filter(|i| {
            only.as_ref()
                .is_none_or(|only| only.split(',').any(|n| n == i.name()))
        })
        .map(|i| setup(rt, i))
        .collect();
    let stores: Vec<Store> = setups.iter().map(|s| s.store(HOT_POLICY)).collect();
    let ids: Vec<Vec<String>> = setups
        .iter()
        .zip(&stores)
        .map(|(setup, store)| rt.block_on(setup.hot_aggregates(store, aggregates)))
        .collect();
    // Each run goes on where the last one stopped: every aggregate gets
    // its turn, and the cache its hits.
    let next = std::cell::Cell::new(aggregates);
    let next = &next;
    let contenders: Vec<Contender> = setups
        .iter()
        .zip(&stores)
        .zip(&ids)
        .map(|((setup, store), ids)| {
            let op: Op = Box::new(move || {
                Box::pin(async move {
                    let first = next.get();
                    let start = Instant::now();
                    setup.hot_commands(store, ids, first, commands).await;
                    let elapsed = start.elapsed();
                    next.set(first + commands);
                    elapsed
                })
            });
            Contender {
                name: setup.implementation.name(),
                op,
            }
        })
        .collect();
    let medians = compare(c, rt, name, &SLOW, HOT_ROUNDS, &contenders);
    drop(contenders);
    for ((setup, store), ids) in setups.iter().zip(&stores).zip(&ids) {
        let ((), costs) = rt.block_on(setup.meter.measure(setup.hot_commands(
            store,
            ids,
            next.get(),
            HOT_METERED,
        )));
        let per = |total: f64| total / f64::from(u32::try_from(HOT_METERED).unwrap());
        let per_command = Costs {
            write_units: per(costs.write_units),
            read_units: per(costs.read_units),
            round_trips: costs.round_trips / HOT_METERED,
            operations: costs.operations.clone(),
        };
        records.push(record(
            name,
            setup,
            &per_command,
            &[],
            (None, None),
            json!({
                "commands": commands,
                "aggregates": aggregates,
                "metered_commands": HOT_METERED,
                "round_trips_metered": costs.round_trips,
                "policy": format!("{HOT_POLICY:?}"),
            }),
        ));
    }
    add_interleaved(records, name, &medians);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = common::criterion();
    let mut records = Vec::new();
    if runs("store_commit_1_event") {
        bench_commit(&mut c, &rt, 1, &mut records);
    }
    if runs("store_commit_10_events") {
        bench_commit(&mut c, &rt, 10, &mut records);
    }
    if runs("store_load_1000_events") {
        bench_load_events(&mut c, &rt, &mut records);
    }
    for (name, policy) in [
        (
            "store_load_snapshot_every_50",
            SnapshotPolicy::Every(SNAPSHOT_EVERY),
        ),
        ("store_load_snapshot_always", SnapshotPolicy::Always),
    ] {
        if runs(name) {
            bench_snapshotted(&mut c, &rt, name, policy, &mut records);
        }
    }
    if runs("snapshot_1_5mb") {
        bench_large(&mut c, &rt, &mut records);
    }
    for (name, aggregates) in [
        ("store_hot_command_1_aggregate", 1),
        ("store_hot_command_100_aggregates", HOT_AGGREGATES),
    ] {
        if runs(name) {
            bench_hot(&mut c, &rt, name, aggregates, &mut records);
        }
    }
    c.final_summary();

    for r in &records {
        println!(
            "{:<30} {:<18} WCU {:>6} RCU {:>6} round trips {:>2} {}",
            r["workload"].as_str().unwrap_or_default(),
            r["implementation"].as_str().unwrap_or_default(),
            r["wcu"],
            r["rcu"],
            r["round_trips"],
            r["refused"].as_str().unwrap_or_default(),
        );
    }
    if limited() {
        return;
    }
    write_record(
        "store",
        json!({
            "snapshot_every": SNAPSHOT_EVERY,
            "after_snapshot": AFTER_SNAPSHOT,
            "workloads": records,
        }),
    );
}
