//! The report of a recode: per table, and printed as an aligned table.
//!
//! A [`TableReport`] is derived from a table's checkpointed state only (its
//! settings and each segment's [`Counts`]), so a resumed run reports
//! exactly what an uninterrupted one would, and a finished checkpoint
//! reports without scanning. Its JSON is flat: the counters are flattened
//! into it under their own names.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::checkpoint::TableState;
use super::stats::{usize_of, Counts};
use super::TableKind;
use crate::error::Result;
use crate::size::read_units;

/// What a recode did (or, in a dry run, would do) to one table.
///
/// The counters are in [`counts`](Self::counts); in JSON they are fields of
/// the report itself (`items_scanned`, `bytes_before`, ...).
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
    /// What was counted. For an events table `rcu_per_load_*` are billed on
    /// the summed size, as a `Query` of the whole table would be.
    #[serde(flatten)]
    pub counts: Counts,
    /// Keys of not convertible items (at most 100 per scan segment).
    #[serde(default)]
    pub not_convertible_keys: Vec<String>,
    /// `bytes_after / bytes_before` (1 for an empty table).
    pub ratio: f64,
}

impl TableReport {
    /// The report of `table` from its state.
    pub(super) fn new(table: &str, state: &TableState) -> Self {
        let settings = &state.settings;
        let mut counts = Counts::sum(state.progress.iter().map(|s| &s.counters));
        if settings.kind == TableKind::Events && counts.items_scanned > 0 {
            // A query bills the summed size of the page, not each item.
            counts.rcu_per_load_before = read_units(usize_of(counts.bytes_before), false);
            counts.rcu_per_load_after = read_units(usize_of(counts.bytes_after), false);
        }
        TableReport {
            table: table.to_string(),
            kind: settings.kind,
            codec: settings.codec.clone(),
            dry_run: settings.dry_run,
            complete: state.progress.iter().all(|s| s.done),
            segments: settings.segments,
            not_convertible_keys: state
                .progress
                .iter()
                .flat_map(|s| s.not_convertible.iter().cloned())
                .collect(),
            ratio: ratio(counts.bytes_after, counts.bytes_before),
            counts,
        }
    }

    /// A "total" column over several tables.
    fn total(tables: &[TableReport]) -> TableReport {
        let counts = Counts::sum(tables.iter().map(|t| &t.counts));
        TableReport {
            table: "total".into(),
            kind: tables.first().map_or(TableKind::Events, |t| t.kind),
            codec: tables.first().map(|t| t.codec.clone()).unwrap_or_default(),
            dry_run: tables.iter().any(|t| t.dry_run),
            complete: tables.iter().all(|t| t.complete),
            segments: tables.iter().map(|t| t.segments).max().unwrap_or(1),
            not_convertible_keys: tables
                .iter()
                .flat_map(|t| t.not_convertible_keys.iter().cloned())
                .collect(),
            ratio: ratio(counts.bytes_after, counts.bytes_before),
            counts,
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
        self.tables.iter().map(|t| t.counts.items_unreadable).sum()
    }

    /// Items left in another format than the target's because it would not
    /// shrink them, over all tables (see [`Counts::items_other_format`]).
    pub fn items_other_format(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.counts.items_other_format)
            .sum()
    }

