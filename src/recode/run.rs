//! One table's run: its scan segments as parallel tasks, page by page.
//!
//! A segment records a page in the checkpoint only once every item of the
//! page was processed, and it looks at the stop handle, the item budget and
//! its siblings' failures only between pages: however a run ends, the
//! checkpoint holds whole pages, and a rerun resumes after the last one.
//! The report is computed from the checkpointed state alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aws_sdk_dynamodb::Client;
use tracing::Instrument;

use super::checkpoint::{key_from_checkpoint, key_to_checkpoint, Checkpointer, SegmentState};
use super::error::Error as RecodeError;
use super::identity::TableIdentity;
use super::options::Callback;
use super::rate_limit::RateLimiter;
use super::settings::Settings;
use super::stats::{Counts, Outcome};
use super::{Progress, RecodeOptions, Recoder, Table, TableKind, TableReport};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::item::{describe_key, CHUNK_OF};
use crate::snapshot;

/// How many keys of not convertible items each scan segment lists.
const MAX_LISTED_KEYS: usize = 100;

/// State shared by the tables of one run.
pub(super) struct Shared {
    checkpoint: Checkpointer,
    limiter: Option<RateLimiter>,
    /// Items scanned by this run, over all tables (for the item budget).
    scanned: AtomicU64,
}

impl Shared {
    /// The state of a run with `options`. A dry run keeps its progress in
    /// memory only: it neither resumes from the checkpoint file nor writes
    /// it, so a real run never resumes a dry run's state.
    pub fn new(options: &RecodeOptions) -> Result<Arc<Self>> {
        let file = if options.dry_run {
            None
        } else {
            options.checkpoint.as_deref()
        };
        Ok(Arc::new(Shared {
            checkpoint: Checkpointer::open(file)?,
            limiter: options.items_per_second.map(RateLimiter::new),
            scanned: AtomicU64::new(0),
        }))
    }
}

/// One table being recoded.
pub(super) struct TableRun {
    pub client: Client,
    pub target: Codec,
    pub upstream: bool,
    /// The recode's zstd dictionaries (see `dictionary`).
    pub dictionaries: super::dictionary::Dictionaries,
    pub table: Table,
    pub options: RecodeOptions,
    total_segments: u32,
    shared: Arc<Shared>,
    /// The counts of every page done, resumed ones included.
    totals: Mutex<Counts>,
    /// Set once a segment failed, so its siblings stop too.
    failed: AtomicBool,
}

impl TableRun {
    /// Recodes `table` with `recoder` (or only reports, in a dry run),
    /// resuming from the checkpoint in `shared`.
    pub async fn run(
        recoder: &Recoder,
        table: &Table,
        shared: &Arc<Shared>,
    ) -> Result<TableReport> {
        let options = &recoder.options;
        let settings = Settings {
            kind: table.kind,
            codec: recoder.target_name(),
            dry_run: options.dry_run,
            allow_growth: options.allow_growth,
            segments: options.segments,
        };
        let span = tracing::info_span!(
            "dynamo_es.recode",
            table = %table.name,
            kind = %table.kind,
            codec = %settings.codec,
            dry_run = options.dry_run,
            segments = options.segments,
        );
        // Only a checkpoint file outlives the run: it records which table
        // its progress is on, and is refused on another one.
        let identity = if shared.checkpoint.has_file() {
            TableIdentity::of(&recoder.client, &table.name).await?
        } else {
            TableIdentity::default()
        };
        let state = shared.checkpoint.start(&table.name, settings, identity)?;
        let run = Arc::new(TableRun {
            client: recoder.client.clone(),
            target: recoder.dictionaries.attach(recoder.target.clone()),
            upstream: recoder.upstream,
            dictionaries: if recoder.upstream {
                recoder.dictionaries.readers_only()
            } else {
                recoder.dictionaries.clone()
            },
            table: table.clone(),
            options: options.clone(),
            total_segments: state.settings.segments,
            shared: shared.clone(),
            totals: Mutex::new(Counts::sum(state.progress.iter().map(|s| &s.counters))),
            failed: AtomicBool::new(false),
        });
        let mut tasks = tokio::task::JoinSet::new();
        let mut segments = HashMap::new();
        for (index, segment) in state.progress.iter().enumerate() {
            if segment.done {
                continue;
            }
            let run = run.clone();
            let segment = segment.clone();
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let task = tasks.spawn(
                async move {
                    let result = run.segment(index, segment).await;
                    if result.is_err() {
                        run.failed.store(true, Ordering::SeqCst);
                    }
                    result
                }
                .instrument(span.clone()),
            );
            segments.insert(task.id(), index);
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next_with_id().await {
            let result = joined.map(|(_, result)| result).unwrap_or_else(|err| {
                run.failed.store(true, Ordering::SeqCst);
                Err(RecodeError::Segment {
                    table: table.name.clone(),
                    segment: segments.get(&err.id()).copied().unwrap_or(u32::MAX),
                    reason: err.to_string(),
                }
                .into())
            });
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        let report = TableReport::new(&table.name, &shared.checkpoint.state(&table.name)?);
        run.progress(report.complete)?;
        Ok(report)
    }

    fn totals(&self) -> Result<MutexGuard<'_, Counts>> {
        self.totals
            .lock()
            .map_err(|_| RecodeError::Internal("recode totals lock poisoned".into()).into())
    }

    fn should_stop(&self) -> bool {
        self.options.stop.is_stopped()
            || self.failed.load(Ordering::SeqCst)
            || self
                .options
                .max_items
                .is_some_and(|max| self.shared.scanned.load(Ordering::SeqCst) >= max)
    }

    fn progress(&self, finished: bool) -> Result<()> {
        let Some(Callback(callback)) = &self.options.progress else {
            return Ok(());
        };
        let totals = *self.totals()?;
        callback(&Progress::of(&self.table, &totals, finished));
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
                .map_err(|err| Error::from_sdk_on("Scan", &self.table.name, err))?;
            let mut page = Counts::default();
            for item in out.items.unwrap_or_default() {
                if self.table.kind == TableKind::Snapshots
                    && (snapshot::is_chunk(&item) || super::dictionary::is_dictionary_item(&item))
                {
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
                Some(key) => Some(key_to_checkpoint(&self.table.name, key)?),
                None => None,
            };
            state.counters.add(&page);
            self.shared
                .checkpoint
                .record(&self.table.name, index, &state)?;
            self.shared
                .scanned
                .fetch_add(page.items_scanned, Ordering::SeqCst);
            self.totals()?.add(&page);
            self.progress(false)?;
        }
        Ok(())
    }
}
