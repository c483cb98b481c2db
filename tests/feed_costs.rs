//! What a feed costs, in the capacity units the (emulated) server reports,
//! measured by [`Meter`]: the index's share of a commit, and a catch-up of
//! one aggregate type against a scan of the whole table, as a `Rebuild` or
//! a replay reads it. Counts only, never timings; the figures are the ones
//! docs/guide/feeds.md publishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{drain, no_metadata, Account, AccountEvent, Other};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::EventStore;
use dynamo_es::projection::feed::{FeedPositions, FeedProjector, SliceReader};
use dynamo_es::projection::{Dispatcher, EventDecoder};
use dynamo_es::slice::Slices;

use dynamo_es::testing::costs::Meter;
use dynamo_es::testing::sliced_dynamodb;
use dynamo_es::{Codec, DynamoStore, SnapshotPolicy};

fn slices() -> Slices {
    Slices::new(16).unwrap()
}

#[tokio::test]
async fn the_index_adds_one_write_unit_to_a_small_one_event_commit() {
    let (db, _checkpoints) = sliced_dynamodb(slices()).await.unwrap();
    let meter = Meter::new();
    let metered = dynamo_es::DynamoEventRepository::new(meter.client(&db.client))
        .with_tables(&db.events, &db.snapshots)
        .with_codec(Codec::json());
    let mut costs = Vec::new();
    for (id, repo) in [
        ("plain", metered.clone()),
        ("sliced", metered.with_slices(slices())),
    ] {
        let store = DynamoStore::<Account>::new(repo, SnapshotPolicy::Never);
        let context = store.load_aggregate(id).await.unwrap();
        let events = vec![AccountEvent::Deposited { amount: 1 }];
        let (committed, cost) = meter
            .measure(store.commit(events, context, no_metadata()))
            .await;
        committed.unwrap();
        assert_eq!(cost.operations, ["PutItem"]);
        costs.push(cost.write_units);
    }
    // An event without a slice is not in the (sparse) index: 1 WCU; with
    // one, the index stores a copy of the item: 1 WCU more per KB.
    assert_eq!(costs, [1.0, 2.0]);
}

#[tokio::test]
async fn a_catch_up_of_one_type_reads_only_that_type() {
    let (db, checkpoints) = sliced_dynamodb(slices()).await.unwrap();
    // JSON whatever the features: sizes, hence units, follow the codec.
    let repo = db
        .repository()
        .with_codec(Codec::json())
        .with_slices(slices());
    // 1,000 events of each of two types, 25 per commit (one transaction).
    let accounts = DynamoStore::<Account>::new(repo.clone(), SnapshotPolicy::Never);
    let others = DynamoStore::<Other>::new(repo.clone(), SnapshotPolicy::Never);
    for aggregate in 0..20 {
        for _ in 0..2 {
            let id = format!("a-{aggregate}");
            let events = vec![AccountEvent::Deposited { amount: 1 }; 25];
            let context = accounts.load_aggregate(&id).await.unwrap();
            accounts
                .commit(events.clone(), context, no_metadata())
                .await
                .unwrap();
            let context = others.load_aggregate(&id).await.unwrap();
            others.commit(events, context, no_metadata()).await.unwrap();
        }
    }
    let meter = Meter::new();
    let reader = SliceReader::new(meter.client(&db.client), &db.events, "Account", slices())
        .with_max_events(1_000);
    let positions = FeedPositions::new(db.client.clone(), &checkpoints, "costs");
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()));
    let mut feed = FeedProjector::new(reader, positions, dispatcher);
    let (report, feed_costs) = meter.measure(feed.catch_up()).await;
    assert_eq!(report.unwrap().events, 1_000);
    // What a rebuild or a replay reads: a consistent scan of every item.
    let metered = db.repository();
    let metered = dynamo_es::DynamoEventRepository::new(meter.client(metered.client()))
        .with_tables(&db.events, &db.snapshots);
    let (replayed, scan_costs) = meter
        .measure(async {
            let mut stream = metered.stream_all_events::<Account>().await.unwrap();
            drain::<Account>(&mut stream).await
        })
        .await;
    assert_eq!(replayed.0, 1_000);
    assert!(replayed.1.is_none());
    eprintln!(
        "catch-up of 1,000 of 2,000 events: feed {} RCU in {} requests, scan {} RCU in {} requests",
        feed_costs.read_units,
        feed_costs.operations.len(),
        scan_costs.read_units,
        scan_costs.operations.len()
    );
    // One query per slice, of this type's items only (about 230 bytes
    // each, 0.5 RCU per 4 KB); the scan reads both types' items.
    assert_eq!(feed_costs.operations.len(), 16);
    assert_eq!((feed_costs.read_units, scan_costs.read_units), (29.0, 50.5));
}
