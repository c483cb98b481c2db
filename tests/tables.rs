//! `create_event_tables` and `create_view_table`: they describe first,
//! check the key schema of what exists, create only what is missing, and
//! wait for ACTIVE. On the embedded emulator (or `AWS_ENDPOINT_URL_DYNAMODB`),
//! and on canned responses for what an emulator does not do (a concurrent
//! creator, a table still CREATING, a missing permission); an interceptor
//! records the operations every client sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use dynamo_es::testing::{client_for, endpoint, unique_name};
use dynamo_es::{create_event_tables, create_view_table, Error};
use serde_json::{json, Value};

const EVENTS_SCHEMA: &str = "HASH AggregateTypeAndId (S), RANGE AggregateIdSequence (N)";
const SNAPSHOTS_SCHEMA: &str = "HASH AggregateTypeAndId (S)";
const VIEWS_SCHEMA: &str = "HASH ViewId (S)";

/// Records the operation of every request a client sends.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn operations(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target");
        let operation = target.and_then(|t| t.rsplit('.').next()).unwrap_or("?");
        self.0.lock().unwrap().push(operation.to_string());
        Ok(())
    }
}

/// A client for the test endpoint that records what it sends.
fn recorded_client() -> (Client, Recorder) {
    let recorder = Recorder::default();
    let client = client_for(&endpoint().unwrap());
    let config = client
        .config()
        .to_builder()
        .interceptor(recorder.clone())
        .build();
    (Client::from_conf(config), recorder)
}

/// Creates `table` directly, with `keys` as (name, attribute type, key type).
async fn create_raw(client: &Client, table: &str, keys: &[(&str, &str, KeyType)]) {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind, key_type) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*name)
                    .attribute_type(ScalarAttributeType::from(*kind))
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*name)
                    .key_type(key_type.clone())
                    .build()
                    .unwrap(),
            );
    }
    request.send().await.unwrap();
    dynamo_es::tables::wait_active(client, table).await.unwrap();
}

/// The table's status and key schema as `HASH name (type), ...`.
async fn described(client: &Client, table: &str) -> (TableStatus, String) {
    let out = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let table = out.table().unwrap();
    let mut keys: Vec<String> = Vec::new();
    for wanted in [KeyType::Hash, KeyType::Range] {
        for key in table.key_schema() {
            if key.key_type() != &wanted {
                continue;
            }
            let kind = table
                .attribute_definitions()
                .iter()
                .find(|d| d.attribute_name() == key.attribute_name())
                .unwrap()
                .attribute_type()
                .as_str()
                .to_string();
            keys.push(format!(
                "{} {} ({kind})",
                wanted.as_str(),
                key.attribute_name()
            ));
        }
    }
    (table.table_status().unwrap().clone(), keys.join(", "))
}

