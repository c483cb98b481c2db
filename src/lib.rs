//! dynamo-es
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
mod cqrs;
mod error;
mod event_repository;
pub mod item;
pub mod recode;
pub mod size;
mod snapshot;
mod store;
mod stream;
pub mod tables;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod view_repository;

pub use codec::Codec;
pub use cqrs::{dynamodb_aggregate_cqrs, dynamodb_cqrs, dynamodb_snapshot_cqrs, DynamoCqrs};
pub use error::{BoxError, Error, Limit, Result};
pub use event_repository::{
    DynamoEventRepository, DEFAULT_EVENT_TABLE, DEFAULT_SNAPSHOT_TABLE,
    DEFAULT_STREAMING_CHANNEL_SIZE,
};
pub use store::{DynamoAggregateContext, DynamoStore, SnapshotPolicy};
pub use tables::{create_event_tables, create_view_table};
pub use view_repository::DynamoViewRepository;
