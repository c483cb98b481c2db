//! Shared by the feed tests: the slice index on an events table, with a
//! fresh checkpoint table for the feeds' positions (`testing::slice_tables`);
//! `Other`'s commits; an index whose entries
//! become visible late (an interceptor on the reader's client that hides
//! events from every `Query` until their visibility time; the base table
//! sees them at once, as DynamoDB's strongly consistent reads do).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_smithy_runtime_api::client::interceptors::context::Output;
use aws_smithy_types::config_bag::ConfigBag;
use dynamo_es::intercept::{Hooked, Hooks, Interceptor};
use dynamo_es::item::{get_n, get_s, AGGREGATE_ID, AGGREGATE_ID_SEQUENCE};
use dynamo_es::slice::Slices;
use dynamo_es::testing::TestTables;

/// Adds the slice index with `slices` to `db`'s events table and creates a
/// checkpoint table; returns its name.
pub async fn slice(db: &TestTables, slices: Slices) -> String {
    dynamo_es::testing::slice_tables(db, slices).await.unwrap()
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

/// When each event becomes visible in the index.
#[derive(Debug, Default)]
pub struct Visibility(pub Mutex<HashMap<(String, usize), Instant>>);

/// Hides from every `Query` answer the events not visible yet.
#[derive(Debug)]
pub struct LaggingIndex(pub Arc<Visibility>);

impl Hooks for LaggingIndex {
    const NAME: &'static str = "feed_support::LaggingIndex";

    fn modify_output(&self, output: &mut Output, _: &mut ConfigBag) -> Hooked {
        let Some(query) = output.downcast_mut::<QueryOutput>() else {
            return Ok(());
        };
        let now = Instant::now();
        let visible = self.0 .0.lock().unwrap();
        if let Some(items) = query.items.as_mut() {
            items.retain(|item| {
                // A keys-only read of the table (no index projects only
                // keys): not hidden.
                let Ok(id) = get_s(item, AGGREGATE_ID, "AggregateId") else {
                    return true;
                };
                let id = id.to_string();
                let sequence: usize =
                    get_n(item, AGGREGATE_ID_SEQUENCE, "AggregateIdSequence").unwrap();
                visible.get(&(id, sequence)).is_none_or(|at| *at <= now)
            });
        }
        Ok(())
    }
}

/// A client of `db` whose `Query` answers hide what `visibility` hides.
pub fn lagging_client(db: &TestTables, visibility: &Arc<Visibility>) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        db.client
            .config()
            .to_builder()
            .interceptor(Interceptor(LaggingIndex(visibility.clone())))
            .build(),
    )
}
