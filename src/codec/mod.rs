//! How payloads are stored: the codec layer.
//!
//! Every payload this crate writes (event payload, event metadata, snapshot
//! and view) goes through a [`Codec`]. What is written is chosen by the codec;
//! what is read is recognised from the bytes themselves, so one table can
//! hold a mix of formats and all of them read back:
//!
#![doc = include_str!("../../docs/tables/formats.md")]
//!
//! `0xC1` is never the first byte of valid UTF-8, so no JSON document can be
//! mistaken for a tagged payload, and plain JSON stays byte-for-byte what the
//! upstream `dynamo-es` crate writes and reads.
//!
//! ## One data model
//!
//! Every codec is an exact encoding of one data model: the value `serde_json`
//! gives a payload, with integers exact up to 128 bits and floats exact to
//! the bit. What one path writes, every other path reads back unchanged:
//!
//! * a typed write ([`Codec::encode_serialize`]) and a `serde_json::Value`
//!   write ([`Codec::encode`]) of the same data store the same value;
//! * [`Codec::decode_deserialize`] reads it into its type, and
//!   [`Codec::decode`] into a `Value`, whichever codec wrote it;
//! * MessagePack spells exactly what JSON spells: serde's human-readable
//!   forms, so a `Uuid` is a string and a map with integer keys has decimal
//!   string keys, as in JSON (the stored format is below);
//! * [`Codec::reencode`] moves a stored payload to another codec and refuses,
//!   with [`Error::Inexact`], anything it cannot show to be the same value.
//!
//! What cannot be held exactly is an error, never a changed value: an
//! integer beyond 64 bits read into a `serde_json::Value` (read it into its
//! own type instead), or an integer beyond 128 bits. Non-finite floats are
//! written as `null`, as `serde_json` writes them, by every codec.
//!
//! What the write path accepts, every read path reads: a value a reader
//! would refuse or misread (a map holding a key twice, nesting of
//! [`MAX_DEPTH`] levels, more than [`Codec::max_decoded_size`] once
//! decoded) is [`Error::Refused`] when written, and stored bytes holding a
//! key twice are [`Error::Corrupt`] on every read path.
//!
//! ## MessagePack, as stored
//!
#![doc = include_str!("../../docs/tables/msgpack.md")]
//!
//! Writing goes through `serde_json`'s serializer and reading into a type
//! through its deserializer, so every serde form is the JSON one by
//! construction; the price is a pass through JSON text each way (see
//! `docs/BENCHMARKS.md`).

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
pub use name::{ParseCodecError, MAX_COMPRESSION_LEVEL, MIN_COMPRESSION_LEVEL};

#[cfg(feature = "compression")]
pub(crate) mod dict;
#[cfg(feature = "compression")]
pub(crate) mod dictionary;
#[cfg(feature = "compression")]
#[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
pub use dict::DictionarySource;
mod encoding;
mod json;
mod model;
#[cfg(feature = "msgpack")]
mod model_ser;
#[cfg(feature = "msgpack")]
pub(crate) mod msgpack;
mod name;
mod reencode;
mod refusal;
#[cfg(feature = "compression")]
mod zstd;

pub use encoding::{Encoding, Format};
pub use refusal::{Cause, Refused, MAX_DEPTH};

/// Payloads smaller than this are not compressed by default (bytes).
pub const DEFAULT_MIN_COMPRESS_SIZE: usize = 1024;
/// The default cap on a decoded payload, against decompression bombs (64 MiB).
pub const DEFAULT_MAX_DECODED_SIZE: usize = 64 * 1024 * 1024;
/// The zstd level [`Codec::default`] uses when `compression` is on: level 1,
/// chosen by measurement.
///
/// The rule: encoding within 3× the cost of plain JSON encoding, and
/// storage at least 5× smaller than plain JSON, on the crate's fixtures.
/// Levels 1 to 4 meet both on the ledger and inventory snapshots (encode
/// cost counted in instructions, which repeat; wall time, noisier, runs
/// higher for zstd); level 1 is the cheapest of them to encode and decode,
/// and stores the ledger smaller than level 3 does. No level meets either rule on prose-heavy
/// documents (the article fixture, about 3.5× smaller at every level):
/// there a higher level buys at most a few percent of bytes for a much
/// slower encode, so the default stays; choose
/// [`Codec::compressed`] with another level if bytes matter more. The
/// measurements, from `python3 scripts/zstd_levels.py` (see
/// `docs/BENCHMARKS.md`):
///
#[doc = include_str!("../../docs/tables/zstd_levels.md")]
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;

