//! Moving a stored payload to the way a codec stores it
//! ([`Codec::reencode`]), and telling whether it already is
//! ([`Codec::is_native`]).
//!
//! **Invariant:** a re-encoded payload is the same value, checked: when only
//! compression changes the serialized bytes are kept as they are; when the
//! format changes the result is read back and compared with the original
//! in the exact data model. Anything that cannot be shown to be the same is
//! [`Error::Inexact`](crate::Error::Inexact), never a changed value.

#[cfg(feature = "msgpack")]
use super::msgpack;
use super::{decode_plain, model, Codec, Encoding, Format};
use crate::error::Result;

impl Codec {
    /// True if this codec writes serialized bytes of `encoding`.
    fn writes(&self, encoding: Encoding) -> bool {
        match (self.format, encoding) {
            (Format::Json, Encoding::Json) => true,
            #[cfg(feature = "msgpack")]
            (Format::MessagePack, Encoding::MessagePack) => true,
            _ => false,
        }
    }

    /// True if `bytes` are already stored the way this codec would store
    /// them: same format, compressed or not as this codec would choose.
    pub fn is_native(&self, bytes: &[u8]) -> bool {
        let Ok(encoding) = Encoding::detect(bytes) else {
            return false;
        };
        match encoding {
            Encoding::Zstd if self.compresses_like(bytes) => self
                .unwrap_compression(bytes)
                .is_ok_and(|(inner, _)| self.writes(inner)),
            Encoding::Zstd => false,
            plain => self.writes(plain),
        }
    }

    /// The same stored value, re-encoded the way this codec stores it.
    ///
    /// Exact by construction, and checked:
    ///
    /// * when only compression changes (`json` and `json+zstd-N`, or
    ///   `msgpack` and `msgpack+zstd-N`), the serialized bytes are kept as
    ///   they are and only (de)compressed; nothing is re-serialized;
    /// * when the format changes (JSON and MessagePack), the payload is read
    ///   into the exact data model, written in the new format, read back,
    ///   and compared with the original, integer digit for digit and float
    ///   bit for bit.
    ///
    /// A payload that cannot be shown to be the same value in the target is
    /// [`Error::Inexact`](crate::Error::Inexact): an integer `-0` or one beyond 128 bits in JSON,
    /// or a legacy compact MessagePack payload (its forms depend on the
    /// Rust type that wrote it, so only the application can convert it: read
    /// it into its type and write it again). A corrupt payload is the same
    /// error as decoding it.
    pub fn reencode(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        let (encoding, plain) = self.unwrap_compression(bytes)?;
        let same_family = match (self.format, encoding) {
            (Format::Json, Encoding::Json) => true,
            #[cfg(feature = "msgpack")]
            (Format::MessagePack, Encoding::MessagePack | Encoding::CompactMessagePack) => true,
            _ => false,
        };
        let serialized = if same_family {
            // Fails on corrupt bytes rather than carrying them along.
            self.check_readable(encoding, &plain)?;
            plain.into_owned()
        } else {
            self.convert_format(encoding, &plain)?
        };
        self.check_decoded_size(serialized.len())?;
        let stored = self.maybe_compress(serialized.clone())?;
        if stored != serialized && self.unwrap_compression(&stored)?.1.as_ref() != serialized {
            return Err(model::inexact(
                "zstd",
                "the compressed payload does not decompress to the same bytes",
            ));
        }
        Ok(stored)
    }

    /// Decodes `plain` once, to refuse corrupt payloads.
    fn check_readable(&self, encoding: Encoding, plain: &[u8]) -> Result<()> {
        match encoding {
            Encoding::Json => model::Model::from_json(plain).map(drop),
            #[cfg(feature = "msgpack")]
            Encoding::MessagePack => msgpack::to_model(plain).map(drop),
            _ => decode_plain::<serde::de::IgnoredAny>(encoding, plain).map(drop),
        }
    }

    /// Writes `plain` (of `encoding`) in this codec's format, exactly.
    fn convert_format(&self, encoding: Encoding, plain: &[u8]) -> Result<Vec<u8>> {
        let source = match encoding {
            Encoding::Json => model::Model::from_json(plain)?,
            #[cfg(feature = "msgpack")]
            Encoding::MessagePack => msgpack::to_model(plain)?,
            Encoding::CompactMessagePack => {
                return Err(model::inexact(
                    "msgpack-compact",
                    "legacy compact MessagePack has type-specific forms; \
                     read it into its type and write it again to convert it",
                ))
            }
            other => {
                return Err(match decode_plain::<serde::de::IgnoredAny>(other, plain) {
                    Err(err) => err,
                    Ok(_) => model::inexact(other.name(), "no exact conversion"),
                })
            }
        };
        let converted = match self.format {
            Format::Json => source.to_json()?,
            #[cfg(feature = "msgpack")]
            Format::MessagePack => {
                let json = source.to_json()?;
                msgpack::from_json(&json)?
            }
        };
        let again = match self.format {
            Format::Json => model::Model::from_json(&converted)?,
            #[cfg(feature = "msgpack")]
            Format::MessagePack => msgpack::to_model(&converted)?,
        };
        if again == source {
            Ok(converted)
        } else {
            Err(model::inexact(
                self.format.name(),
                format!(
                    "the {} form does not read back as the same value",
                    self.format.name()
                ),
            ))
        }
    }
}
