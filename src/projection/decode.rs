//! Stream records to cqrs-es events: [`image_from_stream`] converts a
//! DynamoDB Streams image to the `aws-sdk-dynamodb` attribute type without
//! losing a value, and [`EventDecoder`] reads an inserted event item exactly
//! as the store reads it (same codec rules, same upcasters), so a projection
//! sees the events a load would.
//!
//! Dictionary-compressed payloads (see [`crate::dictionary`]) decode too:
//! a decoder given the dictionary store
//! ([`EventDecoder::from_repository`], [`EventDecoder::with_dictionaries`])
//! loads the dictionaries a batch's events reference before decoding them
//! ([`EventDecoder::prefetch`]; the [`Dispatcher`](super::Dispatcher) does
//! it for every batch), once per process, and makes no request for a batch
//! that references none. A dictionary that cannot be loaded is
//! [`Error::Decode`] naming the item key and the dictionary id.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::AttributeValue as StreamValue;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};

use super::{ChangeKind, ChangeRecord, Error, Image};
use crate::codec::Codec;
#[cfg(feature = "compression")]
use crate::dictionary::{DictionaryCache, DictionaryStore};
use crate::item::{
    describe_key, get_n, is_tombstone, item_to_event, AGGREGATE_ID, AGGREGATE_ID_SEQUENCE,
    AGGREGATE_TYPE, AGGREGATE_TYPE_AND_ID, DELETED_THROUGH, PAYLOAD,
};
use crate::DynamoEventRepository;

/// Converts a DynamoDB Streams image (the `aws-sdk-dynamodbstreams`
/// attribute type) to an [`Image`] (the `aws-sdk-dynamodb` type), value for
/// value: strings, numbers (as their decimal text), binaries, their sets,
/// maps, lists, booleans and nulls.
///
/// Fails with [`Error::InvalidRecord`] naming the attribute's path if a value
/// has a type this SDK version does not know (a type DynamoDB added later).
pub fn image_from_stream(image: HashMap<String, StreamValue>) -> Result<Image, Error> {
    image
        .into_iter()
        .map(|(name, value)| {
            let value = value_from_stream(value, &name)?;
            Ok((name, value))
        })
        .collect()
}

fn value_from_stream(value: StreamValue, path: &str) -> Result<AttributeValue, Error> {
    let blob = |b: aws_sdk_dynamodbstreams::primitives::Blob| Blob::new(b.into_inner());
    Ok(match value {
        StreamValue::S(s) => AttributeValue::S(s),
        StreamValue::N(n) => AttributeValue::N(n),
        StreamValue::B(b) => AttributeValue::B(blob(b)),
        StreamValue::Ss(ss) => AttributeValue::Ss(ss),
        StreamValue::Ns(ns) => AttributeValue::Ns(ns),
        StreamValue::Bs(bs) => AttributeValue::Bs(bs.into_iter().map(blob).collect()),
        StreamValue::Bool(b) => AttributeValue::Bool(b),
        StreamValue::Null(n) => AttributeValue::Null(n),
        StreamValue::M(m) => AttributeValue::M(
            m.into_iter()
                .map(|(name, value)| {
                    let value = value_from_stream(value, &format!("{path}.{name}"))?;
                    Ok((name, value))
                })
                .collect::<Result<_, Error>>()?,
        ),
        StreamValue::L(l) => AttributeValue::L(
            l.into_iter()
                .enumerate()
                .map(|(i, value)| value_from_stream(value, &format!("{path}[{i}]")))
                .collect::<Result<_, Error>>()?,
        ),
        _ => {
            return Err(Error::InvalidRecord {
                record: "image".into(),
                reason: format!("attribute {path} has a type this SDK does not know"),
            })
        }
    })
}

