//! Plain JSON: the default format, and the one upstream `dynamo-es` stores.
//!
//! **Invariant:** the bytes written are exactly `serde_json::to_vec`'s, or
//! nothing: a value every reader would refuse or misread (a map holding a
//! key twice, nesting of [`MAX_DEPTH`] levels) is refused while it is
//! written ([`Cause`]). A `serde_json::Value` read refuses a map holding a
//! key twice, where `serde_json` would keep the last value.

use std::io;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use serde_json::{Map, Number, Value};

use super::model::MAX_DEPTH;
use super::refusal::{duplicate_key, Cause};
use crate::error::{Error, Result};

/// Writes `value` as `serde_json::to_vec` does, refusing duplicate keys and
/// nesting every reader refuses.
pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    write(value, Checked::new(true))
}

/// [`encode`] for a `serde_json::Value`, whose maps cannot hold a key twice:
/// only the nesting is checked.
pub(super) fn encode_value(value: &Value) -> Result<Vec<u8>> {
    write(value, Checked::new(false))
}

fn write<T: Serialize + ?Sized>(value: &T, formatter: Checked) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    match value.serialize(&mut serializer) {
        Ok(()) => Ok(out),
        Err(err) if err.is_io() => {
            let err = io::Error::from(err);
            match err
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<Cause>())
            {
                Some(cause) => Err(cause.clone().into()),
                None => Err(Error::Serde(Box::new(err))),
            }
        }
        Err(err) => Err(err.into()),
    }
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// Reads a `serde_json::Value`, refusing a map holding a key twice.
pub(super) fn decode_value(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|strict| strict.0)
        .map_err(corrupt)
}

fn corrupt(err: serde_json::Error) -> Error {
    Error::Corrupt {
        format: "json",
        reason: err.to_string(),
    }
}

/// serde_json's compact formatter, tracking the nesting and (if asked) the
/// keys of each open map, to refuse what readers refuse.
struct Checked {
    /// Arrays and maps open around what is written next.
    depth: usize,
    /// Whether map keys are checked.
    check_keys: bool,
    /// True while a key is written: its bytes are copied into `keys`.
    in_key: bool,
    /// The keys of every open map, as written (quoted, escaped), one after
    /// the other.
    keys: Vec<u8>,
    /// Where each of those keys is in `keys`.
    spans: Vec<(usize, usize)>,
    /// For each open map, where its keys start in `spans`.
    maps: Vec<usize>,
}

impl Checked {
    fn new(check_keys: bool) -> Self {
        Checked {
            depth: 0,
            check_keys,
            in_key: false,
            keys: Vec::new(),
            spans: Vec::new(),
            maps: Vec::new(),
        }
    }

    fn open(&mut self) -> io::Result<()> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            Err(io::Error::other(Cause::TooDeep { max: MAX_DEPTH }))
        } else {
            Ok(())
        }
    }

    /// The keys of the map being closed: refused if one is there twice.
    fn close_map(&mut self) -> io::Result<()> {
        let Some(start) = self.maps.pop() else {
            return Ok(());
        };
        let spans = self.spans.get(start..).unwrap_or_default();
        let keys = &self.keys;
        let key = |(from, to): &(usize, usize)| keys.get(*from..*to).unwrap_or_default();
        if let Some(twice) = duplicate_key(spans, key) {
            return Err(io::Error::other(Cause::DuplicateKey {
                key: String::from_utf8_lossy(twice).into_owned(),
            }));
        }
        if let Some((from, _)) = spans.first() {
            self.keys.truncate(*from);
        }
        self.spans.truncate(start);
        Ok(())
    }
}

/// Formatter methods that write content: each also copies what it writes
/// into the key being written, if one is.
macro_rules! copied {
    ($($method:ident($($arg:ident: $ty:ty),*)),+ $(,)?) => {
        $(
            fn $method<W: ?Sized + io::Write>(&mut self, writer: &mut W $(, $arg: $ty)*) -> io::Result<()> {
                if self.in_key {
                    CompactFormatter.$method(&mut self.keys $(, $arg)*)?;
                }
                CompactFormatter.$method(writer $(, $arg)*)
            }
        )+
    };
}

// No `#[inline]`: the methods are generic, so each is instantiated (and
// may be inlined) where it is called.
impl Formatter for Checked {
    copied! {
        write_null(), write_bool(value: bool),
        write_i8(value: i8), write_i16(value: i16), write_i32(value: i32),
        write_i64(value: i64), write_i128(value: i128),
        write_u8(value: u8), write_u16(value: u16), write_u32(value: u32),
        write_u64(value: u64), write_u128(value: u128),
        write_f32(value: f32), write_f64(value: f64),
        write_number_str(value: &str),
        begin_string(), end_string(),
        write_string_fragment(fragment: &str),
        write_raw_fragment(fragment: &str),
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        // At most `\u00XX`: written once, copied to the key if one is
        // being written.
        let mut escape = io::Cursor::new([0u8; 8]);
        CompactFormatter.write_char_escape(&mut escape, char_escape)?;
        let len = usize::try_from(escape.position()).unwrap_or_default();
        let bytes = escape.get_ref().get(..len).unwrap_or_default();
        if self.in_key {
            self.keys.extend_from_slice(bytes);
        }
        writer.write_all(bytes)
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open()?;
        CompactFormatter.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        CompactFormatter.end_array(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open()?;
        if self.check_keys {
            self.maps.push(self.spans.len());
        }
        CompactFormatter.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        if self.check_keys {
            self.close_map()?;
        }
        CompactFormatter.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if self.check_keys {
            self.in_key = true;
            self.spans.push((self.keys.len(), self.keys.len()));
        }
        CompactFormatter.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        if self.in_key {
            self.in_key = false;
            if let Some(span) = self.spans.last_mut() {
                span.1 = self.keys.len();
            }
        }
        CompactFormatter.end_object_key(writer)
    }
}

/// The token `serde_json` (with its `arbitrary_precision` feature) spells
/// a number with, as a map of one entry.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A `serde_json::Value` read as `serde_json` reads one, except that a map
/// holding a key twice is an error instead of keeping the last value.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Strict::deserialize(deserializer).map(|strict| strict.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        let mut first = true;
        while let Some(key) = access.next_key::<String>()? {
            if first && key == NUMBER_TOKEN {
                let text: String = access.next_value()?;
                return text
                    .parse::<Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            first = false;
            let Strict(value) = access.next_value()?;
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format!(
                        "a map holds the key {:?} twice",
                        slot.key()
                    )))
                }
            }
        }
        Ok(Value::Object(map))
    }
}
