//! The `dynamo-es` binary end to end: the built binary, run against the
//! embedded emulator and configured only through the environment
//! (aws-config: credentials, region, `AWS_ENDPOINT_URL_DYNAMODB`).
//!
//! A report writes nothing, a recode rewrites, a second recode changes
//! nothing; `--json` prints a [`Report`], the default output is a table;
//! bad arguments exit 2, an unreachable endpoint 1, and `--codec upstream`
//! over a snapshot too big for one item exits 5 and names it. An endpoint
//! that accepts connections and never answers fails the run within its
//! timeouts, naming them.
//!
//! The target is `json+zstd-3` with `compression`, else `msgpack` with
//! `msgpack`, else plain JSON, which rewrites none of the JSON seeded here.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[cfg(feature = "compression")]
mod dictionary_support;

use std::collections::HashMap;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use common::{
    bytes, cli_at, pretty_wide, projections_args, rewrites, target, Account, AccountEvent,
    AccountView,
};
use cqrs_es::EventStore;
use dynamo_es::recode::Report;
use dynamo_es::testing::{dynamodb, endpoint, scan_all, unique_name, TestTables};
use dynamo_es::{Codec, DynamoStore};

/// The bytes of every item in `table`, as DynamoDB sizes them.
async fn table_bytes(client: &Client, table: &str) -> u64 {
    bytes(&scan_all(client, table).await.unwrap())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fresh tables, and an aggregate store on them writing plain JSON.
async fn json_store() -> (TestTables, DynamoStore<Account>) {
    let db = dynamodb().await.unwrap();
    let store = DynamoStore::new_aggregate_store(db.repository().with_codec(Codec::json()));
    (db, store)
}

/// Commits one `Noted` event of each of `texts` to `id`.
async fn commit_notes(
    store: &DynamoStore<Account>,
    id: &str,
    texts: impl IntoIterator<Item = String>,
) {
    let context = store.load_aggregate(id).await.unwrap();
    let events = texts
        .into_iter()
        .map(|text| AccountEvent::Noted { text })
        .collect();
    store.commit(events, context, HashMap::new()).await.unwrap();
}

/// Six views of pretty-printed JSON: every target but plain JSON shrinks
/// them.
async fn seed_views(db: &TestTables) {
    for k in 0..6 {
        let view = AccountView {
            deposits: k,
            total: 10,
            last_sequence: k,
        };
        db.client
            .put_item()
            .table_name(&db.views)
            .item("ViewId", AttributeValue::S(format!("v{k}")))
            .item("ViewVersion", AttributeValue::N("1".into()))
            .item("Payload", AttributeValue::B(Blob::new(pretty_wide(&view))))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_cli_reports_and_recodes_through_aws_config() {
    let db = dynamodb().await.unwrap();
    seed_views(&db).await;
    let endpoint = endpoint().unwrap();
    // An empty events table beside the views; reports list events first.
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args = strings(extra);
        args.extend([
            "--events-table".into(),
            db.events.clone(),
            "--view-table".into(),
            db.views.clone(),
            "--codec".into(),
            target().name(),
            "--json".into(),
        ]);
        args
    };
    let seeded = table_bytes(&db.client, &db.views).await;

    // A report writes nothing.
    let out = cli_at(&args(&["report", "--segments", "2"]), &endpoint).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.complete);
    let events = &report.tables[0];
    assert_eq!(
        (events.table.as_str(), events.counts.items_scanned),
        (db.events.as_str(), 0)
    );
    let views = &report.tables[1];
    assert_eq!(views.table, db.views);
    assert!(views.dry_run);
    // Over 1 KB and compressible: every target but plain JSON rewrites them.
    let expected = if rewrites() { 6 } else { 0 };
    assert_eq!(
        (views.counts.items_scanned, views.counts.items_recoded),
        (6, expected)
    );
    assert_eq!(views.counts.bytes_before, seeded);
    assert_eq!(views.counts.bytes_after < seeded, rewrites());
    assert_eq!(
        table_bytes(&db.client, &db.views).await,
        seeded,
        "nothing written"
    );
    assert!(
        out.stderr.is_empty(),
        "no progress bar off a terminal: {}",
        stderr(&out)
    );

    // A recode rewrites, as reported, resumably.
    let checkpoint = std::env::temp_dir().join(format!("{}.json", unique_name("cli-checkpoint")));
    let checkpoint_arg = checkpoint.to_str().unwrap();
    let recode = args(&[
        "recode",
        "--segments",
        "2",
        "--rate",
        "100",
        "--page-size",
        "2",
        "--checkpoint",
        checkpoint_arg,
    ]);
    let out = cli_at(&recode, &endpoint).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let done: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!done.tables[1].dry_run);
    assert_eq!(done.tables[1].counts.items_recoded, expected);
    assert_eq!(done.tables[1].counts.bytes_after, views.counts.bytes_after);
    let recoded = table_bytes(&db.client, &db.views).await;
    assert_eq!(done.tables[1].counts.bytes_after, recoded);
    std::fs::remove_file(&checkpoint).unwrap();

    // A second recode changes nothing.
    let out = cli_at(&args(&["recode", "--segments", "2"]), &endpoint).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let again: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again.tables[1].counts.items_recoded, 0);
    assert_eq!(again.tables[1].counts.bytes_before, recoded);
    assert_eq!(table_bytes(&db.client, &db.views).await, recoded);

    // Back to plain JSON: the target would grow them, so nothing moves, and
    // stderr says how to move them anyway.
    let views_only = |extra: &[&str]| {
        let mut args = strings(&["recode", "--view-table", &db.views, "--json"]);
        args.extend(strings(extra));
        args
    };
    let out = cli_at(&views_only(&["--codec", "json"]), &endpoint).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let back: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back.tables[0].counts.items_recoded, 0);
    let err = stderr(&out);
    if rewrites() {
        assert_eq!(back.items_other_format(), 6);
        assert!(
            err.contains("6 items are not stored as json and were left as they are")
                && err.contains("--allow-growth")
                && err.contains("--codec upstream"),
            "{err}"
        );
    } else {
        assert!(err.is_empty(), "{err}");
    }
    assert_eq!(table_bytes(&db.client, &db.views).await, recoded);

    // A checkpoint in a missing directory is named before anything runs.
    let missing = std::env::temp_dir()
        .join(unique_name("cli-missing"))
        .join("recode.json");
    let missing_arg = missing.to_str().unwrap();
    let out = cli_at(
        &views_only(&["--codec", "json", "--checkpoint", missing_arg]),
        &endpoint,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(missing_arg) && err.contains("does not exist"),
        "{err}"
    );
    // A dry run keeps no checkpoint, and says so; a report takes none.
    let out = cli_at(
        &views_only(&["--codec", "json", "--dry-run", "--checkpoint", missing_arg]),
        &endpoint,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a dry run keeps no checkpoint"),
        "{}",
        stderr(&out)
    );
    let out = cli_at(
        &strings(&[
            "report",
            "--view-table",
            &db.views,
            "--codec",
            "json",
            "--checkpoint",
            missing_arg,
        ]),
        &endpoint,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!missing.exists());

    // Without --json the report is a table.
    let out = cli_at(
        &strings(&["report", "--view-table", &db.views, "--codec", "json"]),
        &endpoint,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&db.views) && text.contains("bytes after"),
        "{text}"
    );

    // Bad arguments exit 2, an error 1.
    let out = cli_at(
        &strings(&["report", "--view-table", &db.views, "--codec", "xml"]),
        &endpoint,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown format `xml`"));
    let out = cli_at(&args(&["report"]), "http://127.0.0.1:1").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
}

