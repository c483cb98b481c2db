//! [`Projector`]: a long-running process that reads every shard of the
//! events table's stream it can lease and dispatches the records to
//! projections.
//!
//! **Invariant:** this process reads a shard only while it holds the
//! shard's lease, and only once the shard's parent is finished or gone;
//! at most [`with_max_shards`](Projector::with_max_shards) shards are read
//! at once, each with one batch in memory.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::lag::LagHandle;
use super::reader::{ReaderEnd, ReaderSettings, ShardReader, StartPosition};
use super::shards::{describe, ShardTree};
use super::{CheckpointStore, Lease, ShardInfo};
use super::{Dispatcher, Error};

/// Reads a DynamoDB stream and dispatches its records to projections, with
/// checkpoints and leases kept in a [`CheckpointStore`].
///
/// Several projectors (processes, or tasks) can run on one stream with one
/// checkpoint table: each shard is read by the one holding its lease.
/// Per shard, records are dispatched in stream order and the last sequence
/// number of a batch is checkpointed after the whole batch was dispatched
/// (at-least-once: after a crash, the batch in flight is dispatched again).
///
/// ```no_run
/// # use dynamo_es::projection::{CheckpointStore, Dispatcher, EventDecoder, Projector};
/// # async fn demo<A: cqrs_es::Aggregate + 'static>(
/// #     client: dynamo_es::aws_sdk_dynamodb::Client,
/// #     streams: aws_sdk_dynamodbstreams::Client,
/// #     query: impl cqrs_es::Query<A> + 'static,
/// # ) -> Result<(), dynamo_es::projection::Error> {
/// let stream_arn = dynamo_es::projection::stream_arn(&client, "Events").await?;
/// let checkpoints = CheckpointStore::new(client, "Checkpoints", "account-views");
/// let dispatcher = Dispatcher::new(EventDecoder::<A>::new(dynamo_es::Codec::default()))
///     .with_query(query);
/// let projector = Projector::new(streams, &stream_arn, checkpoints, dispatcher)
///     .with_owner("host-1");
/// let lag = projector.lag(); // readable while it runs
/// projector.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
pub struct Projector<A: Aggregate> {
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    checkpoints: CheckpointStore,
    dispatcher: Dispatcher<A>,
    owner: String,
    settings: ReaderSettings,
    max_shards: usize,
    discovery: Duration,
    lag: LagHandle,
}

impl<A: Aggregate> std::fmt::Debug for Projector<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("stream_arn", &self.stream_arn)
            .field("owner", &self.owner)
            .field("settings", &self.settings)
            .field("max_shards", &self.max_shards)
            .field("discovery", &self.discovery)
            .finish_non_exhaustive()
    }
}

/// The default number of records a `GetRecords` call asks for (its maximum).
pub const DEFAULT_BATCH_SIZE: i32 = 1000;

/// The default bound on shards one projector reads at once.
pub const DEFAULT_MAX_SHARDS: usize = 64;

