//! What a new user sees when something is wrong: every DynamoDB error names
//! the operation and the table and carries DynamoDB's own message (a missing
//! table, a table with another key schema, a missing view table, throttling,
//! an unreachable endpoint, a conflict); a client without a region or
//! credentials is a configuration error that says what to set, never a
//! connection error; and the crate's log events show up under
//! `dynamo_es=debug`. On the embedded emulator (or
//! `AWS_ENDPOINT_URL_DYNAMODB`), and on canned responses for what an
//! emulator does not do (throttling, a refused snapshot).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::KeyType;
use aws_sdk_dynamodb::Client;
use common::*;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, SerializedEvent, ViewRepository,
};
use cqrs_es::{Aggregate, AggregateError};
use dynamo_es::testing::faults::{client_on, quick_retries, short_timeouts, Canned, Scripted};
use dynamo_es::testing::{client_with, endpoint, unique_name, TestTables};
use dynamo_es::{Codec, DynamoEventRepository, DynamoViewRepository, Error, SnapshotPolicy};
use serde_json::json;

/// A `Deposited` event of 1 at `sequence` of `id`.
fn event(id: &str, sequence: usize) -> SerializedEvent {
    deposit_event(Account::TYPE, id, sequence, 1)
}

/// Asserts that exactly one line of `logs` contains `needle`, and that it
/// contains every one of `parts`.
#[track_caller]
fn assert_one_line(logs: &Captured, needle: &str, parts: &[&str]) {
    let lines = logs.lines_with(needle);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_mentions(&lines[0], parts);
}

/// Asserts that `text` contains every one of `parts`.
#[track_caller]
fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}

// ---------------------------------------------------------------------------
// Missing tables, foreign key schemas, missing view tables.
// ---------------------------------------------------------------------------

/// Deposits on `c1` through a framework with `policy` on tables `events`
/// and `snapshots` of `db`'s endpoint, which must fail with an error
/// (printed) that mentions every one of `parts`.
async fn refused_deposit(
    db: &TestTables,
    (events, snapshots): (&str, &str),
    policy: SnapshotPolicy,
    parts: &[&str],
) -> AggregateError<AccountError> {
    let repo = DynamoEventRepository::new(db.client.clone()).with_tables(events, snapshots);
    let err = failed_deposit(&cqrs(repo, policy), "c1").await;
    println!("{err}");
    assert_mentions(&err.to_string(), parts);
    err
}

#[tokio::test]
async fn a_missing_event_table_names_the_operation_the_table_and_dynamodbs_message() {
    let db = tables().await;
    let missing = unique_name("missing-events");

    // What a user of CqrsFramework sees: the load's Query.
    let parts = [
        "Query",
        missing.as_str(),
        "ResourceNotFoundException",
        "Requested resource not found",
    ];
    let err = refused_deposit(
        &db,
        (&missing, &db.snapshots),
        SnapshotPolicy::Never,
        &parts,
    )
    .await;
    assert!(matches!(err, AggregateError::UnexpectedError(_)), "{err:?}");
    let typed = typed_aggregate(&err);
    assert!(
        matches!(typed, Error::Dynamo { operation: "Query", table, .. } if *table == missing),
        "{typed:?}"
    );
    assert_mentions(&typed.to_string(), &parts);

    // A commit: the PutItem (a lone event) names the events table.
    let repo = DynamoEventRepository::new(db.client.clone()).with_tables(&missing, &db.snapshots);
    let err = first_event(&repo, "c1").await.unwrap_err();
    assert_mentions(
        &err.to_string(),
        &["PutItem", missing.as_str(), "Requested resource not found"],
    );
}

#[tokio::test]
async fn a_missing_snapshot_table_names_the_operation_the_table_and_dynamodbs_message() {
    let db = tables().await;
    let missing = unique_name("missing-snapshots");
    let parts = ["GetItem", missing.as_str(), "Requested resource not found"];
    refused_deposit(&db, (&db.events, &missing), SnapshotPolicy::Always, &parts).await;
}

#[tokio::test]
async fn a_table_with_another_key_schema_names_the_operation_the_table_and_dynamodbs_message() {
    let db = tables().await;
    let foreign = unique_name("foreign");
    create_raw(&db.client, &foreign, &[("id", "S", KeyType::Hash)]).await;

    // As the events table, the load's Query; as the snapshots table, the
    // load's GetItem.
    let cases = [
        (
            (foreign.as_str(), db.snapshots.as_str()),
            SnapshotPolicy::Never,
            [
                "Query",
                &foreign,
                "ValidationException",
                "key schema element",
            ],
        ),
        (
            (&db.events, &foreign),
            SnapshotPolicy::Always,
            [
                "GetItem",
                &foreign,
                "ValidationException",
                "The provided key element does not match the schema",
            ],
        ),
    ];
    for (tables, policy, parts) in cases {
        let err = refused_deposit(&db, tables, policy, &parts).await;
        assert!(matches!(typed_aggregate(&err), Error::Dynamo { .. }));
    }
}

