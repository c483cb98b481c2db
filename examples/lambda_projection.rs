//! An AWS Lambda handler keeping an exactly-once view up to date from the
//! events table's DynamoDB Stream.
//!
//! Build it for a Lambda runtime (`cargo build --release --example
//! lambda_projection --features lambda` for the function's target, or with
//! cargo-lambda) and deploy it with an event source mapping on the events
//! table's stream: starting position `TRIM_HORIZON`, and
//! `FunctionResponseTypes: [ReportBatchItemFailures]` so a failed record is
//! retried from where it failed. `VIEW_TABLE` names the view table (HASH
//! `ViewId` S); `EVENTS_TABLE` and `SNAPSHOTS_TABLE` name the event store's
//! tables (the decoder reads zstd dictionaries from the snapshots table if a
//! payload references one). The role needs `dynamodb:GetItem` and
//! `dynamodb:PutItem` on the view table, `dynamodb:GetItem` on the snapshots
//! table, and the stream read permissions Lambda's trigger requires
//! (`dynamodb:GetRecords`, `GetShardIterator`, `DescribeStream`,
//! `ListStreams` on the stream).

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, View};
use dynamo_es::aws_sdk_dynamodb::Client;
use dynamo_es::projection::{lambda, Dispatcher, EventDecoder, ViewProjection};
use dynamo_es::{DynamoEventRepository, DynamoViewRepository};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { amount: i64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        "Deposited".to_string()
    }
    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AccountError(String);

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    type Command = i64;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        amount: i64,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AccountError> {
        sink.write(AccountEvent::Deposited { amount }, self).await;
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Deposited { amount } => self.balance += amount,
        }
    }
}

/// One view per account: its balance and how many deposits it saw.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BalanceView {
    balance: i64,
    deposits: usize,
}

impl View<Account> for BalanceView {
    fn update(&mut self, event: &EventEnvelope<Account>) {
        match event.payload {
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.deposits += 1;
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = std::env::var("VIEW_TABLE").unwrap_or_else(|_| "account_balances".to_string());
    let client = Client::new(&config);
    let events = std::env::var("EVENTS_TABLE").unwrap_or_else(|_| "Events".to_string());
    let snapshots = std::env::var("SNAPSHOTS_TABLE").unwrap_or_else(|_| "Snapshots".to_string());
    // The decoder takes the repository's codec and its dictionary cache, so
    // payloads written with a zstd dictionary decode too.
    let repository = DynamoEventRepository::new(client.clone()).with_tables(&events, &snapshots);
    let views = DynamoViewRepository::<BalanceView, Account>::new(&table, client);
    // Built once per container, reused by every invocation.
    let dispatcher = Dispatcher::new(EventDecoder::from_repository(&repository))
        .with_projection(ViewProjection::new(views));
    let dispatcher = &dispatcher;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let response: DynamoDbEventResponse = lambda::handle(dispatcher, event.payload).await;
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}