/// `--codec upstream` leaves a snapshot that needs more than one item as
/// plain JSON where it is, exits 5 and names its key.
#[tokio::test]
async fn upstream_leaves_a_chunked_snapshot_and_exits_5_naming_it() {
    let (db, store) = json_store().await;
    // Over 400 KB of state: chunked. A small one beside it is upstream's.
    for (id, notes) in [("cli-big", 2), ("cli-small", 1)] {
        let len = if notes == 2 { 250_000 } else { 100 };
        commit_notes(&store, id, (0..notes).map(|k| format!("{k}").repeat(len))).await;
    }

    let args = strings(&[
        "recode",
        "--events-table",
        &db.events,
        "--snapshots-table",
        &db.snapshots,
        "--codec",
        "upstream",
        "--json",
    ]);
    let out = cli_at(&args, &endpoint().unwrap()).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("upstream dynamo-es cannot read them") && err.contains("Account:cli-big"),
        "{err}"
    );
    assert!(!err.contains("cli-small"), "{err}");
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.complete);
    assert_eq!(report.items_not_convertible(), 1);
    let snapshots = &report.tables[1];
    assert_eq!(snapshots.codec, "upstream");
    assert_eq!(snapshots.counts.chunked_before, 1);
    assert_eq!(snapshots.counts.chunked_after, 1);
    assert_eq!(snapshots.not_convertible_keys, vec!["Account:cli-big"]);

    // Left as it was: it still loads whole.
    let context = store.load_aggregate("cli-big").await.unwrap();
    assert_eq!(context.aggregate.notes.len(), 2);
    assert_eq!(context.aggregate.notes[1].len(), 250_000);
}

