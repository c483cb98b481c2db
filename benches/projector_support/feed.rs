//! The feed group of the projector benchmark: catch-up by a feed, by a
//! `Rebuild` scan, by a `Rebuild` from the feed and by the stream
//! projector, on a table holding `EVENTS` events of the type read and as
//! many of another; then the feed's lag at the stream runs' steady load.

use super::*;
use dynamo_es::projection::feed::{FeedPositions, FeedProjector, FeedStart, SliceReader};
use dynamo_es::projection::Rebuild;
use dynamo_es::slice::Slices;
use dynamo_es::tables::add_slice_index;
use dynamo_es::testing::costs::Meter;

const SLICES: u16 = 16;
/// The feeds' window here (the default 10 s would only add to a rebuild's
/// wait after T0).
const WINDOW: Duration = Duration::from_secs(1);

fn slices() -> Slices {
    Slices::new(SLICES).unwrap()
}

/// A stream table with the slice index, loaded with `EVENTS` events of
/// `BankAccount` and as many of `Other`, by a writer with slices.
async fn sliced() -> Stream {
    let stream = stream().await;
    add_slice_index(&stream.tables.client, &stream.tables.events, slices())
        .await
        .unwrap();
    let repo = stream.tables.repository().with_slices(slices());
    load_with(&repo, 50, BankAccount::TYPE).await;
    load_with(&repo, 50, "Other").await;
    stream
}

fn counting(counter: &Counter) -> Dispatcher<BankAccount> {
    Dispatcher::new(EventDecoder::<BankAccount>::new(Codec::default()))
        .with_projection(counter.clone())
}

fn reader(client: &aws_sdk_dynamodb::Client, stream: &Stream) -> SliceReader {
    SliceReader::new(
        client.clone(),
        &stream.tables.events,
        BankAccount::TYPE,
        slices(),
    )
    .with_window(WINDOW)
}

/// A fresh feed from the beginning until every event is dispatched.
async fn feed_catch_up(stream: &Stream, meter: &Meter) -> Duration {
    let counter = Counter::default();
    let store = checkpoints(stream).await;
    let positions = FeedPositions::new(stream.tables.client.clone(), store.table(), "bench");
    let mut feed = FeedProjector::new(
        reader(&meter.client(&stream.tables.client), stream),
        positions,
        counting(&counter),
    )
    .with_start(FeedStart::Beginning);
    let started = Instant::now();
    while counter.events.load(Ordering::Relaxed) < EVENTS {
        feed.catch_up().await.unwrap();
    }
    started.elapsed()
}

/// A rebuild, by a scan or from the feed.
async fn rebuild(stream: &Stream, meter: &Meter, from_feed: bool) -> Duration {
    let counter = Counter::default();
    let client = meter.client(&stream.tables.client);
    let mut rebuild = Rebuild::new(
        client.clone(),
        &stream.tables.events,
        checkpoints(stream).await,
        counting(&counter),
    )
    .with_safety_margin(Duration::ZERO);
    if from_feed {
        rebuild = rebuild.with_feed(reader(&client, stream));
    }
    let started = Instant::now();
    rebuild.run().await.unwrap();
    assert!(counter.events.load(Ordering::Relaxed) >= EVENTS);
    started.elapsed()
}

fn row(label: &str, took: Duration, read_units: f64) {
    let events = u32::try_from(EVENTS).unwrap();
    println!(
        "| {label} | {EVENTS} | {} | {} | {read_units:.1} | {:.2} |",
        ms(took),
        per_second(EVENTS, took),
        read_units * 1_000.0 / f64::from(events),
    );
}

/// The feed's lag at the stream runs' load, polling every `poll`.
async fn feed_lag(poll: Duration) {
    let stream = stream().await;
    add_slice_index(&stream.tables.client, &stream.tables.events, slices())
        .await
        .unwrap();
    let counter = Counter {
        note: true,
        ..Counter::default()
    };
    let store = checkpoints(&stream).await;
    let positions = FeedPositions::new(stream.tables.client.clone(), store.table(), "bench");
    let feed = FeedProjector::new(
        reader(&stream.tables.client, &stream),
        positions,
        counting(&counter),
    )
    .with_poll_interval(poll);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(feed.run(async move {
        let _ = stopped.await;
    }));
    let repo = stream.tables.repository().with_slices(slices());
    let (n, committed) = commit_at_rate(&repo, || {}).await;
    while counter.events.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    let lags = lags(&committed, &counter);
    println!(
        "| feed, poll {} | {n} | {} | {} | {} | {} |",
        ms(poll),
        per_second(n, LOAD_FOR),
        ms(at(&lags, 50)),
        ms(at(&lags, 99)),
        ms(lags[lags.len() - 1]),
    );
}

/// Prints the feed tables.
pub async fn report() {
    println!(
        "\n### Catch-up of one type ({EVENTS} events of it among {EVENTS} of another, \
         {SLICES} slices)\n"
    );
    println!("| source | events | wall | events/s | read units | RCU per 1,000 events |");
    println!("|---|---:|---:|---:|---:|---:|");
    let stream = sliced().await;
    let meter = Meter::new();
    let (took, costs) = meter.measure(feed_catch_up(&stream, &meter)).await;
    row("feed (`FeedProjector::catch_up`)", took, costs.read_units);
    let (took, costs) = meter.measure(rebuild(&stream, &meter, true)).await;
    row(
        "`Rebuild::with_feed` (waits a window after T0)",
        took,
        costs.read_units,
    );
    let (took, costs) = meter.measure(rebuild(&stream, &meter, false)).await;
    row("`Rebuild` scan", took, costs.read_units);
    let (took, _) = project_all(&stream).await;
    row(
        "stream projector from the trim horizon (Streams reads, not RCU)",
        took,
        0.0,
    );
    println!(
        "\n### Feed lag at steady load ({RATE} one-event commits/s on 50 aggregates for {} s)\n",
        LOAD_FOR.as_secs()
    );
    println!("| source | events | commits/s | commit → dispatch p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    feed_lag(Duration::from_millis(500)).await;
    feed_lag(Duration::from_millis(50)).await;
}
