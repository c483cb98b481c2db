//! A serde `Serializer` straight into the data model, without JSON text.
//!
//! **Invariant:** for every value it accepts, the [`Model`] it builds is the
//! one [`Model::from_json`] reads from `serde_json::to_vec` of the same
//! value: the same human-readable forms, the same enum and option shapes,
//! integer map keys as decimal strings, `f32` as the `f64` of its shortest
//! decimal form, non-finite floats as null. Whatever it is not sure to spell
//! exactly as `serde_json` would (a `bool` or float map key, a key that is
//! not a string at all, `serde_json`'s own raw-value or number types, an
//! error raised by the value itself) makes it give up with [`Unsupported`],
//! and the caller takes the JSON-text path instead. `tests/data_model.rs`
//! checks both paths give identical bytes.

use std::borrow::Cow;
use std::fmt;

use serde::ser::{self, Serialize};

use super::model::Model;

/// This serializer declines the value; take the JSON-text path.
#[derive(Debug)]
pub(crate) struct Unsupported;

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not handled by the direct serializer")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Unsupported
    }
}

type Result<T, E = Unsupported> = std::result::Result<T, E>;

/// Builds the data model of `value`, or declines.
pub(crate) fn to_model<T: Serialize + ?Sized>(value: &T) -> Result<Model<'static>> {
    value.serialize(ModelSerializer)
}

fn float(f: f64) -> Model<'static> {
    if f.is_finite() {
        Model::Float(f)
    } else {
        Model::Null
    }
}

/// Names serde_json gives its own private types; their text form is not
/// their serde form.
fn is_serde_json_private(name: &str) -> bool {
    name.starts_with("$serde_json")
}

struct ModelSerializer;

