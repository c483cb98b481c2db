//! Recode: rewrite stored payloads with another codec, safely, after a
//! dry-run savings report.
//!
//! Turning on a new [`Codec`] only affects new writes. A [`Recoder`] scans an
//! existing events, snapshots or view table (written by upstream
//! `dynamo-es` or by this crate, in any format), re-encodes every payload
//! attribute with the target codec through [`Codec::reencode`], and writes
//! the item back **only if it is unchanged since it was read**.
//!
//! Re-encoding is lossless by construction: a change of compression only
//! works on the serialized bytes and never re-serializes them, and a change
//! of format (JSON and MessagePack) goes through the exact data model and is
//! checked, per item, to read back as exactly the same value, integer digit
//! for integer digit and float bit for float bit. An item that cannot be
//! shown to be the same value in the target (an integer beyond 128 bits, a
//! legacy compact MessagePack payload moved to JSON) is never written: it is
//! counted as *not convertible*, and its key is listed in the report.
//!
//! Items are written back conditionally:
//!
//! * events: a conditional `PutItem` on the exact old `Payload` and
//!   `Metadata`;
//! * snapshots: one transaction (head, chunks, deletion of stale chunks)
//!   whose head is conditioned on the `CurrentSnapshot` and
//!   `CurrentSequence` read and on the exact old `Payload` (or, for a
//!   chunked snapshot, its `PayloadHash` and `PayloadChunks`).
//!   `CurrentSnapshot` and `CurrentSequence` are kept, so the application's
//!   optimistic locking is unaffected;
//! * views: a conditional `PutItem` on `ViewVersion` and the exact old
//!   `Payload`.
//!
//! A concurrent writer therefore always wins: the recoder re-reads the item
//! and tries again (a few times, then leaves it and counts it), and nothing
//! is ever overwritten with stale data. Nothing but payload encodings
//! changes; every other attribute is written back as it was.
//!
//! Payloads the target would not shrink (including those already stored
//! exactly as the target stores them) are left alone, unless
//! [`RecodeOptions::with_allow_growth`] asks to move them to the target
//! format anyway. To return to upstream `dynamo-es`, use
//! [`Recoder::to_upstream`]: it writes only what upstream 0.5.0 reads
//! (plain JSON, every snapshot in one item), and reports as not convertible
//! every item it cannot make upstream-readable (a snapshot too large for
//! one item as plain JSON), leaving it as it is.
//!
//! A dry run ([`RecodeOptions::with_dry_run`] or [`Recoder::report`])
//! computes the same [`Report`] and writes nothing: items and bytes before
//! and after, the size ratio, write units per rewrite and read units per
//! load under DynamoDB's billing rules, and how many snapshots would stop
//! needing chunks. The report prints as an aligned table and serialises to
//! JSON.
//!
//! For large tables, scans run in parallel segments, a shared token bucket
//! caps the items processed per second, and a checkpoint file (written
//! atomically after every page) lets an interrupted run resume where it
//! stopped, with the same final report as an uninterrupted run.
//!
//! ```no_run
//! # async fn demo(client: aws_sdk_dynamodb::Client) -> dynamo_es::Result<()> {
//! use dynamo_es::recode::{RecodeOptions, Recoder, Table};
//! use dynamo_es::Codec;
//!
//! let tables = [Table::snapshots("Snapshots"), Table::events("Events")];
//! let recoder = Recoder::new(client, Codec::json()).with_options(
//!     RecodeOptions::default()
//!         .with_segments(4)
//!         .with_items_per_second(500)
//!         .with_checkpoint("recode-checkpoint.json"),
//! );
//! println!("{}", recoder.report(&tables).await?); // what it would save
//! let done = recoder.run(&tables).await?; // do it
//! assert!(done.complete);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::Instrument;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::event_repository::{check_limits, request_token};
use crate::item::{
    aggregate_key, b, describe_key, get_b, get_n, get_s, Item, AGGREGATE_ID, AGGREGATE_ID_SEQUENCE,
    AGGREGATE_TYPE, AGGREGATE_TYPE_AND_ID, CHUNK_OF, CURRENT_SEQUENCE, CURRENT_SNAPSHOT, METADATA,
    PAYLOAD, PAYLOAD_CHUNKS, PAYLOAD_HASH, PAYLOAD_SIZE, VIEW_ID, VIEW_VERSION,
};
use crate::size::{item_size, read_units, write_units, MAX_ITEM_SIZE};
use crate::snapshot::{self, SnapshotSpec};

/// The version of the checkpoint file format.
const CHECKPOINT_VERSION: u32 = 1;
/// How many keys of not convertible items each scan segment lists.
const MAX_LISTED_KEYS: usize = 100;
/// The default number of items per scan page.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The default number of times an item is re-read after a concurrent write
/// before it is left as it is.
pub const DEFAULT_CONFLICT_RETRIES: u32 = 3;

/// Attributes of a snapshot head that its layout owns; any other attribute
/// is carried over unchanged.
const SNAPSHOT_LAYOUT: [&str; 9] = [
    AGGREGATE_TYPE_AND_ID,
    AGGREGATE_TYPE,
    AGGREGATE_ID,
    CURRENT_SEQUENCE,
    CURRENT_SNAPSHOT,
    PAYLOAD,
    PAYLOAD_CHUNKS,
    PAYLOAD_SIZE,
    PAYLOAD_HASH,
];

/// What a table holds, which decides how its items are read and rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// An events table (`AggregateTypeAndId`, `AggregateIdSequence`;
    /// `Payload` and `Metadata`).
    Events,
    /// A snapshots table (`AggregateTypeAndId`; single items and chunked
    /// snapshots).
    Snapshots,
    /// A view table (`ViewId`; `ViewVersion` and `Payload`).
    Views,
}

impl TableKind {
    /// `events`, `snapshots` or `views`.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Events => "events",
            TableKind::Snapshots => "snapshots",
            TableKind::Views => "views",
        }
    }

    /// The key attributes of an item of this kind of table.
    fn key_attributes(self) -> &'static [&'static str] {
        match self {
            TableKind::Events => &[AGGREGATE_TYPE_AND_ID, AGGREGATE_ID_SEQUENCE],
            TableKind::Snapshots => &[AGGREGATE_TYPE_AND_ID],
            TableKind::Views => &[VIEW_ID],
        }
    }
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A table to recode: its name and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    /// The table name (or ARN).
    pub name: String,
    /// What it holds.
    pub kind: TableKind,
}

impl Table {
    /// A table of `kind`.
    pub fn new(name: impl Into<String>, kind: TableKind) -> Self {
        Table {
            name: name.into(),
            kind,
        }
    }

    /// An events table.
    pub fn events(name: impl Into<String>) -> Self {
        Table::new(name, TableKind::Events)
    }

    /// A snapshots table.
    pub fn snapshots(name: impl Into<String>) -> Self {
        Table::new(name, TableKind::Snapshots)
    }

    /// A view table.
    pub fn views(name: impl Into<String>) -> Self {
        Table::new(name, TableKind::Views)
    }
}

/// Asks a running recode to stop at the next page boundary, leaving its
/// checkpoint ready to resume. Clones share the same flag.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// A handle that has not been stopped.
    pub fn new() -> Self {
        StopHandle::default()
    }

    /// Asks every run holding this handle to stop after its current pages.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where a run of one table stands, passed to the progress callback after
/// every page (totals so far, including pages done before a resume).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The table.
    pub table: String,
    /// What it holds.
    pub kind: TableKind,
    /// Items scanned (snapshot chunk items are counted with their head).
    pub items_scanned: u64,
    /// Items recoded (or that would be, in a dry run).
    pub items_recoded: u64,
    /// Items left as they are: already small, too large, conflicting or
    /// unreadable.
    pub items_skipped: u64,
    /// Stored bytes of the items scanned, before.
    pub bytes_before: u64,
    /// Their stored bytes after the recode.
    pub bytes_after: u64,
    /// True on the last call for a table that was finished.
    pub finished: bool,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a [`Recoder`] runs. Built with consuming `with_*` methods from
