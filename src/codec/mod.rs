//! How payloads are stored: the codec layer.
//!
//! Every payload this crate writes (event payload, event metadata, snapshot
//! and view) goes through a [`Codec`]. What is written is chosen by the codec;
//! what is read is recognised from the bytes themselves, so one table can
//! hold a mix of formats and all of them read back:
//!
//! | stored bytes start with | format | stable name | feature to read it |
//! |---|---|---|---|
//! | anything else (plain JSON, no header) | JSON | `json` | always |
//! | `0xC1 0x01` | MessagePack (named fields) | `msgpack` | `msgpack` |
//! | `0x28 0xB5 0x2F 0xFD` (zstd frame magic) | zstd over one of the above | `zstd` | `compression` |
//!
//! `0xC1` is never the first byte of valid UTF-8, so no JSON document can be
//! mistaken for a tagged payload, and plain JSON stays byte-for-byte what the
//! upstream `dynamo-es` crate writes and reads.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

mod json;
#[cfg(feature = "msgpack")]
mod msgpack;
#[cfg(feature = "compression")]
mod zstd;

/// The tag byte that starts every tagged (non-JSON, non-zstd) payload.
/// It is never valid in UTF-8, so it never starts a JSON document.
pub(crate) const TAG: u8 = 0xC1;
/// The tag that follows [`TAG`] for MessagePack.
pub(crate) const TAG_MSGPACK: u8 = 0x01;
/// The zstd frame magic number, as stored (little endian).
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Payloads smaller than this are not compressed by default (bytes).
pub const DEFAULT_MIN_COMPRESS_SIZE: usize = 1024;
/// The default cap on a decoded payload, against decompression bombs (64 MiB).
pub const DEFAULT_MAX_DECODED_SIZE: usize = 64 * 1024 * 1024;
/// The zstd level [`Codec::default`] uses when `compression` is on.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// The serialization format a [`Codec`] writes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON (serde_json). Stable name `json`.
    Json,
    /// MessagePack with named fields (rmp-serde). Stable name `msgpack`.
    #[cfg(feature = "msgpack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
    MessagePack,
}

impl Format {
    /// The stable name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            #[cfg(feature = "msgpack")]
            Format::MessagePack => "msgpack",
        }
    }
}

/// The outermost layer of stored bytes, as recognised from the bytes alone.
///
/// Unlike [`Format`], every variant exists whatever features are enabled, so
/// a build without `msgpack` or `compression` can still tell what it is
/// looking at (and name the feature it needs).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Plain JSON bytes, as upstream `dynamo-es` writes them.
    Json,
    /// Tagged MessagePack.
    MessagePack,
    /// A zstd frame around JSON or tagged MessagePack.
    Zstd,
}

impl Encoding {
    /// Recognises the outermost layer of `bytes`.
    pub fn detect(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [] => Err(Error::Corrupt {
                format: "json",
                reason: "empty payload".into(),
            }),
            [TAG, TAG_MSGPACK, ..] => Ok(Encoding::MessagePack),
            [TAG, other, ..] => Err(Error::Corrupt {
                format: "tagged",
                reason: format!("unknown format tag 0x{other:02x}"),
            }),
            [TAG] => Err(Error::Corrupt {
                format: "tagged",
                reason: "payload is a lone tag byte".into(),
            }),
            [a, b, c, d, ..] if [*a, *b, *c, *d] == ZSTD_MAGIC => Ok(Encoding::Zstd),
            _ => Ok(Encoding::Json),
        }
    }

    /// The stable name of the encoding.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::MessagePack => "msgpack",
            Encoding::Zstd => "zstd",
        }
    }
}

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
}

impl Default for Codec {
    /// zstd (level 3) if `compression` is on, over MessagePack if `msgpack`
    /// is on, else plain JSON.
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
        }
    }

    /// Plain JSON, byte-compatible with upstream `dynamo-es`.
    pub fn json() -> Self {
        Codec::with_format(Format::Json)
    }

    /// MessagePack with named fields.
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
        Codec {
            compression: Some(level),
            ..self
        }
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
    /// allocated.
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
    pub fn encode(&self, value: &Value) -> Result<Vec<u8>> {
        self.encode_serialize(value)
    }

    /// Encodes any serializable value (no intermediate `serde_json::Value`).
    pub fn encode_serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        let raw = match self.format {
            Format::Json => json::encode(value)?,
            #[cfg(feature = "msgpack")]
            Format::MessagePack => msgpack::encode(value)?,
        };
        self.maybe_compress(raw)
    }

    #[cfg(feature = "compression")]
    fn maybe_compress(&self, raw: Vec<u8>) -> Result<Vec<u8>> {
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

    /// Decodes stored bytes in any format, whatever this codec writes.
    pub fn decode(&self, bytes: &[u8]) -> Result<Value> {
        self.decode_deserialize(bytes)
    }

    /// Decodes stored bytes in any format straight into `T`.
    pub fn decode_deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        match Encoding::detect(bytes)? {
            Encoding::Zstd => {
                let inner = self.decompress(bytes)?;
                match Encoding::detect(&inner)? {
                    Encoding::Zstd => Err(Error::Corrupt {
                        format: "zstd",
                        reason: "nested zstd frame".into(),
                    }),
                    encoding => decode_plain(encoding, &inner),
                }
            }
            encoding => decode_plain(encoding, bytes),
        }
    }

    #[cfg(feature = "compression")]
    fn decompress(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        zstd::decompress(bytes, self.max_decoded_size)
    }

    #[cfg(not(feature = "compression"))]
    fn decompress(&self, _bytes: &[u8]) -> Result<Vec<u8>> {
        Err(Error::FeatureDisabled {
            format: "zstd",
            feature: "compression",
        })
    }

    /// True if `bytes` are already stored the way this codec would store
    /// them: same format, compressed or not as this codec would choose.
    pub fn is_native(&self, bytes: &[u8]) -> bool {
        let Ok(encoding) = Encoding::detect(bytes) else {
            return false;
        };
        let format_matches = |encoding: Encoding| match (self.format, encoding) {
            (Format::Json, Encoding::Json) => true,
            #[cfg(feature = "msgpack")]
            (Format::MessagePack, Encoding::MessagePack) => true,
            _ => false,
        };
        match (encoding, self.compression) {
            (Encoding::Zstd, Some(_)) => self
                .decompress(bytes)
                .ok()
                .and_then(|inner| Encoding::detect(&inner).ok())
                .is_some_and(format_matches),
            (Encoding::Zstd, None) => false,
            (plain, _) => format_matches(plain),
        }
    }
}

fn decode_plain<T: DeserializeOwned>(encoding: Encoding, bytes: &[u8]) -> Result<T> {
    match encoding {
        Encoding::Json => json::decode(bytes),
        #[cfg(feature = "msgpack")]
        Encoding::MessagePack => msgpack::decode(bytes),
        #[cfg(not(feature = "msgpack"))]
        Encoding::MessagePack => Err(Error::FeatureDisabled {
            format: "msgpack",
            feature: "msgpack",
        }),
        Encoding::Zstd => Err(Error::Corrupt {
            format: "zstd",
            reason: "unexpected zstd frame".into(),
        }),
    }
}

/// The DynamoDB size of a stored payload attribute's value: binary values
/// count their raw length.
pub fn stored_size(bytes: &[u8]) -> usize {
    bytes.len()
}

#[cfg(test)]
mod tests;
