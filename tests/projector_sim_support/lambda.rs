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
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use dynamo_es::projection::{lambda, Dispatcher};

use super::world::World;
use crate::common::Account;
use crate::lambda_json::lambda_event;

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
