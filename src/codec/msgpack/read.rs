//! Reading tagged MessagePack (`0xC1 0x02`) into the data model, or straight
//! into a `serde_json::Value`.
//!
//! **Invariant:** one reader, bounds-checked on every byte, builds either
//! output through [`Build`], so both read exactly the same values and refuse
//! exactly the same bytes: anything outside the data model (binary data,
//! unknown extensions, non-string map keys, a map holding a key twice,
//! non-finite floats, nesting of 128 levels, a declared length longer than
//! the bytes left) is
//! [`Error::Corrupt`]; an integer a `Value` cannot hold is [`Error::Inexact`].

use std::borrow::Cow;

use rmp::Marker;
use serde_json::Value;

use super::{corrupt, EXT_I128, EXT_U128};
use crate::codec::model::{check_keys, inexact, repeated_key, Model, MAX_DEPTH};
use crate::error::Result;

/// What a reader builds: the data model, or a `serde_json::Value`.
pub(super) trait Build<'a>: Sized {
    fn null() -> Self;
    fn bool(value: bool) -> Self;
    /// A non-negative integer.
    fn uint(value: u128) -> Result<Self>;
    /// Any integer, in its one form.
    fn int(value: i128) -> Result<Self> {
        match u128::try_from(value) {
            Ok(unsigned) => Self::uint(unsigned),
            Err(_) => Self::neg(value),
        }
    }
    /// A negative integer.
    fn neg(value: i128) -> Result<Self>;
    /// A finite float.
    fn float(value: f64) -> Self;
    fn str(value: Cow<'a, str>) -> Self;
    fn array(items: Vec<Self>) -> Self;
    fn map(entries: Vec<(Cow<'a, str>, Self)>) -> Self;
}

impl<'a> Build<'a> for Model<'a> {
    fn null() -> Self {
        Model::Null
    }
    fn bool(value: bool) -> Self {
        Model::Bool(value)
    }
    fn uint(value: u128) -> Result<Self> {
        Ok(Model::UInt(value))
    }
    fn neg(value: i128) -> Result<Self> {
        Ok(Model::NegInt(value))
    }
    fn float(value: f64) -> Self {
        Model::Float(value)
    }
    fn str(value: Cow<'a, str>) -> Self {
        Model::Str(value)
    }
    fn array(items: Vec<Self>) -> Self {
        Model::Array(items)
    }
    fn map(entries: Vec<(Cow<'a, str>, Self)>) -> Self {
        Model::Map(entries)
    }
}

fn beyond_64_bits(n: impl std::fmt::Display) -> crate::error::Error {
    inexact(
        "serde_json::Value",
        format!("integer {n} is beyond 64 bits; decode it into its own type instead"),
    )
}

impl<'a> Build<'a> for Value {
    fn null() -> Self {
        Value::Null
    }
    fn bool(value: bool) -> Self {
        Value::Bool(value)
    }
    fn uint(value: u128) -> Result<Self> {
        u64::try_from(value)
            .map(Value::from)
            .map_err(|_| beyond_64_bits(value))
    }
    fn neg(value: i128) -> Result<Self> {
        i64::try_from(value)
            .map(Value::from)
            .map_err(|_| beyond_64_bits(value))
    }
    fn float(value: f64) -> Self {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
    fn str(value: Cow<'a, str>) -> Self {
        Value::String(value.into_owned())
    }
    fn array(items: Vec<Self>) -> Self {
        Value::Array(items)
    }
    /// Keys are unique: the reader refuses a map holding one twice.
    fn map(entries: Vec<(Cow<'a, str>, Self)>) -> Self {
        Value::Object(
            entries
                .into_iter()
                .map(|(key, value)| (key.into_owned(), value))
                .collect(),
        )
    }
}

/// Reads one value from the body of a tagged payload (the bytes after the
/// tag), which it must fill exactly.
pub(super) fn read<'a, B: Build<'a>>(body: &'a [u8]) -> Result<B> {
    let mut reader = Reader {
        bytes: body,
        pos: 0,
    };
    let value = reader.value(0)?;
    if reader.pos == body.len() {
        Ok(value)
    } else {
        Err(corrupt(format!(
            "{} trailing bytes",
            body.len() - reader.pos
        )))
    }
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

    /// The length of a string whose marker is `marker`, if it is one.
    fn str_len(&mut self, marker: Marker) -> Result<Option<usize>> {
        Ok(match marker {
            Marker::FixStr(len) => Some(usize::from(len)),
            Marker::Str8 => Some(self.len(1)?),
            Marker::Str16 => Some(self.len(2)?),
            Marker::Str32 => Some(self.len(4)?),
            _ => None,
        })
    }

    /// Checks a declared element count against the bytes left (each
    /// element takes at least `per_element`), before allocating for it.
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

    /// One value, recursing into arrays and maps. Scalars are read by
    /// [`scalar`](Self::scalar), out of line, so that each level of nesting
    /// costs little stack (unoptimized builds give every arm of a large
    /// match its own slots): 127 levels read on a thread's default stack.
    fn value<B: Build<'a>>(&mut self, depth: usize) -> Result<B> {
        let marker = Marker::from_u8(self.array::<1>()?[0]);
        match marker {
            Marker::FixArray(len) => self.items(usize::from(len), depth),
            Marker::Array16 | Marker::Array32 => {
                let len = self.len(if marker == Marker::Array16 { 2 } else { 4 })?;
                self.items(len, depth)
            }
            Marker::FixMap(len) => self.entries(usize::from(len), depth),
            Marker::Map16 | Marker::Map32 => {
                let len = self.len(if marker == Marker::Map16 { 2 } else { 4 })?;
                self.entries(len, depth)
            }
            scalar => self.scalar(scalar),
        }
    }

    /// A value that is neither an array nor a map, whose marker was read.
    #[inline(never)]
    fn scalar<B: Build<'a>>(&mut self, marker: Marker) -> Result<B> {
        if let Some(len) = self.str_len(marker)? {
            return Ok(B::str(self.str(len)?));
        }
        Ok(match marker {
            Marker::Null => B::null(),
            Marker::True => B::bool(true),
            Marker::False => B::bool(false),
            Marker::FixPos(n) => B::uint(u128::from(n))?,
            Marker::FixNeg(n) => B::neg(i128::from(n))?,
            Marker::U8 => B::uint(u128::from(self.array::<1>()?[0]))?,
            Marker::U16 => B::uint(u128::from(u16::from_be_bytes(self.array()?)))?,
            Marker::U32 => B::uint(u128::from(u32::from_be_bytes(self.array()?)))?,
            Marker::U64 => B::uint(u128::from(u64::from_be_bytes(self.array()?)))?,
            Marker::I8 => B::int(i128::from(i8::from_be_bytes(self.array()?)))?,
            Marker::I16 => B::int(i128::from(i16::from_be_bytes(self.array()?)))?,
            Marker::I32 => B::int(i128::from(i32::from_be_bytes(self.array()?)))?,
            Marker::I64 => B::int(i128::from(i64::from_be_bytes(self.array()?)))?,
            Marker::F32 => B::float(finite(f64::from(f32::from_be_bytes(self.array()?)))?),
            Marker::F64 => B::float(finite(f64::from_be_bytes(self.array()?))?),
            Marker::FixExt16 => {
                let kind = i8::from_be_bytes(self.array()?);
                let bytes = self.array::<16>()?;
                match kind {
                    EXT_U128 => B::uint(u128::from_be_bytes(bytes))?,
                    EXT_I128 => B::int(i128::from_be_bytes(bytes))?,
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

    fn items<B: Build<'a>>(&mut self, len: usize, depth: usize) -> Result<B> {
        let depth = nested(depth)?;
        let len = self.count(len, 1)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value(depth)?);
        }
        Ok(B::array(items))
    }

    fn entries<B: Build<'a>>(&mut self, len: usize, depth: usize) -> Result<B> {
        let depth = nested(depth)?;
        let len = self.count(len, 2)?;
        let mut entries = Vec::with_capacity(len);
        for _ in 0..len {
            let marker = Marker::from_u8(self.array::<1>()?[0]);
            let Some(key_len) = self.str_len(marker)? else {
                return Err(corrupt(format!("map key is not a string: {marker:?}")));
            };
            let key = self.str(key_len)?;
            entries.push((key, self.value(depth)?));
        }
        check_keys(&entries, |key| repeated_key("msgpack", key))?;
        Ok(B::map(entries))
    }
}

fn finite(f: f64) -> Result<f64> {
    if f.is_finite() {
        Ok(f)
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