impl ser::Serializer for ModelSerializer {
    type Ok = Model<'static>;
    type Error = Unsupported;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = VariantSeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = VariantMapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Self::Ok> {
        Ok(Model::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Self::Ok> {
        Ok(Model::int(i128::from(v)))
    }
    fn serialize_i16(self, v: i16) -> Result<Self::Ok> {
        Ok(Model::int(i128::from(v)))
    }
    fn serialize_i32(self, v: i32) -> Result<Self::Ok> {
        Ok(Model::int(i128::from(v)))
    }
    fn serialize_i64(self, v: i64) -> Result<Self::Ok> {
        Ok(Model::int(i128::from(v)))
    }
    fn serialize_i128(self, v: i128) -> Result<Self::Ok> {
        Ok(Model::int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Self::Ok> {
        Ok(Model::UInt(u128::from(v)))
    }
    fn serialize_u16(self, v: u16) -> Result<Self::Ok> {
        Ok(Model::UInt(u128::from(v)))
    }
    fn serialize_u32(self, v: u32) -> Result<Self::Ok> {
        Ok(Model::UInt(u128::from(v)))
    }
    fn serialize_u64(self, v: u64) -> Result<Self::Ok> {
        Ok(Model::UInt(u128::from(v)))
    }
    fn serialize_u128(self, v: u128) -> Result<Self::Ok> {
        Ok(Model::UInt(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Self::Ok> {
        if !v.is_finite() {
            return Ok(Model::Null);
        }
        // serde_json writes an f32 in its shortest decimal form; that text
        // read as f64 is the model's value.
        v.to_string()
            .parse::<f64>()
            .map(float)
            .map_err(|_| Unsupported)
    }
    fn serialize_f64(self, v: f64) -> Result<Self::Ok> {
        Ok(float(v))
    }
    fn serialize_char(self, v: char) -> Result<Self::Ok> {
        Ok(Model::Str(Cow::Owned(v.to_string())))
    }
    fn serialize_str(self, v: &str) -> Result<Self::Ok> {
        Ok(Model::Str(Cow::Owned(v.to_owned())))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Self::Ok> {
        Ok(Model::Array(
            v.iter().map(|b| Model::UInt(u128::from(*b))).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Self::Ok> {
        Ok(Model::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Self::Ok> {
        Ok(Model::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Self::Ok> {
        Ok(Model::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Self::Ok> {
        Ok(Model::Str(Cow::Borrowed(variant)))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Self::Ok> {
        if is_serde_json_private(name) {
            return Err(Unsupported);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Self::Ok> {
        Ok(Model::Map(vec![(
            Cow::Borrowed(variant),
            value.serialize(self)?,
        )]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq> {
        Ok(SeqBuilder(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Ok(VariantSeqBuilder(variant, Vec::with_capacity(len)))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap> {
        Ok(MapBuilder {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        })
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct> {
        if is_serde_json_private(name) {
            return Err(Unsupported);
        }
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Ok(VariantMapBuilder(variant, Vec::with_capacity(len)))
    }
}

struct SeqBuilder(Vec<Model<'static>>);

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Model<'static>;
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.0.push(value.serialize(ModelSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Self::Ok> {
        Ok(Model::Array(self.0))
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Model<'static>;
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Self::Ok> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Model<'static>;
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Self::Ok> {
        ser::SerializeSeq::end(self)
    }
}

struct VariantSeqBuilder(&'static str, Vec<Model<'static>>);

impl ser::SerializeTupleVariant for VariantSeqBuilder {
    type Ok = Model<'static>;
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.1.push(value.serialize(ModelSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Self::Ok> {
        Ok(Model::Map(vec![(
            Cow::Borrowed(self.0),
            Model::Array(self.1),
        )]))
    }
}

struct MapBuilder {
    entries: Vec<(Cow<'static, str>, Model<'static>)>,
    key: Option<Cow<'static, str>>,
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Model<'static>;
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = self.key.take().ok_or(Unsupported)?;
        self.entries.push((key, value.serialize(ModelSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Self::Ok> {
        Ok(Model::Map(self.entries))
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Model<'static>;
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.entries
            .push((Cow::Borrowed(key), value.serialize(ModelSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Self::Ok> {
        Ok(Model::Map(self.entries))
    }
}

struct VariantMapBuilder(&'static str, Vec<(Cow<'static, str>, Model<'static>)>);

impl ser::SerializeStructVariant for VariantMapBuilder {
    type Ok = Model<'static>;
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.1
            .push((Cow::Borrowed(key), value.serialize(ModelSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Self::Ok> {
        Ok(Model::Map(vec![(
            Cow::Borrowed(self.0),
            Model::Map(self.1),
        )]))
    }
}

/// Map keys, as `serde_json` writes them: strings as they are, integers as
/// their decimal text. Anything else declines.
struct KeySerializer;

impl KeySerializer {
    fn int(v: impl fmt::Display) -> Result<Cow<'static, str>> {
        Ok(Cow::Owned(v.to_string()))
    }
}

impl ser::Serializer for KeySerializer {
    type Ok = Cow<'static, str>;
    type Error = Unsupported;
    type SerializeSeq = ser::Impossible<Self::Ok, Unsupported>;
    type SerializeTuple = ser::Impossible<Self::Ok, Unsupported>;
    type SerializeTupleStruct = ser::Impossible<Self::Ok, Unsupported>;
    type SerializeTupleVariant = ser::Impossible<Self::Ok, Unsupported>;
    type SerializeMap = ser::Impossible<Self::Ok, Unsupported>;
    type SerializeStruct = ser::Impossible<Self::Ok, Unsupported>;
    type SerializeStructVariant = ser::Impossible<Self::Ok, Unsupported>;

    fn serialize_str(self, v: &str) -> Result<Self::Ok> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn serialize_char(self, v: char) -> Result<Self::Ok> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn serialize_i8(self, v: i8) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_i128(self, v: i128) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_u128(self, v: u128) -> Result<Self::Ok> {
        Self::int(v)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Self::Ok> {
        Ok(Cow::Borrowed(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Self::Ok> {
        if is_serde_json_private(name) {
            return Err(Unsupported);
        }
        value.serialize(self)
    }
    fn serialize_bool(self, _v: bool) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_f32(self, _v: f32) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_f64(self, _v: f64) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_none(self) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_unit(self) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<Self::Ok> {
        Err(Unsupported)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(Unsupported)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        Err(Unsupported)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(Unsupported)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(Unsupported)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Err(Unsupported)
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Err(Unsupported)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(Unsupported)
    }
}
