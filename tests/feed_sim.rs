//! The deterministic simulation of feeds: seeded histories of writers whose
//! clocks run ahead or behind, an index whose entries become visible late,
//! feed processes that join, balance, catch up and die mid-batch, against
//! the real `FeedProjector`, `SliceReader` and `FeedPositions` on the
//! embedded emulator.
//!
//! **Invariant checked after each history:** every event of the projected
//! type is dispatched, each aggregate's in sequence order (no event after a
//! gap), and the exactly-once view equals the replay. A quarter of the
//! histories have a writer whose clock runs three windows behind: its
//! events come later than twice the window, below the band reads start in,
//! and are delivered all the same (read by key when a later event of their
//! aggregate shows them missing, or found by an audit); the feed may stop
//! with `Error::FeedGap` only for an event later than the audit's depth,
//! which no history has. Half the histories delete aggregates
//! (`DynamoEventRepository::delete_aggregate`, its tombstone sliced), often
//! while feed processes are down or behind, so that the events between a
//! feed's position and the tombstone are gone when it reads: each deleted
//! aggregate's deletion is then dispatched after every event the feed
//! dispatched of it, with its last sequence, the view drops its rows once
//! (a deletion delivered again after a death changes nothing), no event of
//! it is applied after, and no feed stops on the missing events.
//!
//! The index's lag is simulated by an interceptor on the feed's client that
//! hides an event from every `Query` until its visibility time; the base
//! table (which the reader consults for predecessors) sees it at once, as
//! DynamoDB's strongly consistent reads do.
//!
//! * `cargo test --all-features --test feed_sim`: 48 seeds.
//! * `FEED_SIM_SEEDS=500` runs that many; `FEED_SIM_FIRST_SEED=N` starts
//!   elsewhere; `FEED_SIM_SEED=7` runs that one seed (a failure prints it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod feed_support;
mod projector_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use common::{deposit_event, Account};
use cqrs_es::EventEnvelope;
use dynamo_es::item::event_to_item;
use dynamo_es::projection::feed::{FeedPositions, FeedProjector, SliceReader};
use dynamo_es::projection::{Dispatcher, Error, EventDecoder, Projection};
use dynamo_es::slice::{micros, Slices};
use dynamo_es::testing::fixtures::Rng;
use dynamo_es::testing::{seeds, sliced_dynamodb, TestTables};
use dynamo_es::Codec;
use feed_support::Visibility;
use projector_support::Recorder;

const WINDOW: Duration = Duration::from_millis(400);
const LEASE: Duration = Duration::from_millis(250);
const DEFAULT_SEEDS: u64 = 48;
const THREADS: usize = 4;
/// How deep the feeds' audits read below the watermark.
const AUDIT_DEPTH: Duration = Duration::from_secs(40);

/// The shared recorder, and a process's death after a number of calls.
struct Mortal {
    recorder: Recorder,
    calls: AtomicUsize,
    die_at: AtomicUsize,
}

#[async_trait]
impl Projection<Account> for Arc<Mortal> {
    async fn project(&self, id: &str, events: &[EventEnvelope<Account>]) -> Result<(), Error> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let die_at = self.die_at.load(Ordering::SeqCst);
        assert!(die_at == 0 || call < die_at, "the process dies");
        self.recorder.project(id, events).await
    }

    /// Dies after the view applied the deletion: before the position is
    /// saved, so a restart delivers it again.
    async fn deleted(&self, id: &str, last_sequence: usize) -> Result<(), Error> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.recorder.deleted(id, last_sequence).await?;
        let die_at = self.die_at.load(Ordering::SeqCst);
        assert!(die_at == 0 || call < die_at, "the process dies");
        Ok(())
    }
}

struct Process {
    feed: FeedProjector<Account>,
    mortal: Arc<Mortal>,
}

struct World {
    rng: Rng,
    db: TestTables,
    checkpoints: String,
    slices: Slices,
    visibility: Arc<Visibility>,
    reader_client: aws_sdk_dynamodb::Client,
    recorder: Recorder,
    processes: Vec<Process>,
    owners: usize,
    /// Per writer: its clock's offset, in microseconds.
    skews: Vec<i64>,
    /// Per aggregate: events written (the deposits' amounts).
    written: BTreeMap<String, Vec<i64>>,
    /// Whether this history deletes aggregates.
    deletes: bool,
    /// Per deleted aggregate: its last sequence.
    deleted: BTreeMap<String, usize>,
    /// The most any event became visible after its commit time.
    latest: Duration,
    log: Vec<String>,
}

