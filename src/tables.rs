//! Checking and creating the tables, with upstream `dynamo-es`'s schema.
//!
//! | table | key schema |
//! |---|---|
//! | events | HASH `AggregateTypeAndId` (S), RANGE `AggregateIdSequence` (N) |
//! | snapshots | HASH `AggregateTypeAndId` (S) |
//! | views | HASH `ViewId` (S) |
//!
//! [`create_event_tables`] and [`create_view_table`] call `DescribeTable`
//! first and never trust a table just because it exists:
//!
//! * a table that exists must have exactly its key schema (names, key types
//!   and attribute types), else [`Error::TableSchema`] names the table, the
//!   schema it has and the one it needs, and nothing is changed;
//! * a table that exists with the right schema is used as it is: no
//!   `CreateTable` is sent, so an application whose IAM policy allows only
//!   `DescribeTable` (the crate's `db/iam_policy.json`) can call them on
//!   every start;
//! * only a missing table is created (`CreateTable`, on-demand billing).
//!   A `ResourceInUseException` (another process created it first) is not an
//!   error; the table is then checked like any existing one.
//!
//! Both return once every table is ACTIVE, or [`Error::TableNotActive`] after
//! [`TABLE_READY_TIMEOUT`]. Creating tables needs `dynamodb:CreateTable` and
//! `dynamodb:DescribeTable` (the crate's `db/iam_policy_admin.json`).

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus,
};
use aws_sdk_dynamodb::Client;

use crate::error::{Error, Result};
use crate::item::{AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID, VIEW_ID};

/// How long [`create_event_tables`] and [`create_view_table`] wait for a
/// table to become ACTIVE.
pub const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// One key attribute: its name, attribute type and key type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    name: String,
    attribute_type: String,
    key_type: String,
}

impl Key {
    fn new(name: &str, attribute_type: ScalarAttributeType, key_type: KeyType) -> Self {
        Key {
            name: name.to_string(),
            attribute_type: attribute_type.as_str().to_string(),
            key_type: key_type.as_str().to_string(),
        }
    }
}

/// A key schema, HASH first, written as `HASH Name (S), RANGE Name (N)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Schema(Vec<Key>);

impl Schema {
    fn events() -> Self {
        Schema(vec![
            Key::new(AGGREGATE_TYPE_AND_ID, ScalarAttributeType::S, KeyType::Hash),
            Key::new(
                AGGREGATE_ID_SEQUENCE,
                ScalarAttributeType::N,
                KeyType::Range,
            ),
        ])
    }

    fn snapshots() -> Self {
        Schema(vec![Key::new(
            AGGREGATE_TYPE_AND_ID,
            ScalarAttributeType::S,
            KeyType::Hash,
        )])
    }

    fn views() -> Self {
        Schema(vec![Key::new(
            VIEW_ID,
            ScalarAttributeType::S,
            KeyType::Hash,
        )])
    }

    /// The key schema of a described table, HASH first; an attribute
    /// missing from the attribute definitions has type `?`.
    fn of(table: &TableDescription) -> Self {
        let mut keys: Vec<Key> = table
            .key_schema()
            .iter()
            .map(|element| Key {
                name: element.attribute_name().to_string(),
                attribute_type: table
                    .attribute_definitions()
                    .iter()
                    .find(|definition| definition.attribute_name() == element.attribute_name())
                    .map_or_else(
                        || "?".to_string(),
                        |definition| definition.attribute_type().as_str().to_string(),
                    ),
                key_type: element.key_type().as_str().to_string(),
            })
            .collect();
        keys.sort_by_key(|key| key.key_type != KeyType::Hash.as_str());
        Schema(keys)
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {} ({})", key.key_type, key.name, key.attribute_type)?;
        }
        Ok(())
    }
}

/// Makes sure the events table (HASH `AggregateTypeAndId` S, RANGE
/// `AggregateIdSequence` N) and the snapshots table (HASH
/// `AggregateTypeAndId` S) exist with those key schemas, creating whichever
/// is missing (on-demand billing), and returns once both are ACTIVE.
///
/// Existing tables are checked, never recreated or changed: one with another
/// key schema is [`Error::TableSchema`]. Safe to call on every start and from
/// several processes at once. See the [module docs](self) for the calls it
/// makes and the permissions they need.
pub async fn create_event_tables(
    client: &Client,
    event_table: &str,
    snapshot_table: &str,
) -> Result<()> {
    ensure_table(client, event_table, &Schema::events()).await?;
    ensure_table(client, snapshot_table, &Schema::snapshots()).await
}

