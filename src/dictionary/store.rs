//! [`DictionaryStore`]: dictionary items in the snapshots table.
//!
//! **Invariant:** a dictionary item is written once, by a `PutItem`
//! conditioned on `attribute_not_exists(AggregateTypeAndId)`, and never
//! updated or overwritten. An id already taken by another dictionary gives
//! the new one another id (its header is rewritten before anything is
//! written with it); the same dictionary stored again (a retried put whose
//! response was lost) is the stored one.
//!
//! An item holds, besides its key `~dictionary/{id}`: `DictionaryId` (N),
//! `DictionaryAggregateType` (S), `TrainedAt` (N, Unix seconds),
//! `DictionaryBytes` (B), `DictionaryHash` (S, xxh3-64 of the bytes in
//! hex), and the sample it came from: `SampleTable` (S), `SampleEvents`,
//! `SampleBytes`, `HeldOutEvents`, `HeldOutPlainBytes`,
//! `HeldOutStoredBytes` (N).

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::Client;

use super::{dictionary_key, Dictionary, DictionaryInfo, Error as DictError};
use super::{Savings, TrainingSample};
use crate::error::{or_refused, Error, Result};
use crate::item::{b, get_b, get_n, get_s, n, s, Item, AGGREGATE_TYPE_AND_ID};
use crate::stream::{key_prefix_scan, Pages};

/// The smallest dictionary zstd trains (bytes).
pub const MIN_DICTIONARY_SIZE: usize = 256;
/// The largest dictionary stored: it must fit in one DynamoDB item with
/// room to spare (bytes).
pub const MAX_DICTIONARY_SIZE: usize = 300 * 1024;

const DICTIONARY_ID: &str = "DictionaryId";
const DICTIONARY_AGGREGATE_TYPE: &str = "DictionaryAggregateType";
const TRAINED_AT: &str = "TrainedAt";
const DICTIONARY_BYTES: &str = "DictionaryBytes";
const DICTIONARY_HASH: &str = "DictionaryHash";
const SAMPLE_TABLE: &str = "SampleTable";
const SAMPLE_EVENTS: &str = "SampleEvents";
const SAMPLE_BYTES: &str = "SampleBytes";
const HELD_OUT_EVENTS: &str = "HeldOutEvents";
const HELD_OUT_PLAIN_BYTES: &str = "HeldOutPlainBytes";
const HELD_OUT_STORED_BYTES: &str = "HeldOutStoredBytes";

/// How many other ids a new dictionary tries when its id is taken.
const ID_ATTEMPTS: u32 = 8;

/// Where dictionaries are stored: reserved items of a table (the snapshots
/// table, normally). See the [module docs](super).
#[derive(Debug, Clone)]
pub struct DictionaryStore {
    client: Client,
    table: String,
}

/// A trained dictionary not stored yet: store it with
/// [`DictionaryStore::put`] to write with it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub(super) bytes: Vec<u8>,
    pub(super) aggregate_type: String,
    pub(super) sample: TrainingSample,
}

impl Candidate {
    /// The saving measured on the held-out events.
    pub fn savings(&self) -> Savings {
        self.sample.held_out
    }

    /// The dictionary's size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// What it was trained on.
    pub fn sample(&self) -> &TrainingSample {
        &self.sample
    }
}

/// A stored dictionary and the saving it made on the held-out events.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct Trained {
    /// The stored dictionary.
    pub dictionary: Dictionary,
    /// The saving measured on the held-out events.
    pub savings: Savings,
}

