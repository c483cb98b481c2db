//! Concurrency and idempotency on the embedded emulator: contended
//! aggregates lose nothing and duplicate nothing, snapshots stay equal to a
//! replay, and a commit whose response is lost is retried into success by
//! its `ClientRequestToken` instead of into a false conflict.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use common::*;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::{AggregateError, EventStore};
use dynamo_es::testing::faults::{losing_responses, LoseResponses};
use dynamo_es::testing::TestTables;
use dynamo_es::{DynamoCqrs, DynamoEventRepository, DynamoStore, SnapshotPolicy};

// ---------------------------------------------------------------------------
// Contention.
// ---------------------------------------------------------------------------

/// A step of a 64-bit LCG, high bits out.
fn random(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

/// What the writers of one aggregate were told.
struct Outcome {
    /// The amounts of the acknowledged deposits (each unique).
    acked: Vec<i64>,
    conflicts: usize,
}

/// `tasks` concurrent writers each get `commands` single-event deposits
/// acknowledged on `id`, retrying (with a little jitter) on conflicts.
async fn contend(
    cqrs: Arc<DynamoCqrs<Account>>,
    id: String,
    tasks: usize,
    commands: usize,
) -> Outcome {
    let writers: Vec<_> = (0..tasks)
        .map(|task| {
            let cqrs = cqrs.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut conflicts = 0;
                let mut jitter = u64::try_from(task).unwrap() * 7919 + 1;
                for command in 0..commands {
                    let amount = i64::try_from(task * 100_000 + command + 1).unwrap();
                    // Exponential backoff with full jitter, as a client of a
                    // contended aggregate should retry.
                    let mut streak = 0u32;
                    loop {
                        match cqrs.execute(&id, AccountCommand::deposit(amount, 1)).await {
                            Ok(()) => {
                                acked.push(amount);
                                // A client's think time: without it the
                                // last winner starves the others.
                                tokio::time::sleep(Duration::from_micros(
                                    random(&mut jitter) % 20_000,
                                ))
                                .await;
                                break;
                            }
                            Err(AggregateError::AggregateConflict) => {
                                conflicts += 1;
                                streak = (streak + 1).min(5);
                                let ceiling = 2_000u64 << streak;
                                tokio::time::sleep(Duration::from_micros(
                                    random(&mut jitter) % ceiling,
                                ))
                                .await;
                            }
                            Err(err) => panic!("task {task}: {err:?}"),
                        }
                    }
                }
                (acked, conflicts)
            })
        })
        .collect();
    let mut outcome = Outcome {
        acked: Vec::new(),
        conflicts: 0,
    };
    for writer in writers {
        let (acked, conflicts) = writer.await.unwrap();
        outcome.acked.extend(acked);
        outcome.conflicts += conflicts;
    }
    outcome
}

/// Stored events are exactly the acknowledged commands, sequenced 1..N;
/// the snapshot (if `policy` writes one) and a fresh load equal a replay.
async fn check_aggregate(db: &TestTables, policy: SnapshotPolicy, id: &str, outcome: &Outcome) {
    let repo = db.repository();
    let events = repo.get_events::<Account>(id).await.unwrap();
    let sequences: Vec<usize> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=outcome.acked.len()).collect::<Vec<_>>(),
        "{id}: gap or duplicate"
    );
    let mut stored: Vec<i64> = events
        .iter()
        .map(|e| e.payload["Deposited"]["amount"].as_i64().unwrap())
        .collect();
    stored.sort_unstable();
    let mut acked = outcome.acked.clone();
    acked.sort_unstable();
    assert_eq!(
        stored, acked,
        "{id}: stored events differ from the acknowledged commands"
    );

    let (replayed, _) = replay(&repo, id).await;
    assert_eq!(replayed.applied, acked.len());
    assert_eq!(replayed.total, acked.iter().sum::<i64>());
    let snapshot = repo.get_snapshot::<Account>(id).await.unwrap();
    match policy {
        SnapshotPolicy::Never => assert!(snapshot.is_none()),
        policy => {
            let snapshot = snapshot.expect("a snapshot");
            let state: Account = serde_json::from_value(snapshot.aggregate).unwrap();
            let mut upto = Account::default();
            for event in events.iter().take(snapshot.current_sequence) {
                let envelope: cqrs_es::EventEnvelope<Account> = event.clone().try_into().unwrap();
                cqrs_es::Aggregate::apply(&mut upto, envelope.payload);
            }
            assert_eq!(
                state, upto,
                "{id}: snapshot at {}",
                snapshot.current_sequence
            );
            let expected_sequence = match policy {
                SnapshotPolicy::Every(n) => acked.len() - acked.len() % n,
                _ => acked.len(),
            };
            assert_eq!(snapshot.current_sequence, expected_sequence, "{id}");
        }
    }
    let store = DynamoStore::<Account>::new(repo, policy);
    let loaded = store.load_aggregate(id).await.unwrap();
    assert_eq!(loaded.aggregate, replayed, "{id}");
    assert_eq!(loaded.current_sequence, acked.len());
}

async fn sixteen_writers_on_one_aggregate(policy: SnapshotPolicy) {
    let started = Instant::now();
    let db = tables().await;
    let cqrs = Arc::new(cqrs::<Account>(db.repository(), policy));
    let id = new_id();
    let outcome = contend(cqrs, id.clone(), 16, 50).await;
    assert_eq!(outcome.acked.len(), 800);
    assert!(outcome.conflicts > 0, "no contention happened");
    check_aggregate(&db, policy, &id, &outcome).await;
    eprintln!(
        "{policy:?}: 800 commands, {} conflicts retried, {:?}",
        outcome.conflicts,
        started.elapsed()
    );
}

