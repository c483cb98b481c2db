//! [`SnapshotPolicy`]: when a [`DynamoStore`](crate::DynamoStore) writes a
//! snapshot, and what its loads read.
//!
//! **Invariant:** the snapshot a commit writes under `Every(n)` sits at the
//! last multiple of `n` the commit reaches, as cqrs-es's snapshot store puts
//! it, so the position of every snapshot follows from the policy and the
//! commits (the snapshot hints of the `load` module rely on it only as a
//! guess).

/// When a [`DynamoStore`](crate::DynamoStore) writes a snapshot.
///
/// Whatever the policy, a load reads the snapshot (if the policy writes
/// any) and every event stored after the sequence it covers, so a snapshot
/// that is missing, behind, unreadable or not trusted only costs a longer
/// replay, never a wrong state.
///
/// A snapshot store's load (`Every(n)`) takes one round trip: the
/// snapshot's `GetItem` and a `Query` of the newest events (newest first)
/// run concurrently, both strongly consistent. The query reads at most
/// `n - 1` events (up to 100): the events a snapshot is normally behind by.
/// Once the process has seen where the aggregate's snapshot is (a load used
/// it, or a commit wrote it), the query starts there, so it reads only the
/// events from the snapshot on; before that, on average about half of the
/// events it reads come from before the snapshot (they cost read units but
/// are not decoded). When the events read do not reach back to the
/// snapshot (a snapshot was skipped, a commit raced the load, the hint was
/// wrong, or the snapshot's state is not used and every event is needed), a
/// second query reads the events after the snapshot, as a sequential load
/// would.
///
/// An aggregate store's load (`Always`) is one `GetItem` while the snapshot
/// is current, as every commit of an aggregate store leaves it: the head
/// carries the sequence its commit reached
/// ([`EVENTS_THROUGH`](crate::item::EVENTS_THROUGH)). When it does not
/// (no snapshot yet, a skipped snapshot, one not written by an aggregate
/// store), a query of the events after the snapshot follows, a second
/// round trip.
///
/// A snapshot is written in the same transaction as the commit's events. If
/// it cannot be (the transaction would exceed DynamoDB's 100 items or
/// 4 MB with it, stale-chunk deletes included; it decodes to more than the
/// codec's [`max_decoded_size`](crate::Codec::max_decoded_size), so readers
/// would refuse it; or the server refuses the transaction with a
/// `ValidationException`), the commit writes its events alone, with the same
/// conflict checks, logs a warning and records `snapshot_skipped` on its
/// `dynamo_es.persist` span. The stored snapshot stays as it was, and the
/// next commit that writes a snapshot under the policy tries again.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Never: aggregates are rebuilt from their events (cqrs-es's "event store").
    Never,
    /// Every `n` events (cqrs-es's "snapshot store"): a commit that reaches
    /// or passes a multiple of `n` writes a snapshot at the last multiple it
    /// reaches, and loads normally replay at most `n - 1` events after it
    /// (more after a skipped snapshot).
    ///
    /// `Every(0)` means the same as [`Always`](SnapshotPolicy::Always).
    Every(usize),
    /// After every commit (cqrs-es's "aggregate store"): a snapshot of the
    /// state after the commit's events, claiming to be current. Loads read
    /// the snapshot alone while it claims to be, and query the events after
    /// it otherwise (a snapshot skipped, not trusted, or written by another
    /// policy).
    ///
    /// Every `DynamoStore` that reads the snapshot (`Always` and `Every(n)`)
    /// removes the claim before it stores events without replacing the
    /// snapshot. Writers that never read it (a `Never` store, cqrs-es's
    /// `PersistedEventStore`, upstream `dynamo-es`) cannot: after them a
    /// load returns the state at the claim, whose next commit conflicts and
    /// removes the claim, so run commands with
    /// [`execute_with_retry`](crate::execute_with_retry) when such writers share an aggregate store's
    /// aggregates.
    Always,
}

impl SnapshotPolicy {
    /// How many of `new_events` events, committed after `current_sequence`,
    /// the snapshot written with them includes (0: no snapshot).
    pub fn events_in_snapshot(self, current_sequence: usize, new_events: usize) -> usize {
        match self {
            SnapshotPolicy::Never => 0,
            SnapshotPolicy::Always => new_events,
            SnapshotPolicy::Every(0) => new_events,
            SnapshotPolicy::Every(size) => {
                let last = current_sequence + new_events;
                let boundary = last - last % size;
                boundary.saturating_sub(current_sequence)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotPolicy;

    #[test]
    fn snapshot_boundaries_match_cqrs_es() {
        // Same cases as cqrs-es's own `test_source_of_truth`.
        assert_eq!(SnapshotPolicy::Never.events_in_snapshot(5, 3), 0);
        assert_eq!(SnapshotPolicy::Always.events_in_snapshot(5, 3), 3);
        assert_eq!(SnapshotPolicy::Every(5).events_in_snapshot(5, 3), 0);
        assert_eq!(SnapshotPolicy::Every(4).events_in_snapshot(5, 3), 3);
        assert_eq!(SnapshotPolicy::Every(4).events_in_snapshot(5, 4), 3);
        assert_eq!(SnapshotPolicy::Every(4).events_in_snapshot(5, 8), 7);
        assert_eq!(SnapshotPolicy::Every(3).events_in_snapshot(0, 2), 0);
        assert_eq!(SnapshotPolicy::Every(3).events_in_snapshot(2, 1), 1);
    }
}
