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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::config::retry::RetryConfig;
use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use cqrs_es::persist::SerializedEvent;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::item::{event_to_item, Item, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID};
use crate::Codec;

mod caught_up;

/// The stream ARN the fake serves unless told otherwise.
pub const FAKE_STREAM_ARN: &str =
    "arn:aws:dynamodb:us-east-1:000000000000:table/fake-events/stream/2026-01-01T00:00:00.000";

/// Sequence numbers are decimal and at least 21 digits long, as DynamoDB's.
const SEQUENCE_DIGITS: usize = 21;

/// The largest `GetRecords` page, as DynamoDB's.
const MAX_RECORDS: usize = 1000;

/// One `GetShardIterator` request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorRequest {
    /// The shard.
    pub shard_id: String,
    /// `TRIM_HORIZON`, `LATEST`, `AT_SEQUENCE_NUMBER` or `AFTER_SEQUENCE_NUMBER`.
    pub iterator_type: String,
    /// The sequence number, for the two types that take one.
    pub sequence_number: Option<String>,
}

#[derive(Debug, Clone)]
struct FakeRecord {
    sequence: u128,
    created: SystemTime,
    keys: Item,
    new_image: Item,
}

#[derive(Debug)]
struct FakeShard {
    id: String,
    parent: Option<String>,
    starting: u128,
    records: Vec<FakeRecord>,
    /// Set when the shard is closed: no record is added after it.
    ending: Option<u128>,
    /// How many of the first records were trimmed away.
    trimmed: usize,
    /// Trimmed away entirely: no longer in the stream's description.
    removed: bool,
}

#[derive(Debug)]
struct Model {
    stream_arn: String,
    shards: Vec<FakeShard>,
    next_sequence: u128,
    /// Iterators carry the generation they were issued in; older ones expired.
    generation: u64,
    page_size: usize,
    calls: HashMap<String, usize>,
    iterator_requests: Vec<IteratorRequest>,
    /// Per shard: `GetRecords` answers with no record and a next iterator
    /// (the reader was at the shard's end). See [`caught_up`].
    caught_up: HashMap<String, usize>,
}

/// A fake DynamoDB Streams endpoint on `127.0.0.1`, serving one stream from
/// a model the test scripts (see the [module docs](self)).
///
/// It runs on tasks of the caller's runtime; cloning shares the model.
#[derive(Debug, Clone)]
pub struct FakeStreams {
    endpoint: String,
    model: Arc<Mutex<Model>>,
}

/// What one request is answered with: a status and a JSON body.
type Answer = (u16, Value);

fn fault(kind: &str, message: impl Into<String>) -> Answer {
    let message: String = message.into();
    (
        400,
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message}),
    )
}

