//! Recording a failure on the current tracing span: the error goes on the
//! span's `error` field and is logged at debug level, never louder (the
//! caller, who gets the error back, decides how loud it is); and the span
//! of an operation on one aggregate, which has that field.

use super::{Error, Result};

impl Error {
    /// Records this error on the current span's `error` field and logs it
    /// at debug level as the failure of `what` (the error itself is returned
    /// to the caller, who decides how loud it is). A lost optimistic-lock
    /// race is logged as a conflict.
    pub(crate) fn record_in_span(&self, what: &'static str) {
        tracing::Span::current().record("error", tracing::field::display(self));
        match self {
            Error::Conflict { key, table } => tracing::debug!(
                %key,
                %table,
                "{what}: conflict, another writer committed first; nothing was written"
            ),
            _ => tracing::debug!(error = %self, "{what} failed"),
        }
    }
}

/// Runs `operation`; if it fails, records the error on the current span and
/// logs it ([`Error::record_in_span`]).
pub(crate) async fn in_span<T>(
    what: &'static str,
    operation: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let result = operation.await;
    if let Err(err) = &result {
        err.record_in_span(what);
    }
    result
}

/// A span at `$level` named `$name` of an operation on one aggregate of
/// `$table`, given as `(type, id)`: its fields are `table` (displayed),
/// `aggregate_type`, `aggregate_id`, those given (as `tracing::span!` takes them, without a
/// trailing comma), and last `error`, which [`in_span`] records.
macro_rules! aggregate_span {
    ($level:expr, $name:literal, $table:expr, ($aggregate_type:expr, $aggregate_id:expr), $($fields:tt)*) => {
        tracing::span!(
            $level,
            $name,
            table = %$table,
            aggregate_type = $aggregate_type,
            aggregate_id = $aggregate_id,
            $($fields)*,
            error = tracing::field::Empty,
        )
    };
}
pub(crate) use aggregate_span;

/// The [`aggregate_span`] of a read: reads are traced at debug level (writes
/// at info).
macro_rules! read_span {
    ($name:literal, $table:expr, $aggregate:tt, $($fields:tt)*) => {
        $crate::error::aggregate_span!(tracing::Level::DEBUG, $name, $table, $aggregate, $($fields)*)
    };
}
pub(crate) use read_span;
