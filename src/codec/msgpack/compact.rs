//! Legacy payloads (tag `0xC1 0x01`): MessagePack in rmp-serde's compact
//! forms, as dynamo-es 0.5 wrote typed values.
//!
//! **Invariant:** read only, with rmp-serde itself, so they read into their
//! types exactly as they were written; never written again (except by the
//! test helper below, to make such data for tests).

use serde::de::DeserializeOwned;

use crate::codec::model::MAX_DEPTH;
use crate::error::{Error, Result};

/// Decodes a legacy payload into `T` with rmp-serde, as it was written.
pub(in crate::codec) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: String| Error::Corrupt {
        format: "msgpack-compact",
        reason,
    };
    let mut body = bytes.get(2..).unwrap_or_default();
    let value = {
        let mut deserializer = rmp_serde::Deserializer::new(&mut body);
        deserializer.set_max_depth(MAX_DEPTH);
        T::deserialize(&mut deserializer).map_err(|err| corrupt(err.to_string()))?
    };
    if body.is_empty() {
        Ok(value)
    } else {
        Err(corrupt(format!("{} trailing bytes", body.len())))
    }
}

/// Encodes `value` in the legacy compact form, as dynamo-es 0.5 wrote
/// typed values (tests of old data only).
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![
        crate::codec::encoding::TAG,
        crate::codec::encoding::TAG_MSGPACK_COMPACT,
    ];
    let mut serializer = rmp_serde::Serializer::new(&mut out).with_struct_map();
    value
        .serialize(&mut serializer)
        .map_err(|err| Error::Serde(Box::new(err)))?;
    Ok(out)
}
