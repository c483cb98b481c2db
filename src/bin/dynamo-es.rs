//! The `dynamo-es` command-line tool.
//!
//! `dynamo-es report` measures what moving existing tables to another codec
//! would save, writing nothing; `dynamo-es recode` rewrites them, safely
//! against concurrent writers, resumable from a checkpoint. See
//! [`dynamo_es::recode`] for what exactly is read and written.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use clap::{Args, Parser, Subcommand};
use dynamo_es::codec::ParseCodecError;
use dynamo_es::recode::{Progress, RecodeOptions, Recoder, Report, StopHandle, Table};
use dynamo_es::Codec;
use indicatif::{ProgressBar, ProgressStyle};

/// Measure and move DynamoDB event, snapshot and view tables of cqrs-es
/// (upstream dynamo-es or this crate) to another payload codec.
#[derive(Debug, Parser)]
#[command(name = "dynamo-es", version)]
struct Cli {
    /// AWS region (default: AWS_REGION, then the profile, as the AWS CLI).
    #[arg(long, global = true, value_name = "REGION")]
    region: Option<String>,
    /// DynamoDB endpoint URL (default: AWS_ENDPOINT_URL_DYNAMODB, then
    /// AWS_ENDPOINT_URL, then AWS itself).
    #[arg(long, global = true, value_name = "URL")]
    endpoint_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report what recoding to a codec would save. Writes nothing.
    Report(RunArgs),
    /// Rewrite stored payloads with a codec, where it makes them smaller.
    Recode(RecodeArgs),
}

#[derive(Debug, Args)]
struct RecodeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Compute the report and write nothing (the same as `report`).
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
struct TableArgs {
    /// An events table (repeatable).
    #[arg(long = "events-table", value_name = "TABLE")]
    events: Vec<String>,
    /// A snapshots table (repeatable).
    #[arg(long = "snapshots-table", value_name = "TABLE")]
    snapshots: Vec<String>,
    /// A view table (repeatable).
    #[arg(long = "view-table", value_name = "TABLE")]
    views: Vec<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    tables: TableArgs,
    /// The target codec: json, msgpack, json+zstd-LEVEL or msgpack+zstd-LEVEL
    /// (LEVEL 1 to 22, or -7 to -1 for zstd's fast modes); or `upstream`:
    /// only what upstream dynamo-es 0.5.0 reads (plain JSON, one item per
    /// snapshot), to return to it.
    #[arg(long, value_name = "CODEC", value_parser = parse_target)]
    codec: Target,
    /// Parallel scan segments per table.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    segments: u32,
    /// At most this many items per second over all segments (0: no limit).
    #[arg(long, value_name = "ITEMS_PER_SECOND", default_value_t = 0)]
    rate: u32,
    /// Record progress in FILE after every page, and resume from it.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Items per scan page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    page_size: u32,
    /// Also move payloads to the target format when that makes them larger
    /// (for example back to plain JSON).
    #[arg(long)]
    allow_growth: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Draw no progress bar (it is only drawn on a terminal anyway).
    #[arg(long)]
    no_progress: bool,
}

impl RunArgs {
    fn tables(&self) -> Vec<Table> {
        let t = &self.tables;
        t.events
            .iter()
            .map(Table::events)
            .chain(t.snapshots.iter().map(Table::snapshots))
            .chain(t.views.iter().map(Table::views))
            .collect()
    }
}

/// What a run writes.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A codec.
    Codec(Codec),
    /// Only what upstream dynamo-es 0.5.0 reads.
    Upstream,
}

/// Parses `upstream`, or a codec name as [`Codec::name`] prints it.
fn parse_target(name: &str) -> Result<Target, String> {
    if name == "upstream" {
        Ok(Target::Upstream)
    } else {
        parse_codec(name).map(Target::Codec)
    }
}

/// Parses a codec name as [`Codec::name`] prints it.
fn parse_codec(name: &str) -> Result<Codec, String> {
    name.parse::<Codec>().map_err(|err| match err {
        ParseCodecError::FeatureDisabled { feature, .. } => {
            format!("{err} (cargo install dynamo-es --features cli,{feature})")
        }
        err => err.to_string(),
    })
}

/// The client, configured like the AWS CLI: credentials, region and
/// endpoint from the environment and profile, overridden by the flags.
async fn client(region: Option<String>, endpoint_url: Option<String>) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(endpoint_url) = endpoint_url {
        loader = loader.endpoint_url(endpoint_url);
    }
    Client::new(&loader.load().await)
}

