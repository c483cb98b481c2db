//! [`Settings`]: what a table's recode was started with, which its
//! checkpoint records and a resumed run must repeat.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::TableKind;

/// The settings a table's recode was started with. A checkpoint stores
/// them, and a run resuming from it must ask for the same.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// What the table holds.
    pub kind: TableKind,
    /// The target's name (a codec's name, or `upstream`).
    pub codec: String,
    /// True for a dry run.
    pub dry_run: bool,
    /// True if payloads may grow to reach the target format.
    pub allow_growth: bool,
    /// The number of scan segments.
    #[serde(rename = "total_segments")]
    pub segments: u32,
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} with codec {}, dry run {}, allow growth {}, {} segments",
            self.kind, self.codec, self.dry_run, self.allow_growth, self.segments
        )
    }
}
