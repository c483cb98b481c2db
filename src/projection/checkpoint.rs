//! [`CheckpointStore`]: where a projection keeps, per stream shard, how far
//! it got and who is processing it, in the checkpoint table
//! ([`create_checkpoint_table`](crate::tables::create_checkpoint_table)).
//!
//! **Invariant:** a shard's item changes only through conditional writes:
//! it is created only if absent, its lease changes hands only if its
//! `LeaseCounter` still has the value the taker read, and every write of
//! progress (checkpoint, finish, release) or heartbeat is conditional on
//! the writer still being its `Owner` (see [`lease`](super::lease)). Times
//! stored here (`UpdatedAt`, ...) are the writer's clock and only ever
//! *shown*; no decision compares clocks of two machines.
//!
//! The schema is documented at [`CheckpointStore`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::fields::{
    millis, now_millis, time_of, CHECKPOINT, CHECKPOINT_CREATED_AT, FINISHED, LEASE_COUNTER, OWNER,
    PARENT_SHARD_ID, PROJECTION, REBUILD_CLOSED_SHARDS, REBUILD_ERROR, REBUILD_EVENTS,
    REBUILD_FAILED_AT, REBUILD_FINISHED_AT, REBUILD_STARTED_AT, REBUILD_STREAM, SHARD_ID,
    START_AFTER, STREAM_ARN, UPDATED_AT,
};
use super::observed::Observed;
use super::Error;
use crate::item::{get_n, get_s, n, s, Item};
use crate::tables::requests::{get_item, put_item, scan, Filter};
use crate::tables::LEASE_KEY;

/// The default [lease duration](CheckpointStore::with_lease_duration).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);

/// A stream shard, as the projector found it in `DescribeStream`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardInfo {
    /// The stream's ARN.
    pub stream_arn: String,
    /// The shard's id.
    pub shard_id: String,
    /// Its parent shard, whose records come first.
    pub parent_shard_id: Option<String>,
}

/// One shard's item in the checkpoint table, as [`CheckpointStore::list`]
/// reads it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCheckpoint {
    /// The shard: its stream, id and parent.
    pub shard: ShardInfo,
    /// The sequence number of the last record processed, if any.
    pub checkpoint: Option<String>,
    /// When that record was created (its `ApproximateCreationDateTime`),
    /// if the projector recorded it.
    pub checkpoint_created: Option<SystemTime>,
    /// The shard is closed and every record of it was processed.
    pub finished: bool,
    /// The process holding the lease, if any.
    pub owner: Option<String>,
    /// The lease counter (bumped by every write of the owner).
    pub lease_counter: u64,
    /// When the item was last written, by the writer's clock.
    pub updated_at: Option<SystemTime>,
}

/// The last rebuild of a projection, as recorded in the checkpoint table.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildMarker {
    /// T0: when the rebuild started, before its scan.
    pub started_at: SystemTime,
    /// T0 minus the safety margin: shards without a checkpoint skip stream
    /// records created before this.
    pub start_after: SystemTime,
    /// When the scan's events were all dispatched and the checkpoints
    /// that predate the rebuild were superseded (`None` while running, or
    /// if it failed or was stopped). Projectors honour only a finished
    /// rebuild.
    pub finished_at: Option<SystemTime>,
    /// How many events the rebuild dispatched.
    pub events: u64,
    /// When the rebuild stopped on an error, if it could record it (a
    /// process killed mid-rebuild records nothing: its marker stays
    /// unfinished, without a failure).
    pub failed_at: Option<SystemTime>,
    /// That error, as displayed.
    pub error: Option<String>,
    /// The stream the rebuild described before its marker (see
    /// [`Rebuild::with_stream`](super::Rebuild::with_stream)), if it did.
    pub stream_arn: Option<String>,
    /// The shards of that stream that were closed then, sorted: each holds
    /// only events the scan covered, so a projector may find every record
    /// of one trimmed and lose nothing. Empty if the stream was not
    /// described.
    pub closed_shards: Vec<String>,
}

impl RebuildMarker {
    /// The rebuild finished: projectors may skip what it covered.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }
}

