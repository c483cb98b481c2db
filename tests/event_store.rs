//! The conformance suite: every repository operation against a real DynamoDB
//! API (the embedded emulator, or `AWS_ENDPOINT_URL_DYNAMODB`), run under
//! every feature set CI tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ViewContext, ViewRepository,
};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};
use dynamo_es::{Codec, DynamoStore, Error, Limit, SnapshotPolicy};

#[tokio::test]
async fn persisted_event_store_round_trips_in_every_mode() {
    let db = tables().await;
    for mode in ["event", "snapshot", "aggregate"] {
        let repo = db.repository();
        let store = match mode {
            "event" => PersistedEventStore::<_, Account>::new_event_store(repo),
            "snapshot" => PersistedEventStore::new_snapshot_store(repo, 2),
            _ => PersistedEventStore::new_aggregate_store(repo),
        };
        let id = new_id();
        for round in 0..5i64 {
            let context = store.load_aggregate(&id).await.unwrap();
            let events = vec![
                AccountEvent::Deposited { amount: round },
                AccountEvent::Noted {
                    text: format!("round {round}"),
                },
            ];
            // A direct commit: the events were not applied to the context.
            store.commit(events, context, no_metadata()).await.unwrap();
        }
        let loaded = store.load_aggregate(&id).await.unwrap();
        let (replayed, sequences) = replay(&db.repository(), &id).await;
        assert_eq!(sequences, (1..=10).collect::<Vec<_>>(), "{mode}");
        assert_eq!(loaded.aggregate, replayed, "{mode}");
        assert_eq!(replayed.total, 10);
        assert_eq!(replayed.applied, 10);
        let envelopes = store.load_events(&id).await.unwrap();
        assert_eq!(envelopes.len(), 10);
    }
}

async fn check_snapshot_matches_replay(
    db: &dynamo_es::testing::TestTables,
    id: &str,
    expect_snapshot: bool,
) {
    let repo = db.repository();
    let (replayed, sequences) = replay(&repo, id).await;
    assert_eq!(sequences, (1..=sequences.len()).collect::<Vec<_>>());
    let snapshot = repo.get_snapshot::<Account>(id).await.unwrap();
    assert_eq!(snapshot.is_some(), expect_snapshot);
    if let Some(snapshot) = snapshot {
        // The snapshot is the state after exactly the events up to its sequence.
        let events = repo.get_events::<Account>(id).await.unwrap();
        let mut upto = Account::default();
        for event in events.into_iter().take(snapshot.current_sequence) {
            let envelope: cqrs_es::EventEnvelope<Account> = event.try_into().unwrap();
            upto.apply(envelope.payload);
        }
        let stored: Account = serde_json::from_value(snapshot.aggregate).unwrap();
        assert_eq!(stored, upto, "snapshot at {}", snapshot.current_sequence);
        assert_eq!(stored.applied, snapshot.current_sequence);
    }
    let _ = replayed;
}

#[tokio::test]
async fn cqrs_framework_snapshots_equal_replay_in_every_mode() {
    let db = tables().await;
    for policy in [
        SnapshotPolicy::Never,
        SnapshotPolicy::Every(3),
        SnapshotPolicy::Always,
    ] {
        let id = new_id();
        let cqrs = cqrs::<Account>(db.repository(), policy);
        for i in 0..50usize {
            let command = match i % 3 {
                0 => AccountCommand::deposit(1, 1),
                1 => AccountCommand::deposit(2, 4),
                _ => AccountCommand::Note {
                    text: format!("note {i}"),
                },
            };
            cqrs.execute(&id, command).await.unwrap();
        }
        assert!(matches!(
            cqrs.execute(&id, AccountCommand::Fail).await,
            Err(AggregateError::UserError(_))
        ));
        check_snapshot_matches_replay(&db, &id, policy != SnapshotPolicy::Never).await;
        let store = DynamoStore::<Account>::new(db.repository(), policy);
        let loaded = store.load_aggregate(&id).await.unwrap();
        let (replayed, _) = replay(&db.repository(), &id).await;
        assert_eq!(loaded.aggregate, replayed, "{policy:?}");
        assert_eq!(replayed.total, 17 + 17 * 8);
        assert_eq!(loaded.current_sequence, replayed.applied);
    }
}

