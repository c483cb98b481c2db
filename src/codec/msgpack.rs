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
//! Writing goes through `serde_json`'s serializer, so every serde form
//! (human-readable `Uuid`, `IpAddr`, integer map keys as strings, enums,
//! `Option`, bytes as arrays) is the JSON form by construction; reading into
//! a type goes through `serde_json`'s deserializer for the same reason.
//!
//! Payloads tagged `0xC1 0x01` were written by dynamo-es before the data
//! model was fixed: rmp-serde's compact forms (a `Uuid` as 16 bytes, integer
//! map keys, an `IpAddr` as a variant). They stay readable into their types
//! and are never written again.

use std::borrow::Cow;

use rmp::encode;
use rmp::Marker;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::model::{Model, MAX_DEPTH};
use super::{TAG, TAG_MSGPACK};
use crate::error::{Error, Result};

/// Extension type of an integer above `u64::MAX`.
const EXT_U128: i8 = 1;
/// Extension type of an integer below `i64::MIN`.
const EXT_I128: i8 = 2;

fn corrupt(reason: impl Into<String>) -> Error {
    Error::Corrupt {
        format: "msgpack",
        reason: reason.into(),
    }
}

fn write_error(err: impl std::fmt::Display) -> Error {
    Error::Serde(format!("MessagePack write: {err}").into())
}

/// Encodes a serializable value: its JSON form, spelled in MessagePack.
pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(value)?;
    from_json(&json)
}

/// Spells JSON text in MessagePack, exactly.
pub(super) fn from_json(json: &[u8]) -> Result<Vec<u8>> {
    let model = Model::from_json(json)?;
    let mut out = Vec::with_capacity(json.len() + 2);
    out.extend_from_slice(&[TAG, TAG_MSGPACK]);
    write(&model, &mut out)?;
    Ok(out)
}

/// Reads a tagged payload (`0xC1 0x02`) into the data model.
pub(super) fn to_model(bytes: &[u8]) -> Result<Model<'_>> {
    let mut reader = Reader {
        bytes: bytes.get(2..).unwrap_or_default(),
        pos: 0,
    };
    let model = reader.read(0)?;
    if reader.pos == reader.bytes.len() {
        Ok(model)
    } else {
        Err(corrupt(format!(
            "{} trailing bytes",
            reader.bytes.len() - reader.pos
        )))
    }
}

/// Decodes a tagged payload into `T` through its JSON form.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let json = to_model(bytes)?.to_json()?;
    serde_json::from_slice(&json).map_err(|err| corrupt(err.to_string()))
}

/// Decodes a tagged payload into a `serde_json::Value`, refusing integers
/// the `Value` cannot hold.
pub(super) fn decode_value(bytes: &[u8]) -> Result<Value> {
    to_model(bytes)?.into_value()
}

fn len_u32(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| write_error(format!("{len} elements exceed MessagePack's 2^32")))
}

fn write(model: &Model<'_>, out: &mut Vec<u8>) -> Result<()> {
    match model {
        Model::Null => encode::write_nil(out).map_err(write_error)?,
        Model::Bool(b) => encode::write_bool(out, *b).map_err(write_error)?,
        Model::UInt(n) => match u64::try_from(*n) {
            Ok(small) => {
                encode::write_uint(out, small).map_err(write_error)?;
            }
            Err(_) => {
                encode::write_ext_meta(out, 16, EXT_U128).map_err(write_error)?;
                out.extend_from_slice(&n.to_be_bytes());
            }
        },
        Model::NegInt(n) => match i64::try_from(*n) {
            Ok(small) => {
                encode::write_sint(out, small).map_err(write_error)?;
            }
            Err(_) => {
                encode::write_ext_meta(out, 16, EXT_I128).map_err(write_error)?;
                out.extend_from_slice(&n.to_be_bytes());
            }
        },
        Model::Float(f) => encode::write_f64(out, *f).map_err(write_error)?,
        Model::Str(s) => encode::write_str(out, s).map_err(write_error)?,
        Model::Array(items) => {
            encode::write_array_len(out, len_u32(items.len())?).map_err(write_error)?;
            for item in items {
                write(item, out)?;
            }
        }
        Model::Map(entries) => {
            encode::write_map_len(out, len_u32(entries.len())?).map_err(write_error)?;
            for (key, value) in entries {
                encode::write_str(out, key).map_err(write_error)?;
                write(value, out)?;
            }
        }
    }
    Ok(())
}

