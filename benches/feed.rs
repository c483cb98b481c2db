//! The feed by slices (issue 25) against today's `Rebuild` scan and the
//! stream projector, on the embedded emulator (dynoxide), side by side in
//! one run:
//!
//! * **write cost**: the write units of a one-event commit to an events
//!   table without and with the slice index (`Meter`, as the emulator
//!   reports them);
//! * **catch-up**: `EVENTS` events of `BankAccount` and as many of another
//!   type (`Ledger`) in one sliced table; a fresh feed projection of
//!   `BankAccount` from the beginning (counting projection, a fresh
//!   checkpoint table each run) against a `Rebuild` of the same projection
//!   (a parallel scan of the whole table) and a `Rebuild::with_feed` (the
//!   slice index): events per second until the last one, and read units
//!   per 1,000 events dispatched (metered by `Meter::without_rounds`,
//!   which holds no request). Medians of `RUNS` runs.
//! * **live lag**: one-event commits at `RATE` per second on 50 aggregates
//!   for `LOAD_FOR`, read live by the stream projector and by the feed
//!   projector (its default poll interval, and a short one); per event,
//!   the time from the commit's response to its dispatch (percentiles).
//! * **index storage**: what DynamoDB's published rule gives for the index
//!   (each index item: the item's bytes plus 100), against the table's
//!   items; the emulator's `DescribeTable` reports `IndexSizeBytes` 0.
//!
//! A plain `main` (no criterion: each figure is one long run, not a
//! per-iteration timing). Run with `cargo bench --all-features --bench
//! feed`; it prints Markdown tables for docs/BENCHMARKS.md.
//! `FEED_BENCH_EVENTS=10000` runs a smaller catch-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/counting.rs"]
mod counting;

use std::time::{Duration, Instant};

use counting::{
    checkpoints, commit_at_rate, event, event_of, lags, median, ms, per_second, percentile,
    projector, stream, Counter, Stream,
};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use dynamo_es::projection::feed::{FeedPositions, FeedProjector, FeedStart, SliceReader};
use dynamo_es::projection::{CheckpointStore, Dispatcher, EventDecoder, Rebuild};
use dynamo_es::size::item_size;
use dynamo_es::slice::Slices;
use dynamo_es::tables::{add_slice_index, create_checkpoint_table};
use dynamo_es::testing::aggregates::{BankAccount, Ledger};
use dynamo_es::testing::costs::Meter;
use dynamo_es::testing::{scan_all, unique_name};
use dynamo_es::{Codec, DynamoEventRepository};
use futures::stream::{self, StreamExt};

/// Events of each type in the catch-up table (`$FEED_BENCH_EVENTS`).
const EVENTS: usize = 100_000;
/// Aggregates of each type in the catch-up table.
const AGGREGATES: usize = 200;
/// Runs of each catch-up measurement; the median is reported.
const RUNS: usize = 3;
/// Events per `persist` call while loading (one transaction).
const PER_COMMIT: usize = 25;
/// Commits in flight at once while loading.
const WRITERS: usize = 8;
/// Slices of the sliced table.
const SLICES: u16 = 64;
/// The window of a rebuild from the feed: it ends a window after T0 at
/// the earliest.
const FEED_WINDOW: Duration = Duration::from_secs(1);
/// Commits per second and how long, for the lag runs.
const RATE: u32 = 200;
const LOAD_FOR: Duration = Duration::from_secs(5);

fn slices() -> Slices {
    Slices::new(SLICES).unwrap()
}

