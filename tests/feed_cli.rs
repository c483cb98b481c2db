//! `dynamo-es backfill-slices` and feeds in `dynamo-es projections status`
//! and `reset`, end to end: the built binary against the embedded
//! emulator. The backfill stops where it is told and resumes where it
//! said; status shows each feed's slices and how far behind they are;
//! reset deletes their positions.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cli, cqrs, deposit, projections_args, Account};
use dynamo_es::projection::feed::{FeedPositions, FeedProjector, SliceReader};
use dynamo_es::projection::{Dispatcher, EventDecoder};
use dynamo_es::slice::Slices;
use dynamo_es::testing::sliced_dynamodb;
use dynamo_es::{Codec, SnapshotPolicy};
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn backfill_resumes_where_it_stopped_and_status_and_reset_know_feeds() {
    let slices = Slices::new(8).unwrap();
    let (db, checkpoints) = sliced_dynamodb(slices).await.unwrap();
    // Written without slices.
    let unsliced = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    for id in 0..5 {
        deposit(&unsliced, &format!("acct-{id}"), 1).await;
    }
    let table = &*db.events;
    let out = cli(&["backfill-slices", "--events-table", table, "--slices", "9"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("8 slices"),
        "{}",
        text(&out.stderr)
    );

    let out = cli(&[
        "backfill-slices",
        "--events-table",
        table,
        "--max-items",
        "2",
    ])
    .await;
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{printed}{}", text(&out.stderr));
    assert!(printed.contains("scanned 2, stamped 2"), "{printed}");
    let key = printed
        .split("--resume-after '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("{printed}"));
    let out = cli(&[
        "backfill-slices",
        "--events-table",
        table,
        "--resume-after",
        key,
    ])
    .await;
    let printed = text(&out.stdout);
    assert!(
        printed.contains("scanned 3, stamped 3") && printed.contains("complete"),
        "{printed}"
    );

    // A feed reads all five, and status shows its slices.
    let reader = SliceReader::new(db.client.clone(), table, "Account", slices);
    let positions = FeedPositions::new(db.client.clone(), &checkpoints, "accounts");
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()));
    let report = FeedProjector::new(reader, positions, dispatcher)
        .catch_up()
        .await
        .unwrap();
    assert_eq!(report.events, 5);
    let out = cli(&projections_args("status", &checkpoints, "accounts")).await;
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{printed}{}", text(&out.stderr));
    assert!(printed.contains("feed Account: "), "{printed}");
    assert!(
        !text(&out.stderr).contains("no checkpoints"),
        "{}",
        text(&out.stderr)
    );
    let mut args = projections_args("status", &checkpoints, "accounts");
    args.push("--json");
    let json: Value = serde_json::from_slice(&cli(&args).await.stdout).unwrap();
    let feeds = json["feeds"].as_array().unwrap();
    assert!(!feeds.is_empty() && feeds.iter().all(|f| f["aggregate_type"] == "Account"));

    let mut args = projections_args("reset", &checkpoints, "accounts");
    args.push("--yes");
    let out = cli(&args).await;
    let printed = text(&out.stdout);
    assert!(
        printed.contains(&format!("deleted {} feed slice position(s)", feeds.len())),
        "{printed}"
    );
    let positions = FeedPositions::new(db.client.clone(), &checkpoints, "accounts");
    assert!(positions.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_aggregate_gives_the_tombstone_its_slice_on_a_sliced_table() {
    use dynamo_es::item::s;
    use dynamo_es::slice::{COMMIT_TIME, SLICE};
    let slices = Slices::new(8).unwrap();
    let (db, _) = sliced_dynamodb(slices).await.unwrap();
    let sliced = cqrs::<Account>(db.repository().with_slices(slices), SnapshotPolicy::Never);
    deposit(&sliced, "acct-1", 1).await;
    let out = cli(&[
        "delete-aggregate",
        "Account",
        "acct-1",
        "--events-table",
        &db.events,
        "--snapshots-table",
        &db.snapshots,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tombstone = common::item_at(&db.client, &db.events, "Account:acct-1", 2)
        .await
        .unwrap();
    assert_eq!(
        tombstone.get(SLICE),
        Some(&s(slices.key("Account", slices.of("acct-1"))))
    );
    assert!(tombstone.contains_key(COMMIT_TIME), "{tombstone:?}");
}