/// A DynamoDB that hangs: a TCP listener that accepts connections and never
/// answers, holding them open. It stops by itself after `life`.
async fn silent_endpoint(life: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        let accept = async {
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        };
        let _ = tokio::time::timeout(life, accept).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_endpoint_that_never_answers_fails_within_the_timeouts_naming_them() {
    let endpoint = silent_endpoint(Duration::from_secs(120)).await;
    let checkpoint = std::env::temp_dir().join(format!("{}.json", unique_name("cli-silent")));
    let checkpoint = checkpoint.to_str().unwrap().to_string();
    // A report scans; a recode with a checkpoint first describes the table.
    let commands = [
        strings(&["report", "--view-table", "V", "--codec", "json"]),
        strings(&[
            "recode",
            "--view-table",
            "V",
            "--codec",
            "json",
            "--checkpoint",
            &checkpoint,
        ]),
    ];
    for mut args in commands {
        args.extend(strings(&[
            "--endpoint-url",
            &endpoint,
            "--connect-timeout",
            "1s",
            "--attempt-timeout",
            "1s",
            "--operation-timeout",
            "2s",
            "--max-attempts",
            "2",
        ]));
        let started = Instant::now();
        let child = common::cli_command()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Dropping the child on a timeout kills it.
        let bound = Duration::from_secs(30);
        let Ok(out) = tokio::time::timeout(bound, child.wait_with_output()).await else {
            panic!(
                "{} still running after {bound:?}: no timeout applied",
                args[0]
            );
        };
        let out = out.unwrap();
        let elapsed = started.elapsed();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", args[0]);
        assert!(
            elapsed >= Duration::from_secs(1),
            "{}: failed before any timeout ({elapsed:?}): {err}",
            args[0]
        );
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("timeout"), "{err}");
        assert!(
            err.contains("--attempt-timeout 1s, --operation-timeout 2s, --max-attempts 2"),
            "the hint names the limits: {err}"
        );
        assert!(out.stdout.is_empty(), "no report");
    }
    assert!(
        !std::path::Path::new(&checkpoint).exists(),
        "no checkpoint is written for a table that could not be described"
    );
}

