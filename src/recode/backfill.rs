//! The slice backfill: gives every event item of an events table that has
//! no slice (written by upstream, by an older release, or by a writer
//! without [`with_slices`](crate::DynamoEventRepository::with_slices)) its
//! slice and a commit time, so that it appears in the `EventsBySlice` index
//! and in every [feed](crate::projection::feed).
//!
//! **Invariant:** the backfill never changes a payload or any attribute
//! but the two it adds: each write is an `UpdateItem` that only `SET`s
//! `Slice` and `CommitTime`, on the condition that the item exists and has
//! no `Slice` yet. So it cannot resurrect a deleted event, overwrite what a
//! sliced writer wrote, or race a second backfill into two commit times.
//! A run can stop anywhere: the report names the last key it finished,
//! and a run given that key resumes after it.
//!
//! The commit time it gives is the backfill's clock at the write: the
//! events' real commit times are unknown. A feed started from the
//! beginning after the backfill reads them; one started from a time
//! reads those given a later time. Run the backfill once every writer
//! writes slices, then start feeds.

use std::time::SystemTime;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::Client;

use super::rate_limit::RateLimiter;
use crate::error::{Error, Result};
use crate::item::{
    get_n, get_s, n, s, Item, AGGREGATE_ID, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE,
    AGGREGATE_TYPE_AND_ID,
};
use crate::slice::{micros, Slices, COMMIT_TIME, SLICE};

/// What a [`backfill_slices`] run does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillOptions {
    /// The most items written per second (`None`: as fast as DynamoDB
    /// takes them).
    pub items_per_second: Option<u32>,
    /// Stop after scanning this many items (`None`: the whole table).
    pub max_items: Option<u64>,
    /// Resume after this key (from an earlier report's `resume_after`).
    pub resume_after: Option<BackfillKey>,
    /// Count what would be written, write nothing.
    pub dry_run: bool,
}

/// An events table key, where a backfill stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillKey {
    /// `AggregateTypeAndId`.
    pub aggregate: String,
    /// `AggregateIdSequence`.
    pub sequence: usize,
}

impl std::fmt::Display for BackfillKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.aggregate, self.sequence)
    }
}

impl std::str::FromStr for BackfillKey {
    type Err = String;

    /// `{type}:{id}#{sequence}`, as [`Display`](std::fmt::Display) writes it.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (aggregate, sequence) = text
            .rsplit_once('#')
            .ok_or_else(|| format!("{text:?} is not a key `{{type}}:{{id}}#{{sequence}}`"))?;
        let sequence = sequence
            .parse()
            .map_err(|_| format!("{text:?}: the sequence after `#` is not a number"))?;
        Ok(BackfillKey {
            aggregate: aggregate.to_string(),
            sequence,
        })
    }
}

/// What a [`backfill_slices`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackfillReport {
    /// Items scanned.
    pub scanned: u64,
    /// Items given a slice (in a dry run: that would be).
    pub stamped: u64,
    /// Items that had one already.
    pub had_slice: u64,
    /// Items a sliced writer or another backfill stamped between the scan
    /// and the write (left as they were).
    pub raced: u64,
    /// Where the run stopped, if before the end of the table: pass it as
    /// [`BackfillOptions::resume_after`].
    pub resume_after: Option<BackfillKey>,
}