/// Checkpoints and leases of one projection in a checkpoint table.
///
/// # Schema
///
/// HASH `LeaseKey` (S). One item per projection and shard, keyed
/// `{projection}#{shard id}`:
///
/// | attribute | type | meaning |
/// |---|---|---|
/// | `LeaseKey` | S | `{projection}#{shard id}` |
/// | `Projection` | S | the projection's name |
/// | `StreamArn` | S | the stream the shard belongs to |
/// | `ShardId` | S | the shard |
/// | `ParentShardId` | S | its parent shard, if it has one |
/// | `Checkpoint` | S | the sequence number of the last record processed; absent before the first |
/// | `CheckpointCreatedAt` | N | that record's `ApproximateCreationDateTime`, Unix milliseconds, if known |
/// | `OpenedAt` | S | before the first checkpoint, the first record read when the shard was opened at the trim horizon (its first records were gone): a reader reopening the shard resumes there |
/// | `Finished` | BOOL | the shard is closed and all its records were processed: its children may start |
/// | `Owner` | S | the process holding the lease; absent when released |
/// | `LeaseCounter` | N | bumped by every write of the owner (heartbeat, checkpoint, ...) |
/// | `UpdatedAt` | N | Unix milliseconds of the last write, writer's clock (shown by status only) |
///
/// One more item per projection, keyed `{projection}#!rebuild`, records the
/// last [`Rebuild`](super::Rebuild): `Projection`, `RebuildStartedAt` (N, T0),
/// `StartAfter` (N, T0 minus the safety margin: a shard without a
/// checkpoint skips stream records created before it), `RebuildFinishedAt`
/// (N, once done), `RebuildEvents` (N, events dispatched),
/// `RebuildFailedAt` (N) and `RebuildError` (S, the error) if it stopped on
/// an error, and `UpdatedAt`.
/// A shard id never contains `!`, so it cannot collide with a shard's key.
///
/// One more, keyed `{projection}#!start`, records the projection's origin,
/// written by the projector at its first start: `StreamArn`, `StartedAt`
/// (N), `StartPosition` (S, `TRIM_HORIZON` or `LATEST`), `StartAfter` (N:
/// with `LATEST`, records created before it are skipped), `Roots` (SS: the
/// shards it started from, which alone open at the trim horizon),
/// `OriginVersion` (N) and `UpdatedAt`. Deleting a projection's checkpoints
/// deletes it too.
///
/// Clones share the lease observations (what [`acquire`](Self::acquire)
/// saw of other owners' counters), so use clones of one store within a
/// process.
///
/// ```no_run
/// # async fn demo(client: dynamo_es::aws_sdk_dynamodb::Client) -> Result<(), dynamo_es::projection::Error> {
/// use dynamo_es::projection::{CheckpointStore, ShardInfo};
/// use std::time::Duration;
///
/// dynamo_es::tables::create_checkpoint_table(&client, "Checkpoints").await?;
/// let store = CheckpointStore::new(client, "Checkpoints", "balances")
///     .with_lease_duration(Duration::from_secs(20));
/// let shard = ShardInfo {
///     stream_arn: "arn:aws:dynamodb:...".into(),
///     shard_id: "shardId-0001".into(),
///     parent_shard_id: None,
/// };
/// if let Some(mut lease) = store.acquire(&shard, "host-a-4711").await? {
///     // ... dispatch the records after lease.checkpoint ...
///     store.checkpoint(&mut lease, "000000000000000000042").await?;
///     store.release(lease).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    pub(super) client: Client,
    pub(super) table: String,
    pub(super) projection: String,
    pub(super) lease_duration: Duration,
    pub(super) observed: Arc<Observed>,
}

impl CheckpointStore {
    /// The checkpoints of `projection` in `table`, with leases of
    /// [`DEFAULT_LEASE_DURATION`].
    pub fn new(client: Client, table: &str, projection: &str) -> Self {
        CheckpointStore {
            client,
            table: table.to_string(),
            projection: projection.to_string(),
            lease_duration: DEFAULT_LEASE_DURATION,
            observed: Arc::default(),
        }
    }

