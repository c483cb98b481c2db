//! [`ProjectionStatus`]: what the checkpoint table says about a projection,
//! per shard (checkpoint, owner, finished, lag) and its last rebuild, as
//! `dynamo-es projections status` prints it.
//!
//! **Invariant:** a status is read only (a `Scan` and a `GetItem` of the
//! checkpoint table, and `DescribeTable` of the events table if named), and
//! every figure in it says where it comes from: the lag of a shard is
//! [`LagSource::Record`] (the age of the last checkpointed record) when the
//! projector recorded that record's creation time, else
//! [`LagSource::Update`] (the time since its checkpoint item was written).

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;

use super::checkpoint::RebuildMarker;
use super::projector::describe_table;
use super::{CheckpointStore, Error, ShardCheckpoint};

/// What a shard's [`ShardStatus::lag`] measures.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagSource {
    /// Now minus the creation time (`ApproximateCreationDateTime`) of the
    /// last record checkpointed: how far behind the stream the projection
    /// was at its last checkpoint, plus the time since. It keeps growing
    /// while the stream is idle (nothing new to checkpoint), so read it with
    /// the projector's live lag ([`Projector::lag`](super::Projector::lag))
    /// when the two disagree.
    Record,
    /// Now minus the time the checkpoint item was last written (any write
    /// of its owner: checkpoint or heartbeat), by the writer's clock: used
    /// when no record time was recorded. It only says the owner is alive.
    Update,
}

/// One shard of a projection's status.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// The checkpoint item.
    pub checkpoint: ShardCheckpoint,
    /// How far behind the shard is, `None` for a finished shard (nothing
    /// left) or when no time is known; see [`lag_source`](Self::lag_source).
    pub lag: Option<Duration>,
    /// What [`lag`](Self::lag) measures.
    pub lag_source: Option<LagSource>,
    /// The shard belongs to the events table's current stream (`None` when
    /// the status was read without the events table). `false` means the
    /// stream was replaced (disabled and enabled again): this checkpoint is
    /// of the old stream, which no projector reads any more.
    pub current_stream: Option<bool>,
}

/// A projection's checkpoints, owners and lag, read from the checkpoint
/// table.
///
/// ```no_run
/// # async fn demo(client: dynamo_es::aws_sdk_dynamodb::Client) -> Result<(), dynamo_es::projection::Error> {
/// use dynamo_es::projection::{CheckpointStore, ProjectionStatus};
///
/// let store = CheckpointStore::new(client.clone(), "Checkpoints", "balances");
/// let status = ProjectionStatus::read_for_table(&store, &client, "Events").await?;
/// for shard in &status.shards {
///     println!("{} at {:?}, lag {:?}", shard.checkpoint.shard_id, shard.checkpoint.checkpoint, shard.lag);
/// }
/// # Ok(()) }
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// The projection's name.
    pub projection: String,
    /// The checkpoint table.
    pub checkpoint_table: String,
    /// The events table's current stream, when read with it.
    pub stream_arn: Option<String>,
    /// Every shard with a checkpoint item, by shard id. A shard appears once
    /// a projector first leased it.
    pub shards: Vec<ShardStatus>,
    /// The last rebuild, if any.
    pub rebuild: Option<RebuildMarker>,
    /// When the status was read (this machine's clock; lags are relative to
    /// it).
    pub read_at: SystemTime,
}

impl ProjectionStatus {
    /// Reads the status of `store`'s projection from its checkpoint table.
    pub async fn read(store: &CheckpointStore) -> Result<Self, Error> {
        let shards = store.list().await?;
        let rebuild = store.rebuild_marker().await?;
        let read_at = SystemTime::now();
        Ok(ProjectionStatus {
            projection: store.projection().to_string(),
            checkpoint_table: store.table().to_string(),
            stream_arn: None,
            shards: shards
                .into_iter()
                .map(|checkpoint| ShardStatus::of(checkpoint, read_at, None))
                .collect(),
            rebuild,
            read_at,
        })
    }

    /// [`read`](Self::read), and marks which shards belong to
    /// `events_table`'s current stream (its `LatestStreamArn`, read with
    /// `DescribeTable`; a table without a stream has none).
    pub async fn read_for_table(
        store: &CheckpointStore,
        client: &Client,
        events_table: &str,
    ) -> Result<Self, Error> {
        let stream_arn = describe_table(client, events_table)
            .await?
            .filter(|table| {
                table
                    .stream_specification()
                    .is_some_and(|stream| stream.stream_enabled())
            })
            .and_then(|table| table.latest_stream_arn);
        let mut status = Self::read(store).await?;
        for shard in &mut status.shards {
            shard.current_stream =
                Some(stream_arn.as_deref() == Some(shard.checkpoint.stream_arn.as_str()));
        }
        status.stream_arn = stream_arn;
        Ok(status)
    }

    /// The largest lag of any shard.
    pub fn max_lag(&self) -> Option<Duration> {
        self.shards.iter().filter_map(|shard| shard.lag).max()
    }
}

impl ShardStatus {
    fn of(checkpoint: ShardCheckpoint, now: SystemTime, current_stream: Option<bool>) -> Self {
        let (lag, lag_source) = if checkpoint.finished {
            (None, None)
        } else if let Some(created) = checkpoint.checkpoint_created {
            (Some(since(now, created)), Some(LagSource::Record))
        } else if let Some(updated) = checkpoint.updated_at {
            (Some(since(now, updated)), Some(LagSource::Update))
        } else {
            (None, None)
        };
        ShardStatus {
            checkpoint,
            lag,
            lag_source,
            current_stream,
        }
    }
}

/// `now - then`, zero if `then` is in the future (another machine's clock).
fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}
