//! [`FeedPositions`]: a feed projection's position per slice, in the
//! checkpoint table (one item per projection, aggregate type and slice).
//!
//! **Invariant:** a position item changes only by a conditional write that
//! names the `Version` its writer read, so two processes reading the same
//! slice can never both save: the second stops with
//! [`Error::FeedPositionTaken`] before it delivers anything more.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::position::SlicePosition;
use crate::error::Error as StoreError;
use crate::item::{get_n, get_s, n, s, Item};
use crate::projection::Error;
use crate::tables::requests::{get_item, get_items, scan, Filter};
use crate::tables::LEASE_KEY;

const PROJECTION: &str = "Projection";
const WATERMARK: &str = "Watermark";
const SEEN_TO: &str = "SeenTo";
const RECENT: &str = "Recent";
const VERSION: &str = "Version";
const ORIGIN: &str = "Origin";
const LAST_SEQUENCE: &str = "LastSequence";
const COMMITTED: &str = "CommitTime";

/// A slice's saved position and the version it was saved with (0: never
/// saved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedPosition {
    /// The position.
    pub position: SlicePosition,
    /// Its version, for the next conditional save.
    pub version: u64,
}

/// Where a feed projection keeps its position in each slice: the checkpoint
/// table ([`create_checkpoint_table`](crate::tables::create_checkpoint_table)),
/// shared with stream projections, under keys
/// `{projection}#feed#{aggregate type}#{slice}`.
#[derive(Debug, Clone)]
pub struct FeedPositions {
    pub(super) client: Client,
    pub(super) table: String,
    pub(super) projection: String,
}

impl FeedPositions {
    /// The positions of `projection` in the checkpoint table `table`.
    pub fn new(client: Client, table: &str, projection: &str) -> Self {
        FeedPositions {
            client,
            table: table.to_string(),
            projection: projection.to_string(),
        }
    }

    /// The item key of a slice's position.
    #[must_use]
    pub fn key(&self, aggregate_type: &str, slice: u16) -> String {
        format!("{}#feed#{aggregate_type}#{slice}", self.projection)
    }

    /// The saved position of `slice`, or `start` at version 0 if none was
    /// saved (strongly consistent read).
    pub async fn load(
        &self,
        aggregate_type: &str,
        slice: u16,
        start: &SlicePosition,
    ) -> Result<SavedPosition, Error> {
        let key = self.key(aggregate_type, slice);
        let Some(item) = get_item(&self.client, &self.table, (LEASE_KEY, &key)).await? else {
            return Ok(SavedPosition {
                position: start.clone(),
                version: 0,
            });
        };
        parse(&key, &item, start).map_err(Error::Store)
    }

    /// Saves `position` for `slice` if its version is still `version`;
    /// returns the new version. [`Error::FeedPositionTaken`] if another
    /// process saved meanwhile.
    pub async fn save(
        &self,
        aggregate_type: &str,
        slice: u16,
        position: &SlicePosition,
        version: u64,
    ) -> Result<u64, Error> {
        let key = self.key(aggregate_type, slice);
        let recent: std::collections::HashMap<String, AttributeValue> = position
            .recent
            .iter()
            .map(|(id, (sequence, micros))| {
                (id.clone(), AttributeValue::L(vec![n(sequence), n(micros)]))
            })
            .collect();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression(
                "SET #projection = :projection, #watermark = :watermark, #seen = :seen, \
                 #recent = :recent, #origin = :origin, #version = :next",
            )
            .expression_attribute_names("#origin", ORIGIN)
            .expression_attribute_values(":origin", n(position.origin))
            .expression_attribute_names("#projection", PROJECTION)
            .expression_attribute_names("#watermark", WATERMARK)
            .expression_attribute_names("#seen", SEEN_TO)
            .expression_attribute_names("#recent", RECENT)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":projection", s(&self.projection))
            .expression_attribute_values(":watermark", n(position.watermark))
            .expression_attribute_values(":seen", n(position.seen_to))
            .expression_attribute_values(":recent", AttributeValue::M(recent))
            .expression_attribute_values(":next", n(version + 1));
        update = if version == 0 {
            update.condition_expression("attribute_not_exists(#version)")
        } else {
            update
                .condition_expression("#version = :version")
                .expression_attribute_values(":version", n(version))
        };
        match update.send().await {
            Ok(_) => Ok(version + 1),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(Error::FeedPositionTaken {
                    table: self.table.clone(),
                    key,
                })
            }
            Err(err) => Err(Error::Store(StoreError::from_sdk_on(
                "UpdateItem",
                &self.table,
                err,
            ))),
        }
    }
}

