//! Stream records to cqrs-es events: [`image_from_stream`] converts a
//! DynamoDB Streams image to the `aws-sdk-dynamodb` attribute type without
//! losing a value, and [`EventDecoder`] reads an inserted event item exactly
//! as the store reads it (same codec rules, same upcasters), so a projection
//! sees the events a load would.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::AttributeValue as StreamValue;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};

use super::{ChangeKind, ChangeRecord, Error, Image};
use crate::codec::Codec;
use crate::item::{
    describe_key, item_to_event, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE, AGGREGATE_TYPE_AND_ID,
    PAYLOAD,
};

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
pub struct EventDecoder<A: Aggregate> {
    codec: Codec,
    upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    _aggregate: std::marker::PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for EventDecoder<A> {
    fn clone(&self) -> Self {
        EventDecoder {
            codec: self.codec.clone(),
            upcasters: Arc::clone(&self.upcasters),
            _aggregate: std::marker::PhantomData,
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for EventDecoder<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDecoder")
            .field("aggregate_type", &A::TYPE)
            .field("codec", &self.codec.name())
            .field("upcasters", &self.upcasters.len())
            .finish()
    }
}

impl<A: Aggregate> EventDecoder<A> {
    /// A decoder for the events of `A`, without upcasters.
    pub fn new(codec: Codec) -> Self {
        EventDecoder {
            codec,
            upcasters: Arc::new(Vec::new()),
            _aggregate: std::marker::PhantomData,
        }
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
    /// `Ok(None)` for removes and modifies (events are never changed in
    /// place; `dynamo-es recode` rewriting a payload in another codec is a
    /// modify of the same event), items of other aggregate types, and items
    /// that are not events (no `AggregateIdSequence` key).
    /// [`Error::Decode`] naming the item key if an event item of `A` cannot
    /// be read, upcast or deserialized; [`Error::MissingImage`] if the
    /// stream does not carry new images.
    pub fn decode(&self, record: &ChangeRecord) -> Result<Option<EventEnvelope<A>>, Error> {
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
        if !of_type {
            return Ok(None);
        }
        let key = describe_key(image);
        let event = item_to_event(image, &self.codec).map_err(|source| Error::Decode {
            key: key.clone(),
            source,
        })?;
        self.envelope(event)
            .map(Some)
            .map_err(|source| Error::Decode { key, source })
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
