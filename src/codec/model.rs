//! The one data model that every codec encodes exactly.
//!
//! A payload's value is what `serde_json` makes of it: null, booleans,
//! numbers, strings, arrays, and maps with string keys, in serde's
//! human-readable forms (a `Uuid` or an `IpAddr` is a string, a map with
//! integer keys has decimal string keys, a `Vec<u8>` is an array of
//! numbers). [`Model`] holds such a value exactly: integers keep every digit
//! up to 128 bits (where `serde_json::Value` keeps 64), floats keep their
//! bits (`-0.0` included), and maps keep their entries in stored order. A
//! map never holds a key twice: readers refuse such bytes and writers
//! refuse to produce them (see [`super::refusal`]).
//!
//! **Invariant:** JSON text and MessagePack (tag `0xC1 0x02`) are two
//! spellings of one `Model`. Converting between them never changes the
//! `Model`; a value that has no exact `Model` (an integer beyond 128 bits,
//! a float out of `f64` range, the integer `-0`) is refused with
//! [`Error::Inexact`], never approximated.

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

use crate::error::{Error, Result};

/// Arrays and maps nested this many levels deep (or deeper) are refused:
/// `serde_json` refuses them when it reads (its recursion limit), and so do
/// this crate's own readers, which recurse once per level and must not let
/// hostile input exhaust the stack. Writers refuse them too
/// ([`Cause::TooDeep`](super::Cause::TooDeep)), so every payload written is
/// read back: at most `MAX_DEPTH - 1` (127) levels.
pub const MAX_DEPTH: usize = 128;

/// One value of the data model, borrowing strings from the input where it can.
#[derive(Debug, Clone)]
pub(crate) enum Model<'a> {
    Null,
    Bool(bool),
    /// A non-negative integer.
    UInt(u128),
    /// A negative integer (always `< 0`, so every integer has one form).
    NegInt(i128),
    /// A finite float, compared by its bits.
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Model<'a>>),
    /// Entries in stored order.
    Map(Vec<(Cow<'a, str>, Model<'a>)>),
}

impl PartialEq for Model<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Model::Null, Model::Null) => true,
            (Model::Bool(a), Model::Bool(b)) => a == b,
            (Model::UInt(a), Model::UInt(b)) => a == b,
            (Model::NegInt(a), Model::NegInt(b)) => a == b,
            (Model::Float(a), Model::Float(b)) => a.to_bits() == b.to_bits(),
            (Model::Str(a), Model::Str(b)) => a == b,
            (Model::Array(a), Model::Array(b)) => a == b,
            (Model::Map(a), Model::Map(b)) => a == b,
            _ => false,
        }
    }
}

pub(crate) fn inexact(format: &'static str, reason: impl Into<String>) -> Error {
    Error::Inexact {
        format,
        reason: reason.into(),
    }
}

fn corrupt(reason: impl Into<String>) -> Error {
    Error::Corrupt {
        format: "json",
        reason: reason.into(),
    }
}

impl<'a> Model<'a> {
    /// The integer `value`, in its one form.
    #[cfg_attr(not(feature = "msgpack"), allow(dead_code))]
    pub(crate) fn int(value: i128) -> Self {
        match u128::try_from(value) {
            Ok(unsigned) => Model::UInt(unsigned),
            Err(_) => Model::NegInt(value),
        }
    }

    /// Parses JSON text exactly.
    pub(crate) fn from_json(bytes: &'a [u8]) -> Result<Self> {
        let mut parser = JsonParser { bytes, pos: 0 };
        let model = parser.value(0)?;
        parser.skip_whitespace();
        if parser.pos == bytes.len() {
            Ok(model)
        } else {
            Err(corrupt(format!(
                "trailing characters at byte {}",
                parser.pos
            )))
        }
    }

    /// Writes this value as compact JSON text, which `serde_json` reads back
    /// as the same value.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Model::Null => out.extend_from_slice(b"null"),
            Model::Bool(true) => out.extend_from_slice(b"true"),
            Model::Bool(false) => out.extend_from_slice(b"false"),
            Model::UInt(n) => write!(out, "{n}")?,
            Model::NegInt(n) => write!(out, "{n}")?,
            Model::Float(f) => serde_json::to_writer(&mut *out, f)?,
            Model::Str(s) => serde_json::to_writer(&mut *out, s.as_ref())?,
            Model::Array(items) => {
                out.push(b'[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    item.write_json(out)?;
                }
                out.push(b']');
            }
            Model::Map(entries) => {
                out.push(b'{');
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key.as_ref())?;
                    out.push(b':');
                    value.write_json(out)?;
                }
                out.push(b'}');
            }
        }
        Ok(())
    }

    /// This value as JSON text.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_json(&mut out)?;
        Ok(out)
    }
}

