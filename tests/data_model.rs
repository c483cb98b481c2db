//! One data model across every codec and path: typed and `Value` writes,
//! typed and `Value` reads, every codec reading every other's bytes, and
//! `Codec::reencode` between every pair of codecs, over generated values
//! with the forms that used to differ between paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use common::codecs;
use dynamo_es::{Codec, Error};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Unit,
    Newtype(i64),
    Tuple(u8, String),
    Struct { inner: Inner, flag: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Inner {
    Floats(Vec<f64>),
    Deeper(Box<Option<Kind>>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Everything {
    id: Uuid,
    ip: IpAddr,
    by_number: BTreeMap<u32, String>,
    by_signed: BTreeMap<i64, bool>,
    by_flag: BTreeMap<bool, u8>,
    big: u128,
    small: i128,
    floats: Vec<f64>,
    kind: Kind,
    bytes: Vec<u8>,
    text: String,
    missing: Option<u8>,
}

fn edge_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        Just(5e-324),
        Just(f64::MIN_POSITIVE / 3.0),
        Just(0.1 + 0.2),
        Just(-0.0),
        Just(0.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(1e20),
        Just(-9.223372036854776e18),
    ]
}

fn edge_u128() -> impl Strategy<Value = u128> {
    prop_oneof![
        any::<u128>(),
        Just(u128::MAX),
        Just(0),
        Just(u128::from(u64::MAX)),
        Just(u128::from(u64::MAX) + 1),
        any::<u64>().prop_map(u128::from),
    ]
}

fn edge_i128() -> impl Strategy<Value = i128> {
    prop_oneof![
        any::<i128>(),
        Just(i128::MIN),
        Just(i128::MAX),
        Just(i128::from(i64::MIN)),
        Just(i128::from(i64::MIN) - 1),
        any::<i64>().prop_map(i128::from),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    let leaf = prop_oneof![
        Just(Kind::Unit),
        any::<i64>().prop_map(Kind::Newtype),
        (any::<u8>(), "\\PC{0,8}").prop_map(|(a, b)| Kind::Tuple(a, b)),
        (prop::collection::vec(edge_f64(), 0..4), any::<bool>()).prop_map(|(floats, flag)| {
            Kind::Struct {
                inner: Inner::Floats(floats),
                flag,
            }
        }),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        (prop::option::of(inner), any::<bool>()).prop_map(|(kind, flag)| Kind::Struct {
            inner: Inner::Deeper(Box::new(kind)),
            flag,
        })
    })
}

prop_compose! {
    fn everything()(
        id in any::<u128>().prop_map(Uuid::from_u128),
        ip in any::<IpAddr>(),
        by_number in prop::collection::btree_map(any::<u32>(), "\\PC{0,6}", 0..4),
        by_signed in prop::collection::btree_map(any::<i64>(), any::<bool>(), 0..4),
        by_flag in prop::collection::btree_map(any::<bool>(), any::<u8>(), 0..2),
        big in edge_u128(),
        small in edge_i128(),
        floats in prop::collection::vec(edge_f64(), 0..6),
        kind in kind(),
        bytes in prop::collection::vec(any::<u8>(), 0..24),
        text in "[\\u{0}-\\u{10FFFF}]{0,16}",
        missing in prop::option::of(any::<u8>()),
    ) -> Everything {
        Everything { id, ip, by_number, by_signed, by_flag, big, small, floats, kind, bytes, text, missing }
    }
}

fn float_bits(floats: &[f64]) -> Vec<u64> {
    floats.iter().map(|f| f.to_bits()).collect()
}

/// The checks every codec must pass for `t`.
fn check_all_paths(t: &Everything) -> Result<(), TestCaseError> {
    #[cfg(feature = "msgpack")]
    prop_assert_eq!(
        Codec::msgpack().encode_serialize(t).unwrap(),
        dynamo_es::testing::msgpack_via_json(t).unwrap(),
        "the direct MessagePack serializer and the JSON-text path differ"
    );
    let codecs = codecs();
    // `None` when a `Value` cannot hold `t` (an integer beyond 64 bits).
    let as_value = serde_json::to_value(t).ok();
    #[cfg(feature = "msgpack")]
    if let Some(value) = &as_value {
        prop_assert_eq!(
            Codec::msgpack().encode(value).unwrap(),
            dynamo_es::testing::msgpack_via_json(value).unwrap(),
            "the direct Value writer and the JSON-text path differ"
        );
    }
    for writer in &codecs {
        let typed = writer.encode_serialize(t).unwrap();
        let from_value = as_value.as_ref().map(|v| writer.encode(v).unwrap());
        for reader in &codecs {
            let label = format!("{} read by {}", writer.name(), reader.name());
            // Typed write, typed read: the same value, floats to the bit.
            let back: Everything = reader.decode_deserialize(&typed).unwrap();
            prop_assert_eq!(&back, t, "{}", &label);
            prop_assert_eq!(
                float_bits(&back.floats),
                float_bits(&t.floats),
                "{}",
                &label
            );
            match (&as_value, &from_value) {
                (Some(value), Some(from_value)) => {
                    // Typed write, Value read.
                    prop_assert_eq!(&reader.decode(&typed).unwrap(), value, "{}", &label);
                    // Value write, typed and Value read.
                    let back: Everything = reader.decode_deserialize(from_value).unwrap();
                    prop_assert_eq!(&back, t, "{}", &label);
                    prop_assert_eq!(&reader.decode(from_value).unwrap(), value, "{}", &label);
                }
                _ => {
                    // Never a rounded number: a typed error.
                    let err = reader.decode(&typed).unwrap_err();
                    prop_assert!(
                        matches!(&err, Error::Inexact { .. }),
                        "{}: {:?}",
                        &label,
                        err
                    );
                }
            }
            // Moving the stored bytes to another codec keeps the value.
            let moved = reader.reencode(&typed).unwrap();
            let back: Everything = writer.decode_deserialize(&moved).unwrap();
            prop_assert_eq!(&back, t, "{} moved to {}", writer.name(), reader.name());
            prop_assert_eq!(float_bits(&back.floats), float_bits(&t.floats));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn every_path_of_every_codec_keeps_the_value(t in everything()) {
        check_all_paths(&t)?;
    }
}

fn sample() -> Everything {
    Everything {
        id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        ip: "2001:db8::1".parse().unwrap(),
        by_number: BTreeMap::from([(7, "seven".into()), (u32::MAX, "max".into())]),
        by_signed: BTreeMap::from([(-3, true)]),
        by_flag: BTreeMap::new(),
        big: 123_456_789_012_345_678_901_234_567_891,
        small: i128::MIN,
        floats: vec![0.1 + 0.2, -0.0, 5e-324, f64::MAX],
        kind: Kind::Struct {
            inner: Inner::Deeper(Box::new(Some(Kind::Tuple(1, "ü 漢字 🎉".into())))),
            flag: true,
        },
        bytes: vec![0, 1, 255],
        text: "\u{0}\"\\\u{7f}".into(),
        missing: None,
    }
}

#[test]
fn the_reported_cases_keep_their_values() {
    check_all_paths(&sample()).unwrap();
    // The u128 from the report, alone in a view-like document.
    let view = json!({"total": 1});
    for codec in codecs() {
        let bytes = codec
            .encode_serialize(&BTreeMap::from([("total", u128::MAX)]))
            .unwrap();
        let back: BTreeMap<String, u128> = codec.decode_deserialize(&bytes).unwrap();
        assert_eq!(back["total"], u128::MAX, "{}", codec.name());
        assert!(matches!(codec.decode(&bytes), Err(Error::Inexact { .. })));
        assert_eq!(codec.decode(&codec.encode(&view).unwrap()).unwrap(), view);
    }
}

#[test]
fn json_stays_byte_for_byte_what_serde_json_writes() {
    let t = sample();
    assert_eq!(
        Codec::json().encode_serialize(&t).unwrap(),
        serde_json::to_vec(&t).unwrap()
    );
}

#[test]
fn integers_beyond_128_bits_and_minus_zero_are_not_converted() {
    for text in ["[340282366920938463463374607431768211456]", "{\"a\":-0}"] {
        for target in codecs() {
            if target.format() == Codec::json().format() {
                continue;
            }
            let err = target.reencode(text.as_bytes()).unwrap_err();
            assert!(matches!(err, Error::Inexact { .. }), "{text}: {err}");
        }
    }
}

#[cfg(feature = "msgpack")]
mod msgpack {
    use super::*;
    use dynamo_es::codec::Encoding;

    #[test]
    fn msgpack_spells_the_json_forms() {
        let t = sample();
        let bytes = Codec::msgpack().encode_serialize(&t).unwrap();
        assert_eq!(&bytes[..2], &[0xC1, 0x02]);
        assert_eq!(Encoding::detect(&bytes).unwrap(), Encoding::MessagePack);
        // The Uuid is its string form and integer keys are strings, as in JSON.
        let value = Codec::msgpack().decode(&Codec::msgpack().encode(&json!({"k": 1})).unwrap());
        assert_eq!(value.unwrap(), json!({"k": 1}));
        let id = t.id.to_string();
        assert!(bytes.windows(id.len()).any(|w| w == id.as_bytes()));
        assert!(bytes.windows(10).any(|w| w == b"4294967295"));
        // And it is smaller than JSON.
        assert!(bytes.len() < serde_json::to_vec(&t).unwrap().len());
    }

    #[test]
    fn the_direct_serializer_matches_json_text_on_floats_and_keys() {
        use dynamo_es::testing::msgpack_via_json;
        let codec = Codec::msgpack();
        for f in [
            0.1f32,
            1e-40,
            f32::MAX,
            f32::MIN_POSITIVE,
            -0.0,
            f32::NAN,
            16_777_217.0,
        ] {
            assert_eq!(
                codec.encode_serialize(&f).unwrap(),
                msgpack_via_json(&f).unwrap(),
                "{f}"
            );
        }
        for f in [f64::NAN, f64::INFINITY, -0.0, 1e300] {
            assert_eq!(
                codec.encode_serialize(&f).unwrap(),
                msgpack_via_json(&f).unwrap(),
                "{f}"
            );
        }
        // Keys serde_json stringifies that the direct serializer leaves to it.
        let flags = BTreeMap::from([(true, 1u8), (false, 2)]);
        assert_eq!(
            codec.encode_serialize(&flags).unwrap(),
            msgpack_via_json(&flags).unwrap()
        );
        let chars = BTreeMap::from([('k', 1u8)]);
        assert_eq!(
            codec.encode_serialize(&chars).unwrap(),
            msgpack_via_json(&chars).unwrap()
        );
        // Keys serde_json refuses are refused, not written some other way.
        let bad = BTreeMap::from([(vec![1u8], 1u8)]);
        assert!(codec.encode_serialize(&bad).is_err());
        assert!(Codec::json().encode_serialize(&bad).is_err());
    }

    #[test]
    fn legacy_compact_payloads_stay_readable_into_their_types() {
        let t = sample();
        let legacy = dynamo_es::testing::legacy_compact_msgpack(&t).unwrap();
        assert_eq!(&legacy[..2], &[0xC1, 0x01]);
        assert_eq!(
            Encoding::detect(&legacy).unwrap(),
            Encoding::CompactMessagePack
        );
        for codec in codecs() {
            let back: Everything = codec.decode_deserialize(&legacy).unwrap();
            assert_eq!(back, t);
        }
        // Only their compression can be changed without the type.
        let err = Codec::json().reencode(&legacy).unwrap_err();
        assert!(matches!(err, Error::Inexact { .. }), "{err}");
        assert_eq!(Codec::msgpack().reencode(&legacy).unwrap(), legacy);
    }

    #[test]
    fn corrupt_msgpack_is_a_typed_error() {
        let good = Codec::msgpack().encode_serialize(&sample()).unwrap();
        for cut in 2..good.len() {
            let err = Codec::msgpack().decode(&good[..cut]).unwrap_err();
            assert!(err.is_data_error(), "cut {cut}: {err:?}");
        }
        // A map key that is not a string, binary data, a declared length
        // far beyond the bytes, and a non-finite float.
        for body in [
            &[0x81, 0x01, 0xc0][..],
            &[0xc4, 0x01, 0x00][..],
            &[0xdd, 0xff, 0xff, 0xff, 0xff][..],
            &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0][..],
        ] {
            let mut bytes = vec![0xC1, 0x02];
            bytes.extend_from_slice(body);
            let err = Codec::msgpack().decode(&bytes).unwrap_err();
            assert!(err.is_data_error(), "{body:?}: {err:?}");
        }
    }
}
