//! What the consumers dispatched, checked as it happens: the [`Observer`]
//! projection sees every event of every consumer of a history (projectors,
//! rebuilds, Lambda) and reports a gap the moment an aggregate's next new
//! event is not the one after the last; it also fires the history's
//! triggers (a crash, an iterator expiry, a failed dispatch) on chosen
//! events. [`History`] is the exactly-once view kept beside it.
//!
//! **Invariant:** an aggregate's first dispatch of an event above the
//! highest dispatched so far must be the next one (or, for a projection
//! started at `LATEST`, any event up to the first committed after its
//! start); anything else is a violation, whatever error came later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cqrs_es::{EventEnvelope, View};
use dynamo_es::projection::{Error, Projection};
use dynamo_es::testing::streams::FakeStreams;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::common::{Account, AccountEvent};

/// An event: aggregate id and sequence.
pub type EventId = (String, usize);

#[derive(Default)]
struct State {
    /// The highest sequence dispatched, per aggregate.
    max: HashMap<String, usize>,
    /// Per aggregate: events committed before a `LATEST` projection first
    /// started (it may begin anywhere up to the one after them).
    floor: HashMap<String, usize>,
    violations: Vec<String>,
    /// The aggregates whose deletion was dispatched, and how often.
    deleted: HashMap<String, usize>,
    /// What the history is doing, for messages.
    label: String,
    crash: Option<(EventId, oneshot::Sender<()>)>,
    expire: Option<EventId>,
    fail: Option<EventId>,
}

/// The observing projection (clones share the record).
#[derive(Clone)]
pub struct Observer {
    state: Arc<Mutex<State>>,
    fake: FakeStreams,
}

impl Observer {
    pub fn new(fake: &FakeStreams) -> Self {
        Observer {
            state: Arc::default(),
            fake: fake.clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn label(&self, label: String) {
        self.state().label = label;
    }

    pub fn violate(&self, violation: String) {
        let mut state = self.state();
        let label = state.label.clone();
        state.violations.push(format!("{label}: {violation}"));
    }

    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// A `LATEST` projection starts now, with `committed` events per aggregate.
    pub fn set_floor(&self, committed: HashMap<String, usize>) {
        self.state().floor = committed;
    }

    pub fn floor(&self, id: &str) -> usize {
        self.state().floor.get(id).copied().unwrap_or(0)
    }

    /// How many times `id`'s deletion was dispatched.
    pub fn deletions(&self, id: &str) -> usize {
        self.state().deleted.get(id).copied().unwrap_or(0)
    }

    pub fn max(&self, id: &str) -> usize {
        self.state().max.get(id).copied().unwrap_or(0)
    }

    /// Signals `crashed` and hangs the dispatch of `event` (until the
    /// process is killed).
    pub fn crash_at(&self, event: EventId, crashed: oneshot::Sender<()>) {
        self.state().crash = Some((event, crashed));
    }

    /// Expires every shard iterator when `event` is dispatched.
    pub fn expire_at(&self, event: Option<EventId>) {
        self.state().expire = event;
    }

    /// Fails the first dispatch of `event`.
    pub fn fail_at(&self, event: Option<EventId>) {
        self.state().fail = event;
    }

    /// Clears the triggers left over from a run.
    pub fn disarm(&self) {
        let mut state = self.state();
        state.crash = None;
        state.expire = None;
        state.fail = None;
    }
}

#[async_trait]
impl Projection<Account> for Observer {
    async fn project(&self, id: &str, events: &[EventEnvelope<Account>]) -> Result<(), Error> {
        let hang = {
            let mut state = self.state();
            let hits = |target: &Option<EventId>| {
                target
                    .as_ref()
                    .is_some_and(|(a, s)| a == id && events.iter().any(|e| e.sequence == *s))
            };
            if hits(&state.fail) {
                state.fail = None;
                return Err(Error::projection("simulated projection failure"));
            }
            if hits(&state.expire) {
                state.expire = None;
                self.fake.expire_iterators();
            }
            // Killed as this call begins: none of its events is applied.
            let crash = matches!(&state.crash,
                Some(((a, s), _)) if a == id && events.iter().any(|e| e.sequence == *s));
            if crash {
                if let Some((_, crashed)) = state.crash.take() {
                    let _ = crashed.send(());
                }
            }
            for event in events.iter().filter(|_| !crash) {
                let max = state.max.get(id).copied().unwrap_or(0);
                if event.sequence > max {
                    let floor = state.floor.get(id).copied().unwrap_or(0);
                    let allowed = if max == 0 { floor + 1 } else { max + 1 };
                    let ok = event.sequence == max + 1 || (max == 0 && event.sequence <= allowed);
                    if !ok {
                        let label = state.label.clone();
                        state.violations.push(format!(
                            "{label}: GAP: {id} event {} dispatched after {max}; events {}..={} \
                             were never dispatched and no error was reported",
                            event.sequence,
                            max + 1,
                            event.sequence - 1
                        ));
                    }
                    state.max.insert(id.to_string(), event.sequence);
                }
            }
            crash
        };
        if hang {
            // Killed mid-batch: the rest of the batch and the checkpoint never happen.
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn deleted(&self, id: &str, _last_sequence: usize) -> Result<(), Error> {
        *self.state().deleted.entry(id.to_string()).or_default() += 1;
        Ok(())
    }
}

/// An exactly-once view: every sequence applied, in order, and the total.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub sequences: Vec<usize>,
    pub total: i64,
}

impl View<Account> for History {
    fn update(&mut self, event: &EventEnvelope<Account>) {
        self.sequences.push(event.sequence);
        if let AccountEvent::Deposited { amount } = event.payload {
            self.total += amount;
        }
    }
}

/// A projection that fails once it has seen more than `after` events (a
/// rebuild failing halfway).
pub struct FailAfter {
    pub after: usize,
    pub seen: Mutex<usize>,
}

#[async_trait]
impl Projection<Account> for FailAfter {
    async fn project(&self, _: &str, events: &[EventEnvelope<Account>]) -> Result<(), Error> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen += events.len();
        if *seen > self.after {
            return Err(Error::projection("simulated rebuild failure"));
        }
        Ok(())
    }
}
