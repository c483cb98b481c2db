//! The projector against a fake DynamoDB Streams endpoint
//! (`testing::streams`), for what the emulator cannot produce: shard
//! lineage, closed shards, expired iterators, trimmed data, paged stream
//! descriptions, and a lease taken over after its owner stops heartbeating.
//! Checkpoints and leases live on the embedded emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projector_support;

use std::time::{Duration, SystemTime};

use dynamo_es::projection::{CheckpointStore, Error};
use dynamo_es::testing::streams::FakeStreams;
use dynamo_es::testing::{client_for, endpoint};

use common::Account;
use projector_support::fake::{
    by_shard, checkpointed, on_fake, one_shard, project_until, push, push_at, setup, split,
    start_at_latest,
};
use projector_support::{
    failing, projector, rebuild, recording, run_until, start, wait_until, Recorder, WAIT,
};

#[tokio::test]
async fn children_are_read_only_after_their_parent_finished() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    // parent (closed) -> left, right; left (closed) -> grandchild.
    fake.add_shard("parent", None);
    push(&fake, "parent", "a", 1..=3);
    push(&fake, "parent", "b", 1..=2);
    fake.add_shard("left", Some("parent"));
    split(&fake, "parent", "right");
    push(&fake, "left", "a", 4..=5);
    push(&fake, "right", "b", 3..=4);
    split(&fake, "left", "grandchild");
    push(&fake, "grandchild", "a", 6..=7);

    let recorder = Recorder::default();
    run_until(
        on_fake(&fake, &store, &recorder, "p").with_batch_size(2),
        &recorder,
        11,
    )
    .await;

    // The recorder asserts each aggregate's events arrive in sequence order
    // with none missed: a child read before its parent would fail it.
    assert_eq!(recorder.sequences("a"), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(recorder.sequences("b"), [1, 2, 3, 4]);
    let shards = by_shard(&store).await;
    assert!(
        shards["parent"].1 && shards["left"].1,
        "closed shards finished: {shards:?}"
    );
    assert!(
        !shards["right"].1 && !shards["grandchild"].1,
        "open shards not finished"
    );
    // The first iterator of every child came after its parent finished:
    // each shard was started exactly once, parents first.
    let started: Vec<String> = fake
        .iterator_requests()
        .into_iter()
        .map(|r| r.shard_id)
        .collect();
    let at = |shard: &str| started.iter().position(|s| s == shard).unwrap();
    assert!(at("parent") < at("left") && at("parent") < at("right"));
    assert!(at("left") < at("grandchild"));
    assert_eq!(started.len(), 4, "{started:?}");
}

#[tokio::test]
async fn a_closed_shard_is_finished_and_retired_and_new_children_are_discovered() {
    let (fake, store) = one_shard("old", 1..=3).await;
    let recorder = Recorder::default();
    let projector = on_fake(&fake, &store, &recorder, "p");
    let lag = projector.lag();
    let running = start(projector);
    wait_until("the open shard is read", WAIT, || recorder.distinct() == 3).await;

    // The shard splits while the projector runs: it closes, a child appears.
    split(&fake, "old", "new");
    push(&fake, "new", "a", 4..=6);
    wait_until("the child is read", WAIT, || recorder.distinct() == 6).await;
    running.stop().await.unwrap();

    assert_eq!(recorder.sequences("a"), [1, 2, 3, 4, 5, 6]);
    let shards = by_shard(&store).await;
    assert!(shards["old"].1, "finished");
    assert_eq!(shards["old"].2, None, "released");
    let old = lag
        .shards()
        .into_iter()
        .find(|s| s.shard_id == "old")
        .unwrap();
    assert!(old.finished && !old.owned, "{old:?}");
    assert_eq!(old.records, 3);
    // Retired: never read again after it finished.
    let old_iterators = fake
        .iterator_requests()
        .iter()
        .filter(|r| r.shard_id == "old")
        .count();
    assert_eq!(old_iterators, 1);
}

