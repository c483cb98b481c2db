//! Deleting an aggregate (`delete_aggregate`) on the embedded emulator: a
//! load of a deleted aggregate is a typed error, a stale writer cannot
//! commit behind the tombstone (one-event put, transaction, aggregate
//! store's claim), an interrupted deletion resumes, a projection over the
//! stream is told, and no event item is left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projector_support;

use std::time::Duration;

use cqrs_es::{AggregateError, EventStore};
use dynamo_es::item::{aggregate_key, is_tombstone, AGGREGATE_TYPE_AND_ID, DELETED_THROUGH};
use dynamo_es::projection::stream_arn;
use dynamo_es::tables::enable_stream;
use dynamo_es::testing::streams::client_for;
use dynamo_es::testing::{dynamodb, endpoint, scan_all, TestTables};
use dynamo_es::{DeleteOptions, DynamoStore, Error, SnapshotPolicy};

use common::{cqrs, deposit, failed_deposit, no_metadata, typed_aggregate, Account, AccountEvent};
use projector_support::{checkpoints, projector, recording, start, wait_until, Recorder};

const POLICIES: [SnapshotPolicy; 3] = [
    SnapshotPolicy::Never,
    SnapshotPolicy::Every(2),
    SnapshotPolicy::Always,
];

/// The items of aggregate `id` in `table`.
async fn items_of(db: &TestTables, table: &str, id: &str) -> Vec<dynamo_es::item::Item> {
    let key = aggregate_key("Account", id);
    scan_all(&db.client, table)
        .await
        .unwrap()
        .into_iter()
        .filter(|item| {
            matches!(item.get(AGGREGATE_TYPE_AND_ID),
                Some(dynamo_es::aws_sdk_dynamodb::types::AttributeValue::S(k)) if *k == key)
        })
        .collect()
}

/// Asserts that only the tombstone of `id`, keeping `last`, is left of it.
async fn only_the_tombstone(db: &TestTables, id: &str, last: usize) {
    let events = items_of(db, &db.events, id).await;
    assert_eq!(events.len(), 1, "only the tombstone is left: {events:?}");
    assert!(is_tombstone(&events[0]));
    assert_eq!(
        events[0][DELETED_THROUGH],
        dynamo_es::aws_sdk_dynamodb::types::AttributeValue::N(last.to_string())
    );
    assert!(items_of(db, &db.snapshots, id).await.is_empty());
    let chunks = scan_all(&db.client, &db.snapshots).await.unwrap();
    assert!(
        chunks.iter().all(|item| !format!("{item:?}").contains(id)),
        "no snapshot chunk left"
    );
}

fn deleted(err: &Error) -> (String, usize) {
    match err {
        Error::AggregateDeleted {
            aggregate_type,
            id,
            last_sequence,
            ..
        } => {
            assert_eq!(&**aggregate_type, "Account");
            (id.to_string(), *last_sequence)
        }
        other => panic!("expected AggregateDeleted, got {other}"),
    }
}

/// Deposits of 1 to `count` on `id` through a framework over a store with
/// `policy`; that framework, and another store like its.
async fn deposits(
    db: &TestTables,
    policy: SnapshotPolicy,
    id: &str,
    count: i64,
) -> (
    cqrs_es::CqrsFramework<Account, DynamoStore<Account>>,
    DynamoStore<Account>,
) {
    let framework = cqrs::<Account>(db.repository(), policy);
    for amount in 1..=count {
        deposit(&framework, id, amount).await;
    }
    (framework, DynamoStore::new(db.repository(), policy))
}

#[tokio::test]
async fn a_deleted_aggregate_loads_as_a_typed_error_and_refuses_commands() {
    let db = dynamodb().await.unwrap();
    for policy in POLICIES {
        let id = format!("deleted-{policy:?}");
        let (framework, store) = deposits(&db, policy, &id, 5).await;
        let done = store.delete_aggregate(&id).await.unwrap();
        assert!(done.finished && done.tombstone_written, "{done:?}");
        assert_eq!((done.last_sequence, done.events_deleted), (5, 5));

        let err = store.load_aggregate(&id).await.err().expect("refused");
        assert_eq!(
            deleted(typed_aggregate(&err)),
            (id.clone(), 5),
            "{policy:?}"
        );
        let err = store.load_events(&id).await.expect_err("refused");
        assert_eq!(deleted(typed_aggregate(&err)).1, 5);
        let err = failed_deposit(&framework, &id).await;
        assert_eq!(deleted(typed_aggregate(&err)).1, 5, "a command is refused");
        only_the_tombstone(&db, &id, 5).await;

        // Deleting again only finds the tombstone.
        let again = store.delete_aggregate(&id).await.unwrap();
        assert!(again.finished && !again.tombstone_written);
        assert_eq!(again.events_deleted, 0);
    }
}

