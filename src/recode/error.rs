//! The failures of a recode run itself.
//!
//! Only what belongs to the run lives here: its checkpoint file, its scan
//! segment tasks, its own state. A failure of DynamoDB or of a codec stays
//! the crate's [`Error`](crate::Error) as everywhere else, and an item the
//! run cannot read or convert is counted in the report, not raised. A
//! recode [`Error`] reaches callers boxed in
//! [`crate::Error::Recode`](crate::Error::Recode).

use std::path::PathBuf;

use super::settings::Settings;

/// Why a recode run failed, for a reason of its own: its checkpoint file,
/// a scan segment task, its own state. DynamoDB and codec failures are
/// the crate's other [`Error`](crate::Error) variants; this one reaches
/// callers boxed in [`crate::Error::Recode`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The checkpoint file could not be read, parsed or written, is of an
    /// unknown version, or is inconsistent.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What failed, with the underlying error.
        reason: String,
    },
    /// The checkpoint file holds progress of `table` from a run with other
    /// settings: resuming under the new ones would mix two runs. Nothing
    /// was scanned.
    #[error(
        "checkpoint {}: table {table} was started as {stored}; this run asks for {requested}. \
         Resume with the same settings, or use another checkpoint file",
        path.display()
    )]
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The table.
        table: String,
        /// The settings its progress was made with.
        stored: Settings,
        /// The settings of this run.
        requested: Settings,
    },
    /// The checkpoint file holds progress of a table of this name, but made
    /// on another table: another endpoint, region or account, or a table
    /// deleted and created again since. Resuming (or returning a finished
    /// report) would describe another table. Nothing was scanned.
    #[error(
        "checkpoint {}: table {table} is not the table this checkpoint was made on ({}). \
         A checkpoint resumes only the table it started on: use another checkpoint file, or \
         delete this one to start over",
        path.display(),
        differences.join("; ")
    )]
    CheckpointOtherTable {
        /// The checkpoint file.
        path: PathBuf,
        /// The table.
        table: String,
        /// What differs, one entry per field: the endpoint, region, table
        /// ARN, table id or creation time, as recorded and as found now.
        differences: Vec<String>,
    },
    /// A scan segment's task panicked or was cancelled. Its pages done so
    /// far are in the checkpoint.
    #[error("table {table}: scan segment {segment} failed: {reason}")]
    Segment {
        /// The table.
        table: String,
        /// The segment (0-based).
        segment: u32,
        /// What happened to the task.
        reason: String,
    },
    /// DynamoDB returned a scan position (`LastEvaluatedKey`) with an
    /// attribute that is not a string, number or binary, so it cannot be
    /// recorded in the checkpoint.
    #[error(
        "table {table}: scan key attribute {attribute} is {found}, not a string, number or binary"
    )]
    UnsupportedKey {
        /// The table.
        table: String,
        /// The key attribute.
        attribute: String,
        /// The value found.
        found: String,
    },
    /// The run's shared state is unusable (a lock was poisoned by a
    /// panicking segment, or a table's state is missing): a bug.
    #[error("recode internal error: {0}")]
    Internal(String),
}

impl From<Error> for crate::Error {
    fn from(err: Error) -> Self {
        crate::Error::Recode(Box::new(err))
    }
}