#[tokio::test]
async fn expired_iterators_are_renewed_from_the_checkpoint_without_loss_or_duplicates() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    let pushed = push(&fake, "s", "a", 1..=10);
    // Every dispatch expires the iterators issued so far, including the
    // next iterator of the page being dispatched.
    let expiring = fake.clone();
    let recorder = Recorder::with_hook(move |_| expiring.expire_iterators());
    run_until(
        on_fake(&fake, &store, &recorder, "p").with_batch_size(3),
        &recorder,
        10,
    )
    .await;

    assert_eq!(recorder.sequences("a"), (1..=10).collect::<Vec<_>>());
    assert_eq!(recorder.redelivered(), 0);
    let requests = fake.iterator_requests();
    // A root of the projection's origin opens at its first record.
    assert_eq!(requests[0].iterator_type, "AT_SEQUENCE_NUMBER");
    // Renewed after each batch (records 1-3, 4-6, 7-9, then 10 unless the
    // stop came first), after the batch's checkpoint.
    let renewals: Vec<_> = requests[1..]
        .iter()
        .map(|r| (r.iterator_type.as_str(), r.sequence_number.as_deref()))
        .collect();
    let checkpoints: Vec<_> = [2, 5, 8, 9]
        .iter()
        .map(|&i| ("AFTER_SEQUENCE_NUMBER", Some(pushed[i].as_str())))
        .collect();
    assert!(renewals.len() >= 3, "{renewals:?}");
    assert_eq!(renewals, checkpoints[..renewals.len()]);
    assert_eq!(by_shard(&store).await["s"].0.as_ref(), pushed.last());
}

#[tokio::test]
async fn records_trimmed_before_the_checkpoint_are_a_typed_error_that_says_to_rebuild() {
    let (fake, store, recorder, checkpoint) = checkpointed("s", 2).await;

    // The projection stays stopped past the retention: records after its
    // checkpoint are trimmed away.
    push(&fake, "s", "a", 3..=6);
    fake.trim("s", 4);
    let err = on_fake(&fake, &store, &recorder, "p")
        .run(std::future::pending())
        .await
        .unwrap_err();
    let Error::Trimmed {
        shard_id,
        checkpoint: at,
        stream_arn,
    } = &err
    else {
        panic!("expected Trimmed, got {err:?}");
    };
    assert_eq!(
        (shard_id.as_str(), at, stream_arn),
        ("s", &checkpoint, &fake.stream_arn())
    );
    assert!(err.to_string().contains("rebuild"), "{err}");
    assert_eq!(
        recorder.distinct(),
        2,
        "nothing after the gap was dispatched"
    );
    // The lease was released for whoever rebuilds.
    assert_eq!(by_shard(&store).await["s"].2, None);
}

#[tokio::test]
async fn records_trimmed_while_reading_are_a_typed_error() {
    let (fake, store) = one_shard("s", 1..=6).await;
    // Trimmed between two pages: the next GetRecords reads trimmed data.
    let trimming = fake.clone();
    let recorder = Recorder::with_hook(move |_| trimming.trim("s", 5));
    let err = on_fake(&fake, &store, &recorder, "p")
        .with_batch_size(2)
        .run(std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Trimmed { shard_id, .. } if shard_id == "s"),
        "{err:?}"
    );
    assert_eq!(recorder.sequences("a"), [1, 2]);
}

#[tokio::test]
async fn every_page_of_the_stream_description_is_read() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    let fake = fake.with_page_size(1);
    for (shard, id) in [("s0", "a"), ("s1", "b"), ("s2", "c")] {
        fake.add_shard(shard, None);
        push(&fake, shard, id, 1..=2);
    }
    let recorder = Recorder::default();
    project_until(&fake, &store, &recorder, 6).await;
    assert_eq!(by_shard(&store).await.len(), 3);
    assert!(fake.calls("DescribeStream") >= 3, "one call per page");
}

#[tokio::test]
async fn at_most_max_shards_are_read_at_once() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    for shard in ["s0", "s1", "s2"] {
        fake.add_shard(shard, None);
        push(&fake, shard, shard, 1..=1);
    }
    let recorder = Recorder::default();
    let running = start(on_fake(&fake, &store, &recorder, "p").with_max_shards(2));
    wait_until("two shards are read", WAIT, || recorder.distinct() == 2).await;
    // Open shards are never finished: the third waits for its turn (the
    // rotation interval, 30 s by default, see tests/projector_gaps.rs).
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await.unwrap();
    assert_eq!(recorder.distinct(), 2);
    assert_eq!(by_shard(&store).await.len(), 2);
}

