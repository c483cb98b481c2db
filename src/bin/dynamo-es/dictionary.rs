//! `dynamo-es dictionary train|list`, and the `--dictionary` flags of
//! `report` and `recode`: zstd dictionaries per aggregate type (see
//! [`dynamo_es::dictionary`]).
//!
//! **Invariant:** `train` stores a dictionary only through
//! [`DictionaryStore::put`] (conditional, never overwriting), only when it
//! was trained on at least [`MIN_STORED_SAMPLE`] events (or
//! `--allow-small-sample`) and not with `--dry-run`, and prints the saving
//! measured on events held out of the training beside their count;
//! `report` and `recode` always read dictionary payloads through the
//! dictionaries table, and write with a dictionary only the events of its
//! own aggregate type.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use clap::{Args, Subcommand};
use dynamo_es::dictionary::{DictionaryStore, TrainOptions};
use dynamo_es::recode::{Recoder, Table, TableKind};
use dynamo_es::Codec;

/// The snapshots table dictionaries live in when none is named.
const DEFAULT_DICTIONARIES_TABLE: &str = dynamo_es::DEFAULT_SNAPSHOT_TABLE;

/// The fewest events `train` stores a dictionary from without
/// `--allow-small-sample`: a tenth of the sample is held out, so the saving
/// printed is measured on at least 20 events. A dictionary is permanent
/// (payloads written with it need it forever), so a small sample, whose
/// measured saving is noise, is refused rather than stored.
pub const MIN_STORED_SAMPLE: usize = 200;

/// Items read to list the aggregate types of an events table when the one
/// asked for has no events.
const TYPES_SCAN_LIMIT: i32 = 1000;

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
    /// sample. Fewer than 200 events are refused (--allow-small-sample);
    /// --dry-run stores nothing.
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
    /// Store the dictionary even if it was trained on fewer than 200
    /// events (its measured saving is then little more than noise, and a
    /// stored dictionary is permanent).
    #[arg(long)]
    pub allow_small_sample: bool,
    /// Train and print the saving, but store nothing.
    #[arg(long)]
    pub dry_run: bool,
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
        DictionaryCommand::Train(args) => train(args, client, out).await?,
        DictionaryCommand::List(args) => {
            let store = DictionaryStore::new(client, &args.snapshots_table);
            let dictionaries = store.list().await?;
            writeln!(
                out,
                "{:>10}  {:<24} {:>8}  {:<20}  {:>8}  {:>8}  {:>8}",
                "id", "aggregate type", "bytes", "trained at", "events", "saving", "held out"
            )?;
            for info in &dictionaries {
                writeln!(
                    out,
                    "{:>10}  {:<24} {:>8}  {:<20}  {:>8}  {:>7.2}x  {:>8}",
                    info.id,
                    info.aggregate_type,
                    info.size,
                    date(info.trained_at),
                    info.sample.events,
                    info.sample.held_out.ratio(),
                    info.sample.held_out.events
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

/// `dynamo-es dictionary train`: sample, train, and store unless the sample
/// is too small or it is a dry run.
async fn train(
    args: &TrainArgs,
    client: Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let codec: Codec = args.codec.parse()?;
    let store = DictionaryStore::new(client, &args.snapshots_table);
    let options = TrainOptions::default()
        .with_sample(args.sample)
        .with_size(args.size)
        .with_segments(args.segments)
        .with_codec(codec);
    let started = Instant::now();
    let candidate = match store
        .candidate(&args.events_table, &args.aggregate_type, &options)
        .await
    {
        Ok(candidate) => candidate,
        Err(err) if too_few_events(&err) == Some(0) => {
            let types = aggregate_types(store.client(), &args.events_table).await;
            return Err(format!("{err}; {types}").into());
        }
        Err(err) => return Err(err.into()),
    };
    let sample = candidate.sample();
    let savings = candidate.savings();
    let sampled = sample.events + savings.events;
    let trained = format!(
        "{} bytes, trained on {} events ({} bytes) of {} in {:.2}s",
        candidate.size(),
        sample.events,
        sample.bytes,
        sample.table,
        started.elapsed().as_secs_f64()
    );
    let expected = format!(
        "expected savings: {:.2}x, measured on {} held-out events ({savings})",
        savings.ratio(),
        savings.events
    );
    if args.dry_run {
        writeln!(
            out,
            "dry run, nothing stored: a dictionary for {}: {trained}",
            args.aggregate_type
        )?;
        writeln!(out, "{expected}")?;
        return Ok(());
    }
    if sampled < MIN_STORED_SAMPLE && !args.allow_small_sample {
        writeln!(
            out,
            "not stored: a dictionary for {}: {trained}",
            args.aggregate_type
        )?;
        writeln!(out, "{expected}")?;
        return Err(format!(
            "not stored: the sample holds {sampled} events of {} ({} of them held out), fewer \
             than the {MIN_STORED_SAMPLE} a stored dictionary needs: its saving is little more \
             than noise, and a stored dictionary is permanent; sample more (--sample, once the \
             table holds more events), try it with --dry-run, or pass --allow-small-sample to \
             store it anyway",
            args.aggregate_type, savings.events
        )
        .into());
    }
    let dictionary = store.put(candidate).await?;
    let info = dictionary.info();
    writeln!(
        out,
        "stored dictionary {} for {} in {} at {}: {trained}",
        info.id,
        info.aggregate_type,
        store.table(),
        date(info.trained_at)
    )?;
    writeln!(out, "{expected}")?;
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
    Ok(())
}

/// The events found, if `err` is too few events to train on.
fn too_few_events(err: &dynamo_es::Error) -> Option<usize> {
    match err {
        dynamo_es::Error::Dictionary(err) => match err.as_ref() {
            dynamo_es::dictionary::Error::TooFewEvents { found, .. } => Some(*found),
            _ => None,
        },
        _ => None,
    }
}

/// The aggregate types in the first items of `table`, with their counts:
/// `aggregate types found in the first 1000 items: Account (12), Cart (3)`.
async fn aggregate_types(client: &Client, table: &str) -> String {
    let scan = client
        .scan()
        .table_name(table)
        .projection_expression("#type")
        .expression_attribute_names("#type", "AggregateType")
        .limit(TYPES_SCAN_LIMIT)
        .send()
        .await;
    let Ok(out) = scan else {
        return "the aggregate types in the table could not be listed".to_string();
    };
    let mut types = BTreeMap::<String, usize>::new();
    for item in out.items() {
        if let Some(AttributeValue::S(t)) = item.get("AggregateType") {
            *types.entry(t.clone()).or_default() += 1;
        }
    }
    if types.is_empty() {
        return format!("table {table} holds no events in its first {TYPES_SCAN_LIMIT} items");
    }
    let list: Vec<String> = types.iter().map(|(t, n)| format!("{t} ({n})")).collect();
    format!(
        "aggregate types found in the first {} items: {} (--aggregate-type takes one of them)",
        out.items().len(),
        list.join(", ")
    )
}

/// Seconds since the Unix epoch as an RFC 3339 date (UTC); tested with the
/// other printed figures in `progress`.
pub(crate) fn date(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| DateTime::from_secs(s).fmt(DateTimeFormat::DateTime).ok())
        .unwrap_or_else(|| seconds.to_string())
}
