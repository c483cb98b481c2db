//! Key-encryption keys: what wraps each subject's data key before it is
//! stored in the key table. [`KmsKek`] (AWS KMS envelope encryption) for
//! production, [`LocalKek`] (a 256-bit key held in memory) for tests and
//! development.
//!
//! **Invariant:** a data key never leaves the process unwrapped, and each
//! wrapped key is bound to its subject (KMS encryption context
//! `subject=<id>`, the local key's associated data), so a wrapped key
//! copied to another subject's item does not unwrap.

use async_trait::async_trait;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use super::error::Error;
use super::seal::{DataKey, KEY_LEN};

/// A data key in plaintext (32 bytes), as a key-encryption key generates
/// or unwraps it. Its `Debug` shows no bytes.
#[derive(Clone)]
pub struct PlainKey([u8; KEY_LEN]);

impl PlainKey {
    /// The key of `bytes`.
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        PlainKey(bytes)
    }

    /// The key of `bytes`, `None` unless there are exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(PlainKey)
    }

    pub(crate) fn data_key(&self, subject: &str) -> Result<DataKey, Error> {
        DataKey::new(&self.0, subject)
    }
}

impl std::fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainKey(..)")
    }
}

/// A new data key: in plaintext for this process, wrapped for the key
/// table.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The data key.
    pub plaintext: PlainKey,
    /// The data key wrapped by the key-encryption key.
    pub wrapped: Vec<u8>,
}

/// Wraps and unwraps data keys. Implement it for another key manager;
/// errors are [`Error::Kek`] naming the operation and key.
#[async_trait]
pub trait KeyEncryptionKey: std::fmt::Debug + Send + Sync {
    /// The key's id, stored beside every key it wraps (a KMS key ARN or
    /// alias, or a local key's name).
    fn id(&self) -> &str;

    /// A new data key for `subject`.
    async fn generate(&self, subject: &str) -> Result<GeneratedKey, Error>;

    /// The data key of `subject` that this key wrapped as `wrapped`.
    async fn unwrap(&self, subject: &str, wrapped: &[u8]) -> Result<PlainKey, Error>;
}

/// A key-encryption key held in memory: for tests and development. Data
/// keys are wrapped with AES-256-GCM, the subject as associated data.
#[derive(Clone)]
pub struct LocalKek {
    id: String,
    key: std::sync::Arc<DataKey>,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LocalKek {
    /// A key named `id` of the 32 bytes `key`.
    pub fn new(id: &str, key: [u8; KEY_LEN]) -> Result<Self, Error> {
        Ok(LocalKek {
            id: id.to_string(),
            key: std::sync::Arc::new(DataKey::new(&key, id)?),
        })
    }

    fn kek_error(&self, operation: &'static str, subject: &str, message: &str) -> Error {
        Error::Kek {
            operation,
            kek: self.id.clone(),
            subject: subject.to_string(),
            message: message.to_string(),
            source: None,
        }
    }
}

#[async_trait]
impl KeyEncryptionKey for LocalKek {
    fn id(&self) -> &str {
        &self.id
    }

    async fn generate(&self, subject: &str) -> Result<GeneratedKey, Error> {
        let mut bytes = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Cipher {
            operation: "random",
            subject: subject.to_string(),
        })?;
        let wrapped = self.key.seal(subject.as_bytes(), &bytes, subject)?;
        Ok(GeneratedKey {
            plaintext: PlainKey(bytes),
            wrapped,
        })
    }

    async fn unwrap(&self, subject: &str, wrapped: &[u8]) -> Result<PlainKey, Error> {
        let plain = self.key.open(subject.as_bytes(), wrapped).ok_or_else(|| {
            self.kek_error(
                "unwrap",
                subject,
                "the wrapped data key does not authenticate under this local key \
                 (another key wrapped it, or it belongs to another subject)",
            )
        })?;
        PlainKey::from_slice(&plain).ok_or_else(|| {
            self.kek_error("unwrap", subject, "the unwrapped data key is not 32 bytes")
        })
    }
}

/// AWS KMS envelope encryption: each data key comes from `GenerateDataKey`
/// (`AES_256`) and is unwrapped by `Decrypt`, both with the encryption
/// context `subject=<id>`. Needs `kms:GenerateDataKey` and `kms:Decrypt`
/// on the key.
#[derive(Debug, Clone)]
pub struct KmsKek {
    client: aws_sdk_kms::Client,
    key_id: String,
}

/// The encryption context key naming the data subject.
const CONTEXT_SUBJECT: &str = "subject";

impl KmsKek {
    /// The KMS key `key_id` (an id, ARN, alias name or alias ARN), through
    /// `client`.
    pub fn new(client: aws_sdk_kms::Client, key_id: &str) -> Self {
        KmsKek {
            client,
            key_id: key_id.to_string(),
        }
    }

    fn kms_error<E>(&self, operation: &'static str, subject: &str, err: E) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_string);
        let hint = match code.as_deref() {
            Some("ThrottlingException") => {
                "; KMS throttled the request: retry later, or raise the KMS request quota"
            }
            Some("AccessDeniedException") => {
                "; grant kms:GenerateDataKey and kms:Decrypt on the key"
            }
            Some("DisabledException") | Some("KMSInvalidStateException") => {
                "; the key is disabled or pending deletion: enable it (cancel its deletion)"
            }
            Some("NotFoundException") => "; no such key: check the key id or alias",
            _ => "",
        };
        Error::Kek {
            operation,
            kek: self.key_id.clone(),
            subject: subject.to_string(),
            message: format!("{}{hint}", DisplayErrorContext(&err)),
            source: Some(Box::new(err)),
        }
    }
}

#[async_trait]
impl KeyEncryptionKey for KmsKek {
    fn id(&self) -> &str {
        &self.key_id
    }

    async fn generate(&self, subject: &str) -> Result<GeneratedKey, Error> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CONTEXT_SUBJECT, subject)
            .send()
            .await
            .map_err(|err| self.kms_error("KMS GenerateDataKey", subject, err))?;
        let plaintext = out
            .plaintext()
            .and_then(|blob| PlainKey::from_slice(blob.as_ref()));
        let wrapped = out.ciphertext_blob().map(|blob| blob.as_ref().to_vec());
        match (plaintext, wrapped) {
            (Some(plaintext), Some(wrapped)) => Ok(GeneratedKey { plaintext, wrapped }),
            _ => Err(Error::Kek {
                operation: "KMS GenerateDataKey",
                kek: self.key_id.clone(),
                subject: subject.to_string(),
                message: "the response lacks a 32-byte plaintext key or its ciphertext blob".into(),
                source: None,
            }),
        }
    }

    async fn unwrap(&self, subject: &str, wrapped: &[u8]) -> Result<PlainKey, Error> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(CONTEXT_SUBJECT, subject)
            .send()
            .await
            .map_err(|err| self.kms_error("KMS Decrypt", subject, err))?;
        out.plaintext()
            .and_then(|blob| PlainKey::from_slice(blob.as_ref()))
            .ok_or_else(|| Error::Kek {
                operation: "KMS Decrypt",
                kek: self.key_id.clone(),
                subject: subject.to_string(),
                message: "the response lacks a 32-byte plaintext key".into(),
                source: None,
            })
    }
}
