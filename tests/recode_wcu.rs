//! The recode report prices event rewrites as the writes recode sends: one
//! conditional `PutItem` per event (1 WCU per KB), checked against what
//! DynamoDB (the emulator) bills for putting each item.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use common::*;
use cqrs_es::persist::PersistedEventRepository;
use dynamo_es::item::{describe_key, Item};
use dynamo_es::recode::{Recoder, Table};
use dynamo_es::testing::faults::losing_responses_to;
use dynamo_es::testing::{scan_all, TestTables};
use dynamo_es::Codec;

/// Every event item, and what DynamoDB bills for a conditional `PutItem`
/// of it as it is stored now (the same bytes again, so the old and new item
/// are the same size).
async fn billed_puts(db: &TestTables) -> BTreeMap<String, (u64, Item)> {
    let mut billed = BTreeMap::new();
    for item in scan_all(&db.client, &db.events).await.unwrap() {
        let units = put_again(db, item.clone()).await;
        billed.insert(describe_key(&item), (units, item));
    }
    billed
}

async fn put_again(db: &TestTables, item: Item) -> u64 {
    let out = db
        .client
        .put_item()
        .table_name(&db.events)
        .set_item(Some(item))
        .condition_expression("attribute_exists(AggregateTypeAndId)")
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .unwrap();
    let units = out.consumed_capacity.unwrap().capacity_units.unwrap();
    units.to_string().parse().unwrap()
}

fn total(billed: &BTreeMap<String, (u64, Item)>) -> u64 {
    billed.values().map(|(units, _)| units).sum()
}

#[tokio::test]
async fn event_rewrites_are_priced_as_the_conditional_puts_recode_sends() {
    let db = tables().await;
    let repo = db.repository().with_codec(Codec::json());
    let id = new_id();
    // 400 B to 4.8 KB of compressible text: 1 to 5 WCU per put.
    let events: Vec<_> = (1..=12).map(|s| note_event(&id, s, 400 * s)).collect();
    repo.persist::<Account>(&events, None).await.unwrap();
    let tables = [Table::events(&db.events)];

    let before = billed_puts(&db).await;
    assert_eq!(before.len(), 12);
    assert!(total(&before) > 12, "some events are over 1 KB");
    let dry = Recoder::new(db.client.clone(), target())
        .report(&tables)
        .await
        .unwrap();
    let predicted = dry.tables[0].counts;
    assert_eq!(
        predicted.wcu_per_rewrite_before,
        total(&before),
        "{predicted:?}"
    );

    // Every rewrite is one PutItem (a transaction would send none).
    let (client, puts) = losing_responses_to(&db.client, "PutItem", 0);
    let done = Recoder::new(client, target()).run(&tables).await.unwrap();
    let counts = done.tables[0].counts;
    assert_eq!(counts, predicted, "the run does what the dry run said");
    assert_eq!(
        u64::try_from(puts.requests().len()).unwrap(),
        counts.items_recoded
    );

    let after = billed_puts(&db).await;
    assert_eq!(counts.wcu_per_rewrite_after, total(&after), "{counts:?}");
    // Each rewrite is billed on the larger of the old and the new item;
    // items left alone cost nothing.
    let rewritten: Vec<u64> = before
        .iter()
        .filter(|(key, (_, item))| after[*key].1 != *item)
        .map(|(key, (units, _))| (*units).max(after[key].0))
        .collect();
    assert_eq!(
        u64::try_from(rewritten.len()).unwrap(),
        counts.items_recoded
    );
    assert_eq!(
        counts.recode_wcu,
        rewritten.iter().sum::<u64>(),
        "{counts:?}"
    );
    if rewrites() {
        assert!(counts.items_recoded >= 8, "{counts:?}");
        // zstd shrinks the wide pretty-printed events below their KB units;
        // MessagePack alone may keep the units it saves bytes within.
        if cfg!(feature = "compression") {
            assert!(counts.wcu_per_rewrite_after < counts.wcu_per_rewrite_before);
        } else {
            assert!(counts.wcu_per_rewrite_after <= counts.wcu_per_rewrite_before);
        }
    }
}
