//! Shared test support: a test aggregate, a view, and helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, View};
use dynamo_es::testing::{dynamodb, TestTables};
use dynamo_es::Codec;
use serde::{Deserialize, Serialize};
use serde_json::json;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    Deposited { amount: i64 },
    Noted { text: String },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            AccountEvent::Deposited { .. } => "Deposited".into(),
            AccountEvent::Noted { .. } => "Noted".into(),
        }
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccountError(pub String);

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
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

    fn apply(&mut self, event: Self::Event) {
        self.applied += 1;
        match event {
            AccountEvent::Deposited { amount } => self.total += amount,
            AccountEvent::Noted { text } => self.notes.push(text),
        }
    }
}

/// A second aggregate type, sharing the tables.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Other {
    pub count: usize,
}

impl Aggregate for Other {
    const TYPE: &'static str = "Other";
    type Command = ();
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();
    async fn handle(
        &mut self,
        _: (),
        _: &(),
        _: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), AccountError> {
        Ok(())
    }
    fn apply(&mut self, _event: Self::Event) {
        self.count += 1;
    }
}

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

/// Fresh tables on the test endpoint.
pub async fn tables() -> TestTables {
    dynamodb().await.expect("test tables")
}

/// A unique aggregate id.
pub fn new_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "acct-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every codec this build can write.
pub fn all_codecs() -> Vec<Codec> {
    #[allow(unused_mut)]
    let mut codecs = vec![Codec::json()];
    #[cfg(feature = "msgpack")]
    codecs.push(Codec::msgpack());
    #[cfg(feature = "compression")]
    {
        codecs.push(Codec::json().compressed(3));
        #[cfg(feature = "msgpack")]
        codecs.push(Codec::msgpack().compressed(3));
    }
    codecs
}

/// A serialized `Deposited` event.
pub fn deposit_event(
    aggregate_type: &str,
    id: &str,
    sequence: usize,
    amount: i64,
) -> SerializedEvent {
    SerializedEvent {
        aggregate_id: id.to_string(),
        sequence,
        aggregate_type: aggregate_type.to_string(),
        event_type: "Deposited".into(),
        event_version: "1.0".into(),
        payload: json!({"Deposited": {"amount": amount}}),
        metadata: json!({"seq": sequence.to_string()}),
    }
}

/// A serialized `Noted` event with a note of `len` bytes.
pub fn note_event(id: &str, sequence: usize, len: usize) -> SerializedEvent {
    let text: String = (0..len)
        .map(|i| char::from(b'a' + u8::try_from(i * 7 % 26).unwrap()))
        .collect();
    SerializedEvent {
        aggregate_id: id.to_string(),
        sequence,
        aggregate_type: Account::TYPE.to_string(),
        event_type: "Noted".into(),
        event_version: "1.0".into(),
        payload: json!({"Noted": {"text": text}}),
        metadata: json!({}),
    }
}

/// Replays every stored event of `id` onto a fresh aggregate.
pub async fn replay<R: PersistedEventRepository>(repo: &R, id: &str) -> (Account, Vec<usize>) {
    let events = repo.get_events::<Account>(id).await.unwrap();
    let mut account = Account::default();
    let mut sequences = Vec::new();
    for event in events {
        sequences.push(event.sequence);
        let envelope: EventEnvelope<Account> = event.try_into().unwrap();
        account.apply(envelope.payload);
    }
    (account, sequences)
}

/// Metadata for a commit.
pub fn no_metadata() -> HashMap<String, String> {
    HashMap::new()
}

/// Counts the items in a table (all pages).
pub async fn count_items(client: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    let mut pages = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page.unwrap().items.unwrap_or_default().len();
    }
    count
}
