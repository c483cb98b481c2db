//! Large aggregates: chunked snapshots, DynamoDB's size limits, and
//! histories far beyond one 1 MB page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError};
use cqrs_es::{Aggregate, EventStore};
use dynamo_es::testing::aggregates::{Ledger, LedgerEvent};
use dynamo_es::{Codec, DynamoStore, Error, Limit, SnapshotPolicy};

/// Import events of about `bytes` of JSON each, `count` of them, from seed `seed`.
fn imports(count: usize, bytes: usize, seed: u64) -> Vec<LedgerEvent> {
    (0..count as u64)
        .map(|i| LedgerEvent::import_of(bytes, seed * 1000 + i))
        .collect()
}

async fn snapshot_items(db: &dynamo_es::testing::TestTables) -> usize {
    count_items(&db.client, &db.snapshots).await
}

/// Grows a ledger through `policy` with commands of `events_per_command`
/// imports of `bytes` each, and checks load and stored snapshot against a replay.
async fn grow_and_check(
    codec: Codec,
    policy: SnapshotPolicy,
    commands: usize,
    events_per_command: usize,
    bytes: usize,
) -> (dynamo_es::testing::TestTables, String, usize) {
    let db = tables().await;
    let cqrs = cqrs::<Ledger>(db.repository().with_codec(codec), policy);
    let id = new_id();
    for c in 0..commands {
        cqrs.execute(&id, imports(events_per_command, bytes, c as u64))
            .await
            .unwrap();
    }
    let store = DynamoStore::<Ledger>::new(db.repository(), policy);
    let (expected, _) = replayed::<Ledger>(&db.repository(), &id, usize::MAX).await;
    let json_len = serde_json::to_vec(&expected).unwrap().len();
    let loaded = store.load_aggregate(&id).await.unwrap();
    assert_eq!(loaded.aggregate, expected);
    let snapshot = stored_snapshot::<Ledger>(&db, &id).await;
    assert_eq!(snapshot.current_sequence, commands * events_per_command);
    let stored: Ledger = serde_json::from_value(snapshot.aggregate).unwrap();
    assert_eq!(stored, expected);
    (db, id, json_len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_5_mb_json_snapshot_round_trips_through_chunks() {
    for policy in [SnapshotPolicy::Always, SnapshotPolicy::Every(2)] {
        let (db, _, json_len) = grow_and_check(Codec::json(), policy, 4, 2, 190_000).await;
        assert!(json_len > 1_500_000, "{json_len}");
        // Head plus at least four chunks of 400 KB.
        assert!(snapshot_items(&db).await >= 5, "{policy:?}");
    }
}

#[cfg(feature = "compression")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_snapshot_round_trips_with_compression() {
    for policy in [SnapshotPolicy::Always, SnapshotPolicy::Every(4)] {
        let codec = Codec::json().compressed(3);
        let (db, _, json_len) = grow_and_check(codec, policy, 8, 4, 330_000).await;
        assert!(json_len > 10_000_000, "{json_len}");
        // ~1.4 MB compressed: more than one item, far fewer than uncompressed.
        let items = snapshot_items(&db).await;
        assert!((2..=6).contains(&items), "{items} snapshot items");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_shrinks_and_grows_always_reads_the_latest_state() {
    let db = tables().await;
    let cqrs = cqrs::<Ledger>(
        db.repository().with_codec(Codec::json()),
        SnapshotPolicy::Always,
    );
    let id = new_id();
    let check = |expected_items: std::ops::RangeInclusive<usize>| {
        let db = db.clone();
        let id = id.clone();
        async move {
            let store = DynamoStore::<Ledger>::new_aggregate_store(db.repository());
            let (expected, _) = replayed::<Ledger>(&db.repository(), &id, usize::MAX).await;
            assert_eq!(store.load_aggregate(&id).await.unwrap().aggregate, expected);
            let items = snapshot_items(&db).await;
            assert!(
                expected_items.contains(&items),
                "{items} snapshot items, wanted {expected_items:?}"
            );
        }
    };
    cqrs.execute(&id, imports(3, 350_000, 1)).await.unwrap();
    check(4..=4).await; // head + 3 chunks
    cqrs.execute(&id, vec![LedgerEvent::Cleared]).await.unwrap();
    check(1..=1).await; // single item; stale chunks deleted
    cqrs.execute(&id, imports(2, 350_000, 2)).await.unwrap();
    check(3..=3).await;
    cqrs.execute(&id, imports(1, 330_000, 3)).await.unwrap();
    check(4..=4).await;
    cqrs.execute(&id, vec![LedgerEvent::Cleared]).await.unwrap();
    check(1..=1).await;
}

fn limit_error(err: PersistenceError) -> (Limit, usize, usize, String, String) {
    let PersistenceError::UnknownError(source) = err else {
        panic!("{err:?}")
    };
    match source.downcast_ref::<Error>() {
        Some(Error::LimitExceeded {
            limit,
            size,
            max,
            aggregate,
            subject,
        }) => (*limit, *size, *max, aggregate.clone(), subject.clone()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_event_over_400_kb_is_rejected_and_nothing_is_written() {
    let (db, repo) = json_tables().await;
    let id = new_id();
    let events = vec![note_event(&id, 1, 100), note_event(&id, 2, 410_000)];
    let (limit, size, max, aggregate, subject) =
        limit_error(repo.persist::<Account>(&events, None).await.unwrap_err());
    assert_eq!((limit, max), (Limit::ItemSize, 409_600));
    assert!(size > 410_000);
    assert_eq!(aggregate, format!("Account:{id}"));
    assert_eq!(subject, "event 2");
    assert_eq!(count_items(&db.client, &db.events).await, 0);
}

#[tokio::test]
async fn a_commit_over_4_mb_is_rejected_and_nothing_is_written() {
    let (db, repo) = json_tables().await;
    let id = new_id();
    let events: Vec<_> = (1..=11).map(|s| note_event(&id, s, 390_000)).collect();
    let (limit, size, max, _, subject) =
        limit_error(repo.persist::<Account>(&events, None).await.unwrap_err());
    assert_eq!(
        (limit, max, subject.as_str()),
        (Limit::TransactionSize, 4_194_304, "transaction")
    );
    assert!(size > 4_194_304);
    assert_eq!(count_items(&db.client, &db.events).await, 0);
    // A snapshot that cannot fit beside its events is left out: the events
    // are committed alone (tests/snapshot_limits.rs has the details).
    let events: Vec<_> = (1..=6).map(|s| note_event(&id, s, 390_000)).collect();
    let big = serde_json::json!({"notes": vec!["x".repeat(100_000); 20]});
    repo.persist::<Account>(&events, Some((id.clone(), big, 1)))
        .await
        .unwrap();
    assert_eq!(count_items(&db.client, &db.events).await, 6);
    assert_eq!(count_items(&db.client, &db.snapshots).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_load_and_stream_completely() {
    let db = tables().await;
    let repo = db
        .repository()
        .with_codec(Codec::json())
        .with_streaming_channel_size(500);
    let id = new_id();
    let events: Vec<_> = (1..=20_000).map(|s| note_event(&id, s, 520)).collect();
    let mut total_bytes = 0;
    for batch in events.chunks(100) {
        total_bytes += batch
            .iter()
            .map(|e| serde_json::to_vec(&e.payload).unwrap().len())
            .sum::<usize>();
        repo.persist::<Account>(batch, None).await.unwrap();
    }
    assert!(total_bytes > 10_000_000, "{total_bytes}");
    let store = DynamoStore::<Account>::new_event_store(repo.clone());
    let loaded = store.load_events(&id).await.unwrap();
    assert_eq!(loaded.len(), 20_000);
    assert!(loaded.iter().map(|e| e.sequence).eq(1..=20_000));
    let context = store.load_aggregate(&id).await.unwrap();
    assert_eq!(
        (context.aggregate.notes.len(), context.current_sequence),
        (20_000, 20_000)
    );
    let mut stream = repo.stream_events::<Account>(&id).await.unwrap();
    assert_sequences::<Account>(&mut stream, 20_000).await;
}

#[tokio::test]
async fn an_aggregate_key_over_2048_bytes_is_rejected_before_sending() {
    let db = tables().await;
    let repo = db.repository();
    let id = "k".repeat(2100);
    let events = vec![deposit_event(Account::TYPE, &id, 1, 1)];
    let (limit, size, max, _, subject) =
        limit_error(repo.persist::<Account>(&events, None).await.unwrap_err());
    assert_eq!(
        (limit, max, subject.as_str()),
        (Limit::PartitionKeySize, 2048, "aggregate key")
    );
    assert_eq!(size, "Account:".len() + 2100);
    assert_eq!(count_items(&db.client, &db.events).await, 0);
}
