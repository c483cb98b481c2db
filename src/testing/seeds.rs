//! Seeded simulations: the seeds a run takes from the environment, each
//! seed's history on a runtime of its own, several at a time on threads,
//! and one report of every failing seed with the command that re-runs it.
//!
//! **Invariant:** every seed asked for runs, and every failing one is
//! reported (a panic counts as a failure, with its message); a run passes
//! only if none failed.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The environment variables that choose a simulation's seeds: `{prefix}SEED`
/// (that one seed), else `{prefix}FIRST_SEED` (default 0) and
/// `{prefix}SEEDS` (default `default_count`) seeds from there.
#[must_use]
pub fn seeds_from_env(prefix: &str, default_count: u64) -> Vec<u64> {
    let var = |name: &str| {
        std::env::var(format!("{prefix}{name}"))
            .ok()
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    if let Some(seed) = var("SEED") {
        return vec![seed];
    }
    let first = var("FIRST_SEED").unwrap_or(0);
    (first..first + var("SEEDS").unwrap_or(default_count)).collect()
}

/// Runs `history` to its end on a current-thread runtime of its own (so
/// nothing of it outlives it); a panic becomes `Err("PANIC: {message}")`.
pub fn run_isolated<F>(history: F) -> Result<(), String>
where
    F: Future<Output = Result<(), String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("no runtime for the history: {err}"))?;
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(history)));
    runtime.shutdown_background();
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        Err(format!("PANIC: {message}"))
    })
}

/// Runs `run` for each of `seeds` on `threads` threads; the failures, by
/// seed.
pub fn run_many(
    seeds: Vec<u64>,
    threads: usize,
    run: fn(u64) -> Result<(), String>,
) -> Vec<(u64, String)> {
    let queue = Arc::new(Mutex::new(VecDeque::from(seeds)));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (queue, failures) = (queue.clone(), failures.clone());
            std::thread::spawn(move || loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                let Some(seed) = next else {
                    return;
                };
                if let Err(message) = run(seed) {
                    failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((seed, message));
                }
            })
        })
        .collect();
    for worker in workers {
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let mut failures =
        std::mem::take(&mut *failures.lock().unwrap_or_else(PoisonError::into_inner));
    failures.sort_by_key(|(seed, _)| *seed);
    failures
}

/// Runs `run` for each of `seeds` on `threads` threads and panics if any
/// failed, with every failing seed, what it found and `rerun(seed)`, the
/// command that re-runs it; `name` names the simulation in the summary
/// printed either way.
pub fn check_seeds(
    name: &str,
    seeds: Vec<u64>,
    threads: usize,
    run: fn(u64) -> Result<(), String>,
    rerun: fn(u64) -> String,
) {
    let count = seeds.len();
    let started = Instant::now();
    let failures = run_many(seeds, threads, run);
    eprintln!(
        "{name}: {count} histories in {:.1?}, {} failed",
        started.elapsed(),
        failures.len()
    );
    if failures.is_empty() {
        return;
    }
    let report: Vec<String> = failures
        .iter()
        .map(|(seed, message)| format!("seed {seed} failed (re-run: {}):\n{message}", rerun(*seed)))
        .collect();
    panic!(
        "{} of {count} histories failed; failing seeds: {:?}\n\n{}",
        failures.len(),
        failures.iter().map(|(seed, _)| *seed).collect::<Vec<_>>(),
        report.join("\n\n")
    );
}
