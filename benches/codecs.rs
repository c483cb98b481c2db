//! Codec benchmarks: encode and decode of a small event and of the 1.5 MB
//! ledger snapshot under every codec this build has, the zstd stage alone
//! against a plain memcpy of the same bytes, and the encoded sizes.
//!
//! Throughput is reported in bytes of the payload as compact JSON for every
//! codec (so MB/s compare across codecs), and in bytes of the uncompressed
//! input for the zstd stage.
//!
//! Run with `cargo bench --all-features --bench codecs` (or
//! `scripts/bench.sh`, which also regenerates `docs/BENCHMARKS.md`). A
//! benchmarking run (`--bench`) also writes the encoded sizes to
//! `$CARGO_TARGET_DIR/criterion/dynamo-es/codecs.json` for
//! `scripts/bench_report.py`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{codecs, write_record, Sampling};
use criterion::{BenchmarkId, Criterion, Throughput};
use dynamo_es::testing::fixtures::{small_event, snapshot_1_5_mb};
use serde_json::{json, Value};

/// Sampling of the 1.5 MB snapshot's groups.
const LARGE: Sampling = Sampling::flat(15, Duration::from_secs(1), Duration::from_secs(3));

/// Sampling of the small event's groups.
const SMALL: Sampling = Sampling::auto(40, Duration::from_millis(500), Duration::from_secs(2));

/// The seed of the small event every codec encodes.
const SMALL_EVENT_SEED: u64 = 42;

/// The two payloads: name, value, and its size as compact JSON.
fn payloads() -> Vec<(&'static str, Value, usize)> {
    [
        ("small_event", small_event(SMALL_EVENT_SEED)),
        ("snapshot_1_5mb", snapshot_1_5_mb()),
    ]
    .into_iter()
    .map(|(name, value)| {
        let len = serde_json::to_vec(&value).unwrap().len();
        (name, value, len)
    })
    .collect()
}

fn bench_codecs(c: &mut Criterion, payloads: &[(&'static str, Value, usize)]) {
    for (payload, value, json_len) in payloads {
        let large = *json_len > 100_000;
        for op in ["encode", "decode"] {
            let mut group = c.benchmark_group(format!("{op}_{payload}"));
            group.throughput(Throughput::Bytes(u64::try_from(*json_len).unwrap()));
            if large { &LARGE } else { &SMALL }.apply(&mut group);
            for codec in codecs() {
                let id = BenchmarkId::from_parameter(codec.name());
                if op == "encode" {
                    group.bench_function(id, |b| {
                        b.iter(|| codec.encode(black_box(value)).unwrap());
                    });
                } else {
                    let bytes = codec.encode(value).unwrap();
                    assert_eq!(&codec.decode(&bytes).unwrap(), value, "{}", codec.name());
                    group.bench_function(id, |b| {
                        b.iter(|| codec.decode(black_box(&bytes)).unwrap());
                    });
                }
            }
            group.finish();
        }
    }
}

/// The zstd stage alone on the snapshot's serialized bytes, with the same
/// reused contexts the codec uses, and `to_vec` (allocation + memcpy) of the
/// uncompressed bytes as the physical floor of producing them.
#[cfg(feature = "compression")]
fn bench_zstd_stage(c: &mut Criterion, snapshot: &Value) {
    use zstd::bulk::{Compressor, Decompressor};

    let formats = dynamo_es::Codec::available()
        .into_iter()
        .filter(|codec| codec.compression_level().is_none());

    let mut group = c.benchmark_group("zstd_stage_snapshot_1_5mb");
    LARGE.apply(&mut group);
    for plain in formats {
        let raw = plain.encode(snapshot).unwrap();
        group.throughput(Throughput::Bytes(u64::try_from(raw.len()).unwrap()));
        group.bench_function(BenchmarkId::new("memcpy", plain.name()), |b| {
            b.iter(|| black_box(raw.as_slice()).to_vec());
        });
        for level in [1, 3, 9] {
            let codec = plain.clone().compressed(level);
            let frame = codec.encode(snapshot).unwrap();
            assert_eq!(frame.get(..4), Some(&[0x28, 0xB5, 0x2F, 0xFD][..]));
            let mut compressor = Compressor::new(level).unwrap();
            assert_eq!(compressor.compress(&raw).unwrap(), frame);
            group.bench_function(BenchmarkId::new("compress", codec.name()), |b| {
                b.iter(|| compressor.compress(black_box(&raw)).unwrap());
            });
            let mut decompressor = Decompressor::new().unwrap();
            assert_eq!(decompressor.decompress(&frame, raw.len()).unwrap(), raw);
            group.bench_function(BenchmarkId::new("decompress", codec.name()), |b| {
                b.iter(|| {
                    decompressor
                        .decompress(black_box(&frame), raw.len())
                        .unwrap()
                });
            });
        }
    }
    group.finish();
}

/// Encoded sizes of every codec on every payload, printed and returned.
fn sizes(payloads: &[(&'static str, Value, usize)]) -> Vec<Value> {
    let mut rows = Vec::new();
    println!(
        "{:<16} {:<18} {:>10} {:>10} {:>8}",
        "payload", "codec", "JSON B", "stored B", "ratio"
    );
    for (payload, value, json_len) in payloads {
        for codec in codecs() {
            let stored = codec.encode(value).unwrap().len();
            println!(
                "{payload:<16} {:<18} {json_len:>10} {stored:>10} {:>8.3}",
                codec.name(),
                ratio(stored, *json_len)
            );
            rows.push(json!({
                "payload": payload,
                "codec": codec.name(),
                "format": codec.format().name(),
                "level": codec.compression_level(),
                "json_bytes": json_len,
                "stored_bytes": stored,
            }));
        }
    }
    rows
}

fn ratio(a: usize, b: usize) -> f64 {
    let a = u32::try_from(a).map(f64::from).unwrap_or(f64::INFINITY);
    let b = u32::try_from(b).map(f64::from).unwrap_or(f64::INFINITY);
    a / b
}

fn main() {
    let payloads = payloads();
    let sizes = sizes(&payloads);
    write_record(
        "codecs",
        json!({ "small_event_seed": SMALL_EVENT_SEED, "sizes": sizes }),
    );

    let mut c = common::criterion();
    bench_codecs(&mut c, &payloads);
    #[cfg(feature = "compression")]
    if let Some((_, snapshot, _)) = payloads.get(1) {
        bench_zstd_stage(&mut c, snapshot);
    }
    c.final_summary();
}