/// [`RecodeOptions::default()`]: one segment, no rate limit, no checkpoint,
/// pages of [`DEFAULT_PAGE_SIZE`] items, shrink-only, writing.
#[derive(Clone)]
pub struct RecodeOptions {
    segments: u32,
    items_per_second: Option<u32>,
    checkpoint: Option<PathBuf>,
    dry_run: bool,
    page_size: u32,
    max_items: Option<u64>,
    allow_growth: bool,
    conflict_retries: u32,
    progress: Option<ProgressFn>,
    stop: StopHandle,
}

impl Default for RecodeOptions {
    fn default() -> Self {
        RecodeOptions {
            segments: 1,
            items_per_second: None,
            checkpoint: None,
            dry_run: false,
            page_size: DEFAULT_PAGE_SIZE,
            max_items: None,
            allow_growth: false,
            conflict_retries: DEFAULT_CONFLICT_RETRIES,
            progress: None,
            stop: StopHandle::new(),
        }
    }
}

impl fmt::Debug for RecodeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecodeOptions")
            .field("segments", &self.segments)
            .field("items_per_second", &self.items_per_second)
            .field("checkpoint", &self.checkpoint)
            .field("dry_run", &self.dry_run)
            .field("page_size", &self.page_size)
            .field("max_items", &self.max_items)
            .field("allow_growth", &self.allow_growth)
            .field("conflict_retries", &self.conflict_retries)
            .field("progress", &self.progress.is_some())
            .field("stop", &self.stop.is_stopped())
            .finish()
    }
}

impl RecodeOptions {
    /// Scans each table in `segments` parallel segments (DynamoDB's
    /// `Segment`/`TotalSegments`), each its own task. Clamped to 1 to
    /// 1,000,000. A resumed run must use the number it started with.
    pub fn with_segments(self, segments: u32) -> Self {
        RecodeOptions {
            segments: segments.clamp(1, 1_000_000),
            ..self
        }
    }

    /// Processes at most `items` items per second over all segments (a
    /// shared token bucket), so production traffic keeps its capacity.
    /// `0` means no limit.
    pub fn with_items_per_second(self, items: u32) -> Self {
        RecodeOptions {
            items_per_second: (items > 0).then_some(items),
            ..self
        }
    }

    /// Records progress in `path` after every page (atomically: a
    /// temporary file, then a rename), and resumes from it if it exists.
    /// A finished checkpoint makes a rerun return its stored report without
    /// scanning; delete the file to start over.
    pub fn with_checkpoint(self, path: impl Into<PathBuf>) -> Self {
        RecodeOptions {
            checkpoint: Some(path.into()),
            ..self
        }
    }

    /// Computes the report and writes nothing.
    pub fn with_dry_run(self, dry_run: bool) -> Self {
        RecodeOptions { dry_run, ..self }
    }

    /// Reads `items` items per scan page (at least 1; default
    /// [`DEFAULT_PAGE_SIZE`]). The checkpoint is written after every page.
    pub fn with_page_size(self, items: u32) -> Self {
        RecodeOptions {
            page_size: items.max(1),
            ..self
        }
    }

    /// Stops after about `items` items in this run (at the end of the page
    /// that reaches it), leaving the checkpoint to resume from.
    pub fn with_max_items(self, items: u64) -> Self {
        RecodeOptions {
            max_items: Some(items),
            ..self
        }
    }

    /// Also rewrites payloads that are not in the target's format when that
    /// makes them larger (for example to move back to plain JSON). By
    /// default only payloads the target shrinks are rewritten.
    pub fn with_allow_growth(self, allow: bool) -> Self {
        RecodeOptions {
            allow_growth: allow,
            ..self
        }
    }

    /// Re-reads an item that changed under the recoder up to `retries`
    /// times before leaving it as it is (default
    /// [`DEFAULT_CONFLICT_RETRIES`]).
    pub fn with_conflict_retries(self, retries: u32) -> Self {
        RecodeOptions {
            conflict_retries: retries,
            ..self
        }
    }

    /// Calls `progress` after every page of every segment.
    pub fn with_progress(self, progress: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        RecodeOptions {
            progress: Some(Arc::new(progress)),
            ..self
        }
    }

    /// Stops at the next page boundary once `stop` is stopped.
    pub fn with_stop(self, stop: StopHandle) -> Self {
        RecodeOptions { stop, ..self }
    }

    /// The number of scan segments.
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// The rate limit in items per second, if any.
    pub fn items_per_second(&self) -> Option<u32> {
        self.items_per_second
    }

    /// The checkpoint file, if any.
    pub fn checkpoint(&self) -> Option<&Path> {
        self.checkpoint.as_deref()
    }

    /// True for a dry run.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Items per scan page.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The item budget of one run, if any.
    pub fn max_items(&self) -> Option<u64> {
        self.max_items
    }

    /// True if payloads may grow to reach the target format.
    pub fn allow_growth(&self) -> bool {
        self.allow_growth
    }

    /// The stop handle this run watches.
    pub fn stop_handle(&self) -> &StopHandle {
        &self.stop
    }
}

/// What a recode did (or, in a dry run, would do) to one table.
///
/// Byte counts are DynamoDB item sizes ([`item_size`]) of whole items, a
/// snapshot's chunk items included, so `bytes_before` is what a scan
/// measures before and `bytes_after` what it measures after.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// What it holds.
    pub kind: TableKind,
    /// The target codec's name.
    pub codec: String,
    /// True if nothing was written.
    pub dry_run: bool,
    /// True if every segment was scanned to the end.
    pub complete: bool,
    /// Scan segments.
    pub segments: u32,
    /// Items scanned (events, snapshots, views; chunk items count with
    /// their snapshot).
    pub items_scanned: u64,
    /// Items rewritten (or that would be).
    pub items_recoded: u64,
    /// Items left as they are: already in the target format, not shrunk by
    /// it, or too large for it.
    pub items_skipped: u64,
    /// Items left as they are because a concurrent writer kept changing
    /// them (the writer won), or deleted them.
    pub conflicts_skipped: u64,
    /// Items whose payload could not be decoded (corrupt, or in a format
    /// whose feature is off); left as they are.
    pub items_unreadable: u64,
    /// Items that could not be shown to convert exactly to the target (or,
    /// for [`Recoder::to_upstream`], to fit upstream's layout); left as
    /// they are. Their keys are in `not_convertible_keys`.
    #[serde(default)]
    pub items_not_convertible: u64,
    /// Keys of not convertible items (at most 100 per scan segment).
    #[serde(default)]
    pub not_convertible_keys: Vec<String>,
    /// Stored bytes before.
    pub bytes_before: u64,
    /// Stored bytes after.
    pub bytes_after: u64,
    /// `bytes_after / bytes_before` (1 for an empty table).
    pub ratio: f64,
    /// Write units to write every item once as the store writes it
    /// (events and snapshots in transactions, views by `PutItem`), before.
    pub wcu_per_rewrite_before: u64,
    /// The same, after.
    pub wcu_per_rewrite_after: u64,
    /// Read units to load every item once with strongly consistent reads
    /// as the store reads it (snapshots and views item by item, chunks
    /// included; events by `Query`, billed on the summed size), before.
    pub rcu_per_load_before: u64,
    /// The same, after.
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

