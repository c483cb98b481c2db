//! `dynamo-es projections status` and `reset` end to end: the built binary
//! against the embedded emulator, configured only through the environment.
//! It shows each shard's checkpoint, owner, finished flag and lag (with its
//! source), every shard of the stream (those without a checkpoint too), the
//! last rebuild (finished or not), and flags checkpoints of shards the
//! stream no longer lists or of a replaced stream, and says how to enable
//! the stream of a table without one; JSON with `--json`; a
//! missing table exits 1 naming it, bad arguments exit 2. `reset` deletes
//! nothing without `--yes`.
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

use common::{cli, cqrs, deposit, projections_args, Account};
use projection_common::stream_tables;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the CLI with `args` and `--json`: the status it printed (it must
/// succeed) and its output.
async fn json_status(args: &[&str]) -> (Value, std::process::Output) {
    let out = cli(&[args, &["--json"]].concat()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    (serde_json::from_slice(&out.stdout).unwrap(), out)
}

/// Tables with a stream, its ARN, and the checkpoint table of the
/// projection `balances` ([`projection`]).
async fn balances() -> (TestTables, String, String) {
    let (db, arn) = stream_tables().await;
    let table = projection(&db, &arn).await;
    (db, arn, table)
}

/// `projections status` of `balances` in `table`, read with the events
/// table `events`.
fn status_args<'a>(table: &'a str, events: &'a str) -> Vec<&'a str> {
    let mut args = projections_args("status", table, "balances");
    args.extend(["--events-table", events]);
    args
}

/// A new checkpoint table.
async fn checkpoint_table(db: &TestTables) -> String {
    let table = unique_name("checkpoints");
    create_checkpoint_table(&db.client, &table).await.unwrap();
    table
}

/// How long before the status the checkpointed record was created.
const RECORD_AGE: Duration = Duration::from_secs(5);

/// A projection `balances` with a finished rebuild of 3 events, then three
/// checkpointed shards: one in progress on the current stream (owned by
/// `a`, checkpoint 100 on a record `RECORD_AGE` old), its finished parent,
/// and one of an older stream (no checkpoint). None of the three is a shard
/// the emulator's stream describes; its one shard has no checkpoint.
async fn projection(db: &TestTables, arn: &str) -> String {
    let table = checkpoint_table(db).await;
    let store = CheckpointStore::new(db.client.clone(), &table, "balances");
    // First: a finished rebuild supersedes the checkpoints older than it.
    let framework = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    for amount in 1..=3 {
        deposit(&framework, "cli-projection", amount).await;
    }
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()));
    Rebuild::new(db.client.clone(), &db.events, store.clone(), dispatcher)
        .run()
        .await
        .unwrap();
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
    table
}

#[tokio::test]
async fn status_shows_checkpoints_owners_finished_lag_and_the_rebuild() {
    let (db, arn, table) = balances().await;
    let base = status_args(&table, &db.events);

    let (status, _) = json_status(&base).await;
    assert_eq!(status["projection"], "balances");
    assert_eq!(status["stream_arn"], arn.as_str());
    assert_eq!(status["rebuild"]["events"], 3);
    assert!(status["rebuild"]["finished_at_ms"].is_u64());
    let shards = status["shards"].as_array().unwrap();
    let ids: Vec<&str> = shards
        .iter()
        .map(|s| s["shard_id"].as_str().unwrap())
        .collect();
    // The stream's own shard, without a checkpoint, is listed too.
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[..3], ["shard-0", "shard-1", "shard-2"]);
    let (old, parent, child, unread) = (&shards[0], &shards[1], &shards[2], &shards[3]);
    assert_eq!(unread["has_checkpoint_item"], false);
    assert_eq!(unread["checkpoint"], Value::Null);
    assert_eq!(unread["described"], true);
    assert!(unread["closed"].is_boolean(), "{unread}");
    assert_eq!(unread["current_stream"], true);
    // A checkpointed shard of this stream that the stream does not list.
    assert_eq!(child["described"], false);

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
        header.join(" "),
        "SHARD PARENT CHECKPOINT OWNER FINISHED LAG UPDATED STREAM"
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
    assert_eq!(child.last().map(String::as_str), Some("gone"));
    let stream_shard = row(ids[3]);
    assert_eq!(
        stream_shard[..7],
        [ids[3], "-", "(none)", "-", "-", "-", "-"]
    );
    assert!(["open", "closed"].contains(&stream_shard[7].as_str()));
    let notes = text(&out.stderr);
    assert!(notes.contains("1 shard(s) belong to a stream"), "{notes}");
    assert!(notes.contains(&db.events), "{notes}");
    assert!(
        notes.contains("1 shard(s) of the stream have no checkpoint"),
        "{notes}"
    );
    assert!(
        notes.contains("no longer lists shard(s) shard-2") && notes.contains("rebuild"),
        "{notes}"
    );
}

/// A projection that fails on every event.
struct Refuse;

#[async_trait::async_trait]
impl dynamo_es::projection::Projection<Account> for Refuse {
    async fn project(
        &self,
        id: &str,
        _events: &[cqrs_es::EventEnvelope<Account>],
    ) -> Result<(), dynamo_es::projection::Error> {
        Err(dynamo_es::projection::Error::projection(format!(
            "{id} refused"
        )))
    }
}

