//! The plain requests of a table, written once: strongly consistent reads
//! of one item by key, of many by key (`BatchGetItem`) and of every item a
//! filter keeps (`Scan`), and an unconditional `PutItem` (or one the
//! caller adds its condition to).
//!
//! **Invariant:** every read is strongly consistent and complete: a scan
//! follows every page, a batch asks again for every key DynamoDB left
//! unprocessed, and a failed request is an error naming the operation and
//! the table (and the endpoint, where the SDK could not reach it), never a
//! shorter answer.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;

use crate::error::{Error, Result};
use crate::item::{n, s, Item, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID};

/// Keys per `BatchGetItem` (DynamoDB's maximum).
const BATCH_GET_KEYS: usize = 100;

/// The longest pause before asking again for unprocessed keys.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Answers in a row that return nothing while keys stay unprocessed before
/// a batch read gives up.
pub(crate) const IDLE_ROUNDS: u32 = 8;

/// The strongly consistent `Query` of the items of aggregate `key` (its
/// `AggregateTypeAndId`) in `table` with sequences `first..=last`, for the
/// caller to page or limit.
pub(crate) fn sequences_between(
    client: &Client,
    table: &str,
    key: &str,
    first: usize,
    last: usize,
) -> QueryFluentBuilder {
    client
        .query()
        .table_name(table)
        .key_condition_expression("#key = :key AND #seq BETWEEN :first AND :last")
        .expression_attribute_names("#key", AGGREGATE_TYPE_AND_ID)
        .expression_attribute_names("#seq", AGGREGATE_ID_SEQUENCE)
        .expression_attribute_values(":key", s(key))
        .expression_attribute_values(":first", n(first))
        .expression_attribute_values(":last", n(last.max(first)))
        .consistent_read(true)
}

/// Writes `item` to `table`, replacing any item with its key (an
/// unconditional `PutItem`).
pub(crate) async fn put_item(client: &Client, table: &str, item: Item) -> Result<()> {
    put_request(client, table, item)
        .send()
        .await
        .map_err(|err| Error::from_sdk_on("PutItem", table, err))?;
    Ok(())
}

/// A `PutItem` of `item` into `table`, for the caller to add its
/// condition and options to and send.
pub(crate) fn put_request(client: &Client, table: &str, item: Item) -> PutItemFluentBuilder {
    client.put_item().table_name(table).set_item(Some(item))
}

/// The item of `table` with the key `(attribute name, value)`, if any (a
/// consistent `GetItem`).
pub(crate) async fn get_item(
    client: &Client,
    table: &str,
    key: (&str, &str),
) -> Result<Option<Item>> {
    let out = client
        .get_item()
        .table_name(table)
        .key(key.0, s(key.1))
        .consistent_read(true)
        .send()
        .await
        .map_err(|err| Error::from_sdk_on("GetItem", table, err))?;
    Ok(out.item)
}

/// The items of `table` whose `key_name` is one of `keys` (those that
/// exist, in no particular order): consistent `BatchGetItem`s of at most
/// 100 keys, unprocessed keys asked again after a growing pause;
/// [`Error::Throttled`] after [`IDLE_ROUNDS`] answers in a row that
/// returned nothing and left keys unprocessed.
pub(crate) async fn get_items(
    client: &Client,
    table: &str,
    key_name: &str,
    keys: &[String],
) -> Result<Vec<Item>> {
    let mut found = Vec::new();
    for chunk in keys.chunks(BATCH_GET_KEYS) {
        let mut pending: Vec<Item> = chunk
            .iter()
            .map(|key| HashMap::from([(key_name.to_string(), s(key))]))
            .collect();
        let mut idle = 0u32;
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()?;
            let out = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|err| Error::from_sdk_on("BatchGetItem", table, err))?;
            let got = out
                .responses
                .unwrap_or_default()
                .remove(table)
                .unwrap_or_default();
            idle = if got.is_empty() { idle + 1 } else { 0 };
            found.extend(got);
            pending = out
                .unprocessed_keys
                .and_then(|mut left| left.remove(table))
                .map(|left| left.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                continue;
            }
            if idle > IDLE_ROUNDS {
                return Err(unprocessed(table, pending.len()));
            }
            // Throttled keys: asked again after a growing pause.
            tokio::time::sleep(Duration::from_millis(25 << idle.min(6)).min(MAX_PAUSE)).await;
        }
    }
    Ok(found)
}

