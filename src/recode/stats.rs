//! What a recode counts, and what storing an item costs.
//!
//! Every item scanned ends in exactly one [`Outcome`] and contributes its
//! [`ItemStats`] (its [`Layout`] before and after, and the write units of
//! its rewrite) to [`Counts`] once. [`Counts`] is the one list of counters:
//! a scan segment sums its pages into it, the checkpoint stores it, and a
//! [`TableReport`](super::TableReport) (and the report's total) sums it
//! with [`Counts::add`]. Sizes and units follow DynamoDB's billing rules
//! ([`item_size`], [`write_units`], [`read_units`]).

use serde::{Deserialize, Serialize};

use super::TableKind;
use crate::item::Item;
use crate::size::{item_size, read_units, write_units, MAX_ITEM_SIZE};

/// The counters of a recode of one table (or of several, summed).
///
/// A [`TableReport`](super::TableReport) holds them (flattened into its
/// JSON), and so does each scan segment's checkpoint. Byte counts are
/// DynamoDB item sizes of whole items, a snapshot's chunk items included,
/// so `bytes_before` is what a scan measures before and `bytes_after` what
/// it measures after.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Items scanned (events, snapshots, views; chunk items count with
    /// their snapshot).
    pub items_scanned: u64,
    /// Items rewritten (or that would be).
    pub items_recoded: u64,
    /// Items left as they are: already in the target format, not shrunk by
    /// it, or too large for it.
    pub items_skipped: u64,
    /// Of the items skipped, those stored plain because their payloads are
    /// under the target's compression threshold
    /// ([`DEFAULT_MIN_COMPRESS_SIZE`](crate::codec::DEFAULT_MIN_COMPRESS_SIZE),
    /// 1 KB): compression leaves them as they are.
    pub items_under_threshold: u64,
    /// Of the items skipped, those the target would store no smaller
    /// (compressing them does not pay, or the target's format is larger).
    pub items_not_smaller: u64,
    /// Of the items skipped, those not in the target's format that it would
    /// not shrink (moving from compressed payloads back to plain JSON, for
    /// example): [`RecodeOptions::with_allow_growth`](super::RecodeOptions::with_allow_growth)
    /// moves them.
    pub items_other_format: u64,
    /// Items left as they are because a concurrent writer kept changing
    /// them (the writer won), or deleted them.
    pub conflicts_skipped: u64,
    /// Items whose payload could not be decoded (corrupt, or in a format
    /// whose feature is off); left as they are.
    pub items_unreadable: u64,
    /// Items that could not be shown to convert exactly to the target (or,
    /// for [`Recoder::to_upstream`](super::Recoder::to_upstream), to fit
    /// upstream's layout); left as they are. Their keys are in
    /// [`TableReport::not_convertible_keys`](super::TableReport::not_convertible_keys).
    pub items_not_convertible: u64,
    /// Stored bytes before.
    pub bytes_before: u64,
    /// Stored bytes after.
    pub bytes_after: u64,
    /// Write units to write every item once the way recode writes it:
    /// events and views by a conditional `PutItem` (1 WCU per KB, as the
    /// store commits a lone event), snapshots in a transaction (2 WCU per
    /// KB, chunks included), before.
    #[serde(alias = "wcu_before")]
    pub wcu_per_rewrite_before: u64,
    /// The same, after.
    #[serde(alias = "wcu_after")]
    pub wcu_per_rewrite_after: u64,
    /// Read units to load every item once with strongly consistent reads
    /// as the store reads it (snapshots and views item by item, chunks
    /// included; events by `Query`, billed on the summed size: a table's
    /// report computes that from `bytes_before`), before.
    #[serde(alias = "rcu_before")]
    pub rcu_per_load_before: u64,
    /// The same, after.
    #[serde(alias = "rcu_after")]
    pub rcu_per_load_after: u64,
    /// Snapshots stored in chunks, before.
    pub chunked_before: u64,
    /// Snapshots stored in chunks, after.
    pub chunked_after: u64,
    /// Chunk items, before.
    pub chunk_items_before: u64,
    /// Chunk items, after.
    pub chunk_items_after: u64,
    /// Snapshots over 400 KB that now fit in one item.
    pub newly_fit: u64,
    /// Write units the rewrite itself costs (conditional puts and
    /// transactions, billed on the larger of the old and new item).
    pub recode_wcu: u64,
}

