//! Eventually consistent loads in the model: a history whose store is a
//! snapshot store or an event store `DynamoStore` may give its writer
//! `ReadConsistency::Eventual` over a stale replica (`StaleReads`: the
//! newest one or two events missing, or a hole, on every first, second or
//! third eventually consistent query).
//!
//! **Invariant checked:** an eventually consistent load returns the
//! model's state at its sequence, never past the model, and behind it only
//! when the replica dropped the newest events (never for a hole: such an
//! answer is read again, strongly); a commit from a state behind conflicts
//! and writes nothing, and the next load equals the model. The writer's
//! commands conflict only after a write behind its back or a stale read,
//! and their one retry then succeeds.

use dynamo_es::testing::faults::StaleReads;
use dynamo_es::testing::fixtures::Rng;
use dynamo_es::{DynamoStore, ReadConsistency, SnapshotPolicy};

use super::aggregate::Model;
use super::cache;
use super::check::Subject;
use super::payloads::{self, Draw};
use super::world::{Config, Process, StoreMode};

/// Mixed into a history's seed for these choices, so the histories
/// generated before them keep their steps.
pub const EVENTUAL_SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// What the writer's replica misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The newest `n` events of each stale answer.
    Lagging(usize),
    /// One event after the newest.
    Hole,
}

/// The writer's stale replica: what it misses, and on which eventually
/// consistent queries (every `n`-th).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub stale: Stale,
    pub every: usize,
}

impl Replica {
    /// The interceptor standing for this replica.
    pub fn reads(self) -> StaleReads {
        match self.stale {
            Stale::Lagging(n) => StaleReads::lagging(n),
            Stale::Hole => StaleReads::with_hole(),
        }
        .on_every(self.every)
    }
}

/// Whether a history's writer reads eventually consistent, and from what
/// replica.
pub fn chosen(rng: &mut Rng, config: &Config) -> Option<Replica> {
    let eligible = matches!(
        config.store,
        StoreMode::Dynamo(SnapshotPolicy::Never | SnapshotPolicy::Every(_))
    );
    if !eligible || !rng.chance(40) || payloads::without("eventual") {
        return None;
    }
    let stale = if rng.chance(30) {
        Stale::Hole
    } else {
        Stale::Lagging(rng.between(1, 2))
    };
    Some(Replica {
        stale,
        every: rng.between(1, 3),
    })
}

/// The writer's store for `table`: eventually consistent if the history
/// says so.
pub fn store(config: &Config, process: &Process, table: usize) -> Option<DynamoStore<Model>> {
    let StoreMode::Dynamo(policy) = config.store else {
        return None;
    };
    let store = DynamoStore::<Model>::new(process.repos[table].clone(), policy);
    Some(match config.eventual {
        Some(_) => store.with_read_consistency(ReadConsistency::Eventual),
        None => store,
    })
}

/// Whether the replica answered some eventually consistent query stale by
/// dropping the newest events since the record held `since` queries.
pub fn lagged_since(config: &Config, process: &Process, since: usize) -> bool {
    let (Some(replica), Some(reads)) = (config.eventual, &process.stale) else {
        return false;
    };
    matches!(replica.stale, Stale::Lagging(_))
        && reads.queries()[since..]
            .iter()
            .any(|q| !q.consistent && q.dropped > 0)
}

/// How many queries the writer's replica has answered.
pub fn queries(process: &Process) -> usize {
    process
        .stale
        .as_ref()
        .map_or(0, |reads| reads.queries().len())
}

/// Checks an eventually consistent load of the `subject` aggregate by the
/// writer against the model (see the module's invariant).
pub async fn check(subject: Subject<'_>) -> Result<(), String> {
    let (table, id) = (subject.table, subject.id);
    if subject.config.eventual.is_none() {
        return Ok(());
    }
    let Some(store) = store(subject.config, subject.process, table) else {
        return Ok(());
    };
    let name = format!("eventually consistent load of Model:{id} (table {table})");
    let since = queries(subject.process);
    let (context, at, want) =
        cache::load_at_most_the_model(&store, &name, subject.model, table, id).await?;
    if at == want {
        return Ok(());
    }
    if !lagged_since(subject.config, subject.process, since) {
        return Err(format!(
            "{name}: at sequence {at}, behind the model's {want}, with no stale answer"
        ));
    }
    cache::a_stale_state_conflicts(&store, &name, context, subject.model, table, id).await
}
