//! The model's aggregate: its events cover the payload shapes that have
//! changed or broken in transit (a `#[serde(flatten)]` map that may repeat
//! a field's name, payloads past a codec's decoded-size cap, values nested
//! deeper than a reader's recursion limit, exact floats and text), and its
//! state is a digest of every event applied, so any change to any event
//! read back changes the state.

use std::collections::BTreeMap;

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelEvent {
    /// Ordinary small event: an amount, a note, an exact float.
    Plain {
        amount: i64,
        note: String,
        ratio: f64,
    },
    /// A struct with a flattened map: the map may hold a key equal to a
    /// field's name (issue 21, defect 8).
    Flat(FlatEvent),
    /// A large, compressible text (past a small `max_decoded_size`: defect 9).
    Big { text: String },
    /// A value nested `depth` levels (defect 10).
    Deep { tree: Value },
}

/// The flattened event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlatEvent {
    pub amount: i64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ModelEvent {
    /// True if serializing the event repeats a key (a flattened map holding
    /// a field's name): only a typed write path sees such an event; the
    /// `Value` paths (and cqrs-es's `PersistedEventStore`, which converts
    /// events to `Value`s first) never can.
    pub fn repeats_a_key(&self) -> bool {
        matches!(self, ModelEvent::Flat(flat) if flat.extra.contains_key("amount"))
    }
}

dynamo_es::domain_event!(ModelEvent, "1.0", Plain, Flat, Big, Deep);

/// The model aggregate: a digest of every event it applied.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Events applied.
    pub applied: u64,
    /// The sum of the amounts.
    pub total: i64,
    /// xxh3 of the JSON text of each event, chained.
    pub digest: u64,
    /// The last event's type.
    pub last: String,
    /// The start of the last note (snapshots then look like events, and a
    /// dictionary compresses them), at most 160 bytes: snapshots stay
    /// small whatever the events.
    pub last_note: String,
}

/// Commands are refused only when they are empty.
#[derive(Debug, thiserror::Error)]
#[error("an empty command")]
pub struct ModelError;

dynamo_es::events_aggregate!(Model, "Model", ModelEvent, ModelError, empty => Err(ModelError));

impl Model {
    fn record(&mut self, event: ModelEvent) {
        let text = serde_json::to_vec(&event).unwrap_or_default();
        let mut seed = self.digest.to_le_bytes().to_vec();
        seed.extend_from_slice(&text);
        self.digest = xxhash_rust::xxh3::xxh3_64(&seed);
        self.applied += 1;
        self.total = self.total.wrapping_add(match &event {
            ModelEvent::Plain { amount, .. } => *amount,
            ModelEvent::Flat(flat) => flat.amount,
            _ => 0,
        });
        self.last = event.event_type();
        if let ModelEvent::Plain { note, .. } = &event {
            let cut = (0..=note.len().min(160))
                .rev()
                .find(|&i| note.is_char_boundary(i))
                .unwrap_or(0);
            self.last_note = note[..cut].to_string();
        }
    }
}

/// The state after `events`, from the start.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a ModelEvent>) -> Model {
    let mut model = Model::default();
    for event in events {
        model.apply(event.clone());
    }
    model
}
