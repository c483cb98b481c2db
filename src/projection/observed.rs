//! What this process saw of leases held by others: per item key, the owner
//! and lease counter last read, and since when (on this process's monotonic
//! clock) they have not changed.
//!
//! **Invariant:** another owner's lease counts as expired only after its
//! owner and counter stayed unchanged for a whole lease duration as this
//! process measured it; any change restarts the clock. No wall clocks of
//! two machines are compared.

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
}

impl Observed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Observation>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True if `holder`'s lease on `key` has had `counter` for a whole
    /// `lease_duration` of this process's monotonic clock; otherwise notes
    /// what was seen (the clock restarts whenever the owner or counter
    /// changes).
    pub(super) fn expired(
        &self,
        key: &str,
        holder: &str,
        counter: u64,
        lease_duration: Duration,
    ) -> bool {
        let mut observed = self.lock();
        let now = Instant::now();
        match observed.get(key) {
            Some(seen) if seen.owner == holder && seen.counter == counter => {
                now.duration_since(seen.since) >= lease_duration
            }
            _ => {
                let seen = Observation {
                    owner: holder.to_string(),
                    counter,
                    since: now,
                };
                observed.insert(key.to_string(), seen);
                false
            }
        }
    }

    /// Forgets what was seen of `key` (this process took its lease).
    pub(super) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}