impl World {
    async fn new(seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let slices = Slices::new(1 + u16::try_from(rng.below(4)).unwrap()).unwrap();
        let (db, checkpoints) = sliced_dynamodb(slices).await.unwrap();
        let visibility = Arc::new(Visibility::default());
        let reader_client = feed_support::lagging_client(&db, &visibility);
        let third = i64::try_from(WINDOW.as_micros() / 3).unwrap();
        let deletes = rng.below(2) == 0;
        let beyond = rng.below(5) == 0;
        let very = !beyond && rng.below(4) == 0;
        let skews = (0..2)
            .map(|writer| {
                if very && writer == 1 {
                    // Late by more than two windows: below the band reads
                    // start in; read by key, or found by an audit.
                    -9 * third
                } else if beyond && writer == 1 {
                    // Late by one to two windows: read again in the band
                    // below the watermark, so still delivered.
                    -9 * third / 2
                } else {
                    i64::try_from(rng.below(u64::try_from(2 * third).unwrap())).unwrap() - third
                }
            })
            .collect();
        World {
            rng,
            db,
            checkpoints,
            slices,
            visibility,
            reader_client,
            recorder: Recorder::default(),
            processes: Vec::new(),
            owners: 0,
            skews,
            written: BTreeMap::new(),
            deletes,
            deleted: BTreeMap::new(),
            latest: Duration::ZERO,
            log: Vec::new(),
        }
    }

    fn process(&mut self) -> Process {
        self.owners += 1;
        let mortal = Arc::new(Mortal {
            recorder: self.recorder.clone(),
            calls: AtomicUsize::new(0),
            die_at: AtomicUsize::new(0),
        });
        let reader = SliceReader::new(
            self.reader_client.clone(),
            &self.db.events,
            "Account",
            self.slices,
        )
        .with_window(WINDOW)
        .with_max_events(1 + usize::try_from(self.rng.below(12)).unwrap());
        let positions = FeedPositions::new(self.db.client.clone(), &self.checkpoints, "sim");
        let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
            .with_projection(mortal.clone());
        let feed = FeedProjector::new(reader, positions, dispatcher)
            .with_poll_interval(Duration::from_millis(5))
            .with_save_interval(Duration::from_millis(50))
            .with_lease_duration(LEASE)
            .with_owner(&format!("owner-{}", self.owners));
        Process { feed, mortal }
    }

    /// Writes `count` events as writer `writer`, on picked aggregates.
    async fn write(&mut self, count: u64, writer: usize) {
        for _ in 0..count {
            let id = format!("agg-{}", self.rng.below(6));
            if self.deleted.contains_key(&id) {
                // Its id is taken for good.
                continue;
            }
            let amounts = self.written.entry(id.clone()).or_default();
            let sequence = amounts.len() + 1;
            let amount = i64::try_from(self.rng.below(100)).unwrap();
            amounts.push(amount);
            let lag = Duration::from_millis(self.rng.below(120));
            let event = deposit_event("Account", &id, sequence, amount);
            let (mut item, _) = event_to_item(&event, &Codec::default()).unwrap();
            let wall = micros(SystemTime::now());
            let committed = wall.saturating_add_signed(self.skews[writer]);
            item.extend(self.slices.attributes("Account", &id, committed));
            let started = Instant::now();
            self.visibility
                .0
                .lock()
                .unwrap()
                .insert((id.clone(), sequence), started + Duration::from_secs(3600));
            common::put(&self.db, &self.db.events, item).await;
            let visible = (started + lag).max(Instant::now());
            self.visibility
                .0
                .lock()
                .unwrap()
                .insert((id, sequence), visible);
            // How long after its commit time (by the writer's clock) it
            // became visible.
            let after = visible.duration_since(started).as_micros();
            let late = i128::try_from(after).unwrap() - i128::from(self.skews[writer]);
            let late = Duration::from_micros(u64::try_from(late.max(0)).unwrap());
            self.latest = self.latest.max(late);
        }
    }

