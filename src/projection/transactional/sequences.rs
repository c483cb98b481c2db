//! The per-aggregate applied sequences of a transactional projection, kept
//! in the checkpoint table as items keyed
//! `{projection}#!seq#{aggregate type}#{aggregate id}` (attributes
//! `Projection`, `LastSequence`, `UpdatedAt`).
//!
//! **Invariant:** an aggregate's item is written only inside the
//! transaction that applies its events, conditionally on holding the value
//! read before the handler ran; so two sources applying one aggregate's
//! events can never both commit, and an event at or below the stored
//! sequence is never applied again.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use crate::item::{get_n, get_s, n, s, LAST_SEQUENCE};
use crate::projection::fields::{now_millis, PROJECTION, UPDATED_AT};
use crate::projection::Error;
use crate::tables::requests::get_items;
use crate::tables::LEASE_KEY;

/// Where a projection keeps its aggregates' applied sequences.
#[derive(Debug, Clone)]
pub(super) struct Sequences {
    pub client: Client,
    pub table: String,
    pub projection: String,
}

impl Sequences {
    /// The item key of `aggregate_id`'s applied sequence.
    pub fn key(&self, aggregate_type: &str, aggregate_id: &str) -> String {
        format!("{}#!seq#{aggregate_type}#{aggregate_id}", self.projection)
    }

    /// The applied sequence of each aggregate of `ids` that has one
    /// (consistent `BatchGetItem`s of at most 100 keys, unprocessed keys
    /// asked again).
    pub async fn read(
        &self,
        aggregate_type: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, usize>, Error> {
        let by_key: HashMap<String, &str> = ids
            .iter()
            .map(|id| (self.key(aggregate_type, id), *id))
            .collect();
        let keys: Vec<String> = by_key.keys().cloned().collect();
        let mut applied = HashMap::new();
        for item in get_items(&self.client, &self.table, LEASE_KEY, &keys).await? {
            let key = get_s(&item, "<sequence item>", LEASE_KEY)?;
            if let Some(id) = by_key.get(key) {
                applied.insert((*id).to_string(), get_n(&item, key, LAST_SEQUENCE)?);
            }
        }
        Ok(applied)
    }

    /// The write recording `sequence` as `aggregate_id`'s applied
    /// sequence, conditional on the stored one being `read` (on none being
    /// stored, if `None`).
    pub fn write(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        read: Option<usize>,
        sequence: usize,
    ) -> Result<TransactWriteItem, Error> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(LEASE_KEY, s(self.key(aggregate_type, aggregate_id)))
            .update_expression("SET #seq = :seq, #projection = :projection, #updated = :now")
            .expression_attribute_names("#seq", LAST_SEQUENCE)
            .expression_attribute_names("#projection", PROJECTION)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_values(":seq", n(sequence))
            .expression_attribute_values(":projection", s(&self.projection))
            .expression_attribute_values(":now", n(now_millis()));
        update = match read {
            None => update.condition_expression("attribute_not_exists(#seq)"),
            Some(read) => update
                .condition_expression("#seq = :read")
                .expression_attribute_values(":read", AttributeValue::N(read.to_string())),
        };
        let update = update.build().map_err(crate::Error::from)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
