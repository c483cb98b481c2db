//! The hot-aggregate cache (`DynamoStore::with_cache`) and
//! `execute_with_retry`, on the embedded emulator: what a hot command costs
//! (counted by `Meter`: round trips and capacity units, never time), that a
//! stale entry conflicts and never overwrites, and the cache's bounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![recursion_limit = "256"]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use dynamo_es::testing::aggregates::{BankAccount, BankCommand};
use dynamo_es::testing::costs::{Costs, Meter};
use dynamo_es::testing::{dynamodb, unique_name, TestTables};
use dynamo_es::{execute_with_retry, DynamoStore, HotCache, SnapshotPolicy};

type Cqrs = CqrsFramework<BankAccount, DynamoStore<BankAccount>>;

const POLICIES: [SnapshotPolicy; 3] = [
    SnapshotPolicy::Never,
    SnapshotPolicy::Every(3),
    SnapshotPolicy::Always,
];

fn big_cache() -> HotCache {
    HotCache::new(1_000, 1 << 24)
}

fn store(
    db: &TestTables,
    policy: SnapshotPolicy,
    cache: Option<&HotCache>,
) -> DynamoStore<BankAccount> {
    let store = DynamoStore::new(db.repository(), policy);
    match cache {
        Some(cache) => store.with_cache(cache.clone()),
        None => store,
    }
}

fn cqrs(store: DynamoStore<BankAccount>) -> Cqrs {
    CqrsFramework::new(store, vec![], ())
}

fn open() -> BankCommand {
    BankCommand::Open {
        owner: "ada".into(),
    }
}

fn deposit(cents: i64) -> BankCommand {
    BankCommand::Deposit {
        cents,
        description: format!("deposit of {cents}"),
    }
}

/// The aggregate replayed from all its events, with no cache and no snapshot.
async fn replayed(db: &TestTables, id: &str) -> BankAccount {
    store(db, SnapshotPolicy::Never, None)
        .load_aggregate(id)
        .await
        .unwrap()
        .aggregate
}

/// Stores on `db` whose requests `meter` counts.
/// Fresh tables, a meter, and the same tables seen through the meter.
async fn metered_tables() -> (TestTables, Meter, TestTables) {
    let db = dynamodb().await.unwrap();
    let meter = Meter::new();
    let metered = TestTables {
        client: meter.client(&db.client),
        ..db.clone()
    };
    (db, meter, metered)
}

/// A fresh cache, a framework whose store on `cached_on` uses it, and one
/// with no cache on `plain_on` (the same tables, or others such as the
/// unmetered ones).
fn cached_and_plain(
    cached_on: &TestTables,
    plain_on: &TestTables,
    policy: SnapshotPolicy,
) -> (HotCache, Cqrs, Cqrs) {
    let cache = big_cache();
    let cached = cqrs(store(cached_on, policy, Some(&cache)));
    (cache, cached, cqrs(store(plain_on, policy, None)))
}

async fn command_costs(cqrs: &Cqrs, meter: &Meter, id: &str, command: BankCommand) -> Costs {
    let (result, costs) = meter.measure(cqrs.execute(id, command)).await;
    result.unwrap();
    costs
}

