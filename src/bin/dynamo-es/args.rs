//! The command line: the clap types for `report` and `recode`, the tables
//! they name, the `--codec` target (`upstream`, or a codec name parsed by
//! the library as [`Codec::name`] prints it), the client's timeouts and
//! attempts, and [`INSTALL`], the one install command every hint prints.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dynamo_es::codec::ParseCodecError;
use dynamo_es::recode::Table;
use dynamo_es::Codec;

/// How to install this tool with every feature a hint can ask for: the
/// crates.io package named `dynamo-es` is upstream's library, which has no
/// binary, so the tool is installed from the repository (or a checkout).
pub const INSTALL: &str = "cargo install --git https://github.com/dynamo-es/dynamo-es dynamo-es \
    --features cli,compression,msgpack,test-util (from a checkout: cargo install --path . \
    --features cli,compression,msgpack,test-util)";

/// Tools for the DynamoDB tables of cqrs-es (upstream dynamo-es or this
/// crate): report what another payload codec would save, recode tables to
/// it, train zstd dictionaries (`dictionary`, feature `compression`),
/// inspect projections (`projections`), forget data subjects (`forget`,
/// feature `encryption`), and run a local DynamoDB (`local`, feature
/// `test-util`).
#[derive(Debug, Parser)]
#[command(name = "dynamo-es", version, after_long_help = after_long_help())]
pub struct Cli {
    /// Also print what the AWS SDK logs (credentials, endpoints, retries):
    /// warnings with -v, debug lines with -vv. Without it only this tool's
    /// own warnings are printed. RUST_LOG, when set, decides instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// AWS region (default: AWS_REGION, then the profile, as the AWS CLI).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// DynamoDB endpoint URL (default: AWS_ENDPOINT_URL_DYNAMODB, then
    /// AWS_ENDPOINT_URL, then AWS itself). `projections status` reads the
    /// stream there too (as DynamoDB Local serves both), unless
    /// AWS_ENDPOINT_URL_DYNAMODB_STREAMS is set.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Give up connecting to DynamoDB after this long. A DURATION is a
    /// number of seconds (`5`, `0.5`) or a number with a unit (`500ms`,
    /// `5s`, `2m`, `1h`); `0` means no limit.
    #[arg(long, global = true, value_name = "DURATION", default_value = "3s", value_parser = parse_timeout)]
    pub connect_timeout: Timeout,
    /// Give up one attempt of a request (a scan page, a write) after this
    /// long, and retry it if attempts are left (`0`: no limit).
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub attempt_timeout: Timeout,
    /// Give up a request after this long, all its attempts and backoff
    /// included (`0`: no limit).
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub operation_timeout: Timeout,
    /// Attempts per request, the first included (1: no retries); throttled,
    /// timed out and failed connections are retried with exponential
    /// backoff.
    #[arg(long, global = true, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `--help`: the environment, and how to install the tool.
fn after_long_help() -> String {
    format!(
        "Configuration, as the AWS CLI: region from --region, AWS_REGION or the profile; \
         credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
         (~/.aws/config, ~/.aws/credentials); endpoint from --endpoint-url, \
         AWS_ENDPOINT_URL_DYNAMODB or AWS_ENDPOINT_URL.\n\nInstall: {INSTALL}"
    )
}

impl Cli {
    /// The timeouts and attempts, as the error hint names them.
    pub fn limits(&self) -> String {
        format!(
            "--connect-timeout {}, --attempt-timeout {}, --operation-timeout {}, \
             --max-attempts {}",
            self.connect_timeout, self.attempt_timeout, self.operation_timeout, self.max_attempts
        )
    }
}

/// A timeout, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<Duration>);

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("0 (no limit)"),
            Some(d) if d.subsec_nanos() == 0 => {
                write!(f, "{}s", d.as_secs())
            }
            Some(d) => write!(f, "{}ms", d.as_millis()),
        }
    }
}

