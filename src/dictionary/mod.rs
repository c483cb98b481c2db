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
mod store;
mod train;

pub use crate::codec::dictionary::{Dictionary, DictionaryInfo, Savings, TrainingSample};
pub use crate::error::dictionary::Error;
pub use cache::{DictionaryCache, TableDictionaries};
pub use store::{Candidate, DictionaryStore, Trained, MAX_DICTIONARY_SIZE, MIN_DICTIONARY_SIZE};
pub use train::{
    train, TrainOptions, DEFAULT_DICTIONARY_SIZE, DEFAULT_SAMPLE_EVENTS, DEFAULT_SAMPLE_SEGMENTS,
    HELD_OUT_EVERY, MIN_SAMPLE_EVENTS,
};

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
        let encoder = dictionary
            .encoder_at(crate::codec::DEFAULT_COMPRESSION_LEVEL)
            .unwrap();
        CCtx::create()
            .compress_using_cdict(&mut old, &raw, encoder.cdict())
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
