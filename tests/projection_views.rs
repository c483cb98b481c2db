//! Exactly-once views: redelivered batches, overlapping batches and two
//! appliers racing on the same records apply every event once, as a view
//! that counts its applications shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projection_common;

use common::*;
use cqrs_es::persist::ViewRepository;
use cqrs_es::{EventEnvelope, View};
use dynamo_es::item::{n, s, VIEW_ID};
use dynamo_es::projection::{
    ChangeRecord, Dispatcher, Error, EventDecoder, Projection, ViewProjection, LAST_SEQUENCE,
};
use dynamo_es::testing::faults::{client_on, quick_retries, short_timeouts, Canned, Scripted};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoViewRepository, SnapshotPolicy};
use projection_common::{change_records, stream_tables};
use serde::{Deserialize, Serialize};

/// Every sequence applied to the view, in application order: an event
/// applied twice shows twice.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Applications {
    sequences: Vec<usize>,
    total: i64,
}

impl View<Account> for Applications {
    fn update(&mut self, event: &EventEnvelope<Account>) {
        self.sequences.push(event.sequence);
        if let AccountEvent::Deposited { amount } = event.payload {
            self.total += amount;
        }
    }
}

fn views(db: &TestTables) -> DynamoViewRepository<Applications, Account> {
    db.view_repository::<Applications, Account>()
        .with_codec(Codec::json())
}

fn dispatcher(db: &TestTables) -> Dispatcher<Account> {
    Dispatcher::new(EventDecoder::new(Codec::default()))
        .with_projection(ViewProjection::new(views(db)))
}

/// Commits `events` deposits of 1..=events on each of `aggregates` new
/// aggregates, interleaved, and returns the ids and every stream record.
async fn committed(
    aggregates: usize,
    events: usize,
) -> (TestTables, Vec<String>, Vec<ChangeRecord>) {
    let (db, arn) = stream_tables().await;
    let cqrs = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    let ids: Vec<String> = (0..aggregates).map(|_| new_id()).collect();
    for amount in 1..=events {
        for id in &ids {
            let amount = i64::try_from(amount).unwrap();
            cqrs.execute(id, AccountCommand::deposit(amount, 1))
                .await
                .unwrap();
        }
    }
    let records = change_records(&arn).await;
    assert_eq!(records.len(), aggregates * events);
    (db, ids, records)
}

/// Each view holds every event once, in order, and records the last one.
async fn assert_applied_once(db: &TestTables, ids: &[String], events: usize) {
    let expected_total = i64::try_from(events * (events + 1) / 2).unwrap();
    for id in ids {
        let view = views(db).load(id).await.unwrap().unwrap();
        assert_eq!(view.sequences, (1..=events).collect::<Vec<_>>(), "{id}");
        assert_eq!(view.total, expected_total, "{id}");
        let item = db
            .client
            .get_item()
            .table_name(&db.views)
            .key(VIEW_ID, s(id))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        assert_eq!(item[LAST_SEQUENCE], n(events), "{id}");
    }
}

#[tokio::test]
async fn a_redelivered_batch_is_applied_once() {
    let (db, ids, records) = committed(2, 4).await;
    let dispatcher = dispatcher(&db);
    let first = dispatcher.dispatch(&records).await.unwrap();
    assert_eq!(first.events, 8);
    // Redelivered whole, twice (the projector restarted before checkpointing).
    for _ in 0..2 {
        dispatcher.dispatch(&records).await.unwrap();
    }
    assert_applied_once(&db, &ids, 4).await;
    // Redelivery wrote nothing: one write per aggregate run of the first pass.
    let item = db
        .client
        .get_item()
        .table_name(&db.views)
        .key(VIEW_ID, s(&ids[0]))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["ViewVersion"], n(4));
}

