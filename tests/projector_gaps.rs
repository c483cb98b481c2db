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

use dynamo_es::projection::{CheckpointStore, Error, StartPosition};
use dynamo_es::testing::streams::FakeStreams;

use common::deposit_event;
use projector_support::fake::{
    by_shard, checkpointed, on_fake, one_shard, project_to_end, project_until, push, push_at,
    setup, split, start_at_latest,
};
use projector_support::{
    assert_trimmed, failing, rebuild, recording, run_to_end, run_until, start, wait_until,
    Recorder, WAIT,
};

/// A second from now: a record created after a rebuild started now.
fn in_a_second() -> SystemTime {
    SystemTime::now() + Duration::from_secs(1)
}

/// Runs a projector as `p` into `recorder` to its end (or more than `limit`
/// deliveries), which must be `Error::Trimmed` on `shard` at `checkpoint`
/// (`"none"` without one); that error.
async fn project_to_trimmed(
    fake: &FakeStreams,
    store: &CheckpointStore,
    recorder: &Recorder,
    limit: usize,
    shard: &str,
    checkpoint: &str,
) -> Error {
    let err = project_to_end(fake, store, recorder, limit).await;
    assert_trimmed(err.as_ref(), shard, checkpoint, recorder);
    err.expect("trimmed")
}

/// Runs a projector as `p` on `shard`, killed while it dispatches its first
/// batch, and checks that the run ended with the kill and left no
/// checkpoint.
async fn killed_mid_batch(fake: &FakeStreams, store: &CheckpointStore, shard: &str) {
    let killed = Recorder::with_hook(|_| panic!("the process is killed mid-batch"));
    let err = project_to_end(fake, store, &killed, 0).await;
    assert!(err.is_some(), "the run ended with the kill");
    assert_eq!(by_shard(store).await[shard].0, None, "no checkpoint");
}

// --- 1. gaps are Trimmed ---------------------------------------------------

#[tokio::test]
async fn a_checkpointed_shard_no_longer_described_is_trimmed_not_skipped() {
    let (fake, store, recorder, checkpoint) = checkpointed("p", 2).await;

    // Down for days: "p" got more records, split, closed, and aged out of
    // the stream with records the projection never read.
    push(&fake, "p", "a", 3..=4);
    split(&fake, "p", "c");
    push(&fake, "c", "a", 5..=6);
    fake.remove("p");

    let err = project_to_trimmed(&fake, &store, &recorder, 2, "p", &checkpoint).await;
    assert!(err.to_string().contains("rebuild"));
    assert_eq!(recorder.sequences("a"), [1, 2], "nothing after the gap");
}

#[tokio::test]
async fn a_shard_that_leaves_the_stream_while_being_read_is_trimmed() {
    let (fake, store) = one_shard("s", 1..=4).await;
    // The shard ages out of the stream while its first batch is dispatched.
    let removing = fake.clone();
    let recorder = Recorder::with_hook(move |_| removing.remove("s"));
    let projector = on_fake(&fake, &store, &recorder, "p").with_batch_size(2);
    let err = run_to_end(projector, &recorder, 2).await;
    let checkpoint = by_shard(&store).await["s"].0.clone().unwrap();
    assert_trimmed(err.as_ref(), "s", &checkpoint, &recorder);
    assert_eq!(recorder.sequences("a"), [1, 2]);
}

#[tokio::test]
async fn a_child_whose_first_records_were_trimmed_is_trimmed_not_read_from_the_horizon() {
    let (fake, store) = one_shard("p", 1..=2).await;
    split(&fake, "p", "c");
    push(&fake, "c", "a", 3..=5);
    // The child's first record aged out before anyone read it.
    fake.trim("c", 1);

    let recorder = Recorder::default();
    // The parent's records come first; the child's must not follow.
    project_to_trimmed(&fake, &store, &recorder, 2, "c", "none").await;
    assert_eq!(recorder.sequences("a"), [1, 2], "nothing after the gap");
    let asked = fake.iterator_requests();
    let child = asked.iter().find(|r| r.shard_id == "c").unwrap();
    assert_eq!(child.iterator_type, "AT_SEQUENCE_NUMBER");
}

#[tokio::test]
async fn a_shard_whose_parent_was_never_read_is_trimmed_not_read_from_the_horizon() {
    let (fake, store, recorder, _) = checkpointed("r", 2).await;

    // While the projector was down, a shard ("ghost") was created, filled,
    // closed and aged out; only its child is still described.
    fake.add_shard("s", Some("ghost"));
    push(&fake, "s", "b", 2..=3);

    project_to_trimmed(&fake, &store, &recorder, 2, "ghost", "none").await;
    assert!(recorder.sequences("b").is_empty(), "nothing after the gap");
}

#[tokio::test]
async fn a_root_whose_records_were_trimmed_after_the_projection_started_is_trimmed() {
    let (fake, store) = one_shard("r", 1..=2).await;
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
    project_to_trimmed(&fake, &store, &recorder, 2, "q", "none").await;
    assert!(recorder.sequences("b").is_empty(), "nothing after the gap");
}