/// Parses a DURATION: seconds (`5`, `0.5`), or a number with a unit `ms`,
/// `s`, `m` or `h`; `0` is no limit.
fn parse_timeout(text: &str) -> Result<Timeout, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` (use ms, s, m or h, or a number of seconds)"
            ))
        }
    };
    let valid = !number.is_empty()
        && number.chars().filter(|&c| c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let value: f64 = match number.parse() {
        Ok(value) if valid => value,
        _ => {
            return Err(format!(
                "`{text}` is not a duration (a number of seconds, or with a unit: 500ms, 5s, 2m)"
            ))
        }
    };
    let duration = Duration::try_from_secs_f64(value * scale).map_err(|err| err.to_string())?;
    Ok(Timeout((!duration.is_zero()).then_some(duration)))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what recoding to a codec would save. Writes nothing, and
    /// keeps no checkpoint (a report is cheap to repeat).
    Report(RunArgs),
    /// Rewrite stored payloads with a codec, where it makes them smaller.
    Recode(RecodeArgs),
    /// Train and list zstd dictionaries per aggregate type.
    #[cfg(feature = "compression")]
    Dictionary(crate::dictionary::DictionaryArgs),
    /// Inspect projections fed from the events table's stream.
    Projections(crate::projections::ProjectionsArgs),
    /// Give events written without a slice (by upstream, an older release
    /// or a writer without slices) their slice and a commit time, so that
    /// feeds read them. Changes no payload; resumable.
    BackfillSlices(crate::feeds::BackfillArgs),
    /// Run a local DynamoDB (the embedded dynoxide emulator, DynamoDB and
    /// DynamoDB Streams on one endpoint) until Ctrl-C, and print the
    /// environment variables that point the AWS SDKs at it.
    #[cfg(feature = "test-util")]
    Local(crate::local::LocalArgs),
    /// Delete one aggregate: a tombstone keeps its last sequence, then its
    /// events and snapshot items are deleted in batches (run it again to
    /// finish an interrupted deletion). --dry-run counts what it would delete.
    DeleteAggregate(crate::delete::DeleteArgs),
    /// Forget data subjects: replace each one's data key with a tombstone in
    /// the key table, so every personal field of theirs reads as forgotten.
    /// --dry-run says what it would do.
    #[cfg(feature = "encryption")]
    Forget(crate::forget::ForgetArgs),
    // A build without a command's feature has a hidden variant of that
    // name instead, which says which feature it needs.
    /// Without the `test-util` feature: `local` needs it, and says so.
    #[cfg(not(feature = "test-util"))]
    #[command(hide = true, disable_help_flag = true)]
    Local(Unbuilt),
    /// Without the `encryption` feature: `forget` needs it, and says so.
    #[cfg(not(feature = "encryption"))]
    #[command(hide = true, disable_help_flag = true)]
    Forget(Unbuilt),
    /// Without the `compression` feature: `dictionary` needs it, and says so.
    #[cfg(not(feature = "compression"))]
    #[command(hide = true, disable_help_flag = true)]
    Dictionary(Unbuilt),
}

/// The arguments of a command this build lacks the feature for (a hidden
/// variant that only says which feature it needs): whatever followed the
/// command's name, ignored.
#[cfg(not(all(feature = "compression", feature = "encryption", feature = "test-util")))]
#[derive(Debug, Args)]
pub struct Unbuilt {
    /// Whatever followed, ignored.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

/// What `dynamo-es dictionary` says in a build without `compression`.
#[cfg(not(feature = "compression"))]
pub fn dictionary_needs_compression() -> String {
    format!(
        "`dynamo-es dictionary` needs dynamo-es built with the `compression` feature; \
         install it with: {INSTALL}"
    )
}

impl Command {
    /// The run's arguments, and whether it writes nothing (`None` for a
    /// command that is not a run).
    pub fn run_args(&self) -> Option<(&RunArgs, bool)> {
        match self {
            Command::Report(args) => Some((args, true)),
            Command::Recode(recode) => Some((&recode.run, recode.dry_run)),
            // With its feature or without (then its arguments are `Unbuilt`).
            Command::Dictionary(_)
            | Command::Local(_)
            | Command::Forget(_)
            | Command::Projections(_)
            | Command::BackfillSlices(_)
            | Command::DeleteAggregate(_) => None,
        }
    }

    /// The checkpoint file, for a recode that names one.
    pub fn checkpoint(&self) -> Option<&Path> {
        match self {
            Command::Recode(recode) => recode.checkpoint.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct RecodeArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Record progress in FILE after every page, and resume from it. It
    /// records which table each entry is on and is refused on any other.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Compute the report and write nothing (the same as `report`; no
    /// checkpoint is read or written).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct TableArgs {
    /// An events table (repeatable).
    #[arg(long = "events-table", value_name = "TABLE")]
    pub events: Vec<String>,
    /// A snapshots table (repeatable).
    #[arg(long = "snapshots-table", value_name = "TABLE")]
    pub snapshots: Vec<String>,
    /// A view table (repeatable).
    #[arg(long = "view-table", value_name = "TABLE")]
    pub views: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// The target codec: json, msgpack, json+zstd-LEVEL or msgpack+zstd-LEVEL
    /// (LEVEL 1 to 22, or -7 to -1 for zstd's fast modes); or `upstream`:
    /// only what upstream dynamo-es 0.5.0 reads (plain JSON, one item per
    /// snapshot), to return to it.
    #[arg(long, value_name = "CODEC", value_parser = parse_target)]
    pub codec: Target,
    /// Parallel scan segments per table.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub segments: u32,
    /// At most this many items per second over all segments (0: no limit).
    #[arg(long, value_name = "ITEMS_PER_SECOND", default_value_t = 0)]
    pub rate: u32,
    /// Items per scan page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    /// Also move payloads to the target format when that makes them larger
    /// (for example back to plain JSON). On `report`, predicts that run.
    #[arg(long)]
    pub allow_growth: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Draw no progress bar (it is only drawn on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    #[cfg(feature = "compression")]
    #[command(flatten)]
    pub dictionaries: crate::dictionary::DictionaryUse,
}

impl RunArgs {
    /// The tables named, events first, then snapshots, then views.
    pub fn tables(&self) -> Vec<Table> {
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
pub enum Target {
    /// A codec.
    Codec(Codec),
    /// Only what upstream dynamo-es 0.5.0 reads.
    Upstream,
}

/// Parses `upstream`, or a codec name as [`Codec::name`] prints it.
fn parse_target(name: &str) -> Result<Target, String> {
    if name == "upstream" {
        return Ok(Target::Upstream);
    }
    parse_codec(name).map(Target::Codec).map_err(|err| {
        format!("{err}; or `upstream` (plain JSON, one item per snapshot, as upstream dynamo-es 0.5.0 reads)")
    })
}

/// Parses a codec name as [`Codec::name`] prints it.
fn parse_codec(name: &str) -> Result<Codec, String> {
    name.parse::<Codec>().map_err(|err| match err {
        ParseCodecError::FeatureDisabled { feature, .. } => {
            format!("{err}: {INSTALL} (the `{feature}` feature is included)")
        }
        err => err.to_string(),
    })
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
            // `zstd` without a level is the default level.
            let codec = Codec::json().compressed(dynamo_es::codec::DEFAULT_COMPRESSION_LEVEL);
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
        assert_eq!(parse_target("upstream").unwrap(), Target::Upstream);
    }

    #[test]
    fn durations_parse_in_seconds_or_with_a_unit() {
        let secs = |s: u64| Timeout(Some(Duration::from_secs(s)));
        assert_eq!(parse_timeout("5").unwrap(), secs(5));
        assert_eq!(parse_timeout("5s").unwrap(), secs(5));
        assert_eq!(parse_timeout("2m").unwrap(), secs(120));
        assert_eq!(parse_timeout("1h").unwrap(), secs(3600));
        assert_eq!(
            parse_timeout("500ms").unwrap(),
            Timeout(Some(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_timeout("0.25").unwrap(),
            Timeout(Some(Duration::from_millis(250)))
        );
        assert_eq!(parse_timeout("0").unwrap(), Timeout(None));
        assert_eq!(parse_timeout("0s").unwrap(), Timeout(None));
        for bad in [
            "", "s", "-1", "5 d", "1.2.3", "inf", "nan", "5x", ".", "1e3",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(secs(3).to_string(), "3s");
        assert_eq!(parse_timeout("1.5").unwrap().to_string(), "1500ms");
        assert_eq!(Timeout(None).to_string(), "0 (no limit)");

        let cli = parse(&["report", "--view-table", "V", "--codec", "json"]).unwrap();
        assert_eq!(
            (
                cli.connect_timeout,
                cli.attempt_timeout,
                cli.operation_timeout,
                cli.max_attempts
            ),
            (secs(3), secs(10), secs(30), 5)
        );
        let cli = parse(&[
            "report",
            "--view-table",
            "V",
            "--codec",
            "json",
            "--connect-timeout",
            "250ms",
            "--attempt-timeout",
            "1",
            "--operation-timeout",
            "0",
            "--max-attempts",
            "1",
        ])
        .unwrap();
        assert_eq!(cli.connect_timeout.to_string(), "250ms");
        assert_eq!(cli.attempt_timeout, secs(1));
        assert_eq!(cli.operation_timeout, Timeout(None));
        assert_eq!(cli.max_attempts, 1);
        assert!(
            cli.limits().contains("--attempt-timeout 1s"),
            "{}",
            cli.limits()
        );
        for bad in [["--max-attempts", "0"], ["--attempt-timeout", "soon"]] {
            let mut args = vec!["report", "--view-table", "V", "--codec", "json"];
            args.extend(bad);
            assert!(parse(&args).is_err(), "{bad:?}");
        }
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
        assert_eq!(recode.checkpoint.as_deref(), Some(Path::new("ck.json")));
        assert_eq!(cli.command.checkpoint(), Some(Path::new("ck.json")));
        assert_eq!(
            recode.run.tables(),
            vec![
                Table::events("E"),
                Table::snapshots("S"),
                Table::views("V1"),
                Table::views("V2")
            ]
        );
        assert!(
            cli.command.run_args().unwrap().1,
            "--dry-run writes nothing"
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
        assert!(cli.command.run_args().unwrap().1, "report writes nothing");
        assert_eq!(cli.command.checkpoint(), None);
        // A report keeps no checkpoint; --allow-growth changes what it predicts.
        let report = ["report", "--snapshots-table", "S", "--codec", "json"];
        let with = |extra: &[&'static str]| {
            let mut args = report.to_vec();
            args.extend(extra);
            parse(&args)
        };
        assert!(with(&["--checkpoint", "ck.json"]).is_err());
        let cli = with(&["--allow-growth"]).unwrap();
        assert!(cli.command.run_args().unwrap().0.allow_growth);
        let cli = parse(&["recode", "--view-table", "V", "--codec", "upstream"]).unwrap();
        assert_eq!(cli.command.run_args().unwrap().0.codec, Target::Upstream);
        assert!(!cli.command.run_args().unwrap().1, "recode writes");

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
}
