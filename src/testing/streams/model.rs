//! The fake's model of one stream: its shards, their records and
//! lineage, and what was asked of it.
//!
//! **Invariant:** sequence numbers only grow: a record's is fixed when it
//! is pushed, a shard starts at the next one, and every one is written with
//! at least [`SEQUENCE_DIGITS`] digits, as DynamoDB's.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::item::Item;

/// Sequence numbers are decimal and at least 21 digits long, as DynamoDB's.
const SEQUENCE_DIGITS: usize = 21;

/// The largest `GetRecords` page, as DynamoDB's.
pub(super) const MAX_RECORDS: usize = 1000;

/// One `GetShardIterator` request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorRequest {
    /// The shard.
    pub shard_id: String,
    /// `TRIM_HORIZON`, `LATEST`, `AT_SEQUENCE_NUMBER` or `AFTER_SEQUENCE_NUMBER`.
    pub iterator_type: String,
    /// The sequence number, for the two types that take one.
    pub sequence_number: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct FakeRecord {
    pub(super) sequence: u128,
    pub(super) created: SystemTime,
    pub(super) keys: Item,
    pub(super) new_image: Item,
}

#[derive(Debug)]
pub(super) struct FakeShard {
    pub(super) id: String,
    pub(super) parent: Option<String>,
    pub(super) starting: u128,
    pub(super) records: Vec<FakeRecord>,
    /// Set when the shard is closed: no record is added after it.
    pub(super) ending: Option<u128>,
    /// How many of the first records were trimmed away.
    pub(super) trimmed: usize,
    /// Trimmed away entirely: no longer in the stream's description.
    pub(super) removed: bool,
}

#[derive(Debug)]
pub(super) struct Model {
    pub(super) stream_arn: String,
    pub(super) shards: Vec<FakeShard>,
    pub(super) next_sequence: u128,
    /// Iterators carry the generation they were issued in; older ones expired.
    pub(super) generation: u64,
    pub(super) page_size: usize,
    pub(super) calls: HashMap<String, usize>,
    pub(super) iterator_requests: Vec<IteratorRequest>,
    /// Per shard: `GetRecords` answers with no record and a next iterator
    /// (the reader was at the shard's end). See [`super::caught_up`].
    pub(super) caught_up: HashMap<String, usize>,
}

pub(super) fn format_sequence(sequence: u128) -> String {
    format!("{sequence:0width$}", width = SEQUENCE_DIGITS)
}
