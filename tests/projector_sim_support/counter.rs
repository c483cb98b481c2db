//! A transactional projection in the simulated world: per aggregate, how
//! many events it applied and their total (items `count#{id}` of the view
//! table), and one item `count#all` counting every event, committed with
//! the applied sequences and the shard position by `Transactional`.
//!
//! **Invariant checked after each history:** each aggregate's count and
//! total equal those of its exactly-once view (the replay of its events),
//! and `count#all` is their sum: no event's effect applied twice or lost.

use std::collections::{BTreeMap, HashMap};

use cqrs_es::EventEnvelope;
use dynamo_es::aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem};
use dynamo_es::aws_sdk_dynamodb::Client;
use dynamo_es::item::VIEW_ID;
use dynamo_es::projection::{Error, TransactionalProjection};

use crate::common::{Account, AccountEvent};
use crate::projection_common::add_to;

/// The counters, in `table`.
#[derive(Clone)]
pub struct Counter {
    pub client: Client,
    pub table: String,
}

fn add(table: &str, key: &str, count: u64, total: i64) -> TransactWriteItem {
    let count = i64::try_from(count).unwrap();
    add_to(table, key, &[("Count", count), ("Total", total)])
}

#[async_trait::async_trait]
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

    /// The aggregate's counter goes, and leaves `count#all`.
    async fn deleted(&self, id: &str, _last: usize) -> Result<Vec<TransactWriteItem>, Error> {
        let key = format!("count#{id}");
        let Some((count, total)) = self.read(&key).await else {
            return Ok(Vec::new());
        };
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(VIEW_ID, AttributeValue::S(key))
            .build()
            .unwrap();
        let count = i64::try_from(count).unwrap();
        Ok(vec![
            TransactWriteItem::builder().delete(delete).build(),
            add_to(
                &self.table,
                "count#all",
                &[("Count", -count), ("Total", -total)],
            ),
        ])
    }
}

impl Counter {
    /// One counter's count and total (a consistent `GetItem`).
    async fn read(&self, key: &str) -> Option<(u64, i64)> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(VIEW_ID, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .expect("a counter")
            .item?;
        counted(&item).map(|(_, counted)| counted)
    }

    /// Every counter's count and total, by key (one consistent `Scan`).
    pub async fn read_all(&self) -> HashMap<String, (u64, i64)> {
        let items = dynamo_es::testing::scan_all(&self.client, &self.table)
            .await
            .expect("the counters");
        items.iter().filter_map(counted).collect()
    }
}

/// A counter item's key, count and total (`None` for another item).
fn counted(item: &HashMap<String, AttributeValue>) -> Option<(String, (u64, i64))> {
    let number = |name: &str| {
        item.get(name)
            .map(|v| v.as_n().unwrap().parse::<i64>().unwrap())
    };
    let count = number("Count")?;
    let key = item.get(VIEW_ID)?.as_s().ok()?.clone();
    let total = number("Total").unwrap_or_default();
    Some((key, (u64::try_from(count).unwrap(), total)))
}