/// Chooses how payloads are written, and decodes whatever is stored.
///
/// ```
/// use dynamo_es::Codec;
/// use serde_json::json;
///
/// let codec = Codec::json();
/// let bytes = codec.encode(&json!({"amount": 42})).unwrap();
/// assert_eq!(bytes, br#"{"amount":42}"#); // plain JSON, as upstream stores it
/// assert_eq!(codec.decode(&bytes).unwrap(), json!({"amount": 42}));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    format: Format,
    compression: Option<i32>,
    min_compress_size: usize,
    max_decoded_size: usize,
    /// The dictionary payloads are compressed with (see `dict`).
    #[cfg(feature = "compression")]
    dictionary: Option<dict::Writer>,
    /// Where dictionaries named by stored frames are found.
    #[cfg(feature = "compression")]
    readers: dict::Readers,
}

impl Default for Codec {
    /// zstd (level 1, [`DEFAULT_COMPRESSION_LEVEL`]) if the `compression`
    /// feature is on, over MessagePack if
    /// `msgpack` is on, else plain JSON.
    ///
    /// **The features are the whole program's, not your crate's.** Cargo
    /// unifies features: if any crate in the dependency graph enables
    /// `dynamo-es/compression` or `dynamo-es/msgpack`, this default changes for
    /// every repository in the program that does not set a codec, including
    /// those built by `dynamodb_cqrs`, `dynamodb_snapshot_cqrs` and
    /// `dynamodb_aggregate_cqrs`. Upstream `dynamo-es` reads neither format:
    /// with `compression`, payloads of 1 KB or more (see
    /// [`with_min_compress_size`](Codec::with_min_compress_size)) are written as
    /// zstd; with `msgpack`, every payload is MessagePack. During a rolling
    /// upgrade from upstream, instances still on upstream then fail to load
    /// those aggregates and views. Until no upstream reader is left, set
    /// [`Codec::json()`] explicitly
    /// ([`DynamoEventRepository::with_codec`](crate::DynamoEventRepository::with_codec),
    /// [`DynamoViewRepository::with_codec`](crate::DynamoViewRepository::with_codec));
    /// `cargo tree -e features -i dynamo-es` shows which crate enables which
    /// feature. See `docs/guide/upgrading.md`, "Upgrading from upstream: rollout order".
    fn default() -> Self {
        #[cfg(feature = "msgpack")]
        let codec = Codec::msgpack();
        #[cfg(not(feature = "msgpack"))]
        let codec = Codec::json();
        #[cfg(feature = "compression")]
        let codec = codec.compressed(DEFAULT_COMPRESSION_LEVEL);
        codec
    }
}

impl Codec {
    fn with_format(format: Format) -> Self {
        Codec {
            format,
            compression: None,
            min_compress_size: DEFAULT_MIN_COMPRESS_SIZE,
            max_decoded_size: DEFAULT_MAX_DECODED_SIZE,
            #[cfg(feature = "compression")]
            dictionary: None,
            #[cfg(feature = "compression")]
            readers: dict::Readers::default(),
        }
    }

    /// Plain JSON, byte-compatible with upstream `dynamo-es`.
    pub fn json() -> Self {
        Codec::with_format(Format::Json)
    }

    /// MessagePack of the data model: the JSON form of each value, spelled
    /// in MessagePack (tag `0xC1 0x02`; see [`codec`](self)). Typically 10
    /// to 25% smaller than JSON; writing and reading pass through
    /// `serde_json`'s serializer and deserializer, so every serde form is
    /// the JSON one by construction.
    #[cfg(feature = "msgpack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
    pub fn msgpack() -> Self {
        Codec::with_format(Format::MessagePack)
    }

