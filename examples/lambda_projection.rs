//! An AWS Lambda function keeping an exactly-once view up to date from the
//! events table's DynamoDB Stream.
//!
//! Its dependencies are the quick start's (`cqrs-es`, `aws-config`, `tokio`
//! with `macros` and `rt-multi-thread`, `serde`) and `dynamo-es` with the
//! `lambda` feature: the Lambda types and runtime come re-exported from
//! `dynamo_es::projection::lambda`.
//!
//! Build the `bootstrap` for Lambda's `provided.al2023` runtime with
//! `cargo lambda build --release --arm64 --example lambda_projection
//! --features lambda` (it lands in `target/lambda/lambda_projection/`), and
//! deploy it with `db/lambda_projection.yaml` (AWS SAM): the function, its
//! event source mapping on the events table's stream (`TRIM_HORIZON`,
//! `FunctionResponseTypes: [ReportBatchItemFailures]`, bounded retries,
//! failed batches to an SQS queue) and a least-privilege role. `main`
//! registers [`lambda::handler`] (through [`lambda::run`]) with this
//! example's [`dispatcher`]: `tests/lambda_example.rs` invokes exactly
//! that on a recorded stream event.
//!
//! `VIEW_TABLE` names the view table (HASH `ViewId` S, default
//! `account_balances`); `EVENTS_TABLE` and `SNAPSHOTS_TABLE` name the event
//! store's tables (default `Events` and `Snapshots`; the decoder reads zstd
//! dictionaries from the snapshots table if a payload references one). The
//! role needs `dynamodb:GetItem` and `dynamodb:PutItem` on the view table,
//! `dynamodb:GetItem` on the snapshots table, and the stream read
//! permissions of the trigger (`dynamodb:DescribeStream`,
//! `GetShardIterator`, `GetRecords`, `ListStreams` on the stream).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, View};
use dynamo_es::aws_sdk_dynamodb::Client;
use dynamo_es::projection::{lambda, Dispatcher, EventDecoder, ViewProjection};
use dynamo_es::{DynamoEventRepository, DynamoViewRepository};
use serde::{Deserialize, Serialize};

/// An account: its balance.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    /// The balance.
    pub balance: i64,
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// Money came in.
    Deposited {
        /// How much.
        amount: i64,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        "Deposited".to_string()
    }
    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// Why a command was refused.
#[derive(Debug)]
pub struct AccountError(String);

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AccountError {}

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
        if amount <= 0 {
            return Err(AccountError("deposit a positive amount".to_string()));
        }
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
pub struct BalanceView {
    /// The balance.
    pub balance: i64,
    /// How many deposits were applied.
    pub deposits: usize,
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

/// The function's dispatcher: `Account` events, decoded as the event
/// store on `events` and `snapshots` reads them (codec, zstd
/// dictionaries), applied exactly once to the [`BalanceView`]s in `views`.
pub fn dispatcher(
    client: Client,
    events: &str,
    snapshots: &str,
    views: &str,
) -> Dispatcher<Account> {
    let repository = DynamoEventRepository::new(client.clone()).with_tables(events, snapshots);
    let views = DynamoViewRepository::<BalanceView, Account>::new(views, client);
    Dispatcher::new(EventDecoder::from_repository(&repository))
        .with_projection(ViewProjection::new(views))
}

#[tokio::main]
async fn main() -> Result<(), lambda::RuntimeError> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = |variable: &str, default: &str| {
        std::env::var(variable).unwrap_or_else(|_| default.to_string())
    };
    // Built once per container, reused by every invocation.
    let dispatcher = dispatcher(
        Client::new(&config),
        &table("EVENTS_TABLE", "Events"),
        &table("SNAPSHOTS_TABLE", "Snapshots"),
        &table("VIEW_TABLE", "account_balances"),
    );
    lambda::run(dispatcher).await
}