    /// How long another owner's lease counter must stay unchanged, as
    /// observed by this process, before [`acquire`](Self::acquire) takes
    /// the lease over. Owners must [`renew`](Self::renew) (or checkpoint)
    /// well within it, say every third of it.
    pub fn with_lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration;
        self
    }

    /// The lease duration.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// The checkpoint table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The projection's name.
    pub fn projection(&self) -> &str {
        &self.projection
    }

    /// The item key of `shard_id` (`{projection}#{shard id}`).
    pub(super) fn key(&self, shard_id: &str) -> String {
        format!("{}#{shard_id}", self.projection)
    }

    pub(super) fn rebuild_key(&self) -> String {
        format!("{}#!rebuild", self.projection)
    }

    /// Every shard item of the projection (a consistent `Scan` of the
    /// checkpoint table, filtered by projection), ordered by shard id.
    pub async fn list(&self) -> Result<Vec<ShardCheckpoint>, Error> {
        let items = self.items_with(&[SHARD_ID]).await?;
        let mut shards = items
            .iter()
            .map(ShardCheckpoint::from_item)
            .collect::<Result<Vec<_>, Error>>()?;
        shards.sort_by(|a, b| a.shard.shard_id.cmp(&b.shard.shard_id));
        Ok(shards)
    }

    /// Every item of the projection that has one of the attributes
    /// `any_of` (a consistent `Scan` of the checkpoint table, filtered by
    /// projection).
    pub(super) async fn items_with(&self, any_of: &[&str]) -> Result<Vec<Item>, Error> {
        let exists: Vec<String> = (0..any_of.len())
            .map(|i| format!("attribute_exists(#a{i})"))
            .collect();
        let mut filter = Filter::new(format!(
            "#projection = :projection AND ({})",
            exists.join(" OR ")
        ))
        .name("#projection", PROJECTION)
        .value(":projection", s(&self.projection));
        for (i, name) in any_of.iter().enumerate() {
            filter = filter.name(&format!("#a{i}"), name);
        }
        Ok(scan(&self.client, &self.table, filter).await?)
    }

    /// One shard's item, if it exists (a consistent `GetItem`).
    pub async fn get(&self, shard_id: &str) -> Result<Option<ShardCheckpoint>, Error> {
        self.get_item(&self.key(shard_id))
            .await?
            .map(|item| ShardCheckpoint::from_item(&item))
            .transpose()
    }

    /// The item at `key`, read consistently.
    pub(super) async fn get_item(&self, key: &str) -> Result<Option<Item>, Error> {
        Ok(get_item(&self.client, &self.table, (LEASE_KEY, key)).await?)
    }

    /// Where a shard without a checkpoint starts after a finished rebuild:
    /// stream records created before this time are skipped (their events
    /// were in the rebuild's scan). `None` if the projection was never
    /// rebuilt, or its last rebuild has not finished (a projector then
    /// refuses to start: [`Error::RebuildUnfinished`]).
    pub async fn start_after(&self) -> Result<Option<SystemTime>, Error> {
        Ok(self
            .rebuild_marker()
            .await?
            .filter(|marker| marker.finished_at.is_some())
            .map(|marker| marker.start_after))
    }

    /// The projection's last rebuild, if any.
    pub async fn rebuild_marker(&self) -> Result<Option<RebuildMarker>, Error> {
        let key = self.rebuild_key();
        let Some(item) = self.get_item(&key).await? else {
            return Ok(None);
        };
        Ok(Some(RebuildMarker {
            started_at: time_of(get_n(&item, &key, REBUILD_STARTED_AT)?),
            start_after: time_of(get_n(&item, &key, START_AFTER)?),
            finished_at: optional_time(&item, &key, REBUILD_FINISHED_AT)?,
            events: optional_n(&item, &key, REBUILD_EVENTS)?.unwrap_or_default(),
            failed_at: optional_time(&item, &key, REBUILD_FAILED_AT)?,
            error: match item.get(REBUILD_ERROR) {
                None => None,
                Some(_) => Some(get_s(&item, &key, REBUILD_ERROR)?.to_string()),
            },
            stream_arn: match item.get(REBUILD_STREAM) {
                None => None,
                Some(_) => Some(get_s(&item, &key, REBUILD_STREAM)?.to_string()),
            },
            closed_shards: {
                let mut ids: Vec<String> =
                    super::fields::string_set(&item, &key, REBUILD_CLOSED_SHARDS)?
                        .into_iter()
                        .collect();
                ids.sort();
                ids
            },
        }))
    }

    /// Records `marker` as the projection's last rebuild (replacing an
    /// earlier one).
    pub(super) async fn put_rebuild_marker(&self, marker: &RebuildMarker) -> Result<(), Error> {
        let mut item: Item = HashMap::from([
            (LEASE_KEY.to_string(), s(self.rebuild_key())),
            (PROJECTION.to_string(), s(&self.projection)),
            (REBUILD_STARTED_AT.to_string(), n(millis(marker.started_at))),
            (START_AFTER.to_string(), n(millis(marker.start_after))),
            (REBUILD_EVENTS.to_string(), n(marker.events)),
            (UPDATED_AT.to_string(), n(now_millis())),
        ]);
        if let Some(finished) = marker.finished_at {
            item.insert(REBUILD_FINISHED_AT.to_string(), n(millis(finished)));
        }
        if let Some(failed) = marker.failed_at {
            item.insert(REBUILD_FAILED_AT.to_string(), n(millis(failed)));
        }
        if let Some(error) = &marker.error {
            item.insert(REBUILD_ERROR.to_string(), s(error));
        }
        if let Some(stream_arn) = &marker.stream_arn {
            item.insert(REBUILD_STREAM.to_string(), s(stream_arn));
        }
        if !marker.closed_shards.is_empty() {
            item.insert(
                REBUILD_CLOSED_SHARDS.to_string(),
                aws_sdk_dynamodb::types::AttributeValue::Ss(marker.closed_shards.clone()),
            );
        }
        Ok(put_item(&self.client, &self.table, item).await?)
    }
}

