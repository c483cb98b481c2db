//! An unknown outcome is never reported as a refusal: a write whose attempt
//! got no definite answer (no response, or a server error) and whose
//! retries could not tell whether it was applied (more server errors,
//! throttling) ends as `Error::Connection`, on every write path: a commit's
//! single `PutItem`, its `TransactWriteItems` (with or without a snapshot),
//! and a view's `PutItem`. A clean refusal on the first attempt stays what
//! it is (a conflict, throttling).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ViewContext, ViewRepository};
use cqrs_es::Aggregate;
use dynamo_es::testing::faults::{
    client_on, quick_retries, short_timeouts, Canned, Scripted, Step,
};
use dynamo_es::{DynamoViewRepository, Error, SnapshotPolicy};
use serde_json::json;

fn internal_error() -> Canned {
    Canned::new(
        500,
        json!({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "canned"}),
    )
}

fn throttled_cancellation() -> Canned {
    Canned::transaction_cancelled(&["ThrottlingError", "None"])
}

fn script(steps: impl IntoIterator<Item = Step>) -> Scripted {
    Scripted::new(steps)
}

fn respond(canned: Canned) -> Step {
    Step::Respond(canned)
}

/// Three server errors: one for each attempt.
fn three_server_errors() -> Scripted {
    script((0..3).map(|_| respond(internal_error())))
}

/// A lost attempt, then throttling on both retries.
fn lost_then_throttled() -> Scripted {
    script([
        Step::Lost,
        respond(Canned::throughput_exceeded()),
        respond(Canned::throughput_exceeded()),
    ])
}

/// Asserts `err` reports an unknown outcome of `operation`.
#[track_caller]
fn assert_unknown(err: &PersistenceError, operation: &str) {
    assert_failed(err, "Connection", operation);
    assert!(err.to_string().contains("unknown"), "{err}");
}

async fn one_event(http: &Scripted) -> Result<(), PersistenceError> {
    json_repo_on(http, 3)
        .persist::<Account>(&[deposit_event(Account::TYPE, "acct-1", 1, 5)], None)
        .await
}

async fn one_event_with_a_snapshot(http: &Scripted) -> Result<(), PersistenceError> {
    json_repo_on(http, 3)
        .persist::<Account>(
            &[deposit_event(Account::TYPE, "acct-1", 1, 5)],
            Some((
                "acct-1".to_string(),
                json!({"total": 5, "applied": 1, "notes": []}),
                1,
            )),
        )
        .await
}

async fn two_events(http: &Scripted) -> Result<(), PersistenceError> {
    json_repo_on(http, 3)
        .persist::<Account>(
            &[
                deposit_event(Account::TYPE, "acct-1", 1, 5),
                deposit_event(Account::TYPE, "acct-1", 2, 5),
            ],
            None,
        )
        .await
}

#[tokio::test]
async fn commits_answered_only_by_server_errors_have_an_unknown_outcome() {
    // One event (PutItem), two events and one event with its snapshot
    // (TransactWriteItems): three attempts, then an unknown outcome.
    for (commit, operation) in [
        (0, "PutItem"),
        (1, "TransactWriteItems"),
        (2, "TransactWriteItems"),
    ] {
        let http = three_server_errors();
        let result = match commit {
            0 => one_event(&http).await,
            1 => two_events(&http).await,
            _ => one_event_with_a_snapshot(&http).await,
        };
        assert_unknown(&result.unwrap_err(), operation);
        assert_eq!(http.operations(), [operation; 3]);
    }
}

#[tokio::test]
async fn a_lost_put_item_then_throttling_has_an_unknown_outcome() {
    let http = lost_then_throttled();
    let err = one_event(&http).await.unwrap_err();
    assert_unknown(&err, "PutItem");
}

#[tokio::test]
async fn a_clean_refusal_on_the_first_attempt_stays_a_refusal() {
    // A failed condition on another writer's item: a conflict, through the
    // framework an aggregate conflict.
    let http = script([
        respond(Canned::empty_query()),
        respond(conditional_check_failed()),
    ]);
    let err = failed_deposit(
        &cqrs::<Account>(json_repo_on(&http, 3), SnapshotPolicy::Never),
        "acct-1",
    )
    .await;
    assert_eq!(err.kind(), "AggregateConflict", "{err:?}");
    // Throttled on every attempt, none lost: throttling.
    let http = script((0..3).map(|_| respond(Canned::throughput_exceeded())));
    assert_failed(&one_event(&http).await.unwrap_err(), "Throttled", "PutItem");
    let http = script((0..3).map(|_| respond(throttled_cancellation())));
    let err = two_events(&http).await.unwrap_err();
    assert_failed(&err, "Throttled", "TransactWriteItems");
}

#[tokio::test]
async fn a_lost_transaction_then_throttling_has_an_unknown_outcome() {
    let http = script([
        Step::Lost,
        respond(throttled_cancellation()),
        respond(throttled_cancellation()),
    ]);
    let err = two_events(&http).await.unwrap_err();
    assert_unknown(&err, "TransactWriteItems");

    // The same token makes a retry of an applied transaction succeed: a
    // failed condition after a lost attempt is still a conflict.
    let http = script([
        Step::Lost,
        respond(Canned::transaction_cancelled(&[
            "ConditionalCheckFailed",
            "None",
        ])),
    ]);
    let err = two_events(&http).await.unwrap_err();
    assert_eq!(err.kind(), "OptimisticLockError", "{err:?}");
}

#[tokio::test]
async fn a_commit_with_its_snapshot_refused_after_a_lost_attempt_has_an_unknown_outcome() {
    // A validation error after a lost attempt: not retried without the
    // snapshot (the lost attempt may have stored the events).
    let http = script([
        Step::Lost,
        respond(Canned::validation_error("Transaction request is too large")),
    ]);
    let err = one_event_with_a_snapshot(&http).await.unwrap_err();
    assert_unknown(&err, "TransactWriteItems");
    assert_eq!(http.operations(), ["TransactWriteItems"; 2]);
}

/// Writes a default view `v1` on a view repository only `http` answers.
async fn write_view(http: &Scripted) -> Result<(), PersistenceError> {
    let client = client_on(http.clone(), quick_retries(3), short_timeouts());
    DynamoViewRepository::<AccountView, Account>::new("views", client)
        .update_view(
            AccountView::default(),
            ViewContext::new("v1".to_string(), 0),
        )
        .await
}

fn conditional_check_failed() -> Canned {
    Canned::dynamo_error("ConditionalCheckFailedException", json!({}))
}

#[tokio::test]
async fn a_view_write_without_a_definite_answer_has_an_unknown_outcome() {
    let http = three_server_errors();
    let err = write_view(&http).await.unwrap_err();
    assert_unknown(&err, "PutItem");

    let http = lost_then_throttled();
    let err = write_view(&http).await.unwrap_err();
    assert_unknown(&err, "PutItem");

    // The version condition failing after a lost attempt may be that
    // attempt's own write.
    let http = script([Step::Lost, respond(conditional_check_failed())]);
    let err = write_view(&http).await.unwrap_err();
    assert_unknown(&err, "PutItem");

    // Failing on the first attempt: a conflict.
    let http = script([respond(conditional_check_failed())]);
    let err = write_view(&http).await.unwrap_err();
    assert_eq!(err.kind(), "OptimisticLockError", "{err:?}");
    assert!(!matches!(
        typed_or_none(&err),
        Some(Error::Connection { .. })
    ));
}

fn typed_or_none(err: &PersistenceError) -> Option<&Error> {
    match err {
        PersistenceError::OptimisticLockError => None,
        other => Some(typed(other)),
    }
}
