//! `dynamo-es projections status`: a projection's per-shard checkpoints,
//! owners, finished shards and lag, and its last rebuild, read from the
//! checkpoint table (see [`dynamo_es::projection::ProjectionStatus`]).
//!
//! **Invariant:** it only reads (a `Scan` and a `GetItem` of the checkpoint
//! table, `DescribeTable` of the events table if named), and prints every
//! lag with what it measures: `record` (the age of the last checkpointed
//! stream record) or `update` (the time since the checkpoint item was last
//! written, when no record time is known).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use clap::{Args, Subcommand};
use dynamo_es::projection::{CheckpointStore, LagSource, ProjectionStatus, ShardStatus};
use serde_json::{json, Value};

/// `dynamo-es projections`.
#[derive(Debug, Args)]
pub struct ProjectionsArgs {
    #[command(subcommand)]
    pub command: ProjectionsCommand,
}

/// What to do with projections.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Show a projection's per-shard checkpoint, owner, finished flag and
    /// lag, and its last rebuild. LAG is the age of the last checkpointed
    /// stream record (`record`), or, when the projector did not record it,
    /// the time since the shard's checkpoint item was last written
    /// (`update`); finished shards have none.
    Status(StatusArgs),
}

/// `dynamo-es projections status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The checkpoint table (HASH LeaseKey).
    #[arg(long, value_name = "TABLE")]
    pub checkpoint_table: String,
    /// The projection's name, as given to its CheckpointStore.
    #[arg(long, value_name = "NAME")]
    pub projection: String,
    /// The events table: shows its current stream and flags checkpoints of
    /// a stream it no longer has.
    #[arg(long, value_name = "TABLE")]
    pub events_table: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dynamo-es projections ...`, printing to `out` (notes to stderr).
pub async fn execute(
    args: &ProjectionsArgs,
    client: Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let ProjectionsCommand::Status(args) = &args.command;
    let store = CheckpointStore::new(client.clone(), &args.checkpoint_table, &args.projection);
    let status = match &args.events_table {
        Some(events) => ProjectionStatus::read_for_table(&store, &client, events).await?,
        None => ProjectionStatus::read(&store).await?,
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &to_json(&status))?;
        writeln!(out)?;
    } else {
        print_table(&status, out)?;
    }
    for note in notes(&status, args.events_table.as_deref()) {
        eprintln!("{note}");
    }
    Ok(())
}

/// Warnings an operator should act on.
fn notes(status: &ProjectionStatus, events_table: Option<&str>) -> Vec<String> {
    let mut notes = Vec::new();
    if status.shards.is_empty() {
        notes.push(format!(
            "note: no checkpoints for projection {} in {}: no projector has leased a shard of it yet",
            status.projection, status.checkpoint_table
        ));
    }
    let stale = status
        .shards
        .iter()
        .filter(|shard| shard.current_stream == Some(false))
        .count();
    if let (true, Some(table)) = (stale > 0, events_table) {
        notes.push(format!(
            "warning: {stale} shard(s) belong to a stream {table} no longer has (the stream was \
             replaced): their checkpoints are not read any more; rebuild the projection"
        ));
    }
    notes
}

fn print_table(status: &ProjectionStatus, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "projection {} (checkpoint table {})",
        status.projection, status.checkpoint_table
    )?;
    if let Some(arn) = &status.stream_arn {
        writeln!(out, "stream {arn}")?;
    }
    let now = status.read_at;
    match &status.rebuild {
        None => writeln!(out, "rebuild: none")?,
        Some(marker) => {
            let finished = marker.finished_at.map_or_else(
                || "not finished".to_string(),
                |at| format!("finished {} ago, {} events", age(now, at), marker.events),
            );
            writeln!(
                out,
                "rebuild: started {} ago, skips stream records created before {} ago, {finished}",
                age(now, marker.started_at),
                age(now, marker.start_after)
            )?;
        }
    }
    let header = [
        "SHARD",
        "PARENT",
        "CHECKPOINT",
        "OWNER",
        "FINISHED",
        "LAG",
        "UPDATED",
    ];
    let rows: Vec<[String; 7]> = status.shards.iter().map(|shard| row(shard, now)).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    Ok(())
}

fn row(shard: &ShardStatus, now: SystemTime) -> [String; 7] {
    let checkpoint = &shard.checkpoint;
    let or_dash = |value: Option<&str>| value.unwrap_or("-").to_string();
    let stale = if shard.current_stream == Some(false) {
        " (old stream)"
    } else {
        ""
    };
    [
        format!("{}{stale}", checkpoint.shard_id),
        or_dash(checkpoint.parent_shard_id.as_deref()),
        or_dash(checkpoint.checkpoint.as_deref()),
        or_dash(checkpoint.owner.as_deref()),
        if checkpoint.finished { "yes" } else { "no" }.to_string(),
        match (shard.lag, shard.lag_source) {
            (Some(lag), Some(source)) => format!("{} ({})", duration(lag), source_name(source)),
            _ => "-".to_string(),
        },
        checkpoint
            .updated_at
            .map_or_else(|| "-".to_string(), |at| format!("{} ago", age(now, at))),
    ]
}

fn source_name(source: LagSource) -> &'static str {
    match source {
        LagSource::Record => "record",
        LagSource::Update => "update",
        _ => "other",
    }
}

fn to_json(status: &ProjectionStatus) -> Value {
    let shards: Vec<Value> = status
        .shards
        .iter()
        .map(|shard| {
            let c = &shard.checkpoint;
            json!({
                "shard_id": c.shard_id,
                "parent_shard_id": c.parent_shard_id,
                "stream_arn": c.stream_arn,
                "checkpoint": c.checkpoint,
                "owner": c.owner,
                "finished": c.finished,
                "lease_counter": c.lease_counter,
                "lag_ms": shard.lag.map(millis_of),
                "lag_source": shard.lag_source.map(source_name),
                "updated_at_ms": c.updated_at.map(unix_millis),
                "checkpoint_created_ms": c.checkpoint_created.map(unix_millis),
                "current_stream": shard.current_stream,
            })
        })
        .collect();
    let rebuild = status.rebuild.as_ref().map(|marker| {
        json!({
            "started_at_ms": unix_millis(marker.started_at),
            "start_after_ms": unix_millis(marker.start_after),
            "finished_at_ms": marker.finished_at.map(unix_millis),
            "events": marker.events,
        })
    });
    json!({
        "projection": status.projection,
        "checkpoint_table": status.checkpoint_table,
        "stream_arn": status.stream_arn,
        "read_at_ms": unix_millis(status.read_at),
        "max_lag_ms": status.max_lag().map(millis_of),
        "rebuild": rebuild,
        "shards": shards,
    })
}

fn millis_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(millis_of)
        .unwrap_or_default()
}

/// `now - then` written as [`duration`] (zero if `then` is later).
fn age(now: SystemTime, then: SystemTime) -> String {
    duration(now.duration_since(then).unwrap_or_default())
}

/// `850ms`, `12.3s`, `4m05s`, `2h07m`.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 60 {
        format!("{secs}.{}s", (ms % 1000) / 100)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(
            duration(Duration::from_secs(2 * 3600 + 7 * 60 + 5)),
            "2h07m"
        );
    }
}
