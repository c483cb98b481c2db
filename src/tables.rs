//! Creating the tables, with upstream `dynamo-es`'s schema.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use crate::error::{Error, Result};
use crate::item::{AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID, VIEW_ID};

/// How long [`create_event_tables`] and [`create_view_table`] wait for a new
/// table to become ACTIVE.
pub const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates the events table (HASH `AggregateTypeAndId` S, RANGE
/// `AggregateIdSequence` N) and the snapshots table (HASH
/// `AggregateTypeAndId` S), on-demand billing. Tables that already exist are
/// left as they are. Returns once both are ACTIVE.
pub async fn create_event_tables(
    client: &Client,
    event_table: &str,
    snapshot_table: &str,
) -> Result<()> {
    create_table(
        client,
        event_table,
        &[
            (AGGREGATE_TYPE_AND_ID, ScalarAttributeType::S, KeyType::Hash),
            (
                AGGREGATE_ID_SEQUENCE,
                ScalarAttributeType::N,
                KeyType::Range,
            ),
        ],
    )
    .await?;
    create_table(
        client,
        snapshot_table,
        &[(AGGREGATE_TYPE_AND_ID, ScalarAttributeType::S, KeyType::Hash)],
    )
    .await
}

/// Creates a view table (HASH `ViewId` S), on-demand billing, unless it
/// exists. Returns once it is ACTIVE.
pub async fn create_view_table(client: &Client, table: &str) -> Result<()> {
    create_table(
        client,
        table,
        &[(VIEW_ID, ScalarAttributeType::S, KeyType::Hash)],
    )
    .await
}

async fn create_table(
    client: &Client,
    table: &str,
    keys: &[(&str, ScalarAttributeType, KeyType)],
) -> Result<()> {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind, key_type) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*name)
                    .attribute_type(kind.clone())
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*name)
                    .key_type(key_type.clone())
                    .build()?,
            );
    }
    match request.send().await {
        Ok(_) => {}
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) => {}
        Err(err) => return Err(Error::from_sdk("CreateTable", err)),
    }
    wait_active(client, table).await
}

/// Waits until `table` is ACTIVE.
pub async fn wait_active(client: &Client, table: &str) -> Result<()> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|err| Error::from_sdk("DescribeTable", err))?;
        let status = out.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > TABLE_READY_TIMEOUT {
            return Err(Error::TableNotActive {
                table: table.to_string(),
                status: status.map_or_else(|| "unknown".to_string(), |s| s.as_str().to_string()),
                waited: TABLE_READY_TIMEOUT,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
