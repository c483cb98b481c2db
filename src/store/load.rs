//! Loading an aggregate: the snapshot and the newest events, read at once.
//!
//! A store that snapshots sends the snapshot's `GetItem` and a `Query` for
//! the newest events (newest first, at most [`tail_limit`] of them)
//! concurrently, both strongly consistent: one sequential round trip where a
//! snapshot followed by the events after it took two. When the newest events
//! do not reach back to the first event the load needs (the snapshot was
//! skipped by commits since, a commit raced the load, the snapshot is not
//! trusted and a full replay is needed), a second query reads the events
//! after the snapshot, exactly as a sequential load does. An event store
//! ([`SnapshotPolicy::Never`]) keeps its single query.
//!
//! **Invariant:** a load returns what some sequential load (a `GetItem`,
//! then a `Query` of the events after it) could return, with the same
//! `current_sequence`, `current_snapshot`, chunk count and base for the next
//! snapshot. The argument:
//!
//! * Snapshots are written only with a commit, in the same transaction as
//!   its events, and a commit's events come after every stored event (each
//!   is written under `attribute_not_exists`, at the sequences after the
//!   one its writer loaded). So a snapshot at sequence `q` lands atomically
//!   with event `q` and every event of its commit, and every snapshot written
//!   later covers a later sequence. A trusted snapshot at `q` is the state of
//!   events `1..=q`. Stored events never change.
//! * Say the `GetItem` saw snapshot version `v` at `q` at time `tG`, and the
//!   query the newest events `s_k < ... < s_1 = p` at time `tQ`.
//! * If `p >= q` and the events reach back to `q + 1` (`s_k <= q + 1`, or
//!   the query saw every event), the load returns the snapshot, the events
//!   `q+1..=p` and `current_sequence = p`. If `tG <= tQ`, the two reads ran
//!   in a sequential load's order, and that load returns the same. If
//!   `tQ < tG`: event `q` was stored by `tQ` (event `q + 1` or `q` itself
//!   was), so the commit that wrote snapshot `(v, q)` had landed by `tQ`;
//!   every later snapshot write bears a version past `v`, which `tG` did not
//!   see, so none happened before `tG`. The stored snapshot was `(v, q)`
//!   from before `tQ` until `tG`: a sequential load reading it just before
//!   `tQ`, then the events at `tQ`, returns the same. (If a commit landed
//!   between `tG` and `tQ` with a snapshot of its own, the returned
//!   `current_snapshot` is the older `v`, exactly as after the sequential
//!   load `tG`, `tQ`: the next snapshot write conflicts and the command is
//!   retried.)
//! * If `p < q`, the `GetItem` saw a commit the query did not (`tQ < tG`).
//!   The state at `q` would be a true state, but with
//!   [`SnapshotPolicy::Every`] it may sit in the middle of a commit, which
//!   no sequential load returns. The load falls back instead: a second
//!   query of the events after `q`, sent after the `GetItem` answered, is
//!   literally a sequential load.
//! * If the events do not reach back to `q + 1`, the same fallback.
//! * Without a snapshot, or with one whose state is not used (not written
//!   by `DynamoStore`, or no longer decoding), every event is needed: the
//!   query must have seen every event (no `LastEvaluatedKey`), else the
//!   fallback reads them all. A `GetItem` that saw no snapshot at `tG` and
//!   a query at `tQ` are a sequential load in either order: no snapshot is
//!   ever deleted, so none existed at `tQ < tG`; and if `tG < tQ` the two
//!   reads ran in the sequential order. A snapshot whose state is not used
//!   only lends its version and chunk count, which the next snapshot write
//!   is conditioned on: a commit between the two reads makes that write
//!   conflict, as it would after a sequential load.
//!
//! In every case the events applied are exactly the events after the base
//! (the snapshot's sequence, or 0) up to `current_sequence`, so the next
//! snapshot (base plus those events plus the commit's) is a true state, and
//! the next commit's events start at `current_sequence + 1`: it succeeds or
//! conflicts, never overwrites.
//!
//! **Why the tail is `n - 1` events for [`SnapshotPolicy::Every`]`(n)`.**
//! `DynamoStore` writes snapshots at predictable sequences: a commit that
//! reaches or passes a multiple of `n` snapshots at the last multiple it
//! reaches. With no snapshot skipped, the stored snapshot is at
//! `q = n * floor(p / n)` for the newest event `p`, so the load needs the
//! `p mod n` newest events, anywhere from 0 to `n - 1` as the aggregate
//! grows. But the limit is fixed before either read answers, when neither
//! `p` nor `q` is known, and a key condition cannot say "after the last
//! multiple of `n`" without `p` (no arithmetic in key conditions; a filter
//! expression would not reduce the items read). With any limit `L < n - 1`,
//! the loads with `p mod n > L` (about `(n - 1 - L) / n` of them) would not
//! reach back to `q + 1` and would take the fallback: still correct, but two
//! sequential round trips, which the concurrent read exists to avoid. Nor can
//! `q` be assumed a multiple of `n` (skipped snapshots, a policy changed
//! between deployments, snapshots written by `Always` or upstream): the
//! reaching-back check above, not the policy, is what makes a load correct.
//! So `n - 1` is the smallest limit that serves every load whose snapshot
//! was not skipped in one round trip; it reads on average `(n - 1) / 2`
//! events from before the snapshot, which are parsed by the SDK but never
//! decoded. (Measured 2026-11-25 with callgrind: the `Every(50)` bench, 30
//! events after the snapshot, reads 49 items where upstream's sequential
//! load reads 30; the emulator and the SDK's parsing of the 19 extra items
//! are about 1.4M of the 2.3M instructions between the two loads.)
//!
//! The one correct way found to read fewer in one round trip needs a lower
//! bound on `q` before the reads: snapshots only move forward (above), so
//! the sequence `q0` of the last trusted snapshot this process saw for the
//! aggregate bounds every later one. A query of `#seq > q0`, newest first,
//! with the same limit, would read `p - q0` items when they are fewer; if
//! it saw every event after `q0` (no `LastEvaluatedKey`) and the `GetItem`
//! saw a snapshot at `q >= q0`, it holds every event after `q`, and any
//! other outcome (a stale or lost hint, a snapshot replaced by an
//! untrusted one) is the fallback. It is not implemented: it needs a
//! bounded per-aggregate cache in the store (memory, a lock on every load),
//! helps only a process that loaded or committed the same aggregate before,
//! and needs race tests of its own (a hint behind the stored snapshot, a
//! hint above a snapshot that is no longer used).

