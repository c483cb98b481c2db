//! The test aggregates: `Account`, a ledger-like aggregate whose state
//! records exactly which events it saw, its view, and aggregates that only
//! count their events (`Other`, and those `counting_aggregate!` defines).

use cqrs_es::{EventEnvelope, View};
use serde::{Deserialize, Serialize};

/// A ledger-like aggregate whose state records exactly which events it saw,
/// so a double-applied event always shows.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub total: i64,
    pub applied: usize,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    /// Emits `times` `Deposited` events of `amount`.
    Deposit { amount: i64, times: usize },
    /// Emits one `Noted` event holding `text`.
    Note { text: String },
    /// Fails without emitting.
    Fail,
}

impl AccountCommand {
    /// `times` deposits of `amount`.
    pub fn deposit(amount: i64, times: usize) -> Self {
        AccountCommand::Deposit { amount, times }
    }

    /// A note of `text`.
    pub fn note(text: impl Into<String>) -> Self {
        AccountCommand::Note { text: text.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    Deposited { amount: i64 },
    Noted { text: String },
}

dynamo_es::domain_event!(AccountEvent, "1.0", Deposited, Noted);

/// A refused command, with its reason: the testing bank account's error
/// type, which every test aggregate refuses with.
pub use dynamo_es::testing::aggregates::BankError as AccountError;

dynamo_es::command_aggregate!(Account, "Account", AccountCommand, AccountEvent, AccountError,
    handle(self, command, sink) {
        match command {
            AccountCommand::Deposit { amount, times } => {
                for _ in 0..times {
                    sink.write(AccountEvent::Deposited { amount }, self).await;
                }
            }
            AccountCommand::Note { text } => sink.write(AccountEvent::Noted { text }, self).await,
            AccountCommand::Fail => return Err(AccountError("refused".into())),
        }
        Ok(())
    }
    apply(self, event) {
        self.applied += 1;
        match event {
            AccountEvent::Deposited { amount } => self.total += amount,
            AccountEvent::Noted { text } => self.notes.push(text),
        }
    }
);

/// An aggregate `$name` of type `$type` that only counts the `$event`s
/// it applies (in its field `$count`); its one command, `()`, emits
/// nothing and is answered with `$handled`.
macro_rules! counting_aggregate {
    ($name:ident, $type:literal, $event:ty, $error:ty, $count:ident, $handled:expr) => {
        #[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            pub $count: usize,
        }

        impl cqrs_es::Aggregate for $name {
            const TYPE: &'static str = $type;
            type Command = ();
            type Event = $event;
            type Error = $error;
            type Services = ();

            async fn handle(
                &mut self,
                _: (),
                _: &(),
                _: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), $error> {
                $handled
            }

            fn apply(&mut self, _: $event) {
                self.$count += 1;
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use counting_aggregate;

// A second aggregate type, sharing the tables.
counting_aggregate!(Other, "Other", AccountEvent, AccountError, count, Ok(()));

/// A view counting deposits.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountView {
    pub deposits: usize,
    pub total: i64,
    pub last_sequence: usize,
}

impl View<Account> for AccountView {
    fn update(&mut self, event: &EventEnvelope<Account>) {
        self.last_sequence = event.sequence;
        if let AccountEvent::Deposited { amount } = event.payload {
            self.deposits += 1;
            self.total += amount;
        }
    }
}