impl TableReport {
    fn new(table: &Table, codec: &str, state: &TableState) -> Self {
        let mut c = Counters::default();
        for segment in &state.segments {
            c.add(&segment.counters);
        }
        let (rcu_before, rcu_after) = match table.kind {
            // A query bills the summed size of the page, not each item.
            TableKind::Events if c.items_scanned > 0 => (
                read_units(usize_of(c.bytes_before), false),
                read_units(usize_of(c.bytes_after), false),
            ),
            _ => (c.rcu_before, c.rcu_after),
        };
        TableReport {
            table: table.name.clone(),
            kind: table.kind,
            codec: codec.to_string(),
            dry_run: state.dry_run,
            complete: state.segments.iter().all(|s| s.done),
            segments: state.total_segments,
            items_scanned: c.items_scanned,
            items_recoded: c.items_recoded,
            items_skipped: c.items_skipped,
            conflicts_skipped: c.conflicts_skipped,
            items_unreadable: c.items_unreadable,
            items_not_convertible: c.items_not_convertible,
            not_convertible_keys: state
                .segments
                .iter()
                .flat_map(|s| s.not_convertible.iter().cloned())
                .collect(),
            bytes_before: c.bytes_before,
            bytes_after: c.bytes_after,
            ratio: ratio(c.bytes_after, c.bytes_before),
            wcu_per_rewrite_before: c.wcu_before,
            wcu_per_rewrite_after: c.wcu_after,
            rcu_per_load_before: rcu_before,
            rcu_per_load_after: rcu_after,
            chunked_before: c.chunked_before,
            chunked_after: c.chunked_after,
            chunk_items_before: c.chunk_items_before,
            chunk_items_after: c.chunk_items_after,
            newly_fit: c.newly_fit,
            recode_wcu: c.recode_wcu,
        }
    }
}

/// The reports of every table of one run.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// One report per table, in the order run (tables after an
    /// interruption are missing).
    pub tables: Vec<TableReport>,
    /// True if every table asked for was finished.
    pub complete: bool,
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Items that could not be decoded, over all tables.
    pub fn items_unreadable(&self) -> u64 {
        self.tables.iter().map(|t| t.items_unreadable).sum()
    }

    /// Items that could not be converted exactly, over all tables.
    pub fn items_not_convertible(&self) -> u64 {
        self.tables.iter().map(|t| t.items_not_convertible).sum()
    }
}

/// Per-segment counters, also stored in the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Counters {
    items_scanned: u64,
    items_recoded: u64,
    items_skipped: u64,
    conflicts_skipped: u64,
    items_unreadable: u64,
    items_not_convertible: u64,
    bytes_before: u64,
    bytes_after: u64,
    wcu_before: u64,
    wcu_after: u64,
    rcu_before: u64,
    rcu_after: u64,
    chunked_before: u64,
    chunked_after: u64,
    chunk_items_before: u64,
    chunk_items_after: u64,
    newly_fit: u64,
    recode_wcu: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.items_scanned += o.items_scanned;
        self.items_recoded += o.items_recoded;
        self.items_skipped += o.items_skipped;
        self.conflicts_skipped += o.conflicts_skipped;
        self.items_unreadable += o.items_unreadable;
        self.items_not_convertible += o.items_not_convertible;
        self.bytes_before += o.bytes_before;
        self.bytes_after += o.bytes_after;
        self.wcu_before += o.wcu_before;
        self.wcu_after += o.wcu_after;
        self.rcu_before += o.rcu_before;
        self.rcu_after += o.rcu_after;
        self.chunked_before += o.chunked_before;
        self.chunked_after += o.chunked_after;
        self.chunk_items_before += o.chunk_items_before;
        self.chunk_items_after += o.chunk_items_after;
        self.newly_fit += o.newly_fit;
        self.recode_wcu += o.recode_wcu;
    }

    fn add_item(&mut self, item: &ItemStats) {
        self.items_scanned += 1;
        match item.outcome {
            Outcome::Recoded => self.items_recoded += 1,
            Outcome::Skipped => self.items_skipped += 1,
            Outcome::Conflict => self.conflicts_skipped += 1,
            Outcome::Unreadable => self.items_unreadable += 1,
            Outcome::NotConvertible => self.items_not_convertible += 1,
        }
        let (before, after) = (&item.before, &item.after);
        self.bytes_before += before.bytes;
        self.bytes_after += after.bytes;
        self.wcu_before += before.wcu;
        self.wcu_after += after.wcu;
        self.rcu_before += before.rcu;
        self.rcu_after += after.rcu;
        self.chunked_before += u64::from(before.chunked);
        self.chunked_after += u64::from(after.chunked);
        self.chunk_items_before += before.chunk_items;
        self.chunk_items_after += after.chunk_items;
        self.newly_fit += u64::from(before.chunked && !after.chunked);
        self.recode_wcu += item.recode_wcu;
    }

    fn skipped(&self) -> u64 {
        self.items_skipped
            + self.conflicts_skipped
            + self.items_unreadable
            + self.items_not_convertible
    }
}

/// How one item is stored, and what that costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Layout {
    bytes: u64,
    wcu: u64,
    rcu: u64,
    chunked: bool,
    chunk_items: u64,
}

