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
//! computes the same [`Report`] and writes nothing, not even the
//! checkpoint file: items and bytes before and after, the size ratio, write
//! units per rewrite and read units per load under DynamoDB's billing
//! rules, and how many snapshots would stop needing chunks. The report
//! prints as an aligned table and serialises to JSON.
//!
//! For large tables, scans run in parallel segments, a shared token bucket
//! caps the items processed per second, and a checkpoint file (written
//! atomically after every page) lets an interrupted run resume where it
//! stopped, with the same final report as an uninterrupted run. The file
//! records which table each entry belongs to (the configured endpoint URL,
//! the region, and the table's ARN, id and creation time, from one
//! `DescribeTable`) and is refused on any other table of the same name.
//!
//! A run stops with an error only when DynamoDB fails it (the crate's
//! usual errors), or for a reason of its own: its checkpoint file cannot be
//! used, was started with other settings or on another table (another
//! endpoint, region or account, or a table deleted and created again), or
//! a scan segment task died.
//! Those are a recode [`Error`], boxed in [`crate::Error::Recode`]. Items
//! it cannot read or convert are counted in the [`Report`], never raised.
//!
//! A report, then the recode it predicts (this runs on the embedded
//! emulator of [`crate::testing`]; the guide's recode chapter shows the same code):
//!
//! ```
//! # #[cfg(feature = "compression")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use aws_sdk_dynamodb::{primitives::Blob, types::AttributeValue};
//! # let server = dynamo_es::testing::EmbeddedDynamo::start()?;
//! # let client = server.client();
//! # dynamo_es::create_event_tables(&client, "Events", "Snapshots").await?;
//! # dynamo_es::create_view_table(&client, "account_summary").await?;
//! # // A view of pretty-printed JSON over 1 KB: zstd shrinks it.
//! # let summary = serde_json::to_vec_pretty(&[["the same words, again"; 8]; 8])?;
//! # client
//! #     .put_item()
//! #     .table_name("account_summary")
//! #     .item("ViewId", AttributeValue::S("account-1".into()))
//! #     .item("ViewVersion", AttributeValue::N("1".into()))
//! #     .item("Payload", AttributeValue::B(Blob::new(summary)))
//! #     .send()
//! #     .await?;
//! # let dir = std::env::temp_dir().join(dynamo_es::testing::unique_name("recode-doc"));
//! # std::fs::create_dir_all(&dir)?;
//! # std::env::set_current_dir(&dir)?;
//! use dynamo_es::recode::{RecodeOptions, Recoder, Table};
//! use dynamo_es::Codec;
//!
//! let tables = [Table::snapshots("Snapshots"), Table::events("Events"), Table::views("account_summary")];
//! let recoder = Recoder::new(client, Codec::json().compressed(3)).with_options(
//!     RecodeOptions::default().with_segments(4).with_items_per_second(500).with_checkpoint("recode.json"),
//! );
//! println!("{}", recoder.report(&tables).await?); // dry run: writes nothing, not even recode.json
//! let report = recoder.run(&tables).await?; // resumes from recode.json if it was interrupted
//! assert!(report.complete);
//! # assert_eq!(report.tables[2].counts.items_recoded, 1);
//! # assert!(dir.join("recode.json").exists());
//! # std::env::set_current_dir(std::env::temp_dir())?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "compression"))]
//! # fn main() {}
//! ```

use std::fmt;

use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use crate::codec::Codec;
use crate::error::Result;
use crate::item::{AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID, VIEW_ID};

mod backfill;
mod checkpoint;
mod dictionary;
mod error;
mod identity;
mod options;
mod rate_limit;
mod report;
mod rewrite;
mod run;
mod settings;
mod stats;
#[cfg(test)]
mod tests;

pub use backfill::{backfill_slices, BackfillKey, BackfillOptions, BackfillReport};
pub use error::Error;
pub use options::{
    Progress, ProgressFn, RecodeOptions, StopHandle, DEFAULT_CONFLICT_RETRIES, DEFAULT_PAGE_SIZE,
};
pub use report::{Report, TableReport};
pub use settings::Settings;
pub use stats::Counts;

use run::{Shared, TableRun};

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

/// Recodes tables to a target [`Codec`]. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Recoder {
    client: Client,
    target: Codec,
    upstream: bool,
    options: RecodeOptions,
    dictionaries: dictionary::Dictionaries,
}

impl Recoder {
    /// A recoder writing with `target`, with [`RecodeOptions::default()`].
    pub fn new(client: Client, target: Codec) -> Self {
        Recoder {
            client,
            target,
            upstream: false,
            options: RecodeOptions::default(),
            dictionaries: dictionary::Dictionaries::default(),
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

    /// The target's name: the codec's, or `upstream`; followed by
    /// `+dictionary-ID(TYPE)` for each dictionary it writes with.
    pub fn target_name(&self) -> String {
        if self.upstream {
            "upstream".to_string()
        } else {
            format!("{}{}", self.target.name(), self.dictionaries.describe())
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
            let table_report = TableRun::run(self, table, &shared).await?;
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
        TableRun::run(self, table, &shared).await
    }
}
