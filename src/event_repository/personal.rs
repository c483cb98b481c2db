//! The repository's personal data (feature `encryption`): every payload it
//! writes is sealed before it is encoded, every payload it reads opened
//! after it is decoded (see [`crate::encryption`]). Without the feature
//! each step hands its payloads through.
//!
//! **Invariant:** events are bound to their aggregate key, sequence and
//! `Payload` attribute, a snapshot to its aggregate key and `Payload`; a
//! payload holding plaintext personal data is never encoded, and without a
//! key store it is refused.

use std::borrow::Cow;

use cqrs_es::persist::SerializedEvent;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::commit::EncodedSnapshot;
use super::DynamoEventRepository;
use crate::error::Result;

#[cfg(feature = "encryption")]
use crate::encryption::{
    event_payloads_in_place, open_all, opened_value, sealed_value, Binding, Direction, KeyStore,
};
#[cfg(feature = "encryption")]
use crate::item::aggregate_key;

impl DynamoEventRepository {
    /// Seals the personal data of every payload this repository writes, and
    /// opens it on every read, with the data keys of `keys`.
    ///
    /// Without it, a payload holding a
    /// [`Personal`](crate::encryption::Personal) value is refused
    /// ([`crate::encryption::Error::NoKeyStore`]) and nothing is written.
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub fn with_encryption(self, keys: KeyStore) -> Self {
        DynamoEventRepository {
            keys: Some(keys),
            ..self
        }
    }

    /// The key store personal data is sealed with, if any.
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub fn key_store(&self) -> Option<&KeyStore> {
        self.keys.as_ref()
    }

    /// Whether payloads are sealed (a key store is set): what is stored
    /// then differs from the plain encoding of the same value.
    pub(crate) fn seals_personal_data(&self) -> bool {
        #[cfg(feature = "encryption")]
        return self.keys.is_some();
        #[cfg(not(feature = "encryption"))]
        false
    }

    /// `events` with their personal data sealed: borrowed as they are when
    /// none holds any.
    pub(crate) async fn seal_events<'a>(
        &self,
        events: &'a [SerializedEvent],
    ) -> Result<Cow<'a, [SerializedEvent]>> {
        #[cfg(feature = "encryption")]
        if events
            .iter()
            .any(|e| crate::encryption::holds_personal(&e.payload))
        {
            let mut sealed = events.to_vec();
            let keys = self.keys.as_ref();
            Box::pin(event_payloads_in_place(keys, &mut sealed, Direction::Seal)).await?;
            return Ok(Cow::Owned(sealed));
        }
        Ok(Cow::Borrowed(events))
    }

    /// Opens the personal data of `events`, as read.
    pub(crate) async fn open_events(&self, events: &mut [SerializedEvent]) -> Result<()> {
        #[cfg(feature = "encryption")]
        Box::pin(event_payloads_in_place(
            self.keys.as_ref(),
            events,
            Direction::Open,
        ))
        .await?;
        let _ = events;
        Ok(())
    }

    /// [`open_events`](Self::open_events) for each event of a replay stream.
    pub(crate) fn event_finish(&self) -> crate::stream::EventFinish {
        #[cfg(feature = "encryption")]
        {
            let keys = self.keys.clone();
            Some(std::sync::Arc::new(move |mut event: SerializedEvent| {
                let keys = keys.clone();
                Box::pin(async move {
                    let events = std::slice::from_mut(&mut event);
                    event_payloads_in_place(keys.as_ref(), events, Direction::Open).await?;
                    Ok(event)
                })
            }))
        }
        #[cfg(not(feature = "encryption"))]
        None
    }

    /// Encodes a snapshot's state, its personal data sealed first.
    pub(crate) async fn encode_sealed_snapshot<T: Serialize>(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        state: &T,
    ) -> Result<EncodedSnapshot> {
        let key = crate::item::aggregate_key(aggregate_type, aggregate_id);
        // With the feature, every state goes through its value, so that
        // personal data is sealed, or refused without a key store.
        #[cfg(feature = "encryption")]
        if let Some(sealed) =
            sealed_value(self.keys.as_ref(), state, Binding::snapshot(&key)).await?
        {
            return self.encode_snapshot(&key, &sealed);
        }
        self.encode_snapshot(&key, state)
    }

    /// Opens the personal data of a snapshot's decoded state.
    pub(crate) async fn open_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        state: &mut Value,
    ) -> Result<()> {
        #[cfg(feature = "encryption")]
        {
            let key = aggregate_key(aggregate_type, aggregate_id);
            open_all(self.keys.as_ref(), &mut [(state, Binding::snapshot(&key))]).await?;
        }
        let _ = (aggregate_type, aggregate_id, state);
        Ok(())
    }

    /// A stored snapshot payload as the aggregate's state, and the payload
    /// to keep for the next snapshot's state: the stored one, or, when it
    /// held personal data, the opened state re-encoded (in memory only).
    pub(crate) async fn decode_snapshot_state<A: DeserializeOwned>(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        payload: Vec<u8>,
    ) -> Result<(A, Vec<u8>)> {
        // Without a key store a sealed value fails to deserialize (it names
        // the fix): the snapshot is then rebuilt from events, whose reads
        // fail with `NoKeyStoreToRead`.
        #[cfg(feature = "encryption")]
        if let Some(keys) = &self.keys {
            let key = aggregate_key(aggregate_type, aggregate_id);
            let binding = Binding::snapshot(&key);
            let (value, held) = opened_value(keys, &self.codec, &payload, binding).await?;
            if held {
                let kept = self.codec.encode(&value)?;
                return Ok((serde_json::from_value(value)?, kept));
            }
        }
        let _ = (aggregate_type, aggregate_id);
        Ok((self.codec.decode_deserialize(&payload)?, payload))
    }
}
