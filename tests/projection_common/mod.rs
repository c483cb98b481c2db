//! Shared by the projection tests (and the table tests): tables with a
//! stream on the embedded emulator, every record the stream holds, read with
//! the real `aws-sdk-dynamodbstreams` client, and DynamoDB clients that
//! record what they send or answer from canned responses.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::TableDescription;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodbstreams::types::Record;
use aws_smithy_runtime::client::interceptors::MutateRequestInterceptor;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use dynamo_es::projection::ChangeRecord;
use dynamo_es::tables::enable_stream;
use dynamo_es::testing::faults::{client_on, operation, short_timeouts, Canned, Scripted};
use dynamo_es::testing::{client_for, dynamodb, endpoint, TestTables};

/// Fresh tables whose events table has a `NEW_IMAGE` stream, and its ARN.
pub async fn stream_tables() -> (TestTables, String) {
    let db = dynamodb().await.unwrap();
    let arn = enable_stream(&db.client, &db.events).await.unwrap();
    (db, arn)
}

/// A Streams client for the test endpoint (the emulator serves both).
pub fn streams_client() -> aws_sdk_dynamodbstreams::Client {
    dynamo_es::testing::streams::client_for(&endpoint().unwrap())
}

/// Every record of the stream `arn`, shard by shard, from the trim horizon,
/// with its shard id.
pub async fn stream_records(arn: &str) -> Vec<(String, Record)> {
    dynamo_es::testing::streams::read_all(&streams_client(), arn)
        .await
        .unwrap()
}

/// Every record of the stream `arn` as [`ChangeRecord`]s, in stream order.
pub async fn change_records(arn: &str) -> Vec<ChangeRecord> {
    stream_records(arn)
        .await
        .into_iter()
        .map(|(shard, record)| ChangeRecord::from_stream(&shard, record).unwrap())
        .collect()
}

/// `table`'s description (`DescribeTable`), which must exist.
pub async fn describe_table(client: &Client, table: &str) -> TableDescription {
    client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
}

/// The operation of every request a client sent, in order.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    pub fn operations(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// A client for the test endpoint that records what it sends.
pub fn recorded_client() -> (Client, Recorder) {
    let recorder = Recorder::default();
    let sent = recorder.0.clone();
    let record = move |request: &mut HttpRequest| sent.lock().unwrap().push(operation(request));
    let client = client_for(&endpoint().unwrap());
    let config = client
        .config()
        .to_builder()
        .interceptor(MutateRequestInterceptor::new(record))
        .build();
    (Client::from_conf(config), recorder)
}

/// A client answering with `responses` in order, without retries, and the
/// script that records what it sent. A request past the last response
/// fails.
pub fn canned(responses: Vec<Canned>) -> (Client, Scripted) {
    let http = Scripted::replying(responses);
    let client = client_on(http.clone(), RetryConfig::disabled(), short_timeouts());
    (client, http)
}

/// A transaction's `Update` of the item `key` (`ViewId`) of `table` adding
/// each `(attribute, amount)` of `amounts` (`ADD`), as transactional
/// projections' counters write it.
pub fn add_to(
    table: &str,
    key: &str,
    amounts: &[(&str, i64)],
) -> aws_sdk_dynamodb::types::TransactWriteItem {
    use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
    let clauses: Vec<String> = (0..amounts.len()).map(|i| format!("#a{i} :a{i}")).collect();
    let mut update = Update::builder()
        .table_name(table)
        .key(dynamo_es::item::VIEW_ID, AttributeValue::S(key.to_string()))
        .update_expression(format!("ADD {}", clauses.join(", ")));
    for (i, (attribute, amount)) in amounts.iter().enumerate() {
        update = update
            .expression_attribute_names(format!("#a{i}"), *attribute)
            .expression_attribute_values(format!(":a{i}"), AttributeValue::N(amount.to_string()));
    }
    TransactWriteItem::builder()
        .update(update.build().unwrap())
        .build()
}

/// A view of per-aggregate totals: each aggregate's sum, and how many
/// events made them (the transactional tests' and benchmarks' view).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub totals: std::collections::BTreeMap<String, i64>,
    pub events: u64,
}

/// One versioned write per key of `groups`, as a transactional handler
/// merges its changes: the key's stored [`Totals`] (or none), plus each of
/// its events' `amount`.
pub async fn totals_writes<A: cqrs_es::Aggregate>(
    views: &dynamo_es::projection::TypedViews<Totals>,
    groups: std::collections::BTreeMap<String, Vec<&cqrs_es::EventEnvelope<A>>>,
    amount: fn(&cqrs_es::EventEnvelope<A>) -> i64,
) -> Result<Vec<aws_sdk_dynamodb::types::TransactWriteItem>, dynamo_es::projection::Error> {
    let mut writes = Vec::new();
    for (key, events) in groups {
        let (mut view, read) = match views.load_versioned(&key).await? {
            Some((view, version)) => (view, Some(version)),
            None => (Totals::default(), None),
        };
        for event in events {
            *view.totals.entry(event.aggregate_id.clone()).or_default() += amount(event);
            view.events += 1;
        }
        writes.push(views.save_write(&key, &view, read)?);
    }
    Ok(writes)
}

/// `err`'s message names each of `names` (the item, table or owner a
/// typed error is about).
pub fn assert_names(err: &impl std::fmt::Display, names: &[&str]) {
    let message = err.to_string();
    for name in names {
        assert!(message.contains(name), "{name:?} not named in: {message}");
    }
}

/// Implements `TransactionalProjection<$aggregate>` for `$handler`: the
/// header the tests' handlers share; `$events` names the batch in `$body`.
#[allow(unused_macros)]
macro_rules! transactional_writes {
    ($handler:ty, $aggregate:ty, |$self_:ident, $events:pat_param| $body:block) => {
        #[async_trait::async_trait]
        impl dynamo_es::projection::TransactionalProjection<$aggregate> for $handler {
            async fn writes(
                &$self_,
                $events: &[cqrs_es::EventEnvelope<$aggregate>],
            ) -> Result<
                Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
                dynamo_es::projection::Error,
            > $body
        }
    };
}
#[allow(unused_imports)]
pub(crate) use transactional_writes;

/// The `LastSequence` a transactional projection recorded for `order`.
pub async fn applied_sequence(
    client: &Client,
    store: &dynamo_es::projection::CheckpointStore,
    order: &str,
) -> Option<u64> {
    let key = format!("{}#!seq#Account#{order}", store.projection());
    let item = client
        .get_item()
        .table_name(store.table())
        .key("LeaseKey", dynamo_es::item::s(key))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item?;
    Some(item["LastSequence"].as_n().unwrap().parse().unwrap())
}