#[tokio::test]
async fn a_lease_is_taken_over_after_its_owner_stops_heartbeating() {
    let lease = Duration::from_millis(800);
    let (fake, store) = setup(lease).await;
    fake.add_shard("s", None);
    push(&fake, "s", "a", 1..=4);
    let first = Recorder::default();
    let holder = start(on_fake(&fake, &store, &first, "holder"));
    wait_until("the holder reads", WAIT, || first.distinct() == 4).await;

    // While the holder heartbeats, another projector gets nothing, however
    // long it waits (several lease durations).
    let second = Recorder::default();
    let taker = start(on_fake(&fake, &store, &second, "taker"));
    push(&fake, "s", "a", 5..=6);
    wait_until("the holder reads more", WAIT, || first.distinct() == 6).await;
    tokio::time::sleep(lease * 3).await;
    assert_eq!(second.delivered(), 0, "a live owner keeps its shard");

    // The holder dies (no graceful stop, no heartbeat): after a lease
    // duration the taker resumes from its checkpoint.
    holder.task.abort();
    let _ = holder.task.await;
    push(&fake, "s", "a", 7..=9);
    wait_until("the taker takes over", WAIT, || {
        second.sequences("a").last() == Some(&9)
    })
    .await;
    taker.stop().await.unwrap();
    let resumed = second.sequences("a");
    assert_eq!(
        first.gaps() + second.gaps(),
        1,
        "one: where the taker resumed"
    );
    assert_eq!(
        resumed.first(),
        Some(&7),
        "resumed after the holder's checkpoint: {resumed:?}"
    );
    assert_eq!(
        by_shard(&store).await["s"].2,
        None,
        "released on the taker's graceful stop"
    );
}

#[tokio::test]
async fn the_fake_answers_the_real_client_with_lineage_and_closed_ranges() {
    let fake = FakeStreams::start().await.unwrap();
    fake.add_shard("p", None);
    push(&fake, "p", "a", 1..=1);
    split(&fake, "p", "c");
    let client = fake.client();
    let described = client
        .describe_stream()
        .stream_arn(fake.stream_arn())
        .send()
        .await
        .unwrap();
    let shards = described.stream_description.unwrap().shards.unwrap();
    assert_eq!(shards.len(), 2);
    assert_eq!(shards[1].parent_shard_id(), Some("p"));
    let closed = shards[0].sequence_number_range().unwrap();
    assert!(closed.ending_sequence_number().is_some());
    assert!(shards[1]
        .sequence_number_range()
        .unwrap()
        .ending_sequence_number()
        .is_none());
    let listed = client.list_streams().send().await.unwrap();
    assert_eq!(listed.streams().len(), 1);
    let _ = Account::default();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_work_on_the_shard_at_once_without_a_checkpoint() {
    let (fake, store) = one_shard("s", 1..=6).await;
    // While the first batch is dispatched, another process takes the lease
    // (its store sees the counter unchanged for its 1 ms lease duration).
    let thief = CheckpointStore::new(client_for(&endpoint().unwrap()), store.table(), "accounts")
        .with_lease_duration(Duration::from_millis(1));
    let shard = dynamo_es::projection::ShardInfo {
        stream_arn: fake.stream_arn(),
        shard_id: "s".into(),
        parent_shard_id: None,
    };
    let recorder = Recorder::with_hook(move |calls| {
        if calls == 1 {
            let taken = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    assert!(thief.acquire(&shard, "thief").await.unwrap().is_none());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    thief.acquire(&shard, "thief").await.unwrap()
                })
            });
            assert!(taken.is_some(), "the thief took the lease");
        }
    });
    let projector = on_fake(&fake, &store, &recorder, "p").with_batch_size(2);
    let lag = projector.lag();
    let running = start(projector);
    wait_until("the projector lets the shard go", WAIT, || {
        lag.shards().iter().any(|s| s.shard_id == "s" && !s.owned)
    })
    .await;
    running.stop().await.unwrap();

    assert_eq!(recorder.sequences("a"), [1, 2], "only the batch in flight");
    let (checkpoint, _, owner) = by_shard(&store).await["s"].clone();
    assert_eq!(checkpoint, None, "no checkpoint after the lease was lost");
    assert_eq!(owner.as_deref(), Some("thief"));
}

