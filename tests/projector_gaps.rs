//! The projector never moves past a gap, silently or otherwise (issue 21):
//! a checkpoint whose shard aged out of the stream, a child whose first
//! records are gone, a shard whose parent was never read are
//! `Error::Trimmed`; `StartPosition::Latest` means "from the moment the
//! projection started" for every shard, children and reopened shards
//! included; only a finished rebuild moves a projector past records, and
//! only on shards without a checkpoint; shards beyond `max_shards` get
//! their turn. On the fake Streams endpoint, checkpoints on the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projector_support;

use std::time::{Duration, SystemTime};

use cqrs_es::persist::PersistedEventRepository;
use dynamo_es::item::event_to_item;
use dynamo_es::projection::{
    Dispatcher, Error, EventDecoder, Projection, Projector, Rebuild, StartPosition,
};
use dynamo_es::testing::streams::FakeStreams;
use dynamo_es::Codec;

use common::{deposit_event, Account};
use projector_support::fake::{by_shard, on_fake, push, setup};
use projector_support::{recording, start, wait_until, Recorder};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `projector` until `recorder` applied `events` events, then stops it
/// gracefully.
async fn run_until(projector: Projector<Account>, recorder: &Recorder, events: usize) {
    let running = start(projector);
    wait_until("every event is projected", WAIT, || {
        recorder.distinct() == events
    })
    .await;
    running.stop().await.unwrap();
}

/// Runs `projector` until its run ends, or `recorder` has more than
/// `limit` deliveries (then stops it); returns the run's error, if any.
async fn run_to_end(
    projector: Projector<Account>,
    recorder: &Recorder,
    limit: usize,
) -> Option<Error> {
    let running = start(projector);
    wait_until("the run ends or delivers too much", WAIT, || {
        running.task.is_finished() || recorder.delivered() > limit
    })
    .await;
    if running.task.is_finished() {
        return running.task.await.unwrap().err();
    }
    // Let it finish what it reads, to show what it delivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await.err()
}

/// Appends deposit `sequence` of aggregate `id` to `shard`, created at `created`.
fn push_at(fake: &FakeStreams, shard: &str, id: &str, sequence: usize, created: SystemTime) {
    let event = deposit_event("Account", id, sequence, 10);
    let (item, _) = event_to_item(&event, &Codec::default()).unwrap();
    fake.push_at(shard, item, created)
        .expect("the shard is open");
}

fn trimmed_shard(err: Option<&Error>) -> Option<(&str, &str)> {
    match err {
        Some(Error::Trimmed {
            shard_id,
            checkpoint,
            ..
        }) => Some((shard_id.as_str(), checkpoint.as_str())),
        _ => None,
    }
}

// --- 1. gaps are Trimmed ---------------------------------------------------

#[tokio::test]
async fn a_checkpointed_shard_no_longer_described_is_trimmed_not_skipped() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("p", None);
    push(&fake, "p", "a", 1..=2);
    let recorder = Recorder::default();
    run_until(on_fake(&fake, &store, &recorder, "p"), &recorder, 2).await;
    let checkpoint = by_shard(&store).await["p"].0.clone().unwrap();

    // Down for days: "p" got more records, split, closed, and aged out of
    // the stream with records the projection never read.
    push(&fake, "p", "a", 3..=4);
    fake.add_shard("c", Some("p"));
    fake.close("p");
    push(&fake, "c", "a", 5..=6);
    fake.remove("p");

    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 2).await;
    assert_eq!(
        trimmed_shard(err.as_ref()),
        Some(("p", checkpoint.as_str())),
        "{err:?}; delivered {:?}",
        recorder.log()
    );
    assert!(err.unwrap().to_string().contains("rebuild"));
    assert_eq!(recorder.sequences("a"), [1, 2], "nothing after the gap");
}

#[tokio::test]
async fn a_shard_that_leaves_the_stream_while_being_read_is_trimmed() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    push(&fake, "s", "a", 1..=4);
    // The shard ages out of the stream while its first batch is dispatched.
    let removing = fake.clone();
    let recorder = Recorder::with_hook(move |_| removing.remove("s"));
    let projector = on_fake(&fake, &store, &recorder, "p").with_batch_size(2);
    let err = run_to_end(projector, &recorder, 2).await;
    let checkpoint = by_shard(&store).await["s"].0.clone().unwrap();
    assert_eq!(
        trimmed_shard(err.as_ref()),
        Some(("s", checkpoint.as_str())),
        "{err:?}"
    );
    assert_eq!(recorder.sequences("a"), [1, 2]);
}

