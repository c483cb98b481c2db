//! The deterministic figures behind the benchmark goals against upstream
//! `dynamo-es` 0.5.0, measured by the same [`Meter`] the benchmarks use:
//! a one-event commit costs half upstream's write units, and a snapshotted
//! load takes one sequential round trip where upstream takes two.
//!
//! Counts only (capacity units and round trips); never timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/common/workloads.rs"]
mod workloads;

use dynamo_es::testing::costs::Meter;
use dynamo_es::testing::dynamodb;
use dynamo_es::SnapshotPolicy;
use workloads::{implementations, Implementation, Setup, AFTER_SNAPSHOT, SNAPSHOT_EVERY};

/// Each implementation on fresh tables of its own.
async fn setups() -> Vec<Setup> {
    let mut setups = Vec::new();
    for implementation in implementations() {
        setups.push(Setup::new(implementation, dynamodb().await.unwrap(), None));
    }
    setups
}

#[tokio::test]
async fn a_one_event_commit_costs_half_of_upstreams_write_units() {
    let setups = setups().await;
    let upstream = setups[0].commit_costs(1).await.1;
    assert_eq!(setups[0].implementation, Implementation::Upstream);
    assert_eq!(upstream.operations, ["TransactWriteItems"]);
    assert_eq!(upstream.write_units, 2.0, "{upstream:?}");
    assert_eq!(setups.len(), dynamo_es::Codec::available().len() + 1);
    for setup in &setups[1..] {
        let ours = setup.commit_costs(1).await.1;
        let name = setup.implementation.name();
        assert_eq!(ours.operations, ["PutItem"], "{name}");
        assert_eq!(
            ours.write_units * 2.0,
            upstream.write_units,
            "{name}: {ours:?}"
        );
        assert_eq!((ours.round_trips, ours.read_units), (1, 0.0), "{name}");
    }
}

#[tokio::test]
async fn a_snapshotted_load_takes_one_round_trip_where_upstream_takes_two() {
    for setup in setups().await {
        let name = setup.implementation.name();
        let store = setup.store(SnapshotPolicy::Every(SNAPSHOT_EVERY));
        let id = setup.snapshotted(&store).await;
        let costs = setup
            .load_costs(&store, &id, SNAPSHOT_EVERY + AFTER_SNAPSHOT)
            .await;
        let mut operations: Vec<&str> = costs.operations.iter().map(String::as_str).collect();
        operations.sort_unstable();
        if setup.implementation == Implementation::Upstream {
            // The snapshot (a query of the snapshot table), then the events after it.
            assert_eq!((costs.round_trips, operations), (2, vec!["Query"; 2]));
        } else {
            assert_eq!(
                (costs.round_trips, operations),
                (1, vec!["GetItem", "Query"]),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn an_aggregate_store_load_is_one_round_trip_on_both_sides() {
    for setup in setups().await {
        let store = setup.store(SnapshotPolicy::Always);
        let id = setup.snapshotted(&store).await;
        let costs = setup
            .load_costs(&store, &id, SNAPSHOT_EVERY + AFTER_SNAPSHOT)
            .await;
        assert_eq!(costs.round_trips, 1, "{}", setup.implementation.name());
    }
}

#[tokio::test]
async fn the_meter_counts_sequential_requests_apart_and_concurrent_ones_together() {
    let db = dynamodb().await.unwrap();
    let meter = Meter::new();
    let client = meter.client(&db.client);
    let get = || client.describe_table().table_name(&db.events).send();
    let (_, sequential) = meter
        .measure(async {
            get().await.unwrap();
            get().await.unwrap();
        })
        .await;
    assert_eq!(sequential.round_trips, 2);
    let (_, concurrent) = meter
        .measure(async { futures::future::join(get(), get()).await })
        .await;
    assert_eq!(
        (concurrent.round_trips, concurrent.operations),
        (1, vec!["DescribeTable".to_string(); 2])
    );
    // Off, it counts nothing.
    get().await.unwrap();
    assert_eq!(meter.stop().operations.len(), 0);
}
