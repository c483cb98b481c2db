//! Training a dictionary: a sample of an aggregate type's events, zstd's
//! trainer, and the saving measured on events held out of the training.
//!
//! **Invariant:** the saving reported is measured on events the dictionary
//! was not trained on, with the very codec path that writes events
//! ([`event_to_item`](crate::item::event_to_item)), so it is what new
//! events of the same kind will save.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use cqrs_es::persist::SerializedEvent;

use super::{
    Candidate, Dictionary, DictionaryCache, DictionaryInfo, DictionaryStore, Error as DictError,
    Savings, Trained, TrainingSample,
};
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

impl DictionaryStore {
    /// Samples events of `aggregate_type` from `events_table`, trains a
    /// dictionary on them, stores it, and returns it with the saving it
    /// made on the held-out events. See [`TrainOptions`].
    pub async fn train(
        &self,
        events_table: &str,
        aggregate_type: &str,
        options: TrainOptions,
    ) -> Result<Trained> {
        let candidate = self
            .candidate(events_table, aggregate_type, &options)
            .await?;
        let savings = candidate.savings();
        let dictionary = self.put(candidate).await?;
        Ok(Trained {
            dictionary,
            savings,
        })
    }

    /// Samples events of `aggregate_type` from `events_table` and trains a
    /// dictionary on them, storing nothing: inspect its
    /// [`sample`](Candidate::sample) and [`savings`](Candidate::savings),
    /// then store it with [`put`](Self::put) (or drop it: a dry run).
    pub async fn candidate(
        &self,
        events_table: &str,
        aggregate_type: &str,
        options: &TrainOptions,
    ) -> Result<Candidate> {
        let events = sample(self, events_table, aggregate_type, options).await?;
        train(aggregate_type, events_table, &events, options)
    }
}

/// Up to `options.sample()` events of `aggregate_type` from
/// `events_table`, read with a parallel scan (stopped once enough were
/// read), decoded whatever their format (dictionaries resolved through
/// `store`).
async fn sample(
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
    let codec = Codec::json().with_dictionaries(cache.for_table(store.table()));
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
