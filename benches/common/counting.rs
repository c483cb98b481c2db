//! What the projection benchmarks (`projector`, `feed`) share: an events
//! table with its stream on an emulator of its own, a counting projection
//! that notes when each event was dispatched and the stream projector that
//! feeds it, the events they write, and the figures they print.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, Error, EventDecoder, Projection, Projector,
};
use dynamo_es::tables::{create_checkpoint_table, enable_stream};
use dynamo_es::testing::aggregates::{BankAccount, BankEvent};
use dynamo_es::testing::{dynamodb_with, serialized_event, streams, EmbeddedDynamo, TestTables};
use dynamo_es::Codec;

/// An events table with its stream, on an emulator of its own.
pub struct Stream {
    pub tables: TestTables,
    pub arn: String,
    pub streams: aws_sdk_dynamodbstreams::Client,
    // Last, so the clients go before the server stops.
    _server: EmbeddedDynamo,
}

/// Fresh tables with the events table's stream on, on a new emulator.
pub async fn stream() -> Stream {
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

/// A fresh checkpoint table on `stream`'s emulator, and the positions of
/// projection `bench` in it.
pub async fn checkpoints(stream: &Stream) -> CheckpointStore {
    let table = dynamo_es::testing::unique_name("checkpoints");
    create_checkpoint_table(&stream.tables.client, &table)
        .await
        .unwrap();
    CheckpointStore::new(stream.tables.client.clone(), &table, "bench")
}

/// The stream projector of `stream` dispatching to `counter`.
pub fn projector(
    stream: &Stream,
    store: CheckpointStore,
    counter: &Counter,
) -> Projector<BankAccount> {
    let dispatcher = Dispatcher::new(EventDecoder::<BankAccount>::new(Codec::default()))
        .with_projection(counter.clone());
    Projector::new(stream.streams.clone(), &stream.arn, store, dispatcher)
}

/// When each (aggregate, sequence) was committed or dispatched.
pub type Times = Arc<Mutex<HashMap<(String, usize), Instant>>>;

/// Counts events and, if `note`, notes when each (aggregate, sequence)
/// was dispatched.
#[derive(Clone, Default)]
pub struct Counter {
    pub events: Arc<AtomicUsize>,
    pub dispatched: Times,
    pub note: bool,
}

impl Counter {
    /// A counter that notes dispatch times.
    pub fn noting() -> Self {
        Counter {
            note: true,
            ..Counter::default()
        }
    }

    /// Events counted so far.
    pub fn count(&self) -> usize {
        self.events.load(Ordering::Relaxed)
    }

    /// Waits until `events` events were counted.
    pub async fn wait_for(&self, events: usize) {
        while self.count() < events {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
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

/// A `BankAccount` deposit of `id` at `sequence`, as `aggregate_type`
/// (the payload is never decoded as another type's).
pub fn event_of(aggregate_type: &str, id: &str, sequence: usize) -> SerializedEvent {
    let payload = BankEvent::Deposited {
        cents: i64::try_from(sequence).unwrap(),
        description: format!("deposit {sequence}"),
    };
    serialized_event(
        aggregate_type,
        id,
        sequence,
        "Deposited",
        serde_json::to_value(payload).unwrap(),
    )
}

/// A `BankAccount` deposit of `id` at `sequence`.
pub fn event(id: &str, sequence: usize) -> SerializedEvent {
    event_of(BankAccount::TYPE, id, sequence)
}

/// Runs the benchmark `name` on a fresh runtime when `cargo bench` asked
/// for it: `cargo bench` passes `--bench`; `cargo test --all-targets` does
/// not, and gets a line saying how to run it instead of a minutes-long run.
pub fn run_bench(name: &str, bench: impl std::future::Future<Output = ()>) {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("{name} benchmark: run with `cargo bench --all-features --bench {name}`");
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(bench);
}

/// The median of `runs` runs of `run` (by time).
pub async fn median<T, F: std::future::Future<Output = (Duration, T)>>(
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

/// Events per second, rounded.
pub fn per_second(count: usize, took: Duration) -> String {
    let count = u32::try_from(count).unwrap();
    format!("{:.0}", f64::from(count) / took.as_secs_f64())
}

/// Milliseconds, rounded.
pub fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

/// `part` as a percentage of `whole`.
#[allow(dead_code)]
pub fn share(part: Duration, whole: Duration) -> String {
    format!("{:.0}%", 100.0 * part.as_secs_f64() / whole.as_secs_f64())
}

/// Per event committed, the time from its commit to its dispatch (0 when
/// dispatched before the commit's response arrived), sorted.
pub fn lags(committed: &Times, dispatched: &Times) -> Vec<Duration> {
    let committed = committed.lock().unwrap();
    let dispatched = dispatched.lock().unwrap();
    let mut lags: Vec<Duration> = committed
        .iter()
        .map(|(key, at)| dispatched[key].saturating_duration_since(*at))
        .collect();
    lags.sort_unstable();
    lags
}

/// The `q`-th percentile of sorted `lags`.
pub fn percentile(lags: &[Duration], q: usize) -> Duration {
    lags[(lags.len() - 1) * q / 100]
}

/// One-event `BankAccount` deposits through `writer`, `rate` per second
/// going round 50 aggregates, for `load_for`, calling `tick` after each
/// one is sent; waits for every commit. Returns how many, and when each
/// commit's response came.
pub async fn commit_at_rate(
    writer: &dynamo_es::DynamoEventRepository,
    rate: u32,
    load_for: Duration,
    mut tick: impl FnMut(),
) -> (usize, Times) {
    use cqrs_es::persist::PersistedEventRepository;
    let committed: Times = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut sequences = [0usize; 50];
    let mut commits = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < load_for {
        ticks.tick().await;
        let slot = n % sequences.len();
        sequences[slot] += 1;
        let (id, sequence) = (format!("acct-{slot}"), sequences[slot]);
        let (writer, committed) = (writer.clone(), committed.clone());
        commits.spawn(async move {
            writer
                .persist::<BankAccount>(&[event(&id, sequence)], None)
                .await
                .unwrap();
            committed
                .lock()
                .unwrap()
                .insert((id, sequence), Instant::now());
        });
        n += 1;
        tick();
    }
    while let Some(done) = commits.join_next().await {
        done.unwrap();
    }
    (n, committed)
}
