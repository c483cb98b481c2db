//! A commit of one event and no snapshot is one conditional `PutItem`
//! carrying a commit id: its request, its idempotent retries after a lost
//! response, its conflicts, its write units, and upstream reading its items.
//!
//! Canned responses come from a connector that answers each request by a
//! rule over the request's body, so a canned `ConditionalCheckFailed` can
//! carry back the very commit id the request carried; the emulator tests
//! lose real responses after the write was applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use common::*;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use dynamo_es::item::{self, COMMIT_ID};
use dynamo_es::testing::faults::{
    losing_responses_to, Canned, LoseResponses, Request, Rule, Scripted, Step,
};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoEventRepository, SnapshotPolicy};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// A client answering by rules over the request.
// ---------------------------------------------------------------------------

/// The answer to a read, given the commit id the put carried.
type ReadReply = Box<dyn Fn(String) -> Canned + Send + Sync>;

/// The JSON body of every request `rules` received.
fn bodies(rules: &Scripted) -> Vec<Value> {
    rules.requests().into_iter().map(|r| r.body).collect()
}

/// The commit id of every request (empty when it carries none).
fn commit_ids(requests: &[Request]) -> Vec<String> {
    requests.iter().map(|r| commit_id_of(&r.body)).collect()
}

fn commit_id_of(body: &Value) -> String {
    body["Item"][COMMIT_ID]["S"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn reply(canned: Canned) -> Rule {
    Box::new(move |_| canned.clone().into())
}

fn step(step: Step) -> Rule {
    Box::new(move |_| step.clone())
}

/// `ConditionalCheckFailedException` returning `item` (`ALL_OLD`), or none.
fn condition_failed(item: Option<Value>) -> Canned {
    let extra = match item {
        Some(item) => json!({ "Item": item }),
        None => json!({}),
    };
    Canned::dynamo_error("ConditionalCheckFailedException", extra)
}

/// The condition fails on the item the request itself carries: what a
/// retry meets after its earlier attempt was applied.
fn condition_failed_on_own_item() -> Rule {
    Box::new(|request| condition_failed(Some(request.body["Item"].clone())).into())
}

/// The condition fails on the request's item with another commit id.
fn condition_failed_on_anothers_item() -> Rule {
    Box::new(|request| {
        let mut item = request.body["Item"].clone();
        item[COMMIT_ID] = json!({"S": "0123456789abcdef0123456789abcdef"});
        condition_failed(Some(item)).into()
    })
}

/// The condition fails on the request's item without a commit id, as
/// upstream (or a transaction) writes it.
fn condition_failed_on_upstream_item() -> Rule {
    Box::new(|request| {
        let mut item = request.body["Item"].clone();
        item.as_object_mut().unwrap().remove(COMMIT_ID);
        condition_failed(Some(item)).into()
    })
}

fn internal_error() -> Canned {
    Canned::new(
        500,
        json!({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "canned"}),
    )
}

fn transaction_conflict() -> Canned {
    Canned::dynamo_error("TransactionConflictException", json!({}))
}

fn one_event(id: &str) -> Vec<cqrs_es::persist::SerializedEvent> {
    vec![deposit_event(Account::TYPE, id, 1, 5)]
}

async fn persist_one(
    rules: &Scripted,
    max_attempts: u32,
) -> Result<(), cqrs_es::persist::PersistenceError> {
    json_repo_on(rules, max_attempts)
        .persist::<Account>(&one_event("acct-1"), None)
        .await
}

// ---------------------------------------------------------------------------
// The request.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_one_event_commit_is_one_conditional_put_item_with_a_commit_id() {
    let rules = Scripted::by_rules(vec![reply(Canned::written())]);
    persist_one(&rules, 3).await.unwrap();
    assert_eq!(rules.operations(), ["PutItem"]);
    let body = &bodies(&rules)[0];
    assert_eq!(body["TableName"], "events");
    assert_eq!(
        body["ConditionExpression"],
        "attribute_not_exists(AggregateIdSequence)"
    );
    assert_eq!(body["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
    assert_eq!(body["ReturnConsumedCapacity"], "TOTAL");
    let id = commit_id_of(body);
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    // The event item is the transaction's, plus the commit id.
    assert_eq!(body["Item"]["AggregateTypeAndId"]["S"], "Account:acct-1");
    assert_eq!(body["Item"]["AggregateIdSequence"]["N"], "1");
    assert!(body.get("ClientRequestToken").is_none());

    // Through the framework (event store): the load's Query, then the put.
    let rules = Scripted::by_rules(vec![reply(Canned::empty_query()), reply(Canned::written())]);
    let cqrs = cqrs::<Account>(json_repo_on(&rules, 3), SnapshotPolicy::Never);
    cqrs.execute("acct-1", AccountCommand::deposit(3, 1))
        .await
        .unwrap();
    assert_eq!(rules.operations(), ["Query", "PutItem"]);
}

#[tokio::test]
async fn several_events_or_a_snapshot_stay_one_transaction() {
    let rules = Scripted::by_rules(vec![reply(Canned::written()), reply(Canned::written())]);
    let repo = json_repo_on(&rules, 3);
    let two: Vec<_> = (1..=2)
        .map(|s| deposit_event(Account::TYPE, "acct-1", s, 1))
        .collect();
    repo.persist::<Account>(&two, None).await.unwrap();
    repo.persist::<Account>(
        &one_event("acct-2"),
        Some(("acct-2".into(), json!({"total": 5}), 1)),
    )
    .await
    .unwrap();
    assert_eq!(rules.operations(), ["TransactWriteItems"; 2]);
    for body in bodies(&rules) {
        assert!(body["ClientRequestToken"].is_string());
        assert!(body["TransactItems"][0]["Put"]["Item"]
            .get(COMMIT_ID)
            .is_none());
    }
}

#[tokio::test]
async fn a_snapshot_the_server_refused_leaves_a_single_put() {
    let rules = Scripted::by_rules(vec![
        reply(Canned::validation_error(
            "Transaction request size exceeded the maximum allowed",
        )),
        reply(Canned::written()),
    ]);
    json_repo_on(&rules, 3)
        .persist::<Account>(
            &one_event("acct-1"),
            Some(("acct-1".into(), json!({"total": 5}), 1)),
        )
        .await
        .unwrap();
    assert_eq!(rules.operations(), ["TransactWriteItems", "PutItem"]);
}

#[tokio::test]
async fn an_event_within_40_bytes_of_the_item_limit_is_still_committed_by_a_transaction() {
    // The commit id adds 40 bytes (8 of name, 32 of value): an event that
    // fits one item only without it goes as before, in a transaction.
    let base = item::event_to_item(&note_event("acct-1", 1, 0), &Codec::json())
        .unwrap()
        .0;
    let base = dynamo_es::size::item_size(&base);
    for (slack, expected) in [
        (0, "TransactWriteItems"),
        (39, "TransactWriteItems"),
        (40, "PutItem"),
    ] {
        let len = dynamo_es::size::MAX_ITEM_SIZE - base - slack;
        let event = note_event("acct-1", 1, len);
        let (event_item, _) = item::event_to_item(&event, &Codec::json()).unwrap();
        assert_eq!(
            dynamo_es::size::item_size(&event_item),
            dynamo_es::size::MAX_ITEM_SIZE - slack
        );
        let rules = Scripted::by_rules(vec![reply(Canned::written())]);
        json_repo_on(&rules, 1)
            .persist::<Account>(&[event], None)
            .await
            .unwrap();
        assert_eq!(rules.operations(), [expected], "slack {slack}");
    }
    // One byte over the limit is refused before anything is sent, as before.
    let event = note_event("acct-1", 1, dynamo_es::size::MAX_ITEM_SIZE - base + 1);
    let rules = Scripted::by_rules(vec![]);
    let err = json_repo_on(&rules, 1)
        .persist::<Account>(&[event], None)
        .await
        .unwrap_err();
    assert!(
        matches!(typed(&err), dynamo_es::Error::LimitExceeded { .. }),
        "{err:?}"
    );
    assert!(rules.operations().is_empty());
}

#[tokio::test]
async fn distinct_commits_never_share_a_commit_id() {
    let rules = Scripted::by_rules((0..3).map(|_| reply(Canned::written())));
    let repo = json_repo_on(&rules, 1);
    for _ in 0..2 {
        repo.persist::<Account>(&one_event("acct-1"), None)
            .await
            .unwrap();
    }
    let other = json_repo_on(&rules, 1);
    other
        .persist::<Account>(&one_event("acct-1"), None)
        .await
        .unwrap();
    let ids = commit_ids(&rules.requests());
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2],
        "{ids:?}"
    );
}

// ---------------------------------------------------------------------------
// Lost responses.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_retry_after_a_lost_response_that_meets_its_own_item_succeeds() {
    for first in [step(Step::Lost), step(Step::Hang), reply(internal_error())] {
        let rules = Scripted::by_rules(vec![first, condition_failed_on_own_item()]);
        persist_one(&rules, 3).await.unwrap();
        assert_eq!(rules.operations(), ["PutItem"; 2]);
        let ids = commit_ids(&rules.requests());
        assert_eq!(ids[0], ids[1], "every attempt carries the same commit id");
        // The retry is the same request, byte for byte.
        let bodies = bodies(&rules);
        assert_eq!(bodies[0], bodies[1]);
    }

    // Through the framework.
    let rules = Scripted::by_rules(vec![
        reply(Canned::empty_query()),
        step(Step::Lost),
        condition_failed_on_own_item(),
    ]);
    cqrs::<Account>(json_repo_on(&rules, 3), SnapshotPolicy::Never)
        .execute("acct-1", AccountCommand::deposit(7, 1))
        .await
        .unwrap();
    assert_eq!(rules.operations(), ["Query", "PutItem", "PutItem"]);
}

