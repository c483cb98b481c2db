//! How stored bytes say what they are: the tag bytes, the zstd magic, the
//! [`Format`] a codec writes and the [`Encoding`] recognised from the bytes.
//!
//! **Invariant:** the outermost layer of any stored payload is recognised
//! from its first bytes alone, whatever features are enabled: `0xC1` (never
//! valid UTF-8, so never the start of a JSON document) followed by a format
//! tag, the zstd magic, or else JSON.

use crate::error::{Error, Result};

/// The tag byte that starts every tagged (non-JSON, non-zstd) payload.
/// It is never valid in UTF-8, so it never starts a JSON document.
pub(crate) const TAG: u8 = 0xC1;
/// The tag that follows [`TAG`] for MessagePack of the data model.
pub(crate) const TAG_MSGPACK: u8 = 0x02;
/// The tag that follows [`TAG`] for MessagePack in rmp-serde's compact forms,
/// as dynamo-es 0.5 wrote it. Read, never written.
pub(crate) const TAG_MSGPACK_COMPACT: u8 = 0x01;
/// The zstd frame magic number, as stored (little endian).
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The serialization format a [`Codec`](super::Codec) writes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON (serde_json). Stable name `json`.
    Json,
    /// MessagePack of the data model (tag `0xC1 0x02`). Stable name `msgpack`.
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
    /// MessagePack of the data model (tag `0xC1 0x02`).
    MessagePack,
    /// MessagePack in rmp-serde's compact forms (tag `0xC1 0x01`), as
    /// dynamo-es 0.5 wrote typed values: readable into their types only.
    CompactMessagePack,
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
            [TAG, TAG_MSGPACK_COMPACT, ..] => Ok(Encoding::CompactMessagePack),
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
            Encoding::CompactMessagePack => "msgpack-compact",
            Encoding::Zstd => "zstd",
        }
    }
}
