//! Recoding a sliced events table (issue 25): every event keeps the
//! `Slice` and `CommitTime` its writer gave it, so the feed reads the
//! recoded events where and when it read them before, and nothing else of
//! the item but its payload changes.
#![cfg(feature = "msgpack")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use dynamo_es::item::{AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID, PAYLOAD};
use dynamo_es::recode::{Recoder, Table};
use dynamo_es::slice::{Slices, COMMIT_TIME, SLICE};
use dynamo_es::testing::{scan_all, sliced_dynamodb};
use dynamo_es::{Codec, SnapshotPolicy};

#[tokio::test]
async fn a_recode_keeps_every_events_slice_and_commit_time() {
    let slices = Slices::new(16).unwrap();
    // The events table with its slice index (no feed here: no checkpoints).
    let (db, _) = sliced_dynamodb(slices).await.unwrap();
    let writer = db
        .repository()
        .with_codec(Codec::json())
        .with_slices(slices);
    let accounts = cqrs::<Account>(writer, SnapshotPolicy::Never);
    for a in 0..4 {
        for times in [1, 3] {
            accounts
                .execute(&format!("account-{a}"), AccountCommand::deposit(7, times))
                .await
                .unwrap();
        }
    }
    let key = |item: &dynamo_es::item::Item| {
        format!(
            "{:?}#{:?}",
            item[AGGREGATE_TYPE_AND_ID], item[AGGREGATE_ID_SEQUENCE]
        )
    };
    let before = scan_all(&db.client, &db.events).await.unwrap();
    assert_eq!(before.len(), 16);
    // MessagePack rewrites every payload (zstd leaves one under 1 KB as
    // it is).
    let target = Codec::msgpack();
    let report = Recoder::new(db.client.clone(), target.clone())
        .run(&[Table::events(&db.events)])
        .await
        .unwrap();
    assert_eq!(report.items_unreadable(), 0);
    let after = scan_all(&db.client, &db.events).await.unwrap();
    assert_eq!(after.len(), before.len());
    let mut recoded = 0;
    for old in &before {
        let new = after.iter().find(|new| key(new) == key(old)).unwrap();
        for attribute in [SLICE, COMMIT_TIME] {
            assert!(
                old.contains_key(attribute),
                "{}: {attribute} written",
                key(old)
            );
            assert_eq!(
                new.get(attribute),
                old.get(attribute),
                "{}: {attribute}",
                key(old)
            );
        }
        recoded += usize::from(new[PAYLOAD] != old[PAYLOAD]);
        for (name, value) in old {
            if name != PAYLOAD {
                assert_eq!(new.get(name), Some(value), "{}: {name} changed", key(old));
            }
        }
    }
    assert!(
        recoded > 0,
        "the recode to {} rewrote payloads",
        target.name()
    );
}
