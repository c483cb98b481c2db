//! The AWS Lambda adapter: a DynamoDB stream event in, a partial batch
//! response out. Records are dispatched exactly as the projector dispatches
//! them (same [`Dispatcher`]); the response names the first record not
//! applied, so Lambda retries from there and never skips a record.
//!
//! The event source mapping must have `ReportBatchItemFailures` among its
//! `FunctionResponseTypes`: without it Lambda ignores the response and
//! retries (or, on success, drops) the whole batch.
//!
//! A deployed function's `main` builds its [`Dispatcher`] once per
//! container and hands it to [`run`], which serves every invocation with
//! [`handler`]; the types of their signatures ([`Event`],
//! [`DynamoDbEventResponse`], [`LambdaEvent`], [`RuntimeError`]) are
//! re-exported here, and so are the [`aws_lambda_events`] and
//! [`lambda_runtime`] crates, so a function needs no dependency of its own
//! on either:
//!
//! ```no_run
//! use cqrs_es::{Aggregate, View};
//! use dynamo_es::aws_sdk_dynamodb::Client;
//! use dynamo_es::projection::{lambda, Dispatcher, EventDecoder, ViewProjection};
//! use dynamo_es::{DynamoEventRepository, DynamoViewRepository};
//!
//! // The body of `main` (`#[tokio::main]`) for your aggregate and view.
//! async fn serve<A: Aggregate + 'static, V: View<A> + 'static>() -> Result<(), lambda::RuntimeError> {
//!     let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//!     let client = Client::new(&config);
//!     let events = DynamoEventRepository::new(client.clone()).with_tables("Events", "Snapshots");
//!     let views = DynamoViewRepository::<V, A>::new("account_balances", client);
//!     let dispatcher = Dispatcher::new(EventDecoder::<A>::from_repository(&events))
//!         .with_projection(ViewProjection::new(views));
//!     lambda::run(dispatcher).await
//! }
//! ```

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

/// The event types' crate, at the version this adapter is built on.
pub use aws_lambda_events;
/// The Lambda DynamoDB stream event (`aws_lambda_events`), and one of its
/// records.
pub use aws_lambda_events::event::dynamodb::{Event, EventRecord};
/// The partial batch response (`batchItemFailures`) and one of its entries.
pub use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
/// The Lambda runtime's crate, at the version [`run`] uses.
pub use lambda_runtime;
/// The error type of the Lambda runtime (`lambda_runtime::Error`).
pub use lambda_runtime::Error as RuntimeError;
/// One invocation as the Lambda runtime hands it over: the payload and its
/// [`Context`] (request id, deadline, function ARN).
pub use lambda_runtime::{Context, LambdaEvent};

use cqrs_es::Aggregate;

use super::{ChangeKind, ChangeRecord, Dispatcher, Error, Image};

/// Converts one record of a Lambda DynamoDB stream event.
///
/// [`Error::InvalidRecord`] if the record has no sequence number or an
/// unknown event name. The shard is unknown to Lambda handlers, so
/// [`ChangeRecord::shard_id`] is empty; an absent creation time (the epoch
/// in `aws_lambda_events`) is `None`.
pub fn change_record(record: EventRecord) -> Result<ChangeRecord, Error> {
    let Some(sequence_number) = record.change.sequence_number else {
        return Err(Error::InvalidRecord {
            record: format!("event {}", record.event_id),
            reason: "no SequenceNumber".into(),
        });
    };
    let event_name = match record.event_name.as_str() {
        "INSERT" => ChangeKind::Insert,
        "MODIFY" => ChangeKind::Modify,
        "REMOVE" => ChangeKind::Remove,
        other => {
            return Err(Error::InvalidRecord {
                record: sequence_number,
                reason: format!("unknown eventName {other:?}"),
            })
        }
    };
    let created = SystemTime::from(record.change.approximate_creation_date_time);
    let created = (created > SystemTime::UNIX_EPOCH + Duration::from_secs(1)).then_some(created);
    let new_image =
        (!record.change.new_image.is_empty()).then(|| Image::from(record.change.new_image));
    Ok(ChangeRecord {
        shard_id: String::new(),
        sequence_number,
        event_name,
        created,
        keys: Image::from(record.change.keys),
        new_image,
    })
}

