//! Parallel scans: one `Scan` split into `TotalSegments` segments, each read
//! by its own task, their pages merged into one sequence.
//!
//! **Invariant:** the pages of each segment arrive whole and in the order
//! that segment's paginator returned them; pages of different segments
//! interleave in any order. The first error (from any segment) is returned
//! once and ends the scan: the other segments are stopped and nothing
//! follows it. Memory stays bounded: at most as many pages as there are
//! segments wait in the merge, and each segment reads at most one more.
//!
//! # Why the merge keeps per-aggregate order
//!
//! DynamoDB assigns every item to a segment by its partition key, so all
//! items of one partition key (one aggregate: `AggregateTypeAndId`) are in
//! one segment, and a segment returns the items of one partition key in
//! sort-key (`AggregateIdSequence`) order, as a single-segment scan does.
//! dynoxide does the same: a segment is a range of hash buckets of the
//! partition key, read in `(hash, partition key, sort key)` order.
//!
//! Each segment has exactly one reader task, which sends its pages in the
//! order it reads them into one FIFO channel, and the merge forwards what
//! it receives in the order received: so the pages of one segment reach the
//! consumer in that segment's order, each page whole. Take the items of one
//! aggregate in the merged sequence: they all come from its one segment, so
//! their relative order is their order in that segment, which is sort-key
//! order. Items of other segments may sit between them, but none of its
//! own items can be reordered, and since every page of every segment is
//! forwarded exactly once (until the first error ends the scan), none is
//! lost or duplicated.

use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::Client;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Page, Pages};
use crate::error::{Error, Result};
use crate::item::{s, AGGREGATE_TYPE_AND_ID};

/// DynamoDB's largest `TotalSegments`.
pub(crate) const MAX_SCAN_SEGMENTS: u32 = 1_000_000;

/// A page and the segment it came from.
#[derive(Debug)]
pub(crate) struct SegmentPage {
    /// The segment, `0..segments`.
    pub segment: u32,
    /// The page: its items in the segment's order, and what it cost.
    pub page: Page,
}

/// The merged pages of a parallel scan; see [`parallel_scan`]. Dropping it
/// stops the segments still being read.
#[derive(Debug)]
pub(crate) struct ParallelScan {
    pages: mpsc::Receiver<(u32, Result<Page>)>,
    readers: JoinSet<()>,
    segments: u32,
    table: String,
    ended: bool,
}

/// A consistent `Scan` of `table` keeping only the items whose partition
/// key (`AggregateTypeAndId`) starts with `prefix`: one aggregate type's
/// events (`"{type}:"`), or the dictionary items.
pub(crate) fn key_prefix_scan(
    client: &Client,
    table: &str,
    prefix: impl Into<String>,
) -> ScanFluentBuilder {
    client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .filter_expression("begins_with(#key, :prefix)")
        .expression_attribute_names("#key", AGGREGATE_TYPE_AND_ID)
        .expression_attribute_values(":prefix", s(prefix))
}

/// Reads `scan` as `segments` concurrent segments (clamped to 1 to
/// [`MAX_SCAN_SEGMENTS`]), each following `LastEvaluatedKey` to its end in
/// pages of at most `page_size` items (the scan's own limit without one).
///
/// Contract, for callers such as replay and projection rebuilds:
/// - [`ParallelScan::next`] yields every page of every segment exactly once,
///   each tagged with its segment. The pages of one segment come in that
///   segment's order; segments interleave freely. As all items of one
///   partition key are in one segment, in sort-key order, the items of one
///   partition key come in sort-key order (the argument is in this module's
///   docs).
/// - The first error of any segment is yielded once, then `None`: the other
///   segments are stopped, and a caller must treat everything it has not
///   received as unread.
/// - With one segment the requests carry no `Segment`/`TotalSegments`: it is
///   the plain scan.
/// - The segments are read by tasks on the current Tokio runtime, which must
///   exist; ahead of the caller, at most `segments` pages wait, and each
///   segment reads at most one more.
pub(crate) fn parallel_scan(
    scan: ScanFluentBuilder,
    segments: u32,
    page_size: Option<i32>,
) -> ParallelScan {
    let segments = segments.clamp(1, MAX_SCAN_SEGMENTS);
    let table = scan.get_table_name().clone().unwrap_or_default();
    // As many waiting pages as segments: a reader blocks while it is full.
    let capacity = usize::try_from(segments).unwrap_or(usize::MAX);
    let (sender, pages) = mpsc::channel(capacity);
    let mut readers = JoinSet::new();
    for segment in 0..segments {
        let request = if segments == 1 {
            scan.clone()
        } else {
            // Both fit in an i32: at most 1,000,000.
            let total = i32::try_from(segments).unwrap_or(i32::MAX);
            let index = i32::try_from(segment).unwrap_or(i32::MAX);
            scan.clone().segment(index).total_segments(total)
        };
        readers.spawn(read_segment(
            Pages::scan(request, page_size),
            segment,
            sender.clone(),
        ));
    }
    ParallelScan {
        pages,
        readers,
        segments,
        table,
        ended: false,
    }
}

/// Sends every page of one segment, in order; stops after an error or when
/// the merge is gone.
async fn read_segment(mut pages: Pages, segment: u32, sender: mpsc::Sender<(u32, Result<Page>)>) {
    while let Some(page) = pages.next().await {
        let failed = page.is_err();
        if sender.send((segment, page)).await.is_err() || failed {
            return;
        }
    }
}

impl ParallelScan {
    /// The next page of any segment, `None` once every segment is read or
    /// after the first error.
    pub(crate) async fn next(&mut self) -> Option<Result<SegmentPage>> {
        if self.ended {
            return None;
        }
        match self.pages.recv().await {
            Some((segment, Ok(page))) => Some(Ok(SegmentPage { segment, page })),
            Some((segment, Err(err))) => {
                self.ended = true;
                self.readers.abort_all();
                tracing::debug!(
                    table = %self.table,
                    segment,
                    segments = self.segments,
                    error = %err,
                    "scan segment failed; the other segments are stopped"
                );
                Some(Err(err))
            }
            None => {
                // Every reader has finished: a reader that panicked dropped
                // its sender without finishing its segment.
                self.ended = true;
                self.panicked().await.map(Err)
            }
        }
    }

    /// An error for the first reader that panicked, if any.
    async fn panicked(&mut self) -> Option<Error> {
        while let Some(joined) = self.readers.join_next().await {
            if let Err(err) = joined {
                return Some(Error::Dynamo {
                    operation: "Scan",
                    table: self.table.clone(),
                    message: format!(
                        "a reader of one of {} segments stopped before the end of its segment",
                        self.segments
                    )
                    .into(),
                    source: Box::new(err),
                });
            }
        }
        None
    }
}