fn events() -> usize {
    std::env::var("FEED_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(EVENTS)
}

/// A sliced events table with its stream, and a writer stamping slices.
async fn sliced() -> (Stream, DynamoEventRepository) {
    let stream = stream().await;
    add_slice_index(&stream.tables.client, &stream.tables.events, slices())
        .await
        .unwrap();
    let writer = stream.tables.repository().with_slices(slices());
    (stream, writer)
}

/// Writes `events` events of each type, spread over [`AGGREGATES`]
/// aggregates of each, [`WRITERS`] commits at once.
async fn load(writer: &DynamoEventRepository, events: usize) {
    let per_aggregate = events / AGGREGATES;
    let aggregates = (0..AGGREGATES).flat_map(|a| [(a, false), (a, true)]);
    stream::iter(aggregates)
        .for_each_concurrent(WRITERS, |(a, ledger)| async move {
            let kind = if ledger {
                Ledger::TYPE
            } else {
                BankAccount::TYPE
            };
            let id = format!("{kind}-{a}");
            let events: Vec<_> = (1..=per_aggregate)
                .map(|s| event_of(kind, &id, s))
                .collect();
            for commit in events.chunks(PER_COMMIT) {
                if ledger {
                    writer.persist::<Ledger>(commit, None).await.unwrap();
                } else {
                    writer.persist::<BankAccount>(commit, None).await.unwrap();
                }
            }
        })
        .await;
}

/// A fresh checkpoint table, and its name.
async fn checkpoint_table(stream: &Stream) -> String {
    let table = unique_name("feed-checkpoints");
    create_checkpoint_table(&stream.tables.client, &table)
        .await
        .unwrap();
    table
}

fn dispatcher(counter: &Counter) -> Dispatcher<BankAccount> {
    Dispatcher::new(EventDecoder::<BankAccount>::new(Codec::default()))
        .with_projection(counter.clone())
}

/// A feed projection of `BankAccount` over every slice, from the
/// beginning, on `client`.
async fn feed(
    stream: &Stream,
    client: &aws_sdk_dynamodb::Client,
    counter: &Counter,
    poll: Duration,
) -> FeedProjector<BankAccount> {
    let table = checkpoint_table(stream).await;
    let reader = SliceReader::new(
        client.clone(),
        &stream.tables.events,
        BankAccount::TYPE,
        slices(),
    );
    let positions = FeedPositions::new(client.clone(), &table, "bench");
    FeedProjector::new(reader, positions, dispatcher(counter))
        .with_start(FeedStart::Beginning)
        .with_poll_interval(poll)
}

/// One feed catch-up of every `BankAccount` event: its wall time, and the
/// read units it consumed.
async fn feed_catch_up(stream: &Stream, events: usize) -> (Duration, f64) {
    let counter = Counter::default();
    let meter = Meter::without_rounds();
    let client = meter.client(&stream.tables.client);
    let mut projector = feed(stream, &client, &counter, Duration::from_millis(500)).await;
    meter.start();
    let started = Instant::now();
    while counter.count() < events {
        projector.catch_up().await.unwrap();
    }
    let took = started.elapsed();
    let costs = meter.stop();
    assert_eq!(counter.count(), events, "each event once");
    (took, costs.read_units)
}

/// One rebuild (a parallel scan of the whole table, or with `feed` a
/// read of the slice index): its wall time, and the read units it consumed
/// (metered, as the feed's).
async fn rebuild(stream: &Stream, events: usize, feed: bool) -> (Duration, f64) {
    let counter = Counter::default();
    let table = checkpoint_table(stream).await;
    let meter = Meter::without_rounds();
    let client = meter.client(&stream.tables.client);
    let checkpoints = CheckpointStore::new(client.clone(), &table, "bench");
    let mut rebuild = Rebuild::new(
        client.clone(),
        &stream.tables.events,
        checkpoints,
        dispatcher(&counter),
    );
    if feed {
        let reader = SliceReader::new(client, &stream.tables.events, BankAccount::TYPE, slices())
            .with_window(FEED_WINDOW);
        rebuild = rebuild.with_feed(reader);
    }
    meter.start();
    let started = Instant::now();
    rebuild.run().await.unwrap();
    let took = started.elapsed();
    let costs = meter.stop();
    assert_eq!(counter.count(), events, "each event once");
    (took, costs.read_units)
}

fn per_thousand(units: f64, events: usize) -> String {
    let events = f64::from(u32::try_from(events).unwrap());
    format!("{:.1}", units * 1000.0 / events)
}

async fn catch_up(stream: &Stream, events: usize) {
    let (took, units) = median(RUNS, || feed_catch_up(stream, events)).await;
    println!(
        "| feed (`FeedProjector::catch_up`, {SLICES} slices) | {events} | {} | {} | {} | {} |",
        per_second(events, took),
        ms(took),
        units,
        per_thousand(units, events),
    );
    for (label, feed) in [
        ("`Rebuild` (parallel scan, 4 segments)", false),
        ("`Rebuild::with_feed` (the slice index, 1 s window)", true),
    ] {
        let (took, units) = median(RUNS, || rebuild(stream, events, feed)).await;
        println!(
            "| {label} | {events} | {} | {} | {} | {} |",
            per_second(events, took),
            ms(took),
            units,
            per_thousand(units, events),
        );
    }
}

/// Index storage by DynamoDB's rule: every sliced item once more, plus
/// 100 bytes of overhead each.
async fn storage(stream: &Stream) {
    let items = scan_all(&stream.tables.client, &stream.tables.events)
        .await
        .unwrap();
    let table: usize = items.iter().map(item_size).sum();
    let sliced: Vec<_> = items
        .iter()
        .filter(|item| item.contains_key(dynamo_es::slice::SLICE))
        .collect();
    let index: usize = sliced.iter().map(|item| item_size(item) + 100).sum();
    println!(
        "| {} | {} | {table} | {index} | {:.2}× |",
        items.len(),
        sliced.len(),
        f64::from(u32::try_from(table + index).unwrap()) / f64::from(u32::try_from(table).unwrap()),
    );
}

/// The write units of a one-event commit, without and with the index.
async fn write_cost() {
    let (stream, _) = sliced().await;
    let meter = Meter::new();
    let plain = DynamoEventRepository::new(meter.client(&stream.tables.client))
        .with_tables(&stream.tables.events, &stream.tables.snapshots);
    for (label, repo) in [
        ("without the index", plain.clone()),
        ("with the index", plain.with_slices(slices())),
    ] {
        let id = unique_name("w");
        let (result, costs) = meter
            .measure(repo.persist::<BankAccount>(&[event(&id, 1)], None))
            .await;
        result.unwrap();
        println!(
            "| {label} | {} | {} | {} |",
            costs.write_units,
            costs.round_trips,
            costs.operations.join(", ")
        );
    }
}

/// Which live reader a lag run measures.
enum Live {
    Stream,
    Feed(Duration),
}

async fn steady_lag(label: &str, live: Live) {
    let (stream, writer) = sliced().await;
    let counter = Counter::noting();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let running = match live {
        Live::Stream => {
            let projector = projector(&stream, checkpoints(&stream).await, &counter);
            tokio::spawn(projector.run(shutdown))
        }
        Live::Feed(poll) => {
            let projector = feed(&stream, &stream.tables.client, &counter, poll).await;
            tokio::spawn(projector.run(shutdown))
        }
    };
    let (n, committed) = commit_at_rate(&writer, RATE, LOAD_FOR, || {}).await;
    counter.wait_for(n).await;
    let _ = stop.send(());
    // Ends without error: the run's result is the projector's.
    let result: Result<(), dynamo_es::projection::Error> = running.await.unwrap();
    result.unwrap();
    let lags = lags(&committed, &counter.dispatched);
    println!(
        "| {label} | {n} | {} | {} | {} | {} |",
        per_second(n, LOAD_FOR),
        ms(percentile(&lags, 50)),
        ms(percentile(&lags, 99)),
        ms(lags[lags.len() - 1]),
    );
}

fn main() {
    counting::run_bench("feed", async {
        println!("### Write cost of a one-event commit\n");
        println!("| events table | WCU | round trips | requests |");
        println!("|---|---:|---:|---|");
        write_cost().await;

        let events = events();
        let (stream, writer) = sliced().await;
        let loading = Instant::now();
        load(&writer, events).await;
        println!(
            "\n### Catch-up ({events} `BankAccount` events and {events} `Ledger` events in one \
             table, {AGGREGATES} aggregates of each; loaded in {:.0?})\n",
            loading.elapsed()
        );
        println!("| reader | events dispatched | events/s | wall | RCU | RCU per 1,000 events |");
        println!("|---|---:|---:|---:|---:|---:|");
        catch_up(&stream, events).await;

        println!("\n### Index storage (the catch-up table, DynamoDB's rule)\n");
        println!(
            "| items | items in the index | table bytes | index bytes | table + index / table |"
        );
        println!("|---:|---:|---:|---:|---:|");
        storage(&stream).await;
        drop(stream);

        println!(
            "\n### Live lag ({RATE} one-event commits/s on 50 aggregates for {} s)\n",
            LOAD_FOR.as_secs()
        );
        println!("| reader | events | commits/s | commit → dispatch p50 | p99 | max |");
        println!("|---|---:|---:|---:|---:|---:|");
        steady_lag("stream projector (idle backoff 100 ms → 2 s)", Live::Stream).await;
        steady_lag(
            "feed projector (poll 500 ms, the default)",
            Live::Feed(Duration::from_millis(500)),
        )
        .await;
        steady_lag(
            "feed projector (poll 20 ms)",
            Live::Feed(Duration::from_millis(20)),
        )
        .await;
    });
}
