//! Aggregates to test and demonstrate an event store with: a bank account
//! with its view, and a ledger whose state grows as large as a test needs.
//!
//! ```
//! use cqrs_es::Aggregate;
//! use dynamo_es::testing::aggregates::{BankAccount, BankEvent};
//!
//! let mut account = BankAccount::default();
//! account.apply(BankEvent::Opened { owner: "Ada".into() });
//! account.apply(BankEvent::Deposited { cents: 2_500, description: "salary".into() });
//! assert_eq!(account.balance_cents, 2_500);
//! ```
//!
//! **Invariant:** `apply` is a pure function of the state and the event,
//! and every state and event round-trips through serde (their stored form
//! is what the store's tests and benchmarks measure).

mod bank;
mod header;
mod ledger;

/// Implements [`cqrs_es::Aggregate`] for a test aggregate whose command is
/// the list of events to write, in order: the one `Aggregate` header the
/// crate's test aggregates share ([`Ledger`] and those of the test suites).
///
/// `events_aggregate!(State, "Type", Event, Error, empty => expr)` writes
/// `impl Aggregate for State` with `Command = Vec<Event>`, `Services = ()`,
/// a `handle` that answers an empty command with `expr` and writes every
/// other command's events, and an `apply` that calls the state's own
/// `fn record(&mut self, event: Event)`.
///
/// ```
/// use cqrs_es::{Aggregate, DomainEvent};
///
/// #[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Tally(u64);
///
/// #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Counted;
///
/// impl DomainEvent for Counted {
///     fn event_type(&self) -> String { "Counted".into() }
///     fn event_version(&self) -> String { "1.0".into() }
/// }
///
/// impl Tally {
///     fn record(&mut self, _: Counted) { self.0 += 1; }
/// }
///
/// dynamo_es::events_aggregate!(Tally, "Tally", Counted, std::convert::Infallible, empty => Ok(()));
///
/// let mut tally = Tally::default();
/// tally.apply(Counted);
/// assert_eq!(tally, Tally(1));
/// ```
#[macro_export]
macro_rules! events_aggregate {
    ($state:ty, $type:literal, $event:ty, $error:ty, empty => $empty:expr) => {
        impl ::cqrs_es::Aggregate for $state {
            const TYPE: &'static str = $type;
            type Command = ::std::vec::Vec<$event>;
            type Event = $event;
            type Error = $error;
            type Services = ();

            async fn handle(
                &mut self,
                events: ::std::vec::Vec<$event>,
                _: &(),
                sink: &::cqrs_es::event_sink::EventSink<Self>,
            ) -> ::std::result::Result<(), $error> {
                if events.is_empty() {
                    return $empty;
                }
                for event in events {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: $event) {
                self.record(event);
            }
        }
    };
}

pub use bank::{AccountSummary, BankAccount, BankCommand, BankError, BankEvent, StatementLine};
pub use ledger::{Ledger, LedgerEvent};
