//! `dynamo-es local` end to end: the built binary, started as a child
//! process on a free port (`--port 0`), prints its endpoint and the
//! environment to export, and that environment is all a client needs:
//! `dynamo-es report` runs against it with nothing else, and the README's
//! projector (a `Projector` over the Streams endpoint it serves, its SDK
//! configuration loaded from that environment) projects events committed
//! there. SIGTERM stops it; `--db FILE` keeps the data for the next run; a
//! port in use exits 1 naming it and `--port`.
#![cfg(all(feature = "cli", feature = "test-util"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_types::os_shim_internal::{Env, Fs};
use cqrs_es::persist::ViewRepository;
use dynamo_es::aws_sdk_dynamodb::Client;
use dynamo_es::projection::{
    stream_arn, CheckpointStore, Dispatcher, EventDecoder, Projector, ViewProjection,
};
use dynamo_es::recode::Report;
use dynamo_es::tables::{create_checkpoint_table, create_event_tables_with, TableOptions};
use dynamo_es::testing::unique_name;
use dynamo_es::{
    create_view_table, DynamoEventRepository, DynamoStore, DynamoViewRepository, SnapshotPolicy,
};

use common::{cqrs, deposit, Account, AccountView};

/// The variables a test run may have set, which must not reach the child.
const AWS_VARIABLES: [&str; 9] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The built `dynamo-es`, with no AWS configuration from this process.
fn dynamo_es() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dynamo-es"));
    for name in AWS_VARIABLES {
        command.env_remove(name);
    }
    command.env_remove("RUST_LOG");
    command
}

/// A running `dynamo-es local`: what it printed, and the environment of
/// its `export` lines. Killed when dropped, if still running.
struct Local {
    child: Child,
    printed: Vec<String>,
    environment: HashMap<String, String>,
}

impl Local {
    /// Starts `dynamo-es local ARGS` and waits (at most a minute) until it
    /// printed `Ctrl-C stops it`.
    fn start(args: &[&str]) -> Local {
        let mut child = dynamo_es()
            .arg("local")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, printed) = mpsc::channel();
        // Reads to the end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut local = Local {
            child,
            printed: Vec::new(),
            environment: HashMap::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !local.printed.iter().any(|line| line == "Ctrl-C stops it") {
            let left = deadline.saturating_duration_since(Instant::now());
            match printed.recv_timeout(left) {
                Ok(line) => local.printed.push(line),
                Err(_) => panic!("dynamo-es local printed {:#?}", local.printed),
            }
        }
        local.environment = local
            .printed
            .iter()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        local
    }

    fn endpoint(&self) -> &str {
        &self.environment["AWS_ENDPOINT_URL_DYNAMODB"]
    }

    /// The AWS SDK configuration a program loads in this environment (and
    /// no other: no profile files either).
    async fn sdk_config(&self) -> aws_config::SdkConfig {
        let environment: Vec<(&str, &str)> = self
            .environment
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .env(Env::from_slice(&environment))
            .fs(Fs::from_slice(&[]))
            .load()
            .await
    }

    /// `dynamo-es ARGS` with only the printed environment.
    fn run(&self, args: &[&str]) -> std::process::Output {
        dynamo_es()
            .args(args)
            .envs(&self.environment)
            .output()
            .unwrap()
    }

    /// Sends SIGTERM and waits for it to exit: its stderr, and whether it
    /// exited successfully.
    fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "still running after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
        }
        (status.success(), stderr)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's projector (docs/guide/projections.md), stopped by
