//! Shared by the projection tests of dictionary events: a projection that
//! keeps every `Order` event it is given, as the serialized event it came
//! from, so tests compare what a projection saw with what was written; and
//! a stream holding events whose dictionary is not stored.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::EventEnvelope;
use dynamo_es::projection::{Error, Projection};

use cqrs_es::Aggregate;
use dynamo_es::testing::TestTables;
use dynamo_es::Codec;

use super::dictionary_support::{
    as_serialized, commit, events, seed_training, trained, writer, Order,
};
use super::projection_common::stream_tables;

/// Every event projected, as serialized events, in the order received.
/// Clones share what they collected.
#[derive(Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<SerializedEvent>>>);

#[async_trait]
impl Projection<Order> for Collected {
    async fn project(&self, _: &str, events: &[EventEnvelope<Order>]) -> Result<(), Error> {
        let mut collected = self.0.lock().unwrap();
        for envelope in events {
            let event_type = envelope.payload.0["event_type"].as_str().unwrap();
            collected.push(as_serialized(envelope, event_type));
        }
        Ok(())
    }
}

impl Collected {
    /// The events of `aggregate_id` projected.
    pub fn of(&self, aggregate_id: &str) -> Vec<SerializedEvent> {
        let collected = self.0.lock().unwrap();
        collected
            .iter()
            .filter(|e| e.aggregate_id == aggregate_id)
            .cloned()
            .collect()
    }
}

/// Tables with a stream holding, in order: 2 plain events of `plain-1`, 3
/// events of `dict` written with a dictionary the tables do not store
/// (trained and stored in other tables), 2 plain events of `plain-2`.
/// Returns the tables, the stream ARN and the dictionary id.
pub async fn missing_dictionary() -> (TestTables, String, u32) {
    let source = dynamo_es::testing::dynamodb().await.unwrap();
    seed_training::<Order>(&source, 300, 7).await;
    let dictionary = trained::<Order>(&source).await.dictionary;
    let (db, arn) = stream_tables().await;
    let plain = db.repository().with_codec(Codec::json());
    commit::<Order>(&plain, &events(Order::TYPE, "plain-1", 1, 2, 1)).await;
    commit::<Order>(
        &writer::<Order>(&db, &dictionary),
        &events(Order::TYPE, "dict", 1, 3, 2),
    )
    .await;
    commit::<Order>(&plain, &events(Order::TYPE, "plain-2", 1, 2, 3)).await;
    (db, arn, dictionary.id())
}
