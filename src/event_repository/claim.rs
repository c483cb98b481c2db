//! The aggregate store's claim on a snapshot head
//! ([`EVENTS_THROUGH`]): written with the head by a
//! [`SnapshotPolicy::Always`](crate::SnapshotPolicy::Always) commit, and
//! removed by every commit that stores events without replacing the head.
//!
//! **Invariant:** a head carries `EventsThrough = CurrentSequence` only
//! while no event after `CurrentSequence` was stored by a `DynamoStore` that
//! read the head: such a commit removes the claim before it writes its
//! events (removing it is always safe: a load without it queries the events
//! after the snapshot), and a commit from a claimed state that conflicts
//! removes the claim if the head is still the one it loaded (another writer
//! stored events without removing it), so the retry reads the events.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::DynamoEventRepository;
use crate::error::{or_refused, Result};
use crate::item::{aggregate_key, n, s, AGGREGATE_TYPE_AND_ID, CURRENT_SNAPSHOT, EVENTS_THROUGH};

/// A head's claim, as a store loaded it: the head's version and the
/// sequence it claims the events reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadClaim {
    /// The head's `CurrentSnapshot`.
    pub version: usize,
    /// Its `EventsThrough`.
    pub through: usize,
}

impl DynamoEventRepository {
    /// Removes `claim` from the head of `aggregate_type:aggregate_id`, if
    /// the head still carries it at the same version; true if it did.
    pub(crate) async fn drop_claim(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        claim: HeadClaim,
    ) -> Result<bool> {
        let key = aggregate_key(aggregate_type, aggregate_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.snapshot_table)
            .key(AGGREGATE_TYPE_AND_ID, s(&key))
            .update_expression("REMOVE #through")
            .condition_expression("#version = :version AND #through = :through")
            .expression_attribute_names("#through", EVENTS_THROUGH)
            .expression_attribute_names("#version", CURRENT_SNAPSHOT)
            .expression_attribute_values(":version", n(claim.version))
            .expression_attribute_values(":through", n(claim.through))
            .send()
            .await;
        let dropped = or_refused(result, "UpdateItem", &self.snapshot_table, |err| {
            matches!(err, UpdateItemError::ConditionalCheckFailedException(_))
        })?
        .is_some();
        tracing::debug!(
            aggregate = %key,
            snapshot_table = %self.snapshot_table,
            through = claim.through,
            dropped,
            "aggregate store claim removed from the snapshot head"
        );
        Ok(dropped)
    }
}
