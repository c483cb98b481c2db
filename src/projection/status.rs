//! [`ProjectionStatus`]: what the checkpoint table says about a projection,
//! per shard (checkpoint, owner, finished, lag) and its last rebuild, and,
//! read with the stream, every shard of the stream, with a checkpoint or
//! not, as `dynamo-es projections status` prints it.
//!
//! **Invariant:** a status is read only (a `Scan` and a `GetItem` of the
//! checkpoint table, `DescribeTable` of the events table and
//! `DescribeStream` of its stream if named), and every shard the stream
//! describes or the checkpoint table holds is listed once; every figure in
//! it says where it comes from: the lag of a shard is
//! [`LagSource::Record`] (the age of the last checkpointed record) when the
//! projector recorded that record's creation time, else
//! [`LagSource::Update`] (the time since its checkpoint item was written).

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;

use super::checkpoint::RebuildMarker;
use super::projector::describe_table;
use super::{CheckpointStore, Error, ShardCheckpoint, ShardInfo};

/// What a shard's [`CheckpointLag`] measures.
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

/// How far behind a shard's checkpoint is, and what that measures.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointLag {
    /// The lag: now minus the time [`source`](Self::source) names.
    pub duration: Duration,
    /// What [`duration`](Self::duration) measures.
    pub source: LagSource,
}

/// One shard of a projection's status: a shard with a checkpoint item, or
/// one the stream describes, or both.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard: its stream, id and parent, per its checkpoint item or
    /// the stream's description.
    pub shard: ShardInfo,
    /// The checkpoint item; `None` for a shard of the stream that no
    /// projector has leased yet (it will start at the projector's start
    /// position, skipping what a finished rebuild covered).
    pub checkpoint: Option<ShardCheckpoint>,
    /// The stream's description lists the shard (`None` when the status
    /// was read without the stream). `Some(false)` for a checkpoint of the
    /// current stream means the shard aged out of it (closed more than 24
    /// hours ago): unless it is finished, the records after its checkpoint
    /// are gone, the projector stops with
    /// [`Error::Trimmed`](super::Error::Trimmed), and the projection must
    /// be rebuilt.
    pub described: Option<bool>,
    /// The shard is closed (no record is added), per the stream's
    /// description; `None` when not described.
    pub closed: Option<bool>,
    /// How far behind the shard is, and what that measures; `None` for a
    /// finished shard (nothing left) or when no time is known.
    pub lag: Option<CheckpointLag>,
    /// The shard belongs to the events table's current stream (`None` when
    /// the status was read without the events table). `false` means the
    /// stream was replaced (disabled and enabled again): this checkpoint is
    /// of the old stream, which no projector reads any more.
    pub current_stream: Option<bool>,
}

/// A shard as `DescribeStream` described it.
struct Described {
    shard_id: String,
    parent_shard_id: Option<String>,
    closed: bool,
}

