//! Faults: the emulator stopped in the middle of a persist, a load and a
//! stream; a server that never answers; a restart on the same database file
//! after a crash in the middle of concurrent commits.
//!
//! Every call returns a typed connection (or timeout) error within the
//! configured timeouts, nothing hangs or panics, a stream ends after
//! yielding its error, and after a restart every commit is all or nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::SdkError;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ViewRepository};
use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use dynamo_es::testing::faults::{
    black_hole, cut_off_server, fault_client, isolated, short_timeouts, StopMidRequest,
    OPERATION_TIMEOUT,
};
use dynamo_es::testing::{client_with, dynamodb_with, unique_name, EmbeddedDynamo, TestTables};
use dynamo_es::{DynamoEventRepository, DynamoStore, Error, SnapshotPolicy};

/// The `dynamo_es::Error` inside a connection error.
fn connection_error(err: &PersistenceError) -> &Error {
    let PersistenceError::ConnectionError(source) = err else {
        panic!("expected a connection error, got {err:?}")
    };
    let typed = source
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a dynamo_es::Error: {source:?}"));
    assert!(matches!(typed, Error::Connection { .. }), "{typed:?}");
    typed
}

/// True if a connection error is the SDK's timeout (rather than a broken
/// or refused connection).
fn is_timeout(err: &Error) -> bool {
    use aws_sdk_dynamodb::operation::{
        get_item::GetItemError, put_item::PutItemError, query::QueryError,
        transact_write_items::TransactWriteItemsError,
    };
    use aws_smithy_runtime_api::http::Response;
    let Error::Connection { source, .. } = err else {
        return false;
    };
    if let Some(e) = source.downcast_ref::<SdkError<QueryError, Response>>() {
        return matches!(e, SdkError::TimeoutError(_));
    }
    if let Some(e) = source.downcast_ref::<SdkError<TransactWriteItemsError, Response>>() {
        return matches!(e, SdkError::TimeoutError(_));
    }
    if let Some(e) = source.downcast_ref::<SdkError<GetItemError, Response>>() {
        return matches!(e, SdkError::TimeoutError(_));
    }
    if let Some(e) = source.downcast_ref::<SdkError<PutItemError, Response>>() {
        return matches!(e, SdkError::TimeoutError(_));
    }
    false
}

/// Runs `call`, proving it neither hangs nor outlives the client's
/// operation timeout (plus scheduling slack).
async fn bounded<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = tokio::time::timeout(NO_HANG, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hangs"));
    let elapsed = started.elapsed();
    assert!(
        elapsed <= OPERATION_TIMEOUT + Duration::from_secs(3),
        "{what} took {elapsed:?}"
    );
    out
}

/// An emulator of its own (on the SQLite file `path`, else in memory), and
/// tables on it through a fault client.
async fn emulator(path: Option<&Path>) -> (EmbeddedDynamo, TestTables) {
    let server = EmbeddedDynamo::start_on(path, "127.0.0.1:0").unwrap();
    let db = dynamodb_with(fault_client(&server.endpoint()))
        .await
        .unwrap();
    (server, db)
}

/// A fresh file-backed emulator with tables, and a fault client for it
/// through `StopMidRequest`.
async fn seeded_emulator() -> (EmbeddedDynamo, TestTables, PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique_name("dynamo-es-faults")));
    let (server, db) = emulator(Some(&path)).await;
    (server, db, path)
}

fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

fn on(db: &TestTables, endpoint: &str) -> DynamoEventRepository {
    DynamoEventRepository::new(fault_client(endpoint)).with_tables(&db.events, &db.snapshots)
}

