//! Snapshots never block commits: a snapshot that does not fit beside the
//! commit's events, that readers would refuse to decode, or that the server
//! refuses, is left out and the events are committed alone. Also the error
//! classes around commits and snapshot reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_runtime::client::retries::RetryPartition;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventStore};
use dynamo_es::{Codec, DynamoEventRepository, DynamoStore, Error, Limit, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// An aggregate whose state grows by whole events.
// ---------------------------------------------------------------------------

/// Keeps every text it is given, so its state grows with each event.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Pile {
    texts: Vec<String>,
    applied: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum PileEvent {
    Added { text: String },
    Cleared,
}

impl DomainEvent for PileEvent {
    fn event_type(&self) -> String {
        match self {
            PileEvent::Added { .. } => "Added".into(),
            PileEvent::Cleared => "Cleared".into(),
        }
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone)]
enum PileCommand {
    /// Adds a text of `len` bytes, varied by `seed`.
    Add {
        len: usize,
        seed: usize,
    },
    Clear,
}

impl Aggregate for Pile {
    const TYPE: &'static str = "Pile";
    type Command = PileCommand;
    type Event = PileEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PileCommand,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), AccountError> {
        let event = match command {
            PileCommand::Add { len, seed } => PileEvent::Added {
                text: (0..len)
                    .map(|i| char::from(b'a' + u8::try_from((i * 7 + seed * 13) % 26).unwrap()))
                    .collect(),
            },
            PileCommand::Clear => PileEvent::Cleared,
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: PileEvent) {
        self.applied += 1;
        match event {
            PileEvent::Added { text } => self.texts.push(text),
            PileEvent::Cleared => self.texts.clear(),
        }
    }
}

/// The state rebuilt from every stored event, by a fresh event store.
async fn replayed(repo: &DynamoEventRepository, id: &str) -> (Pile, usize) {
    let store = DynamoStore::<Pile>::new_event_store(repo.clone());
    let mut pile = Pile::default();
    let events = store.load_events(id).await.unwrap();
    let count = events.len();
    for envelope in events {
        pile.apply(envelope.payload);
    }
    let context = store.load_aggregate(id).await.unwrap();
    assert_eq!(context.aggregate, pile);
    (pile, count)
}

/// The state after the first `n` stored events.
async fn replayed_to(repo: &DynamoEventRepository, id: &str, n: usize) -> Pile {
    let store = DynamoStore::<Pile>::new_event_store(repo.clone());
    let mut pile = Pile::default();
    for envelope in store.load_events(id).await.unwrap().into_iter().take(n) {
        pile.apply(envelope.payload);
    }
    pile
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Captures this thread's logs at `level` and above (tests here run on a
/// current-thread runtime, so everything the store does is captured).
fn capture(level: tracing::Level) -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

// ---------------------------------------------------------------------------
// Growth past what one transaction can hold.
// ---------------------------------------------------------------------------

/// Grows a pile past 5 MB of JSON state in events of about 340 KB through
/// `policy`, then clears it; every commit must succeed.
async fn grow_past_5_mb(policy: SnapshotPolicy) {
    let (logs, _guard) = capture(tracing::Level::WARN);
    let db = tables().await;
    let repo = db.repository().with_codec(Codec::json());
    let cqrs = CqrsFramework::new(DynamoStore::<Pile>::new(repo.clone(), policy), vec![], ());
    let id = new_id();
    let commands = 16;
    for seed in 0..commands {
        cqrs.execute(&id, PileCommand::Add { len: 340_000, seed })
            .await
            .unwrap_or_else(|err| panic!("{policy:?}: command {seed} failed: {err:?}"));
    }
    let (expected, count) = replayed(&repo, &id).await;
    assert_eq!(count, commands);
    let state_len = serde_json::to_vec(&expected).unwrap().len();
    assert!(state_len > 5_000_000, "{state_len}");
    let store = DynamoStore::<Pile>::new(repo.clone(), policy);
    let loaded = store.load_aggregate(&id).await.unwrap();
    assert_eq!(loaded.aggregate, expected, "{policy:?}");
    assert_eq!(loaded.current_sequence, commands);

    // The stored snapshot stayed where it last fitted, intact, and behind.
    let snapshot = repo.get_snapshot::<Pile>(&id).await.unwrap().unwrap();
    assert!(
        (2..commands).contains(&snapshot.current_sequence),
        "{policy:?}: snapshot at {}",
        snapshot.current_sequence
    );
    let stored: Pile = serde_json::from_value(snapshot.aggregate).unwrap();
    assert_eq!(
        stored,
        replayed_to(&repo, &id, snapshot.current_sequence).await
    );
    assert_eq!(loaded.current_snapshot, Some(snapshot.current_snapshot));
    let logs = logs.text();
    assert!(
        logs.contains("snapshot skipped") && logs.contains("transaction_limits"),
        "{policy:?}: no skipped snapshot logged:\n{}",
        logs.chars().take(2000).collect::<String>()
    );

    // Once the state fits again, the next snapshot is written, under the
    // version of the one stored (one per commit in aggregate mode; one at
    // sequence 18 in snapshot mode).
    cqrs.execute(&id, PileCommand::Clear).await.unwrap();
    cqrs.execute(&id, PileCommand::Add { len: 10, seed: 1 })
        .await
        .unwrap();
    let (expected, count) = replayed(&repo, &id).await;
    let latest = repo.get_snapshot::<Pile>(&id).await.unwrap().unwrap();
    let written = if policy == SnapshotPolicy::Always {
        2
    } else {
        1
    };
    assert_eq!(
        (latest.current_sequence, latest.current_snapshot),
        (count, snapshot.current_snapshot + written),
        "{policy:?}"
    );
    assert_eq!(
        serde_json::from_value::<Pile>(latest.aggregate).unwrap(),
        expected
    );
    assert_eq!(store.load_aggregate(&id).await.unwrap().aggregate, expected);
    // No chunk of the large snapshot is left behind.
    assert_eq!(count_items(&db.client, &db.snapshots).await, 1);
}

#[tokio::test]
async fn an_aggregate_store_past_5_mb_keeps_committing() {
    grow_past_5_mb(SnapshotPolicy::Always).await;
}

#[tokio::test]
async fn a_snapshot_store_past_5_mb_keeps_committing() {
    grow_past_5_mb(SnapshotPolicy::Every(2)).await;
}

#[tokio::test]
async fn events_that_break_a_limit_alone_still_fail_with_a_snapshot() {
    let db = tables().await;
    let repo = db.repository().with_codec(Codec::json());
    let id = new_id();
    let events: Vec<_> = (1..=101)
        .map(|s| deposit_event(Account::TYPE, &id, s, 1))
        .collect();
    let err = repo
        .persist::<Account>(&events, Some((id.clone(), json!({"total": 101}), 1)))
        .await
        .unwrap_err();
    let PersistenceError::UnknownError(source) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            source.downcast_ref::<Error>(),
            Some(Error::LimitExceeded {
                limit: Limit::TransactionItems,
                size: 101,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(count_items(&db.client, &db.events).await, 0);
    assert_eq!(count_items(&db.client, &db.snapshots).await, 0);

    // 100 events fit alone: they are committed, without the snapshot.
    repo.persist::<Account>(&events[..100], Some((id.clone(), json!({"total": 100}), 1)))
        .await
        .unwrap();
    assert_eq!(count_items(&db.client, &db.events).await, 100);
    assert_eq!(count_items(&db.client, &db.snapshots).await, 0);
}

// ---------------------------------------------------------------------------
// Snapshots readers would refuse.
// ---------------------------------------------------------------------------

async fn decoded_size_limit(codec: Codec) {
    let (logs, _guard) = capture(tracing::Level::INFO);
    let db = tables().await;
    let repo = db
        .repository()
        .with_codec(codec.with_max_decoded_size(10_000));
    let cqrs = CqrsFramework::new(
        DynamoStore::<Account>::new_aggregate_store(repo.clone()),
        vec![],
        (),
    );
    let id = new_id();
    // About 3 KB of state per note: the 4th snapshot is over 10,000 bytes.
    for _ in 0..6 {
        cqrs.execute(
            &id,
            AccountCommand::Note {
                text: "abcdefghij".repeat(300),
            },
        )
        .await
        .unwrap();
    }
    let (expected, sequences) = replay(&repo, &id).await;
    assert_eq!(sequences.len(), 6);
    assert!(serde_json::to_vec(&expected).unwrap().len() > 10_000);
    let snapshot = repo.get_snapshot::<Account>(&id).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.current_sequence, snapshot.current_snapshot),
        (3, 3),
        "{}",
        repo.codec().name()
    );
    let stored: Account = serde_json::from_value(snapshot.aggregate).unwrap();
    assert!(serde_json::to_vec(&stored).unwrap().len() <= 10_000);
    for policy in [SnapshotPolicy::Always, SnapshotPolicy::Every(2)] {
        let context = DynamoStore::<Account>::new(repo.clone(), policy)
            .load_aggregate(&id)
            .await
            .unwrap();
        assert_eq!(context.aggregate, expected, "{policy:?}");
        assert_eq!(context.current_sequence, 6);
    }
    let logs = logs.text();
    assert!(
        logs.contains("snapshot_skipped") && logs.contains("decoded_size"),
        "no skipped snapshot recorded:\n{logs}"
    );
}

#[tokio::test]
async fn a_snapshot_over_max_decoded_size_is_skipped_plain_json() {
    decoded_size_limit(Codec::json()).await;
}

#[cfg(feature = "compression")]
#[tokio::test]
async fn a_snapshot_over_max_decoded_size_is_skipped_compressed() {
    // Compressed, it is a few hundred bytes; decoded, over the limit. Were it
    // written, every load would fail to decode it and replay everything.
    decoded_size_limit(Codec::json().compressed(3)).await;
}

#[cfg(feature = "msgpack")]
#[tokio::test]
async fn a_snapshot_over_max_decoded_size_is_skipped_msgpack() {
    decoded_size_limit(Codec::msgpack()).await;
}

// ---------------------------------------------------------------------------
// Canned responses: servers stricter than the planner, and error classes.
// ---------------------------------------------------------------------------

fn response(status: u16, body: Value) -> HttpResponse {
    let mut response = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(serde_json::to_vec(&body).unwrap()),
    );
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    response
}

fn dynamo_error(kind: &str) -> HttpResponse {
    response(
        400,
        json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
            "message": format!("canned {kind}"),
        }),
    )
}

