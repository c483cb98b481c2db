//! Expiry per aggregate type (`with_expiry`), on the embedded emulator with
//! an injected clock: the TTL attribute on every event and snapshot item,
//! and every read path treating an item past it as gone (never half an
//! aggregate), before DynamoDB removes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::EventStore;
use dynamo_es::item::{AGGREGATE_TYPE, EXPIRES_AT};
use dynamo_es::projection::{stream_arn, ChangeRecord, EventDecoder};
use dynamo_es::tables::{enable_stream, enable_ttl};
use dynamo_es::testing::{dynamodb, endpoint, scan_all, streams, TestTables};
use dynamo_es::{DynamoEventRepository, DynamoStore, Error, HotCache, SnapshotPolicy};

use common::{cqrs, deposit, typed_aggregate, Account};

const DAY: Duration = Duration::from_secs(86_400);

const POLICIES: [SnapshotPolicy; 3] = [
    SnapshotPolicy::Never,
    SnapshotPolicy::Every(2),
    SnapshotPolicy::Always,
];

/// A time in the past: items written then with a time to live of a day
/// have expired by the system clock too (recode reads that one).
fn written_at() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now - 10 * 86_400)
}

fn epoch(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `db`'s repository with accounts expiring a day after they are written,
/// its clock at `at`.
fn expiring(db: &TestTables, at: SystemTime) -> DynamoEventRepository {
    db.repository()
        .with_expiry("Account", DAY)
        .with_clock(move || at)
}

async fn load(
    repo: &DynamoEventRepository,
    policy: SnapshotPolicy,
    id: &str,
) -> Result<usize, Error> {
    match DynamoStore::<Account>::new(repo.clone(), policy)
        .load_aggregate(id)
        .await
    {
        Ok(context) => Ok(context.current_sequence),
        Err(err) => Err(match typed_aggregate(&err) {
            Error::AggregateExpired {
                aggregate_type,
                id,
                last_sequence,
                table,
            } => Error::AggregateExpired {
                aggregate_type: aggregate_type.clone(),
                id: id.clone(),
                last_sequence: *last_sequence,
                table: table.clone(),
            },
            Error::PartlyExpired {
                aggregate_type,
                id,
                sequence,
                table,
            } => Error::PartlyExpired {
                aggregate_type: aggregate_type.clone(),
                id: id.clone(),
                sequence: *sequence,
                table: table.clone(),
            },
            other => panic!("unexpected {other}"),
        }),
    }
}

#[tokio::test]
async fn every_event_and_snapshot_item_of_an_expiring_type_carries_its_ttl() {
    let db = dynamodb().await.unwrap();
    let at = written_at();
    let framework = cqrs::<Account>(expiring(&db, at), SnapshotPolicy::Every(2));
    for amount in 1..=3 {
        deposit(&framework, "a", amount).await;
    }
    let expected = AttributeValue::N((epoch(at) + 86_400).to_string());
    for table in [&db.events, &db.snapshots] {
        let items = scan_all(&db.client, table).await.unwrap();
        assert!(!items.is_empty());
        for item in &items {
            if item.get(AGGREGATE_TYPE) == Some(&AttributeValue::S("Account".into())) {
                assert_eq!(item.get(EXPIRES_AT), Some(&expected), "{item:?}");
            }
        }
    }
    // Without with_expiry, nothing expires.
    let framework = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    deposit(&framework, "b", 1).await;
    let items = scan_all(&db.client, &db.events).await.unwrap();
    let b: Vec<_> = items
        .iter()
        .filter(|item| format!("{item:?}").contains("Account:b"))
        .collect();
    assert_eq!(b.len(), 1);
    assert!(
        !b[0].contains_key(EXPIRES_AT),
        "no expiry without with_expiry"
    );
}

#[tokio::test]
async fn an_expired_aggregate_is_gone_on_every_read_path_and_live_before() {
    let db = dynamodb().await.unwrap();
    enable_stream(&db.client, &db.events).await.unwrap();
    let arn = stream_arn(&db.client, &db.events).await.unwrap();
    let at = written_at();
    for policy in POLICIES {
        let id = format!("gone-{policy:?}");
        let framework = cqrs::<Account>(expiring(&db, at), policy);
        for amount in 1..=3 {
            deposit(&framework, &id, amount).await;
        }
        // Just before the expiry every path reads it; at the expiry, none.
        let before = expiring(&db, at + DAY - Duration::from_secs(1));
        assert_eq!(load(&before, policy, &id).await.unwrap(), 3, "{policy:?}");
        let after = expiring(&db, at + DAY);
        let err = load(&after, policy, &id).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::AggregateExpired {
                    last_sequence: 3,
                    ..
                }
            ),
            "{policy:?}: {err}"
        );
    }
    let before = expiring(&db, at + DAY - Duration::from_secs(1));
    let after = expiring(&db, at + DAY);
    // The snapshot as cqrs-es's PersistedEventStore reads it.
    let id = "gone-Always";
    assert!(before.get_snapshot::<Account>(id).await.unwrap().is_some());
    assert!(after.get_snapshot::<Account>(id).await.unwrap().is_none());
    // A replay of the type.
    let replayed = |repo: DynamoEventRepository| async move {
        let mut stream = repo.stream_all_events::<Account>().await.unwrap();
        let mut count = 0;
        while let Some(event) = stream.next::<Account>(&[]).await {
            event.unwrap();
            count += 1;
        }
        count
    };
    assert_eq!(replayed(before.clone()).await, 9);
    assert_eq!(replayed(after.clone()).await, 0);
    // The stream, as a projection's decoder reads it.
    let records: Vec<ChangeRecord> =
        streams::read_all(&streams::client_for(&endpoint().unwrap()), &arn)
            .await
            .unwrap()
            .into_iter()
            .map(|(shard, record)| ChangeRecord::from_stream(&shard, record).unwrap())
            .collect();
    let decoded = |repo: &DynamoEventRepository| {
        let decoder = EventDecoder::<Account>::from_repository(repo);
        records
            .iter()
            .filter_map(|record| decoder.decode(record).unwrap())
            .count()
    };
    assert_eq!(decoded(&before), 9);
    assert_eq!(decoded(&after), 0);
}