use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;

use super::{Base, DynamoAggregateContext, DynamoStore, Loaded, SnapshotPolicy};
use crate::error::Result;
use crate::event_repository::Tail;
use crate::item::{describe_key, get_n, Item, AGGREGATE_ID_SEQUENCE};

/// The newest events an [`SnapshotPolicy::Always`] load reads with its
/// snapshot: after a snapshot there are normally none, but a commit that
/// races the load, or a snapshot skipped by a few commits, leaves some.
pub(crate) const ALWAYS_TAIL: usize = 4;

/// The most events any load reads with its snapshot: an
/// [`SnapshotPolicy::Every`] with a larger `n` reads at most this many and
/// falls back to a second query when more followed the snapshot.
pub(crate) const MAX_TAIL: usize = 100;

/// How many of the newest events a load under `policy` reads beside the
/// snapshot: `n - 1` for `Every(n)` (a snapshot is at most `n - 1` events
/// behind, unless one was skipped), [`ALWAYS_TAIL`] for `Always`, at most
/// [`MAX_TAIL`]; 0 for `Never`, which reads no snapshot.
pub(crate) fn tail_limit(policy: SnapshotPolicy) -> usize {
    match policy {
        SnapshotPolicy::Never => 0,
        SnapshotPolicy::Every(n) if n > 1 => (n - 1).min(MAX_TAIL),
        SnapshotPolicy::Every(_) | SnapshotPolicy::Always => ALWAYS_TAIL,
    }
}

