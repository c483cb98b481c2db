//! Plain JSON: the default format, and the one upstream `dynamo-es` stores.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| Error::Corrupt {
        format: "json",
        reason: err.to_string(),
    })
}
