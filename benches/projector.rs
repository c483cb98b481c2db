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

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, Error, EventDecoder, Projection, Projector, ProjectorStats,
};
use dynamo_es::tables::{create_checkpoint_table, enable_stream};
use dynamo_es::testing::aggregates::{BankAccount, BankEvent};
use dynamo_es::testing::{dynamodb_with, streams, EmbeddedDynamo, TestTables};
use dynamo_es::Codec;
use tokio::runtime::Runtime;

/// Events in the stream for the throughput runs.
const EVENTS: usize = 20_000;
/// Runs of each throughput measurement; the median is reported.
const RUNS: usize = 5;
/// Events per `persist` call while loading (one transaction).
const PER_COMMIT: usize = 25;
/// Commits per second and how long, for the lag runs.
const RATE: u32 = 200;
const LOAD_FOR: Duration = Duration::from_secs(5);

/// Counts events and notes when each (aggregate, sequence) was dispatched.
#[derive(Clone, Default)]
struct Counter {
    events: Arc<AtomicUsize>,
    dispatched: Arc<Mutex<HashMap<(String, usize), Instant>>>,
    note: bool,
}

#[async_trait]
impl Projection<BankAccount> for Counter {
    async fn project(&self, id: &str, events: &[EventEnvelope<BankAccount>]) -> Result<(), Error> {
        if self.note {
            let now = Instant::now();
            let mut dispatched = self.dispatched.lock().unwrap();
            for event in events {
                dispatched.insert((id.to_string(), event.sequence), now);
            }
        }
        self.events.fetch_add(events.len(), Ordering::Relaxed);
        Ok(())
    }
}

struct Stream {
    _server: EmbeddedDynamo,
    tables: TestTables,
    arn: String,
    streams: aws_sdk_dynamodbstreams::Client,
}

async fn stream() -> Stream {
    let server = EmbeddedDynamo::start().unwrap();
    let tables = dynamodb_with(server.client()).await.unwrap();
    let arn = enable_stream(&tables.client, &tables.events).await.unwrap();
    let streams = streams::client_for(&server.endpoint());
    Stream {
        _server: server,
        tables,
        arn,
        streams,
    }
}

fn event(id: &str, sequence: usize) -> SerializedEvent {
    let payload = BankEvent::Deposited {
        cents: i64::try_from(sequence).unwrap(),
        description: format!("deposit {sequence}"),
    };
    SerializedEvent {
        aggregate_id: id.to_string(),
        sequence,
        aggregate_type: BankAccount::TYPE.to_string(),
        event_type: "Deposited".into(),
        event_version: "1.0".into(),
        payload: serde_json::to_value(payload).unwrap(),
        metadata: serde_json::json!({}),
    }
}

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

async fn checkpoints(stream: &Stream) -> CheckpointStore {
    let table = dynamo_es::testing::unique_name("checkpoints");
    create_checkpoint_table(&stream.tables.client, &table)
        .await
        .unwrap();
    CheckpointStore::new(stream.tables.client.clone(), &table, "bench")
}

fn projector(stream: &Stream, store: CheckpointStore, counter: &Counter) -> Projector<BankAccount> {
    let dispatcher = Dispatcher::new(EventDecoder::<BankAccount>::new(Codec::default()))
        .with_projection(counter.clone());
    Projector::new(stream.streams.clone(), &stream.arn, store, dispatcher)
}

/// Reads the whole stream with bare `GetRecords` calls; returns the records.
async fn bare_read(stream: &Stream) -> usize {
    streams::read_all(&stream.streams, &stream.arn)
        .await
        .unwrap()
        .len()
}

fn per_second(count: usize, took: Duration) -> String {
    let count = u32::try_from(count).unwrap();
    format!("{:.0}", f64::from(count) / took.as_secs_f64())
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

fn share(part: Duration, whole: Duration) -> String {
    format!("{:.0}%", 100.0 * part.as_secs_f64() / whole.as_secs_f64())
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
    while counter.events.load(Ordering::Relaxed) < EVENTS {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    (took, lag.stats())
}

/// The median of `runs` runs of `run` (by time).
async fn median<T, F: std::future::Future<Output = (Duration, T)>>(
    runs: usize,
    mut run: impl FnMut() -> F,
) -> (Duration, T) {
    let mut results = Vec::new();
    for _ in 0..runs {
        results.push(run().await);
    }
    results.sort_by_key(|(took, _)| *took);
    results.swap_remove(runs / 2)
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
    let counter = Counter {
        note: true,
        ..Counter::default()
    };
    let mut projector = projector(&stream, checkpoints(&stream).await, &counter);
    if let Some((min, max)) = idle {
        projector = projector.with_idle_backoff(min, max);
    }
    let lag = projector.lag();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(projector.run(async move {
        let _ = stopped.await;
    }));
    let repo = stream.tables.repository();
    let committed: Arc<Mutex<HashMap<(String, usize), Instant>>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / RATE);
    let mut sequences = [0usize; 50];
    let mut max_lag = Duration::ZERO;
    let mut commits = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < LOAD_FOR {
        ticks.tick().await;
        let slot = n % sequences.len();
        sequences[slot] += 1;
        let (id, sequence) = (format!("acct-{slot}"), sequences[slot]);
        let (repo, committed) = (repo.clone(), committed.clone());
        commits.spawn(async move {
            repo.persist::<BankAccount>(&[event(&id, sequence)], None)
                .await
                .unwrap();
            committed
                .lock()
                .unwrap()
                .insert((id, sequence), Instant::now());
        });
        n += 1;
        if let Some(now) = lag.max_lag() {
            max_lag = max_lag.max(now);
        }
    }
    while let Some(done) = commits.join_next().await {
        done.unwrap();
    }
    while counter.events.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    let committed = committed.lock().unwrap();
    let dispatched = counter.dispatched.lock().unwrap();
    let mut lags: Vec<Duration> = committed
        .iter()
        .map(|(key, at)| dispatched[key].saturating_duration_since(*at))
        .collect();
    lags.sort_unstable();
    let at = |q: usize| lags[(lags.len() - 1) * q / 100];
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
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not,
    // and gets no minutes-long run.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("projector benchmark: run with `cargo bench --all-features --bench projector`");
        return;
    }
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
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
