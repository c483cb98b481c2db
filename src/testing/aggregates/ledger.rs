//! A ledger account whose state grows as large as a test needs: imports
//! append booked entries (the [`fixtures`](crate::testing::fixtures)'
//! realistic ones), postings only count.
//!
//! **Invariant:** `postings` counts every event applied, and the state
//! changes only by `Imported` (entries appended) and `Cleared` (entries
//! removed), so a snapshot keeps its size across `Posted` events.

use std::convert::Infallible;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::testing::fixtures::ledger_snapshot;

/// A ledger account, as large as its booked entries.
///
/// ```
/// use cqrs_es::Aggregate;
/// use dynamo_es::testing::aggregates::{Ledger, LedgerEvent};
///
/// let mut ledger = Ledger::default();
/// for event in LedgerEvent::imports(&vec![serde_json::json!({"amount": "1.00"}); 5], 2) {
///     ledger.apply(event);
/// }
/// assert_eq!((ledger.postings, ledger.entries().len()), (3, 5));
/// ```
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// How many events the ledger applied.
    pub postings: u64,
    /// The account: `null` until the first import, then an object with the
    /// booked `entries` (and, when a test stores one directly, the header
    /// fields of [`ledger_snapshot`]).
    pub account: Value,
}

impl Ledger {
    /// The booked entries, oldest first.
    pub fn entries(&self) -> &[Value] {
        self.account
            .get("entries")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// What happened to a [`Ledger`]. Its commands are lists of these events,
/// written as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LedgerEvent {
    /// Entries booked, appended to the account's `entries`.
    Imported {
        /// The entries.
        entries: Vec<Value>,
    },
    /// Every entry removed.
    Cleared,
    /// A posting (such as a [`small_event`](crate::testing::fixtures::small_event)),
    /// stored as the value itself; it is counted, the account is unchanged.
    #[serde(untagged)]
    Posted(Value),
}

impl LedgerEvent {
    /// `entries` in `Imported` events of at most `per_event` entries each.
    pub fn imports(entries: &[Value], per_event: usize) -> Vec<LedgerEvent> {
        entries
            .chunks(per_event.max(1))
            .map(|chunk| LedgerEvent::Imported {
                entries: chunk.to_vec(),
            })
            .collect()
    }

    /// One `Imported` event holding the entries of
    /// [`ledger_snapshot`]`(bytes, seed)`: about `bytes` of JSON.
    pub fn import_of(bytes: usize, seed: u64) -> LedgerEvent {
        let mut ledger = ledger_snapshot(bytes, seed);
        let entries = match ledger.get_mut("entries").map(Value::take) {
            Some(Value::Array(entries)) => entries,
            _ => Vec::new(),
        };
        LedgerEvent::Imported { entries }
    }
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> String {
        match self {
            LedgerEvent::Imported { .. } => "Imported",
            LedgerEvent::Cleared => "Cleared",
            LedgerEvent::Posted(value) => value
                .get("event_type")
                .and_then(Value::as_str)
                .unwrap_or("Posted"),
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

crate::events_aggregate!(Ledger, "Ledger", LedgerEvent, Infallible, empty => Ok(()));

impl Ledger {
    /// Applies one event (the aggregate's `apply`).
    fn record(&mut self, event: LedgerEvent) {
        self.postings += 1;
        let imported = match event {
            LedgerEvent::Imported { entries } => entries,
            LedgerEvent::Cleared => {
                if let Some(Value::Array(entries)) = self.account.get_mut("entries") {
                    entries.clear();
                }
                return;
            }
            LedgerEvent::Posted(_) => return,
        };
        match &mut self.account {
            Value::Object(account) => match account.get_mut("entries") {
                Some(Value::Array(entries)) => entries.extend(imported),
                _ => {
                    account.insert("entries".to_string(), Value::Array(imported));
                }
            },
            account => *account = serde_json::json!({ "entries": imported }),
        }
    }
}
