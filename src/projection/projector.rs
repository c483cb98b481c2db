//! [`Projector`]: a long-running process that reads every shard of the
//! events table's stream it can lease and dispatches the records to
//! projections.
//!
//! **Invariant:** this process reads a shard only while it holds the
//! shard's lease, and only once the shard's parent is finished (or the
//! shard is a root of the projection's origin, see [`super::shards`]); a
//! gap (records trimmed before the projection read them) ends the run with
//! [`Error::Trimmed`] before anything after it is dispatched; at most
//! [`with_max_shards`](Projector::with_max_shards) shards are read at
//! once, each with one batch in memory, and when more are waiting, the
//! shard held longest (at least the
//! [rotation interval](Projector::with_rotation)) is checkpointed and
//! released to give another its turn.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::lag::LagHandle;
use super::reader::{Cutoff, ReaderEnd, ReaderSettings, ShardReader, StartPosition};
use super::shards::{describe, Opening, ShardTree};
use super::{CheckpointStore, Lease, ShardCheckpoint, ShardInfo};
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
    rotation: Duration,
    lag: LagHandle,
}

/// A shard this projector reads: its reader's stop switch, since when it
/// holds it, and whether it was asked to give its turn up.
struct Held {
    stop: watch::Sender<bool>,
    since: Instant,
    yielding: bool,
}

/// What a run keeps between discoveries.
struct RunState {
    held: HashMap<String, Held>,
    /// When each shard last gave its turn up, for the order of turns.
    turns: HashMap<String, Instant>,
    /// The roots of the projection's origin on this stream.
    roots: HashSet<String>,
    tree: ShardTree,
}

