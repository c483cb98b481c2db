//! `create_event_tables` and `create_view_table`: they describe first,
//! check the key schema of what exists, create only what is missing, and
//! wait for ACTIVE. On the embedded emulator (or `AWS_ENDPOINT_URL_DYNAMODB`),
//! and on canned responses for what an emulator does not do (a concurrent
//! creator, a table still CREATING, a missing permission); an interceptor
//! records the operations every client sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projection_common;

use aws_sdk_dynamodb::types::{KeyType, TableStatus};
use aws_sdk_dynamodb::Client;
use common::create_raw;
use dynamo_es::testing::faults::Canned;
use dynamo_es::testing::unique_name;
use dynamo_es::{create_event_tables, create_view_table, Error};
use projection_common::{canned, describe_table, recorded_client};
use serde_json::{json, Value};

const EVENTS_SCHEMA: &str = "HASH AggregateTypeAndId (S), RANGE AggregateIdSequence (N)";
const SNAPSHOTS_SCHEMA: &str = "HASH AggregateTypeAndId (S)";
const VIEWS_SCHEMA: &str = "HASH ViewId (S)";

/// The keys of an events table, as (name, attribute type, key type).
const EVENTS_KEYS: &[(&str, &str, KeyType)] = &[
    ("AggregateTypeAndId", "S", KeyType::Hash),
    ("AggregateIdSequence", "N", KeyType::Range),
];
/// The key of a snapshots table.
const SNAPSHOTS_KEYS: &[(&str, &str, KeyType)] = &[("AggregateTypeAndId", "S", KeyType::Hash)];

/// Names for the three tables of a test, unique to it.
struct Names {
    events: String,
    snapshots: String,
    views: String,
}

fn names() -> Names {
    Names {
        events: unique_name("events"),
        snapshots: unique_name("snapshots"),
        views: unique_name("views"),
    }
}

/// `create_event_tables` and `create_view_table` for `names`, which must
/// succeed.
async fn create_all(client: &Client, names: &Names) {
    create_event_tables(client, &names.events, &names.snapshots)
        .await
        .unwrap();
    create_view_table(client, &names.views).await.unwrap();
}

/// The table's status and key schema as `HASH name (type), ...`.
async fn described(client: &Client, table: &str) -> (TableStatus, String) {
    let table = describe_table(client, table).await;
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
    projection_common::assert_names(&err, &[table, expected, found]);
}

/// `create_event_tables` for `t`, which must fail with a schema error on
/// `table`: `expected`, `found`.
async fn assert_event_tables_refused(
    client: &Client,
    t: &Names,
    table: &str,
    expected: &str,
    found: &str,
) {
    let err = create_event_tables(client, &t.events, &t.snapshots)
        .await
        .unwrap_err();
    assert_schema_error(&err, table, expected, found);
}

// ---------------------------------------------------------------------------
// On the emulator.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_tables_are_created_active_with_their_schema() {
    let (client, recorder) = recorded_client();
    let t = names();

    create_all(&client, &t).await;

    for (table, schema) in [
        (&t.events, EVENTS_SCHEMA),
        (&t.snapshots, SNAPSHOTS_SCHEMA),
        (&t.views, VIEWS_SCHEMA),
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
    let t = names();
    create_all(&client, &t).await;
    recorder.clear();

    // Idempotent: the second (and third) call is one DescribeTable per
    // table, no CreateTable.
    for _ in 0..2 {
        create_all(&client, &t).await;
    }
    assert_eq!(recorder.operations(), vec!["DescribeTable"; 6]);
    assert_eq!(
        described(&client, &t.events).await,
        (TableStatus::Active, EVENTS_SCHEMA.to_string())
    );
}

#[tokio::test]
async fn tables_created_elsewhere_with_the_right_schema_are_accepted() {
    let (client, recorder) = recorded_client();
    let t = names();
    // Created by hand (as db/create_tables.sh or CloudFormation would).
    create_raw(&client, &t.events, EVENTS_KEYS).await;
    create_raw(&client, &t.snapshots, SNAPSHOTS_KEYS).await;
    create_raw(&client, &t.views, &[("ViewId", "S", KeyType::Hash)]).await;
    recorder.clear();

    create_all(&client, &t).await;
    assert_eq!(recorder.operations(), vec!["DescribeTable"; 3]);
}

#[tokio::test]
async fn an_events_table_without_its_sort_key_is_a_schema_error() {
    let (client, recorder) = recorded_client();
    let t = names();
    create_raw(&client, &t.events, SNAPSHOTS_KEYS).await;
    recorder.clear();

    assert_event_tables_refused(&client, &t, &t.events, EVENTS_SCHEMA, SNAPSHOTS_SCHEMA).await;
    // Nothing was created: not the wrong table, not the snapshots table.
    assert_eq!(recorder.operations(), vec!["DescribeTable"]);
    assert_eq!(
        described(&client, &t.events).await.1,
        "HASH AggregateTypeAndId (S)"
    );
}

