//! Enabling DynamoDB's Time to Live on the events and snapshots tables, by
//! the [`EXPIRES_AT`] attribute that
//! [`with_expiry`](crate::DynamoEventRepository::with_expiry) writes.
//!
//! **Invariant:** idempotent: a table already expiring by [`EXPIRES_AT`]
//! is left as it is (one `DescribeTimeToLive`); one expiring by another
//! attribute is [`Error::TableTtl`], and nothing is changed.

use aws_sdk_dynamodb::types::{TimeToLiveSpecification, TimeToLiveStatus};
use aws_sdk_dynamodb::Client;

use crate::error::{Error, Result};
use crate::item::EXPIRES_AT;

/// Enables Time to Live on `table` by [`EXPIRES_AT`] (epoch seconds), so
/// that DynamoDB deletes the events and snapshot items of aggregate types
/// with a time to live some time after they expire (reads treat them as
/// gone from the second they expire). Call it for the events and the
/// snapshots table.
///
/// Nothing is sent but `DescribeTimeToLive` when it is already enabled (or
/// being enabled) by [`EXPIRES_AT`]; [`Error::TableTtl`] when the table
/// expires items by another attribute (a table has one TTL attribute).
/// Needs `dynamodb:DescribeTimeToLive` and `dynamodb:UpdateTimeToLive`.
pub async fn enable_ttl(client: &Client, table: &str) -> Result<()> {
    let described = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|err| Error::from_sdk_on("DescribeTimeToLive", table, err))?;
    if let Some(description) = described.time_to_live_description {
        let on = matches!(
            description.time_to_live_status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        );
        match description.attribute_name {
            Some(name) if on && name == EXPIRES_AT => return Ok(()),
            Some(name) if on => {
                return Err(Error::TableTtl {
                    table: table.to_string(),
                    found: name,
                })
            }
            _ => {}
        }
    }
    let specification = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(EXPIRES_AT)
        .build()?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(specification)
        .send()
        .await
        .map_err(|err| Error::from_sdk_on("UpdateTimeToLive", table, err))?;
    tracing::info!(table, attribute = EXPIRES_AT, "Time to Live enabled");
    Ok(())
}
