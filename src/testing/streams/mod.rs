//! A fake DynamoDB Streams endpoint, scripted by the test: several shards
//! with parent/child lineage, closed shards, iterators that expire, data
//! trimmed away, and shards that appear while a reader runs; and a
//! Streams client for an endpoint ([`client_for`]) and a bare reader of a
//! whole stream ([`read_all`]).
//!
//! The emulator models one shard per table that never closes or trims, and
//! its iterators never expire; this endpoint models the rest, and the real
//! `aws-sdk-dynamodbstreams` client talks to it over HTTP/1.1 (JSON 1.0,
//! `X-Amz-Target: DynamoDBStreams_20120810.*`). It serves `DescribeStream`
//! (paged by `Limit` and [`FakeStreams::with_page_size`]),
//! `GetShardIterator`, `GetRecords` and `ListStreams`.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dynamo_es::testing::streams::FakeStreams;
//!
//! let fake = FakeStreams::start().await?;
//! fake.add_shard("shard-0", None);
//! let client = fake.client();
//! let described = client.describe_stream().stream_arn(fake.stream_arn()).send().await?;
//! let shards = described.stream_description().map(|d| d.shards().len());
//! assert_eq!(shards, Some(1));
//! # Ok(()) }
//! ```
//!
//! **Invariant:** the model changes only through the methods of
//! [`FakeStreams`]; every answer is computed from the model as it is when
//! the request arrives, so a record once served keeps its sequence number,
//! and records come back in the order they were pushed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use aws_sdk_dynamodbstreams::config::retry::RetryConfig;
use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use cqrs_es::persist::SerializedEvent;
use tokio::net::TcpListener;

mod caught_up;
mod model;
mod server;

pub use model::IteratorRequest;
use model::{format_sequence, FakeRecord, FakeShard, Model, MAX_RECORDS};
use server::serve_connection;

use crate::item::{event_to_item, Item, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID};
use crate::Codec;

/// The stream ARN the fake serves unless told otherwise.
pub const FAKE_STREAM_ARN: &str =
    "arn:aws:dynamodb:us-east-1:000000000000:table/fake-events/stream/2026-01-01T00:00:00.000";

/// A fake DynamoDB Streams endpoint on `127.0.0.1`, serving one stream from
/// a model the test scripts (see the [module docs](self)).
///
/// It runs on tasks of the caller's runtime; cloning shares the model.
#[derive(Debug, Clone)]
pub struct FakeStreams {
    endpoint: String,
    model: Arc<Mutex<Model>>,
}

