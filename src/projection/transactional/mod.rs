//! Transactional projections: read models of any shape, exactly once.
//!
//! A [`TransactionalProjection`] turns events into DynamoDB writes
//! (`Put`, `Update`, `Delete`, `ConditionCheck` on any table); the
//! [`Transactional`] adapter commits them, with each aggregate's applied
//! sequence and (from the [`Projector`](super::Projector)) the shard's
//! position, in one `TransactWriteItems` per part of a batch.
//!
//! **Invariant:** an event's writes are committed in the same transaction
//! as its aggregate's applied sequence (conditional on the sequence read
//! before the handler ran) and as the position past it (conditional on the
//! lease's owner and the previous checkpoint): so a redelivery, a restart,
//! a takeover, a retried Lambda batch or a rebuild overlapping the live
//! stream never applies an event's effect twice, and a position never
//! moves past an event whose writes were not committed.
//!
//! Orders per customer, exactly once, from the projector:
//!
//! ```no_run
//! use std::collections::BTreeMap;
//!
//! use async_trait::async_trait;
//! use cqrs_es::{Aggregate, EventEnvelope};
//! use dynamo_es::aws_sdk_dynamodb::types::TransactWriteItem;
//! use dynamo_es::aws_sdk_dynamodb::Client;
//! use dynamo_es::create_view_table;
//! use dynamo_es::projection::{
//!     stream_arn, CheckpointStore, Dispatcher, Error, EventDecoder, Projector, Transactional,
//!     TransactionalProjection, TypedViews,
//! };
//! use dynamo_es::tables::create_checkpoint_table;
//! use dynamo_es::DynamoEventRepository;
//! use serde::{Deserialize, Serialize};
//!
//! /// A customer's orders (order ids are `{customer}/{order}`): events per order.
//! #[derive(Default, Serialize, Deserialize)]
//! struct CustomerOrders {
//!     events_per_order: BTreeMap<String, u64>,
//! }
//!
//! struct OrdersPerCustomer {
//!     views: TypedViews<CustomerOrders>,
//! }
//!
//! #[async_trait]
//! impl<A: Aggregate> TransactionalProjection<A> for OrdersPerCustomer {
//!     async fn writes(&self, events: &[EventEnvelope<A>]) -> Result<Vec<TransactWriteItem>, Error> {
//!         // One write per item and call: group the events by view first.
//!         let mut by_customer: BTreeMap<&str, Vec<&EventEnvelope<A>>> = BTreeMap::new();
//!         for event in events {
//!             let customer = event.aggregate_id.split('/').next().unwrap_or_default();
//!             by_customer.entry(customer).or_default().push(event);
//!         }
//!         let mut writes = Vec::new();
//!         for (customer, events) in by_customer {
//!             let (mut view, version) = match self.views.load_versioned(customer).await? {
//!                 Some((view, version)) => (view, Some(version)),
//!                 None => (CustomerOrders::default(), None),
//!             };
//!             for event in events {
//!                 *view.events_per_order.entry(event.aggregate_id.clone()).or_default() += 1;
//!             }
//!             // Conditional on the version read: a concurrent source makes it retry.
//!             writes.push(self.views.save_write(customer, &view, version)?);
//!         }
//!         Ok(writes)
//!     }
//! }
//!
//! async fn project<A: Aggregate + 'static>(
//!     config: &aws_config::SdkConfig,
//! ) -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::new(config);
//!     create_view_table(&client, "customer_orders").await?;
//!     create_checkpoint_table(&client, "Checkpoints").await?;
//!     // The projector's store: its table also keeps the applied sequences.
//!     let checkpoints = CheckpointStore::new(client.clone(), "Checkpoints", "customer_orders");
//!     let views = TypedViews::new(client.clone(), "customer_orders");
//!     let events = DynamoEventRepository::new(client.clone()).with_tables("Events", "Snapshots");
//!     let dispatcher = Dispatcher::new(EventDecoder::<A>::from_repository(&events))
//!         .with_transactional(Transactional::new(OrdersPerCustomer { views }, &checkpoints));
//!     // The same dispatcher serves `lambda::run` and `Rebuild`.
//!     let streams = dynamo_es::aws_sdk_dynamodbstreams::Client::new(config);
//!     let arn = stream_arn(&client, "Events").await?;
//!     Projector::new(streams, &arn, checkpoints, dispatcher)
//!         .run(async {
//!             let _ = tokio::signal::ctrl_c().await;
//!         })
//!         .await?;
//!     Ok(())
//! }
//! ```

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::TransactWriteItem;
use aws_sdk_dynamodb::Client;
use cqrs_es::{Aggregate, EventEnvelope};