#[tokio::test]
async fn a_retry_that_meets_another_item_is_a_conflict() {
    for other in [
        condition_failed_on_anothers_item,
        condition_failed_on_upstream_item,
    ] {
        let rules = Scripted::by_rules(vec![step(Step::Lost), other()]);
        let err = persist_one(&rules, 3).await.unwrap_err();
        assert_eq!(err.kind(), "OptimisticLockError", "{err:?}");
        assert_eq!(rules.operations(), ["PutItem"; 2]);
    }
}

#[tokio::test]
async fn a_server_that_returns_no_item_is_settled_by_a_consistent_read() {
    // The condition failed but the server ignored ALL_OLD: after a lost
    // response, the stored commit id is read.
    let cases: [(ReadReply, &str); 3] = [
        (
            Box::new(|id| Canned::ok(json!({"Item": {"CommitId": {"S": id}}}))),
            "Ok",
        ),
        (
            Box::new(|_| Canned::ok(json!({"Item": {"CommitId": {"S": "someone-else"}}}))),
            "OptimisticLockError",
        ),
        (Box::new(|_| Canned::ok(json!({}))), "ConnectionError"),
    ];
    for (read, expected) in cases {
        let seen_id = Arc::new(Mutex::new(String::new()));
        let remember = seen_id.clone();
        let answer = seen_id.clone();
        let rules: [Rule; 3] = [
            Box::new(move |request| {
                *remember.lock().unwrap() = commit_id_of(&request.body);
                Step::Lost
            }),
            reply(condition_failed(None)),
            Box::new(move |_| read(answer.lock().unwrap().clone()).into()),
        ];
        let rules = Scripted::by_rules(rules);
        let result = persist_one(&rules, 3).await;
        let outcome = match &result {
            Ok(()) => "Ok",
            Err(err) => err.kind(),
        };
        assert_eq!(outcome, expected, "{result:?}");
        assert_eq!(rules.operations(), ["PutItem", "PutItem", "GetItem"]);
        let read_body = &bodies(&rules)[2];
        assert_eq!(read_body["ConsistentRead"], true);
        assert_eq!(read_body["Key"]["AggregateIdSequence"]["N"], "1");
        if expected == "ConnectionError" {
            assert_failed(result.as_ref().unwrap_err(), "Connection", "PutItem");
        }
    }

    // Without a lost response, a failed condition without an item is a
    // conflict at once: nothing to settle.
    let rules = Scripted::by_rules(vec![reply(condition_failed(None))]);
    let err = persist_one(&rules, 3).await.unwrap_err();
    assert_eq!(err.kind(), "OptimisticLockError");
    assert_eq!(rules.operations(), ["PutItem"]);
}

