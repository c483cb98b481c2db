//! `Rebuild`: a projection rebuilt from the events table while commits go
//! on, then handed to the projector with no gap and, for an exactly-once
//! view, no event applied twice. On the embedded emulator and its stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projection_common;
mod projector_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_es::persist::{PersistedEventRepository, ViewRepository};
use cqrs_es::EventEnvelope;
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, Error, EventDecoder, Projection, Projector, Rebuild,
    ViewProjection,
};
use dynamo_es::testing::streams::client_for;
use dynamo_es::testing::{endpoint, TestTables};
use dynamo_es::{Codec, SnapshotPolicy};

use common::{cqrs, deposit, replay, Account, AccountView, FailOn, Other};
use projection_common::stream_tables;
use projector_support::{checkpoints, run_until, start, wait_until, Recorder};

const AGGREGATES: usize = 12;
/// Deposits per aggregate before the rebuild, and during it.
const BEFORE: usize = 5;
const DURING: usize = 5;
const MARGIN: Duration = Duration::from_secs(1);

fn ids(prefix: &str) -> Vec<String> {
    (0..AGGREGATES).map(|i| format!("{prefix}-{i}")).collect()
}

/// `per_id` deposits on each of `ids`, one task per aggregate.
async fn commit(db: &TestTables, ids: &[String], per_id: usize) {
    let framework = Arc::new(cqrs::<Account>(db.repository(), SnapshotPolicy::Never));
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let (framework, id) = (framework.clone(), id.clone());
        tasks.spawn(async move {
            for amount in 1..=per_id {
                deposit(&framework, &id, i64::try_from(amount).unwrap()).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// A dispatcher decoding `Account` events for `projection` alone.
fn dispatching_to(projection: impl Projection<Account> + 'static) -> Dispatcher<Account> {
    Dispatcher::new(EventDecoder::<Account>::new(Codec::default())).with_projection(projection)
}

/// A dispatcher feeding the exactly-once view and `recorder` (which logs
/// every delivery, duplicates included).
fn dispatcher(db: &TestTables, recorder: &Recorder) -> Dispatcher<Account> {
    dispatching_to(ViewProjection::new(
        db.view_repository::<AccountView, Account>(),
    ))
    .with_projection(recorder.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_during_commits_handed_to_the_projector_applies_each_event_once() {
    let (db, arn) = stream_tables().await;
    let ids = ids("rebuilt");
    commit(&db, &ids, BEFORE).await;
    // Another aggregate type in the same table: never dispatched.
    let other = common::deposit_event("Other", "other-1", 1, 5);
    db.repository()
        .persist::<Other>(&[other], None)
        .await
        .unwrap();
    // The history is older than the marker will be (T0 minus the margin).
    tokio::time::sleep(MARGIN * 2).await;

    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let recorder = Recorder::default();
    let progress = Arc::new(Mutex::new(Vec::new()));
    let rebuild = Rebuild::new(
        db.client.clone(),
        &db.events,
        store.clone(),
        dispatcher(&db, &recorder),
    )
    .with_segments(3)
    .with_page_size(4)
    .with_safety_margin(MARGIN)
    .with_progress({
        let progress = progress.clone();
        move |p| progress.lock().unwrap().push(p)
    });
    let ((), report) = tokio::join!(commit(&db, &ids, DURING), rebuild.run());
    let report = report.unwrap();
    let total = AGGREGATES * (BEFORE + DURING);

    // The rebuild saw at least the history, and only events of Account.
    let events = usize::try_from(report.progress.events).unwrap();
    assert!(
        (AGGREGATES * BEFORE..=total).contains(&events),
        "{report:?}"
    );
    assert_eq!(report.progress.items, report.progress.events);
    assert!(report.skipped.is_empty());
    let seen = progress.lock().unwrap().clone();
    assert_eq!(seen.len(), usize::try_from(report.progress.pages).unwrap());
    assert_eq!(
        seen.iter().map(|p| p.events).max(),
        Some(report.progress.events)
    );
    // The marker is T0 minus the margin, and records the finished rebuild.
    assert_eq!(report.started_at - MARGIN, report.start_after);
    assert_eq!(store.start_after().await.unwrap(), Some(report.start_after));
    let marker = store.rebuild_marker().await.unwrap().unwrap();
    assert!(marker.finished_at.is_some());
    assert_eq!(marker.events, report.progress.events);

    // Hand over: the projector reads the stream from the trim horizon and
    // skips what the rebuild covered.
    let streams = client_for(&endpoint().unwrap());
    let projector = Projector::new(streams, &arn, store.clone(), dispatcher(&db, &recorder))
        .with_owner("after-rebuild")
        .with_idle_backoff(Duration::from_millis(5), Duration::from_millis(40))
        .with_heartbeat(Duration::from_millis(500))
        .with_discovery_interval(Duration::from_millis(50));
    let running = start(projector);
    wait_until("every event is projected", Duration::from_secs(60), || {
        recorder.distinct() == total
    })
    .await;
    running.stop().await.unwrap();

    let views = db.view_repository::<AccountView, Account>();
    let repo = db.repository();
    for id in &ids {
        let (replayed, sequences) = replay(&repo, id).await;
        assert_eq!(sequences.len(), BEFORE + DURING);
        let view = views.load(id).await.unwrap().unwrap();
        // Each event applied once: one deposit counted per event.
        assert_eq!(view.deposits, sequences.len(), "{id}");
        assert_eq!(view.total, replayed.total, "{id}");
        assert_eq!(view.last_sequence, BEFORE + DURING, "{id}");
        // The history came from the rebuild alone: the projector skipped
        // its stream records (created before the marker).
        let delivered = recorder.sequences(id);
        for sequence in 1..=BEFORE {
            let times = delivered.iter().filter(|s| **s == sequence).count();
            assert_eq!(times, 1, "{id}: event {sequence} delivered {times} times");
        }
    }
    // In order per aggregate, nothing missed: the projector went on where
    // the rebuild stopped, or before it (the overlap the view skipped).
    assert_eq!(recorder.gaps(), 0);
    assert!(recorder.redelivered() <= AGGREGATES * DURING);
}

#[tokio::test]
async fn a_failing_projection_stops_the_rebuild_with_its_error_and_no_finish_mark() {
    let (db, _) = stream_tables().await;
    let ids = ids("failing");
    commit(&db, &ids, 2).await;
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let dispatcher = dispatching_to(FailOn("failing-3".into()));
    let err = Rebuild::new(db.client.clone(), &db.events, store.clone(), dispatcher)
        .with_segments(2)
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Projection(_)), "{err:?}");
    assert!(
        err.to_string().contains("view of failing-3 refused"),
        "{err}"
    );
    // The marker was written first, and never marked finished.
    let marker = store.rebuild_marker().await.unwrap().unwrap();
    assert_eq!(marker.finished_at, None);
}

#[tokio::test]
async fn a_missing_events_table_is_a_typed_error_naming_it() {
    let (db, _) = stream_tables().await;
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let missing = dynamo_es::testing::unique_name("missing-events");
    let recorder = Recorder::default();
    let err = Rebuild::new(
        db.client.clone(),
        &missing,
        store,
        dispatcher(&db, &recorder),
    )
    .run()
    .await
    .unwrap_err();
    match &err {
        Error::Store(dynamo_es::Error::Dynamo {
            operation, table, ..
        }) => assert_eq!((*operation, table.as_str()), ("Scan", missing.as_str())),
        other => panic!("expected a Scan error, got {other:?}"),
    }
    assert_eq!(recorder.delivered(), 0);
}

#[tokio::test]
async fn a_rebuild_of_an_empty_table_reports_nothing_and_still_marks_the_handover() {
    let (db, _) = stream_tables().await;
    let table = dynamo_es::testing::unique_name("checkpoints");
    dynamo_es::tables::create_checkpoint_table(&db.client, &table)
        .await
        .unwrap();
    let store = CheckpointStore::new(db.client.clone(), &table, "empty");
    let calls = Arc::new(AtomicU64::new(0));
    let recorder = Recorder::default();
    let report = Rebuild::new(
        db.client.clone(),
        &db.events,
        store.clone(),
        dispatcher(&db, &recorder),
    )
    .with_progress({
        let calls = calls.clone();
        move |_| {
            calls.fetch_add(1, Ordering::Relaxed);
        }
    })
    .run()
    .await
    .unwrap();
    assert_eq!(report.progress.events, 0);
    assert_eq!(calls.load(Ordering::Relaxed), report.progress.pages);
    assert_eq!(store.start_after().await.unwrap(), Some(report.start_after));
    assert_eq!(
        report.started_at - dynamo_es::projection::DEFAULT_SAFETY_MARGIN,
        report.start_after
    );
}

/// A projection that fails on one event, and counts the events it is given
/// after it failed.
#[derive(Clone)]
struct FailAt {
    id: String,
    sequence: usize,
    failed: Arc<std::sync::atomic::AtomicBool>,
    after: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl Projection<Account> for FailAt {
    async fn project(&self, id: &str, events: &[EventEnvelope<Account>]) -> Result<(), Error> {
        if self.failed.load(Ordering::SeqCst) {
            self.after
                .fetch_add(u64::try_from(events.len()).unwrap(), Ordering::SeqCst);
            return Ok(());
        }
        if id == self.id && events.iter().any(|e| e.sequence == self.sequence) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(Error::projection(format!("{id} {} refused", self.sequence)));
        }
        Ok(())
    }
}

/// The events of segment `segment` of 2 of the Account scan, in scan order:
/// (aggregate id, sequence).
async fn segment_of(db: &TestTables, segment: i32) -> Vec<(String, usize)> {
    let account = dynamo_es::aws_sdk_dynamodb::types::AttributeValue::S("Account:".into());
    let scan = db
        .client
        .scan()
        .table_name(&db.events)
        .consistent_read(true);
    let mut items = scan
        .segment(segment)
        .total_segments(2)
        .filter_expression("begins_with(AggregateTypeAndId, :prefix)")
        .expression_attribute_values(":prefix", account)
        .into_paginator()
        .items()
        .send();
    let mut events = Vec::new();
    while let Some(item) = items.next().await {
        let item = item.unwrap();
        let key = item["AggregateTypeAndId"].as_s().unwrap();
        let sequence = item["AggregateIdSequence"].as_n().unwrap();
        events.push((
            key.strip_prefix("Account:").unwrap().to_string(),
            sequence.parse().unwrap(),
        ));
    }
    events
}

/// Persists deposits `sequences` of `id` directly, 20 per commit.
async fn persist(db: &TestTables, id: &str, sequences: std::ops::RangeInclusive<usize>) {
    let events: Vec<_> = sequences
        .map(|sequence| common::deposit_event("Account", id, sequence, 1))
        .collect();
    for chunk in events.chunks(20) {
        db.repository()
            .persist::<Account>(chunk, None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_first_failing_segment_stops_the_others_before_their_next_page() {
    let (db, _) = stream_tables().await;
    // Small aggregates spread over both segments, then one long aggregate
    // in segment 1: segment 1 has many more pages than segment 0.
    for i in 0..10 {
        persist(&db, &format!("small-{i}"), 1..=1).await;
    }
    let (long, _) = segment_of(&db, 1)
        .await
        .first()
        .cloned()
        .expect("segment 1 has events");
    persist(&db, &long, 2..=81).await;
    let first_segment = segment_of(&db, 0).await;
    let later_segment = segment_of(&db, 1).await;
    // Segment 0 is one page (fewer items than a page holds: no next page),
    // segment 1 is 9.
    const PAGE: usize = 10;
    assert!(first_segment.len() < PAGE, "{first_segment:?}");
    assert!(later_segment.len() > 8 * PAGE, "{later_segment:?}");
    // The projection fails on segment 0's last event: after it, segment 0
    // has no page left, segment 1 still has most of its pages.
    let (id, sequence) = first_segment.last().cloned().expect("segment 0 has events");

    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let failing = FailAt {
        id: id.clone(),
        sequence,
        failed: Arc::default(),
        after: Arc::default(),
    };
    let dispatcher = dispatching_to(failing.clone());
    let err = Rebuild::new(db.client.clone(), &db.events, store.clone(), dispatcher)
        .with_segments(2)
        .with_page_size(i32::try_from(PAGE).unwrap())
        .run()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{id} {sequence} refused")),
        "{err}"
    );
    assert!(failing.failed.load(Ordering::SeqCst));
    // At most the page segment 1 was dispatching when segment 0 failed.
    let after = failing.after.load(Ordering::SeqCst);
    assert!(
        after <= PAGE as u64,
        "{after} events dispatched after the failure"
    );
    // The failure is recorded in the marker, which stays unfinished.
    let marker = store.rebuild_marker().await.unwrap().unwrap();
    assert!(!marker.is_finished());
    assert!(marker.failed_at.is_some());
    assert!(
        marker
            .error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{marker:?}"
    );
}

/// Commits deposits `sequences` of `id` to the events table and appends
/// their records to shard `shard` of the fake stream, created at `created`.
async fn commit_and_stream(
    db: &TestTables,
    fake: &dynamo_es::testing::streams::FakeStreams,
    shard: &str,
    id: &str,
    sequences: std::ops::RangeInclusive<usize>,
    created: std::time::SystemTime,
) {
    for sequence in sequences {
        let event = common::deposit_event("Account", id, sequence, 10);
        db.repository()
            .persist::<Account>(std::slice::from_ref(&event), None)
            .await
            .unwrap();
        projector_support::fake::push_at(fake, shard, id, sequence, created);
    }
}

#[tokio::test]
async fn the_documented_recovery_from_trimmed_ends_with_a_live_projector() {
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    let (fake, store) = projector_support::fake::setup(Duration::from_secs(2)).await;
    let recorder = Recorder::default();
    let projector =
        || projector_support::fake::on_fake(&fake, &store, &recorder, "p").with_batch_size(2);
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    fake.add_shard("s", None);
    commit_and_stream(&db, &fake, "s", "a", 1..=2, long_ago).await;
    run_until(projector(), &recorder, 2).await;

    // The projector is down past the retention: the records after its
    // checkpoint are trimmed away, and it stops with Trimmed.
    commit_and_stream(&db, &fake, "s", "a", 3..=6, long_ago).await;
    fake.trim("s", 4);
    let err = projector().run(std::future::pending()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Trimmed { shard_id, .. } if shard_id == "s"),
        "{err:?}"
    );

    // The README's recovery, literally: rebuild on the same checkpoint
    // store, then restart the projector.
    let report = Rebuild::new(
        db.client.clone(),
        &db.events,
        store.clone(),
        projector_support::recording(&recorder),
    )
    .with_safety_margin(MARGIN)
    .run()
    .await
    .unwrap();
    assert_eq!(report.progress.events, 6);
    assert_eq!(report.superseded, ["s"]);
    assert_eq!(store.get("s").await.unwrap(), None, "superseded");
    assert_eq!(recorder.distinct(), 6);
    // Commits after the rebuild reach the restarted projector.
    commit_and_stream(&db, &fake, "s", "a", 7..=8, std::time::SystemTime::now()).await;
    run_until(projector(), &recorder, 8).await;
    // Before the gap, the rebuild, and after it; the trimmed records the
    // rebuild covered were skipped.
    assert_eq!(recorder.sequences("a"), [1, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(recorder.gaps(), 0);
    // It checkpointed past the rebuild.
    let checkpoint = store.get("s").await.unwrap().unwrap();
    assert!(checkpoint.checkpoint.is_some(), "{checkpoint:?}");
}

/// A projection that, on its first call, moves shard `moved`'s checkpoint
/// and renews shard `idle`'s lease without progress, as live projectors
/// would during the rebuild.
struct DuringRebuild {
    store: CheckpointStore,
    leases:
        tokio::sync::Mutex<Option<(dynamo_es::projection::Lease, dynamo_es::projection::Lease)>>,
}

#[async_trait::async_trait]
impl Projection<Account> for DuringRebuild {
    async fn project(&self, _: &str, _: &[EventEnvelope<Account>]) -> Result<(), Error> {
        if let Some((mut moved, mut idle)) = self.leases.lock().await.take() {
            self.store.checkpoint(&mut moved, "300").await?;
            self.store.renew(&mut idle).await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_rebuild_supersedes_only_checkpoints_that_did_not_move_during_it() {
    let (db, _) = stream_tables().await;
    commit(&db, &ids("superseding")[..2], 1).await;
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let shard = |id: &str| dynamo_es::projection::ShardInfo {
        stream_arn: "arn:stream".into(),
        shard_id: id.into(),
        parent_shard_id: None,
    };
    // Before the rebuild: a finished shard, one a live projector will move
    // on, one whose live owner makes no progress, one never checkpointed.
    let mut done = store.acquire(&shard("done"), "x").await.unwrap().unwrap();
    store.checkpoint(&mut done, "100").await.unwrap();
    store.finish(&mut done).await.unwrap();
    store.release(done).await.unwrap();
    let mut moved = store.acquire(&shard("moved"), "y").await.unwrap().unwrap();
    store.checkpoint(&mut moved, "200").await.unwrap();
    let mut idle = store.acquire(&shard("idle"), "z").await.unwrap().unwrap();
    store.checkpoint(&mut idle, "250").await.unwrap();
    store.acquire(&shard("fresh"), "w").await.unwrap().unwrap();

    let during = DuringRebuild {
        store: store.clone(),
        leases: tokio::sync::Mutex::new(Some((moved.clone(), idle.clone()))),
    };
    let dispatcher = dispatching_to(during);
    let report = Rebuild::new(db.client.clone(), &db.events, store.clone(), dispatcher)
        .run()
        .await
        .unwrap();
    assert_eq!(report.progress.events, 2);
    let mut superseded = report.superseded.clone();
    superseded.sort();
    assert_eq!(superseded, ["done", "fresh", "idle"]);
    let left: Vec<_> = store.list().await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (
            left[0].shard.shard_id.as_str(),
            left[0].checkpoint.as_deref()
        ),
        ("moved", Some("300")),
        "the checkpoint moved during the rebuild is kept"
    );
    // The idle owner is fenced: its next write finds no lease.
    let err = store.renew(&mut idle).await.unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    assert_eq!(
        store.get("idle").await.unwrap(),
        None,
        "the write created nothing"
    );
    assert!(store.rebuild_marker().await.unwrap().unwrap().is_finished());
}

#[tokio::test]
async fn the_status_lists_every_shard_of_the_stream_and_those_it_no_longer_lists() {
    let (fake, store) = projector_support::fake::setup(Duration::from_secs(2)).await;
    fake.add_shard("parent", None);
    projector_support::fake::split(&fake, "parent", "child");
    fake.add_shard("aged-out", None);
    let info = |id: &str, parent: Option<&str>| dynamo_es::projection::ShardInfo {
        stream_arn: fake.stream_arn(),
        shard_id: id.into(),
        parent_shard_id: parent.map(str::to_string),
    };
    for (shard, checkpoint) in [("parent", "101"), ("aged-out", "102")] {
        let mut lease = store
            .acquire(&info(shard, None), "p")
            .await
            .unwrap()
            .unwrap();
        store.checkpoint(&mut lease, checkpoint).await.unwrap();
    }
    fake.close("aged-out");
    fake.remove("aged-out");

    let status = dynamo_es::projection::ProjectionStatus::read_for_stream(
        &store,
        &fake.client(),
        &fake.stream_arn(),
    )
    .await
    .unwrap();
    let shards: Vec<_> = status
        .shards
        .iter()
        .map(|s| {
            (
                s.shard.shard_id.as_str(),
                s.shard.parent_shard_id.as_deref(),
                s.checkpoint.as_ref().and_then(|c| c.checkpoint.as_deref()),
                s.described,
                s.closed,
            )
        })
        .collect();
    assert_eq!(
        shards,
        [
            ("aged-out", None, Some("102"), Some(false), None),
            ("child", Some("parent"), None, Some(true), Some(false)),
            ("parent", None, Some("101"), Some(true), Some(true)),
        ]
    );
    assert!(status.shards[1].checkpoint.is_none());
    assert_eq!(status.stream_arn, Some(fake.stream_arn()));
}
