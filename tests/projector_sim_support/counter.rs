//! A transactional projection in the simulated world: per aggregate, how
//! many events it applied and their total (items `count#{id}` of the view
//! table), and one item `count#all` counting every event, committed with
//! the applied sequences and the shard position by `Transactional`.
//!
//! **Invariant checked after each history:** each aggregate's count and
//! total equal those of its exactly-once view (the replay of its events),
//! and `count#all` is their sum: no event's effect applied twice or lost.

use std::collections::{BTreeMap, HashMap};

use dynamo_es::aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use dynamo_es::aws_sdk_dynamodb::Client;
use dynamo_es::item::VIEW_ID;

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

crate::projection_common::transactional_writes!(Counter, Account, |self, events| {
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
});

impl Counter {
    /// Every counter's count and total, by key (one consistent `Scan`).
    pub async fn read_all(&self) -> HashMap<String, (u64, i64)> {
        let items = dynamo_es::testing::scan_all(&self.client, &self.table)
            .await
            .expect("the counters");
        let number = |item: &HashMap<String, AttributeValue>, name: &str| {
            item.get(name)
                .map(|v| v.as_n().unwrap().parse::<i64>().unwrap())
        };
        items
            .iter()
            .filter_map(|item| {
                let count = number(item, "Count")?;
                let key = item.get(VIEW_ID)?.as_s().ok()?.clone();
                let total = number(item, "Total").unwrap_or_default();
                Some((key, (u64::try_from(count).unwrap(), total)))
            })
            .collect()
    }
}
