//! The deterministic simulation of the projector (issue 21): seeded random
//! histories against the real `Projector`, `Rebuild`, `CheckpointStore` and
//! Lambda adapter, on the fake Streams endpoint and the embedded emulator;
//! see `projector_sim_support` for the histories and the invariant.
//!
//! * `cargo test --all-features --test projector_sim`: a few hundred seeds.
//! * `SIM_SEEDS=5000` runs that many; `SIM_FIRST_SEED=N` starts elsewhere.
//! * `SIM_SEED=123` runs that one seed (as a failure prints it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projector_sim_support;

use projector_sim_support::{check_seeds, run_one};

/// Seeds of a plain `cargo test`.
const DEFAULT_SEEDS: u64 = 300;

/// Histories run at once (each on its own runtime and thread).
const THREADS: usize = 4;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn seeded_histories_dispatch_every_event_in_order_or_stop_with_a_typed_error() {
    if let Some(seed) = env_u64("SIM_SEED") {
        check_seeds(vec![seed], 1);
        return;
    }
    let first = env_u64("SIM_FIRST_SEED").unwrap_or(0);
    let count = env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    check_seeds((first..first + count).collect(), THREADS);
}

/// Runs one seed and returns its violations (empty when it passed).
fn violations(seed: u64) -> String {
    run_one(seed).err().unwrap_or_default()
}
