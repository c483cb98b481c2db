//! Sealing and opening whole payloads for the repositories: the keys of
//! every subject a batch of payloads names are fetched once, then each
//! payload is rewritten in place.
//!
//! **Invariant:** a payload holding a plaintext marker is sealed or the
//! call fails (no key store, a forgotten subject, a key that cannot be
//! had): the caller writes nothing then. A payload without markers costs a
//! walk over its values and no request.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::Error;
use super::keys::KeyStore;
use super::seal::{self, Binding, Collect};

/// Seals the plaintext markers of every payload, creating the data keys of
/// subjects that have none.
pub(crate) async fn seal_all(
    keys: Option<&KeyStore>,
    payloads: &mut [(&mut Value, Binding<'_>)],
) -> crate::Result<()> {
    let Some((subjects, first)) = collect(payloads, Collect::Plain)? else {
        return Ok(());
    };
    let Some(keys) = keys else {
        return Err(Error::NoKeyStore {
            item: first.0,
            subject: first.1,
        }
        .into());
    };
    let set = keys.keys_for(subjects, true).await?;
    for (value, binding) in payloads.iter_mut() {
        seal::seal(value, &set, binding)?;
    }
    Ok(())
}

/// Opens the sealed markers of every payload: plaintext again, or
/// forgotten.
pub(crate) async fn open_all(
    keys: Option<&KeyStore>,
    payloads: &mut [(&mut Value, Binding<'_>)],
) -> crate::Result<()> {
    let Some((subjects, first)) = collect(payloads, Collect::Sealed)? else {
        return Ok(());
    };
    let Some(keys) = keys else {
        return Err(Error::NoKeyStoreToRead {
            item: first.0,
            subject: first.1,
        }
        .into());
    };
    let set = keys.keys_for(subjects, false).await?;
    for (value, binding) in payloads.iter_mut() {
        seal::open(value, &set, binding)?;
    }
    Ok(())
}

/// Opens the sealed markers of `value` with keys already in the cache (a
/// decoder's, after its prefetch): no request.
pub(crate) fn open_cached(
    keys: Option<&KeyStore>,
    value: &mut Value,
    binding: Binding<'_>,
) -> crate::Result<()> {
    let mut subjects = BTreeSet::new();
    seal::subjects(value, Collect::Sealed, &mut subjects, &|| {
        binding.describe()
    })?;
    let Some(first) = subjects.first() else {
        return Ok(());
    };
    let Some(keys) = keys else {
        return Err(Error::NoKeyStoreToRead {
            item: binding.describe(),
            subject: first.clone(),
        }
        .into());
    };
    let set = keys.cached_keys(subjects)?;
    Ok(seal::open(value, &set, &binding)?)
}

/// The subjects of the sealed markers of `value`, added to `into`.
pub(crate) fn sealed_subjects(value: &Value, into: &mut BTreeSet<String>) {
    // A malformed marker is reported when the payload is opened.
    let _ = seal::subjects(value, Collect::Sealed, into, &String::new);
}

/// The subjects of the `which` markers of `payloads` and the first item and
/// subject found, `None` if there are none.
fn collect(
    payloads: &[(&mut Value, Binding<'_>)],
    which: Collect,
) -> crate::Result<Option<(BTreeSet<String>, (String, String))>> {
    let mut subjects = BTreeSet::new();
    let mut first = None;
    for (value, binding) in payloads {
        seal::subjects(value, which, &mut subjects, &|| binding.describe())?;
        if first.is_none() {
            if let Some(subject) = subjects.first() {
                first = Some((binding.describe(), subject.clone()));
            }
        }
    }
    Ok(first.map(|first| (subjects, first)))
}

/// `state` as a value with its personal data sealed under `binding`, or
/// `None` if it holds none (encode `state` as it is then).
pub(crate) async fn sealed_value<T: serde::Serialize + ?Sized>(
    keys: Option<&KeyStore>,
    state: &T,
    binding: Binding<'_>,
) -> crate::Result<Option<Value>> {
    let mut value =
        crate::codec::to_value(state).map_err(|err| err.naming_payload(|| binding.describe()))?;
    if !seal::holds_personal(&value) {
        return Ok(None);
    }
    seal_all(keys, &mut [(&mut value, binding)]).await?;
    Ok(Some(value))
}

/// The stored `payload` decoded with `codec`, its personal data opened, or
/// `None` if it holds none (decode it into its type directly then).
pub(crate) async fn opened_value(
    keys: Option<&KeyStore>,
    codec: &crate::codec::Codec,
    payload: &[u8],
    binding: Binding<'_>,
) -> crate::Result<Option<Value>> {
    let mut value = codec.decode(payload)?;
    if !seal::holds_personal(&value) {
        return Ok(None);
    }
    open_all(keys, &mut [(&mut value, binding)]).await?;
    Ok(Some(value))
}

impl KeyStore {
    /// Seals the [`Personal`](super::Personal) values of `payload` in place,
    /// exactly as the event repository does for event `sequence` of
    /// `aggregate_type`/`aggregate_id` (creating the data keys of new
    /// subjects): for tools that write event items themselves.
    pub async fn seal_event_payload(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: usize,
        payload: &mut Value,
    ) -> crate::Result<()> {
        let key = crate::item::aggregate_key(aggregate_type, aggregate_id);
        seal_all(Some(self), &mut [(payload, Binding::event(&key, sequence))]).await
    }

    /// Opens the sealed personal data of an event's `payload` in place, as
    /// the event repository does: plaintext again, or forgotten.
    pub async fn open_event_payload(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: usize,
        payload: &mut Value,
    ) -> crate::Result<()> {
        let key = crate::item::aggregate_key(aggregate_type, aggregate_id);
        open_all(Some(self), &mut [(payload, Binding::event(&key, sequence))]).await
    }
}
