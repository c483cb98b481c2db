//! `Rebuild::with_feed`: a projection rebuilt from the `EventsBySlice`
//! index (its own aggregate type only) instead of a scan of the table, then
//! handed to the stream projector with no gap and, for an exactly-once
//! view, no event applied twice. On the embedded emulator and its stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod feed_support;
mod projection_common;
mod projector_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::persist::ViewRepository;
use dynamo_es::projection::feed::SliceReader;
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, EventDecoder, Projector, Rebuild, ViewProjection,
};
use dynamo_es::slice::Slices;
use dynamo_es::tables::create_view_table;
use dynamo_es::testing::streams::client_for;
use dynamo_es::testing::{endpoint, unique_name, TestTables};
use dynamo_es::{Codec, DynamoEventRepository, DynamoViewRepository, SnapshotPolicy};

use common::{cqrs, replay, Account, AccountCommand, AccountView};
use projection_common::stream_tables;
use projector_support::{fake, start, wait_until, Recorder};

const AGGREGATES: usize = 12;
const MARGIN: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_millis(200);

fn slices() -> Slices {
    Slices::new(8).unwrap()
}

/// Tables with a stream and the slice index, and a checkpoint table.
async fn tables() -> (TestTables, String, String) {
    let (db, arn) = stream_tables().await;
    let checkpoints = feed_support::slice(&db, slices()).await;
    (db, arn, checkpoints)
}

fn ids() -> Vec<String> {
    (0..AGGREGATES).map(|i| format!("acct-{i}")).collect()
}

/// `rounds` commits on each account (three events in one transaction every
/// third round), one task per account, by a writer with slices; and an
/// `Other` event per account. Returns the Account events committed.
async fn commit(repo: &DynamoEventRepository, rounds: usize) -> usize {
    let framework = Arc::new(cqrs::<Account>(repo.clone(), SnapshotPolicy::Never));
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids() {
        let (framework, repo) = (framework.clone(), repo.clone());
        tasks.spawn(async move {
            let mut events = 0;
            for round in 0..rounds {
                let times = if round % 3 == 2 { 3 } else { 1 };
                framework
                    .execute(
                        &id,
                        AccountCommand::deposit(1 + i64::try_from(round).unwrap(), times),
                    )
                    .await
                    .unwrap();
                events += times;
            }
            feed_support::commit_other(&repo, &id, 1).await;
            events
        });
    }
    let mut events = 0;
    while let Some(done) = tasks.join_next().await {
        events += done.unwrap();
    }
    events
}

/// A view table of its own.
async fn views(db: &TestTables) -> DynamoViewRepository<AccountView, Account> {
    let table = unique_name("views");
    create_view_table(&db.client, &table).await.unwrap();
    DynamoViewRepository::new(&table, db.client.clone())
}

fn dispatcher(
    views: &DynamoViewRepository<AccountView, Account>,
    recorder: &Recorder,
) -> Dispatcher<Account> {
    Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
        .with_projection(ViewProjection::new(views.clone()))
        .with_projection(recorder.clone())
}

fn reader(db: &TestTables) -> SliceReader {
    SliceReader::new(db.client.clone(), &db.events, "Account", slices())
        .with_window(WINDOW)
        .with_max_events(7)
}

