//! Whether a write was applied: known, or unknown after a lost attempt.
//!
//! The SDK retries an attempt that got no definite answer: no response, a
//! response cut off or unreadable, a timeout, or a server error (5xx). Such
//! an attempt may have been applied. If the retries that follow end in
//! another error (throttling, more server errors, anything that does not
//! say what is stored), that error would read as a refusal, though an
//! earlier attempt may have written the item.
//!
//! **Invariant:** a write path that sends with [`Attempts`] reports a failed
//! call after a lost attempt as [`Error::Connection`] (outcome unknown),
//! never as [`Error::Throttled`] or [`Error::Dynamo`]; only an answer that
//! tells the outcome (a success, a conflict the write path can attribute)
//! ends otherwise. Without a lost attempt, errors are classified as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;

use crate::attempt::{AfterAttempt, AfterEachAttempt, AttemptNumber};
use crate::error::Error;
use crate::intercept::Interceptor;

/// What the attempts of one request have seen: shared by the interceptor
/// the request carries ([`Attempts::interceptor`]) and the code that
/// classifies its final error.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempts(Arc<AtomicBool>);

impl Attempts {
    /// True once an attempt ended without a definite answer, so it may have
    /// been applied.
    pub(crate) fn lost(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Records, after each attempt, whether its outcome is unknown.
    pub(crate) fn interceptor(&self) -> Interceptor<AfterEachAttempt<LostAttempts>> {
        AfterEachAttempt::interceptor(LostAttempts(self.clone()))
    }

    /// `err`, the final error of the request, as it must be reported: an
    /// [`Error::Throttled`] or [`Error::Dynamo`] after a lost attempt is
    /// [`Error::Connection`], the outcome being unknown.
    pub(crate) fn classify(&self, err: Error) -> Error {
        if self.lost() {
            unknown(err)
        } else {
            err
        }
    }
}

/// `err` reported as an unknown outcome, if it is a failed call that would
/// otherwise read as a refusal.
pub(crate) fn unknown(err: Error) -> Error {
    match err {
        Error::Throttled {
            operation,
            table,
            message,
            source,
        }
        | Error::Dynamo {
            operation,
            table,
            message,
            source,
        } => Error::Connection {
            operation,
            table,
            message: format!(
                "{message}; an earlier attempt got no definite answer (no response, a timeout \
                 or a server error) and no retry could tell whether it was applied, so whether \
                 the write was stored is unknown: read the item to find out"
            )
            .into(),
            source,
        },
        other => other,
    }
}

/// True if the attempt in `ctx` ended without a definite answer: no
/// response, a response that could not be read, or a server error (5xx).
/// A 4xx service error (a failed condition, throttling, a conflicting
/// transaction) means the write was not applied.
pub(crate) fn outcome_unknown(ctx: &InterceptorContext) -> bool {
    match ctx.output_or_error() {
        Some(Err(error)) => match error.as_operation_error() {
            Some(_) => ctx
                .response()
                .is_none_or(|response| response.status().is_server_error()),
            None => true,
        },
        _ => false,
    }
}

/// The interceptor of [`Attempts`]: it runs after every attempt, before
/// the retry classifiers.
#[derive(Debug)]
pub(crate) struct LostAttempts(Attempts);

impl AfterAttempt for LostAttempts {
    const NAME: &'static str = "dynamo-es: lost attempts";

    fn after_attempt(&self, ctx: &InterceptorContext, _: AttemptNumber) {
        if outcome_unknown(ctx) {
            self.0 .0.store(true, Ordering::SeqCst);
        }
    }
}

/// True when DynamoDB cancelled a transaction only because items were
/// throttled (no failed condition, no conflicting transaction), so sending
/// the same transaction again may succeed.
pub(crate) fn cancelled_by_throttling(
    cancel: &aws_sdk_dynamodb::types::error::TransactionCanceledException,
) -> bool {
    let reasons = cancel.cancellation_reasons();
    !reasons.iter().any(|reason| {
        matches!(
            reason.code(),
            Some("ConditionalCheckFailed") | Some("TransactionConflict")
        )
    }) && reasons.iter().any(|reason| is_throttling(reason.code()))
}

/// True for DynamoDB's throttling error codes (of a request, or of a
/// transaction's cancellation reason).
pub(crate) fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingError"
                | "ThrottlingException"
                | "ProvisionedThroughputExceeded"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "ThrottlingReasonException"
        )
    )
}
