//! The identity of a commit's writes: the nonce no other call produces,
//! and the transaction's `ClientRequestToken` built on it (the single put's
//! commit id is built on it too).
//!
//! **Invariant:** a token is the same on every attempt of one commit (the
//! SDK re-sends it) and never shared by two commits, even identical ones
//! from different writers.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::Xxh3;

/// A `ClientRequestToken` for one commit: a hash of the aggregate and the
/// sequence range it writes, plus a nonce unique to this call.
///
/// The SDK re-sends the same token on its own retries, so a retry after a
/// lost response is recognised by DynamoDB as the same transaction and
/// succeeds instead of failing its own conditions. The nonce keeps two
/// different writers that happen to produce identical commits from being
/// mistaken for one another (which would acknowledge a command that was
/// never stored).
pub(crate) fn request_token(key: &str, first: usize, last: usize) -> String {
    let mut hasher = Xxh3::new();
    hasher.update(key.as_bytes());
    hasher.update(&first.to_le_bytes());
    hasher.update(&last.to_le_bytes());
    let range = hasher.digest();
    format!("{range:016x}{:016x}", nonce())
}

/// 64 bits no other call in any process is expected to produce: a hasher
/// of a fresh std `RandomState` (randomly keyed per thread, a new key per
/// instance) over a process-wide counter and the time in nanoseconds.
pub(crate) fn nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut nonce = std::collections::hash_map::RandomState::new().build_hasher();
    nonce.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    nonce.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    nonce.finish()
}
