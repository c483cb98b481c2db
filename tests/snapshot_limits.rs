//! Snapshots never block commits: a snapshot that does not fit beside the
//! commit's events, that readers would refuse to decode, or that the server
//! refuses, is left out and the events are committed alone. Also the error
//! classes around commits and snapshot reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use dynamo_es::testing::aggregates::{Ledger, LedgerEvent};
use dynamo_es::testing::faults::{Canned, Scripted};
use dynamo_es::{Codec, DynamoStore, Error, Limit, SnapshotPolicy};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Growth past what one transaction can hold.
// ---------------------------------------------------------------------------

/// Grows a ledger past 5 MB of JSON state in events of about 340 KB
/// through `policy`, then clears it; every commit must succeed.
async fn grow_past_5_mb(policy: SnapshotPolicy) {
    let (logs, _guard) = capture(tracing::Level::WARN, false);
    let (db, repo) = json_tables().await;
    let cqrs = cqrs::<Ledger>(repo.clone(), policy);
    let id = new_id();
    let commands = 16;
    for seed in 0..commands as u64 {
        cqrs.execute(&id, vec![LedgerEvent::import_of(340_000, seed)])
            .await
            .unwrap_or_else(|err| panic!("{policy:?}: command {seed} failed: {err:?}"));
    }
    let (expected, count) = replayed::<Ledger>(&repo, &id, usize::MAX).await;
    assert_eq!(count, commands);
    let state_len = serde_json::to_vec(&expected).unwrap().len();
    assert!(state_len > 5_000_000, "{state_len}");
    let store = DynamoStore::<Ledger>::new(repo.clone(), policy);
    let loaded = store.load_aggregate(&id).await.unwrap();
    assert_eq!(loaded.aggregate, expected, "{policy:?}");
    assert_eq!(loaded.current_sequence, commands);

    // The stored snapshot stayed where it last fitted, intact, and behind.
    let snapshot = repo.get_snapshot::<Ledger>(&id).await.unwrap().unwrap();
    assert!(
        (2..commands).contains(&snapshot.current_sequence),
        "{policy:?}: snapshot at {}",
        snapshot.current_sequence
    );
    let stored: Ledger = serde_json::from_value(snapshot.aggregate).unwrap();
    assert_eq!(
        stored,
        replayed::<Ledger>(&repo, &id, snapshot.current_sequence)
            .await
            .0
    );
    assert_eq!(loaded.current_snapshot, Some(snapshot.current_snapshot));
    let logs = logs.text();
    assert!(
        logs.contains("snapshot skipped") && logs.contains("transaction_limits"),
        "{policy:?}: no skipped snapshot logged:\n{}",
        logs.chars().take(2000).collect::<String>()
    );

    // Once the state fits again, the next snapshot is written, under the
    // version of the one stored (one per commit in aggregate mode; one at
    // sequence 18 in snapshot mode).
    cqrs.execute(&id, vec![LedgerEvent::Cleared]).await.unwrap();
    cqrs.execute(&id, vec![LedgerEvent::import_of(10, 1)])
        .await
        .unwrap();
    let (expected, count) = replayed::<Ledger>(&repo, &id, usize::MAX).await;
    let latest = repo.get_snapshot::<Ledger>(&id).await.unwrap().unwrap();
    let written = if policy == SnapshotPolicy::Always {
        2
    } else {
        1
    };
    assert_eq!(
        (latest.current_sequence, latest.current_snapshot),
        (count, snapshot.current_snapshot + written),
        "{policy:?}"
    );
    assert_eq!(
        serde_json::from_value::<Ledger>(latest.aggregate).unwrap(),
        expected
    );
    assert_eq!(store.load_aggregate(&id).await.unwrap().aggregate, expected);
    // No chunk of the large snapshot is left behind.
    assert_eq!(count_items(&db.client, &db.snapshots).await, 1);
}

#[tokio::test]
async fn an_aggregate_store_past_5_mb_keeps_committing() {
    grow_past_5_mb(SnapshotPolicy::Always).await;
}

#[tokio::test]
async fn a_snapshot_store_past_5_mb_keeps_committing() {
    grow_past_5_mb(SnapshotPolicy::Every(2)).await;
}