/// `shutdown` instead of Ctrl-C: the tables, an exactly-once view, its
/// checkpoints, and a `Projector` on the Streams client of `config`.
async fn project(
    config: &aws_config::SdkConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::new(config);
    let stream = TableOptions::default().with_stream(true);
    create_event_tables_with(&client, "Events", "Snapshots", stream).await?;
    create_view_table(&client, "account_balances").await?;
    create_checkpoint_table(&client, "Checkpoints").await?;

    let views =
        DynamoViewRepository::<AccountView, Account>::new("account_balances", client.clone());
    let events = DynamoEventRepository::new(client.clone()).with_tables("Events", "Snapshots");
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::from_repository(&events))
        .with_projection(ViewProjection::new(views));
    let checkpoints = CheckpointStore::new(client.clone(), "Checkpoints", "account_balances");
    let streams = dynamo_es::aws_sdk_dynamodbstreams::Client::new(config);
    let arn = stream_arn(&client, "Events").await?;
    let projector = Projector::new(streams, &arn, checkpoints, dispatcher);
    projector.run(shutdown).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_projector_run_against_dynamo_es_local() {
    let local = Local::start(&["--port", "0", "--create-tables"]);
    let endpoint = local.endpoint().to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_ne!(endpoint, "http://127.0.0.1:0", "the port picked is printed");
    assert!(local.printed[0].contains(&endpoint), "{:#?}", local.printed);
    assert_eq!(
        local.environment["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"], endpoint,
        "Streams on the same endpoint"
    );
    for name in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(local.environment.contains_key(name), "{name}");
    }
    assert!(
        local
            .printed
            .iter()
            .any(|line| line.starts_with("tables Events (stream arn:")),
        "{:#?}",
        local.printed
    );

    // The projector, configured by the printed environment alone.
    let config = local.sdk_config().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let config = config.clone();
        async move {
            project(&config, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|err| err.to_string())
        }
    });
    let client = Client::new(&config);
    let repository = DynamoEventRepository::new(client.clone()).with_tables("Events", "Snapshots");
    let framework = cqrs::<Account>(repository, SnapshotPolicy::Never);
    let id = unique_name("local");
    for amount in [5, 7, 11] {
        deposit(&framework, &id, amount).await;
    }
    let views = DynamoViewRepository::<AccountView, Account>::new("account_balances", client);
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        // The view table appears once the projector created it.
        if let Ok(Some(view)) = views.load(&id).await {
            if view.deposits == 3 {
                break view;
            }
        }
        assert!(Instant::now() < deadline, "the projector never projected");
        assert!(!running.is_finished(), "the projector stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view.total, 23);
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    // Nothing applied twice: one event store replay gives the same view.
    let store = DynamoStore::<Account>::new_event_store(
        DynamoEventRepository::new(Client::new(&config)).with_tables("Events", "Snapshots"),
    );
    assert_eq!(
        cqrs_es::EventStore::load_events(&store, &id)
            .await
            .unwrap()
            .len(),
        3
    );

    // The CLI, with only the printed environment.
    let out = local.run(&[
        "report",
        "--events-table",
        "Events",
        "--snapshots-table",
        "Snapshots",
        "--codec",
        "json",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.complete);
    assert_eq!(report.tables[0].table, "Events");
    assert_eq!(report.tables[0].counts.items_scanned, 3);

    let (exited, stderr) = local.terminate();
    assert!(exited, "{stderr}");
    assert!(stderr.contains("stopping the emulator"), "{stderr}");
}

#[tokio::test]
async fn a_database_file_keeps_the_data_for_the_next_run() {
    let dir = std::env::temp_dir().join(unique_name("dynamo-es-local"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("local.sqlite");
    let path = file.to_str().unwrap();

    let first = Local::start(&["--port", "0", "--db", path, "--create-tables"]);
    assert!(
        first.printed.iter().any(|line| line.contains(path)),
        "{:#?}",
        first.printed
    );
    let client = Client::new(&first.sdk_config().await);
    let repository = DynamoEventRepository::new(client).with_tables("Events", "Snapshots");
    deposit(
        &cqrs::<Account>(repository, SnapshotPolicy::Never),
        "kept",
        3,
    )
    .await;
    let (exited, stderr) = first.terminate();
    assert!(exited, "{stderr}");

    // A new process, on another port, without --create-tables.
    let second = Local::start(&["--port", "0", "--db", path]);
    let client = Client::new(&second.sdk_config().await);
    let repository = DynamoEventRepository::new(client).with_tables("Events", "Snapshots");
    let store = DynamoStore::<Account>::new_event_store(repository);
    let events = cqrs_es::EventStore::load_events(&store, "kept")
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_port_in_use_exits_1_naming_it_and_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = dynamo_es()
        .args(["local", "--port", &port])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("--port 0"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing to export");
}