impl Layout {
    /// An item of `kind` of `size` bytes, with chunk items of `chunks` bytes.
    fn of(kind: TableKind, size: usize, chunks: &[usize]) -> Self {
        let sizes = || std::iter::once(size).chain(chunks.iter().copied());
        let (wcu, rcu) = match kind {
            TableKind::Events => (write_units(size, true), 0),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Recoded,
    Skipped,
    Conflict,
    Unreadable,
    NotConvertible,
}

/// What happened to one item.
#[derive(Debug, Clone, Copy)]
struct ItemStats {
    before: Layout,
    after: Layout,
    outcome: Outcome,
    recode_wcu: u64,
}

impl ItemStats {
    /// A rewrite of a one-item record (an event or a view) into `new_item`,
    /// or a skip when the result would not fit in one item.
    fn single_item(
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

    fn unchanged(layout: Layout, outcome: Outcome) -> Self {
        ItemStats {
            before: layout,
            after: layout,
            outcome,
            recode_wcu: 0,
        }
    }
}

/// One attempt at an item.
enum Attempt {
    Done(ItemStats),
    /// The item changed since it was read (or is changing): read it again.
    Changed(Layout),
}

/// Recodes tables to a target [`Codec`]. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Recoder {
    client: Client,
    target: Codec,
    upstream: bool,
    options: RecodeOptions,
}

impl Recoder {
    /// A recoder writing with `target`, with [`RecodeOptions::default()`].
    pub fn new(client: Client, target: Codec) -> Self {
        Recoder {
            client,
            target,
            upstream: false,
            options: RecodeOptions::default(),
        }
    }

    /// A recoder that writes only what upstream `dynamo-es` 0.5.0 reads:
    /// plain JSON payloads, every snapshot in one item. Every payload not
    /// already plain JSON is moved to it, larger or not; a snapshot that
    /// does not fit in one item as plain JSON, and a payload that cannot be
    /// converted exactly, are left as they are and counted as not
    /// convertible (the table is then not fully upstream-readable).
    pub fn to_upstream(client: Client) -> Self {
        Recoder {
            upstream: true,
            ..Recoder::new(client, Codec::json())
        }
    }

    /// The target's name: the codec's, or `upstream`.
    pub fn target_name(&self) -> String {
        if self.upstream {
            "upstream".to_string()
        } else {
            self.target.name()
        }
    }

    /// Runs with `options`.
    pub fn with_options(self, options: RecodeOptions) -> Self {
        Recoder { options, ..self }
    }

    /// The target codec.
    pub fn target(&self) -> &Codec {
        &self.target
    }

    /// The options.
    pub fn options(&self) -> &RecodeOptions {
        &self.options
    }

    /// A dry run over `tables`: the report, with nothing written.
    pub async fn report(&self, tables: &[Table]) -> Result<Report> {
        let dry = Recoder {
            options: self.options.clone().with_dry_run(true),
            ..self.clone()
        };
        dry.run(tables).await
    }

    /// Recodes `tables` one after the other (or only reports, in a dry
    /// run). Stops early, with `complete: false`, when the stop handle is
    /// stopped or the item budget is spent.
    pub async fn run(&self, tables: &[Table]) -> Result<Report> {
        let shared = Shared::new(&self.options)?;
        let mut report = Report {
            tables: Vec::new(),
            complete: true,
        };
        for table in tables {
            let table_report = self.run_with(table, &shared).await?;
            let complete = table_report.complete;
            report.tables.push(table_report);
            if !complete {
                report.complete = false;
                break;
            }
        }
        Ok(report)
    }

    /// Recodes one table (or only reports, in a dry run).
    pub async fn run_table(&self, table: &Table) -> Result<TableReport> {
        let shared = Shared::new(&self.options)?;
        self.run_with(table, &shared).await
    }

    async fn run_with(&self, table: &Table, shared: &Arc<Shared>) -> Result<TableReport> {
        let codec = self.target_name();
        let wanted = TableState {
            kind: table.kind,
            codec: codec.clone(),
            dry_run: self.options.dry_run,
            allow_growth: self.options.allow_growth,
            total_segments: self.options.segments,
            segments: vec![SegmentState::default(); usize_of_u32(self.options.segments)],
        };
        let state = shared.checkpoint.start(&table.name, wanted)?;
        let mut totals = Counters::default();
        for segment in &state.segments {
            totals.add(&segment.counters);
        }
        let run = Arc::new(TableRun {
            client: self.client.clone(),
            target: self.target.clone(),
            upstream: self.upstream,
            table: table.clone(),
            options: self.options.clone(),
            total_segments: state.total_segments,
            shared: shared.clone(),
            totals: Mutex::new(totals),
            failed: AtomicBool::new(false),
        });
        let span = tracing::info_span!(
            "dynamo_es.recode",
            table = %table.name,
            kind = %table.kind,
            codec = %codec,
            dry_run = self.options.dry_run,
            segments = state.total_segments,
        );
        let mut tasks = tokio::task::JoinSet::new();
        for (index, segment) in state.segments.iter().enumerate() {
            if segment.done {
                continue;
            }
            let run = run.clone();
            let segment = segment.clone();
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            tasks.spawn(
                async move {
                    let result = run.segment(index, segment).await;
                    if result.is_err() {
                        run.failed.store(true, Ordering::SeqCst);
                    }
                    result
                }
                .instrument(span.clone()),
            );
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined.unwrap_or_else(|err| {
                run.failed.store(true, Ordering::SeqCst);
                Err(Error::Io(std::io::Error::other(format!(
                    "recode segment task failed: {err}"
                ))))
            });
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        let state = shared.checkpoint.state(&table.name)?;
        let report = TableReport::new(table, &codec, &state);
        run.progress(report.complete)?;
        Ok(report)
    }
}

/// State shared by the tables of one run.
struct Shared {
    checkpoint: Checkpointer,
    limiter: Option<RateLimiter>,
    scanned: AtomicU64,
}

impl Shared {
    fn new(options: &RecodeOptions) -> Result<Arc<Self>> {
        Ok(Arc::new(Shared {
            checkpoint: Checkpointer::open(options.checkpoint.as_deref())?,
            limiter: options.items_per_second.map(RateLimiter::new),
            scanned: AtomicU64::new(0),
        }))
    }
}

/// One table being recoded.
struct TableRun {
    client: Client,
    target: Codec,
    upstream: bool,
    table: Table,
    options: RecodeOptions,
    total_segments: u32,
    shared: Arc<Shared>,
    totals: Mutex<Counters>,
    failed: AtomicBool,
}

fn lock_error() -> Error {
    Error::Io(std::io::Error::other("recode state lock poisoned"))
}

impl TableRun {
    fn should_stop(&self) -> bool {
        self.options.stop.is_stopped()
            || self.failed.load(Ordering::SeqCst)
            || self
                .options
                .max_items
                .is_some_and(|max| self.shared.scanned.load(Ordering::SeqCst) >= max)
    }

    fn progress(&self, finished: bool) -> Result<()> {
        let Some(callback) = &self.options.progress else {
            return Ok(());
        };
        let totals = *self.totals.lock().map_err(|_| lock_error())?;
        callback(&Progress {
            table: self.table.name.clone(),
            kind: self.table.kind,
            items_scanned: totals.items_scanned,
            items_recoded: totals.items_recoded,
            items_skipped: totals.skipped(),
            bytes_before: totals.bytes_before,
            bytes_after: totals.bytes_after,
            finished,
        });
        Ok(())
    }

    fn page_limit(&self) -> i32 {
        let limit = match self.options.items_per_second {
            Some(rate) => self.options.page_size.min(rate),
            None => self.options.page_size,
        };
        i32::try_from(limit.max(1)).unwrap_or(i32::MAX)
    }

    /// Scans one segment to its end (or until asked to stop), recording
    /// every page in the checkpoint.
    async fn segment(&self, index: u32, mut state: SegmentState) -> Result<()> {
        let mut start = state.last_key.as_ref().map(key_from_checkpoint);
        while !state.done {
            if self.should_stop() {
                return Ok(());
            }
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table.name)
                .consistent_read(true)
                .limit(self.page_limit())
                .set_exclusive_start_key(start.clone());
            if self.total_segments > 1 {
                scan = scan
                    .segment(i32::try_from(index).unwrap_or(i32::MAX))
                    .total_segments(i32::try_from(self.total_segments).unwrap_or(i32::MAX));
            }
            if self.table.kind == TableKind::Snapshots {
                // Chunks are read with their head; don't ship them twice.
                scan = scan
                    .filter_expression("attribute_not_exists(#chunk_of)")
                    .expression_attribute_names("#chunk_of", CHUNK_OF);
            }
            let out = scan
                .send()
                .await
                .map_err(|err| Error::from_sdk("Scan", err))?;
            let mut page = Counters::default();
            for item in out.items.unwrap_or_default() {
                if self.table.kind == TableKind::Snapshots && snapshot::is_chunk(&item) {
                    continue;
                }
                if let Some(limiter) = &self.shared.limiter {
                    limiter.acquire().await;
                }
                let key = describe_key(&item);
                let stats = self.process(item).await?;
                if stats.outcome == Outcome::NotConvertible
                    && state.not_convertible.len() < MAX_LISTED_KEYS
                {
                    state.not_convertible.push(key);
                }
                page.add_item(&stats);
            }
            start = out.last_evaluated_key.filter(|key| !key.is_empty());
            state.done = start.is_none();
            state.last_key = match &start {
                Some(key) => Some(key_to_checkpoint(key)?),
                None => None,
            };
            state.counters.add(&page);
            self.shared
                .checkpoint
                .record(&self.table.name, index, &state)?;
            self.shared
                .scanned
                .fetch_add(page.items_scanned, Ordering::SeqCst);
            self.totals.lock().map_err(|_| lock_error())?.add(&page);
            self.progress(false)?;
        }
        Ok(())
    }

    /// Recodes one item, re-reading it while a concurrent writer changes it.
    async fn process(&self, mut item: Item) -> Result<ItemStats> {
        let mut attempts = 0u32;
        loop {
            let attempt = match self.table.kind {
                TableKind::Events => self.event(&item).await?,
                TableKind::Snapshots => self.snapshot(&item).await?,
                TableKind::Views => self.view(&item).await?,
            };
            let layout = match attempt {
                Attempt::Done(stats) => return Ok(stats),
                Attempt::Changed(layout) => layout,
            };
            attempts += 1;
            let key = describe_key(&item);
            if attempts > self.options.conflict_retries {
                tracing::warn!(%key, "item kept changing during recode; left as it is");
                return Ok(ItemStats::unchanged(layout, Outcome::Conflict));
            }
            tracing::debug!(%key, attempts, "item changed during recode; reading it again");
            match self.reread(&item).await? {
                Some(fresh) => item = fresh,
                // Deleted meanwhile: nothing left to recode or to count.
                None => return Ok(ItemStats::unchanged(Layout::default(), Outcome::Conflict)),
            }
        }
    }

    async fn reread(&self, item: &Item) -> Result<Option<Item>> {
        let key: HashMap<String, AttributeValue> = self
            .table
            .kind
            .key_attributes()
            .iter()
            .filter_map(|name| item.get(*name).map(|v| ((*name).to_string(), v.clone())))
            .collect();
        let out = self
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| Error::from_sdk("GetItem", err))?;
        Ok(out.item)
    }

    /// The payload re-encoded exactly for the target, or `None` to keep
    /// `old`. [`Error::Inexact`] when it cannot be shown to be the same value.
    fn transcode(&self, old: &[u8]) -> Result<Option<Vec<u8>>> {
        let new = self.target.reencode(old)?;
        if new == old {
            return Ok(None);
        }
        let rewrite = self.upstream
            || new.len() < old.len()
            || (self.options.allow_growth && !self.target.is_native(old));
        Ok(rewrite.then_some(new))
    }

    /// Rewrites `Payload` and `Metadata` of an event with a conditional put
    /// on their exact old values.
    async fn event(&self, item: &Item) -> Result<Attempt> {
        let key = describe_key(item);
        let before_size = item_size(item);
        let before = Layout::of(TableKind::Events, before_size, &[]);
        let mut new_item = item.clone();
        let mut old_values = Vec::with_capacity(2);
        let mut changed = false;
        for name in [PAYLOAD, METADATA] {
            let old = match get_b(item, &key, name) {
                Ok(old) => old,
                Err(err) => return Ok(unreadable(&key, before, err)),
            };
            old_values.push(b(old.to_vec()));
            match self.transcode(old) {
                Ok(Some(new)) => {
                    new_item.insert(name.to_string(), b(new));
                    changed = true;
                }
                Ok(None) => {}
                Err(err) => return failed(&key, before, name, err),
            }
        }
        if !changed {
            return Ok(Attempt::Done(ItemStats::unchanged(
                before,
                Outcome::Skipped,
            )));
        }
        let stats = ItemStats::single_item(TableKind::Events, &key, before, before_size, &new_item);
        if self.options.dry_run || !matches!(stats.outcome, Outcome::Recoded) {
            return Ok(Attempt::Done(stats));
        }
        let mut values = old_values.into_iter();
        let request = self
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(new_item))
            .condition_expression("Payload = :old_payload AND Metadata = :old_metadata")
            .set_expression_attribute_values(Some(HashMap::from([
                (
                    ":old_payload".to_string(),
                    values.next().unwrap_or(AttributeValue::Null(true)),
                ),
                (
                    ":old_metadata".to_string(),
                    values.next().unwrap_or(AttributeValue::Null(true)),
                ),
            ])));
        self.conditional_put(request, stats, before).await
    }