/// An HTTP server that answers every request with `response` (status line,
/// headers and body), for as long as the test runs.
async fn fixed_http_server(response: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                // One answer per request read (requests here fit one read).
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(response.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// The `caused by:` lines each say something the lines before them did not.
fn assert_each_cause_once(err: &str) {
    let lines: Vec<&str> = err.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(cause) = line.trim_start().strip_prefix("caused by: ") else {
            continue;
        };
        assert!(
            !lines[..i].iter().any(|earlier| earlier.contains(cause)),
            "cause repeated: {cause:?} in\n{err}"
        );
    }
}

/// Issue 23, points 1 and 15: `--help` says what the tool does (all its
/// commands) and how to install it from the repository, since the
/// crates.io package of that name is upstream's library without a binary;
/// a bad `--codec` lists `upstream` too.
#[tokio::test]
async fn help_names_every_command_and_the_install_command_that_works() {
    let out = common::cli(&["--help"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("cargo install --git https://github.com/dynamo-es/dynamo-es dynamo-es")
            && help.contains("cargo install --path ."),
        "{help}"
    );
    assert!(!help.contains("cargo install dynamo-es "), "{help}");
    let about = help.lines().next().unwrap();
    assert!(
        about.contains("dictionar") && about.contains("projections"),
        "{about}"
    );
    assert!(help.contains("AWS_ENDPOINT_URL_DYNAMODB"), "{help}");

    let out = common::cli(&["report", "--view-table", "V", "--codec", "xml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`upstream`"), "{}", stderr(&out));
}

/// Issue 23, point 8: a table passed in the wrong role is refused before an
/// item is read (no warning per item), naming the role it looks like.
#[tokio::test]
async fn a_table_in_the_wrong_role_is_refused_naming_the_role_it_looks_like() {
    let (db, store) = json_store().await;
    for id in ["role-1", "role-2", "role-3"] {
        commit_notes(&store, id, [id.to_string()]).await;
    }
    let cases = [
        (
            "--view-table",
            &db.events,
            "it looks like an events table (--events-table)",
        ),
        (
            "--events-table",
            &db.snapshots,
            "it looks like a snapshots table (--snapshots-table)",
        ),
        (
            "--snapshots-table",
            &db.views,
            "it looks like a view table (--view-table)",
        ),
    ];
    for (flag, table, looks_like) in cases {
        let out = common::cli(&strings(&["report", flag, table, "--codec", "json"])).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {table}: {err}");
        assert!(
            err.contains(looks_like) && err.contains(table.as_str()),
            "{err}"
        );
        assert_eq!(
            err.lines().count(),
            1,
            "one line, no warning per item: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

/// A report of the view table `V` that makes one attempt per request.
const ONE_ATTEMPT_REPORT: [&str; 7] = [
    "report",
    "--view-table",
    "V",
    "--codec",
    "json",
    "--max-attempts",
    "1",
];

/// Issue 23, point 9: an endpoint that is not DynamoDB (a web server
/// answering HTML) and a refused connection are named with the endpoint
/// and, when there was an answer, its HTTP status; each cause is printed
/// once.
#[tokio::test]
async fn network_errors_name_the_endpoint_and_status_and_each_cause_once() {
    let html = fixed_http_server(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\n\r\n<html></html>",
    )
    .await;
    let args = ONE_ATTEMPT_REPORT;
    let out = cli_at(&args, &html).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&html) && err.contains("HTTP 200"), "{err}");
    assert_each_cause_once(&err);

    let out = cli_at(&args, "http://127.0.0.1:1").await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
    assert_each_cause_once(&err);
}

/// The binary with no credentials anywhere but instance metadata, which
/// answers `imds` (as some proxies and containers do).
fn without_credentials(imds: &str) -> tokio::process::Command {
    let mut command = common::cli_command();
    command
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("RUST_LOG")
        .env("AWS_CONFIG_FILE", "/nonexistent/dynamo-es-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/dynamo-es-test/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "false")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint().unwrap());
    command
}

/// Issue 23, point 10: instance metadata answering 403 means no
/// credentials: a configuration error with the usual fix, not "could not
/// reach DynamoDB"; the SDK's own warnings stay off stderr without `-v`.
#[tokio::test]
async fn missing_credentials_are_a_configuration_error_without_sdk_noise() {
    let imds = fixed_http_server("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await;
    let args = ONE_ATTEMPT_REPORT;
    let out = without_credentials(&imds)
        .args(args)
        .output()
        .await
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("could not reach DynamoDB"), "{err}");
    assert!(
        err.contains("AWS_ACCESS_KEY_ID") && err.contains("AWS_PROFILE"),
        "the usual fix: {err}"
    );
    assert!(!err.contains(".credentials_provider("), "{err}");
    assert!(
        !err.contains("aws_config"),
        "no SDK warnings without -v: {err}"
    );
    assert_each_cause_once(&err);

    let out = without_credentials(&imds)
        .args(args)
        .arg("-v")
        .output()
        .await
        .unwrap();
    assert!(stderr(&out).contains("aws_config"), "{}", stderr(&out));
}

/// Issue 23, point 7: the hints speak in flags and environment variables:
/// a missing region asks for --region or AWS_REGION, a missing table for
/// the scripts that create tables, not for Rust calls.
#[tokio::test]
async fn hints_speak_in_flags_and_environment_variables() {
    let out = common::cli_command()
        .args(["report", "--view-table", "V", "--codec", "json"])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", "/nonexistent/dynamo-es-test/config")
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint().unwrap())
        .output()
        .await
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--region") && err.contains("AWS_REGION"),
        "{err}"
    );
    assert!(!err.contains(".region("), "{err}");

    let missing = unique_name("cli-missing-table");
    let out = common::cli(&strings(&[
        "report",
        "--view-table",
        &missing,
        "--codec",
        "json",
    ]))
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&missing) && err.contains("db/create_tables.sh"),
        "{err}"
    );
    assert!(!err.contains("dynamo_es::create_event_tables"), "{err}");
    assert_each_cause_once(&err);
}

