//! Personal data encrypted per data subject, and forgetting a subject by
//! destroying its key (crypto-shredding). Feature `encryption`.
//!
//! A field of type [`Personal<T>`] holds a value and the id of the person
//! it belongs to. A repository configured with a [`KeyStore`]
//! ([`DynamoEventRepository::with_encryption`](crate::DynamoEventRepository::with_encryption),
//! [`DynamoViewRepository::with_encryption`](crate::DynamoViewRepository::with_encryption),
//! [`EventDecoder::with_encryption`](crate::projection::EventDecoder::with_encryption))
//! stores it as AES-256-GCM ciphertext under that subject's data key, and
//! everything else in the payload stays readable. [`KeyStore::forget`]
//! destroys the key: from then on every event, snapshot and view that held
//! the subject's fields still loads, with those fields
//! [`Personal::Forgotten`].
//!
//! **Invariant:** plaintext personal data is never written: a payload
//! holding a [`Personal::Known`] value is sealed before it is encoded, or
//! the write fails with a typed error and nothing is sent. A ciphertext
//! opens only in the item and attribute it was written to, under its
//! subject's key; a ciphertext that does not open is an error, never
//! [`Personal::Forgotten`]. Every codec stores the ciphertext as an
//! ordinary string, so recode copies it untouched.
//!
//! The guide's chapter `docs/guide/forgetting.md` has a worked example, the
//! IAM policy and the costs.

mod error;
mod kek;
mod keys;
mod payload;
mod personal;
mod seal;
mod table;

pub use aws_sdk_kms;
pub use error::Error;
pub use kek::{GeneratedKey, KeyEncryptionKey, KmsKek, LocalKek, PlainKey};
pub use keys::{KeyStore, DEFAULT_CACHE_CAPACITY, DEFAULT_KEY_TABLE};
pub(crate) use payload::{
    event_payloads_in_place, open_all, open_cached, opened_value, sealed_subjects, sealed_value,
    Direction,
};
pub use personal::{Personal, MARKER};
pub(crate) use seal::{holds_personal, Binding};
pub use table::{
    forget, subject_status, Forgot, CREATED_AT, FORGOTTEN_AT, KEK_ID, SUBJECT, WRAPPED_KEY,
};
