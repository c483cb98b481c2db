//! Sealing and opening the personal data markers of a payload, in place,
//! with the data keys of a [`KeySet`].
//!
//! **Invariant:** a sealed marker is AES-256-GCM under its subject's data
//! key, with a fresh random 96-bit nonce, and associated data binding the
//! subject, the kind of item, its key (aggregate type and id, or view id),
//! its sequence and the attribute: it opens in that place only. Opening
//! never turns a failure into [`Personal::Forgotten`](super::Personal):
//! only a subject whose key item is a tombstone reads as forgotten.
//!
//! The table name is deliberately not bound: DynamoDB restores a backup
//! (point-in-time or on-demand) into a table of another name, and a
//! restored table must stay readable.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::error::Error;
use super::personal::{marker, Marker, MarkerEntry};
use crate::item::PAYLOAD;

/// The bytes of a data key.
pub(crate) const KEY_LEN: usize = 32;

/// Where a payload is stored: bound into every ciphertext in it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding<'a> {
    /// `event`, `snapshot` or `view`.
    pub kind: &'static str,
    /// The aggregate key (`{type}:{id}`) or the view id.
    pub key: &'a str,
    /// The event's sequence, or the view's version; 0 for a snapshot.
    pub sequence: usize,
    /// The attribute holding the payload.
    pub attribute: &'static str,
}

impl<'a> Binding<'a> {
    /// Event `sequence` of the aggregate `key` (`{type}:{id}`), its
    /// `Payload`.
    pub(crate) fn event(key: &'a str, sequence: usize) -> Self {
        Binding {
            kind: "event",
            key,
            sequence,
            attribute: PAYLOAD,
        }
    }

    /// The snapshot of the aggregate `key`, its `Payload`.
    pub(crate) fn snapshot(key: &'a str) -> Self {
        Binding {
            kind: "snapshot",
            key,
            sequence: 0,
            attribute: PAYLOAD,
        }
    }

    /// The view `view_id`, its `Payload`.
    pub(crate) fn view(view_id: &'a str) -> Self {
        Binding {
            kind: "view",
            key: view_id,
            sequence: 0,
            attribute: PAYLOAD,
        }
    }

    /// The item and attribute, as errors name them.
    pub(crate) fn describe(&self) -> String {
        match self.kind {
            "event" => format!(
                "event {} of {} ({})",
                self.sequence, self.key, self.attribute
            ),
            "snapshot" => format!("snapshot of {} ({})", self.key, self.attribute),
            kind => format!("{kind} {} ({})", self.key, self.attribute),
        }
    }

    fn aad(&self, subject: &str) -> Vec<u8> {
        // Every field but the last is NUL-terminated: no two bindings give
        // the same bytes.
        let sequence = if self.kind == "view" {
            0
        } else {
            self.sequence
        };
        format!(
            "dynamo-es personal v1\0{}\0{}\0{}\0{}\0{subject}",
            self.kind, self.key, sequence, self.attribute
        )
        .into_bytes()
    }
}

/// A data key, ready to seal and open.
pub(crate) struct DataKey(RandomizedNonceKey);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// The key of `bytes` (32 of them).
    pub(crate) fn new(bytes: &[u8], subject: &str) -> Result<Self, Error> {
        RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .map(DataKey)
            .map_err(|_| Error::Cipher {
                operation: "key",
                subject: subject.to_string(),
            })
    }

    /// Nonce, ciphertext and tag of `plaintext` under `aad`.
    pub(crate) fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        subject: &str,
    ) -> Result<Vec<u8>, Error> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(aad), &mut in_out)
            .map_err(|_| Error::Cipher {
                operation: "seal",
                subject: subject.to_string(),
            })?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// The plaintext of `sealed` (nonce, ciphertext, tag), `None` if it does
    /// not authenticate under `aad`.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .ok()?;
        let len = plain.len();
        in_out.truncate(len);
        Some(in_out)
    }
}

/// What a subject's key item says.
#[derive(Debug, Clone)]
pub(crate) enum KeyState {
    /// The subject's data key.
    Active(Arc<DataKey>),
    /// The subject was forgotten.
    Forgotten,
}

/// The keys of the subjects one payload (or page) names.
pub(crate) type KeySet = HashMap<String, KeyState>;

/// Which markers [`subjects`] collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collect {
    /// Plaintext markers: the keys a write needs.
    Plain,
    /// Sealed markers: the keys a read needs.
    Sealed,
}

/// True if `value` holds a personal data marker of any kind (malformed
/// ones included, so that they are reported).
pub(crate) fn holds_personal(value: &Value) -> bool {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key(super::MARKER) => true,
        Value::Object(map) => map.values().any(holds_personal),
        Value::Array(values) => values.iter().any(holds_personal),
        _ => false,
    }
}

/// Adds the subjects of the `which` markers in `value` to `into`; a
/// malformed marker is an error naming `item`. Changes nothing.
pub(crate) fn subjects(
    value: &mut Value,
    which: Collect,
    into: &mut BTreeSet<String>,
    item: &dyn Fn() -> String,
) -> Result<(), Error> {
    rewrite(
        value,
        &mut |found| {
            match (found, which) {
                (Marker::Plain { subject, .. }, Collect::Plain)
                | (Marker::Sealed { subject, .. }, Collect::Sealed) => {
                    into.insert(subject.to_string());
                }
                _ => {}
            }
            Ok(None)
        },
        item,
    )
}

