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
//! ```no_run
//! # use cqrs_es::{Aggregate, Query};
//! # async fn demo<A: Aggregate>(services: A::Services, command: A::Command) -> Result<(), Box<dyn std::error::Error>>
//! # where A::Error: 'static {
//! use aws_sdk_dynamodb::Client;
//! use dynamo_es::{create_event_tables, dynamodb_snapshot_cqrs, DynamoCqrs};
//!
//! let config = aws_config::load_from_env().await;
//! let client = Client::new(&config);
//! create_event_tables(&client, "Events", "Snapshots").await?; // idempotent
//!
//! let queries: Vec<Box<dyn Query<A>>> = vec![];
//! let cqrs: DynamoCqrs<A> = dynamodb_snapshot_cqrs(client, queries, 50, services);
//! cqrs.execute("account-17", command).await?;
//! # Ok(()) }
//! ```
//!
//! The constructors [`dynamodb_cqrs`], [`dynamodb_snapshot_cqrs`] and
//! [`dynamodb_aggregate_cqrs`] keep upstream's names and signatures. For other
//! tables, a codec or upcasters, compose [`DynamoEventRepository`] and
//! [`DynamoStore`] yourself. Views use [`DynamoViewRepository`].
//!
//! ## Feature flags
//!
#![doc = include_str!("../docs/tables/features.md")]
//!
//! [`Codec::default()`] is zstd (level 3) if `compression` is on, over
//! MessagePack if `msgpack` is on, else JSON. Reads accept every format
//! whatever the codec: stored payloads describe their own format, and every
//! codec encodes one data model exactly (see [`codec`]).
//!
//! ## DynamoDB limits
//!
#![doc = include_str!("../docs/tables/limits.md")]
//!
//! Every limit error names the aggregate, what is too big, its size and the
//! limit, and nothing is written. Sizes follow DynamoDB's rules ([`size`]).
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

pub mod codec;
mod cqrs;
mod error;
mod event_repository;
pub mod item;
pub mod recode;
pub mod size;
mod snapshot;
mod store;
mod stream;
pub mod tables;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod view_repository;

pub use codec::Codec;
pub use cqrs::{dynamodb_aggregate_cqrs, dynamodb_cqrs, dynamodb_snapshot_cqrs, DynamoCqrs};
pub use error::{BoxError, Error, Limit, Result};
pub use event_repository::{
    DynamoEventRepository, DEFAULT_EVENT_TABLE, DEFAULT_SNAPSHOT_TABLE,
    DEFAULT_STREAMING_CHANNEL_SIZE,
};
pub use store::{DynamoAggregateContext, DynamoStore, SnapshotPolicy};
pub use tables::{create_event_tables, create_view_table};
pub use view_repository::DynamoViewRepository;