test_per_policy!(sixteen_writers_on_one_aggregate:
    sixteen_writers_on_one_aggregate_in_snapshot_mode => SnapshotPolicy::Every(7),
    sixteen_writers_on_one_aggregate_in_aggregate_mode => SnapshotPolicy::Always,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_aggregates_in_parallel_each_stay_exact() {
    let db = tables().await;
    for policy in [SnapshotPolicy::Never, SnapshotPolicy::Every(4)] {
        let cqrs = Arc::new(cqrs::<Account>(db.repository(), policy));
        let ids: Vec<String> = (0..16).map(|_| new_id()).collect();
        let runs: Vec<_> = ids
            .iter()
            .map(|id| tokio::spawn(contend(cqrs.clone(), id.clone(), 3, 6)))
            .collect();
        for (id, run) in ids.iter().zip(runs) {
            let outcome = run.await.unwrap();
            assert_eq!(outcome.acked.len(), 18);
            check_aggregate(&db, policy, id, &outcome).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Idempotency tokens on the emulator.
// ---------------------------------------------------------------------------

fn cancellation_codes(err: TransactWriteItemsError) -> Vec<String> {
    match err {
        TransactWriteItemsError::TransactionCanceledException(cancel) => cancel
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or_default().to_string())
            .collect(),
        other => panic!("expected a cancellation, got {other:?}"),
    }
}

/// What the emulator does with `ClientRequestToken` (dynoxide keeps an
/// idempotency cache, as DynamoDB does for ten minutes): the same
/// transaction sent twice with one token succeeds twice and writes once;
/// without the token the repeat fails its own condition, which is the
/// false conflict the token prevents.
#[tokio::test]
async fn the_same_token_makes_a_repeated_transaction_succeed_once() {
    let db = tables().await;
    let id = new_id();
    let send = |token: Option<&str>, sequence: usize| {
        db.client
            .transact_write_items()
            .transact_items(event_put(
                &db.events,
                &deposit_event("Account", &id, sequence, 1),
            ))
            .set_client_request_token(token.map(str::to_string))
            .send()
    };
    send(Some("commit-token-a"), 1).await.unwrap();
    send(Some("commit-token-a"), 1)
        .await
        .expect("an idempotent repeat succeeds");
    assert_eq!(stored_events::<Account>(&db, &id).await.len(), 1);

    let err = send(None, 1).await.unwrap_err().into_service_error();
    assert_eq!(cancellation_codes(err), ["ConditionalCheckFailed"]);
    let err = send(Some("commit-token-b"), 1)
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(cancellation_codes(err), ["ConditionalCheckFailed"]);

    // One token for two different transactions is refused outright.
    let err = send(Some("commit-token-a"), 2)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            err,
            TransactWriteItemsError::IdempotentParameterMismatchException(_)
        ),
        "{err:?}"
    );
    assert_eq!(stored_events::<Account>(&db, &id).await.len(), 1);
}

/// A repository on `db`'s tables whose first `lose` transaction responses
/// are lost after the transactions were applied, and the lossy client.
fn lossy(db: &TestTables, lose: usize) -> (DynamoEventRepository, LoseResponses) {
    let (client, http) = losing_responses(&db.client, lose);
    let repo = DynamoEventRepository::new(client).with_tables(&db.events, &db.snapshots);
    (repo, http)
}

#[tokio::test]
async fn a_commit_whose_response_is_lost_succeeds_on_retry_without_duplicating() {
    let db = tables().await;
    let (repo, http) = lossy(&db, 1);
    let id = new_id();
    let events: Vec<_> = (1..=5)
        .map(|s| deposit_event("Account", &id, s, 2))
        .collect();
    let state = serde_json::to_value(Account {
        total: 10,
        applied: 5,
        notes: vec![],
    })
    .unwrap();
    repo.persist::<Account>(&events, Some((id.clone(), state.clone(), 1)))
        .await
        .expect("the retry is recognised as the same transaction");
    let tokens = http.tokens();
    assert_eq!(tokens.len(), 2, "one lost attempt, one retry");
    assert!(!tokens[0].is_empty());
    assert_eq!(tokens[0], tokens[1]);
    let plain = db.repository();
    assert_eq!(plain.get_events::<Account>(&id).await.unwrap(), events);
    let snapshot = plain.get_snapshot::<Account>(&id).await.unwrap().unwrap();
    assert_eq!((snapshot.aggregate, snapshot.current_snapshot), (state, 1));
}

#[tokio::test]
async fn a_command_whose_commit_response_is_lost_is_applied_exactly_once() {
    let db = tables().await;
    let (repo, http) = lossy(&db, 1);
    let cqrs = cqrs::<Account>(repo, SnapshotPolicy::Always);
    let id = new_id();
    cqrs.execute(&id, AccountCommand::deposit(4, 3))
        .await
        .unwrap();
    deposit(&cqrs, &id, 1).await;
    let tokens = http.tokens();
    assert_eq!(tokens.len(), 3);
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
    let (replayed, sequences) = replay(&db.repository(), &id).await;
    assert_eq!(sequences, [1, 2, 3, 4]);
    assert_eq!(replayed.total, 13);
    let snapshot = stored_snapshot::<Account>(&db, &id).await;
    assert_eq!(
        serde_json::from_value::<Account>(snapshot.aggregate).unwrap(),
        replayed
    );
}