/// Replaces every marker of `value` by what `f` makes of it.
fn rewrite(
    value: &mut Value,
    f: &mut dyn FnMut(Marker<'_>) -> Result<Option<Value>, Error>,
    item: &dyn Fn() -> String,
) -> Result<(), Error> {
    if let Some(found) = Marker::parse(value) {
        let found = found.map_err(|reason| Error::Malformed {
            item: item(),
            reason,
        })?;
        if let Some(replacement) = f(found)? {
            *value = replacement;
        }
        return Ok(());
    }
    match value {
        Value::Array(values) => values.iter_mut().try_for_each(|v| rewrite(v, f, item)),
        Value::Object(map) => map.values_mut().try_for_each(|v| rewrite(v, f, item)),
        _ => Ok(()),
    }
}

/// Seals every plaintext marker of `value` in place. A subject whose key is
/// missing from `keys` is a bug of the caller's (it collects them first);
/// a forgotten one is [`Error::SubjectForgotten`]; an already sealed marker
/// is refused (it would not open in this place).
pub(crate) fn seal(value: &mut Value, keys: &KeySet, binding: &Binding<'_>) -> Result<(), Error> {
    let item = || binding.describe();
    rewrite(
        value,
        &mut |found| match found {
            Marker::Forgotten { .. } => Ok(None),
            Marker::Sealed { subject, .. } => Err(Error::Malformed {
                item: binding.describe(),
                reason: format!(
                    "subject {subject}: an already encrypted value cannot be written again \
                     (it is bound to the item it was read from); write the `Personal` value"
                ),
            }),
            // Sealed under the outer subject, an inner subject's value
            // would outlive its own forget.
            Marker::Plain { subject, value } if holds_personal(value) => Err(Error::Malformed {
                item: binding.describe(),
                reason: format!(
                    "subject {subject}: a personal value holds another personal value; \
                     keep `Personal` fields side by side, not nested"
                ),
            }),
            Marker::Plain { subject, value } => match keys.get(subject) {
                Some(KeyState::Active(key)) => {
                    let plaintext = serde_json::to_vec(value).map_err(|err| Error::Malformed {
                        item: binding.describe(),
                        reason: format!("subject {subject}: {err}"),
                    })?;
                    let sealed = key.seal(&binding.aad(subject), &plaintext, subject)?;
                    Ok(Some(marker(
                        subject,
                        MarkerEntry::Sealed(STANDARD.encode(sealed)),
                    )))
                }
                Some(KeyState::Forgotten) => Err(Error::SubjectForgotten {
                    item: binding.describe(),
                    subject: subject.to_string(),
                }),
                None => Err(Error::NoKeyStore {
                    item: binding.describe(),
                    subject: subject.to_string(),
                }),
            },
        },
        &item,
    )
}

/// Opens every sealed marker of `value` in place: plaintext again, or a
/// forgotten marker when its subject was forgotten.
pub(crate) fn open(value: &mut Value, keys: &KeySet, binding: &Binding<'_>) -> Result<(), Error> {
    let item = || binding.describe();
    rewrite(
        value,
        &mut |found| {
            let Marker::Sealed { subject, sealed } = found else {
                return Ok(None);
            };
            match keys.get(subject) {
                Some(KeyState::Forgotten) => Ok(Some(marker(subject, MarkerEntry::Forgotten))),
                Some(KeyState::Active(key)) => {
                    let failed = || Error::Authentication {
                        item: binding.describe(),
                        subject: subject.to_string(),
                    };
                    let bytes = STANDARD.decode(sealed).map_err(|_| failed())?;
                    let plain = key.open(&binding.aad(subject), &bytes).ok_or_else(failed)?;
                    let value = serde_json::from_slice(&plain).map_err(|_| failed())?;
                    Ok(Some(marker(subject, MarkerEntry::Plain(value))))
                }
                None => Err(Error::NoKeyStoreToRead {
                    item: binding.describe(),
                    subject: subject.to_string(),
                }),
            }
        },
        &item,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn keys() -> KeySet {
        let key = DataKey::new(&[7; KEY_LEN], "c").unwrap();
        KeySet::from([("c".to_string(), KeyState::Active(Arc::new(key)))])
    }

    const AT: Binding<'static> = Binding {
        kind: "event",
        key: "Order:o-1",
        sequence: 1,
        attribute: "Payload",
    };

    #[test]
    fn sealed_values_open_in_their_place_only() {
        let plain =
            serde_json::json!({"name": {"$personal": {"subject": "c", "value": "Ada"}}, "n": 1});
        let mut value = plain.clone();
        seal(&mut value, &keys(), &AT).unwrap();
        assert!(!value.to_string().contains("Ada"));
        let mut opened = value.clone();
        open(&mut opened, &keys(), &AT).unwrap();
        assert_eq!(opened, plain);
        let elsewhere = Binding { sequence: 2, ..AT };
        let err = open(&mut value, &keys(), &elsewhere).unwrap_err();
        assert!(matches!(err, Error::Authentication { .. }), "{err}");
    }

    #[test]
    fn nested_personal_values_are_refused() {
        let inner = serde_json::json!({"$personal": {"subject": "c", "value": "Ada"}});
        let mut value =
            serde_json::json!({"$personal": {"subject": "c", "value": {"name": inner}}});
        let err = seal(&mut value, &keys(), &AT).unwrap_err();
        assert!(err.to_string().contains("not nested"), "{err}");
    }
}
