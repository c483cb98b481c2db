//! The store workloads, for upstream `dynamo-es` 0.5.0 and for this crate
//! under each codec: `benches/store.rs` times them and
//! `tests/bench_costs.rs` asserts what they cost.
//!
//! Every implementation runs on its own fresh tables, through a client
//! carrying a [`Meter`], so capacity units and round trips are measured the
//! same way on both sides (upstream never asks for its consumed capacity).
//! Upstream runs under cqrs-es's own `PersistedEventStore`, as its users run
//! it; this crate under `DynamoStore`.
//!
//! **Invariant:** both sides store the same events, with the same metadata
//! and aggregate ids of the same length, and each side's snapshots are
//! written by its own store, so their costs differ only by how each stores
//! and reads them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use dynamo_es::testing::aggregates::{Ledger, LedgerEvent};
use dynamo_es::testing::costs::{Costs, Meter};
use dynamo_es::testing::fixtures::small_event;
use dynamo_es::testing::{EmbeddedDynamo, TestTables};
use dynamo_es::{
    Codec, DynamoAggregateContext, DynamoEventRepository, DynamoStore, SnapshotPolicy,
};

/// Upstream's repository.
pub type UpstreamRepository = upstream_dynamo_es::DynamoEventRepository;

/// The snapshot interval of the snapshotted-load workload.
pub const SNAPSHOT_EVERY: usize = 50;
/// Events after the snapshot in the snapshotted-load workload.
pub const AFTER_SNAPSHOT: usize = 30;
/// Events per seeding commit.
pub const SEED_COMMIT: usize = 10;

/// An implementation under test.
#[derive(Debug, Clone, PartialEq)]
pub enum Implementation {
    /// Upstream `dynamo-es` 0.5.0 (JSON only).
    Upstream,
    /// This crate, with a codec.
    Ours(Codec),
}

impl Implementation {
    /// `upstream`, or the codec's name.
    pub fn name(&self) -> String {
        match self {
            Implementation::Upstream => "upstream".to_string(),
            Implementation::Ours(codec) => codec.name(),
        }
    }
}

/// Upstream, then this crate under every codec the build has, compressing
/// ones at the default zstd level ([`Codec::available`]).
pub fn implementations() -> Vec<Implementation> {
    std::iter::once(Implementation::Upstream)
        .chain(Codec::available().into_iter().map(Implementation::Ours))
        .collect()
}

/// `count` postings, each one of the fixtures' realistic small events,
/// seeded from `first_seed`. `Ledger` only counts them, so its snapshot
/// keeps its size from commit to commit.
pub fn events(first_seed: u64, count: usize) -> Vec<LedgerEvent> {
    (first_seed..)
        .take(count)
        .map(|seed| LedgerEvent::Posted(small_event(seed)))
        .collect()
}

