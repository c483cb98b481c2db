//! Throttling, transaction cancellations, lost responses and credentials, on
//! canned HTTP responses: what the emulator cannot produce. No server runs;
//! every response comes from the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_runtime::client::retries::RetryPartition;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::body::SdkBody;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ViewContext, ViewRepository};
use cqrs_es::{AggregateError, CqrsFramework};
use dynamo_es::{DynamoEventRepository, DynamoStore, DynamoViewRepository, Error, SnapshotPolicy};
use serde_json::{json, Value};

const ACCESS_KEY: &str = "AKIDREPLAYTEST";
const SECRET: &str = "wJalrXUtnFEMI-do-not-leak-K7MDENG-bPxRfiCY";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLE-session-token-do-not-leak";

// ---------------------------------------------------------------------------
// Canned responses and clients.
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

/// A DynamoDB error response of type `kind`, with extra body fields.
fn dynamo_error(kind: &str, extra: Value) -> HttpResponse {
    let mut body = json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
        "message": format!("canned {kind}"),
    });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    response(400, body)
}

fn throughput_exceeded() -> HttpResponse {
    dynamo_error("ProvisionedThroughputExceededException", json!({}))
}

fn cancelled(reasons: &[&str]) -> HttpResponse {
    let reasons: Vec<Value> = reasons.iter().map(|code| json!({ "Code": code })).collect();
    dynamo_error(
        "TransactionCanceledException",
        json!({ "CancellationReasons": reasons }),
    )
}

fn empty_query() -> HttpResponse {
    response(200, json!({"Count": 0, "ScannedCount": 0, "Items": []}))
}

fn transact_ok() -> HttpResponse {
    response(200, json!({}))
}

fn replay(responses: Vec<HttpResponse>) -> StaticReplayClient {
    StaticReplayClient::new(
        responses
            .into_iter()
            .map(|r| ReplayEvent::new(HttpRequest::empty(), r))
            .collect(),
    )
}

/// A client on `http` with static credentials, `max_attempts` standard
/// retries with millisecond backoff, and its own retry partition (so the
/// retry token bucket is not shared with other tests).
fn client_on(
    http: impl HttpClient + 'static,
    max_attempts: u32,
    timeouts: TimeoutConfig,
) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            ACCESS_KEY,
            SECRET,
            Some(SESSION_TOKEN.to_string()),
            None,
            "replay-test",
        ))
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .retry_partition(RetryPartition::new(dynamo_es::testing::unique_name(
            "replay",
        )))
        .timeout_config(timeouts)
        .build();
    Client::from_conf(config)
}

fn short_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_millis(300))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

fn repo_on(client: Client) -> DynamoEventRepository {
    DynamoEventRepository::new(client).with_tables("events", "snapshots")
}

/// The `X-Amz-Target` operation of a request, e.g. `Query`.
fn operation(request: &HttpRequest) -> String {
    request
        .headers()
        .get("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_string()
}

fn body_json(request: &HttpRequest) -> Value {
    serde_json::from_slice(request.body().bytes().expect("in-memory body")).unwrap()
}

fn operations(http: &StaticReplayClient) -> Vec<String> {
    http.actual_requests().map(operation).collect()
}

/// The `dynamo_es::Error` inside a persistence error.
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

fn one_event(id: &str) -> Vec<cqrs_es::persist::SerializedEvent> {
    vec![deposit_event("Account", id, 1, 5)]
}

/// What a scripted exchange answers.
enum Step {
    /// An HTTP response.
    Respond(Box<HttpResponse>),
    /// The connection breaks before any response: the request may or may not
    /// have been applied.
    Lost,
    /// No answer, ever (the attempt timeout has to fire).
    Hang,
}

/// A recorded request: operation and body.
#[derive(Debug, Clone)]
struct Seen {
    operation: String,
    body: Value,
}

/// An HTTP client answering from a script, recording every request. Unlike
/// `StaticReplayClient` it can also lose a response or never answer.
#[derive(Clone, Debug)]
struct Scripted {
    steps: Arc<Mutex<VecDeque<StepCell>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// `Step` is not `Debug` (responses are not), so it is wrapped.
struct StepCell(Step);

impl std::fmt::Debug for StepCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Step::Respond(_) => "Respond",
            Step::Lost => "Lost",
            Step::Hang => "Hang",
        })
    }
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Self {
        Scripted {
            steps: Arc::new(Mutex::new(steps.into_iter().map(StepCell).collect())),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn remaining(&self) -> usize {
        self.steps.lock().unwrap().len()
    }
}

impl HttpConnector for Scripted {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.seen.lock().unwrap().push(Seen {
            operation: operation(&request),
            body: body_json(&request),
        });
        match self.steps.lock().unwrap().pop_front().map(|cell| cell.0) {
            Some(Step::Respond(response)) => HttpConnectorFuture::ready(Ok(*response)),
            Some(Step::Lost) => HttpConnectorFuture::ready(Err(ConnectorError::io(
                "connection reset by peer (scripted lost response)".into(),
            ))),
            Some(Step::Hang) => HttpConnectorFuture::new(async {
                std::future::pending::<()>().await;
                Err(ConnectorError::other("unreachable".into(), None))
            }),
            None => HttpConnectorFuture::ready(Err(ConnectorError::other(
                "script exhausted".into(),
                None,
            ))),
        }
    }
}

