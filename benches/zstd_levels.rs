//! zstd levels 1 to 5 against plain JSON, on every payload shape the default
//! level has to serve: the ledger snapshot, a document-like article, a
//! map-heavy inventory, a batch-import event, a commit of small events as
//! stored (each event its own item) and a small event forced through zstd.
//!
//! For each shape and codec (`json`, `json+zstd-1` … `json+zstd-5`): stored
//! bytes (summed over the shape's items, each encoded on its own, as a
//! commit stores them), encode and decode time (criterion medians).
//!
//! ```sh
//! cargo bench --all-features --bench zstd_levels     # criterion + sizes
//! python3 scripts/zstd_levels.py                     # + callgrind, the table
//! ```
//!
//! With `ZSTD_LEVELS_ONE=shape,iterations` in the environment it runs no
//! benchmark: it prepares `shape` and, codec by codec, runs each `op`
//! (`encode`, `decode`) `iterations` times inside one call of
//! `zstd_level_measured_call`, followed by a call of `zstd_level_call_done`,
//! so under `valgrind --tool=callgrind --dump-before='*zstd_level_*'` each
//! dump taken on entering `zstd_level_call_done` counts exactly one
//! measured call's instructions (`scripts/zstd_levels.py` does this).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{write_record, Sampling};
use criterion::{BenchmarkId, Throughput};
use dynamo_es::testing::fixtures::{
    article_snapshot, inventory_snapshot, small_event, snapshot_1_5_mb,
};
use dynamo_es::Codec;
use serde_json::{json, Value};

/// The levels compared.
const LEVELS: [i32; 5] = [1, 2, 3, 4, 5];

/// Seed of the article and inventory fixtures.
const SEED: u64 = 0x5EED_2026;

/// Sampling of the large shapes (snapshots).
const LARGE: Sampling = Sampling::flat(12, Duration::from_secs(1), Duration::from_secs(3));

/// Sampling of the small shapes (events).
const SMALL: Sampling = Sampling::auto(30, Duration::from_millis(500), Duration::from_secs(2));

/// A payload shape: its items (each stored on its own) and whether zstd is
/// forced on payloads under the default 1 KB threshold.
struct Shape {
    name: &'static str,
    items: Vec<Value>,
    force: bool,
}

impl Shape {
    fn json_bytes(&self) -> usize {
        self.items
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap().len())
            .sum()
    }
}

/// The shapes, by name, in table order.
const SHAPES: [&str; 6] = [
    "ledger_snapshot",
    "article_snapshot",
    "inventory_snapshot",
    "import_event_10_entries",
    "commit_10_small_events",
    "small_event_forced",
];

/// The shape called `name` (one of [`SHAPES`]).
fn shape(name: &'static str) -> Shape {
    let (items, force) = match name {
        "ledger_snapshot" => (vec![snapshot_1_5_mb()], false),
        "article_snapshot" => (vec![article_snapshot(300_000, SEED)], false),
        "inventory_snapshot" => (vec![inventory_snapshot(500_000, SEED)], false),
        "import_event_10_entries" => {
            let ledger = snapshot_1_5_mb();
            let entries = ledger["entries"].as_array().unwrap()[..10].to_vec();
            (vec![json!({ "Imported": { "entries": entries } })], false)
        }
        "commit_10_small_events" => ((0..10).map(small_event).collect(), false),
        "small_event_forced" => (vec![small_event(42)], true),
        other => panic!("no shape {other}"),
    };
    Shape { name, items, force }
}

/// Plain JSON, then JSON with zstd at every level (forced under 1 KB for a
/// forced shape).
fn codecs(shape: &Shape) -> Vec<Codec> {
    let mut codecs = vec![Codec::json()];
    for level in LEVELS {
        let codec = Codec::json().compressed(level);
        codecs.push(if shape.force {
            codec.with_min_compress_size(0)
        } else {
            codec
        });
    }
    codecs
}

fn encode_all(codec: &Codec, items: &[Value]) -> Vec<Vec<u8>> {
    items.iter().map(|v| codec.encode(v).unwrap()).collect()
}