/// Makes sure a view table (HASH `ViewId` S) exists with that key schema,
/// creating it if it is missing (on-demand billing), and returns once it is
/// ACTIVE. As for [`create_event_tables`], an existing table with another key
/// schema is [`Error::TableSchema`].
pub async fn create_view_table(client: &Client, table: &str) -> Result<()> {
    ensure_table(client, table, &Schema::views()).await
}

/// Describes `table`, creates it if it is missing, checks its key schema and
/// waits for it to be ACTIVE.
async fn ensure_table(client: &Client, table: &str, schema: &Schema) -> Result<()> {
    let description = match describe(client, table).await? {
        Some(description) => {
            check_schema(table, schema, &description)?;
            description
        }
        None => {
            create_table(client, table, schema).await?;
            let description = wait_until_active(client, table, true).await?;
            // Another process may have created it first, with another schema.
            check_schema(table, schema, &description)?;
            return Ok(());
        }
    };
    if description.table_status() == Some(&TableStatus::Active) {
        return Ok(());
    }
    wait_until_active(client, table, false).await.map(drop)
}

/// The table's description, or `None` if it does not exist.
async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(Some(out.table().cloned().unwrap_or_else(|| {
            TableDescription::builder().table_name(table).build()
        }))),
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(DescribeTableError::ResourceNotFoundException(_))
            ) =>
        {
            Ok(None)
        }
        Err(err) => Err(Error::from_sdk_on("DescribeTable", table, err)),
    }
}

fn check_schema(table: &str, expected: &Schema, description: &TableDescription) -> Result<()> {
    let found = Schema::of(description);
    if &found == expected {
        return Ok(());
    }
    Err(Error::TableSchema {
        table: table.to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    })
}

/// Sends `CreateTable`; a table created meanwhile by someone else
/// (`ResourceInUseException`) is not an error.
async fn create_table(client: &Client, table: &str, schema: &Schema) -> Result<()> {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for key in &schema.0 {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&key.name)
                    .attribute_type(ScalarAttributeType::from(key.attribute_type.as_str()))
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(&key.name)
                    .key_type(KeyType::from(key.key_type.as_str()))
                    .build()?,
            );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) =>
        {
            Ok(())
        }
        Err(err) => Err(Error::from_sdk_on("CreateTable", table, err)),
    }
}

/// Waits until `table` is ACTIVE. A table that does not exist is an error
/// (`DescribeTable`'s `ResourceNotFoundException`, as [`Error::Dynamo`]).
pub async fn wait_active(client: &Client, table: &str) -> Result<()> {
    wait_until_active(client, table, false).await.map(drop)
}

/// Waits until `table` is ACTIVE and returns its description. With
/// `just_created`, a table not found yet is waited for too (DynamoDB's
/// `DescribeTable` may not see a table for a moment after `CreateTable`).
async fn wait_until_active(
    client: &Client,
    table: &str,
    just_created: bool,
) -> Result<TableDescription> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        let status = match client.describe_table().table_name(table).send().await {
            Ok(out) => {
                let status = out.table().and_then(|t| t.table_status()).cloned();
                if let (Some(TableStatus::Active), Some(description)) = (&status, out.table) {
                    return Ok(description);
                }
                status.map_or_else(|| "unknown".to_string(), |s| s.as_str().to_string())
            }
            Err(err)
                if just_created
                    && matches!(
                        err.as_service_error(),
                        Some(DescribeTableError::ResourceNotFoundException(_))
                    ) =>
            {
                "not found".to_string()
            }
            Err(err) => return Err(Error::from_sdk_on("DescribeTable", table, err)),
        };
        if started.elapsed() > TABLE_READY_TIMEOUT {
            return Err(Error::TableNotActive {
                table: table.to_string(),
                status,
                waited: TABLE_READY_TIMEOUT,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_read_hash_first() {
        assert_eq!(
            Schema::events().to_string(),
            "HASH AggregateTypeAndId (S), RANGE AggregateIdSequence (N)"
        );
        assert_eq!(Schema::views().to_string(), "HASH ViewId (S)");
        assert_eq!(Schema(vec![]).to_string(), "(none)");
    }
}