#[tokio::test]
async fn direct_commits_through_dynamo_store_snapshot_correctly() {
    let db = tables().await;
    for policy in [SnapshotPolicy::Every(3), SnapshotPolicy::Always] {
        let id = new_id();
        let store = DynamoStore::<Account>::new(db.repository(), policy);
        for i in 0..50i64 {
            let context = store.load_aggregate(&id).await.unwrap();
            let events = (0..(i % 4 + 1))
                .map(|_| AccountEvent::Deposited { amount: i })
                .collect();
            store.commit(events, context, no_metadata()).await.unwrap();
        }
        check_snapshot_matches_replay(&db, &id, true).await;
        let loaded = store.load_aggregate(&id).await.unwrap();
        assert_eq!(loaded.aggregate, replay(&db.repository(), &id).await.0);
    }
}

/// Documents the upstream cqrs-es 0.5 bug our `DynamoStore` avoids: under
/// `CqrsFramework`, `PersistedEventStore` applies each event twice when it
/// builds a snapshot. If this test fails, cqrs-es has fixed the bug.
#[tokio::test]
async fn upstream_bug_persisted_event_store_double_applies_snapshots() {
    let db = tables().await;
    let id = new_id();
    let store = PersistedEventStore::<_, Account>::new_aggregate_store(db.repository());
    let cqrs = CqrsFramework::new(store, vec![], ());
    for _ in 0..10 {
        cqrs.execute(&id, AccountCommand::deposit(1, 1))
            .await
            .unwrap();
    }
    let (replayed, _) = replay(&db.repository(), &id).await;
    assert_eq!(replayed.total, 10);
    let snapshot = stored_snapshot::<Account>(&db, &id).await;
    let stored: Account = serde_json::from_value(snapshot.aggregate).unwrap();
    assert_ne!(
        stored, replayed,
        "cqrs-es no longer double-applies: revisit DynamoStore docs"
    );
    assert!(stored.total > replayed.total, "{stored:?}");
}

#[tokio::test]
async fn conflicting_commits_have_exactly_one_winner() {
    let db = tables().await;
    for policy in [SnapshotPolicy::Never, SnapshotPolicy::Always] {
        let store = DynamoStore::<Account>::new(db.repository(), policy);
        let id = new_id();
        commit_deposit(&store, store.load_aggregate(&id).await.unwrap(), 1).await;
        let first = store.load_aggregate(&id).await.unwrap();
        let second = store.load_aggregate(&id).await.unwrap();
        let a = store.commit(
            vec![AccountEvent::Deposited { amount: 10 }; 2],
            first,
            no_metadata(),
        );
        let b = store.commit(
            vec![AccountEvent::Deposited { amount: 100 }],
            second,
            no_metadata(),
        );
        let (a, b) = tokio::join!(a, b);
        let outcomes = [a.is_ok(), b.is_ok()];
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
        for result in [a, b] {
            if let Err(err) = result {
                assert_eq!(err.kind(), "AggregateConflict", "{err:?}");
            }
        }
        let (replayed, sequences) = replay(&db.repository(), &id).await;
        assert_eq!(sequences, (1..=sequences.len()).collect::<Vec<_>>());
        assert!(
            replayed.total == 21 || replayed.total == 101,
            "{replayed:?}"
        );
    }
}

#[tokio::test]
async fn histories_over_one_megabyte_load_completely() {
    let (_db, repo) = json_tables().await;
    let id = new_id();
    let events: Vec<_> = (1..=3000).map(|seq| note_event(&id, seq, 1000)).collect();
    for batch in events.chunks(100) {
        repo.persist::<Account>(batch, None).await.unwrap();
    }
    let all = repo.get_events::<Account>(&id).await.unwrap();
    assert_eq!(all.len(), 3000);
    assert!(all.iter().map(|e| e.sequence).eq(1..=3000));
    assert_eq!(all, events);
    let last = repo.get_last_events::<Account>(&id, 1234).await.unwrap();
    assert!(last.iter().map(|e| e.sequence).eq(1235..=3000));
    let mut stream = repo
        .with_streaming_channel_size(50)
        .stream_events::<Account>(&id)
        .await
        .unwrap();
    assert_sequences::<Account>(&mut stream, 3000).await;
}

#[tokio::test]
async fn stream_all_events_yields_only_the_requested_type_across_pages() {
    let db = tables().await;
    let repo = db.repository().with_streaming_channel_size(7);
    for n in 0..6 {
        let id = format!("{}-{n}", new_id());
        let events: Vec<_> = (1..=5)
            .map(|s| deposit_event(Account::TYPE, &id, s, 1))
            .collect();
        repo.persist::<Account>(&events, None).await.unwrap();
        let others: Vec<_> = (1..=4)
            .map(|s| deposit_event(Other::TYPE, &id, s, 1))
            .collect();
        repo.persist::<Other>(&others, None).await.unwrap();
    }
    let mut stream = repo.stream_all_events::<Account>().await.unwrap();
    assert_eq!(sequences::<Account>(&mut stream).await.len(), 30);
    let mut stream = repo.stream_all_events::<Other>().await.unwrap();
    assert_eq!(sequences::<Other>(&mut stream).await.len(), 24);
}

