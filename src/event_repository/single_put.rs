//! A commit of one event and nothing else, as one conditional `PutItem`.
//!
//! A transactional write costs twice a standard one (2 write units per KB
//! per item instead of 1), and a commit of a single event without a snapshot
//! needs no transaction: one item is written atomically anyway. Such a
//! commit is a `PutItem` under the same condition as in a transaction,
//! `attribute_not_exists(AggregateIdSequence)`.
//!
//! What a transaction's `ClientRequestToken` does for a retry after a lost
//! response, a commit id does here: the item carries [`COMMIT_ID`], random
//! per commit and the same on every attempt the SDK makes, and the request
//! asks for the stored item when its condition fails
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`).
//!
//! **Invariant:** a single put reports success only if the event item at its
//! key carries this commit's id: either the put succeeded, or its condition
//! failed on an item carrying that id (an earlier attempt was applied and its
//! response lost). A failed condition on any other item, one without a
//! commit id included (upstream's items), is [`Error::Conflict`], as a
//! `TransactionConflictException` on a first attempt is. When an earlier
//! attempt's outcome is unknown (no answer, a cut-off answer or a 5xx) and
//! the outcome still cannot be read (the server returned no item with the
//! failed condition and the key reads empty, or every retry met a
//! conflicting transaction, throttling or a server error), the error is
//! [`Error::Connection`]: never a false success, a false conflict or a false
//! refusal (see [`crate::outcome`]).

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure,
};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_runtime_api::http::Response;

use super::token::nonce;
use super::DynamoEventRepository;
use crate::attempt::{operation_error, AfterAttempt, AfterEachAttempt, AttemptNumber};
use crate::error::{sdk_message, Error, Result};
use crate::item::{s, Item, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID, COMMIT_ID};
use crate::outcome::{self, Attempts};
use crate::size::MAX_ITEM_SIZE;
use crate::snapshot::PlannedWrite;
use crate::tables::requests::put_request;

/// The operation, as spans and errors name it.
pub(super) const PUT_ITEM: &str = "PutItem";

/// The condition every event write carries.
const CONDITION: &str = "attribute_not_exists(AggregateIdSequence)";

/// The length of a commit id: 128 bits in hex.
const COMMIT_ID_LEN: usize = 32;

/// A new commit id: 128 bits, from two [`nonce`]s.
pub(super) fn commit_id() -> String {
    format!("{:016x}{:016x}", nonce(), nonce())
}

/// If `writes` is a single event put that still fits one item once it
/// carries a commit id, takes its item out of `writes` (left empty).
/// Otherwise leaves `writes` as it is: a transaction writes it (an event
/// within 40 bytes of the item size limit is committed as before).
pub(super) fn take_lone_item(writes: &mut Vec<PlannedWrite>) -> Option<Item> {
    let [write] = writes.as_slice() else {
        return None;
    };
    if write.write.put.is_none() || write.size + COMMIT_ID.len() + COMMIT_ID_LEN > MAX_ITEM_SIZE {
        return None;
    }
    writes.pop()?.write.put.map(|put| put.item)
}

/// True if a stored item carries commit id `id`.
fn carries(item: &Item, id: &str) -> bool {
    matches!(item.get(COMMIT_ID), Some(AttributeValue::S(stored)) if stored == id)
}

impl DynamoEventRepository {
    /// Writes one event item, under its condition and with a fresh commit
    /// id, returning the write units DynamoDB reported (0 when an earlier
    /// attempt's lost response had them). Sizes were checked by the caller.
    pub(super) async fn put_one(&self, key: &str, mut item: Item) -> Result<f64> {
        let Some(sequence) = item.get(AGGREGATE_ID_SEQUENCE).cloned() else {
            return Err(Error::InvalidCommit {
                aggregate: key.to_string(),
                reason: format!("its event item has no {AGGREGATE_ID_SEQUENCE}"),
            });
        };
        let id = commit_id();
        item.insert(COMMIT_ID.to_string(), s(&id));
        let attempts = Attempts::default();
        let result = put_request(&self.client, &self.event_table, item)
            .condition_expression(CONDITION)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .customize()
            .config_override(
                aws_sdk_dynamodb::config::Builder::default()
                    .retry_classifier(RetryConflictAfterLoss(attempts.clone()))
                    .interceptor(attempts.interceptor())
                    .interceptor(AfterEachAttempt::interceptor(AttemptLog(attempts.clone()))),
            )
            .send()
            .await;
        match result {
            Ok(out) => Ok(out
                .consumed_capacity
                .and_then(|c| c.capacity_units)
                .unwrap_or_default()),
            Err(err) => self.settle(key, &id, sequence, attempts.lost(), err).await,
        }
    }

    /// Decides a failed single put: success if the stored item is this
    /// commit's, a conflict if it is another's, unknown if it cannot be told.
    async fn settle(
        &self,
        key: &str,
        id: &str,
        sequence: AttributeValue,
        lost: bool,
        err: SdkError<PutItemError, Response>,
    ) -> Result<f64> {
        match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => match failed.item() {
                Some(stored) if carries(stored, id) => {
                    self.applied_earlier(key);
                    Ok(0.0)
                }
                // The aggregate was deleted: its tombstone holds the key.
                Some(stored) if crate::item::is_tombstone(stored) => {
                    Err(self.deleted_error(stored))
                }
                Some(_) => Err(self.conflict(key)),
                // A server that ignores ReturnValuesOnConditionCheckFailure:
                // after a lost response, read what is stored.
                None if lost => self.settle_by_read(key, id, sequence, err).await,
                None => Err(self.conflict(key)),
            },
            Some(PutItemError::TransactionConflictException(_)) if lost => {
                Err(self.unknown(err, "every retry met a conflicting transaction"))
            }
            Some(PutItemError::TransactionConflictException(_)) => Err(self.conflict(key)),
            // Throttling or a server error after a lost attempt does not
            // tell whether that attempt was applied (a client that cannot
            // send at all stays a configuration error).
            _ if lost => Err(outcome::unknown(Error::from_sdk_on(
                PUT_ITEM,
                &self.event_table,
                err,
            ))),
            _ => Err(Error::from_sdk_on(PUT_ITEM, &self.event_table, err)),
        }
    }

    /// After a lost response and a failed condition that returned no item:
    /// a strongly consistent read of the event's commit id.
    async fn settle_by_read(
        &self,
        key: &str,
        id: &str,
        sequence: AttributeValue,
        err: SdkError<PutItemError, Response>,
    ) -> Result<f64> {
        let out = self
            .client
            .get_item()
            .table_name(&self.event_table)
            .key(AGGREGATE_TYPE_AND_ID, s(key))
            .key(AGGREGATE_ID_SEQUENCE, sequence)
            .consistent_read(true)
            .projection_expression("#id")
            .expression_attribute_names("#id", COMMIT_ID)
            .send()
            .await
            .map_err(|read| {
                outcome::unknown(Error::from_sdk_on("GetItem", &self.event_table, read))
            })?;
        match out.item {
            Some(stored) if carries(&stored, id) => {
                self.applied_earlier(key);
                Ok(0.0)
            }
            Some(_) => Err(self.conflict(key)),
            None => Err(self.unknown(err, "the event's key reads empty")),
        }
    }

    fn conflict(&self, key: &str) -> Error {
        Error::Conflict {
            key: key.to_string(),
            table: self.event_table.clone(),
        }
    }

    /// An unknown outcome: an earlier attempt's response was lost and `why`
    /// the retry could not tell whether it was applied.
    fn unknown(&self, err: SdkError<PutItemError, Response>, why: &str) -> Error {
        Error::Connection {
            operation: PUT_ITEM,
            table: self.event_table.clone(),
            message: format!(
                "{}; an earlier attempt's response was lost and {why}, so whether the \
                 event was stored is unknown",
                sdk_message(&err, &self.event_table)
            )
            .into(),
            source: Box::new(err),
        }
    }

    fn applied_earlier(&self, key: &str) {
        tracing::debug!(
            aggregate = %key,
            table = %self.event_table,
            "PutItem's condition failed on the item this commit wrote: an earlier attempt \
             was applied and its response lost; committed"
        );
    }
}

/// True if the attempt in `ctx` met a `TransactionConflictException`.
fn transaction_conflict(ctx: &InterceptorContext) -> bool {
    matches!(
        operation_error::<PutItemError>(ctx),
        Some(PutItemError::TransactionConflictException(_))
    )
}

/// Logs the retries [`RetryConflictAfterLoss`] asks for. (Whether an
/// attempt's outcome is unknown is recorded by [`Attempts::interceptor`].)
#[derive(Debug)]
struct AttemptLog(Attempts);

impl AfterAttempt for AttemptLog {
    const NAME: &'static str = "dynamo-es: single put attempts";

    fn after_attempt(&self, ctx: &InterceptorContext, number: AttemptNumber) {
        if transaction_conflict(ctx) && self.0.lost() {
            let what = if number.retries_left() {
                "retrying PutItem with the same CommitId"
            } else {
                "no attempts left, giving up"
            };
            tracing::debug!(
                attempt = number.attempt,
                max_attempts = number.max_attempts,
                "a conflicting transaction after a lost response; {what}"
            );
        }
    }
}

/// Retries a `TransactionConflictException` once an earlier attempt's
/// outcome is unknown: that attempt may have stored the event, and only a
/// retry that meets the stored item (or stores it) can tell. Without a lost
/// attempt the exception is a conflict, reported at once as in a
/// transaction.
#[derive(Debug)]
struct RetryConflictAfterLoss(Attempts);

impl ClassifyRetry for RetryConflictAfterLoss {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        if transaction_conflict(ctx) && self.0.lost() {
            RetryAction::transient_error()
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "dynamo-es: conflicting transaction after a lost PutItem"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}
