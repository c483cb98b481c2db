//! The fake's HTTP side: one keep-alive connection at a time per task,
//! each request answered from the model as it is when the request arrives,
//! in the JSON 1.0 protocol of DynamoDB Streams (errors as DynamoDB words
//! them: `ResourceNotFoundException`, `ExpiredIteratorException`,
//! `TrimmedDataAccessException`, ...).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::model::{format_sequence, FakeRecord, FakeShard, IteratorRequest, Model, MAX_RECORDS};
use crate::item::{Item, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID};

/// What one request is answered with: a status and a JSON body.
pub(super) type Answer = (u16, Value);

fn fault(kind: &str, message: impl Into<String>) -> Answer {
    let message: String = message.into();
    (
        400,
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message}),
    )
}

/// Serves one keep-alive connection until the client closes it.
pub(super) async fn serve_connection(socket: TcpStream, model: Arc<Mutex<Model>>) {
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
