//! The projector end to end on the embedded emulator (dynoxide), which
//! serves the events table's stream to the real `aws-sdk-dynamodbstreams`
//! client:
//!
//! * **throughput**: `EVENTS` events already in the stream (on 1 aggregate,
//!   then on 50), a fresh projector from the trim horizon with a counting
//!   projection: events dispatched per second until the last one, and the
//!   projector's own breakdown (`LagHandle::stats`: time in `GetRecords`,
//!   in converting + decoding + dispatching, in checkpoint writes). The same
//!   stream read by a bare `GetRecords` loop (no decoding, dispatch or
//!   checkpoints) is the emulator's own ceiling. Each is the median of
//!   `RUNS` runs over the same stream (the projector with a fresh
//!   checkpoint table each time).
//! * **lag at steady load**: one-event commits at a fixed rate on 50
//!   aggregates while the projector runs; per event, the time from the
//!   commit's response to its dispatch (percentiles), with the default idle
//!   backoff and a tight one.
//!
//! A plain `main` (no criterion: each figure is one long run, not a
//! per-iteration timing). Run with
//! `cargo bench --all-features --bench projector`; it prints Markdown
//! tables for docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/counting.rs"]
mod counting;

use std::time::{Duration, Instant};

use counting::{
    checkpoints, commit_at_rate, event, lags, median, ms, per_second, percentile, projector, share,
    stream, Counter, Stream,
};
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use dynamo_es::projection::ProjectorStats;
use dynamo_es::testing::aggregates::BankAccount;
use dynamo_es::testing::streams;

/// Events in the stream for the throughput runs.
const EVENTS: usize = 20_000;
/// Runs of each throughput measurement; the median is reported.
const RUNS: usize = 5;
/// Events per `persist` call while loading (one transaction).
const PER_COMMIT: usize = 25;
/// Commits per second and how long, for the lag runs.
const RATE: u32 = 200;
const LOAD_FOR: Duration = Duration::from_secs(5);

/// Writes `EVENTS` events spread over `aggregates` aggregates.
async fn load(stream: &Stream, aggregates: usize) {
    let repo = stream.tables.repository();
    let per_aggregate = EVENTS / aggregates;
    let mut tasks = tokio::task::JoinSet::new();
    for a in 0..aggregates {
        let repo = repo.clone();
        tasks.spawn(async move {
            let id = format!("acct-{a}");
            let events: Vec<SerializedEvent> = (1..=per_aggregate).map(|s| event(&id, s)).collect();
            for commit in events.chunks(PER_COMMIT) {
                repo.persist::<BankAccount>(commit, None).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Reads the whole stream with bare `GetRecords` calls; returns the records.
async fn bare_read(stream: &Stream) -> usize {
    streams::read_all(&stream.streams, &stream.arn)
        .await
        .unwrap()
        .len()
}

/// One projector from the trim horizon over the whole stream: its wall
/// time until the last event and its counters.
async fn project_all(stream: &Stream) -> (Duration, ProjectorStats) {
    let counter = Counter::default();
    let projector = projector(stream, checkpoints(stream).await, &counter);
    let lag = projector.lag();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(projector.run(async move {
        let _ = stopped.await;
    }));
    counter.wait_for(EVENTS).await;
    let took = started.elapsed();
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    (took, lag.stats())
}

async fn throughput(aggregates: usize) {
    let stream = stream().await;
    load(&stream, aggregates).await;
    let (bare_took, ()) = median(RUNS, || async {
        let started = Instant::now();
        assert_eq!(bare_read(&stream).await, EVENTS);
        (started.elapsed(), ())
    })
    .await;
    let (took, stats) = median(RUNS, || project_all(&stream)).await;
    let work = stats.get_records + stats.dispatch + stats.checkpoint;
    println!(
        "| {aggregates} | {EVENTS} | {} | {} | {} | {} | {} ({}) | {} ({}) | {} ({}) | {} |",
        per_second(EVENTS, took),
        ms(took),
        per_second(EVENTS, bare_took),
        ms(bare_took),
        ms(stats.get_records),
        share(stats.get_records, work),
        ms(stats.dispatch),
        share(stats.dispatch, work),
        ms(stats.checkpoint),
        share(stats.checkpoint, work),
        stats.batches,
    );
}

async fn steady_lag(label: &str, idle: Option<(Duration, Duration)>) {
    let stream = stream().await;
    let counter = Counter::noting();
    let mut projector = projector(&stream, checkpoints(&stream).await, &counter);
    if let Some((min, max)) = idle {
        projector = projector.with_idle_backoff(min, max);
    }
    let lag = projector.lag();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(projector.run(async move {
        let _ = stopped.await;
    }));
    let mut max_lag = Duration::ZERO;
    let (n, committed) = commit_at_rate(&stream.tables.repository(), RATE, LOAD_FOR, || {
        if let Some(now) = lag.max_lag() {
            max_lag = max_lag.max(now);
        }
    })
    .await;
    counter.wait_for(n).await;
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    let lags = lags(&committed, &counter.dispatched);
    let at = |q: usize| percentile(&lags, q);
    let stats = lag.stats();
    println!(
        "| {label} | {n} | {} | {} | {} | {} | {} | {} |",
        per_second(n, LOAD_FOR),
        ms(at(50)),
        ms(at(99)),
        ms(lags[lags.len() - 1]),
        ms(max_lag),
        stats.get_records_calls,
    );
}

fn main() {
    counting::run_bench("projector", async {
        println!("### Throughput ({EVENTS} events in the stream, one shard)\n");
        println!(
            "| aggregates | events | projector events/s | projector wall | bare read events/s \
             | bare read wall | projector in GetRecords | decode + dispatch | checkpoints | batches |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        throughput(1).await;
        throughput(50).await;
        println!(
            "\n### Lag at steady load ({RATE} one-event commits/s on 50 aggregates for {} s)\n",
            LOAD_FOR.as_secs()
        );
        println!(
            "| idle backoff | events | commits/s | commit → dispatch p50 | p99 | max \
             | max `LagHandle::max_lag` seen | GetRecords calls |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        steady_lag("default (100 ms → 2 s)", None).await;
        steady_lag(
            "5 ms → 50 ms",
            Some((Duration::from_millis(5), Duration::from_millis(50))),
        )
        .await;
    });
}
