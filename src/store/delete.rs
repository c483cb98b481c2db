//! [`DynamoStore::delete_aggregate`]: the repository's deletion of an
//! aggregate, with the store's own copies of it dropped.
//!
//! **Invariant:** once the deletion returns, this store holds nothing of the
//! aggregate: no hot-cache entry or handed-off state (dropped before and
//! after, as a command may race the deletion) and no snapshot hint, so its
//! next load reads the table and finds the tombstone.

use cqrs_es::Aggregate;

use super::DynamoStore;
use crate::error::Result;

impl<A: Aggregate> DynamoStore<A> {
    /// Deletes the aggregate `aggregate_id`
    /// ([`DynamoEventRepository::delete_aggregate`](crate::DynamoEventRepository::delete_aggregate): a tombstone keeping its
    /// last sequence, then its events and snapshot items in batches), after
    /// dropping it from this store's hot cache. Later loads and commands on
    /// it are [`Error::AggregateDeleted`](crate::Error::AggregateDeleted).
    pub async fn delete_aggregate(&self, aggregate_id: &str) -> Result<crate::Deletion> {
        self.forget_deleted(aggregate_id);
        let key = crate::item::aggregate_key(A::TYPE, aggregate_id);
        self.repo.hints().forget(&key);
        let deleted = self.repo.delete_aggregate::<A>(aggregate_id).await;
        // A command that raced the deletion may have cached its state.
        self.forget_deleted(aggregate_id);
        deleted
    }
}
