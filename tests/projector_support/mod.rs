//! Shared by tests/projector.rs and tests/projector_faults.rs: a projection
//! that records every event it is given, checkpoint stores on fresh tables,
//! projectors with short backoffs and leases, and waiting for a condition.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope};
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, Error, EventDecoder, Projection, Projector,
};
use dynamo_es::tables::create_checkpoint_table;
use dynamo_es::testing::unique_name;
use dynamo_es::Codec;

use crate::common::Account;

pub mod fake;
mod runs;

#[allow(unused_imports)]
pub use runs::{
    assert_trimmed, failing, rebuild, run_to_end, run_until, start, wait_until, Running, WAIT,
};

/// A hook run before each `project` call with the number of calls so far.
pub type Hook = Arc<dyn Fn(usize) + Send + Sync>;

#[derive(Default)]
struct Seen {
    /// Every event delivered, in delivery order: (aggregate id, sequence).
    log: Vec<(String, usize)>,
    /// Per aggregate: the state built from each event once (deduplicated by
    /// sequence, as an exactly-once view is), and its last sequence.
    views: HashMap<String, (Account, usize)>,
    /// Events delivered at or below the aggregate's last sequence.
    redelivered: usize,
    /// Events applied (each once).
    applied: usize,
    /// Times an aggregate's next event skipped sequences.
    gaps: usize,
    calls: usize,
    /// Every deletion it was told of, in order: (aggregate id, its last
    /// sequence, events delivered before it).
    deleted: Vec<(String, usize, usize)>,
    /// Per deleted aggregate, the last sequence its first deletion named:
    /// an exactly-once view drops its rows once, and a deletion delivered
    /// again changes nothing.
    removed: HashMap<String, usize>,
    /// Events applied past a deletion's last sequence.
    after_deletion: usize,
}

/// A projection that records every event it is given, and every deletion
/// it is told of.
#[derive(Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<Seen>>,
    hook: Option<Hook>,
}

impl Recorder {
    /// A recorder that runs `hook` before each call.
    pub fn with_hook(hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        Recorder {
            seen: Arc::default(),
            hook: Some(Arc::new(hook)),
        }
    }

    /// Every event delivered, in order.
    pub fn log(&self) -> Vec<(String, usize)> {
        self.seen.lock().unwrap().log.clone()
    }

    /// How many events were delivered (counting redeliveries).
    pub fn delivered(&self) -> usize {
        self.seen.lock().unwrap().log.len()
    }

    /// How many distinct events were delivered.
    pub fn distinct(&self) -> usize {
        self.seen.lock().unwrap().applied
    }

    /// Times an aggregate's next event was not the one after its last (a
    /// projection that started from another's checkpoint has one per
    /// aggregate).
    pub fn gaps(&self) -> usize {
        self.seen.lock().unwrap().gaps
    }

    /// Events delivered again (at or below the aggregate's last sequence).
    pub fn redelivered(&self) -> usize {
        self.seen.lock().unwrap().redelivered
    }

    /// The deduplicated view of `id`.
    pub fn view(&self, id: &str) -> Option<Account> {
        let seen = self.seen.lock().unwrap();
        seen.views.get(id).map(|(view, _)| view.clone())
    }

    /// Every deletion it was told of, in order: (aggregate id, its last
    /// sequence, how many events had been delivered before it).
    pub fn deletions(&self) -> Vec<(String, usize, usize)> {
        self.seen.lock().unwrap().deleted.clone()
    }

    /// The rows of `id` in an exactly-once view that drops a deleted
    /// aggregate's rows: `None` once it was deleted (or never seen).
    pub fn rows(&self, id: &str) -> Option<Account> {
        let seen = self.seen.lock().unwrap();
        if seen.removed.contains_key(id) {
            return None;
        }
        seen.views.get(id).map(|(view, _)| view.clone())
    }

    /// The aggregates whose rows the view dropped, with the last sequence
    /// each deletion named (once per aggregate, whatever the redeliveries).
    pub fn removed(&self) -> HashMap<String, usize> {
        self.seen.lock().unwrap().removed.clone()
    }

    /// Events applied past their aggregate's deletion.
    pub fn after_deletion(&self) -> usize {
        self.seen.lock().unwrap().after_deletion
    }

    /// The sequences delivered for `id`, in delivery order.
    pub fn sequences(&self, id: &str) -> Vec<usize> {
        let seen = self.seen.lock().unwrap();
        seen.log
            .iter()
            .filter(|(a, _)| a == id)
            .map(|(_, s)| *s)
            .collect()
    }
}

#[async_trait]
impl Projection<Account> for Recorder {
    async fn project(&self, id: &str, events: &[EventEnvelope<Account>]) -> Result<(), Error> {
        let calls = {
            let mut seen = self.seen.lock().unwrap();
            seen.calls += 1;
            seen.calls
        };
        if let Some(hook) = &self.hook {
            hook(calls);
        }
        let mut seen = self.seen.lock().unwrap();
        for event in events {
            assert_eq!(event.aggregate_id, id, "one aggregate per call");
            seen.log.push((id.to_string(), event.sequence));
            let (view, last) = seen.views.entry(id.to_string()).or_default();
            if event.sequence <= *last {
                seen.redelivered += 1;
                continue;
            }
            let gap = event.sequence > *last + 1;
            view.apply(event.payload.clone());
            *last = event.sequence;
            let past = seen
                .removed
                .get(id)
                .is_some_and(|deleted| event.sequence > *deleted);
            seen.after_deletion += usize::from(past);
            seen.applied += 1;
            seen.gaps += usize::from(gap);
        }
        Ok(())
    }

    async fn deleted(&self, id: &str, last_sequence: usize) -> Result<(), Error> {
        let mut seen = self.seen.lock().unwrap();
        let before = seen.log.len();
        seen.deleted.push((id.to_string(), last_sequence, before));
        seen.removed.entry(id.to_string()).or_insert(last_sequence);
        Ok(())
    }
}

/// A checkpoint store for projection `name` on a fresh checkpoint table,
/// with leases of `lease`.
pub async fn checkpoints(
    client: &dynamo_es::aws_sdk_dynamodb::Client,
    lease: Duration,
) -> CheckpointStore {
    let table = unique_name("checkpoints");
    create_checkpoint_table(client, &table).await.unwrap();
    CheckpointStore::new(client.clone(), &table, "accounts").with_lease_duration(lease)
}

/// A dispatcher of `Account` events (default codec) to `recorder`.
pub fn recording(recorder: &Recorder) -> Dispatcher<Account> {
    Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
        .with_projection(recorder.clone())
}

/// A projector of `arn` dispatching through `dispatcher`, as `owner`, with
/// short backoffs, a heartbeat a quarter of the lease, and discovery every
/// 50 ms.
pub fn projector(
    streams: aws_sdk_dynamodbstreams::Client,
    arn: &str,
    store: CheckpointStore,
    dispatcher: Dispatcher<Account>,
    owner: &str,
) -> Projector<Account> {
    let heartbeat = store.lease_duration() / 4;
    Projector::new(streams, arn, store, dispatcher)
        .with_owner(owner)
        .with_idle_backoff(Duration::from_millis(5), Duration::from_millis(40))
        .with_heartbeat(heartbeat)
        .with_discovery_interval(Duration::from_millis(50))
}
