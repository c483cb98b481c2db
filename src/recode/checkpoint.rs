//! The checkpoint: a run's progress, table by table and segment by segment,
//! in memory and (optionally) in a file.
//!
//! A segment's state is the last evaluated key of the last page it
//! finished together with the [`Counts`] of every page up to that one, and
//! it is recorded only after the whole page was processed. The file is
//! replaced atomically after every page (a temporary file, synced, then
//! renamed), so it always holds a state of whole pages: a resumed run
//! rescans nothing it counted and counts nothing twice. A table's stored
//! progress is resumed only under the same [`Settings`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::error::Error;
use super::stats::{usize_of_u32, Counts};
use super::TableKind;

/// The version of the checkpoint file format written. Version 1 (counters
/// named `wcu_before`, `rcu_before`, ...) is still read.
const CHECKPOINT_VERSION: u32 = 2;
/// The oldest version read.
const OLDEST_VERSION: u32 = 1;

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

/// One table's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TableState {
    #[serde(flatten)]
    pub settings: Settings,
    /// One state per segment.
    #[serde(rename = "segments")]
    pub progress: Vec<SegmentState>,
}

impl TableState {
    /// A table not started yet under `settings`.
    pub fn new(settings: Settings) -> Self {
        TableState {
            progress: vec![SegmentState::default(); usize_of_u32(settings.segments)],
            settings,
        }
    }
}

/// One segment's progress: the last evaluated key of the last page done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct SegmentState {
    pub done: bool,
    pub last_key: Option<BTreeMap<String, KeyValue>>,
    pub counters: Counts,
    /// Keys of the segment's not convertible items, the first ones only.
    #[serde(default)]
    pub not_convertible: Vec<String>,
}

/// A key attribute value as stored in a checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum KeyValue {
    /// A string.
    S(String),
    /// A number, as its decimal text.
    N(String),
    /// Binary.
    B(Vec<u8>),
}

/// A scan position of `table` as stored in a checkpoint.
pub(super) fn key_to_checkpoint(
    table: &str,
    key: &HashMap<String, AttributeValue>,
) -> Result<BTreeMap<String, KeyValue>, Error> {
    key.iter()
        .map(|(name, value)| {
            let value = match value {
                AttributeValue::S(s) => KeyValue::S(s.clone()),
                AttributeValue::N(n) => KeyValue::N(n.clone()),
                AttributeValue::B(b) => KeyValue::B(b.as_ref().to_vec()),
                other => {
                    return Err(Error::UnsupportedKey {
                        table: table.to_string(),
                        attribute: name.clone(),
                        found: format!("{other:?}"),
                    })
                }
            };
            Ok((name.clone(), value))
        })
        .collect()
}