/// One progress bar per table, created when its first page is done.
struct Bars {
    enabled: bool,
    estimates: HashMap<String, u64>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn update(&self, progress: &Progress) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars.entry(progress.table.clone()).or_insert_with(|| {
            if !self.enabled {
                return ProgressBar::hidden();
            }
            let estimate = self.estimates.get(&progress.table).copied().unwrap_or(0);
            // The default target is stderr, drawn only when it is a terminal.
            let bar = ProgressBar::new(estimate);
            let template = if estimate > 0 {
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/~{len} items ({per_sec}) {msg}"
            } else {
                "{prefix} [{elapsed_precise}] {spinner} {pos} items ({per_sec}) {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_prefix(progress.table.clone());
            bar
        });
        if bar
            .length()
            .is_some_and(|len| len > 0 && len < progress.items_scanned)
        {
            bar.set_length(progress.items_scanned);
        }
        bar.set_position(progress.items_scanned);
        bar.set_message(format!(
            "{} recoded, {} skipped",
            progress.items_recoded, progress.items_skipped
        ));
        if progress.finished {
            bar.finish();
        }
    }

    fn clear(&self) {
        if let Ok(bars) = self.bars.lock() {
            for bar in bars.values() {
                bar.abandon();
            }
        }
    }
}

/// Approximate item counts (DynamoDB refreshes them about every six hours).
async fn estimates(client: &Client, tables: &[Table]) -> HashMap<String, u64> {
    let mut estimates = HashMap::new();
    for table in tables {
        if let Ok(out) = client.describe_table().table_name(&table.name).send().await {
            if let Some(count) = out.table().and_then(|t| t.item_count()) {
                estimates.insert(table.name.clone(), u64::try_from(count).unwrap_or(0));
            }
        }
    }
    estimates
}

/// Runs a parsed command and prints its report to `out`.
async fn execute(
    command: &Command,
    client: Client,
    stop: StopHandle,
    out: &mut dyn Write,
) -> Result<Report, Box<dyn std::error::Error>> {
    let (args, dry_run) = match command {
        Command::Report(args) => (args, true),
        Command::Recode(recode) => (&recode.run, recode.dry_run),
    };
    let tables = args.tables();
    let bars = Arc::new(Bars {
        enabled: !args.no_progress,
        estimates: if args.no_progress {
            HashMap::new()
        } else {
            estimates(&client, &tables).await
        },
        bars: Mutex::new(HashMap::new()),
    });
    let mut options = RecodeOptions::default()
        .with_segments(args.segments)
        .with_items_per_second(args.rate)
        .with_page_size(args.page_size)
        .with_allow_growth(args.allow_growth)
        .with_dry_run(dry_run)
        .with_stop(stop);
    if let Some(checkpoint) = &args.checkpoint {
        options = options.with_checkpoint(checkpoint);
    }
    let progress = bars.clone();
    options = options.with_progress(move |p| progress.update(p));
    let recoder = match &args.codec {
        Target::Codec(codec) => Recoder::new(client, codec.clone()),
        Target::Upstream => Recoder::to_upstream(client),
    }
    .with_options(options);
    let result = recoder.run(&tables).await;
    bars.clear();
    let report = result?;
    if args.json {
        writeln!(out, "{}", report.to_json()?)?;
    } else {
        write!(out, "{report}")?;
    }
    if !report.complete {
        match &args.checkpoint {
            Some(path) => eprintln!(
                "stopped before the end; run the same command again to resume from {}",
                path.display()
            ),
            None => eprintln!("stopped before the end; without --checkpoint a rerun starts over"),
        }
    }
    if report.items_unreadable() > 0 {
        eprintln!(
            "{} items could not be decoded and were left as they are (see the warnings above)",
            report.items_unreadable()
        );
    }
    if report.items_not_convertible() > 0 {
        let keys: Vec<&str> = report
            .tables
            .iter()
            .flat_map(|t| t.not_convertible_keys.iter().map(String::as_str))
            .take(10)
            .collect();
        let target = match &args.codec {
            Target::Upstream => "upstream dynamo-es cannot read them".to_string(),
            Target::Codec(codec) => format!("they are not {}", codec.name()),
        };
        eprintln!(
            "{} items could not be converted exactly and were left as they are, so {target} \
             (for example: {})",
            report.items_not_convertible(),
            keys.join(", ")
        );
    }
    Ok(report)
}