#[tokio::test]
async fn a_stale_writer_cannot_commit_behind_the_tombstone() {
    let db = dynamodb().await.unwrap();
    // (policy, events in the stale commit): one event alone is the
    // conditional PutItem, two a transaction, and the aggregate store's
    // commit goes with its claiming head.
    for (policy, events) in [
        (SnapshotPolicy::Never, 1),
        (SnapshotPolicy::Never, 2),
        (SnapshotPolicy::Always, 1),
        (SnapshotPolicy::Every(2), 1),
    ] {
        let id = format!("stale-{policy:?}-{events}");
        let (_, store) = deposits(&db, policy, &id, 3).await;
        let stale = store.load_aggregate(&id).await.unwrap();
        store.delete_aggregate(&id).await.unwrap();

        let payloads = vec![AccountEvent::Deposited { amount: 7 }; events];
        let err = store
            .commit(payloads, stale, no_metadata())
            .await
            .expect_err("the stale commit is refused");
        // The one-event put reads the tombstone in its failed condition;
        // a transaction's cancellation is a conflict, and the retry's load
        // finds the tombstone.
        match (policy, events, &err) {
            (SnapshotPolicy::Never, 1, err) => assert!(typed_aggregate(err).is_deleted(), "{err}"),
            (_, _, AggregateError::AggregateConflict) => {}
            (_, _, err) => assert!(
                typed_aggregate(err).is_deleted(),
                "{policy:?}, {events}: {err}"
            ),
        }
        only_the_tombstone(&db, &id, 3).await;
        let err = store.load_aggregate(&id).await.err().expect("refused");
        assert_eq!(deleted(typed_aggregate(&err)).1, 3);
    }
}

#[tokio::test]
async fn an_older_stale_writer_leaves_an_orphan_that_loads_refuse_and_a_rerun_deletes() {
    let db = dynamodb().await.unwrap();
    let id = "orphan";
    let store = DynamoStore::<Account>::new_event_store(db.repository());
    let framework = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    deposit(&framework, id, 1).await;
    let older = store.load_aggregate(id).await.unwrap();
    deposit(&framework, id, 2).await;
    deposit(&framework, id, 3).await;
    store.delete_aggregate(id).await.unwrap();

    // Its event 2 is gone: the commit lands below the tombstone.
    let landed = store
        .commit(
            vec![AccountEvent::Deposited { amount: 9 }],
            older,
            no_metadata(),
        )
        .await;
    assert!(landed.is_ok(), "documented: {landed:?}");
    let err = store.load_aggregate(id).await.err().expect("still refused");
    assert_eq!(deleted(typed_aggregate(&err)).1, 3);
    let rerun = store.delete_aggregate(id).await.unwrap();
    assert_eq!(rerun.events_deleted, 1);
    only_the_tombstone(&db, id, 3).await;
}

/// `commits` commits of ten events each on `id`, a snapshot every ten.
async fn commit_tens(db: &TestTables, id: &str, commits: usize) {
    let framework = cqrs::<Account>(db.repository(), SnapshotPolicy::Every(10));
    for _ in 0..commits {
        let command = common::AccountCommand::deposit(1, 10);
        framework.execute(id, command).await.unwrap();
    }
}