fn validation_error() -> HttpResponse {
    response(
        400,
        json!({
            "__type": "com.amazon.coral.validate#ValidationException",
            "message": "Transaction request size exceeded the maximum allowed",
        }),
    )
}

fn ok(body: Value) -> HttpResponse {
    response(200, body)
}

fn replay_client(responses: Vec<HttpResponse>) -> StaticReplayClient {
    StaticReplayClient::new(
        responses
            .into_iter()
            .map(|r| ReplayEvent::new(HttpRequest::empty(), r))
            .collect(),
    )
}

fn repo_on(http: &StaticReplayClient, max_attempts: u32) -> DynamoEventRepository {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .http_client(http.clone())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .retry_partition(RetryPartition::new(dynamo_es::testing::unique_name(
            "limits",
        )))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    DynamoEventRepository::new(Client::from_conf(config))
        .with_tables("events", "snapshots")
        .with_codec(Codec::json())
}

fn operation(request: &HttpRequest) -> String {
    request
        .headers()
        .get("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_string()
}

fn requests(http: &StaticReplayClient) -> Vec<(String, Value)> {
    http.actual_requests()
        .map(|r| {
            let body = serde_json::from_slice(r.body().bytes().unwrap()).unwrap();
            (operation(r), body)
        })
        .collect()
}

/// The tables a `TransactWriteItems` body writes to, one per item.
fn tables_written(body: &Value) -> Vec<String> {
    body["TransactItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let (_, action) = item.as_object().unwrap().iter().next().unwrap();
            action["TableName"].as_str().unwrap().to_string()
        })
        .collect()
}