/// A bounds-checked MessagePack reader over a slice, borrowing strings.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt("truncated payload"))?;
        let slice = self.bytes.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len(&mut self, width: usize) -> Result<usize> {
        let value = match width {
            1 => u32::from(self.array::<1>()?[0]),
            2 => u32::from(u16::from_be_bytes(self.array()?)),
            _ => u32::from_be_bytes(self.array()?),
        };
        usize::try_from(value).map_err(|_| corrupt("length out of range"))
    }

    fn str(&mut self, len: usize) -> Result<Cow<'a, str>> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|err| corrupt(format!("string is not UTF-8: {err}")))
    }

    /// Checks a declared element count against the bytes left (each
    /// element takes at least one), before anything is allocated for it.
    fn count(&self, count: usize, per_element: usize) -> Result<usize> {
        let left = self.bytes.len() - self.pos;
        if count.saturating_mul(per_element) > left {
            Err(corrupt(format!(
                "declares {count} elements in {left} bytes"
            )))
        } else {
            Ok(count)
        }
    }

    fn read(&mut self, depth: usize) -> Result<Model<'a>> {
        let marker = Marker::from_u8(self.array::<1>()?[0]);
        Ok(match marker {
            Marker::Null => Model::Null,
            Marker::True => Model::Bool(true),
            Marker::False => Model::Bool(false),
            Marker::FixPos(n) => Model::UInt(u128::from(n)),
            Marker::FixNeg(n) => Model::NegInt(i128::from(n)),
            Marker::U8 => Model::UInt(u128::from(self.array::<1>()?[0])),
            Marker::U16 => Model::UInt(u128::from(u16::from_be_bytes(self.array()?))),
            Marker::U32 => Model::UInt(u128::from(u32::from_be_bytes(self.array()?))),
            Marker::U64 => Model::UInt(u128::from(u64::from_be_bytes(self.array()?))),
            Marker::I8 => Model::int(i128::from(i8::from_be_bytes(self.array()?))),
            Marker::I16 => Model::int(i128::from(i16::from_be_bytes(self.array()?))),
            Marker::I32 => Model::int(i128::from(i32::from_be_bytes(self.array()?))),
            Marker::I64 => Model::int(i128::from(i64::from_be_bytes(self.array()?))),
            Marker::F32 => finite(f64::from(f32::from_be_bytes(self.array()?)))?,
            Marker::F64 => finite(f64::from_be_bytes(self.array()?))?,
            Marker::FixStr(len) => Model::Str(self.str(usize::from(len))?),
            Marker::Str8 => {
                let len = self.len(1)?;
                Model::Str(self.str(len)?)
            }
            Marker::Str16 => {
                let len = self.len(2)?;
                Model::Str(self.str(len)?)
            }
            Marker::Str32 => {
                let len = self.len(4)?;
                Model::Str(self.str(len)?)
            }
            Marker::FixArray(len) => self.items(usize::from(len), depth)?,
            Marker::Array16 => {
                let len = self.len(2)?;
                self.items(len, depth)?
            }
            Marker::Array32 => {
                let len = self.len(4)?;
                self.items(len, depth)?
            }
            Marker::FixMap(len) => self.entries(usize::from(len), depth)?,
            Marker::Map16 => {
                let len = self.len(2)?;
                self.entries(len, depth)?
            }
            Marker::Map32 => {
                let len = self.len(4)?;
                self.entries(len, depth)?
            }
            Marker::FixExt16 => {
                let kind = i8::from_be_bytes(self.array()?);
                let bytes = self.array::<16>()?;
                match kind {
                    EXT_U128 => Model::UInt(u128::from_be_bytes(bytes)),
                    EXT_I128 => Model::int(i128::from_be_bytes(bytes)),
                    other => return Err(corrupt(format!("unknown extension type {other}"))),
                }
            }
            other => {
                return Err(corrupt(format!(
                    "{other:?} is not part of the data model (binary or extension)"
                )))
            }
        })
    }

    fn items(&mut self, len: usize, depth: usize) -> Result<Model<'a>> {
        let depth = nested(depth)?;
        let len = self.count(len, 1)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.read(depth)?);
        }
        Ok(Model::Array(items))
    }

    fn entries(&mut self, len: usize, depth: usize) -> Result<Model<'a>> {
        let depth = nested(depth)?;
        let len = self.count(len, 2)?;
        let mut entries = Vec::with_capacity(len);
        for _ in 0..len {
            let key = match self.read(depth)? {
                Model::Str(key) => key,
                other => return Err(corrupt(format!("map key is not a string: {other:?}"))),
            };
            entries.push((key, self.read(depth)?));
        }
        Ok(Model::Map(entries))
    }
}

fn finite(f: f64) -> Result<Model<'static>> {
    if f.is_finite() {
        Ok(Model::Float(f))
    } else {
        Err(corrupt(format!("non-finite float {f}")))
    }
}

fn nested(depth: usize) -> Result<usize> {
    if depth + 1 >= MAX_DEPTH {
        Err(corrupt(format!("nested {MAX_DEPTH} levels or deeper")))
    } else {
        Ok(depth + 1)
    }
}

/// Legacy payloads (`0xC1 0x01`): rmp-serde's compact forms, read only.
pub(crate) mod compact {
    use super::*;

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
    pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
        let mut out = vec![TAG, crate::codec::TAG_MSGPACK_COMPACT];
        let mut serializer = rmp_serde::Serializer::new(&mut out).with_struct_map();
        value
            .serialize(&mut serializer)
            .map_err(|err| Error::Serde(Box::new(err)))?;
        Ok(out)
    }
}
