//! Shared by the projection tests: tables with a stream on the embedded
//! emulator, and every record the stream holds, read with the real
//! `aws-sdk-dynamodbstreams` client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use dynamo_es::projection::ChangeRecord;
use dynamo_es::tables::enable_stream;
use dynamo_es::testing::{dynamodb, endpoint, TestTables};

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
    let streams = streams_client();
    let description = streams
        .describe_stream()
        .stream_arn(arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    let mut records = Vec::new();
    for shard in description.shards() {
        let shard_id = shard.shard_id().unwrap().to_string();
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(&shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(current) = iterator {
            let page = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .unwrap();
            let empty = page.records().is_empty();
            records.extend(
                page.records
                    .unwrap_or_default()
                    .into_iter()
                    .map(|record| (shard_id.clone(), record)),
            );
            // An open shard always returns a next iterator: stop at its end.
            iterator = if empty {
                None
            } else {
                page.next_shard_iterator
            };
        }
    }
    records
}

/// Every record of the stream `arn` as [`ChangeRecord`]s, in stream order.
pub async fn change_records(arn: &str) -> Vec<ChangeRecord> {
    stream_records(arn)
        .await
        .into_iter()
        .map(|(shard, record)| ChangeRecord::from_stream(&shard, record).unwrap())
        .collect()
}
