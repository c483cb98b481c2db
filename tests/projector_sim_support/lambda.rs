//! A simulated Lambda event source mapping over the fake stream: it reads
//! each shard after its parent, in batches, hands each batch to
//! `projection::lambda::handle` in Lambda's JSON shape, and on a partial
//! batch response retries from the record it names, as Lambda does with
//! `ReportBatchItemFailures`.
//!
//! **Invariant:** the mapping advances a shard's position only past records
//! the handler reported applied; a shard's children are read only after
//! the shard was read to its end.

use std::collections::{HashMap, HashSet};

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, Record, ShardIteratorType};
use dynamo_es::projection::{lambda, Dispatcher};
use serde_json::{json, Value};

use super::world::World;
use crate::common::Account;

/// Retries of one failing batch before the mapping gives up.
const RETRIES: usize = 5;

/// The mapping's state: per shard, the last record processed; finished shards.
#[derive(Debug, Default)]
pub struct Mapping {
    position: HashMap<String, String>,
    finished: HashSet<String>,
}

impl Mapping {
    /// Reads every shard it can to its end; `Err` says what went wrong.
    pub async fn run(
        &mut self,
        world: &World,
        dispatcher: &Dispatcher<Account>,
    ) -> Result<(), String> {
        let client = world.fake.client();
        let arn = world.fake.stream_arn();
        loop {
            let described = client
                .describe_stream()
                .stream_arn(&arn)
                .send()
                .await
                .map_err(|e| format!("DescribeStream: {e:?}"))?;
            let shards = described
                .stream_description
                .map(|d| d.shards.unwrap_or_default())
                .unwrap_or_default();
            let ids: HashSet<String> = shards.iter().filter_map(|s| s.shard_id.clone()).collect();
            let ready: Vec<String> = shards
                .iter()
                .filter(|s| {
                    let id = s.shard_id.as_deref().unwrap_or_default();
                    !self.finished.contains(id)
                        && s.parent_shard_id
                            .as_ref()
                            .is_none_or(|p| !ids.contains(p) || self.finished.contains(p))
                })
                .filter_map(|s| s.shard_id.clone())
                .collect();
            let mut progressed = false;
            for shard in &ready {
                progressed |= self
                    .read_shard(&client, &arn, shard, world.batch_size, dispatcher)
                    .await?;
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Reads `shard` to its end; `true` if it finished (its children may
    /// now be ready).
    async fn read_shard(
        &mut self,
        client: &aws_sdk_dynamodbstreams::Client,
        arn: &str,
        shard: &str,
        batch_size: i32,
        dispatcher: &Dispatcher<Account>,
    ) -> Result<bool, String> {
        let mut failures = 0;
        'fresh: loop {
            let request = client.get_shard_iterator().stream_arn(arn).shard_id(shard);
            let request = match self.position.get(shard) {
                Some(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(sequence),
                None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            let mut iterator = request
                .send()
                .await
                .map_err(|e| format!("GetShardIterator {shard}: {e:?}"))?
                .shard_iterator;
            while let Some(current) = iterator {
                let page = client
                    .get_records()
                    .shard_iterator(current)
                    .limit(batch_size)
                    .send()
                    .await
                    .map_err(|e| format!("GetRecords {shard}: {e:?}"))?;
                let records = page.records.unwrap_or_default();
                if records.is_empty() {
                    if page.next_shard_iterator.is_none() {
                        break;
                    }
                    return Ok(false);
                }
                let event: Event = serde_json::from_value(lambda_event(arn, &records))
                    .map_err(|e| format!("the Lambda event does not parse: {e}"))?;
                let response = lambda::handle(dispatcher, event).await;
                let sequences: Vec<String> = records
                    .iter()
                    .filter_map(|r| r.dynamodb.as_ref()?.sequence_number.clone())
                    .collect();
                match response.batch_item_failures.first() {
                    None => {
                        if let Some(last) = sequences.last() {
                            self.position.insert(shard.to_string(), last.clone());
                        }
                        iterator = page.next_shard_iterator;
                    }
                    Some(failure) => {
                        failures += 1;
                        if failures > RETRIES {
                            return Err(format!("batch of {shard} kept failing: {failure:?}"));
                        }
                        let failed = failure.item_identifier.clone();
                        let at = sequences
                            .iter()
                            .position(|s| Some(s) == failed.as_ref())
                            .ok_or_else(|| {
                                format!("the failure names no record of the batch: {failed:?}")
                            })?;
                        if let Some(done) = at.checked_sub(1).and_then(|i| sequences.get(i)) {
                            self.position.insert(shard.to_string(), done.clone());
                        }
                        continue 'fresh;
                    }
                }
            }
            self.finished.insert(shard.to_string());
            return Ok(true);
        }
    }
}

/// A stream attribute value in Lambda's JSON shape.
fn lambda_value(value: &StreamValue) -> Value {
    use aws_smithy_types::base64::encode;
    match value {
        StreamValue::S(v) => json!({ "S": v }),
        StreamValue::N(v) => json!({ "N": v }),
        StreamValue::B(v) => json!({ "B": encode(v.as_ref()) }),
        StreamValue::Ss(v) => json!({ "SS": v }),
        StreamValue::Ns(v) => json!({ "NS": v }),
        StreamValue::Bs(v) => {
            json!({ "BS": v.iter().map(|b| encode(b.as_ref())).collect::<Vec<_>>() })
        }
        StreamValue::M(v) => json!({ "M": lambda_image(v) }),
        StreamValue::L(v) => json!({ "L": v.iter().map(lambda_value).collect::<Vec<_>>() }),
        StreamValue::Bool(v) => json!({ "BOOL": v }),
        StreamValue::Null(v) => json!({ "NULL": v }),
        other => panic!("unexpected attribute value {other:?}"),
    }
}

fn lambda_image(image: &HashMap<String, StreamValue>) -> Value {
    Value::Object(
        image
            .iter()
            .map(|(name, value)| (name.clone(), lambda_value(value)))
            .collect(),
    )
}

/// A Lambda DynamoDB stream event holding `records`, as Lambda sends it.
fn lambda_event(arn: &str, records: &[Record]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|record| {
            let change = record.dynamodb.as_ref().expect("a dynamodb part");
            let mut dynamodb = json!({
                "ApproximateCreationDateTime": change
                    .approximate_creation_date_time
                    .map(|t| t.as_secs_f64())
                    .unwrap_or_default(),
                "Keys": lambda_image(change.keys.as_ref().expect("keys")),
                "SequenceNumber": change.sequence_number.as_ref().expect("a sequence number"),
                "SizeBytes": change.size_bytes.unwrap_or(100),
                "StreamViewType": "NEW_IMAGE",
            });
            if let Some(image) = &change.new_image {
                dynamodb["NewImage"] = lambda_image(image);
            }
            json!({
                "eventID": record.event_id.as_ref().expect("an event id"),
                "eventName": record.event_name.as_ref().expect("an event name").as_str(),
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": dynamodb,
                "eventSourceARN": arn,
            })
        })
        .collect();
    json!({ "Records": records })
}
