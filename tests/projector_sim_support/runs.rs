//! Running the steps of a history against the world: projectors until they
//! caught up, crashes, rebuilds, retention, and the final drain with its
//! checks.
//!
//! **Invariant:** every step runs to a deterministic condition: a run ends
//! when every open shard was read to its end and every closed shard was
//! finished *after the step began* (the fake counts the reads at a shard's
//! end), or when a projector stopped with an error, or when the chosen
//! event of a crash is dispatched; the time limit is only a safety net, and
//! hitting it is a violation (the projector neither caught up nor said why).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cqrs_es::persist::ViewRepository;
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, Error, EventDecoder, Projector, Rebuild, StartPosition,
    Transactional, ViewProjection,
};
use dynamo_es::testing::fixtures::Rng;
use dynamo_es::{Codec, DynamoViewRepository};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::counter::Counter;
use super::observer::{EventId, FailAfter, History, Observer};
use super::schedule::{Consumer, Faults, Schedule, Step};
use super::world::World;
use crate::common::Account;

/// The safety net of one run.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// How a run ended.
#[derive(Debug)]
pub enum Ended {
    /// Every projector caught up and was stopped gracefully.
    CaughtUp,
    /// A projector stopped with an error.
    Failed(Error),
    /// The process was killed mid-batch.
    Killed,
}

pub struct Sim {
    pub world: World,
    pub observer: Observer,
    schedule: Schedule,
    /// The owner id generation (a new one needs a takeover after a crash).
    owner: u64,
    /// Runs so far (salts each run's faults).
    runs: u64,
    started: bool,
    /// How many commits (events and tombstones) came before the first
    /// start: a `LATEST` projection is not told of a deletion among them.
    started_after: usize,
    /// A rebuild failed, and none finished since.
    rebuild_failed: bool,
    #[cfg(feature = "lambda")]
    lambda: super::lambda::Mapping,
}

struct Running {
    task: JoinHandle<Result<(), Error>>,
    stop: oneshot::Sender<()>,
}

impl Sim {
    pub async fn new(schedule: &Schedule) -> Self {
        let world = World::new(schedule).await;
        let observer = Observer::new(&world.fake);
        Sim {
            world,
            observer,
            schedule: schedule.clone(),
            owner: 0,
            runs: 0,
            started: false,
            started_after: 0,
            rebuild_failed: false,
            #[cfg(feature = "lambda")]
            lambda: super::lambda::Mapping::default(),
        }
    }

    fn views(&self) -> DynamoViewRepository<History, Account> {
        self.world
            .db
            .view_repository::<History, Account>()
            .with_codec(Codec::json())
    }

    /// The dispatcher every consumer of the history uses: the observer,
    /// then the exactly-once view.
    pub fn dispatcher(&self) -> Dispatcher<Account> {
        Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
            .with_projection(self.observer.clone())
            .with_projection(ViewProjection::new(self.views()))
            .with_transactional(Transactional::new(self.counter(), &self.plain_store()))
    }

    /// The transactional counters, beside the views.
    fn counter(&self) -> Counter {
        Counter {
            client: self.world.db.client.clone(),
            table: self.world.db.views.clone(),
        }
    }

    fn plain_store(&self) -> CheckpointStore {
        self.world.store(&Faults::default(), 0)
    }

    fn projector(&mut self, faults: &Faults, owner: &str) -> Projector<Account> {
        self.runs += 1;
        let salt = self.runs.wrapping_mul(0x1000_0001);
        let start = if self.schedule.latest {
            StartPosition::Latest
        } else {
            StartPosition::TrimHorizon
        };
        Projector::new(
            self.world.streams(faults, salt),
            &self.world.fake.stream_arn(),
            self.world.store(faults, salt),
            self.dispatcher(),
        )
        .with_owner(owner)
        .with_batch_size(self.world.batch_size)
        .with_idle_backoff(Duration::from_millis(2), Duration::from_millis(10))
        .with_heartbeat(super::world::LEASE / 4)
        .with_discovery_interval(Duration::from_millis(10))
        .with_start(start)
    }

