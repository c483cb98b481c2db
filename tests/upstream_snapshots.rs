//! Snapshots written by upstream `dynamo-es` 0.5.0 are never trusted:
//! `DynamoStore` rebuilds from the events, then replaces the snapshot under
//! the right version with one it marks as its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{CqrsFramework, EventStore};
use dynamo_es::item::{self, Item};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoEventRepository, DynamoStore, SnapshotPolicy};
use upstream_dynamo_es as upstream;

fn deposit() -> AccountCommand {
    AccountCommand::deposit(1, 1)
}

/// Upstream's own store (what `upstream::dynamodb_aggregate_cqrs` /
/// `dynamodb_snapshot_cqrs` build, on the test tables) runs three commands
/// of +1 on `id`.
async fn upstream_writes_three_deposits(db: &TestTables, id: &str, snapshot_size: Option<usize>) {
    let repo = upstream::DynamoEventRepository::new(db.client.clone())
        .with_tables(&db.events, &db.snapshots);
    let store = match snapshot_size {
        None => PersistedEventStore::<_, Account>::new_aggregate_store(repo),
        Some(size) => PersistedEventStore::<_, Account>::new_snapshot_store(repo, size),
    };
    let cqrs = CqrsFramework::new(store, vec![], ());
    for _ in 0..3 {
        cqrs.execute(id, deposit()).await.unwrap();
    }
}

async fn snapshot_head(db: &TestTables, id: &str) -> Item {
    db.client
        .get_item()
        .table_name(&db.snapshots)
        .key(
            item::AGGREGATE_TYPE_AND_ID,
            item::s(format!("Account:{id}")),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("a snapshot item")
}

fn number(item: &Item, name: &str) -> usize {
    match &item[name] {
        AttributeValue::N(n) => n.parse().unwrap(),
        other => panic!("{name}: {other:?}"),
    }
}

/// Runs the scenario for one of our policies on a snapshot upstream wrote.
async fn ours_after_upstream(
    upstream_snapshot_size: Option<usize>,
    policy: SnapshotPolicy,
    upstream_state: Account,
    upstream_version: usize,
) {
    let db = tables().await;
    let id = new_id();
    upstream_writes_three_deposits(&db, &id, upstream_snapshot_size).await;
    let repo = db.repository().with_codec(Codec::json());

    // What upstream stored: three events, and a snapshot whose state is
    // wrong (events applied twice), without our marker.
    let (replayed, sequences) = replay(&repo, &id).await;
    assert_eq!(sequences, [1, 2, 3]);
    assert_eq!(replayed.total, 3);
    let head = snapshot_head(&db, &id).await;
    assert!(!head.contains_key(item::SNAPSHOT_WRITER), "{head:?}");
    assert_eq!(number(&head, item::CURRENT_SNAPSHOT), upstream_version);
    // The cqrs-es trait path still returns it as stored.
    let stored = repo.get_snapshot::<Account>(&id).await.unwrap().unwrap();
    let stored_state: Account = serde_json::from_value(stored.aggregate).unwrap();
    assert_eq!(stored_state, upstream_state, "upstream's snapshot");

    // Our store ignores its state and rebuilds from all events, keeping the
    // stored version for its next write.
    let store = DynamoStore::<Account>::new(repo.clone(), policy);
    let context = store.load_aggregate(&id).await.unwrap();
    assert_eq!(context.aggregate, replayed, "{policy:?}");
    assert_eq!(
        (context.aggregate.total, context.current_sequence),
        (3, 3),
        "{policy:?}"
    );
    assert_eq!(context.current_snapshot, Some(upstream_version));

    // One more command writes our snapshot over upstream's, under its version.
    let cqrs = cqrs::<Account>(repo.clone(), policy);
    cqrs.execute(&id, deposit()).await.unwrap();
    let context = store.load_aggregate(&id).await.unwrap();
    assert_eq!(
        context.aggregate,
        Account {
            total: 4,
            applied: 4,
            notes: vec![],
        },
        "{policy:?}"
    );
    assert_eq!(context.current_sequence, 4);
    assert_eq!(context.current_snapshot, Some(upstream_version + 1));

    let head = snapshot_head(&db, &id).await;
    assert_eq!(
        head.get(item::SNAPSHOT_WRITER),
        Some(&AttributeValue::S("dynamo-es".into())),
        "{policy:?}: {head:?}"
    );
    assert_eq!(number(&head, item::CURRENT_SNAPSHOT), upstream_version + 1);
    assert_eq!(number(&head, item::CURRENT_SEQUENCE), 4);
    let AttributeValue::B(payload) = &head[item::PAYLOAD] else {
        panic!("payload: {head:?}")
    };
    let state: Account = serde_json::from_slice(payload.as_ref()).unwrap();
    assert_eq!(state, replay(&repo, &id).await.0);
    assert_eq!(state.total, 4);

    // And the marked snapshot is what later loads use: a snapshot whose
    // state we alter is now read as it is.
    let mut altered = head.clone();
    altered.insert(
        item::PAYLOAD.into(),
        item::b(
            serde_json::to_vec(&Account {
                total: 40,
                applied: 4,
                notes: vec![],
            })
            .unwrap(),
        ),
    );
    dynamo_es::testing::put_item(&db.client, &db.snapshots, altered)
        .await
        .unwrap();
    assert_eq!(store.load_aggregate(&id).await.unwrap().aggregate.total, 40);
}

#[tokio::test]
async fn an_upstream_aggregate_store_snapshot_is_rebuilt_not_trusted() {
    // Upstream's aggregate store: each of the 3 commits applies its event
    // twice into the snapshot, so it says 6.
    let doubled = Account {
        total: 6,
        applied: 6,
        notes: vec![],
    };
    ours_after_upstream(None, SnapshotPolicy::Always, doubled.clone(), 3).await;
    ours_after_upstream(None, SnapshotPolicy::Every(2), doubled, 3).await;
}

#[tokio::test]
async fn an_upstream_snapshot_store_snapshot_is_rebuilt_not_trusted() {
    // Upstream's snapshot store (every 2 events): the snapshot at sequence 2
    // says 3, so trusting it and replaying event 3 would give 4.
    let wrong = Account {
        total: 3,
        applied: 3,
        notes: vec![],
    };
    ours_after_upstream(Some(2), SnapshotPolicy::Always, wrong.clone(), 1).await;
    ours_after_upstream(Some(2), SnapshotPolicy::Every(2), wrong, 1).await;
}

#[tokio::test]
async fn snapshots_written_through_persisted_event_store_are_not_marked() {
    // cqrs-es's PersistedEventStore over our repository double-applies too:
    // its snapshots carry no marker, and DynamoStore rebuilds from events.
    let db = tables().await;
    let id = new_id();
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Account>::new_aggregate_store(db.repository()),
        vec![],
        (),
    );
    for _ in 0..2 {
        cqrs.execute(&id, deposit()).await.unwrap();
    }
    let head = snapshot_head(&db, &id).await;
    assert!(!head.contains_key(item::SNAPSHOT_WRITER), "{head:?}");
    let store = DynamoStore::<Account>::new_aggregate_store(db.repository());
    let context = store.load_aggregate(&id).await.unwrap();
    assert_eq!((context.aggregate.total, context.aggregate.applied), (2, 2));
    assert_eq!(context.current_snapshot, Some(2));
}