#[tokio::test]
async fn a_child_whose_first_records_were_trimmed_is_trimmed_not_read_from_the_horizon() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("p", None);
    push(&fake, "p", "a", 1..=2);
    fake.add_shard("c", Some("p"));
    fake.close("p");
    push(&fake, "c", "a", 3..=5);
    // The child's first record aged out before anyone read it.
    fake.trim("c", 1);

    let recorder = Recorder::default();
    // The parent's records come first; the child's must not follow.
    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 2).await;
    assert_eq!(
        trimmed_shard(err.as_ref()),
        Some(("c", "none")),
        "{err:?}; delivered {:?}",
        recorder.log()
    );
    assert_eq!(recorder.sequences("a"), [1, 2], "nothing after the gap");
    let asked = fake.iterator_requests();
    let child = asked.iter().find(|r| r.shard_id == "c").unwrap();
    assert_eq!(child.iterator_type, "AT_SEQUENCE_NUMBER");
}

#[tokio::test]
async fn a_shard_whose_parent_was_never_read_is_trimmed_not_read_from_the_horizon() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("r", None);
    push(&fake, "r", "a", 1..=2);
    let recorder = Recorder::default();
    run_until(on_fake(&fake, &store, &recorder, "p"), &recorder, 2).await;

    // While the projector was down, a shard ("ghost") was created, filled,
    // closed and aged out; only its child is still described.
    fake.add_shard("s", Some("ghost"));
    push(&fake, "s", "b", 2..=3);

    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 2).await;
    assert_eq!(
        trimmed_shard(err.as_ref()),
        Some(("ghost", "none")),
        "{err:?}; delivered {:?}",
        recorder.log()
    );
    assert!(recorder.sequences("b").is_empty(), "nothing after the gap");
}

#[tokio::test]
async fn a_root_whose_records_were_trimmed_after_the_projection_started_is_trimmed() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("r", None);
    push(&fake, "r", "a", 1..=2);
    fake.add_shard("q", None);
    // One shard at a time, no turns: "q" waits while "r" is read.
    let recorder = Recorder::default();
    let projector = on_fake(&fake, &store, &recorder, "p")
        .with_max_shards(1)
        .with_rotation(Duration::from_secs(3600));
    run_until(projector, &recorder, 2).await;
    assert_eq!(by_shard(&store).await.len(), 1, "q was never leased");

    // "q" got records after the projection started, and its first one
    // aged out before it was read.
    push(&fake, "q", "b", 1..=3);
    fake.trim("q", 1);
    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 2).await;
    assert_eq!(
        trimmed_shard(err.as_ref()),
        Some(("q", "none")),
        "{err:?}; delivered {:?}",
        recorder.log()
    );
    assert!(recorder.sequences("b").is_empty(), "nothing after the gap");
}

#[tokio::test]
async fn a_root_reopened_before_its_first_checkpoint_after_a_trim_is_trimmed() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    push(&fake, "s", "a", 1..=3);
    // Killed while it dispatches its first batch: the shard has an item,
    // and no checkpoint.
    let killed = Recorder::with_hook(|_| panic!("the process is killed mid-batch"));
    let err = run_to_end(on_fake(&fake, &store, &killed, "p"), &killed, 0).await;
    assert!(err.is_some(), "the run ended with the kill");
    assert_eq!(by_shard(&store).await["s"].0, None, "no checkpoint");

    // While it was down, the first record (one it was given, created
    // before the projection started) aged out.
    fake.trim("s", 1);
    let recorder = Recorder::default();
    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 0).await;
    assert_eq!(
        trimmed_shard(err.as_ref()),
        Some(("s", "none")),
        "{err:?}; delivered {:?}",
        recorder.log()
    );
    assert_eq!(recorder.delivered(), 0, "nothing after the gap");
}

#[tokio::test]
async fn a_root_opened_at_the_trim_horizon_and_reopened_before_its_first_checkpoint_resumes_there()
{
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    push(&fake, "s", "a", 1..=3);
    // Aged out before the projection started: never its to read.
    fake.trim("s", 1);
    // Killed while it dispatches its first batch, read from the trim
    // horizon: no checkpoint, but the shard's item says where it started.
    let killed = Recorder::with_hook(|_| panic!("the process is killed mid-batch"));
    let err = run_to_end(on_fake(&fake, &store, &killed, "p"), &killed, 0).await;
    assert!(err.is_some(), "the run ended with the kill");
    assert_eq!(by_shard(&store).await["s"].0, None, "no checkpoint");

    let recorder = Recorder::default();
    run_until(on_fake(&fake, &store, &recorder, "p"), &recorder, 2).await;
    assert_eq!(recorder.sequences("a"), [2, 3]);
}