use super::batch::{BatchCommit, Run, ShardPosition};
use super::{ChangeRecord, CheckpointStore, Error};
use crate::size::{MAX_TRANSACTION_ITEMS, MAX_TRANSACTION_SIZE};

mod commit;
mod sequences;

use commit::{position_write, send, write_size, Answer};
use sequences::Sequences;

/// How many times a part is committed when another source changed one of
/// its aggregates' sequences, a typed view it read, or its position
/// meanwhile (with a random backoff doubling from 5 ms between tries).
pub const DEFAULT_TRANSACTION_ATTEMPTS: u32 = 10;

/// A projection whose effect is a set of DynamoDB writes, committed
/// exactly once (run it through [`Transactional`] and
/// [`Dispatcher::with_transactional`](super::Dispatcher::with_transactional)).
///
/// The handler gets a slice of envelopes: one part of a batch, each
/// aggregate's events in sequence order (the aggregates interleaved as
/// the stream delivered them), events already applied left out. It returns
/// the writes that apply them all. It may read (for example with
/// [`TypedViews::load`](super::TypedViews::load)) but must not write
/// itself: the writes are committed together, or not at all.
///
/// DynamoDB refuses a transaction with two operations on one item: the
/// handler must merge all its changes to one item within a call into one
/// write (one `Update` adding 3 to a counter, not three adding 1), or the
/// part fails with [`Error::TransactionDuplicateItem`]. The same call may
/// be made again with a smaller slice (when the writes do not fit in one
/// transaction) or after a concurrent source applied some of the events:
/// the handler must not keep state of its own between calls.
///
/// A condition the handler writes (a `ConditionCheck`, or a condition on a
/// write) that fails refuses its part: [`Error::TransactionRefused`] names
/// the first event of the refused aggregate, and every part before it is
/// committed.
///
/// An aggregate's deletion (see
/// [`delete_aggregate`](crate::DynamoEventRepository::delete_aggregate))
/// comes to [`deleted`](Self::deleted), after every event of it, in a
/// transaction of its own: its writes, and the tombstone's sequence as the
/// aggregate's applied one, so it is applied exactly once too.
#[async_trait]
pub trait TransactionalProjection<A: Aggregate>: Send + Sync {
    /// The writes that apply `events`.
    async fn writes(&self, events: &[EventEnvelope<A>]) -> Result<Vec<TransactWriteItem>, Error>;

