//! Loading an aggregate: the snapshot and the newest events, read at once.
//!
//! A store that snapshots sends the snapshot's `GetItem` and a `Query` for
//! the newest events (newest first, at most [`tail_limit`] of them)
//! concurrently, both strongly consistent (the query eventually consistent
//! under [`ReadConsistency::Eventual`](super::ReadConsistency), whose
//! answers are applied only without a hole: see the store's `consistency`
//! module for why the argument below still holds of what is applied):
//! one sequential round trip where a
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
//! **Hints: reading fewer in the same round trip.** A lower bound on `q`
//! known before the reads lets the query skip the events before it:
//! snapshots only move forward (above), so the sequence `g` of the last
//! trusted snapshot this process saw for the aggregate (the one a load
//! used, or a commit wrote where the policy put it; kept by the
//! repository, see `event_repository::hints`) bounds every later one. The
//! query then asks for `#seq >= g`, newest first, with the same limit: it
//! reads `p - g + 1` items when they are fewer, `AFTER_SNAPSHOT + 1` in the
//! bench where the unbounded query read `n - 1`. Its lower bound `g` is
//! inclusive on purpose: with `q = g` the query must still see event `q`
//! (`p >= q` above), or an empty answer could not tell "nothing after `q`"
//! from "the query ran before the commit that wrote `q`", which may have
//! written `q + 1` too. The argument above then holds with one change:
//! "the query saw every event" now means every event from `g` on, which
//! covers the events after `q` only if `g <= q + 1` (and with `p >= q`,
//! some event at or after `q` existed at `tQ`). So a bounded query is used
//! as before when `g <= q + 1`, or when its oldest event reaches back to
//! `q + 1` anyway; any other outcome (a hint above the stored snapshot's
//! sequence, a snapshot now absent, not trusted or unreadable, which needs
//! every event from 1) is the fallback, exactly as without a hint. A wrong
//! hint costs a second round trip, never a wrong state; the load forgets
//! a hint the snapshot did not confirm and learns the snapshot it used.
//!
//! **The aggregate store reads one item.** Under
//! [`SnapshotPolicy::Always`] the head carries a claim
//! ([`EVENTS_THROUGH`](crate::item::EVENTS_THROUGH)) written with it: the
//! events reach exactly its `CurrentSequence`. Every `DynamoStore` commit
//! that stores events without replacing a claiming head removes the claim
//! first, and a skipped snapshot is such a commit (`event_repository::claim`).
//! So the load sends the `GetItem` alone, and queries the events after the
//! snapshot only when the head is absent, not trusted, unreadable or makes
//! no claim. A claiming head read at `tG` was current at `tG`: every event
//! stored after it was stored by a commit that removed the claim first, or
//! replaced the head. Writers that never read the head (a
//! [`SnapshotPolicy::Never`] store, cqrs-es's `PersistedEventStore`,
//! upstream) cannot remove it: a load after them returns the state at the
//! claim, a stale state, and the next commit from it conflicts (its events
//! exist) and removes the claim, so the retry
//! ([`execute_with_retry`](crate::execute_with_retry)) reads the events.
//! A commit from a [`HotCache`](crate::HotCache) entry cannot remove it
//! (its claim names the head it was cached with, not the one stored now),
//! so every conflict marks the aggregate and the store's next load of it
//! trusts no claim: it reads the head and the newest events at once, as a
//! snapshot store's load does (one round trip; the argument above holds of
//! any head written with its commit's events), and the retry decides on
//! the newest state.

use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;

