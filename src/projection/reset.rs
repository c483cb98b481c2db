//! Deleting a projection's checkpoints: all of them
//! ([`CheckpointStore::reset`]), or, at the end of a
//! [`Rebuild`](super::Rebuild), those that predate it (`supersede`).
//!
//! **Invariant:** a checkpoint is superseded only if its progress (its
//! `Checkpoint` and `Finished`) is still what it was before the rebuild's
//! start marker was written, checked by the delete's condition: progress a
//! projector made during the rebuild is kept, and nothing the rebuild did not
//! cover is skipped, because a shard without a checkpoint restarts from the
//! rebuild's marker. Owners are fenced on purpose, not waited for: a
//! deleted item fails its owner's next write ([`Error::LeaseLost`]), so the
//! owner stops reading that shard before it could checkpoint past the
//! marker, and the shard is leased afresh.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::checkpoint::RebuildMarker;
use super::fields::{CHECKPOINT, FINISHED, SHARD_ID};
use super::{CheckpointStore, Error, ShardCheckpoint};
use crate::error::or_refused;
use crate::item::{get_s, s, Item, LAST_SEQUENCE};
use crate::tables::LEASE_KEY;

/// What [`CheckpointStore::reset`] deleted.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The shard items deleted, as they were just before.
    pub shards: Vec<ShardCheckpoint>,
    /// The rebuild marker deleted, if there was one.
    pub rebuild: Option<RebuildMarker>,
    /// How many applied sequences of a
    /// [`Transactional`](super::Transactional) projection were deleted.
    pub sequences: usize,
}

impl CheckpointStore {
    /// Deletes every item of the projection: each shard's checkpoint and
    /// lease, the rebuild marker, and the projection's origin item
    /// (`{projection}#!start`) if there is one, and the applied sequences
    /// of a [`Transactional`](super::Transactional) projection (without
    /// which a rebuild would skip every event already applied). Afterwards the projection is as if no
    /// projector ever ran: a projector started then reads every shard from
    /// its [start position](super::Projector::with_start), so with the
    /// default trim horizon it sees only the last 24 hours of the stream.
    ///
    /// Use it to retire a projection (leaving nothing in the checkpoint
    /// table), or to start one over: stop its projectors, empty its view,
    /// reset, then run a [`Rebuild`](super::Rebuild) before starting the
    /// projectors again. It is not needed to recover from
    /// [`Error::Trimmed`]: a finished rebuild supersedes the checkpoints
    /// that predate it by itself.
    ///
    /// Stop every projector of the projection first. A running one is
    /// fenced, not waited for: its next write to a deleted item fails with
    /// [`Error::LeaseLost`] and it stops reading that shard, but it may
    /// lease the shard again (without a checkpoint) and keeps the rebuild
    /// marker it read when it started.
    pub async fn reset(&self) -> Result<Reset, Error> {
        // One scan: the shard items and the applied sequences.
        let items = self.items_with(&[SHARD_ID, LAST_SEQUENCE]).await?;
        let mut shards = items
            .iter()
            .filter(|item| item.contains_key(SHARD_ID))
            .map(ShardCheckpoint::from_item)
            .collect::<Result<Vec<_>, Error>>()?;
        shards.sort_by(|a, b| a.shard.shard_id.cmp(&b.shard.shard_id));
        let rebuild = self.rebuild_marker().await?;
        for shard in &shards {
            self.delete(&self.key(&shard.shard.shard_id), None).await?;
        }
        if rebuild.is_some() {
            self.delete(&self.rebuild_key(), None).await?;
        }
        // The projection's origin, where projectors record it (absent
        // otherwise: deleting nothing is harmless).
        self.delete(&format!("{}#!start", self.projection()), None)
            .await?;
        let sequences = self.delete_sequences(&items).await?;
        tracing::info!(
            projection = self.projection(),
            table = self.table(),
            shards = shards.len(),
            sequences,
            "projection checkpoints reset"
        );
        Ok(Reset {
            shards,
            rebuild,
            sequences,
        })
    }

    /// Deletes the applied sequences among `items` (those with a
    /// `LastSequence`); returns how many.
    async fn delete_sequences(&self, items: &[Item]) -> Result<usize, Error> {
        let mut deleted = 0;
        for item in items.iter().filter(|item| item.contains_key(LAST_SEQUENCE)) {
            self.delete(get_s(item, "<sequence item>", LEASE_KEY)?, None)
                .await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Deletes the items of `before` (read before a rebuild's marker was
    /// written) whose checkpoint and finished flag did not change since;
    /// returns their shard ids. See the [module docs](self).
    pub(super) async fn supersede(&self, before: &[ShardCheckpoint]) -> Result<Vec<String>, Error> {
        let mut superseded = Vec::new();
        for shard in before {
            let key = self.key(&shard.shard.shard_id);
            if self.delete(&key, Some(shard)).await? {
                superseded.push(shard.shard.shard_id.clone());
            } else {
                tracing::info!(
                    projection = self.projection(),
                    shard = %shard.shard.shard_id,
                    "a projector moved this shard's checkpoint during the rebuild: kept"
                );
            }
        }
        Ok(superseded)
    }

    /// Deletes the item at `key`; with `unchanged`, only if its checkpoint
    /// and finished flag are still those. `Ok(false)` if that condition
    /// failed.
    async fn delete(&self, key: &str, unchanged: Option<&ShardCheckpoint>) -> Result<bool, Error> {
        let mut delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(key));
        if let Some(shard) = unchanged {
            let mut values = HashMap::new();
            let checkpoint = match &shard.checkpoint {
                Some(checkpoint) => {
                    values.insert(":checkpoint".to_string(), s(checkpoint));
                    "#checkpoint = :checkpoint"
                }
                None => "attribute_not_exists(#checkpoint)",
            };
            values.insert(
                ":finished".to_string(),
                AttributeValue::Bool(shard.finished),
            );
            let finished = if shard.finished {
                "#finished = :finished"
            } else {
                "(attribute_not_exists(#finished) OR #finished = :finished)"
            };
            delete = delete
                .condition_expression(format!("{checkpoint} AND {finished}"))
                .expression_attribute_names("#checkpoint", CHECKPOINT)
                .expression_attribute_names("#finished", FINISHED)
                .set_expression_attribute_values(Some(values));
        }
        let refused = DeleteItemError::is_conditional_check_failed_exception;
        let deleted = or_refused(delete.send().await, "DeleteItem", &self.table, refused)?;
        Ok(deleted.is_some())
    }
}
