//! One part of a batch as one `TransactWriteItems`: the handler's writes,
//! then the per-aggregate sequences, then the shard position; and what
//! DynamoDB's answer means for each of them.
//!
//! **Invariant:** the answer is read per item (the cancellation reasons
//! come in the order of the items): a refused write of the handler is the
//! handler's refusal (unless it is a typed view's version condition: a
//! concurrent change), a refused sequence or position is a concurrent
//! writer, never the other way round.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use crate::item::{n, s};
use crate::projection::batch::ShardPosition;
use crate::projection::fields::{
    millis, now_millis, CHECKPOINT, CHECKPOINT_CREATED_AT, LEASE_COUNTER, OWNER, UPDATED_AT,
};
use crate::projection::typed_view::VERSION_PLACEHOLDER;
use crate::projection::Error;
use crate::size::{item_size, value_size};
use crate::tables::LEASE_KEY;

/// What DynamoDB answered to one part's transaction.
#[derive(Debug)]
pub(super) enum Answer {
    /// Applied, every item.
    Committed,
    /// A condition of the handler's writes failed: what DynamoDB said.
    Refused(String),
    /// A sequence item changed since it was read, or a concurrent
    /// transaction conflicted: read again and retry.
    Contended,
    /// The position's condition failed: the owner or the checkpoint moved.
    PositionMoved,
    /// Two operations of the transaction target one item.
    DuplicateItem(String),
}

/// The write moving `position` to `sequence` (created at `created`),
/// conditional on the owner and on the previous checkpoint; bumps the
/// lease counter like every owner write.
pub(super) fn position_write(
    position: &ShardPosition,
    sequence: &str,
    created: Option<SystemTime>,
) -> Result<TransactWriteItem, Error> {
    let mut expression =
        "SET #counter = #counter + :one, #updated = :now, #checkpoint = :checkpoint".to_string();
    let mut update = Update::builder()
        .table_name(&position.table)
        .key(LEASE_KEY, s(&position.key))
        .expression_attribute_names("#counter", LEASE_COUNTER)
        .expression_attribute_names("#updated", UPDATED_AT)
        .expression_attribute_names("#checkpoint", CHECKPOINT)
        .expression_attribute_names("#created", CHECKPOINT_CREATED_AT)
        .expression_attribute_names("#owner", OWNER)
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":now", n(now_millis()))
        .expression_attribute_values(":checkpoint", s(sequence))
        .expression_attribute_values(":owner", s(&position.owner));
    match created {
        Some(created) => {
            expression.push_str(", #created = :created");
            update = update.expression_attribute_values(":created", n(millis(created)));
        }
        None => expression.push_str(" REMOVE #created"),
    }
    update = match &position.previous {
        Some(previous) => update
            .condition_expression("#owner = :owner AND #checkpoint = :previous")
            .expression_attribute_values(":previous", s(previous)),
        None => {
            update.condition_expression("#owner = :owner AND attribute_not_exists(#checkpoint)")
        }
    };
    let update = update
        .update_expression(expression)
        .build()
        .map_err(crate::Error::from)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The bytes `write` adds to a `TransactWriteItems` request, about: its
/// item or key, its expressions, names and values.
pub(super) fn write_size(write: &TransactWriteItem) -> usize {
    type Names = Option<HashMap<String, String>>;
    type Values = Option<HashMap<String, AttributeValue>>;
    let part = |table: &str,
                item: &HashMap<String, AttributeValue>,
                texts: [Option<&str>; 2],
                names: &Names,
                values: &Values| {
        let texts: usize = texts.iter().flatten().map(|text| text.len()).sum();
        let names: usize = names.iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
        let values: usize = values
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + value_size(v))
            .sum();
        table.len() + item_size(item) + texts + names + values
    };
    // Each kind of write: its table, its item or key, its texts, names
    // and values.
    macro_rules! size {
        ($kind:ident, $item:ident, |$w:ident| $texts:expr) => {
            write.$kind.as_ref().map(|$w| {
                let (names, values) = (
                    &$w.expression_attribute_names,
                    &$w.expression_attribute_values,
                );
                part(&$w.table_name, &$w.$item, $texts, names, values)
            })
        };
    }
    let sizes = [
        size!(put, item, |w| [w.condition_expression.as_deref(), None]),
        size!(update, key, |w| {
            [
                w.condition_expression.as_deref(),
                Some(w.update_expression.as_str()),
            ]
        }),
        size!(delete, key, |w| [w.condition_expression.as_deref(), None]),
        size!(condition_check, key, |w| [
            Some(w.condition_expression.as_str()),
            None
        ]),
    ];
    sizes.into_iter().flatten().sum()
}

/// Sends `writes` (the handler's first `handler` items, then the
/// sequences, then the position if `position`) as one transaction, and
/// reads the answer. `tables` names the tables for other errors.
pub(super) async fn send(
    client: &Client,
    writes: Vec<TransactWriteItem>,
    handler: usize,
    position: bool,
    tables: &str,
) -> Result<Answer, Error> {
    let count = writes.len();
    // Conditions on a typed view's version: a concurrent change, not a refusal.
    let versioned: Vec<bool> = writes
        .iter()
        .map(|write| {
            let names = |names: Option<&HashMap<String, String>>| {
                names.is_some_and(|names| names.contains_key(VERSION_PLACEHOLDER))
            };
            names(
                write
                    .put
                    .as_ref()
                    .and_then(|w| w.expression_attribute_names.as_ref()),
            ) || names(
                write
                    .update
                    .as_ref()
                    .and_then(|w| w.expression_attribute_names.as_ref()),
            )
        })
        .collect();
    let result = client
        .transact_write_items()
        .set_transact_items(Some(writes))
        .send()
        .await;
    let err = match result {
        Ok(_) => return Ok(Answer::Committed),
        Err(err) => err,
    };
    if let SdkError::ServiceError(service) = &err {
        match service.err() {
            TransactWriteItemsError::TransactionCanceledException(cancel) => {
                let reasons = cancel.cancellation_reasons();
                let code = |index: usize| reasons.get(index).and_then(|r| r.code());
                let failed = |index: usize| code(index) == Some("ConditionalCheckFailed");
                let refused = |index: usize| failed(index) && !versioned[index];
                if let Some(index) = (0..handler).find(|&index| refused(index)) {
                    let message = reasons
                        .get(index)
                        .and_then(|r| r.message())
                        .unwrap_or("the conditional request failed");
                    return Ok(Answer::Refused(format!(
                        "write {} of the handler's {handler}: {message}",
                        index + 1
                    )));
                }
                if position && failed(count - 1) {
                    return Ok(Answer::PositionMoved);
                }
                let contended = (0..count).any(failed)
                    || reasons
                        .iter()
                        .any(|r| r.code() == Some("TransactionConflict"));
                if contended {
                    return Ok(Answer::Contended);
                }
            }
            other
                if other.code() == Some("ValidationException")
                    && other
                        .message()
                        .is_some_and(|m| m.contains("multiple operations on one item")) =>
            {
                return Ok(Answer::DuplicateItem(
                    other.message().unwrap_or_default().to_string(),
                ));
            }
            _ => {}
        }
    }
    Err(crate::Error::from_transact_on(tables, "transactional projection", err).into())
}
