//! How a recode runs: [`RecodeOptions`], and the [`StopHandle`] and
//! [`Progress`] callback it is driven and watched through.
//!
//! Options are plain values, built with consuming `with_*` methods that
//! clamp every number into its valid range, so any [`RecodeOptions`] a
//! caller can build describes a run that can start. The settings a
//! checkpoint pins (segments, dry run, growth) are read from here when a
//! table starts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::stats::Counts;
use super::{Table, TableKind};

/// The default number of items per scan page.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The default number of times an item is re-read after a concurrent write
/// before it is left as it is.
pub const DEFAULT_CONFLICT_RETRIES: u32 = 3;

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

impl Progress {
    /// Where `table` stands after the items counted in `totals`.
    pub(super) fn of(table: &Table, totals: &Counts, finished: bool) -> Self {
        Progress {
            table: table.name.clone(),
            kind: table.kind,
            items_scanned: totals.items_scanned,
            items_recoded: totals.items_recoded,
            items_skipped: totals.items_left(),
            bytes_before: totals.bytes_before,
            bytes_after: totals.bytes_after,
            finished,
        }
    }
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a [`Recoder`](super::Recoder) runs. Built with consuming `with_*` methods from
/// [`RecodeOptions::default()`]: one segment, no rate limit, no checkpoint,
/// pages of [`DEFAULT_PAGE_SIZE`] items, shrink-only, writing.
#[derive(Debug, Clone)]
pub struct RecodeOptions {
    pub(super) segments: u32,
    pub(super) items_per_second: Option<u32>,
    pub(super) checkpoint: Option<PathBuf>,
    pub(super) dry_run: bool,
    pub(super) page_size: u32,
    pub(super) max_items: Option<u64>,
    pub(super) allow_growth: bool,
    pub(super) conflict_retries: u32,
    pub(super) progress: Option<Callback>,
    pub(super) stop: StopHandle,
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

/// The progress callback of a run, which `Debug` shows only as there.
#[derive(Clone)]
pub(super) struct Callback(pub(super) ProgressFn);

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fn(&Progress)")
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
    /// scanning; delete the file to start over. A table started there with
    /// other [`Settings`](super::Settings) is refused with
    /// [`Error::CheckpointMismatch`](super::Error::CheckpointMismatch), and
    /// one made on another table of that name (another endpoint, region or
    /// account, or a table deleted and created again: each table is
    /// described once when the run starts it) with
    /// [`Error::CheckpointOtherTable`](super::Error::CheckpointOtherTable).
    /// Files of checkpoint versions 1 and 2 (before 0.6), which do not
    /// record the table, are refused with
    /// [`Error::Checkpoint`](super::Error::Checkpoint).
    ///
    /// A dry run ([`with_dry_run`](Self::with_dry_run),
    /// [`Recoder::report`](super::Recoder::report)) neither reads nor writes
    /// the file: a report is cheap to repeat, and the run that follows it
    /// starts (or resumes) the file on its own.
    pub fn with_checkpoint(self, path: impl Into<PathBuf>) -> Self {
        RecodeOptions {
            checkpoint: Some(path.into()),
            ..self
        }
    }

    /// Computes the report and writes nothing: no item, and no checkpoint
    /// file (a dry run's progress is kept in memory only).
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
            progress: Some(Callback(Arc::new(progress))),
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
