//! The in-memory model: the events each aggregate committed, in order,
//! with their metadata. A commit that reported success is in it; a typed
//! refusal is not; an unknown outcome is in it only once reading showed it
//! applied.

use std::collections::{BTreeMap, HashMap};

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

    /// The state of `id` after its first `upto` events.
    pub fn state(&self, table: usize, id: &str, upto: usize) -> Model {
        replay(self.events(table, id).iter().take(upto).map(|c| &c.event))
    }
}