#[tokio::test]
async fn a_missing_view_table_names_the_operation_the_table_and_dynamodbs_message() {
    let db = tables().await;
    let missing = unique_name("nope");
    let views = DynamoViewRepository::<AccountView, Account>::new(&missing, db.client.clone());
    let err = views.load("v1").await.unwrap_err();
    println!("{err}");
    let parts = ["GetItem", missing.as_str(), "Requested resource not found"];
    assert_mentions(&err.to_string(), &parts);
    assert!(matches!(err, PersistenceError::UnknownError(_)), "{err:?}");
    assert!(matches!(
        typed(&err),
        Error::Dynamo {
            operation: "GetItem",
            ..
        }
    ));
    let Err(err) = views.load_with_context("v1").await else {
        panic!("loaded a view from a missing table")
    };
    assert_mentions(&err.to_string(), &parts);
}

#[tokio::test]
async fn a_view_table_with_another_key_schema_names_the_table() {
    let db = tables().await;
    let foreign = unique_name("foreign-view");
    create_raw(&db.client, &foreign, &[("id", "S", KeyType::Hash)]).await;
    let views = DynamoViewRepository::<AccountView, Account>::new(&foreign, db.client.clone());
    let err = views.load("v1").await.unwrap_err();
    assert_mentions(
        &err.to_string(),
        &[
            "GetItem",
            foreign.as_str(),
            "The provided key element does not match the schema",
        ],
    );
}

// ---------------------------------------------------------------------------
// Conflicts, unreachable endpoints, throttling.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_conflict_names_the_aggregate_and_the_table() {
    let db = tables().await;
    let repo = db.repository();
    first_event(&repo, "c1").await.unwrap();
    let err = first_event(&repo, "c1").await.unwrap_err();
    // cqrs-es's OptimisticLockError carries nothing; the typed error does.
    assert!(
        matches!(err, PersistenceError::OptimisticLockError),
        "{err:?}"
    );
    // The typed error names the table too (it is logged at debug level,
    // see below), but cqrs-es's error drops it.
    let err = Error::Conflict {
        key: "Account:c1".into(),
        table: db.events.clone(),
    };
    assert_eq!(
        err.to_string(),
        format!(
            "optimistic lock conflict on Account:c1 in table {}",
            db.events
        )
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_connection_error_naming_the_table() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = client_with(
        &format!("http://127.0.0.1:{port}"),
        TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(5))
            .build(),
        RetryConfig::disabled(),
    );
    let err = failed_load(client).await;
    println!("{err}");
    assert_failed(&err, "Connection", "Query");
    assert_mentions(
        &err.to_string(),
        &[
            "Query on table Events could not reach DynamoDB",
            "dispatch failure",
        ],
    );
}

/// Stores the first event of `id`, without a snapshot, through `repo`.
async fn first_event(repo: &DynamoEventRepository, id: &str) -> Result<(), PersistenceError> {
    repo.persist::<Account>(&[event(id, 1)], None).await
}

/// Commits the first two events of `id`: one `TransactWriteItems` (a lone
/// event without a snapshot is a conditional `PutItem`).
async fn first_two_events(repo: &DynamoEventRepository, id: &str) -> Result<(), PersistenceError> {
    repo.persist::<Account>(&[event(id, 1), event(id, 2)], None)
        .await
}

/// The error of loading the events of `c1` from table `Events` through
/// `client`, which must fail.
async fn failed_load(client: Client) -> PersistenceError {
    let repo = DynamoEventRepository::new(client).with_tables("Events", "Snapshots");
    repo.get_events::<Account>("c1").await.unwrap_err()
}

/// A DynamoDB error of type `kind` with `message`.
fn dynamo_error(kind: &str, message: &str) -> Canned {
    Canned::dynamo_error(kind, json!({ "message": message }))
}

fn throttled_cancellation() -> Canned {
    Canned::dynamo_error(
        "TransactionCanceledException",
        json!({
            "message": "Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError]",
            "CancellationReasons": [
                {"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity of your table or index."}
            ],
        }),
    )
}

/// A client answering with `responses` in order, making at most `attempts`
/// attempts per call with a short backoff.
fn canned(responses: Vec<Canned>, attempts: u32) -> Client {
    client_on(
        Scripted::replying(responses),
        quick_retries(attempts),
        short_timeouts(),
    )
}

