//! The shard tree of one stream: which shards exist (from every
//! `DescribeStream` page), which are closed, which are ready to read, and
//! where a shard without a checkpoint starts.
//!
//! **Invariant:** a shard is ready only when it is not finished and its
//! parent is finished (described or not), so a child's records are never
//! read before all of its parent's; a shard whose parent this projection
//! never read is ready only if it is a root of the projection's origin (it
//! was on the frontier of the stream when the projection started). Every
//! other way to reach a shard skips records, and is a [`Gap`]: an
//! unfinished checkpoint item whose shard is no longer described, or a
//! shard whose parent is gone and was never read. A child of a finished
//! parent ([`Opening::First`]) and a root ([`Opening::Root`]) open at
//! their first record, or at the trim horizon only if the oldest record
//! left predates the point from which the projection wants the shard's
//! records (see the [reader](super::reader)). Ready shards come oldest
//! first.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodbstreams::types::Shard;

use super::{Error, ShardCheckpoint};

/// One shard of the stream, as `DescribeStream` described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardNode {
    /// The shard id.
    pub shard_id: String,
    /// The shard it was split from, if any.
    pub parent_shard_id: Option<String>,
    /// Its first sequence number, as a number (0 if unknown), to order shards.
    pub starting: u128,
    /// Its first sequence number, as described.
    pub starting_sequence: Option<String>,
    /// Closed: the range has an ending sequence number; no record is added.
    pub closed: bool,
}

impl ShardNode {
    /// The node of a described shard; `None` for a shard without an id.
    fn from_shard(shard: &Shard) -> Option<Self> {
        let range = shard.sequence_number_range();
        let starting_sequence = range
            .and_then(|r| r.starting_sequence_number())
            .map(str::to_string);
        Some(ShardNode {
            shard_id: shard.shard_id()?.to_string(),
            parent_shard_id: shard.parent_shard_id().map(str::to_string),
            starting: starting_sequence
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            starting_sequence,
            closed: range.and_then(|r| r.ending_sequence_number()).is_some(),
        })
    }
}

/// Where a shard without a checkpoint starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opening {
    /// A root of the projection's origin (its starting sequence number, if
    /// described): at its first record if still there; else at the trim
    /// horizon, provided the oldest record left was created before the
    /// projection wanted records from (a finished rebuild's or a `Latest`
    /// projection's `start_after`, or the origin's start if the shard is
    /// opened for the first time: the records trimmed were never the
    /// projection's to read), and [`Error::Trimmed`] otherwise.
    Root(Option<String>),
    /// At its first record (`AT_SEQUENCE_NUMBER` of its starting sequence
    /// number, if described): its parent was read to its end, so a missing
    /// first record is a gap, unless every record trimmed predates a
    /// finished rebuild's or a `Latest` projection's `start_after` (then at
    /// the trim horizon, as a root).
    First(Option<String>),
}

/// Records the projection never read and cannot read any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The shard whose records are gone.
    pub shard_id: String,
    /// Its checkpoint, if the projection had one.
    pub checkpoint: Option<String>,
}

