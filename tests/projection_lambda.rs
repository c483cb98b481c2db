//! The Lambda adapter on records the emulator's stream returned, serialized
//! in Lambda's JSON shape and parsed with `aws_lambda_events`: they convert
//! as the projector converts them, dispatch the same way, and a failed view
//! write names the right record in the partial batch response. With
//! `compression`, dictionary-compressed events reach the projection equal,
//! and a dictionary not stored names its record.
#![cfg(feature = "lambda")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[cfg(feature = "compression")]
mod dictionary_support;
mod lambda_json;
#[cfg(feature = "compression")]
mod projection_collect;
mod projection_common;

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodbstreams::types::Record;
use common::*;
use cqrs_es::persist::ViewRepository;
use cqrs_es::{EventEnvelope, View};
use dynamo_es::item::{b, n, s, Item, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID};
use dynamo_es::projection::{
    lambda, ChangeRecord, Dispatcher, Error, EventDecoder, ViewProjection,
};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, SnapshotPolicy};
use projection_common::{stream_records, stream_tables};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A Lambda DynamoDB stream event holding `records`, as Lambda sends it.
fn lambda_event(arn: &str, records: &[(String, Record)]) -> Value {
    lambda_json::lambda_event(arn, records.iter().map(|(_, record)| record))
}

fn parse(event: Value) -> Event {
    serde_json::from_value(event).unwrap()
}

/// Every sequence applied, in order.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Applications {
    sequences: Vec<usize>,
}

impl View<Account> for Applications {
    fn update(&mut self, event: &EventEnvelope<Account>) {
        self.sequences.push(event.sequence);
    }
}

fn dispatcher(db: &TestTables) -> Dispatcher<Account> {
    Dispatcher::new(EventDecoder::new(Codec::default())).with_projection(ViewProjection::new(
        db.view_repository::<Applications, Account>(),
    ))
}

async fn applied(db: &TestTables, id: &str) -> Vec<usize> {
    db.view_repository::<Applications, Account>()
        .load(id)
        .await
        .unwrap()
        .map(|view| view.sequences)
        .unwrap_or_default()
}

/// Commits a×2, b×2, c×1, a×1 (six records: runs start at 0, 2, 4, 5).
async fn committed() -> (TestTables, String, [String; 3], Vec<(String, Record)>) {
    let (db, arn) = stream_tables().await;
    let cqrs = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    let ids = [new_id(), new_id(), new_id()];
    for (index, times) in [(0, 2), (1, 2), (2, 1), (0, 1)] {
        cqrs.execute(&ids[index], AccountCommand::deposit(1, times))
            .await
            .unwrap();
    }
    let records = stream_records(&arn).await;
    assert_eq!(records.len(), 6);
    (db, arn, ids, records)
}

fn sequence_number(record: &(String, Record)) -> String {
    let change = record.1.dynamodb.as_ref().unwrap();
    change.sequence_number.clone().unwrap()
}

#[tokio::test]
async fn a_failed_view_write_names_the_first_record_not_applied() {
    let (db, arn, [a, b, c], records) = committed().await;
    let failing = dispatcher(&db).with_projection(FailOn(b.clone()));
    let response = lambda::handle(&failing, parse(lambda_event(&arn, &records))).await;
    // b's run starts at record 2.
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        Some(sequence_number(&records[2]))
    );
    let body = serde_json::to_value(&response).unwrap();
    assert_eq!(
        body,
        json!({"batchItemFailures": [{"itemIdentifier": sequence_number(&records[2])}]})
    );
    assert_eq!(applied(&db, &a).await, [1, 2]);
    // The view projection ran before FailOn: b's view has its run; c's not.
    assert_eq!(applied(&db, &b).await, [1, 2]);
    assert!(applied(&db, &c).await.is_empty());

    // Lambda retries from that record; with the fault gone everything lands,
    // each event once.
    let retry = parse(lambda_event(&arn, &records[2..]));
    let response = lambda::handle(&dispatcher(&db), retry).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": []})
    );
    assert_eq!(applied(&db, &a).await, [1, 2, 3]);
    assert_eq!(applied(&db, &b).await, [1, 2]);
    assert_eq!(applied(&db, &c).await, [1]);
}

#[tokio::test]
async fn a_failure_in_a_later_run_names_that_run() {
    let (db, arn, [a, _, c], records) = committed().await;
    // The second run of a starts at record 5.
    let failing = dispatcher(&db).with_projection(FailOn(a.clone()));
    let response = lambda::handle(&failing, parse(lambda_event(&arn, &records[2..]))).await;
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        Some(sequence_number(&records[5]))
    );
    assert_eq!(applied(&db, &c).await, [1]);
}

