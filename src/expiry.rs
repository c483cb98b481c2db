//! Expiry (DynamoDB's Time to Live) per aggregate type: the
//! [`EXPIRES_AT`] attribute a write puts on events and snapshot items, and
//! the clock every read compares it with.
//!
//! DynamoDB deletes an item some time after its TTL attribute (epoch
//! seconds) has passed, up to a few days later; until then, reads still
//! return it. So every read path here treats an item whose [`EXPIRES_AT`]
//! is at or before the clock's second as already gone.
//!
//! **Invariant:** pure: the time comes from the repository's clock (the
//! system clock unless one was injected), and an item without
//! [`EXPIRES_AT`] never expires.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::item::{Item, EXPIRES_AT};

/// A source of the current time, injected for tests
/// ([`DynamoEventRepository::with_clock`](crate::DynamoEventRepository::with_clock)).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The time to live of each aggregate type that has one, and the clock.
#[derive(Clone, Default)]
pub(crate) struct Expiry {
    by_type: Arc<BTreeMap<String, Duration>>,
    clock: Option<Clock>,
}

impl fmt::Debug for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expiry")
            .field("by_type", &self.by_type)
            .field("clock", &self.clock.as_ref().map(|_| "injected"))
            .finish()
    }
}

impl Expiry {
    /// The same, with events and snapshots of `aggregate_type` expiring
    /// `ttl` after they are written.
    pub(crate) fn with_type(self, aggregate_type: &str, ttl: Duration) -> Self {
        let mut by_type = (*self.by_type).clone();
        by_type.insert(aggregate_type.to_string(), ttl);
        Expiry {
            by_type: Arc::new(by_type),
            ..self
        }
    }

    /// The same, reading the time from `clock`.
    pub(crate) fn with_clock(self, clock: Clock) -> Self {
        Expiry {
            clock: Some(clock),
            ..self
        }
    }

    /// The clock, if one was injected.
    pub(crate) fn clock(&self) -> Option<&Clock> {
        self.clock.as_ref()
    }

    /// The time to live of `aggregate_type`, if it has one.
    pub(crate) fn ttl_of(&self, aggregate_type: &str) -> Option<Duration> {
        self.by_type.get(aggregate_type).copied()
    }

    /// The current time.
    pub(crate) fn now(&self) -> SystemTime {
        now(self.clock.as_ref())
    }

    /// The [`EXPIRES_AT`] value of an item of `aggregate_type` written now,
    /// if the type has a time to live.
    pub(crate) fn expires_at(&self, aggregate_type: &str) -> Option<u64> {
        let ttl = self.ttl_of(aggregate_type)?;
        Some(epoch_seconds(self.now()).saturating_add(ttl.as_secs()))
    }

    /// True if an item whose [`EXPIRES_AT`] is `expires_at` is past it now.
    pub(crate) fn is_past(&self, expires_at: Option<u64>) -> bool {
        expires_at.is_some_and(|at| at <= epoch_seconds(self.now()))
    }
}

/// The current time from `clock`, or the system's.
pub(crate) fn now(clock: Option<&Clock>) -> SystemTime {
    clock.map_or_else(SystemTime::now, |clock| clock())
}

/// Whole seconds since the epoch (0 before it).
pub(crate) fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The item's [`EXPIRES_AT`], if it carries one as a number.
pub(crate) fn expires_at_of(item: &Item) -> Option<u64> {
    match item.get(EXPIRES_AT) {
        Some(AttributeValue::N(at)) => at.parse().ok(),
        _ => None,
    }
}

/// True if `item` carries an [`EXPIRES_AT`] at or before `now`'s second:
/// DynamoDB may delete it at any moment, and every read treats it as gone.
pub fn is_expired_at(item: &Item, now: SystemTime) -> bool {
    expires_at_of(item).is_some_and(|at| at <= epoch_seconds(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::n;

    #[test]
    fn an_item_expires_at_its_second_and_without_the_attribute_never() {
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let item = Item::from([(EXPIRES_AT.to_string(), n(1_000))]);
        assert!(!is_expired_at(&item, at - Duration::from_millis(1)));
        assert!(is_expired_at(&item, at));
        assert!(!is_expired_at(&Item::new(), at));
        let clock: Clock = Arc::new(move || at);
        let expiry = Expiry::default()
            .with_type("Cart", Duration::from_secs(60))
            .with_clock(clock);
        assert_eq!(expiry.expires_at("Cart"), Some(1_060));
        assert_eq!(expiry.expires_at("Order"), None);
        assert!(expiry.is_past(expires_at_of(&item)));
    }
}
