//! The wording of what DynamoDB or the SDK said about a failed request:
//! a service error's code and message (with a hint for a missing table or a
//! key schema that is not this crate's), or each cause of a failure to get
//! an answer, without the repeats the SDK's layers produce.

use std::fmt;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

/// What DynamoDB or the SDK said about `err` on `table`, as the typed
/// errors word it: a service error's code and message, or each cause of a
/// failure to get an answer.
pub(crate) fn sdk_message<E, R>(err: &SdkError<E, R>, table: &str) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(service) => service_message(service.err(), table),
        _ => causes(err),
    }
}

/// A service error as `Code: message`, with a hint for a missing table or
/// a key schema that is not this crate's. A cancelled transaction also
/// lists each item's cancellation reason and its message.
pub(super) fn service_message<E>(err: &E, table: &str) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut text = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        (None, Some(message)) => message.to_string(),
        (None, None) => causes(err),
    };
    let mut messages = vec![err.message().unwrap_or_default().to_string()];
    let transact =
        (err as &(dyn std::error::Error + 'static)).downcast_ref::<TransactWriteItemsError>();
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = transact {
        for (index, reason) in cancel.cancellation_reasons().iter().enumerate() {
            let (Some(code), message) = (reason.code(), reason.message()) else {
                continue;
            };
            if code == "None" {
                continue;
            }
            match message {
                Some(message) => text.push_str(&format!("; item {index}: {code}: {message}")),
                None => text.push_str(&format!("; item {index}: {code}")),
            }
            messages.push(message.unwrap_or_default().to_string());
        }
    }
    let code = err.code().unwrap_or_default();
    if code == "ResourceNotFoundException" {
        let exists = match table {
            "" => "does the table exist".to_string(),
            table if table.contains(", ") => format!("do tables {table} exist"),
            table => format!("does table {table} exist"),
        };
        text.push_str(&format!(
            " ({exists} in this account and region? dynamo_es::create_event_tables and \
             create_view_table create the tables)"
        ));
    } else if messages
        .iter()
        .any(|message| is_key_schema_message(message))
    {
        let which = match table {
            "" => "the table does".to_string(),
            table if table.contains(", ") => format!("one of tables {table} does"),
            table => format!("table {table} does"),
        };
        text.push_str(&format!(
            " ({which} not have the key schema dynamo-es expects: events HASH \
             AggregateTypeAndId (S), RANGE AggregateIdSequence (N); snapshots HASH \
             AggregateTypeAndId (S); views HASH ViewId (S))"
        ));
    }
    text
}

/// True for DynamoDB's ways of saying a request's key is not the table's.
fn is_key_schema_message(message: &str) -> bool {
    [
        "key element does not match the schema",
        "Missing the key",
        "missed key schema element",
        "Query key condition not supported",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// An error and each of its sources, `: `-separated, without the repeats
/// the SDK's layers produce (and without `DisplayErrorContext`'s debug dump).
pub(super) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut last = String::new();
    let mut current = Some(err);
    while let Some(err) = current {
        let part = err.to_string();
        if !part.is_empty() && part != last {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        last = part;
        current = err.source();
    }
    text
}
