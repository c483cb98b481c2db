//! A zstd dictionary as a value: its id, its bytes, zstd's digests of it
//! for compression and decompression, and what is recorded about it. The
//! codec compresses and decompresses with it; where dictionaries are
//! stored, fetched and cached is [`crate::dictionary`]'s business, which
//! hands them to a codec ([`Codec::with_dictionary`](super::Codec::with_dictionary),
//! [`Codec::with_dictionaries`](super::Codec::with_dictionaries)).
//!
//! **Invariant:** a `Dictionary` is immutable and its bytes are a zstd
//! dictionary whose header carries its id ([`Dictionary::prepare`] checks
//! both before digesting); it names the table (or other scope) it came
//! from, since an id is unique there only.

use std::fmt;
use std::sync::Arc;

use zstd::zstd_safe::{CDict, DDict};

use crate::error::dictionary::Error;

/// The first bytes of a zstd dictionary (magic number, little endian).
const DICTIONARY_MAGIC: [u8; 4] = [0x37, 0xA4, 0x30, 0xEC];

/// What is recorded about a dictionary besides its bytes.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictionaryInfo {
    /// The id zstd writes in the frames compressed with it.
    pub id: u32,
    /// The aggregate type it was trained for.
    pub aggregate_type: String,
    /// When it was trained, in seconds since the Unix epoch.
    pub trained_at: u64,
    /// The size of the dictionary, in bytes.
    pub size: usize,
    /// What it was trained on, and what it saved on the held-out events.
    pub sample: TrainingSample,
}

/// A zstd dictionary as stored, digested for compression and
/// decompression. Cheap to clone (shared).
///
/// Only [`DictionaryStore`](crate::dictionary::DictionaryStore) hands them out (after storing one, or loading
/// it), so every payload written with a `Dictionary` can be read back by
/// its id.
#[derive(Clone)]
pub struct Dictionary {
    inner: Arc<Inner>,
}

struct Inner {
    info: DictionaryInfo,
    /// The table it is stored in: its id is unique there only.
    table: String,
    bytes: Vec<u8>,
    decoder: DDict<'static>,
    encoder: CDict<'static>,
    level: i32,
}

impl fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dictionary")
            .field("info", &self.inner.info)
            .field("table", &self.inner.table)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Dictionary {
    /// Ids are unique per table: same id, same dictionary.
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id() && self.inner.bytes == other.inner.bytes
    }
}

impl Eq for Dictionary {}

impl Dictionary {
    /// Digests `bytes`, checking that they are a zstd dictionary whose
    /// header carries `info.id`.
    pub(crate) fn prepare(
        info: DictionaryInfo,
        bytes: Vec<u8>,
        table: &str,
    ) -> Result<Self, Error> {
        let corrupt = |reason: &str| Error::Corrupt {
            id: info.id,
            table: table.to_string(),
            reason: reason.to_string(),
        };
        if !bytes.starts_with(&DICTIONARY_MAGIC) {
            return Err(corrupt("not a zstd dictionary (bad magic number)"));
        }
        let header_id = zstd::zstd_safe::get_dict_id_from_dict(&bytes).map(|id| id.get());
        if header_id != Some(info.id) {
            return Err(corrupt(&format!(
                "its header names dictionary {}",
                header_id.unwrap_or(0)
            )));
        }
        let level = super::DEFAULT_COMPRESSION_LEVEL;
        let decoder = DDict::try_create(&bytes).ok_or_else(|| corrupt("zstd refuses it"))?;
        let encoder = CDict::try_create(&bytes, level).ok_or_else(|| corrupt("zstd refuses it"))?;
        Ok(Dictionary {
            inner: Arc::new(Inner {
                info,
                table: table.to_string(),
                bytes,
                decoder,
                encoder,
                level,
            }),
        })
    }

    /// Its id.
    pub fn id(&self) -> u32 {
        self.inner.info.id
    }

    /// The table it is stored in (where it was stored or loaded from).
    /// Its id names it in that table only: another table may hold another
    /// dictionary of the same id.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The aggregate type it was trained for.
    pub fn aggregate_type(&self) -> &str {
        &self.inner.info.aggregate_type
    }

    /// What is recorded about it.
    pub fn info(&self) -> &DictionaryInfo {
        &self.inner.info
    }

    /// The dictionary bytes, as zstd's trainer wrote them (with the id
    /// set).
    pub fn bytes(&self) -> &[u8] {
        &self.inner.bytes
    }

    pub(crate) fn decoder(&self) -> &DDict<'static> {
        &self.inner.decoder
    }

    /// The digested dictionary for compressing at `level`: the one made
    /// when it was loaded, or a new one at another level (`None` if zstd
    /// refuses to make it, which it does not for bytes it digested once).
    pub(crate) fn encoder_at(&self, level: i32) -> Option<EncoderAt> {
        if level == self.inner.level {
            Some(EncoderAt::Shared(self.clone()))
        } else {
            CDict::try_create(&self.inner.bytes, level).map(|cdict| EncoderAt::Own(Arc::new(cdict)))
        }
    }
}

/// A digested compression dictionary at some level.
#[derive(Clone)]
pub(crate) enum EncoderAt {
    /// The dictionary's own, at the default level.
    Shared(Dictionary),
    /// One made for another level.
    Own(Arc<CDict<'static>>),
}

impl EncoderAt {
    pub(crate) fn cdict(&self) -> &CDict<'static> {
        match self {
            EncoderAt::Shared(dictionary) => &dictionary.inner.encoder,
            EncoderAt::Own(cdict) => cdict,
        }
    }
}

/// Event payload and metadata bytes as plain JSON and as stored with a
/// dictionary.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Savings {
    /// Events measured.
    pub events: usize,
    /// Their payloads and metadata as plain JSON, in bytes.
    pub plain_bytes: usize,
    /// The same, as stored with the dictionary.
    pub stored_bytes: usize,
}

impl Savings {
    /// How many times fewer bytes are stored (plain / stored; 1 when
    /// nothing was measured).
    pub fn ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            return 1.0;
        }
        let plain = u32::try_from(self.plain_bytes).map_or(f64::from(u32::MAX), f64::from);
        let stored = u32::try_from(self.stored_bytes).map_or(f64::from(u32::MAX), f64::from);
        plain / stored
    }
}

impl fmt::Display for Savings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} held-out events: {} bytes as plain JSON, {} bytes with the dictionary ({:.2}x fewer)",
            self.events,
            self.plain_bytes,
            self.stored_bytes,
            self.ratio()
        )
    }
}

/// What a dictionary was trained on.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingSample {
    /// Where the events came from (the events table).
    pub table: String,
    /// Events trained on (held-out ones not included).
    pub events: usize,
    /// Their serialized payload and metadata bytes.
    pub bytes: usize,
    /// The saving measured on the held-out events.
    pub held_out: Savings,
}