/// Gives every event of `table` without a slice its slice under `slices`
/// and a commit time (the backfill's clock), each by an `UpdateItem` that
/// sets only `Slice` and `CommitTime`, on the condition that the event
/// exists and has no slice yet: no payload changes, no deleted event comes
/// back, and a writer or another backfill that stamped it first wins. The
/// report's `resume_after` says where a stopped run resumes. Needs
/// `dynamodb:Scan` and `dynamodb:UpdateItem` on the table.
pub async fn backfill_slices(
    client: &Client,
    table: &str,
    slices: Slices,
    options: &BackfillOptions,
) -> Result<BackfillReport> {
    let limiter = options.items_per_second.map(RateLimiter::new);
    let mut report = BackfillReport {
        resume_after: options.resume_after.clone(),
        ..BackfillReport::default()
    };
    let mut start: Option<Item> = options.resume_after.as_ref().map(|key| {
        Item::from([
            (AGGREGATE_TYPE_AND_ID.to_string(), s(&key.aggregate)),
            (AGGREGATE_ID_SEQUENCE.to_string(), n(key.sequence)),
        ])
    });
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .projection_expression("#key, #sequence, #type, #id, #slice")
            .expression_attribute_names("#key", AGGREGATE_TYPE_AND_ID)
            .expression_attribute_names("#sequence", AGGREGATE_ID_SEQUENCE)
            .expression_attribute_names("#type", AGGREGATE_TYPE)
            .expression_attribute_names("#id", AGGREGATE_ID)
            .expression_attribute_names("#slice", SLICE)
            .send()
            .await
            .map_err(|err| Error::from_sdk_on("Scan", table, err))?;
        let last = page.last_evaluated_key;
        for item in page.items.unwrap_or_default() {
            let key = BackfillKey {
                aggregate: get_s(&item, AGGREGATE_TYPE_AND_ID, "AggregateTypeAndId")?.to_string(),
                sequence: get_n(&item, AGGREGATE_ID_SEQUENCE, "AggregateIdSequence")?,
            };
            if options.max_items.is_some_and(|max| report.scanned >= max) {
                report.resume_after = Some(key_before(&report, &key));
                return Ok(report);
            }
            report.scanned += 1;
            if item.contains_key(SLICE) {
                report.had_slice += 1;
            } else if options.dry_run {
                report.stamped += 1;
            } else {
                if let Some(limiter) = &limiter {
                    limiter.acquire().await;
                }
                let aggregate_type = get_s(&item, AGGREGATE_TYPE, "AggregateType")?;
                let aggregate_id = get_s(&item, AGGREGATE_ID, "AggregateId")?;
                let [(_, slice), (_, time)] =
                    slices.attributes(aggregate_type, aggregate_id, micros(SystemTime::now()));
                let updated = client
                    .update_item()
                    .table_name(table)
                    .key(AGGREGATE_TYPE_AND_ID, s(&key.aggregate))
                    .key(AGGREGATE_ID_SEQUENCE, n(key.sequence))
                    .update_expression("SET #slice = :slice, #time = :time")
                    .condition_expression("attribute_exists(#key) AND attribute_not_exists(#slice)")
                    .expression_attribute_names("#slice", SLICE)
                    .expression_attribute_names("#time", COMMIT_TIME)
                    .expression_attribute_names("#key", AGGREGATE_TYPE_AND_ID)
                    .expression_attribute_values(":slice", slice)
                    .expression_attribute_values(":time", time)
                    .send()
                    .await;
                match updated {
                    Ok(_) => report.stamped += 1,
                    Err(err)
                        if matches!(
                            err.as_service_error(),
                            Some(UpdateItemError::ConditionalCheckFailedException(_))
                        ) =>
                    {
                        report.raced += 1;
                    }
                    Err(err) => {
                        report.resume_after = Some(key_before(&report, &key));
                        return Err(Error::from_sdk_on("UpdateItem", table, err));
                    }
                }
            }
            report.resume_after = Some(key);
        }
        match last {
            Some(last) => start = Some(last),
            None => {
                report.resume_after = None;
                return Ok(report);
            }
        }
    }
}

/// The key to resume from so that `key` is processed again: the last key
/// finished, which the report holds until `key` is done.
fn key_before(report: &BackfillReport, key: &BackfillKey) -> BackfillKey {
    report.resume_after.clone().unwrap_or_else(|| BackfillKey {
        aggregate: key.aggregate.clone(),
        sequence: key.sequence.saturating_sub(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_text() {
        let key = BackfillKey {
            aggregate: "Account:a#1".into(),
            sequence: 7,
        };
        assert_eq!(key.to_string(), "Account:a#1#7");
        assert_eq!("Account:a#1#7".parse::<BackfillKey>(), Ok(key));
        assert!("no-sequence".parse::<BackfillKey>().is_err());
        assert!("a#x".parse::<BackfillKey>().is_err());
    }
}