#[tokio::test]
async fn throttling_names_the_operation_the_table_and_dynamodbs_message() {
    let client = canned(
        vec![dynamo_error(
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        )],
        1,
    );
    let err = failed_load(client).await;
    assert_failed(&err, "Throttled", "Query");
    assert_eq!(
        err.to_string(),
        "Query on table Events throttled by DynamoDB after retries: \
         ThrottlingException: Rate of requests exceeds the allowed throughput."
    );

    // A transaction cancelled by throttling lists the item's reason.
    let client = canned(vec![throttled_cancellation()], 1);
    let repo = DynamoEventRepository::new(client).with_tables("Events", "Snapshots");
    let err = first_two_events(&repo, "c1").await.unwrap_err();
    assert!(matches!(
        typed(&err),
        Error::Throttled {
            operation: "TransactWriteItems",
            ..
        }
    ));
    assert_mentions(
        &err.to_string(),
        &[
            "TransactWriteItems on table Events throttled",
            "TransactionCanceledException",
            "item 0: ThrottlingError: Throughput exceeds the current capacity",
        ],
    );
}

// ---------------------------------------------------------------------------
// A client without a region or credentials.
// ---------------------------------------------------------------------------

fn config() -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
}

fn test_credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "static")
}

/// Loads through a store and a view on `client`, asserting each failure is
/// a configuration error (never a connection error) whose message names
/// the operation, the table and `fix`.
async fn assert_misconfigured(client: Client, fix: &str) {
    let repo = DynamoEventRepository::new(client.clone()).with_tables("Events", "Snapshots");

    let err = failed_deposit(&cqrs(repo.clone(), SnapshotPolicy::Never), "c1").await;
    println!("{err}");
    assert!(matches!(err, AggregateError::UnexpectedError(_)), "{err:?}");
    let typed_err = typed_aggregate(&err);
    assert!(typed_err.is_configuration(), "{typed_err:?}");
    let Error::Configuration {
        operation,
        table,
        reason,
        ..
    } = typed_err
    else {
        panic!("{typed_err:?}")
    };
    assert_eq!((*operation, table.as_str()), ("Query", "Events"));
    assert!(reason.contains(fix), "{reason}");
    assert_mentions(
        &err.to_string(),
        &["Query on table Events was not sent", fix],
    );

    let err = first_event(&repo, "c1").await.unwrap_err();
    assert!(matches!(err, PersistenceError::UnknownError(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["PutItem on table Events", fix]);

    let views = DynamoViewRepository::<AccountView, Account>::new("Views", client);
    let err = views.load("v1").await.unwrap_err();
    assert!(matches!(err, PersistenceError::UnknownError(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["GetItem on table Views", fix]);
}

#[tokio::test]
async fn a_client_without_a_region_is_a_configuration_error_naming_the_fix() {
    let endpoint = endpoint().unwrap();
    // With an endpoint URL: nothing to sign for.
    let client = Client::from_conf(
        config()
            .credentials_provider(test_credentials())
            .endpoint_url(&endpoint)
            .build(),
    );
    assert_misconfigured(client, "set AWS_REGION").await;
    // Without one: no endpoint either.
    let client = Client::from_conf(config().credentials_provider(test_credentials()).build());
    assert_misconfigured(client, "set AWS_REGION").await;
}

#[tokio::test]
async fn a_client_without_credentials_is_a_configuration_error_naming_the_fix() {
    let endpoint = endpoint().unwrap();
    // No credentials provider at all.
    let client = Client::from_conf(
        config()
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .build(),
    );
    assert_misconfigured(client, "no AWS credentials: set AWS_ACCESS_KEY_ID").await;

    // A provider that finds none: a profile that is not in the files.
    let dir = std::env::temp_dir().join(unique_name("aws-profiles"));
    std::fs::create_dir_all(&dir).unwrap();
    let credentials_file = dir.join("credentials");
    let config_file = dir.join("config");
    std::fs::write(
        &credentials_file,
        "[other]\naws_access_key_id = a\naws_secret_access_key = b\n",
    )
    .unwrap();
    std::fs::write(&config_file, "").unwrap();
    #[allow(deprecated)]
    let files = aws_config::profile::profile_file::ProfileFiles::builder()
        .with_file(
            aws_config::profile::profile_file::ProfileFileKind::Credentials,
            &credentials_file,
        )
        .with_file(
            aws_config::profile::profile_file::ProfileFileKind::Config,
            &config_file,
        )
        .build();
    let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .profile_files(files)
        .profile_name("missing")
        .build();
    let client = Client::from_conf(
        config()
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(provider)
            .build(),
    );
    // The provider reports "profile `missing` was not defined" once, then
    // an "initialization error already taken": both are configuration
    // errors that say what to set.
    assert_misconfigured(client, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY").await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// Logs.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_codec_is_logged_once_per_repository() {
    let db = tables().await;
    let (logs, _guard) = capture_filtered("dynamo_es=debug");
    let cqrs = cqrs::<Account>(
        db.repository().with_codec(Codec::json()),
        SnapshotPolicy::Never,
    );
    deposit(&cqrs, "codec-1", 1).await;
    deposit(&cqrs, "codec-1", 2).await;
    assert_one_line(
        &logs,
        "dynamo-es writes with this codec",
        &["codec=json", &db.events],
    );
}

#[tokio::test]
async fn commits_loads_conflicts_and_failures_are_logged_at_debug_level() {
    let db = tables().await;
    let (logs, _guard) = capture_filtered("dynamo_es=debug");
    let cqrs = cqrs::<Account>(db.repository(), SnapshotPolicy::Always);
    deposit(&cqrs, "c1", 5).await;

    assert_one_line(
        &logs,
        "commit stored",
        &[
            " DEBUG ",
            "dynamo_es.persist",
            &format!("table={}", db.events),
            "aggregate=Account:c1",
            "events=1",
            "items=2",
            "stored_bytes=",
            "consumed_capacity=",
            "snapshot=\"written\"",
        ],
    );
    assert_one_line(
        &logs,
        "aggregate loaded",
        &[
            " DEBUG ",
            "dynamo_es.load",
            &format!("table={}", db.events),
            "sequence=0",
        ],
    );

    // A lost race.
    let repo = db.repository();
    first_event(&repo, "c2").await.unwrap();
    first_event(&repo, "c2").await.unwrap_err();
    assert_one_line(
        &logs,
        "conflict",
        &[
            " DEBUG ",
            "key=Account:c2",
            &format!("table={}", db.events),
            "nothing was written",
        ],
    );

    // A failure: logged, and recorded on the span.
    let missing = unique_name("missing-events");
    let repo = DynamoEventRepository::new(db.client.clone()).with_tables(&missing, &db.snapshots);
    failed_deposit(&common::cqrs(repo, SnapshotPolicy::Never), "c3").await;
    let failures = logs.lines_with("failed");
    assert!(
        failures
            .iter()
            .any(|line| line.contains(&format!("table={missing}"))
                && line.contains("Requested resource not found")),
        "{failures:?}"
    );
}

#[tokio::test]
async fn retries_are_logged_at_debug_level() {
    let (logs, _guard) = capture_filtered("dynamo_es=debug");

    // A transaction cancelled by throttling, then accepted.
    let client = canned(vec![throttled_cancellation(), Canned::written()], 3);
    let repo = DynamoEventRepository::new(client).with_tables("Events", "Snapshots");
    first_two_events(&repo, "c1").await.unwrap();
    assert_one_line(
        &logs,
        "retrying TransactWriteItems",
        &[" DEBUG ", "throttled", "attempt=1", "table=Events"],
    );
    assert_eq!(logs.lines_with("commit stored").len(), 1);

    // A transaction with its snapshot refused, then the events alone.
    let client = canned(
        vec![
            dynamo_error(
                "ValidationException",
                "Transaction request cannot exceed 4 MB.",
            ),
            Canned::written(),
        ],
        1,
    );
    let repo = DynamoEventRepository::new(client).with_tables("Events", "Snapshots");
    repo.persist::<Account>(
        &[event("c1", 1)],
        Some(("c1".into(), json!({"total": 1}), 1)),
    )
    .await
    .unwrap();
    assert_one_line(
        &logs,
        "snapshot skipped",
        &[
            " WARN ",
            "server_refused",
            "retrying the commit without it",
            "snapshot_table=Snapshots",
        ],
    );
    let commits = logs.lines_with("commit stored");
    assert_eq!(commits.len(), 2, "{commits:?}");
    assert_mentions(&commits[1], &["snapshot=\"skipped\"", "items=1"]);
}

/// `Error` stays as small as it was before the table and message fields:
/// the payload readers return a `Result` with it from every level of a
/// nested payload, and `tests/corrupt.rs` reads the deepest payload allowed
/// on a 2 MiB stack in debug builds.
#[test]
fn the_error_type_stays_small() {
    assert!(
        std::mem::size_of::<Error>() <= 80,
        "{}",
        std::mem::size_of::<Error>()
    );
}
