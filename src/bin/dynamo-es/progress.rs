//! The progress bars: one indicatif bar per table, sized by DynamoDB's
//! approximate item count, drawn on stderr only when it is a terminal.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::Mutex;

use aws_sdk_dynamodb::Client;
use dynamo_es::recode::{Progress, Table};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

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
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/~{len} items ({rate}) {msg}"
            } else {
                "{prefix} [{elapsed_precise}] {spinner} {pos} items ({rate}) {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn fmt::Write| {
                        let _ = w.write_str(&rate(state.per_sec()));
                    },
                ));
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

/// Items per second, rounded to a whole number with thousands separators:
/// `199,523/s`.
fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec < 0.5 {
        return "0/s".to_string();
    }
    let digits = format!("{per_sec:.0}");
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 2);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str("/s");
    out
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

/// The figures the CLI prints: the rates of the bars here, and the dates of
/// `dictionary list` (in builds with `compression`).
#[cfg(test)]
mod tests {
    use super::rate;
    #[cfg(feature = "compression")]
    use crate::dictionary::date;

    #[cfg(feature = "compression")]
    #[test]
    fn dates_print_as_rfc_3339() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn rates_print_as_whole_items_per_second() {
        assert_eq!(rate(199_523.456), "199,523/s");
        assert_eq!(rate(999.5), "1,000/s");
        assert_eq!(rate(12.4), "12/s");
        assert_eq!(rate(0.2), "0/s");
        assert_eq!(rate(f64::NAN), "0/s");
        assert_eq!(rate(f64::INFINITY), "0/s");
        assert_eq!(rate(1_234_567.0), "1,234,567/s");
    }
}
