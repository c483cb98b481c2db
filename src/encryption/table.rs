//! The key table's items (one per data subject: its wrapped data key, or a
//! tombstone), and forgetting a subject with no key-encryption key: what
//! [`KeyStore::forget`](super::KeyStore::forget) and the `dynamo-es forget`
//! command do, and the look-up its dry run makes.
//!
//! **Invariant:** forgetting writes a tombstone (`Subject` and
//! `ForgottenAt`, no key) in place of the subject's item, whatever it held,
//! so no key can be created for the subject afterwards; it never deletes
//! the item (a missing item is not a forgotten subject).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::error::Error;

/// The key table's key attribute (HASH, S): the subject id.
pub const SUBJECT: &str = "Subject";
/// The wrapped data key (B); absent from a tombstone.
pub const WRAPPED_KEY: &str = "WrappedKey";
/// The id of the key-encryption key that wrapped it (S).
pub const KEK_ID: &str = "KeyEncryptionKey";
/// When the key was created, seconds since the Unix epoch (N).
pub const CREATED_AT: &str = "CreatedAt";
/// When the subject was forgotten, seconds since the Unix epoch (N):
/// present on tombstones only.
pub const FORGOTTEN_AT: &str = "ForgottenAt";

/// What the key table held for a subject: what [`forget`] found, or what
/// [`subject_status`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgot {
    /// A data key (destroyed by [`forget`]).
    KeyDestroyed,
    /// A tombstone: the subject had been forgotten already.
    AlreadyForgotten,
    /// Nothing (none of the subject's data was ever stored); [`forget`]
    /// writes a tombstone, which keeps a key from being created later.
    NoKey,
}

/// Forgets `subject` in the key table `table`: one `PutItem` writing its
/// tombstone. Processes that cached the subject's key keep reading it
/// until it leaves their cache (see
/// [`KeyStore::with_max_age`](super::KeyStore::with_max_age)).
pub async fn forget(client: &Client, table: &str, subject: &str) -> crate::Result<Forgot> {
    let out = client
        .put_item()
        .table_name(table)
        .item(SUBJECT, AttributeValue::S(subject.to_string()))
        .item(FORGOTTEN_AT, AttributeValue::N(now().to_string()))
        .return_values(ReturnValue::AllOld)
        .send()
        .await
        .map_err(|err| key_table_failed(table, "forgetting", "PutItem", subject, err))?;
    let forgot = status_of(&out.attributes.unwrap_or_default());
    if forgot == Forgot::KeyDestroyed {
        tracing::info!(table, subject, "data key destroyed: subject forgotten");
    }
    Ok(forgot)
}

/// What the key table `table` holds for `subject` (one strongly consistent
/// `GetItem`), as [`forget`] would report it: for a dry run.
pub async fn subject_status(client: &Client, table: &str, subject: &str) -> crate::Result<Forgot> {
    let item = subject_item(client, table, subject).await?;
    Ok(status_of(&item.unwrap_or_default()))
}

/// The key table `table`'s item of `subject`, if it has one (one strongly
/// consistent `GetItem`).
pub(crate) async fn subject_item(
    client: &Client,
    table: &str,
    subject: &str,
) -> crate::Result<Option<HashMap<String, AttributeValue>>> {
    let out = client
        .get_item()
        .table_name(table)
        .key(SUBJECT, AttributeValue::S(subject.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|err| key_table_failed(table, "reading", "GetItem", subject, err))?;
    Ok(out.item)
}

fn status_of(item: &HashMap<String, AttributeValue>) -> Forgot {
    if item.contains_key(WRAPPED_KEY) {
        Forgot::KeyDestroyed
    } else if item.contains_key(FORGOTTEN_AT) {
        Forgot::AlreadyForgotten
    } else {
        Forgot::NoKey
    }
}

/// [`Error::KeyTable`]: `api` (a DynamoDB operation) failed on the key
/// table `table` while `operation` the key of `subject`.
pub(crate) fn key_table_failed<E, R>(
    table: &str,
    operation: &'static str,
    api: &'static str,
    subject: &str,
    err: SdkError<E, R>,
) -> crate::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    Error::KeyTable {
        operation,
        subject: subject.to_string(),
        source: Box::new(crate::Error::from_sdk_on(api, table, err)),
    }
    .into()
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