#[tokio::test]
async fn events_that_break_a_limit_alone_still_fail_with_a_snapshot() {
    let (db, repo) = json_tables().await;
    let id = new_id();
    let events: Vec<_> = (1..=101)
        .map(|s| deposit_event(Account::TYPE, &id, s, 1))
        .collect();
    let err = repo
        .persist::<Account>(&events, Some((id.clone(), json!({"total": 101}), 1)))
        .await
        .unwrap_err();
    let PersistenceError::UnknownError(source) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            source.downcast_ref::<Error>(),
            Some(Error::LimitExceeded {
                limit: Limit::TransactionItems,
                size: 101,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(count_items(&db.client, &db.events).await, 0);
    assert_eq!(count_items(&db.client, &db.snapshots).await, 0);

    // 100 events fit alone: they are committed, without the snapshot.
    repo.persist::<Account>(&events[..100], Some((id.clone(), json!({"total": 100}), 1)))
        .await
        .unwrap();
    assert_eq!(count_items(&db.client, &db.events).await, 100);
    assert_eq!(count_items(&db.client, &db.snapshots).await, 0);
}

// ---------------------------------------------------------------------------
// Snapshots readers would refuse.
// ---------------------------------------------------------------------------

async fn decoded_size_limit(codec: Codec) {
    let db = tables().await;
    let repo = db
        .repository()
        .with_codec(codec.with_max_decoded_size(10_000));
    let cqrs = cqrs::<Account>(repo.clone(), SnapshotPolicy::Always);
    let id = new_id();
    // About 3 KB of state per note: the 4th snapshot is over 10,000 bytes.
    for _ in 0..6 {
        cqrs.execute(&id, AccountCommand::note("abcdefghij".repeat(300)))
            .await
            .unwrap();
    }
    let (expected, sequences) = replay(&repo, &id).await;
    assert_eq!(sequences.len(), 6);
    assert!(serde_json::to_vec(&expected).unwrap().len() > 10_000);
    // The snapshot stopped at the last state under the limit: the later
    // ones (a few KB, far from any transaction limit) were skipped for
    // their decoded size alone. The warning itself is checked in
    // tests/errors.rs, on a thread whose log capture no other test races.
    let snapshot = repo.get_snapshot::<Account>(&id).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.current_sequence, snapshot.current_snapshot),
        (3, 3),
        "{}",
        repo.codec().name()
    );
    let stored: Account = serde_json::from_value(snapshot.aggregate).unwrap();
    assert!(serde_json::to_vec(&stored).unwrap().len() <= 10_000);
    for policy in [SnapshotPolicy::Always, SnapshotPolicy::Every(2)] {
        let context = DynamoStore::<Account>::new(repo.clone(), policy)
            .load_aggregate(&id)
            .await
            .unwrap();
        assert_eq!(context.aggregate, expected, "{policy:?}");
        assert_eq!(context.current_sequence, 6);
    }
}

#[tokio::test]
async fn a_snapshot_over_max_decoded_size_is_skipped_plain_json() {
    decoded_size_limit(Codec::json()).await;
}

#[cfg(feature = "compression")]
#[tokio::test]
async fn a_snapshot_over_max_decoded_size_is_skipped_compressed() {
    // Compressed, it is a few hundred bytes; decoded, over the limit. Were it
    // written, every load would fail to decode it and replay everything.
    decoded_size_limit(Codec::json().compressed(3)).await;
}

#[cfg(feature = "msgpack")]
#[tokio::test]
async fn a_snapshot_over_max_decoded_size_is_skipped_msgpack() {
    decoded_size_limit(Codec::msgpack()).await;
}

// ---------------------------------------------------------------------------
// Canned responses: servers stricter than the planner, and error classes.
// ---------------------------------------------------------------------------

/// The server refusing a transaction as too large.
fn too_large() -> Canned {
    Canned::validation_error("Transaction request size exceeded the maximum allowed")
}

/// An earlier attempt of the same transaction is still in progress.
fn in_progress() -> Canned {
    Canned::dynamo_error("TransactionInProgressException", json!({}))
}

/// Two deposits of 5 on `acct-1`, a commit of more than one event.
fn two_deposits() -> Vec<cqrs_es::persist::SerializedEvent> {
    vec![
        deposit_event("Account", "acct-1", 1, 5),
        deposit_event("Account", "acct-1", 2, 5),
    ]
}

