//! The tables projections need: the events table's stream
//! (`create_event_tables_with`, `enable_stream`) and the checkpoint table
//! (`create_checkpoint_table`). They describe first, keep what exists when
//! it fits, refuse what does not with a typed error, and wait for ACTIVE. On
//! the embedded emulator (or `AWS_ENDPOINT_URL_DYNAMODB`), and on canned
//! responses for what an emulator does not do (another process enabling the
//! stream at the same moment).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projection_common;

use aws_sdk_dynamodb::types::{KeyType, StreamSpecification, StreamViewType};
use aws_sdk_dynamodb::Client;
use common::create_raw;
use cqrs_es::persist::PersistedEventRepository;
use dynamo_es::tables::{
    create_checkpoint_table, create_event_tables_with, enable_stream, TableOptions,
};
use dynamo_es::testing::faults::{Canned, Scripted};
use dynamo_es::testing::{client_for, endpoint, unique_name, TestTables};
use dynamo_es::{create_event_tables, Error};
use projection_common::{canned, describe_table, recorded_client};
use serde_json::json;

/// The table's stream as (enabled, view type, latest stream ARN).
async fn stream_of(client: &Client, table: &str) -> (bool, Option<String>, Option<String>) {
    let table = describe_table(client, table).await;
    let specification = table.stream_specification();
    (
        specification.is_some_and(|s| s.stream_enabled()),
        specification
            .and_then(|s| s.stream_view_type())
            .map(|v| v.as_str().to_string()),
        table.latest_stream_arn().map(str::to_string),
    )
}