impl RunState {
    /// A run from `roots`: no shard held or described yet, no turn given up.
    fn new(roots: HashSet<String>) -> Self {
        RunState {
            held: HashMap::new(),
            turns: HashMap::new(),
            roots,
            tree: ShardTree::default(),
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for Projector<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("stream_arn", &self.stream_arn)
            .field("owner", &self.owner)
            .field("settings", &self.settings)
            .field("max_shards", &self.max_shards)
            .field("discovery", &self.discovery)
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

/// The default number of records a `GetRecords` call asks for (its maximum).
pub const DEFAULT_BATCH_SIZE: i32 = 1000;

/// The default bound on shards one projector reads at once.
pub const DEFAULT_MAX_SHARDS: usize = 64;

/// The default [rotation interval](Projector::with_rotation).
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(30);

impl<A: Aggregate + 'static> Projector<A> {
    /// A projector of `stream_arn` (see [`stream_arn`]) that dispatches
    /// through `dispatcher` and keeps its checkpoints and leases in
    /// `checkpoints`. Defaults: a random owner id, batches of 1,000
    /// records, idle backoff 100 ms to 2 s, a heartbeat every third of the
    /// store's lease duration, shards discovered every 10 s,
    /// at most 64 shards taking turns every 30 s when more are open, a new
    /// projection started at the trim horizon, a failed dispatch tried 5
    /// times.
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
                origin: Cutoff::epoch(),
            },
            max_shards: DEFAULT_MAX_SHARDS,
            discovery: Duration::from_secs(10),
            rotation: DEFAULT_ROTATION,
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
    /// batch in flight per shard, this bounds its memory. When more shards
    /// are ready and free, they take turns (see
    /// [`with_rotation`](Self::with_rotation)).
    pub fn with_max_shards(mut self, shards: usize) -> Self {
        self.max_shards = shards.max(1);
        self
    }

    /// How long a shard is read, at least, before it gives its turn to a
    /// shard waiting because [`with_max_shards`](Self::with_max_shards)
    /// shards are held (default [`DEFAULT_ROTATION`]). At each discovery,
    /// as many of the shards held longest as shards are waiting finish
    /// their batch, checkpoint it and release their lease; shards that
    /// never had a turn come first, then those whose turn is oldest. So
    /// each open shard gets a turn at least once every few rotation
    /// intervals (about one more than the open shards divided by the
    /// bound): keep that well under the stream's 24-hour retention, or
    /// raise the bound.
    pub fn with_rotation(mut self, every: Duration) -> Self {
        self.rotation = every;
        self
    }

    /// Where a new projection starts (default the trim horizon); see
    /// [`StartPosition`]. It applies to the projection's first start, and
    /// is kept for it in the checkpoint table.
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
    /// that shard only. Errors that end the run: a gap
    /// ([`Error::Trimmed`]: records trimmed before the projection read
    /// them; rebuild the projection), a rebuild that has not finished
    /// ([`Error::RebuildUnfinished`], before anything is read), a dispatch
    /// that kept failing, a Streams or checkpoint table error the SDK's
    /// retries did not absorb. The other readers then stop gracefully too.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut state = RunState::new(self.start().await?);
        let settings = Arc::new(self.settings.clone());
        let mut readers: JoinSet<(String, Result<ReaderEnd, Error>)> = JoinSet::new();
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
                    let yielded = state.held.remove(&shard_id).is_some_and(|h| h.yielding);
                    match end {
                        Ok(ReaderEnd::Finished) => {
                            tracing::info!(shard = %shard_id, "shard finished; looking for its children");
                            next_discovery = Instant::now();
                        }
                        Ok(ReaderEnd::Stopped) if yielded => {
                            tracing::info!(shard = %shard_id, "shard gave its turn to a waiting shard");
                            state.turns.insert(shard_id, Instant::now());
                            next_discovery = Instant::now();
                        }
                        Ok(end) => tracing::info!(shard = %shard_id, ?end, "stopped reading shard"),
                        Err(err) => break Err(err),
                    }
                }
                () = tokio::time::sleep_until(next_discovery) => {
                    let spawn = |lease: Lease, opening: Opening, readers: &mut JoinSet<_>| {
                        let (stop, stopping) = watch::channel(false);
                        let reader = ShardReader {
                            streams: self.streams.clone(),
                            checkpoints: self.checkpoints.clone(),
                            dispatcher: self.dispatcher.clone(),
                            settings: settings.clone(),
                            lag: self.lag.clone(),
                            stop: stopping,
                            opening,
                            skipping: false,
                            guard: None,
                            first_open: false,
                        };
                        let shard_id = lease.shard.shard_id.clone();
                        readers.spawn(async move { (shard_id, reader.run(lease).await) });
                        stop
                    };
                    if let Err(err) = self.discover(&mut state, |lease, opening| spawn(lease, opening, &mut readers)).await {
                        break Err(err);
                    }
                    next_discovery = Instant::now() + self.discovery;
                }
            }
        };
        for held in state.held.values() {
            let _ = held.stop.send(true);
        }
        let mut outcome = outcome;
        while let Some(joined) = readers.join_next().await {
            let end = joined.map_err(Error::projection).and_then(|(_, end)| end);
            if let (Err(err), true) = (end, outcome.is_ok()) {
                outcome = Err(err);
            }
        }
        outcome
    }

    /// Before the first discovery: refuses an unfinished rebuild, records
    /// or reads the projection's origin, and sets what shards opened
    /// without a checkpoint skip. Returns the origin's roots on this stream.
    async fn start(&mut self) -> Result<HashSet<String>, Error> {
        let rebuild = self.checkpoints.rebuild_marker().await?;
        if let Some(marker) = rebuild.as_ref().filter(|m| m.finished_at.is_none()) {
            tracing::warn!(
                projection = self.checkpoints.projection(),
                "the projection's last rebuild has not finished; not starting"
            );
            return Err(Error::RebuildUnfinished {
                projection: self.checkpoints.projection().to_string(),
                table: self.checkpoints.table().to_string(),
                started_at_ms: super::fields::millis(marker.started_at),
            });
        }
        let items = self.checkpoints.list().await?;
        let tree = describe(&self.streams, &self.stream_arn).await?;
        let origin = self
            .checkpoints
            .origin_for_run(
                &self.stream_arn,
                &tree,
                &items,
                self.settings.start,
                rebuild.as_ref(),
            )
            .await?;
        // A finished rebuild covered what came before its marker; without
        // one, a projection started with `Latest` skips what came before it.
        self.settings.start_after = match (&rebuild, origin.position) {
            (Some(marker), _) => Some(Cutoff {
                at: marker.start_after,
                closed: marker.closed_shards.iter().cloned().collect(),
            }),
            (None, StartPosition::Latest) => Some(Cutoff {
                at: origin.start_after,
                closed: origin.started.closed.clone(),
            }),
            (None, _) => None,
        };
        self.settings.origin = origin.started.clone();
        Ok(origin.roots_of(&self.stream_arn))
    }

    /// Reads the checkpoint items and describes the stream (in this order:
    /// an item is only created for a shard described before, so each item
    /// read is of a shard described earlier), stops at a gap, then leases
    /// and starts every ready shard it can (up to the bound; shards that
    /// never had a turn first, then oldest turn, then oldest shard), and
    /// asks shards held long enough to give their turn to those waiting.
    async fn discover(
        &self,
        state: &mut RunState,
        mut start: impl FnMut(Lease, Opening) -> watch::Sender<bool>,
    ) -> Result<(), Error> {
        let items = self.checkpoints.list().await?;
        let described = describe(&self.streams, &self.stream_arn).await?;
        let new = described.new_since(&state.tree);
        if !new.is_empty() {
            tracing::info!(stream = %self.stream_arn, shards = ?new, "discovered shards");
        }
        let ours: Vec<ShardCheckpoint> = items
            .into_iter()
            .filter(|c| c.shard.stream_arn == self.stream_arn)
            .collect();
        let mut ready = described
            .plan(&ours, &state.roots)
            .map_err(|gap| gap.into_error(&self.stream_arn))?;
        ready.retain(|(node, _)| !state.held.contains_key(&node.shard_id));
        ready.sort_by_key(|(node, _)| (state.turns.get(&node.shard_id).copied(), node.starting));
        let owners: HashMap<&str, Option<&str>> = ours
            .iter()
            .map(|c| (c.shard.shard_id.as_str(), c.owner.as_deref()))
            .collect();
        let mut waiting = 0;
        for (node, opening) in ready {
            let free = owners
                .get(node.shard_id.as_str())
                .is_none_or(|owner| owner.is_none_or(|owner| owner == self.owner));
            if state.held.len() >= self.max_shards {
                waiting += usize::from(free);
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
            let stop = start(lease, opening);
            let held = Held {
                stop,
                since: Instant::now(),
                yielding: false,
            };
            state.held.insert(node.shard_id.clone(), held);
        }
        self.rotate(state, waiting);
        state
            .turns
            .retain(|shard_id, _| described.contains(shard_id));
        state.tree = described;
        Ok(())
    }

    /// Asks up to `waiting` shards held at least the rotation interval,
    /// longest first, to give their turn up.
    fn rotate(&self, state: &mut RunState, waiting: usize) {
        let asked = state.held.values().filter(|h| h.yielding).count();
        let mut due: Vec<(&String, &mut Held)> = state
            .held
            .iter_mut()
            .filter(|(_, h)| !h.yielding && h.since.elapsed() >= self.rotation)
            .collect();
        due.sort_by_key(|(_, h)| h.since);
        for (shard_id, held) in due.into_iter().take(waiting.saturating_sub(asked)) {
            tracing::debug!(shard = %shard_id, "asking the shard to give its turn up");
            held.yielding = true;
            let _ = held.stop.send(true);
        }
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
