//! `Clients::from_config`: with only `AWS_ENDPOINT_URL_DYNAMODB` set (as for
//! a local endpoint), the Streams client talks to that endpoint too, and
//! says so in a log line; `AWS_ENDPOINT_URL_DYNAMODB_STREAMS` wins when set;
//! an endpoint set in code serves both.
//!
//! One test sets the process environment, phase by phase, so nothing else
//! in this binary may read it: it is the only test here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use dynamo_es::tables::{create_event_tables_with, TableOptions};
use dynamo_es::testing::streams::{FakeStreams, FAKE_STREAM_ARN};
use dynamo_es::testing::{unique_name, EmbeddedDynamo};
use dynamo_es::Clients;

fn set(vars: &[(&str, Option<&str>)]) {
    for (name, value) in vars {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}

async fn load() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

#[tokio::test]
async fn the_streams_client_follows_the_dynamodb_endpoint_unless_told_otherwise() {
    let emulator = EmbeddedDynamo::start().unwrap();
    let endpoint = emulator.endpoint();
    let fake = FakeStreams::start().await.unwrap();
    set(&[
        ("AWS_REGION", Some("us-east-1")),
        ("AWS_ACCESS_KEY_ID", Some("test")),
        ("AWS_SECRET_ACCESS_KEY", Some("test")),
        ("AWS_EC2_METADATA_DISABLED", Some("true")),
        ("AWS_PROFILE", Some("dynamo-es-none")),
        ("AWS_CONFIG_FILE", Some("/nonexistent/dynamo-es/config")),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            Some("/nonexistent/dynamo-es/credentials"),
        ),
        ("AWS_ENDPOINT_URL", None),
        ("AWS_ENDPOINT_URL_DYNAMODB", Some(&endpoint)),
        ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", None),
    ]);

    // Only the DynamoDB endpoint: Streams uses it, with an info line.
    let (logs, guard) = common::capture(tracing::Level::INFO, false);
    let clients = Clients::from_config(&load().await);
    drop(guard);
    assert_eq!(clients.dynamodb_endpoint(), Some(endpoint.as_str()));
    assert_eq!(clients.streams_endpoint(), Some(endpoint.as_str()));
    let said = logs.lines_with("DynamoDB Streams uses the DynamoDB endpoint");
    assert_eq!(
        said.len(),
        1,
        "one info line names the choice: {}",
        logs.text()
    );
    assert!(
        said[0].contains(&endpoint),
        "the line names the endpoint: {}",
        said[0]
    );
    let events = unique_name("clients-events");
    let options = TableOptions::default().with_stream(true);
    create_event_tables_with(
        &clients.dynamodb,
        &events,
        &unique_name("clients-snapshots"),
        options,
    )
    .await
    .unwrap();
    let streams = clients
        .streams
        .list_streams()
        .table_name(&events)
        .send()
        .await
        .expect("the Streams client reaches the emulator, not AWS");
    assert_eq!(streams.streams().len(), 1, "the table's stream is listed");

    // A Streams endpoint of its own wins.
    set(&[("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", Some(fake.endpoint()))]);
    let clients = Clients::from_config(&load().await);
    assert_eq!(clients.dynamodb_endpoint(), Some(endpoint.as_str()));
    assert_eq!(clients.streams_endpoint(), Some(fake.endpoint()));
    fake.add_shard("shard-0", None);
    clients
        .streams
        .describe_stream()
        .stream_arn(FAKE_STREAM_ARN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        fake.calls("DescribeStream"),
        1,
        "the Streams client went to its own endpoint"
    );

    // An endpoint set in code serves both services.
    set(&[
        ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", None),
        ("AWS_ENDPOINT_URL_DYNAMODB", None),
    ]);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(fake.endpoint())
        .load()
        .await;
    let clients = Clients::from_config(&config);
    assert_eq!(clients.dynamodb_endpoint(), Some(fake.endpoint()));
    assert_eq!(clients.streams_endpoint(), Some(fake.endpoint()));

    // Nothing configured: AWS itself, for both.
    let clients = Clients::from_config(&load().await);
    assert_eq!(clients.dynamodb_endpoint(), None);
    assert_eq!(clients.streams_endpoint(), None);
}