#[tokio::test]
async fn over_one_hundred_items_is_a_typed_error_and_writes_nothing() {
    let db = tables().await;
    let repo = db.repository();
    let id = new_id();
    let events: Vec<_> = (1..=101)
        .map(|s| deposit_event(Account::TYPE, &id, s, 1))
        .collect();
    let err = repo.persist::<Account>(&events, None).await.unwrap_err();
    let PersistenceError::UnknownError(source) = err else {
        panic!("{err:?}")
    };
    let err = source.downcast_ref::<Error>().unwrap();
    assert!(
        matches!(err, Error::LimitExceeded { limit: Limit::TransactionItems, size: 101, max: 100, aggregate, .. } if aggregate.ends_with(&id)),
        "{err}"
    );
    assert_eq!(count_items(&db.client, &db.events).await, 0);
    // Exactly 100 is allowed.
    repo.persist::<Account>(&events[..100], None).await.unwrap();
    assert_eq!(repo.get_events::<Account>(&id).await.unwrap().len(), 100);
    // 99 events plus a snapshot head is 100 items; 100 plus a snapshot is
    // too many, so the snapshot is left out and the events go alone.
    let more: Vec<_> = (101..=200)
        .map(|s| deposit_event(Account::TYPE, &id, s, 1))
        .collect();
    repo.persist::<Account>(&more, Some((id.clone(), serde_json::json!({}), 1)))
        .await
        .unwrap();
    assert_eq!(count_items(&db.client, &db.events).await, 200);
    assert_eq!(count_items(&db.client, &db.snapshots).await, 0);
}

#[tokio::test]
async fn views_load_create_update_and_reject_stale_versions() {
    let db = tables().await;
    for codec in Codec::available() {
        let repo = db
            .view_repository::<AccountView, Account>()
            .with_codec(codec.clone());
        let view_id = new_id();
        assert_eq!(repo.load(&view_id).await.unwrap(), None);
        let (view, context) = repo.load_with_context(&view_id).await.unwrap().unwrap();
        assert_eq!(view, AccountView::default());
        assert_eq!(context.version, 0);
        let first = AccountView {
            deposits: 1,
            total: 5,
            last_sequence: 1,
        };
        repo.update_view(first.clone(), context).await.unwrap();
        assert_eq!(repo.load(&view_id).await.unwrap(), Some(first.clone()));
        let (loaded, context) = repo.load_with_context(&view_id).await.unwrap().unwrap();
        assert_eq!((loaded, context.version), (first, 1));
        let second = AccountView {
            deposits: 2,
            total: 9,
            last_sequence: 2,
        };
        repo.update_view(second.clone(), ViewContext::new(view_id.clone(), 1))
            .await
            .unwrap();
        // A writer still holding version 1 loses, and changes nothing.
        let stale = repo
            .update_view(AccountView::default(), ViewContext::new(view_id.clone(), 1))
            .await
            .unwrap_err();
        assert!(
            matches!(stale, PersistenceError::OptimisticLockError),
            "{stale:?} ({})",
            codec.name()
        );
        let creator = repo
            .update_view(AccountView::default(), ViewContext::new(view_id.clone(), 0))
            .await
            .unwrap_err();
        assert!(matches!(creator, PersistenceError::OptimisticLockError));
        assert_eq!(repo.load(&view_id).await.unwrap(), Some(second));
    }
}

#[tokio::test]
async fn generic_query_keeps_views_in_step_through_the_framework() {
    let db = tables().await;
    let view_repo = std::sync::Arc::new(db.view_repository::<AccountView, Account>());
    let query = cqrs_es::persist::GenericQuery::<_, AccountView, Account>::new(view_repo.clone());
    let cqrs = dynamo_es::DynamoCqrs::<Account>::new(
        DynamoStore::new_snapshot_store(db.repository(), 2),
        vec![Box::new(query)],
        (),
    );
    let id = new_id();
    for _ in 0..5 {
        cqrs.execute(&id, AccountCommand::deposit(3, 2))
            .await
            .unwrap();
    }
    let view = view_repo.load(&id).await.unwrap().unwrap();
    assert_eq!(
        view,
        AccountView {
            deposits: 10,
            total: 30,
            last_sequence: 10
        }
    );
}