fn typed(err: &PersistenceError) -> &Error {
    let source = match err {
        PersistenceError::ConnectionError(source)
        | PersistenceError::DeserializationError(source)
        | PersistenceError::UnknownError(source) => source,
        PersistenceError::OptimisticLockError => panic!("no source in {err:?}"),
    };
    source
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a dynamo_es::Error: {source:?}"))
}

#[tokio::test]
async fn a_refused_transaction_with_a_snapshot_is_retried_without_it() {
    // Through DynamoStore: load (no snapshot, no events), then a commit whose
    // transaction the server refuses although it is within DynamoDB's limits.
    let http = replay_client(vec![
        ok(json!({})),
        ok(json!({"Count": 0, "ScannedCount": 0, "Items": []})),
        validation_error(),
        ok(json!({})),
    ]);
    let store = DynamoStore::<Account>::new_aggregate_store(repo_on(&http, 3));
    let context = store.load_aggregate("acct-1").await.unwrap();
    let committed = store
        .commit(
            vec![
                AccountEvent::Deposited { amount: 5 },
                AccountEvent::Deposited { amount: 6 },
            ],
            context,
            no_metadata(),
        )
        .await
        .unwrap();
    assert_eq!(committed.len(), 2);
    let seen = requests(&http);
    let ops: Vec<&str> = seen.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "GetItem",
            "Query",
            "TransactWriteItems",
            "TransactWriteItems"
        ]
    );
    assert_eq!(
        tables_written(&seen[2].1),
        ["events", "events", "snapshots"]
    );
    // The retry: the same events, with their conditions, and no snapshot.
    assert_eq!(tables_written(&seen[3].1), ["events", "events"]);
    for item in seen[3].1["TransactItems"].as_array().unwrap() {
        assert_eq!(
            item["Put"]["ConditionExpression"],
            "attribute_not_exists(AggregateIdSequence)"
        );
    }
    assert_eq!(seen[2].1["TransactItems"][0], seen[3].1["TransactItems"][0]);
    // A different transaction, so a different idempotency token.
    assert_ne!(
        seen[2].1["ClientRequestToken"],
        seen[3].1["ClientRequestToken"]
    );

    // The same through the cqrs-es repository path.
    let http = replay_client(vec![validation_error(), ok(json!({}))]);
    repo_on(&http, 3)
        .persist::<Account>(
            &[deposit_event("Account", "acct-1", 1, 5)],
            Some(("acct-1".into(), json!({"total": 5}), 1)),
        )
        .await
        .unwrap();
    let seen = requests(&http);
    assert_eq!(tables_written(&seen[0].1), ["events", "snapshots"]);
    assert_eq!(tables_written(&seen[1].1), ["events"]);
}