fn format_sequence(sequence: u128) -> String {
    format!("{sequence:0width$}", width = SEQUENCE_DIGITS)
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

/// Serves one keep-alive connection until the client closes it.
async fn serve_connection(socket: TcpStream, model: Arc<Mutex<Model>>) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        if !matches!(reader.read_line(&mut line).await, Ok(n) if n > 0) {
            return;
        }
        let (mut length, mut target) = (0usize, String::new());
        loop {
            line.clear();
            if !matches!(reader.read_line(&mut line).await, Ok(n) if n > 0) {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "x-amz-target" => target = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let (status, answer) = {
            let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
            model.answer(&target, &body)
        };
        let text = answer.to_string();
        let reason = if status == 200 { "OK" } else { "Bad Request" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/x-amz-json-1.0\r\n\
             content-length: {}\r\n\r\n{text}",
            text.len()
        );
        if write.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

impl Model {
    fn answer(&mut self, target: &str, body: &[u8]) -> Answer {
        let operation = target
            .strip_prefix("DynamoDBStreams_20120810.")
            .unwrap_or(target)
            .to_string();
        *self.calls.entry(operation.clone()).or_default() += 1;
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return fault("SerializationException", "the body is not JSON");
        };
        let field = |name: &str| {
            request
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let limit = request
            .get("Limit")
            .and_then(Value::as_u64)
            .and_then(|l| usize::try_from(l).ok());
        match operation.as_str() {
            "ListStreams" => (
                200,
                json!({"Streams": [{"StreamArn": self.stream_arn, "TableName": "fake-events",
                                    "StreamLabel": "2026-01-01T00:00:00.000"}]}),
            ),
            "DescribeStream" => self.describe(field("ExclusiveStartShardId"), limit),
            "GetShardIterator" => self.iterator(
                field("ShardId").unwrap_or_default(),
                field("ShardIteratorType").unwrap_or_default(),
                field("SequenceNumber"),
            ),
            "GetRecords" => {
                let iterator = field("ShardIterator").unwrap_or_default();
                let answer = self.records(&iterator, limit);
                self.note_caught_up(&iterator, &answer);
                answer
            }
            _ => fault("UnknownOperationException", operation),
        }
    }

    fn shard(&self, shard_id: &str) -> Option<&FakeShard> {
        self.shards.iter().find(|s| s.id == shard_id && !s.removed)
    }

    fn describe(&self, start_after: Option<String>, limit: Option<usize>) -> Answer {
        let listed: Vec<&FakeShard> = self.shards.iter().filter(|s| !s.removed).collect();
        let from = match &start_after {
            Some(id) => listed
                .iter()
                .position(|s| &s.id == id)
                .map_or(0, |at| at + 1),
            None => 0,
        };
        let take = limit.unwrap_or(self.page_size).min(self.page_size).max(1);
        let page: Vec<&&FakeShard> = listed.iter().skip(from).take(take).collect();
        let more = from + page.len() < listed.len();
        let shards: Vec<Value> = page
            .iter()
            .map(|shard| {
                let mut range = json!({"StartingSequenceNumber": format_sequence(shard.starting)});
                if let (Some(ending), Some(range)) = (shard.ending, range.as_object_mut()) {
                    range.insert(
                        "EndingSequenceNumber".into(),
                        format_sequence(ending).into(),
                    );
                }
                let mut value = json!({"ShardId": shard.id, "SequenceNumberRange": range});
                if let (Some(parent), Some(value)) = (&shard.parent, value.as_object_mut()) {
                    value.insert("ParentShardId".into(), parent.clone().into());
                }
                value
            })
            .collect();
        let mut description = json!({
            "StreamArn": self.stream_arn,
            "StreamLabel": "2026-01-01T00:00:00.000",
            "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_IMAGE",
            "TableName": "fake-events",
            "KeySchema": [{"AttributeName": AGGREGATE_TYPE_AND_ID, "KeyType": "HASH"},
                          {"AttributeName": AGGREGATE_ID_SEQUENCE, "KeyType": "RANGE"}],
            "Shards": shards,
        });
        if let (true, Some(last), Some(object)) = (more, page.last(), description.as_object_mut()) {
            object.insert("LastEvaluatedShardId".into(), last.id.clone().into());
        }
        (200, json!({ "StreamDescription": description }))
    }

    fn iterator(&mut self, shard_id: String, kind: String, sequence: Option<String>) -> Answer {
        self.iterator_requests.push(IteratorRequest {
            shard_id: shard_id.clone(),
            iterator_type: kind.clone(),
            sequence_number: sequence.clone(),
        });
        let Some(shard) = self.shard(&shard_id) else {
            return fault("ResourceNotFoundException", format!("no shard {shard_id}"));
        };
        let parsed = sequence.as_deref().and_then(|s| s.parse::<u128>().ok());
        let position = match (kind.as_str(), parsed) {
            ("TRIM_HORIZON", None) => shard.trimmed,
            ("LATEST", None) => shard.records.len(),
            ("AT_SEQUENCE_NUMBER", Some(at)) => shard.records.partition_point(|r| r.sequence < at),
            ("AFTER_SEQUENCE_NUMBER", Some(at)) => {
                shard.records.partition_point(|r| r.sequence <= at)
            }
            _ => {
                return fault(
                    "ValidationException",
                    format!("bad iterator {kind} {sequence:?}"),
                )
            }
        };
        if position < shard.trimmed {
            return fault(
                "TrimmedDataAccessException",
                format!("{shard_id} at {sequence:?} was trimmed"),
            );
        }
        let iterator = format!("{shard_id}|{position}|{}", self.generation);
        (200, json!({ "ShardIterator": iterator }))
    }

    fn records(&self, iterator: &str, limit: Option<usize>) -> Answer {
        let mut parts = iterator.rsplitn(3, '|');
        let (Some(generation), Some(position), Some(shard_id)) = (
            parts.next().and_then(|g| g.parse::<u64>().ok()),
            parts.next().and_then(|p| p.parse::<usize>().ok()),
            parts.next(),
        ) else {
            return fault("ValidationException", format!("bad iterator {iterator}"));
        };
        if generation < self.generation {
            return fault("ExpiredIteratorException", format!("{iterator} expired"));
        }
        let Some(shard) = self.shard(shard_id) else {
            return fault("ResourceNotFoundException", format!("no shard {shard_id}"));
        };
        if position < shard.trimmed {
            return fault(
                "TrimmedDataAccessException",
                format!("{shard_id} was trimmed"),
            );
        }
        let take = limit.unwrap_or(MAX_RECORDS).clamp(1, MAX_RECORDS);
        let page = shard.records.iter().skip(position).take(take);
        let records: Vec<Value> = page.map(|r| record_json(r, &self.stream_arn)).collect();
        let next = position + records.len();
        let mut answer = json!({ "Records": records });
        let at_end = next >= shard.records.len();
        if !(shard.ending.is_some() && at_end) {
            if let Some(object) = answer.as_object_mut() {
                let next = format!("{shard_id}|{next}|{}", self.generation);
                object.insert("NextShardIterator".into(), next.into());
            }
        }
        (200, answer)
    }
}

fn record_json(record: &FakeRecord, stream_arn: &str) -> Value {
    let created = record
        .created
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    // Epoch seconds with millisecond precision, as a JSON number.
    let created =
        Duration::from_millis(u64::try_from(created.as_millis()).unwrap_or(0)).as_secs_f64();
    json!({
        "eventID": format!("event-{}", record.sequence),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": stream_arn,
        "dynamodb": {
            "ApproximateCreationDateTime": created,
            "Keys": item_json(&record.keys),
            "NewImage": item_json(&record.new_image),
            "SequenceNumber": format_sequence(record.sequence),
            "SizeBytes": 100,
            "StreamViewType": "NEW_IMAGE",
        }
    })
}

fn item_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), attribute_json(value)))
            .collect::<Map<_, _>>(),
    )
}

/// An attribute value in DynamoDB's JSON wire form.
fn attribute_json(value: &AttributeValue) -> Value {
    use aws_smithy_types::base64::encode;
    let (tag, value) = match value {
        AttributeValue::S(s) => ("S", json!(s)),
        AttributeValue::N(n) => ("N", json!(n)),
        AttributeValue::B(b) => ("B", json!(encode(b.as_ref()))),
        AttributeValue::Bool(b) => ("BOOL", json!(b)),
        AttributeValue::Null(n) => ("NULL", json!(n)),
        AttributeValue::Ss(ss) => ("SS", json!(ss)),
        AttributeValue::Ns(ns) => ("NS", json!(ns)),
        AttributeValue::Bs(bs) => ("BS", bs.iter().map(|b| encode(b.as_ref())).collect()),
        AttributeValue::L(list) => ("L", list.iter().map(attribute_json).collect()),
        AttributeValue::M(map) => ("M", item_json(map)),
        _ => ("NULL", json!(true)),
    };
    json!({ tag: value })
}