/// Puts a view with this stored payload.
#[cfg(feature = "compression")]
async fn put_view(db: &TestTables, id: &str, payload: Vec<u8>) {
    db.client
        .put_item()
        .table_name(&db.views)
        .item("ViewId", AttributeValue::S(id.into()))
        .item("ViewVersion", AttributeValue::N("1".into()))
        .item("Payload", AttributeValue::B(Blob::new(payload)))
        .send()
        .await
        .unwrap();
}

/// Issue 23, point 13: a report says why items were left as they are:
/// under the compression threshold (small views stay plain), or not
/// smaller with the target (compressed harder than the target would).
#[cfg(feature = "compression")]
#[tokio::test]
async fn a_report_says_why_items_were_skipped() {
    let db = dynamodb().await.unwrap();
    for k in 0..3 {
        put_view(
            &db,
            &format!("small-{k}"),
            format!("{{\"n\":{k}}}").into_bytes(),
        )
        .await;
    }
    // Varied text, which zstd's level 19 packs tighter than its level 1.
    let mut seed = 7u64;
    let words: Vec<String> = (0..4000)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            format!("w{}", (seed >> 33) % 5000)
        })
        .collect();
    let big = serde_json::json!({ "words": words });
    let tight = Codec::json().compressed(19).encode(&big).unwrap();
    for k in 0..2 {
        put_view(&db, &format!("tight-{k}"), tight.clone()).await;
    }
    let args = strings(&[
        "report",
        "--view-table",
        &db.views,
        "--codec",
        "json+zstd-1",
    ]);
    let mut json_args = args.clone();
    json_args.push("--json".into());
    let out = common::cli(&json_args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let views = &value["tables"][0];
    assert_eq!(views["items_skipped"], 5, "{views}");
    assert_eq!(views["items_under_threshold"], 3, "{views}");
    assert_eq!(views["items_not_smaller"], 2, "{views}");

    let out = common::cli(&args).await;
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row: {text}"))
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    };
    assert_eq!(row("under compression threshold"), "3", "{text}");
    assert_eq!(row("not smaller"), "2", "{text}");
}