impl HttpClient for Scripted {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.clone().into_shared()
    }
}

fn token_of(seen: &Seen) -> String {
    seen.body["ClientRequestToken"]
        .as_str()
        .expect("TransactWriteItems carries a ClientRequestToken")
        .to_string()
}

// ---------------------------------------------------------------------------
// Throttling.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn throttled_query_is_retried_then_surfaces_as_throttled() {
    let http = replay(vec![
        throughput_exceeded(),
        throughput_exceeded(),
        throughput_exceeded(),
    ]);
    let repo = repo_on(client_on(http.clone(), 3, short_timeouts()));
    let err = repo.get_events::<Account>("acct-1").await.unwrap_err();
    assert!(
        matches!(err, PersistenceError::ConnectionError(_)),
        "{err:?}"
    );
    let typed = typed(&err);
    assert!(
        matches!(
            typed,
            Error::Throttled {
                operation: "Query",
                ..
            }
        ),
        "{typed:?}"
    );
    assert!(!typed.is_conflict() && !typed.is_data_error());
    assert!(typed.to_string().contains("throttled"), "{typed}");
    // Three attempts: the SDK retried the throttled request twice.
    assert_eq!(operations(&http), vec!["Query"; 3]);
}

#[tokio::test]
async fn throttling_that_clears_before_retries_run_out_is_invisible() {
    let http = replay(vec![
        throughput_exceeded(),
        dynamo_error("ThrottlingException", json!({})),
        empty_query(),
    ]);
    let repo = repo_on(client_on(http.clone(), 3, short_timeouts()));
    let events = repo.get_events::<Account>("acct-1").await.unwrap();
    assert!(events.is_empty());
    assert_eq!(operations(&http), vec!["Query"; 3]);
}

