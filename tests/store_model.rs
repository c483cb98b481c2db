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
//!   that may have been applied is reported as `Error::Connection`;
//! * with a `HotCache` on the writer (and other writers committing behind
//!   its back), a load through the cache is the model's state at its
//!   sequence, and a stale one only makes the next commit conflict, once;
//! * with `ReadConsistency::Eventual` on the writer over a stale replica
//!   (`StaleReads`), an eventually consistent load is the model's state at
//!   its sequence, behind only after a stale answer, and a commit from it
//!   conflicts once, never overwrites.
//!
//! Seeded and reproducible: `MODEL_SEEDS=2000` runs more histories,
//! `MODEL_SEED=7` runs one (a failure prints its seed and that command).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![recursion_limit = "256"]

#[path = "store_model/aggregate.rs"]
mod aggregate;
#[path = "store_model/cache.rs"]
mod cache;
#[path = "store_model/cases.rs"]
mod cases;
#[path = "store_model/check.rs"]
mod check;
#[cfg(feature = "compression")]
#[path = "store_model/dictionaries.rs"]
mod dictionaries;
#[path = "store_model/eventual.rs"]
mod eventual;
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

/// Plays a hand-written history; fails with its steps and first failure.
fn play(history: history::History) {
    let result = seeds::runtime().block_on(history.run());
    if let Err(err) = result {
        panic!("{err}\nhistory: {}", history.describe());
    }
}

/// Defect 8. Before the fix: "typed events of Model:a0: event 2 read back
/// as (2, Flat(FlatEvent { amount: 2, extra: {} }) ...), committed as
/// (2, Flat(FlatEvent { amount: 1, extra: {"amount": Number(2)} }) ...)".
#[test]
fn flattened_map_naming_a_field_is_refused_or_read_back_exactly() {
    play(cases::repeated_key());
}

/// Defect 10. Before the fix: "load of Model:a0: read failed: item
/// Model:a0#1: attribute Payload: corrupt json payload: recursion limit
/// exceeded".
#[test]
fn payload_nested_140_levels_is_refused_or_read_back() {
    play(cases::deep());
}

/// Defect 12, `PutItem`. Before the fix: "the commit was applied (1 event
/// items stored) but reported as a refusal, not as Error::Connection
/// (outcome unknown): PutItem on table ... failed: InternalServerError".
#[test]
fn applied_put_answered_only_by_5xx_is_outcome_unknown() {
    use faults::Attempt::*;
    play(cases::unknown_outcome(
        1,
        vec![AppliedServerError, ServerError, ServerError],
    ));
}

/// Defect 12, `TransactWriteItems`. Before the fix: "the commit was
/// applied (2 event items stored) but reported as a refusal ...:
/// TransactWriteItems ... throttled by DynamoDB after retries".
#[test]
fn applied_transaction_lost_then_throttled_is_outcome_unknown() {
    use faults::Attempt::*;
    play(cases::unknown_outcome(
        2,
        vec![AppliedLost, Throttled, Throttled],
    ));
}

/// A lone lost response of an applied write: the retry recognises its own
/// write (passes before and after the fixes).
#[test]
fn applied_write_whose_response_was_lost_commits_once() {
    use faults::Attempt::*;
    play(cases::unknown_outcome(1, vec![AppliedLost]));
    play(cases::unknown_outcome(3, vec![AppliedLost]));
}

/// Not a defect of this crate: cqrs-es 0.5's `PersistedEventStore` in
/// snapshot mode, given a commit that passes a snapshot boundary by more
/// events than the boundary (3 events, snapshots every 2), snapshots the
/// state at the boundary but hands the repository no sequence for it; the
/// repository (like upstream's and cqrs-es's own) records the commit's
/// last sequence, and loads then skip the events after the boundary:
/// "loaded Model { applied: 2, .. } at sequence 3". `DynamoStore` has no
/// such problem; the generated histories send one event per commit to
/// that store (`MODEL_CQRS_OVERSHOOT=1` sends more).
#[test]
#[ignore = "cqrs-es 0.5 PersistedEventStore snapshot store; see the doc comment"]
fn cqrs_snapshot_store_commit_past_a_boundary() {
    play(cases::snapshot_store_overshoot());
}

/// Defect 7. Before the fix: "load of Model:a0 (table 1, ...): read
/// failed: item Model:a0#1: attribute Payload: corrupt zstd payload:
/// dictionary N: Data corruption detected" (or another value).
#[cfg(feature = "compression")]
#[test]
fn same_dictionary_id_in_two_tables_reads_each_tables_own() {
    play(cases::colliding_dictionaries());
}

/// Defect 9. Before the fix: "load of Model:a0: read failed: item
/// Model:a0#1: attribute Payload: payload decodes to 6400 bytes, more than
/// the limit".
#[cfg(feature = "compression")]
#[test]
fn event_over_max_decoded_size_is_refused_or_read_back() {
    play(cases::over_cap());
}

/// Defect 11. Before the fix: "snapshot of Model:a0 (table 0, Reader
/// process): read failed: item Model:a0: attribute Payload: zstd
/// dictionary N is not loaded" (and the `PersistedEventStore` load fails
/// the same way).
#[cfg(feature = "compression")]
#[test]
fn dictionary_snapshot_reads_in_a_fresh_process() {
    play(cases::dictionary_snapshot(world::StoreMode::Dynamo(
        dynamo_es::SnapshotPolicy::Always,
    )));
    play(cases::dictionary_snapshot(
        world::StoreMode::PersistedSnapshots(1),
    ));
}

/// Found by `MODEL_SEEDS=1000` (seed 719): an aggregate store's head left
/// claiming sequence 3 by another writer, events to 5 written behind it by
/// a writer that never reads the head, and the writer's cached state at 2.
/// A commit from the cache conflicts but cannot remove that claim (its
/// context names an older head). Before the fix: "load of Model:a1
/// (table 1) through the cache: after the conflict dropped the entry,
/// loaded sequence 3 where the model has 5": a command needed two retries.
/// Now every conflict makes the next load trust no claim.
#[test]
fn after_a_conflict_from_the_cache_the_next_load_trusts_no_claim() {
    play(history::History::generate(719));
}
