//! Throttling, transaction cancellations, lost responses and credentials, on
//! canned HTTP responses: what the emulator cannot produce. No server runs;
//! every response comes from the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::Client;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, ViewContext, ViewRepository};
use cqrs_es::CqrsFramework;
use dynamo_es::testing::faults::{
    client_on, quick_retries, short_timeouts, Canned, Scripted, Step,
};
use dynamo_es::{DynamoEventRepository, DynamoStore, DynamoViewRepository, SnapshotPolicy};
use serde_json::json;

const ACCESS_KEY: &str = "AKIDREPLAYTEST";
const SECRET: &str = "wJalrXUtnFEMI-do-not-leak-K7MDENG-bPxRfiCY";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLE-session-token-do-not-leak";

/// A client on `http` with `max_attempts` quick retries and short timeouts.
fn client(http: &Scripted, max_attempts: u32) -> Client {
    client_on(http.clone(), quick_retries(max_attempts), short_timeouts())
}

/// A commit of two events: one `TransactWriteItems` (a lone event without a
/// snapshot is a conditional `PutItem`, see `tests/single_put.rs`).
fn one_event(id: &str) -> Vec<cqrs_es::persist::SerializedEvent> {
    vec![
        deposit_event("Account", id, 1, 5),
        deposit_event("Account", id, 2, 5),
    ]
}

/// A framework over an event store on `http`.
fn framework(http: &Scripted) -> CqrsFramework<Account, DynamoStore<Account>> {
    cqrs::<Account>(canned_repo(http, 3), SnapshotPolicy::Never)
}

// ---------------------------------------------------------------------------
// Throttling.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn throttled_query_is_retried_then_surfaces_as_throttled() {
    let http = Scripted::replying([
        Canned::throughput_exceeded(),
        Canned::throughput_exceeded(),
        Canned::throughput_exceeded(),
    ]);
    let repo = canned_repo(&http, 3);
    let err = repo.get_events::<Account>("acct-1").await.unwrap_err();
    assert_failed(&err, "Throttled", "Query");
    let typed = typed(&err);
    assert!(!typed.is_conflict() && !typed.is_data_error());
    assert!(typed.to_string().contains("throttled"), "{typed}");
    // Three attempts: the SDK retried the throttled request twice.
    assert_eq!(http.operations(), vec!["Query"; 3]);
}

#[tokio::test]
async fn throttling_that_clears_before_retries_run_out_is_invisible() {
    let http = Scripted::replying([
        Canned::throughput_exceeded(),
        Canned::dynamo_error("ThrottlingException", json!({})),
        Canned::empty_query(),
    ]);
    let repo = canned_repo(&http, 3);
    let events = repo.get_events::<Account>("acct-1").await.unwrap();
    assert!(events.is_empty());
    assert_eq!(http.operations(), vec!["Query"; 3]);
}

#[tokio::test]
async fn throttling_through_the_framework_is_a_connection_error_not_a_conflict() {
    let http = Scripted::replying([
        Canned::throughput_exceeded(),
        Canned::throughput_exceeded(),
        Canned::throughput_exceeded(),
    ]);
    let err = failed_deposit(&framework(&http), "acct-1").await;
    assert_eq!(err.kind(), "DatabaseConnectionError", "{err:?}");
    assert_eq!(
        failed_call(typed_aggregate(&err)),
        Some(("Throttled", "Query"))
    );
    assert_eq!(http.operations().len(), 3);
}

#[tokio::test]
async fn every_operation_maps_throttling_to_throttled() {
    // GetItem (snapshot), GetItem (view), PutItem (view), TransactWriteItems.
    let exhausted =
        || Scripted::replying([Canned::throughput_exceeded(), Canned::throughput_exceeded()]);

    let http = exhausted();
    let err = canned_repo(&http, 2)
        .get_snapshot::<Account>("acct-1")
        .await
        .unwrap_err();
    assert_failed(&err, "Throttled", "GetItem");
    assert_eq!(http.operations(), vec!["GetItem"; 2]);

    let http = exhausted();
    let views: DynamoViewRepository<AccountView, Account> =
        DynamoViewRepository::new("views", client(&http, 2));
    let err = views.load("acct-1").await.unwrap_err();
    assert_failed(&err, "Throttled", "GetItem");

    let http = exhausted();
    let views: DynamoViewRepository<AccountView, Account> =
        DynamoViewRepository::new("views", client(&http, 2));
    let err = views
        .update_view(AccountView::default(), ViewContext::new("acct-1".into(), 0))
        .await
        .unwrap_err();
    assert_failed(&err, "Throttled", "PutItem");
    assert_eq!(http.operations(), vec!["PutItem"; 2]);

    let http = exhausted();
    let err = canned_repo(&http, 2)
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap_err();
    assert_failed(&err, "Throttled", "TransactWriteItems");
    // The retry is the same transaction: same idempotency token.
    let tokens: Vec<_> = http
        .requests()
        .iter()
        .map(|r| r.body["ClientRequestToken"].clone())
        .collect();
    assert_eq!(tokens.len(), 2);
    assert!(tokens[0].is_string());
    assert_eq!(tokens[0], tokens[1]);
}