    /// Deletes an aggregate written to and not deleted yet, if any.
    async fn delete(&mut self) {
        let alive: Vec<String> = self
            .written
            .keys()
            .filter(|id| !self.deleted.contains_key(*id))
            .cloned()
            .collect();
        if alive.is_empty() {
            return;
        }
        let id = alive[usize::try_from(self.rng.below(alive.len() as u64)).unwrap()].clone();
        let last = self.written[&id].len();
        self.log.push(format!("delete {id} (last {last})"));
        let repo = self.db.repository().with_slices(self.slices);
        let done = repo.delete_aggregate::<Account>(&id).await.unwrap();
        assert_eq!(done.last_sequence, last);
        self.deleted.insert(id, last);
    }

    /// Whether every event of a live aggregate was applied once and every
    /// deletion was.
    fn complete(&self) -> bool {
        let removed = self.recorder.removed();
        self.written.iter().all(|(id, amounts)| {
            if self.deleted.contains_key(id) {
                return removed.contains_key(id);
            }
            self.recorder
                .view(id)
                .is_some_and(|view| view.applied == amounts.len())
        })
    }

    /// Deleted aggregates: dropped once with their last sequence, no event
    /// applied after; live ones: never told of a deletion.
    fn check_deletions(&self) -> Result<(), String> {
        let removed = self.recorder.removed();
        for (id, last) in &self.deleted {
            let told: Vec<usize> = self
                .recorder
                .deletions()
                .iter()
                .filter(|(d, _, _)| d == id)
                .map(|(_, last, _)| *last)
                .collect();
            if removed.get(id) != Some(last) || told.iter().any(|t| t != last) {
                return Err(format!(
                    "DELETION: {id} deleted through {last}, the view was told {told:?}"
                ));
            }
            if self.recorder.rows(id).is_some() {
                return Err(format!("DELETION: {id} still has rows"));
            }
        }
        if let Some(id) = removed.keys().find(|id| !self.deleted.contains_key(*id)) {
            return Err(format!(
                "DELETION: {id} was never deleted, the view was told"
            ));
        }
        if self.recorder.after_deletion() > 0 {
            return Err(format!(
                "DELETION: {} events applied after their aggregate's deletion",
                self.recorder.after_deletion()
            ));
        }
        Ok(())
    }

    /// A feed error: allowed only as a gap in a history with an event
    /// later than the audits reach.
    fn judge(&mut self, err: Error) -> Result<(), String> {
        match err {
            Error::FeedGap { .. } if self.latest >= AUDIT_DEPTH => {
                self.log.push(format!("stopped, as allowed: {err}"));
                Err(String::new())
            }
            err => Err(format!(
                "UNEXPECTED ERROR: {err} (latest visibility {:?}, window {WINDOW:?})",
                self.latest
            )),
        }
    }

    fn check_order(&self) -> Result<(), String> {
        if self.recorder.gaps() > 0 {
            return Err(format!(
                "GAP: an aggregate's event was dispatched after a gap; log {:?}",
                self.recorder.log()
            ));
        }
        Ok(())
    }

