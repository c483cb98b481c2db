//! What both benchmarks share: the codecs they compare, criterion's
//! configuration, where a benchmarking run writes its records for
//! `scripts/bench_report.py`, and the store workloads ([`workloads`]).
#![allow(dead_code)]

pub mod interleave;
pub mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use dynamo_es::Codec;
use serde_json::{json, Value};

/// Every codec this build can write: JSON and MessagePack, each plain and
/// with zstd at levels 1, 3 and 9.
pub fn codecs() -> Vec<Codec> {
    dynamo_es::testing::codecs_at_levels(&[1, 3, 9])
}

/// Criterion as both benchmarks run it: no plots, 20,000 bootstrap
/// resamples, and the command line's options.
pub fn criterion() -> Criterion {
    Criterion::default()
        .without_plots()
        .nresamples(20_000)
        .configure_from_args()
}

/// How criterion samples a group.
pub struct Sampling {
    /// Flat sampling (for slow iterations), else criterion's default.
    pub flat: bool,
    /// Samples per benchmark.
    pub samples: usize,
    /// Warm-up time.
    pub warm_up: Duration,
    /// Measurement time.
    pub measurement: Duration,
}

impl Sampling {
    /// Flat sampling: `samples` samples after `warm_up`, over `measurement`.
    pub const fn flat(samples: usize, warm_up: Duration, measurement: Duration) -> Self {
        Sampling {
            flat: true,
            samples,
            warm_up,
            measurement,
        }
    }

    /// Criterion's default sampling mode, otherwise as [`Sampling::flat`].
    pub const fn auto(samples: usize, warm_up: Duration, measurement: Duration) -> Self {
        Sampling {
            flat: false,
            ..Sampling::flat(samples, warm_up, measurement)
        }
    }

    /// Configures `group` so.
    pub fn apply<M: Measurement>(&self, group: &mut BenchmarkGroup<'_, M>) {
        if self.flat {
            group.sampling_mode(SamplingMode::Flat);
        }
        group
            .sample_size(self.samples)
            .warm_up_time(self.warm_up)
            .measurement_time(self.measurement);
    }
}

/// Where criterion writes its results: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the target directory `cargo metadata`
/// reports, else `target/criterion` (criterion's own order).
pub fn criterion_home() -> PathBuf {
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
pub fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list")
}

/// On a benchmarking run, writes `fields` (plus the build's features) as
/// `dynamo-es/{name}.json` under [`criterion_home`].
pub fn write_record(name: &str, fields: Value) {
    if !benchmarking() {
        return;
    }
    let mut record = json!({
        "features": {
            "msgpack": cfg!(feature = "msgpack"),
            "compression": cfg!(feature = "compression"),
        },
    });
    if let (Some(record), Value::Object(fields)) = (record.as_object_mut(), fields) {
        record.extend(fields);
    }
    let dir = criterion_home().join("dynamo-es");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
}