impl<A: Aggregate + 'static> Projector<A> {
    /// A projector of `stream_arn` (see [`stream_arn`]) that dispatches
    /// through `dispatcher` and keeps its checkpoints and leases in
    /// `checkpoints`. Defaults: a random owner id, batches of 1,000
    /// records, idle backoff 100 ms to 2 s, a heartbeat every third of the
    /// store's lease duration, shards discovered every 10 s,
    /// at most 64 shards, shards without checkpoint read from the trim
    /// horizon, a failed dispatch tried 5 times.
    pub fn new(
        streams: aws_sdk_dynamodbstreams::Client,
        stream_arn: &str,
        checkpoints: CheckpointStore,
        dispatcher: Dispatcher<A>,
    ) -> Self {
        let heartbeat = checkpoints.lease_duration() / 3;
        Projector {
            streams,
            stream_arn: stream_arn.to_string(),
            checkpoints,
            dispatcher,
            owner: default_owner(),
            settings: ReaderSettings {
                batch_size: DEFAULT_BATCH_SIZE,
                idle_min: Duration::from_millis(100),
                idle_max: Duration::from_secs(2),
                heartbeat,
                start: StartPosition::TrimHorizon,
                dispatch_attempts: 5,
                start_after: None,
            },
            max_shards: DEFAULT_MAX_SHARDS,
            discovery: Duration::from_secs(10),
            lag: LagHandle::default(),
        }
    }

    /// The owner id written into the leases this projector holds (unique per
    /// process: two projectors with one id would both read a shard).
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.owner = owner.to_string();
        self
    }

    /// Records per `GetRecords` call, clamped to 1..=1000.
    pub fn with_batch_size(mut self, records: i32) -> Self {
        self.settings.batch_size = records.clamp(1, DEFAULT_BATCH_SIZE);
        self
    }

    /// How long a reader waits after a read that found nothing new: `min`
    /// at first, doubling up to `max` while the shard stays idle.
    pub fn with_idle_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.settings.idle_min = min;
        self.settings.idle_max = max.max(min);
        self
    }

    /// How often a held lease is renewed, also while a batch is being
    /// dispatched (at most half the store's lease duration: longer values
    /// are cut to that). A reader whose lease went a whole lease duration
    /// without a successful renewal abandons its dispatch and lets the
    /// shard go, as another projector may take it over by then.
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.settings.heartbeat = every;
        self
    }

    /// How often the stream is described to find new shards, finished
    /// parents and leases free to take over.
    pub fn with_discovery_interval(mut self, every: Duration) -> Self {
        self.discovery = every;
        self
    }

    /// The most shards this projector reads at once (at least 1): with one
    /// batch in flight per shard, this bounds its memory.
    pub fn with_max_shards(mut self, shards: usize) -> Self {
        self.max_shards = shards.max(1);
        self
    }

    /// Where a shard without a checkpoint starts (default the trim horizon).
    pub fn with_start(mut self, start: StartPosition) -> Self {
        self.settings.start = start;
        self
    }

    /// How many times a batch whose dispatch failed is tried before
    /// [`run`](Self::run) ends with the projection's error (at least 1).
    pub fn with_dispatch_attempts(mut self, attempts: u32) -> Self {
        self.settings.dispatch_attempts = attempts.max(1);
        self
    }

    /// The owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// A handle on the per-shard lag and counters, readable while the
    /// projector runs.
    pub fn lag(&self) -> LagHandle {
        self.lag.clone()
    }

    /// Runs until `shutdown` resolves or an error ends it.
    ///
    /// On shutdown, each reader finishes the batch it is dispatching,
    /// checkpoints it and releases its lease. A lost lease stops work on
    /// that shard only. Errors that end the run: a trimmed shard
    /// ([`Error::Trimmed`]: rebuild the projection), a dispatch that kept
    /// failing, a Streams or checkpoint table error the SDK's retries did
    /// not absorb. The other readers then stop gracefully too.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        self.settings.start_after = self.checkpoints.start_after().await?;
        let settings = Arc::new(self.settings.clone());
        let (stop, stopping) = watch::channel(false);
        let mut readers: JoinSet<(String, Result<ReaderEnd, Error>)> = JoinSet::new();
        let mut held: HashSet<String> = HashSet::new();
        let mut tree = ShardTree::default();
        let mut next_discovery = Instant::now();
        tokio::pin!(shutdown);
        let outcome = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                Some(joined) = readers.join_next(), if !readers.is_empty() => {
                    let (shard_id, end) = match joined {
                        Ok(joined) => joined,
                        Err(panicked) => break Err(Error::projection(panicked)),
                    };
                    held.remove(&shard_id);
                    match end {
                        Ok(ReaderEnd::Finished) => {
                            tracing::info!(shard = %shard_id, "shard finished; looking for its children");
                            next_discovery = Instant::now();
                        }
                        Ok(end) => tracing::info!(shard = %shard_id, ?end, "stopped reading shard"),
                        Err(err) => break Err(err),
                    }
                }
                () = tokio::time::sleep_until(next_discovery) => {
                    let spawn = |lease: Lease, readers: &mut JoinSet<_>| {
                        let reader = ShardReader {
                            streams: self.streams.clone(),
                            checkpoints: self.checkpoints.clone(),
                            dispatcher: self.dispatcher.clone(),
                            settings: settings.clone(),
                            lag: self.lag.clone(),
                            stop: stopping.clone(),
                        };
                        let shard_id = lease.shard.shard_id.clone();
                        readers.spawn(async move { (shard_id, reader.run(lease).await) });
                    };
                    if let Err(err) = self.discover(&mut tree, &mut held, |lease| spawn(lease, &mut readers)).await {
                        break Err(err);
                    }
                    next_discovery = Instant::now() + self.discovery;
                }
            }
        };
        let _ = stop.send(true);
        let mut outcome = outcome;
        while let Some(joined) = readers.join_next().await {
            let end = joined.map_err(Error::projection).and_then(|(_, end)| end);
            if let (Err(err), true) = (end, outcome.is_ok()) {
                outcome = Err(err);
            }
        }
        outcome
    }

    /// Describes the stream, then leases and starts every ready shard it can
    /// (up to the bound), oldest first.
    async fn discover(
        &self,
        tree: &mut ShardTree,
        held: &mut HashSet<String>,
        mut start: impl FnMut(Lease),
    ) -> Result<(), Error> {
        let described = describe(&self.streams, &self.stream_arn).await?;
        let new = described.new_since(tree);
        if !new.is_empty() {
            tracing::info!(stream = %self.stream_arn, shards = ?new, "discovered shards");
        }
        let checkpoints = self.checkpoints.list().await?;
        let finished: HashSet<String> = checkpoints
            .iter()
            .filter(|c| c.finished)
            .map(|c| c.shard_id.clone())
            .collect();
        for node in described.ready(&finished) {
            if held.len() >= self.max_shards {
                break;
            }
            if held.contains(&node.shard_id) {
                continue;
            }
            let info = ShardInfo {
                stream_arn: self.stream_arn.clone(),
                shard_id: node.shard_id.clone(),
                parent_shard_id: node.parent_shard_id.clone(),
            };
            let Some(lease) = self.checkpoints.acquire(&info, &self.owner).await? else {
                tracing::trace!(shard = %node.shard_id, "shard leased by another projector");
                continue;
            };
            if lease.finished {
                self.checkpoints.release(lease).await?;
                continue;
            }
            tracing::info!(shard = %node.shard_id, checkpoint = ?lease.checkpoint, owner = %self.owner, "leased shard");
            held.insert(node.shard_id.clone());
            start(lease);
        }
        *tree = described;
        Ok(())
    }
}

/// `projector-{pid}-{nanos}`: unique enough per process.
fn default_owner() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("projector-{}-{nanos:x}", std::process::id())
}

/// The ARN of `table`'s DynamoDB stream (`DescribeTable`'s
/// `LatestStreamArn`), for [`Projector::new`].
///
/// A table without a stream, or with one whose records do not carry the
/// new item, is [`crate::Error::TableStream`] (enable one with
/// [`tables::enable_stream`](crate::tables::enable_stream)); a missing table
/// is [`crate::Error::Dynamo`].
pub async fn stream_arn(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<String, Error> {
    let arn = match describe_table(client, table).await? {
        Some(description) => crate::tables::stream_arn_of(table, &description)?,
        None => None,
    };
    match arn {
        Some(arn) => Ok(arn),
        None => Err(Error::Store(crate::Error::TableStream {
            table: table.to_string(),
            expected: "a NEW_IMAGE stream".to_string(),
            found: "none".to_string(),
        })),
    }
}

/// `table`'s description (`DescribeTable`; `None` if the answer has none).
pub(super) async fn describe_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>, Error> {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|err| crate::Error::from_sdk_on("DescribeTable", table, err))?;
    Ok(described.table)
}