impl FeedPositions {
    /// The item key of an aggregate's last delivered sequence.
    fn sequence_key(&self, aggregate_type: &str, aggregate_id: &str) -> String {
        format!(
            "{}#feedseq#{aggregate_type}#{aggregate_id}",
            self.projection
        )
    }

    /// The last delivered sequence of each of `aggregate_ids` (0: none),
    /// strongly consistent (`BatchGetItem`, 100 keys a request).
    pub(crate) async fn last_sequences(
        &self,
        aggregate_type: &str,
        aggregate_ids: &[String],
    ) -> Result<std::collections::HashMap<String, usize>, Error> {
        let mut found: std::collections::HashMap<String, usize> =
            aggregate_ids.iter().map(|id| (id.clone(), 0)).collect();
        let by_key: std::collections::HashMap<String, &String> = aggregate_ids
            .iter()
            .map(|id| (self.sequence_key(aggregate_type, id), id))
            .collect();
        let keys: Vec<String> = by_key.keys().cloned().collect();
        for item in get_items(&self.client, &self.table, LEASE_KEY, &keys).await? {
            let key = get_s(&item, LEASE_KEY, "LeaseKey")?;
            if let Some(id) = by_key.get(key) {
                found.insert((*id).clone(), get_n(&item, LAST_SEQUENCE, "LastSequence")?);
            }
        }
        Ok(found)
    }

    /// Records each `(aggregate id, sequence, commit time)` as its
    /// aggregate's last delivered event (`BatchWriteItem`, 25 a request).
    pub(crate) async fn record_sequences(
        &self,
        aggregate_type: &str,
        delivered: &[(String, usize, u64)],
    ) -> Result<(), Error> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        for chunk in delivered.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|(id, sequence, micros)| {
                    let put = PutRequest::builder()
                        .item(LEASE_KEY, s(self.sequence_key(aggregate_type, id)))
                        .item(PROJECTION, s(&self.projection))
                        .item(LAST_SEQUENCE, n(sequence))
                        .item(COMMITTED, n(micros))
                        .build()
                        .map_err(crate::Error::from)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let mut attempt = 0u32;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|err| StoreError::from_sdk_on("BatchWriteItem", &self.table, err))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 << attempt.min(6)))
                        .await;
                }
            }
        }
        Ok(())
    }
}

/// One slice's saved position, as [`FeedPositions::list`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SliceStatus {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The slice.
    pub slice: u16,
    /// The feed process reading it, if feeds share slices
    /// ([`FeedProjector::with_owner`](super::FeedProjector::with_owner)).
    pub owner: Option<String>,
    /// The saved position and its version.
    pub saved: SavedPosition,
}

impl SliceStatus {
    /// How far behind `now` the slice's watermark is: every event committed
    /// before `now - lag` was delivered.
    #[must_use]
    pub fn lag(&self, now: std::time::SystemTime) -> std::time::Duration {
        now.duration_since(crate::slice::from_micros(self.saved.position.watermark))
            .unwrap_or_default()
    }
}

impl FeedPositions {
    /// Every saved slice position of the projection (a consistent `Scan`
    /// of the checkpoint table), by aggregate type and slice.
    pub async fn list(&self) -> Result<Vec<SliceStatus>, Error> {
        let prefix = format!("{}#feed#", self.projection);
        let items = scan(
            &self.client,
            &self.table,
            Filter::prefix(LEASE_KEY, &prefix),
        )
        .await?;
        self.slices(&prefix, &items)
    }

