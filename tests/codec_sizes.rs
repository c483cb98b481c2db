//! Deterministic size ratios of the codecs on realistic data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "compression")]
use dynamo_es::codec::Encoding;
#[cfg(feature = "compression")]
use dynamo_es::testing::fixtures::small_event;
use dynamo_es::testing::fixtures::snapshot_1_5_mb;
use dynamo_es::Codec;

#[test]
fn json_is_the_baseline_and_stores_plain_bytes() {
    let snapshot = snapshot_1_5_mb();
    let json = Codec::json().encode(&snapshot).unwrap();
    assert_eq!(json, serde_json::to_vec(&snapshot).unwrap());
    assert!(
        (1_400_000..1_600_000).contains(&json.len()),
        "{}",
        json.len()
    );
}

#[cfg(feature = "compression")]
#[test]
fn zstd_3_stores_a_realistic_snapshot_at_least_five_times_smaller() {
    let snapshot = snapshot_1_5_mb();
    let json = Codec::json().encode(&snapshot).unwrap();
    let zstd = Codec::json().compressed(3).encode(&snapshot).unwrap();
    assert_eq!(Encoding::detect(&zstd).unwrap(), Encoding::Zstd);
    assert!(
        json.len() >= 5 * zstd.len(),
        "json {} bytes, zstd-3 {} bytes: under 5x",
        json.len(),
        zstd.len()
    );
    assert_eq!(Codec::json().decode(&zstd).unwrap(), snapshot);
}

#[cfg(feature = "compression")]
#[test]
fn a_small_event_costs_at_most_its_json_size_plus_a_few_bytes() {
    for seed in 0..200 {
        let event = small_event(seed);
        let json = Codec::json().encode(&event).unwrap();
        for codec in [
            Codec::json().compressed(3),
            Codec::json().compressed(3).with_min_compress_size(0),
        ] {
            let stored = codec.encode(&event).unwrap();
            assert!(
                stored.len() <= json.len() + 8,
                "seed {seed}: {} > {} + 8",
                stored.len(),
                json.len()
            );
            assert_eq!(codec.decode(&stored).unwrap(), event);
        }
    }
}

#[cfg(feature = "msgpack")]
#[test]
fn msgpack_is_smaller_than_json_and_carries_its_tag() {
    let snapshot = snapshot_1_5_mb();
    let json = Codec::json().encode(&snapshot).unwrap();
    let msgpack = Codec::msgpack().encode(&snapshot).unwrap();
    assert_eq!(&msgpack[..2], &[0xC1, 0x02]);
    assert!(msgpack.len() < json.len());
    assert_eq!(Codec::json().decode(&msgpack).unwrap(), snapshot);
}