#[tokio::test]
async fn a_sort_key_of_the_wrong_type_is_a_schema_error() {
    let (client, _) = recorded_client();
    let t = names();
    let keys = [
        ("AggregateTypeAndId", "S", KeyType::Hash),
        ("AggregateIdSequence", "S", KeyType::Range),
    ];
    create_raw(&client, &t.events, &keys).await;

    let found = "HASH AggregateTypeAndId (S), RANGE AggregateIdSequence (S)";
    assert_event_tables_refused(&client, &t, &t.events, EVENTS_SCHEMA, found).await;
}

#[tokio::test]
async fn a_snapshots_table_with_a_sort_key_is_a_schema_error() {
    let (client, _) = recorded_client();
    let t = names();
    // The events schema given to the snapshots table by mistake.
    create_raw(&client, &t.snapshots, EVENTS_KEYS).await;

    assert_event_tables_refused(&client, &t, &t.snapshots, SNAPSHOTS_SCHEMA, EVENTS_SCHEMA).await;
    // The missing events table was created before the snapshots table was
    // found wrong; the wrong one is left as it is.
    assert_eq!(described(&client, &t.events).await.1, EVENTS_SCHEMA);
    assert_eq!(described(&client, &t.snapshots).await.1, EVENTS_SCHEMA);
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
// On canned responses (a `Scripted` client): no server runs.
// ---------------------------------------------------------------------------

fn dynamo_error(kind: &str) -> Canned {
    Canned::dynamo_error(kind, json!({}))
}

fn not_found() -> Canned {
    dynamo_error("ResourceNotFoundException")
}

/// A `DescribeTable` answer: `keys` as (name, attribute type, key type).
fn table(name: &str, status: &str, keys: &[(&str, &str, KeyType)]) -> Canned {
    let schema: Vec<Value> = keys
        .iter()
        .map(|(attr, _, key_type)| json!({"AttributeName": attr, "KeyType": key_type.as_str()}))
        .collect();
    let definitions: Vec<Value> = keys
        .iter()
        .map(|(attr, kind, _)| json!({"AttributeName": attr, "AttributeType": kind}))
        .collect();
    Canned::ok(json!({"Table": {
        "TableName": name,
        "TableStatus": status,
        "KeySchema": schema,
        "AttributeDefinitions": definitions,
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
    }}))
}

fn events_table(name: &str, status: &str) -> Canned {
    table(name, status, EVENTS_KEYS)
}

fn snapshots_table(name: &str, status: &str) -> Canned {
    table(name, status, SNAPSHOTS_KEYS)
}

fn view_table(name: &str, status: &str, kind: &str) -> Canned {
    table(name, status, &[("ViewId", kind, KeyType::Hash)])
}

#[tokio::test]
async fn active_tables_with_the_right_schema_need_only_describe_table() {
    // As under an IAM policy without CreateTable (db/iam_policy.json): there
    // is no answer for a CreateTable, so sending one would fail the call.
    let (client, http) = canned(vec![
        events_table("Events", "ACTIVE"),
        snapshots_table("Snapshots", "ACTIVE"),
    ]);
    create_event_tables(&client, "Events", "Snapshots")
        .await
        .unwrap();
    assert_eq!(http.operations(), ["DescribeTable", "DescribeTable"]);
    let requests = http.requests();
    assert_eq!(requests[0].body["TableName"], "Events");
    assert_eq!(requests[1].body["TableName"], "Snapshots");
}

#[tokio::test]
async fn a_missing_table_without_create_permission_fails_on_create_table() {
    let (client, http) = canned(vec![not_found(), dynamo_error("AccessDeniedException")]);
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
    assert_eq!(http.operations(), ["DescribeTable", "CreateTable"]);
}

#[tokio::test]
async fn a_concurrent_creator_is_not_an_error() {
    // Missing when described, created by someone else before our
    // CreateTable, CREATING for a moment, then ACTIVE.
    let (client, http) = canned(vec![
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
        http.operations(),
        [
            "DescribeTable",
            "CreateTable",
            "DescribeTable",
            "DescribeTable",
            "DescribeTable"
        ]
    );
    let create = &http.requests()[1].body;
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
    let (client, http) = canned(vec![
        not_found(),
        Canned::written(),
        not_found(),
        view_table("Views", "ACTIVE", "S"),
    ]);
    create_view_table(&client, "Views").await.unwrap();
    assert_eq!(
        http.operations(),
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
    let (client, _) = canned(vec![
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
    let (client, http) = canned(vec![
        view_table("Views", "CREATING", "S"),
        view_table("Views", "CREATING", "S"),
        view_table("Views", "ACTIVE", "S"),
    ]);
    create_view_table(&client, "Views").await.unwrap();
    assert_eq!(http.operations(), ["DescribeTable"; 3]);
}

#[tokio::test]
async fn a_wrong_schema_is_reported_before_waiting_for_active() {
    let (client, http) = canned(vec![view_table("Views", "CREATING", "N")]);
    let err = create_view_table(&client, "Views").await.unwrap_err();
    assert_schema_error(&err, "Views", VIEWS_SCHEMA, "HASH ViewId (N)");
    assert_eq!(http.operations(), ["DescribeTable"]);
}