#[tokio::test]
async fn after_a_finished_rebuild_a_child_whose_trimmed_records_it_covered_is_read_on() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    let events: Vec<_> = (1..=4)
        .map(|sequence| deposit_event("Account", "a", sequence, 10))
        .collect();
    db.repository()
        .persist::<Account>(&events, None)
        .await
        .unwrap();
    // On the stream: 1..=2 on a parent, 3..=4 on its child, whose first
    // record aged out before anyone read it.
    fake.add_shard("p", None);
    push(&fake, "p", "a", 1..=2);
    fake.add_shard("c", Some("p"));
    fake.close("p");
    push(&fake, "c", "a", 3..=4);
    fake.trim("c", 1);
    // The stream's records predate the rebuild's start (whole milliseconds).
    tokio::time::sleep(Duration::from_millis(3)).await;
    let recorder = Recorder::default();
    Rebuild::new(
        db.client.clone(),
        &db.events,
        store.clone(),
        recording(&recorder),
    )
    .with_safety_margin(Duration::ZERO)
    .run()
    .await
    .unwrap();
    assert_eq!(recorder.sequences("a"), [1, 2, 3, 4], "the rebuild's scan");

    // The record trimmed was in the scan: the projector reads on.
    push_at(
        &fake,
        "c",
        "a",
        5,
        SystemTime::now() + Duration::from_secs(1),
    );
    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 4).await;
    assert!(err.is_none(), "{err:?}; delivered {:?}", recorder.log());
    assert_eq!(recorder.sequences("a"), [1, 2, 3, 4, 5]);
}

/// Commits deposits `1..=count` of `a` to the events table, and a
/// rebuild of the projection (told the stream, if `described`) into
/// `recorder` once the stream's records are older than its start.
async fn rebuilt(
    fake: &FakeStreams,
    store: &dynamo_es::projection::CheckpointStore,
    recorder: &Recorder,
    count: usize,
    described: bool,
) {
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    let events: Vec<_> = (1..=count)
        .map(|sequence| deposit_event("Account", "a", sequence, 10))
        .collect();
    db.repository()
        .persist::<Account>(&events, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let rebuild = Rebuild::new(
        db.client.clone(),
        &db.events,
        store.clone(),
        recording(recorder),
    )
    .with_safety_margin(Duration::ZERO);
    let rebuild = if described {
        rebuild.with_stream(fake.client(), &fake.stream_arn())
    } else {
        rebuild
    };
    rebuild.run().await.unwrap();
    assert_eq!(
        recorder.sequences("a"),
        (1..=count).collect::<Vec<_>>(),
        "the rebuild's scan"
    );
}

/// The stream of [`a_shard_closed_before_the_rebuild_may_have_every_record_trimmed`]:
/// `p` (1..=2) and its child `c` (3..=4) closed, every record of both
/// trimmed, and `c`'s child `g` open and empty.
fn closed_and_trimmed(fake: &FakeStreams) {
    fake.add_shard("p", None);
    push(fake, "p", "a", 1..=2);
    fake.add_shard("c", Some("p"));
    fake.close("p");
    push(fake, "c", "a", 3..=4);
    fake.add_shard("g", Some("c"));
    fake.close("c");
    fake.trim("p", 2);
    fake.trim("c", 2);
}

#[tokio::test]
async fn a_shard_closed_before_the_rebuild_may_have_every_record_trimmed() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    closed_and_trimmed(&fake);
    let recorder = Recorder::default();
    rebuilt(&fake, &store, &recorder, 4, true).await;
    let marker = store.rebuild_marker().await.unwrap().unwrap();
    assert_eq!(marker.closed_shards, ["c", "p"]);

    // Nothing is left on `p` and `c` to date what was trimmed, but both
    // were closed when the rebuild described the stream: the scan had it.
    push_at(
        &fake,
        "g",
        "a",
        5,
        SystemTime::now() + Duration::from_secs(1),
    );
    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 4).await;
    assert!(err.is_none(), "{err:?}; delivered {:?}", recorder.log());
    assert_eq!(recorder.sequences("a"), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn without_the_stream_a_rebuild_cannot_vouch_for_a_shard_with_nothing_left() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    closed_and_trimmed(&fake);
    let recorder = Recorder::default();
    rebuilt(&fake, &store, &recorder, 4, false).await;
    assert!(store
        .rebuild_marker()
        .await
        .unwrap()
        .unwrap()
        .closed_shards
        .is_empty());

    push_at(
        &fake,
        "g",
        "a",
        5,
        SystemTime::now() + Duration::from_secs(1),
    );
    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 4).await;
    assert_eq!(
        trimmed_shard(err.as_ref()),
        Some(("p", "none")),
        "{err:?}; delivered {:?}",
        recorder.log()
    );
    assert_eq!(
        recorder.sequences("a"),
        [1, 2, 3, 4],
        "nothing after the gap"
    );
}