/// Decodes the event items of aggregate `A` from stream records, with the
/// repository's codec rules and the store's upcasters.
///
/// The codec only matters for what the reads accept: every stored payload
/// describes its own format, so events written with any codec (and by
/// upstream `dynamo-es`) decode whatever the codec given here.
///
/// ```
/// # use cqrs_es::Aggregate;
/// use dynamo_es::projection::EventDecoder;
/// use dynamo_es::Codec;
///
/// fn decoder<A: Aggregate>() -> EventDecoder<A> {
///     EventDecoder::new(Codec::default()).with_upcasters(vec![])
/// }
/// ```
///
/// Events written with a zstd dictionary need the dictionary store: build
/// the decoder with [`EventDecoder::from_repository`] (the repository's
/// codec, cache and snapshots table) or give it
/// [`with_dictionaries`](EventDecoder::with_dictionaries).
pub struct EventDecoder<A: Aggregate> {
    codec: Codec,
    upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    /// Where the dictionaries payloads reference are loaded from.
    #[cfg(feature = "compression")]
    dictionaries: Option<(DictionaryStore, DictionaryCache)>,
    /// The data keys personal data is opened with (feature `encryption`).
    #[cfg(feature = "encryption")]
    keys: Option<crate::encryption::KeyStore>,
    /// The clock expiry is compared with (the system's if `None`).
    clock: Option<crate::expiry::Clock>,
    _aggregate: std::marker::PhantomData<fn() -> A>,
}

/// The dictionaries a batch's events reference that could not be loaded
/// (not stored, corrupt), with why, by id. Always empty without the
/// `compression` feature.
#[derive(Debug, Default)]
pub(crate) struct Unloadable {
    #[cfg(feature = "compression")]
    by_id: HashMap<u32, crate::dictionary::Error>,
}

impl<A: Aggregate> Clone for EventDecoder<A> {
    fn clone(&self) -> Self {
        EventDecoder {
            codec: self.codec.clone(),
            upcasters: Arc::clone(&self.upcasters),
            #[cfg(feature = "compression")]
            dictionaries: self.dictionaries.clone(),
            #[cfg(feature = "encryption")]
            keys: self.keys.clone(),
            clock: self.clock.clone(),
            _aggregate: std::marker::PhantomData,
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for EventDecoder<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("EventDecoder");
        f.field("aggregate_type", &A::TYPE)
            .field("codec", &self.codec.name())
            .field("upcasters", &self.upcasters.len());
        #[cfg(feature = "compression")]
        f.field(
            "dictionaries",
            &self.dictionaries.as_ref().map(|(store, _)| store.table()),
        );
        f.finish()
    }
}

impl<A: Aggregate> EventDecoder<A> {
    /// A decoder for the events of `A`, without upcasters. It loads no
    /// dictionary: a dictionary payload decodes only if `codec`'s
    /// dictionary source already holds its dictionary (else
    /// [`Error::Decode`] naming the item and the dictionary id).
    pub fn new(codec: Codec) -> Self {
        EventDecoder {
            codec,
            upcasters: Arc::new(Vec::new()),
            #[cfg(feature = "compression")]
            dictionaries: None,
            #[cfg(feature = "encryption")]
            keys: None,
            clock: None,
            _aggregate: std::marker::PhantomData,
        }
    }

    /// A decoder reading as `repository` reads: its codec, and (with the
    /// `compression` feature) its dictionary cache, loading dictionaries
    /// from its snapshots table. No upcasters: give the store's with
    /// [`with_upcasters`](Self::with_upcasters).
    ///
    /// ```
    /// # use cqrs_es::Aggregate;
    /// use dynamo_es::projection::{Dispatcher, EventDecoder};
    /// use dynamo_es::DynamoEventRepository;
    ///
    /// fn dispatcher<A: Aggregate + 'static>(repository: &DynamoEventRepository) -> Dispatcher<A> {
    ///     Dispatcher::new(EventDecoder::from_repository(repository))
    /// }
    /// ```
    pub fn from_repository(repository: &DynamoEventRepository) -> Self {
        let decoder = EventDecoder {
            clock: repository.expiry().clock().cloned(),
            ..EventDecoder::new(repository.codec().clone())
        };
        #[cfg(feature = "compression")]
        // The repository's cache, shared by its clones.
        let decoder = decoder.loading(
            repository.dictionary_store(),
            repository.dictionary_cache().clone(),
        );
        #[cfg(feature = "encryption")]
        let decoder = EventDecoder {
            keys: repository.key_store().cloned(),
            ..decoder
        };
        decoder
    }