/// A projection's checkpoints, owners and lag, read from the checkpoint
/// table.
///
/// ```no_run
/// # async fn demo(
/// #     client: dynamo_es::aws_sdk_dynamodb::Client,
/// #     streams: aws_sdk_dynamodbstreams::Client,
/// # ) -> Result<(), dynamo_es::projection::Error> {
/// use dynamo_es::projection::{CheckpointStore, ProjectionStatus};
///
/// let store = CheckpointStore::new(client.clone(), "Checkpoints", "balances");
/// let status = ProjectionStatus::read_for_table(&store, &client, &streams, "Events").await?;
/// for shard in &status.shards {
///     let checkpoint = shard.checkpoint.as_ref().and_then(|c| c.checkpoint.as_deref());
///     println!("{} at {checkpoint:?}, lag {:?}", shard.shard.shard_id, shard.lag.map(|lag| lag.duration));
/// }
/// if status.rebuild.as_ref().is_some_and(|r| !r.is_finished()) {
///     println!("the last rebuild is running, or failed: run it again");
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
    /// Whether the events table has a stream enabled, when read with it
    /// ([`read_for_table`](Self::read_for_table)); `None` otherwise.
    /// `Some(false)`: no projector can read that table's events. Either it
    /// is the events table and needs a stream
    /// ([`tables::enable_stream`](crate::tables::enable_stream)), or it is
    /// not the events table the projection reads.
    pub stream_enabled: Option<bool>,
    /// Every shard with a checkpoint item and, when read with the stream,
    /// every shard the stream describes, by shard id.
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
            stream_enabled: None,
            shards: shards
                .into_iter()
                .map(|checkpoint| ShardStatus::of(checkpoint, read_at))
                .collect(),
            rebuild,
            read_at,
        })
    }

    /// [`read`](Self::read), then every shard of `events_table`'s current
    /// stream (its `LatestStreamArn`, read with `DescribeTable`) as
    /// [`read_for_stream`](Self::read_for_stream) lists them. A table
    /// without a stream has no shards to add: only its checkpoints are
    /// listed, each marked as not of the current stream, and
    /// [`stream_enabled`](Self::stream_enabled) is `Some(false)`.
    pub async fn read_for_table(
        store: &CheckpointStore,
        client: &Client,
        streams: &aws_sdk_dynamodbstreams::Client,
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
        let mut status = match &stream_arn {
            Some(arn) => Self::read_for_stream(store, streams, arn).await?,
            None => {
                let mut status = Self::read(store).await?;
                for shard in &mut status.shards {
                    shard.current_stream = Some(false);
                }
                status
            }
        };
        status.stream_enabled = Some(stream_arn.is_some());
        Ok(status)
    }

    /// [`read`](Self::read), and every shard of the stream `stream_arn`
    /// (every `DescribeStream` page): shards without a checkpoint are
    /// listed with none, and each shard says whether the stream describes
    /// it and whether its checkpoint belongs to this stream.
    pub async fn read_for_stream(
        store: &CheckpointStore,
        streams: &aws_sdk_dynamodbstreams::Client,
        stream_arn: &str,
    ) -> Result<Self, Error> {
        let described = describe_stream(streams, stream_arn).await?;
        let mut status = Self::read(store).await?;
        for shard in &mut status.shards {
            let current = shard
                .checkpoint
                .as_ref()
                .is_some_and(|c| c.shard.stream_arn == stream_arn);
            shard.current_stream = Some(current);
            let listed = described
                .iter()
                .find(|d| current && d.shard_id == shard.shard.shard_id);
            shard.described = Some(listed.is_some());
            shard.closed = listed.map(|d| d.closed);
        }
        for shard in described {
            let known = status
                .shards
                .iter()
                .any(|s| s.shard.shard_id == shard.shard_id && s.current_stream == Some(true));
            if !known {
                status.shards.push(ShardStatus {
                    shard: ShardInfo {
                        stream_arn: stream_arn.to_string(),
                        shard_id: shard.shard_id,
                        parent_shard_id: shard.parent_shard_id,
                    },
                    checkpoint: None,
                    described: Some(true),
                    closed: Some(shard.closed),
                    lag: None,
                    current_stream: Some(true),
                });
            }
        }
        status
            .shards
            .sort_by(|a, b| a.shard.shard_id.cmp(&b.shard.shard_id));
        status.stream_arn = Some(stream_arn.to_string());
        Ok(status)
    }

    /// The largest lag of any shard.
    pub fn max_lag(&self) -> Option<Duration> {
        self.shards
            .iter()
            .filter_map(|shard| shard.lag.map(|lag| lag.duration))
            .max()
    }
}

impl ShardStatus {
    fn of(checkpoint: ShardCheckpoint, now: SystemTime) -> Self {
        let lag_since = |time, source| CheckpointLag {
            duration: since(now, time),
            source,
        };
        let lag = if checkpoint.finished {
            None
        } else if let Some(created) = checkpoint.checkpoint_created {
            Some(lag_since(created, LagSource::Record))
        } else {
            (checkpoint.updated_at).map(|updated| lag_since(updated, LagSource::Update))
        };
        ShardStatus {
            shard: checkpoint.shard.clone(),
            checkpoint: Some(checkpoint),
            described: None,
            closed: None,
            lag,
            current_stream: None,
        }
    }
}

/// Every shard of `stream_arn`, following `LastEvaluatedShardId` through
/// all `DescribeStream` pages.
async fn describe_stream(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Result<Vec<Described>, Error> {
    let tree = super::shards::describe(streams, stream_arn).await?;
    Ok(tree
        .nodes()
        .map(|node| Described {
            shard_id: node.shard_id.clone(),
            parent_shard_id: node.parent_shard_id.clone(),
            closed: node.closed,
        })
        .collect())
}

/// `now - then`, zero if `then` is in the future (another machine's clock).
fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}
