//! Projections fed from the events table's DynamoDB Stream, outside the
//! process that committed the events.
//!
//! Every commit inserts event items into the events table; with a stream
//! (view type `NEW_IMAGE`) enabled on it, each insert becomes a stream
//! record. This module turns those records into cqrs-es
//! [`EventEnvelope`]s and dispatches them to projections:
//!
//! * [`ChangeRecord`] is one stream record, built from an
//!   `aws-sdk-dynamodbstreams` [`Record`](aws_sdk_dynamodbstreams::types::Record)
//!   ([`ChangeRecord::from_stream`]) or from a Lambda event.
//! * [`EventDecoder`] decodes the inserts of event items of one aggregate
//!   type, in any codec (dictionary-compressed payloads too: build it with
//!   [`EventDecoder::from_repository`] so it loads the zstd dictionaries a
//!   batch references), with the store's upcasters; other records are
//!   skipped, and an event item that cannot be decoded is an
//!   [`Error::Decode`] naming its key ([`DecodeErrorPolicy`] decides whether
//!   the dispatch stops there or skips it).
//! * [`Dispatcher`] hands the events, in stream order, to every
//!   [`Projection`] (any cqrs-es `Query` through [`QueryProjection`]).
//! * [`Projector`] reads every shard with checkpoints and leases in a
//!   [`CheckpointStore`]; `lambda::run` (feature `lambda`) serves a
//!   Lambda trigger instead; [`Rebuild`] replays the events table into a
//!   projection and hands it to the projector with no gap.
//!
//! Guarantees:
//!
//! * **Per-aggregate order.** DynamoDB Streams orders the records of one
//!   item key within a shard, and all events of one aggregate share a
//!   partition key; the dispatcher never reorders records, so each
//!   projection sees an aggregate's events in sequence order. Consecutive
//!   events of one aggregate reach a projection in one call.
//! * **At-least-once.** A batch is reported done only when every projection
//!   accepted it. A failed batch reports the first record not known to be
//!   applied; whoever retries from there (the projector, Lambda) may deliver
//!   records again that some projections already applied.
//! * **Exactly-once effect for views keyed by aggregate id** with
//!   [`ViewProjection`]: the view item stores the last applied aggregate
//!   sequence and skips what it has seen, so redelivery never applies an
//!   event twice.
//! * **Exactly-once effect for read models of any shape** with a
//!   [`TransactionalProjection`] run by [`Transactional`]
//!   ([`Dispatcher::with_transactional`]): its writes, each aggregate's
//!   applied sequence and the shard's position commit in one transaction.
//!   A plain [`Projection`] fed by many aggregates is at-least-once.
//! * Snapshot and chunk items live in the snapshot table and never reach a
//!   projection.
//!
//! A projector keeping an exactly-once view, until Ctrl-C:
//!
//! ```no_run
//! use cqrs_es::{Aggregate, View};
//! use dynamo_es::aws_sdk_dynamodb::Client;
//! use dynamo_es::projection::{
//!     stream_arn, CheckpointStore, Dispatcher, EventDecoder, Projector, ViewProjection,
//! };
//! use dynamo_es::tables::{create_checkpoint_table, create_event_tables_with, TableOptions};
//! use dynamo_es::{create_view_table, DynamoEventRepository, DynamoViewRepository};
//!
//! async fn project<A, V>(config: &aws_config::SdkConfig) -> Result<(), Box<dyn std::error::Error>>
//! where
//!     A: Aggregate + 'static,
//!     V: View<A> + 'static,
//! {
//!     let client = Client::new(config);
//!     // The events table with a NEW_IMAGE stream, a view table, a checkpoint table.
//!     let stream = TableOptions::default().with_stream(true);
//!     create_event_tables_with(&client, "Events", "Snapshots", stream).await?;
//!     create_view_table(&client, "account_balances").await?;
//!     create_checkpoint_table(&client, "Checkpoints").await?;
//!
//!     let views = DynamoViewRepository::<V, A>::new("account_balances", client.clone());
//!     // Decodes as the repository reads (codec, zstd dictionaries).
//!     let events = DynamoEventRepository::new(client.clone()).with_tables("Events", "Snapshots");
//!     let dispatcher = Dispatcher::new(EventDecoder::<A>::from_repository(&events))
//!         .with_projection(ViewProjection::new(views));
//!     // Checkpoints and leases of the projection "account_balances".
//!     let checkpoints = CheckpointStore::new(client.clone(), "Checkpoints", "account_balances");
//!     let streams = dynamo_es::aws_sdk_dynamodbstreams::Client::new(config);
//!     let arn = stream_arn(&client, "Events").await?;
//!     let projector = Projector::new(streams, &arn, checkpoints, dispatcher);
//!     let lag = projector.lag(); // per-shard lag, readable while it runs
//!     projector
//!         .run(async {
//!             let _ = tokio::signal::ctrl_c().await;
//!         })
//!         .await?;
//!     eprintln!("stopped; largest lag {:?}", lag.max_lag());
//!     Ok(())
//! }
//! ```

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope, Query};