#[tokio::test]
async fn throttling_through_the_framework_is_a_connection_error_not_a_conflict() {
    let http = replay(vec![
        throughput_exceeded(),
        throughput_exceeded(),
        throughput_exceeded(),
    ]);
    let repo = repo_on(client_on(http.clone(), 3, short_timeouts()));
    let cqrs = CqrsFramework::new(
        DynamoStore::<Account>::new(repo, SnapshotPolicy::Never),
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
    let AggregateError::DatabaseConnectionError(source) = err else {
        panic!("expected a connection error, got {err:?}")
    };
    let typed = source.downcast_ref::<Error>().unwrap();
    assert!(
        matches!(
            typed,
            Error::Throttled {
                operation: "Query",
                ..
            }
        ),
        "{typed:?}"
    );
    assert_eq!(operations(&http).len(), 3);
}

#[tokio::test]
async fn every_operation_maps_throttling_to_throttled() {
    // GetItem (snapshot), GetItem (view), PutItem (view), TransactWriteItems.
    let exhausted = || replay(vec![throughput_exceeded(), throughput_exceeded()]);

    let http = exhausted();
    let err = repo_on(client_on(http.clone(), 2, short_timeouts()))
        .get_snapshot::<Account>("acct-1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            typed(&err),
            Error::Throttled {
                operation: "GetItem",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(operations(&http), vec!["GetItem"; 2]);

    let http = exhausted();
    let views: DynamoViewRepository<AccountView, Account> =
        DynamoViewRepository::new("views", client_on(http.clone(), 2, short_timeouts()));
    let err = views.load("acct-1").await.unwrap_err();
    assert!(
        matches!(
            typed(&err),
            Error::Throttled {
                operation: "GetItem",
                ..
            }
        ),
        "{err:?}"
    );

    let http = exhausted();
    let views: DynamoViewRepository<AccountView, Account> =
        DynamoViewRepository::new("views", client_on(http.clone(), 2, short_timeouts()));
    let err = views
        .update_view(AccountView::default(), ViewContext::new("acct-1".into(), 0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            typed(&err),
            Error::Throttled {
                operation: "PutItem",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(operations(&http), vec!["PutItem"; 2]);

    let http = exhausted();
    let err = repo_on(client_on(http.clone(), 2, short_timeouts()))
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PersistenceError::ConnectionError(_)),
        "{err:?}"
    );
    assert!(
        matches!(
            typed(&err),
            Error::Throttled {
                operation: "TransactWriteItems",
                ..
            }
        ),
        "{err:?}"
    );
    // The retry is the same transaction: same idempotency token.
    let tokens: Vec<Value> = http
        .actual_requests()
        .map(|r| body_json(r)["ClientRequestToken"].clone())
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
        let http = replay(vec![cancelled(reasons)]);
        let err = repo_on(client_on(http.clone(), 3, short_timeouts()))
            .persist::<Account>(&one_event("acct-1"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, PersistenceError::OptimisticLockError),
            "{reasons:?}: {err:?}"
        );
        assert_eq!(operations(&http), vec!["TransactWriteItems"], "{reasons:?}");
    }

    // Through the framework, the same response is an aggregate conflict.
    let http = replay(vec![
        empty_query(),
        cancelled(&["None", "TransactionConflict"]),
    ]);
    let cqrs = CqrsFramework::new(
        DynamoStore::<Account>::new(
            repo_on(client_on(http.clone(), 3, short_timeouts())),
            SnapshotPolicy::Never,
        ),
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
    assert!(matches!(err, AggregateError::AggregateConflict), "{err:?}");

    // A throttled item cancels the transaction: retried with backoff, then
    // `Throttled`, distinct from a conflict.
    let http = replay(vec![
        cancelled(&["None", "ThrottlingError"]),
        cancelled(&["ThrottlingError"]),
        cancelled(&["None", "ThrottlingError"]),
    ]);
    let err = repo_on(client_on(http.clone(), 3, short_timeouts()))
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PersistenceError::ConnectionError(_)),
        "{err:?}"
    );
    assert!(
        matches!(
            typed(&err),
            Error::Throttled {
                operation: "TransactWriteItems",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(operations(&http), vec!["TransactWriteItems"; 3]);

    // ...and succeeds if the throttling clears in time.
    let http = replay(vec![cancelled(&["ThrottlingError", "None"]), transact_ok()]);
    repo_on(client_on(http.clone(), 3, short_timeouts()))
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap();
    assert_eq!(operations(&http), vec!["TransactWriteItems"; 2]);

    // A conflict and throttling at once is a conflict: retrying cannot help.
    let http = replay(vec![cancelled(&[
        "ThrottlingError",
        "ConditionalCheckFailed",
    ])]);
    let err = repo_on(client_on(http.clone(), 3, short_timeouts()))
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PersistenceError::OptimisticLockError),
        "{err:?}"
    );
    assert_eq!(operations(&http).len(), 1);

    // Any other reason is a plain DynamoDB failure.
    let http = replay(vec![cancelled(&["None", "ValidationError"])]);
    let err = repo_on(client_on(http.clone(), 3, short_timeouts()))
        .persist::<Account>(&one_event("acct-1"), None)
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
    assert_eq!(operations(&http).len(), 1);
}

// ---------------------------------------------------------------------------
// Lost responses and idempotency tokens.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_lost_response_is_retried_with_the_same_token_and_succeeds() {
    let http = Scripted::new(vec![Step::Lost, Step::Respond(Box::new(transact_ok()))]);
    let repo = repo_on(client_on(http.clone(), 3, short_timeouts()));
    let events: Vec<_> = (1..=3)
        .map(|s| deposit_event("Account", "acct-1", s, 1))
        .collect();
    repo.persist::<Account>(&events, Some(("acct-1".into(), json!({"total": 3}), 1)))
        .await
        .unwrap();
    let seen = http.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.operation == "TransactWriteItems"));
    let (first, retry) = (token_of(&seen[0]), token_of(&seen[1]));
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
    let http = Scripted::new(vec![Step::Hang, Step::Respond(Box::new(transact_ok()))]);
    let repo = repo_on(client_on(http.clone(), 3, short_timeouts()));
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
    let seen = http.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(token_of(&seen[0]), token_of(&seen[1]));
}

