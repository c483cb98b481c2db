//! `ReadConsistency::Eventual` against a stale replica (`StaleReads`): the
//! events' query of a snapshot store and of an event store is read
//! eventually consistent, a state behind the newest event conflicts and
//! never overwrites, the retry reads strongly, and an answer with a hole is
//! never applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![recursion_limit = "256"]

use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use dynamo_es::testing::aggregates::{BankAccount, BankCommand};
use dynamo_es::testing::faults::{stale_reads, StaleQuery, StaleReads};
use dynamo_es::testing::{dynamodb, unique_name, TestTables};
use dynamo_es::{
    execute_with_retry, DynamoAggregateContext, DynamoStore, ReadConsistency, SnapshotPolicy,
};

const POLICIES: [SnapshotPolicy; 2] = [SnapshotPolicy::Never, SnapshotPolicy::Every(4)];

fn deposit(cents: i64) -> BankCommand {
    BankCommand::Deposit {
        cents,
        description: format!("deposit of {cents}"),
    }
}

/// A store on `db` through `stale`, reading the events as `consistency` says.
fn store(
    db: &TestTables,
    stale: &StaleReads,
    policy: SnapshotPolicy,
    consistency: ReadConsistency,
) -> DynamoStore<BankAccount> {
    let (client, _) = stale_reads(&db.client, stale.clone());
    let tables = TestTables {
        client,
        ..db.clone()
    };
    DynamoStore::new(tables.repository(), policy).with_read_consistency(consistency)
}

/// The aggregate replayed strongly from all its events.
async fn replayed(db: &TestTables, id: &str) -> BankAccount {
    DynamoStore::<BankAccount>::new_event_store(db.repository())
        .load_aggregate(id)
        .await
        .unwrap()
        .aggregate
}

/// Fresh tables, and for each of the `POLICIES` an aggregate (named after
/// `prefix`) with `deposits` deposits of 1..=deposits cents, committed
/// strongly.
async fn seeded(prefix: &str, deposits: i64) -> (TestTables, Vec<(SnapshotPolicy, String)>) {
    let db = dynamodb().await.unwrap();
    let mut seeded = Vec::new();
    for policy in POLICIES {
        let id = unique_name(prefix);
        let store = DynamoStore::<BankAccount>::new(db.repository(), policy);
        let cqrs = CqrsFramework::new(store, vec![], ());
        for cents in 1..=deposits {
            cqrs.execute(&id, deposit(cents)).await.unwrap();
        }
        seeded.push((policy, id));
    }
    (db, seeded)
}

/// `id` loaded by a store on `db` through `stale`, reading the events as
/// `consistency` says.
async fn load(
    db: &TestTables,
    stale: &StaleReads,
    policy: SnapshotPolicy,
    consistency: ReadConsistency,
    id: &str,
) -> DynamoAggregateContext<BankAccount> {
    store(db, stale, policy, consistency)
        .load_aggregate(id)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_eventual_load_reads_the_events_eventually_and_the_snapshot_strongly() {
    let (db, seeded) = seeded("fresh", 6).await;
    for (policy, id) in seeded {
        // A replica that is current: the load is the replay.
        let current = StaleReads::lagging(0);
        let loaded = load(&db, &current, policy, ReadConsistency::Eventual, &id).await;
        assert_eq!(loaded.aggregate, replayed(&db, &id).await, "{policy:?}");
        assert_eq!(loaded.current_sequence, 6, "{policy:?}");
        assert_eq!(
            current.queries(),
            [StaleQuery {
                consistent: false,
                dropped: 0
            }],
            "{policy:?}: one eventually consistent query of the events"
        );
        // The default stays strong.
        let strong = StaleReads::lagging(1);
        let loaded = load(&db, &strong, policy, ReadConsistency::default(), &id).await;
        assert_eq!(loaded.current_sequence, 6, "{policy:?}");
        assert!(strong.queries().iter().all(|q| q.consistent), "{policy:?}");
    }
}

#[tokio::test]
async fn a_stale_state_conflicts_and_the_retry_reads_strongly() {
    let (db, seeded) = seeded("stale", 6).await;
    for (policy, id) in seeded {
        // The replica misses the newest event of every answer.
        let stale = StaleReads::lagging(1);
        let cqrs = CqrsFramework::new(
            store(&db, &stale, policy, ReadConsistency::Eventual),
            vec![],
            (),
        );
        // Decided on the state at 5, the commit at 6 conflicts and writes
        // nothing.
        let first = cqrs.execute(&id, deposit(100)).await;
        assert!(
            matches!(first, Err(AggregateError::AggregateConflict)),
            "{policy:?}: {first:?}"
        );
        assert_eq!(replayed(&db, &id).await.balance_cents, 21, "{policy:?}");
        // The next load of that aggregate reads strongly, once.
        let attempts = execute_with_retry(&cqrs, &id, deposit(100), Default::default(), 3)
            .await
            .unwrap();
        assert_eq!(
            attempts, 1,
            "{policy:?}: the load after the conflict was strong"
        );
        let consistency: Vec<bool> = stale.queries().iter().map(|q| q.consistent).collect();
        assert_eq!(
            consistency.last(),
            Some(&true),
            "{policy:?}: {consistency:?}"
        );
        // A command run with the retry from a stale read: one conflict, then
        // a strong load.
        let attempts = execute_with_retry(&cqrs, &id, deposit(1000), Default::default(), 3)
            .await
            .unwrap();
        assert_eq!(attempts, 2, "{policy:?}");
        let account = replayed(&db, &id).await;
        assert_eq!(account.balance_cents, 21 + 100 + 1000, "{policy:?}");
        assert_eq!(
            account.statement.len(),
            8,
            "{policy:?}: nothing written twice"
        );
    }
}

#[tokio::test]
async fn an_eventual_answer_with_a_hole_is_read_again_strongly() {
    let (db, seeded) = seeded("hole", 7).await;
    for (policy, id) in seeded {
        let holes = StaleReads::with_hole();
        let loaded = load(&db, &holes, policy, ReadConsistency::Eventual, &id).await;
        assert_eq!(loaded.aggregate, replayed(&db, &id).await, "{policy:?}");
        assert_eq!(loaded.current_sequence, 7, "{policy:?}");
        let queries = holes.queries();
        assert_eq!(
            (queries[0].consistent, queries[0].dropped),
            (false, 1),
            "{policy:?}: {queries:?}"
        );
        assert!(
            queries[1..].iter().any(|q| q.consistent),
            "{policy:?}: {queries:?}"
        );
    }
}
