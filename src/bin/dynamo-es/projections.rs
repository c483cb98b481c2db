//! `dynamo-es projections status`: a projection's per-shard checkpoints,
//! owners, finished shards and lag, every shard of the stream, and its last
//! rebuild, read from the checkpoint table and the stream (see
//! [`dynamo_es::projection::ProjectionStatus`]); `dynamo-es projections
//! reset`: deletes them ([`CheckpointStore::reset`]).
//!
//! **Invariant:** `status` only reads (a `Scan` and a `GetItem` of the
//! checkpoint table, `DescribeTable` of the events table and
//! `DescribeStream` of its stream if named), and prints every lag with what
//! it measures: `record` (the age of the last checkpointed stream record)
//! or `update` (the time since the checkpoint item was last written, when
//! no record time is known). `reset` deletes nothing without `--yes`.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use clap::{Args, Subcommand};
use dynamo_es::projection::{
    CheckpointStore, LagSource, ProjectionStatus, RebuildMarker, ShardStatus,
};
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
    /// (`update`); finished shards have none. With --events-table, every
    /// shard of its stream is listed, a shard no projector has read yet
    /// with CHECKPOINT `(none)`.
    Status(StatusArgs),
    /// Delete every checkpoint, lease and the rebuild marker of a
    /// projection: it is then as if it never ran. Stop its projectors
    /// first. Not needed after `Trimmed`: a finished rebuild supersedes the
    /// old checkpoints itself.
    Reset(ResetArgs),
}

/// `dynamo-es projections reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The checkpoint table (HASH LeaseKey).
    #[arg(long, value_name = "TABLE")]
    pub checkpoint_table: String,
    /// The projection's name, as given to its CheckpointStore.
    #[arg(long, value_name = "NAME")]
    pub projection: String,
    /// Confirms the deletion (without it, nothing is deleted).
    #[arg(long)]
    pub yes: bool,
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
    /// The events table: lists every shard of its current stream, and flags
    /// checkpoints of shards the stream no longer lists or of a stream it no
    /// longer has. A table without a stream is flagged with how to enable
    /// one (or which table the checkpoints were read from).
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
    streams: aws_sdk_dynamodbstreams::Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    match &args.command {
        ProjectionsCommand::Status(args) => status(args, client, &streams, out).await,
        ProjectionsCommand::Reset(args) => reset(args, client, out).await,
    }
}

/// `dynamo-es projections reset`.
async fn reset(
    args: &ResetArgs,
    client: Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    if !args.yes {
        return Err(format!(
            "projections reset deletes every checkpoint, lease and the rebuild marker of \
             projection {} in {}; stop its projectors, then run it again with --yes",
            args.projection, args.checkpoint_table
        )
        .into());
    }
    let store = CheckpointStore::new(client.clone(), &args.checkpoint_table, &args.projection);
    let reset = store.reset().await?;
    let feeds = dynamo_es::projection::feed::FeedPositions::new(
        client,
        &args.checkpoint_table,
        &args.projection,
    )
    .reset()
    .await?;
    if !feeds.is_empty() {
        writeln!(out, "deleted {} feed slice position(s)", feeds.len())?;
    }
    writeln!(
        out,
        "deleted {} shard checkpoint(s){} of projection {} in {}",
        reset.shards.len(),
        if reset.rebuild.is_some() {
            " and the rebuild marker"
        } else {
            ""
        },
        args.projection,
        args.checkpoint_table
    )?;
    if reset.sequences > 0 {
        writeln!(
            out,
            "deleted the applied sequences of {} aggregate(s) of the transactional projection",
            reset.sequences
        )?;
    }
    let held: Vec<String> = reset
        .shards
        .iter()
        .filter_map(|shard| {
            Some(format!(
                "{} ({})",
                shard.shard.shard_id,
                shard.owner.as_ref()?
            ))
        })
        .collect();
    if !held.is_empty() {
        eprintln!(
            "warning: leases were held on {}: if those projectors still run, they stop reading \
             these shards (lease lost); restart them",
            held.join(", ")
        );
    }
    Ok(())
}