#[tokio::test]
async fn responses_lost_on_every_attempt_are_a_connection_error_not_a_conflict() {
    let rules = Scripted::by_rules(vec![step(Step::Lost), step(Step::Hang), step(Step::Lost)]);
    let err = persist_one(&rules, 3).await.unwrap_err();
    assert_failed(&err, "Connection", "PutItem");
    let ids = commit_ids(&rules.requests());
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == ids[0]));
}

// ---------------------------------------------------------------------------
// Conflicts, throttling.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn conflicts_map_as_a_transactions_do() {
    // A first attempt whose condition fails, on any item: a conflict, not retried.
    for rule in [
        condition_failed_on_anothers_item as fn() -> Rule,
        condition_failed_on_upstream_item,
        || reply(transaction_conflict()),
    ] {
        let rules = Scripted::by_rules(vec![rule()]);
        let err = persist_one(&rules, 3).await.unwrap_err();
        assert_eq!(err.kind(), "OptimisticLockError", "{err:?}");
        assert_eq!(rules.operations(), ["PutItem"]);
    }

    // Through the framework: an aggregate conflict.
    let rules = Scripted::by_rules(vec![
        reply(Canned::empty_query()),
        condition_failed_on_anothers_item(),
    ]);
    let err = failed_deposit(
        &cqrs::<Account>(json_repo_on(&rules, 3), SnapshotPolicy::Never),
        "acct-1",
    )
    .await;
    assert_eq!(err.kind(), "AggregateConflict", "{err:?}");
}

