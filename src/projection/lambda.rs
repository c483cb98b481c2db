//! The AWS Lambda adapter: a DynamoDB stream event in, a partial batch
//! response out. Records are dispatched exactly as the projector dispatches
//! them (same [`Dispatcher`]); the response names the first record not
//! applied, so Lambda retries from there and never skips a record.
//!
//! The event source mapping must have `ReportBatchItemFailures` among its
//! `FunctionResponseTypes`: without it Lambda ignores the response and
//! retries (or, on success, drops) the whole batch.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
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
/// use aws_lambda_events::event::dynamodb::Event;
/// use aws_lambda_events::event::streams::DynamoDbEventResponse;
/// use dynamo_es::projection::{lambda, Dispatcher};
///
/// async fn handler<A: cqrs_es::Aggregate + 'static>(
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
