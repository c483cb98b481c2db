//! MessagePack: the data model in MessagePack, behind a two-byte tag.
//!
//! **Invariant:** a payload tagged `0xC1 0x02` is an exact spelling of the
//! same [`Model`] as the JSON text `serde_json` writes for the value, so a
//! typed write, a `serde_json::Value` write and a recode from JSON all give
//! one payload, and every reader gets back what JSON would give it.
//!
//! | model | MessagePack |
//! |---|---|
//! | null, bool, string | nil, bool, str |
//! | integer within 64 bits | int (smallest form) |
//! | integer beyond 64 bits | ext type 1 (`u128`) or 2 (`i128`), 16 bytes big-endian |
//! | float | float 64 |
//! | array, map | array, map with str keys, entries in order |
//!
//! Every serde form (human-readable `Uuid`, `IpAddr`, integer map keys as
//! strings, enums, `Option`, bytes as arrays) is the JSON form: writing
//! builds the model `serde_json::to_vec` would write (directly, or through
//! JSON text where the direct serializer declines), and reading into a type
//! goes through `serde_json`'s deserializer.
//!
//! Payloads tagged `0xC1 0x01` were written by dynamo-es before the data
//! model was fixed: rmp-serde's compact forms (a `Uuid` as 16 bytes, integer
//! map keys, an `IpAddr` as a variant). They stay readable into their types
//! and are never written again.

use rmp::encode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::encoding::{TAG, TAG_MSGPACK};
use super::model::{check_keys, Model, MAX_DEPTH};
use super::model_ser;
use super::refusal::Cause;
use crate::error::{Error, Result};

/// Extension type of an integer above `u64::MAX`.
pub(super) const EXT_U128: i8 = 1;
/// Extension type of an integer below `i64::MIN`.
pub(super) const EXT_I128: i8 = 2;

pub(super) fn corrupt(reason: impl Into<String>) -> Error {
    Error::Corrupt {
        format: "msgpack",
        reason: reason.into(),
    }
}

fn write_error(err: impl std::fmt::Display) -> Error {
    Error::Serde(format!("MessagePack write: {err}").into())
}

/// Encodes a serializable value: its JSON form, spelled in MessagePack.
///
/// The value goes straight into the data model where the direct serializer
/// is sure to build what `serde_json` would write, and through JSON text
/// otherwise: the bytes are the same either way.
pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    match model_ser::to_model(value) {
        Ok(model) => {
            let mut out = Vec::with_capacity(256);
            out.extend_from_slice(&[TAG, TAG_MSGPACK]);
            write(&model, &mut out, 0)?;
            Ok(out)
        }
        Err(model_ser::Unsupported) => encode_via_json(value),
    }
}

/// Encodes a `serde_json::Value`, which already is the data model (with
/// integers of at most 64 bits): written straight, with no copy.
pub(super) fn encode_value(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[TAG, TAG_MSGPACK]);
    if write_value(value, &mut out, 0)? {
        Ok(out)
    } else {
        encode_via_json(value)
    }
}