#[tokio::test]
async fn a_child_created_after_the_rebuild_with_every_record_trimmed_is_trimmed() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("p", None);
    push(&fake, "p", "a", 1..=2);
    let recorder = Recorder::default();
    rebuilt(&fake, &store, &recorder, 2, true).await;
    assert!(store
        .rebuild_marker()
        .await
        .unwrap()
        .unwrap()
        .closed_shards
        .is_empty());
    // After the rebuild: a rollover, two events on the child, and
    // retention takes both (the projector was down long enough).
    tokio::time::sleep(Duration::from_millis(3)).await;
    fake.add_shard("c", Some("p"));
    fake.close("p");
    push(&fake, "c", "a", 3..=4);
    // Retention would take `p`'s records first, and `p` (open at the
    // rebuild, closed since) would be `Trimmed` already; they are kept here
    // so that the child's own check is what stops the projector.
    fake.trim("c", 2);

    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 2).await;
    assert_eq!(
        trimmed_shard(err.as_ref()),
        Some(("c", "none")),
        "{err:?}; delivered {:?}",
        recorder.log()
    );
    assert_eq!(recorder.sequences("a"), [1, 2]);
}

#[tokio::test]
async fn a_fresh_projection_starts_its_first_shards_at_the_trim_horizon() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    // Records before the horizon were never this projection's to read.
    fake.add_shard("s", Some("long-gone"));
    push(&fake, "s", "a", 1..=3);
    fake.trim("s", 1);
    fake.add_shard("c", Some("s"));
    fake.close("s");
    push(&fake, "c", "a", 4..=4);
    let recorder = Recorder::default();
    run_until(on_fake(&fake, &store, &recorder, "p"), &recorder, 3).await;
    assert_eq!(recorder.sequences("a"), [2, 3, 4]);
    // And a restart resumes, with no gap reported.
    push(&fake, "c", "a", 5..=5);
    run_until(on_fake(&fake, &store, &recorder, "p"), &recorder, 4).await;
    assert_eq!(recorder.sequences("a"), [2, 3, 4, 5]);
}

// --- 2. Latest means "from the moment the projection started" --------------

#[tokio::test]
async fn with_latest_a_child_created_while_running_is_read_from_its_first_record() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    let before = SystemTime::now() - Duration::from_secs(60);
    push_at(&fake, "s", "a", 1, before);
    let recorder = Recorder::default();
    let projector = on_fake(&fake, &store, &recorder, "p").with_start(StartPosition::Latest);
    let lag = projector.lag();
    let running = start(projector);
    wait_until("the shard is read", WAIT, || {
        fake.calls("GetRecords") > 0 && lag.shards().iter().any(|s| s.owned)
    })
    .await;
    push(&fake, "s", "a", 2..=3);
    // A split while the projector runs: the child gets records at once.
    fake.add_shard("c", Some("s"));
    fake.close("s");
    push(&fake, "c", "a", 4..=5);
    wait_until("the child's records are projected", WAIT, || {
        recorder.distinct() == 4
    })
    .await;
    running.stop().await.unwrap();
    assert_eq!(recorder.sequences("a"), [2, 3, 4, 5]);
}

#[tokio::test]
async fn with_latest_a_restart_before_the_first_checkpoint_skips_nothing_written_since_the_start() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    let recorder = Recorder::default();
    let projector = on_fake(&fake, &store, &recorder, "p").with_start(StartPosition::Latest);
    let lag = projector.lag();
    let running = start(projector);
    wait_until("the shard is read", WAIT, || {
        fake.calls("GetRecords") > 0 && lag.shards().iter().any(|s| s.owned)
    })
    .await;
    running.stop().await.unwrap();
    assert_eq!(by_shard(&store).await["s"].0, None, "no checkpoint yet");

    // Written while the projector was down: one dated before the
    // projection started (skipped), two after it.
    push_at(
        &fake,
        "s",
        "a",
        1,
        SystemTime::now() - Duration::from_secs(60),
    );
    push(&fake, "s", "a", 2..=3);
    let projector = on_fake(&fake, &store, &recorder, "p").with_start(StartPosition::Latest);
    run_until(projector, &recorder, 2).await;
    assert_eq!(recorder.sequences("a"), [2, 3]);
}