#[tokio::test]
async fn each_batch_has_a_span_with_its_shard_records_dispatch_time_and_lag() {
    let (fake, store) = one_shard("s", 1..=5).await;
    let (logs, _guard) = common::capture(tracing::Level::INFO, true);
    let recorder = Recorder::default();
    let projector = on_fake(&fake, &store, &recorder, "p").with_batch_size(3);
    run_until(projector, &recorder, 5).await;

    let closed: Vec<String> = logs
        .lines_with("dynamo_es.projection.batch{")
        .into_iter()
        .filter(|line| line.contains("dynamo_es::projection::reader: close"))
        .collect();
    assert_eq!(closed.len(), 2, "one span per batch: {closed:?}");
    for (line, records) in closed.iter().zip([3, 2]) {
        for field in [
            "shard=s".to_string(),
            format!("records={records}"),
            format!("events={records}"),
            "dispatch_ms=".into(),
            "lag_ms=".into(),
        ] {
            assert!(line.contains(&field), "{field} in {line}");
        }
    }
}

#[tokio::test]
async fn records_created_before_a_rebuild_started_are_skipped_and_checkpointed() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    // A rebuild (of an empty events table) writes the start marker.
    rebuild(&store, recording(&Recorder::default()), &[], None)
        .await
        .unwrap();
    let start_after = store.start_after().await.unwrap().unwrap();

    fake.add_shard("s", None);
    let minute_before = start_after - Duration::from_secs(60);
    for sequence in 1..=3 {
        push_at(&fake, "s", "a", sequence, minute_before);
    }
    push_at(&fake, "s", "a", 4, start_after + Duration::from_secs(1));
    let last = push_at(&fake, "s", "a", 5, start_after + Duration::from_secs(2));

    let recorder = Recorder::default();
    project_until(&fake, &store, &recorder, 2).await;
    assert_eq!(
        recorder.sequences("a"),
        [4, 5],
        "the rebuild covered 1 to 3"
    );
    assert_eq!(by_shard(&store).await["s"].0, Some(last));
}

#[tokio::test]
async fn a_shard_without_checkpoint_can_start_at_the_latest_record() {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard("s", None);
    // Written a minute before the projection started.
    let before = SystemTime::now() - Duration::from_secs(60);
    for sequence in 1..=3 {
        push_at(&fake, "s", "a", sequence, before);
    }
    let recorder = Recorder::default();
    let running = start_at_latest(&fake, &store, &recorder).await;
    push(&fake, "s", "a", 4..=5);
    wait_until("the new events are projected", WAIT, || {
        recorder.delivered() == 2
    })
    .await;
    running.stop().await.unwrap();
    assert_eq!(recorder.sequences("a"), [4, 5]);
    // From its first record, skipping what came before the start: a
    // reopened shard or a child loses nothing written since.
    assert_eq!(
        fake.iterator_requests()[0].iterator_type,
        "AT_SEQUENCE_NUMBER"
    );
}

/// A projector as `p` on `fake` dispatching to a projection that fails
/// its first `failures` calls, then passes events on to `recorder`.
fn failing_projector(
    fake: &FakeStreams,
    store: &CheckpointStore,
    recorder: &Recorder,
    failures: usize,
) -> dynamo_es::projection::Projector<Account> {
    let dispatcher = failing(failures, recorder);
    projector(
        fake.client(),
        &fake.stream_arn(),
        store.clone(),
        dispatcher,
        "p",
    )
}

#[tokio::test]
async fn a_failed_dispatch_is_retried_from_the_first_event_not_applied() {
    let (fake, store) = one_shard("s", 1..=3).await;
    let recorder = Recorder::default();
    let projector = failing_projector(&fake, &store, &recorder, 2);
    run_until(projector.with_dispatch_attempts(3), &recorder, 3).await;
    assert_eq!(recorder.sequences("a"), [1, 2, 3], "once each, in order");
}

#[tokio::test]
async fn a_dispatch_that_keeps_failing_ends_the_run_without_a_checkpoint() {
    let (fake, store) = one_shard("s", 1..=3).await;
    let recorder = Recorder::default();
    let err = failing_projector(&fake, &store, &recorder, usize::MAX)
        .with_dispatch_attempts(3)
        .run(std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Projection(_)), "{err:?}");
    assert!(err.to_string().contains("unavailable"), "{err}");
    assert_eq!(recorder.delivered(), 0);
    let (checkpoint, _, owner) = by_shard(&store).await["s"].clone();
    assert_eq!(
        (checkpoint, owner),
        (None, None),
        "nothing checkpointed; released"
    );
}