#[tokio::test]
async fn a_root_reopened_before_its_first_checkpoint_after_a_trim_is_trimmed() {
    let (fake, store) = one_shard("s", 1..=3).await;
    // Killed while it dispatches its first batch: the shard has an item,
    // and no checkpoint.
    killed_mid_batch(&fake, &store, "s").await;

    // While it was down, the first record (one it was given, created
    // before the projection started) aged out.
    fake.trim("s", 1);
    let recorder = Recorder::default();
    project_to_trimmed(&fake, &store, &recorder, 0, "s", "none").await;
    assert_eq!(recorder.delivered(), 0, "nothing after the gap");
}

#[tokio::test]
async fn a_root_opened_at_the_trim_horizon_and_reopened_before_its_first_checkpoint_resumes_there()
{
    let (fake, store) = one_shard("s", 1..=3).await;
    // Aged out before the projection started: never its to read.
    fake.trim("s", 1);
    // Killed while it dispatches its first batch, read from the trim
    // horizon: no checkpoint, but the shard's item says where it started.
    killed_mid_batch(&fake, &store, "s").await;

    let recorder = Recorder::default();
    project_until(&fake, &store, &recorder, 2).await;
    assert_eq!(recorder.sequences("a"), [2, 3]);
}

/// Rebuilds the projection of `store` into `recorder` from deposits
/// `1..=count` of `a` (telling it the stream, if `described`), once the
/// stream's records are older than its start; checks that its scan
/// delivered them.
async fn rebuilt(
    fake: &FakeStreams,
    store: &CheckpointStore,
    recorder: &Recorder,
    count: usize,
    described: bool,
) {
    let events: Vec<_> = (1..=count)
        .map(|sequence| deposit_event("Account", "a", sequence, 10))
        .collect();
    let stream = described.then_some(fake);
    rebuild(store, recording(recorder), &events, stream)
        .await
        .unwrap();
    assert_eq!(
        recorder.sequences("a"),
        (1..=count).collect::<Vec<_>>(),
        "the rebuild's scan"
    );
}

#[tokio::test]
async fn after_a_finished_rebuild_a_child_whose_trimmed_records_it_covered_is_read_on() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    // On the stream: 1..=2 on a parent, 3..=4 on its child, whose first
    // record aged out before anyone read it.
    fake.add_shard("p", None);
    push(&fake, "p", "a", 1..=2);
    split(&fake, "p", "c");
    push(&fake, "c", "a", 3..=4);
    fake.trim("c", 1);
    let recorder = Recorder::default();
    rebuilt(&fake, &store, &recorder, 4, false).await;

    // The record trimmed was in the scan: the projector reads on.
    push_at(&fake, "c", "a", 5, in_a_second());
    let err = project_to_end(&fake, &store, &recorder, 4).await;
    assert!(err.is_none(), "{err:?}; delivered {:?}", recorder.log());
    assert_eq!(recorder.sequences("a"), [1, 2, 3, 4, 5]);
}

/// The shards the rebuild marker of `store` records as closed.
async fn closed_shards(store: &CheckpointStore) -> Vec<String> {
    let marker = store.rebuild_marker().await.unwrap().unwrap();
    marker.closed_shards
}

/// A stream whose `p` (1..=2) and its child `c` (3..=4) closed and had
/// every record trimmed, with `c`'s child `g` open; a rebuild of those
/// deposits into a fresh recorder (told the stream, if `described`); then
/// deposit 5 on `g`.
async fn closed_trimmed_and_rebuilt(described: bool) -> (FakeStreams, CheckpointStore, Recorder) {
    let (fake, store) = one_shard("p", 1..=2).await;
    split(&fake, "p", "c");
    push(&fake, "c", "a", 3..=4);
    split(&fake, "c", "g");
    fake.trim("p", 2);
    fake.trim("c", 2);
    let recorder = Recorder::default();
    rebuilt(&fake, &store, &recorder, 4, described).await;
    push_at(&fake, "g", "a", 5, in_a_second());
    (fake, store, recorder)
}

