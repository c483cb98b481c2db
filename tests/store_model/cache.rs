//! The hot-aggregate cache in the model: a history whose store is a
//! `DynamoStore` may give its writer a `HotCache` (one per process, so a
//! restart empties it), and then other writers commit behind its back
//! (`Step::Behind`, and the `Value` commits that go to the repository
//! directly).
//!
//! **Invariant checked:** a load through the writer's cache returns the
//! model's state at its sequence, never past the model; a load behind the
//! model happens only after a write behind the cache's back, and a commit
//! from it conflicts, drops the entry, and the next load equals the model.
//! A writer's command conflicts only after such a write, and its one retry
//! then succeeds.

use std::collections::{BTreeSet, HashMap};

use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use dynamo_es::testing::fixtures::Rng;
use dynamo_es::{DynamoAggregateContext, DynamoStore, HotCache};

use super::aggregate::{Model, ModelEvent};
use super::check::Subject;
use super::history::{Commit, Step};
use super::model::{Committed, Store};
use super::payloads::{self, Carrier, Draw};
use super::world::{Config, Process, Role, StoreMode, TablePair};

/// Mixed into a history's seed for the cache's choices, so the histories
/// generated before the cache existed keep their steps.
pub const CACHE_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The writer's cache: few entries, so histories over several aggregates
/// and tables evict.
pub fn new_cache() -> HotCache {
    HotCache::new(4, 1 << 20)
}

/// Whether a history's writer has a cache.
pub fn chosen(rng: &mut Rng, config: &Config) -> bool {
    matches!(config.store, StoreMode::Dynamo(_)) && rng.chance(50) && !payloads::without("cache")
}

/// `steps` with commits by another writer inserted before some of them,
/// on the aggregates the writer's commits name.
pub fn with_writers_behind(rng: &mut Rng, config: &Config, steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        if let Step::Commit(Commit { table, id, .. }) = &step {
            if rng.chance(30) {
                out.push(Step::Behind {
                    table: *table,
                    id: id.clone(),
                    events: vec![Committed {
                        event: payloads::event(rng, Carrier::Typed, config.cap),
                        metadata: HashMap::from([("user".to_string(), "behind".to_string())]),
                    }],
                });
            }
        }
        out.push(step);
    }
    out
}

/// Commits `events` to `id` through a `DynamoStore` of another process
/// (no cache, no faults), as the model's other writer; the error, if any
/// (the caller reads the table to see whether it was applied).
pub async fn commit_behind(
    config: &Config,
    pairs: &[TablePair],
    table: usize,
    id: &str,
    events: &[Committed],
) -> Result<Result<(), String>, String> {
    let StoreMode::Dynamo(policy) = config.store else {
        return Err("a write behind the cache's back needs a DynamoStore history".into());
    };
    let other = Process::start(config, pairs, Role::Writer).await?;
    let store = DynamoStore::<Model>::new(other.repos[table].clone(), policy);
    let cqrs = CqrsFramework::new(store, vec![], ());
    let payloads: Vec<ModelEvent> = events.iter().map(|c| c.event.clone()).collect();
    Ok(cqrs
        .execute_with_metadata(id, payloads, events[0].metadata.clone())
        .await
        .map_err(|err| format!("{err:?}")))
}

/// Checks a load of the `subject` aggregate through its process's cache
/// against the model (see the module's invariant), knowing which aggregates
/// were written behind the cache's back (`stale`); returns true if the load
/// was stale (the entry is then gone).
pub async fn check(
    subject: Subject<'_>,
    stale: &BTreeSet<(usize, String)>,
) -> Result<bool, String> {
    let (table, id) = (subject.table, subject.id);
    let StoreMode::Dynamo(policy) = subject.config.store else {
        return Ok(false);
    };
    let store = DynamoStore::<Model>::new(subject.process.repos[table].clone(), policy)
        .with_cache(subject.process.cache.clone());
    let name = format!("load of Model:{id} (table {table}) through the cache");
    let (context, at, want) =
        load_at_most_the_model(&store, &name, subject.model, table, id).await?;
    if at == want {
        return Ok(false);
    }
    if !stale.contains(&(table, id.to_string())) && !subject.model.may_lag(table, id) {
        return Err(format!(
            "{name}: at sequence {at}, behind the model's {want}, with no write behind its back"
        ));
    }
    a_stale_state_conflicts(&store, &name, context, subject.model, table, id).await?;
    Ok(true)
}

/// Loads `id` through `store`: the model's state at the sequence loaded,
/// which is at most the model's; the context, that sequence and the
/// model's.
pub async fn load_at_most_the_model(
    store: &DynamoStore<Model>,
    name: &str,
    model: &Store,
    table: usize,
    id: &str,
) -> Result<(DynamoAggregateContext<Model>, usize, usize), String> {
    let want = model.events(table, id).len();
    let context = store
        .load_aggregate(id)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let at = context.current_sequence;
    if at > want {
        return Err(format!("{name}: at sequence {at}, past the model's {want}"));
    }
    if context.aggregate != model.state(table, id, at) {
        return Err(format!(
            "{name}: {:?} at sequence {at} is not the model's state there",
            context.aggregate
        ));
    }
    Ok((context, at, want))
}

/// A commit from `context`, a state behind the model, conflicts; the
/// store's next load is the model's state.
pub async fn a_stale_state_conflicts(
    store: &DynamoStore<Model>,
    name: &str,
    context: DynamoAggregateContext<Model>,
    model: &Store,
    table: usize,
    id: &str,
) -> Result<(), String> {
    let at = context.current_sequence;
    let want = model.events(table, id).len();
    let probe = vec![ModelEvent::Plain {
        amount: 1,
        note: "probe".into(),
        ratio: 0.5,
    }];
    match store.commit(probe, context, HashMap::new()).await {
        Err(AggregateError::AggregateConflict) => {}
        other => {
            return Err(format!(
                "{name}: a commit from the stale state at {at} must conflict, got {:?}",
                other.map(|events| events.len())
            ))
        }
    }
    let again = store
        .load_aggregate(id)
        .await
        .map_err(|e| format!("{name}, after the conflict: {e}"))?;
    if again.current_sequence != want || again.aggregate != model.state(table, id, want) {
        return Err(format!(
            "{name}: after the conflict, loaded sequence {} where the model has {want}",
            again.current_sequence
        ));
    }
    Ok(())
}