mod batch;
mod checkpoint;
mod decode;
mod dispatch;
mod error;
pub mod feed;
mod fields;
mod heartbeat;
mod lag;
mod lease;
mod observed;
mod origin;
mod projector;
mod reader;
mod rebuild;
mod reset;
mod shards;
mod status;
mod transactional;
mod typed_view;
mod view;

#[cfg(feature = "lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
pub mod lambda;

pub use checkpoint::{
    CheckpointStore, RebuildMarker, ShardCheckpoint, ShardInfo, DEFAULT_LEASE_DURATION,
};
pub use decode::{image_from_stream, DeletedAggregate, EventDecoder};
pub use dispatch::{DecodeErrorPolicy, DispatchFailure, DispatchReport, Dispatcher};
pub use error::Error;
pub use lag::{LagHandle, ProjectorStats, ShardLag};
pub use lease::Lease;
pub use projector::{
    stream_arn, Projector, DEFAULT_BATCH_SIZE, DEFAULT_MAX_SHARDS, DEFAULT_ROTATION,
};
pub use reader::StartPosition;
pub use rebuild::{
    Rebuild, RebuildProgress, RebuildReport, DEFAULT_REBUILD_SEGMENTS, DEFAULT_SAFETY_MARGIN,
};
pub use reset::Reset;
pub use status::{CheckpointLag, LagSource, ProjectionStatus, ShardStatus};
pub use transactional::{Transactional, TransactionalProjection, DEFAULT_TRANSACTION_ATTEMPTS};
pub use typed_view::TypedViews;
pub use view::{ViewProjection, DEFAULT_VIEW_ATTEMPTS, LAST_SEQUENCE};

/// A DynamoDB item image, as the `aws-sdk-dynamodb` crate types it.
pub type Image = HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// What a stream record did to its item.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The item was created (a committed event).
    Insert,
    /// The item was replaced or updated.
    Modify,
    /// The item was deleted.
    Remove,
}

/// One stream record, reduced to what a projection needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    /// The shard the record was read from (`""` if unknown).
    pub shard_id: String,
    /// The record's sequence number in its shard.
    pub sequence_number: String,
    /// What the record did.
    pub event_name: ChangeKind,
    /// When the change was made, approximately (the stream rounds it); the
    /// lag is now minus this.
    pub created: Option<SystemTime>,
    /// The item's key attributes.
    pub keys: Image,
    /// The item after the change (with view type `NEW_IMAGE` or
    /// `NEW_AND_OLD_IMAGES`; `None` for removes).
    pub new_image: Option<Image>,
}