/// Issue 23, point 14: `dictionary train` refuses to store a dictionary
/// trained on a small sample (unless `--allow-small-sample`), prints the
/// held-out count beside the ratio, stores nothing with `--dry-run`, lists
/// the aggregate types found when the one asked for has none, and `list`
/// prints dates.
#[cfg(feature = "compression")]
#[tokio::test]
async fn dictionary_train_guards_small_samples_and_dry_runs() {
    use dictionary_support::{seed_training, Order};
    let db = dynamodb().await.unwrap();
    seed_training::<Order>(&db, 60, 21).await;
    let train = |extra: &[&str]| {
        let mut args = strings(&[
            "dictionary",
            "train",
            "--events-table",
            &db.events,
            "--snapshots-table",
            &db.snapshots,
            "--sample",
            "60",
            "--size",
            "1024",
        ]);
        args.extend(strings(extra));
        args
    };
    let list = || strings(&["dictionary", "list", "--snapshots-table", &db.snapshots]);
    let stdout = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();

    let out = common::cli(&train(&["--aggregate-type", "Order"])).await;
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(
        err.contains("--allow-small-sample")
            && err.contains("60 events of Order (6 of them held out)"),
        "{err}"
    );
    assert!(text.contains("measured on 6 held-out events"), "{text}");
    assert!(stdout(&common::cli(&list()).await).contains("0 dictionaries"));

    let out = common::cli(&train(&["--aggregate-type", "Order", "--dry-run"])).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("dry run, nothing stored"), "{text}");
    assert!(stdout(&common::cli(&list()).await).contains("0 dictionaries"));

    let out = common::cli(&train(&[
        "--aggregate-type",
        "Order",
        "--allow-small-sample",
    ]))
    .await;
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.starts_with("stored dictionary "), "{text}");
    let listed = stdout(&common::cli(&list()).await);
    assert!(
        listed.contains("1 dictionaries") && listed.contains("held out"),
        "{listed}"
    );
    let row = listed.lines().nth(1).unwrap();
    let date = row.split_whitespace().nth(3).unwrap();
    assert!(
        date.len() == 20 && date.as_bytes()[10] == b'T' && date.ends_with('Z'),
        "an RFC 3339 date: {row}"
    );
    assert_eq!(row.split_whitespace().last(), Some("6"), "held out: {row}");

    let out = common::cli(&train(&["--aggregate-type", "Cart"])).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Order (60)"), "{err}");
}

/// Issue 23, point 7: a missing checkpoint table points at the scripts
/// that create it (the AWS CLI or CloudFormation), not at a Rust call.
#[tokio::test]
async fn a_missing_checkpoint_table_points_at_the_table_scripts() {
    let missing = unique_name("cli-missing-checkpoints");
    let out = common::cli(&projections_args("status", &missing, "summary")).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&missing)
            && err.contains("db/create_tables.sh")
            && err.contains("Checkpoints"),
        "{err}"
    );
    assert!(!err.contains("dynamo_es::create_"), "{err}");
    assert_each_cause_once(&err);
}

/// Issue 23, points 1 and 15: without `compression`, `dynamo-es dictionary`
/// and a zstd codec say which feature they need and print the install
/// command that works.
#[cfg(not(feature = "compression"))]
#[tokio::test]
async fn without_compression_dictionary_and_zstd_name_the_feature_and_the_install_command() {
    let out = common::cli(&["dictionary", "train", "--events-table", "E"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`compression` feature"), "{err}");
    assert!(
        err.contains("cargo install --git https://github.com/dynamo-es/dynamo-es dynamo-es"),
        "{err}"
    );
    assert!(!err.contains("unrecognized subcommand"), "{err}");

    let out = common::cli(&["report", "--view-table", "V", "--codec", "json+zstd-3"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`compression` feature")
            && err.contains("cargo install --git https://github.com/dynamo-es/dynamo-es"),
        "{err}"
    );
}