impl Counts {
    /// Adds `other`, counter by counter.
    pub fn add(&mut self, other: &Counts) {
        self.items_scanned += other.items_scanned;
        self.items_recoded += other.items_recoded;
        self.items_skipped += other.items_skipped;
        self.items_under_threshold += other.items_under_threshold;
        self.items_not_smaller += other.items_not_smaller;
        self.items_other_format += other.items_other_format;
        self.conflicts_skipped += other.conflicts_skipped;
        self.items_unreadable += other.items_unreadable;
        self.items_not_convertible += other.items_not_convertible;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
        self.wcu_per_rewrite_before += other.wcu_per_rewrite_before;
        self.wcu_per_rewrite_after += other.wcu_per_rewrite_after;
        self.rcu_per_load_before += other.rcu_per_load_before;
        self.rcu_per_load_after += other.rcu_per_load_after;
        self.chunked_before += other.chunked_before;
        self.chunked_after += other.chunked_after;
        self.chunk_items_before += other.chunk_items_before;
        self.chunk_items_after += other.chunk_items_after;
        self.newly_fit += other.newly_fit;
        self.recode_wcu += other.recode_wcu;
    }

    /// The sum of `counts`.
    pub(super) fn sum<'a>(counts: impl IntoIterator<Item = &'a Counts>) -> Counts {
        let mut total = Counts::default();
        for counts in counts {
            total.add(counts);
        }
        total
    }

    /// Items left as they are, for whatever reason.
    pub(super) fn items_left(&self) -> u64 {
        self.items_skipped
            + self.conflicts_skipped
            + self.items_unreadable
            + self.items_not_convertible
    }

    /// Counts one item.
    pub(super) fn add_item(&mut self, item: &ItemStats) {
        self.items_scanned += 1;
        match item.outcome {
            Outcome::Recoded => self.items_recoded += 1,
            Outcome::Skipped => self.items_skipped += 1,
            Outcome::UnderThreshold => {
                self.items_skipped += 1;
                self.items_under_threshold += 1;
            }
            Outcome::NotSmaller => {
                self.items_skipped += 1;
                self.items_not_smaller += 1;
            }
            Outcome::OtherFormat => {
                self.items_skipped += 1;
                self.items_other_format += 1;
            }
            Outcome::Conflict => self.conflicts_skipped += 1,
            Outcome::Unreadable => self.items_unreadable += 1,
            Outcome::NotConvertible => self.items_not_convertible += 1,
        }
        let (before, after) = (&item.before, &item.after);
        self.bytes_before += before.bytes;
        self.bytes_after += after.bytes;
        self.wcu_per_rewrite_before += before.wcu;
        self.wcu_per_rewrite_after += after.wcu;
        self.rcu_per_load_before += before.rcu;
        self.rcu_per_load_after += after.rcu;
        self.chunked_before += u64::from(before.chunked);
        self.chunked_after += u64::from(after.chunked);
        self.chunk_items_before += before.chunk_items;
        self.chunk_items_after += after.chunk_items;
        self.newly_fit += u64::from(before.chunked && !after.chunked);
        self.recode_wcu += item.recode_wcu;
    }
}

/// How one item is stored, and what that costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Layout {
    pub bytes: u64,
    pub wcu: u64,
    pub rcu: u64,
    pub chunked: bool,
    pub chunk_items: u64,
}

impl Layout {
    /// An item of `kind` of `size` bytes, with chunk items of `chunks` bytes.
    pub fn of(kind: TableKind, size: usize, chunks: &[usize]) -> Self {
        let sizes = || std::iter::once(size).chain(chunks.iter().copied());
        let (wcu, rcu) = match kind {
            // Recode rewrites an event with a conditional `PutItem`, not a
            // transaction (`rewrite::one_item`): 1 WCU per KB.
            TableKind::Events => (write_units(size, false), 0),
            TableKind::Snapshots => (
                sizes().map(|s| write_units(s, true)).sum(),
                sizes().map(|s| read_units(s, false)).sum(),
            ),
            TableKind::Views => (write_units(size, false), read_units(size, false)),
        };
        Layout {
            bytes: sizes().map(u64_of).sum(),
            wcu,
            rcu,
            chunked: !chunks.is_empty(),
            chunk_items: u64_of(chunks.len()),
        }
    }
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Rewritten (or, in a dry run, it would be).
    Recoded,
    /// Left as it is: already stored as the target stores it, or too large
    /// for the target.
    Skipped,
    /// Left as it is: under the target's compression threshold.
    UnderThreshold,
    /// Left as it is: the target would not store it smaller.
    NotSmaller,
    /// Left as it is: not in the target's format, but the target would not
    /// shrink it (and growth is not allowed).
    OtherFormat,
    /// Left as it is: a concurrent writer kept changing it, or deleted it.
    Conflict,
    /// Left as it is: its payload cannot be decoded.
    Unreadable,
    /// Left as it is: it cannot be shown to convert exactly.
    NotConvertible,
}

/// What happened to one item.
#[derive(Debug, Clone, Copy)]
pub(super) struct ItemStats {
    pub before: Layout,
    pub after: Layout,
    pub outcome: Outcome,
    pub recode_wcu: u64,
}

