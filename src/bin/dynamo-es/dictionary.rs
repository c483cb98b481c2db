//! `dynamo-es dictionary train|list`, and the `--dictionary` flags of
//! `report` and `recode`: zstd dictionaries per aggregate type (see
//! [`dynamo_es::dictionary`]).
//!
//! **Invariant:** `train` stores a dictionary only through
//! [`DictionaryStore::put`] (conditional, never overwriting) and prints the
//! saving measured on events held out of the training; `report` and
//! `recode` always read dictionary payloads through the dictionaries table,
//! and write with a dictionary only the events of its own aggregate type.

use std::io::Write;
use std::time::Instant;

use aws_sdk_dynamodb::Client;
use clap::{Args, Subcommand};
use dynamo_es::dictionary::{DictionaryStore, TrainOptions};
use dynamo_es::recode::{Recoder, Table, TableKind};
use dynamo_es::Codec;

/// The snapshots table dictionaries live in when none is named.
const DEFAULT_DICTIONARIES_TABLE: &str = dynamo_es::DEFAULT_SNAPSHOT_TABLE;

/// `dynamo-es dictionary`.
#[derive(Debug, Args)]
pub struct DictionaryArgs {
    #[command(subcommand)]
    pub command: DictionaryCommand,
}

/// What to do with dictionaries.
#[derive(Debug, Subcommand)]
pub enum DictionaryCommand {
    /// Sample events of one aggregate type with a parallel scan, train a
    /// zstd dictionary on them, store it (immutably, in the snapshots
    /// table), and print the saving measured on a held-out tenth of the
    /// sample.
    Train(TrainArgs),
    /// List the stored dictionaries.
    List(ListArgs),
}

/// `dynamo-es dictionary train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The events table to sample.
    #[arg(long, value_name = "TABLE")]
    pub events_table: String,
    /// The aggregate type to train for (the `AggregateType` attribute).
    #[arg(long, value_name = "TYPE")]
    pub aggregate_type: String,
    /// Where dictionaries are stored: the event store's snapshots table.
    #[arg(long, value_name = "TABLE", default_value = DEFAULT_DICTIONARIES_TABLE)]
    pub snapshots_table: String,
    /// Events to sample (a tenth of them is held out to measure the saving).
    #[arg(long, value_name = "N", default_value_t = dynamo_es::dictionary::DEFAULT_SAMPLE_EVENTS)]
    pub sample: usize,
    /// The largest dictionary, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = dynamo_es::dictionary::DEFAULT_DICTIONARY_SIZE)]
    pub size: usize,
    /// Scan segments read concurrently while sampling.
    #[arg(long, default_value_t = dynamo_es::dictionary::DEFAULT_SAMPLE_SEGMENTS, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub segments: u32,
    /// The codec the application writes with (its format is what the
    /// dictionary is trained on): json, msgpack, json+zstd-LEVEL, ...
    #[arg(long, value_name = "CODEC", default_value = "json")]
    pub codec: String,
}

/// `dynamo-es dictionary list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Where dictionaries are stored: the event store's snapshots table.
    #[arg(long, value_name = "TABLE", default_value = DEFAULT_DICTIONARIES_TABLE)]
    pub snapshots_table: String,
}

/// The `--dictionary` flags of `report` and `recode`.
#[derive(Debug, Args)]
pub struct DictionaryUse {
    /// Write the events of this dictionary's aggregate type with it (its
    /// id, as `dynamo-es dictionary list` shows it); repeat for several
    /// types. Without it, events are moved off their dictionaries (with
    /// --allow-growth when that makes them larger).
    #[arg(long = "dictionary", value_name = "ID")]
    pub ids: Vec<u32>,
    /// Where dictionaries are stored (default: the first --snapshots-table,
    /// else Snapshots). Payloads that name a dictionary are read with it.
    #[arg(long = "dictionaries-table", value_name = "TABLE")]
    pub table: Option<String>,
}

impl DictionaryUse {
    /// `recoder`, reading dictionaries from their table and writing with
    /// the ones named.
    pub async fn apply(
        &self,
        recoder: Recoder,
        client: &Client,
        tables: &[Table],
    ) -> Result<Recoder, Box<dyn std::error::Error>> {
        let table = self.table.clone().unwrap_or_else(|| {
            tables
                .iter()
                .find(|t| t.kind == TableKind::Snapshots)
                .map_or(DEFAULT_DICTIONARIES_TABLE.to_string(), |t| t.name.clone())
        });
        let store = DictionaryStore::new(client.clone(), table);
        let mut recoder = recoder.with_dictionary_store(store.clone());
        for id in &self.ids {
            recoder = recoder.with_dictionary(store.get(*id).await?);
        }
        Ok(recoder)
    }
}

/// Runs `dynamo-es dictionary ...`, printing to `out`.
pub async fn execute(
    args: &DictionaryArgs,
    client: Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    match &args.command {
        DictionaryCommand::Train(args) => {
            let codec: Codec = args.codec.parse()?;
            let store = DictionaryStore::new(client, &args.snapshots_table);
            let options = TrainOptions::default()
                .with_sample(args.sample)
                .with_size(args.size)
                .with_segments(args.segments)
                .with_codec(codec);
            let started = Instant::now();
            let trained = store
                .train(&args.events_table, &args.aggregate_type, options)
                .await?;
            let info = trained.dictionary.info();
            writeln!(
                out,
                "stored dictionary {} for {} in {}: {} bytes, trained on {} events ({} bytes) of {} in {:.2}s",
                info.id,
                info.aggregate_type,
                store.table(),
                info.size,
                info.sample.events,
                info.sample.bytes,
                info.sample.table,
                started.elapsed().as_secs_f64()
            )?;
            writeln!(out, "expected savings: {}", trained.savings)?;
            writeln!(
                out,
                "write with it: DynamoEventRepository::with_dictionary(\"{}\", store.get({}).await?), \
                 or move existing events: dynamo-es recode --events-table {} \
                 --dictionaries-table {} --codec json --dictionary {}",
                info.aggregate_type,
                info.id,
                args.events_table,
                store.table(),
                info.id
            )?;
        }
        DictionaryCommand::List(args) => {
            let store = DictionaryStore::new(client, &args.snapshots_table);
            let dictionaries = store.list().await?;
            writeln!(
                out,
                "{:>10}  {:<24} {:>8}  {:>12}  {:>8}  {:>8}",
                "id", "aggregate type", "bytes", "trained at", "events", "saving"
            )?;
            for info in &dictionaries {
                writeln!(
                    out,
                    "{:>10}  {:<24} {:>8}  {:>12}  {:>8}  {:>7.2}x",
                    info.id,
                    info.aggregate_type,
                    info.size,
                    info.trained_at,
                    info.sample.events,
                    info.sample.held_out.ratio()
                )?;
            }
            writeln!(
                out,
                "{} dictionaries in {}",
                dictionaries.len(),
                store.table()
            )?;
        }
    }
    Ok(())
}
