//! `dynamo-es forget SUBJECT...`: forgets data subjects, replacing each
//! one's data key with a tombstone in the key table (see
//! [`dynamo_es::encryption`]), one line of progress per subject.
//!
//! **Invariant:** with `--dry-run` it only reads (one `GetItem` per
//! subject) and says what forgetting would do; without it, it writes one
//! tombstone per subject and nothing else, and stops at the first error,
//! having forgotten exactly the subjects printed before it.

use std::io::Write;

use aws_sdk_dynamodb::Client;
use clap::Args;
use dynamo_es::encryption::{forget, subject_status, Forgot, DEFAULT_KEY_TABLE};

/// `dynamo-es forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The ids of the data subjects to forget.
    #[arg(required = true, value_name = "SUBJECT")]
    pub subjects: Vec<String>,
    /// The key table.
    #[arg(long, value_name = "TABLE", default_value = DEFAULT_KEY_TABLE)]
    pub keys_table: String,
    /// Say what forgetting would do, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Forgets (or, with `--dry-run`, looks up) each subject in turn, printing
/// a line per subject to `out`.
pub async fn execute(
    args: &ForgetArgs,
    client: Client,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let total = args.subjects.len();
    for (done, subject) in args.subjects.iter().enumerate() {
        let line = if args.dry_run {
            dry_run_line(subject_status(&client, &args.keys_table, subject).await?)
        } else {
            forgot_line(forget(&client, &args.keys_table, subject).await?)
        };
        writeln!(out, "[{}/{total}] {subject}: {line}", done + 1)?;
    }
    if args.dry_run {
        writeln!(out, "dry run: nothing written to {}", args.keys_table)?;
    }
    Ok(())
}

fn forgot_line(status: Forgot) -> &'static str {
    match status {
        Forgot::KeyDestroyed => "forgotten (its data key is destroyed)",
        Forgot::AlreadyForgotten => "already forgotten",
        Forgot::NoKey => "had no data key; a tombstone keeps one from being created",
    }
}

fn dry_run_line(status: Forgot) -> &'static str {
    match status {
        Forgot::KeyDestroyed => "has a data key: forgetting would destroy it",
        Forgot::AlreadyForgotten => "already forgotten",
        Forgot::NoKey => "has no data key: forgetting would write a tombstone",
    }
}