#[tokio::test]
async fn an_unreadable_record_is_the_failure_after_the_records_before_it() {
    let (db, arn, [a, b, _], records) = committed().await;
    let mut event = lambda_event(&arn, &records);
    event["Records"][3]["eventName"] = json!("TRUNCATE");
    let response = lambda::handle(&dispatcher(&db), parse(event)).await;
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        Some(sequence_number(&records[3]))
    );
    assert_eq!(applied(&db, &a).await, [1, 2]);
    // b's run was cut short by the unreadable record: its first event applied.
    assert_eq!(applied(&db, &b).await, [1]);
}

fn comparable(record: ChangeRecord) -> ChangeRecord {
    ChangeRecord {
        shard_id: String::new(),
        created: record.created.map(|t| {
            t - Duration::from_nanos(u64::from(
                t.duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            ))
        }),
        ..record
    }
}

#[tokio::test]
async fn lambda_records_convert_as_the_projector_converts_them() {
    let (db, arn) = stream_tables().await;
    let every_type = Item::from([
        (AGGREGATE_TYPE_AND_ID.to_string(), s("Other:x")),
        (AGGREGATE_ID_SEQUENCE.to_string(), n(1)),
        ("B".to_string(), b(vec![0, 255, 7])),
        (
            "BS".to_string(),
            aws_sdk_dynamodb::types::AttributeValue::Bs(vec![
                aws_sdk_dynamodb::primitives::Blob::new(vec![1]),
            ]),
        ),
        (
            "SS".to_string(),
            aws_sdk_dynamodb::types::AttributeValue::Ss(vec!["a".into()]),
        ),
        (
            "NS".to_string(),
            aws_sdk_dynamodb::types::AttributeValue::Ns(vec!["2".into()]),
        ),
        (
            "M".to_string(),
            aws_sdk_dynamodb::types::AttributeValue::M(HashMap::from([(
                "L".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::L(vec![
                    aws_sdk_dynamodb::types::AttributeValue::Bool(true),
                    aws_sdk_dynamodb::types::AttributeValue::Null(true),
                ]),
            )])),
        ),
    ]);
    put(&db, &db.events, every_type).await;
    let cqrs = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    cqrs.execute(&new_id(), AccountCommand::deposit(1, 2))
        .await
        .unwrap();
    let records = stream_records(&arn).await;
    assert_eq!(records.len(), 3);
    let event = parse(lambda_event(&arn, &records));
    for (parsed, (shard, record)) in event.records.into_iter().zip(records) {
        let from_lambda = lambda::change_record(parsed).unwrap();
        let from_stream = ChangeRecord::from_stream(&shard, record).unwrap();
        assert!(from_lambda.created.is_some());
        assert_eq!(comparable(from_lambda), comparable(from_stream));
    }
}

/// Every note of the account, concatenated: grows past the item limit.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Notes {
    text: String,
}

impl View<Account> for Notes {
    fn update(&mut self, event: &EventEnvelope<Account>) {
        if let AccountEvent::Noted { text } = &event.payload {
            self.text.push_str(text);
        }
    }
}

#[tokio::test]
async fn a_view_write_over_the_item_limit_names_its_record() {
    let (db, arn) = stream_tables().await;
    let cqrs = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    let [a, b, c] = [new_id(), new_id(), new_id()];
    // b's two notes fit an event item each, but not one view item together.
    let note = |i: usize| -> String {
        (0..250_000u32)
            .map(|j| char::from_digit((j * 7 + u32::try_from(i).unwrap()) % 36, 36).unwrap())
            .collect()
    };
    cqrs.execute(&a, AccountCommand::note("short"))
        .await
        .unwrap();
    cqrs.execute(&b, AccountCommand::note(note(1)))
        .await
        .unwrap();
    cqrs.execute(&b, AccountCommand::note(note(2)))
        .await
        .unwrap();
    cqrs.execute(&c, AccountCommand::note("short"))
        .await
        .unwrap();
    let records = stream_records(&arn).await;
    assert_eq!(records.len(), 4);

    let views = db
        .view_repository::<Notes, Account>()
        .with_codec(Codec::json());
    let dispatcher = Dispatcher::new(EventDecoder::new(Codec::default()))
        .with_projection(ViewProjection::new(views.clone()));
    let response = lambda::handle(&dispatcher, parse(lambda_event(&arn, &records))).await;
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        Some(sequence_number(&records[1]))
    );
    assert_eq!(views.load(&a).await.unwrap().unwrap().text, "short");
    assert!(views.load(&b).await.unwrap().is_none());
    assert!(views.load(&c).await.unwrap().is_none());

    // The projection error says why: the view is over the item size limit.
    let failure = dispatcher
        .dispatch(
            &records
                .into_iter()
                .map(|(shard, record)| ChangeRecord::from_stream(&shard, record).unwrap())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.first_failed, 1);
    assert!(
        matches!(
            &failure.error,
            Error::Store(dynamo_es::Error::LimitExceeded { aggregate, .. }) if *aggregate == b
        ),
        "{failure}"
    );
}