    /// Rewrites a view's `Payload` with a conditional put on its version
    /// and exact old payload.
    async fn view(&self, item: &Item) -> Result<Attempt> {
        let key = describe_key(item);
        let before_size = item_size(item);
        let before = Layout::of(TableKind::Views, before_size, &[]);
        let old = match get_b(item, &key, PAYLOAD) {
            Ok(old) => old,
            Err(err) => return Ok(unreadable(&key, before, err)),
        };
        let Some(version) = item.get(VIEW_VERSION).cloned() else {
            return Ok(unreadable(
                &key,
                before,
                Error::MissingAttribute {
                    key: key.clone(),
                    attribute: VIEW_VERSION,
                },
            ));
        };
        let new = match self.transcode(old) {
            Ok(Some(new)) => new,
            Ok(None) => {
                return Ok(Attempt::Done(ItemStats::unchanged(
                    before,
                    Outcome::Skipped,
                )))
            }
            Err(err) => return failed(&key, before, PAYLOAD, err),
        };
        let old_value = b(old.to_vec());
        let mut new_item = item.clone();
        new_item.insert(PAYLOAD.to_string(), b(new));
        let stats = ItemStats::single_item(TableKind::Views, &key, before, before_size, &new_item);
        if self.options.dry_run || !matches!(stats.outcome, Outcome::Recoded) {
            return Ok(Attempt::Done(stats));
        }
        let request = self
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(new_item))
            .condition_expression("ViewVersion = :old_version AND Payload = :old_payload")
            .expression_attribute_values(":old_version", version)
            .expression_attribute_values(":old_payload", old_value);
        self.conditional_put(request, stats, before).await
    }

    async fn conditional_put(
        &self,
        request: aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
        stats: ItemStats,
        before: Layout,
    ) -> Result<Attempt> {
        match request.send().await {
            Ok(_) => Ok(Attempt::Done(stats)),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(Attempt::Changed(before))
            }
            Err(err) => Err(Error::from_sdk("PutItem", err)),
        }
    }

    /// Rewrites a snapshot (single item or chunked) in one transaction
    /// conditioned on the head as read.
    async fn snapshot(&self, head: &Item) -> Result<Attempt> {
        let key = describe_key(head);
        let head_size = item_size(head);
        let head_only = Layout::of(TableKind::Snapshots, head_size, &[]);
        let names = get_s(head, &key, AGGREGATE_TYPE)
            .and_then(|aggregate_type| Ok((aggregate_type, get_s(head, &key, AGGREGATE_ID)?)));
        let (aggregate_type, aggregate_id) = match names {
            Ok(names) => names,
            Err(err) => return Ok(unreadable(&key, head_only, err)),
        };
        if aggregate_key(aggregate_type, aggregate_id) != key {
            let err = Error::InvalidAttribute {
                key: key.clone(),
                attribute: AGGREGATE_TYPE_AND_ID,
                expected: "`{AggregateType}:{AggregateId}`",
            };
            return Ok(unreadable(&key, head_only, err));
        }
        let stored = match snapshot::stored_payload(
            &self.client,
            &self.table.name,
            &key,
            head,
            aggregate_type,
            aggregate_id,
        )
        .await
        {
            Ok(Ok(stored)) => stored,
            // The chunks changed under us: a writer is at work.
            Ok(Err(_)) => return Ok(Attempt::Changed(head_only)),
            Err(err) if err.is_data_error() => return Ok(unreadable(&key, head_only, err)),
            Err(err) => return Err(err),
        };
        let before = Layout::of(TableKind::Snapshots, head_size, &stored.chunk_sizes);
        let sequence = get_n::<usize>(head, &key, CURRENT_SEQUENCE)
            .and_then(|sequence| Ok((sequence, get_n::<usize>(head, &key, CURRENT_SNAPSHOT)?)));
        let (current_sequence, current_snapshot) = match sequence {
            Ok(numbers) => numbers,
            Err(err) => return Ok(unreadable(&key, before, err)),
        };
        let new = match self.transcode(&stored.payload) {
            Ok(Some(new)) => new,
            // Plain JSON already, but chunked: upstream reads one item only.
            Ok(None) if self.upstream && !stored.chunk_sizes.is_empty() => stored.payload,
            Ok(None) => {
                return Ok(Attempt::Done(ItemStats::unchanged(
                    before,
                    Outcome::Skipped,
                )))
            }
            Err(err) => return failed(&key, before, PAYLOAD, err),
        };
        let condition = snapshot_condition(head);
        let plan = match snapshot::plan(SnapshotSpec {
            table: &self.table.name,
            aggregate_type,
            aggregate_id,
            payload: new,
            current_sequence,
            current_snapshot,
            condition: Some(condition),
            previous_chunks: stored.chunk_sizes.len(),
        }) {
            Ok(plan) => plan,
            Err(err @ Error::LimitExceeded { .. }) => {
                tracing::warn!(%key, error = %err, "recoded snapshot cannot be stored; left as it is");
                return Ok(Attempt::Done(ItemStats::unchanged(
                    before,
                    Outcome::Skipped,
                )));
            }
            Err(err) => return Err(err),
        };
        if self.upstream && plan.chunks > 0 {
            return Ok(not_convertible(
                &key,
                before,
                "does not fit in one item as plain JSON, which upstream needs",
            ));
        }
        let mut writes = plan.writes;
        // Carry over any attribute the layout does not own (a TTL, ...).
        if let Some(first) = writes.first_mut() {
            if let Some(put) = first.write.put.as_mut() {
                for (name, value) in head {
                    if !SNAPSHOT_LAYOUT.contains(&name.as_str()) {
                        put.item.insert(name.clone(), value.clone());
                    }
                }
                first.size = item_size(&put.item);
            }
        }
        if let Err(err) = check_limits(&key, &writes) {
            tracing::warn!(%key, error = %err, "recoded snapshot cannot be stored; left as it is");
            return Ok(Attempt::Done(ItemStats::unchanged(
                before,
                Outcome::Skipped,
            )));
        }
        let put_sizes: Vec<usize> = writes
            .iter()
            .filter(|w| w.write.put.is_some())
            .map(|w| w.size)
            .collect();
        let (new_head, new_chunks) = put_sizes.split_first().unwrap_or((&0, &[]));
        let after = Layout::of(TableKind::Snapshots, *new_head, new_chunks);
        let stats = ItemStats {
            before,
            after,
            outcome: Outcome::Recoded,
            recode_wcu: snapshot_recode_wcu(head_size, &stored.chunk_sizes, *new_head, new_chunks),
        };
        if self.options.dry_run {
            return Ok(Attempt::Done(stats));
        }
        let items: Vec<TransactWriteItem> = writes.into_iter().map(|w| w.write).collect();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(request_token(&key, current_sequence, current_snapshot))
            .send()
            .await;
        match result.map_err(|err| Error::from_transact(&key, err)) {
            Ok(_) => Ok(Attempt::Done(stats)),
            Err(Error::Conflict { .. }) => Ok(Attempt::Changed(before)),
            Err(err) => Err(err),
        }
    }
}

