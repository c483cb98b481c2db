//! Commits as one `TransactWriteItems`, with an idempotency token.
//!
//! Every commit of several items (events, a snapshot head and chunks, stale
//! chunk deletes) goes here; a commit of exactly one event and nothing else
//! is a conditional `PutItem` instead (see [`super::single_put`]).
//!
//! **Invariant:** every attempt of one commit carries the same
//! `ClientRequestToken`, and no two commits share one: a retry after a lost
//! response is recognised by DynamoDB as the same transaction (it succeeds
//! instead of failing its own conditions), and a different writer's identical
//! commit is never taken for it. A transaction cancelled only by throttling,
//! or still in progress, is retried with that token; one cancelled by a
//! failed condition or a conflicting transaction is a conflict, never retried
//! (after a lost attempt too: the token makes a retry of an applied
//! transaction succeed). Any other error after a lost attempt is
//! [`Error::Connection`], the outcome unknown ([`crate::outcome`]).

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, TransactWriteItem};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};

use super::limits::check_limits;
use super::token::request_token;
use super::DynamoEventRepository;
use crate::attempt::{operation_error, AfterAttempt, AfterEachAttempt, AttemptNumber};
use crate::error::{Error, Result};
use crate::outcome::Attempts;
use crate::snapshot::PlannedWrite;

impl DynamoEventRepository {
    /// Checks a planned transaction of event writes against DynamoDB's
    /// limits, then sends it with an idempotency token. Nothing is sent if a
    /// limit would break.
    pub(crate) async fn transact(
        &self,
        key: &str,
        writes: Vec<PlannedWrite>,
        first: usize,
        last: usize,
    ) -> Result<f64> {
        check_limits(key, &writes)?;
        let items: Vec<TransactWriteItem> = writes.into_iter().map(|w| w.write).collect();
        let attempts = Attempts::default();
        self.send(key, items, first, last, &attempts)
            .await
            .map_err(|err| attempts.classify(Error::from_transact_on(&self.event_table, key, err)))
    }

    /// Sends a transaction with an idempotency token, returning the SDK's
    /// error as it is; `attempts` records whether an attempt got no definite
    /// answer (see [`crate::outcome`]). An empty transaction sends nothing.
    pub(super) async fn send(
        &self,
        key: &str,
        items: Vec<TransactWriteItem>,
        first: usize,
        last: usize,
        attempts: &Attempts,
    ) -> std::result::Result<f64, SdkError<TransactWriteItemsError>> {
        if items.is_empty() {
            return Ok(0.0);
        }
        let out = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(request_token(key, first, last))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .customize()
            .config_override(
                aws_sdk_dynamodb::config::Builder::default()
                    .retry_classifier(ThrottledCancellation)
                    .interceptor(attempts.interceptor())
                    .interceptor(AfterEachAttempt::interceptor(RetryLog)),
            )
            .send()
            .await?;
        Ok(out
            .consumed_capacity()
            .iter()
            .filter_map(|c| c.capacity_units())
            .sum())
    }
}

/// Makes the SDK retry, with its throttling backoff, a transaction that
/// DynamoDB cancelled only because an item was throttled (a `ThrottlingError`
/// cancellation reason). The SDK retries throttling errors reported for the
/// whole request on its own, but not these. The retry carries the same
/// `ClientRequestToken`; when retries run out the error is
/// [`Error::Throttled`], never a conflict.
///
/// It also retries a `TransactionInProgressException` (an earlier attempt
/// with the same token, e.g. one that timed out, is still being applied), as
/// DynamoDB recommends: the retry carries the same token, so it reports that
/// transaction's outcome once it completes. When retries run out the outcome
/// is unknown: [`Error::Connection`].
#[derive(Debug)]
struct ThrottledCancellation;

impl ClassifyRetry for ThrottledCancellation {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        retried(ctx).map_or(RetryAction::NoActionIndicated, |(action, _)| action)
    }

    fn name(&self) -> &'static str {
        "dynamo-es: transaction cancelled by throttling"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// How [`ThrottledCancellation`] has the SDK retry the attempt in `ctx`,
/// and why, if it does: a transaction cancelled only by throttling, or one
/// still in progress.
fn retried(ctx: &InterceptorContext) -> Option<(RetryAction, &'static str)> {
    match operation_error::<TransactWriteItemsError>(ctx)? {
        TransactWriteItemsError::TransactionCanceledException(cancel)
            if crate::outcome::cancelled_by_throttling(cancel) =>
        {
            Some((
                RetryAction::throttling_error(),
                "the transaction was cancelled only because items were throttled",
            ))
        }
        TransactWriteItemsError::TransactionInProgressException(_) => Some((
            RetryAction::transient_error(),
            "an earlier attempt of the same transaction is still in progress",
        )),
        _ => None,
    }
}

/// Logs, at debug level, each attempt of a commit's `TransactWriteItems`
/// that [`ThrottledCancellation`] makes the SDK retry: a transaction
/// cancelled only by throttling, or one still in progress. (The classifier
/// itself runs more than once per attempt, so it cannot log.)
#[derive(Debug)]
struct RetryLog;

impl AfterAttempt for RetryLog {
    const NAME: &'static str = "dynamo-es: retry log";

    fn after_attempt(&self, ctx: &InterceptorContext, number: AttemptNumber) {
        let Some((_, reason)) = retried(ctx) else {
            return;
        };
        let AttemptNumber {
            attempt,
            max_attempts,
        } = number;
        if number.retries_left() {
            tracing::debug!(
                attempt,
                max_attempts,
                "{reason}; retrying TransactWriteItems with the same ClientRequestToken"
            );
        } else {
            tracing::debug!(
                attempt,
                max_attempts,
                "{reason}; no attempts left, giving up"
            );
        }
    }
}
