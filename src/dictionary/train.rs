//! Training a dictionary: a sample of an aggregate type's events, zstd's
//! trainer, and the saving measured on events held out of the training.
//!
//! **Invariant:** the saving reported is measured on events the dictionary
//! was not trained on, with the very codec path that writes events
//! ([`event_to_item`](crate::item::event_to_item)), so it is what new
//! events of the same kind will save.

use std::fmt;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use cqrs_es::persist::SerializedEvent;

use super::{Dictionary, DictionaryCache, DictionaryInfo, DictionaryStore, Error as DictError};
use super::{MAX_DICTIONARY_SIZE, MIN_DICTIONARY_SIZE};
use crate::codec::Codec;
use crate::error::Result;
use crate::item::{event_to_item, item_to_event, s, AGGREGATE_TYPE};
use crate::stream;

/// The default number of events sampled.
pub const DEFAULT_SAMPLE_EVENTS: usize = 1000;
/// The default (maximum) dictionary size, in bytes.
pub const DEFAULT_DICTIONARY_SIZE: usize = 16 * 1024;
/// The default number of scan segments sampling reads concurrently.
pub const DEFAULT_SAMPLE_SEGMENTS: u32 = 4;
/// One sampled event in this many is held out of training to measure the
/// saving.
pub const HELD_OUT_EVERY: usize = 10;
/// The fewest events a dictionary is trained from.
pub const MIN_SAMPLE_EVENTS: usize = 20;

/// How a dictionary is trained (consuming builders).
///
/// ```
/// use dynamo_es::dictionary::TrainOptions;
///
/// let options = TrainOptions::default().with_sample(5_000).with_size(32 * 1024);
/// assert_eq!(options.sample(), 5_000);
/// ```
#[derive(Debug, Clone)]
pub struct TrainOptions {
    sample: usize,
    size: usize,
    segments: u32,
    codec: Codec,
}

impl Default for TrainOptions {
    /// [`DEFAULT_SAMPLE_EVENTS`] events, [`DEFAULT_DICTIONARY_SIZE`] bytes,
    /// [`DEFAULT_SAMPLE_SEGMENTS`] segments, for [`Codec::json()`].
    fn default() -> Self {
        TrainOptions {
            sample: DEFAULT_SAMPLE_EVENTS,
            size: DEFAULT_DICTIONARY_SIZE,
            segments: DEFAULT_SAMPLE_SEGMENTS,
            codec: Codec::json(),
        }
    }
}

impl TrainOptions {
    /// Samples up to `events` events (at least [`MIN_SAMPLE_EVENTS`]).
    pub fn with_sample(self, events: usize) -> Self {
        TrainOptions {
            sample: events.max(MIN_SAMPLE_EVENTS),
            ..self
        }
    }

    /// A dictionary of at most `bytes` bytes ([`MIN_DICTIONARY_SIZE`] to
    /// [`MAX_DICTIONARY_SIZE`]; others are refused when training).
    pub fn with_size(self, bytes: usize) -> Self {
        TrainOptions {
            size: bytes,
            ..self
        }
    }

    /// Samples with `segments` concurrent scan segments.
    pub fn with_segments(self, segments: u32) -> Self {
        TrainOptions {
            segments: segments.clamp(1, stream::MAX_SCAN_SEGMENTS),
            ..self
        }
    }

    /// Trains for payloads serialized in `codec`'s format (JSON or
    /// MessagePack), and measures the saving with it.
    pub fn with_codec(self, codec: Codec) -> Self {
        TrainOptions { codec, ..self }
    }

    /// Events sampled, at most.
    pub fn sample(&self) -> usize {
        self.sample
    }

