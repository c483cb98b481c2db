//! Checking and creating the tables, with upstream `dynamo-es`'s schema.
//!
//! | table | key schema |
//! |---|---|
//! | events | HASH `AggregateTypeAndId` (S), RANGE `AggregateIdSequence` (N) |
//! | snapshots | HASH `AggregateTypeAndId` (S) |
//! | views | HASH `ViewId` (S) |
//! | checkpoints | HASH `LeaseKey` (S) |
//! | data keys (feature `encryption`) | HASH `Subject` (S) |
//!
//! [`create_event_tables`], [`create_event_tables_with`],
//! [`create_view_table`] and [`create_checkpoint_table`] call `DescribeTable`
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
//! They return once every table is ACTIVE, or [`Error::TableNotActive`] after
//! [`TABLE_READY_TIMEOUT`]. Creating tables needs `dynamodb:CreateTable` and
//! `dynamodb:DescribeTable` (the crate's `db/iam_policy_admin.json`).
//!
//! ## The events table's stream
//!
//! [Projections](crate::projection) read the events table's DynamoDB Stream.
//! [`create_event_tables_with`] and
//! [`TableOptions::with_stream`] create the events table with a `NEW_IMAGE`
//! stream, and [`enable_stream`] enables one on an existing table
//! (`dynamodb:UpdateTable`). A stream that is already enabled is kept: one of
//! view type `NEW_IMAGE` or `NEW_AND_OLD_IMAGES` (both carry the new item,
//! all a projection reads) is used as it is; one of type `KEYS_ONLY` or
//! `OLD_IMAGE` is [`Error::TableStream`], and nothing is changed (replacing
//! it would start a new stream without the old one's records).
//!
//! ## The checkpoint table
//!
//! [`create_checkpoint_table`] makes the table where projectors keep their
//! checkpoints and leases, HASH `LeaseKey` (S), one item per projection and
//! shard; [`CheckpointStore`](crate::projection::CheckpointStore) documents
//! its attributes.

pub(crate) mod requests;
mod slice_index;
mod ttl;

pub use slice_index::{add_slice_index, check_slices, slices_of};
pub use ttl::enable_ttl;

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableDescription, TableStatus,
};
use aws_sdk_dynamodb::Client;

use crate::error::{or_refused, Error, Result};
use crate::item::{AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID, VIEW_ID};
use crate::slice::Slices;

/// How long the functions of this module wait for a table to become ACTIVE
/// (and, in [`enable_stream`], for its new stream to show).
pub const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The checkpoint table's key attribute (HASH, S): `{projection}#{shard id}`.
pub(crate) const LEASE_KEY: &str = "LeaseKey";

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

    /// A string HASH key and nothing else.
    fn hash(name: &str) -> Self {
        Schema(vec![Key::new(name, ScalarAttributeType::S, KeyType::Hash)])
    }

    fn snapshots() -> Self {
        Self::hash(AGGREGATE_TYPE_AND_ID)
    }

    fn views() -> Self {
        Self::hash(VIEW_ID)
    }

    fn checkpoints() -> Self {
        Self::hash(LEASE_KEY)
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
    create_event_tables_with(client, event_table, snapshot_table, TableOptions::default()).await
}

/// Options of [`create_event_tables_with`].
///
/// ```
/// use dynamo_es::tables::TableOptions;
///
/// let options = TableOptions::default().with_stream(true);
/// assert!(options.stream());
/// assert!(!TableOptions::default().stream());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableOptions {
    stream: bool,
    slices: Option<Slices>,
}

impl TableOptions {
    /// With `true`, the events table gets a `NEW_IMAGE` DynamoDB stream, for
    /// projections: a new table is created with it, an
    /// existing one without a stream gets it through [`enable_stream`]
    /// (`dynamodb:UpdateTable`). Default `false`: streams are left as they are.
    pub fn with_stream(mut self, enabled: bool) -> Self {
        self.stream = enabled;
        self
    }

    /// Whether the events table gets a stream.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The events table gets the `EventsBySlice` index for `slices`, for
    /// [feeds](crate::projection::feed), through [`add_slice_index`]. Default: no index
    /// (an existing one is left as it is).
    #[must_use]
    pub fn with_slices(mut self, slices: Slices) -> Self {
        self.slices = Some(slices);
        self
    }

    /// The slice count the events table's index gets, if any.
    pub fn slices(&self) -> Option<Slices> {
        self.slices
    }
}

/// [`create_event_tables`] with `options`: with
/// [`TableOptions::with_stream`], the events table also has a stream whose
/// records carry new images once this returns (see [`enable_stream`]).
///
/// ```no_run
/// # async fn demo(client: dynamo_es::aws_sdk_dynamodb::Client) -> dynamo_es::Result<()> {
/// use dynamo_es::tables::{create_event_tables_with, TableOptions};
///
/// let options = TableOptions::default().with_stream(true);
/// create_event_tables_with(&client, "Events", "Snapshots", options).await?;
/// # Ok(()) }
/// ```
pub async fn create_event_tables_with(
    client: &Client,
    event_table: &str,
    snapshot_table: &str,
    options: TableOptions,
) -> Result<()> {
    ensure_table(client, event_table, &Schema::events(), options.stream).await?;
    ensure_table(client, snapshot_table, &Schema::snapshots(), false).await?;
    if options.stream {
        enable_stream(client, event_table).await?;
    }
    if let Some(slices) = options.slices {
        add_slice_index(client, event_table, slices).await?;
    }
    Ok(())
}