#[tokio::test]
async fn a_record_without_sequence_number_fails_the_whole_batch() {
    let (db, arn, [a, _, _], records) = committed().await;
    let mut event = lambda_event(&arn, &records);
    event["Records"][4]["dynamodb"]
        .as_object_mut()
        .unwrap()
        .remove("SequenceNumber");
    let response = lambda::handle(&dispatcher(&db), parse(event)).await;
    // No identifier to name: Lambda then retries the whole batch.
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, None);
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": null}]})
    );
    // What came before it was applied (and is skipped on the retry).
    assert_eq!(applied(&db, &a).await, [1, 2]);
}

/// Dictionary-compressed events through the Lambda adapter.
#[cfg(feature = "compression")]
mod dictionaries {
    use super::*;

    use super::projection_collect::{missing_dictionary, Collected};
    use cqrs_es::Aggregate;
    use dynamo_es::projection::DecodeErrorPolicy;

    use super::dictionary_support::{commit, events, seed_training, trained, writer, Order};

    #[tokio::test]
    async fn dictionary_events_reach_a_projection_equal_through_the_lambda_adapter() {
        let (db, arn) = stream_tables().await;
        seed_training::<Order>(&db, 300, 11).await;
        let dictionary = trained::<Order>(&db).await.dictionary;
        let fixture = events(Order::TYPE, "lambda", 1, 12, 4_242);
        commit::<Order>(&writer::<Order>(&db, &dictionary), &fixture).await;
        let records = stream_records(&arn).await;

        // A Lambda process: the repository's codec, its cache still empty.
        let reader = db.repository();
        let collected = Collected::default();
        let dispatcher = Dispatcher::new(EventDecoder::<Order>::from_repository(&reader))
            .with_projection(collected.clone());
        let response = lambda::handle(&dispatcher, parse(lambda_event(&arn, &records))).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(collected.of("lambda"), fixture);
        assert_eq!(reader.dictionary_cache().ids(), vec![dictionary.id()]);
    }

    #[tokio::test]
    async fn a_dictionary_not_stored_is_the_lambda_batch_failure() {
        let (db, arn, id) = missing_dictionary().await;
        let records = stream_records(&arn).await;
        assert_eq!(records.len(), 7);

        let collected = Collected::default();
        let dispatcher = Dispatcher::new(EventDecoder::<Order>::from_repository(&db.repository()))
            .with_projection(collected.clone());
        // Stop: Lambda retries from the first dictionary event.
        let response = lambda::handle(&dispatcher, parse(lambda_event(&arn, &records))).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(
            response.batch_item_failures[0].item_identifier,
            Some(sequence_number(&records[2]))
        );
        assert_eq!(collected.of("plain-1").len(), 2);
        assert!(collected.of("dict").is_empty());
        assert!(collected.of("plain-2").is_empty());

        // SkipAndReport: the batch succeeds and the records are reported
        // (the dispatcher's report; the adapter logs it).
        let skipping = dispatcher.with_decode_error_policy(DecodeErrorPolicy::SkipAndReport);
        let changes: Vec<ChangeRecord> = records
            .iter()
            .map(|(shard, record)| ChangeRecord::from_stream(shard, record.clone()).unwrap())
            .collect();
        let report = skipping.dispatch(&changes).await.unwrap();
        assert_eq!(report.skipped.len(), 3);
        assert!(report.skipped[0]
            .to_string()
            .contains(&format!("dictionary {id} is not stored")));
        let response = lambda::handle(&skipping, parse(lambda_event(&arn, &records))).await;
        assert!(response.batch_item_failures.is_empty());
    }
}