    /// The writes that apply the deletion of `aggregate_id`, whose last
    /// event was `last_sequence` (every one of them applied before): for
    /// example a `Delete` of its view, or an `Update` taking it out of a
    /// view of many aggregates. The default writes nothing (the deletion is
    /// still recorded as applied).
    async fn deleted(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<TransactWriteItem>, Error> {
        let _ = (aggregate_id, last_sequence);
        Ok(Vec::new())
    }
}

/// A [`TransactionalProjection`] made a projection every source runs: the
/// [`Projector`](super::Projector), the Lambda adapter and
/// [`Rebuild`](super::Rebuild), through
/// [`Dispatcher::with_transactional`](super::Dispatcher::with_transactional).
///
/// Per batch it reads each aggregate's applied sequence from the
/// checkpoint table (items `{projection}#!seq#{aggregate type}#{id}`, one
/// `BatchGetItem` per 100 aggregates), drops the events at or below it,
/// calls the handler, and commits its writes, the new sequences
/// (conditional on the values read) and the shard's position (from the
/// projector: conditional on the lease's owner and previous checkpoint) in
/// one `TransactWriteItems`. A batch whose writes exceed one transaction
/// (100 items, 4 MB) is split at aggregate boundaries, the handler called
/// again on each part, each part committing its own position; one
/// aggregate's events that alone do not fit are
/// [`Error::TransactionTooLarge`].
///
/// Cost: a transactional write costs 2 WCU per KB of each item, the
/// sequence items and the position included (see the projections guide).
///
/// The checkpoint store gives the table and the projection's name: use the
/// projector's own store, so a [`Reset`](super::Reset) of the projection
/// also forgets its applied sequences.
pub struct Transactional<A: Aggregate, P> {
    projection: Arc<P>,
    sequences: Sequences,
    attempts: u32,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, P> std::fmt::Debug for Transactional<A, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactional")
            .field("table", &self.sequences.table)
            .field("projection", &self.sequences.projection)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, P: TransactionalProjection<A>> Transactional<A, P> {
    /// `projection`, keeping its applied sequences in `checkpoints`'
    /// table under its projection name.
    pub fn new(projection: P, checkpoints: &CheckpointStore) -> Self {
        Transactional {
            projection: Arc::new(projection),
            sequences: Sequences {
                client: checkpoints.client.clone(),
                table: checkpoints.table().to_string(),
                projection: checkpoints.projection().to_string(),
            },
            attempts: DEFAULT_TRANSACTION_ATTEMPTS,
            _aggregate: PhantomData,
        }
    }

    /// How many times a part is committed when a concurrent source keeps
    /// changing its aggregates' sequences (at least 1; default
    /// [`DEFAULT_TRANSACTION_ATTEMPTS`]).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    fn client(&self) -> &Client {
        &self.sequences.client
    }
}

/// How one part's commit ended.
enum Part {
    /// Committed (or nothing left to commit): the position written, if any.
    Done(Option<String>),
    /// Its writes do not fit in one transaction.
    TooLarge { items: usize, bytes: usize },
}

#[async_trait]
impl<A, P> BatchCommit<A> for Transactional<A, P>
where
    A: Aggregate + 'static,
    P: TransactionalProjection<A> + 'static,
{
    async fn commit(
        &self,
        records: &[ChangeRecord],
        runs: &[Run<A>],
        end: usize,
        mut position: Option<ShardPosition>,
    ) -> Result<Option<String>, (usize, Error)> {
        let budget = MAX_TRANSACTION_ITEMS - usize::from(position.is_some());
        let mut committed = None;
        let mut single = false;
        let mut start = 0;
        while start < runs.len() {
            let mut stop = if single {
                start + 1
            } else {
                first_part(runs, start, budget)
            };
            loop {
                let part = runs.get(start..stop).unwrap_or_default();
                let last = match runs.get(stop) {
                    Some(next) => next.first_record.saturating_sub(1),
                    None => end.saturating_sub(1),
                };
                let first = runs.get(start).map_or(0, |run| run.first_record);
                match self.commit_part(records, part, last, &mut position).await {
                    Ok(Part::Done(written)) => {
                        committed = written.or(committed);
                        start = stop;
                        break;
                    }
                    Ok(Part::TooLarge { items, bytes }) if stop - start == 1 => {
                        let run = &part[0];
                        return Err((first, self.too_large(run, items, bytes)));
                    }
                    Ok(Part::TooLarge { .. }) => stop = start + (stop - start) / 2,
                    Err(Error::TransactionRefused { .. }) if stop - start > 1 => {
                        // Find the refused aggregate: commit run by run.
                        single = true;
                        stop = start + 1;
                    }
                    Err(error) => return Err((first, error)),
                }
            }
        }
        Ok(committed)
    }
}

/// A random wait of up to 5 ms times 2^`attempt` (at most about 1.3 s),
/// so two sources contending for one aggregate's events stop colliding.
fn backoff(attempt: u32) -> std::time::Duration {
    let ceiling = 5u64 << attempt.min(8);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| u64::from(since.subsec_nanos()))
        .unwrap_or_default();
    std::time::Duration::from_millis(ceiling / 2 + nanos % (ceiling / 2 + 1))
}

