//! `dynamo-es delete-aggregate TYPE ID`: deletes one aggregate (see
//! [`dynamo_es::DynamoEventRepository::delete_aggregate_with`]): its
//! tombstone first, then its snapshot items and events in batches, one line
//! of progress per batch.
//!
//! **Invariant:** with `--dry-run` it only reads (a `Query` for the newest
//! item, a counting `Query`, a `GetItem` of the snapshot head) and says what
//! it would delete; without it, an interrupted run (Ctrl-C, an error) is
//! finished by running the same command again. On a table with the
//! `EventsBySlice` index, the tombstone carries the aggregate's slice (the
//! count read from the table), so feeds learn of the deletion.

use std::io::Write;

use aws_sdk_dynamodb::Client;
use clap::Args;
use dynamo_es::tables::slices_of;
use dynamo_es::{
    DeleteOptions, DynamoEventRepository, DEFAULT_EVENT_TABLE, DEFAULT_SNAPSHOT_TABLE,
};

/// `dynamo-es delete-aggregate`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The aggregate type (`Aggregate::TYPE`).
    #[arg(value_name = "TYPE")]
    pub aggregate_type: String,
    /// The aggregate id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The events table.
    #[arg(long = "events-table", value_name = "TABLE", default_value = DEFAULT_EVENT_TABLE)]
    pub events: String,
    /// The snapshots table.
    #[arg(long = "snapshots-table", value_name = "TABLE", default_value = DEFAULT_SNAPSHOT_TABLE)]
    pub snapshots: String,
    /// Items deleted per BatchWriteItem (1 to 25).
    #[arg(long, value_name = "N", default_value_t = 25, value_parser = clap::value_parser!(u16).range(1..=25))]
    pub batch_size: u16,
    /// Say what would be deleted (counted), and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Deletes the aggregate (or, with `--dry-run`, counts what would go),
/// printing its progress to `out`.
pub async fn execute(
    args: &DeleteArgs,
    client: Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut repo =
        DynamoEventRepository::new(client.clone()).with_tables(&args.events, &args.snapshots);
    let name = format!("{}:{}", args.aggregate_type, args.id);
    let plan = repo.plan_deletion(&args.aggregate_type, &args.id).await?;
    let state = if plan.deleted {
        format!("already deleted through sequence {}", plan.last_sequence)
    } else {
        format!("last sequence {}", plan.last_sequence)
    };
    writeln!(
        out,
        "{name}: {state}; {} events in {}, {} snapshot items in {}",
        plan.events, args.events, plan.snapshot_items, args.snapshots
    )?;
    if args.dry_run {
        let tombstone = if plan.deleted {
            "its tombstone is already written"
        } else {
            "a tombstone would keep its last sequence"
        };
        writeln!(
            out,
            "dry run: would delete {} events and {} snapshot items; {tombstone}; nothing written",
            plan.events, plan.snapshot_items
        )?;
        return Ok(());
    }
    // A table with the slice index: the tombstone carries its slice, so
    // feeds learn of the deletion.
    if let Some(slices) = slices_of(&client, &args.events).await? {
        repo = repo.with_slices(slices);
    }
    let total = plan.events + plan.snapshot_items;
    let mut failed = None;
    let options = DeleteOptions::new().with_batch_size(usize::from(args.batch_size));
    let done = repo
        .delete_aggregate_with(&args.aggregate_type, &args.id, options, |done| {
            let deleted = done.events_deleted + done.snapshot_items_deleted;
            if let Err(err) = writeln!(out, "[{deleted}/{total}] items deleted") {
                failed.get_or_insert(err);
            }
        })
        .await?;
    if let Some(err) = failed {
        return Err(err.into());
    }
    let tombstone = if done.tombstone_written {
        "tombstone written"
    } else {
        "tombstone found"
    };
    writeln!(
        out,
        "deleted {name}: {tombstone} (keeps sequence {}), {} events and {} snapshot items deleted",
        done.last_sequence, done.events_deleted, done.snapshot_items_deleted
    )?;
    Ok(())
}
