//! The events table's `EventsBySlice` index and the tag that records its
//! slice count (see [`crate::slice`]).
//!
//! **Invariant:** a table that has the index has the tag, and the tag never
//! changes: [`add_slice_index`] tags the table before it creates the index,
//! refuses a table tagged with another count, and [`slices_of`] refuses an
//! index without a tag. So every writer and reader that checks its count
//! against [`slices_of`] agrees on where each aggregate's events are.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate, IndexStatus,
    KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType, TableDescription,
    Tag,
};
use aws_sdk_dynamodb::Client;

use super::{wait_until_active, TABLE_READY_TIMEOUT};
use crate::error::{Error, Result};
use crate::slice::{Slices, COMMIT_TIME, SLICE, SLICES_TAG, SLICE_INDEX};

/// Makes sure the events table `table` has the `EventsBySlice` index
/// (HASH `Slice` S, RANGE `CommitTime` N, every attribute projected) for
/// `slices`, and returns once the index is ACTIVE (DynamoDB fills a new
/// index from the table's existing items first: on a large table that
/// takes a while).
///
/// * A table tagged with another slice count is [`Error::TableSlices`], and
///   nothing is changed: the count is fixed for the table's life.
/// * Otherwise the table is tagged ([`SLICES_TAG`], `dynamodb:TagResource`)
///   and, if the index is missing, it is created (`dynamodb:UpdateTable`).
///   Safe to call on every start, and from several processes at once.
///
/// Events written before (by upstream, or without
/// [`with_slices`](crate::DynamoEventRepository::with_slices)) are not in
/// the index until a [backfill](crate::recode::backfill_slices) gives them their
/// slice.
pub async fn add_slice_index(client: &Client, table: &str, slices: Slices) -> Result<()> {
    let description = describe_active(client, table).await?;
    let arn = description.table_arn().unwrap_or_default().to_string();
    match tagged_count(client, table, &arn).await? {
        Some(tag) if slices.matches_tag(&tag) => {}
        Some(tag) => return Err(mismatch(table, slices, &tag)),
        None => {
            let tag = Tag::builder()
                .key(SLICES_TAG)
                .value(slices.count().to_string())
                .build()?;
            let tagged = client
                .tag_resource()
                .resource_arn(&arn)
                .tags(tag)
                .send()
                .await;
            tagged.map_err(|err| Error::from_sdk_on("TagResource", table, err))?;
        }
    }
    if index_status(&description).is_none() {
        let sent = client
            .update_table()
            .table_name(table)
            .attribute_definitions(definition(SLICE, ScalarAttributeType::S)?)
            .attribute_definitions(definition(COMMIT_TIME, ScalarAttributeType::N)?)
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder()
                    .create(
                        CreateGlobalSecondaryIndexAction::builder()
                            .index_name(SLICE_INDEX)
                            .key_schema(key(SLICE, KeyType::Hash)?)
                            .key_schema(key(COMMIT_TIME, KeyType::Range)?)
                            .projection(
                                Projection::builder()
                                    .projection_type(ProjectionType::All)
                                    .build(),
                            )
                            .build()?,
                    )
                    .build(),
            )
            .send()
            .await;
        // Refused because another process created it meanwhile: the wait
        // below finds it; refused for another reason: nothing shows.
        if let Err(err) = sent {
            let description = describe_active(client, table).await?;
            if index_status(&description).is_none() {
                return Err(Error::from_sdk_on("UpdateTable", table, err));
            }
        }
    }
    wait_index_active(client, table).await
}

/// The slice count of the events table `table`: `None` if it has no
/// `EventsBySlice` index; [`Error::TableSlices`] if it has one without a
/// valid [`SLICES_TAG`]. Needs `dynamodb:DescribeTable` and
/// `dynamodb:ListTagsOfResource`.
pub async fn slices_of(client: &Client, table: &str) -> Result<Option<Slices>> {
    let description = describe_active(client, table).await?;
    if index_status(&description).is_none() {
        return Ok(None);
    }
    let arn = description.table_arn().unwrap_or_default();
    let tag = tagged_count(client, table, arn).await?;
    let slices = tag
        .as_deref()
        .and_then(|tag| tag.trim().parse::<u16>().ok())
        .and_then(Slices::new);
    match slices {
        Some(slices) => Ok(Some(slices)),
        None => Err(Error::TableSlices {
            table: table.to_string(),
            expected: format!("a tag {SLICES_TAG} of 1 to {}", crate::slice::MAX_SLICES),
            found: tag.map_or_else(|| "no tag".to_string(), |tag| format!("tag {tag:?}")),
        }),
    }
}

/// Checks that the events table `table` has the index for `slices`:
/// [`Error::TableSlices`] otherwise, naming what it has. A writer or reader
/// calls it once at start.
pub async fn check_slices(client: &Client, table: &str, slices: Slices) -> Result<()> {
    match slices_of(client, table).await? {
        Some(found) if found == slices => Ok(()),
        found => Err(Error::TableSlices {
            table: table.to_string(),
            expected: format!("an {SLICE_INDEX} index of {slices}"),
            found: found.map_or_else(
                || format!("no {SLICE_INDEX} index"),
                |found| format!("{found}"),
            ),
        }),
    }
}

fn mismatch(table: &str, slices: Slices, tag: &str) -> Error {
    Error::TableSlices {
        table: table.to_string(),
        expected: format!("{slices}"),
        found: format!("tag {SLICES_TAG} = {tag:?}"),
    }
}

/// The value of the table's [`SLICES_TAG`], if it has one.
async fn tagged_count(client: &Client, table: &str, arn: &str) -> Result<Option<String>> {
    // Built once: each page only sets the token of the one before.
    let request = client.list_tags_of_resource().resource_arn(arn);
    let mut next = None;
    loop {
        let page = request.clone().set_next_token(next).send().await;
        let listed = page.map_err(|err| Error::from_sdk_on("ListTagsOfResource", table, err))?;
        if let Some(tag) = listed.tags().iter().find(|tag| tag.key() == SLICES_TAG) {
            return Ok(Some(tag.value().to_string()));
        }
        match listed.next_token {
            Some(token) => next = Some(token),
            None => return Ok(None),
        }
    }
}

/// The `EventsBySlice` index's status, if the table has it.
fn index_status(description: &TableDescription) -> Option<IndexStatus> {
    description
        .global_secondary_indexes()
        .iter()
        .find(|index| index.index_name() == Some(SLICE_INDEX))
        .map(|index| index.index_status().cloned().unwrap_or(IndexStatus::Active))
}

async fn wait_index_active(client: &Client, table: &str) -> Result<()> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        let description = describe_active(client, table).await?;
        let status = index_status(&description);
        if status == Some(IndexStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > TABLE_READY_TIMEOUT {
            return Err(Error::TableNotActive {
                table: format!("{table} (index {SLICE_INDEX})"),
                status: status.map_or_else(|| "missing".to_string(), |s| s.as_str().to_string()),
                waited: TABLE_READY_TIMEOUT,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The table's description, once it is ACTIVE.
async fn describe_active(client: &Client, table: &str) -> Result<TableDescription> {
    wait_until_active(client, table, false).await
}

fn definition(name: &str, attribute_type: ScalarAttributeType) -> Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(attribute_type)
        .build()?)
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()?)
}