impl Gap {
    /// The gap as [`Error::Trimmed`].
    pub fn into_error(self, stream_arn: &str) -> Error {
        Error::Trimmed {
            stream_arn: stream_arn.to_string(),
            shard_id: self.shard_id,
            checkpoint: self.checkpoint.unwrap_or_else(|| "none".into()),
        }
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

    /// Every described shard, in the order described.
    pub fn nodes(&self) -> impl Iterator<Item = &ShardNode> {
        self.order.iter().filter_map(|id| self.nodes.get(id))
    }

    /// Whether `shard_id` was described.
    pub fn contains(&self, shard_id: &str) -> bool {
        self.nodes.contains_key(shard_id)
    }

    /// How many shards were described.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The shards whose parent is not described (or who have none): where a
    /// projection starting now starts.
    pub fn frontier(&self) -> HashSet<String> {
        self.nodes
            .values()
            .filter(|node| {
                node.parent_shard_id
                    .as_ref()
                    .is_none_or(|parent| !self.nodes.contains_key(parent))
            })
            .map(|node| node.shard_id.clone())
            .collect()
    }

    /// The shards described as closed (an ending sequence number): every
    /// record of one was created before it was described.
    pub fn closed(&self) -> HashSet<String> {
        self.nodes
            .values()
            .filter(|node| node.closed)
            .map(|node| node.shard_id.clone())
            .collect()
    }

    /// The shards ready to read, oldest (lowest starting sequence number)
    /// first, each with where it starts if it has no checkpoint; or the
    /// first gap. `items` are the projection's checkpoint items of this
    /// stream, `roots` its origin's roots (see the module docs).
    pub fn plan(
        &self,
        items: &[ShardCheckpoint],
        roots: &HashSet<String>,
    ) -> Result<Vec<(&ShardNode, Opening)>, Gap> {
        let items: HashMap<&str, &ShardCheckpoint> = items
            .iter()
            .map(|c| (c.shard.shard_id.as_str(), c))
            .collect();
        let mut gone: Vec<&&ShardCheckpoint> = items
            .values()
            .filter(|c| !c.finished && !self.nodes.contains_key(&c.shard.shard_id))
            .collect();
        gone.sort_by(|a, b| a.shard.shard_id.cmp(&b.shard.shard_id));
        if let Some(item) = gone.first() {
            return Err(Gap {
                shard_id: item.shard.shard_id.clone(),
                checkpoint: item.checkpoint.clone(),
            });
        }
        let finished = |id: &str| items.get(id).is_some_and(|c| c.finished);
        let mut ready = Vec::new();
        for node in self.order.iter().filter_map(|id| self.nodes.get(id)) {
            if finished(&node.shard_id) {
                continue;
            }
            let first = Opening::First(node.starting_sequence.clone());
            let opening = match &node.parent_shard_id {
                Some(parent) if finished(parent) => first,
                // Its parent is read first.
                Some(parent) if self.nodes.contains_key(parent) => continue,
                // Never read (an unfinished item of it is a gap above).
                _ if roots.contains(&node.shard_id) => {
                    Opening::Root(node.starting_sequence.clone())
                }
                // Leased before: it was ready then, as a child.
                _ if items.contains_key(node.shard_id.as_str()) => first,
                parent => {
                    return Err(Gap {
                        shard_id: parent.clone().unwrap_or_else(|| node.shard_id.clone()),
                        checkpoint: None,
                    })
                }
            };
            ready.push((node, opening));
        }
        ready.sort_by_key(|(node, _)| node.starting);
        Ok(ready)
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::projection::ShardInfo;
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

    fn ids(planned: &[(&ShardNode, Opening)]) -> Vec<String> {
        planned.iter().map(|(n, _)| n.shard_id.clone()).collect()
    }

    fn item(id: &str, finished: bool, checkpoint: Option<&str>) -> ShardCheckpoint {
        ShardCheckpoint {
            shard: ShardInfo {
                stream_arn: "arn".into(),
                shard_id: id.into(),
                parent_shard_id: None,
            },
            checkpoint: checkpoint.map(str::to_string),
            checkpoint_created: None,
            finished,
            owner: None,
            lease_counter: 1,
            updated_at: None,
        }
    }

    fn finished(ids: &[&str]) -> Vec<ShardCheckpoint> {
        ids.iter().map(|id| item(id, true, Some("1"))).collect()
    }

    fn roots(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    fn ready(tree: &ShardTree, done: &[&str]) -> Vec<String> {
        let roots = tree.frontier();
        ids(&tree.plan(&finished(done), &roots).unwrap())
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
        assert_eq!(ready(&tree, &[]), ["root"]);
        assert_eq!(ready(&tree, &["root"]), ["a", "b"]);
        assert_eq!(ready(&tree, &["root", "a"]), ["b", "a1", "a2"]);
        assert!(ready(&tree, &["root", "a", "b", "a1", "a2"]).is_empty());
    }

    #[test]
    fn roots_open_as_roots_and_children_at_their_first_record() {
        let tree = lineage();
        let planned = tree.plan(&finished(&["root"]), &roots(&["root"])).unwrap();
        let openings: Vec<_> = planned.iter().map(|(_, o)| o.clone()).collect();
        let first = |n: u32| Opening::First(Some(format!("{n:021}")));
        assert_eq!(openings, [first(111), first(112)]);
        let planned = tree.plan(&[], &roots(&["root"])).unwrap();
        assert_eq!(planned[0].1, Opening::Root(Some(format!("{:021}", 100))));
    }

    #[test]
    fn a_parent_gone_is_done_if_finished_a_root_if_at_the_origin_else_a_gap() {
        let mut tree = ShardTree::default();
        tree.extend(&[
            shard("a", Some("gone"), 111, Some(120)),
            shard("a1", Some("a"), 121, None),
        ]);
        assert_eq!(tree.frontier(), roots(&["a"]));
        // A fresh projection starts there.
        assert_eq!(ids(&tree.plan(&[], &roots(&["a"])).unwrap()), ["a"]);
        // Its parent was read to the end.
        let planned = tree.plan(&finished(&["gone"]), &roots(&[])).unwrap();
        assert_eq!(planned[0].1, Opening::First(Some(format!("{:021}", 111))));
        // Never read: its records are lost to the projection.
        let gap = tree.plan(&[], &roots(&[])).unwrap_err();
        assert_eq!((gap.shard_id.as_str(), gap.checkpoint), ("gone", None));
    }

    #[test]
    fn an_unfinished_item_whose_shard_is_no_longer_described_is_a_gap() {
        let tree = lineage();
        let mut items = finished(&["root"]);
        items.push(item("old", false, Some("42")));
        let gap = tree.plan(&items, &roots(&["root"])).unwrap_err();
        assert_eq!(
            (gap.shard_id.as_str(), gap.checkpoint.as_deref()),
            ("old", Some("42"))
        );
        // Finished, it is simply done.
        items.pop();
        items.push(item("old", true, Some("42")));
        assert!(tree.plan(&items, &roots(&["root"])).is_ok());
    }

    #[test]
    fn ready_shards_come_oldest_first_whatever_the_described_order() {
        let mut tree = ShardTree::default();
        tree.extend(&[
            shard("late", None, 500, None),
            shard("early", None, 100, None),
        ]);
        assert_eq!(ready(&tree, &[]), ["early", "late"]);
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