/// Enables a stream of `view_type` on `table` directly (as a console or
/// another tool would).
async fn enable_raw(client: &Client, table: &str, view_type: StreamViewType) {
    client
        .update_table()
        .table_name(table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(view_type)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    dynamo_es::tables::wait_active(client, table).await.unwrap();
}

/// The partition key of every record's new image on `stream_arn`.
async fn stream_images(stream_arn: &str) -> Vec<String> {
    projection_common::stream_records(stream_arn)
        .await
        .into_iter()
        .map(|(_, record)| {
            let image = record.dynamodb().unwrap().new_image().unwrap();
            image["AggregateTypeAndId"].as_s().unwrap().clone()
        })
        .collect()
}

/// Persists deposit `sequence` of account `id`.
async fn persist(db: &TestTables, id: &str, sequence: usize) {
    let event = common::deposit_event("Account", id, sequence, 5);
    db.repository()
        .persist::<common::Account>(&[event], None)
        .await
        .unwrap();
}

fn assert_stream_error(err: &Error, table: &str, found: &str) {
    match err {
        Error::TableStream {
            table: t,
            expected,
            found: f,
        } => {
            assert_eq!(t, table);
            assert_eq!(f, found);
            assert_eq!(expected, "NEW_IMAGE (or NEW_AND_OLD_IMAGES)");
        }
        other => panic!("expected Error::TableStream for {table}, got {other:?}"),
    }
    projection_common::assert_names(&err, &[table, found]);
}

#[tokio::test]
async fn new_events_table_gets_a_new_image_stream_and_a_second_call_only_describes() {
    let (client, sent) = recorded_client();
    let (events, snapshots) = (unique_name("events"), unique_name("snapshots"));
    let options = TableOptions::default().with_stream(true);
    create_event_tables_with(&client, &events, &snapshots, options.clone())
        .await
        .unwrap();
    let ops = sent.operations();
    assert!(ops.contains(&"CreateTable".to_string()), "{ops:?}");
    // Created with the stream: no UpdateTable.
    assert!(!ops.contains(&"UpdateTable".to_string()), "{ops:?}");

    let (enabled, view_type, arn) = stream_of(&client, &events).await;
    assert!(enabled);
    assert_eq!(view_type.as_deref(), Some("NEW_IMAGE"));
    assert!(
        !stream_of(&client, &snapshots).await.0,
        "snapshots: no stream"
    );

    sent.clear();
    create_event_tables_with(&client, &events, &snapshots, options)
        .await
        .unwrap();
    assert_eq!(enable_stream(&client, &events).await.unwrap(), arn.unwrap());
    assert_eq!(sent.operations(), ["DescribeTable"; 4]);
}

#[tokio::test]
async fn an_existing_events_table_gets_a_stream_and_commits_show_on_it() {
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    assert!(!stream_of(&db.client, &db.events).await.0);
    persist(&db, "before-stream", 1).await;

    let options = TableOptions::default().with_stream(true);
    create_event_tables_with(&db.client, &db.events, &db.snapshots, options)
        .await
        .unwrap();
    let (enabled, view_type, arn) = stream_of(&db.client, &db.events).await;
    assert!(enabled);
    assert_eq!(view_type.as_deref(), Some("NEW_IMAGE"));
    let arn = arn.unwrap();
    assert_eq!(enable_stream(&db.client, &db.events).await.unwrap(), arn);

    persist(&db, "after-stream", 1).await;
    persist(&db, "after-stream", 2).await;
    let keys = stream_images(&arn).await;
    assert_eq!(keys, ["Account:after-stream", "Account:after-stream"]);
}

#[tokio::test]
async fn a_stream_without_new_images_is_refused_and_left_alone() {
    let client = client_for(&endpoint().unwrap());
    for view_type in [StreamViewType::KeysOnly, StreamViewType::OldImage] {
        let db = dynamo_es::testing::dynamodb().await.unwrap();
        enable_raw(&client, &db.events, view_type.clone()).await;
        let before = stream_of(&client, &db.events).await;

        let err = enable_stream(&client, &db.events).await.unwrap_err();
        assert_stream_error(&err, &db.events, view_type.as_str());
        let options = TableOptions::default().with_stream(true);
        let err = create_event_tables_with(&client, &db.events, &db.snapshots, options)
            .await
            .unwrap_err();
        assert_stream_error(&err, &db.events, view_type.as_str());
        assert_eq!(stream_of(&client, &db.events).await, before);
        // Without the option the stream is nobody's business.
        create_event_tables(&client, &db.events, &db.snapshots)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_new_and_old_images_stream_is_kept_as_it_is() {
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    enable_raw(&db.client, &db.events, StreamViewType::NewAndOldImages).await;
    let before = stream_of(&db.client, &db.events).await;
    let arn = enable_stream(&db.client, &db.events).await.unwrap();
    assert_eq!(Some(arn), before.2);
    assert_eq!(stream_of(&db.client, &db.events).await, before);
}

#[tokio::test]
async fn enabling_a_stream_on_a_missing_table_names_it() {
    let client = client_for(&endpoint().unwrap());
    let table = unique_name("missing");
    let err = enable_stream(&client, &table).await.unwrap_err();
    assert!(matches!(err, Error::Dynamo { .. }), "{err:?}");
    assert!(err.to_string().contains(&table), "{err}");
}

#[tokio::test]
async fn the_checkpoint_table_is_created_once_with_its_schema() {
    let (client, sent) = recorded_client();
    let table = unique_name("checkpoints");
    create_checkpoint_table(&client, &table).await.unwrap();
    assert!(sent.operations().contains(&"CreateTable".to_string()));
    let description = describe_table(&client, &table).await;
    let keys: Vec<_> = description
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
        .collect();
    assert_eq!(keys, [("LeaseKey".to_string(), KeyType::Hash)]);
    assert_eq!(
        description.attribute_definitions()[0]
            .attribute_type()
            .as_str(),
        "S"
    );

    sent.clear();
    create_checkpoint_table(&client, &table).await.unwrap();
    assert_eq!(sent.operations(), ["DescribeTable"]);
}

#[tokio::test]
async fn a_checkpoint_table_keyed_otherwise_is_a_schema_error() {
    let client = client_for(&endpoint().unwrap());
    let table = unique_name("checkpoints");
    create_raw(&client, &table, &[("LeaseKey", "N", KeyType::Hash)]).await;
    let err = create_checkpoint_table(&client, &table).await.unwrap_err();
    match &err {
        Error::TableSchema {
            table: t,
            expected,
            found,
        } => {
            assert_eq!(t, &table);
            assert_eq!(expected, "HASH LeaseKey (S)");
            assert_eq!(found, "HASH LeaseKey (N)");
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// On canned responses.
// ---------------------------------------------------------------------------

const ARN: &str =
    "arn:aws:dynamodb:us-east-1:000000000000:table/Events/stream/2026-01-01T00:00:00.000";

/// An ACTIVE events table, with a stream of `view_type` if given.
fn events_table(view_type: Option<&str>) -> Canned {
    let mut table = json!({
        "TableName": "Events",
        "TableStatus": "ACTIVE",
        "KeySchema": [
            {"AttributeName": "AggregateTypeAndId", "KeyType": "HASH"},
            {"AttributeName": "AggregateIdSequence", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "AggregateTypeAndId", "AttributeType": "S"},
            {"AttributeName": "AggregateIdSequence", "AttributeType": "N"},
        ],
    });
    if let Some(view_type) = view_type {
        table["StreamSpecification"] = json!({"StreamEnabled": true, "StreamViewType": view_type});
        table["LatestStreamArn"] = json!(ARN);
    }
    Canned::ok(json!({ "Table": table }))
}

/// `enable_stream` racing another process that enables a `view_type`
/// stream first: no stream, our `UpdateTable` refused while the table is
/// UPDATING, then the other's stream.
fn raced_by_another_process(view_type: &str) -> (Client, Scripted) {
    canned(vec![
        events_table(None),
        Canned::dynamo_error("ResourceInUseException", json!({})),
        events_table(Some(view_type)),
    ])
}

#[tokio::test]
async fn another_process_enabling_the_stream_first_is_not_an_error() {
    // Both saw no stream; the other's UpdateTable won, ours is refused
    // while the table is UPDATING, and its stream is the one we use.
    let (client, http) = raced_by_another_process("NEW_IMAGE");
    assert_eq!(enable_stream(&client, "Events").await.unwrap(), ARN);
    assert_eq!(
        http.operations(),
        ["DescribeTable", "UpdateTable", "DescribeTable"]
    );
}

#[tokio::test]
async fn another_process_enabling_a_keys_only_stream_first_is_refused() {
    let (client, _) = raced_by_another_process("KEYS_ONLY");
    let err = enable_stream(&client, "Events").await.unwrap_err();
    assert_stream_error(&err, "Events", "KEYS_ONLY");
}

#[tokio::test]
async fn a_refused_update_table_without_a_stream_is_the_error() {
    // Without dynamodb:UpdateTable (db/iam_policy.json): the refusal, named.
    let (client, http) = canned(vec![
        events_table(None),
        Canned::dynamo_error("AccessDeniedException", json!({})),
        events_table(None),
    ]);
    let err = enable_stream(&client, "Events").await.unwrap_err();
    assert!(matches!(err, Error::Dynamo { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("UpdateTable") && message.contains("Events"),
        "{message}"
    );
    assert_eq!(http.remaining(), 0);
}

#[tokio::test]
async fn a_stream_that_shows_late_is_waited_for() {
    let (client, http) = canned(vec![
        events_table(None),
        Canned::ok(json!({"TableDescription": {"TableName": "Events"}})),
        events_table(None),
        events_table(Some("NEW_IMAGE")),
    ]);
    assert_eq!(enable_stream(&client, "Events").await.unwrap(), ARN);
    assert_eq!(http.remaining(), 0);
}

// ---------------------------------------------------------------------------
// db/create_tables.sh, with the AWS CLI, on the emulator.
// ---------------------------------------------------------------------------

/// Runs db/create_tables.sh with `tables` (events, snapshots, checkpoints,
/// view) and `args`; its exit status and output. `None` without the AWS CLI.
/// It blocks the test's thread: the emulator runs on its own.
fn create_tables_sh(tables: [&str; 4], args: &[&str]) -> Option<(bool, String)> {
    let has_cli = std::process::Command::new("aws")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_cli {
        eprintln!("the AWS CLI is not installed: db/create_tables.sh not run");
        return None;
    }
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/db/create_tables.sh"))
        .args(["--endpoint-url", &endpoint().unwrap()])
        .args(args)
        .arg(tables[3])
        .env("EVENTS_TABLE", tables[0])
        .env("SNAPSHOTS_TABLE", tables[1])
        .env("CHECKPOINTS_TABLE", tables[2])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), text))
}

#[tokio::test]
async fn create_tables_sh_enables_the_stream_makes_the_checkpoint_table_and_refuses_keys_only() {
    // One test, three runs: the AWS CLI takes a second or more per call.
    let client = client_for(&endpoint().unwrap());
    let names = ["events", "snapshots", "checkpoints", "views"].map(unique_name);
    let tables = [&*names[0], &*names[1], &*names[2], &*names[3]];
    let Some((ok, text)) = create_tables_sh(tables, &["--no-projections"]) else {
        return;
    };
    assert!(ok, "{text}");
    assert!(!stream_of(&client, tables[0]).await.0, "{text}");
    let listed = client.list_tables().send().await.unwrap();
    assert!(
        !listed.table_names().contains(&names[2]),
        "no checkpoint table: {text}"
    );

    let (ok, text) = create_tables_sh(tables, &[]).unwrap();
    assert!(ok, "{text}");
    let (_, view_type, arn) = stream_of(&client, tables[0]).await;
    assert_eq!(view_type.as_deref(), Some("NEW_IMAGE"));
    assert!(text.contains(&arn.clone().unwrap()), "{text}");
    // The library agrees with what the script made, and changes nothing.
    let (recorded, sent) = recorded_client();
    create_checkpoint_table(&recorded, tables[2]).await.unwrap();
    assert_eq!(
        enable_stream(&recorded, tables[0]).await.unwrap(),
        arn.unwrap()
    );
    assert_eq!(sent.operations(), ["DescribeTable"; 2]);

    let other = ["events", "snapshots", "checkpoints", "views"].map(unique_name);
    create_event_tables(&client, &other[0], &other[1])
        .await
        .unwrap();
    enable_raw(&client, &other[0], StreamViewType::KeysOnly).await;
    let tables = [&*other[0], &*other[1], &*other[2], &*other[3]];
    let (ok, text) = create_tables_sh(tables, &[]).unwrap();
    assert!(!ok, "{text}");
    assert!(text.contains("has a KEYS_ONLY stream"), "{text}");
    assert_eq!(
        stream_of(&client, tables[0]).await.1.as_deref(),
        Some("KEYS_ONLY")
    );
}

#[tokio::test]
async fn create_tables_sh_adds_the_slice_index_and_keeps_its_count() {
    let client = client_for(&endpoint().unwrap());
    let names = ["events", "snapshots", "checkpoints", "views"].map(unique_name);
    let tables = [&*names[0], &*names[1], &*names[2], &*names[3]];
    let Some((ok, text)) = create_tables_sh(tables, &["--no-projections", "--slices", "16"]) else {
        return;
    };
    assert!(ok, "{text}");
    let slices = dynamo_es::tables::slices_of(&client, tables[0])
        .await
        .unwrap();
    assert_eq!(
        slices.map(dynamo_es::slice::Slices::count),
        Some(16),
        "{text}"
    );
    // Again with the same count: kept. With another: refused, unchanged.
    let (ok, text) = create_tables_sh(tables, &["--no-projections", "--slices", "16"]).unwrap();
    assert!(
        ok && text.contains("already has the EventsBySlice index"),
        "{text}"
    );
    let (ok, text) = create_tables_sh(tables, &["--no-projections", "--slices", "32"]).unwrap();
    assert!(!ok && text.contains("has 16 slices"), "{text}");
    let (ok, text) = create_tables_sh(tables, &["--slices", "2000"]).unwrap();
    assert!(!ok && text.contains("from 1 to 1024"), "{text}");
}