#[tokio::test]
async fn a_table_mixing_every_codec_reads_back_under_any_codec() {
    let db = tables().await;
    let id = new_id();
    let codecs = Codec::available();
    let mut expected = Vec::new();
    let mut seq = 0;
    for codec in &codecs {
        let repo = db.repository().with_codec(codec.clone());
        let batch: Vec<_> = (0..3)
            .map(|_| {
                seq += 1;
                note_event(&id, seq, 2000)
            })
            .collect();
        repo.persist::<Account>(&batch, None).await.unwrap();
        expected.extend(batch);
    }
    for codec in &codecs {
        let repo = db.repository().with_codec(codec.clone());
        assert_eq!(
            repo.get_events::<Account>(&id).await.unwrap(),
            expected,
            "read with {}",
            codec.name()
        );
    }
}

#[tokio::test]
async fn upstream_written_items_load_and_ours_load_upstream() {
    use upstream_dynamo_es as upstream;
    let db = tables().await;
    let up_repo = upstream::DynamoEventRepository::new(db.client.clone())
        .with_tables(&db.events, &db.snapshots);
    let ours = db.repository().with_codec(Codec::json());

    // Upstream writes events and a snapshot; we load them.
    let id = new_id();
    let events: Vec<_> = (1..=3)
        .map(|s| deposit_event(Account::TYPE, &id, s, 5))
        .collect();
    let snapshot = serde_json::to_value(Account {
        total: 15,
        applied: 3,
        notes: vec![],
    })
    .unwrap();
    up_repo
        .persist::<Account>(&events, Some((id.clone(), snapshot.clone(), 1)))
        .await
        .unwrap();
    assert_eq!(ours.get_events::<Account>(&id).await.unwrap(), events);
    let loaded = ours.get_snapshot::<Account>(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            loaded.aggregate,
            loaded.current_sequence,
            loaded.current_snapshot
        ),
        (snapshot, 3, 1)
    );
    let store = DynamoStore::<Account>::new_aggregate_store(ours.clone());
    let context = store.load_aggregate(&id).await.unwrap();
    assert_eq!(context.aggregate.total, 15);
    // ...and continue the stream where upstream left it.
    commit_deposit(&store, context, 5).await;

    // Upstream reads what we wrote.
    let up_events = up_repo.get_events::<Account>(&id).await.unwrap();
    assert_eq!(up_events.len(), 4);
    assert_eq!(
        up_events[3].payload,
        serde_json::json!({"Deposited": {"amount": 5}})
    );
    let up_snapshot = up_repo.get_snapshot::<Account>(&id).await.unwrap().unwrap();
    assert_eq!(
        (up_snapshot.current_sequence, up_snapshot.current_snapshot),
        (4, 2)
    );
    let up_state: Account = serde_json::from_value(up_snapshot.aggregate).unwrap();
    assert_eq!(
        up_state,
        Account {
            total: 20,
            applied: 4,
            notes: vec![]
        }
    );

    // Views, both ways.
    let up_views =
        upstream::DynamoViewRepository::<AccountView, Account>::new(&db.views, db.client.clone());
    let our_views = db
        .view_repository::<AccountView, Account>()
        .with_codec(Codec::json());
    let view = AccountView {
        deposits: 4,
        total: 20,
        last_sequence: 4,
    };
    up_views
        .update_view(view.clone(), ViewContext::new(id.clone(), 0))
        .await
        .unwrap();
    let (loaded, context) = our_views.load_with_context(&id).await.unwrap().unwrap();
    assert_eq!((loaded, context.version), (view.clone(), 1));
    our_views
        .update_view(
            AccountView {
                deposits: 5,
                ..view.clone()
            },
            context,
        )
        .await
        .unwrap();
    assert_eq!(up_views.load(&id).await.unwrap().unwrap().deposits, 5);
}

#[tokio::test]
async fn metadata_round_trips() {
    let db = tables().await;
    let store = DynamoStore::<Account>::new_event_store(db.repository());
    let id = new_id();
    let metadata = HashMap::from([
        ("user".to_string(), "ada".to_string()),
        ("ip".to_string(), "10.0.0.1".to_string()),
    ]);
    store
        .commit(
            vec![AccountEvent::Deposited { amount: 1 }],
            store.load_aggregate(&id).await.unwrap(),
            metadata.clone(),
        )
        .await
        .unwrap();
    let events = store.load_events(&id).await.unwrap();
    assert_eq!(events[0].metadata, metadata);
}