// ---------------------------------------------------------------------------
// Transaction cancellation reasons.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cancellation_reasons_map_to_conflict_throttled_or_failure() {
    // A lost race: never retried by the SDK, reported as an optimistic lock error.
    for reasons in [
        &["None", "TransactionConflict"][..],
        &["ConditionalCheckFailed"][..],
        &["None", "ConditionalCheckFailed", "None"][..],
    ] {
        let http = Scripted::replying([Canned::transaction_cancelled(reasons)]);
        let err = canned_repo(&http, 3)
            .persist::<Account>(&one_event("acct-1"), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "OptimisticLockError", "{reasons:?}: {err:?}");
        assert_eq!(http.operations(), vec!["TransactWriteItems"], "{reasons:?}");
    }

    // Through the framework, the same response is an aggregate conflict.
    let http = Scripted::replying([
        Canned::empty_query(),
        Canned::transaction_cancelled(&["None", "TransactionConflict"]),
    ]);
    let cqrs = framework(&http);
    let err = failed_command(&cqrs, "acct-1", AccountCommand::deposit(1, 2)).await;
    assert_eq!(err.kind(), "AggregateConflict", "{err:?}");

    // A throttled item cancels the transaction: retried with backoff, then
    // `Throttled`, distinct from a conflict.
    let http = Scripted::replying([
        Canned::transaction_cancelled(&["None", "ThrottlingError"]),
        Canned::transaction_cancelled(&["ThrottlingError"]),
        Canned::transaction_cancelled(&["None", "ThrottlingError"]),
    ]);
    let err = canned_repo(&http, 3)
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap_err();
    assert_failed(&err, "Throttled", "TransactWriteItems");
    assert_eq!(http.operations(), vec!["TransactWriteItems"; 3]);

    // ...and succeeds if the throttling clears in time.
    let http = Scripted::replying([
        Canned::transaction_cancelled(&["ThrottlingError", "None"]),
        Canned::written(),
    ]);
    canned_repo(&http, 3)
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap();
    assert_eq!(http.operations(), vec!["TransactWriteItems"; 2]);

    // A conflict and throttling at once is a conflict: retrying cannot help.
    let http = Scripted::replying([Canned::transaction_cancelled(&[
        "ThrottlingError",
        "ConditionalCheckFailed",
    ])]);
    let err = canned_repo(&http, 3)
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "OptimisticLockError", "{err:?}");
    assert_eq!(http.operations().len(), 1);

    // Any other reason is a plain DynamoDB failure.
    let http = Scripted::replying([Canned::transaction_cancelled(&["None", "ValidationError"])]);
    let err = canned_repo(&http, 3)
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap_err();
    assert_failed(&err, "Dynamo", "TransactWriteItems");
    assert_eq!(http.operations().len(), 1);
}

// ---------------------------------------------------------------------------
// Lost responses and idempotency tokens.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_lost_response_is_retried_with_the_same_token_and_succeeds() {
    let http = Scripted::new(vec![Step::Lost, Canned::written().into()]);
    let repo = canned_repo(&http, 3);
    let events: Vec<_> = (1..=3)
        .map(|s| deposit_event("Account", "acct-1", s, 1))
        .collect();
    repo.persist::<Account>(&events, Some(("acct-1".into(), json!({"total": 3}), 1)))
        .await
        .unwrap();
    let seen = http.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.operation == "TransactWriteItems"));
    let (first, retry) = (seen[0].token(), seen[1].token());
    assert_eq!(
        first, retry,
        "the retry must be recognisable as the same transaction"
    );
    assert!(
        !first.is_empty() && first.len() <= 36,
        "DynamoDB caps tokens at 36: {first}"
    );
    // The retried request is the same transaction, byte for byte.
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(seen[0].body["TransactItems"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn an_unanswered_attempt_times_out_and_the_retry_carries_the_same_token() {
    let http = Scripted::new(vec![Step::Hang, Canned::written().into()]);
    let repo = canned_repo(&http, 3);
    let started = std::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(20),
        repo.persist::<Account>(&one_event("acct-1"), None),
    )
    .await
    .expect("no hang")
    .unwrap();
    // The first attempt was abandoned by the 300 ms attempt timeout.
    assert!(started.elapsed() >= Duration::from_millis(300));
    let seen = http.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].token(), seen[1].token());
}

