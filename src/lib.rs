//! # dynamo-es
//!
//! A DynamoDB event store for [cqrs-es](https://docs.rs/cqrs-es) 0.5, a drop-in
//! replacement for the upstream `dynamo-es` crate: same tables, attribute
//! names and key format, with complete reads, correct snapshots, chunked
//! large aggregates, exact limit checks and a codec layer (JSON, MessagePack,
//! zstd).
//!
//! ## Quick start
//!
//! `Cargo.toml`. On crates.io, `dynamo-es = "0.5"` is the upstream crate, not
//! this one: until 0.6 is published, depend on this repository (pin a commit
//! with `rev = "..."`) or on a local checkout.
//!
//! ```toml
//! [dependencies]
//! dynamo-es = { git = "https://github.com/dynamo-es/dynamo-es" }
//! # or a checkout: dynamo-es = { path = "../dynamo-es" }
//! # once 0.6 is published: dynamo-es = "0.6"
//! cqrs-es = "0.5"
//! aws-config = "1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/main.rs`: an aggregate, its tables, one command.
//!
//! ```no_run
//! use cqrs_es::event_sink::EventSink;
//! use cqrs_es::{Aggregate, DomainEvent};
//! use dynamo_es::aws_sdk_dynamodb::Client;
//! use dynamo_es::{create_event_tables, dynamodb_snapshot_cqrs, DynamoCqrs};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! struct Account {
//!     balance: i64,
//! }
//!
//! enum AccountCommand {
//!     Deposit { amount: i64 },
//! }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! enum AccountEvent {
//!     Deposited { amount: i64 },
//! }
//!
//! impl DomainEvent for AccountEvent {
//!     fn event_type(&self) -> String {
//!         "Deposited".to_string()
//!     }
//!     fn event_version(&self) -> String {
//!         "1.0".to_string()
//!     }
//! }
//!
//! #[derive(Debug)]
//! struct AccountError(String);
//!
//! impl std::fmt::Display for AccountError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str(&self.0)
//!     }
//! }
//!
//! impl std::error::Error for AccountError {}
//!
//! impl Aggregate for Account {
//!     const TYPE: &'static str = "Account";
//!     type Command = AccountCommand;
//!     type Event = AccountEvent;
//!     type Error = AccountError;
//!     type Services = ();
//!
//!     async fn handle(
//!         &mut self,
//!         command: AccountCommand,
//!         _services: &(),
//!         sink: &EventSink<Self>,
//!     ) -> Result<(), AccountError> {
//!         match command {
//!             AccountCommand::Deposit { amount } if amount > 0 => {
//!                 sink.write(AccountEvent::Deposited { amount }, self).await;
//!                 Ok(())
//!             }
//!             AccountCommand::Deposit { .. } => Err(AccountError("deposit a positive amount".into())),
//!         }
//!     }
//!
//!     fn apply(&mut self, event: AccountEvent) {
//!         match event {
//!             AccountEvent::Deposited { amount } => self.balance += amount,
//!         }
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     match run().await {
//!         Ok(()) => std::process::ExitCode::SUCCESS,
//!         Err(err) => {
//!             // Display: what failed, on which table, and the fix (`?` out of
//!             // main would print the Debug form, many times longer).
//!             eprintln!("error: {err}");
//!             std::process::ExitCode::FAILURE
//!         }
//!     }
//! }
//!
//! async fn run() -> Result<(), Box<dyn std::error::Error>> {
//!     // Region, credentials and endpoint from the usual places: the environment
//!     // (`dynamo-es local` prints what to export to run against it on your machine),
//!     // ~/.aws, SSO or an instance role.
//!     let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//!     let client = Client::new(&config);
//!
//!     // Checks the key schemas of existing tables, creates missing ones, waits for ACTIVE.
//!     create_event_tables(&client, "Events", "Snapshots").await?;
//!     println!("tables Events and Snapshots are ready");
//!
//!     // A snapshot every 50 events; no queries; no services.
//!     let cqrs: DynamoCqrs<Account> = dynamodb_snapshot_cqrs(client, vec![], 50, ());
//!     cqrs.execute("account-17", AccountCommand::Deposit { amount: 100 })
//!         .await?;
//!     println!("deposited 100 into account-17: one Deposited event stored in Events");
//!     Ok(())
//! }
//! ```
//!
//! [`aws_sdk_dynamodb`] is the SDK this crate is built on, re-exported: use it
//! rather than a dependency of your own, so the client's version is the one
//! the crate expects. [`create_event_tables`] needs `dynamodb:DescribeTable`
//! when the tables exist, and `dynamodb:CreateTable` only to create missing
//! ones (see [`tables`]). Without cargo features, payloads are plain JSON,
//! readable by upstream `dynamo-es`. `compression` or `msgpack`, enabled by
//! any crate in the build, changes [`Codec::default()`] for every repository
//! in the program, the constructors' included, to formats upstream cannot
//! read: during a rolling upgrade from upstream, set [`Codec::json()`]
//! explicitly until no upstream reader is left.
//!
//! The constructors [`dynamodb_cqrs`], [`dynamodb_snapshot_cqrs`] and
//! [`dynamodb_aggregate_cqrs`] keep upstream's names and signatures. For other
//! tables, a codec or upcasters, compose [`DynamoEventRepository`] and
//! [`DynamoStore`] yourself. Views use [`DynamoViewRepository`].
//!
//! A store with a [`HotCache`] ([`DynamoStore::with_cache`]) keeps the
//! state of the aggregates it commits, so a command on a hot aggregate sends
//! only its commit; run commands with [`execute_with_retry`] so a stale
//! entry costs a retry rather than an `AggregateConflict`.
//!
//! ## Feature flags
//!
#![doc = include_str!("../docs/tables/features.md")]
//!
//! [`Codec::default()`] is zstd (level 1, chosen by measurement: see
//! [`codec::DEFAULT_COMPRESSION_LEVEL`]) if `compression` is on, over
//! MessagePack if `msgpack` is on, else JSON. Reads accept every format
//! whatever the codec: stored payloads describe their own format, and every
//! codec encodes one data model exactly (see [`codec`]).
//!
//! ## Small events: zstd dictionaries
//!
//! A few hundred bytes of event JSON do not compress on their own. With the
//! `compression` feature, a zstd dictionary trained on an aggregate type's
//! own events (`dynamo-es dictionary train`, or `DictionaryStore::train`)
//! stored 3.4× fewer payload bytes and cost half the read units of a replay
//! on the crate's fixture events (`docs/BENCHMARKS.md`). Dictionaries live
//! in reserved items of the snapshots table, are immutable, and are named by
//! id in every payload's zstd frame, so readers fetch them by id (once per
//! process) and a store that never trains one pays nothing. How to train,
//! roll one out and retire it: the `dictionary` module.
//!
//! ## DynamoDB limits
//!
#![doc = include_str!("../docs/tables/limits.md")]
//!
//! Every limit error names the aggregate, what is too big, its size and the
//! limit, and nothing is written. Sizes follow DynamoDB's rules ([`size`]).
//!
//! ## Projections
//!
//! `CqrsFramework` runs its queries in the process that committed, right
//! after the commit: if that process dies in between, or a view write
//! fails, the view misses those events for good. With a stream on the events
//! table ([`tables::TableOptions::with_stream`], [`tables::enable_stream`]),
//! [`projection`] feeds projections from the table's DynamoDB Stream
//! instead, through a long-running [`Projector`](projection::Projector) or
//! AWS Lambda (feature `lambda`):
//!
#![doc = include_str!("../docs/tables/projections.md")]
//!
//! * **In-process queries** for what may miss an event or is cheap to
//!   recompute, or where the caller must read its own write at once.
//! * **The projector** for views that must not miss events, in long-lived
//!   processes: several share the shards through leases, its lag is
//!   readable, and a [`Rebuild`](projection::Rebuild) hands over to it.
//! * **Lambda** without a long-running process; its stream reads are free.
//!
//! Views keyed by aggregate id get an exactly-once effect through
//! [`ViewProjection`](projection::ViewProjection); views fed by many
//! aggregates are at-least-once (keep the last sequence applied per
//! aggregate in the view to deduplicate). Outside Lambda, every `GetRecords`
//! call is a billed Streams read request unit; a call returns at most 1,000
//! records or 1 MB, and a shard serves at most 5 calls a second, so put
//! several projections in one [`Dispatcher`](projection::Dispatcher).
//! Streams keep records 24 hours: a projector that falls further behind
//! stops with [`projection::Error::Trimmed`], and Lambda drops the expired
//! records; either way [`Rebuild`](projection::Rebuild) replays the events
//! table and hands over to the stream with no gap. The [`projection`]
//! module has an example and the guarantees in full.
//!
//! ## Migrating from upstream `dynamo-es`
//!
//! * Tables and items need no change: upstream's items load, and items
//!   written with [`Codec::json()`] load in upstream. Compressed or
//!   MessagePack items and chunked snapshots are readable by this crate only.
//! * [`DynamoCqrs<A>`] is now `CqrsFramework<A, DynamoStore<A>>` rather than
//!   `CqrsFramework<A, PersistedEventStore<..>>`: cqrs-es 0.5's
//!   `PersistedEventStore` applies events twice when it builds snapshots under
//!   `CqrsFramework`. Replace hand-built `PersistedEventStore::new_*_store(repo)`
//!   with [`DynamoStore::new_event_store`], [`DynamoStore::new_snapshot_store`]
//!   or [`DynamoStore::new_aggregate_store`].
//! * Snapshots already stored are not trusted. Upstream 0.5.0 under
//!   `CqrsFramework` writes snapshots whose state holds events applied
//!   twice, so [`DynamoStore`] uses a snapshot's state only if its head item
//!   carries [`item::SNAPSHOT_WRITER`] = `"dynamo-es"`, which it writes on
//!   every snapshot it stores (single-item and chunked; upstream ignores the
//!   attribute, and `dynamo-es recode` keeps it). For any other snapshot it
//!   rebuilds the aggregate from all its events, keeps the stored
//!   `CurrentSnapshot`, and its next snapshot write (the next commit in
//!   aggregate mode, the next multiple of `n` in snapshot mode) replaces the
//!   old snapshot under that version's condition. Nothing needs migrating;
//!   the first loads after the upgrade replay full histories once.
//!   Snapshots written through cqrs-es's `PersistedEventStore` over
//!   [`DynamoEventRepository`] are not marked either. The cqrs-es trait
//!   method `PersistedEventRepository::get_snapshot` still returns every
//!   snapshot as stored, marked or not, as `PersistedEventStore` expects.
//! * `DynamoAggregateError` is replaced by [`Error`]; errors still convert into
//!   `PersistenceError` and `AggregateError`.
//! * Without `features = ["compression"]` (or `msgpack`), new writes stay plain
//!   JSON, readable by upstream during a rolling upgrade. To go back to
//!   upstream, `dynamo-es recode --codec upstream` (or
//!   [`recode::Recoder::to_upstream`]) rewrites every payload as plain JSON
//!   in one item and names what upstream could not read.
//! * MessagePack payloads written by dynamo-es 0.5 (tag `0xC1 0x01`) stay
//!   readable into their types; new ones use the data model's MessagePack
//!   (tag `0xC1 0x02`), which every read path reads the same way.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod attempt;
mod clients;
pub mod codec;
mod cqrs;
#[cfg(feature = "compression")]
#[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
pub mod dictionary;
#[cfg(feature = "encryption")]
#[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
pub mod encryption;
mod error;
mod event_repository;
pub mod expiry;
pub mod intercept;
pub mod item;
mod outcome;
pub mod projection;
pub mod recode;
pub mod size;
pub mod slice;
mod snapshot;
mod store;
mod stream;
pub mod tables;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod utc;
mod view_repository;

/// The guide's chapters (`docs/guide/`) as doc tests: every Rust block in
/// them compiles (and runs, unless marked `no_run`) under `cargo test --doc`
/// with every feature, which the blocks between them use. Under other
/// feature sets the chapters are not compiled at all.
#[cfg(all(
    doctest,
    feature = "test-util",
    feature = "msgpack",
    feature = "compression",
    feature = "cli",
    feature = "lambda"
))]
mod guide {
    #[doc = include_str!("../docs/guide/getting-started.md")]
    pub struct GettingStarted;
    #[doc = include_str!("../docs/guide/testing.md")]
    pub struct Testing;
    #[doc = include_str!("../docs/guide/codecs-and-limits.md")]
    pub struct CodecsAndLimits;
    #[doc = include_str!("../docs/guide/snapshots.md")]
    pub struct Snapshots;
    #[doc = include_str!("../docs/guide/projections.md")]
    pub struct Projections;
    #[doc = include_str!("../docs/guide/feeds.md")]
    pub struct Feeds;
    #[doc = include_str!("../docs/guide/recode-and-dictionaries.md")]
    pub struct RecodeAndDictionaries;
    #[doc = include_str!("../docs/guide/operations.md")]
    pub struct Operations;
    #[doc = include_str!("../docs/guide/upgrading.md")]
    pub struct Upgrading;
    #[doc = include_str!("../docs/guide/contributing.md")]
    pub struct Contributing;
    #[cfg(feature = "encryption")]
    #[doc = include_str!("../docs/guide/forgetting.md")]
    pub struct Forgetting;
}