fn out_of_value_range(n: impl std::fmt::Display) -> String {
    format!("integer {n} is beyond 64 bits; decode it into its own type instead")
}

/// Checks that `value`, just parsed by `serde_json` from `json`, holds the
/// text's numbers exactly. `serde_json` reads an integer beyond 64 bits into
/// a `Value` as the nearest float; such a float is integral and at least
/// 2^63 in magnitude, so only then is the text parsed again, exactly.
pub(crate) fn check_value_is_exact(json: &[u8], value: &Value) -> Result<()> {
    if !has_suspect_float(value) {
        return Ok(());
    }
    fn check(model: &Model<'_>) -> Result<()> {
        match model {
            Model::UInt(n) if u64::try_from(*n).is_err() => {
                Err(inexact("serde_json::Value", out_of_value_range(n)))
            }
            Model::NegInt(n) if i64::try_from(*n).is_err() => {
                Err(inexact("serde_json::Value", out_of_value_range(n)))
            }
            Model::Array(items) => items.iter().try_for_each(check),
            Model::Map(entries) => entries.iter().try_for_each(|(_, value)| check(value)),
            _ => Ok(()),
        }
    }
    check(&Model::from_json(json)?)
}

fn has_suspect_float(value: &Value) -> bool {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => n
            .as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() >= TWO_POW_63),
        Value::Array(items) => items.iter().any(has_suspect_float),
        Value::Object(map) => map.values().any(has_suspect_float),
        _ => false,
    }
}

/// An exact JSON reader (RFC 8259): numbers keep their digits, strings are
/// unescaped by `serde_json` itself, so both readers agree on every string.
struct JsonParser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> JsonParser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        self.skip_whitespace();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(corrupt(format!(
                "expected '{}' at byte {}",
                char::from(byte),
                self.pos
            )))
        }
    }

    fn literal(&mut self, word: &'static [u8], model: Model<'a>) -> Result<Model<'a>> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(model)
        } else {
            Err(corrupt(format!("invalid literal at byte {}", self.pos)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Model<'a>> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'n') => self.literal(b"null", Model::Null),
            Some(b't') => self.literal(b"true", Model::Bool(true)),
            Some(b'f') => self.literal(b"false", Model::Bool(false)),
            Some(b'"') => Ok(Model::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => Ok(Model::Array(self.sequence(b']', depth, |p, d| p.value(d))?)),
            Some(b'{') => {
                let entries = self.sequence(b'}', depth, |p, d| {
                    p.skip_whitespace();
                    if p.peek() != Some(b'"') {
                        return Err(corrupt(format!("expected a key at byte {}", p.pos)));
                    }
                    let key = p.string()?;
                    p.expect(b':')?;
                    Ok((key, p.value(d)?))
                })?;
                check_keys(&entries, |key| repeated_key("json", key))?;
                Ok(Model::Map(entries))
            }
            Some(_) => Err(corrupt(format!("unexpected byte at {}", self.pos))),
            None => Err(corrupt("unexpected end of input")),
        }
    }

    /// The elements of an array or object whose opening byte is next, up to
    /// `close`, each read by `element` one level deeper.
    fn sequence<T>(
        &mut self,
        close: u8,
        depth: usize,
        mut element: impl FnMut(&mut Self, usize) -> Result<T>,
    ) -> Result<Vec<T>> {
        let depth = nested(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(element(self, depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(byte) if byte == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => {
                    return Err(corrupt(format!(
                        "expected ',' or '{}' at byte {}",
                        char::from(close),
                        self.pos
                    )))
                }
            }
        }
    }

    /// A string token: borrowed when it has no escapes, else unescaped by
    /// `serde_json` (so escapes and surrogates follow its rules exactly).
    fn string(&mut self) -> Result<Cow<'a, str>> {
        let start = self.pos;
        self.pos += 1;
        let mut escaped = false;
        loop {
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(byte) if byte < 0x20 => {
                    return Err(corrupt(format!(
                        "control character in string at byte {}",
                        self.pos
                    )))
                }
                Some(_) => self.pos += 1,
                None => return Err(corrupt("unterminated string")),
            }
        }
        self.pos += 1;
        let token = self
            .bytes
            .get(start..self.pos)
            .ok_or_else(|| corrupt("unterminated string"))?;
        if escaped {
            let text: String = serde_json::from_slice(token)
                .map_err(|err| corrupt(format!("string at byte {start}: {err}")))?;
            Ok(Cow::Owned(text))
        } else {
            let inner = token.get(1..token.len() - 1).unwrap_or_default();
            std::str::from_utf8(inner)
                .map(Cow::Borrowed)
                .map_err(|err| corrupt(format!("string at byte {start}: {err}")))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Model<'a>> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        let int_digits = self.digits();
        if int_digits == 0 || (int_digits > 1 && self.bytes.get(int_start) == Some(&b'0')) {
            return Err(corrupt(format!("invalid number at byte {start}")));
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            float = true;
            if self.digits() == 0 {
                return Err(corrupt(format!("invalid number at byte {start}")));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            float = true;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(corrupt(format!("invalid number at byte {start}")));
            }
        }
        let text = self
            .bytes
            .get(start..self.pos)
            .and_then(|t| std::str::from_utf8(t).ok())
            .ok_or_else(|| corrupt(format!("invalid number at byte {start}")))?;
        if float {
            // Correctly rounded, as serde_json's `float_roundtrip` reading.
            return match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Model::Float(f)),
                _ => Err(inexact(
                    "json",
                    format!("number {text} is out of f64 range"),
                )),
            };
        }
        if negative {
            match text.parse::<i128>() {
                Ok(0) => Err(inexact(
                    "json",
                    "the integer -0 reads as 0 or -0.0 depending on the reader",
                )),
                Ok(n) => Ok(Model::NegInt(n)),
                Err(_) => Err(inexact(
                    "json",
                    format!("integer {text} is beyond 128 bits"),
                )),
            }
        } else {
            text.parse::<u128>()
                .map(Model::UInt)
                .map_err(|_| inexact("json", format!("integer {text} is beyond 128 bits")))
        }
    }
}

