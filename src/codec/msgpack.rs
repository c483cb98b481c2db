//! MessagePack with named fields (rmp-serde), behind a two-byte tag.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{TAG, TAG_MSGPACK};
use crate::error::{Error, Result};

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![TAG, TAG_MSGPACK];
    let mut serializer = rmp_serde::Serializer::new(&mut out).with_struct_map();
    value
        .serialize(&mut serializer)
        .map_err(|err| Error::Serde(Box::new(err)))?;
    Ok(out)
}

/// Nesting deeper than this is refused, as `serde_json` refuses it: reading
/// recurses once per level, and a hostile payload must not exhaust the
/// stack (rmp-serde's own limit, 1024, overflows a 2 MiB thread in debug
/// builds).
const MAX_DEPTH: usize = 128;

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: String| Error::Corrupt {
        format: "msgpack",
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