/// The metadata every command carries.
pub fn metadata() -> HashMap<String, String> {
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
pub fn fresh_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    assert_eq!(prefix.len(), 3);
    format!("{prefix}-{:08}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One implementation's tables, metered client and stores.
pub struct Setup {
    /// What runs here.
    pub implementation: Implementation,
    /// The tables (the client is not metered).
    pub tables: TestTables,
    /// Meters every store's requests.
    pub meter: Meter,
    metered: Client,
    // Last, so the clients go before the server stops.
    _server: Option<EmbeddedDynamo>,
}

/// A store of either side.
pub enum Store {
    /// cqrs-es's store over upstream's repository.
    Upstream(PersistedEventStore<UpstreamRepository, Ledger>),
    /// This crate's store.
    Ours(DynamoStore<Ledger>),
}

/// A loaded aggregate of either side.
pub enum Context {
    /// Loaded by upstream.
    Upstream(EventStoreAggregateContext<Ledger>),
    /// Loaded by this crate.
    Ours(DynamoAggregateContext<Ledger>),
}

impl Context {
    /// The last event sequence applied.
    pub fn sequence(&self) -> usize {
        match self {
            Context::Upstream(context) => context.current_sequence,
            Context::Ours(context) => context.current_sequence,
        }
    }

    /// The loaded aggregate.
    pub fn aggregate(&self) -> &Ledger {
        match self {
            Context::Upstream(context) => &context.aggregate,
            Context::Ours(context) => &context.aggregate,
        }
    }
}

fn failed(err: AggregateError<std::convert::Infallible>) -> String {
    err.to_string()
}

impl Store {
    /// `load_aggregate`.
    pub async fn load(&self, id: &str) -> Result<Context, String> {
        match self {
            Store::Upstream(store) => store.load_aggregate(id).await.map(Context::Upstream),
            Store::Ours(store) => store.load_aggregate(id).await.map(Context::Ours),
        }
        .map_err(failed)
    }

    /// `commit` of `events` with [`metadata`] after `context`.
    pub async fn commit(&self, events: Vec<LedgerEvent>, context: Context) -> Result<(), String> {
        match (self, context) {
            (Store::Upstream(store), Context::Upstream(context)) => {
                store.commit(events, context, metadata()).await.map(drop)
            }
            (Store::Ours(store), Context::Ours(context)) => {
                store.commit(events, context, metadata()).await.map(drop)
            }
            _ => panic!("a context goes back to the store that loaded it"),
        }
        .map_err(failed)
    }

    /// Loads `id` and commits `events` after it.
    pub async fn load_and_commit(&self, id: &str, events: Vec<LedgerEvent>) -> Result<(), String> {
        let context = self.load(id).await?;
        self.commit(events, context).await
    }
}

impl Setup {
    /// `implementation` on `tables`, keeping `server` (if any) running as
    /// long as the setup lives.
    pub fn new(
        implementation: Implementation,
        tables: TestTables,
        server: Option<EmbeddedDynamo>,
    ) -> Self {
        let meter = Meter::new();
        Setup {
            implementation,
            metered: meter.client(&tables.client),
            meter,
            tables,
            _server: server,
        }
    }

    /// The implementation's store under `policy` (upstream: cqrs-es's event,
    /// snapshot or aggregate store).
    pub fn store(&self, policy: SnapshotPolicy) -> Store {
        match &self.implementation {
            Implementation::Upstream => {
                let repo = self.upstream_repository();
                Store::Upstream(match policy {
                    SnapshotPolicy::Never => PersistedEventStore::new_event_store(repo),
                    SnapshotPolicy::Every(n) if n > 0 => {
                        PersistedEventStore::new_snapshot_store(repo, n)
                    }
                    _ => PersistedEventStore::new_aggregate_store(repo),
                })
            }
            Implementation::Ours(codec) => {
                let repo = DynamoEventRepository::new(self.metered.clone())
                    .with_tables(&self.tables.events, &self.tables.snapshots)
                    .with_codec(codec.clone());
                Store::Ours(DynamoStore::new(repo, policy))
            }
        }
    }

    fn upstream_repository(&self) -> UpstreamRepository {
        UpstreamRepository::new(self.metered.clone())
            .with_tables(&self.tables.events, &self.tables.snapshots)
    }

    /// Writes `state` as `id`'s snapshot, version 1, with its first event,
    /// through the implementation's repository (`persist`), as a store
    /// whose aggregate reached `state` in one command would.
    pub async fn persist_snapshot(&self, id: &str, state: &Ledger) -> Result<(), String> {
        let first = cqrs_es::persist::SerializedEvent {
            aggregate_id: id.to_string(),
            sequence: 1,
            aggregate_type: Ledger::TYPE.to_string(),
            event_type: "Imported".to_string(),
            event_version: "1.0".to_string(),
            payload: serde_json::to_value(LedgerEvent::Imported { entries: vec![] }).unwrap(),
            metadata: serde_json::to_value(metadata()).unwrap(),
        };
        let update = Some((id.to_string(), serde_json::to_value(state).unwrap(), 1));
        let first = std::slice::from_ref(&first);
        match &self.implementation {
            Implementation::Upstream => {
                self.upstream_repository()
                    .persist::<Ledger>(first, update)
                    .await
            }
            Implementation::Ours(codec) => {
                DynamoEventRepository::new(self.metered.clone())
                    .with_tables(&self.tables.events, &self.tables.snapshots)
                    .with_codec(codec.clone())
                    .persist::<Ledger>(first, update)
                    .await
            }
        }
        .map_err(|err| err.to_string())
    }

    /// Commits `total` events to `id` through `store`, [`SEED_COMMIT`] per
    /// command.
    pub async fn seed(&self, store: &Store, id: &str, total: usize) {
        let all = events(0, total);
        for batch in all.chunks(SEED_COMMIT) {
            store.load_and_commit(id, batch.to_vec()).await.unwrap();
        }
    }

    /// What committing `count` events to a fresh aggregate of an event
    /// store costs (the empty load before it is not metered).
    pub async fn commit_costs(&self, count: usize) -> Costs {
        let store = self.store(SnapshotPolicy::Never);
        let context = store.load(&fresh_id("cst")).await.unwrap();
        let (done, costs) = self
            .meter
            .measure(store.commit(events(1000, count), context))
            .await;
        done.unwrap();
        costs
    }

    /// What loading `id` through `store` costs, checking that it reached
    /// sequence `expected`.
    pub async fn load_costs(&self, store: &Store, id: &str, expected: usize) -> Costs {
        let (context, costs) = self.meter.measure(store.load(id)).await;
        assert_eq!(
            context.unwrap().sequence(),
            expected,
            "{}",
            self.implementation.name()
        );
        costs
    }

    /// A fresh aggregate of `SNAPSHOT_EVERY + AFTER_SNAPSHOT` events,
    /// committed through `store` (whose policy snapshots it).
    pub async fn snapshotted(&self, store: &Store) -> String {
        let id = fresh_id("snp");
        self.seed(store, &id, SNAPSHOT_EVERY + AFTER_SNAPSHOT).await;
        id
    }
}
