//! What every read of the events table treats as gone: an aggregate's
//! tombstone (it was deleted, see `delete`) and items past their expiry
//! (see [`crate::expiry`]), and the time to live a repository gives each
//! aggregate type.
//!
//! **Invariant:** a read returns an aggregate whole or not at all. Its
//! tombstone is [`Error::AggregateDeleted`]; events that are all past their
//! expiry are [`Error::AggregateExpired`]; expired events before live ones
//! (a half aggregate) are [`Error::PartlyExpired`], never skipped. A replay
//! of every aggregate of a type skips tombstones and expired aggregates.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use cqrs_es::persist::SerializedEvent;

use super::DynamoEventRepository;
use crate::error::{Error, Result};
use crate::expiry::{is_expired_at, Clock};
use crate::item::{
    get_n, get_s, is_tombstone, item_to_event, Item, AGGREGATE_ID, AGGREGATE_ID_SEQUENCE,
    AGGREGATE_TYPE, AGGREGATE_TYPE_AND_ID,
};

impl DynamoEventRepository {
    /// Events and snapshots of `aggregate_type` expire `ttl` after they are
    /// written: each item carries [`EXPIRES_AT`](crate::item::EXPIRES_AT)
    /// (epoch seconds), which DynamoDB's Time to Live deletes by once the
    /// table has it enabled ([`tables::enable_ttl`](crate::tables::enable_ttl)).
    /// Every read treats an item past it as gone, before DynamoDB removes it
    /// (up to days later). Choose a `ttl` longer than an aggregate's active
    /// life: an aggregate whose first events expired while later ones have
    /// not no longer loads ([`Error::PartlyExpired`]), unless a snapshot
    /// after them covers them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use aws_sdk_dynamodb::Client;
    /// use dynamo_es::DynamoEventRepository;
    ///
    /// fn carts(client: Client) -> DynamoEventRepository {
    ///     DynamoEventRepository::new(client).with_expiry("Cart", Duration::from_secs(30 * 86_400))
    /// }
    /// ```
    pub fn with_expiry(self, aggregate_type: &str, ttl: Duration) -> Self {
        DynamoEventRepository {
            expiry: self.expiry.with_type(aggregate_type, ttl),
            ..self
        }
    }

    /// Takes the time from `clock` (for tests): the expiry written and the
    /// one reads compare with.
    pub fn with_clock(self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        let clock: Clock = std::sync::Arc::new(clock);
        DynamoEventRepository {
            expiry: self.expiry.with_clock(clock),
            ..self
        }
    }

    /// The time to live of `aggregate_type`'s events and snapshots, if it
    /// has one ([`with_expiry`](Self::with_expiry)).
    pub fn expiry_of(&self, aggregate_type: &str) -> Option<Duration> {
        self.expiry.ttl_of(aggregate_type)
    }

    /// The expiry settings and the clock.
    pub(crate) fn expiry(&self) -> &crate::expiry::Expiry {
        &self.expiry
    }

    /// Decodes one aggregate's event items, oldest first, naming the item
    /// on error; each item is dropped once decoded. A tombstone among them
    /// is [`Error::AggregateDeleted`]; expired items are
    /// [`Error::AggregateExpired`] if all are, else [`Error::PartlyExpired`].
    pub(crate) fn decode_events(
        &self,
        items: impl IntoIterator<Item = Item>,
    ) -> Result<Vec<SerializedEvent>> {
        let items: Vec<Item> = items.into_iter().collect();
        if let Some(tombstone) = items.iter().find(|item| is_tombstone(item)) {
            return Err(self.deleted_error(tombstone));
        }
        let now = self.expiry.now();
        if let Some(last) = items.iter().rev().find(|item| is_expired_at(item, now)) {
            let all = items.iter().all(|item| is_expired_at(item, now));
            return Err(expired_error(last, &self.event_table, all));
        }
        items
            .into_iter()
            .map(|item| item_to_event(&item, &self.codec))
            .collect()
    }

    /// What a replay does with each item: the events of `aggregate_type`
    /// (every type if `None`: the replay of one aggregate, whose tombstone
    /// is then an error). Skips tombstones and expired items of a replay of
    /// a type, and fails on a live event after an expired one of the same
    /// aggregate.
    pub(crate) fn replay_filter(
        &self,
        aggregate_type: Option<String>,
    ) -> impl FnMut(&Item) -> Option<Result<SerializedEvent>> + Send + 'static {
        let codec = self.codec.clone();
        let table = self.event_table.clone();
        let clock = self.expiry.clock().cloned();
        let mut expired = HashSet::new();
        move |item| {
            if let Some(wanted) = &aggregate_type {
                // Scans are filtered by the server; this guards the contract.
                if !matches!(item.get(AGGREGATE_TYPE), Some(AttributeValue::S(t)) if t == wanted) {
                    return None;
                }
                // Every aggregate of the type: a deleted one has no events
                // left to replay (and its tombstone is none).
                if is_tombstone(item) {
                    return None;
                }
            } else if is_tombstone(item) {
                return Some(Err(super::delete::deleted_error(item, &table)));
            }
            let key = match item.get(AGGREGATE_TYPE_AND_ID) {
                Some(AttributeValue::S(key)) => key.as_str(),
                _ => "",
            };
            if is_expired_at(item, crate::expiry::now(clock.as_ref())) {
                expired.insert(key.to_string());
                return None;
            }
            if expired.contains(key) {
                return Some(Err(expired_error(item, &table, false)));
            }
            Some(item_to_event(item, &codec))
        }
    }
}

/// [`Error::AggregateExpired`] (`all`) or [`Error::PartlyExpired`] for the
/// aggregate of `item`, naming `item`'s sequence.
fn expired_error(item: &Item, table: &str, all: bool) -> Error {
    let aggregate_type: Box<str> = get_s(item, "", AGGREGATE_TYPE).unwrap_or_default().into();
    let id: Box<str> = get_s(item, "", AGGREGATE_ID).unwrap_or_default().into();
    let sequence = get_n(item, "", AGGREGATE_ID_SEQUENCE).unwrap_or(0);
    let table: Box<str> = table.into();
    if all {
        Error::AggregateExpired {
            aggregate_type,
            id,
            last_sequence: sequence,
            table,
        }
    } else {
        Error::PartlyExpired {
            aggregate_type,
            id,
            sequence,
            table,
        }
    }
}