/// How many of the newest events, whose sequences `newest_first` are in
/// the order read, come after `after`, if they are every event after it:
/// the query saw every event (`complete`), or its oldest event is at most
/// `after + 1`, and its newest is at least `after`. `None` when the events
/// after `after` must be read again (also for sequences out of order).
pub(crate) fn events_after(newest_first: &[usize], complete: bool, after: usize) -> Option<usize> {
    if !newest_first.windows(2).all(|pair| pair[0] > pair[1]) {
        return None;
    }
    let newest = newest_first.first().copied().unwrap_or(0);
    let oldest = newest_first.last().copied().unwrap_or(0);
    let reaches_back = complete || oldest <= after + 1;
    (newest >= after && reaches_back)
        .then(|| newest_first.iter().take_while(|&&s| s > after).count())
}

/// The sequence of an event item, naming the item on error (the key is
/// formatted only then: for every item of the tail it cost more than
/// reading the number).
fn sequence(item: &Item) -> Result<usize> {
    get_n(item, "", AGGREGATE_ID_SEQUENCE)
        .or_else(|_| get_n(item, &describe_key(item), AGGREGATE_ID_SEQUENCE))
}

impl<A: Aggregate> DynamoStore<A> {
    /// The body of [`load_context`](Self::load_context).
    pub(super) async fn load_in_span(
        &self,
        aggregate_id: &str,
    ) -> Result<(DynamoAggregateContext<A>, Loaded)> {
        let mut context = DynamoAggregateContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate: A::default(),
            current_sequence: 0,
            current_snapshot: None,
            base: Base {
                snapshot: None,
                events: Vec::new(),
                chunks: 0,
            },
        };
        if self.policy == SnapshotPolicy::Never {
            let (context, replayed) = self.replay_into(context, None).await?;
            let loaded = Loaded {
                snapshot: "none",
                replayed,
                tail: "none",
            };
            return Ok((context, loaded));
        }
        let limit = i32::try_from(tail_limit(self.policy)).unwrap_or(i32::MAX);
        // Boxed: two SDK calls side by side make a future too large for
        // the stack of a test thread in debug builds.
        let (loaded, tail) = tokio::join!(
            Box::pin(self.repo.read_snapshot(A::TYPE, aggregate_id)),
            Box::pin(self.repo.read_tail(A::TYPE, aggregate_id, limit)),
        );
        let mut snapshot = "none";
        if let Some(loaded) = loaded? {
            // Kept even when the state is not used, so the next snapshot
            // replaces this one rather than conflicting forever.
            context.current_snapshot = Some(loaded.current_snapshot);
            context.base.chunks = loaded.chunks;
            if !loaded.trusted {
                // Not written by DynamoStore (upstream dynamo-es, or
                // cqrs-es's PersistedEventStore): its state may hold events
                // applied twice.
                tracing::debug!(
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    current_snapshot = loaded.current_snapshot,
                    "snapshot not written by DynamoStore; rebuilding from events"
                );
                snapshot = "untrusted";
            } else {
                // The dictionary its payload names, if any and not yet
                // loaded by this process. One that is not stored (or is
                // corrupt) makes the snapshot unreadable, as any payload
                // that does not decode; a failed read is an error.
                let decoded = match self
                    .repo
                    .prefetch_snapshot_dictionary(A::TYPE, aggregate_id, &loaded.payload)
                    .await
                {
                    Err(err) if !err.is_data_error() => return Err(err),
                    Err(err) => Err(err),
                    Ok(()) => {
                        self.repo
                            .decode_snapshot_state::<A>(A::TYPE, aggregate_id, loaded.payload)
                            .await
                    }
                };
                match decoded {
                    Err(err) if !err.is_data_error() => return Err(err),
                    Ok((aggregate, payload)) => {
                        context.aggregate = aggregate;
                        context.current_sequence = loaded.current_sequence;
                        context.base.snapshot = Some(payload);
                        snapshot = "used";
                    }
                    Err(err) => {
                        tracing::warn!(
                            table = %self.repo.snapshot_table(),
                            aggregate_type = A::TYPE,
                            aggregate_id,
                            error = %err,
                            "snapshot no longer deserializes; rebuilding from events"
                        );
                        snapshot = "unreadable";
                    }
                }
            }
        }
        let after = context
            .base
            .snapshot
            .as_ref()
            .map(|_| context.current_sequence);
        let Tail {
            mut items,
            complete,
        } = tail?;
        let sequences = items.iter().map(sequence).collect::<Result<Vec<_>>>()?;
        let (context, replayed, tail) = match events_after(&sequences, complete, after.unwrap_or(0))
        {
            Some(count) => {
                // Oldest first; the events at or before `after` are
                // never decoded.
                items.truncate(count);
                let mut events = self.repo.decode_events(items.into_iter().rev())?;
                self.repo.open_events(&mut events).await?;
                let (context, replayed) = self.apply(context, events)?;
                (context, replayed, "covered")
            }
            None => {
                let (context, replayed) = self.replay_into(context, after).await?;
                (context, replayed, "fallback")
            }
        };
        Ok((
            context,
            Loaded {
                snapshot,
                replayed,
                tail,
            },
        ))
    }

    /// Applies the events stored after `after` (all if `None`) to `context`,
    /// returning it and how many events were applied.
    async fn replay_into(
        &self,
        context: DynamoAggregateContext<A>,
        after: Option<usize>,
    ) -> Result<(DynamoAggregateContext<A>, usize)> {
        let events = self
            .repo
            .read_events(A::TYPE, &context.aggregate_id, after)
            .await?;
        self.apply(context, events)
    }

    /// Applies `events`, oldest first, to `context` (keeping them in its
    /// base when the policy snapshots), returning it and how many there were.
    fn apply(
        &self,
        mut context: DynamoAggregateContext<A>,
        events: Vec<SerializedEvent>,
    ) -> Result<(DynamoAggregateContext<A>, usize)> {
        // The next commit computes the state from them for a snapshot, or
        // for the cache.
        let keep_events = self.policy != SnapshotPolicy::Never || self.cache.is_some();
        let envelopes = self.to_envelopes(events)?;
        let replayed = envelopes.len();
        for envelope in envelopes {
            context.current_sequence = envelope.sequence;
            if keep_events {
                context.base.events.push(envelope.payload.clone());
            }
            context.aggregate.apply(envelope.payload);
        }
        Ok((context, replayed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_covers_the_events_after_the_base_only_when_it_reaches_back() {
        // Snapshot at 10, events up to 13, read newest first.
        assert_eq!(events_after(&[13, 12, 11], false, 10), Some(3));
        assert_eq!(events_after(&[13, 12, 11, 10], false, 10), Some(3));
        assert_eq!(events_after(&[13, 12, 11, 10, 9], false, 10), Some(3));
        // Nothing after the snapshot: the newest event is the snapshot's.
        assert_eq!(events_after(&[10, 9, 8], false, 10), Some(0));
        assert_eq!(events_after(&[10], false, 10), Some(0));
        // A gap between the snapshot and the tail: read again.
        assert_eq!(events_after(&[14, 13, 12], false, 10), None);
        // The query ran before a commit the snapshot read saw.
        assert_eq!(events_after(&[9, 8, 7], false, 10), None);
        assert_eq!(events_after(&[9], true, 10), None);
        assert_eq!(events_after(&[], true, 10), None);
        // Every event: enough for a full replay, however many.
        assert_eq!(events_after(&[3, 2, 1], true, 0), Some(3));
        assert_eq!(events_after(&[], true, 0), Some(0));
        assert_eq!(events_after(&[3, 2], false, 0), None);
        assert_eq!(events_after(&[3, 2, 1], false, 0), Some(3));
        // Out of order: never trusted.
        assert_eq!(events_after(&[11, 12], true, 10), None);
        assert_eq!(events_after(&[12, 12, 11], true, 10), None);
    }

    #[test]
    fn tail_limits_follow_the_policy() {
        assert_eq!(tail_limit(SnapshotPolicy::Never), 0);
        assert_eq!(tail_limit(SnapshotPolicy::Always), ALWAYS_TAIL);
        assert_eq!(tail_limit(SnapshotPolicy::Every(0)), ALWAYS_TAIL);
        assert_eq!(tail_limit(SnapshotPolicy::Every(1)), ALWAYS_TAIL);
        assert_eq!(tail_limit(SnapshotPolicy::Every(2)), 1);
        assert_eq!(tail_limit(SnapshotPolicy::Every(50)), 49);
        assert_eq!(tail_limit(SnapshotPolicy::Every(10_000)), MAX_TAIL);
    }
}