#[tokio::test]
async fn a_hot_command_with_the_cache_is_one_round_trip_and_no_read() {
    let (db, meter, metered) = metered_tables().await;
    for policy in POLICIES {
        let (cache, cached, plain) = cached_and_plain(&metered, &metered, policy);
        let (hot, cold) = (unique_name("hot"), unique_name("cold"));
        // The first command loads from the table (an aggregate store reads
        // the head, then, finding none, the events).
        let first = command_costs(&cached, &meter, &hot, open()).await;
        let load = if policy == SnapshotPolicy::Always {
            2
        } else {
            1
        };
        assert_eq!(first.round_trips, load + 1, "{policy:?}: {first:?}");
        command_costs(&plain, &meter, &cold, open()).await;
        for cents in 1..=4 {
            let with = command_costs(&cached, &meter, &hot, deposit(cents)).await;
            assert_eq!(
                (with.round_trips, with.read_units),
                (1, 0.0),
                "{policy:?}: {with:?}"
            );
            assert_eq!(with.operations.len(), 1, "only the commit: {with:?}");
            let without = command_costs(&plain, &meter, &cold, deposit(cents)).await;
            assert_eq!(without.round_trips, 2, "{policy:?}: {without:?}");
            assert!(without.read_units >= 1.0, "{policy:?}: {without:?}");
            assert_eq!(with.write_units, without.write_units, "{policy:?}");
        }
        assert_eq!(cache.len(), 1);
        // What the cache served is what the table holds.
        let through_cache = store(&db, policy, Some(&cache))
            .load_aggregate(&hot)
            .await
            .unwrap();
        assert_eq!(through_cache.current_sequence, 5);
        assert_eq!(
            through_cache.aggregate,
            replayed(&db, &hot).await,
            "{policy:?}"
        );
        assert_eq!(through_cache.aggregate.balance_cents, 10);
    }
}

#[tokio::test]
async fn two_processes_alternating_on_one_aggregate_all_succeed_through_the_retry() {
    let db = dynamodb().await.unwrap();
    for policy in POLICIES {
        // Two "processes": a store and a cache each.
        let caches = [big_cache(), big_cache()];
        let processes = [
            cqrs(store(&db, policy, Some(&caches[0]))),
            cqrs(store(&db, policy, Some(&caches[1]))),
        ];
        let id = unique_name("shared");
        let mut attempts = Vec::new();
        for turn in 0..10_usize {
            let cents = i64::try_from(turn).unwrap();
            let command = if turn == 0 { open() } else { deposit(cents) };
            let used = execute_with_retry(&processes[turn % 2], &id, command, HashMap::new(), 3)
                .await
                .unwrap();
            attempts.push(used);
        }
        // From the third command on, each process's entry is one commit
        // behind: its first attempt conflicts, the retry reloads.
        assert_eq!(attempts, [1, 1, 2, 2, 2, 2, 2, 2, 2, 2], "{policy:?}");
        let replay = replayed(&db, &id).await;
        assert_eq!(replay.balance_cents, (1..10).sum::<i64>());
        assert_eq!(replay.statement.len(), 9);
        let last = store(&db, policy, Some(&caches[1]))
            .load_aggregate(&id)
            .await
            .unwrap();
        assert_eq!(
            (last.current_sequence, &last.aggregate),
            (10, &replay),
            "{policy:?}"
        );
        let fresh = store(&db, policy, None).load_aggregate(&id).await.unwrap();
        assert_eq!(
            (fresh.current_sequence, fresh.aggregate),
            (10, replay),
            "{policy:?}"
        );
    }
}

#[tokio::test]
async fn a_stale_entry_conflicts_and_is_dropped_never_overwriting() {
    let (db, meter, metered) = metered_tables().await;
    for policy in POLICIES {
        let (cache, cached, other) = cached_and_plain(&metered, &db, policy);
        let id = unique_name("stale");
        cached.execute(&id, open()).await.unwrap();
        cached.execute(&id, deposit(100)).await.unwrap();
        other.execute(&id, deposit(5)).await.unwrap();
        assert_eq!(cache.len(), 1);
        // The cache still holds sequence 2: the commit at 3 conflicts,
        // without a load, and drops the entry.
        let (result, costs) = meter.measure(cached.execute(&id, deposit(7))).await;
        assert!(
            matches!(result, Err(AggregateError::AggregateConflict)),
            "{policy:?}: {result:?}"
        );
        // Under an aggregate store, a second request tries to remove the
        // head's claim, in case the other writer left it (it did not).
        let trips = if policy == SnapshotPolicy::Always {
            2
        } else {
            1
        };
        assert_eq!(
            (costs.round_trips, costs.read_units),
            (trips, 0.0),
            "{costs:?}"
        );
        assert!(cache.is_empty(), "{policy:?}: the conflict drops the entry");
        let replay = replayed(&db, &id).await;
        assert_eq!(replay.balance_cents, 105, "{policy:?}: nothing overwritten");
        // The retry reloads from the table and commits on top of event 3.
        let (used, costs) = meter
            .measure(execute_with_retry(
                &cached,
                &id,
                deposit(7),
                HashMap::new(),
                2,
            ))
            .await;
        assert_eq!(used.unwrap(), 1, "the entry is gone: no conflict");
        assert_eq!(costs.round_trips, 2, "{policy:?}: {costs:?}");
        let replay = replayed(&db, &id).await;
        assert_eq!(replay.balance_cents, 112);
        let through_cache = store(&db, policy, Some(&cache))
            .load_aggregate(&id)
            .await
            .unwrap();
        assert_eq!(
            (through_cache.current_sequence, through_cache.aggregate),
            (4, replay)
        );
    }
}