#[tokio::test]
async fn a_command_whose_commit_response_is_lost_succeeds_through_the_framework() {
    let http = Scripted::new(vec![
        Canned::empty_query().into(),
        Step::Lost,
        Canned::written().into(),
    ]);
    let cqrs = framework(&http);
    cqrs.execute("acct-1", AccountCommand::deposit(7, 2))
        .await
        .unwrap();
    let seen = http.requests();
    let ops: Vec<&str> = seen.iter().map(|s| s.operation.as_str()).collect();
    assert_eq!(ops, ["Query", "TransactWriteItems", "TransactWriteItems"]);
    assert_eq!(seen[1].token(), seen[2].token());
    assert_eq!(http.remaining(), 0);
}

#[tokio::test]
async fn responses_lost_on_every_attempt_are_a_connection_error_not_a_conflict() {
    let http = Scripted::new(vec![Step::Lost, Step::Hang, Step::Lost]);
    let repo = canned_repo(&http, 3);
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        repo.persist::<Account>(&one_event("acct-1"), None),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert_failed(&err, "Connection", "TransactWriteItems");
    let seen = http.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.token() == seen[0].token()));
}

#[tokio::test]
async fn distinct_commits_never_share_a_token() {
    // Two writers producing the very same commit (same aggregate, same
    // sequence range) must not be mistaken for one retried transaction.
    let http = Scripted::new(vec![
        Canned::written().into(),
        Canned::written().into(),
        Canned::written().into(),
    ]);
    let repo = canned_repo(&http, 1);
    for _ in 0..2 {
        repo.persist::<Account>(&one_event("acct-1"), None)
            .await
            .unwrap();
    }
    let other = vec![deposit_event("Account", "acct-2", 1, 5)];
    repo.persist::<Account>(&other, None).await.unwrap();
    let tokens: Vec<String> = http
        .requests()
        .iter()
        .map(|r| r.token().to_string())
        .collect();
    assert_eq!(tokens.len(), 3);
    assert_ne!(tokens[0], tokens[1]);
    assert_ne!(tokens[0], tokens[2]);
    assert_ne!(tokens[1], tokens[2]);
}

// ---------------------------------------------------------------------------
// Credentials.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn credentials_never_appear_in_debug_output_or_logs() {
    let (captured, _guard) = capture(tracing::Level::TRACE, true);

    let http = Scripted::replying([
        Canned::throughput_exceeded(),
        Canned::empty_query(),
        Canned::written(),
    ]);
    let credentials = Credentials::new(ACCESS_KEY, SECRET, Some(SESSION_TOKEN.into()), None, "t");
    let config = client(&http, 3).config().to_builder();
    let client = Client::from_conf(config.credentials_provider(credentials.clone()).build());
    let repo = DynamoEventRepository::new(client.clone()).with_tables("events", "snapshots");
    repo.get_events::<Account>("acct-1").await.unwrap();
    repo.persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap();

    let debug_outputs = [
        format!("{:?}", client.config()),
        format!("{:#?}", client.config()),
        format!("{client:?}"),
        format!("{repo:?}"),
        format!("{credentials:?}"),
    ];
    for output in &debug_outputs {
        assert!(
            !output.contains(SECRET),
            "secret key in Debug output: {output}"
        );
        assert!(
            !output.contains(SESSION_TOKEN),
            "session token in Debug output: {output}"
        );
    }
    // The secret is really there to leak: it signs requests.
    assert_eq!(credentials.secret_access_key(), SECRET);

    let logs = captured.text();
    // The capture works: the SDK and this crate both logged at trace level.
    assert!(
        logs.contains("dynamo_es.persist"),
        "no crate spans captured"
    );
    assert!(logs.contains("TransactWriteItems"), "no SDK logs captured");
    assert!(!logs.contains(SECRET), "secret key in logs");
    assert!(!logs.contains(SESSION_TOKEN), "session token in logs");

    // And nothing sends the secret itself over the wire.
    for request in http.requests() {
        for (name, value) in &request.headers {
            assert!(!value.contains(SECRET), "secret in header {name}");
        }
        assert!(!request.body.to_string().contains(SECRET));
    }
}
