//! zstd dictionaries trained per aggregate type: small events cost less.
//!
//! A small event (a few hundred bytes of JSON) does not compress on its
//! own: zstd has too little of it to learn from. A dictionary trained on an
//! aggregate type's own events holds what those events share (field names,
//! enum tags, common values), and compresses each of them about 3×: see
//! the "Dictionaries" section of `docs/BENCHMARKS.md` for the measured
//! figures. Queries bill the summed item sizes of a page, so that saving
//! carries into read units as well as storage.
//!
//! **Invariant:** a dictionary is immutable and identified, in the table
//! that stores it, by its 32-bit id, which zstd writes in the header of the
//! dictionary and in the `Dictionary_ID` field of every frame compressed
//! with it. A stored payload therefore says which dictionary it needs, and
//! a reader fetches that dictionary by id from the table it reads
//! ([`DictionaryCache::prefetch`]) before decoding it. A dictionary item is
//! written once, by a conditional put, and never overwritten; two
//! dictionaries of one table never share an id, but two tables may each
//! hold one of the same id: the cache is keyed by table and id, and every
//! frame written with a dictionary carries zstd's content checksum, so a
//! payload decoded with another table's dictionary is
//! [`Error::Mismatch`], never another value. (Frames written before
//! checksums, by earlier versions, have only the table and id key to
//! protect them.)
//!
//! # Storage
//!
//! Dictionaries live in the snapshots table, in reserved items whose key is
//! `~dictionary/{id}` ([`dictionary_key`]). Aggregate keys are
//! `{type}:{id}` and always contain a `:`, and chunk keys start with
//! `~chunk/`; a dictionary key has no `:`, so it can never collide with
//! either. The items carry none of the snapshot attributes (`Payload`,
//! `CurrentSnapshot`, …); `recode` skips them. A table that never held a
//! dictionary pays nothing: no new table, and no extra read on any path,
//! since a read only looks for a dictionary when a payload's frame header
//! names one.
//!
//! Each process loads a dictionary once (one `GetItem`) and keeps it in a
//! [`DictionaryCache`], under its table and id, shared by every clone of
//! the repository. A load that fails is not kept: the next read tries
//! again.
//!
//! Every read path reads dictionary payloads: loads and `get_events`,
//! snapshots (`get_snapshot`, `DynamoStore`'s load),
//! replay streams (`stream_events`, `stream_all_events`), `recode` and
//! `report`, and projections: a
//! [`Dispatcher`](crate::projection::Dispatcher) whose decoder comes from
//! [`EventDecoder::from_repository`](crate::projection::EventDecoder::from_repository)
//! (or was given
//! [`with_dictionaries`](crate::projection::EventDecoder::with_dictionaries))
//! prefetches the dictionaries of each batch of stream records before
//! decoding it, for the projector, the Lambda adapter and a rebuild alike.
//!
//! # Train, roll out, retire
//!
//! 1. **Train** on existing events: `dynamo-es dictionary train
//!    --events-table Events --aggregate-type Account` (or
//!    [`DictionaryStore::train`]). It samples events with a parallel
//!    scan, trains on 90% of the sample, stores the dictionary and prints
//!    the saving measured on the 10% held out.
//! 2. **Roll out readers first.** Every instance that reads the table must
//!    run a version of this crate with the `compression` feature; readers
//!    fetch dictionaries by id on their own, with no configuration (a
//!    projection's decoder needs the store: build it with
//!    [`EventDecoder::from_repository`](crate::projection::EventDecoder::from_repository)).
//!    Upstream `dynamo-es`, and this crate without `compression`, cannot
//!    read dictionary payloads ([`crate::Error::FeatureDisabled`]).
//! 3. **Write with it**:
//!    [`DynamoEventRepository::with_dictionary`](crate::DynamoEventRepository::with_dictionary)
//!    (new events of that type), and optionally
//!    `dynamo-es recode --dictionary ID` to move existing events onto it.
//! 4. **Retire** a dictionary by recoding away from it first: `dynamo-es
//!    recode` to another dictionary or to plain JSON, then `dynamo-es
//!    report` to check that no payload still uses it. Never delete a
//!    dictionary item while payloads may reference it: those payloads
//!    would become unreadable ([`Error::NotFound`]). Keeping it costs one
//!    small item.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cqrs_es::persist::PersistedEventRepository;
//! use dynamo_es::dictionary::{DictionaryStore, TrainOptions};
//! use dynamo_es::testing::aggregates::Ledger;
//! use dynamo_es::{Codec, DynamoEventRepository};
//! # let server = dynamo_es::testing::EmbeddedDynamo::start()?;
//! # let client = server.client();
//! # dynamo_es::create_event_tables(&client, "Events", "Snapshots").await?;
//! # let plain = DynamoEventRepository::new(client.clone()).with_codec(Codec::json());
//! # for n in 0..30u64 {
//! #     let events: Vec<_> = (0..10u64)
//! #         .map(|i| cqrs_es::persist::SerializedEvent::new(
//! #             format!("a{n}"), i as usize + 1, "Ledger".into(), "Posted".into(), "1".into(),
//! #             dynamo_es::testing::fixtures::small_event(n * 10 + i), serde_json::json!({}),
//! #         ))
//! #         .collect();
//! #     plain.persist::<Ledger>(&events, None).await?;
//! # }
//!
//! // Sample the Ledger events, train, store, and measure on held-out ones.
//! let store = DictionaryStore::new(client.clone(), "Snapshots");
//! let trained = store.train("Events", "Ledger", TrainOptions::default()).await?;
//! println!("{}", trained.savings); // 30 held-out events: ... (2.9x fewer)
//! assert!(trained.savings.ratio() > 2.0);
//!
//! // New Ledger events are written with it; every reader fetches it by id.
//! let repo = DynamoEventRepository::new(client).with_dictionary("Ledger", trained.dictionary);
//! # let _ = repo;
//! # Ok(())
//! # }
//! ```

