//! Which seeds run, running them a few at a time, and reporting failures
//! with the command that re-runs each.

use futures::stream::{self, StreamExt};

use super::history::History;

/// Histories run at once (each on tables of its own).
const PARALLEL: usize = 6;

/// The runtime histories run on: two workers with 16 MB stacks, since
/// unoptimized builds spend far more stack per level of a nested payload
/// than release builds (the payloads go to 160 levels).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(16 * 1024 * 1024)
        .enable_all()
        .build()
        .unwrap()
}

/// The seeds to run: `MODEL_SEED=s` alone, else `MODEL_SEEDS` (or
/// `default`) seeds from `MODEL_FIRST_SEED` (default 1).
pub fn from_env(default: u64) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("MODEL_SEED") {
        return vec![seed];
    }
    let first = var("MODEL_FIRST_SEED").unwrap_or(1);
    let count = var("MODEL_SEEDS").unwrap_or(default);
    (first..first + count).collect()
}

/// Runs the history of `seed`, catching panics as failures.
pub async fn run_one(seed: u64) -> Result<(), String> {
    let joined = tokio::spawn(async move { History::generate(seed).run().await }).await;
    match joined {
        Ok(result) => result,
        Err(err) => Err(format!("panicked: {err}")),
    }
}

/// Runs every seed; fails listing each failing seed, its failure and how
/// to re-run it.
pub async fn run_seeds(seeds: &[u64]) {
    let started = std::time::Instant::now();
    let mut failures: Vec<(u64, String)> = stream::iter(seeds.iter().copied())
        .map(|seed| async move { (seed, run_one(seed).await) })
        .buffer_unordered(PARALLEL)
        .filter_map(|(seed, result)| async move { result.err().map(|err| (seed, err)) })
        .collect()
        .await;
    failures.sort_by_key(|(seed, _)| *seed);
    println!(
        "{} histories, {} failed, in {:.1?}",
        seeds.len(),
        failures.len(),
        started.elapsed()
    );
    println!(
        "requests: {:?}",
        super::faults::REQUESTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    );
    if failures.is_empty() {
        return;
    }
    let mut report = String::new();
    for (seed, err) in &failures {
        report.push_str(&format!(
            "\nseed {seed}: {err}\n  re-run: MODEL_SEED={seed} cargo test --all-features --test store_model model_histories -- --nocapture\n"
        ));
    }
    panic!(
        "{} of {} histories failed:{report}",
        failures.len(),
        seeds.len()
    );
}
