//! The bounded tail read: the newest events of an aggregate, in one
//! `Query` page, for a snapshot store's load.
//!
//! **Invariant:** a [`Tail`] says whether it holds every event its query
//! asked for (`complete`: no `LastEvaluatedKey`), so the load can tell a
//! tail that reaches back to its snapshot from one that may not.

use tracing::{field, Instrument};

use super::{stored_bytes, DynamoEventRepository};
use crate::error::{in_span, read_span, Error, Result};
use crate::item::Item;

/// The newest events of an aggregate, as [`read_tail`] returns them.
///
/// [`read_tail`]: DynamoEventRepository::read_tail
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// Event items, newest first, undecoded.
    pub items: Vec<Item>,
    /// True if no event the query asked for precedes them: it reached the
    /// aggregate's first event, or its lower bound (no `LastEvaluatedKey`).
    pub complete: bool,
}

impl DynamoEventRepository {
    /// The newest events of an aggregate, newest first, undecoded: one
    /// `Query` page (strongly consistent if `consistent`) of at most `limit`
    /// items (`ScanIndexForward = false`) from sequence `from` on
    /// (`#seq >= from`; every event if `from` is 0), whether or not more
    /// precede them.
    pub(crate) async fn read_tail(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        limit: i32,
        from: usize,
        consistent: bool,
    ) -> Result<Tail> {
        let span = read_span!(
            "dynamo_es.read_tail",
            self.event_table,
            (aggregate_type, aggregate_id),
            limit,
            from,
            consistent,
            items = field::Empty,
            complete = field::Empty,
            stored_bytes = field::Empty,
            consumed_capacity = field::Empty
        );
        in_span("reading the newest events", async {
            let out = self
                .events_query(
                    aggregate_type,
                    aggregate_id,
                    from.checked_sub(1),
                    consistent,
                )
                .scan_index_forward(false)
                .limit(limit.max(1))
                .send()
                .await
                .map_err(|err| Error::from_sdk_on("Query", &self.event_table, err))?;
            let complete = out
                .last_evaluated_key
                .as_ref()
                .is_none_or(|key| key.is_empty());
            let capacity = out
                .consumed_capacity
                .and_then(|c| c.capacity_units)
                .unwrap_or_default();
            let items = out.items.unwrap_or_default();
            self.prefetch_dictionaries(&items).await?;
            let span = tracing::Span::current();
            let stored = stored_bytes(&span, &items);
            span.record("items", items.len());
            span.record("complete", complete);
            span.record("stored_bytes", stored);
            span.record("consumed_capacity", capacity);
            tracing::trace!(
                items = items.len(),
                complete,
                stored_bytes = stored,
                consumed_capacity = capacity,
                "newest events read"
            );
            Ok(Tail { items, complete })
        })
        .instrument(span)
        .await
    }
}