mod cache;
mod error;
mod store;
mod train;

use std::fmt;
use std::sync::Arc;

use zstd::zstd_safe::{CDict, DDict};

pub use cache::DictionaryCache;
pub use error::Error;
pub use store::{DictionaryStore, MAX_DICTIONARY_SIZE, MIN_DICTIONARY_SIZE};
pub use train::{
    train, Candidate, Savings, TrainOptions, Trained, TrainingSample, DEFAULT_DICTIONARY_SIZE,
    DEFAULT_SAMPLE_EVENTS, DEFAULT_SAMPLE_SEGMENTS, HELD_OUT_EVERY, MIN_SAMPLE_EVENTS,
};

/// The first bytes of a zstd dictionary (magic number, little endian).
const DICTIONARY_MAGIC: [u8; 4] = [0x37, 0xA4, 0x30, 0xEC];

/// The key of dictionary `id` in the snapshots table: `~dictionary/{id}`.
///
/// It contains no `:`, so it never collides with an aggregate key
/// (`{type}:{id}`), and it does not start with `~chunk/`, so it never
/// collides with a snapshot chunk key.
pub fn dictionary_key(id: u32) -> String {
    format!("{DICTIONARY_KEY_PREFIX}{id}")
}

/// What every dictionary key starts with.
pub const DICTIONARY_KEY_PREFIX: &str = "~dictionary/";

/// True if `key` is a dictionary item's key: the prefix and a decimal id,
/// no `:` (an aggregate of type `~dictionary/1` has keys `~dictionary/1:…`).
pub fn is_dictionary_key(key: &str) -> bool {
    key.strip_prefix(DICTIONARY_KEY_PREFIX)
        .is_some_and(|id| id.parse::<u32>().is_ok())
}

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
/// Only [`DictionaryStore`] hands them out (after storing one, or loading
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
    fn prepare(info: DictionaryInfo, bytes: Vec<u8>, table: &str) -> Result<Self, Error> {
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
        let level = crate::codec::DEFAULT_COMPRESSION_LEVEL;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A dictionary trained on 200 small events, as table `T` stores it.
    fn dictionary() -> Dictionary {
        let events: Vec<_> = (0..200u64)
            .map(|n| {
                cqrs_es::persist::SerializedEvent::new(
                    format!("a{}", n % 20),
                    usize::try_from(n).unwrap() + 1,
                    "Order".into(),
                    "Priced".into(),
                    "1".into(),
                    serde_json::json!({"amount": n * 7 % 1000, "currency": if n.is_multiple_of(2) { "CHF" } else { "EUR" }, "account": format!("acct-{}", n % 13)}),
                    serde_json::json!({}),
                )
            })
            .collect();
        let options = TrainOptions::default().with_size(4096);
        let candidate = train("Order", "Events", &events, &options).unwrap();
        let info = DictionaryInfo {
            id: store::header_id(&candidate.bytes),
            aggregate_type: candidate.aggregate_type.clone(),
            trained_at: 0,
            size: candidate.bytes.len(),
            sample: candidate.sample.clone(),
        };
        Dictionary::prepare(info, candidate.bytes, "T").unwrap()
    }

    #[test]
    fn frames_carry_a_checksum_and_frames_without_one_still_read() {
        use zstd::zstd_safe::CCtx;
        let dictionary = dictionary();
        let value = serde_json::json!({"amount": 42, "currency": "CHF", "account": "acct-3"});
        let raw = serde_json::to_vec(&value).unwrap();
        let codec = crate::Codec::json().with_dictionary(&dictionary);
        let frame = codec.encode(&value).unwrap();
        // As earlier versions wrote them: no checksum.
        let mut old = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
        CCtx::create()
            .compress_using_cdict(&mut old, &raw, &dictionary.inner.encoder)
            .unwrap();
        // The checksum flag (bit 2 of the frame header descriptor), and
        // its 4 bytes: the only difference.
        assert_eq!(frame[4] & 0b100, 0b100);
        assert_eq!(old[4] & 0b100, 0);
        assert_eq!(frame.len(), old.len() + 4);
        assert_eq!(frame[5..frame.len() - 4], old[5..]);
        for bytes in [&frame, &old] {
            assert_eq!(codec.decode(bytes).unwrap(), value);
        }
    }

    #[test]
    fn dictionary_keys_never_look_like_aggregate_or_chunk_keys() {
        for id in [0, 32_768, u32::MAX] {
            let key = dictionary_key(id);
            assert!(!key.contains(':'), "{key}");
            assert!(!key.starts_with("~chunk/"), "{key}");
            assert!(is_dictionary_key(&key));
        }
        assert!(!is_dictionary_key(&crate::item::chunk_key("T", "1", 0)));
        assert!(!is_dictionary_key(&crate::item::aggregate_key(
            "~dictionary/1",
            "x"
        )));
        assert_ne!(dictionary_key(1), dictionary_key(11));
    }
}