    /// Items that could not be converted exactly, over all tables.
    pub fn items_not_convertible(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.counts.items_not_convertible)
            .sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.tables.first() else {
            return writeln!(f, "no tables");
        };
        let mut columns: Vec<TableReport> = self.tables.clone();
        if self.tables.len() > 1 {
            columns.push(TableReport::total(&self.tables));
        }
        let dry_run = self.tables.iter().any(|t| t.dry_run);
        type Cell = fn(&TableReport) -> String;
        let rows: [(&str, Cell); 20] = [
            ("kind", |t| t.kind.name().to_string()),
            ("items", |t| thousands(t.counts.items_scanned)),
            (if dry_run { "to recode" } else { "recoded" }, |t| {
                thousands(t.counts.items_recoded)
            }),
            ("skipped", |t| thousands(t.counts.items_skipped)),
            ("  under compression threshold", |t| {
                thousands(t.counts.items_under_threshold)
            }),
            ("  not smaller", |t| thousands(t.counts.items_not_smaller)),
            ("  in another format", |t| {
                thousands(t.counts.items_other_format)
            }),
            ("skipped: writer won", |t| {
                thousands(t.counts.conflicts_skipped)
            }),
            ("unreadable", |t| thousands(t.counts.items_unreadable)),
            ("not convertible", |t| {
                thousands(t.counts.items_not_convertible)
            }),
            ("bytes before", |t| thousands(t.counts.bytes_before)),
            ("bytes after", |t| thousands(t.counts.bytes_after)),
            ("size ratio", |t| ratio_cell(t.ratio)),
            ("WCU per rewrite", |t| {
                change(
                    t.counts.wcu_per_rewrite_before,
                    t.counts.wcu_per_rewrite_after,
                )
            }),
            ("RCU per load", |t| {
                change(t.counts.rcu_per_load_before, t.counts.rcu_per_load_after)
            }),
            ("chunked snapshots", |t| {
                change(t.counts.chunked_before, t.counts.chunked_after)
            }),
            ("chunk items", |t| {
                change(t.counts.chunk_items_before, t.counts.chunk_items_after)
            }),
            ("newly fit in one item", |t| thousands(t.counts.newly_fit)),
            ("WCU of the recode", |t| thousands(t.counts.recode_wcu)),
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

/// `n` as an `f64` (exact below 2^53).
fn f64_of(n: u64) -> f64 {
    let high = u32::try_from(n >> 32).unwrap_or(u32::MAX);
    let low = u32::try_from(n & 0xFFFF_FFFF).unwrap_or(u32::MAX);
    f64::from(high) * 4_294_967_296.0 + f64::from(low)
}

/// `after / before`, 1 when `before` is 0.
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

/// `before → after`.
fn change(before: u64, after: u64) -> String {
    format!("{} → {}", thousands(before), thousands(after))
}

/// A ratio with its change in percent.
fn ratio_cell(ratio: f64) -> String {
    format!("{ratio:.3} ({:+.1}%)", (ratio - 1.0) * 100.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::settings::Settings;
    use super::*;

    fn report(table: &str, kind: TableKind, before: u64, after: u64) -> TableReport {
        let mut state = TableState::new(
            Settings {
                kind,
                codec: "json".into(),
                dry_run: true,
                allow_growth: false,
                segments: 2,
            },
            Default::default(),
        );
        for segment in &mut state.progress {
            segment.done = true;
        }
        let counts = &mut state.progress[0].counters;
        counts.items_scanned = 3;
        counts.items_recoded = 2;
        counts.items_skipped = 1;
        counts.bytes_before = before;
        state.progress[1].counters.bytes_after = after;
        TableReport::new(table, &state)
    }

    #[test]
    fn numbers_print_readably() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), text);
        }
        assert_eq!(ratio_cell(0.25), "0.250 (-75.0%)");
        assert_eq!(ratio(5, 0), 1.0);
        assert_eq!(f64_of(u64::from(u32::MAX) + 7), 4_294_967_302.0);
        assert_eq!(f64_of(1 << 52), 4_503_599_627_370_496.0);
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
        assert_eq!(report.tables[0].counts.rcu_per_load_before, 3);
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
        // The counters stay flat fields of each table in JSON.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let table = &value["tables"][0];
        assert_eq!(table["items_scanned"], 3);
        assert_eq!(table["rcu_per_load_before"], 3);
        assert_eq!(table["wcu_per_rewrite_after"], 0);
        assert!(table.get("counts").is_none(), "{json}");
        assert_eq!(Report::default().to_string(), "no tables\n");
    }
}