// --- 4. only a finished rebuild moves a projector past records ------------

/// Fails every call.
struct Failing;

#[async_trait::async_trait]
impl Projection<Account> for Failing {
    async fn project(&self, _: &str, _: &[cqrs_es::EventEnvelope<Account>]) -> Result<(), Error> {
        Err(Error::projection("the view table is unavailable"))
    }
}

#[tokio::test]
async fn a_failed_rebuilds_marker_skips_nothing_and_stops_the_projector_with_a_typed_error() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    db.repository()
        .persist::<Account>(&[deposit_event("Account", "x", 1, 10)], None)
        .await
        .unwrap();
    let failing =
        Dispatcher::new(EventDecoder::<Account>::new(Codec::default())).with_projection(Failing);
    let failed = Rebuild::new(db.client.clone(), &db.events, store.clone(), failing)
        .with_safety_margin(Duration::ZERO)
        .run()
        .await;
    assert!(failed.is_err());
    let marker = store.rebuild_marker().await.unwrap().unwrap();
    assert_eq!(marker.finished_at, None, "the marker of a failed rebuild");

    fake.add_shard("s", None);
    push_at(
        &fake,
        "s",
        "a",
        1,
        marker.start_after - Duration::from_secs(60),
    );
    push_at(
        &fake,
        "s",
        "a",
        2,
        marker.start_after + Duration::from_secs(1),
    );
    let recorder = Recorder::default();
    let err = run_to_end(on_fake(&fake, &store, &recorder, "p"), &recorder, 0).await;
    let Some(err) = err else {
        panic!("expected RebuildUnfinished, delivered {:?}", recorder.log());
    };
    assert!(
        matches!(&err, Error::RebuildUnfinished { projection, .. } if projection == "accounts"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("run the rebuild again"), "{message}");
    assert_eq!(recorder.delivered(), 0);
}

#[tokio::test]
async fn a_finished_rebuilds_marker_does_not_skip_records_on_a_checkpointed_shard() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    // A rebuild of another aggregate's table (no events of "a") finishes
    // first: its marker is now.
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    Rebuild::new(
        db.client.clone(),
        &db.events,
        store.clone(),
        recording(&Recorder::default()),
    )
    .with_safety_margin(Duration::ZERO)
    .run()
    .await
    .unwrap();
    // A record after the marker: the projector reads it and checkpoints.
    push_at(
        &fake,
        "s",
        "a",
        1,
        SystemTime::now() + Duration::from_secs(1),
    );
    let recorder = Recorder::default();
    run_until(on_fake(&fake, &store, &recorder, "p"), &recorder, 1).await;
    // Records after the checkpoint, dated before the marker (a writer's
    // clock behind): only a shard without a checkpoint may skip.
    let long_ago = SystemTime::now() - Duration::from_secs(600);
    push_at(&fake, "s", "a", 2, long_ago);
    push_at(&fake, "s", "a", 3, long_ago + Duration::from_secs(1));
    run_until(on_fake(&fake, &store, &recorder, "p"), &recorder, 3).await;
    assert_eq!(recorder.sequences("a"), [1, 2, 3]);
}

// --- 6. shards beyond max_shards get their turn -----------------------------

#[tokio::test]
async fn open_shards_beyond_max_shards_are_read_in_turn() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    for shard in ["s0", "s1", "s2", "s3"] {
        fake.add_shard(shard, None);
        push(&fake, shard, shard, 1..=2);
    }
    let recorder = Recorder::default();
    let projector = on_fake(&fake, &store, &recorder, "p")
        .with_max_shards(2)
        .with_rotation(Duration::from_millis(100));
    let lag = projector.lag();
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let running = start(projector);
    wait_until("every shard is read", WAIT, || {
        let owned = lag.shards().iter().filter(|s| s.owned).count();
        most.fetch_max(owned, std::sync::atomic::Ordering::SeqCst);
        recorder.distinct() == 8
    })
    .await;
    // Records pushed later to a shard that gave its turn away are read too.
    push(&fake, "s0", "s0", 3..=3);
    wait_until("the new record is read", WAIT, || recorder.distinct() == 9).await;
    running.stop().await.unwrap();
    assert!(most.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    assert_eq!(recorder.gaps(), 0);
    assert_eq!(by_shard(&store).await.len(), 4);
}
