//! Convenience constructors, with upstream `dynamo-es`'s names and signatures.

use aws_sdk_dynamodb::Client;
use cqrs_es::{Aggregate, CqrsFramework, Query};

use crate::{DynamoEventRepository, DynamoStore};

/// A `CqrsFramework` on DynamoDB through [`DynamoStore`].
pub type DynamoCqrs<A> = CqrsFramework<A, DynamoStore<A>>;

/// Defines one of upstream's constructors: `fn $name(client,
/// query_processor, $args.., services)`, a framework on the store that
/// `$store` makes of a repository on `client`.
macro_rules! upstream_constructor {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $store:expr) => {
        $(#[$doc])*
        pub fn $name<A: Aggregate>(
            client: Client,
            query_processor: Vec<Box<dyn Query<A>>>,
            $($arg: $ty,)*
            services: A::Services,
        ) -> DynamoCqrs<A> {
            let store: DynamoStore<A> = $store(DynamoEventRepository::new(client));
            CqrsFramework::new(store, query_processor, services)
        }
    };
}

upstream_constructor! {
    /// A framework that rebuilds aggregates from their events (no snapshots),
    /// on the default tables and [`Codec::default()`](crate::Codec::default).
    dynamodb_cqrs() => DynamoStore::new_event_store
}

upstream_constructor! {
    /// A framework that writes a snapshot every `snapshot_size` events.
    dynamodb_snapshot_cqrs(snapshot_size: usize) => |repo| {
        DynamoStore::new_snapshot_store(repo, snapshot_size)
    }
}

upstream_constructor! {
    /// A framework that writes a snapshot with every commit and loads from it alone.
    dynamodb_aggregate_cqrs() => DynamoStore::new_aggregate_store
}
