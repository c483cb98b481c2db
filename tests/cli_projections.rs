//! `dynamo-es projections status` end to end: the built binary against the
//! embedded emulator, configured only through the environment. It shows
//! each shard's checkpoint, owner, finished flag and lag (with its source),
//! the last rebuild, and flags checkpoints of a replaced stream; JSON with
//! `--json`; a missing table exits 1 naming it, bad arguments exit 2.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projection_common;

use std::time::{Duration, SystemTime};

use dynamo_es::projection::{CheckpointStore, Dispatcher, EventDecoder, Rebuild, ShardInfo};
use dynamo_es::tables::create_checkpoint_table;
use dynamo_es::testing::{unique_name, TestTables};
use dynamo_es::{Codec, SnapshotPolicy};
use serde_json::Value;

use common::{cli, cqrs, deposit, Account};
use projection_common::stream_tables;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How long before the status the checkpointed record was created.
const RECORD_AGE: Duration = Duration::from_secs(5);

/// A projection `balances` with three shards: one in progress on the
/// current stream (owned by `a`, checkpoint 100 on a record `RECORD_AGE`
/// old), its finished parent, and one of an older stream (no checkpoint);
/// and a finished rebuild of 3 events.
async fn projection(db: &TestTables, arn: &str) -> String {
    let table = unique_name("checkpoints");
    create_checkpoint_table(&db.client, &table).await.unwrap();
    let store = CheckpointStore::new(db.client.clone(), &table, "balances");
    let shard = |id: &str, parent: Option<&str>, stream: &str| ShardInfo {
        stream_arn: stream.to_string(),
        shard_id: id.to_string(),
        parent_shard_id: parent.map(str::to_string),
    };
    let mut parent = store
        .acquire(&shard("shard-1", None, arn), "a")
        .await
        .unwrap()
        .unwrap();
    store.checkpoint(&mut parent, "90").await.unwrap();
    store.finish(&mut parent).await.unwrap();
    store.release(parent).await.unwrap();
    let mut child = store
        .acquire(&shard("shard-2", Some("shard-1"), arn), "a")
        .await
        .unwrap()
        .unwrap();
    let created = SystemTime::now() - RECORD_AGE;
    store
        .checkpoint_at(&mut child, "100", Some(created))
        .await
        .unwrap();
    let old = format!("{arn}-replaced");
    store
        .acquire(&shard("shard-0", None, &old), "b")
        .await
        .unwrap()
        .unwrap();

    let framework = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    for amount in 1..=3 {
        deposit(&framework, "cli-projection", amount).await;
    }
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()));
    Rebuild::new(db.client.clone(), &db.events, store, dispatcher)
        .run()
        .await
        .unwrap();
    table
}

#[tokio::test]
async fn status_shows_checkpoints_owners_finished_lag_and_the_rebuild() {
    let (db, arn) = stream_tables().await;
    let table = projection(&db, &arn).await;
    let base = [
        "projections",
        "status",
        "--checkpoint-table",
        &table,
        "--projection",
        "balances",
        "--events-table",
        &db.events,
    ];

    let out = cli(&[&base[..], &["--json"]].concat()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["projection"], "balances");
    assert_eq!(status["stream_arn"], arn.as_str());
    assert_eq!(status["rebuild"]["events"], 3);
    assert!(status["rebuild"]["finished_at_ms"].is_u64());
    let shards = status["shards"].as_array().unwrap();
    let ids: Vec<&str> = shards
        .iter()
        .map(|s| s["shard_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["shard-0", "shard-1", "shard-2"]);
    let (old, parent, child) = (&shards[0], &shards[1], &shards[2]);

    assert_eq!(child["checkpoint"], "100");
    assert_eq!(child["owner"], "a");
    assert_eq!(child["finished"], false);
    assert_eq!(child["parent_shard_id"], "shard-1");
    assert_eq!(child["current_stream"], true);
    assert_eq!(child["lag_source"], "record");
    let lag = child["lag_ms"].as_u64().unwrap();
    assert!(lag >= 5000, "the record is at least 5 s old: {lag}");
    assert_eq!(status["max_lag_ms"], child["lag_ms"]);

    assert_eq!(parent["finished"], true);
    assert_eq!(parent["checkpoint"], "90");
    assert_eq!(parent["owner"], Value::Null, "released");
    assert_eq!(
        parent["lag_ms"],
        Value::Null,
        "nothing left on a finished shard"
    );

    assert_eq!(old["current_stream"], false);
    assert_eq!(old["checkpoint"], Value::Null);
    assert_eq!(old["owner"], "b");
    assert_eq!(old["lag_source"], "update");

    let out = cli(&base).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines[0],
        format!("projection balances (checkpoint table {table})")
    );
    assert_eq!(lines[1], format!("stream {arn}"));
    assert!(lines[2].starts_with("rebuild: started ") && lines[2].ends_with(", 3 events"));
    let header: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "SHARD",
            "PARENT",
            "CHECKPOINT",
            "OWNER",
            "FINISHED",
            "LAG",
            "UPDATED"
        ]
    );
    let row = |id: &str| -> Vec<String> {
        let line = lines.iter().find(|l| l.starts_with(id)).unwrap();
        line.split_whitespace().map(str::to_string).collect()
    };
    let child = row("shard-2");
    assert_eq!(child[..5], ["shard-2", "shard-1", "100", "a", "no"]);
    assert_eq!(child[6], "(record)");
    assert_eq!(row("shard-1")[..6], ["shard-1", "-", "90", "-", "yes", "-"]);
    assert_eq!(row("shard-0")[..2], ["shard-0", "(old"]);
    let notes = text(&out.stderr);
    assert!(notes.contains("1 shard(s) belong to a stream"), "{notes}");
    assert!(notes.contains(&db.events), "{notes}");
}

#[tokio::test]
async fn an_unknown_projection_has_no_shards_and_says_so() {
    let (db, _) = stream_tables().await;
    let table = unique_name("checkpoints");
    create_checkpoint_table(&db.client, &table).await.unwrap();
    let out = cli(&[
        "projections",
        "status",
        "--checkpoint-table",
        &table,
        "--projection",
        "nobody",
        "--json",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["shards"], Value::Array(vec![]));
    assert_eq!(status["rebuild"], Value::Null);
    assert_eq!(status["stream_arn"], Value::Null);
    assert!(text(&out.stderr).contains("no checkpoints for projection nobody"));
}

#[tokio::test]
async fn a_missing_table_exits_1_naming_it_and_bad_arguments_exit_2() {
    let missing = unique_name("missing");
    let out = cli(&[
        "projections",
        "status",
        "--checkpoint-table",
        &missing,
        "--projection",
        "p",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&missing),
        "{}",
        text(&out.stderr)
    );

    let out = cli(&["projections", "status", "--checkpoint-table", "T"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--projection"));
}
