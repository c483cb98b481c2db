//! What a finished run prints: the report on stdout (a table, or JSON with
//! `--json`), and on stderr what went unfinished or untouched, naming keys.

use std::io::Write;
use std::path::Path;

use dynamo_es::recode::Report;

use crate::args::Target;

/// Writes `report` to `out`, as JSON or as a table.
pub fn print_report(
    report: &Report,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    if json {
        writeln!(out, "{}", report.to_json()?)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(())
}

/// The lines for stderr: whether the run can resume, and which items were
/// left as they are and why (up to ten keys).
pub fn notes(report: &Report, target: &Target, checkpoint: Option<&Path>) -> Vec<String> {
    let mut notes = Vec::new();
    if !report.complete {
        notes.push(match checkpoint {
            Some(path) => format!(
                "stopped before the end; run the same command again to resume from {}",
                path.display()
            ),
            None => "stopped before the end; without --checkpoint a rerun starts over".to_string(),
        });
    }
    if report.items_unreadable() > 0 {
        notes.push(format!(
            "{} items could not be decoded and were left as they are (see the warnings above)",
            report.items_unreadable()
        ));
    }
    if report.items_not_convertible() > 0 {
        let keys: Vec<&str> = report
            .tables
            .iter()
            .flat_map(|t| t.not_convertible_keys.iter().map(String::as_str))
            .take(10)
            .collect();
        let target = match target {
            Target::Upstream => "upstream dynamo-es cannot read them".to_string(),
            Target::Codec(codec) => format!("they are not {}", codec.name()),
        };
        notes.push(format!(
            "{} items could not be converted exactly and were left as they are, so {target} \
             (for example: {})",
            report.items_not_convertible(),
            keys.join(", ")
        ));
    }
    notes
}