impl ItemStats {
    /// A rewrite of a one-item record (an event or a view) into `new_item`,
    /// or a skip when the result would not fit in one item.
    pub fn single_item(
        kind: TableKind,
        key: &str,
        before: Layout,
        before_size: usize,
        new_item: &Item,
    ) -> Self {
        let after_size = item_size(new_item);
        if after_size > MAX_ITEM_SIZE {
            tracing::warn!(%key, size = after_size, "recoded item would exceed 400 KB; left as it is");
            return ItemStats::unchanged(before, Outcome::Skipped);
        }
        ItemStats {
            before,
            after: Layout::of(kind, after_size, &[]),
            outcome: Outcome::Recoded,
            recode_wcu: write_units(before_size.max(after_size), false),
        }
    }

    /// An item left as it is, stored as `layout`.
    pub fn unchanged(layout: Layout, outcome: Outcome) -> Self {
        ItemStats {
            before: layout,
            after: layout,
            outcome,
            recode_wcu: 0,
        }
    }
}

/// Write units of a snapshot rewrite transaction: every put and delete is
/// billed on the larger of the old and new item, doubled.
pub(super) fn snapshot_recode_wcu(
    old_head: usize,
    old_chunks: &[usize],
    new_head: usize,
    new_chunks: &[usize],
) -> u64 {
    let mut units = write_units(old_head.max(new_head), true);
    for index in 0..old_chunks.len().max(new_chunks.len()) {
        let old = old_chunks.get(index).copied().unwrap_or(0);
        let new = new_chunks.get(index).copied().unwrap_or(0);
        units += write_units(old.max(new), true);
    }
    units
}

/// `n` as a `u64` (saturating).
pub(super) fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `n` as a `usize` (saturating).
pub(super) fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `n` as a `usize` (saturating).
pub(super) fn usize_of_u32(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_billing_rules() {
        let single = Layout::of(TableKind::Snapshots, 5_000, &[]);
        assert_eq!(
            (single.bytes, single.wcu, single.rcu, single.chunked),
            (5_000, 10, 2, false)
        );
        let chunked = Layout::of(TableKind::Snapshots, 200, &[409_600, 1_000]);
        assert_eq!(chunked.bytes, 410_800);
        assert_eq!(chunked.wcu, 2 + 800 + 2);
        assert_eq!(chunked.rcu, 1 + 100 + 1);
        assert_eq!((chunked.chunked, chunked.chunk_items), (true, 2));
        // An event is rewritten by a conditional PutItem: 2 WCU for
        // 1,500 B, not the 4 of a transaction.
        let event = Layout::of(TableKind::Events, 1_500, &[]);
        assert_eq!((event.wcu, event.rcu), (2, 0));
        let view = Layout::of(TableKind::Views, 1_500, &[]);
        assert_eq!((view.wcu, view.rcu), (2, 1));

        let mut counts = Counts::default();
        counts.add_item(&ItemStats {
            before: chunked,
            after: single,
            outcome: Outcome::Recoded,
            recode_wcu: snapshot_recode_wcu(200, &[409_600, 1_000], 5_000, &[]),
        });
        counts.add_item(&ItemStats::unchanged(single, Outcome::Conflict));
        counts.add_item(&ItemStats::unchanged(single, Outcome::OtherFormat));
        assert_eq!(counts.items_scanned, 3);
        assert_eq!((counts.items_recoded, counts.conflicts_skipped), (1, 1));
        assert_eq!((counts.items_skipped, counts.items_other_format), (1, 1));
        assert_eq!(
            (
                counts.newly_fit,
                counts.chunked_before,
                counts.chunked_after
            ),
            (1, 1, 0)
        );
        assert_eq!(counts.recode_wcu, 10 + 800 + 2);
        assert_eq!(counts.bytes_after, 15_000);
        assert_eq!(counts.items_left(), 2);
        let twice = Counts::sum([&counts, &counts]);
        assert_eq!(twice.items_scanned, 6);
        assert_eq!(twice.items_other_format, 2);
        assert_eq!(
            twice.wcu_per_rewrite_before,
            2 * counts.wcu_per_rewrite_before
        );
    }

    #[test]
    fn counts_read_the_field_names_of_checkpoint_version_1() {
        let old = r#"{"items_scanned": 3, "wcu_before": 4, "wcu_after": 2, "rcu_before": 5, "rcu_after": 1}"#;
        let counts: Counts = serde_json::from_str(old).unwrap_or_default();
        assert_eq!(counts.items_scanned, 3);
        assert_eq!(
            (
                counts.wcu_per_rewrite_before,
                counts.wcu_per_rewrite_after,
                counts.rcu_per_load_before,
                counts.rcu_per_load_after
            ),
            (4, 2, 5, 1)
        );
    }
}
