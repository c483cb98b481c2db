//! Convenience constructors, with upstream `dynamo-es`'s names and signatures.

use aws_sdk_dynamodb::Client;
use cqrs_es::{Aggregate, CqrsFramework, Query};

use crate::{DynamoEventRepository, DynamoStore};

/// A `CqrsFramework` on DynamoDB through [`DynamoStore`].
pub type DynamoCqrs<A> = CqrsFramework<A, DynamoStore<A>>;

/// A framework that rebuilds aggregates from their events (no snapshots),
/// on the default tables and [`Codec::default()`](crate::Codec::default).
pub fn dynamodb_cqrs<A>(
    client: Client,
    query_processor: Vec<Box<dyn Query<A>>>,
    services: A::Services,
) -> DynamoCqrs<A>
where
    A: Aggregate,
{
    let store = DynamoStore::new_event_store(DynamoEventRepository::new(client));
    CqrsFramework::new(store, query_processor, services)
}

/// A framework that writes a snapshot every `snapshot_size` events.
pub fn dynamodb_snapshot_cqrs<A>(
    client: Client,
    query_processor: Vec<Box<dyn Query<A>>>,
    snapshot_size: usize,
    services: A::Services,
) -> DynamoCqrs<A>
where
    A: Aggregate,
{
    let store = DynamoStore::new_snapshot_store(DynamoEventRepository::new(client), snapshot_size);
    CqrsFramework::new(store, query_processor, services)
}

/// A framework that writes a snapshot with every commit and loads from it alone.
pub fn dynamodb_aggregate_cqrs<A>(
    client: Client,
    query_processor: Vec<Box<dyn Query<A>>>,
    services: A::Services,
) -> DynamoCqrs<A>
where
    A: Aggregate,
{
    let store = DynamoStore::new_aggregate_store(DynamoEventRepository::new(client));
    CqrsFramework::new(store, query_processor, services)
}