    fn owner_id(&self) -> String {
        format!("owner-{}", self.owner)
    }

    /// Events every consumer must dispatch from now on: the projected
    /// events not dispatched yet (after a `LATEST` start's floor).
    fn pending(&self) -> Vec<EventId> {
        let mut pending = Vec::new();
        for id in &self.world.aggregates {
            let from = self.observer.max(id).max(self.observer.floor(id)) + 1;
            for sequence in from..=self.world.committed(id) {
                pending.push((id.clone(), sequence));
            }
        }
        pending
    }

    fn pick_pending(&self, pick: Option<u64>) -> Option<EventId> {
        let pending = self.pending();
        let pick = pick?;
        if pending.is_empty() {
            return None;
        }
        let at = usize::try_from(Rng::new(pick).below(pending.len() as u64)).ok()?;
        pending.get(at).cloned()
    }

    pub async fn step(&mut self, step: &Step) {
        match step {
            Step::Commit { events, pick } => self.world.commit(*events, *pick).await,
            Step::Split { pick } => self.world.split(*pick, 2),
            Step::Rollover { pick } => self.world.split(*pick, 1),
            Step::Trim { pick } => self.world.trim(*pick),
            Step::Remove => self.world.remove(),
            Step::Run {
                faults,
                second,
                new_owner,
            } => {
                if self.schedule.consumer == Consumer::Lambda {
                    self.lambda_run(faults).await;
                    return;
                }
                self.owner += u64::from(*new_owner);
                self.first_start();
                let owners = if *second {
                    vec![self.owner_id(), format!("{}-second", self.owner_id())]
                } else {
                    vec![self.owner_id()]
                };
                self.observer.expire_at(self.pick_pending(faults.expire_at));
                self.observer.fail_at(self.pick_pending(faults.fail_at));
                let clean = faults.throttle + faults.lose == 0;
                let ended = self.run(faults, &owners, None).await;
                self.observer.disarm();
                self.ended(ended, clean).await;
            }
            Step::Crash { pick } => {
                self.first_start();
                let target = self.pick_pending(Some(*pick));
                let owners = [self.owner_id()];
                let ended = self.run(&Faults::default(), &owners, target).await;
                self.observer.disarm();
                self.ended(ended, true).await;
            }
            Step::FailedRebuild { after } => {
                let after = usize::try_from(*after).unwrap_or(0);
                if self.rebuild(Some(after)).await.is_err() {
                    self.rebuild_failed = true;
                }
            }
            Step::Rebuild => {
                if let Err(err) = self.rebuild(None).await {
                    self.observer.violate(format!("the rebuild failed: {err}"));
                }
            }
            Step::Delete { pick } => self.world.delete(*pick).await,
        }
    }