#[tokio::test]
async fn a_command_whose_commit_response_is_lost_succeeds_through_the_framework() {
    let http = Scripted::new(vec![
        Step::Respond(Box::new(empty_query())),
        Step::Lost,
        Step::Respond(Box::new(transact_ok())),
    ]);
    let cqrs = CqrsFramework::new(
        DynamoStore::<Account>::new(
            repo_on(client_on(http.clone(), 3, short_timeouts())),
            SnapshotPolicy::Never,
        ),
        vec![],
        (),
    );
    cqrs.execute(
        "acct-1",
        AccountCommand::Deposit {
            amount: 7,
            times: 2,
        },
    )
    .await
    .unwrap();
    let seen = http.seen();
    let ops: Vec<&str> = seen.iter().map(|s| s.operation.as_str()).collect();
    assert_eq!(ops, ["Query", "TransactWriteItems", "TransactWriteItems"]);
    assert_eq!(token_of(&seen[1]), token_of(&seen[2]));
    assert_eq!(http.remaining(), 0);
}

#[tokio::test]
async fn responses_lost_on_every_attempt_are_a_connection_error_not_a_conflict() {
    let http = Scripted::new(vec![Step::Lost, Step::Hang, Step::Lost]);
    let repo = repo_on(client_on(http.clone(), 3, short_timeouts()));
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        repo.persist::<Account>(&one_event("acct-1"), None),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(
        matches!(err, PersistenceError::ConnectionError(_)),
        "{err:?}"
    );
    assert!(
        matches!(
            typed(&err),
            Error::Connection {
                operation: "TransactWriteItems",
                ..
            }
        ),
        "{err:?}"
    );
    let seen = http.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| token_of(s) == token_of(&seen[0])));
}

#[tokio::test]
async fn distinct_commits_never_share_a_token() {
    // Two writers producing the very same commit (same aggregate, same
    // sequence range) must not be mistaken for one retried transaction.
    let http = Scripted::new(vec![
        Step::Respond(Box::new(transact_ok())),
        Step::Respond(Box::new(transact_ok())),
        Step::Respond(Box::new(transact_ok())),
    ]);
    let repo = repo_on(client_on(http.clone(), 1, short_timeouts()));
    for _ in 0..2 {
        repo.persist::<Account>(&one_event("acct-1"), None)
            .await
            .unwrap();
    }
    let other = vec![deposit_event("Account", "acct-2", 1, 5)];
    repo.persist::<Account>(&other, None).await.unwrap();
    let tokens: Vec<String> = http.seen().iter().map(token_of).collect();
    assert_eq!(tokens.len(), 3);
    assert_ne!(tokens[0], tokens[1]);
    assert_ne!(tokens[0], tokens[2]);
    assert_ne!(tokens[1], tokens[2]);
}

// ---------------------------------------------------------------------------
// Credentials.
// ---------------------------------------------------------------------------

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

#[tokio::test]
async fn credentials_never_appear_in_debug_output_or_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let http = replay(vec![throughput_exceeded(), empty_query(), transact_ok()]);
    let client = client_on(http.clone(), 3, short_timeouts());
    let repo = repo_on(client.clone());
    repo.get_events::<Account>("acct-1").await.unwrap();
    repo.persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap();

    let credentials = Credentials::new(ACCESS_KEY, SECRET, Some(SESSION_TOKEN.into()), None, "t");
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

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture works: the SDK and this crate both logged at trace level.
    assert!(
        logs.contains("dynamo_es.persist"),
        "no crate spans captured"
    );
    assert!(logs.contains("TransactWriteItems"), "no SDK logs captured");
    assert!(!logs.contains(SECRET), "secret key in logs");
    assert!(!logs.contains(SESSION_TOKEN), "session token in logs");

    // And nothing sends the secret itself over the wire.
    for request in http.actual_requests() {
        for (name, value) in request.headers() {
            assert!(!value.contains(SECRET), "secret in header {name}");
        }
        let body = String::from_utf8_lossy(request.body().bytes().unwrap()).to_string();
        assert!(!body.contains(SECRET));
    }
}