fn decode_all(codec: &Codec, stored: &[Vec<u8>]) -> Vec<Value> {
    stored.iter().map(|b| codec.decode(b).unwrap()).collect()
}

/// What callgrind measures: `op` `iterations` times. Its name is unique in
/// the binary, for callgrind's `--dump-before` and `--dump-after`.
#[inline(never)]
fn zstd_level_measured_call(
    codec: &Codec,
    shape: &Shape,
    stored: &[Vec<u8>],
    op: &str,
    iterations: usize,
) {
    for _ in 0..iterations {
        if op == "encode" {
            black_box(encode_all(codec, black_box(&shape.items)));
        } else {
            black_box(decode_all(codec, black_box(stored)));
        }
    }
}

/// Called right after each measured call: callgrind's `--dump-before` on
/// it closes the measured call's dump (`--dump-after` does not fire on the
/// measured function's return).
#[inline(never)]
fn zstd_level_call_done() {
    black_box(());
}

/// `ZSTD_LEVELS_ONE=shape,iterations`: for each codec, one warm-up encode
/// and decode (contexts allocated, the level set), then
/// `zstd_level_measured_call` for `encode`, then `decode`; each measured
/// call is printed as `codec op` in call order, so callgrind's dumps after
/// each call line up with these lines.
fn one(spec: &str) {
    let (name, iterations) = spec
        .split_once(',')
        .unwrap_or_else(|| panic!("ZSTD_LEVELS_ONE=shape,iterations, not {spec}"));
    let name = SHAPES.into_iter().find(|s| *s == name).unwrap();
    let iterations: usize = iterations.parse().unwrap();
    let shape = shape(name);
    for codec in codecs(&shape) {
        let stored = encode_all(&codec, &shape.items);
        black_box(decode_all(&codec, &stored));
        for op in ["encode", "decode"] {
            zstd_level_measured_call(&codec, &shape, &stored, op, iterations);
            zstd_level_call_done();
            println!("{} {op}", codec.name());
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    let a = u32::try_from(a).map(f64::from).unwrap_or(f64::INFINITY);
    let b = u32::try_from(b).map(f64::from).unwrap_or(f64::INFINITY);
    a / b
}

fn main() {
    if let Ok(spec) = std::env::var("ZSTD_LEVELS_ONE") {
        one(&spec);
        return;
    }
    let shapes: Vec<Shape> = SHAPES.into_iter().map(shape).collect();
    let mut sizes = Vec::new();
    println!(
        "{:<26} {:<14} {:>10} {:>10} {:>7}",
        "shape", "codec", "JSON B", "stored B", "ratio"
    );
    for shape in &shapes {
        let json_bytes = shape.json_bytes();
        for codec in codecs(shape) {
            let stored = encode_all(&codec, &shape.items);
            assert_eq!(decode_all(&codec, &stored), shape.items);
            let stored: usize = stored.iter().map(Vec::len).sum();
            println!(
                "{:<26} {:<14} {json_bytes:>10} {stored:>10} {:>7.2}",
                shape.name,
                codec.name(),
                ratio(json_bytes, stored)
            );
            sizes.push(json!({
                "shape": shape.name,
                "items": shape.items.len(),
                "codec": codec.name(),
                "level": codec.compression_level(),
                "forced": shape.force,
                "json_bytes": json_bytes,
                "stored_bytes": stored,
            }));
        }
    }
    write_record("zstd_levels", json!({ "seed": SEED, "sizes": sizes }));

    let mut c = common::criterion();
    for shape in &shapes {
        let json_bytes = u64::try_from(shape.json_bytes()).unwrap();
        for op in ["encode", "decode"] {
            let mut group = c.benchmark_group(format!("zstd_levels_{op}_{}", shape.name));
            group.throughput(Throughput::Bytes(json_bytes));
            if json_bytes > 100_000 { &LARGE } else { &SMALL }.apply(&mut group);
            for codec in codecs(shape) {
                let stored = encode_all(&codec, &shape.items);
                let id = BenchmarkId::from_parameter(codec.name());
                group.bench_function(id, |b| {
                    b.iter(|| zstd_level_measured_call(&codec, shape, &stored, op, 1));
                });
            }
            group.finish();
        }
    }
    c.final_summary();
}