impl DictionaryStore {
    /// Dictionaries in `table` (the snapshots table of the event store).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DictionaryStore {
            client,
            table: table.into(),
        }
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Stores a trained dictionary, never overwriting one: if its id is
    /// taken by another dictionary, it gets another id (its bytes' header
    /// is rewritten). Storing the same dictionary twice returns the stored
    /// one.
    pub async fn put(&self, candidate: Candidate) -> Result<Dictionary> {
        let Candidate {
            mut bytes,
            aggregate_type,
            sample,
        } = candidate;
        let first = header_id(&bytes);
        let trained_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for attempt in 0..=ID_ATTEMPTS {
            let id = header_id(&bytes);
            let info = DictionaryInfo {
                id,
                aggregate_type: aggregate_type.clone(),
                trained_at,
                size: bytes.len(),
                sample: sample.clone(),
            };
            let dictionary = Dictionary::prepare(info, bytes.clone(), &self.table)?;
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_item(&dictionary)))
                .condition_expression("attribute_not_exists(#key)")
                .expression_attribute_names("#key", AGGREGATE_TYPE_AND_ID)
                .send()
                .await;
            let refused = PutItemError::is_conditional_check_failed_exception;
            if or_refused(result, "PutItem", &self.table, refused)?.is_some() {
                tracing::info!(id, aggregate_type, table = %self.table, size = dictionary.bytes().len(), "zstd dictionary stored");
                return Ok(dictionary);
            }
            match self.get(id).await {
                Ok(stored)
                    if stored.bytes() == dictionary.bytes()
                        && stored.aggregate_type() == aggregate_type =>
                {
                    return Ok(stored)
                }
                _ => {
                    tracing::info!(id, attempt, table = %self.table, "zstd dictionary id taken; trying another");
                    let next = next_id(&bytes, attempt);
                    set_header_id(&mut bytes, next);
                }
            }
        }
        Err(DictError::IdCollision {
            first,
            attempts: ID_ATTEMPTS,
            table: self.table.clone(),
        }
        .into())
    }

    /// The dictionary `id`: one eventually consistent `GetItem` (half the
    /// read units of a strongly consistent one: 2 for a 16 KB dictionary),
    /// which cannot return a stale dictionary since none is ever changed;
    /// only if it finds nothing (a dictionary stored a moment ago), a
    /// strongly consistent one.
    pub async fn get(&self, id: u32) -> Result<Dictionary> {
        for consistent in [false, true] {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(AGGREGATE_TYPE_AND_ID, s(dictionary_key(id)))
                .consistent_read(consistent)
                .send()
                .await
                .map_err(|err| Error::from_sdk_on("GetItem", &self.table, err))?;
            if let Some(item) = out.item {
                return from_item(&item, id, &self.table);
            }
        }
        Err(DictError::NotFound {
            id,
            table: self.table.clone(),
        }
        .into())
    }

    /// Every stored dictionary, by id. A `Scan` of the whole table,
    /// filtered to dictionary items: meant for tools, not hot paths.
    pub async fn list(&self) -> Result<Vec<DictionaryInfo>> {
        let scan = key_prefix_scan(&self.client, &self.table, super::DICTIONARY_KEY_PREFIX);
        let (items, _) = Pages::scan(scan, None).collect().await?;
        let mut infos = items
            .iter()
            .filter(|item| super::is_dictionary_key(&crate::item::describe_key(item)))
            .map(|item| {
                let key = crate::item::describe_key(item);
                let id = get_n(item, &key, DICTIONARY_ID)?;
                Ok(from_item(item, id, &self.table)?.info().clone())
            })
            .collect::<Result<Vec<_>>>()?;
        infos.sort_by_key(|info| info.id);
        Ok(infos)
    }
}

/// The id in a dictionary's header (0 if it has none).
pub(super) fn header_id(bytes: &[u8]) -> u32 {
    zstd::zstd_safe::get_dict_id_from_dict(bytes).map_or(0, |id| id.get())
}

/// Writes `id` into a dictionary's header (bytes 4 to 8, little endian).
pub(super) fn set_header_id(bytes: &mut [u8], id: u32) {
    if let Some(field) = bytes.get_mut(4..8) {
        field.copy_from_slice(&id.to_le_bytes());
    }
}

/// An id for `bytes` (try `attempt`), in the part of zstd's range for
/// private dictionaries (32,768 to 2^31 - 1) that a frame header spells in
/// two bytes rather than four (32,768 to 65,535): two bytes saved on
/// every payload. The conditional put keeps ids unique.
pub(super) fn next_id(bytes: &[u8], attempt: u32) -> u32 {
    let mut seed = bytes.to_vec();
    seed.extend_from_slice(&attempt.to_le_bytes());
    let hash = xxhash_rust::xxh3::xxh3_64(&seed);
    u32::try_from(hash % 32_768 + 32_768).unwrap_or(32_768)
}