#[tokio::test]
async fn a_conflicting_transaction_after_a_lost_response_is_retried_until_it_tells() {
    // The retry meets a transaction on the item, then the item itself.
    let rules = Scripted::by_rules(vec![
        step(Step::Lost),
        reply(transaction_conflict()),
        condition_failed_on_own_item(),
    ]);
    persist_one(&rules, 3).await.unwrap();
    assert_eq!(rules.operations(), ["PutItem"; 3]);

    // Never told: the outcome is unknown, a connection error, never a conflict.
    let rules = Scripted::by_rules(vec![
        step(Step::Lost),
        reply(transaction_conflict()),
        reply(transaction_conflict()),
    ]);
    let err = persist_one(&rules, 3).await.unwrap_err();
    assert_failed(&err, "Connection", "PutItem");
    assert!(err.to_string().contains("unknown"), "{err}");
}

#[tokio::test]
async fn throttling_is_retried_then_surfaces_as_throttled() {
    let rules = Scripted::by_rules((0..3).map(|_| reply(Canned::throughput_exceeded())));
    let err = persist_one(&rules, 3).await.unwrap_err();
    assert_failed(&err, "Throttled", "PutItem");
    assert_eq!(rules.operations(), ["PutItem"; 3]);

    let rules = Scripted::by_rules(vec![
        reply(Canned::throughput_exceeded()),
        reply(Canned::written()),
    ]);
    persist_one(&rules, 3).await.unwrap();
}

// ---------------------------------------------------------------------------
// On the emulator.
// ---------------------------------------------------------------------------

/// A repository on `db` whose first `lose` put responses are lost.
fn losing_puts(db: &TestTables, lose: usize) -> (DynamoEventRepository, LoseResponses) {
    let (client, http) = losing_responses_to(&db.client, "PutItem", lose);
    let repo = DynamoEventRepository::new(client)
        .with_tables(&db.events, &db.snapshots)
        .with_codec(Codec::json());
    (repo, http)
}

/// The stored event items of `id`, as DynamoDB holds them.
async fn stored_items(db: &TestTables, id: &str) -> Vec<item::Item> {
    let mut items: Vec<_> = dynamo_es::testing::scan_all(&db.client, &db.events)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.get("AggregateId") == Some(&item::s(id)))
        .collect();
    items.sort_by_key(item::describe_key);
    items
}

#[tokio::test]
async fn on_the_emulator_a_lost_put_is_retried_into_success_exactly_once() {
    let db = tables().await;
    let (repo, http) = losing_puts(&db, 1);
    let id = new_id();
    let cqrs = cqrs::<Account>(repo, SnapshotPolicy::Never);
    deposit(&cqrs, &id, 4).await;
    deposit(&cqrs, &id, 1).await;
    let ids = commit_ids(&http.requests());
    assert_eq!(ids.len(), 3, "one lost attempt, its retry, the next commit");
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    let (replayed, sequences) = replay(&db.repository(), &id).await;
    assert_eq!(sequences, [1, 2]);
    assert_eq!(replayed.total, 5);
    let items = stored_items(&db, &id).await;
    assert_eq!(items[0].get(COMMIT_ID), Some(&item::s(&ids[0])));
    assert_eq!(items[1].get(COMMIT_ID), Some(&item::s(&ids[2])));
}

/// Persists another first event of `id` through `ours`, which must be a
/// conflict.
async fn assert_first_event_conflicts(ours: &DynamoEventRepository, id: &str) {
    let err = ours
        .persist::<Account>(&[deposit_event(Account::TYPE, id, 1, 2)], None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "OptimisticLockError", "{err:?}");
}