// ---------------------------------------------------------------------------
// Stopped in the middle.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_in_the_middle_of_a_persist_it_fails_typed_and_commits_nothing() {
    let (server, db, path) = seeded_emulator().await;
    let id = new_id();
    let addr = server.addr();
    let proxy = StopMidRequest::start(server, "TransactWriteItems", 1)
        .await
        .unwrap();
    let repo = on(&db, proxy.endpoint());
    // A 500 KB commit: fifty events of 10 KB and a snapshot.
    let events: Vec<_> = (1..=50).map(|s| note_event(&id, s, 10_000)).collect();
    let err = bounded(
        "persist",
        repo.persist::<Account>(
            &events,
            Some((id.clone(), serde_json::json!({"total": 0}), 1)),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        proxy.has_stopped(),
        "the emulator was not stopped mid-request"
    );
    assert_failed(&err, "Connection", "TransactWriteItems");

    // Restarted on the same file: the half-received commit left nothing.
    let server = EmbeddedDynamo::start_on(Some(&path), &addr.to_string()).unwrap();
    let repo = on(&db, &server.endpoint());
    assert!(repo.get_events::<Account>(&id).await.unwrap().is_empty());
    assert!(repo.get_snapshot::<Account>(&id).await.unwrap().is_none());
    // ...and the same commit goes through now.
    repo.persist::<Account>(&events, None).await.unwrap();
    assert_eq!(repo.get_events::<Account>(&id).await.unwrap().len(), 50);
    server.stop();
    remove_database(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_in_the_middle_of_a_load_it_fails_typed() {
    let (server, db, path) = seeded_emulator().await;
    let id = new_id();
    // 3 MB of history, stored as plain JSON whatever the default codec: a
    // full read takes at least three 1 MB pages.
    let repo = on(&db, &server.endpoint()).with_codec(dynamo_es::Codec::json());
    let events: Vec<_> = (1..=300).map(|s| note_event(&id, s, 10_000)).collect();
    for batch in events.chunks(100) {
        repo.persist::<Account>(batch, None).await.unwrap();
    }
    // Stopped while the second page is requested.
    let proxy = StopMidRequest::start(server, "Query", 2).await.unwrap();
    let repo = on(&db, proxy.endpoint());
    let Err(err) = bounded("get_events", repo.get_events::<Account>(&id)).await else {
        panic!("loads from a stopped emulator")
    };
    assert!(proxy.has_stopped());
    assert_failed(&err, "Connection", "Query");

    // The same through the store and the framework: a connection error,
    // not a conflict or a half-loaded aggregate.
    let store = DynamoStore::<Account>::new_event_store(repo.clone());
    let Err(err) = bounded("load_aggregate", store.load_aggregate(&id)).await else {
        panic!("loads from a stopped emulator")
    };
    assert_eq!(err.kind(), "DatabaseConnectionError", "{err:?}");
    let cqrs = cqrs::<Account>(repo, SnapshotPolicy::Never);
    let err = bounded("execute", cqrs.execute(&id, AccountCommand::deposit(1, 1)))
        .await
        .unwrap_err();
    let AggregateError::DatabaseConnectionError(source) = err else {
        panic!("{err:?}")
    };
    assert!(matches!(
        source.downcast_ref::<Error>(),
        Some(Error::Connection { .. })
    ));
    remove_database(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_in_the_middle_of_a_stream_it_yields_its_error_then_ends() {
    for all in [false, true] {
        let (server, db, path) = seeded_emulator().await;
        let id = new_id();
        let repo = on(&db, &server.endpoint());
        let events: Vec<_> = (1..=100)
            .map(|s| deposit_event("Account", &id, s, 1))
            .collect();
        repo.persist::<Account>(&events, None).await.unwrap();
        // Pages of 10; the emulator stops during the third page's request.
        let operation = if all { "Scan" } else { "Query" };
        let proxy = StopMidRequest::start(server, operation, 3).await.unwrap();
        let repo = on(&db, proxy.endpoint()).with_streaming_channel_size(10);
        let mut stream = if all {
            repo.stream_all_events::<Account>().await.unwrap()
        } else {
            repo.stream_events::<Account>(&id).await.unwrap()
        };
        let (events, err) = bounded(operation, drain::<Account>(&mut stream)).await;
        assert!(
            proxy.has_stopped(),
            "{operation}: {events} events, then {err:?}"
        );
        assert_eq!(
            events, 20,
            "{operation}: the two pages read before the stop"
        );
        let err = err.expect("the stream reports the failure");
        assert_failed(&err, "Connection", operation);
        remove_database(&path);
    }
}

/// The emulator itself stopped (no proxy) while a consumer is between
/// pages: the small channel holds the feed back, so pages remain unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stopped_between_pages_yields_its_error_then_ends() {
    let (server, db) = emulator(None).await;
    let repo = db.repository().with_streaming_channel_size(5);
    let id = new_id();
    let events: Vec<_> = (1..=100)
        .map(|s| deposit_event("Account", &id, s, 1))
        .collect();
    repo.persist::<Account>(&events, None).await.unwrap();
    let mut stream = repo.stream_events::<Account>(&id).await.unwrap();
    let first = stream.next::<Account>(&[]).await.unwrap().unwrap();
    assert_eq!(first.sequence, 1);
    server.shut_down().await;
    let (more, err) = bounded("stream", drain::<Account>(&mut stream)).await;
    assert!(more < 99, "read {more} events from a stopped emulator");
    let err = err.expect("the stream reports the failure");
    assert_failed(&err, "Connection", "Query");
}

/// Whatever the timing of a stop during a large persist, the outcome is a
/// success or a typed connection error, promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persist_racing_a_stop_succeeds_or_fails_typed() {
    let (server, db) = emulator(None).await;
    let repo = db.repository();
    let id = new_id();
    let events: Vec<_> = (1..=90).map(|s| note_event(&id, s, 30_000)).collect();
    let persist = tokio::spawn(async move { repo.persist::<Account>(&events, None).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.shut_down().await;
    match bounded("persist", persist).await.unwrap() {
        Ok(()) => {}
        Err(err) => {
            connection_error(&err);
        }
    }
}

// ---------------------------------------------------------------------------
// A server that never answers.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_response_cut_off_mid_body_is_a_connection_error() {
    let server = cut_off_server().await.unwrap();
    let repo = DynamoEventRepository::new(fault_client(&server.endpoint))
        .with_tables("events", "snapshots");
    let err = bounded("get_events", repo.get_events::<Account>("acct-1"))
        .await
        .unwrap_err();
    assert_failed(&err, "Connection", "Query");
    // Retried like any transport failure.
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
    // A commit whose answer is cut off has an unknown outcome: a connection
    // error, never a conflict or a plain failure.
    let events = vec![deposit_event("Account", "acct-1", 1, 1)];
    let err = bounded("persist", repo.persist::<Account>(&events, None))
        .await
        .unwrap_err();
    assert_failed(&err, "Connection", "PutItem");
}

#[tokio::test]
async fn a_configured_operation_timeout_fires() {
    let endpoint = black_hole().await.unwrap();
    let timeout = Duration::from_secs(1);
    let client = client_with(
        &endpoint,
        TimeoutConfig::builder().operation_timeout(timeout).build(),
        RetryConfig::standard(),
    );
    let repo = DynamoEventRepository::new(client).with_tables("events", "snapshots");
    let started = Instant::now();
    let err = tokio::time::timeout(NO_HANG, repo.get_events::<Account>("acct-1"))
        .await
        .expect("hangs")
        .unwrap_err();
    let elapsed = started.elapsed();
    let typed = connection_error(&err);
    assert!(is_timeout(typed), "{typed:?}");
    assert!(elapsed >= timeout, "fired early: {elapsed:?}");
    assert!(elapsed < timeout * 5, "fired late: {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_to_a_silent_server_times_out_typed() {
    let endpoint = black_hole().await.unwrap();
    // Attempts of 300 ms, three of them, within an operation timeout of 5 s.
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(10));
    let client = isolated(&client_with(&endpoint, short_timeouts(), retry));
    let repo = DynamoEventRepository::new(client.clone()).with_tables("events", "snapshots");
    let events = vec![deposit_event("Account", "acct-1", 1, 1)];

    let err = bounded("persist", repo.persist::<Account>(&events, None))
        .await
        .unwrap_err();
    assert!(is_timeout(connection_error(&err)), "{err:?}");
    let err = bounded("get_events", repo.get_events::<Account>("acct-1"))
        .await
        .unwrap_err();
    assert!(is_timeout(connection_error(&err)), "{err:?}");
    let err = bounded("get_snapshot", repo.get_snapshot::<Account>("acct-1"))
        .await
        .unwrap_err();
    assert!(is_timeout(connection_error(&err)), "{err:?}");
    let views = dynamo_es::DynamoViewRepository::<AccountView, Account>::new("views", client);
    let err = bounded("view load", views.load("acct-1"))
        .await
        .unwrap_err();
    assert!(is_timeout(connection_error(&err)), "{err:?}");
    let mut stream = repo.stream_events::<Account>("acct-1").await.unwrap();
    let (events, err) = bounded("stream", drain::<Account>(&mut stream)).await;
    assert_eq!(events, 0);
    assert!(is_timeout(connection_error(&err.expect("an error"))));
    let store = DynamoStore::<Account>::new(repo, SnapshotPolicy::Always);
    let Err(err) = bounded("load_aggregate", store.load_aggregate("acct-1")).await else {
        panic!("loads from a silent server")
    };
    assert_eq!(err.kind(), "DatabaseConnectionError", "{err:?}");
}

// ---------------------------------------------------------------------------
// A crash in the middle of concurrent commits, and a restart.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Commit {
    id: String,
    count: usize,
}

fn commit_metadata(commit: &str, count: usize) -> HashMap<String, String> {
    HashMap::from([
        ("commit".to_string(), commit.to_string()),
        ("count".to_string(), count.to_string()),
    ])
}

/// Writes multi-event commits to `aggregate` until the emulator goes away,
/// returning the commits acknowledged.
async fn write_until_failure(
    cqrs: Arc<CqrsFramework<Account, DynamoStore<Account>>>,
    writer: usize,
    aggregate: String,
    acknowledged: Arc<AtomicUsize>,
) -> Vec<Commit> {
    let mut acked = Vec::new();
    for n in 0.. {
        let commit = format!("w{writer}-c{n}");
        let count = 2 + (writer + n) % 5;
        loop {
            let command = AccountCommand::deposit(1, count);
            match cqrs
                .execute_with_metadata(&aggregate, command, commit_metadata(&commit, count))
                .await
            {
                Ok(()) => {
                    acked.push(Commit { id: commit, count });
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Err(AggregateError::AggregateConflict) => continue,
                Err(AggregateError::DatabaseConnectionError(_)) => return acked,
                Err(other) => panic!("writer {writer}: {other:?}"),
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_and_restart_every_commit_is_all_or_nothing() {
    let (server, db, path) = seeded_emulator().await;
    let addr = server.addr();
    let cqrs = Arc::new(cqrs::<Account>(db.repository(), SnapshotPolicy::Always));
    // Six writers on their own aggregates, two more sharing one.
    let aggregates: Vec<String> = (0..7).map(|_| new_id()).collect();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let aggregate = aggregates[writer.min(6)].clone();
            tokio::spawn(write_until_failure(
                cqrs.clone(),
                writer,
                aggregate.clone(),
                acknowledged.clone(),
            ))
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(60), async {
        while acknowledged.load(Ordering::SeqCst) < 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("writers make progress");
    // The crash: every connection cut while commits are in flight.
    server.shut_down().await;
    let mut acked: Vec<Commit> = Vec::new();
    for writer in writers {
        acked.extend(
            tokio::time::timeout(NO_HANG, writer)
                .await
                .expect("writers stop")
                .unwrap(),
        );
    }

    let server = EmbeddedDynamo::start_on(Some(&path), &addr.to_string()).unwrap();
    let repo = db.repository();
    let mut stored_commits = 0;
    for id in &aggregates {
        let events = repo.get_events::<Account>(id).await.unwrap();
        let sequences: Vec<usize> = events.iter().map(|e| e.sequence).collect();
        assert_eq!(
            sequences,
            (1..=events.len()).collect::<Vec<_>>(),
            "{id}: gaps"
        );
        // Consecutive runs of one commit id, each complete.
        let mut commits: Vec<(String, usize, usize)> = Vec::new();
        for event in &events {
            let commit = event.metadata["commit"].as_str().unwrap().to_string();
            let count: usize = event.metadata["count"].as_str().unwrap().parse().unwrap();
            match commits.last_mut() {
                Some((last, _, seen)) if *last == commit => *seen += 1,
                _ => commits.push((commit, count, 1)),
            }
        }
        for (commit, count, seen) in &commits {
            assert_eq!(count, seen, "{id}: commit {commit} is partial");
        }
        let unique: BTreeMap<&String, usize> = commits.iter().map(|(c, n, _)| (c, *n)).collect();
        assert_eq!(unique.len(), commits.len(), "{id}: a commit stored twice");
        stored_commits += commits.len();
        // The snapshot, written in the same transactions, equals the replay.
        let snapshot = repo.get_snapshot::<Account>(id).await.unwrap();
        if events.is_empty() {
            assert!(snapshot.is_none());
        } else {
            let snapshot = snapshot.unwrap();
            let state: Account = serde_json::from_value(snapshot.aggregate).unwrap();
            assert_eq!(snapshot.current_sequence, events.len(), "{id}");
            assert_eq!(state, replay(&repo, id).await.0, "{id}");
        }
    }
    let stored_ids: Vec<String> = {
        let mut ids = Vec::new();
        for id in &aggregates {
            for event in repo.get_events::<Account>(id).await.unwrap() {
                ids.push(event.metadata["commit"].as_str().unwrap().to_string());
            }
        }
        ids
    };
    for commit in &acked {
        assert!(
            stored_ids.contains(&commit.id),
            "acknowledged commit {} lost",
            commit.id
        );
    }
    assert!(stored_commits >= acked.len());
    assert!(acked.len() >= 60);

    // Writing goes on after the restart, on top of what survived.
    for id in &aggregates {
        let before = repo.get_events::<Account>(id).await.unwrap().len();
        cqrs.execute(id, AccountCommand::deposit(1, 2))
            .await
            .unwrap();
        assert_eq!(
            repo.get_events::<Account>(id).await.unwrap().len(),
            before + 2
        );
    }
    server.stop();
    remove_database(&path);
}