impl ShardCheckpoint {
    /// Reads a shard item, naming it and the attribute on error.
    pub(super) fn from_item(item: &Item) -> Result<Self, Error> {
        let key = get_s(item, "<checkpoint item>", LEASE_KEY)?;
        let text = |name: &'static str| -> Result<Option<String>, Error> {
            match item.get(name) {
                None => Ok(None),
                Some(_) => Ok(Some(get_s(item, key, name)?.to_string())),
            }
        };
        let finished = match item.get(FINISHED) {
            None => false,
            Some(AttributeValue::Bool(finished)) => *finished,
            Some(_) => {
                return Err(crate::Error::InvalidAttribute {
                    key: key.to_string(),
                    attribute: FINISHED,
                    expected: "a boolean",
                }
                .into())
            }
        };
        Ok(ShardCheckpoint {
            shard: ShardInfo {
                stream_arn: get_s(item, key, STREAM_ARN)?.to_string(),
                shard_id: get_s(item, key, SHARD_ID)?.to_string(),
                parent_shard_id: text(PARENT_SHARD_ID)?,
            },
            checkpoint: text(CHECKPOINT)?,
            checkpoint_created: optional_time(item, key, CHECKPOINT_CREATED_AT)?,
            finished,
            owner: text(OWNER)?,
            lease_counter: get_n(item, key, LEASE_COUNTER)?,
            updated_at: optional_time(item, key, UPDATED_AT)?,
        })
    }
}

/// An optional number attribute.
fn optional_n(item: &Item, key: &str, name: &'static str) -> Result<Option<u64>, Error> {
    match item.get(name) {
        None => Ok(None),
        Some(_) => Ok(Some(get_n(item, key, name)?)),
    }
}

/// An optional time attribute (Unix milliseconds).
fn optional_time(item: &Item, key: &str, name: &'static str) -> Result<Option<SystemTime>, Error> {
    Ok(optional_n(item, key, name)?.map(time_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_item_reads_back_and_a_bad_one_names_its_key() {
        let mut item: Item = HashMap::from([
            (LEASE_KEY.to_string(), s("p#shard-1")),
            (PROJECTION.to_string(), s("p")),
            (STREAM_ARN.to_string(), s("arn")),
            (SHARD_ID.to_string(), s("shard-1")),
            (CHECKPOINT.to_string(), s("42")),
            (FINISHED.to_string(), AttributeValue::Bool(true)),
            (LEASE_COUNTER.to_string(), n(7)),
        ]);
        let shard = ShardCheckpoint::from_item(&item).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(shard.checkpoint.as_deref(), Some("42"));
        assert!(shard.finished);
        assert_eq!((shard.owner, shard.lease_counter), (None, 7));

        item.insert(FINISHED.to_string(), s("yes"));
        let err = ShardCheckpoint::from_item(&item)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("item p#shard-1: attribute Finished is not a boolean")
        );
    }
}