/// Writes `value`; `false` for a number that is none of `u64`, `i64` and
/// finite `f64` (possible only with serde_json's `arbitrary_precision`),
/// which the JSON-text path then spells exactly.
///
/// `depth` is the number of arrays and maps around `value`: nesting every
/// reader refuses is [`Cause::TooDeep`].
fn write_value(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<bool> {
    match value {
        Value::Null => encode::write_nil(out).map_err(write_error)?,
        Value::Bool(b) => encode::write_bool(out, *b).map_err(write_error)?,
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                encode::write_uint(out, u).map_err(write_error)?;
            } else if let Some(i) = n.as_i64() {
                encode::write_sint(out, i).map_err(write_error)?;
            } else {
                match n.as_f64() {
                    Some(f) if n.is_f64() && f.is_finite() => {
                        encode::write_f64(out, f).map_err(write_error)?
                    }
                    _ => return Ok(false),
                }
            }
        }
        Value::String(s) => encode::write_str(out, s).map_err(write_error)?,
        Value::Array(items) => {
            let depth = nested(depth)?;
            encode::write_array_len(out, len_u32(items.len())?).map_err(write_error)?;
            for item in items {
                if !write_value(item, out, depth)? {
                    return Ok(false);
                }
            }
        }
        Value::Object(map) => {
            let depth = nested(depth)?;
            encode::write_map_len(out, len_u32(map.len())?).map_err(write_error)?;
            for (key, value) in map {
                encode::write_str(out, key).map_err(write_error)?;
                if !write_value(value, out, depth)? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// Encodes through JSON text: `serde_json::to_vec` (refusing what JSON's
/// writer refuses), then spelled in MessagePack. The reference path, exact
/// by construction.
pub(crate) fn encode_via_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let json = super::json::encode(value)?;
    from_json(&json)
}

/// Spells JSON text in MessagePack, exactly.
pub(super) fn from_json(json: &[u8]) -> Result<Vec<u8>> {
    let model = Model::from_json(json)?;
    let mut out = Vec::with_capacity(json.len() + 2);
    out.extend_from_slice(&[TAG, TAG_MSGPACK]);
    write(&model, &mut out, 0)?;
    Ok(out)
}

/// Reads a tagged payload (`0xC1 0x02`) into the data model.
pub(super) fn to_model(bytes: &[u8]) -> Result<Model<'_>> {
    read::read(bytes.get(2..).unwrap_or_default())
}

/// Decodes a tagged payload into `T` with `serde_json`'s deserializer: from
/// a `serde_json::Value` when the value fits one, else from JSON text.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let value = match decode_value(bytes) {
        Ok(value) => value,
        // An integer beyond 64 bits: only JSON text carries it to `T`.
        Err(Error::Inexact { .. }) => {
            let json = to_model(bytes)?.to_json()?;
            return serde_json::from_slice(&json).map_err(|err| corrupt(err.to_string()));
        }
        Err(err) => return Err(err),
    };
    serde_json::from_value(value).map_err(|err| corrupt(err.to_string()))
}

/// Decodes a tagged payload into a `serde_json::Value`, refusing integers
/// the `Value` cannot hold.
pub(super) fn decode_value(bytes: &[u8]) -> Result<Value> {
    read::read(bytes.get(2..).unwrap_or_default())
}

fn len_u32(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| write_error(format!("{len} elements exceed MessagePack's 2^32")))
}

/// An integer beyond 64 bits: extension `kind`, 16 bytes big-endian.
fn write_ext_int(out: &mut Vec<u8>, kind: i8, bytes: [u8; 16]) -> Result<()> {
    encode::write_ext_meta(out, 16, kind).map_err(write_error)?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// The depth of a value inside one more array or map, or [`Cause::TooDeep`]
/// if every reader would refuse that nesting.
fn nested(depth: usize) -> Result<usize> {
    if depth + 1 >= MAX_DEPTH {
        Err(Cause::TooDeep { max: MAX_DEPTH }.into())
    } else {
        Ok(depth + 1)
    }
}

/// Writes `model`, inside `depth` arrays and maps, refusing what every
/// reader would refuse: nesting too deep, a map holding a key twice.
fn write(model: &Model<'_>, out: &mut Vec<u8>, depth: usize) -> Result<()> {
    match model {
        Model::Null => encode::write_nil(out).map_err(write_error)?,
        Model::Bool(b) => encode::write_bool(out, *b).map_err(write_error)?,
        Model::UInt(n) => match u64::try_from(*n) {
            Ok(small) => {
                encode::write_uint(out, small).map_err(write_error)?;
            }
            Err(_) => write_ext_int(out, EXT_U128, n.to_be_bytes())?,
        },
        Model::NegInt(n) => match i64::try_from(*n) {
            Ok(small) => {
                encode::write_sint(out, small).map_err(write_error)?;
            }
            Err(_) => write_ext_int(out, EXT_I128, n.to_be_bytes())?,
        },
        Model::Float(f) => encode::write_f64(out, *f).map_err(write_error)?,
        Model::Str(s) => encode::write_str(out, s).map_err(write_error)?,
        Model::Array(items) => {
            let depth = nested(depth)?;
            encode::write_array_len(out, len_u32(items.len())?).map_err(write_error)?;
            for item in items {
                write(item, out, depth)?;
            }
        }
        Model::Map(entries) => {
            let depth = nested(depth)?;
            check_keys(entries, |key| {
                Cause::DuplicateKey {
                    key: format!("{key:?}"),
                }
                .into()
            })?;
            encode::write_map_len(out, len_u32(entries.len())?).map_err(write_error)?;
            for (key, value) in entries {
                encode::write_str(out, key).map_err(write_error)?;
                write(value, out, depth)?;
            }
        }
    }
    Ok(())
}

/// Legacy payloads (`0xC1 0x01`): rmp-serde's compact forms, read only.
pub(crate) mod compact;
mod read;