#[tokio::test]
async fn on_the_emulator_a_lost_race_is_a_conflict_whoever_wrote_first() {
    let db = tables().await;
    let ours = db.repository().with_codec(Codec::json());
    let id = new_id();
    ours.persist::<Account>(&[deposit_event(Account::TYPE, &id, 1, 1)], None)
        .await
        .unwrap();
    assert_first_event_conflicts(&ours, &id).await;

    // Against an upstream item (no commit id).
    let upstream = upstream_repo(&db);
    let id = new_id();
    upstream
        .persist::<Account>(&[deposit_event(Account::TYPE, &id, 1, 1)], None)
        .await
        .unwrap();
    assert_first_event_conflicts(&ours, &id).await;
    assert_eq!(stored_events::<Account>(&db, &id).await.len(), 1);
}

/// The `consumed_capacity` and `operation` of the one `commit stored`
/// line in `logs`, each as both the `dynamo_es.persist` span and the event
/// record it (asserted equal).
fn commit_logged(logs: &str) -> (String, String) {
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("commit stored"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let field = |name: &str| {
        let values: Vec<String> = lines[0]
            .split([' ', '{', '}'])
            .filter_map(|part| part.strip_prefix(&format!("{name}=")))
            .map(|value| value.trim_end_matches(':').trim_matches('"').to_string())
            .collect();
        assert_eq!(values.len(), 2, "span and event: {}", lines[0]);
        assert_eq!(values[0], values[1], "{}", lines[0]);
        values[0].clone()
    };
    (field("consumed_capacity"), field("operation"))
}

#[tokio::test]
async fn a_one_event_commit_costs_one_write_unit_where_a_transaction_cost_two() {
    let db = tables().await;
    let repo = db.repository().with_codec(Codec::json());
    let id = new_id();
    let event = deposit_event(Account::TYPE, &id, 1, 5);

    // Before: the same event item in a one-item transaction, as every
    // commit was written.
    let put = event_put(&db.events, &deposit_event(Account::TYPE, &new_id(), 1, 5));
    let out = db
        .client
        .transact_write_items()
        .transact_items(put)
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .unwrap();
    let before: f64 = out
        .consumed_capacity()
        .iter()
        .filter_map(|c| c.capacity_units())
        .sum();
    assert_eq!(before, 2.0);

    // After: the commit's own report, on its span and log line.
    let (logs, guard) = capture(tracing::Level::DEBUG, false);
    repo.persist::<Account>(std::slice::from_ref(&event), None)
        .await
        .unwrap();
    drop(guard);
    assert_eq!(
        commit_logged(&logs.text()),
        ("1.0".to_string(), "PutItem".to_string())
    );

    // A two-event commit is still a transaction: 2 units per item.
    let (logs, guard) = capture(tracing::Level::DEBUG, false);
    let two: Vec<_> = (2..=3)
        .map(|s| deposit_event(Account::TYPE, &id, s, 5))
        .collect();
    repo.persist::<Account>(&two, None).await.unwrap();
    drop(guard);
    assert_eq!(
        commit_logged(&logs.text()),
        ("4.0".to_string(), "TransactWriteItems".to_string())
    );
}

#[tokio::test]
async fn upstream_reads_events_committed_by_single_puts_and_continues_them() {
    let db = tables().await;
    let ours = db.repository().with_codec(Codec::json());
    let upstream = upstream_repo(&db);
    let id = new_id();
    let events = deposit_events(&id, 3, 5);
    for event in &events {
        ours.persist::<Account>(std::slice::from_ref(event), None)
            .await
            .unwrap();
    }
    assert!(stored_items(&db, &id)
        .await
        .iter()
        .all(|i| i.contains_key(COMMIT_ID)));
    assert_eq!(upstream.get_events::<Account>(&id).await.unwrap(), events);
    assert_eq!(
        upstream.get_last_events::<Account>(&id, 1).await.unwrap(),
        events[1..]
    );
    let mut stream = upstream.stream_events::<Account>(&id).await.unwrap();
    assert_sequences::<Account>(&mut stream, 3).await;

    // Upstream's framework loads the aggregate and commits after it.
    let store = cqrs_es::persist::PersistedEventStore::<_, Account>::new_event_store(upstream);
    let framework = cqrs_es::CqrsFramework::new(store, vec![], ());
    framework
        .execute(&id, AccountCommand::deposit(1, 1))
        .await
        .unwrap();
    let (replayed, sequences) = replay(&ours, &id).await;
    assert_eq!(sequences, [1, 2, 3, 4]);
    assert_eq!(replayed.total, 16);
}
