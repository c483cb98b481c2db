//! The in-memory model: the events each aggregate committed, in order,
//! with their metadata. A commit that reported success is in it; a typed
//! refusal is not; an unknown outcome is in it only once reading showed it
//! applied.
//!
//! It also knows which aggregates an aggregate store's head may claim to
//! be current for while it is not: those written straight to the
//! repository (a writer that never reads the head) since the last command.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::aggregate::{replay, Model, ModelEvent};

/// A committed event and its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub event: ModelEvent,
    pub metadata: HashMap<String, String>,
}

/// The committed events of every aggregate, by (table index, aggregate id).
#[derive(Debug, Default)]
pub struct Store {
    pub aggregates: BTreeMap<(usize, String), Vec<Committed>>,
    /// (table, aggregate) written behind an aggregate store's head since
    /// its last successful command: a load may return the state at the
    /// head's claim, behind the model (see `DynamoStore`'s `Always`).
    pub claim_behind: BTreeSet<(usize, String)>,
}

impl Store {
    /// The committed events of `id` in table `table`.
    pub fn events(&self, table: usize, id: &str) -> &[Committed] {
        self.aggregates
            .get(&(table, id.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Appends a commit.
    pub fn commit(&mut self, table: usize, id: &str, events: &[Committed]) {
        self.aggregates
            .entry((table, id.to_string()))
            .or_default()
            .extend_from_slice(events);
    }

    /// True if a load of `id` in `table` may be behind the model.
    pub fn may_lag(&self, table: usize, id: &str) -> bool {
        self.claim_behind.contains(&(table, id.to_string()))
    }

    /// The state of `id` after its first `upto` events.
    pub fn state(&self, table: usize, id: &str, upto: usize) -> Model {
        replay(self.events(table, id).iter().take(upto).map(|c| &c.event))
    }
}
