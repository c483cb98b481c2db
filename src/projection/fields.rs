//! The checkpoint table's item fields: the attribute names every reader
//! and writer of a shard's item (checkpoints, leases, rebuild markers, the
//! stream's origin) shares, and how times are stored in it.
//!
//! **Invariant:** times are stored as Unix milliseconds, by the writer's
//! clock, and only ever shown or compared with times of the same writer;
//! a time before the epoch is stored as 0.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::item::Item;

// The attributes of a shard's item (and of a rebuild marker); the schema
// is documented at `CheckpointStore`.
pub(super) const PROJECTION: &str = "Projection";
pub(super) const STREAM_ARN: &str = "StreamArn";
pub(super) const SHARD_ID: &str = "ShardId";
pub(super) const PARENT_SHARD_ID: &str = "ParentShardId";
pub(super) const CHECKPOINT: &str = "Checkpoint";
pub(super) const CHECKPOINT_CREATED_AT: &str = "CheckpointCreatedAt";
pub(super) const OPENED_AT: &str = "OpenedAt";
pub(super) const FINISHED: &str = "Finished";
pub(super) const OWNER: &str = "Owner";
pub(super) const LEASE_COUNTER: &str = "LeaseCounter";
pub(super) const UPDATED_AT: &str = "UpdatedAt";
pub(super) const REBUILD_STARTED_AT: &str = "RebuildStartedAt";
pub(super) const START_AFTER: &str = "StartAfter";
pub(super) const REBUILD_FINISHED_AT: &str = "RebuildFinishedAt";
pub(super) const REBUILD_EVENTS: &str = "RebuildEvents";
pub(super) const REBUILD_FAILED_AT: &str = "RebuildFailedAt";
pub(super) const REBUILD_ERROR: &str = "RebuildError";
/// The shards closed when a rebuild started (a string set).
pub(super) const REBUILD_CLOSED_SHARDS: &str = "RebuildClosedShards";
/// The stream a rebuild described before its marker.
pub(super) const REBUILD_STREAM: &str = "RebuildStream";

/// The time `millis` milliseconds after the Unix epoch.
pub(super) fn time_of(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// `time` as Unix milliseconds (0 before the epoch, saturating far after).
pub(super) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Now, as Unix milliseconds.
pub(super) fn now_millis() -> u64 {
    millis(SystemTime::now())
}

/// The string set `name` of `item` (empty if absent; DynamoDB stores no
/// empty set).
pub(super) fn string_set(
    item: &Item,
    key: &str,
    name: &'static str,
) -> Result<HashSet<String>, super::Error> {
    match item.get(name) {
        None => Ok(HashSet::new()),
        Some(AttributeValue::Ss(ids)) => Ok(ids.iter().cloned().collect()),
        Some(_) => Err(crate::Error::InvalidAttribute {
            key: key.to_string(),
            attribute: name,
            expected: "a string set",
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_milliseconds() {
        let time = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(time_of(millis(time)), time);
        assert_eq!(millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