fn projector(
    arn: &str,
    store: &CheckpointStore,
    dispatcher: Dispatcher<Account>,
) -> Projector<Account> {
    Projector::new(
        client_for(&endpoint().unwrap()),
        arn,
        store.clone(),
        dispatcher,
    )
    .with_owner(&unique_name("owner"))
    .with_idle_backoff(Duration::from_millis(5), Duration::from_millis(40))
    .with_heartbeat(Duration::from_millis(500))
    .with_discovery_interval(Duration::from_millis(50))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_rebuilt_from_the_feed_equals_the_one_the_stream_projector_builds() {
    let (db, arn, checkpoints) = tables().await;
    let writer = db.repository().with_slices(slices());
    let total = commit(&writer, 7).await;

    // The stream projector's view, from the trim horizon.
    let (streamed, stream_recorder) = (views(&db).await, Recorder::default());
    let store = CheckpointStore::new(db.client.clone(), &checkpoints, "streamed");
    let running = start(projector(
        &arn,
        &store,
        dispatcher(&streamed, &stream_recorder),
    ));
    wait_until("the stream view is built", Duration::from_secs(60), || {
        stream_recorder.distinct() == total
    })
    .await;
    running.stop().await.unwrap();

    // The same view rebuilt from the feed.
    let (rebuilt, feed_recorder) = (views(&db).await, Recorder::default());
    let store = CheckpointStore::new(db.client.clone(), &checkpoints, "rebuilt");
    let report = Rebuild::new(
        db.client.clone(),
        &db.events,
        store,
        dispatcher(&rebuilt, &feed_recorder),
    )
    .with_feed(reader(&db))
    .with_safety_margin(MARGIN)
    .run()
    .await
    .unwrap();
    // Only Account events were read, each once, in order.
    assert_eq!(usize::try_from(report.progress.events).unwrap(), total);
    assert_eq!(feed_recorder.distinct(), total);
    assert_eq!(feed_recorder.redelivered(), 0);
    assert_eq!(feed_recorder.gaps(), 0);
    for id in ids() {
        let (replayed, sequences) = replay(&db.repository(), &id).await;
        let view = rebuilt.load(&id).await.unwrap().unwrap();
        assert_eq!(
            Some(&view),
            streamed.load(&id).await.unwrap().as_ref(),
            "{id}"
        );
        assert_eq!(
            (view.total, view.deposits),
            (replayed.total, sequences.len()),
            "{id}"
        );
    }
    // The feed's positions are gone with the rebuild: only the stream
    // projections' items are left.
    let left = dynamo_es::projection::feed::FeedPositions::new(
        db.client.clone(),
        &checkpoints,
        "rebuilt#rebuild",
    )
    .list()
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_feed_during_commits_hands_over_to_the_projector_exactly_once() {
    let (db, arn, checkpoints) = tables().await;
    let writer = db.repository().with_slices(slices());
    let before = commit(&writer, 4).await;
    // The history is older than the marker will be (T0 minus the margin).
    tokio::time::sleep(MARGIN * 2).await;

    let (view, recorder) = (views(&db).await, Recorder::default());
    let store = CheckpointStore::new(db.client.clone(), &checkpoints, "accounts")
        .with_lease_duration(Duration::from_secs(2));
    let rebuild = Rebuild::new(
        db.client.clone(),
        &db.events,
        store.clone(),
        dispatcher(&view, &recorder),
    )
    .with_feed(reader(&db))
    .with_safety_margin(MARGIN);
    let (during, report) = tokio::join!(commit(&writer, 4), rebuild.run());
    let report = report.unwrap();
    let total = before + during;
    let events = usize::try_from(report.progress.events).unwrap();
    assert!((before..=total).contains(&events), "{report:?}");
    assert_eq!(recorder.log().len(), events);

    // Hand over: the projector reads the stream from the trim horizon and
    // skips what the rebuild covered.
    let running = start(projector(&arn, &store, dispatcher(&view, &recorder)));
    wait_until("every event is projected", Duration::from_secs(60), || {
        recorder.distinct() == total
    })
    .await;
    running.stop().await.unwrap();
    for id in ids() {
        let (replayed, sequences) = replay(&db.repository(), &id).await;
        let view = view.load(&id).await.unwrap().unwrap();
        // Each event applied once: one deposit counted per event.
        assert_eq!(view.deposits, sequences.len(), "{id}");
        assert_eq!(view.total, replayed.total, "{id}");
        assert_eq!(view.last_sequence, sequences.len(), "{id}");
    }
    // In order per aggregate, nothing missed; what both delivered (the
    // overlap after the marker) the view skipped, and the history before
    // the marker came once.
    assert_eq!(recorder.gaps(), 0);
    assert!(
        recorder.redelivered() <= during,
        "{}",
        recorder.redelivered()
    );
    for id in ids() {
        let delivered = recorder.sequences(&id);
        for sequence in 1..=before / AGGREGATES {
            let times = delivered.iter().filter(|s| **s == sequence).count();
            assert_eq!(times, 1, "{id}: event {sequence} delivered {times} times");
        }
    }
}

/// Commits deposits `sequences` of `id` by a writer with slices, in one
/// transaction, and appends their records to shard `s` of the fake stream,
/// created at `created`.
async fn commit_sliced(
    db: &TestTables,
    fake: &dynamo_es::testing::streams::FakeStreams,
    id: &str,
    sequences: std::ops::RangeInclusive<usize>,
    created: std::time::SystemTime,
) {
    let events: Vec<_> = sequences
        .clone()
        .map(|sequence| common::deposit_event("Account", id, sequence, 10))
        .collect();
    let writer = db.repository().with_slices(slices());
    cqrs_es::persist::PersistedEventRepository::persist::<Account>(&writer, &events, None)
        .await
        .unwrap();
    sequences.for_each(|sequence| drop(fake::push_at(fake, "s", id, sequence, created)));
}

#[tokio::test]
async fn a_projection_stopped_by_trimmed_recovers_by_a_rebuild_from_the_feed() {
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    feed_support::slice(&db, slices()).await;
    let (fake, store) = fake::setup(Duration::from_secs(2)).await;
    let recorder = Recorder::default();
    let projector = || fake::on_fake(&fake, &store, &recorder, "p").with_batch_size(2);
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    fake.add_shard("s", None);
    commit_sliced(&db, &fake, "a", 1..=2, long_ago).await;
    projector_support::run_until(projector(), &recorder, 2).await;

    // Down past the retention: the records after its checkpoint are
    // trimmed away, and it stops with Trimmed.
    commit_sliced(&db, &fake, "a", 3..=6, long_ago).await;
    fake.trim("s", 4);
    let stopped = projector().run(std::future::pending()).await;
    assert!(
        matches!(stopped, Err(dynamo_es::projection::Error::Trimmed { .. })),
        "{stopped:?}"
    );

    // The recovery, from the feed: only Account's slices are read.
    let dispatcher = projector_support::recording(&recorder);
    let rebuild = Rebuild::new(db.client.clone(), &db.events, store.clone(), dispatcher);
    let report = rebuild.with_feed(reader(&db)).with_safety_margin(MARGIN);
    let report = report.run().await.unwrap();
    assert_eq!(
        (report.progress.events, report.superseded),
        (6, vec!["s".to_string()])
    );
    // Commits after the rebuild reach the restarted projector.
    commit_sliced(&db, &fake, "a", 7..=8, std::time::SystemTime::now()).await;
    projector_support::run_until(projector(), &recorder, 8).await;
    // Before the gap, the rebuild, and after it: the trimmed records the
    // rebuild covered were skipped, nothing was missed.
    assert_eq!(recorder.sequences("a"), [1, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(recorder.gaps(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_feed_waits_for_an_event_the_index_shows_after_t0() {
    let (db, arn, checkpoints) = tables().await;
    let writer = db.repository().with_slices(slices());
    let history = commit(&writer, 2).await;
    // One more event, committed before the marker (T0 minus the margin),
    // whose index entry shows only after T0: the stream projector will
    // skip its record, so the rebuild must wait for it.
    let visibility = Arc::new(feed_support::Visibility::default());
    let hidden = Instant::now() + MARGIN + Duration::from_millis(600);
    visibility
        .0
        .lock()
        .unwrap()
        .insert(("late".to_string(), 1), hidden);
    let late = common::deposit_event("Account", "late", 1, 5);
    cqrs_es::persist::PersistedEventRepository::persist::<Account>(&writer, &[late], None)
        .await
        .unwrap();
    tokio::time::sleep(MARGIN + Duration::from_millis(200)).await;

    let (view, recorder) = (views(&db).await, Recorder::default());
    let store = CheckpointStore::new(db.client.clone(), &checkpoints, "accounts");
    let client = feed_support::lagging_client(&db, &visibility);
    let reader = SliceReader::new(client, &db.events, "Account", slices())
        .with_window(Duration::from_secs(1));
    let rebuilding = dispatcher(&view, &recorder);
    let rebuild = Rebuild::new(db.client.clone(), &db.events, store.clone(), rebuilding);
    rebuild
        .with_feed(reader)
        .with_safety_margin(MARGIN)
        .run()
        .await
        .unwrap();
    let running = start(projector(&arn, &store, dispatcher(&view, &recorder)));
    wait_until("every event is projected", Duration::from_secs(30), || {
        recorder.distinct() == history + 1
    })
    .await;
    running.stop().await.unwrap();
    assert_eq!(recorder.sequences("late"), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_feed_after_a_deletion_ends_as_the_stream_view_does() {
    let (db, arn, checkpoints) = tables().await;
    let writer = db.repository().with_slices(slices());
    let total = commit(&writer, 2).await;
    writer.delete_aggregate::<Account>("acct-0").await.unwrap();

    // The stream projector sees the events, then the tombstone.
    let streamed = Recorder::default();
    let store = CheckpointStore::new(db.client.clone(), &checkpoints, "streamed");
    let running = start(projector(
        &arn,
        &store,
        projector_support::recording(&streamed),
    ));
    wait_until("the stream view is built", Duration::from_secs(60), || {
        streamed.distinct() == total && !streamed.removed().is_empty()
    })
    .await;
    running.stop().await.unwrap();

    // The feed finds the tombstone alone: the events are gone.
    let rebuilt = Recorder::default();
    let store = CheckpointStore::new(db.client.clone(), &checkpoints, "rebuilt");
    Rebuild::new(
        db.client.clone(),
        &db.events,
        store,
        projector_support::recording(&rebuilt),
    )
    .with_feed(reader(&db))
    .with_safety_margin(MARGIN)
    .run()
    .await
    .unwrap();
    assert_eq!(rebuilt.removed().get("acct-0"), Some(&2));
    assert_eq!(rebuilt.removed(), streamed.removed());
    assert_eq!(rebuilt.deletions().len(), 1);
    for id in ids() {
        assert_eq!(rebuilt.rows(&id), streamed.rows(&id), "{id}");
    }
}
