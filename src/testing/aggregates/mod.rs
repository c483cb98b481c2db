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
mod ledger;

pub use bank::{AccountSummary, BankAccount, BankCommand, BankError, BankEvent, StatementLine};
pub use ledger::{Ledger, LedgerEvent};