/// Two notes of `text` on a fresh aggregate, through our aggregate store
/// (plain JSON): its id, the repository, and the snapshot's head item.
async fn two_notes(db: &TestTables, text: String) -> (String, DynamoEventRepository, Item) {
    let id = new_id();
    let repo = db.repository().with_codec(Codec::json());
    let cqrs = cqrs::<Account>(repo.clone(), SnapshotPolicy::Always);
    for _ in 0..2 {
        cqrs.execute(&id, AccountCommand::note(text.clone()))
            .await
            .unwrap();
    }
    let head = snapshot_head(db, &id).await;
    (id, repo, head)
}

#[tokio::test]
async fn chunked_snapshots_carry_the_marker_on_their_head() {
    let db = tables().await;
    let (id, repo, head) = two_notes(&db, "n".repeat(300_000)).await;
    assert!(!head.contains_key(item::PAYLOAD), "chunked: {head:?}");
    assert_eq!(number(&head, item::PAYLOAD_CHUNKS), 2);
    assert_eq!(
        head.get(item::SNAPSHOT_WRITER),
        Some(&AttributeValue::S("dynamo-es".into()))
    );
    let context = DynamoStore::<Account>::new_aggregate_store(repo.clone())
        .load_aggregate(&id)
        .await
        .unwrap();
    assert_eq!(context.aggregate, replay(&repo, &id).await.0);
    assert_eq!(context.aggregate.notes.len(), 2);
}

#[cfg(feature = "compression")]
#[tokio::test]
async fn recode_keeps_the_marker() {
    use dynamo_es::recode::{Recoder, Table};
    let db = tables().await;
    let (id, repo, before) = two_notes(&db, "marker ".repeat(1000)).await;
    assert!(before.contains_key(item::SNAPSHOT_WRITER));
    let report = Recoder::new(db.client.clone(), Codec::json().compressed(3))
        .run_table(&Table::snapshots(db.snapshots.clone()))
        .await
        .unwrap();
    assert_eq!(report.counts.items_recoded, 1, "{report:?}");
    let after = snapshot_head(&db, &id).await;
    assert_ne!(after[item::PAYLOAD], before[item::PAYLOAD], "not recoded");
    assert_eq!(
        after.get(item::SNAPSHOT_WRITER),
        Some(&AttributeValue::S("dynamo-es".into()))
    );
    assert_eq!(
        number(&after, item::CURRENT_SNAPSHOT),
        number(&before, item::CURRENT_SNAPSHOT)
    );
    let context = DynamoStore::<Account>::new_aggregate_store(repo.clone())
        .load_aggregate(&id)
        .await
        .unwrap();
    assert_eq!(context.aggregate, replay(&repo, &id).await.0);
}
