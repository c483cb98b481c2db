//! A model-based property test of the store (issue 21): random histories
//! of commands over several aggregates and tables (events+snapshots pairs,
//! repositories cloned with `with_tables`), on every codec of the build,
//! every snapshot policy (none, `DynamoStore` every n or always, cqrs-es's
//! `PersistedEventStore` with and without snapshots), with zstd
//! dictionaries (per event type or in the codec, and two tables holding
//! different dictionaries under one id), small decoded-size caps, process
//! restarts, fresh reader processes, recodes, and injected write faults,
//! checked against an in-memory model:
//!
//! * every load equals the replay of the committed events, and every
//!   committed payload reads back exactly on every path (typed, `Value`,
//!   snapshot, the projection decoder, and after a recode to another codec
//!   and back);
//! * no commit that reported success leaves its aggregate unloadable;
//! * a commit refused with a typed error leaves nothing behind, and a write
//!   that may have been applied is reported as `Error::Connection`.
//!
//! Seeded and reproducible: `MODEL_SEEDS=2000` runs more histories,
//! `MODEL_SEED=7` runs one (a failure prints its seed and that command).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![recursion_limit = "256"]

#[path = "store_model/aggregate.rs"]
mod aggregate;
#[path = "store_model/check.rs"]
mod check;
#[cfg(feature = "compression")]
#[path = "store_model/dictionaries.rs"]
mod dictionaries;
#[path = "store_model/faults.rs"]
mod faults;
#[path = "store_model/history.rs"]
mod history;
#[path = "store_model/model.rs"]
mod model;
#[path = "store_model/payloads.rs"]
mod payloads;
#[path = "store_model/seeds.rs"]
mod seeds;
#[path = "store_model/world.rs"]
mod world;

use seeds::run_seeds;

/// Histories in a plain `cargo test` run.
const DEFAULT_SEEDS: u64 = 200;

#[test]
fn model_histories() {
    seeds::runtime().block_on(run_seeds(&seeds::from_env(DEFAULT_SEEDS)));
}