/// The tables a `TransactWriteItems` body writes to, one per item.
fn tables_written(body: &Value) -> Vec<String> {
    body["TransactItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let (_, action) = item.as_object().unwrap().iter().next().unwrap();
            action["TableName"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_refused_transaction_with_a_snapshot_is_retried_without_it() {
    // Through DynamoStore: load (no snapshot, no events), then a commit whose
    // transaction the server refuses although it is within DynamoDB's limits.
    let http = Scripted::replying([
        Canned::ok(json!({})),
        Canned::ok(json!({"Count": 0, "ScannedCount": 0, "Items": []})),
        too_large(),
        Canned::ok(json!({})),
    ]);
    let store = DynamoStore::<Account>::new_aggregate_store(json_repo_on(&http, 3));
    let context = store.load_aggregate("acct-1").await.unwrap();
    let committed = store
        .commit(
            vec![
                AccountEvent::Deposited { amount: 5 },
                AccountEvent::Deposited { amount: 6 },
            ],
            context,
            no_metadata(),
        )
        .await
        .unwrap();
    assert_eq!(committed.len(), 2);
    let seen = http.requests();
    let ops: Vec<&str> = seen.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        ops,
        [
            "GetItem",
            "Query",
            "TransactWriteItems",
            "TransactWriteItems"
        ]
    );
    assert_eq!(
        tables_written(&seen[2].body),
        ["events", "events", "snapshots"]
    );
    // The retry: the same events, with their conditions, and no snapshot.
    assert_eq!(tables_written(&seen[3].body), ["events", "events"]);
    for item in seen[3].body["TransactItems"].as_array().unwrap() {
        assert_eq!(
            item["Put"]["ConditionExpression"],
            "attribute_not_exists(AggregateIdSequence)"
        );
    }
    assert_eq!(
        seen[2].body["TransactItems"][0],
        seen[3].body["TransactItems"][0]
    );
    // A different transaction, so a different idempotency token.
    assert_ne!(
        seen[2].body["ClientRequestToken"],
        seen[3].body["ClientRequestToken"]
    );

    // The same through the cqrs-es repository path.
    let http = Scripted::replying([too_large(), Canned::ok(json!({}))]);
    json_repo_on(&http, 3)
        .persist::<Account>(
            &two_deposits(),
            Some(("acct-1".into(), json!({"total": 5}), 1)),
        )
        .await
        .unwrap();
    let seen = http.requests();
    assert_eq!(
        tables_written(&seen[0].body),
        ["events", "events", "snapshots"]
    );
    assert_eq!(tables_written(&seen[1].body), ["events", "events"]);
}

#[tokio::test]
async fn a_refused_transaction_without_a_snapshot_is_an_error() {
    let http = Scripted::replying([too_large()]);
    let err = json_repo_on(&http, 3)
        .persist::<Account>(&two_deposits(), None)
        .await
        .unwrap_err();
    assert_failed(&err, "Dynamo", "TransactWriteItems");
    assert_eq!(http.requests().len(), 1);

    // A refused retry (events alone) is an error too, and not retried again.
    let http = Scripted::replying([too_large(), too_large()]);
    let err = json_repo_on(&http, 3)
        .persist::<Account>(
            &two_deposits(),
            Some(("acct-1".into(), json!({"total": 5}), 1)),
        )
        .await
        .unwrap_err();
    assert_failed(&err, "Dynamo", "TransactWriteItems");
    let seen = http.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(tables_written(&seen[1].body), ["events", "events"]);
}

#[tokio::test]
async fn transaction_in_progress_is_an_unknown_outcome_not_a_failure() {
    // Retried with the same token; when retries run out, a connection error
    // (outcome unknown), never a plain failure or a conflict.
    let http = Scripted::replying([in_progress(), in_progress(), in_progress()]);
    let err = json_repo_on(&http, 3)
        .persist::<Account>(&two_deposits(), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "ConnectionError", "{err:?}");
    assert_failed(&err, "Connection", "TransactWriteItems");
    let typed = typed(&err);
    assert!(!typed.is_conflict() && !typed.is_data_error());
    let seen = http.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|r| r.token() == seen[0].token()));

    // Through the framework: a connection error.
    let http = Scripted::replying([
        Canned::ok(json!({"Count": 0, "ScannedCount": 0, "Items": []})),
        in_progress(),
    ]);
    let cqrs = cqrs::<Account>(json_repo_on(&http, 1), SnapshotPolicy::Never);
    let err = failed_command(&cqrs, "acct-1", AccountCommand::deposit(1, 2)).await;
    assert_eq!(err.kind(), "DatabaseConnectionError", "{err:?}");

    // Once the earlier attempt completes, the retry reports its outcome.
    let http = Scripted::replying([in_progress(), Canned::ok(json!({}))]);
    json_repo_on(&http, 3)
        .persist::<Account>(&two_deposits(), None)
        .await
        .unwrap();
    assert_eq!(http.requests().len(), 2);
}

