//! Shared by the projection tests of dictionary events: a projection that
//! keeps every `Order` event it is given, as the serialized event it came
//! from, so tests compare what a projection saw with what was written.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::EventEnvelope;
use dynamo_es::projection::{Error, Projection};

use super::dictionary_support::{as_serialized, Order};

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