#[tokio::test]
async fn a_refused_transaction_without_a_snapshot_is_an_error() {
    let http = replay_client(vec![validation_error()]);
    let err = repo_on(&http, 3)
        .persist::<Account>(&[deposit_event("Account", "acct-1", 1, 5)], None)
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::UnknownError(_)), "{err:?}");
    assert!(
        matches!(
            typed(&err),
            Error::Dynamo {
                operation: "TransactWriteItems",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(requests(&http).len(), 1);

    // A refused retry (events alone) is an error too, and not retried again.
    let http = replay_client(vec![validation_error(), validation_error()]);
    let err = repo_on(&http, 3)
        .persist::<Account>(
            &[deposit_event("Account", "acct-1", 1, 5)],
            Some(("acct-1".into(), json!({"total": 5}), 1)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            typed(&err),
            Error::Dynamo {
                operation: "TransactWriteItems",
                ..
            }
        ),
        "{err:?}"
    );
    let seen = requests(&http);
    assert_eq!(seen.len(), 2);
    assert_eq!(tables_written(&seen[1].1), ["events"]);
}

#[tokio::test]
async fn transaction_in_progress_is_an_unknown_outcome_not_a_failure() {
    // Retried with the same token; when retries run out, a connection error
    // (outcome unknown), never a plain failure or a conflict.
    let http = replay_client(vec![
        dynamo_error("TransactionInProgressException"),
        dynamo_error("TransactionInProgressException"),
        dynamo_error("TransactionInProgressException"),
    ]);
    let err = repo_on(&http, 3)
        .persist::<Account>(&[deposit_event("Account", "acct-1", 1, 5)], None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PersistenceError::ConnectionError(_)),
        "{err:?}"
    );
    let typed = typed(&err);
    assert!(
        matches!(
            typed,
            Error::Connection {
                operation: "TransactWriteItems",
                ..
            }
        ),
        "{typed:?}"
    );
    assert!(!typed.is_conflict() && !typed.is_data_error());
    let seen = requests(&http);
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|(_, body)| body["ClientRequestToken"] == seen[0].1["ClientRequestToken"]));

    // Through the framework: a connection error.
    let http = replay_client(vec![
        ok(json!({"Count": 0, "ScannedCount": 0, "Items": []})),
        dynamo_error("TransactionInProgressException"),
    ]);
    let cqrs = CqrsFramework::new(
        DynamoStore::<Account>::new_event_store(repo_on(&http, 1)),
        vec![],
        (),
    );
    let err = cqrs
        .execute(
            "acct-1",
            AccountCommand::Deposit {
                amount: 1,
                times: 1,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AggregateError::DatabaseConnectionError(_)),
        "{err:?}"
    );

    // Once the earlier attempt completes, the retry reports its outcome.
    let http = replay_client(vec![
        dynamo_error("TransactionInProgressException"),
        ok(json!({})),
    ]);
    repo_on(&http, 3)
        .persist::<Account>(&[deposit_event("Account", "acct-1", 1, 5)], None)
        .await
        .unwrap();
    assert_eq!(requests(&http).len(), 2);
}

