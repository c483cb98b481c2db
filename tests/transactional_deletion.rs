//! An aggregate's deletion reaches a transactional projection exactly once,
//! after every event of it: `TransactionalProjection::deleted` is called
//! in a transaction of its own, which records the tombstone's sequence as
//! the aggregate's applied one, so a redelivered batch (a Lambda retry, a
//! restart) neither calls it again nor applies an event twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projection_common;
mod projector_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::TransactWriteItem;
use cqrs_es::EventEnvelope;
use dynamo_es::projection::{
    ChangeRecord, CheckpointStore, Dispatcher, Error, EventDecoder, Transactional,
    TransactionalProjection, TypedViews,
};
use dynamo_es::tables::create_view_table;
use dynamo_es::testing::{unique_name, TestTables};
use dynamo_es::{Codec, DynamoStore, SnapshotPolicy};

use common::{cqrs, deposit, Account, AccountEvent};
use projection_common::{applied_sequence, change_records, stream_tables, totals_writes, Totals};
use projector_support::checkpoints;

/// A deletion call: the aggregate, its last sequence, and the total its
/// view held then.
type Deletion = (String, usize, Option<i64>);

/// Each aggregate's total in a view of its own, deleted with it; every
/// deletion call logged.
#[derive(Clone)]
struct PerAccount {
    views: TypedViews<Totals>,
    deletions: Arc<Mutex<Vec<Deletion>>>,
}

fn amount(event: &EventEnvelope<Account>) -> i64 {
    match &event.payload {
        AccountEvent::Deposited { amount } => *amount,
        AccountEvent::Noted { .. } => 0,
    }
}

#[async_trait]
impl TransactionalProjection<Account> for PerAccount {
    async fn writes(
        &self,
        events: &[EventEnvelope<Account>],
    ) -> Result<Vec<TransactWriteItem>, Error> {
        let mut groups: BTreeMap<String, Vec<&EventEnvelope<Account>>> = BTreeMap::new();
        for event in events {
            groups
                .entry(event.aggregate_id.clone())
                .or_default()
                .push(event);
        }
        totals_writes(&self.views, groups, amount).await
    }

    async fn deleted(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<TransactWriteItem>, Error> {
        let held = self.views.load(aggregate_id).await?;
        let total = held.and_then(|view| view.totals.get(aggregate_id).copied());
        self.deletions
            .lock()
            .unwrap()
            .push((aggregate_id.to_string(), last_sequence, total));
        Ok(vec![self.views.delete_write(aggregate_id)?])
    }
}

/// "gone" gets deposits 1, 2, 3 and is deleted; "kept" gets 1, then 2
/// after the deletion. The stream's records, and the projection's world.
async fn world() -> (
    TestTables,
    Vec<ChangeRecord>,
    PerAccount,
    Dispatcher<Account>,
    CheckpointStore,
) {
    let (db, arn) = stream_tables().await;
    let framework = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    for amount in 1..=3 {
        deposit(&framework, "gone", amount).await;
    }
    deposit(&framework, "kept", 1).await;
    DynamoStore::<Account>::new(db.repository(), SnapshotPolicy::Never)
        .delete_aggregate("gone")
        .await
        .unwrap();
    deposit(&framework, "kept", 2).await;
    let records = change_records(&arn).await;
    let table = unique_name("per-account");
    create_view_table(&db.client, &table).await.unwrap();
    let handler = PerAccount {
        views: TypedViews::new(db.client.clone(), &table),
        deletions: Arc::default(),
    };
    let store = checkpoints(&db.client, std::time::Duration::from_secs(5)).await;
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
        .with_transactional(Transactional::new(handler.clone(), &store));
    (db, records, handler, dispatcher, store)
}

/// The views after the batches: "gone" deleted once, after its three
/// events were applied; "kept" at 3 from two events.
async fn assert_deleted_once(handler: &PerAccount) {
    assert_eq!(handler.views.load("gone").await.unwrap(), None);
    let kept = handler.views.load("kept").await.unwrap().unwrap();
    assert_eq!((kept.totals.get("kept"), kept.events), (Some(&3), 2));
    assert_eq!(
        *handler.deletions.lock().unwrap(),
        [("gone".to_string(), 3, Some(6))],
        "one deletion call, seeing every event of the aggregate applied"
    );
}

#[tokio::test]
async fn a_deletion_is_applied_once_after_its_events_and_a_redelivery_applies_nothing() {
    let (db, records, handler, dispatcher, store) = world().await;
    for delivery in 0..2 {
        let report = dispatcher.dispatch(&records).await.unwrap();
        assert_eq!(report.records, records.len(), "delivery {delivery}");
        assert_deleted_once(&handler).await;
    }
    // The tombstone's sequence is the aggregate's applied one.
    assert_eq!(applied_sequence(&db.client, &store, "gone").await, Some(4));
}
#[tokio::test]
async fn a_deletion_in_a_batch_of_its_own_is_applied_once_too() {
    let (_db, records, handler, dispatcher, _store) = world().await;
    // Record by record, each batch delivered twice.
    for record in &records {
        for _ in 0..2 {
            dispatcher
                .dispatch(std::slice::from_ref(record))
                .await
                .unwrap();
        }
    }
    assert_deleted_once(&handler).await;
}
