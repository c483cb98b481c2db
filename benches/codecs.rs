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

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use dynamo_es::testing::fixtures::{small_event, snapshot_1_5_mb};
use dynamo_es::Codec;
use serde_json::{json, Value};

/// The seed of the small event every codec encodes.
const SMALL_EVENT_SEED: u64 = 42;

/// Every codec this build can write: JSON, MessagePack, and zstd at levels
/// 1, 3 and 9 over each of them.
fn codecs() -> Vec<Codec> {
    #[allow(unused_mut)]
    let mut codecs = vec![Codec::json()];
    #[cfg(feature = "compression")]
    for level in [1, 3, 9] {
        codecs.push(Codec::json().compressed(level));
    }
    #[cfg(feature = "msgpack")]
    codecs.push(Codec::msgpack());
    #[cfg(all(feature = "msgpack", feature = "compression"))]
    for level in [1, 3, 9] {
        codecs.push(Codec::msgpack().compressed(level));
    }
    codecs
}

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
            if large {
                group
                    .sampling_mode(SamplingMode::Flat)
                    .sample_size(15)
                    .warm_up_time(Duration::from_secs(1))
                    .measurement_time(Duration::from_secs(3));
            } else {
                group
                    .sample_size(40)
                    .warm_up_time(Duration::from_millis(500))
                    .measurement_time(Duration::from_secs(2));
            }
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

    #[allow(unused_mut)]
    let mut formats = vec![Codec::json()];
    #[cfg(feature = "msgpack")]
    formats.push(Codec::msgpack());

    let mut group = c.benchmark_group("zstd_stage_snapshot_1_5mb");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
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

/// Where criterion writes its results: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the target directory `cargo metadata`
/// reports, else `target/criterion` (criterion's own order).
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let metadata = std::env::var_os("CARGO").and_then(|cargo| {
        std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()
    });
    metadata
        .and_then(|out| serde_json::from_slice::<Value>(&out.stdout).ok())
        .and_then(|m| m.get("target_directory")?.as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

/// True when criterion will measure (`cargo bench`), not merely test or list.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list")
}

fn main() {
    let payloads = payloads();
    let sizes = sizes(&payloads);
    if benchmarking() {
        let dir = criterion_home().join("dynamo-es");
        std::fs::create_dir_all(&dir).unwrap();
        let record = json!({
            "features": {
                "msgpack": cfg!(feature = "msgpack"),
                "compression": cfg!(feature = "compression"),
            },
            "small_event_seed": SMALL_EVENT_SEED,
            "sizes": sizes,
        });
        std::fs::write(
            dir.join("codecs.json"),
            serde_json::to_vec_pretty(&record).unwrap(),
        )
        .unwrap();
    }

    let mut c = Criterion::default()
        .without_plots()
        .nresamples(20_000)
        .configure_from_args();
    bench_codecs(&mut c, &payloads);
    #[cfg(feature = "compression")]
    if let Some((_, snapshot, _)) = payloads.get(1) {
        bench_zstd_stage(&mut c, snapshot);
    }
    c.final_summary();
}