#[tokio::test]
async fn a_failed_rebuild_is_shown_as_failed_with_its_error() {
    let (db, _) = stream_tables().await;
    let table = checkpoint_table(&db).await;
    let store = CheckpointStore::new(db.client.clone(), &table, "failing");
    let framework = cqrs::<Account>(db.repository(), SnapshotPolicy::Never);
    deposit(&framework, "refused-1", 5).await;
    let dispatcher =
        Dispatcher::new(EventDecoder::<Account>::new(Codec::default())).with_projection(Refuse);
    Rebuild::new(db.client.clone(), &db.events, store, dispatcher)
        .run()
        .await
        .unwrap_err();
    let base = projections_args("status", &table, "failing");

    let (status, _) = json_status(&base).await;
    assert_eq!(status["rebuild"]["state"], "failed");
    assert_eq!(status["rebuild"]["finished_at_ms"], Value::Null);
    let error = status["rebuild"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused-1 refused"), "{status}");

    let out = cli(&base).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let rebuild = shown.lines().nth(1).unwrap();
    assert!(
        rebuild.starts_with("rebuild: started ") && rebuild.contains(", FAILED "),
        "{shown}"
    );
    assert!(rebuild.contains("refused-1 refused"), "{shown}");
    let notes = text(&out.stderr);
    assert!(
        notes.contains("the last rebuild of failing did not finish")
            && notes.contains("run the rebuild again"),
        "{notes}"
    );
}

#[tokio::test]
async fn reset_deletes_every_checkpoint_and_the_marker_only_with_yes() {
    let (db, arn, table) = balances().await;
    let store = CheckpointStore::new(db.client.clone(), &table, "balances");
    let other = CheckpointStore::new(db.client.clone(), &table, "other");
    let shard = ShardInfo {
        stream_arn: arn.clone(),
        shard_id: "shard-1".into(),
        parent_shard_id: None,
    };
    other.acquire(&shard, "c").await.unwrap().unwrap();
    let base = projections_args("reset", &table, "balances");

    let out = cli(&base).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    assert_eq!(store.list().await.unwrap().len(), 3, "nothing deleted");

    let out = cli(&[&base[..], &["--yes"]].concat()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("deleted 3 shard checkpoint(s) and the rebuild marker"),
        "{}",
        text(&out.stdout)
    );
    // Leases were held on two of them (shard-2 by a, shard-0 by b).
    let notes = text(&out.stderr);
    assert!(
        notes.contains("shard-2 (a)") && notes.contains("shard-0 (b)"),
        "{notes}"
    );
    assert_eq!(store.list().await.unwrap(), []);
    assert_eq!(store.rebuild_marker().await.unwrap(), None);
    // Another projection in the same table is untouched.
    assert_eq!(other.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_table_without_a_stream_says_how_to_enable_one_not_to_rebuild() {
    // Checkpoints of the stream of one events table, and status asked about
    // another table that has no stream (the snapshots table, say).
    let (db, _, table) = balances().await;
    let base = status_args(&table, &db.snapshots);

    let (status, out) = json_status(&base).await;
    assert_eq!(status["stream_enabled"], false);
    assert_eq!(status["stream_arn"], Value::Null);

    let notes = text(&out.stderr);
    let enable = format!(
        "aws dynamodb update-table --table-name {} --stream-specification \
         StreamEnabled=true,StreamViewType=NEW_IMAGE",
        db.snapshots
    );
    assert!(
        notes.contains(&format!("table {} has no stream enabled", db.snapshots)),
        "{notes}"
    );
    assert!(notes.contains(&enable), "{notes}");
    assert!(
        notes.contains("dynamo_es::tables::enable_stream"),
        "{notes}"
    );
    // The checkpoints name the table they were read from.
    assert!(
        notes.contains(&format!("pass --events-table {}", db.events)),
        "{notes}"
    );
    assert!(!notes.contains("replaced"), "{notes}");
    assert!(!notes.contains("rebuild"), "{notes}");

    // With the events table itself, status says nothing of the kind.
    let mut right = projections_args("status", &table, "balances");
    right.extend(["--events-table", &db.events]);
    let (status, out) = json_status(&right).await;
    assert_eq!(status["stream_enabled"], true);
    assert!(!text(&out.stderr).contains("no stream enabled"));

    // A projection with no checkpoints yet gets the same advice, without a
    // table to point at.
    let empty = checkpoint_table(&db).await;
    let mut fresh = projections_args("status", &empty, "new");
    fresh.extend(["--events-table", &db.snapshots]);
    let out = cli(&fresh).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let notes = text(&out.stderr);
    assert!(notes.contains(&enable), "{notes}");
    assert!(!notes.contains("pass --events-table"), "{notes}");
}

#[tokio::test]
async fn an_unknown_projection_has_no_shards_and_says_so() {
    let (db, _) = stream_tables().await;
    let table = checkpoint_table(&db).await;
    let args = projections_args("status", &table, "nobody");
    let (status, out) = json_status(&args).await;
    assert_eq!(status["shards"], Value::Array(vec![]));
    assert_eq!(status["rebuild"], Value::Null);
    assert_eq!(status["stream_arn"], Value::Null);
    assert!(text(&out.stderr).contains("no checkpoints for projection nobody"));
}

#[tokio::test]
async fn a_missing_table_exits_1_naming_it_and_bad_arguments_exit_2() {
    let missing = unique_name("missing");
    let out = cli(&projections_args("status", &missing, "p")).await;
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
