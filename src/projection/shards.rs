//! The shard tree of one stream: which shards exist (from every
//! `DescribeStream` page), which are closed, and which are ready to read.
//!
//! **Invariant:** a shard is ready only when it is not finished and its
//! parent is either absent (no parent, or trimmed away: no longer in the
//! stream's description) or finished, so a child's records are never read
//! before all of its parent's. Ready shards come oldest first.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodbstreams::types::Shard;

use super::Error;

/// One shard of the stream, as `DescribeStream` described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardNode {
    /// The shard id.
    pub shard_id: String,
    /// The shard it was split from, if any.
    pub parent_shard_id: Option<String>,
    /// Its first sequence number, as a number (0 if unknown), to order shards.
    pub starting: u128,
    /// Closed: the range has an ending sequence number; no record is added.
    pub closed: bool,
}

impl ShardNode {
    /// The node of a described shard; `None` for a shard without an id.
    fn from_shard(shard: &Shard) -> Option<Self> {
        let range = shard.sequence_number_range();
        Some(ShardNode {
            shard_id: shard.shard_id()?.to_string(),
            parent_shard_id: shard.parent_shard_id().map(str::to_string),
            starting: range
                .and_then(|r| r.starting_sequence_number())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            closed: range.and_then(|r| r.ending_sequence_number()).is_some(),
        })
    }
}

/// Every shard of one stream description, in the order described.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShardTree {
    order: Vec<String>,
    nodes: HashMap<String, ShardNode>,
}

impl ShardTree {
    /// Adds the shards of one `DescribeStream` page (a shard seen before is
    /// updated: it may have closed since).
    pub fn extend<'a>(&mut self, shards: impl IntoIterator<Item = &'a Shard>) {
        for node in shards.into_iter().filter_map(ShardNode::from_shard) {
            if !self.nodes.contains_key(&node.shard_id) {
                self.order.push(node.shard_id.clone());
            }
            self.nodes.insert(node.shard_id.clone(), node);
        }
    }

    /// The shard `shard_id`, if described.
    #[cfg(test)]
    pub fn get(&self, shard_id: &str) -> Option<&ShardNode> {
        self.nodes.get(shard_id)
    }

    /// How many shards were described.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The shards that are not `finished` and whose parent is absent or
    /// finished, oldest (lowest starting sequence number) first.
    pub fn ready(&self, finished: &HashSet<String>) -> Vec<&ShardNode> {
        let mut ready: Vec<&ShardNode> = self
            .order
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .filter(|node| !finished.contains(&node.shard_id))
            .filter(|node| match &node.parent_shard_id {
                None => true,
                Some(parent) => !self.nodes.contains_key(parent) || finished.contains(parent),
            })
            .collect();
        ready.sort_by_key(|node| node.starting);
        ready
    }

    /// The shards of `self` that `previous` did not have.
    pub fn new_since(&self, previous: &ShardTree) -> Vec<&str> {
        self.order
            .iter()
            .filter(|id| !previous.nodes.contains_key(*id))
            .map(String::as_str)
            .collect()
    }
}

/// Describes every shard of `stream_arn`, following `LastEvaluatedShardId`
/// through all pages.
pub(crate) async fn describe(
    client: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Result<ShardTree, Error> {
    let mut tree = ShardTree::default();
    let mut start: Option<String> = None;
    loop {
        let page = client
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(|err| Error::from_streams("DescribeStream", stream_arn, err))?;
        let Some(description) = page.stream_description else {
            return Ok(tree);
        };
        let known = tree.len();
        tree.extend(description.shards());
        match description.last_evaluated_shard_id {
            // A page of shards already seen would loop forever.
            Some(last) if tree.len() > known => start = Some(last),
            _ => return Ok(tree),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::types::SequenceNumberRange;

    fn shard(id: &str, parent: Option<&str>, start: u32, end: Option<u32>) -> Shard {
        let range = SequenceNumberRange::builder()
            .starting_sequence_number(format!("{start:021}"))
            .set_ending_sequence_number(end.map(|end| format!("{end:021}")))
            .build();
        Shard::builder()
            .shard_id(id)
            .set_parent_shard_id(parent.map(str::to_string))
            .sequence_number_range(range)
            .build()
    }

    fn ids<'a>(nodes: &[&'a ShardNode]) -> Vec<&'a str> {
        nodes.iter().map(|n| n.shard_id.as_str()).collect()
    }

    fn finished(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    /// root (closed) -> a (closed) -> {a1, a2}; root -> b (open).
    fn lineage() -> ShardTree {
        let mut tree = ShardTree::default();
        tree.extend(&[
            shard("root", None, 100, Some(110)),
            shard("a", Some("root"), 111, Some(120)),
            shard("b", Some("root"), 112, None),
        ]);
        tree.extend(&[
            shard("a1", Some("a"), 121, None),
            shard("a2", Some("a"), 122, None),
        ]);
        tree
    }

    #[test]
    fn children_are_ready_only_after_their_parent_finished() {
        let tree = lineage();
        assert_eq!(ids(&tree.ready(&finished(&[]))), ["root"]);
        assert_eq!(ids(&tree.ready(&finished(&["root"]))), ["a", "b"]);
        assert_eq!(
            ids(&tree.ready(&finished(&["root", "a"]))),
            ["b", "a1", "a2"]
        );
        assert!(tree
            .ready(&finished(&["root", "a", "b", "a1", "a2"]))
            .is_empty());
    }

    #[test]
    fn a_parent_trimmed_away_does_not_hold_its_children_back() {
        let mut tree = ShardTree::default();
        tree.extend(&[
            shard("a", Some("gone"), 111, Some(120)),
            shard("a1", Some("a"), 121, None),
        ]);
        assert_eq!(ids(&tree.ready(&finished(&[]))), ["a"]);
    }

    #[test]
    fn ready_shards_come_oldest_first_whatever_the_described_order() {
        let mut tree = ShardTree::default();
        tree.extend(&[
            shard("late", None, 500, None),
            shard("early", None, 100, None),
        ]);
        assert_eq!(ids(&tree.ready(&finished(&[]))), ["early", "late"]);
    }

    #[test]
    fn closed_shards_are_known_and_a_shard_that_closes_later_is_updated() {
        let mut tree = ShardTree::default();
        tree.extend(&[shard("s", None, 100, None)]);
        assert_eq!(tree.get("s").map(|n| n.closed), Some(false));
        tree.extend(&[shard("s", None, 100, Some(150))]);
        assert_eq!(tree.get("s").map(|n| n.closed), Some(true));
        assert_eq!(tree.len(), 1);
    }

    #[test]
    fn new_shards_are_discovered_against_the_previous_description() {
        let before = lineage();
        let mut after = before.clone();
        after.extend(&[shard("b1", Some("b"), 130, None)]);
        assert_eq!(after.new_since(&before), ["b1"]);
        assert!(before.new_since(&before).is_empty());
    }

    #[test]
    fn shards_without_an_id_are_ignored() {
        let mut tree = ShardTree::default();
        tree.extend(&[Shard::builder().build(), shard("s", None, 1, None)]);
        assert_eq!(tree.len(), 1);
    }
}
