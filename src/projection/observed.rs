//! What this process saw of leases held by others: per item key, the owner
//! and lease counter last read, and since when (on this process's monotonic
//! clock) they have not changed.
//!
//! **Invariant:** another owner's lease counts as expired only after its
//! owner and counter stayed unchanged for a whole lease duration as this
//! process measured it; any change restarts the clock. No wall clocks of
//! two machines are compared. A wait is [announced](Waiting::announce)
//! once: the first time the counter is seen unchanged for more than half
//! the lease duration (a live owner renews at least that often), and not
//! again until the owner or counter changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The leases observed by one [`CheckpointStore`](super::CheckpointStore)
/// and its clones.
#[derive(Debug, Default)]
pub(super) struct Observed(Mutex<HashMap<String, Observation>>);

#[derive(Debug, Clone)]
struct Observation {
    owner: String,
    counter: u64,
    since: Instant,
    announced: bool,
}

/// What [`Observed::expired`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// Unchanged for a whole lease duration: the lease may be taken.
    Expired,
    /// Not (yet) expired.
    Waiting(Waiting),
}

/// A lease of another owner, not expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Waiting {
    /// How long its owner and counter have been seen unchanged.
    pub(super) unchanged_for: Duration,
    /// How long until it has been unchanged for a whole lease duration.
    pub(super) takeover_in: Duration,
    /// True once per wait: the owner has not renewed for more than half
    /// the lease duration, and this is the first call to see it.
    pub(super) announce: bool,
}

impl Observed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Observation>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `holder`'s lease on `key` has had `counter` for a whole
    /// `lease_duration` of this process's monotonic clock; otherwise notes
    /// what was seen (the clock restarts whenever the owner or counter
    /// changes) and how long the wait has lasted.
    pub(super) fn expired(
        &self,
        key: &str,
        holder: &str,
        counter: u64,
        lease_duration: Duration,
    ) -> Seen {
        self.expired_at(key, holder, counter, lease_duration, Instant::now())
    }

    /// [`expired`](Self::expired) at `now`.
    fn expired_at(
        &self,
        key: &str,
        holder: &str,
        counter: u64,
        lease_duration: Duration,
        now: Instant,
    ) -> Seen {
        let mut observed = self.lock();
        let seen = match observed.get_mut(key) {
            Some(seen) if seen.owner == holder && seen.counter == counter => seen,
            _ => {
                let seen = Observation {
                    owner: holder.to_string(),
                    counter,
                    since: now,
                    announced: false,
                };
                observed.insert(key.to_string(), seen);
                return Seen::Waiting(Waiting {
                    unchanged_for: Duration::ZERO,
                    takeover_in: lease_duration,
                    announce: false,
                });
            }
        };
        let unchanged_for = now.saturating_duration_since(seen.since);
        if unchanged_for >= lease_duration {
            return Seen::Expired;
        }
        let announce = !seen.announced && unchanged_for > lease_duration / 2;
        seen.announced |= announce;
        Seen::Waiting(Waiting {
            unchanged_for,
            takeover_in: lease_duration - unchanged_for,
            announce,
        })
    }

    /// Forgets what was seen of `key` (this process took its lease).
    pub(super) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    /// What `observed` makes of key `k` held by `a` with `counter`, `secs`
    /// after `start`.
    fn look(observed: &Observed, start: Instant, secs: u64, counter: u64) -> Seen {
        let now = start + Duration::from_secs(secs);
        observed.expired_at("k", "a", counter, LEASE, now)
    }

    fn waiting(seen: Seen) -> Waiting {
        match seen {
            Seen::Waiting(waiting) => waiting,
            Seen::Expired => panic!("expired"),
        }
    }

    #[test]
    fn a_stalled_lease_is_announced_once_per_wait_and_expires_after_the_lease() {
        let observed = Observed::default();
        let start = Instant::now();
        let first = waiting(look(&observed, start, 0, 7));
        assert_eq!(first.unchanged_for, Duration::ZERO);
        assert!(!first.announce);
        // A live owner renews at least every half lease: not announced yet.
        assert!(!waiting(look(&observed, start, 10, 7)).announce);
        let stalled = waiting(look(&observed, start, 16, 7));
        assert!(stalled.announce);
        assert_eq!(stalled.unchanged_for, Duration::from_secs(16));
        assert_eq!(stalled.takeover_in, Duration::from_secs(14));
        assert!(!waiting(look(&observed, start, 17, 7)).announce, "once");
        assert_eq!(look(&observed, start, 30, 7), Seen::Expired);
    }

    #[test]
    fn a_renewal_starts_a_new_wait() {
        let observed = Observed::default();
        let start = Instant::now();
        look(&observed, start, 0, 7);
        assert!(waiting(look(&observed, start, 20, 7)).announce);
        // The owner renewed: the clock restarts, and a new stall is
        // announced again.
        assert!(!waiting(look(&observed, start, 21, 8)).announce);
        assert!(!waiting(look(&observed, start, 35, 8)).announce);
        assert!(waiting(look(&observed, start, 40, 8)).announce);
        // Another key is a wait of its own.
        let other = observed.expired_at("j", "a", 8, LEASE, start + Duration::from_secs(40));
        assert!(!waiting(other).announce);
        observed.forget("k");
        assert!(!waiting(look(&observed, start, 60, 8)).announce);
        assert!(!waiting(look(&observed, start, 70, 8)).announce);
    }
}