fn chunked_head(version: usize, hash: &str) -> Canned {
    Canned::ok(json!({"Item": {
        "AggregateTypeAndId": {"S": "Account:acct-1"},
        "AggregateType": {"S": "Account"},
        "AggregateId": {"S": "acct-1"},
        "CurrentSequence": {"N": "1"},
        "CurrentSnapshot": {"N": version.to_string()},
        "PayloadChunks": {"N": "1"},
        "PayloadSize": {"N": "2"},
        "PayloadHash": {"S": hash},
        "SnapshotWriter": {"S": "dynamo-es"},
    }}))
}

fn chunk_of_another_version() -> Canned {
    Canned::ok(json!({
        "Responses": {"snapshots": [{
            "AggregateTypeAndId": {"S": "~chunk/Account/acct-1/0"},
            "ChunkOf": {"S": "Account:acct-1"},
            "ChunkIndex": {"N": "0"},
            "PayloadHash": {"S": "ffffffffffffffff"},
            "Payload": {"B": "e30="},
        }]},
        "UnprocessedKeys": {},
    }))
}

/// Five reads of a chunked snapshot: the head of `head(attempt)` (from 1),
/// then a chunk of another version.
fn five_reads(head: impl Fn(usize) -> Canned) -> Scripted {
    Scripted::replying((1..=5).flat_map(|attempt| [head(attempt), chunk_of_another_version()]))
}

#[tokio::test]
async fn a_snapshot_rewritten_during_every_read_is_transient() {
    // Five attempts, each seeing a newer head than the last and chunks of
    // another version: a writer is at work.
    let changing = |version| chunked_head(version, &format!("{version:016x}"));
    let http = five_reads(changing);
    let err = json_repo_on(&http, 1)
        .get_snapshot::<Account>("acct-1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "ConnectionError", "{err:?}");
    let changing_error = typed(&err);
    assert!(
        matches!(changing_error, Error::SnapshotChanging { key, .. } if key == "Account:acct-1"),
        "{changing_error:?}"
    );
    assert!(!changing_error.is_data_error());
    assert_eq!(http.requests().len(), 10);

    // Through DynamoStore: a connection error, so the command can be retried.
    // (An aggregate store reads the head first, alone: no query goes out
    // before the head's reads fail.)
    let responses: Vec<Canned> = (1..=5)
        .flat_map(|attempt| [changing(attempt), chunk_of_another_version()])
        .collect();
    let http = Scripted::replying(responses);
    let Err(err) = DynamoStore::<Account>::new_aggregate_store(json_repo_on(&http, 1))
        .load_aggregate("acct-1")
        .await
    else {
        panic!("loads")
    };
    assert_eq!(err.kind(), "DatabaseConnectionError", "{err:?}");

    // The same mismatch under an unchanged head is corrupt data.
    let http = five_reads(|_| chunked_head(1, "0000000000000001"));
    let err = json_repo_on(&http, 1)
        .get_snapshot::<Account>("acct-1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "DeserializationError", "{err:?}");
    assert!(
        matches!(typed(&err), Error::Snapshot { reason, .. } if reason.contains("another snapshot version")),
        "{err:?}"
    );
}

#[test]
fn snapshot_changing_maps_to_a_retryable_class() {
    let err = Error::SnapshotChanging {
        key: "Account:1".into(),
        reason: "chunk 0 belongs to another snapshot version".into(),
    };
    assert!(!err.is_data_error() && !err.is_conflict());
    assert!(err.to_string().contains("Account:1"), "{err}");
    assert!(matches!(
        PersistenceError::from(err),
        PersistenceError::ConnectionError(_)
    ));
    let err = Error::SnapshotChanging {
        key: "Account:1".into(),
        reason: String::new(),
    };
    assert!(matches!(
        AggregateError::<AccountError>::from(err),
        AggregateError::DatabaseConnectionError(_)
    ));
}

#[tokio::test]
async fn a_commit_holding_another_aggregates_event_is_a_caller_error() {
    let http = Scripted::default();
    let repo = json_repo_on(&http, 1);
    for stranger in [
        deposit_event("Account", "acct-2", 2, 1),
        deposit_event("Other", "acct-1", 2, 1),
    ] {
        let events = vec![deposit_event("Account", "acct-1", 1, 1), stranger];
        let err = repo.persist::<Account>(&events, None).await.unwrap_err();
        assert_eq!(err.kind(), "UnknownError", "{err:?}");
        let typed = typed(&err);
        assert!(
            matches!(typed, Error::InvalidCommit { aggregate, .. } if aggregate == "Account:acct-1"),
            "{typed:?}"
        );
        assert!(!typed.is_data_error() && !typed.is_conflict());
        assert!(typed.to_string().contains("acct-1"), "{typed}");
    }
    // Nothing was sent.
    assert_eq!(http.requests().len(), 0);
}