    /// Takes the time from `clock` (for tests): an event item past its
    /// [`EXPIRES_AT`](crate::item::EXPIRES_AT) is gone, and decodes as
    /// `None`. [`from_repository`](Self::from_repository) takes the
    /// repository's clock.
    pub fn with_clock(
        self,
        clock: impl Fn() -> std::time::SystemTime + Send + Sync + 'static,
    ) -> Self {
        EventDecoder {
            clock: Some(Arc::new(clock)),
            ..self
        }
    }

    /// Opens the personal data of the events it decodes with `keys` (a
    /// forgotten subject's fields decode as
    /// [`Personal::Forgotten`](crate::encryption::Personal)). The keys of
    /// a batch are loaded by [`prefetch`](Self::prefetch), which the
    /// [`Dispatcher`](super::Dispatcher) calls for every batch;
    /// [`from_repository`](Self::from_repository) takes the repository's.
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub fn with_encryption(self, keys: crate::encryption::KeyStore) -> Self {
        EventDecoder {
            keys: Some(keys),
            ..self
        }
    }

    /// Loads the dictionaries payloads reference from `store` (the
    /// snapshots table the events' writer stored them in), each once, into
    /// a dictionary cache of this decoder's (shared by its clones), which
    /// its codec decodes with.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn with_dictionaries(self, store: DictionaryStore) -> Self {
        self.loading(store, DictionaryCache::new())
    }

    /// Loads dictionaries from `store` into `cache`, and decodes with them.
    #[cfg(feature = "compression")]
    fn loading(self, store: DictionaryStore, cache: DictionaryCache) -> Self {
        let codec = self.codec.with_dictionaries(cache.for_table(store.table()));
        EventDecoder {
            codec,
            dictionaries: Some((store, cache)),
            ..self
        }
    }