impl FakeStreams {
    /// Starts the endpoint with no shards, serving [`FAKE_STREAM_ARN`].
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let model = Arc::new(Mutex::new(Model {
            stream_arn: FAKE_STREAM_ARN.to_string(),
            shards: Vec::new(),
            next_sequence: 100,
            generation: 0,
            page_size: 100,
            calls: HashMap::new(),
            iterator_requests: Vec::new(),
            caught_up: HashMap::new(),
        }));
        let serving = model.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_connection(socket, serving.clone()));
            }
        });
        Ok(FakeStreams { endpoint, model })
    }

    /// Answers `DescribeStream` with at most `shards` shards a page (default 100).
    pub fn with_page_size(self, shards: usize) -> Self {
        self.model().page_size = shards.max(1);
        self
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The stream's ARN.
    pub fn stream_arn(&self) -> String {
        self.model().stream_arn.clone()
    }

    /// A Streams client for this endpoint (see [`client_for`]) with no
    /// retries: a fault reaches the caller as it was served.
    pub fn client(&self) -> aws_sdk_dynamodbstreams::Client {
        let config = config_for(&self.endpoint).retry_config(RetryConfig::disabled());
        aws_sdk_dynamodbstreams::Client::from_conf(config.build())
    }

    /// Adds an open shard (a child of `parent`, if given); it appears in the
    /// next `DescribeStream`.
    pub fn add_shard(&self, shard_id: &str, parent: Option<&str>) {
        let mut model = self.model();
        let starting = model.next_sequence;
        model.shards.push(FakeShard {
            id: shard_id.to_string(),
            parent: parent.map(str::to_string),
            starting,
            records: Vec::new(),
            ending: None,
            trimmed: 0,
            removed: false,
        });
    }

    /// Appends a record inserting `new_image` (keys `AggregateTypeAndId` and
    /// `AggregateIdSequence`) to an open shard, created now; returns its
    /// sequence number, or `None` if the shard is unknown or closed.
    pub fn push(&self, shard_id: &str, new_image: Item) -> Option<String> {
        self.push_at(shard_id, new_image, SystemTime::now())
    }

    /// [`push`](Self::push) with an explicit creation time.
    pub fn push_at(&self, shard_id: &str, new_image: Item, created: SystemTime) -> Option<String> {
        let mut model = self.model();
        let sequence = model.next_sequence;
        let shard = model
            .shards
            .iter_mut()
            .find(|s| s.id == shard_id && s.ending.is_none() && !s.removed)?;
        let keys = [AGGREGATE_TYPE_AND_ID, AGGREGATE_ID_SEQUENCE]
            .into_iter()
            .filter_map(|key| Some((key.to_string(), new_image.get(key)?.clone())))
            .collect();
        shard.records.push(FakeRecord {
            sequence,
            created,
            keys,
            new_image,
        });
        model.next_sequence += 1;
        Some(format_sequence(sequence))
    }

    /// Appends the item the store writes for `event` (with `codec`).
    pub fn push_event(
        &self,
        shard_id: &str,
        event: &SerializedEvent,
        codec: &Codec,
    ) -> crate::Result<Option<String>> {
        let (item, _) = event_to_item(event, codec)?;
        Ok(self.push(shard_id, item))
    }

    /// Closes a shard: its range gets an `EndingSequenceNumber`, and
    /// `GetRecords` at its end returns no `NextShardIterator`.
    pub fn close(&self, shard_id: &str) {
        let mut model = self.model();
        let next = model.next_sequence;
        if let Some(shard) = model.shards.iter_mut().find(|s| s.id == shard_id) {
            let last = shard.records.last().map_or(shard.starting, |r| r.sequence);
            shard.ending = Some(last.max(shard.starting));
        }
        // Keeps later sequence numbers above every closed range.
        model.next_sequence = next + 1;
    }

    /// Trims the first `records` records of a shard away: reading them
    /// fails with `TrimmedDataAccessException`, `TRIM_HORIZON` starts after them.
    pub fn trim(&self, shard_id: &str, records: usize) {
        if let Some(shard) = self.model().shards.iter_mut().find(|s| s.id == shard_id) {
            shard.trimmed = records.min(shard.records.len());
        }
    }

    /// Removes a shard from the stream's description, as retention does to
    /// a closed shard 24 hours after it closed.
    pub fn remove(&self, shard_id: &str) {
        if let Some(shard) = self.model().shards.iter_mut().find(|s| s.id == shard_id) {
            shard.removed = true;
        }
    }

    /// Expires every shard iterator issued so far.
    pub fn expire_iterators(&self) {
        self.model().generation += 1;
    }

    /// How many requests of `operation` (e.g. `"GetRecords"`) were served.
    pub fn calls(&self, operation: &str) -> usize {
        self.model().calls.get(operation).copied().unwrap_or(0)
    }

    /// Every `GetShardIterator` request served, in order.
    pub fn iterator_requests(&self) -> Vec<IteratorRequest> {
        self.model().iterator_requests.clone()
    }
}

/// A DynamoDB Streams client for `endpoint` (the embedded emulator's, or
/// a [`FakeStreams`]): region `us-east-1`, static test credentials, the
/// SDK's standard retries.
///
/// ```no_run
/// # fn demo() -> dynamo_es::Result<()> {
/// let streams = dynamo_es::testing::streams::client_for(&dynamo_es::testing::endpoint()?);
/// # Ok(()) }
/// ```
pub fn client_for(endpoint: &str) -> aws_sdk_dynamodbstreams::Client {
    aws_sdk_dynamodbstreams::Client::from_conf(config_for(endpoint).build())
}

/// Every record of the stream `stream_arn`, shard by shard (in
/// `DescribeStream`'s order, its first page), each from the trim horizon,
/// with its shard id: bare `GetRecords` calls of up to 1,000 records. A
/// shard is read until a page comes back empty (an open shard always
/// returns a next iterator) or it has no next iterator (a closed one).
///
/// ```no_run
/// # async fn demo(arn: &str) -> Result<(), aws_sdk_dynamodbstreams::Error> {
/// use dynamo_es::testing::{endpoint, streams};
///
/// let client = streams::client_for(&endpoint().expect("emulator"));
/// for (shard_id, record) in streams::read_all(&client, arn).await? {
///     println!("{shard_id}: {:?}", record.event_name());
/// }
/// # Ok(()) }
/// ```
pub async fn read_all(
    client: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Result<Vec<(String, Record)>, aws_sdk_dynamodbstreams::Error> {
    let described = client
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await?;
    let shards = described
        .stream_description
        .map(|description| description.shards.unwrap_or_default())
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard_id in shards.into_iter().filter_map(|shard| shard.shard_id) {
        let mut iterator = client
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(&shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator;
        while let Some(current) = iterator {
            let page = client
                .get_records()
                .shard_iterator(current)
                .limit(i32::try_from(MAX_RECORDS).unwrap_or(i32::MAX))
                .send()
                .await?;
            let page_records = page.records.unwrap_or_default();
            if page_records.is_empty() {
                break;
            }
            records.extend(
                page_records
                    .into_iter()
                    .map(|record| (shard_id.clone(), record)),
            );
            iterator = page.next_shard_iterator;
        }
    }
    Ok(records)
}

fn config_for(endpoint: &str) -> aws_sdk_dynamodbstreams::config::Builder {
    aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(endpoint)
}