#[tokio::test]
async fn overlapping_batches_apply_each_event_once() {
    let (db, ids, records) = committed(3, 5).await;
    let dispatcher = dispatcher(&db);
    // Batches that overlap (a takeover resuming from an older checkpoint,
    // a rebuild meeting the live stream): 0..7, 4..12, 10..15, 0..15.
    for range in [0..7, 4..12, 10..15, 0..15] {
        dispatcher.dispatch(&records[range]).await.unwrap();
    }
    assert_applied_once(&db, &ids, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appliers_apply_each_event_once() {
    let (db, ids, records) = committed(4, 6).await;
    // Two projectors with their own projection instances race through the
    // same records in different batch sizes.
    let one = dispatcher(&db);
    let two = dispatcher(&db);
    let records_one = records.clone();
    let a = tokio::spawn(async move {
        for chunk in records_one.chunks(3) {
            one.dispatch(chunk).await.unwrap();
        }
    });
    let b = tokio::spawn(async move {
        for chunk in records.chunks(5) {
            two.dispatch(chunk).await.unwrap();
        }
    });
    a.await.unwrap();
    b.await.unwrap();
    assert_applied_once(&db, &ids, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_racing_appliers_on_one_view_apply_each_event_once() {
    let (db, ids, records) = committed(1, 8).await;
    // Eight appliers, each with the whole history, all at once: conflicts
    // are reloaded and retried, and whatever another applied is skipped.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
                .with_projection(ViewProjection::new(views(&db)).with_max_attempts(50));
            let records = records.clone();
            tokio::spawn(async move { dispatcher.dispatch(&records).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_applied_once(&db, &ids, 8).await;
}

fn deposits(id: &str, sequences: std::ops::RangeInclusive<usize>) -> Vec<EventEnvelope<Account>> {
    sequences
        .map(|sequence| EventEnvelope {
            aggregate_id: id.to_string(),
            sequence,
            payload: AccountEvent::Deposited { amount: 1 },
            metadata: Default::default(),
        })
        .collect()
}

fn canned_views(http: &Scripted) -> DynamoViewRepository<Applications, Account> {
    DynamoViewRepository::new(
        "views",
        client_on(http.clone(), quick_retries(1), short_timeouts()),
    )
    .with_codec(Codec::json())
}

fn conflict() -> Canned {
    Canned::dynamo_error("ConditionalCheckFailedException", serde_json::json!({}))
}

#[tokio::test]
async fn a_conflict_reloads_and_skips_what_the_other_writer_applied() {
    // No view yet; our create loses to another writer, which applied 1..=2.
    let theirs = serde_json::to_vec(&Applications {
        sequences: vec![1, 2],
        total: 2,
    })
    .unwrap();
    let stored = serde_json::json!({"Item": {
        "ViewId": {"S": "a"},
        "ViewVersion": {"N": "1"},
        "LastSequence": {"N": "2"},
        "Payload": {"B": aws_smithy_types::base64::encode(theirs)},
    }});
    let http = Scripted::replying([
        Canned::ok(serde_json::json!({})),
        conflict(),
        Canned::ok(stored),
    ]);
    let projection = ViewProjection::new(canned_views(&http));
    projection
        .project("a", &deposits("a", 1..=2))
        .await
        .unwrap();
    // Reloaded once, found both events applied, wrote nothing more.
    assert_eq!(http.operations(), ["GetItem", "PutItem", "GetItem"]);
    let put = &http.requests()[1];
    assert_eq!(
        put.body["ConditionExpression"],
        "attribute_not_exists(ViewVersion)"
    );
    assert_eq!(
        put.body["Item"]["LastSequence"],
        serde_json::json!({"N": "2"})
    );
}

#[tokio::test]
async fn endless_conflicts_end_in_a_typed_error_after_the_attempts() {
    let http = Scripted::replying(
        [Canned::ok(serde_json::json!({})), conflict()]
            .into_iter()
            .cycle()
            .take(6),
    );
    let projection = ViewProjection::new(canned_views(&http)).with_max_attempts(3);
    let err = projection
        .project("a", &deposits("a", 1..=2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ViewContention { view_id, table, attempts: 3 } if view_id == "a" && table == "views"),
        "{err}"
    );
    assert_eq!(http.operations(), ["GetItem", "PutItem"].repeat(3));
    assert_eq!(http.remaining(), 0);
}
