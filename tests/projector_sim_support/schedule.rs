//! A history's schedule, generated from its seed: the consumer (projector
//! or Lambda), where a new projection starts, and the steps.
//!
//! **Invariant:** [`Schedule::generate`] is a pure function of the seed;
//! every random choice a step makes while it runs comes from the `pick`
//! drawn here, so a seed reproduces its schedule and the world's changes.

use dynamo_es::testing::fixtures::Rng;

/// Who reads the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// `Projector`s with a `CheckpointStore`, `Rebuild`s.
    Projector,
    /// `projection::lambda::handle` behind a simulated event source mapping.
    Lambda,
}

/// Faults during one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Percent of checkpoint-table and Streams requests throttled.
    pub throttle: u64,
    /// Percent of checkpoint writes and `GetRecords` whose response is lost
    /// after the server applied them.
    pub lose: u64,
    /// Expire every shard iterator when this (picked) event is dispatched.
    pub expire_at: Option<u64>,
    /// The projection fails once on this (picked) event.
    pub fail_at: Option<u64>,
}

/// One step of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Commits `events` events on picked aggregates (some of another type).
    Commit { events: u64, pick: u64 },
    /// Closes a picked open shard and adds two children sharing its keys.
    Split { pick: u64 },
    /// Closes a picked open shard and adds one child taking its keys.
    Rollover { pick: u64 },
    /// Runs projectors until they caught up (or stopped with an error).
    Run {
        faults: Faults,
        /// A second projector runs beside the first.
        second: bool,
        /// A new owner id (a lease of a crashed owner must expire first).
        new_owner: bool,
    },
    /// Runs a projector and kills it while it dispatches a picked event.
    Crash { pick: u64 },
    /// Retention: trims every record committed before a picked point.
    Trim { pick: u64 },
    /// Retention: closed shards whose records are all trimmed disappear.
    Remove,
    /// A `Rebuild` whose projection fails after `after` events.
    FailedRebuild { after: u64 },
    /// A `Rebuild` that finishes.
    Rebuild,
    /// Deletes a picked projected aggregate (`delete_aggregate`).
    Delete { pick: u64 },
}

/// The schedule of one history.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The seed it came from.
    pub seed: u64,
    /// Who reads the stream.
    pub consumer: Consumer,
    /// A new projection starts at `LATEST` (else at the trim horizon).
    pub latest: bool,
    /// Aggregates of the projected type.
    pub aggregates: usize,
    /// Aggregates of another type, on the same stream.
    pub others: usize,
    /// Root shards.
    pub roots: usize,
    /// Records per `GetRecords`.
    pub batch_size: i32,
    /// The steps, in order (a final drain follows).
    pub steps: Vec<Step>,
}

impl Schedule {
    /// The schedule of `seed`.
    pub fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x005E_ED0F_5111);
        let consumer = if rng.below(100) < 15 {
            Consumer::Lambda
        } else {
            Consumer::Projector
        };
        let latest = consumer == Consumer::Projector && rng.below(100) < 30;
        let aggregates = 2 + usize::try_from(rng.below(5)).unwrap_or(0);
        let others = usize::try_from(rng.below(3)).unwrap_or(0);
        let roots = 1 + usize::try_from(rng.below(2)).unwrap_or(0);
        let batch_size = 1 + i32::try_from(rng.below(5)).unwrap_or(0);
        let length = 4 + rng.below(9);
        let mut steps = vec![Step::Commit {
            events: 1 + rng.below(6),
            pick: rng.next_u64(),
        }];
        // A Latest projection's first start is the line from which every
        // event must be dispatched: put it early, before any split.
        if latest {
            steps.push(Step::Run {
                faults: Faults::default(),
                second: false,
                new_owner: false,
            });
        }
        let mut ran = latest;
        for _ in 0..length {
            let step = match (consumer, rng.below(100)) {
                (_, 0..=24) => Step::Commit {
                    events: 1 + rng.below(8),
                    pick: rng.next_u64(),
                },
                (_, 25..=34) => Step::Split {
                    pick: rng.next_u64(),
                },
                (_, 35..=42) => Step::Rollover {
                    pick: rng.next_u64(),
                },
                (Consumer::Lambda, _) => Step::Run {
                    faults: faults(&mut rng),
                    second: false,
                    new_owner: false,
                },
                (Consumer::Projector, 43..=64) => Step::Run {
                    faults: faults(&mut rng),
                    second: rng.below(100) < 25,
                    new_owner: rng.below(100) < 20,
                },
                (Consumer::Projector, 65..=74) => Step::Crash {
                    pick: rng.next_u64(),
                },
                // Retention acts on a projection that exists: a stream's
                // history before a new projection's first start is not its
                // to lose.
                (Consumer::Projector, 75..=84) if ran => Step::Trim {
                    pick: rng.next_u64(),
                },
                (Consumer::Projector, 85..=90) if ran => Step::Remove,
                (Consumer::Projector, 91..=95) => Step::FailedRebuild {
                    after: rng.below(4),
                },
                (Consumer::Projector, 96..=99) => Step::Rebuild,
                (Consumer::Projector, _) => Step::Commit {
                    events: 1 + rng.below(4),
                    pick: rng.next_u64(),
                },
            };
            ran |= matches!(step, Step::Run { .. } | Step::Crash { .. });
            steps.push(step);
        }
        // Deletions, from a generator of their own (the other steps stay
        // those each seed had before deletions were simulated).
        let mut deletes = Rng::new(seed ^ 0x0DE1_E7ED);
        if deletes.below(100) < 35 {
            for _ in 0..=deletes.below(2) {
                let at = 1 + usize::try_from(deletes.below(steps.len() as u64)).unwrap_or(0);
                let pick = deletes.next_u64();
                steps.insert(at.min(steps.len()), Step::Delete { pick });
            }
        }
        Schedule {
            seed,
            consumer,
            latest,
            aggregates,
            others,
            roots,
            batch_size,
            steps,
        }
    }
}

fn faults(rng: &mut Rng) -> Faults {
    if rng.below(100) < 50 {
        return Faults::default();
    }
    let some = |rng: &mut Rng, percent| (rng.below(100) < percent).then(|| rng.next_u64());
    Faults {
        throttle: if rng.below(100) < 50 { 10 } else { 0 },
        lose: if rng.below(100) < 40 { 5 } else { 0 },
        expire_at: some(rng, 40),
        fail_at: some(rng, 40),
    }
}