    /// The slice positions among `items` (those keyed `prefix` and
    /// `{aggregate type}#{slice}`; heartbeats skipped), by aggregate type
    /// and slice.
    fn slices(&self, prefix: &str, items: &[Item]) -> Result<Vec<SliceStatus>, Error> {
        let mut slices = Vec::new();
        for item in items {
            let key = get_s(item, LEASE_KEY, "LeaseKey")?;
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            let parsed = rest
                .rsplit_once('#')
                .and_then(|(aggregate_type, slice)| Some((aggregate_type, slice.parse().ok()?)));
            let Some((aggregate_type, slice)) = parsed else {
                if rest.contains("#owner#") {
                    // A feed process's heartbeat.
                    continue;
                }
                return Err(Error::Store(StoreError::InvalidAttribute {
                    key: key.to_string(),
                    attribute: "LeaseKey",
                    expected: "`{projection}#feed#{aggregate type}#{slice}`",
                }));
            };
            slices.push(SliceStatus {
                aggregate_type: aggregate_type.to_string(),
                slice,
                owner: item
                    .get(super::leases::OWNER)
                    .and_then(|owner| owner.as_s().ok())
                    .cloned(),
                saved: parse(key, item, &SlicePosition::default())?,
            });
        }
        slices.sort_by(|a, b| (&a.aggregate_type, a.slice).cmp(&(&b.aggregate_type, b.slice)));
        Ok(slices)
    }

    /// Deletes every saved slice position of the projection, its feed
    /// processes' heartbeats and its per-aggregate records: feeds then
    /// start again from their [start](super::FeedStart). Stop its feeds
    /// first (a running one stops at its next save with
    /// [`Error::FeedPositionTaken`]). Returns the positions deleted.
    pub async fn reset(&self) -> Result<Vec<SliceStatus>, Error> {
        // One scan: the positions, the heartbeats and the per-aggregate
        // records.
        let prefix = format!("{}#feed#", self.projection);
        let filter = Filter::new("begins_with(#key, :feed) OR begins_with(#key, :seq)")
            .name("#key", LEASE_KEY)
            .value(":feed", s(&prefix))
            .value(":seq", s(format!("{}#feedseq#", self.projection)));
        let items = scan(&self.client, &self.table, filter).await?;
        let slices = self.slices(&prefix, &items)?;
        let mut keys = items
            .iter()
            .map(|item| Ok(get_s(item, LEASE_KEY, "LeaseKey")?.to_string()))
            .collect::<Result<Vec<String>, Error>>()?;
        keys.sort();
        keys.dedup();
        for key in keys {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(LEASE_KEY, s(key))
                .send()
                .await
                .map_err(|err| StoreError::from_sdk_on("DeleteItem", &self.table, err))?;
        }
        Ok(slices)
    }
}

/// The position an item holds; `start` at the item's version (or 0) for an
/// item a slice lease created before any position was saved.
fn parse(key: &str, item: &Item, start: &SlicePosition) -> Result<SavedPosition, StoreError> {
    let version = match item.get(VERSION) {
        Some(_) => get_n(item, VERSION, "Version")?,
        None => 0,
    };
    if !item.contains_key(WATERMARK) {
        return Ok(SavedPosition {
            position: start.clone(),
            version,
        });
    }
    let invalid = || StoreError::InvalidAttribute {
        key: key.to_string(),
        attribute: "Recent",
        expected: "a map of aggregate id to [sequence, commit time]",
    };
    let mut recent = BTreeMap::new();
    if let Some(value) = item.get(RECENT) {
        let map = value.as_m().map_err(|_| invalid())?;
        for (id, entry) in map {
            let list = entry.as_l().map_err(|_| invalid())?;
            let number = |i: usize| -> Result<u64, StoreError> {
                list.get(i)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(invalid)
            };
            let sequence = usize::try_from(number(0)?).map_err(|_| invalid())?;
            recent.insert(id.clone(), (sequence, number(1)?));
        }
    }
    Ok(SavedPosition {
        position: SlicePosition {
            watermark: get_n(item, WATERMARK, "Watermark")?,
            recent,
            seen_to: get_n(item, SEEN_TO, "SeenTo")?,
            origin: match item.get(ORIGIN) {
                Some(_) => get_n(item, ORIGIN, "Origin")?,
                None => 0,
            },
        },
        version,
    })
}
