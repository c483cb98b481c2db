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

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::Client;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{AggregateError, EventStore};
use dynamo_es::testing::aggregates::{Ledger, LedgerEvent};
use dynamo_es::testing::costs::{Costs, Meter};
use dynamo_es::testing::fixtures::{small_event, snapshot_1_5_mb};
use dynamo_es::testing::{EmbeddedDynamo, TestTables};
use dynamo_es::{
    Codec, DynamoAggregateContext, DynamoEventRepository, DynamoStore, HotCache, ReadConsistency,
    SnapshotPolicy,
};

/// Upstream's repository.
pub type UpstreamRepository = upstream_dynamo_es::DynamoEventRepository;

/// The snapshot interval of the snapshotted-load workload.
pub const SNAPSHOT_EVERY: usize = 50;
/// Events after the snapshot in the snapshotted-load workload.
pub const AFTER_SNAPSHOT: usize = 30;
/// Events per seeding commit.
pub const SEED_COMMIT: usize = 10;
/// The `Imported` events that book the 1.5 MB ledger's entries: each under
/// DynamoDB's 400 KB item limit as plain JSON.
pub const LARGE_IMPORTS: usize = 6;

/// Commands in a hot command loop.
pub const HOT_COMMANDS: usize = 1000;
/// Aggregates the spread hot command loop goes round.
pub const HOT_AGGREGATES: usize = 100;
/// The policy of the hot command loops: an aggregate store, so a load costs
/// the same at the 1,000th command as at the first on both sides.
pub const HOT_POLICY: SnapshotPolicy = SnapshotPolicy::Always;

/// An implementation under test.
#[derive(Debug, Clone, PartialEq)]
pub enum Implementation {
    /// Upstream `dynamo-es` 0.5.0 (JSON only).
    Upstream,
    /// This crate, with a codec.
    Ours(Codec),
    /// This crate, with a codec and a [`HotCache`] on its stores.
    Cached(Codec),
    /// This crate, with a codec, reading the events eventually consistent
    /// ([`ReadConsistency::Eventual`]).
    Eventual(Codec),
}

impl Implementation {
    /// `upstream`, or the codec's name (`+cache` with the cache).
    pub fn name(&self) -> String {
        match self {
            Implementation::Upstream => "upstream".to_string(),
            Implementation::Ours(codec) => codec.name(),
            Implementation::Cached(codec) => format!("{}+cache", codec.name()),
            Implementation::Eventual(codec) => format!("{}+eventual", codec.name()),
        }
    }
}

/// The hot command loops' contenders: upstream, and this crate with the
/// `json` codec, without and with the cache.
pub fn hot_implementations() -> Vec<Implementation> {
    vec![
        Implementation::Upstream,
        Implementation::Ours(Codec::json()),
        Implementation::Cached(Codec::json()),
    ]
}

/// The snapshotted load's contenders: [`implementations`], then this
/// crate with the `json` codec reading the events eventually consistent,
/// as upstream reads the events after its snapshot.
pub fn snapshotted_implementations() -> Vec<Implementation> {
    let mut all = implementations();
    all.push(Implementation::Eventual(Codec::json()));
    all
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

/// The entries of the fixtures' 1.5 MB ledger ([`snapshot_1_5_mb`]) in
/// [`LARGE_IMPORTS`] `Imported` events: one command that makes an
/// aggregate of about 1.5 MB.
pub fn large_imports() -> Vec<LedgerEvent> {
    let ledger = snapshot_1_5_mb();
    let entries = ledger
        .get("entries")
        .and_then(serde_json::Value::as_array)
        .expect("the ledger fixture books entries");
    LedgerEvent::imports(entries, entries.len().div_ceil(LARGE_IMPORTS))
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
    /// The cache every store of a [`Implementation::Cached`] shares.
    cache: HotCache,
    // Last, so the clients go before the server stops.
    _server: Option<EmbeddedDynamo>,
}

/// A store of either side.
pub enum Store {
    /// cqrs-es's store over upstream's repository.
    Upstream(PersistedEventStore<UpstreamRepository, Ledger>),
    /// This crate's store (boxed: it is the larger).
    Ours(Box<DynamoStore<Ledger>>),
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

/// An error as one line: a refused transaction's code and message (the
/// SDK's error under cqrs-es's), else the error as it displays.
fn failed(err: AggregateError<std::convert::Infallible>) -> String {
    if let AggregateError::UnexpectedError(inner) = &err {
        if let Some(refused) = inner.downcast_ref::<SdkError<TransactWriteItemsError>>() {
            return format!(
                "{}: {}",
                refused.code().unwrap_or("unknown"),
                refused.message().unwrap_or_default()
            );
        }
    }
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
            cache: HotCache::new(10 * HOT_AGGREGATES, 64 << 20),
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
            Implementation::Ours(codec)
            | Implementation::Cached(codec)
            | Implementation::Eventual(codec) => {
                let repo = DynamoEventRepository::new(self.metered.clone())
                    .with_tables(&self.tables.events, &self.tables.snapshots)
                    .with_codec(codec.clone());
                let store = DynamoStore::new(repo, policy);
                Store::Ours(Box::new(match &self.implementation {
                    Implementation::Cached(_) => store.with_cache(self.cache.clone()),
                    Implementation::Eventual(_) => {
                        store.with_read_consistency(ReadConsistency::Eventual)
                    }
                    _ => store,
                }))
            }
        }
    }

    /// `count` hot commands through `store` (one event each, after a load),
    /// going round `ids` from the `first`-th command on.
    pub async fn hot_commands(&self, store: &Store, ids: &[String], first: usize, count: usize) {
        for n in first..first + count {
            let id = &ids[n % ids.len()];
            let seed = u64::try_from(n).unwrap();
            store.load_and_commit(id, events(seed, 1)).await.unwrap();
        }
    }

    /// `aggregates` fresh aggregates of one command each, committed through
    /// `store` (so a cache holds them): the hot loops' aggregates.
    pub async fn hot_aggregates(&self, store: &Store, aggregates: usize) -> Vec<String> {
        let ids: Vec<String> = (0..aggregates).map(|_| fresh_id("hot")).collect();
        self.hot_commands(store, &ids, 0, aggregates).await;
        ids
    }

    fn upstream_repository(&self) -> UpstreamRepository {
        UpstreamRepository::new(self.metered.clone())
            .with_tables(&self.tables.events, &self.tables.snapshots)
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
    /// store costs (the empty load before it is not metered), and the
    /// aggregate's id.
    pub async fn commit_costs(&self, count: usize) -> (String, Costs) {
        let store = self.store(SnapshotPolicy::Never);
        let id = fresh_id("cst");
        let context = store.load(&id).await.unwrap();
        let (done, costs) = self
            .meter
            .measure(store.commit(events(1000, count), context))
            .await;
        done.unwrap();
        (id, costs)
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
