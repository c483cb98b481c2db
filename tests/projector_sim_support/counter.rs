//! A transactional projection in the simulated world: per aggregate, how
//! many events it applied and their total (items `count#{id}` of the view
//! table), and one item `count#all` counting every event, committed with
//! the applied sequences and the shard position by `Transactional`.
//!
//! **Invariant checked after each history:** each aggregate's count and
//! total equal those of its exactly-once view (the replay of its events),
//! and `count#all` is their sum: no event's effect applied twice or lost.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cqrs_es::EventEnvelope;
use dynamo_es::aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use dynamo_es::aws_sdk_dynamodb::Client;
use dynamo_es::item::{s, VIEW_ID};
use dynamo_es::projection::{Error, TransactionalProjection};

use crate::common::{Account, AccountEvent};

/// The counters, in `table`.
#[derive(Clone)]
pub struct Counter {
    pub client: Client,
    pub table: String,
}

fn add(table: &str, key: &str, count: u64, total: i64) -> TransactWriteItem {
    let update = Update::builder()
        .table_name(table)
        .key(VIEW_ID, s(key))
        .update_expression("ADD #count :count, #total :total")
        .expression_attribute_names("#count", "Count")
        .expression_attribute_names("#total", "Total")
        .expression_attribute_values(":count", AttributeValue::N(count.to_string()))
        .expression_attribute_values(":total", AttributeValue::N(total.to_string()))
        .build()
        .unwrap();
    TransactWriteItem::builder().update(update).build()
}

#[async_trait]
impl TransactionalProjection<Account> for Counter {
    async fn writes(
        &self,
        events: &[EventEnvelope<Account>],
    ) -> Result<Vec<TransactWriteItem>, Error> {
        // One write per item: merged per aggregate.
        let mut by_aggregate: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
        for event in events {
            let amount = match &event.payload {
                AccountEvent::Deposited { amount } => *amount,
                AccountEvent::Noted { .. } => 0,
            };
            let entry = by_aggregate.entry(&event.aggregate_id).or_default();
            entry.0 += 1;
            entry.1 += amount;
        }
        let mut writes: Vec<TransactWriteItem> = by_aggregate
            .iter()
            .map(|(id, (count, total))| add(&self.table, &format!("count#{id}"), *count, *total))
            .collect();
        let (count, total) = by_aggregate
            .values()
            .fold((0, 0), |(c, t), (count, total)| (c + count, t + total));
        writes.push(add(&self.table, "count#all", count, total));
        Ok(writes)
    }
}

impl Counter {
    /// The count and total stored at `key` ((0, 0) if none).
    pub async fn read(&self, key: &str) -> (u64, i64) {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(VIEW_ID, s(key))
            .consistent_read(true)
            .send()
            .await
            .expect("the counter")
            .item
            .unwrap_or_default();
        let number = |name: &str| item.get(name).map(|v| v.as_n().unwrap().clone());
        (
            number("Count").map_or(0, |n| n.parse().unwrap()),
            number("Total").map_or(0, |n| n.parse().unwrap()),
        )
    }
}
