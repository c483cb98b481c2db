//! Codec names: the one list of codecs a build offers, and parsing a name
//! back into its codec.
//!
//! **Invariant:** for every codec `c`, `c.name().parse::<Codec>() == Ok(c)`
//! (thresholds aside, which names do not carry), and every name that parses
//! is one [`Codec::name`] can print. A name whose cargo feature is off is a
//! [`ParseCodecError::FeatureDisabled`], never another codec.

use std::fmt;
use std::str::FromStr;

use super::{Codec, DEFAULT_COMPRESSION_LEVEL};

/// The lowest zstd level a name may carry (zstd's fastest mode).
pub const MIN_COMPRESSION_LEVEL: i32 = -7;
/// The highest zstd level a name may carry.
pub const MAX_COMPRESSION_LEVEL: i32 = 22;

/// Why a codec name did not parse.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseCodecError {
    /// The format part is neither `json` nor `msgpack`.
    #[error("unknown format `{0}`: expected json or msgpack, optionally followed by +zstd-LEVEL")]
    UnknownFormat(String),
    /// The part after `+` is not `zstd` or `zstd-LEVEL`.
    #[error("unknown compression `{0}`: expected zstd-LEVEL")]
    UnknownCompression(String),
    /// The zstd level is not a number from -7 to 22 other than 0.
    #[error("zstd level `{0}`: expected 1 to 22, or -7 to -1 for zstd's fast modes")]
    Level(String),
    /// The name needs a cargo feature this build lacks.
    #[error("`{name}` needs dynamo-es built with the `{feature}` feature")]
    FeatureDisabled {
        /// The name asked for.
        name: String,
        /// The feature it needs.
        feature: &'static str,
    },
}

impl Codec {
    /// Every codec this build can write, by format and compression, each at
    /// the default zstd level: `json`, then `msgpack` with the `msgpack`
    /// feature, then their `+zstd-1` forms with `compression`.
    ///
    /// ```
    /// use dynamo_es::Codec;
    ///
    /// for codec in Codec::available() {
    ///     assert_eq!(codec.name().parse::<Codec>().unwrap(), codec);
    /// }
    /// ```
    pub fn available() -> Vec<Codec> {
        #[allow(unused_mut)]
        let mut formats = vec![Codec::json()];
        #[cfg(feature = "msgpack")]
        formats.push(Codec::msgpack());
        #[allow(unused_mut)]
        let mut codecs = formats.clone();
        #[cfg(feature = "compression")]
        codecs.extend(
            formats
                .into_iter()
                .map(|codec| codec.compressed(DEFAULT_COMPRESSION_LEVEL)),
        );
        codecs
    }
}

impl FromStr for Codec {
    type Err = ParseCodecError;

    /// Parses a name as [`Codec::name`] prints it: `json`, `msgpack`,
    /// `json+zstd-LEVEL`, `msgpack+zstd-LEVEL`; `+zstd` alone means the
    /// default level.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let (format, compression) = match name.split_once('+') {
            Some((format, compression)) => (format, Some(compression)),
            None => (name, None),
        };
        let codec = match format {
            "json" => Codec::json(),
            #[cfg(feature = "msgpack")]
            "msgpack" => Codec::msgpack(),
            #[cfg(not(feature = "msgpack"))]
            "msgpack" => {
                return Err(ParseCodecError::FeatureDisabled {
                    name: name.to_string(),
                    feature: "msgpack",
                })
            }
            other => return Err(ParseCodecError::UnknownFormat(other.to_string())),
        };
        let Some(compression) = compression else {
            return Ok(codec);
        };
        let level = if compression == "zstd" {
            DEFAULT_COMPRESSION_LEVEL
        } else {
            let text = compression
                .strip_prefix("zstd-")
                .ok_or_else(|| ParseCodecError::UnknownCompression(compression.to_string()))?;
            text.parse::<i32>()
                .ok()
                .filter(|level| {
                    (MIN_COMPRESSION_LEVEL..=MAX_COMPRESSION_LEVEL).contains(level) && *level != 0
                })
                .ok_or_else(|| ParseCodecError::Level(text.to_string()))?
        };
        compress(codec, level, name)
    }
}

#[cfg(feature = "compression")]
fn compress(codec: Codec, level: i32, _name: &str) -> Result<Codec, ParseCodecError> {
    Ok(codec.compressed(level))
}

#[cfg(not(feature = "compression"))]
fn compress(_codec: Codec, _level: i32, name: &str) -> Result<Codec, ParseCodecError> {
    Err(ParseCodecError::FeatureDisabled {
        name: name.to_string(),
        feature: "compression",
    })
}

impl fmt::Display for Codec {
    /// The codec's [`name`](Codec::name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_available_codec_round_trips_through_its_name() {
        let codecs = Codec::available();
        assert_eq!(
            codecs.len(),
            1 + usize::from(cfg!(feature = "msgpack"))
                + (1 + usize::from(cfg!(feature = "msgpack")))
                    * usize::from(cfg!(feature = "compression"))
        );
        for codec in codecs {
            assert_eq!(Codec::from_str(&codec.name()), Ok(codec.clone()));
            assert_eq!(codec.to_string(), codec.name());
        }
    }

    #[cfg(feature = "compression")]
    #[test]
    fn levels_parse_within_zstd_range() {
        for level in [MIN_COMPRESSION_LEVEL, -1, 1, 9, MAX_COMPRESSION_LEVEL] {
            let codec = Codec::json().compressed(level);
            assert_eq!(codec.name().parse::<Codec>(), Ok(codec));
        }
        assert_eq!(
            "json+zstd".parse::<Codec>(),
            Ok(Codec::json().compressed(DEFAULT_COMPRESSION_LEVEL))
        );
    }

    #[test]
    fn bad_names_are_typed_errors() {
        assert!(matches!(
            "xml".parse::<Codec>(),
            Err(ParseCodecError::UnknownFormat(_))
        ));
        assert!(matches!(
            "".parse::<Codec>(),
            Err(ParseCodecError::UnknownFormat(_))
        ));
        for bad in [
            "json+zstd-",
            "json+zstd-x",
            "json+zstd-23",
            "json+zstd-0",
            "json+zstd--8",
        ] {
            let err = bad.parse::<Codec>().unwrap_err();
            let expected = if cfg!(feature = "compression") {
                matches!(err, ParseCodecError::Level(_))
            } else {
                matches!(err, ParseCodecError::Level(_))
                    || matches!(err, ParseCodecError::FeatureDisabled { .. })
            };
            assert!(expected, "{bad}: {err}");
        }
        assert!(matches!(
            "json+gzip".parse::<Codec>(),
            Err(ParseCodecError::UnknownCompression(_))
        ));
        #[cfg(not(feature = "msgpack"))]
        assert_eq!(
            "msgpack".parse::<Codec>(),
            Err(ParseCodecError::FeatureDisabled {
                name: "msgpack".into(),
                feature: "msgpack"
            })
        );
    }
}