    /// The largest dictionary, in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Scan segments read concurrently.
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// The codec the dictionary is trained for.
    pub fn codec(&self) -> &Codec {
        &self.codec
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

/// Trains a dictionary for `aggregate_type` on `events` (their payloads
/// and metadata, serialized in the format of the options' codec), holding
/// one event in [`HELD_OUT_EVERY`] out to measure the saving. `source`
/// says where the events came from (recorded with the dictionary).
pub fn train(
    aggregate_type: &str,
    source: &str,
    events: &[SerializedEvent],
    options: &TrainOptions,
) -> Result<Candidate> {
    if !(MIN_DICTIONARY_SIZE..=MAX_DICTIONARY_SIZE).contains(&options.size) {
        return Err(DictError::Size {
            size: options.size,
            min: MIN_DICTIONARY_SIZE,
            max: MAX_DICTIONARY_SIZE,
        }
        .into());
    }
    if events.len() < MIN_SAMPLE_EVENTS {
        return Err(DictError::TooFewEvents {
            aggregate_type: aggregate_type.to_string(),
            table: source.to_string(),
            found: events.len(),
            needed: MIN_SAMPLE_EVENTS,
        }
        .into());
    }
    let (held_out, trained_on): (Vec<_>, Vec<_>) = events
        .iter()
        .enumerate()
        .partition(|(index, _)| index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1);
    let mut samples = Vec::with_capacity(trained_on.len() * 2);
    for (_, event) in &trained_on {
        samples.push(options.codec.serialize_plain(&event.payload)?);
        samples.push(options.codec.serialize_plain(&event.metadata)?);
    }
    let sample_bytes = samples.iter().map(Vec::len).sum();
    let mut bytes =
        zstd::dict::from_samples(&samples, options.size).map_err(|err| DictError::Training {
            aggregate_type: aggregate_type.to_string(),
            reason: format!(
                "{err} ({} samples of {sample_bytes} bytes, dictionary of at most {} bytes)",
                samples.len(),
                options.size
            ),
        })?;
    let id = super::store::next_id(&bytes, 0);
    super::store::set_header_id(&mut bytes, id);
    let mut sample = TrainingSample {
        table: source.to_string(),
        events: trained_on.len(),
        bytes: sample_bytes,
        held_out: Savings::default(),
    };
    let info = DictionaryInfo {
        id,
        aggregate_type: aggregate_type.to_string(),
        trained_at: 0,
        size: bytes.len(),
        sample: sample.clone(),
    };
    let dictionary = Dictionary::prepare(info, bytes.clone(), source)?;
    let codec = options.codec.clone().with_dictionary(&dictionary);
    for (_, event) in &held_out {
        let (_, measured) = event_to_item(event, &codec)?;
        sample.held_out.events += 1;
        sample.held_out.plain_bytes += measured.plain;
        sample.held_out.stored_bytes += measured.stored;
    }
    Ok(Candidate {
        bytes,
        aggregate_type: aggregate_type.to_string(),
        sample,
    })
}

/// Up to `options.sample()` events of `aggregate_type` from
/// `events_table`, read with a parallel scan (stopped once enough were
/// read), decoded whatever their format (dictionaries resolved through
/// `store`).
pub(super) async fn sample(
    store: &DictionaryStore,
    events_table: &str,
    aggregate_type: &str,
    options: &TrainOptions,
) -> Result<Vec<SerializedEvent>> {
    let scan = store
        .client()
        .scan()
        .table_name(events_table)
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .filter_expression("#type = :type")
        .expression_attribute_names("#type", AGGREGATE_TYPE)
        .expression_attribute_values(":type", s(aggregate_type));
    let page_size = i32::try_from(options.sample.min(1000)).unwrap_or(1000);
    let mut pages = stream::parallel_scan(scan, options.segments, Some(page_size));
    let cache = DictionaryCache::new();
    let codec = Codec::json().with_dictionary_cache(cache.clone(), store.table());
    let mut events = Vec::with_capacity(options.sample);
    while events.len() < options.sample {
        let Some(page) = pages.next().await else {
            break;
        };
        let items = page?.page.items;
        cache.prefetch(store, &items).await?;
        for item in &items {
            if events.len() == options.sample {
                break;
            }
            if matches!(item.get(AGGREGATE_TYPE), Some(AttributeValue::S(t)) if t == aggregate_type)
            {
                events.push(item_to_event(item, &codec)?);
            }
        }
    }
    Ok(events)
}
