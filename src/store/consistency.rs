//! [`ReadConsistency`]: how a [`DynamoStore`](crate::DynamoStore)'s loads
//! read the events, and which aggregates' next load must read them strongly.
//!
//! **Invariant:** an eventually consistent read changes what a load costs
//! and how far behind the newest events its state may be, never whether
//! that state is true, and never what a commit writes. The argument:
//!
//! * Stored events never change, and an aggregate's events sit at
//!   consecutive sequences from 1 (each is written under
//!   `attribute_not_exists` at the sequence after the one its writer
//!   loaded). A load applies an eventually consistent answer only if its
//!   sequences are consecutive and reach back to the base it builds on
//!   (the snapshot, read strongly, or the first event). So the events it
//!   applies are exactly the events `q + 1..=p` after the base, whatever
//!   replica answered and however far behind it was: the state is the true
//!   state at `p`. An answer with a hole is never applied; the load reads
//!   again, strongly (see the store's `load` module).
//! * A state behind the newest event makes the next commit conflict: its
//!   first event goes to `p + 1` under `attribute_not_exists`, and `p + 1`
//!   exists. Nothing is written (a snapshot goes in the same transaction).
//! * A conflict marks the aggregate in its store, and the store's next load
//!   of it reads strongly (and clears the mark), exactly as
//!   [`ReadConsistency::Strong`] does. (Under either consistency that load
//!   also trusts no aggregate-store claim: a conflict from a cached state
//!   could not remove a claim another writer left behind, see the store's
//!   `load` module.) So the retry of
//!   [`execute_with_retry`](crate::execute_with_retry) decides on the newest
//!   state: a stale read costs one retry, as a stale
//!   [`HotCache`](crate::HotCache) entry does. The marks are bounded
//!   ([`MAX_MARKED`]); losing one costs a retry that may read stale again,
//!   never a wrong write.
//!
//! What it does not cover: a command decided on a state behind the newest
//! that emits no events, or that the aggregate rejects, is answered from
//! that state (nothing is written, so nothing conflicts). Keep
//! [`ReadConsistency::Strong`] where such an answer must reflect every
//! event already committed.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// How a [`DynamoStore`](crate::DynamoStore)'s loads read the events.
///
/// Set with [`DynamoStore::with_read_consistency`](crate::DynamoStore::with_read_consistency).
/// Only the events' `Query` of a snapshot store
/// ([`SnapshotPolicy::Every`](crate::SnapshotPolicy::Every)) and of an event
/// store ([`SnapshotPolicy::Never`](crate::SnapshotPolicy::Never)) change:
/// the snapshot's `GetItem`, every fallback query and an aggregate store's
/// load stay strongly consistent.
///
/// Parsed from, and displayed as, its stable name (`strong`, `eventual`):
///
/// ```
/// use dynamo_es::ReadConsistency;
///
/// let reads: ReadConsistency = "eventual".parse()?;
/// assert_eq!(reads, ReadConsistency::Eventual);
/// assert_eq!(reads.to_string(), "eventual");
/// # Ok::<(), dynamo_es::ParseReadConsistencyError>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    /// Every read strongly consistent (the default): a load returns the
    /// state after every event committed before it started.
    #[default]
    Strong,
    /// The events read eventually consistent, at half the read units
    /// (upstream `dynamo-es` reads a snapshot store's events so). A load
    /// may return a state a few events behind the newest, which makes the
    /// command's commit conflict; the store's next load of that aggregate
    /// then reads strongly, so run commands with
    /// [`execute_with_retry`](crate::execute_with_retry). See the invariant
    /// of this module's source for what it does not cover.
    Eventual,
}

impl ReadConsistency {
    /// Every consistency, in a stable order.
    pub const ALL: [ReadConsistency; 2] = [ReadConsistency::Strong, ReadConsistency::Eventual];

    /// The stable name: `strong` or `eventual`.
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Strong => "strong",
            ReadConsistency::Eventual => "eventual",
        }
    }
}

impl fmt::Display for ReadConsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReadConsistency {
    type Err = ParseReadConsistencyError;

    /// Parses a name as [`ReadConsistency::name`] prints it, in any case.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let wanted = name.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|consistency| consistency.name() == wanted)
            .ok_or_else(|| ParseReadConsistencyError(name.to_string()))
    }
}

/// A name that is not a [`ReadConsistency`]'s (the name given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("read consistency {0:?} is not one of: strong, eventual")]
pub struct ParseReadConsistencyError(pub String);