    /// Compresses the serialized bytes with zstd at `level` (1 to 22;
    /// negative levels are zstd's fast modes). Payloads below
    /// [`with_min_compress_size`](Self::with_min_compress_size), and payloads
    /// that compression would not shrink, are stored uncompressed.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn compressed(self, level: i32) -> Self {
        let dictionary = self
            .dictionary
            .as_ref()
            .map(|writer| dict::Writer::new(&writer.dictionary, level));
        Codec {
            compression: Some(level),
            dictionary,
            ..self
        }
    }

    /// Compresses every payload with a trained zstd `dictionary` (at the
    /// [compression level](Self::compressed), by default
    /// [`DEFAULT_COMPRESSION_LEVEL`]) whenever that makes it smaller,
    /// whatever its size: the
    /// [minimum size](Self::with_min_compress_size) does not apply. The
    /// frame names the dictionary's id, and this codec reads it back; other
    /// readers fetch the dictionary by id (see [`crate::dictionary`]).
    ///
    /// An event repository chooses the dictionary per aggregate type:
    /// [`DynamoEventRepository::with_dictionary`](crate::DynamoEventRepository::with_dictionary).
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn with_dictionary(self, dictionary: &dictionary::Dictionary) -> Self {
        let level = self.compression.unwrap_or(DEFAULT_COMPRESSION_LEVEL);
        Codec {
            dictionary: Some(dict::Writer::new(dictionary, level)),
            ..self
        }
    }

    /// The same codec without a dictionary.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn without_dictionary(self) -> Self {
        Codec {
            dictionary: None,
            ..self
        }
    }

    /// The dictionary payloads are compressed with, if any.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn dictionary(&self) -> Option<&dictionary::Dictionary> {
        self.dictionary.as_ref().map(|writer| &writer.dictionary)
    }

    /// Decodes frames that name a dictionary with those `source` holds
    /// (the dictionaries of one table: for an event store, its snapshots
    /// table), besides this codec's own if it is that table's. For a
    /// [`DictionaryCache`](crate::dictionary::DictionaryCache), pass
    /// `cache.for_table("Snapshots")` and load what a page names into the
    /// cache first ([`DictionaryCache::prefetch`](crate::dictionary::DictionaryCache::prefetch));
    /// a frame naming one the source does not hold is
    /// [`dictionary::Error::NotLoaded`](crate::dictionary::Error::NotLoaded).
    /// Dictionary ids are unique per table only: a codec never decodes with
    /// another table's dictionary of the same id. The source does not
    /// change what is written, nor codec equality.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn with_dictionaries(self, source: impl DictionarySource + 'static) -> Self {
        Codec {
            readers: dict::Readers(Some(std::sync::Arc::new(source))),
            ..self
        }
    }

    /// The table whose dictionaries decoding looks for in its
    /// [source](Self::with_dictionaries), if any.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn dictionary_table(&self) -> Option<&str> {
        self.readers.table()
    }

    /// Sets the size below which payloads are not compressed (default 1 KB).
    pub fn with_min_compress_size(self, bytes: usize) -> Self {
        Codec {
            min_compress_size: bytes,
            ..self
        }
    }

    /// Sets the largest payload `decode` will produce (default 64 MiB). A
    /// zstd frame that declares or yields more is rejected before it is
    /// allocated. Writes refuse a payload larger than this once decoded
    /// ([`Cause::DecodedTooLarge`]), so what this codec writes it reads back:
    /// give every writer and reader of a table the same limit.
    pub fn with_max_decoded_size(self, bytes: usize) -> Self {
        Codec {
            max_decoded_size: bytes,
            ..self
        }
    }

    /// The format this codec writes.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The zstd level, if this codec compresses.
    pub fn compression_level(&self) -> Option<i32> {
        self.compression
    }

    /// The size below which payloads are stored uncompressed.
    pub fn min_compress_size(&self) -> usize {
        self.min_compress_size
    }

    /// The largest payload `decode` will produce.
    pub fn max_decoded_size(&self) -> usize {
        self.max_decoded_size
    }

    /// A stable, human-readable name: `json`, `msgpack`, `json+zstd-3`, …
    pub fn name(&self) -> String {
        match self.compression {
            None => self.format.name().to_string(),
            Some(level) => format!("{}+zstd-{level}", self.format.name()),
        }
    }

    /// Encodes a JSON value.
    ///
    /// A value every reader would refuse is [`Error::Refused`], and nothing
    /// is returned: nesting of [`MAX_DEPTH`] levels, or a payload larger than
    /// [`max_decoded_size`](Self::max_decoded_size) once decoded.
    pub fn encode(&self, value: &Value) -> Result<Vec<u8>> {
        let raw = match self.format {
            Format::Json => json::encode_value(value)?,
            #[cfg(feature = "msgpack")]
            Format::MessagePack => msgpack::encode_value(value)?,
        };
        self.check_decoded_size(raw.len())?;
        self.maybe_compress(raw)
    }

    /// Encodes any serializable value (no intermediate `serde_json::Value`).
    ///
    /// A value every reader would refuse or misread is [`Error::Refused`]:
    /// a map holding a key twice (a `#[serde(flatten)]` field over a map
    /// with a key named like another field), nesting of [`MAX_DEPTH`]
    /// levels, or a payload larger than
    /// [`max_decoded_size`](Self::max_decoded_size) once decoded.
    pub fn encode_serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        let (payload, decoded_len) = self.encode_serialize_sized(value)?;
        self.check_decoded_size(decoded_len)?;
        Ok(payload)
    }

    /// [`encode_serialize`](Self::encode_serialize) without the decoded
    /// size check, with the decoded size: the stored payload, and its size
    /// once decoded (what a reader's decompression produces).
    pub(crate) fn encode_serialize_sized<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<(Vec<u8>, usize)> {
        let raw = match self.format {
            Format::Json => json::encode(value)?,
            #[cfg(feature = "msgpack")]
            Format::MessagePack => msgpack::encode(value)?,
        };
        let decoded_len = raw.len();
        Ok((self.maybe_compress(raw)?, decoded_len))
    }

    /// Refuses a payload of `decoded_len` bytes once decoded if it is over
    /// [`max_decoded_size`](Self::max_decoded_size): the reader would
    /// refuse it (a zstd frame), and a snapshot of that size is never
    /// written either.
    pub(crate) fn check_decoded_size(&self, decoded_len: usize) -> Result<()> {
        if decoded_len > self.max_decoded_size {
            Err(Cause::DecodedTooLarge {
                size: decoded_len,
                max: self.max_decoded_size,
            }
            .into())
        } else {
            Ok(())
        }
    }

    /// `value` serialized in this codec's format, never compressed.
    #[cfg(feature = "compression")]
    pub(crate) fn serialize_plain(&self, value: &Value) -> Result<Vec<u8>> {
        match self.format {
            Format::Json => json::encode_value(value),
            #[cfg(feature = "msgpack")]
            Format::MessagePack => msgpack::encode_value(value),
        }
    }

    #[cfg(feature = "compression")]
    fn maybe_compress(&self, raw: Vec<u8>) -> Result<Vec<u8>> {
        if let Some(writer) = &self.dictionary {
            let compressed = writer.compress(&raw)?;
            return Ok(if compressed.len() < raw.len() {
                compressed
            } else {
                raw
            });
        }
        match self.compression {
            Some(level) if raw.len() >= self.min_compress_size => {
                let compressed = zstd::compress(&raw, level)?;
                Ok(if compressed.len() < raw.len() {
                    compressed
                } else {
                    raw
                })
            }
            _ => Ok(raw),
        }
    }

    #[cfg(not(feature = "compression"))]
    fn maybe_compress(&self, raw: Vec<u8>) -> Result<Vec<u8>> {
        Ok(raw)
    }

    /// Decodes stored bytes in any format, whatever this codec writes, into
    /// a `serde_json::Value`.
    ///
    /// A `Value` holds integers up to 64 bits: a payload holding a larger
    /// one is [`Error::Inexact`] here (never rounded, as
    /// `serde_json::from_slice::<Value>` would); read it with
    /// [`decode_deserialize`](Self::decode_deserialize) into its type.
    pub fn decode(&self, bytes: &[u8]) -> Result<Value> {
        self.with_plain(bytes, |encoding, plain| match encoding {
            Encoding::Json => {
                let value = json::decode_value(plain)?;
                model::check_value_is_exact(plain, &value)?;
                Ok(value)
            }
            #[cfg(feature = "msgpack")]
            Encoding::MessagePack => msgpack::decode_value(plain),
            _ => decode_plain(encoding, plain),
        })
    }

    /// Decodes stored bytes in any format straight into `T`.
    pub fn decode_deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        self.with_plain(bytes, decode_plain)
    }

    /// Runs `read` on the serialized bytes inside `bytes` (decompressed if
    /// they are a zstd frame) and their encoding.
    fn with_plain<T>(
        &self,
        bytes: &[u8],
        read: impl FnOnce(Encoding, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let (encoding, plain) = self.unwrap_compression(bytes)?;
        read(encoding, &plain)
    }

    #[cfg(feature = "compression")]
    fn decompress(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        match dict::frame_dictionary_id(bytes) {
            Some(id) => {
                let dictionary = dict::find(id, self.dictionary.as_ref(), &self.readers)?;
                dict::decompress(bytes, &dictionary, self.max_decoded_size)
            }
            None => zstd::decompress(bytes, self.max_decoded_size),
        }
    }

    /// True if this codec compresses, and `frame` names the dictionary it
    /// compresses with (or none, as it does).
    #[cfg(feature = "compression")]
    fn compresses_like(&self, frame: &[u8]) -> bool {
        let own = self.dictionary.as_ref().map(|w| w.dictionary.id());
        (self.compression.is_some() || own.is_some()) && dict::frame_dictionary_id(frame) == own
    }

    #[cfg(not(feature = "compression"))]
    fn compresses_like(&self, _frame: &[u8]) -> bool {
        self.compression.is_some()
    }

    #[cfg(not(feature = "compression"))]
    fn decompress(&self, _bytes: &[u8]) -> Result<Vec<u8>> {
        Err(Error::FeatureDisabled {
            format: "zstd",
            feature: "compression",
        })
    }

    /// The serialized bytes inside a stored payload and their encoding.
    fn unwrap_compression<'b>(&self, bytes: &'b [u8]) -> Result<(Encoding, Cow<'b, [u8]>)> {
        match Encoding::detect(bytes)? {
            Encoding::Zstd => {
                let inner = self.decompress(bytes)?;
                match Encoding::detect(&inner)? {
                    Encoding::Zstd => Err(Error::Corrupt {
                        format: "zstd",
                        reason: "nested zstd frame".into(),
                    }),
                    encoding => Ok((encoding, Cow::Owned(inner))),
                }
            }
            encoding => Ok((encoding, Cow::Borrowed(bytes))),
        }
    }
}

