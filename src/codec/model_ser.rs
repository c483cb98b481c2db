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

/// Serializer methods for integer types, each turning its value `v` into
/// the output with the same expression.
macro_rules! integers {
    (|$v:ident| $body:expr, $($method:ident: $ty:ty),+ $(,)?) => {
        $(
            // `i128::from` on an `i128` is the identity.
            #[allow(clippy::useless_conversion)]
            fn $method(self, $v: $ty) -> Result<Self::Ok> {
                $body
            }
        )+
    };
}

/// `serialize_newtype_struct`, the same in both serializers: transparent,
/// except for serde_json's own private types, whose text form differs.
macro_rules! newtype_struct {
    () => {
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
    };
}

/// `serialize_unit_variant`: the variant's name, as `serde_json` writes it
/// both as a value and as a map key.
macro_rules! unit_variant {
    (|$variant:ident| $body:expr) => {
        fn serialize_unit_variant(
            self,
            _name: &'static str,
            _index: u32,
            $variant: &'static str,
        ) -> Result<Self::Ok> {
            Ok($body)
        }
    };
}

/// `serialize_tuple_variant` and `serialize_struct_variant`: a builder that
/// wraps what it builds in `{"Variant": ..}`.
macro_rules! variant_builder {
    ($method:ident, $kind:ident, $builder:ident) => {
        fn $method(
            self,
            _name: &'static str,
            _index: u32,
            variant: &'static str,
            len: usize,
        ) -> Result<Self::$kind> {
            Ok($builder::new(Some(variant), len))
        }
    };
}

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
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Self::Ok> {
        Ok(Model::Bool(v))
    }
    integers! {
        |v| Ok(Model::int(i128::from(v))), serialize_i8: i8, serialize_i16: i16,
        serialize_i32: i32, serialize_i64: i64, serialize_i128: i128
    }
    integers! {
        |v| Ok(Model::UInt(u128::from(v))), serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128
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
    unit_variant!(|variant| Model::Str(Cow::Borrowed(variant)));
    newtype_struct!();
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
        Ok(SeqBuilder::new(None, len.unwrap_or(0)))
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
    variant_builder!(serialize_tuple_variant, SerializeTupleVariant, SeqBuilder);
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap> {
        Ok(MapBuilder::new(None, len.unwrap_or(0)))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct> {
        if is_serde_json_private(name) {
            return Err(Unsupported);
        }
        self.serialize_map(Some(len))
    }
    variant_builder!(serialize_struct_variant, SerializeStructVariant, MapBuilder);
}

/// An array, or (with a variant name) a tuple variant `{"Variant": [..]}`.
struct SeqBuilder {
    variant: Option<&'static str>,
    items: Vec<Model<'static>>,
}

impl SeqBuilder {
    fn new(variant: Option<&'static str>, len: usize) -> Self {
        SeqBuilder {
            variant,
            items: Vec::with_capacity(len),
        }
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.items.push(value.serialize(ModelSerializer)?);
        Ok(())
    }

    fn finish(self) -> Model<'static> {
        in_variant(self.variant, Model::Array(self.items))
    }
}

/// A map or struct, or (with a variant name) a struct variant
/// `{"Variant": {..}}`.
struct MapBuilder {
    variant: Option<&'static str>,
    entries: Vec<(Cow<'static, str>, Model<'static>)>,
    key: Option<Cow<'static, str>>,
}

impl MapBuilder {
    fn new(variant: Option<&'static str>, len: usize) -> Self {
        MapBuilder {
            variant,
            entries: Vec::with_capacity(len),
            key: None,
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.entries
            .push((Cow::Borrowed(key), value.serialize(ModelSerializer)?));
        Ok(())
    }

    fn finish(self) -> Model<'static> {
        in_variant(self.variant, Model::Map(self.entries))
    }
}

/// `value`, or `{"variant": value}`: serde_json's externally tagged enums.
fn in_variant(variant: Option<&'static str>, value: Model<'static>) -> Model<'static> {
    match variant {
        Some(variant) => Model::Map(vec![(Cow::Borrowed(variant), value)]),
        None => value,
    }
}

/// The sequence traits, all one `SeqBuilder`.
macro_rules! seq_builder {
    ($($trait:ident::$method:ident),+) => {
        $(
            impl ser::$trait for SeqBuilder {
                type Ok = Model<'static>;
                type Error = Unsupported;
                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                    self.push(value)
                }
                fn end(self) -> Result<Self::Ok> {
                    Ok(self.finish())
                }
            }
        )+
    };
}

seq_builder!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// The struct traits, both one `MapBuilder`.
macro_rules! struct_builder {
    ($($trait:ident),+) => {
        $(
            impl ser::$trait for MapBuilder {
                type Ok = Model<'static>;
                type Error = Unsupported;
                fn serialize_field<T: Serialize + ?Sized>(
                    &mut self,
                    key: &'static str,
                    value: &T,
                ) -> Result<()> {
                    self.field(key, value)
                }
                fn end(self) -> Result<Self::Ok> {
                    Ok(self.finish())
                }
            }
        )+
    };
}

struct_builder!(SerializeStruct, SerializeStructVariant);

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
        Ok(self.finish())
    }
}

/// Map keys, as `serde_json` writes them: strings as they are, integers as
/// their decimal text. Anything else declines.
struct KeySerializer;

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
    integers! {
        |v| Ok(Cow::Owned(v.to_string())), serialize_i8: i8, serialize_i16: i16,
        serialize_i32: i32, serialize_i64: i64, serialize_i128: i128, serialize_u8: u8,
        serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128
    }
    unit_variant!(|variant| Cow::Borrowed(variant));
    newtype_struct!();
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
