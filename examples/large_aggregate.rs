//! Persists one large aggregate (a ~1.5 MB JSON ledger) under each codec
//! this build has, and prints what DynamoDB stores for it: bytes, items,
//! and the capacity units a commit and a load cost.
//!
//! ```text
//! cargo run --example large_aggregate --all-features
//! ```
//!
//! Runs on the embedded emulator unless `AWS_ENDPOINT_URL_DYNAMODB` is set.

// Display-only arithmetic.
#![allow(clippy::cast_precision_loss)]

use cqrs_es::{Aggregate, CqrsFramework, EventStore};
use dynamo_es::size::{item_size, read_units, write_units};
use dynamo_es::testing::aggregates::{Ledger, LedgerEvent};
use dynamo_es::testing::codecs_at_levels;
use dynamo_es::testing::fixtures::snapshot_1_5_mb;
use dynamo_es::DynamoStore;

/// Items, bytes and capacity units of everything stored in `table`.
async fn measure(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(usize, usize, u64, u64), Box<dyn std::error::Error>> {
    let mut pages = client.scan().table_name(table).into_paginator().send();
    let (mut items, mut bytes, mut wcu, mut rcu) = (0, 0, 0, 0);
    while let Some(page) = pages.next().await {
        for item in page?.items.unwrap_or_default() {
            let size = item_size(&item);
            items += 1;
            bytes += size;
            wcu += write_units(size, true);
            rcu += read_units(size, false);
        }
    }
    Ok((items, bytes, wcu, rcu))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ledger = snapshot_1_5_mb();
    // Imports in events of at most 300 entries, each well under 400 KB.
    let imports =
        LedgerEvent::imports(ledger["entries"].as_array().map_or(&[], Vec::as_slice), 300);
    let mut expected = Ledger::default();
    for event in imports.clone() {
        expected.apply(event);
    }
    let json_len = serde_json::to_vec(&expected)?.len();
    println!(
        "aggregate: a ledger of {} entries, {json_len} bytes as JSON\n",
        expected.entries().len()
    );
    println!(
        "{:<16} {:>11} {:>7} {:>6} {:>10} {:>10} {:>10} {:>9}",
        "codec", "snapshot B", "ratio", "items", "events B", "commit WCU", "load RCU", "load ms"
    );
    for codec in codecs_at_levels(&[1, 3, 9]) {
        let db = dynamo_es::testing::dynamodb().await?;
        let store =
            DynamoStore::<Ledger>::new_aggregate_store(db.repository().with_codec(codec.clone()));
        let cqrs = CqrsFramework::new(store, vec![], ());
        cqrs.execute("ledger-1", imports.clone()).await?;
        let store = DynamoStore::<Ledger>::new_aggregate_store(db.repository());
        let started = std::time::Instant::now();
        let context = store.load_aggregate("ledger-1").await?;
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(
            context.aggregate, expected,
            "the aggregate must load completely"
        );
        let (snap_items, snap_bytes, snap_wcu, snap_rcu) =
            measure(&db.client, &db.snapshots).await?;
        let (_, event_bytes, event_wcu, _) = measure(&db.client, &db.events).await?;
        println!(
            "{:<16} {:>11} {:>6.2}x {:>6} {:>10} {:>10} {:>10} {:>9.1}",
            codec.name(),
            snap_bytes,
            json_len as f64 / snap_bytes.max(1) as f64,
            snap_items,
            event_bytes,
            snap_wcu + event_wcu,
            snap_rcu,
            load_ms,
        );
    }
    println!("\nsnapshot B: the snapshot's items as DynamoDB sizes them; items: head plus chunks;");
    println!("commit WCU: transactional write units for the snapshot and the events;");
    println!("load RCU: strongly consistent read units to load the snapshot (aggregate store).");
    Ok(())
}