use super::consistency::consecutive;
use super::{Base, DynamoAggregateContext, DynamoStore, Loaded, Payload, SnapshotPolicy};
use crate::error::Result;
use crate::event_repository::{HeadClaim, Tail};
use crate::item::{aggregate_key, describe_key, get_n, Item, AGGREGATE_ID_SEQUENCE};
use crate::snapshot::LoadedSnapshot;

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
/// the order read, come after `after`, if they are every event after it.
/// The query read events from `floor` on (1: every event) and saw all of
/// them if `complete`. They are every event after `after` if the newest is
/// at least `after` and they reach back to `after + 1` (the oldest is at
/// most `after + 1`, or the query saw every event from a `floor` at most
/// `after + 1`); with none read, only if the query saw every event and
/// `after` is 0. `None` when the events after `after` must be read again
/// (also for sequences out of order).
pub(crate) fn events_after(
    newest_first: &[usize],
    complete: bool,
    floor: usize,
    after: usize,
) -> Option<usize> {
    if !consecutive(newest_first, false) {
        return None;
    }
    let (Some(&newest), Some(&oldest)) = (newest_first.first(), newest_first.last()) else {
        return (complete && floor <= 1 && after == 0).then_some(0);
    };
    let reaches_back = oldest <= after + 1 || (complete && floor <= after + 1);
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
        let context = DynamoAggregateContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate: A::default(),
            current_sequence: 0,
            current_snapshot: None,
            base: Base {
                snapshot: None,
                events: Vec::new(),
                chunks: 0,
                claim: None,
            },
        };
        // A commit of this aggregate conflicted since its last load.
        let marked = self.reads.take_mark(aggregate_id);
        match self.policy {
            SnapshotPolicy::Never => {
                let (context, replayed, tail) = Box::pin(self.replay_all(context, marked)).await?;
                let loaded = Loaded {
                    snapshot: "none",
                    replayed,
                    tail,
                };
                Ok((context, loaded))
            }
            // Boxed: each keeps SDK futures in its state, too large together
            // for the stack of a test thread in debug builds.
            // After a conflict the claim is not trusted (the conflict may
            // have come from a cached state, which could not remove a
            // claim another writer left): the head and the newest events
            // at once, as a snapshot store reads them.
            SnapshotPolicy::Always if marked => {
                Box::pin(self.load_with_tail(context, marked)).await
            }
            SnapshotPolicy::Always => Box::pin(self.load_claimed(context)).await,
            SnapshotPolicy::Every(_) => Box::pin(self.load_with_tail(context, marked)).await,
        }
    }

    /// An aggregate store's load: the head alone when it claims to be
    /// current, else the events after it (see the module's argument).
    async fn load_claimed(
        &self,
        mut context: DynamoAggregateContext<A>,
    ) -> Result<(DynamoAggregateContext<A>, Loaded)> {
        let head = self
            .repo
            .read_snapshot(A::TYPE, &context.aggregate_id)
            .await?;
        let snapshot = self.use_head(&mut context, head).await?;
        let current = context
            .base
            .claim
            .is_some_and(|claim| claim.through == context.current_sequence);
        if snapshot == "used" && current {
            let loaded = Loaded {
                snapshot,
                replayed: 0,
                tail: "current",
            };
            return Ok((context, loaded));
        }
        let after = context
            .base
            .snapshot
            .as_ref()
            .map(|_| context.current_sequence);
        let (context, replayed) = self.replay_into(context, after).await?;
        let loaded = Loaded {
            snapshot,
            replayed,
            tail: "after",
        };
        Ok((context, loaded))
    }

    /// A snapshot store's load: the head and the newest events at once,
    /// the events bounded by the snapshot hint if there is one.
    async fn load_with_tail(
        &self,
        mut context: DynamoAggregateContext<A>,
        marked: bool,
    ) -> Result<(DynamoAggregateContext<A>, Loaded)> {
        let aggregate_id = context.aggregate_id.clone();
        let key = aggregate_key(A::TYPE, &aggregate_id);
        let hints = self.repo.hints();
        let floor = hints.get(&key).unwrap_or(0);
        let limit = i32::try_from(tail_limit(self.policy)).unwrap_or(i32::MAX);
        let consistent = self.reads.strong(marked);
        // Boxed: two SDK calls side by side make a future too large for
        // the stack of a test thread in debug builds.
        let (head, tail) = tokio::join!(
            Box::pin(self.repo.read_snapshot(A::TYPE, &aggregate_id)),
            Box::pin(
                self.repo
                    .read_tail(A::TYPE, &aggregate_id, limit, floor, consistent)
            ),
        );
        let snapshot = self.use_head(&mut context, head?).await?;
        let after = context
            .base
            .snapshot
            .as_ref()
            .map(|_| context.current_sequence);
        match after {
            Some(sequence) => hints.learn(&key, sequence),
            None => hints.forget(&key),
        }
        let Tail {
            mut items,
            complete,
        } = tail?;
        let sequences = items.iter().map(sequence).collect::<Result<Vec<_>>>()?;
        let covered = events_after(&sequences, complete, floor.max(1), after.unwrap_or(0));
        let (context, replayed, tail) = match covered {
            Some(count) => {
                // Oldest first; the events at or before `after` are
                // never decoded.
                items.truncate(count);
                let mut events = self.repo.decode_events(items.into_iter().rev())?;
                self.repo.open_events(&mut events).await?;
                let (context, replayed) = self.apply(context, events)?;
                (
                    context,
                    replayed,
                    if floor > 0 { "hinted" } else { "covered" },
                )
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

    /// Takes what the stored head gives `context`: its version, chunk count
    /// and claim always; its state and sequence if it is trusted and
    /// decodes and is not past its expiry. Returns how the snapshot was
    /// used: `none`, `used`, `expired`, `untrusted` or `unreadable`.
    async fn use_head(
        &self,
        context: &mut DynamoAggregateContext<A>,
        head: Option<LoadedSnapshot>,
    ) -> Result<&'static str> {
        let aggregate_id = context.aggregate_id.as_str();
        let Some(loaded) = head else {
            return Ok("none");
        };
        // Kept even when the state is not used, so the next snapshot
        // replaces this one rather than conflicting forever.
        context.current_snapshot = Some(loaded.current_snapshot);
        context.base.chunks = loaded.chunks;
        context.base.claim = loaded.events_through.map(|through| HeadClaim {
            version: loaded.current_snapshot,
            through,
        });
        // Its state is not used when it is past its expiry (gone for every
        // read, as the events it covers are), or not written by
        // DynamoStore (upstream dynamo-es, or cqrs-es's
        // PersistedEventStore: its state may hold events applied twice).
        // Its version and chunks stay, so the next snapshot replaces it.
        let unused = if self.repo.expiry().is_past(loaded.expires_at) {
            Some(("expired", "snapshot past its expiry; reading the events"))
        } else if !loaded.trusted {
            Some((
                "untrusted",
                "snapshot not written by DynamoStore; rebuilding from events",
            ))
        } else {
            None
        };
        if let Some((how, why)) = unused {
            tracing::debug!(
                aggregate_type = A::TYPE,
                aggregate_id,
                current_snapshot = loaded.current_snapshot,
                "{why}"
            );
            return Ok(how);
        }
        // The dictionary its payload names, if any and not yet loaded by
        // this process. One that is not stored (or is corrupt) makes the
        // snapshot unreadable, as any payload that does not decode; a
        // failed read is an error.
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
            Err(err) if !err.is_data_error() => Err(err),
            Ok((aggregate, payload)) => {
                context.aggregate = aggregate;
                context.current_sequence = loaded.current_sequence;
                context.base.snapshot = Some(Payload::Stored(payload));
                Ok("used")
            }
            Err(err) => {
                tracing::warn!(
                    table = %self.repo.snapshot_table(),
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    error = %err,
                    "snapshot no longer deserializes; rebuilding from events"
                );
                Ok("unreadable")
            }
        }
    }

    /// An event store's load: every event, read as the store's
    /// [`ReadConsistency`](super::ReadConsistency) says; an eventually
    /// consistent answer with a hole is read again, strongly. Returns how
    /// the events were read: `none` (no tail: one strong query), `eventual`
    /// or `fallback`.
    async fn replay_all(
        &self,
        context: DynamoAggregateContext<A>,
        marked: bool,
    ) -> Result<(DynamoAggregateContext<A>, usize, &'static str)> {
        if self.reads.strong(marked) {
            let (context, replayed) = self.replay_into(context, None).await?;
            return Ok((context, replayed, "none"));
        }
        let events = self
            .repo
            .read_events_with(A::TYPE, &context.aggregate_id, None, false)
            .await?;
        let sequences: Vec<usize> = events.iter().map(|event| event.sequence).collect();
        if sequences.first().is_none_or(|&first| first == 1) && consecutive(&sequences, true) {
            let (context, replayed) = self.apply(context, events)?;
            return Ok((context, replayed, "eventual"));
        }
        tracing::debug!(
            aggregate_type = A::TYPE,
            aggregate_id = %context.aggregate_id,
            "an eventually consistent read had a hole; reading again, strongly"
        );
        let (context, replayed) = self.replay_into(context, None).await?;
        Ok((context, replayed, "fallback"))
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
        let events_after = |seq: &[usize], complete, after| events_after(seq, complete, 1, after);
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
        // Out of order, or with a hole: never trusted.
        assert_eq!(events_after(&[11, 12], true, 10), None);
        assert_eq!(events_after(&[12, 12, 11], true, 10), None);
        assert_eq!(events_after(&[14, 12, 11], true, 10), None);
        assert_eq!(events_after(&[3, 1], true, 0), None);
    }

    #[test]
    fn a_bounded_tail_covers_only_from_a_floor_at_or_below_the_snapshot() {
        // Hint 10, snapshot at 10: the query from 10 saw 13..=10.
        assert_eq!(events_after(&[13, 12, 11, 10], true, 10, 10), Some(3));
        // Hint right, nothing after the snapshot: the snapshot's own event.
        assert_eq!(events_after(&[10], true, 10, 10), Some(0));
        // An empty answer proves nothing: the commit of 10 may have
        // written 11 too, after the query ran.
        assert_eq!(events_after(&[], true, 10, 10), None);
        assert_eq!(events_after(&[], true, 11, 10), None);
        // Hint 8 below the snapshot at 10: more read, still covered.
        assert_eq!(events_after(&[12, 11, 10, 9, 8], true, 8, 10), Some(2));
        // Hint 12 above the snapshot at 10 (a wrong guess): 11 is missing.
        assert_eq!(events_after(&[14, 13, 12], true, 12, 10), None);
        // Hint 11, snapshot at 10, events from 11: reaching back is enough.
        assert_eq!(events_after(&[13, 12, 11], true, 11, 10), Some(3));
        // No snapshot used: only a query from the first event will do.
        assert_eq!(events_after(&[14, 13, 12], true, 12, 0), None);
        assert_eq!(events_after(&[], true, 12, 0), None);
        assert_eq!(events_after(&[2, 1], true, 1, 0), Some(2));
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