/// Reads serialized bytes (`bytes`, of `encoding`, not compressed) into a
/// `T`.
fn decode_plain<T: DeserializeOwned>(encoding: Encoding, bytes: &[u8]) -> Result<T> {
    match encoding {
        Encoding::Json => json::decode(bytes),
        #[cfg(feature = "msgpack")]
        Encoding::MessagePack => msgpack::decode(bytes),
        #[cfg(feature = "msgpack")]
        Encoding::CompactMessagePack => msgpack::compact::decode(bytes),
        #[cfg(not(feature = "msgpack"))]
        Encoding::MessagePack | Encoding::CompactMessagePack => Err(Error::FeatureDisabled {
            format: encoding.name(),
            feature: "msgpack",
        }),
        Encoding::Zstd => Err(Error::Corrupt {
            format: "zstd",
            reason: "unexpected zstd frame".into(),
        }),
    }
}

/// `serde_json::to_value`, refusing what it would silently change: a map
/// holding a key twice (`to_value` keeps the last value, as serde writes a
/// `#[serde(flatten)]` field over a map holding a key named like a field)
/// and nesting every reader refuses ([`Error::Refused`], payload unnamed).
/// The typed write path of [`DynamoStore`](crate::DynamoStore) builds its
/// events' values with it, so what it commits is what the event holds.
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    json::decode_value(&json::encode(value)?)
}

/// The DynamoDB size of a stored payload attribute's value: binary values
/// count their raw length.
pub fn stored_size(bytes: &[u8]) -> usize {
    bytes.len()
}

#[cfg(test)]
mod tests;
