//! A bank account: opened once, deposits, withdrawals within the balance,
//! and a statement line per movement; its view sums the movements.
//!
//! **Invariant:** the balance is the sum of the statement's amounts, and a
//! command that would overdraw the account emits nothing.

use cqrs_es::{EventEnvelope, View};
use serde::{Deserialize, Serialize};

/// A bank account, with a statement line per deposit and withdrawal.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct BankAccount {
    /// Whether the account was opened.
    pub opened: bool,
    /// The balance, in cents.
    pub balance_cents: i64,
    /// Every movement, oldest first.
    pub statement: Vec<StatementLine>,
}

/// One movement on a [`BankAccount`]'s statement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatementLine {
    /// What the movement was.
    pub description: String,
    /// The amount, in cents: positive for deposits, negative for withdrawals.
    pub amount_cents: i64,
    /// The balance after the movement, in cents.
    pub balance_cents: i64,
}

/// What a [`BankAccount`] can be asked to do.
#[derive(Debug, Clone)]
pub enum BankCommand {
    /// Opens the account (once).
    Open {
        /// The account's owner.
        owner: String,
    },
    /// Deposits money.
    Deposit {
        /// The amount, in cents.
        cents: i64,
        /// The statement line's text.
        description: String,
    },
    /// Withdraws money, if the balance covers it.
    Withdraw {
        /// The amount, in cents.
        cents: i64,
        /// The statement line's text.
        description: String,
    },
}

/// What happened to a [`BankAccount`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum BankEvent {
    /// The account was opened.
    Opened {
        /// The account's owner.
        owner: String,
    },
    /// Money was deposited.
    Deposited {
        /// The amount, in cents.
        cents: i64,
        /// The statement line's text.
        description: String,
    },
    /// Money was withdrawn.
    Withdrew {
        /// The amount, in cents.
        cents: i64,
        /// The statement line's text.
        description: String,
    },
}

crate::domain_event!(BankEvent, "1.0", Opened, Deposited, Withdrew);

/// A refused [`BankCommand`] (opening twice, or overdrawing), with the
/// reason; the test suites' own aggregates refuse their commands with it
/// too.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BankError(pub String);

crate::command_aggregate!(BankAccount, "BankAccount", BankCommand, BankEvent, BankError,
    handle(self, command, sink) {
        match command {
            BankCommand::Open { owner } if !self.opened => {
                sink.write(BankEvent::Opened { owner }, self).await
            }
            BankCommand::Open { .. } => return Err(BankError("already open".into())),
            BankCommand::Deposit { cents, description } => {
                sink.write(BankEvent::Deposited { cents, description }, self)
                    .await
            }
            BankCommand::Withdraw { cents, description } if cents <= self.balance_cents => {
                sink.write(BankEvent::Withdrew { cents, description }, self)
                    .await
            }
            BankCommand::Withdraw { .. } => return Err(BankError("insufficient funds".into())),
        }
        Ok(())
    }
    apply(self, event) {
        let (description, amount) = match event {
            BankEvent::Opened { .. } => {
                self.opened = true;
                return;
            }
            BankEvent::Deposited { cents, description } => (description, cents),
            BankEvent::Withdrew { cents, description } => (description, -cents),
        };
        self.balance_cents += amount;
        self.statement.push(StatementLine {
            description,
            amount_cents: amount,
            balance_cents: self.balance_cents,
        });
    }
);

/// A view of a [`BankAccount`]: how many deposits and withdrawals, and the
/// balance they add up to.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountSummary {
    /// Deposits seen.
    pub deposits: usize,
    /// Withdrawals seen.
    pub withdrawals: usize,
    /// The balance, in cents.
    pub balance_cents: i64,
}

impl View<BankAccount> for AccountSummary {
    fn update(&mut self, event: &EventEnvelope<BankAccount>) {
        match &event.payload {
            BankEvent::Opened { .. } => {}
            BankEvent::Deposited { cents, .. } => {
                self.deposits += 1;
                self.balance_cents += cents;
            }
            BankEvent::Withdrew { cents, .. } => {
                self.withdrawals += 1;
                self.balance_cents -= cents;
            }
        }
    }
}
