//! `GlobalReader`: the events of two aggregate types over every slice,
//! merged by commit time, each aggregate's in sequence order, each event
//! once, with writers whose clocks run ahead and behind. On the embedded
//! emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod feed_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use common::{cqrs, deposit_event, put, AccountCommand};
use dynamo_es::item::event_to_item;
use dynamo_es::projection::feed::{
    FeedPositions, FeedStart, GlobalEvent, GlobalReader, SliceReader,
};
use dynamo_es::slice::{micros, Slices};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoEventRepository, SnapshotPolicy};

const WINDOW: Duration = Duration::from_secs(2);

fn slices() -> Slices {
    Slices::new(8).unwrap()
}

/// Writes event `sequence` of `aggregate_type:id` as a writer whose clock
/// is `offset_ms` off.
async fn put_skewed(
    db: &TestTables,
    aggregate_type: &str,
    id: &str,
    sequence: usize,
    offset_ms: i64,
) {
    let event = deposit_event(aggregate_type, id, sequence, 1);
    let (mut item, _) = event_to_item(&event, &Codec::default()).unwrap();
    let now = micros(SystemTime::now());
    let clock = now.saturating_add_signed(offset_ms * 1_000);
    item.extend(slices().attributes(aggregate_type, id, clock));
    put(db, &db.events, item).await;
}

/// Commits through the repository (one event, or three in a transaction)
/// on `aggregates` accounts and as many `Other` aggregates.
async fn commit(repo: &DynamoEventRepository, round: usize, aggregates: usize) -> usize {
    let accounts = cqrs::<common::Account>(repo.clone(), SnapshotPolicy::Never);
    let mut events = 0;
    for a in 0..aggregates {
        let times = if (round + a).is_multiple_of(3) { 3 } else { 1 };
        accounts
            .execute(&format!("acct-{a}"), AccountCommand::deposit(1, times))
            .await
            .unwrap();
        feed_support::commit_other(repo, &format!("other-{a}"), times).await;
        events += 2 * times;
    }
    events
}

/// Reads until `total` events came out (or fails after a generous bound).
async fn read_all(reader: &mut GlobalReader, out: &mut Vec<GlobalEvent>, total: usize) {
    let started = Instant::now();
    while out.len() < total {
        let batch = reader.next().await.unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        out.extend(batch);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {total} events after a minute",
            out.len()
        );
    }
}

#[tokio::test]
async fn the_global_reader_merges_types_and_slices_by_commit_time_in_sequence_order() {
    let (db, checkpoints) = dynamo_es::testing::sliced_dynamodb(slices()).await.unwrap();
    let repo = db.repository().with_slices(slices());
    let readers = ["Account", "Other"]
        .map(|t| {
            SliceReader::new(db.client.clone(), &db.events, t, slices())
                .with_window(WINDOW)
                .with_max_events(5)
        })
        .to_vec();
    let positions = FeedPositions::new(db.client.clone(), &checkpoints, "report");
    let mut reader = GlobalReader::new(readers, positions, FeedStart::Beginning);

    let mut total = 0;
    let mut out = Vec::new();
    for round in 0..3 {
        total += commit(&repo, round, 6).await;
        // Writers whose clocks run 600 ms behind and 300 ms ahead, on
        // aggregates of both types; `back` goes back in time at its second
        // event.
        for (i, offset) in [(round, -600), (round + 10, 300)] {
            for aggregate_type in ["Account", "Other"] {
                put_skewed(&db, aggregate_type, &format!("skew-{i}"), 1, offset).await;
                total += 1;
            }
        }
        put_skewed(&db, "Account", &format!("back-{round}"), 1, 0).await;
        put_skewed(&db, "Account", &format!("back-{round}"), 2, -600).await;
        total += 2;
        // Read while writing goes on: part now, the rest later.
        let ready = reader.next().await.unwrap();
        out.extend(ready);
    }
    read_all(&mut reader, &mut out, total).await;
    // Nothing more comes.
    tokio::time::sleep(WINDOW).await;
    assert!(reader.next().await.unwrap().is_empty());
    assert_eq!(out.len(), total);

    // Ordered by (order time, type, id, sequence), strictly: no event
    // twice, a stable order for ties.
    for pair in out.windows(2) {
        assert!(
            pair[0].order() < pair[1].order(),
            "{:?} then {:?}",
            pair[0].order(),
            pair[1].order()
        );
    }
    // Each aggregate's events in sequence order, none skipped.
    let mut by_aggregate: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for event in &out {
        by_aggregate
            .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
            .or_default()
            .push(event.sequence);
        let committed = micros(event.committed);
        assert!(event.order_micros >= committed);
    }
    for ((aggregate_type, id), sequences) in &by_aggregate {
        let expected: Vec<usize> = (1..=sequences.len()).collect();
        assert_eq!(sequences, &expected, "{aggregate_type}:{id}");
    }
    assert!(by_aggregate.keys().any(|(t, _)| t == "Other"));
    // By commit time where the clocks agree: an event is ordered by its own
    // commit time unless its predecessor's was later (`back-*#2`).
    for event in &out {
        let raised = event.order_micros != micros(event.committed);
        assert_eq!(
            raised,
            event.aggregate_id.starts_with("back-") && event.sequence == 2,
            "{:?}",
            event.order()
        );
    }
}
