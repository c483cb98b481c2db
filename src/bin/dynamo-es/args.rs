//! The command line: the clap types for `report` and `recode`, the tables
//! they name, and the `--codec` target (`upstream`, or a codec name parsed
//! by the library as [`Codec::name`] prints it).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use dynamo_es::codec::ParseCodecError;
use dynamo_es::recode::Table;
use dynamo_es::Codec;

/// Measure and move DynamoDB event, snapshot and view tables of cqrs-es
/// (upstream dynamo-es or this crate) to another payload codec.
#[derive(Debug, Parser)]
#[command(name = "dynamo-es", version)]
pub struct Cli {
    /// AWS region (default: AWS_REGION, then the profile, as the AWS CLI).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// DynamoDB endpoint URL (default: AWS_ENDPOINT_URL_DYNAMODB, then
    /// AWS_ENDPOINT_URL, then AWS itself).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what recoding to a codec would save. Writes nothing.
    Report(RunArgs),
    /// Rewrite stored payloads with a codec, where it makes them smaller.
    Recode(RecodeArgs),
}

impl Command {
    /// The run's arguments, and whether it writes nothing.
    pub fn run_args(&self) -> (&RunArgs, bool) {
        match self {
            Command::Report(args) => (args, true),
            Command::Recode(recode) => (&recode.run, recode.dry_run),
        }
    }
}

#[derive(Debug, Args)]
pub struct RecodeArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Compute the report and write nothing (the same as `report`).
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
    /// Record progress in FILE after every page, and resume from it.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Items per scan page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    /// Also move payloads to the target format when that makes them larger
    /// (for example back to plain JSON).
    #[arg(long)]
    pub allow_growth: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Draw no progress bar (it is only drawn on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
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
        assert_eq!(parse_target("upstream").unwrap(), Target::Upstream);
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
        assert!(cli.command.run_args().1, "--dry-run writes nothing");

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
        assert!(cli.command.run_args().1, "report writes nothing");
        let cli = parse(&["recode", "--view-table", "V", "--codec", "upstream"]).unwrap();
        assert_eq!(cli.command.run_args().0.codec, Target::Upstream);
        assert!(!cli.command.run_args().1, "recode writes");

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