impl ChangeRecord {
    /// Builds a record from one `GetRecords` record of shard `shard_id`.
    ///
    /// Fails with [`Error::InvalidRecord`] if the record has no sequence
    /// number, keys or operation, or carries an attribute type or operation
    /// this SDK version does not know.
    pub fn from_stream(
        shard_id: &str,
        record: aws_sdk_dynamodbstreams::types::Record,
    ) -> Result<Self, Error> {
        use aws_sdk_dynamodbstreams::types::OperationType;
        let invalid = |record: &str, reason: String| Error::InvalidRecord {
            record: format!("{record} of shard {shard_id}"),
            reason,
        };
        let event_id = record.event_id.unwrap_or_default();
        let Some(change) = record.dynamodb else {
            return Err(invalid(&event_id, "no `dynamodb` part".into()));
        };
        let Some(sequence_number) = change.sequence_number else {
            return Err(invalid(&event_id, "no sequence number".into()));
        };
        let event_name = match record.event_name {
            Some(OperationType::Insert) => ChangeKind::Insert,
            Some(OperationType::Modify) => ChangeKind::Modify,
            Some(OperationType::Remove) => ChangeKind::Remove,
            other => {
                return Err(invalid(
                    &sequence_number,
                    format!("unknown event name {other:?}"),
                ))
            }
        };
        let Some(keys) = change.keys else {
            return Err(invalid(&sequence_number, "no keys".into()));
        };
        let with_record = |err: Error| match err {
            Error::InvalidRecord { reason, .. } => invalid(&sequence_number, reason),
            other => other,
        };
        let keys = image_from_stream(keys).map_err(with_record)?;
        let new_image = change
            .new_image
            .map(image_from_stream)
            .transpose()
            .map_err(with_record)?;
        Ok(ChangeRecord {
            shard_id: shard_id.to_string(),
            created: change
                .approximate_creation_date_time
                .and_then(|time| SystemTime::try_from(time).ok()),
            sequence_number,
            event_name,
            keys,
            new_image,
        })
    }
}

/// A projection that can fail: it receives the events of one aggregate, in
/// sequence order, and reports whether it applied them.
///
/// cqrs-es's [`Query::dispatch`] cannot report a failure, so the projector
/// and the Lambda adapter dispatch to this trait; wrap a `Query` in
/// [`QueryProjection`] (or use [`Dispatcher::with_query`]).
///
/// Events may be delivered again after a failure or a restart (at-least-once):
/// a projection either tolerates that or deduplicates by
/// `(aggregate_id, sequence)`, as [`ViewProjection`] does.
#[async_trait]
pub trait Projection<A: Aggregate>: Send + Sync {
    /// Applies `events`, consecutive events of `aggregate_id` in sequence
    /// order. An error stops the dispatch: these events and every later one
    /// are delivered again.
    async fn project(&self, aggregate_id: &str, events: &[EventEnvelope<A>]) -> Result<(), Error>;

    /// Told that aggregate `aggregate_id` was deleted
    /// ([`DynamoEventRepository::delete_aggregate`](crate::DynamoEventRepository::delete_aggregate)):
    /// its tombstone reached the stream after every event it had
    /// (`last_sequence` is the last one's). The default does nothing; a
    /// view deletes or blanks its rows here. Like events, it may be
    /// delivered again; an error stops the dispatch and it is delivered
    /// again.
    async fn deleted(&self, aggregate_id: &str, last_sequence: usize) -> Result<(), Error> {
        let _ = (aggregate_id, last_sequence);
        Ok(())
    }
}

/// Any cqrs-es [`Query`] as a [`Projection`] that never fails (a `Query`
/// cannot report failure, so a failed write inside it is lost to the
/// projector: prefer a [`Projection`] that returns its errors).
#[derive(Debug, Clone)]
pub struct QueryProjection<Q>(pub Q);

#[async_trait]
impl<A, Q> Projection<A> for QueryProjection<Q>
where
    A: Aggregate,
    Q: Query<A>,
{
    async fn project(&self, aggregate_id: &str, events: &[EventEnvelope<A>]) -> Result<(), Error> {
        self.0.dispatch(aggregate_id, events).await;
        Ok(())
    }
}