#[tokio::test]
async fn a_partly_expired_aggregate_is_a_typed_error_unless_a_snapshot_covers_it() {
    let db = dynamodb().await.unwrap();
    let at = written_at();
    for policy in POLICIES {
        let id = format!("partly-{policy:?}");
        let early = cqrs::<Account>(expiring(&db, at), policy);
        deposit(&early, &id, 1).await;
        deposit(&early, &id, 2).await;
        // Half a day later, before the first events expire.
        let late = cqrs::<Account>(expiring(&db, at + DAY / 2), policy);
        deposit(&late, &id, 3).await;

        // After the first two expired, before the third does.
        let reader = expiring(&db, at + DAY + DAY / 5);
        let loaded = load(&reader, policy, &id).await;
        match policy {
            // The last commit's snapshot covers every event.
            SnapshotPolicy::Always => assert_eq!(loaded.unwrap(), 3),
            _ => assert!(
                matches!(loaded, Err(Error::PartlyExpired { sequence: 2, .. })),
                "{policy:?}: {loaded:?}"
            ),
        }
        // A replay of the type refuses the half aggregate too.
        let mut stream = reader.stream_all_events::<Account>().await.unwrap();
        let mut failed = false;
        while let Some(event) = stream.next::<Account>(&[]).await {
            failed |= event.is_err();
        }
        assert!(failed, "{policy:?}");
    }
}

#[tokio::test]
async fn an_expiring_type_is_never_hot_cached() {
    let db = dynamodb().await.unwrap();
    let cache = HotCache::new(10, 1 << 20);
    let cached = DynamoStore::<Account>::new(db.repository(), SnapshotPolicy::Never)
        .with_cache(cache.clone());
    assert!(cached.cache().is_some());
    let expiring = DynamoStore::<Account>::new(expiring(&db, written_at()), SnapshotPolicy::Never)
        .with_cache(cache);
    assert!(expiring.cache().is_none());
}

#[tokio::test]
async fn enable_ttl_turns_on_the_tables_ttl_by_expires_at_once() {
    let db = dynamodb().await.unwrap();
    enable_ttl(&db.client, &db.snapshots).await.unwrap();
    enable_ttl(&db.client, &db.snapshots).await.unwrap();
    let described = db
        .client
        .describe_time_to_live()
        .table_name(&db.snapshots)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(described.attribute_name.as_deref(), Some(EXPIRES_AT));
    assert!(matches!(
        described.time_to_live_status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ));
}

/// Needs a codec that rewrites a small payload: MessagePack.
#[cfg(feature = "msgpack")]
#[tokio::test]
async fn recode_leaves_tombstones_and_expired_items_as_they_are() {
    use dynamo_es::recode::{RecodeOptions, Recoder};
    let db = dynamodb().await.unwrap();
    let json = db.repository().with_codec(dynamo_es::Codec::json());
    // Expired by the system clock: written ten days ago, for a day.
    let old = cqrs::<Account>(
        json.clone()
            .with_expiry("Account", DAY)
            .with_clock(written_at),
        SnapshotPolicy::Never,
    );
    deposit(&old, "expired", 1).await;
    let live = cqrs::<Account>(json.clone(), SnapshotPolicy::Never);
    deposit(&live, "deleted", 1).await;
    deposit(&live, "live", 1).await;
    DynamoStore::<Account>::new(json, SnapshotPolicy::Never)
        .delete_aggregate("deleted")
        .await
        .unwrap();
    let before = scan_all(&db.client, &db.events).await.unwrap();
    // MessagePack rewrites every payload (zstd leaves one under 1 KB as
    // it is), so the live event's changes.
    let target = dynamo_es::Codec::msgpack();
    assert_ne!(
        target,
        dynamo_es::Codec::json(),
        "another codec to recode to"
    );
    let report = Recoder::new(db.client.clone(), target)
        .with_options(RecodeOptions::default().with_allow_growth(true))
        .run(&db.recode_tables())
        .await
        .unwrap();
    assert_eq!(report.items_unreadable(), 0, "{report:?}");
    assert_eq!(report.items_not_convertible(), 0, "{report:?}");
    let after = scan_all(&db.client, &db.events).await.unwrap();
    let unchanged: Vec<_> = before.iter().filter(|item| after.contains(item)).collect();
    assert_eq!(
        unchanged.len(),
        2,
        "the tombstone and the expired event: {unchanged:?}"
    );
    assert!(unchanged
        .iter()
        .any(|item| item.contains_key("DeletedThrough")));
    assert!(unchanged.iter().any(|item| item.contains_key(EXPIRES_AT)));
}
