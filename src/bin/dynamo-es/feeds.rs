//! Feeds in `dynamo-es projections status` and `reset`, and
//! `dynamo-es backfill-slices` (see [`dynamo_es::projection::feed`] and
//! [`dynamo_es::recode::backfill_slices`]).
//!
//! **Invariant:** `status` only reads the feed positions (one `Scan` of the
//! checkpoint table); `backfill-slices` changes nothing but the `Slice` and
//! `CommitTime` of events that have no slice, and only for the table's own
//! slice count (read from its tag, or checked against it).

use std::io::Write;
use std::time::SystemTime;

use aws_sdk_dynamodb::Client;
use clap::Args;
use dynamo_es::projection::feed::{FeedPositions, SliceStatus};
use dynamo_es::recode::{backfill_slices, BackfillKey, BackfillOptions};
use dynamo_es::slice::Slices;
use dynamo_es::tables::{check_slices, slices_of};
use serde_json::{json, Value};

/// The feed positions of `projection` in the checkpoint table `table`.
pub async fn positions(
    client: Client,
    table: &str,
    projection: &str,
) -> Result<Vec<SliceStatus>, dynamo_es::projection::Error> {
    FeedPositions::new(client, table, projection).list().await
}

/// One line per aggregate type: how many slices have a saved position, and
/// how far behind their watermarks are.
pub fn print(slices: &[SliceStatus], out: &mut dyn Write) -> std::io::Result<()> {
    let now = SystemTime::now();
    let mut types: Vec<&str> = slices.iter().map(|s| s.aggregate_type.as_str()).collect();
    types.dedup();
    for aggregate_type in types {
        let of_type: Vec<&SliceStatus> = slices
            .iter()
            .filter(|s| s.aggregate_type == aggregate_type)
            .collect();
        let lags: Vec<u128> = of_type.iter().map(|s| s.lag(now).as_millis()).collect();
        let (Some(least), Some(most)) = (lags.iter().min(), lags.iter().max()) else {
            continue;
        };
        let behind = of_type
            .iter()
            .zip(&lags)
            .find(|(_, lag)| *lag == most)
            .map_or(0, |(s, _)| s.slice);
        writeln!(
            out,
            "feed {aggregate_type}: {} slice(s) saved, watermark lag {least} ms to {most} ms \
             (slice {behind} furthest behind)",
            of_type.len()
        )?;
    }
    Ok(())
}

/// The positions as JSON.
pub fn to_json(slices: &[SliceStatus]) -> Value {
    let now = SystemTime::now();
    Value::Array(
        slices
            .iter()
            .map(|s| {
                json!({
                    "aggregate_type": s.aggregate_type,
                    "slice": s.slice,
                    "watermark_micros": s.saved.position.watermark,
                    "lag_ms": u64::try_from(s.lag(now).as_millis()).unwrap_or(u64::MAX),
                    "recent_aggregates": s.saved.position.recent.len(),
                    "version": s.saved.version,
                })
            })
            .collect(),
    )
}

/// `dynamo-es backfill-slices`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The events table (it must have the EventsBySlice index: see
    /// db/create_tables.sh --slices).
    #[arg(long, value_name = "TABLE")]
    pub events_table: String,
    /// The table's slice count; checked against the table's tag (default:
    /// read from it).
    #[arg(long, value_name = "N")]
    pub slices: Option<u16>,
    /// The most items written per second.
    #[arg(long, value_name = "N")]
    pub items_per_second: Option<u32>,
    /// Stop after scanning this many items (resume with --resume-after).
    #[arg(long, value_name = "N")]
    pub max_items: Option<u64>,
    /// Resume after this key, `{type}:{id}#{sequence}`, as a stopped run
    /// printed it.
    #[arg(long, value_name = "KEY")]
    pub resume_after: Option<BackfillKey>,
    /// Count what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `dynamo-es backfill-slices`.
pub async fn backfill(
    args: &BackfillArgs,
    client: Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let table = &args.events_table;
    let slices = match args.slices {
        Some(count) => {
            let slices = Slices::new(count)
                .ok_or_else(|| format!("--slices must be 1 to 1024, not {count}"))?;
            check_slices(&client, table, slices).await?;
            slices
        }
        None => slices_of(&client, table).await?.ok_or_else(|| {
            format!(
                "table {table} has no EventsBySlice index: add it first \
                 (db/create_tables.sh --slices N, or dynamo_es::tables::add_slice_index)"
            )
        })?,
    };
    let options = BackfillOptions {
        items_per_second: args.items_per_second,
        max_items: args.max_items,
        resume_after: args.resume_after.clone(),
        dry_run: args.dry_run,
    };
    let report = backfill_slices(&client, table, slices, &options).await?;
    let verb = if args.dry_run {
        "would stamp"
    } else {
        "stamped"
    };
    writeln!(
        out,
        "{table} ({slices}): scanned {}, {verb} {}, already sliced {}, stamped meanwhile by \
         another writer {}",
        report.scanned, report.stamped, report.had_slice, report.raced
    )?;
    match &report.resume_after {
        Some(key) => writeln!(out, "stopped early: resume with --resume-after '{key}'")?,
        None => writeln!(out, "complete")?,
    }
    Ok(())
}
