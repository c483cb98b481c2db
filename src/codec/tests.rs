#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{json, Value};

use super::encoding::{TAG, ZSTD_MAGIC};
use super::*;

/// Every codec this build can write, at several zstd levels, compressing
/// even small payloads so the zstd paths run.
pub(crate) fn all_codecs() -> Vec<Codec> {
    #[allow(unused_mut)]
    let mut codecs = Codec::available();
    #[cfg(feature = "compression")]
    for codec in Codec::available() {
        if codec.compression_level().is_some() {
            for level in [1, 9] {
                codecs.push(codec.clone().compressed(level).with_min_compress_size(0));
            }
        }
    }
    codecs
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300f64).prop_map(|f| json!(f)),
        ".*".prop_map(Value::String),
        "[\\u{0}-\\u{10FFFF}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_codec_round_trips_and_reads_every_other(value in arb_json()) {
        let codecs = all_codecs();
        for writer in &codecs {
            let bytes = writer.encode(&value).unwrap();
            for reader in &codecs {
                prop_assert_eq!(&reader.decode(&bytes).unwrap(), &value, "{} read by {}", writer.name(), reader.name());
            }
        }
    }

    #[test]
    fn decode_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for codec in all_codecs() {
            let _ = codec.decode(&bytes);
        }
    }
}

#[test]
fn edge_values_round_trip() {
    let values = [
        json!(null),
        json!({}),
        json!([]),
        json!(""),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5e-300),
        json!({"nested": {"deep": [[], {}, [null, true, "ü → 漢字 🎉"]]}}),
    ];
    for codec in all_codecs() {
        for value in &values {
            assert_eq!(&codec.decode(&codec.encode(value).unwrap()).unwrap(), value);
        }
    }
}

#[test]
fn json_is_plain_bytes_without_header() {
    let value = json!({"a": [1, 2, 3], "b": "x"});
    let bytes = Codec::json().encode(&value).unwrap();
    assert_eq!(bytes, serde_json::to_vec(&value).unwrap());
    assert_eq!(Encoding::detect(&bytes).unwrap(), Encoding::Json);
}

#[test]
fn default_codec_follows_features() {
    let codec = Codec::default();
    #[cfg(feature = "compression")]
    assert_eq!(codec.compression_level(), Some(DEFAULT_COMPRESSION_LEVEL));
    #[cfg(not(feature = "compression"))]
    assert_eq!(codec.compression_level(), None);
    #[cfg(feature = "msgpack")]
    assert_eq!(codec.format(), Format::MessagePack);
    #[cfg(not(feature = "msgpack"))]
    assert_eq!(codec.format(), Format::Json);
}

#[test]
fn corrupt_and_foreign_payloads_give_typed_errors() {
    let codec = Codec::default();
    for bytes in [
        &b""[..],
        &[TAG][..],
        &[TAG, 0x7f, 1, 2][..],
        &[0xff, 0x00, 0x13][..],
        &b"{\"unterminated\": "[..],
        &ZSTD_MAGIC[..],
        &[0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x00][..],
    ] {
        let err = codec.decode(bytes).unwrap_err();
        assert!(err.is_data_error(), "{err:?}");
    }
}

#[cfg(not(feature = "msgpack"))]
#[test]
fn msgpack_without_feature_names_the_feature() {
    let err = Codec::json()
        .decode(&[TAG, super::encoding::TAG_MSGPACK, 0x80])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::FeatureDisabled {
                feature: "msgpack",
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(not(feature = "compression"))]
#[test]
fn zstd_without_feature_names_the_feature() {
    let frame = [0x28, 0xB5, 0x2F, 0xFD, 0x20, 0x00, 0x01, 0x00, 0x00];
    let err = Codec::json().decode(&frame).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FeatureDisabled {
                feature: "compression",
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(feature = "compression")]
mod compression {
    use super::*;

    fn big_value() -> Value {
        let entries: Vec<Value> = (0..2000)
            .map(|i| json!({"entry_id": i, "memo": "coffee at the corner shop", "amount": i * 7 % 1000}))
            .collect();
        json!({ "entries": entries })
    }

    #[test]
    fn small_payloads_are_not_compressed() {
        let value = json!({"id": "7f0c", "amount": "12.50"});
        let codec = Codec::json().compressed(3);
        let bytes = codec.encode(&value).unwrap();
        assert_eq!(bytes, Codec::json().encode(&value).unwrap());
    }

    #[test]
    fn incompressible_payloads_are_stored_plain() {
        let noise: String = (0..4000u32)
            .map(|i| char::from_u32(0x4e00 + (i * 7919) % 20000).unwrap())
            .collect();
        let value = json!(noise);
        let bytes = Codec::json().compressed(3).encode(&value).unwrap();
        let plain = Codec::json().encode(&value).unwrap();
        assert!(bytes.len() <= plain.len());
    }

    #[test]
    fn large_payloads_compress() {
        let value = big_value();
        let bytes = Codec::json().compressed(3).encode(&value).unwrap();
        assert_eq!(Encoding::detect(&bytes).unwrap(), Encoding::Zstd);
        assert!(bytes.len() * 5 < Codec::json().encode(&value).unwrap().len());
        assert!(Codec::json().compressed(3).is_native(&bytes));
        assert!(!Codec::json().is_native(&bytes));
    }

    #[test]
    fn truncated_frames_are_corrupt() {
        let bytes = Codec::json().compressed(3).encode(&big_value()).unwrap();
        for cut in [5, 13, bytes.len() / 2, bytes.len() - 1] {
            let err = Codec::json().decode(&bytes[..cut]).unwrap_err();
            assert!(err.is_data_error(), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn frame_declaring_ten_gigabytes_is_rejected_before_allocation() {
        // Frame header: magic, descriptor 0xC0 (8-byte content size, single segment? no: FCS flag 3),
        // window descriptor, then the declared content size.
        let mut frame = ZSTD_MAGIC.to_vec();
        frame.push(0xC0); // FCS_Field_Size = 8 bytes, not single segment
        frame.push(0x58); // window descriptor
        frame.extend_from_slice(&10_000_000_000u64.to_le_bytes());
        frame.extend_from_slice(&[0x01, 0x00, 0x00]); // last raw block of size 0
        let err = Codec::json().decode(&frame).unwrap_err();
        assert!(
            matches!(
                err,
                Error::DecodedTooLarge {
                    size: 10_000_000_000,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn bomb_without_declared_size_is_capped() {
        use std::io::Write;
        let zeros = vec![b' '; 4 * 1024 * 1024];
        let mut encoder = ::zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_contentsize(false).unwrap();
        encoder.write_all(&zeros).unwrap();
        let frame = encoder.finish().unwrap();
        let codec = Codec::json().with_max_decoded_size(1024 * 1024);
        let err = codec.decode(&frame).unwrap_err();
        assert!(matches!(err, Error::DecodedTooLarge { .. }), "{err:?}");
    }

    #[test]
    fn nested_zstd_is_rejected() {
        let inner = Codec::json().compressed(3).encode(&big_value()).unwrap();
        let outer = ::zstd::bulk::compress(&inner, 3).unwrap();
        assert!(Codec::json().decode(&outer).is_err());
    }
}