#[tokio::test]
async fn a_shard_closed_before_the_rebuild_may_have_every_record_trimmed() {
    let (fake, store, recorder) = closed_trimmed_and_rebuilt(true).await;
    assert_eq!(closed_shards(&store).await, ["c", "p"]);

    // Nothing is left on `p` and `c` to date what was trimmed, but both
    // were closed when the rebuild described the stream: the scan had it.
    let err = project_to_end(&fake, &store, &recorder, 4).await;
    assert!(err.is_none(), "{err:?}; delivered {:?}", recorder.log());
    assert_eq!(recorder.sequences("a"), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn without_the_stream_a_rebuild_cannot_vouch_for_a_shard_with_nothing_left() {
    let (fake, store, recorder) = closed_trimmed_and_rebuilt(false).await;
    assert!(closed_shards(&store).await.is_empty());

    project_to_trimmed(&fake, &store, &recorder, 4, "p", "none").await;
    assert_eq!(
        recorder.sequences("a"),
        [1, 2, 3, 4],
        "nothing after the gap"
    );
}

#[tokio::test]
async fn a_child_created_after_the_rebuild_with_every_record_trimmed_is_trimmed() {
    let (fake, store) = one_shard("p", 1..=2).await;
    let recorder = Recorder::default();
    rebuilt(&fake, &store, &recorder, 2, true).await;
    assert!(closed_shards(&store).await.is_empty());
    // After the rebuild: a rollover, two events on the child, and
    // retention takes both (the projector was down long enough).
    tokio::time::sleep(Duration::from_millis(3)).await;
    split(&fake, "p", "c");
    push(&fake, "c", "a", 3..=4);
    // Retention would take `p`'s records first, and `p` (open at the
    // rebuild, closed since) would be `Trimmed` already; they are kept here
    // so that the child's own check is what stops the projector.
    fake.trim("c", 2);

    project_to_trimmed(&fake, &store, &recorder, 2, "c", "none").await;
    assert_eq!(recorder.sequences("a"), [1, 2]);
}

#[tokio::test]
async fn a_fresh_projection_starts_its_first_shards_at_the_trim_horizon() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    // Records before the horizon were never this projection's to read.
    fake.add_shard("s", Some("long-gone"));
    push(&fake, "s", "a", 1..=3);
    fake.trim("s", 1);
    split(&fake, "s", "c");
    push(&fake, "c", "a", 4..=4);
    let recorder = Recorder::default();
    project_until(&fake, &store, &recorder, 3).await;
    assert_eq!(recorder.sequences("a"), [2, 3, 4]);
    // And a restart resumes, with no gap reported.
    push(&fake, "c", "a", 5..=5);
    project_until(&fake, &store, &recorder, 4).await;
    assert_eq!(recorder.sequences("a"), [2, 3, 4, 5]);
}

// --- 2. Latest means "from the moment the projection started" --------------

#[tokio::test]
async fn with_latest_a_child_created_while_running_is_read_from_its_first_record() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    let minute_ago = SystemTime::now() - Duration::from_secs(60);
    push_at(&fake, "s", "a", 1, minute_ago);
    let recorder = Recorder::default();
    let running = start_at_latest(&fake, &store, &recorder).await;
    push(&fake, "s", "a", 2..=3);
    // A split while the projector runs: the child gets records at once.
    split(&fake, "s", "c");
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
    let running = start_at_latest(&fake, &store, &recorder).await;
    running.stop().await.unwrap();
    assert_eq!(by_shard(&store).await["s"].0, None, "no checkpoint yet");

    // Written while the projector was down: one dated before the
    // projection started (skipped), two after it.
    let minute_ago = SystemTime::now() - Duration::from_secs(60);
    push_at(&fake, "s", "a", 1, minute_ago);
    push(&fake, "s", "a", 2..=3);
    let projector = on_fake(&fake, &store, &recorder, "p").with_start(StartPosition::Latest);
    run_until(projector, &recorder, 2).await;
    assert_eq!(recorder.sequences("a"), [2, 3]);
}

// --- 4. only a finished rebuild moves a projector past records ------------

#[tokio::test]
async fn a_failed_rebuilds_marker_skips_nothing_and_stops_the_projector_with_a_typed_error() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    let events = [deposit_event("Account", "x", 1, 10)];
    let failed = rebuild(
        &store,
        failing(usize::MAX, &Recorder::default()),
        &events,
        None,
    )
    .await;
    assert!(failed.is_err());
    let marker = store.rebuild_marker().await.unwrap().unwrap();
    assert_eq!(marker.finished_at, None, "the marker of a failed rebuild");

    fake.add_shard("s", None);
    let start_after = marker.start_after;
    push_at(&fake, "s", "a", 1, start_after - Duration::from_secs(60));
    push_at(&fake, "s", "a", 2, start_after + Duration::from_secs(1));
    let recorder = Recorder::default();
    let err = project_to_end(&fake, &store, &recorder, 0).await;
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
    rebuild(&store, recording(&Recorder::default()), &[], None)
        .await
        .unwrap();
    // A record after the marker: the projector reads it and checkpoints.
    push_at(&fake, "s", "a", 1, in_a_second());
    let recorder = Recorder::default();
    project_until(&fake, &store, &recorder, 1).await;
    // Records after the checkpoint, dated before the marker (a writer's
    // clock behind): only a shard without a checkpoint may skip.
    let long_ago = SystemTime::now() - Duration::from_secs(600);
    push_at(&fake, "s", "a", 2, long_ago);
    push_at(&fake, "s", "a", 3, long_ago + Duration::from_secs(1));
    project_until(&fake, &store, &recorder, 3).await;
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