/// Dispatches a Lambda DynamoDB stream event through `dispatcher` and
/// returns the partial batch response.
///
/// With every record applied, `batchItemFailures` is empty. Otherwise it
/// holds one entry: the sequence number of the first record not applied
/// (the start of the aggregate run whose projection failed, a record that
/// cannot be decoded under [`DecodeErrorPolicy::Stop`](super::DecodeErrorPolicy::Stop),
/// or a record that cannot be read), and Lambda retries the batch from that
/// record. The errors are logged (`tracing`); a record without a sequence
/// number fails the whole batch (an entry without an identifier).
///
/// ```no_run
/// use dynamo_es::projection::lambda::{self, DynamoDbEventResponse, Event};
/// use dynamo_es::projection::Dispatcher;
///
/// async fn on_batch<A: cqrs_es::Aggregate + 'static>(
///     dispatcher: &Dispatcher<A>,
///     event: Event,
/// ) -> DynamoDbEventResponse {
///     lambda::handle(dispatcher, event).await
/// }
/// ```
pub async fn handle<A: Aggregate + 'static>(
    dispatcher: &Dispatcher<A>,
    event: Event,
) -> DynamoDbEventResponse {
    let sequence_numbers: Vec<Option<String>> = event
        .records
        .iter()
        .map(|record| record.change.sequence_number.clone())
        .collect();
    let mut records = Vec::with_capacity(event.records.len());
    let mut unreadable = None;
    for (index, record) in event.records.into_iter().enumerate() {
        match change_record(record) {
            Ok(record) => records.push(record),
            Err(error) => {
                unreadable = Some((index, error));
                break;
            }
        }
    }
    let first_failed = match dispatcher.dispatch(&records).await {
        Err(failure) => {
            tracing::error!(
                first_failed = failure.first_failed,
                error = %failure.error,
                "stream batch failed; Lambda retries it from the first record not applied"
            );
            Some(failure.first_failed)
        }
        Ok(_) => unreadable.map(|(index, error)| {
            tracing::error!(index, %error, "unreadable stream record");
            index
        }),
    };
    let mut response = DynamoDbEventResponse::default();
    if let Some(index) = first_failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = sequence_numbers.get(index).cloned().flatten();
        response.batch_item_failures.push(failure);
    }
    response
}

/// One invocation: the function [`run`] registers with the Lambda runtime.
/// Dispatches the stream event with [`handle`] and returns its partial
/// batch response. It never fails (the error type is [`Infallible`]): a
/// record not applied is named in `batchItemFailures`, and Lambda retries
/// from it.
///
/// Call it directly to invoke the function locally, with a recorded event:
///
/// ```no_run
/// # async fn demo<A: cqrs_es::Aggregate + 'static>(
/// #     dispatcher: dynamo_es::projection::Dispatcher<A>,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use dynamo_es::projection::lambda::{self, Context, Event, LambdaEvent};
///
/// let recorded = std::fs::read_to_string("tests/fixtures/lambda_stream_event.json")?;
/// let event: Event = serde_json::from_str(&recorded)?;
/// let response = lambda::handler(&dispatcher, LambdaEvent::new(event, Context::default())).await?;
/// assert!(response.batch_item_failures.is_empty());
/// # Ok(()) }
/// ```
pub async fn handler<A: Aggregate + 'static>(
    dispatcher: &Dispatcher<A>,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Infallible> {
    Ok(handle(dispatcher, event.payload).await)
}

/// Runs the function: the Lambda runtime's loop, which answers every
/// invocation with [`handler`] on `dispatcher` (built once, reused by
/// every invocation of the container), until the runtime stops it.
/// Returns the runtime's error if it cannot reach the Lambda Runtime API
/// (outside Lambda, for example: `AWS_LAMBDA_RUNTIME_API` unset).
pub async fn run<A: Aggregate + 'static>(dispatcher: Dispatcher<A>) -> Result<(), RuntimeError> {
    let dispatcher = &dispatcher;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<Event>| handler(dispatcher, event),
    ))
    .await
}
