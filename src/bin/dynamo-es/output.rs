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

/// What a run was asked for, as its notes need it.
pub struct Run<'a> {
    /// The target.
    pub target: &'a Target,
    /// The checkpoint file named, if any.
    pub checkpoint: Option<&'a Path>,
    /// True if nothing was written.
    pub dry_run: bool,
    /// True if payloads could grow to reach the target format.
    pub allow_growth: bool,
}

/// The lines for stderr: whether the run can resume, which items were left
/// as they are and why (up to ten keys), and how to move the items left in
/// another format.
pub fn notes(report: &Report, run: &Run<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    let checkpoint = run.checkpoint.filter(|_| !run.dry_run);
    if let (true, Some(path)) = (run.dry_run, run.checkpoint) {
        notes.push(format!(
            "a dry run keeps no checkpoint: {} was neither read nor written",
            path.display()
        ));
    }
    if !report.complete {
        notes.push(match checkpoint {
            Some(path) => format!(
                "stopped before the end; run the same command again to resume from {}",
                path.display()
            ),
            None if run.dry_run => {
                "stopped before the end; a dry run keeps no checkpoint, so a rerun starts over"
                    .to_string()
            }
            None => "stopped before the end; without --checkpoint a rerun starts over".to_string(),
        });
    }
    let other_format = report.items_other_format();
    if let (Target::Codec(codec), false, true) = (run.target, run.allow_growth, other_format > 0) {
        let codec = codec.name();
        notes.push(format!(
            "{other_format} items are not stored as {codec} and {} left as they are, because {codec} \
             would not make them smaller (as when moving back from compression to plain JSON): \
             add --allow-growth to move them anyway, or use --codec upstream to return to \
             upstream dynamo-es",
            if run.dry_run { "would be" } else { "were" }
        ));
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
        let target = match run.target {
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
