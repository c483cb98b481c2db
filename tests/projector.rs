//! The projector on the embedded emulator's stream: commits while it runs,
//! an abrupt stop and a restart (which says whose lease it waits for, and
//! until when), two projectors on one stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projector_support;

use std::time::Duration;

use cqrs_es::persist::ViewRepository;
use cqrs_es::{EventStore, View};
use dynamo_es::projection::{stream_arn, CheckpointStore, Dispatcher, Projector, ViewProjection};
use dynamo_es::tables::enable_stream;
use dynamo_es::testing::streams::client_for;
use dynamo_es::testing::{dynamodb, endpoint, TestTables};
use dynamo_es::{DynamoStore, SnapshotPolicy};

use common::{cqrs, deposit, replay, Account, AccountView};
use projector_support::{checkpoints, projector, recording, start, wait_until, Recorder};

const AGGREGATES: usize = 50;
const COMMITS: usize = 1000;
/// Commits of the abort and two-projector tests (fewer, to keep them fast).
const SHORT: usize = 250;
const WAIT: Duration = Duration::from_secs(60);

/// `commits` one-deposit commits spread over `ids`, `ids.len()` at a time
/// (commit `i` deposits `i + 1` on aggregate `i % ids.len()`).
async fn commit_all(db: &TestTables, ids: &[String], commits: std::ops::Range<usize>) {
    let framework = std::sync::Arc::new(cqrs::<Account>(db.repository(), SnapshotPolicy::Never));
    let mut tasks = tokio::task::JoinSet::new();
    for (slot, id) in ids.iter().enumerate() {
        let (framework, id) = (framework.clone(), id.clone());
        let mine: Vec<usize> = commits.clone().filter(|i| i % ids.len() == slot).collect();
        tasks.spawn(async move {
            for i in mine {
                deposit(&framework, &id, i64::try_from(i).unwrap() + 1).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// An id for each of the `AGGREGATES` aggregates, named after `prefix`.
fn ids(prefix: &str) -> Vec<String> {
    (0..AGGREGATES).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every aggregate's view equals a replay of its stored events.
async fn assert_views_equal_replay(db: &TestTables, recorder: &Recorder, ids: &[String]) {
    assert_eq!(recorder.gaps(), 0, "no event missed or reordered");
    let repo = db.repository();
    for id in ids {
        let (replayed, sequences) = replay(&repo, id).await;
        assert_eq!(recorder.view(id), Some(replayed), "view of {id}");
        let mut seen = recorder.sequences(id);
        seen.dedup();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, sequences, "every event of {id} delivered");
    }
}

/// Dispatches to `recorder` and to an exactly-once [`ViewProjection`] of
/// [`AccountView`]s in the view table.
fn with_views(db: &TestTables, recorder: &Recorder) -> Dispatcher<Account> {
    let views = ViewProjection::new(db.view_repository::<AccountView, Account>());
    recording(recorder).with_projection(views)
}

/// Every aggregate's stored view equals its events replayed into a view.
/// Commits the second half of `ids`' events while `running` projects,
/// waits (`what`) until the recorder saw every event, stops it, and checks
/// the views, recorded and stored, against a replay.
async fn second_half_then_check(
    db: &TestTables,
    ids: &[String],
    recorder: &Recorder,
    running: projector_support::Running,
    what: &str,
) {
    commit_all(db, ids, SHORT / 2..SHORT).await;
    wait_until(what, WAIT, || recorder.distinct() == SHORT).await;
    running.stop().await.unwrap();
    assert_views_equal_replay(db, recorder, ids).await;
    assert_stored_views_equal_replay(db, ids).await;
}

async fn assert_stored_views_equal_replay(db: &TestTables, ids: &[String]) {
    let store = DynamoStore::<Account>::new_event_store(db.repository());
    let views = db.view_repository::<AccountView, Account>();
    for id in ids {
        let mut replayed = AccountView::default();
        for event in store.load_events(id).await.unwrap() {
            replayed.update(&event);
        }
        let stored = views.load(id).await.unwrap();
        assert_eq!(stored, Some(replayed), "stored view of {id}");
    }
}

/// Fresh tables with a stream on the events table, a checkpoint store with
/// its leases, and the projectors of that stream.
struct Streamed {
    db: TestTables,
    store: CheckpointStore,
    arn: String,
    streams: aws_sdk_dynamodbstreams::Client,
}

impl Streamed {
    /// Fresh tables and a stream whose checkpoint store leases shards for
    /// `lease`.
    async fn new(lease: Duration) -> Self {
        let db = dynamodb().await.unwrap();
        enable_stream(&db.client, &db.events).await.unwrap();
        let arn = stream_arn(&db.client, &db.events).await.unwrap();
        let store = checkpoints(&db.client, lease).await;
        let streams = client_for(&endpoint().unwrap());
        Self {
            db,
            store,
            arn,
            streams,
        }
    }

    /// A projector of the stream as `owner`, checkpointing in the store.
    fn projector(&self, dispatcher: Dispatcher<Account>, owner: &str) -> Projector<Account> {
        projector(
            self.streams.clone(),
            &self.arn,
            self.store.clone(),
            dispatcher,
            owner,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_commits_on_fifty_aggregates_reach_the_views_while_the_projector_runs() {
    let streamed = Streamed::new(Duration::from_secs(2)).await;
    let (db, store) = (&streamed.db, &streamed.store);
    let recorder = Recorder::default();
    let running = start(streamed.projector(recording(&recorder), "solo"));
    let ids = ids("live");
    commit_all(db, &ids, 0..COMMITS).await;
    wait_until("every event is projected", WAIT, || {
        recorder.distinct() == COMMITS
    })
    .await;
    running.stop().await.unwrap();

    assert_views_equal_replay(db, &recorder, &ids).await;
    // One live projector, stopped gracefully: each event exactly once.
    assert_eq!(recorder.delivered(), COMMITS);
    assert_eq!(recorder.redelivered(), 0);
    // The graceful stop checkpointed the last record and released the lease.
    let shards = store.list().await.unwrap();
    assert_eq!(shards.len(), 1, "the emulator has one shard per table");
    assert!(shards[0].checkpoint.is_some());
    assert_eq!(shards[0].owner, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_aborted_mid_batch_and_restarted_leaves_views_equal_to_a_replay() {
    // Leases long enough that a loaded machine still renews within them: a
    // reader that cannot stops its shard (self-fencing), and the batch it
    // was dispatching comes again.
    let streamed = Streamed::new(Duration::from_secs(2)).await;
    let db = &streamed.db;
    let ids = ids("abort");
    commit_all(db, &ids, 0..SHORT / 2).await;

    // One recorder for both runs: its deduplicated views are what an
    // exactly-once view holds; its log shows every redelivery. Its 15th
    // call (in the third batch) signals the test, which aborts the task
    // while that call is still running: the batch is dispatched at most in
    // part and not checkpointed.
    let (reached, aborting) = tokio::sync::oneshot::channel::<()>();
    let reached = std::sync::Mutex::new(Some(reached));
    let recorder = Recorder::with_hook(move |calls| {
        if calls == 15 {
            if let Some(reached) = reached.lock().unwrap().take() {
                let _ = reached.send(());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let batch = 7;
    let first = streamed
        .projector(with_views(db, &recorder), "first")
        .with_batch_size(batch);
    let running = start(first);
    aborting.await.unwrap();
    running.task.abort();
    assert!(running.task.await.unwrap_err().is_cancelled());
    assert!(recorder.distinct() < SHORT / 2, "aborted before the end");

    // A restart (another owner id: the lease must expire first) resumes from
    // the checkpoint while commits go on.
    let restarted = start(streamed.projector(with_views(db, &recorder), "second"));
    second_half_then_check(db, &ids, &recorder, restarted, "the restart catches up").await;
    // At-least-once: only the batch in flight at the abort came again.
    let redelivered = recorder.redelivered();
    assert!(
        redelivered <= usize::try_from(batch).unwrap(),
        "{redelivered} events delivered again"
    );
    assert_eq!(recorder.delivered(), SHORT + redelivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projectors_on_one_stream_apply_each_event_once() {
    let streamed = Streamed::new(Duration::from_secs(3)).await;
    let (db, store) = (&streamed.db, &streamed.store);
    // One recorder for both: an event applied by both would show twice.
    let recorder = Recorder::default();
    let a = start(streamed.projector(with_views(db, &recorder), "a"));
    let b = start(streamed.projector(with_views(db, &recorder), "b"));
    let ids = ids("pair");
    commit_all(db, &ids, 0..SHORT / 2).await;
    wait_until("the first half is projected", WAIT, || {
        recorder.distinct() == SHORT / 2
    })
    .await;

    // The lease holder stops gracefully (checkpoint, release); the other
    // takes the shard over from its checkpoint.
    let holder = store.list().await.unwrap()[0].owner.clone();
    let (stopping, staying) = if holder.as_deref() == Some("a") {
        (a, b)
    } else {
        (b, a)
    };
    stopping.stop().await.unwrap();
    second_half_then_check(db, &ids, &recorder, staying, "the second half is projected").await;
    assert_eq!(recorder.redelivered(), 0, "no event applied twice");
    assert_eq!(recorder.delivered(), SHORT);
}

/// On one thread, so the capture sees every task's logs.
#[tokio::test]
async fn a_restarted_projector_says_whose_lease_it_waits_for_and_when_it_takes_over() {
    let lease = Duration::from_secs(2);
    let streamed = Streamed::new(lease).await;
    let store = &streamed.store;
    let framework = cqrs::<Account>(streamed.db.repository(), SnapshotPolicy::Never);
    let recorder = Recorder::default();
    // Starts projector `owner`, deposits `amount`, and waits until the
    // recorder holds `distinct` events.
    let start_and_deposit = |owner: &'static str, amount, what: &'static str, distinct| {
        let (streamed, recorder, framework) = (&streamed, &recorder, &framework);
        async move {
            let running = start(streamed.projector(recording(recorder), owner));
            deposit(framework, "stalled-1", amount).await;
            wait_until(what, WAIT, || recorder.distinct() == distinct).await;
            running
        }
    };
    let first = start_and_deposit("first", 5, "the first projector projects", 1).await;
    // It dies holding the lease: nobody renews it any more.
    first.task.abort();
    assert!(first.task.await.unwrap_err().is_cancelled());
    let shard = store.list().await.unwrap()[0].clone();
    assert_eq!(shard.owner.as_deref(), Some("first"));

    let (logs, _guard) = common::capture(tracing::Level::INFO, false);
    let restarted = std::time::Instant::now();
    let second = start_and_deposit("second", 7, "the restart takes the shard over", 2).await;
    second.stop().await.unwrap();

    // Polled every 50 ms for two seconds, it said so once: which shard, who
    // holds it, when that owner last renewed, when the takeover will be.
    let stalled = logs.lines_with("not renewing");
    assert_eq!(stalled.len(), 1, "once per wait: {stalled:#?}");
    let line = &stalled[0];
    assert!(line.contains(" INFO "), "{line}");
    for field in [
        format!("shard={}", shard.shard.shard_id),
        "holder=first".to_string(),
        "last_renewed=20".to_string(),
        "by its clock".to_string(),
        "takeover_at=20".to_string(),
        "lease_duration=2.0s".to_string(),
    ] {
        assert!(line.contains(&field), "{field} in {line}");
    }
    // Past half the lease, with the rest of it to go.
    let seconds = |name: &str| -> f64 {
        let value = line.split(&format!(" {name}=")).nth(1).unwrap();
        value.split('s').next().unwrap().parse().unwrap()
    };
    let (unchanged, remaining) = (seconds("unchanged_for"), seconds("takeover_in"));
    assert!((1.0..2.0).contains(&unchanged), "{line}");
    assert!((unchanged + remaining - 2.0).abs() < 0.11, "{line}");
    // Then it took the shard over, after the whole lease duration.
    let text = logs.text();
    let announced = text.find("not renewing").unwrap();
    let leased = text.find("leased shard").expect("the takeover is logged");
    assert!(announced < leased, "{text}");
    assert!(text[leased..]
        .lines()
        .next()
        .unwrap()
        .contains("owner=second"));
    assert!(restarted.elapsed() >= lease);
}

#[tokio::test]
async fn a_table_without_a_stream_has_no_stream_arn() {
    let db = dynamodb().await.unwrap();
    let err = stream_arn(&db.client, &db.events).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&db.events), "{message}");
    assert!(matches!(
        err,
        dynamo_es::projection::Error::Store(dynamo_es::Error::TableStream { .. })
    ));
    // The store is not affected either way.
    let _ = DynamoStore::<Account>::new_event_store(db.repository());
}