/// The error of a batch read that left keys unprocessed round after round.
fn unprocessed(table: &str, left: usize) -> Error {
    let message = format!(
        "{left} keys left unprocessed after {IDLE_ROUNDS} answers in a row returned \
         nothing; retry later, or raise the table's read capacity"
    );
    Error::Throttled {
        operation: "BatchGetItem",
        table: table.to_string(),
        message: message.clone().into(),
        source: message.into(),
    }
}

/// What a [`scan`] keeps: a filter expression with its attribute names and
/// values; the default keeps every item.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Filter {
    /// The filter `expression`, with no names or values yet.
    pub(crate) fn new(expression: impl Into<String>) -> Self {
        Filter {
            expression: expression.into(),
            ..Filter::default()
        }
    }

    /// The items whose `key_name` begins with `prefix`.
    pub(crate) fn prefix(key_name: &str, prefix: &str) -> Self {
        Filter::new("begins_with(#key, :prefix)")
            .name("#key", key_name)
            .value(":prefix", s(prefix))
    }

    /// Names the attribute `name` in the expression `placeholder`.
    pub(crate) fn name(mut self, placeholder: &str, name: &str) -> Self {
        self.names.insert(placeholder.to_string(), name.to_string());
        self
    }

    /// Gives the expression's `placeholder` the value `value`.
    pub(crate) fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_string(), value);
        self
    }
}

/// Every item of `table` that `filter` keeps: a consistent `Scan`, every
/// page of it.
pub(crate) async fn scan(client: &Client, table: &str, filter: Filter) -> Result<Vec<Item>> {
    let mut pages = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .set_filter_expression(Some(filter.expression).filter(|e| !e.is_empty()))
        .set_expression_attribute_names(Some(filter.names).filter(|n| !n.is_empty()))
        .set_expression_attribute_values(Some(filter.values).filter(|v| !v.is_empty()))
        .into_paginator()
        .send();
    let mut items = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| Error::from_sdk_on("Scan", table, err))?;
        items.extend(page.items.unwrap_or_default());
    }
    Ok(items)
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::faults::{client_on, quick_retries, short_timeouts, Canned, Scripted};

    /// A `BatchGetItem` answer returning `items` and leaving `left`
    /// unprocessed, for table `T` keyed `K`.
    fn answer(items: &[&str], left: &[&str]) -> Canned {
        let keys = |ids: &[&str]| -> Vec<serde_json::Value> {
            ids.iter().map(|id| json!({"K": {"S": id}})).collect()
        };
        let unprocessed = if left.is_empty() {
            json!({})
        } else {
            json!({"T": {"Keys": keys(left), "ConsistentRead": true}})
        };
        Canned::ok(json!({"Responses": {"T": keys(items)}, "UnprocessedKeys": unprocessed}))
    }

    fn keys(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_string()).collect()
    }

    #[tokio::test]
    async fn a_batch_read_asks_again_for_unprocessed_keys_until_it_has_them_all() {
        let http = Scripted::replying([answer(&["a"], &["b", "c"]), answer(&["b", "c"], &[])]);
        let client = client_on(http.clone(), quick_retries(1), short_timeouts());
        let items = get_items(&client, "T", "K", &keys(&["a", "b", "c"]))
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let mut got: Vec<&str> = items
            .iter()
            .filter_map(|item| item.get("K")?.as_s().ok().map(String::as_str))
            .collect();
        got.sort_unstable();
        assert_eq!(got, ["a", "b", "c"]);
        assert_eq!(http.operations(), ["BatchGetItem"; 2]);
    }

    #[tokio::test]
    async fn a_batch_read_left_unprocessed_round_after_round_is_a_throttled_error() {
        let rounds = usize::try_from(IDLE_ROUNDS).unwrap_or(8) + 1;
        let http = Scripted::replying((0..rounds).map(|_| answer(&[], &["a"])));
        let client = client_on(http.clone(), quick_retries(1), short_timeouts());
        let err = get_items(&client, "T", "K", &keys(&["a"])).await.err();
        let Some(Error::Throttled {
            operation, table, ..
        }) = &err
        else {
            panic!("expected Throttled, got {err:?}");
        };
        assert_eq!((*operation, table.as_str()), ("BatchGetItem", "T"));
        let message = err.map(|err| err.to_string()).unwrap_or_default();
        assert!(message.contains("1 keys left unprocessed"), "{message}");
        assert_eq!(http.operations().len(), rounds);
    }
}
