//! One paginator for `Query` and `Scan`: every read follows
//! `LastEvaluatedKey` to the end, and replay streams hand errors to the
//! consumer, then end. Parallel scans (several segments read concurrently,
//! merged page by page) are in [`scan`].

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::query::{QueryError, QueryOutput};
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::operation::scan::{ScanError, ScanOutput};
use aws_sdk_dynamodb::types::ConsumedCapacity;
use aws_smithy_async::future::pagination_stream::PaginationStream;
use cqrs_es::persist::{PersistenceError, ReplayStream, SerializedEvent};

use crate::error::{Error, Result};
use crate::item::Item;

mod scan;

pub(crate) use scan::{
    key_prefix_scan, parallel_scan, ParallelScan, SegmentPage, MAX_SCAN_SEGMENTS,
};

/// The pages of an operation with output `O` and error `E`.
type PagesOf<O, E> =
    PaginationStream<std::result::Result<O, SdkError<E, aws_smithy_runtime_api::http::Response>>>;

/// Pages of items from a query or a scan.
pub(crate) struct Pages {
    source: Source,
    /// The table read, for error messages.
    table: String,
}

enum Source {
    Query(PagesOf<QueryOutput, QueryError>),
    Scan(PagesOf<ScanOutput, ScanError>),
}

/// What one page cost and held.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub items: Vec<Item>,
    pub consumed_capacity: f64,
}

impl Page {
    fn new(items: Option<Vec<Item>>, capacity: Option<ConsumedCapacity>) -> Self {
        Page {
            items: items.unwrap_or_default(),
            consumed_capacity: capacity.and_then(|c| c.capacity_units).unwrap_or_default(),
        }
    }
}

impl Pages {
    /// Pages of `query`, each at most `page_size` items (and 1 MB; the
    /// query's own limit without a `page_size`).
    pub(crate) fn query(query: QueryFluentBuilder, page_size: Option<i32>) -> Self {
        let (table, limit) = (query.get_table_name().clone(), *query.get_limit());
        let pages = query.set_limit(page_size.or(limit)).into_paginator().send();
        Pages::new(Source::Query(pages), table)
    }

    /// Pages of `scan`, each at most `page_size` items (and 1 MB; the scan's
    /// own limit without a `page_size`).
    pub(crate) fn scan(scan: ScanFluentBuilder, page_size: Option<i32>) -> Self {
        let (table, limit) = (scan.get_table_name().clone(), *scan.get_limit());
        let pages = scan.set_limit(page_size.or(limit)).into_paginator().send();
        Pages::new(Source::Scan(pages), table)
    }

    fn new(source: Source, table: Option<String>) -> Self {
        Pages {
            source,
            table: table.unwrap_or_default(),
        }
    }

    /// The next page, `None` after the last one. After an error there is no
    /// further page.
    pub(crate) async fn next(&mut self) -> Option<Result<Page>> {
        Some(match &mut self.source {
            Source::Query(pages) => match pages.next().await? {
                Ok(out) => Ok(Page::new(out.items, out.consumed_capacity)),
                Err(err) => Err(Error::from_sdk_on("Query", &self.table, err)),
            },
            Source::Scan(pages) => match pages.next().await? {
                Ok(out) => Ok(Page::new(out.items, out.consumed_capacity)),
                Err(err) => Err(Error::from_sdk_on("Scan", &self.table, err)),
            },
        })
    }

    /// Every item of every page, in order.
    pub(crate) async fn collect(mut self) -> Result<(Vec<Item>, f64)> {
        let mut items = Vec::new();
        let mut capacity = 0.0;
        while let Some(page) = self.next().await {
            let page = page?;
            capacity += page.consumed_capacity;
            items.extend(page.items);
        }
        Ok((items, capacity))
    }
}

/// What a replay stream reads: the pages of one paginated read, or the
/// merged pages of a parallel scan (each segment's pages in order).
pub(crate) enum ReplaySource {
    /// A query or a single-segment scan.
    Pages(Pages),
    /// A scan read as concurrent segments.
    Scan(ParallelScan),
}

impl From<Pages> for ReplaySource {
    fn from(pages: Pages) -> Self {
        ReplaySource::Pages(pages)
    }
}

impl From<ParallelScan> for ReplaySource {
    fn from(scan: ParallelScan) -> Self {
        ReplaySource::Scan(scan)
    }
}

impl ReplaySource {
    /// The next page, `None` after the last one or after an error.
    async fn next(&mut self) -> Option<Result<Page>> {
        match self {
            ReplaySource::Pages(pages) => pages.next().await,
            ReplaySource::Scan(scan) => {
                Some(scan.next().await?.map(|SegmentPage { segment, page }| {
                    tracing::trace!(segment, items = page.items.len(), "scan page read");
                    page
                }))
            }
        }
    }
}

