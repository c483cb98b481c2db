//! [`Error`]: every error of [`encryption`](crate::encryption). Each names
//! the data subject and, where there is one, the item and attribute, and
//! says what to do. None of them ever carries personal data: a subject id
//! is a pseudonymous id by contract, and no plaintext is quoted.

use crate::error::BoxError;

/// An error sealing or opening personal data, or keeping its keys.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A payload to be written holds a [`Personal`](super::Personal) value
    /// but the repository has no [`KeyStore`](super::KeyStore): nothing was
    /// written (plaintext personal data is never stored).
    #[error(
        "{item} holds personal data of subject {subject} but no key store is configured; \
         nothing was written: configure the repository with `with_encryption(KeyStore)`"
    )]
    NoKeyStore {
        /// What was being written, e.g. `event 3 of Order:o-1 (Payload)`.
        item: String,
        /// The data subject.
        subject: String,
    },
    /// A stored payload holds encrypted personal data but the repository
    /// reading it has no [`KeyStore`](super::KeyStore).
    #[error(
        "{item} holds encrypted personal data of subject {subject} but no key store is \
         configured: configure the reader with `with_encryption(KeyStore)`"
    )]
    NoKeyStoreToRead {
        /// What was being read.
        item: String,
        /// The data subject.
        subject: String,
    },
    /// New personal data names a subject that was forgotten: no new key is
    /// created for a forgotten subject. Nothing was written.
    #[error(
        "{item}: subject {subject} was forgotten; personal data of a forgotten subject \
         cannot be stored (write `Personal::Forgotten`, or use a new subject id)"
    )]
    SubjectForgotten {
        /// What was being written.
        item: String,
        /// The data subject.
        subject: String,
    },
    /// A ciphertext did not authenticate under its subject's key and the
    /// item's key and attribute: it was moved from another item or
    /// attribute, altered, or sealed with another key. It is never read as
    /// forgotten.
    #[error(
        "{item}: the personal data of subject {subject} does not authenticate (moved from \
         another item, altered, or written under another key); restore the item from a backup"
    )]
    Authentication {
        /// What was being read.
        item: String,
        /// The data subject.
        subject: String,
    },
    /// A personal-data marker in a payload is malformed.
    #[error("{item}: malformed personal data marker: {reason}")]
    Malformed {
        /// What was being read or written.
        item: String,
        /// What is wrong.
        reason: String,
    },
    /// A ciphertext names a subject with no item in the key table: the key
    /// table is not the one the data was written with, or its item was
    /// deleted by hand (a forget leaves a tombstone). Never read as
    /// forgotten.
    #[error(
        "no data key for subject {subject} in key table {table}; the payload was sealed with \
         a key from another table, or the key item was deleted by hand"
    )]
    KeyMissing {
        /// The key table.
        table: String,
        /// The data subject.
        subject: String,
    },
    /// A decoder found a subject whose key it had not loaded: load the
    /// batch's keys first (`EventDecoder::prefetch`, which the dispatcher
    /// calls for every batch), or raise the key cache's capacity above the
    /// subjects of one batch.
    #[error(
        "the data key of subject {subject} (key table {table}) is not loaded: call          `EventDecoder::prefetch` on the batch first, or raise the key cache's capacity"
    )]
    NotLoaded {
        /// The key table.
        table: String,
        /// The data subject.
        subject: String,
    },
    /// A key item is malformed, or was wrapped by another key-encryption
    /// key than the one configured.
    #[error("key table {table}, subject {subject}: {reason}")]
    KeyItem {
        /// The key table.
        table: String,
        /// The data subject.
        subject: String,
        /// What is wrong, and the fix.
        reason: String,
    },
    /// Reading or writing the key table failed (throttled, unreachable,
    /// missing, access denied: the typed [`crate::Error`] says which).
    /// Nothing was written to the event, snapshot or view tables.
    #[error("{operation} of the data key of subject {subject} failed: {source}")]
    KeyTable {
        /// What was being done: `reading`, `creating` or `forgetting`.
        operation: &'static str,
        /// The data subject.
        subject: String,
        /// The DynamoDB error, typed.
        #[source]
        source: Box<crate::Error>,
    },
    /// The key-encryption key could not wrap or unwrap a data key: an AWS
    /// KMS call failed (throttled, access denied, key disabled or pending
    /// deletion, unreachable), or a local key could not. Nothing was
    /// written to the event, snapshot or view tables.
    #[error("{operation} with key-encryption key {kek} for subject {subject} failed: {message}")]
    Kek {
        /// The operation, e.g. `KMS GenerateDataKey` or `KMS Decrypt`.
        operation: &'static str,
        /// The key-encryption key's id (a KMS key id, ARN or alias).
        kek: String,
        /// The data subject.
        subject: String,
        /// What KMS or the local key said, with the fix when known.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The cipher failed on an operation that cannot fail with valid
    /// inputs (an invalid key length, the random source).
    #[error("AES-256-GCM {operation} failed for subject {subject}")]
    Cipher {
        /// `seal`, `open`, `key` or `random`.
        operation: &'static str,
        /// The data subject.
        subject: String,
    },
}

impl Error {
    /// True if the stored data is at fault (a read would fail again the
    /// same way), rather than a key table, KMS or configuration.
    pub(crate) fn is_data_error(&self) -> bool {
        matches!(
            self,
            Error::Authentication { .. } | Error::Malformed { .. } | Error::KeyItem { .. }
        )
    }
}

impl From<Error> for crate::Error {
    fn from(err: Error) -> Self {
        crate::Error::Encryption(Box::new(err))
    }
}