/// Refuses a map holding a key twice, with `error` of that key (a reader's
/// [`Error::Corrupt`], a writer's refusal): which value is meant cannot be
/// told, and readers differ (`serde_json` keeps the last one in a `Value`,
/// refuses it in a struct).
pub(crate) fn check_keys<V>(
    entries: &[(Cow<'_, str>, V)],
    error: impl FnOnce(&str) -> Error,
) -> Result<()> {
    match super::refusal::duplicate_key(entries, |(key, _)| key.as_ref()) {
        Some(key) => Err(error(key)),
        None => Ok(()),
    }
}

/// A reader's error for a map holding `key` twice.
pub(crate) fn repeated_key(format: &'static str, key: &str) -> Error {
    Error::Corrupt {
        format,
        reason: format!("a map holds the key {key:?} twice"),
    }
}

fn nested(depth: usize) -> Result<usize> {
    if depth + 1 >= MAX_DEPTH {
        Err(corrupt(format!("nested {MAX_DEPTH} levels or deeper")))
    } else {
        Ok(depth + 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_numbers_are_exact() {
        let text = br#"[340282366920938463463374607431768211455,-170141183460469231731687303715884105728,0.1,-0.0,5e-324,1E2]"#;
        let model = Model::from_json(text).unwrap();
        let Model::Array(items) = &model else {
            panic!("{model:?}")
        };
        assert_eq!(items[0], Model::UInt(u128::MAX));
        assert_eq!(items[1], Model::NegInt(i128::MIN));
        assert_eq!(items[2], Model::Float(0.1));
        assert_eq!(items[3], Model::Float(-0.0));
        assert_ne!(items[3], Model::Float(0.0));
        assert_eq!(items[4], Model::Float(5e-324));
        assert_eq!(items[5], Model::Float(100.0));
        let again = model.to_json().unwrap();
        assert_eq!(Model::from_json(&again).unwrap(), model);
    }

    #[test]
    fn inexact_numbers_are_refused() {
        for text in ["340282366920938463463374607431768211456", "-0", "1e400"] {
            let err = Model::from_json(text.as_bytes()).unwrap_err();
            assert!(matches!(err, Error::Inexact { .. }), "{text}: {err}");
        }
    }

    #[test]
    fn strings_match_serde_json() {
        for text in [r#""plain ü""#, r#""esc\"\\\n\u00e9\ud83c\udf89""#, r#""""#] {
            let Model::Str(s) = Model::from_json(text.as_bytes()).unwrap() else {
                panic!()
            };
            assert_eq!(s, serde_json::from_str::<String>(text).unwrap());
        }
        for bad in [r#""\ud800""#, "\"a\u{1}\"", r#""unterminated"#, r#""\"#] {
            assert!(Model::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_json_is_corrupt_not_a_panic() {
        for bad in [
            "", "[", "{", "[1,]", "{\"a\"}", "{\"a\":}", "01", "1.", ".5", "+1", "1e", "nul",
            "[1] x", "{1:2}", "-",
        ] {
            let err = Model::from_json(bad.as_bytes()).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{bad}: {err}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(Model::from_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn values_refuse_integers_beyond_64_bits() {
        let text = br#"{"big":123456789012345678901234567891}"#;
        let lossy: Value = serde_json::from_slice(text).unwrap();
        assert!(matches!(
            check_value_is_exact(text, &lossy),
            Err(Error::Inexact { .. })
        ));
        let fine = br#"{"f":1e300,"n":18446744073709551615}"#;
        check_value_is_exact(fine, &serde_json::from_slice(fine).unwrap()).unwrap();
    }
}
