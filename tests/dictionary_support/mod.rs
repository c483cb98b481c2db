//! Shared by the dictionary tests: an `Order` aggregate over the crate's
//! small fixture events, and seeding helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_dynamodb::types::AttributeValue;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use dynamo_es::dictionary::{DictionaryStore, TrainOptions, Trained};
use dynamo_es::item::{Item, METADATA, PAYLOAD};
use dynamo_es::testing::fixtures::small_event;
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoEventRepository};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::common::counting_aggregate;

/// A fixture event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderEvent(pub Value);

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        self.0["event_type"]
            .as_str()
            .unwrap_or("Unknown")
            .to_string()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

// Aggregates whose events are fixture events; they only count them.
counting_aggregate!(Order, "Order", OrderEvent, Refused, applied, Err(Refused));
counting_aggregate!(
    Payment,
    "Payment",
    OrderEvent,
    Refused,
    applied,
    Err(Refused)
);

/// A repository on `db` writing plain JSON, and `A`'s events with
/// `dictionary`.
pub fn writer<A: Aggregate>(
    db: &TestTables,
    dictionary: &dynamo_es::dictionary::Dictionary,
) -> DynamoEventRepository {
    db.repository()
        .with_codec(Codec::json())
        .with_dictionary(A::TYPE, dictionary.clone())
}

/// Fixture event `seed` of `aggregate_type:id` at `sequence`.
pub fn event(aggregate_type: &str, id: &str, sequence: usize, seed: u64) -> SerializedEvent {
    let payload = small_event(seed);
    SerializedEvent::new(
        id.to_string(),
        sequence,
        aggregate_type.to_string(),
        payload["event_type"].as_str().unwrap().to_string(),
        "1.0".to_string(),
        payload,
        json!({"user": format!("user-{}", seed % 97)}),
    )
}

/// `count` events of `id`, sequences `first..`, seeds from `seed`.
pub fn events(
    aggregate_type: &str,
    id: &str,
    first: usize,
    count: usize,
    seed: u64,
) -> Vec<SerializedEvent> {
    (0..count)
        .map(|i| event(aggregate_type, id, first + i, seed + i as u64))
        .collect()
}

/// Commits `events` (of one aggregate) through `repo`, ten at a time.
pub async fn commit<A: Aggregate>(repo: &DynamoEventRepository, events: &[SerializedEvent]) {
    for chunk in events.chunks(10) {
        repo.persist::<A>(chunk, None).await.unwrap();
    }
}

/// Seeds `count` plain-JSON training events of `A`, ten per aggregate
/// (ids `train-N`), seeds from `seed`.
pub async fn seed_training<A: Aggregate>(db: &TestTables, count: usize, seed: u64) {
    let repo = db.repository().with_codec(Codec::json());
    for start in (0..count).step_by(10) {
        let id = format!("train-{}", start / 10);
        let n = (count - start).min(10);
        commit::<A>(&repo, &events(A::TYPE, &id, 1, n, seed + start as u64)).await;
    }
}

/// Trains and stores a dictionary for `A` on the events of `db`.
pub async fn trained<A: Aggregate>(db: &TestTables) -> Trained {
    DictionaryStore::new(db.client.clone(), &db.snapshots)
        .train(&db.events, A::TYPE, TrainOptions::default())
        .await
        .unwrap()
}

/// Seeds `count` training events of `A` into `db` (from `seed`), then
/// trains and stores a dictionary on them.
pub async fn seeded_and_trained<A: Aggregate>(db: &TestTables, count: usize, seed: u64) -> Trained {
    seed_training::<A>(db, count, seed).await;
    trained::<A>(db).await
}

/// The dictionary id the frame of `attribute` of `item` names.
pub fn frame_dictionary(item: &Item, attribute: &str) -> Option<u32> {
    let Some(AttributeValue::B(bytes)) = item.get(attribute) else {
        return None;
    };
    zstd::zstd_safe::get_dict_id_from_frame(bytes.as_ref()).map(|id| id.get())
}

/// The dictionary ids of the payloads of `item`.
pub fn dictionaries_of(item: &Item) -> [Option<u32>; 2] {
    [
        frame_dictionary(item, PAYLOAD),
        frame_dictionary(item, METADATA),
    ]
}

/// An envelope as the serialized event it came from.
pub fn as_serialized<A: Aggregate<Event = OrderEvent>>(
    envelope: &EventEnvelope<A>,
    event_type: &str,
) -> SerializedEvent {
    SerializedEvent::new(
        envelope.aggregate_id.clone(),
        envelope.sequence,
        A::TYPE.to_string(),
        event_type.to_string(),
        "1.0".to_string(),
        envelope.payload.0.clone(),
        serde_json::to_value(&envelope.metadata).unwrap(),
    )
}
