//! What a running [`Projector`](super::Projector) reports while it runs:
//! per-shard progress and lag, and where its time goes.
//!
//! **Invariant:** a shard's checkpoint and lag are updated only after its
//! batch was dispatched and checkpointed, so they never claim progress the
//! checkpoint table does not hold.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Progress of one shard this projector read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardLag {
    /// The shard.
    pub shard_id: String,
    /// The last sequence number checkpointed by this projector.
    pub checkpoint: Option<String>,
    /// Now minus the creation time of the last record checkpointed, as of
    /// that checkpoint; zero once a read found no newer record.
    pub lag: Option<Duration>,
    /// Stream records read and checkpointed.
    pub records: u64,
    /// Events dispatched (records of other aggregate types are not events).
    pub events: u64,
    /// Whether this projector still holds the shard's lease.
    pub owned: bool,
    /// Whether the shard was closed and every record of it processed.
    pub finished: bool,
}

/// Where a projector's time went, summed over every shard since it started.
///
/// `get_records` is time waiting for the Streams service; `dispatch` is
/// decoding and the projections' own work; `checkpoint` is the conditional
/// checkpoint writes. Their sum against the wall time shows what limits
/// throughput.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectorStats {
    /// Batches dispatched and checkpointed.
    pub batches: u64,
    /// Stream records checkpointed.
    pub records: u64,
    /// Events dispatched.
    pub events: u64,
    /// `GetRecords` calls, including those that returned nothing.
    pub get_records_calls: u64,
    /// Time in `GetRecords` (and `GetShardIterator`).
    pub get_records: Duration,
    /// Time converting, decoding and dispatching records.
    pub dispatch: Duration,
    /// Time writing checkpoints.
    pub checkpoint: Duration,
}

#[derive(Debug, Default)]
struct State {
    shards: BTreeMap<String, ShardLag>,
    stats: ProjectorStats,
}

/// A handle on a projector's per-shard lag and counters, readable while it
/// runs (from [`Projector::lag`](super::Projector::lag)); cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct LagHandle {
    state: Arc<Mutex<State>>,
}

impl LagHandle {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every shard this projector has read, by shard id.
    pub fn shards(&self) -> Vec<ShardLag> {
        self.state().shards.values().cloned().collect()
    }

    /// The largest lag of the shards it still owns (`None` before any
    /// batch).
    pub fn max_lag(&self) -> Option<Duration> {
        let state = self.state();
        let owned = state.shards.values().filter(|s| s.owned);
        owned.filter_map(|s| s.lag).max()
    }

    /// The time and work counters.
    pub fn stats(&self) -> ProjectorStats {
        self.state().stats
    }

    pub(crate) fn owned(&self, shard_id: &str, checkpoint: Option<&str>) {
        let mut state = self.state();
        let shard = state.shards.entry(shard_id.to_string()).or_default();
        shard.shard_id = shard_id.to_string();
        shard.owned = true;
        shard.checkpoint = checkpoint.map(str::to_string);
    }

    pub(crate) fn released(&self, shard_id: &str, finished: bool) {
        if let Some(shard) = self.state().shards.get_mut(shard_id) {
            shard.owned = false;
            shard.finished |= finished;
        }
    }

    pub(crate) fn polled(&self, took: Duration, caught_up: bool, shard_id: &str) {
        let mut state = self.state();
        state.stats.get_records_calls += 1;
        state.stats.get_records += took;
        if caught_up {
            if let Some(shard) = state.shards.get_mut(shard_id) {
                shard.lag = Some(Duration::ZERO);
            }
        }
    }

    pub(crate) fn checkpointed(&self, batch: &Batch) {
        let mut state = self.state();
        state.stats.batches += 1;
        state.stats.records += batch.records;
        state.stats.events += batch.events;
        state.stats.dispatch += batch.dispatch;
        state.stats.checkpoint += batch.checkpoint;
        let shard = state.shards.entry(batch.shard_id.clone()).or_default();
        shard.checkpoint = Some(batch.last_sequence.clone());
        shard.lag = batch.newest_created.map(lag_since);
        shard.records += batch.records;
        shard.events += batch.events;
    }
}

/// Now minus `created` (zero if `created` is in the future: clocks differ).
pub(crate) fn lag_since(created: SystemTime) -> Duration {
    SystemTime::now()
        .duration_since(created)
        .unwrap_or(Duration::ZERO)
}

/// One batch, dispatched and checkpointed.
#[derive(Debug)]
pub(crate) struct Batch {
    pub shard_id: String,
    pub last_sequence: String,
    pub newest_created: Option<SystemTime>,
    pub records: u64,
    pub events: u64,
    pub dispatch: Duration,
    pub checkpoint: Duration,
}