/// `dynamo-es projections status`.
async fn status(
    args: &StatusArgs,
    client: Client,
    streams: &aws_sdk_dynamodbstreams::Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = CheckpointStore::new(client.clone(), &args.checkpoint_table, &args.projection);
    let status = match &args.events_table {
        Some(events) => ProjectionStatus::read_for_table(&store, &client, streams, events).await?,
        None => ProjectionStatus::read(&store).await?,
    };
    let feeds = crate::feeds::positions(client, &args.checkpoint_table, &args.projection).await?;
    if args.json {
        let mut json = to_json(&status);
        json["feeds"] = crate::feeds::to_json(&feeds);
        serde_json::to_writer_pretty(&mut *out, &json)?;
        writeln!(out)?;
    } else {
        print_table(&status, out)?;
        crate::feeds::print(&feeds, out)?;
    }
    let notes = notes(&status, args.events_table.as_deref());
    // A projection fed only by a feed has no shard checkpoints.
    let notes = notes
        .into_iter()
        .filter(|note| feeds.is_empty() || !note.starts_with("note: no checkpoints"));
    for note in notes {
        eprintln!("{note}");
    }
    Ok(())
}

/// Warnings an operator should act on.
fn notes(status: &ProjectionStatus, events_table: Option<&str>) -> Vec<String> {
    let mut notes = Vec::new();
    if status.shards.iter().all(|shard| shard.checkpoint.is_none()) {
        notes.push(format!(
            "note: no checkpoints for projection {} in {}: no projector has leased a shard of it yet",
            status.projection, status.checkpoint_table
        ));
    }
    if let Some(marker) = status.rebuild.as_ref().filter(|m| !m.is_finished()) {
        notes.push(format!(
            "warning: the last rebuild of {} did not finish ({}): projectors skip nothing on its \
             account and its checkpoints are not superseded; run the rebuild again",
            status.projection,
            match &marker.error {
                Some(error) => format!("it failed: {error}"),
                None => "it is running, or was stopped".to_string(),
            }
        ));
    }
    let unread = status
        .shards
        .iter()
        .filter(|shard| shard.checkpoint.is_none())
        .count();
    if unread > 0 && unread < status.shards.len() {
        notes.push(format!(
            "note: {unread} shard(s) of the stream have no checkpoint (CHECKPOINT (none)): no \
             projector has read them yet"
        ));
    }
    let gone: Vec<&str> = status
        .shards
        .iter()
        .filter(|shard| {
            shard.described == Some(false)
                && shard.current_stream == Some(true)
                && !shard.checkpoint.as_ref().is_some_and(|c| c.finished)
        })
        .map(|shard| shard.shard.shard_id.as_str())
        .collect();
    if !gone.is_empty() {
        notes.push(format!(
            "warning: the stream no longer lists shard(s) {} (closed and past the 24-hour \
             retention) though they are not finished: the records after their checkpoints are \
             gone and the projector stops with Trimmed; rebuild the projection on this checkpoint \
             table, then restart its projectors",
            gone.join(", ")
        ));
    }
    if let (Some(false), Some(table)) = (status.stream_enabled, events_table) {
        notes.push(no_stream(status, table));
        return notes;
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

/// What `--events-table` naming a table without a stream says: how to
/// enable one, or which table the checkpoints were read from.
fn no_stream(status: &ProjectionStatus, table: &str) -> String {
    let mut note = format!(
        "warning: table {table} has no stream enabled, so no projector can read its events. If \
         {table} is the events table, enable a NEW_IMAGE stream: aws dynamodb update-table \
         --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_IMAGE \
         (or, from Rust, dynamo_es::tables::enable_stream, or create_event_tables_with with \
         TableOptions::default().with_stream(true)); if it is not, --events-table names the \
         wrong table"
    );
    let mut read_from: Vec<&str> = status
        .shards
        .iter()
        .filter_map(|shard| table_of_stream(&shard.checkpoint.as_ref()?.shard.stream_arn))
        .filter(|other| *other != table)
        .collect();
    read_from.sort_unstable();
    read_from.dedup();
    if !read_from.is_empty() {
        note.push_str(&format!(
            ": the checkpoints of projection {} are of the stream of {}; pass --events-table {}",
            status.projection,
            read_from.join(", "),
            read_from.join(" or --events-table ")
        ));
    }
    note
}

/// The table a stream ARN (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`)
/// belongs to.
fn table_of_stream(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":table/")?;
    let (table, _) = rest.split_once("/stream/")?;
    (!table.is_empty()).then_some(table)
}

/// The rebuild line of the table.
fn rebuild_line(marker: &RebuildMarker, now: SystemTime) -> String {
    let started = format!(
        "rebuild: started {} ago, skips stream records created before {} ago",
        age(now, marker.started_at),
        age(now, marker.start_after)
    );
    match (marker.finished_at, marker.failed_at, &marker.error) {
        (Some(at), _, _) => format!(
            "{started}, finished {} ago, {} events",
            age(now, at),
            marker.events
        ),
        (None, Some(at), error) => format!(
            "{started}, FAILED {} ago after {} events: {}",
            age(now, at),
            marker.events,
            error.as_deref().unwrap_or("unknown error")
        ),
        (None, None, _) => format!("{started}, NOT FINISHED (running, or stopped)"),
    }
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
        Some(marker) => writeln!(out, "{}", rebuild_line(marker, now))?,
    }
    let header = [
        "SHARD",
        "PARENT",
        "CHECKPOINT",
        "OWNER",
        "FINISHED",
        "LAG",
        "UPDATED",
        "STREAM",
    ];
    let rows: Vec<[String; 8]> = status.shards.iter().map(|shard| row(shard, now)).collect();
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

fn row(shard: &ShardStatus, now: SystemTime) -> [String; 8] {
    let or_dash = |value: Option<&str>| value.unwrap_or("-").to_string();
    let stale = if shard.current_stream == Some(false) {
        " (old stream)"
    } else {
        ""
    };
    let stream = match (shard.described, shard.closed) {
        (Some(true), Some(true)) => "closed",
        (Some(true), _) => "open",
        (Some(false), _) if shard.current_stream == Some(true) => "gone",
        _ => "-",
    };
    let lag = shard.lag.map_or_else(
        || "-".to_string(),
        |lag| format!("{} ({})", duration(lag.duration), source_name(lag.source)),
    );
    let Some(checkpoint) = &shard.checkpoint else {
        return [
            shard.shard.shard_id.clone(),
            or_dash(shard.shard.parent_shard_id.as_deref()),
            "(none)".to_string(),
            "-".to_string(),
            "-".to_string(),
            lag,
            "-".to_string(),
            stream.to_string(),
        ];
    };
    [
        format!("{}{stale}", shard.shard.shard_id),
        or_dash(shard.shard.parent_shard_id.as_deref()),
        or_dash(checkpoint.checkpoint.as_deref()),
        or_dash(checkpoint.owner.as_deref()),
        if checkpoint.finished { "yes" } else { "no" }.to_string(),
        lag,
        checkpoint
            .updated_at
            .map_or_else(|| "-".to_string(), |at| format!("{} ago", age(now, at))),
        stream.to_string(),
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
            let c = shard.checkpoint.as_ref();
            json!({
                "shard_id": shard.shard.shard_id,
                "parent_shard_id": shard.shard.parent_shard_id,
                "has_checkpoint_item": c.is_some(),
                "stream_arn": shard.shard.stream_arn,
                "checkpoint": c.and_then(|c| c.checkpoint.as_ref()),
                "owner": c.and_then(|c| c.owner.as_ref()),
                "finished": c.map(|c| c.finished),
                "lease_counter": c.map(|c| c.lease_counter),
                "lag_ms": shard.lag.map(|lag| millis_of(lag.duration)),
                "lag_source": shard.lag.map(|lag| source_name(lag.source)),
                "updated_at_ms": c.and_then(|c| c.updated_at).map(unix_millis),
                "checkpoint_created_ms": c.and_then(|c| c.checkpoint_created).map(unix_millis),
                "current_stream": shard.current_stream,
                "described": shard.described,
                "closed": shard.closed,
            })
        })
        .collect();
    let rebuild = status.rebuild.as_ref().map(|marker| {
        let state = match (marker.is_finished(), marker.failed_at.is_some()) {
            (true, _) => "finished",
            (false, true) => "failed",
            (false, false) => "running_or_stopped",
        };
        json!({
            "state": state,
            "started_at_ms": unix_millis(marker.started_at),
            "start_after_ms": unix_millis(marker.start_after),
            "finished_at_ms": marker.finished_at.map(unix_millis),
            "failed_at_ms": marker.failed_at.map(unix_millis),
            "error": marker.error,
            "events": marker.events,
        })
    });
    json!({
        "projection": status.projection,
        "checkpoint_table": status.checkpoint_table,
        "stream_arn": status.stream_arn,
        "stream_enabled": status.stream_enabled,
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
    fn a_stream_arn_names_its_table() {
        let arn =
            "arn:aws:dynamodb:eu-west-1:123456789012:table/Events/stream/2026-01-01T00:00:00.000";
        assert_eq!(table_of_stream(arn), Some("Events"));
        assert_eq!(
            table_of_stream("arn:aws:dynamodb:eu-west-1:1:table/Events"),
            None
        );
        assert_eq!(table_of_stream("not an arn"), None);
    }

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
