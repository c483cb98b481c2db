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

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, TransactWriteItem};
use aws_smithy_runtime_api::client::interceptors::context::{
    FinalizerInterceptorContextRef, InterceptorContext,
};
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_runtime_api::client::retries::RequestAttempts;

use super::limits::check_limits;
use super::token::request_token;
use super::DynamoEventRepository;
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
                    .interceptor(RetryLog),
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
        let Some(Err(error)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        match error
            .as_operation_error()
            .and_then(|error| error.downcast_ref::<TransactWriteItemsError>())
        {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel))
                if crate::outcome::cancelled_by_throttling(cancel) =>
            {
                RetryAction::throttling_error()
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                RetryAction::transient_error()
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "dynamo-es: transaction cancelled by throttling"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// Logs, at debug level, each attempt of a commit's `TransactWriteItems`
/// that [`ThrottledCancellation`] makes the SDK retry: a transaction
/// cancelled only by throttling, or one still in progress. (The classifier
/// itself runs more than once per attempt, so it cannot log.)
#[derive(Debug)]
struct RetryLog;

impl Intercept for RetryLog {
    fn name(&self) -> &'static str {
        "dynamo-es: retry log"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(Err(error)) = context.inner().output_or_error() else {
            return Ok(());
        };
        let reason = match error
            .as_operation_error()
            .and_then(|error| error.downcast_ref::<TransactWriteItemsError>())
        {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel))
                if crate::outcome::cancelled_by_throttling(cancel) =>
            {
                "the transaction was cancelled only because items were throttled"
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                "an earlier attempt of the same transaction is still in progress"
            }
            _ => return Ok(()),
        };
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let max_attempts = cfg.load::<RetryConfig>().map_or(1, |c| c.max_attempts());
        if attempt < max_attempts {
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
        Ok(())
    }
}