    /// The store dictionaries are loaded from, if any.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn dictionaries(&self) -> Option<&DictionaryStore> {
        self.dictionaries.as_ref().map(|(store, _)| store)
    }

    /// The codec events are decoded with.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Upcasts events before they are deserialized, as
    /// [`DynamoStore::with_upcasters`](crate::DynamoStore::with_upcasters)
    /// does: give both the same upcasters.
    pub fn with_upcasters(self, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        EventDecoder {
            upcasters: Arc::new(upcasters),
            ..self
        }
    }

    /// The event `record` inserted, if it inserted an event item of `A`.
    ///
    /// `Ok(None)` for an aggregate's tombstone (see
    /// [`deletion`](Self::deletion)), an event past its expiry, removes and
    /// modifies (events are never changed in place; `dynamo-es recode` rewriting a payload in another codec is a
    /// modify of the same event), items of other aggregate types, and items
    /// that are not events (no `AggregateIdSequence` key).
    /// [`Error::Decode`] naming the item key if an event item of `A` cannot
    /// be read, upcast or deserialized; [`Error::MissingImage`] if the
    /// stream does not carry new images.
    ///
    /// A payload compressed with a dictionary the codec's cache does not
    /// hold is [`Error::Decode`] naming the dictionary id: call
    /// [`prefetch`](Self::prefetch) on the batch first.
    pub fn decode(&self, record: &ChangeRecord) -> Result<Option<EventEnvelope<A>>, Error> {
        let Some(image) = self.claim(record)? else {
            return Ok(None);
        };
        if is_tombstone(image) {
            // Not an event: see `deletion`.
            return Ok(None);
        }
        if crate::expiry::is_expired_at(image, crate::expiry::now(self.clock.as_ref())) {
            // Past its expiry: gone, as for every read (DynamoDB removes
            // it later, and its removal is not an event either).
            return Ok(None);
        }
        let key = describe_key(image);
        #[allow(unused_mut)]
        let mut event = item_to_event(image, &self.codec).map_err(|source| Error::Decode {
            key: key.clone(),
            source,
        })?;
        #[cfg(feature = "encryption")]
        {
            let aggregate = crate::item::aggregate_key(&event.aggregate_type, &event.aggregate_id);
            let binding = crate::encryption::Binding::event(&aggregate, event.sequence);
            crate::encryption::open_cached(self.keys.as_ref(), &mut event.payload, binding)
                .map_err(|source| Error::Decode {
                    key: key.clone(),
                    source,
                })?;
        }
        self.envelope(event)
            .map(Some)
            .map_err(|source| Error::Decode { key, source })
    }

    /// The deletion of an aggregate of `A`, if `record` inserted its
    /// tombstone ([`DynamoEventRepository::delete_aggregate`]); `None` for
    /// every other record. [`decode`](Self::decode) returns `Ok(None)` for
    /// such a record: the [`Dispatcher`](super::Dispatcher) passes it to
    /// [`Projection::deleted`](super::Projection::deleted).
    pub fn deletion(&self, record: &ChangeRecord) -> Result<Option<DeletedAggregate>, Error> {
        let Some(image) = self.claim(record)? else {
            return Ok(None);
        };
        if !is_tombstone(image) {
            return Ok(None);
        }
        let key = describe_key(image);
        let read = || -> crate::Result<DeletedAggregate> {
            Ok(DeletedAggregate {
                aggregate_id: crate::item::get_s(image, &key, AGGREGATE_ID)?.to_string(),
                last_sequence: get_n(image, &key, DELETED_THROUGH)?,
            })
        };
        read()
            .map(Some)
            .map_err(|source| Error::Decode { key, source })
    }

    /// Loads every dictionary the events of `A` in `records` reference
    /// and the cache does not hold yet, so that [`decode`](Self::decode)
    /// finds them: one `GetItem` per dictionary and process, none if no
    /// event references one (or without a dictionary store).
    ///
    /// [`Error::Decode`] naming the first record's item key and the
    /// dictionary id if a referenced dictionary is not stored or corrupt;
    /// [`Error::Store`] if reading it failed.
    pub async fn prefetch(&self, records: &[ChangeRecord]) -> Result<(), Error> {
        let unloadable = self.load_dictionaries(records).await?;
        records
            .iter()
            .try_for_each(|record| self.check_loaded(record, &unloadable))
    }

    /// Loads the dictionaries `records` reference, as
    /// [`prefetch`](Self::prefetch) does, and returns those that could not
    /// be loaded instead of failing: the dispatcher applies its decode
    /// error policy to each record referencing one. Fails only if reading
    /// a dictionary failed (a DynamoDB error, to retry).
    pub(crate) async fn load_dictionaries(
        &self,
        records: &[ChangeRecord],
    ) -> Result<Unloadable, Error> {
        #[allow(unused_mut)]
        let mut unloadable = Unloadable::default();
        #[cfg(feature = "compression")]
        if let Some((store, cache)) = &self.dictionaries {
            let mut wanted: Vec<u32> = Vec::new();
            let images = records
                .iter()
                .filter_map(|record| self.claim(record).ok().flatten());
            for (id, _) in images.flat_map(references) {
                if cache.get(store.table(), id).is_none() && !wanted.contains(&id) {
                    wanted.push(id);
                }
            }
            for id in wanted {
                // Boxed: the SDK's future is deep, and the dispatch future
                // (in a Lambda handler's) would otherwise overflow the
                // compiler's layout depth.
                match Box::pin(cache.load(store, id)).await {
                    Ok(_) => {}
                    Err(crate::Error::Dictionary(err)) => {
                        unloadable.by_id.insert(id, *err);
                    }
                    Err(err) => return Err(Error::Store(err)),
                }
            }
        }
        #[cfg(feature = "encryption")]
        if let Some(keys) = &self.keys {
            let mut subjects = std::collections::BTreeSet::new();
            let images = records
                .iter()
                .filter_map(|record| self.claim(record).ok().flatten());
            for image in images {
                // An item that does not decode is reported by `decode`.
                if let Ok(mut event) = item_to_event(image, &self.codec) {
                    crate::encryption::sealed_subjects(&mut event.payload, &mut subjects);
                }
            }
            if !subjects.is_empty() {
                Box::pin(keys.keys_for(subjects, false))
                    .await
                    .map_err(Error::Store)?;
            }
        }
        let _ = records;
        Ok(unloadable)
    }

    /// [`decode`](Self::decode), but a record whose event references a
    /// dictionary in `unloadable` is [`Error::Decode`] naming the item key,
    /// the attribute and why the dictionary could not be loaded.
    pub(crate) fn decode_loaded(
        &self,
        record: &ChangeRecord,
        unloadable: &Unloadable,
    ) -> Result<Option<EventEnvelope<A>>, Error> {
        self.check_loaded(record, unloadable)?;
        self.decode(record)
    }

    fn check_loaded(&self, record: &ChangeRecord, unloadable: &Unloadable) -> Result<(), Error> {
        #[cfg(feature = "compression")]
        if !unloadable.by_id.is_empty() {
            if let Ok(Some(image)) = self.claim(record) {
                for (id, attribute) in references(image) {
                    if let Some(err) = unloadable.by_id.get(&id) {
                        let key = describe_key(image);
                        let source = crate::Error::from(err.clone()).in_item(&key, attribute);
                        return Err(Error::Decode { key, source });
                    }
                }
            }
        }
        let _ = (record, unloadable);
        Ok(())
    }

    /// The new image of `record` if it inserted an event item of `A`;
    /// [`Error::MissingImage`] if such an insert carries no image.
    fn claim<'r>(&self, record: &'r ChangeRecord) -> Result<Option<&'r Image>, Error> {
        if record.event_name != ChangeKind::Insert
            || !record.keys.contains_key(AGGREGATE_ID_SEQUENCE)
        {
            return Ok(None);
        }
        let Some(image) = &record.new_image else {
            if !key_of_type::<A>(&record.keys) {
                return Ok(None);
            }
            return Err(Error::MissingImage {
                key: describe_key(&record.keys),
                sequence_number: record.sequence_number.clone(),
            });
        };
        let of_type = match image.get(AGGREGATE_TYPE) {
            Some(AttributeValue::S(aggregate_type)) => aggregate_type == A::TYPE,
            // A broken event item: claim it by its key, so it is reported.
            _ => key_of_type::<A>(image),
        };
        Ok(of_type.then_some(image))
    }

    /// Upcasts and deserializes one stored event, as the store does.
    pub(crate) fn envelope(&self, event: SerializedEvent) -> crate::Result<EventEnvelope<A>> {
        let event = self.upcasters.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        });
        let key = describe_event(&event);
        EventEnvelope::<A>::try_from(event)
            .map_err(|err| crate::Error::Serde(Box::new(err)).in_item(&key, PAYLOAD))
    }
}