/// The most aggregates a store marks for a strong read at once: at this
/// many the marks are dropped (see the module's invariant).
pub(crate) const MAX_MARKED: usize = 10_000;

/// A store's read consistency, and the aggregates whose commit conflicted
/// since their last strong load.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    consistency: ReadConsistency,
    marked: Mutex<HashSet<String>>,
    /// Whether `marked` may hold a mark: written under its lock, read
    /// without it, so a load takes the lock only after a conflict.
    any: AtomicBool,
}

impl Reads {
    pub(crate) fn new(consistency: ReadConsistency) -> Self {
        Reads {
            consistency,
            marked: Mutex::default(),
            any: AtomicBool::new(false),
        }
    }

    pub(crate) fn consistency(&self) -> ReadConsistency {
        self.consistency
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        // A set of marks is valid in any state: a poisoned one is used as is.
        self.marked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a commit of `aggregate_id` conflicted since its last load,
    /// taking the mark: this load then verifies what it would otherwise
    /// trust (see [`Reads::strong`]).
    pub(crate) fn take_mark(&self, aggregate_id: &str) -> bool {
        // A conflict marks before its commit returns, so a load after it
        // (the retry) sees `any` set.
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut marked = self.lock();
        let taken = marked.remove(aggregate_id);
        if marked.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        taken
    }

    /// Whether a load reads the events strongly: always under `Strong`;
    /// under `Eventual` after a conflict (`marked`).
    pub(crate) fn strong(&self, marked: bool) -> bool {
        self.consistency == ReadConsistency::Strong || marked
    }

    /// Marks `aggregate_id` after its commit conflicted: its next load
    /// reads strongly and trusts no claim (whatever the consistency).
    pub(crate) fn conflicted(&self, aggregate_id: &str) {
        let mut marked = self.lock();
        if marked.len() >= MAX_MARKED {
            marked.clear();
        }
        marked.insert(aggregate_id.to_string());
        self.any.store(true, Ordering::Release);
    }
}

/// Whether `sequences`, in the order read (ascending if `ascending`, else
/// newest first), are consecutive: an eventually consistent answer without
/// a hole (where it starts is the caller's check).
pub(crate) fn consecutive(sequences: &[usize], ascending: bool) -> bool {
    sequences.windows(2).all(|pair| {
        let (older, newer) = if ascending {
            (pair[0], pair[1])
        } else {
            (pair[1], pair[0])
        };
        older.checked_add(1) == Some(newer)
    })
}

#[cfg(test)]
mod tests {
    use super::{consecutive, ReadConsistency, Reads, MAX_MARKED};

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for consistency in ReadConsistency::ALL {
            assert_eq!(consistency.name().parse(), Ok(consistency));
        }
        assert_eq!(" Eventual ".parse(), Ok(ReadConsistency::Eventual));
        assert!("weak".parse::<ReadConsistency>().is_err());
        let refused = match "weak".parse::<ReadConsistency>() {
            Err(err) => err.to_string(),
            Ok(parsed) => panic!("\"weak\" parsed as {parsed}"),
        };
        assert!(refused.contains("\"weak\"") && refused.contains("strong, eventual"));
    }

    #[test]
    fn a_conflict_marks_the_next_load_once() {
        let reads = Reads::new(ReadConsistency::Eventual);
        let strong_for = |id| reads.strong(reads.take_mark(id));
        assert!(!strong_for("a"));
        reads.conflicted("a");
        assert!(strong_for("a"));
        assert!(!strong_for("a"));
        let strong = Reads::new(ReadConsistency::Strong);
        assert!(strong.strong(strong.take_mark("a")));
        strong.conflicted("a");
        assert!(strong.take_mark("a") && !strong.take_mark("a"));
        // Taking one mark leaves the others.
        reads.conflicted("x");
        reads.conflicted("y");
        assert!(reads.take_mark("x") && reads.take_mark("y") && !reads.take_mark("y"));
        for i in 0..MAX_MARKED {
            reads.conflicted(&i.to_string());
        }
        reads.conflicted("new");
        assert!(!reads.take_mark("7"));
        assert!(reads.take_mark("new"));
    }

    #[test]
    fn only_consecutive_sequences_are_applied() {
        assert!(consecutive(&[13, 12, 11], false));
        assert!(consecutive(&[1, 2, 3], true));
        assert!(consecutive(&[], true) && consecutive(&[5], false));
        assert!(!consecutive(&[13, 11, 10], false));
        assert!(!consecutive(&[1, 3], true));
        assert!(!consecutive(&[3, 2, 1], true));
    }
}