fn hash(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

fn to_item(dictionary: &Dictionary) -> Item {
    let info = dictionary.info();
    let sample = &info.sample;
    Item::from([
        (
            AGGREGATE_TYPE_AND_ID.to_string(),
            s(dictionary_key(info.id)),
        ),
        (DICTIONARY_ID.to_string(), n(info.id)),
        (
            DICTIONARY_AGGREGATE_TYPE.to_string(),
            s(&info.aggregate_type),
        ),
        (TRAINED_AT.to_string(), n(info.trained_at)),
        (DICTIONARY_BYTES.to_string(), b(dictionary.bytes().to_vec())),
        (DICTIONARY_HASH.to_string(), s(hash(dictionary.bytes()))),
        (SAMPLE_TABLE.to_string(), s(&sample.table)),
        (SAMPLE_EVENTS.to_string(), n(sample.events)),
        (SAMPLE_BYTES.to_string(), n(sample.bytes)),
        (HELD_OUT_EVENTS.to_string(), n(sample.held_out.events)),
        (
            HELD_OUT_PLAIN_BYTES.to_string(),
            n(sample.held_out.plain_bytes),
        ),
        (
            HELD_OUT_STORED_BYTES.to_string(),
            n(sample.held_out.stored_bytes),
        ),
    ])
}

/// Reads dictionary `id` from its item, checking it is whole: every
/// attribute present, the bytes hashing to the stored hash, their header
/// naming `id`. Anything else is [`DictError::Corrupt`].
fn from_item(item: &Item, id: u32, table: &str) -> Result<Dictionary> {
    let corrupt = |reason: String| -> Error {
        DictError::Corrupt {
            id,
            table: table.to_string(),
            reason,
        }
        .into()
    };
    let key = dictionary_key(id);
    let read = || -> Result<(DictionaryInfo, Vec<u8>, String)> {
        let stored_id: u32 = get_n(item, &key, DICTIONARY_ID)?;
        let bytes = get_b(item, &key, DICTIONARY_BYTES)?.to_vec();
        let info = DictionaryInfo {
            id: stored_id,
            aggregate_type: get_s(item, &key, DICTIONARY_AGGREGATE_TYPE)?.to_string(),
            trained_at: get_n(item, &key, TRAINED_AT)?,
            size: bytes.len(),
            sample: TrainingSample {
                table: get_s(item, &key, SAMPLE_TABLE)?.to_string(),
                events: get_n(item, &key, SAMPLE_EVENTS)?,
                bytes: get_n(item, &key, SAMPLE_BYTES)?,
                held_out: Savings {
                    events: get_n(item, &key, HELD_OUT_EVENTS)?,
                    plain_bytes: get_n(item, &key, HELD_OUT_PLAIN_BYTES)?,
                    stored_bytes: get_n(item, &key, HELD_OUT_STORED_BYTES)?,
                },
            },
        };
        let stored_hash = get_s(item, &key, DICTIONARY_HASH)?.to_string();
        Ok((info, bytes, stored_hash))
    };
    let (info, bytes, stored_hash) = read().map_err(|err| corrupt(err.to_string()))?;
    if info.id != id {
        return Err(corrupt(format!("its item holds DictionaryId {}", info.id)));
    }
    if stored_hash != hash(&bytes) {
        return Err(corrupt(format!(
            "its bytes hash to {}, not to the stored {stored_hash}",
            hash(&bytes)
        )));
    }
    Ok(Dictionary::prepare(info, bytes, table)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn new_ids_are_private_zstd_ids_and_land_in_the_header() {
        let mut bytes = vec![0x37, 0xA4, 0x30, 0xEC, 1, 0, 0, 0, 9, 9];
        assert_eq!(header_id(&bytes), 1);
        for attempt in 0..100 {
            let id = next_id(&bytes, attempt);
            assert!((32_768..65_536).contains(&id), "{id}");
            set_header_id(&mut bytes, id);
            assert_eq!(header_id(&bytes), id);
        }
        assert_ne!(next_id(&bytes, 0), next_id(&bytes, 1));
    }
}
