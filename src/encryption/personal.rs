//! [`Personal<T>`]: a value that belongs to a data subject, and the marker
//! it travels as inside a payload's `serde_json::Value`.
//!
//! **Invariant:** a `Personal` value serializes to exactly one marker
//! object, `{"$personal": {...}}`, whose inner object names the subject and
//! holds one of `value` (plaintext, only ever in memory), `sealed` (the
//! ciphertext, as stored) or `forgotten: true`. It deserializes from the
//! plaintext and forgotten forms only: a sealed marker that reaches a type
//! is an error, never a silent default.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The key of the one-entry object a personal value travels as.
pub const MARKER: &str = "$personal";
const SUBJECT: &str = "subject";
const VALUE: &str = "value";
const SEALED: &str = "sealed";
const FORGOTTEN: &str = "forgotten";
/// In place of `value`, in a marker no writer accepts: why the value has
/// no exact `serde_json::Value` (see [`Personal`]'s `Serialize`).
const INEXACT: &str = "inexact";

/// A value that belongs to a data subject (a customer, a courier), stored
/// encrypted under that subject's data key, and read back as
/// [`Personal::Forgotten`] once the subject is forgotten
/// ([`KeyStore::forget`](super::KeyStore::forget)).
///
/// The subject id is stored in clear beside the ciphertext (it says which
/// key opens it): use a pseudonymous id (a customer number, a UUID), never
/// the e-mail address or name itself.
///
/// ```
/// use dynamo_es::encryption::Personal;
///
/// let email = Personal::new("customer-17", "ada@example.com".to_string());
/// assert_eq!(email.subject(), "customer-17");
/// assert_eq!(email.value().map(String::as_str), Some("ada@example.com"));
/// let forgotten: Personal<String> = Personal::Forgotten { subject: "customer-17".into() };
/// assert_eq!(forgotten.value(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Personal<T> {
    /// The value, readable: its subject has a data key.
    Known {
        /// The data subject's id.
        subject: String,
        /// The value.
        value: T,
    },
    /// The subject was forgotten: the value can no longer be read, by
    /// anyone. Aggregates, projections and views get this variant and go on.
    Forgotten {
        /// The data subject's id.
        subject: String,
    },
}

impl<T> Personal<T> {
    /// `value`, belonging to `subject`.
    pub fn new(subject: impl Into<String>, value: T) -> Self {
        Personal::Known {
            subject: subject.into(),
            value,
        }
    }

    /// The data subject's id.
    pub fn subject(&self) -> &str {
        match self {
            Personal::Known { subject, .. } | Personal::Forgotten { subject } => subject,
        }
    }

    /// The value, or `None` if its subject was forgotten.
    pub fn value(&self) -> Option<&T> {
        match self {
            Personal::Known { value, .. } => Some(value),
            Personal::Forgotten { .. } => None,
        }
    }

    /// True if the subject was forgotten.
    pub fn is_forgotten(&self) -> bool {
        matches!(self, Personal::Forgotten { .. })
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Known<'a, T> {
            subject: &'a str,
            value: &'a T,
        }
        #[derive(Serialize)]
        struct Forgotten<'a> {
            subject: &'a str,
            forgotten: bool,
        }
        #[derive(Serialize)]
        struct Inexact<'a> {
            subject: &'a str,
            inexact: String,
        }
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            // Every payload is sealed as a `serde_json::Value`, which holds
            // integers of 64 bits: a value it cannot hold exactly (a u128
            // or i128 beyond them) would be sealed changed. It is written
            // as a marker every writer refuses instead
            // (`encryption::Error::Malformed`), so nothing is stored.
            Personal::Known { subject, value } => match serde_json::to_value(value) {
                Ok(_) => map.serialize_entry(MARKER, &Known { subject, value })?,
                Err(err) => map.serialize_entry(
                    MARKER,
                    &Inexact {
                        subject,
                        inexact: err.to_string(),
                    },
                )?,
            },
            Personal::Forgotten { subject } => map.serialize_entry(
                MARKER,
                &Forgotten {
                    subject,
                    forgotten: true,
                },
            )?,
        }
        map.end()
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let marker = Marker::parse(&value)
            .ok_or_else(|| {
                D::Error::custom("expected a personal data marker {\"$personal\": ...}")
            })?
            .map_err(D::Error::custom)?;
        match marker {
            Marker::Plain { subject, value } => Ok(Personal::Known {
                subject: subject.to_string(),
                value: T::deserialize(value.clone()).map_err(D::Error::custom)?,
            }),
            Marker::Forgotten { subject } => Ok(Personal::Forgotten {
                subject: subject.to_string(),
            }),
            Marker::Sealed { subject, .. } => Err(D::Error::custom(format!(
                "the personal data of subject {subject} is still encrypted: read it through a \
                 repository configured with `with_encryption(KeyStore)`"
            ))),
        }
    }
}