    /// A `LATEST` projection's first start: what was committed before is
    /// not its to dispatch.
    fn first_start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        self.started_after = self.world.commits.len();
        if self.schedule.latest {
            let floor = self
                .world
                .aggregates
                .iter()
                .map(|id| (id.clone(), self.world.committed(id)))
                .collect();
            self.observer.set_floor(floor);
        }
    }

    /// Checks a run's end: caught up means every pending event was
    /// dispatched; an error is allowed (the projector said it stopped) but
    /// a fault-free run may only stop with `Trimmed`, and only after
    /// retention removed something.
    async fn ended(&mut self, ended: Ended, clean: bool) {
        match ended {
            Ended::CaughtUp => {
                self.check_complete("caught up");
            }
            Ended::Killed => {}
            Ended::Failed(err) => {
                let trimmed = matches!(err, Error::Trimmed { .. });
                let unfinished = rebuild_unfinished(&err);
                if trimmed && !self.world.retention_acted() {
                    self.observer
                        .violate(format!("Trimmed though retention never acted: {err}"));
                } else if unfinished && !self.rebuild_failed {
                    self.observer
                        .violate(format!("RebuildUnfinished though no rebuild failed: {err}"));
                } else if clean && !trimmed && !unfinished {
                    self.observer
                        .violate(format!("a fault-free run stopped with an error: {err}"));
                }
            }
        }
    }

    /// Whether the projection must be told of `id`'s deletion (every
    /// deletion but one before a `LATEST` projection's first start).
    fn deletion_due(&self, id: &str) -> bool {
        self.world
            .deleted
            .get(id)
            .is_some_and(|(_, at)| !self.schedule.latest || *at >= self.started_after)
    }

    /// Every committed projected event was dispatched, and every deletion
    /// (a deleted aggregate's events may be gone from the table before a
    /// rebuild read it: its deletion accounts for them).
    fn check_complete(&self, how: &str) {
        for id in &self.world.aggregates {
            if self.world.deleted.contains_key(id) {
                if self.deletion_due(id) && self.observer.deletions(id) == 0 {
                    self.observer.violate(format!(
                        "MISSED: the consumer {how} without dispatching the deletion of {id}"
                    ));
                }
                continue;
            }
            let committed = self.world.committed(id);
            let max = self.observer.max(id);
            if committed > self.observer.floor(id) && max < committed {
                self.observer.violate(format!(
                    "MISSED: the consumer {how} without dispatching {id} events {}..={committed} \
                     ({}) and reported no error",
                    max + 1,
                    self.world.placement(id, max + 1..=committed),
                ));
            }
        }
    }

    /// Runs projectors as `owners` until they caught up (or one stopped, or
    /// `crash` was dispatched: then the process is killed).
    async fn run(&mut self, faults: &Faults, owners: &[String], crash: Option<EventId>) -> Ended {
        let (crashed_tx, mut crashed) = oneshot::channel();
        let crashing = crash.is_some();
        if let Some(event) = crash {
            self.observer.crash_at(event, crashed_tx);
        }
        let since: HashMap<String, usize> = self
            .world
            .shards
            .iter()
            .map(|s| (s.id.clone(), self.world.fake.caught_up_polls(&s.id)))
            .collect();
        let mut running = Vec::new();
        for owner in owners {
            let projector = self.projector(faults, owner);
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(projector.run(async move {
                let _ = stopped.await;
            }));
            running.push(Running { task, stop });
        }
        let started = Instant::now();
        let store = self.plain_store();
        loop {
            if crashing && crashed.try_recv().is_ok() {
                for run in &running {
                    run.task.abort();
                }
                for run in running {
                    let _ = run.task.await;
                }
                return Ended::Killed;
            }
            if let Some(at) = running.iter().position(|r| r.task.is_finished()) {
                let done = running.swap_remove(at);
                let result = done.task.await.expect("the projector task");
                let others = stop_all(running).await;
                return match result.and(others) {
                    Ok(()) => Ended::Failed(Error::projection("a projector returned Ok unasked")),
                    Err(err) => Ended::Failed(err),
                };
            }
            if self.caught_up(&store, &since).await {
                let stopped = stop_all(running).await;
                return match stopped {
                    Ok(()) => Ended::CaughtUp,
                    // Caught up, then a fault broke the graceful stop.
                    Err(err) if faults.throttle + faults.lose > 0 => {
                        let _ = err;
                        Ended::CaughtUp
                    }
                    Err(err) => Ended::Failed(err),
                };
            }
            if started.elapsed() > RUN_LIMIT {
                let stopped = stop_all(running).await;
                self.observer.violate(format!(
                    "STUCK: the projectors neither caught up nor stopped with an error within \
                     {RUN_LIMIT:?} (then: {stopped:?}); pending {:?}",
                    self.pending()
                ));
                return Ended::Killed;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every described open shard was read to its end since `since`, and
    /// every described closed shard is finished.
    async fn caught_up(&self, store: &CheckpointStore, since: &HashMap<String, usize>) -> bool {
        let open_read = self.world.shards.iter().filter(|s| s.open).all(|s| {
            let before = since.get(&s.id).copied().unwrap_or(0);
            self.world.fake.caught_up_polls(&s.id) > before
        });
        if !open_read {
            return false;
        }
        let Ok(list) = store.list().await else {
            return false;
        };
        let finished: HashSet<String> = list
            .into_iter()
            .filter(|c| c.finished)
            .map(|c| c.shard.shard_id)
            .collect();
        self.world.shards.iter().filter(|s| !s.removed).all(|s| {
            if s.open {
                let before = since.get(&s.id).copied().unwrap_or(0);
                self.world.fake.caught_up_polls(&s.id) > before
            } else {
                finished.contains(&s.id)
            }
        })
    }

    /// A rebuild of the projection (whose projection fails after `fail`
    /// events, if given).
    async fn rebuild(&mut self, fail: Option<usize>) -> Result<(), Error> {
        if self.schedule.consumer == Consumer::Lambda {
            return Ok(());
        }
        // Records already on the stream were created before the rebuild's
        // start (whole milliseconds): none shares its millisecond.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let mut dispatcher = self.dispatcher();
        if let Some(after) = fail {
            dispatcher = dispatcher.with_projection(FailAfter {
                after,
                seen: Mutex::new(0),
            });
        }
        let result = Rebuild::new(
            self.world.db.client.clone(),
            &self.world.db.events,
            self.plain_store(),
            dispatcher,
        )
        .with_stream(
            self.world.streams(&Faults::default(), 0),
            &self.world.fake.stream_arn(),
        )
        .with_segments(2)
        .with_page_size(3)
        .with_safety_margin(Duration::ZERO)
        .run()
        .await;
        tokio::time::sleep(Duration::from_millis(3)).await;
        if result.is_ok() {
            self.rebuild_failed = false;
        }
        result.map(|_| ())
    }

    /// The end of the history: a fault-free projector catches up; if it
    /// stops with `Trimmed`, the documented recovery (a rebuild, then the
    /// projector again) must end caught up. Then every view must equal the
    /// replay of its events.
    pub async fn drain(&mut self) {
        self.observer.label("final drain".into());
        if self.schedule.consumer == Consumer::Lambda {
            self.lambda_run(&Faults::default()).await;
        } else {
            self.first_start();
            let owners = [self.owner_id()];
            let ended = self.run(&Faults::default(), &owners, None).await;
            match ended {
                Ended::Failed(err) if recoverable(&err) => {
                    // Allowed only as `ended` allows it (retention acted, a rebuild failed).
                    self.ended(Ended::Failed(err), true).await;
                    if !self.observer.violations().is_empty() {
                        return;
                    }
                    self.observer
                        .label("recovery: rebuild, then the projector again".into());
                    if let Err(err) = self.rebuild(None).await {
                        self.observer.violate(format!("the rebuild failed: {err}"));
                        return;
                    }
                    let ended = self.run(&Faults::default(), &owners, None).await;
                    if let Ended::Failed(err @ Error::Trimmed { shard_id, .. }) = &ended {
                        if self.world.open_shard_trimmed(shard_id) {
                            // Unprovable (see `open_shard_trimmed`): the
                            // stop is what is asked of it.
                            self.observer
                                .label(format!("recovery stopped on a trimmed open shard: {err}"));
                            return;
                        }
                    }
                    if let Ended::Failed(err) = &ended {
                        self.observer.violate(format!(
                            "after a finished Rebuild the projector still stopped: {err}"
                        ));
                        return;
                    }
                    self.ended(ended, true).await;
                }
                ended => self.ended(ended, true).await,
            }
        }
        if self.observer.violations().is_empty() {
            self.check_views().await;
        }
    }

    /// Each view holds its aggregate's events once each, in order, up to the
    /// last committed (from the first, or for a `LATEST` projection from
    /// wherever it began up to the first committed after its start).
    async fn check_views(&self) {
        let views = self.views();
        let counters = self.counter().read_all().await;
        let counted = |key: &str| counters.get(key).copied().unwrap_or_default();
        let (mut all_count, mut all_total) = (0, 0);
        for id in &self.world.aggregates {
            if self.world.deleted.contains_key(id) {
                // Its deletion took its counter, and its part of count#all.
                if let Some(left) = counters.get(&format!("count#{id}")) {
                    self.observer.violate(format!(
                        "COUNTER: deleted {id} still has a counter {left:?} (deletions \
                         dispatched: {})",
                        self.observer.deletions(id)
                    ));
                }
                continue;
            }
            let view = views.load(id).await.expect("the view").unwrap_or_default();
            let expected = (u64::try_from(view.sequences.len()).unwrap(), view.total);
            let counted = counted(&format!("count#{id}"));
            if counted != expected {
                self.observer.violate(format!(
                    "COUNTER: the transactional counter of {id} holds (count, total) {counted:?}, \
                     its exactly-once view {expected:?} (sequences {:?})",
                    view.sequences
                ));
            }
            all_count += expected.0;
            all_total += expected.1;
        }
        let all = counted("count#all");
        if all != (all_count, all_total) {
            self.observer.violate(format!(
                "COUNTER: count#all holds {all:?}, the views sum to {:?}",
                (all_count, all_total)
            ));
        }
        for id in self
            .world
            .aggregates
            .iter()
            .filter(|id| !self.world.deleted.contains_key(*id))
        {
            let committed = self.world.committed(id);
            let floor = self.observer.floor(id);
            let view = views.load(id).await.expect("the view").unwrap_or_default();
            let first = view.sequences.first().copied().unwrap_or(committed + 1);
            let expected: Vec<usize> = (first..=committed).collect();
            let total: i64 = expected
                .iter()
                .filter_map(|&s| self.world.amount(id, s))
                .sum();
            let ok = first <= floor + 1 && view.sequences == expected && view.total == total;
            if !ok && committed > floor {
                self.observer.violate(format!(
                    "VIEW: {id} holds {:?} (total {}), expected the replay of {}..={committed} \
                     (total {total}), each once",
                    view.sequences,
                    view.total,
                    (floor + 1).min(first)
                ));
            }
        }
    }

    #[cfg(feature = "lambda")]
    async fn lambda_run(&mut self, faults: &Faults) {
        self.first_start();
        self.observer.fail_at(self.pick_pending(faults.fail_at));
        let dispatcher = self.dispatcher();
        let result = self.lambda.run(&self.world, &dispatcher).await;
        self.observer.disarm();
        match result {
            Ok(()) => self.check_complete("(Lambda) caught up"),
            Err(err) => self.observer.violate(format!("LAMBDA: {err}")),
        }
    }

    #[cfg(not(feature = "lambda"))]
    async fn lambda_run(&mut self, faults: &Faults) {
        // Without the `lambda` feature, a Lambda history is a projector's.
        let owners = [self.owner_id()];
        self.first_start();
        let ended = self.run(faults, &owners, None).await;
        let clean = faults.throttle + faults.lose == 0;
        self.ended(ended, clean).await;
    }
}

/// The typed error of a projector that refuses to start while the last
/// rebuild is unfinished (named by its `Debug` form: the variant is newer
/// than some of the code this simulation runs against).
fn rebuild_unfinished(err: &Error) -> bool {
    matches!(err, Error::RebuildUnfinished { .. })
}

/// Errors whose documented remedy is a rebuild run to completion, then the
/// projector again.
fn recoverable(err: &Error) -> bool {
    matches!(err, Error::Trimmed { .. }) || rebuild_unfinished(err)
}

/// Stops every running projector gracefully; the first error, if any.
async fn stop_all(running: Vec<Running>) -> Result<(), Error> {
    let mut outcome = Ok(());
    for run in running {
        let _ = run.stop.send(());
        let result = run.task.await.expect("the projector task");
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}