/// Makes sure `table` has a DynamoDB stream whose records carry the new
/// item, and returns the stream's ARN once the table is ACTIVE again.
///
/// * A stream of view type `NEW_IMAGE` or `NEW_AND_OLD_IMAGES` is used as
///   it is (nothing is sent but `DescribeTable`);
/// * a stream of another view type (`KEYS_ONLY`, `OLD_IMAGE`) is
///   [`Error::TableStream`], and nothing is changed;
/// * without a stream, `UpdateTable` enables a `NEW_IMAGE` one. If another
///   process enables one at the same time, its stream is checked like an
///   existing one.
///
/// A missing table is [`Error::Dynamo`] (`ResourceNotFoundException`).
/// Needs `dynamodb:DescribeTable` and, to enable a stream,
/// `dynamodb:UpdateTable` (`db/iam_policy_admin.json`).
pub async fn enable_stream(client: &Client, table: &str) -> Result<String> {
    let description = wait_until_active(client, table, false).await?;
    if let Some(arn) = stream_arn_of(table, &description)? {
        return Ok(arn);
    }
    let specification = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewImage)
        .build()?;
    let sent = client
        .update_table()
        .table_name(table)
        .stream_specification(specification)
        .send()
        .await;
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        let description = wait_until_active(client, table, false).await?;
        if let Some(arn) = stream_arn_of(table, &description)? {
            return Ok(arn);
        }
        // Refused (maybe because another process is enabling one), and no
        // stream showed: the refusal is the answer.
        if let Err(err) = sent {
            return Err(Error::from_sdk_on("UpdateTable", table, err));
        }
        if started.elapsed() > TABLE_READY_TIMEOUT {
            return Err(Error::TableStream {
                table: table.to_string(),
                expected: StreamViewType::NewImage.as_str().to_string(),
                found: "none".to_string(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The ARN of `table`'s stream if it has one that carries new images;
/// `None` without a stream; [`Error::TableStream`] for another view type.
pub(crate) fn stream_arn_of(table: &str, description: &TableDescription) -> Result<Option<String>> {
    let Some(specification) = description
        .stream_specification()
        .filter(|specification| specification.stream_enabled())
    else {
        return Ok(None);
    };
    let view_type = specification.stream_view_type();
    let carries_new_images = matches!(
        view_type,
        Some(StreamViewType::NewImage | StreamViewType::NewAndOldImages)
    );
    if !carries_new_images {
        return Err(Error::TableStream {
            table: table.to_string(),
            expected: format!(
                "{} (or {})",
                StreamViewType::NewImage.as_str(),
                StreamViewType::NewAndOldImages.as_str()
            ),
            found: view_type
                .map_or("no view type", StreamViewType::as_str)
                .to_string(),
        });
    }
    // An enabled stream whose ARN does not show yet: looked for again.
    Ok(description.latest_stream_arn().map(str::to_string))
}

/// Makes sure a view table (HASH `ViewId` S) exists with that key schema,
/// creating it if it is missing (on-demand billing), and returns once it is
/// ACTIVE. As for [`create_event_tables`], an existing table with another key
/// schema is [`Error::TableSchema`].
pub async fn create_view_table(client: &Client, table: &str) -> Result<()> {
    ensure_table(client, table, &Schema::views(), false).await
}

/// Makes sure a checkpoint table (HASH `LeaseKey` S) exists with that key
/// schema, creating it if it is missing (on-demand billing), and returns once
/// it is ACTIVE. As for [`create_event_tables`], an existing table with
/// another key schema is [`Error::TableSchema`].
///
/// Projectors keep one item per projection and stream shard in it: the
/// checkpoint, the lease and whether the shard is finished (the attributes
/// are listed at
/// [`CheckpointStore`](crate::projection::CheckpointStore)). Several projections can
/// share one table.
pub async fn create_checkpoint_table(client: &Client, table: &str) -> Result<()> {
    ensure_table(client, table, &Schema::checkpoints(), false).await
}

/// Checks or creates the key table of [`encryption`](crate::encryption):
/// HASH `Subject` (S), one item per data subject holding its wrapped data
/// key or, once forgotten, a tombstone (see
/// [`KeyStore`](crate::encryption::KeyStore)).
#[cfg(feature = "encryption")]
#[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
pub async fn create_key_table(client: &Client, table: &str) -> Result<()> {
    let schema = Schema(vec![Key::new(
        crate::encryption::SUBJECT,
        ScalarAttributeType::S,
        KeyType::Hash,
    )]);
    ensure_table(client, table, &schema, false).await
}

/// Describes `table`, creates it if it is missing (with a `NEW_IMAGE` stream
/// if `stream`), checks its key schema and waits for it to be ACTIVE.
async fn ensure_table(client: &Client, table: &str, schema: &Schema, stream: bool) -> Result<()> {
    let description = match describe(client, table).await? {
        Some(description) => {
            check_schema(table, schema, &description)?;
            description
        }
        None => {
            create_table(client, table, schema, stream).await?;
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
    let described = client.describe_table().table_name(table).send().await;
    let refused = DescribeTableError::is_resource_not_found_exception;
    let described = or_refused(described, "DescribeTable", table, refused)?;
    Ok(described.map(|out| {
        out.table()
            .cloned()
            .unwrap_or_else(|| TableDescription::builder().table_name(table).build())
    }))
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

/// Sends `CreateTable` (with a `NEW_IMAGE` stream if `stream`); a table
/// created meanwhile by someone else (`ResourceInUseException`) is not an
/// error.
async fn create_table(client: &Client, table: &str, schema: &Schema, stream: bool) -> Result<()> {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    if stream {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()?,
        );
    }
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
    // A table that already exists is left as it is.
    let refused = CreateTableError::is_resource_in_use_exception;
    or_refused(request.send().await, "CreateTable", table, refused).map(drop)
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
        assert_eq!(Schema::checkpoints().to_string(), "HASH LeaseKey (S)");
        assert_eq!(Schema(vec![]).to_string(), "(none)");
    }
}
