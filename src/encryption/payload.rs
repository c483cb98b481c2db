//! Sealing and opening whole payloads for the repositories: the keys of
//! every subject a batch of payloads names are fetched once, then each
//! payload is rewritten in place.
//!
//! **Invariant:** a payload holding a plaintext marker is sealed or the
//! call fails (no key store, a forgotten subject, a key that cannot be
//! had): the caller writes nothing then. A payload without markers costs a
//! walk over its values and no request.

use std::collections::BTreeSet;

use cqrs_es::persist::SerializedEvent;
use serde_json::Value;

use super::error::Error;
use super::keys::KeyStore;
use super::seal::{self, Binding, Collect, KeySet};

/// Seals the plaintext markers of every payload, creating the data keys of
/// subjects that have none.
pub(crate) async fn seal_all(
    keys: Option<&KeyStore>,
    payloads: &mut [(&mut Value, Binding<'_>)],
) -> crate::Result<()> {
    rewrite_all(keys, payloads, Collect::Plain).await
}

/// Opens the sealed markers of every payload: plaintext again, or
/// forgotten.
pub(crate) async fn open_all(
    keys: Option<&KeyStore>,
    payloads: &mut [(&mut Value, Binding<'_>)],
) -> crate::Result<()> {
    rewrite_all(keys, payloads, Collect::Sealed).await
}

/// Seals (`Collect::Plain`) or opens (`Collect::Sealed`) every payload.
async fn rewrite_all(
    keys: Option<&KeyStore>,
    payloads: &mut [(&mut Value, Binding<'_>)],
    which: Collect,
) -> crate::Result<()> {
    let Some(set) = key_set(keys, payloads, which).await? else {
        return Ok(());
    };
    for (value, binding) in payloads.iter_mut() {
        match which {
            Collect::Plain => seal::seal(value, &set, binding)?,
            Collect::Sealed => seal::open(value, &set, binding)?,
        }
    }
    Ok(())
}

/// The keys of the subjects of the `which` markers of `payloads` (created
/// for a write, `Collect::Plain`), `None` if there are none.
async fn key_set(
    keys: Option<&KeyStore>,
    payloads: &mut [(&mut Value, Binding<'_>)],
    which: Collect,
) -> crate::Result<Option<KeySet>> {
    let mut subjects = BTreeSet::new();
    // The first payload naming a subject, and one it names, for errors.
    let mut first = None;
    for (value, binding) in payloads.iter_mut() {
        seal::subjects(value, which, &mut subjects, &|| binding.describe())?;
        if first.is_none() {
            first = subjects.first().map(|s| (binding.describe(), s.clone()));
        }
    }
    let Some((item, subject)) = first else {
        return Ok(None);
    };
    let keys = usable(keys, which, &subject, || item)?;
    Ok(Some(
        keys.keys_for(subjects, which == Collect::Plain).await?,
    ))
}

/// `keys`, or the error of a repository without a key store that met
/// personal data of `subject` in `item`.
fn usable<'k>(
    keys: Option<&'k KeyStore>,
    which: Collect,
    subject: &str,
    item: impl FnOnce() -> String,
) -> Result<&'k KeyStore, Error> {
    keys.ok_or_else(|| {
        let (item, subject) = (item(), subject.to_string());
        match which {
            Collect::Plain => Error::NoKeyStore { item, subject },
            Collect::Sealed => Error::NoKeyStoreToRead { item, subject },
        }
    })
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
    let keys = usable(keys, Collect::Sealed, first, || binding.describe())?;
    let set = keys.cached_keys(subjects)?;
    Ok(seal::open(value, &set, &binding)?)
}

/// The subjects of the sealed markers of `value`, added to `into`.
pub(crate) fn sealed_subjects(value: &mut Value, into: &mut BTreeSet<String>) {
    // A malformed marker is reported when the payload is opened.
    let _ = seal::subjects(value, Collect::Sealed, into, &String::new);
}

/// `state` as a value, its personal data sealed under `binding`: what a
/// repository encodes in place of `state` (which it would otherwise
/// serialize as it is, plaintext included).
pub(crate) async fn sealed_value<T: serde::Serialize + ?Sized>(
    keys: Option<&KeyStore>,
    state: &T,
    binding: Binding<'_>,
) -> crate::Result<Option<Value>> {
    let mut value =
        crate::codec::to_value(state).map_err(|err| err.naming_payload(|| binding.describe()))?;
    // Without personal data the caller encodes the state itself, typed: a
    // JSON value does not hold every number the codecs do (u128, i128).
    if !super::holds_personal(&value) {
        return Ok(None);
    }
    seal_all(keys, &mut [(&mut value, binding)]).await?;
    Ok(Some(value))
}

/// The stored `payload` decoded with `codec` and its personal data opened,
/// and whether it held any.
pub(crate) async fn opened_value(
    keys: &KeyStore,
    codec: &crate::codec::Codec,
    payload: &[u8],
    binding: Binding<'_>,
) -> crate::Result<(Value, bool)> {
    let mut value = codec.decode(payload)?;
    if !seal::holds_personal(&value) {
        return Ok((value, false));
    }
    open_all(Some(keys), &mut [(&mut value, binding)]).await?;
    Ok((value, true))
}

impl KeyStore {
    /// Seals the [`Personal`](super::Personal) values of `events`' payloads
    /// in place, exactly as the event repository does before it encodes
    /// them (creating the data keys of new subjects): for tools that write
    /// event items themselves.
    pub async fn seal_events(&self, events: &mut [SerializedEvent]) -> crate::Result<()> {
        event_payloads_in_place(Some(self), events, Direction::Seal).await
    }

    /// Opens the sealed personal data of `events`' payloads in place, as the
    /// event repository does after it decodes them: plaintext again, or
    /// forgotten.
    pub async fn open_events(&self, events: &mut [SerializedEvent]) -> crate::Result<()> {
        event_payloads_in_place(Some(self), events, Direction::Open).await
    }
}

/// Which way [`event_payloads_in_place`] changes payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Seal their personal values (creating the data keys of new subjects).
    Seal,
    /// Open their sealed values: plaintext again, or forgotten.
    Open,
}

/// Seals or opens the payloads of `events` in place, each bound to its
/// aggregate key, sequence and `Payload`.
pub(crate) async fn event_payloads_in_place(
    keys: Option<&KeyStore>,
    events: &mut [SerializedEvent],
    direction: Direction,
) -> crate::Result<()> {
    let names = aggregate_keys(events);
    let mut payloads = event_payloads(events, &names);
    match direction {
        Direction::Seal => seal_all(keys, &mut payloads).await,
        Direction::Open => open_all(keys, &mut payloads).await,
    }
}

/// The aggregate key of each event.
fn aggregate_keys(events: &[SerializedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| crate::item::aggregate_key(&e.aggregate_type, &e.aggregate_id))
        .collect()
}

/// Each event's payload and where it is stored; `names` are their
/// aggregate keys.
fn event_payloads<'a>(
    events: &'a mut [SerializedEvent],
    names: &'a [String],
) -> Vec<(&'a mut Value, Binding<'a>)> {
    events
        .iter_mut()
        .zip(names)
        .map(|(event, key)| {
            let binding = Binding::event(key, event.sequence);
            (&mut event.payload, binding)
        })
        .collect()
}