/// The head condition of a snapshot rewrite: the version, the sequence and
/// the exact payload (or, chunked, its hash and chunk count) as read.
fn snapshot_condition(head: &Item) -> (String, Vec<(String, AttributeValue)>) {
    let mut clauses = vec![
        "CurrentSnapshot = :old_snapshot".to_string(),
        "CurrentSequence = :old_sequence".to_string(),
    ];
    let mut values = Vec::new();
    let value = |name: &str| {
        head.get(name)
            .cloned()
            .unwrap_or(AttributeValue::Null(true))
    };
    values.push((":old_snapshot".to_string(), value(CURRENT_SNAPSHOT)));
    values.push((":old_sequence".to_string(), value(CURRENT_SEQUENCE)));
    if head.contains_key(PAYLOAD) {
        clauses.push("Payload = :old_payload".into());
        values.push((":old_payload".into(), value(PAYLOAD)));
    } else {
        clauses.push("PayloadHash = :old_hash".into());
        clauses.push("PayloadChunks = :old_chunks".into());
        values.push((":old_hash".into(), value(PAYLOAD_HASH)));
        values.push((":old_chunks".into(), value(PAYLOAD_CHUNKS)));
    }
    (clauses.join(" AND "), values)
}

/// Write units of a snapshot rewrite transaction: every put and delete is
/// billed on the larger of the old and new item, doubled.
fn snapshot_recode_wcu(
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

fn unreadable(key: &str, layout: Layout, err: Error) -> Attempt {
    tracing::warn!(%key, error = %err, "payload cannot be decoded; left as it is");
    Attempt::Done(ItemStats::unchanged(layout, Outcome::Unreadable))
}

fn not_convertible(key: &str, layout: Layout, reason: impl fmt::Display) -> Attempt {
    tracing::warn!(%key, %reason, "item cannot be converted exactly; left as it is");
    Attempt::Done(ItemStats::unchanged(layout, Outcome::NotConvertible))
}

/// Sorts a failed re-encoding of `attribute`: not exact, unreadable, or a
/// failure of the run.
fn failed(key: &str, layout: Layout, attribute: &'static str, err: Error) -> Result<Attempt> {
    match err {
        Error::Inexact { .. } => Ok(not_convertible(key, layout, err.in_item(key, attribute))),
        err if err.is_data_error() => Ok(unreadable(key, layout, err.in_item(key, attribute))),
        err => Err(err),
    }
}

/// A token bucket shared by every segment: `rate` items per second, with a
/// burst of at most one second's worth.
struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(items_per_second: u32) -> Self {
        RateLimiter {
            rate: f64::from(items_per_second.max(1)),
            state: Mutex::new((1.0, Instant::now())),
        }
    }

    /// Waits for one token.
    async fn acquire(&self) {
        loop {
            let wait = match self.state.lock() {
                Ok(mut state) => {
                    let now = Instant::now();
                    let refill = now.duration_since(state.1).as_secs_f64() * self.rate;
                    state.0 = (state.0 + refill).min(self.rate.max(1.0));
                    state.1 = now;
                    if state.0 >= 1.0 {
                        state.0 -= 1.0;
                        return;
                    }
                    (1.0 - state.0) / self.rate
                }
                // A poisoned limiter limits nothing rather than stopping the run.
                Err(_) => return,
            };
            let wait = Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_millis(1));
            tokio::time::sleep(wait.max(Duration::from_micros(100))).await;
        }
    }
}

/// A key attribute value as stored in a checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum KeyValue {
    /// A string.
    S(String),
    /// A number, as its decimal text.
    N(String),
    /// Binary.
    B(Vec<u8>),
}

fn key_to_checkpoint(key: &HashMap<String, AttributeValue>) -> Result<BTreeMap<String, KeyValue>> {
    key.iter()
        .map(|(name, value)| {
            let value = match value {
                AttributeValue::S(s) => KeyValue::S(s.clone()),
                AttributeValue::N(n) => KeyValue::N(n.clone()),
                AttributeValue::B(b) => KeyValue::B(b.as_ref().to_vec()),
                other => {
                    return Err(Error::Serde(
                        format!("key attribute {name} has a non-key type: {other:?}").into(),
                    ))
                }
            };
            Ok((name.clone(), value))
        })
        .collect()
}

fn key_from_checkpoint(key: &BTreeMap<String, KeyValue>) -> HashMap<String, AttributeValue> {
    key.iter()
        .map(|(name, value)| {
            let value = match value {
                KeyValue::S(s) => AttributeValue::S(s.clone()),
                KeyValue::N(n) => AttributeValue::N(n.clone()),
                KeyValue::B(b) => AttributeValue::B(Blob::new(b.clone())),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The checkpoint file: every table of a run, segment by segment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    tables: BTreeMap<String, TableState>,
}

/// One table's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TableState {
    kind: TableKind,
    codec: String,
    dry_run: bool,
    allow_growth: bool,
    total_segments: u32,
    segments: Vec<SegmentState>,
}

/// One segment's progress: the last evaluated key of the last page done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SegmentState {
    done: bool,
    last_key: Option<BTreeMap<String, KeyValue>>,
    counters: Counters,
    #[serde(default)]
    not_convertible: Vec<String>,
}

/// The run's progress, in memory and (optionally) in a file.
struct Checkpointer {
    path: Option<PathBuf>,
    file: Mutex<CheckpointFile>,
}

fn checkpoint_error(path: &Path, reason: impl fmt::Display) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("checkpoint {}: {reason}", path.display()),
    ))
}