    async fn step(&mut self) -> Result<(), String> {
        match self.rng.below(10) {
            0..=2 => {
                let (count, writer) = (
                    1 + self.rng.below(8),
                    usize::try_from(self.rng.below(2)).unwrap(),
                );
                self.log.push(format!("write {count} as writer {writer}"));
                self.write(count, writer).await;
            }
            3 if self.processes.len() < 3 => {
                self.log.push("join".into());
                let process = self.process();
                self.processes.push(process);
            }
            4 | 5 if !self.processes.is_empty() => {
                let i = usize::try_from(self.rng.below(self.processes.len() as u64)).unwrap();
                self.log.push(format!("balance {i}"));
                if let Err(err) = self.processes[i].feed.balance().await {
                    return self.judge(err);
                }
            }
            6 | 7 if !self.processes.is_empty() => {
                let i = usize::try_from(self.rng.below(self.processes.len() as u64)).unwrap();
                self.log.push(format!("catch up {i}"));
                if let Err(err) = self.processes[i].feed.catch_up().await {
                    return self.judge(err);
                }
            }
            8 if !self.processes.is_empty() => {
                let i = usize::try_from(self.rng.below(self.processes.len() as u64)).unwrap();
                let after = 1 + usize::try_from(self.rng.below(4)).unwrap();
                self.log
                    .push(format!("process {i} dies after {after} calls"));
                let mut process = self.processes.remove(i);
                let calls = process.mortal.calls.load(Ordering::SeqCst);
                process.mortal.die_at.store(calls + after, Ordering::SeqCst);
                let ran = tokio::spawn(async move { process.feed.catch_up().await }).await;
                // Its death (a panic) or a pass that ended first: either
                // way it is gone; an error is judged.
                if let Ok(Err(err)) = ran {
                    return self.judge(err);
                }
            }
            9 if self.deletes && self.rng.below(3) == 0 => self.delete().await,
            9 if !self.processes.is_empty() && self.rng.below(2) == 0 => {
                let i = usize::try_from(self.rng.below(self.processes.len() as u64)).unwrap();
                self.log.push(format!("audit {i}"));
                if let Err(err) = self.processes[i].feed.audit(AUDIT_DEPTH).await {
                    return self.judge(err);
                }
            }
            _ => {
                let wait = self.rng.below(150);
                self.log.push(format!("sleep {wait} ms"));
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        self.check_order()
    }

    /// Every process runs until it has dispatched everything (or the time
    /// runs out, or it stops with an error).
    async fn drain(&mut self) -> Result<(), String> {
        if self.processes.is_empty() {
            let process = self.process();
            self.processes.push(process);
        }
        let total: usize = self.written.values().map(Vec::len).sum();
        let started = Instant::now();
        while !self.complete() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "MISSED: after 20 s of draining, {} of {total} events dispatched, \
                     deletions {:?} of {:?}, no error",
                    self.recorder.distinct(),
                    self.recorder.removed(),
                    self.deleted
                ));
            }
            for i in 0..self.processes.len() {
                let balanced = self.processes[i].feed.balance().await;
                let caught_up = match balanced {
                    Ok(_) => self.processes[i].feed.catch_up().await.map(drop),
                    Err(err) => Err(err),
                };
                // An event of the writer far behind with no later event of
                // its aggregate is found by an audit.
                let caught_up = match caught_up {
                    Ok(()) => self.processes[i].feed.audit(AUDIT_DEPTH).await.map(drop),
                    Err(err) => Err(err),
                };
                if let Err(err) = caught_up {
                    return self.judge(err);
                }
            }
            self.check_order()?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.check_deletions()?;
        for (id, amounts) in &self.written {
            if self.deleted.contains_key(id) {
                continue;
            }
            let view = self.recorder.view(id).unwrap_or_default();
            let expected: i64 = amounts.iter().sum();
            if (view.total, view.applied) != (expected, amounts.len()) {
                return Err(format!(
                    "VIEW: {id} has total {} of {} events, the replay {expected} of {}",
                    view.total,
                    view.applied,
                    amounts.len()
                ));
            }
        }
        Ok(())
    }
}

async fn history(seed: u64) -> Result<(), String> {
    let mut world = World::new(seed).await;
    let steps = 20 + world.rng.below(30);
    let mut outcome = Ok(());
    for _ in 0..steps {
        outcome = world.step().await;
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        outcome = world.drain().await;
    }
    match outcome {
        Err(message) if !message.is_empty() => Err(format!(
            "{message}\n  slices {}, skews {:?} µs, latest visibility {:?}\n  steps: {}",
            world.slices.count(),
            world.skews,
            world.latest,
            world.log.join("; ")
        )),
        _ => Ok(()),
    }
}

fn run_one(seed: u64) -> Result<(), String> {
    seeds::run_isolated(history(seed))
}

#[test]
fn seeded_feed_histories_dispatch_every_event_in_order_even_very_late_ones() {
    let seeds = seeds::seeds_from_env("FEED_SIM_", DEFAULT_SEEDS);
    seeds::check_seeds("feed simulation", seeds, THREADS, run_one, |seed| {
        format!("FEED_SIM_SEED={seed} cargo test --all-features --test feed_sim -- --nocapture")
    });
}
