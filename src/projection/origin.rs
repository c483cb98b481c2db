//! The projection's origin: when and how it first started, and the shards
//! it started from (the stream's frontier then), kept in the checkpoint
//! table under `{projection}#!start`.
//!
//! **Invariant:** the origin is written only where none is (a put
//! conditional on its absence) or over the version a projector read (a put
//! conditional on that version), so all projectors of a projection agree on
//! one origin. It is renewed only when nothing depends on the old one: no
//! shard item of the projection is left (a new projection, or one whose
//! checkpoints were deleted), or a finished rebuild started after it (the
//! rebuild covers everything before its marker). A shard without a
//! checkpoint whose parent the projection never read starts at the trim
//! horizon only if it is one of the origin's roots (see
//! [`shards`](super::shards)). With [`StartPosition::Latest`], stream
//! records created before the origin's `start_after` are skipped at the
//! start of every shard opened without a checkpoint.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::fields::{millis, now_millis, string_set, time_of, PROJECTION, STREAM_ARN, UPDATED_AT};
use super::reader::Cutoff;
use super::shards::ShardTree;
use super::{CheckpointStore, Error, RebuildMarker, ShardCheckpoint, StartPosition};
use crate::error::or_refused;
use crate::item::{get_n, get_s, n, s, Item};
use crate::tables::LEASE_KEY;

const STARTED_AT: &str = "StartedAt";
const START_AFTER: &str = "StartAfter";
const START_POSITION: &str = "StartPosition";
const ROOTS: &str = "Roots";
const CLOSED: &str = "Closed";
const VERSION: &str = "OriginVersion";

/// How long before its first start a projection started with
/// [`StartPosition::Latest`] takes records from: it covers the rounding of
/// `ApproximateCreationDateTime` (down to the second) and a clock
/// difference between the projector's host and DynamoDB of a few seconds.
pub(super) const LATEST_MARGIN: Duration = Duration::from_secs(5);

/// Where and when a projection started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// When it first started (this projector's clock), and the shards that
    /// were closed then (described before that time was taken): they hold
    /// only records created before it.
    pub started: Cutoff,
    /// With [`StartPosition::Latest`]: records created before this are
    /// skipped at the start of shards opened without a checkpoint.
    pub start_after: SystemTime,
    /// The start position it started with.
    pub position: StartPosition,
    /// The stream it started on.
    pub stream_arn: String,
    /// The shards it started from: those whose parent was not described.
    pub roots: HashSet<String>,
    version: u64,
}

impl Origin {
    /// The roots if they are of `stream_arn` (none of a replaced stream's
    /// shards is a root of the new one).
    pub fn roots_of(&self, stream_arn: &str) -> HashSet<String> {
        if self.stream_arn == stream_arn {
            self.roots.clone()
        } else {
            HashSet::new()
        }
    }
}

impl CheckpointStore {
    fn origin_key(&self) -> String {
        format!("{}#!start", self.projection)
    }

    /// The projection's origin, if it has one.
    pub(crate) async fn origin(&self) -> Result<Option<Origin>, Error> {
        let key = self.origin_key();
        let Some(item) = self.get_item(&key).await? else {
            return Ok(None);
        };
        let position = match get_s(&item, &key, START_POSITION)? {
            "TRIM_HORIZON" => StartPosition::TrimHorizon,
            "LATEST" => StartPosition::Latest,
            _ => {
                return Err(crate::Error::InvalidAttribute {
                    key,
                    attribute: START_POSITION,
                    expected: "TRIM_HORIZON or LATEST",
                }
                .into())
            }
        };
        let roots = string_set(&item, &key, ROOTS)?;
        let closed = string_set(&item, &key, CLOSED)?;
        Ok(Some(Origin {
            started: Cutoff {
                at: time_of(get_n(&item, &key, STARTED_AT)?),
                closed,
            },
            start_after: time_of(get_n(&item, &key, START_AFTER)?),
            position,
            stream_arn: get_s(&item, &key, STREAM_ARN)?.to_string(),
            roots,
            version: get_n(&item, &key, VERSION)?,
        }))
    }