/// Round trips a load of `id` through `store` takes (0: served by the cache).
async fn load_round_trips(store: &DynamoStore<BankAccount>, meter: &Meter, id: &str) -> usize {
    let (loaded, costs) = meter.measure(store.load_aggregate(id)).await;
    loaded.unwrap();
    costs.round_trips
}

#[tokio::test]
async fn entries_and_bytes_evict_the_least_recently_used_and_max_age_expires() {
    let (_db, meter, metered) = metered_tables().await;
    let policy = SnapshotPolicy::Always;
    // Ids of one length and the same command: entries of one size.
    let base = unique_name("bounds");
    let ids = |section: usize| -> Vec<String> {
        (0..3).map(|i| format!("{base}-s{section}-{i}")).collect()
    };
    let run = |cache: &HotCache, ids: &[String]| {
        let cqrs = cqrs(store(&metered, policy, Some(cache)));
        let ids = ids.to_vec();
        async move {
            for id in &ids {
                cqrs.execute(id, open()).await.unwrap();
            }
        }
    };

    // By entries: a, b, c into two entries; a was least recently used.
    let cache = HotCache::new(2, 1 << 24);
    let loads = store(&metered, policy, Some(&cache));
    let section = ids(1);
    run(&cache, &section).await;
    assert_eq!(cache.len(), 2);
    let one = cache.bytes() / 2;
    assert_eq!(
        load_round_trips(&loads, &meter, &section[0]).await,
        1,
        "evicted"
    );
    assert_eq!(load_round_trips(&loads, &meter, &section[1]).await, 0);
    assert_eq!(load_round_trips(&loads, &meter, &section[2]).await, 0);

    // By bytes: room for two entries of this size, not three.
    let cache = HotCache::new(100, one * 3 - 1);
    let loads = store(&metered, policy, Some(&cache));
    let section = ids(2);
    run(&cache, &section).await;
    assert_eq!((cache.len(), cache.bytes()), (2, one * 2));
    assert_eq!(
        load_round_trips(&loads, &meter, &section[0]).await,
        1,
        "evicted"
    );
    assert_eq!(load_round_trips(&loads, &meter, &section[2]).await, 0);

    // A state larger than the whole cache is never kept.
    let cache = HotCache::new(100, one - 1);
    run(&cache, &ids(3)).await;
    assert!(cache.is_empty());

    // By age: an entry is used only while younger than the maximum age.
    let cache = big_cache().with_max_age(Duration::ZERO);
    let loads = store(&metered, policy, Some(&cache));
    let section = ids(4);
    run(&cache, &section).await;
    assert_eq!(cache.len(), 3);
    assert_eq!(
        load_round_trips(&loads, &meter, &section[0]).await,
        1,
        "expired"
    );
    assert_eq!(cache.len(), 2, "the expired entry is dropped");
    let cache = big_cache().with_max_age(Duration::from_secs(3600));
    let loads = store(&metered, policy, Some(&cache));
    let section = ids(5);
    run(&cache, &section).await;
    assert_eq!(load_round_trips(&loads, &meter, &section[0]).await, 0);
}