#[tokio::test]
async fn an_interrupted_deletion_resumes_and_a_dry_run_counts() {
    let db = dynamodb().await.unwrap();
    let id = "long";
    commit_tens(&db, id, 6).await;
    let repo = db.repository();
    let plan = repo.plan_deletion("Account", id).await.unwrap();
    assert_eq!(
        (plan.events, plan.snapshot_items, plan.last_sequence),
        (60, 1, 60)
    );
    assert!(!plan.deleted);

    let mut seen = Vec::new();
    let options = DeleteOptions::new().with_batch_size(10).with_max_batches(2);
    let first = repo
        .delete_aggregate_with("Account", id, options, |done| {
            seen.push(done.events_deleted)
        })
        .await
        .unwrap();
    assert!(!first.finished);
    assert_eq!((first.events_deleted, first.batches), (20, 2));
    assert_eq!(seen, [10, 20], "progress after each batch");
    // Interrupted: the aggregate is already refused, and 40 events remain.
    let store = DynamoStore::<Account>::new(db.repository(), SnapshotPolicy::Every(10));
    let err = store.load_aggregate(id).await.err().expect("refused");
    assert_eq!(deleted(typed_aggregate(&err)).1, 60);
    assert_eq!(items_of(&db, &db.events, id).await.len(), 41);
    let plan = repo.plan_deletion("Account", id).await.unwrap();
    assert_eq!(
        (plan.events, plan.snapshot_items, plan.deleted),
        (40, 0, true)
    );

    let rest = repo
        .delete_aggregate_with("Account", id, DeleteOptions::new(), |_| {})
        .await
        .unwrap();
    assert!(rest.finished && !rest.tombstone_written);
    assert_eq!((rest.events_deleted, rest.last_sequence), (40, 60));
    only_the_tombstone(&db, id, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_over_the_stream_is_told_of_the_deletion() {
    let db = dynamodb().await.unwrap();
    enable_stream(&db.client, &db.events).await.unwrap();
    let arn = stream_arn(&db.client, &db.events).await.unwrap();
    let streams = client_for(&endpoint().unwrap());
    let framework = cqrs::<Account>(db.repository(), SnapshotPolicy::Every(2));
    for amount in 1..=3 {
        deposit(&framework, "gone", amount).await;
    }
    deposit(&framework, "kept", 1).await;
    DynamoStore::<Account>::new(db.repository(), SnapshotPolicy::Every(2))
        .delete_aggregate("gone")
        .await
        .unwrap();
    deposit(&framework, "kept", 2).await;

    let recorder = Recorder::default();
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let dispatcher = recording(&recorder);
    let running = start(projector(streams, &arn, store, dispatcher, "deletions"));
    wait_until(
        "the last event is projected",
        Duration::from_secs(60),
        || recorder.sequences("kept") == [1, 2],
    )
    .await;
    running.stop().await.unwrap();
    // The removals of its events unseen, the deletion in its place: after
    // the four events committed before it.
    let log = |id: &str, sequence| (id.to_string(), sequence);
    assert_eq!(
        recorder.log(),
        [
            log("gone", 1),
            log("gone", 2),
            log("gone", 3),
            log("kept", 1),
            log("kept", 2)
        ]
    );
    assert_eq!(recorder.deletions(), [("gone".to_string(), 3, 4)]);
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn the_cli_deletes_an_aggregate_with_progress_and_its_dry_run_writes_nothing() {
    let db = dynamodb().await.unwrap();
    let id = "by-cli";
    commit_tens(&db, id, 3).await;
    let args = [
        "delete-aggregate",
        "Account",
        id,
        "--events-table",
        &db.events,
        "--snapshots-table",
        &db.snapshots,
        "--batch-size",
        "10",
    ];
    let dry_run = [&args[..], &["--dry-run"]].concat();
    let out = common::cli(&dry_run).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("would delete 30 events and 1 snapshot items"),
        "{stdout}"
    );
    assert_eq!(items_of(&db, &db.events, id).await.len(), 30, "dry run");
    assert_eq!(items_of(&db, &db.snapshots, id).await.len(), 1, "dry run");

    let out = common::cli(&args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for progress in ["[11/31] items deleted", "[31/31] items deleted"] {
        assert!(stdout.contains(progress), "{progress}: {stdout}");
    }
    assert!(
        stdout.contains("tombstone written (keeps sequence 30), 30 events and 1 snapshot items"),
        "{stdout}"
    );
    only_the_tombstone(&db, id, 30).await;

    let out = common::cli(&dry_run).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("already deleted through sequence 30"),
        "{stdout}"
    );
}