    /// The origin a projector run of `stream_arn` (described as `tree`, with
    /// shard items `items`) starts from: the stored one, or a new one
    /// (see the module docs) written unless another projector wrote one
    /// first (then that one).
    pub(crate) async fn origin_for_run(
        &self,
        stream_arn: &str,
        tree: &ShardTree,
        items: &[ShardCheckpoint],
        position: StartPosition,
        rebuild: Option<&RebuildMarker>,
    ) -> Result<Origin, Error> {
        let stored = self.origin().await?;
        let rebuilt_since = |origin: &Origin| {
            rebuild.is_some_and(|r| r.finished_at.is_some() && r.started_at > origin.started.at)
        };
        let now = time_of(now_millis());
        let origin = match &stored {
            Some(origin) if !items.is_empty() && !rebuilt_since(origin) => {
                if origin.position != position {
                    tracing::info!(
                        projection = self.projection(),
                        stored = ?origin.position,
                        configured = ?position,
                        "the projection keeps the start position it first started with"
                    );
                }
                return Ok(origin.clone());
            }
            // No progress depends on it: the roots are the stream's now.
            // The shards closed when it started stay those (a shard closed
            // since may hold records created after its start).
            Some(origin) if !rebuilt_since(origin) => Origin {
                stream_arn: stream_arn.to_string(),
                roots: tree.frontier(),
                version: origin.version + 1,
                ..origin.clone()
            },
            previous => Origin {
                // `tree` was described before `now` was taken.
                started: Cutoff {
                    at: now,
                    closed: tree.closed(),
                },
                start_after: latest_start(now),
                position,
                stream_arn: stream_arn.to_string(),
                roots: tree.frontier(),
                version: previous.as_ref().map_or(1, |o| o.version + 1),
            },
        };
        if self.put_origin(&origin).await? {
            tracing::info!(
                projection = self.projection(),
                roots = origin.roots.len(),
                position = ?origin.position,
                "projection origin recorded"
            );
            return Ok(origin);
        }
        // Another projector recorded one first: that one holds.
        match self.origin().await? {
            Some(origin) => Ok(origin),
            None => Err(Error::Store(crate::Error::InvalidAttribute {
                key: self.origin_key(),
                attribute: VERSION,
                expected: "an item (it was deleted while being written)",
            })),
        }
    }

    /// Puts `origin` if it is absent, or if it has the version before
    /// `origin`'s; `false` if another writer came first.
    async fn put_origin(&self, origin: &Origin) -> Result<bool, Error> {
        let mut item: Item = HashMap::from([
            (LEASE_KEY.to_string(), s(self.origin_key())),
            (PROJECTION.to_string(), s(&self.projection)),
            (STREAM_ARN.to_string(), s(&origin.stream_arn)),
            (STARTED_AT.to_string(), n(millis(origin.started.at))),
            (START_AFTER.to_string(), n(millis(origin.start_after))),
            (
                START_POSITION.to_string(),
                s(position_name(origin.position)),
            ),
            (VERSION.to_string(), n(origin.version)),
            (UPDATED_AT.to_string(), n(now_millis())),
        ]);
        for (name, set) in [(ROOTS, &origin.roots), (CLOSED, &origin.started.closed)] {
            if !set.is_empty() {
                let mut ids: Vec<String> = set.iter().cloned().collect();
                ids.sort();
                item.insert(name.to_string(), AttributeValue::Ss(ids));
            }
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .expression_attribute_names("#key", LEASE_KEY);
        let put = if origin.version <= 1 {
            put.condition_expression("attribute_not_exists(#key)")
        } else {
            put.condition_expression("attribute_not_exists(#key) OR #version = :previous")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":previous", n(origin.version - 1))
        };
        let refused = PutItemError::is_conditional_check_failed_exception;
        let put = or_refused(put.send().await, "PutItem", &self.table, refused)?;
        Ok(put.is_some())
    }
}

/// `now` less [`LATEST_MARGIN`], rounded down to the second.
fn latest_start(now: SystemTime) -> SystemTime {
    let at = millis(now).saturating_sub(millis(SystemTime::UNIX_EPOCH + LATEST_MARGIN));
    time_of(at - at % 1000)
}

fn position_name(position: StartPosition) -> &'static str {
    match position {
        StartPosition::TrimHorizon => "TRIM_HORIZON",
        StartPosition::Latest => "LATEST",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latest_start_is_the_margin_before_rounded_down_to_the_second() {
        let now = time_of(1_764_000_012_345);
        assert_eq!(latest_start(now), time_of(1_764_000_007_000));
        assert_eq!(latest_start(time_of(1_000)), time_of(0));
    }
}
