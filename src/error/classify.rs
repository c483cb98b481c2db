//! An AWS SDK error of an operation on a table, as a typed [`Error`].
//!
//! Every SDK failure maps to exactly one variant: a lost condition or
//! transaction conflict to [`Error::Conflict`], throttling after retries to
//! [`Error::Throttled`], a request without a usable answer to
//! [`Error::Connection`] (whether a write landed is unknown), a client that
//! cannot sign or address a request to [`Error::Configuration`] (nothing
//! was sent), and any other answer to [`Error::Dynamo`]. Each carries the
//! operation, the table(s) and what DynamoDB or the SDK said.

use std::fmt;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use super::message::{causes, service_message};
use super::misconfiguration::misconfiguration;
use super::{Error, Result};
use crate::outcome::is_throttling;

/// The output of a call of `operation` on `table`, or `None` where DynamoDB
/// refused it with the service error `refused` picks out (a failed
/// condition, a table that does not exist, one that already does): to the
/// caller that refusal is an answer. Any other error is mapped by
/// [`Error::from_sdk_on`].
pub(crate) fn or_refused<T, E, R>(
    result: std::result::Result<T, SdkError<E, R>>,
    operation: &'static str,
    table: &str,
    refused: impl Fn(&E) -> bool,
) -> Result<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(output) => Ok(Some(output)),
        Err(err) if err.as_service_error().is_some_and(refused) => Ok(None),
        Err(err) => Err(Error::from_sdk_on(operation, table, err)),
    }
}

impl Error {
    /// Maps an SDK error of `operation` on `table` (several tables
    /// comma-separated) to a typed error whose message carries the
    /// operation, the table and what DynamoDB or the SDK said.
    pub(crate) fn from_sdk_on<E, R>(
        operation: &'static str,
        table: &str,
        err: SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let table = table.to_string();
        match &err {
            SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_) => {
                if let Some(reason) = misconfiguration(&err) {
                    return Error::Configuration {
                        operation,
                        table,
                        reason: reason.into(),
                        source: Box::new(err),
                    };
                }
                if matches!(err, SdkError::ConstructionFailure(_)) {
                    return Error::Dynamo {
                        operation,
                        message: causes(&err).into(),
                        table,
                        source: Box::new(err),
                    };
                }
                Error::Connection {
                    operation,
                    message: causes(&err).into(),
                    table,
                    source: Box::new(err),
                }
            }
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Error::Connection {
                operation,
                message: causes(&err).into(),
                table,
                source: Box::new(err),
            },
            SdkError::ServiceError(service) if is_throttling(service.err().code()) => {
                Error::Throttled {
                    operation,
                    message: service_message(service.err(), &table).into(),
                    table,
                    source: Box::new(err),
                }
            }
            SdkError::ServiceError(service) => Error::Dynamo {
                operation,
                message: service_message(service.err(), &table).into(),
                table,
                source: Box::new(err),
            },
            _ => Error::Dynamo {
                operation,
                message: causes(&err).into(),
                table,
                source: Box::new(err),
            },
        }
    }

    /// Maps a `TransactWriteItems` error on `table` (several tables
    /// comma-separated); cancellations for a failed condition or a
    /// conflicting transaction become [`Error::Conflict`] on `key`.
    pub(crate) fn from_transact_on(
        table: &str,
        key: &str,
        err: SdkError<TransactWriteItemsError>,
    ) -> Self {
        const OPERATION: &str = "TransactWriteItems";
        if let SdkError::ServiceError(service) = &err {
            // A previous attempt with the same token is still being applied:
            // whether it lands is unknown, as after a lost response.
            if let TransactWriteItemsError::TransactionInProgressException(_) = service.err() {
                return Error::Connection {
                    operation: OPERATION,
                    table: table.to_string(),
                    message: service_message(service.err(), table).into(),
                    source: Box::new(err),
                };
            }
            if let TransactWriteItemsError::TransactionCanceledException(cancel) = service.err() {
                let conflict = cancel.cancellation_reasons().iter().any(|reason| {
                    matches!(
                        reason.code(),
                        Some("ConditionalCheckFailed") | Some("TransactionConflict")
                    )
                });
                if conflict {
                    return Error::Conflict {
                        key: key.to_string(),
                        table: table.to_string(),
                    };
                }
                let throttled = cancel
                    .cancellation_reasons()
                    .iter()
                    .any(|reason| is_throttling(reason.code()));
                if throttled {
                    return Error::Throttled {
                        operation: OPERATION,
                        table: table.to_string(),
                        message: service_message(service.err(), table).into(),
                        source: Box::new(err),
                    };
                }
            }
        }
        Error::from_sdk_on(OPERATION, table, err)
    }
}
