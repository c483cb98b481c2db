//! Shared by the feed tests: the slice index on an events table, with a
//! fresh checkpoint table for the feeds' positions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use dynamo_es::slice::Slices;
use dynamo_es::tables::{add_slice_index, create_checkpoint_table};
use dynamo_es::testing::{dynamodb, unique_name, TestTables};

/// Adds the slice index with `slices` to `db`'s events table and creates a
/// checkpoint table; returns its name.
pub async fn slice(db: &TestTables, slices: Slices) -> String {
    add_slice_index(&db.client, &db.events, slices)
        .await
        .unwrap();
    let checkpoints = unique_name("checkpoints");
    create_checkpoint_table(&db.client, &checkpoints)
        .await
        .unwrap();
    checkpoints
}

/// Fresh tables whose events table has the slice index, and a checkpoint
/// table.
pub async fn sliced_tables(slices: Slices) -> (TestTables, String) {
    let db = dynamodb().await.unwrap();
    let checkpoints = slice(&db, slices).await;
    (db, checkpoints)
}

/// Commits `count` deposits on the `Other` aggregate `id` through `repo`'s
/// store, in one commit (`Other`'s command commits nothing).
pub async fn commit_other(repo: &dynamo_es::DynamoEventRepository, id: &str, count: usize) {
    use crate::common::{no_metadata, AccountEvent, Other};
    let others =
        dynamo_es::DynamoStore::<Other>::new(repo.clone(), dynamo_es::SnapshotPolicy::Never);
    let context = cqrs_es::EventStore::load_aggregate(&others, id)
        .await
        .unwrap();
    cqrs_es::EventStore::commit(
        &others,
        vec![AccountEvent::Deposited { amount: 1 }; count],
        context,
        no_metadata(),
    )
    .await
    .unwrap();
}
