//! The checkpoint: a run's progress, table by table and segment by segment,
//! in memory and (optionally) in a file.
//!
//! A segment's state is the last evaluated key of the last page it
//! finished together with the [`Counts`] of every page up to that one, and
//! it is recorded only after the whole page was processed. The file is
//! replaced atomically after every page (a temporary file, synced, then
//! renamed), so it always holds a state of whole pages: a resumed run
//! rescans nothing it counted and counts nothing twice. A table's stored
//! progress is resumed only under the same [`Settings`](super::Settings), and only on the
//! same table: each table's [`TableIdentity`] (endpoint, region, ARN, table
//! id, creation time) is recorded when it starts and checked on every
//! later run.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::error::Error;
use super::identity::TableIdentity;
use super::settings::Settings;
use super::stats::{usize_of_u32, Counts};

/// The version of the checkpoint file format, the only one read. Versions
/// 1 and 2 do not record which table their progress belongs to, so they are
/// refused rather than trusted.
const CHECKPOINT_VERSION: u32 = 3;

/// One table's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TableState {
    #[serde(flatten)]
    pub settings: Settings,
    /// The table it was made on.
    pub identity: TableIdentity,
    /// One state per segment.
    #[serde(rename = "segments")]
    pub progress: Vec<SegmentState>,
}

impl TableState {
    /// A table not started yet under `settings`, on the table `identity`.
    pub fn new(settings: Settings, identity: TableIdentity) -> Self {
        TableState {
            progress: vec![SegmentState::default(); usize_of_u32(settings.segments)],
            settings,
            identity,
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

/// The version of a checkpoint file, read before the rest.
#[derive(Deserialize)]
struct Version {
    version: u32,
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
                    let Version { version } = serde_json::from_slice(&bytes)
                        .map_err(|err| failed(format!("cannot parse: {err}")))?;
                    if version < CHECKPOINT_VERSION {
                        return Err(failed(format!(
                            "version {version} was written by an earlier dynamo-es and does not \
                             record which table its progress belongs to (endpoint, table ARN, \
                             id and creation time), so it cannot be checked against the tables \
                             of this run. Finish that run with the version that started it, or \
                             delete the file to start over (a new run leaves items already \
                             recoded as they are)"
                        )));
                    }
                    if version > CHECKPOINT_VERSION {
                        return Err(failed(format!(
                            "unknown version {version} (this build reads version \
                             {CHECKPOINT_VERSION})"
                        )));
                    }
                    file = serde_json::from_slice(&bytes)
                        .map_err(|err| failed(format!("cannot parse: {err}")))?;
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    // Found out now, not after the tables are described.
                    let dir = path
                        .parent()
                        .filter(|dir| !dir.as_os_str().is_empty())
                        .unwrap_or(Path::new("."));
                    if !dir.is_dir() {
                        return Err(failed(format!(
                            "its directory {} does not exist; create it, or choose another path",
                            dir.display()
                        )));
                    }
                }
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

    /// True if progress is recorded in a file (not only in memory).
    pub fn has_file(&self) -> bool {
        self.path.is_some()
    }

    /// The stored state of `table`, or a new one under `settings` on the
    /// table `identity` if it has none. A stored state made on another
    /// table, or by a run with other settings, is an error.
    pub fn start(
        &self,
        table: &str,
        settings: Settings,
        identity: TableIdentity,
    ) -> Result<TableState, Error> {
        let mut file = self.lock()?;
        if let Some(stored) = file.tables.get(table) {
            let differences = stored.identity.differences(&identity);
            if !differences.is_empty() {
                return Err(Error::CheckpointOtherTable {
                    path: self.path(),
                    table: table.to_string(),
                    differences,
                });
            }
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
        let state = TableState::new(settings, identity);
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
    use crate::recode::TableKind;

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
        checkpoint
            .start("T", settings(), TableIdentity::example())
            .unwrap();
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
        let state = resumed
            .start("T", settings(), TableIdentity::example())
            .unwrap();
        assert_eq!(state.progress[1], segment);
        assert_eq!(state.progress[0], SegmentState::default());
        let other = Settings {
            segments: 3,
            ..settings()
        };
        let err = resumed
            .start("T", other, TableIdentity::example())
            .unwrap_err();
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
        assert!(resumed.start("T", dry, TableIdentity::example()).is_err());

        let missing = dir.join("missing").join("checkpoint.json");
        let err = Checkpointer::open(Some(&missing))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&missing.display().to_string())
                && err.contains(&format!(
                    "directory {} does not exist",
                    dir.join("missing").display()
                )),
            "{err}"
        );
        assert!(Checkpointer::open(Some(Path::new("in-the-working-directory.json"))).is_ok());

        std::fs::write(&path, b"{not json").unwrap();
        let err = Checkpointer::open(Some(&path)).err().unwrap();
        assert!(matches!(&err, Error::Checkpoint { .. }), "{err}");
        std::fs::write(&path, br#"{"version": 99, "tables": {}}"#).unwrap();
        let err = Checkpointer::open(Some(&path)).err().unwrap().to_string();
        assert!(err.contains("version 99"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpoint_resumes_only_the_table_it_was_made_on() {
        let dir = temp_dir();
        let path = dir.join("checkpoint.json");
        Checkpointer::open(Some(&path))
            .unwrap()
            .start("T", settings(), TableIdentity::example())
            .unwrap();
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["version"], CHECKPOINT_VERSION);
        assert_eq!(saved["tables"]["T"]["identity"]["table_id"], "6a1c");

        let resumed = Checkpointer::open(Some(&path)).unwrap();
        let recreated = TableIdentity {
            table_id: Some("9f2e".into()),
            ..TableIdentity::example()
        };
        let err = resumed.start("T", settings(), recreated).unwrap_err();
        assert!(
            matches!(&err, Error::CheckpointOtherTable { table, differences, .. }
                if table == "T" && differences.len() == 1),
            "{err}"
        );
        let message = err.to_string();
        for part in ["checkpoint.json", "table T", "table id 6a1c", "9f2e now"] {
            assert!(message.contains(part), "{part}: {message}");
        }
        let elsewhere = TableIdentity {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..TableIdentity::example()
        };
        let message = resumed
            .start("T", settings(), elsewhere)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "endpoint http://127.0.0.1:8000 in the checkpoint, http://127.0.0.1:9000 now"
            ),
            "{message}"
        );
        assert!(resumed
            .start("T", settings(), TableIdentity::example())
            .is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checkpoints_of_versions_without_table_identity_are_refused() {
        let dir = temp_dir();
        let path = dir.join("checkpoint.json");
        let version_2 = r#"{"version": 2, "tables": {"T": {
            "kind": "snapshots", "codec": "json+zstd-3", "dry_run": false,
            "allow_growth": false, "total_segments": 1, "segments": [
                {"done": true, "last_key": null, "counters": {"items_scanned": 5}}
            ]}}}"#;
        for old in [
            version_2.to_string(),
            version_2.replace("\"version\": 2", "\"version\": 1"),
        ] {
            std::fs::write(&path, old).unwrap();
            let err = Checkpointer::open(Some(&path)).err().unwrap();
            assert!(matches!(&err, Error::Checkpoint { .. }), "{err}");
            let message = err.to_string();
            assert!(
                message.contains("checkpoint.json")
                    && message.contains("earlier dynamo-es")
                    && message.contains("delete the file"),
                "{message}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
