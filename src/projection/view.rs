//! [`ViewProjection`]: views keyed by aggregate id with an exactly-once
//! effect. The view item records the last aggregate sequence applied
//! ([`LAST_SEQUENCE`]); an event at or below it is never applied again, and
//! every write is conditional on the view version read, so redelivery,
//! overlapping batches, a lease takeover or a rebuild running beside the
//! live projector never apply an event twice.

use std::time::Duration;

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope, View};

use super::{Error, Projection};
use crate::view_repository::StoredView;
use crate::DynamoViewRepository;

pub use crate::item::LAST_SEQUENCE;

/// How many times [`ViewProjection`] writes a view by default before
/// reporting [`Error::ViewContention`].
pub const DEFAULT_VIEW_ATTEMPTS: u32 = 8;

/// A [`Projection`] keeping one view per aggregate (the view id is the
/// aggregate id, as with cqrs-es's `GenericQuery`) in a
/// [`DynamoViewRepository`], applying each event exactly once.
///
/// For each call it reads the view, its `ViewVersion` and its
/// [`LAST_SEQUENCE`]; applies only the events above that sequence; and
/// writes the view, the new last sequence and `ViewVersion + 1`,
/// conditionally on the version read. When another writer got there first
/// (a second projector, a rebuild), it reads again and retries (up to
/// [`DEFAULT_VIEW_ATTEMPTS`] writes, or [`with_max_attempts`]), by then
/// skipping what the other writer applied.
///
/// Events must reach the view in aggregate order, as the dispatcher, the
/// projector, Lambda and [`Rebuild`](super::Rebuild) deliver them: an event
/// after a gap (its predecessor was skipped as undecodable, or the view
/// started from the stream's middle) is applied with a warning, and the
/// missing ones, being below [`LAST_SEQUENCE`] then, never will be. So
/// never feed one view table from two sources at once (a rebuild beside a
/// live reader on a new view): a rebuild hands over to the projector.
///
/// The view's table must be written only through `ViewProjection`s of the
/// same view: a write through the plain
/// [`ViewRepository`](cqrs_es::persist::ViewRepository) (a `GenericQuery`)
/// drops `LastSequence`, and events would then be applied again. A view item
/// without `LastSequence` counts as having applied nothing: start a new
/// exactly-once view from a [rebuild](crate::projection), not over a view
/// `GenericQuery` filled.
///
/// Views fed by **many aggregates** (a per-customer total over many
/// accounts, a global counter) cannot use this: one last sequence per view
/// cannot tell the aggregates apart, so such views are at-least-once. To
/// deduplicate them, keep in the view the last sequence applied *per
/// aggregate* (a map from aggregate id to sequence) and skip events at or
/// below it, writing conditionally on the version as this type does; or make
/// the update idempotent (set a value rather than add to it).
///
/// [`with_max_attempts`]: ViewProjection::with_max_attempts
///
/// ```
/// # use cqrs_es::{Aggregate, View};
/// use dynamo_es::projection::{Dispatcher, EventDecoder, ViewProjection};
/// use dynamo_es::{Codec, DynamoViewRepository};
///
/// fn dispatcher<V: View<A> + 'static, A: Aggregate + 'static>(
///     client: aws_sdk_dynamodb::Client,
/// ) -> Dispatcher<A> {
///     let views = DynamoViewRepository::<V, A>::new("account_views", client);
///     Dispatcher::new(EventDecoder::new(Codec::default()))
///         .with_projection(ViewProjection::new(views))
/// }
/// ```
#[derive(Debug)]
pub struct ViewProjection<V, A> {
    views: DynamoViewRepository<V, A>,
    max_attempts: u32,
}

impl<V, A> Clone for ViewProjection<V, A> {
    fn clone(&self) -> Self {
        ViewProjection {
            views: self.views.clone(),
            max_attempts: self.max_attempts,
        }
    }
}

impl<V: View<A>, A: Aggregate> ViewProjection<V, A> {
    /// An exactly-once projection into `views`.
    pub fn new(views: DynamoViewRepository<V, A>) -> Self {
        ViewProjection {
            views,
            max_attempts: DEFAULT_VIEW_ATTEMPTS,
        }
    }

    /// Writes a view at most `attempts` times (at least once) per call
    /// before giving up with [`Error::ViewContention`].
    pub fn with_max_attempts(self, attempts: u32) -> Self {
        ViewProjection {
            max_attempts: attempts.max(1),
            ..self
        }
    }

    /// The view repository.
    pub fn views(&self) -> &DynamoViewRepository<V, A> {
        &self.views
    }

    /// One read-apply-write round: `Ok(true)` when the view holds every
    /// event of `events` afterwards, `Ok(false)` when another writer won.
    async fn apply_once(&self, view_id: &str, events: &[EventEnvelope<A>]) -> Result<bool, Error> {
        let stored = self.views.read_tracked(view_id).await?;
        let StoredView {
            mut view,
            version,
            last_sequence,
        } = stored.unwrap_or_else(|| StoredView {
            view: V::default(),
            version: 0,
            last_sequence: 0,
        });
        let mut applied = last_sequence;
        for event in events.iter().filter(|event| event.sequence > last_sequence) {
            if event.sequence != applied + 1 {
                tracing::warn!(
                    view_id,
                    last_applied = applied,
                    sequence = event.sequence,
                    "events missing before this one: the view skips them"
                );
            }
            view.update(event);
            applied = event.sequence;
        }
        if applied == last_sequence {
            tracing::debug!(view_id, last_sequence, "every event already applied");
            return Ok(true);
        }
        match self
            .views
            .write_tracked(&view, view_id, version, Some(applied))
            .await
        {
            Ok(()) => Ok(true),
            Err(crate::Error::Conflict { .. }) => Ok(false),
            Err(err) => Err(Error::Store(err)),
        }
    }
}

#[async_trait]
impl<V, A> Projection<A> for ViewProjection<V, A>
where
    V: View<A>,
    A: Aggregate,
{
    async fn project(&self, aggregate_id: &str, events: &[EventEnvelope<A>]) -> Result<(), Error> {
        for attempt in 1..=self.max_attempts {
            if self.apply_once(aggregate_id, events).await? {
                return Ok(());
            }
            tracing::debug!(
                view_id = aggregate_id,
                attempt,
                "view changed meanwhile; reloading"
            );
            tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
        }
        Err(Error::ViewContention {
            view_id: aggregate_id.to_string(),
            table: self.views.table().to_string(),
            attempts: self.max_attempts,
        })
    }
}
