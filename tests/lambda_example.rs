//! The Lambda example as `db/lambda_projection.yaml` deploys it: the
//! example's `main` registers `lambda::handler` (through `lambda::run`)
//! with the example's `dispatcher`, and here that handler is invoked with a
//! recorded DynamoDB Streams event (`tests/fixtures/lambda_stream_event.json`,
//! in the shape Lambda sends it). It writes the views, each event once even
//! when Lambda delivers the batch again, and reports no batch item failure;
//! a view it cannot write is the failure of the first record not applied.
//! The example names no crate beyond the dependencies the guide states, and
//! the template runs what `cargo lambda build` makes of it.
#![cfg(feature = "lambda")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod docs_support;
#[path = "../examples/lambda_projection.rs"]
#[allow(dead_code)]
mod example;

use std::collections::BTreeSet;

use cqrs_es::persist::ViewRepository;
use dynamo_es::projection::lambda::{self, Context, DynamoDbEventResponse, Event, LambdaEvent};
use dynamo_es::projection::Dispatcher;
use dynamo_es::testing::{dynamodb, unique_name, TestTables};
use dynamo_es::DynamoViewRepository;
use serde_json::{json, Value};

use docs_support::{block_containing, read};
use example::{Account, BalanceView};

/// The recorded event.
const RECORDED: &str = include_str!("fixtures/lambda_stream_event.json");

/// One invocation of the deployed function's handler with the recorded
/// event.
async fn invoke(dispatcher: &Dispatcher<Account>) -> DynamoDbEventResponse {
    let event: Event = serde_json::from_str(RECORDED).unwrap();
    let invocation = LambdaEvent::new(event, Context::default());
    lambda::handler(dispatcher, invocation).await.unwrap()
}

/// The balance and deposits of `id`'s view.
async fn view(db: &TestTables, id: &str) -> Option<(i64, usize)> {
    let views = DynamoViewRepository::<BalanceView, Account>::new(&db.views, db.client.clone());
    let view = views.load(id).await.unwrap()?;
    Some((view.balance, view.deposits))
}

#[tokio::test]
async fn the_handler_main_registers_writes_the_views_of_a_recorded_event_once() {
    let db = dynamodb().await.unwrap();
    let dispatcher = example::dispatcher(db.client.clone(), &db.events, &db.snapshots, &db.views);
    let response = invoke(&dispatcher).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": []}),
        "what Lambda reads"
    );
    assert_eq!(view(&db, "acct-17").await, Some((350, 2)));
    assert_eq!(view(&db, "acct-42").await, Some((40, 1)));

    // Lambda delivers the batch again (a retry, a replay): nothing is
    // applied twice.
    let response = invoke(&dispatcher).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(view(&db, "acct-17").await, Some((350, 2)));
    assert_eq!(view(&db, "acct-42").await, Some((40, 1)));
}

#[tokio::test]
async fn a_view_it_cannot_write_is_the_failure_of_the_first_record() {
    let db = dynamodb().await.unwrap();
    let missing = unique_name("missing-views");
    let dispatcher = example::dispatcher(db.client.clone(), &db.events, &db.snapshots, &missing);
    let response = invoke(&dispatcher).await;
    let recorded: Value = serde_json::from_str(RECORDED).unwrap();
    let first = &recorded["Records"][0]["dynamodb"]["SequenceNumber"];
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": first}]})
    );
}

#[test]
fn the_recorded_event_is_what_lambda_sends() {
    let recorded: Value = serde_json::from_str(RECORDED).unwrap();
    let records = recorded["Records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    for record in records {
        assert_eq!(record["eventName"], "INSERT");
        assert_eq!(record["eventSource"], "aws:dynamodb");
        let arn = record["eventSourceARN"].as_str().unwrap();
        assert!(
            arn.starts_with("arn:aws:dynamodb:") && arn.contains("/stream/"),
            "{arn}"
        );
        let change = &record["dynamodb"];
        assert!(change["SequenceNumber"].is_string());
        assert_eq!(change["StreamViewType"], "NEW_IMAGE");
        assert!(change["NewImage"]["Payload"]["B"].is_string());
        assert_eq!(
            change["Keys"]["AggregateTypeAndId"],
            change["NewImage"]["AggregateTypeAndId"]
        );
    }
}