/// A scan position from a checkpoint, as DynamoDB takes it.
pub(super) fn key_from_checkpoint(
    key: &BTreeMap<String, KeyValue>,
) -> HashMap<String, AttributeValue> {
    key.iter()
        .map(|(name, value)| {
            let value = match value {
                KeyValue::S(s) => AttributeValue::S(s.clone()),
                KeyValue::N(n) => AttributeValue::N(n.clone()),
                KeyValue::B(b) => AttributeValue::B(Blob::new(b.clone())),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The checkpoint file: every table of a run, segment by segment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    tables: BTreeMap<String, TableState>,
}

/// The run's progress, in memory and (optionally) in a file.
pub(super) struct Checkpointer {
    path: Option<PathBuf>,
    file: Mutex<CheckpointFile>,
}

impl Checkpointer {
    /// Reads `path` if it exists.
    pub fn open(path: Option<&Path>) -> Result<Self, Error> {
        let mut file = CheckpointFile {
            version: CHECKPOINT_VERSION,
            tables: BTreeMap::new(),
        };
        if let Some(path) = path {
            let failed = |reason: String| Error::Checkpoint {
                path: path.to_path_buf(),
                reason,
            };
            match std::fs::read(path) {
                Ok(bytes) => {
                    file = serde_json::from_slice(&bytes)
                        .map_err(|err| failed(format!("cannot parse: {err}")))?;
                    if !(OLDEST_VERSION..=CHECKPOINT_VERSION).contains(&file.version) {
                        return Err(failed(format!(
                            "unknown version {} (this build reads versions {OLDEST_VERSION} \
                             to {CHECKPOINT_VERSION})",
                            file.version
                        )));
                    }
                    // Older versions are read as this one, and saved as it.
                    file.version = CHECKPOINT_VERSION;
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(failed(format!("cannot read: {err}"))),
            }
        }
        Ok(Checkpointer {
            path: path.map(Path::to_path_buf),
            file: Mutex::new(file),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, CheckpointFile>, Error> {
        self.file
            .lock()
            .map_err(|_| Error::Internal("recode checkpoint lock poisoned".into()))
    }

    fn path(&self) -> PathBuf {
        self.path.clone().unwrap_or_default()
    }

    /// The stored state of `table`, or a new one under `settings` if it has
    /// none. A stored state from a run with other settings is an error.
    pub fn start(&self, table: &str, settings: Settings) -> Result<TableState, Error> {
        let mut file = self.lock()?;
        if let Some(stored) = file.tables.get(table) {
            if stored.settings != settings {
                return Err(Error::CheckpointMismatch {
                    path: self.path(),
                    table: table.to_string(),
                    stored: stored.settings.clone(),
                    requested: settings,
                });
            }
            if stored.progress.len() != usize_of_u32(stored.settings.segments) {
                return Err(Error::Checkpoint {
                    path: self.path(),
                    reason: format!(
                        "table {table} has the progress of {} segments, not of its {}",
                        stored.progress.len(),
                        stored.settings.segments
                    ),
                });
            }
            return Ok(stored.clone());
        }
        let state = TableState::new(settings);
        file.tables.insert(table.to_string(), state.clone());
        self.save(&file)?;
        Ok(state)
    }

    /// The state of a started `table`.
    pub fn state(&self, table: &str) -> Result<TableState, Error> {
        let file = self.lock()?;
        file.tables
            .get(table)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no recode state for table {table}")))
    }

    /// Records a segment's progress and saves the file.
    pub fn record(&self, table: &str, segment: u32, state: &SegmentState) -> Result<(), Error> {
        let mut file = self.lock()?;
        let slot = file
            .tables
            .get_mut(table)
            .and_then(|t| t.progress.get_mut(usize_of_u32(segment)));
        let Some(slot) = slot else {
            return Err(Error::Internal(format!(
                "no recode state for table {table} segment {segment}"
            )));
        };
        *slot = state.clone();
        self.save(&file)
    }

    /// Writes the file atomically: a temporary file, synced, then renamed.
    fn save(&self, file: &CheckpointFile) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let failed = |reason: String| Error::Checkpoint {
            path: path.clone(),
            reason,
        };
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let json = serde_json::to_vec_pretty(file)
            .map_err(|err| failed(format!("cannot serialize: {err}")))?;
        let write = || -> std::io::Result<()> {
            let mut out = std::fs::File::create(&temp)?;
            out.write_all(&json)?;
            out.sync_all()
        };
        write().map_err(|err| failed(format!("cannot write {}: {err}", temp.display())))?;
        std::fs::rename(&temp, path).map_err(|err| {
            failed(format!(
                "cannot rename {} into place: {err}",
                temp.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn checkpoint_keys_round_trip_every_key_type() {
        let key: HashMap<String, AttributeValue> = HashMap::from([
            ("AggregateTypeAndId".into(), AttributeValue::S("Ü:1".into())),
            ("AggregateIdSequence".into(), AttributeValue::N("42".into())),
            ("Bin".into(), AttributeValue::B(Blob::new(vec![0, 255, 7]))),
        ]);
        let stored = key_to_checkpoint("T", &key).unwrap();
        let json = serde_json::to_string(&stored).unwrap();
        let back: BTreeMap<String, KeyValue> = serde_json::from_str(&json).unwrap();
        assert_eq!(key_from_checkpoint(&back), key);
        let bad = HashMap::from([("L".to_string(), AttributeValue::Bool(true))]);
        let err = key_to_checkpoint("T", &bad).unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedKey { table, attribute, .. } if table == "T" && attribute == "L"),
            "{err}"
        );
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dynamo-es-recode-unit-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn settings() -> Settings {
        Settings {
            kind: TableKind::Snapshots,
            codec: "json+zstd-3".into(),
            dry_run: false,
            allow_growth: false,
            segments: 2,
        }
    }

    #[test]
    fn checkpoint_files_are_saved_resumed_and_checked() {
        let dir = temp_dir();
        let path = dir.join("checkpoint.json");
        let checkpoint = Checkpointer::open(Some(&path)).unwrap();
        checkpoint.start("T", settings()).unwrap();
        let mut segment = SegmentState {
            done: false,
            last_key: Some(BTreeMap::from([(
                "AggregateTypeAndId".to_string(),
                KeyValue::S("A:1".into()),
            )])),
            counters: Counts::default(),
            not_convertible: vec!["A:2".into()],
        };
        segment.counters.items_scanned = 9;
        segment.counters.wcu_per_rewrite_before = 4;
        checkpoint.record("T", 1, &segment).unwrap();
        assert!(matches!(
            checkpoint.record("T", 2, &segment),
            Err(Error::Internal(_))
        ));
        assert!(
            !dir.join("checkpoint.json.tmp").exists(),
            "renamed into place"
        );

        let resumed = Checkpointer::open(Some(&path)).unwrap();
        let state = resumed.start("T", settings()).unwrap();
        assert_eq!(state.progress[1], segment);
        assert_eq!(state.progress[0], SegmentState::default());
        let other = Settings {
            segments: 3,
            ..settings()
        };
        let err = resumed.start("T", other).unwrap_err();
        assert!(
            matches!(&err, Error::CheckpointMismatch { stored, requested, .. }
                if stored.segments == 2 && requested.segments == 3),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("checkpoint.json") && message.contains("3 segments"),
            "{message}"
        );
        let dry = Settings {
            dry_run: true,
            ..settings()
        };
        assert!(resumed.start("T", dry).is_err());

        std::fs::write(&path, b"{not json").unwrap();
        let err = Checkpointer::open(Some(&path)).err().unwrap();
        assert!(matches!(&err, Error::Checkpoint { .. }), "{err}");
        std::fs::write(&path, br#"{"version": 99, "tables": {}}"#).unwrap();
        let err = Checkpointer::open(Some(&path)).err().unwrap().to_string();
        assert!(err.contains("version 99"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_1_checkpoints_resume_and_are_saved_as_version_2() {
        let dir = temp_dir();
        let path = dir.join("checkpoint.json");
        let version_1 = r#"{"version": 1, "tables": {"T": {
            "kind": "snapshots", "codec": "json+zstd-3", "dry_run": false,
            "allow_growth": false, "total_segments": 2, "segments": [
                {"done": true, "last_key": null, "counters": {"items_scanned": 5,
                    "wcu_before": 7, "wcu_after": 3, "rcu_before": 6, "rcu_after": 2}},
                {"done": false, "last_key": {"AggregateTypeAndId": {"S": "A:1"}},
                    "counters": {}}
            ]}}}"#;
        std::fs::write(&path, version_1).unwrap();
        let checkpoint = Checkpointer::open(Some(&path)).unwrap();
        let state = checkpoint.start("T", settings()).unwrap();
        let counters = state.progress[0].counters;
        assert_eq!(
            (
                counters.items_scanned,
                counters.wcu_per_rewrite_before,
                counters.rcu_per_load_after
            ),
            (5, 7, 2)
        );
        checkpoint.record("T", 1, &state.progress[1]).unwrap();
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["version"], CHECKPOINT_VERSION);
        let table = &saved["tables"]["T"];
        assert_eq!(table["total_segments"], 2);
        assert_eq!(
            table["segments"][0]["counters"]["wcu_per_rewrite_before"],
            7
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
