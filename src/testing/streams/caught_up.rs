//! When a reader of the fake stream was at a shard's end: a `GetRecords`
//! answer with no record and a next iterator. A test waits for one such
//! answer per open shard, after its last change to the stream, to know
//! that every reader has caught up (a deterministic condition, instead of
//! a sleep).
//!
//! **Invariant:** the count of a shard only grows, once per such answer
//! served, and only for a shard that is open (a closed shard's last page
//! has no next iterator).

use serde_json::Value;

use super::model::Model;
use super::server::Answer;
use super::FakeStreams;

impl FakeStreams {
    /// How many `GetRecords` answers for `shard_id` had no record and a next
    /// iterator: the reader was at the end of the open shard. Compare the
    /// count before and after a change to know a reader caught up since.
    pub fn caught_up_polls(&self, shard_id: &str) -> usize {
        self.model().caught_up.get(shard_id).copied().unwrap_or(0)
    }
}

impl Model {
    /// Counts `answer` to a `GetRecords` on `iterator` if it was empty with
    /// a next iterator.
    pub(super) fn note_caught_up(&mut self, iterator: &str, answer: &Answer) {
        let (status, body) = answer;
        let empty = body
            .get("Records")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        let next = body.get("NextShardIterator").is_some();
        if *status != 200 || !empty || !next {
            return;
        }
        // Iterators are `{shard}|{position}|{generation}`; shard ids may hold `|`.
        let mut parts = iterator.rsplitn(3, '|');
        if let (Some(_), Some(_), Some(shard_id)) = (parts.next(), parts.next(), parts.next()) {
            *self.caught_up.entry(shard_id.to_string()).or_default() += 1;
        }
    }
}