fn assert_schema_error(err: &Error, table: &str, expected: &str, found: &str) {
    match err {
        Error::TableSchema {
            table: t,
            expected: e,
            found: f,
        } => {
            assert_eq!(t, table);
            assert_eq!(e, expected);
            assert_eq!(f, found);
        }
        other => panic!("expected Error::TableSchema for {table}, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(table), "{message}");
    assert!(
        message.contains(expected) && message.contains(found),
        "{message}"
    );
}

// ---------------------------------------------------------------------------
// On the emulator.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_tables_are_created_active_with_their_schema() {
    let (client, recorder) = recorded_client();
    let events = unique_name("events");
    let snapshots = unique_name("snapshots");
    let views = unique_name("views");

    create_event_tables(&client, &events, &snapshots)
        .await
        .unwrap();
    create_view_table(&client, &views).await.unwrap();

    for (table, schema) in [
        (&events, EVENTS_SCHEMA),
        (&snapshots, SNAPSHOTS_SCHEMA),
        (&views, VIEWS_SCHEMA),
    ] {
        assert_eq!(
            described(&client, table).await,
            (TableStatus::Active, schema.to_string()),
            "{table}"
        );
    }
    let operations = recorder.operations();
    // Each table: described first, then created, then described until ACTIVE.
    assert_eq!(
        operations.first().map(String::as_str),
        Some("DescribeTable")
    );
    assert_eq!(
        operations.iter().filter(|op| *op == "CreateTable").count(),
        3
    );
    assert!(operations
        .iter()
        .all(|op| op == "DescribeTable" || op == "CreateTable"));
}

#[tokio::test]
async fn existing_right_tables_are_only_described_and_a_second_call_changes_nothing() {
    let (client, recorder) = recorded_client();
    let events = unique_name("events");
    let snapshots = unique_name("snapshots");
    let views = unique_name("views");
    create_event_tables(&client, &events, &snapshots)
        .await
        .unwrap();
    create_view_table(&client, &views).await.unwrap();
    recorder.clear();

    // Idempotent: the second (and third) call is one DescribeTable per
    // table, no CreateTable.
    for _ in 0..2 {
        create_event_tables(&client, &events, &snapshots)
            .await
            .unwrap();
        create_view_table(&client, &views).await.unwrap();
    }
    assert_eq!(recorder.operations(), vec!["DescribeTable"; 6]);
    assert_eq!(
        described(&client, &events).await,
        (TableStatus::Active, EVENTS_SCHEMA.to_string())
    );
}

#[tokio::test]
async fn tables_created_elsewhere_with_the_right_schema_are_accepted() {
    let (client, recorder) = recorded_client();
    let events = unique_name("events");
    let snapshots = unique_name("snapshots");
    let views = unique_name("views");
    // Created by hand (as db/create_tables.sh or CloudFormation would).
    create_raw(
        &client,
        &events,
        &[
            ("AggregateTypeAndId", "S", KeyType::Hash),
            ("AggregateIdSequence", "N", KeyType::Range),
        ],
    )
    .await;
    create_raw(
        &client,
        &snapshots,
        &[("AggregateTypeAndId", "S", KeyType::Hash)],
    )
    .await;
    create_raw(&client, &views, &[("ViewId", "S", KeyType::Hash)]).await;
    recorder.clear();

    create_event_tables(&client, &events, &snapshots)
        .await
        .unwrap();
    create_view_table(&client, &views).await.unwrap();
    assert_eq!(recorder.operations(), vec!["DescribeTable"; 3]);
}

#[tokio::test]
async fn an_events_table_without_its_sort_key_is_a_schema_error() {
    let (client, recorder) = recorded_client();
    let events = unique_name("events");
    let snapshots = unique_name("snapshots");
    create_raw(
        &client,
        &events,
        &[("AggregateTypeAndId", "S", KeyType::Hash)],
    )
    .await;
    recorder.clear();

    let err = create_event_tables(&client, &events, &snapshots)
        .await
        .unwrap_err();
    assert_schema_error(&err, &events, EVENTS_SCHEMA, "HASH AggregateTypeAndId (S)");
    // Nothing was created: not the wrong table, not the snapshots table.
    assert_eq!(recorder.operations(), vec!["DescribeTable"]);
    assert_eq!(
        described(&client, &events).await.1,
        "HASH AggregateTypeAndId (S)"
    );
}

#[tokio::test]
async fn a_sort_key_of_the_wrong_type_is_a_schema_error() {
    let (client, _) = recorded_client();
    let events = unique_name("events");
    let snapshots = unique_name("snapshots");
    create_raw(
        &client,
        &events,
        &[
            ("AggregateTypeAndId", "S", KeyType::Hash),
            ("AggregateIdSequence", "S", KeyType::Range),
        ],
    )
    .await;

    let err = create_event_tables(&client, &events, &snapshots)
        .await
        .unwrap_err();
    assert_schema_error(
        &err,
        &events,
        EVENTS_SCHEMA,
        "HASH AggregateTypeAndId (S), RANGE AggregateIdSequence (S)",
    );
}

#[tokio::test]
async fn a_snapshots_table_with_a_sort_key_is_a_schema_error() {
    let (client, _) = recorded_client();
    let events = unique_name("events");
    let snapshots = unique_name("snapshots");
    // The events schema given to the snapshots table by mistake.
    create_raw(
        &client,
        &snapshots,
        &[
            ("AggregateTypeAndId", "S", KeyType::Hash),
            ("AggregateIdSequence", "N", KeyType::Range),
        ],
    )
    .await;

    let err = create_event_tables(&client, &events, &snapshots)
        .await
        .unwrap_err();
    assert_schema_error(&err, &snapshots, SNAPSHOTS_SCHEMA, EVENTS_SCHEMA);
    // The missing events table was created before the snapshots table was
    // found wrong; the wrong one is left as it is.
    assert_eq!(described(&client, &events).await.1, EVENTS_SCHEMA);
    assert_eq!(described(&client, &snapshots).await.1, EVENTS_SCHEMA);
}

#[tokio::test]
async fn a_view_table_keyed_otherwise_is_a_schema_error() {
    let (client, _) = recorded_client();
    let views = unique_name("views");
    create_raw(&client, &views, &[("Id", "S", KeyType::Hash)]).await;

    let err = create_view_table(&client, &views).await.unwrap_err();
    assert_schema_error(&err, &views, VIEWS_SCHEMA, "HASH Id (S)");
    assert!(!err.is_data_error() && !err.is_conflict());
}

// ---------------------------------------------------------------------------
// On canned responses (the SDK's `StaticReplayClient`): no server runs.
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

fn not_found() -> HttpResponse {
    dynamo_error("ResourceNotFoundException")
}

/// A `DescribeTable` answer: `keys` as (name, attribute type, key type).
fn table(name: &str, status: &str, keys: &[(&str, &str, &str)]) -> HttpResponse {
    let schema: Vec<Value> = keys
        .iter()
        .map(|(attr, _, key_type)| json!({"AttributeName": attr, "KeyType": key_type}))
        .collect();
    let definitions: Vec<Value> = keys
        .iter()
        .map(|(attr, kind, _)| json!({"AttributeName": attr, "AttributeType": kind}))
        .collect();
    response(
        200,
        json!({"Table": {
            "TableName": name,
            "TableStatus": status,
            "KeySchema": schema,
            "AttributeDefinitions": definitions,
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        }}),
    )
}

fn events_table(name: &str, status: &str) -> HttpResponse {
    table(
        name,
        status,
        &[
            ("AggregateTypeAndId", "S", "HASH"),
            ("AggregateIdSequence", "N", "RANGE"),
        ],
    )
}

fn snapshots_table(name: &str, status: &str) -> HttpResponse {
    table(name, status, &[("AggregateTypeAndId", "S", "HASH")])
}

fn view_table(name: &str, status: &str, kind: &str) -> HttpResponse {
    table(name, status, &[("ViewId", kind, "HASH")])
}

/// A client answering with `responses` in order, without retries, and the
/// recorder of what it sent. A request past the last response fails.
fn canned(responses: Vec<HttpResponse>) -> (Client, StaticReplayClient, Recorder) {
    let http = StaticReplayClient::new(
        responses
            .into_iter()
            .map(|r| ReplayEvent::new(HttpRequest::empty(), r))
            .collect(),
    );
    let recorder = Recorder::default();
    let config = client_for("http://canned.invalid")
        .config()
        .to_builder()
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .interceptor(recorder.clone())
        .build();
    (Client::from_conf(config), http, recorder)
}

/// The JSON bodies of the requests `http` received.
fn bodies(http: &StaticReplayClient) -> Vec<Value> {
    http.actual_requests()
        .map(|r| serde_json::from_slice(r.body().bytes().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn active_tables_with_the_right_schema_need_only_describe_table() {
    // As under an IAM policy without CreateTable (db/iam_policy.json): there
    // is no answer for a CreateTable, so sending one would fail the call.
    let (client, http, recorder) = canned(vec![
        events_table("Events", "ACTIVE"),
        snapshots_table("Snapshots", "ACTIVE"),
    ]);
    create_event_tables(&client, "Events", "Snapshots")
        .await
        .unwrap();
    assert_eq!(recorder.operations(), ["DescribeTable", "DescribeTable"]);
    let bodies = bodies(&http);
    assert_eq!(bodies[0]["TableName"], "Events");
    assert_eq!(bodies[1]["TableName"], "Snapshots");
}

#[tokio::test]
async fn a_missing_table_without_create_permission_fails_on_create_table() {
    let (client, _, recorder) = canned(vec![not_found(), dynamo_error("AccessDeniedException")]);
    let err = create_view_table(&client, "Views").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Dynamo {
                operation: "CreateTable",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(recorder.operations(), ["DescribeTable", "CreateTable"]);
}

#[tokio::test]
async fn a_concurrent_creator_is_not_an_error() {
    // Missing when described, created by someone else before our
    // CreateTable, CREATING for a moment, then ACTIVE.
    let (client, http, recorder) = canned(vec![
        not_found(),
        dynamo_error("ResourceInUseException"),
        events_table("Events", "CREATING"),
        events_table("Events", "ACTIVE"),
        snapshots_table("Snapshots", "ACTIVE"),
    ]);
    create_event_tables(&client, "Events", "Snapshots")
        .await
        .unwrap();
    assert_eq!(
        recorder.operations(),
        [
            "DescribeTable",
            "CreateTable",
            "DescribeTable",
            "DescribeTable",
            "DescribeTable"
        ]
    );
    let create = &bodies(&http)[1];
    assert_eq!(create["TableName"], "Events");
    assert_eq!(create["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        create["KeySchema"][1]["AttributeName"],
        "AggregateIdSequence"
    );
    assert_eq!(create["KeySchema"][1]["KeyType"], "RANGE");
}

#[tokio::test]
async fn a_table_not_yet_visible_after_create_table_is_waited_for() {
    // DynamoDB may answer ResourceNotFound for a moment after CreateTable.
    let (client, _, recorder) = canned(vec![
        not_found(),
        response(200, json!({})),
        not_found(),
        view_table("Views", "ACTIVE", "S"),
    ]);
    create_view_table(&client, "Views").await.unwrap();
    assert_eq!(
        recorder.operations(),
        [
            "DescribeTable",
            "CreateTable",
            "DescribeTable",
            "DescribeTable"
        ]
    );
}

#[tokio::test]
async fn a_concurrent_creator_with_another_schema_is_a_schema_error() {
    let (client, _, _) = canned(vec![
        not_found(),
        dynamo_error("ResourceInUseException"),
        snapshots_table("Events", "ACTIVE"),
    ]);
    let err = create_event_tables(&client, "Events", "Snapshots")
        .await
        .unwrap_err();
    assert_schema_error(&err, "Events", EVENTS_SCHEMA, SNAPSHOTS_SCHEMA);
}

#[tokio::test]
async fn an_existing_table_still_creating_is_waited_for() {
    let (client, _, recorder) = canned(vec![
        view_table("Views", "CREATING", "S"),
        view_table("Views", "CREATING", "S"),
        view_table("Views", "ACTIVE", "S"),
    ]);
    create_view_table(&client, "Views").await.unwrap();
    assert_eq!(recorder.operations(), ["DescribeTable"; 3]);
}

#[tokio::test]
async fn a_wrong_schema_is_reported_before_waiting_for_active() {
    let (client, _, recorder) = canned(vec![view_table("Views", "CREATING", "N")]);
    let err = create_view_table(&client, "Views").await.unwrap_err();
    assert_schema_error(&err, "Views", VIEWS_SCHEMA, "HASH ViewId (N)");
    assert_eq!(recorder.operations(), ["DescribeTable"]);
}
