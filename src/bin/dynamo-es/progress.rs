//! The progress bars: one indicatif bar per table, sized by DynamoDB's
//! approximate item count, drawn on stderr only when it is a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use aws_sdk_dynamodb::Client;
use dynamo_es::recode::{Progress, Table};
use indicatif::{ProgressBar, ProgressStyle};

/// One progress bar per table, created when its first page is done.
pub struct Bars {
    enabled: bool,
    estimates: HashMap<String, u64>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars for `tables`, or hidden ones when not `enabled` or stderr is
    /// not a terminal (then no table is described for its estimate).
    pub async fn new(enabled: bool, client: &Client, tables: &[Table]) -> Self {
        let enabled = enabled && std::io::stderr().is_terminal();
        Bars {
            enabled,
            estimates: if enabled {
                estimates(client, tables).await
            } else {
                HashMap::new()
            },
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// Moves the table's bar to `progress`.
    pub fn update(&self, progress: &Progress) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars.entry(progress.table.clone()).or_insert_with(|| {
            if !self.enabled {
                return ProgressBar::hidden();
            }
            let estimate = self.estimates.get(&progress.table).copied().unwrap_or(0);
            // The default target is stderr, drawn only when it is a terminal.
            let bar = ProgressBar::new(estimate);
            let template = if estimate > 0 {
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/~{len} items ({per_sec}) {msg}"
            } else {
                "{prefix} [{elapsed_precise}] {spinner} {pos} items ({per_sec}) {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_prefix(progress.table.clone());
            bar
        });
        if bar
            .length()
            .is_some_and(|len| len > 0 && len < progress.items_scanned)
        {
            bar.set_length(progress.items_scanned);
        }
        bar.set_position(progress.items_scanned);
        bar.set_message(format!(
            "{} recoded, {} skipped",
            progress.items_recoded, progress.items_skipped
        ));
        if progress.finished {
            bar.finish();
        }
    }

    /// Leaves every bar where it is, before the report is printed.
    pub fn clear(&self) {
        if let Ok(bars) = self.bars.lock() {
            for bar in bars.values() {
                bar.abandon();
            }
        }
    }
}

/// Approximate item counts (DynamoDB refreshes them about every six hours).
/// The first table that cannot be described ends the estimates: the run
/// reports what is wrong, without waiting on every table here first.
async fn estimates(client: &Client, tables: &[Table]) -> HashMap<String, u64> {
    let mut estimates = HashMap::new();
    for table in tables {
        let Ok(out) = client.describe_table().table_name(&table.name).send().await else {
            break;
        };
        if let Some(count) = out.table().and_then(|t| t.item_count()) {
            estimates.insert(table.name.clone(), u64::try_from(count).unwrap_or(0));
        }
    }
    estimates
}