impl Checkpointer {
    /// Reads `path` if it exists.
    fn open(path: Option<&Path>) -> Result<Self> {
        let mut file = CheckpointFile {
            version: CHECKPOINT_VERSION,
            tables: BTreeMap::new(),
        };
        if let Some(path) = path {
            match std::fs::read(path) {
                Ok(bytes) => {
                    file = serde_json::from_slice(&bytes)
                        .map_err(|err| checkpoint_error(path, err))?;
                    if file.version != CHECKPOINT_VERSION {
                        return Err(checkpoint_error(
                            path,
                            format!("unknown version {}", file.version),
                        ));
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::Io(err)),
            }
        }
        Ok(Checkpointer {
            path: path.map(Path::to_path_buf),
            file: Mutex::new(file),
        })
    }

    /// The stored state of `table`, or `wanted` if it has none. A stored
    /// state from a run with other settings is an error.
    fn start(&self, table: &str, wanted: TableState) -> Result<TableState> {
        let mut file = self.file.lock().map_err(|_| lock_error())?;
        if let Some(stored) = file.tables.get(table) {
            let same = stored.kind == wanted.kind
                && stored.codec == wanted.codec
                && stored.dry_run == wanted.dry_run
                && stored.allow_growth == wanted.allow_growth
                && stored.total_segments == wanted.total_segments
                && stored.segments.len() == usize_of_u32(stored.total_segments);
            if !same {
                let path = self.path.clone().unwrap_or_default();
                return Err(checkpoint_error(
                    &path,
                    format!(
                        "table {table} was started as {} with codec {}, dry run {}, allow growth {}, {} segments; \
                         this run asks for {} with codec {}, dry run {}, allow growth {}, {} segments. \
                         Resume with the same settings, or use another checkpoint file",
                        stored.kind, stored.codec, stored.dry_run, stored.allow_growth, stored.total_segments,
                        wanted.kind, wanted.codec, wanted.dry_run, wanted.allow_growth, wanted.total_segments,
                    ),
                ));
            }
            return Ok(stored.clone());
        }
        file.tables.insert(table.to_string(), wanted.clone());
        self.save(&file)?;
        Ok(wanted)
    }

    fn state(&self, table: &str) -> Result<TableState> {
        let file = self.file.lock().map_err(|_| lock_error())?;
        file.tables.get(table).cloned().ok_or_else(|| {
            Error::Io(std::io::Error::other(format!(
                "no recode state for {table}"
            )))
        })
    }

    /// Records a segment's progress and saves the file.
    fn record(&self, table: &str, segment: u32, state: &SegmentState) -> Result<()> {
        let mut file = self.file.lock().map_err(|_| lock_error())?;
        let slot = file
            .tables
            .get_mut(table)
            .and_then(|t| t.segments.get_mut(usize_of_u32(segment)));
        match slot {
            Some(slot) => *slot = state.clone(),
            None => {
                return Err(Error::Io(std::io::Error::other(format!(
                    "no recode state for {table} segment {segment}"
                ))))
            }
        }
        self.save(&file)
    }

    /// Writes the file atomically: a temporary file, synced, then renamed.
    fn save(&self, file: &CheckpointFile) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let json = serde_json::to_vec_pretty(file)?;
        let mut out = std::fs::File::create(&temp)?;
        out.write_all(&json)?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(&temp, path)?;
        Ok(())
    }
}

fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn usize_of_u32(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `n` as an `f64` (exact below 2^53).
fn f64_of(n: u64) -> f64 {
    let high = u32::try_from(n >> 32).unwrap_or(u32::MAX);
    let low = u32::try_from(n & 0xFFFF_FFFF).unwrap_or(u32::MAX);
    f64::from(high) * 4_294_967_296.0 + f64::from(low)
}

fn ratio(after: u64, before: u64) -> f64 {
    if before == 0 {
        1.0
    } else {
        f64_of(after) / f64_of(before)
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn change(before: u64, after: u64) -> String {
    format!("{} → {}", thousands(before), thousands(after))
}

fn ratio_cell(ratio: f64) -> String {
    format!("{ratio:.3} ({:+.1}%)", (ratio - 1.0) * 100.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.tables.first() else {
            return writeln!(f, "no tables");
        };
        let mut columns: Vec<TableReport> = self.tables.clone();
        if self.tables.len() > 1 {
            columns.push(total(&self.tables));
        }
        let dry_run = self.tables.iter().any(|t| t.dry_run);
        type Cell = fn(&TableReport) -> String;
        let rows: [(&str, Cell); 17] = [
            ("kind", |t| t.kind.name().to_string()),
            ("items", |t| thousands(t.items_scanned)),
            (if dry_run { "to recode" } else { "recoded" }, |t| {
                thousands(t.items_recoded)
            }),
            ("skipped: not smaller", |t| thousands(t.items_skipped)),
            ("skipped: writer won", |t| thousands(t.conflicts_skipped)),
            ("unreadable", |t| thousands(t.items_unreadable)),
            ("not convertible", |t| thousands(t.items_not_convertible)),
            ("bytes before", |t| thousands(t.bytes_before)),
            ("bytes after", |t| thousands(t.bytes_after)),
            ("size ratio", |t| ratio_cell(t.ratio)),
            ("WCU per rewrite", |t| {
                change(t.wcu_per_rewrite_before, t.wcu_per_rewrite_after)
            }),
            ("RCU per load", |t| {
                change(t.rcu_per_load_before, t.rcu_per_load_after)
            }),
            ("chunked snapshots", |t| {
                change(t.chunked_before, t.chunked_after)
            }),
            ("chunk items", |t| {
                change(t.chunk_items_before, t.chunk_items_after)
            }),
            ("newly fit in one item", |t| thousands(t.newly_fit)),
            ("WCU of the recode", |t| thousands(t.recode_wcu)),
            ("complete", |t| {
                if t.complete { "yes" } else { "no" }.to_string()
            }),
        ];
        let mut cells: Vec<Vec<String>> = rows
            .iter()
            .map(|(_, cell)| columns.iter().map(cell).collect())
            .collect();
        if columns.len() > self.tables.len() {
            // The total column has no single kind.
            if let Some(kind) = cells.first_mut().and_then(|row| row.last_mut()) {
                *kind = "all".into();
            }
        }
        let label_width = rows
            .iter()
            .map(|(label, _)| label.chars().count())
            .max()
            .unwrap_or(0);
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                cells
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|c| c.chars().count())
                    .chain(std::iter::once(t.table.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        writeln!(
            f,
            "recode to {}{}",
            first.codec,
            if dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        )?;
        write!(f, "{:label_width$}", "")?;
        for (t, width) in columns.iter().zip(&widths) {
            write!(f, "  {:>width$}", t.table)?;
        }
        writeln!(f)?;
        for ((label, _), row) in rows.iter().zip(&cells) {
            write!(f, "{label:label_width$}")?;
            for (cell, width) in row.iter().zip(&widths) {
                write!(f, "  {cell:>width$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for TableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Report {
            tables: vec![self.clone()],
            complete: self.complete,
        }
        .fmt(f)
    }
}

/// A "total" column over several tables.
fn total(tables: &[TableReport]) -> TableReport {
    let sum = |field: fn(&TableReport) -> u64| tables.iter().map(field).sum::<u64>();
    let bytes_before = sum(|t| t.bytes_before);
    let bytes_after = sum(|t| t.bytes_after);
    TableReport {
        table: "total".into(),
        kind: tables.first().map_or(TableKind::Events, |t| t.kind),
        codec: tables.first().map(|t| t.codec.clone()).unwrap_or_default(),
        dry_run: tables.iter().any(|t| t.dry_run),
        complete: tables.iter().all(|t| t.complete),
        segments: tables.iter().map(|t| t.segments).max().unwrap_or(1),
        items_scanned: sum(|t| t.items_scanned),
        items_recoded: sum(|t| t.items_recoded),
        items_skipped: sum(|t| t.items_skipped),
        conflicts_skipped: sum(|t| t.conflicts_skipped),
        items_unreadable: sum(|t| t.items_unreadable),
        items_not_convertible: sum(|t| t.items_not_convertible),
        not_convertible_keys: tables
            .iter()
            .flat_map(|t| t.not_convertible_keys.iter().cloned())
            .collect(),
        bytes_before,
        bytes_after,
        ratio: ratio(bytes_after, bytes_before),
        wcu_per_rewrite_before: sum(|t| t.wcu_per_rewrite_before),
        wcu_per_rewrite_after: sum(|t| t.wcu_per_rewrite_after),
        rcu_per_load_before: sum(|t| t.rcu_per_load_before),
        rcu_per_load_after: sum(|t| t.rcu_per_load_after),
        chunked_before: sum(|t| t.chunked_before),
        chunked_after: sum(|t| t.chunked_after),
        chunk_items_before: sum(|t| t.chunk_items_before),
        chunk_items_after: sum(|t| t.chunk_items_after),
        newly_fit: sum(|t| t.newly_fit),
        recode_wcu: sum(|t| t.recode_wcu),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn report(table: &str, kind: TableKind, before: u64, after: u64) -> TableReport {
        let mut state = TableState {
            kind,
            codec: "json".into(),
            dry_run: true,
            allow_growth: false,
            total_segments: 2,
            segments: vec![SegmentState::default(); 2],
        };
        state.segments[0].done = true;
        state.segments[1].done = true;
        state.segments[0].counters.items_scanned = 3;
        state.segments[0].counters.items_recoded = 2;
        state.segments[0].counters.items_skipped = 1;
        state.segments[0].counters.bytes_before = before;
        state.segments[1].counters.bytes_after = after;
        TableReport::new(&Table::new(table, kind), "json", &state)
    }

    #[test]
    fn numbers_print_readably() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(ratio_cell(0.25), "0.250 (-75.0%)");
        assert_eq!(ratio(5, 0), 1.0);
        assert_eq!(f64_of(u64::from(u32::MAX) + 7), 4_294_967_302.0);
        assert_eq!(f64_of(1 << 52), 4_503_599_627_370_496.0);
    }

    #[test]
    fn checkpoint_keys_round_trip_every_key_type() {
        let key = HashMap::from([
            (
                "AggregateTypeAndId".to_string(),
                AttributeValue::S("Order:ü:1".into()),
            ),
            (
                "AggregateIdSequence".to_string(),
                AttributeValue::N("42".into()),
            ),
            (
                "Bin".to_string(),
                AttributeValue::B(Blob::new(vec![0, 255, 7])),
            ),
        ]);
        let stored = key_to_checkpoint(&key).unwrap();
        let json = serde_json::to_string(&stored).unwrap();
        let back: BTreeMap<String, KeyValue> = serde_json::from_str(&json).unwrap();
        assert_eq!(key_from_checkpoint(&back), key);
        let bad = HashMap::from([("L".to_string(), AttributeValue::Bool(true))]);
        assert!(key_to_checkpoint(&bad).is_err());
    }

    #[test]
    fn checkpoint_files_are_saved_resumed_and_checked() {
        let dir = std::env::temp_dir().join(format!(
            "dynamo-es-recode-unit-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("checkpoint.json");
        let wanted = TableState {
            kind: TableKind::Snapshots,
            codec: "json+zstd-3".into(),
            dry_run: false,
            allow_growth: false,
            total_segments: 2,
            segments: vec![SegmentState::default(); 2],
        };
        let checkpoint = Checkpointer::open(Some(&path)).unwrap();
        checkpoint.start("T", wanted.clone()).unwrap();
        let mut segment = SegmentState {
            done: false,
            last_key: Some(BTreeMap::from([(
                "AggregateTypeAndId".to_string(),
                KeyValue::S("A:1".into()),
            )])),
            counters: Counters::default(),
            not_convertible: vec!["A:2".into()],
        };
        segment.counters.items_scanned = 9;
        checkpoint.record("T", 1, &segment).unwrap();
        assert!(checkpoint.record("T", 2, &segment).is_err());
        assert!(
            !dir.join("checkpoint.json.tmp").exists(),
            "renamed into place"
        );

        let resumed = Checkpointer::open(Some(&path)).unwrap();
        let state = resumed.start("T", wanted.clone()).unwrap();
        assert_eq!(state.segments[1], segment);
        assert_eq!(state.segments[0], SegmentState::default());
        let other = TableState {
            total_segments: 3,
            segments: vec![SegmentState::default(); 3],
            ..wanted.clone()
        };
        let err = resumed.start("T", other).unwrap_err().to_string();
        assert!(
            err.contains("checkpoint.json") && err.contains("3 segments"),
            "{err}"
        );
        let dry = TableState {
            dry_run: true,
            ..wanted
        };
        assert!(resumed.start("T", dry).is_err());

        std::fs::write(&path, b"{not json").unwrap();
        assert!(Checkpointer::open(Some(&path)).is_err());
        std::fs::write(&path, br#"{"version": 99, "tables": {}}"#).unwrap();
        let err = Checkpointer::open(Some(&path)).err().unwrap().to_string();
        assert!(err.contains("version 99"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        let event = Layout::of(TableKind::Events, 1_500, &[]);
        assert_eq!((event.wcu, event.rcu), (4, 0));
        let view = Layout::of(TableKind::Views, 1_500, &[]);
        assert_eq!((view.wcu, view.rcu), (2, 1));

        let mut counters = Counters::default();
        counters.add_item(&ItemStats {
            before: chunked,
            after: single,
            outcome: Outcome::Recoded,
            recode_wcu: snapshot_recode_wcu(200, &[409_600, 1_000], 5_000, &[]),
        });
        counters.add_item(&ItemStats::unchanged(single, Outcome::Conflict));
        assert_eq!(counters.items_scanned, 2);
        assert_eq!((counters.items_recoded, counters.conflicts_skipped), (1, 1));
        assert_eq!(
            (
                counters.newly_fit,
                counters.chunked_before,
                counters.chunked_after
            ),
            (1, 1, 0)
        );
        assert_eq!(counters.recode_wcu, 10 + 800 + 2);
        assert_eq!(counters.bytes_after, 10_000);
    }

    #[test]
    fn snapshot_rewrites_are_conditioned_on_the_head_as_read() {
        let single = Item::from([
            (CURRENT_SNAPSHOT.to_string(), AttributeValue::N("4".into())),
            (CURRENT_SEQUENCE.to_string(), AttributeValue::N("17".into())),
            (PAYLOAD.to_string(), b(b"{}".to_vec())),
        ]);
        let (expression, values) = snapshot_condition(&single);
        assert_eq!(
            expression,
            "CurrentSnapshot = :old_snapshot AND CurrentSequence = :old_sequence AND Payload = :old_payload"
        );
        assert!(values.contains(&(":old_payload".into(), b(b"{}".to_vec()))));
        let chunked = Item::from([
            (CURRENT_SNAPSHOT.to_string(), AttributeValue::N("4".into())),
            (CURRENT_SEQUENCE.to_string(), AttributeValue::N("17".into())),
            (PAYLOAD_HASH.to_string(), AttributeValue::S("00ff".into())),
            (PAYLOAD_CHUNKS.to_string(), AttributeValue::N("3".into())),
        ]);
        let (expression, values) = snapshot_condition(&chunked);
        assert!(expression.ends_with("PayloadHash = :old_hash AND PayloadChunks = :old_chunks"));
        assert!(values.contains(&(":old_snapshot".into(), AttributeValue::N("4".into()))));
        assert!(values.contains(&(":old_chunks".into(), AttributeValue::N("3".into()))));
    }

    #[tokio::test]
    async fn the_rate_limiter_paces_items() {
        let limiter = RateLimiter::new(20);
        let started = std::time::Instant::now();
        for _ in 0..11 {
            limiter.acquire().await;
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[test]
    fn reports_print_as_an_aligned_table_and_round_trip_as_json() {
        let report = Report {
            tables: vec![
                report("events-table", TableKind::Events, 10_000, 2_500),
                report("s", TableKind::Snapshots, 3_000_000, 1_000_000),
            ],
            complete: true,
        };
        assert_eq!(report.tables[0].ratio, 0.25);
        // Events are read by query: units on the summed size.
        assert_eq!(report.tables[0].rcu_per_load_before, 3);
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("dry run"), "{text}");
        let width = lines[1].chars().count();
        assert!(
            lines[1..].iter().all(|l| l.chars().count() == width),
            "{text}"
        );
        assert!(lines[1].ends_with("total"), "{text}");
        let bytes = lines
            .iter()
            .find(|l| l.starts_with("bytes before"))
            .unwrap();
        assert!(bytes.ends_with("3,010,000"), "{bytes}");
        assert!(text.contains("to recode"), "{text}");
        let json = report.to_json().unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
        assert!(json.contains("\"kind\": \"snapshots\""), "{json}");
        assert_eq!(Report::default().to_string(), "no tables\n");
    }
}