/// 0: done; 3: stopped before the end (resumable); 4: some items could
/// not be decoded and were left as they are; 5: some items could not be
/// converted exactly (or, to `upstream`, made upstream-readable) and were
/// left as they are. (1 is an error, 2 a usage error.)
fn exit_code(report: &Report) -> u8 {
    if !report.complete {
        3
    } else if report.items_unreadable() > 0 {
        4
    } else if report.items_not_convertible() > 0 {
        5
    } else {
        0
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let cli = Cli::parse();
    let client = client(cli.region.clone(), cli.endpoint_url.clone()).await;
    let stop = StopHandle::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping after the current pages (Ctrl-C again to abort)...");
            on_signal.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    match execute(&cli.command, client, stop, &mut std::io::stdout()).await {
        Ok(report) => ExitCode::from(exit_code(&report)),
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dynamo-es").chain(args.iter().copied()))
    }

    #[test]
    fn codec_names_parse_as_codec_name_prints_them() {
        assert_eq!(parse_codec("json").unwrap(), Codec::json());
        for bad in [
            "xml",
            "",
            "json+gzip",
            "json+zstd-",
            "json+zstd-x",
            "json+zstd-23",
            "json+zstd-0",
            "json+zstd--8",
        ] {
            assert!(parse_codec(bad).is_err(), "{bad}");
        }
        #[cfg(feature = "msgpack")]
        assert_eq!(parse_codec("msgpack").unwrap(), Codec::msgpack());
        #[cfg(not(feature = "msgpack"))]
        assert!(parse_codec("msgpack")
            .unwrap_err()
            .contains("`msgpack` feature"));
        #[cfg(feature = "compression")]
        {
            let codec = Codec::json().compressed(3);
            assert_eq!(parse_codec(&codec.name()).unwrap(), codec);
            assert_eq!(parse_codec("json+zstd").unwrap(), codec);
            assert_eq!(
                parse_codec("json+zstd-22").unwrap().compression_level(),
                Some(22)
            );
            assert_eq!(
                parse_codec("json+zstd--7").unwrap().compression_level(),
                Some(-7)
            );
            #[cfg(feature = "msgpack")]
            assert_eq!(
                parse_codec("msgpack+zstd-9").unwrap(),
                Codec::msgpack().compressed(9)
            );
        }
        #[cfg(not(feature = "compression"))]
        assert!(parse_codec("json+zstd-3")
            .unwrap_err()
            .contains("`compression` feature"));
    }

    #[test]
    fn arguments_parse_and_tables_are_required() {
        let cli = parse(&[
            "recode",
            "--events-table",
            "E",
            "--snapshots-table",
            "S",
            "--view-table",
            "V1",
            "--view-table",
            "V2",
            "--codec",
            "json",
            "--segments",
            "4",
            "--rate",
            "500",
            "--checkpoint",
            "ck.json",
            "--dry-run",
            "--region",
            "eu-west-1",
        ])
        .unwrap();
        assert_eq!(cli.region.as_deref(), Some("eu-west-1"));
        let Command::Recode(recode) = &cli.command else {
            panic!("{cli:?}")
        };
        assert!(recode.dry_run);
        assert_eq!(recode.run.segments, 4);
        assert_eq!(recode.run.rate, 500);
        assert_eq!(
            recode.run.checkpoint.as_deref(),
            Some(std::path::Path::new("ck.json"))
        );
        assert_eq!(
            recode.run.tables(),
            vec![
                Table::events("E"),
                Table::snapshots("S"),
                Table::views("V1"),
                Table::views("V2")
            ]
        );

        let cli = parse(&[
            "report",
            "--snapshots-table",
            "S",
            "--codec",
            "json",
            "--json",
        ])
        .unwrap();
        let Command::Report(args) = &cli.command else {
            panic!("{cli:?}")
        };
        assert!(args.json);
        assert_eq!((args.segments, args.rate, args.page_size), (1, 0, 100));

        assert!(
            parse(&["report", "--codec", "json"]).is_err(),
            "a table is required"
        );
        assert!(
            parse(&["report", "--events-table", "E"]).is_err(),
            "the codec is required"
        );
        assert!(parse(&["report", "--events-table", "E", "--codec", "xml"]).is_err());
        assert!(parse(&[
            "recode",
            "--events-table",
            "E",
            "--codec",
            "json",
            "--segments",
            "0"
        ])
        .is_err());
        assert!(parse(&["migrate", "--events-table", "E", "--codec", "json"]).is_err());
    }

    #[test]
    fn exit_codes_tell_incomplete_and_unreadable_apart() {
        let mut report: Report =
            serde_json::from_str(r#"{"tables": [], "complete": true}"#).unwrap();
        assert_eq!(exit_code(&report), 0);
        report.complete = false;
        assert_eq!(exit_code(&report), 3);
        let table = serde_json::json!({
            "table": "V", "kind": "views", "codec": "json", "dry_run": true, "complete": true,
            "segments": 1, "items_scanned": 2, "items_recoded": 1, "items_skipped": 0,
            "conflicts_skipped": 0, "items_unreadable": 1, "bytes_before": 10, "bytes_after": 9,
            "ratio": 0.9, "wcu_per_rewrite_before": 2, "wcu_per_rewrite_after": 2,
            "rcu_per_load_before": 2, "rcu_per_load_after": 2, "chunked_before": 0,
            "chunked_after": 0, "chunk_items_before": 0, "chunk_items_after": 0,
            "newly_fit": 0, "recode_wcu": 1,
        });
        let mut report: Report =
            serde_json::from_value(serde_json::json!({"tables": [table], "complete": true}))
                .unwrap();
        assert_eq!(exit_code(&report), 4);
        report.complete = false;
        assert_eq!(exit_code(&report), 3);
    }

    /// The whole command against the embedded emulator: a report writes
    /// nothing, a recode rewrites, `--json` prints the report as JSON.
    #[cfg(feature = "compression")]
    #[tokio::test]
    async fn report_then_recode_against_the_emulator() {
        use aws_sdk_dynamodb::primitives::Blob;
        use aws_sdk_dynamodb::types::AttributeValue;
        let db = dynamo_es::testing::dynamodb().await.unwrap();
        // Views stored as large, repetitive JSON: zstd shrinks them.
        for i in 0..5 {
            let view =
                serde_json::json!({"deposits": i, "total": i * 10, "history": vec!["entry"; 200]});
            db.client
                .put_item()
                .table_name(&db.views)
                .item("ViewId", AttributeValue::S(format!("v{i}")))
                .item("ViewVersion", AttributeValue::N("1".into()))
                .item(
                    "Payload",
                    AttributeValue::B(Blob::new(serde_json::to_vec_pretty(&view).unwrap())),
                )
                .send()
                .await
                .unwrap();
        }
        let args = |command: &str| {
            parse(&[
                command,
                "--view-table",
                &db.views,
                "--events-table",
                &db.events,
                "--codec",
                "json+zstd-3",
                "--json",
                "--segments",
                "2",
            ])
            .unwrap()
            .command
        };
        let mut out = Vec::new();
        let report = execute(
            &args("report"),
            db.client.clone(),
            StopHandle::new(),
            &mut out,
        )
        .await
        .unwrap();
        let printed: Report = serde_json::from_slice(&out).unwrap();
        assert_eq!(printed, report);
        assert_eq!(exit_code(&report), 0);
        let views = &report.tables[1];
        assert!(views.dry_run);
        assert_eq!(
            (views.counts.items_scanned, views.counts.items_recoded),
            (5, 5)
        );
        assert!(views.counts.bytes_after < views.counts.bytes_before);

        let mut out = Vec::new();
        let done = execute(
            &args("recode"),
            db.client.clone(),
            StopHandle::new(),
            &mut out,
        )
        .await
        .unwrap();
        assert!(!done.tables[1].dry_run);
        assert_eq!(done.tables[1].counts.bytes_after, views.counts.bytes_after);
        let mut out = Vec::new();
        let again = execute(
            &args("recode"),
            db.client.clone(),
            StopHandle::new(),
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(again.tables[1].counts.items_recoded, 0);
        assert_eq!(
            again.tables[1].counts.bytes_before,
            views.counts.bytes_after
        );

        // Without --json the report is a table.
        let mut out = Vec::new();
        let command = parse(&["report", "--view-table", &db.views, "--codec", "json"])
            .unwrap()
            .command;
        execute(&command, db.client.clone(), StopHandle::new(), &mut out)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&db.views) && text.contains("bytes after"),
            "{text}"
        );
    }
}