/// The crates of the guide's `Cargo.toml` block for the Lambda function
/// (the one whose `dynamo-es` line enables `lambda`), as Rust names them.
fn stated_dependencies() -> BTreeSet<String> {
    let block = block_containing(
        "docs/guide/projections.md",
        "toml",
        "features = [\"lambda\"]",
    );
    block
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(name, _)| name.trim().replace('-', "_"))
        .filter(|name| !name.starts_with('['))
        .collect()
}

/// The first segment of every path in `code` (`a::b::c` -> `a`), comments
/// left out.
fn path_roots(code: &str) -> BTreeSet<String> {
    let mut roots = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (at, _) in line.match_indices("::") {
            let before = &line[..at];
            let root = before
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            let continues = before[..before.len() - root.len()].ends_with("::");
            if !root.is_empty() && !continues {
                roots.insert(root.to_string());
            }
        }
    }
    roots
}

#[test]
fn the_example_needs_no_dependency_the_guide_does_not_state() {
    let stated = stated_dependencies();
    for needed in ["dynamo_es", "cqrs_es", "aws_config", "tokio", "serde"] {
        assert!(
            stated.contains(needed),
            "the guide states {needed}: {stated:?}"
        );
    }
    let example = read("examples/lambda_projection.rs");
    let code: String = example
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| format!("{line}\n"))
        .collect();
    // Paths may start at a crate, or at something the example names itself
    // (a type, a variant's enum, a module it imported).
    let imported: BTreeSet<&str> = code
        .lines()
        .filter_map(|line| line.strip_prefix("use "))
        .flat_map(|path| path.trim_end_matches(';').split([':', '{', '}', ',', ' ']))
        .filter(|name| !name.is_empty())
        .collect();
    for root in path_roots(&code) {
        let known = stated.contains(&root)
            || ["std", "core", "self", "super", "crate", "Self"].contains(&root.as_str())
            || imported.contains(root.as_str())
            || root.starts_with(|c: char| c.is_ascii_uppercase());
        assert!(
            known,
            "examples/lambda_projection.rs uses `{root}::`, which is neither a dependency the \
             guide states ({stated:?}) nor one of its own names; use the re-exports of \
             dynamo_es::projection::lambda"
        );
    }
    for unstated in ["aws_lambda_events::", "lambda_runtime::", "thiserror::"] {
        assert!(!code.contains(unstated), "{unstated}");
    }
}

#[test]
fn the_template_runs_what_cargo_lambda_builds_of_the_example() {
    let template = read("db/lambda_projection.yaml");
    let build =
        "cargo lambda build --release --arm64 --example lambda_projection --features lambda";
    for shown in [
        build,
        "Runtime: provided.al2023",
        "Handler: bootstrap",
        "- arm64",
        "CodeUri: ../target/lambda/lambda_projection/",
        "StartingPosition: TRIM_HORIZON",
        "- ReportBatchItemFailures",
        "BisectBatchOnFunctionError: false",
        "MaximumRetryAttempts:",
        "OnFailure:",
        "VIEW_TABLE:",
        "EVENTS_TABLE:",
        "SNAPSHOTS_TABLE:",
    ] {
        assert!(
            template.contains(shown),
            "db/lambda_projection.yaml lacks {shown}"
        );
    }
    assert!(
        read("docs/guide/projections.md").contains(build),
        "the guide shows the build"
    );
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains(
            "[[example]]\nname = \"lambda_projection\"\nrequired-features = [\"lambda\"]"
        ),
        "Cargo.toml declares the example with the feature the build enables"
    );
    // `main` hands the example's dispatcher to `lambda::run`, which registers
    // `lambda::handler`, the function the tests above invoke.
    let example = read("examples/lambda_projection.rs");
    assert!(example.contains("lambda::run(dispatcher).await"));
    let library = read("src/projection/lambda.rs");
    assert!(library.contains("move |event: LambdaEvent<Event>| handler(dispatcher, event)"));
}