/// Runs on each page's items before they are mapped: loads what decoding
/// them needs (the zstd dictionaries they reference).
pub(crate) type PagePrep = Option<
    std::sync::Arc<
        dyn Fn(
                Vec<Item>,
            )
                -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Item>>> + Send>>
            + Send
            + Sync,
    >,
>;

/// Runs on each event once mapped, before it is passed on: opens its
/// personal data (feature `encryption`).
pub(crate) type EventFinish = Option<
    std::sync::Arc<
        dyn Fn(
                SerializedEvent,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<SerializedEvent>> + Send>,
            > + Send
            + Sync,
    >,
>;

/// Feeds a cqrs-es [`ReplayStream`] from `pages`, page by page: memory stays
/// bounded by the channel size and one page (for a parallel scan, as many
/// queued pages as segments, and one more being read per segment). The first error (DynamoDB or a
/// bad item) is passed to the consumer and ends the stream; a consumer that
/// hangs up ends the feed.
///
/// The feed runs inside `span`, which gets `events`, `pages` and
/// `consumed_capacity` recorded when the stream ends, and `error` if it
/// ended with one; the end is logged at debug level.
pub(crate) fn replay<F>(
    pages: impl Into<ReplaySource>,
    channel_size: usize,
    span: tracing::Span,
    prep: PagePrep,
    finish: EventFinish,
    mut map: F,
) -> ReplayStream
where
    F: FnMut(&Item) -> Option<Result<SerializedEvent>> + Send + 'static,
{
    let (mut feed, stream) = ReplayStream::new(channel_size.max(1));
    let mut pages = pages.into();
    let task = async move {
        let mut totals = Totals::default();
        let result = feed_pages(&mut pages, &mut feed, &prep, &finish, &mut map, &mut totals).await;
        let span = tracing::Span::current();
        span.record("events", totals.events);
        span.record("pages", totals.pages);
        span.record("consumed_capacity", totals.capacity);
        match result {
            End::Done => tracing::debug!(
                events = totals.events,
                pages = totals.pages,
                consumed_capacity = totals.capacity,
                "replay stream finished"
            ),
            End::HungUp => tracing::debug!(
                events = totals.events,
                pages = totals.pages,
                consumed_capacity = totals.capacity,
                "replay stream stopped: the consumer hung up"
            ),
            End::Failed(err) => {
                span.record("error", err.as_str());
                tracing::debug!(
                    events = totals.events,
                    pages = totals.pages,
                    error = %err,
                    "replay stream ended with an error"
                );
            }
        }
    };
    tokio::spawn(tracing::Instrument::instrument(task, span));
    stream
}

#[derive(Default)]
struct Totals {
    events: usize,
    pages: usize,
    capacity: f64,
}

/// How a replay feed ended.
enum End {
    /// Every page was read.
    Done,
    /// The consumer dropped the stream.
    HungUp,
    /// The first error, passed to the consumer too.
    Failed(String),
}

/// Pushes every mapped item of every page; stops after the first error
/// (pushed to the consumer too) or when the consumer hangs up.
async fn feed_pages<F>(
    pages: &mut ReplaySource,
    feed: &mut cqrs_es::persist::ReplayFeed,
    prep: &PagePrep,
    finish: &EventFinish,
    map: &mut F,
    totals: &mut Totals,
) -> End
where
    F: FnMut(&Item) -> Option<Result<SerializedEvent>>,
{
    while let Some(page) = pages.next().await {
        let page = match (page, prep) {
            (Ok(page), Some(prep)) => prep(page.items).await.map(|items| Page { items, ..page }),
            (page, _) => page,
        };
        let items = match page {
            Ok(page) => {
                totals.pages += 1;
                totals.capacity += page.consumed_capacity;
                page.items
            }
            Err(err) => {
                let message = err.to_string();
                let _ = feed.push(Err(PersistenceError::from(err))).await;
                return End::Failed(message);
            }
        };
        for item in &items {
            let Some(result) = map(item) else { continue };
            let result = match (result, finish) {
                (Ok(event), Some(finish)) => finish(event).await,
                (result, _) => result,
            };
            let error = result.as_ref().err().map(ToString::to_string);
            if feed
                .push(result.map_err(PersistenceError::from))
                .await
                .is_err()
            {
                return End::HungUp;
            }
            if let Some(error) = error {
                return End::Failed(error);
            }
            totals.events += 1;
        }
    }
    End::Done
}