/// The AWS SDK for DynamoDB this crate is built on (the version it was
/// compiled against), re-exported so an application builds its
/// [`Client`](aws_sdk_dynamodb::Client) from the same version instead of
/// depending on `aws-sdk-dynamodb` separately and risking a mismatch.
pub use aws_sdk_dynamodb;
/// The AWS SDK for DynamoDB Streams the [`projection`] module reads the
/// events table's stream with, re-exported for the same reason: build the
/// [`Projector`](projection::Projector)'s client from it.
pub use aws_sdk_dynamodbstreams;
pub use clients::Clients;
pub use codec::Codec;
pub use cqrs::{dynamodb_aggregate_cqrs, dynamodb_cqrs, dynamodb_snapshot_cqrs, DynamoCqrs};
pub use error::{BoxError, Error, Limit, Result};
pub use event_repository::{
    DeleteOptions, Deletion, DeletionPlan, DynamoEventRepository, DEFAULT_EVENT_TABLE,
    DEFAULT_SCAN_SEGMENTS, DEFAULT_SNAPSHOT_TABLE, DEFAULT_STREAMING_CHANNEL_SIZE,
};
pub use store::{
    execute_with_retry, DynamoAggregateContext, DynamoStore, HotCache, ParseReadConsistencyError,
    ReadConsistency, SnapshotPolicy,
};
pub use tables::{create_event_tables, create_view_table};
pub use view_repository::DynamoViewRepository;