/// The end of the largest part from `start` whose aggregates' sequence
/// items fit in `budget` items. A deletion's run is a part of its own: the
/// handler's deletion then sees every earlier event applied, and no write
/// of it meets one of the events' in a transaction.
fn first_part<A: Aggregate>(runs: &[Run<A>], start: usize, budget: usize) -> usize {
    let mut aggregates = HashSet::new();
    let mut stop = start;
    for run in runs.iter().skip(start) {
        if run.deleted.is_some() {
            return if stop == start { start + 1 } else { stop };
        }
        aggregates.insert(run.aggregate_id.as_str());
        if aggregates.len() >= budget && stop > start {
            break;
        }
        stop += 1;
    }
    stop
}

impl<A: Aggregate + 'static, P: TransactionalProjection<A> + 'static> Transactional<A, P> {
    /// Commits `runs` with the position at record `last`, reading the
    /// sequences again and retrying while other sources interfere.
    async fn commit_part(
        &self,
        records: &[ChangeRecord],
        runs: &[Run<A>],
        last: usize,
        position: &mut Option<ShardPosition>,
    ) -> Result<Part, Error> {
        let ids: Vec<&str> = {
            let mut seen = HashSet::new();
            runs.iter()
                .map(|run| run.aggregate_id.as_str())
                .filter(|id| seen.insert(*id))
                .collect()
        };
        let record = records.get(last);
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let applied = self.sequences.read(A::TYPE, &ids).await?;
            let pending =
                |id: &str, sequence: usize| applied.get(id).is_none_or(|done| sequence > *done);
            let events: Vec<EventEnvelope<A>> = runs
                .iter()
                .flat_map(|run| run.events.iter())
                .filter(|event| pending(&event.aggregate_id, event.sequence))
                .cloned()
                .collect();
            // A deletion is applied at its tombstone's sequence.
            let deletions: Vec<(&str, usize)> = runs
                .iter()
                .filter_map(|run| Some((run.aggregate_id.as_str(), run.deleted?)))
                .filter(|(id, last)| pending(id, last + 1))
                .collect();
            let mut newest: HashMap<&str, usize> = HashMap::new();
            let applies = events
                .iter()
                .map(|event| (event.aggregate_id.as_str(), event.sequence))
                .chain(deletions.iter().map(|(id, last)| (*id, last + 1)));
            for (id, sequence) in applies {
                let entry = newest.entry(id).or_default();
                *entry = (*entry).max(sequence);
            }
            // The first event or deletion applied, to name in errors.
            let Some(first) = events
                .first()
                .map(|event| (event.aggregate_id.as_str(), event.sequence))
                .or_else(|| deletions.first().map(|(id, last)| (*id, last + 1)))
            else {
                return Ok(Part::Done(None));
            };
            let mut writes = if events.is_empty() {
                Vec::new()
            } else {
                self.projection.writes(&events).await?
            };
            for (id, last) in &deletions {
                writes.extend(self.projection.deleted(id, *last).await?);
            }
            let handler = writes.len();
            for (id, sequence) in &newest {
                let read = applied.get(*id).copied();
                writes.push(self.sequences.write(A::TYPE, id, read, *sequence)?);
            }
            let moved = match (position.as_ref(), record) {
                (Some(position), Some(record)) => {
                    writes.push(position_write(
                        position,
                        &record.sequence_number,
                        record.created,
                    )?);
                    true
                }
                _ => false,
            };
            let bytes: usize = writes.iter().map(write_size).sum();
            if writes.len() > MAX_TRANSACTION_ITEMS || bytes > MAX_TRANSACTION_SIZE {
                return Ok(Part::TooLarge {
                    items: writes.len(),
                    bytes,
                });
            }
            let (first_id, first_sequence) = first;
            match send(
                self.client(),
                writes,
                handler,
                moved,
                &self.tables(position),
            )
            .await?
            {
                Answer::Committed => {
                    let Some((position, record)) = position.as_mut().zip(record) else {
                        return Ok(Part::Done(None));
                    };
                    position.previous = Some(record.sequence_number.clone());
                    return Ok(Part::Done(position.previous.clone()));
                }
                Answer::Refused(reason) => {
                    let record = runs
                        .iter()
                        .find(|run| run.aggregate_id == first_id)
                        .and_then(|run| records.get(run.first_record))
                        .map(|r| r.sequence_number.clone())
                        .unwrap_or_default();
                    return Err(Error::TransactionRefused {
                        projection: self.sequences.projection.clone(),
                        aggregate_id: first_id.to_string(),
                        sequence: first_sequence,
                        record,
                        reason,
                    });
                }
                Answer::DuplicateItem(message) => {
                    return Err(Error::TransactionDuplicateItem {
                        projection: self.sequences.projection.clone(),
                        aggregate_id: first_id.to_string(),
                        sequence: first_sequence,
                        message,
                    })
                }
                Answer::Contended => {
                    tracing::debug!(aggregate_id = %first_id, "applied sequences changed meanwhile; reading them again");
                }
                Answer::PositionMoved => {
                    if let Some(position) = position.as_mut() {
                        self.reread_position(position).await?;
                    }
                }
            }
        }
        Err(Error::SequenceContention {
            projection: self.sequences.projection.clone(),
            aggregate_id: ids.first().map(ToString::to_string).unwrap_or_default(),
            attempts: self.attempts,
        })
    }

    /// After the position's condition failed: [`Error::LeaseLost`] if
    /// another owner holds the lease, else the checkpoint this owner wrote
    /// (a commit whose answer was lost) becomes the previous one.
    async fn reread_position(&self, position: &mut ShardPosition) -> Result<(), Error> {
        let store = CheckpointStore::new(
            self.client().clone(),
            &position.table,
            &self.sequences.projection,
        );
        let item = store.get_item(&position.key).await?;
        let lost = || Error::LeaseLost {
            shard_id: position.shard_id.clone(),
            owner: position.owner.clone(),
        };
        let Some(item) = item else {
            return Err(lost());
        };
        let current = super::ShardCheckpoint::from_item(&item)?;
        if current.owner.as_deref() != Some(position.owner.as_str()) {
            return Err(lost());
        }
        tracing::info!(shard = %position.shard_id, checkpoint = ?current.checkpoint,
            "the shard's checkpoint moved under this owner (a commit whose answer was lost); going on from it");
        position.previous = current.checkpoint;
        Ok(())
    }

    fn too_large(&self, run: &Run<A>, items: usize, bytes: usize) -> Error {
        Error::TransactionTooLarge {
            projection: self.sequences.projection.clone(),
            aggregate_id: run.aggregate_id.clone(),
            sequence: (run.events.first().map(|event| event.sequence))
                .or(run.deleted.map(|last| last + 1))
                .unwrap_or(0),
            items,
            bytes,
        }
    }

    /// The tables a transaction may touch, for error messages.
    fn tables(&self, position: &Option<ShardPosition>) -> String {
        match position {
            Some(position) if position.table != self.sequences.table => {
                format!(
                    "{}, {} and the projection's tables",
                    self.sequences.table, position.table
                )
            }
            _ => format!("{} and the projection's tables", self.sequences.table),
        }
    }
}
