//! A deterministic simulation of the projector (issue 21): seeded histories
//! of commits, shard splits and rollovers, retention (trims, shards that
//! disappear), expired iterators, throttles, lost responses, processes
//! killed mid-batch and restarted, lease takeovers, a second projector,
//! rebuilds that fail halfway or finish, `TRIM_HORIZON` and `LATEST`
//! starts, and Lambda, against the fake Streams endpoint with checkpoints,
//! events and views on the embedded emulator.
//!
//! **Invariant checked after each history:** every committed event of the
//! projected type is dispatched, in per-aggregate order, or the projector
//! stopped with a typed error before the first event it would have skipped;
//! the exactly-once view equals the replay of the events, and so do the
//! counters of a transactional projection (see [`counter`]).
//!
//! Determinism: the schedule, every change to the world (commits, splits,
//! retention) and every trigger (the event a crash, an expiry or a failed
//! dispatch fires on) come from the seed, and each step runs to a
//! deterministic condition (see [`runs`]). What the seed does not fix is
//! how the projector's concurrent shard readers interleave, and when a
//! throttle or lost response lands among their requests; a failure found
//! once reproduces with its seed in practice (the regression seeds in
//! `tests/projector_sim.rs` do, run after run).
//!
//! Each history runs on a runtime of its own (so nothing of it outlives
//! it), several at a time on threads, with a fake Streams endpoint, a
//! projection name and tables of its own on the one emulator of the test
//! process; a failing seed prints itself and the command that re-runs it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod counter;
pub mod flaky;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod observer;
pub mod runs;
pub mod schedule;
pub mod world;

use runs::Sim;
use schedule::Schedule;

/// Runs the history of `seed`; `Err` lists its violations.
pub async fn history(seed: u64) -> Result<(), String> {
    let schedule = Schedule::generate(seed);
    let mut sim = Sim::new(&schedule).await;
    for (index, step) in schedule.steps.iter().enumerate() {
        sim.observer.label(format!("step {index} {step:?}"));
        sim.step(step).await;
        if !sim.observer.violations().is_empty() {
            break;
        }
    }
    if sim.observer.violations().is_empty() {
        sim.drain().await;
    }
    let violations = sim.observer.violations();
    sim.world.clean_up().await;
    if violations.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\n  schedule: consumer {:?}, latest {}, {} aggregates (+{} others), {} roots, \
         batch {}\n  steps:\n{}",
        violations.join("\n"),
        schedule.consumer,
        schedule.latest,
        schedule.aggregates,
        schedule.others,
        schedule.roots,
        schedule.batch_size,
        schedule
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("    {i}: {s:?}"))
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

/// Runs one history on a runtime of its own.
pub fn run_one(seed: u64) -> Result<(), String> {
    dynamo_es::testing::seeds::run_isolated(history(seed))
}

/// The command that re-runs `seed`.
pub fn rerun(seed: u64) -> String {
    format!("SIM_SEED={seed} cargo test --all-features --test projector_sim -- seeded --nocapture")
}

/// Runs `seeds` and panics with every failing seed, its violations and the
/// command that re-runs it.
pub fn check_seeds(seeds: Vec<u64>, threads: usize) {
    dynamo_es::testing::seeds::check_seeds("projector simulation", seeds, threads, run_one, rerun);
}