fn chunked_head(version: usize, hash: &str) -> HttpResponse {
    ok(json!({"Item": {
        "AggregateTypeAndId": {"S": "Account:acct-1"},
        "AggregateType": {"S": "Account"},
        "AggregateId": {"S": "acct-1"},
        "CurrentSequence": {"N": "1"},
        "CurrentSnapshot": {"N": version.to_string()},
        "PayloadChunks": {"N": "1"},
        "PayloadSize": {"N": "2"},
        "PayloadHash": {"S": hash},
        "SnapshotWriter": {"S": "dynamo-es"},
    }}))
}

fn chunk_of_another_version() -> HttpResponse {
    ok(json!({
        "Responses": {"snapshots": [{
            "AggregateTypeAndId": {"S": "~chunk/Account/acct-1/0"},
            "ChunkOf": {"S": "Account:acct-1"},
            "ChunkIndex": {"N": "0"},
            "PayloadHash": {"S": "ffffffffffffffff"},
            "Payload": {"B": "e30="},
        }]},
        "UnprocessedKeys": {},
    }))
}

#[tokio::test]
async fn a_snapshot_rewritten_during_every_read_is_transient() {
    // Five attempts, each seeing a newer head than the last and chunks of
    // another version: a writer is at work.
    let mut responses = Vec::new();
    for version in 1..=5 {
        responses.push(chunked_head(version, &format!("{version:016x}")));
        responses.push(chunk_of_another_version());
    }
    let http = replay_client(responses);
    let err = repo_on(&http, 1)
        .get_snapshot::<Account>("acct-1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PersistenceError::ConnectionError(_)),
        "{err:?}"
    );
    let changing = typed(&err);
    assert!(
        matches!(changing, Error::SnapshotChanging { key, .. } if key == "Account:acct-1"),
        "{changing:?}"
    );
    assert!(!changing.is_data_error());
    assert_eq!(requests(&http).len(), 10);

    // Through DynamoStore: a connection error, so the command can be retried.
    let mut responses = Vec::new();
    for version in 1..=5 {
        responses.push(chunked_head(version, &format!("{version:016x}")));
        responses.push(chunk_of_another_version());
    }
    let http = replay_client(responses);
    let Err(err) = DynamoStore::<Account>::new_aggregate_store(repo_on(&http, 1))
        .load_aggregate("acct-1")
        .await
    else {
        panic!("loads")
    };
    assert!(
        matches!(err, AggregateError::DatabaseConnectionError(_)),
        "{err:?}"
    );

    // The same mismatch under an unchanged head is corrupt data.
    let mut responses = Vec::new();
    for _ in 1..=5 {
        responses.push(chunked_head(1, "0000000000000001"));
        responses.push(chunk_of_another_version());
    }
    let http = replay_client(responses);
    let err = repo_on(&http, 1)
        .get_snapshot::<Account>("acct-1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PersistenceError::DeserializationError(_)),
        "{err:?}"
    );
    assert!(
        matches!(typed(&err), Error::Snapshot { reason, .. } if reason.contains("another snapshot version")),
        "{err:?}"
    );
}

#[test]
fn snapshot_changing_maps_to_a_retryable_class() {
    let err = Error::SnapshotChanging {
        key: "Account:1".into(),
        reason: "chunk 0 belongs to another snapshot version".into(),
    };
    assert!(!err.is_data_error() && !err.is_conflict());
    assert!(err.to_string().contains("Account:1"), "{err}");
    assert!(matches!(
        PersistenceError::from(err),
        PersistenceError::ConnectionError(_)
    ));
    let err = Error::SnapshotChanging {
        key: "Account:1".into(),
        reason: String::new(),
    };
    assert!(matches!(
        AggregateError::<AccountError>::from(err),
        AggregateError::DatabaseConnectionError(_)
    ));
}

#[tokio::test]
async fn a_commit_holding_another_aggregates_event_is_a_caller_error() {
    let http = replay_client(vec![]);
    let repo = repo_on(&http, 1);
    for stranger in [
        deposit_event("Account", "acct-2", 2, 1),
        deposit_event("Other", "acct-1", 2, 1),
    ] {
        let events = vec![deposit_event("Account", "acct-1", 1, 1), stranger];
        let err = repo.persist::<Account>(&events, None).await.unwrap_err();
        assert!(matches!(err, PersistenceError::UnknownError(_)), "{err:?}");
        let typed = typed(&err);
        assert!(
            matches!(typed, Error::InvalidCommit { aggregate, .. } if aggregate == "Account:acct-1"),
            "{typed:?}"
        );
        assert!(!typed.is_data_error() && !typed.is_conflict());
        assert!(typed.to_string().contains("acct-1"), "{typed}");
    }
    // Nothing was sent.
    assert_eq!(requests(&http).len(), 0);
}