/// A personal data marker found in a payload.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Marker<'a> {
    /// Plaintext: `{"subject": s, "value": v}`.
    Plain {
        /// The subject.
        subject: &'a str,
        /// The value.
        value: &'a Value,
    },
    /// Ciphertext: `{"subject": s, "sealed": base64}`.
    Sealed {
        /// The subject.
        subject: &'a str,
        /// Base64 of nonce, ciphertext and tag.
        sealed: &'a str,
    },
    /// `{"subject": s, "forgotten": true}`.
    Forgotten {
        /// The subject.
        subject: &'a str,
    },
}

impl<'a> Marker<'a> {
    /// The marker `value` is, `None` if it is not one (an object of one
    /// entry, `$personal`), or what is wrong with it.
    pub(crate) fn parse(value: &'a Value) -> Option<Result<Self, String>> {
        let Value::Object(outer) = value else {
            return None;
        };
        if outer.len() != 1 {
            return None;
        }
        let inner = outer.get(MARKER)?;
        Some(Self::parse_inner(inner))
    }

    fn parse_inner(inner: &'a Value) -> Result<Self, String> {
        let Value::Object(inner) = inner else {
            return Err("its content is not an object".to_string());
        };
        let Some(Value::String(subject)) = inner.get(SUBJECT) else {
            return Err("it names no subject".to_string());
        };
        if inner.len() != 2 {
            return Err(format!(
                "subject {subject}: expected exactly one of `value`, `sealed` or `forgotten` beside `subject`"
            ));
        }
        if let Some(value) = inner.get(VALUE) {
            return Ok(Marker::Plain { subject, value });
        }
        if let Some(Value::String(reason)) = inner.get(INEXACT) {
            return Err(format!(
                "subject {subject}: its value has no exact JSON value ({reason}): an integer \
                 beyond 64 bits (a u128 or i128 past u64 or i64) would be sealed changed; keep \
                 such a number in a `Personal<String>` (its decimal digits), or split it"
            ));
        }
        match (inner.get(SEALED), inner.get(FORGOTTEN)) {
            (Some(Value::String(sealed)), None) => Ok(Marker::Sealed { subject, sealed }),
            (None, Some(Value::Bool(true))) => Ok(Marker::Forgotten { subject }),
            _ => Err(format!(
                "subject {subject}: expected `value`, `sealed` (a string) or `forgotten: true`"
            )),
        }
    }
}

/// The marker object of `subject` holding `entry` (`sealed` or `forgotten`).
pub(crate) fn marker(subject: &str, entry: MarkerEntry) -> Value {
    let mut inner = Map::with_capacity(2);
    inner.insert(SUBJECT.to_string(), Value::String(subject.to_string()));
    match entry {
        MarkerEntry::Plain(value) => inner.insert(VALUE.to_string(), value),
        MarkerEntry::Sealed(sealed) => inner.insert(SEALED.to_string(), Value::String(sealed)),
        MarkerEntry::Forgotten => inner.insert(FORGOTTEN.to_string(), Value::Bool(true)),
    };
    let mut outer = Map::with_capacity(1);
    outer.insert(MARKER.to_string(), Value::Object(inner));
    Value::Object(outer)
}

/// What a marker built by [`marker`] holds.
pub(crate) enum MarkerEntry {
    /// The plaintext value.
    Plain(Value),
    /// Base64 of nonce, ciphertext and tag.
    Sealed(String),
    /// The subject was forgotten.
    Forgotten,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn known_and_forgotten_round_trip_through_values() {
        let known = Personal::new("c-1", "Ada".to_string());
        let value = serde_json::to_value(&known).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"$personal": {"subject": "c-1", "value": "Ada"}})
        );
        assert_eq!(
            serde_json::from_value::<Personal<String>>(value).unwrap(),
            known
        );
        let forgotten: Personal<String> = Personal::Forgotten {
            subject: "c-1".into(),
        };
        let value = serde_json::to_value(&forgotten).unwrap();
        assert_eq!(
            serde_json::from_value::<Personal<String>>(value).unwrap(),
            forgotten
        );
    }

    #[test]
    fn a_value_beyond_64_bits_is_a_marker_every_reader_refuses() {
        for value in [
            serde_json::to_value(Personal::new("c-1", u128::MAX)).unwrap(),
            serde_json::to_value(Personal::new("c-1", i128::MIN)).unwrap(),
        ] {
            let reason = Marker::parse(&value).unwrap().unwrap_err();
            assert!(reason.contains("u128 or i128"), "{reason}");
        }
        let fits = serde_json::to_value(Personal::new("c-1", u128::from(u64::MAX))).unwrap();
        assert!(matches!(
            Marker::parse(&fits),
            Some(Ok(Marker::Plain { .. }))
        ));
    }

    #[test]
    fn a_sealed_marker_never_deserializes() {
        let sealed = marker("c-1", MarkerEntry::Sealed("AAAA".into()));
        let err = serde_json::from_value::<Personal<String>>(sealed).unwrap_err();
        assert!(err.to_string().contains("still encrypted"), "{err}");
    }
}
