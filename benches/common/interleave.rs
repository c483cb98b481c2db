//! Timing several implementations of one workload side by side: criterion's
//! samples of each, one after the other, and interleaved rounds, each of
//! which times every implementation once, starting from a different one in
//! every round.
//!
//! On a shared machine the load drifts over the seconds criterion spends on
//! each implementation, which skews ratios between them. Interleaved rounds
//! expose every implementation to the same drift, so the ratio of their
//! medians is the figure to compare implementations by.
//!
//! **Invariant:** every implementation is timed the same number of times in
//! the interleaved rounds, and as often first as last.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use tokio::runtime::Runtime;

use super::Sampling;

/// One timed run of a workload: returns the time that counts (a commit's
/// own time, not the load before it).
pub type Op<'a> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Duration> + 'a>> + 'a>;

/// An implementation's run of the workload, by name.
pub struct Contender<'a> {
    /// The implementation's name (the benchmark's parameter).
    pub name: String,
    /// One timed run.
    pub op: Op<'a>,
}

/// Times every contender with criterion (group `group`, sampled so), then in
/// `rounds` interleaved rounds; returns the median of each contender's
/// interleaved times, in nanoseconds, by name.
pub fn compare(
    c: &mut Criterion,
    rt: &Runtime,
    group: &str,
    sampling: &Sampling,
    rounds: usize,
    contenders: &[Contender<'_>],
) -> HashMap<String, f64> {
    if let Some(runs) = profile_runs() {
        for contender in contenders {
            for _ in 0..runs {
                rt.block_on((contender.op)());
            }
        }
        return HashMap::new();
    }
    let mut benchmarks = c.benchmark_group(group);
    sampling.apply(&mut benchmarks);
    for contender in contenders {
        let op = &contender.op;
        benchmarks.bench_function(BenchmarkId::from_parameter(&contender.name), |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    elapsed += op().await;
                }
                elapsed
            });
        });
    }
    benchmarks.finish();
    if !super::benchmarking() {
        return HashMap::new();
    }

    // A multiple of the contenders, so each starts as many rounds.
    let rounds = rounds.div_ceil(contenders.len().max(1)) * contenders.len();
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); contenders.len()];
    for round in 0..rounds {
        for k in 0..contenders.len() {
            let i = (round + k) % contenders.len();
            times[i].push(rt.block_on((contenders[i].op)()));
        }
    }
    contenders
        .iter()
        .zip(times)
        .map(|(contender, mut times)| {
            times.sort_unstable();
            (contender.name.clone(), median(&times))
        })
        .collect()
}

/// `$STORE_BENCH_PROFILE_RUNS`: for instruction counts (callgrind), run
/// each contender exactly this many times instead of timing it; the
/// difference between two such runs, divided by the difference in runs, is
/// the cost of one run.
pub const PROFILE_RUNS: &str = "STORE_BENCH_PROFILE_RUNS";

fn profile_runs() -> Option<usize> {
    std::env::var(PROFILE_RUNS).ok()?.parse().ok()
}

/// The median of sorted `times`, in nanoseconds.
fn median(sorted: &[Duration]) -> f64 {
    let nanos = |i: usize| sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e9);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => nanos(n / 2),
        n => (nanos(n / 2 - 1) + nanos(n / 2)) / 2.0,
    }
}