/// An aggregate's deletion as the stream carries it: the insert of its
/// tombstone ([`EventDecoder::deletion`]), after every event it had.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeletedAggregate {
    /// The aggregate id.
    pub aggregate_id: String,
    /// The sequence of its last event, which the tombstone keeps.
    pub last_sequence: usize,
}

/// The dictionaries (id, attribute) the payloads of event item `image`
/// reference.
#[cfg(feature = "compression")]
fn references(image: &Image) -> Vec<(u32, &'static str)> {
    [PAYLOAD, crate::item::METADATA]
        .into_iter()
        .filter_map(|attribute| match image.get(attribute) {
            Some(AttributeValue::B(bytes)) => {
                crate::codec::dict::frame_dictionary_id(bytes.as_ref()).map(|id| (id, attribute))
            }
            _ => None,
        })
        .collect()
}

fn describe_event(event: &SerializedEvent) -> String {
    format!(
        "{}:{}#{}",
        event.aggregate_type, event.aggregate_id, event.sequence
    )
}

/// True if `item`'s partition key is `{A::TYPE}:...`.
fn key_of_type<A: Aggregate>(item: &Image) -> bool {
    match item.get(AGGREGATE_TYPE_AND_ID) {
        Some(AttributeValue::S(key)) => key
            .strip_prefix(A::TYPE)
            .is_some_and(|rest| rest.starts_with(':')),
        _ => false,
    }
}