#[tokio::test]
async fn hits_misses_and_conflicts_are_traced() {
    let db = dynamodb().await.unwrap();
    let (_, cached, other) = cached_and_plain(&db, &db, SnapshotPolicy::Always);
    let id = unique_name("traced");
    let (logs, guard) = common::capture(tracing::Level::DEBUG, true);
    cached.execute(&id, open()).await.unwrap(); // a miss
    cached.execute(&id, deposit(1)).await.unwrap(); // a hit
    other.execute(&id, deposit(2)).await.unwrap(); // no cache
                                                   // A hit, a conflict that drops the entry, a retry that misses.
    let attempts = execute_with_retry(&cached, &id, deposit(3), HashMap::new(), 2)
        .await
        .unwrap();
    drop(guard);
    assert_eq!(attempts, 2);
    let text = logs.text();
    let events = |needle: &str| logs.lines_with(needle).len();
    assert_eq!(events("hot cache miss"), 2, "{text}");
    assert_eq!(events("hot cache hit"), 2, "{text}");
    assert_eq!(events("hot cache stored"), 3, "{text}");
    let dropped = logs.lines_with("hot cache entry dropped after a failed commit");
    assert_eq!(dropped.len(), 1, "{text}");
    assert!(dropped[0].contains("conflict=true"), "{}", dropped[0]);
    assert_eq!(
        events("command conflicted; reloading and retrying"),
        1,
        "{text}"
    );
    // The load span records the lookup: hit, miss, or off without a cache.
    let closed: Vec<String> = logs
        .lines_with("dynamo_es::store: close")
        .into_iter()
        .filter(|line| line.contains("dynamo_es.load{"))
        .collect();
    let with = |value: &str| {
        closed
            .iter()
            .filter(|line| {
                line.contains(&format!("cache={value}"))
                    || line.contains(&format!("cache=\"{value}\""))
            })
            .count()
    };
    assert_eq!(
        (with("miss"), with("hit"), with("off")),
        (2, 2, 1),
        "{text}"
    );
}

/// How many times a `Tally` state was deserialized (decoded), all tests.
static DECODED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn counted<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    DECODED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    <i64 as serde::Deserialize>::deserialize(deserializer)
}

/// An aggregate that counts its decodings.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Tally {
    #[serde(deserialize_with = "counted")]
    total: i64,
}

dynamo_es::command_aggregate!(Tally, "Tally", i64, common::AccountEvent, common::AccountError,
    handle(self, amount, sink) {
        sink.write(common::AccountEvent::Deposited { amount }, self)
            .await;
        Ok(())
    }
    apply(self, event) {
        if let common::AccountEvent::Deposited { amount } = event {
            self.total += amount;
        }
    }
);

#[tokio::test]
async fn a_hot_command_decodes_its_state_once() {
    let db = dynamodb().await.unwrap();
    for policy in POLICIES {
        let cache = big_cache();
        let store = DynamoStore::<Tally>::new(db.repository(), policy).with_cache(cache.clone());
        let cqrs = CqrsFramework::new(store, vec![], ());
        let id = unique_name("decodes");
        cqrs.execute(&id, 1).await.unwrap();
        for amount in 2..=4 {
            let before = DECODED.load(std::sync::atomic::Ordering::SeqCst);
            cqrs.execute(&id, amount).await.unwrap();
            let decoded = DECODED.load(std::sync::atomic::Ordering::SeqCst) - before;
            // The commit decodes the cached state it started from; the hit
            // takes the state the last commit decoded.
            assert_eq!(decoded, 1, "{policy:?}, command {amount}");
        }
        let loaded = DynamoStore::<Tally>::new(db.repository(), policy)
            .load_aggregate(&id)
            .await
            .unwrap();
        assert_eq!((loaded.current_sequence, loaded.aggregate.total), (4, 10));
    }
}
