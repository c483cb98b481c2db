//! zstd dictionary benchmarks: what a dictionary trained on 1,000 of an
//! aggregate type's small events saves on 1,000 others, and what it costs.
//!
//! On the embedded emulator, the setup stores 1,000 training events and
//! 1,000 fixture events of `Ledger` (each one of the fixtures' realistic
//! small events, with the store benchmark's metadata), trains a dictionary
//! with the library's defaults, and prints, once:
//!
//! * the stored bytes of the 1,000 fixture events (payload and metadata,
//!   and whole items) as plain JSON and with the dictionary;
//! * the read units of a replay of those 1,000 events (`get_events`, one
//!   aggregate), plain and with the dictionary, as DynamoDB reports them;
//! * the training time and the dictionary's size.
//!
//! Criterion then times, per event: decoding (`item_to_event`, the
//! dictionary cached) and encoding (`event_to_item`) plain JSON, with the
//! dictionary at the default level, and at level 19; and training.
//!
//! Run with `cargo bench --all-features --bench dictionary`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use dynamo_es::dictionary::{self, DictionaryStore, TrainOptions};
use dynamo_es::item::{event_to_item, item_to_event, Item, METADATA, PAYLOAD};
use dynamo_es::size::item_size;
use dynamo_es::testing::aggregates::Ledger;
use dynamo_es::testing::costs::Meter;
use dynamo_es::testing::fixtures::small_event;
use dynamo_es::testing::{scan_all, EmbeddedDynamo};
use dynamo_es::{Codec, DynamoEventRepository};
use serde_json::json;

/// Events trained on, and events measured.
const EVENTS: usize = 1000;

/// Event `seed` of `Ledger:{id}` at `sequence`: a fixture small event,
/// with the store benchmark's metadata.
fn event(id: &str, sequence: usize, seed: u64) -> SerializedEvent {
    let payload = small_event(seed);
    SerializedEvent::new(
        id.to_string(),
        sequence,
        "Ledger".to_string(),
        payload["event_type"]
            .as_str()
            .unwrap_or("Posted")
            .to_string(),
        "1.0".to_string(),
        payload,
        json!({
            "correlation_id": "5f0c6d1e-8a42-4b7e-9c1d-2e3f4a5b6c7d",
            "user_id": format!("user-{:07}", seed % 10_000_000),
        }),
    )
}

/// `count` events of one aggregate from `seed`.
fn events(id: &str, count: usize, seed: u64) -> Vec<SerializedEvent> {
    (0..count)
        .map(|i| event(id, i + 1, seed + i as u64))
        .collect()
}

async fn commit(repo: &DynamoEventRepository, events: &[SerializedEvent]) {
    for chunk in events.chunks(25) {
        repo.persist::<Ledger>(chunk, None).await.unwrap();
    }
}

/// The items of `Ledger:{id}`.
async fn items(client: &aws_sdk_dynamodb::Client, table: &str, id: &str) -> Vec<Item> {
    let key = format!("Ledger:{id}");
    scan_all(client, table)
        .await
        .unwrap()
        .into_iter()
        .filter(|item| dynamo_es::item::describe_key(item).starts_with(&format!("{key}#")))
        .collect()
}

fn payload_bytes(items: &[Item]) -> usize {
    items
        .iter()
        .map(|item| {
            [PAYLOAD, METADATA]
                .iter()
                .map(|a| dynamo_es::item::get_b(item, "", a).unwrap().len())
                .sum::<usize>()
        })
        .sum()
}

/// `a / b`.
fn ratio(a: usize, b: usize) -> f64 {
    f64::from(u32::try_from(a).unwrap()) / f64::from(u32::try_from(b).unwrap())
}

struct Setup {
    plain_item: Item,
    dict_item: Item,
    dict_codec: Codec,
    dict_codec_19: Codec,
    event: SerializedEvent,
    training: Vec<SerializedEvent>,
}

fn setup(rt: &tokio::runtime::Runtime, server: &EmbeddedDynamo) -> Setup {
    rt.block_on(async {
        let client = server.client();
        dynamo_es::create_event_tables(&client, "Events", "Snapshots")
            .await
            .unwrap();
        let plain = DynamoEventRepository::new(client.clone()).with_codec(Codec::json());
        let training: Vec<SerializedEvent> = (0..EVENTS / 10)
            .flat_map(|n| events(&format!("trn-{n:08}"), 10, 10 * n as u64 + 1))
            .collect();
        for chunk in training.chunks(10) {
            commit(&plain, chunk).await;
        }
        let store = DictionaryStore::new(client.clone(), "Snapshots");
        let started = Instant::now();
        let trained = store
            .train(
                "Events",
                "Ledger",
                TrainOptions::default().with_sample(EVENTS),
            )
            .await
            .unwrap();
        let train_time = started.elapsed();
        let dictionary = trained.dictionary;

        let fixture_plain = events("fix-plain", EVENTS, 1_000_000);
        let fixture_dict = events("fix-dicts", EVENTS, 1_000_000);
        commit(&plain, &fixture_plain).await;
        let writer = DynamoEventRepository::new(client.clone())
            .with_codec(Codec::json())
            .with_dictionary("Ledger", dictionary.clone());
        commit(&writer, &fixture_dict).await;
        let plain_items = items(&client, "Events", "fix-plain").await;
        let dict_items = items(&client, "Events", "fix-dicts").await;
        let (plain_payload, dict_payload) = (payload_bytes(&plain_items), payload_bytes(&dict_items));
        let plain_size: usize = plain_items.iter().map(item_size).sum();
        let dict_size: usize = dict_items.iter().map(item_size).sum();

        let meter = Meter::new();
        let reader = DynamoEventRepository::new(meter.client(&client));
        let (read, plain_costs) = meter.measure(reader.get_events::<Ledger>("fix-plain")).await;
        assert_eq!(read.unwrap(), fixture_plain);
        let (read, cold_costs) = meter.measure(reader.get_events::<Ledger>("fix-dicts")).await;
        assert_eq!(read.unwrap().len(), EVENTS);
        // The dictionary is now in the repository's cache.
        let (read, dict_costs) = meter.measure(reader.get_events::<Ledger>("fix-dicts")).await;
        assert_eq!(read.unwrap().len(), EVENTS);

        println!(
            "zstd level for dictionary frames: {} (dynamo_es::codec::DEFAULT_COMPRESSION_LEVEL)",
            dynamo_es::codec::DEFAULT_COMPRESSION_LEVEL
        );
        println!("dictionary {}: {} bytes, trained on {} events in {:.2} s (sample, train, store); held out: {}",
            dictionary.id(), dictionary.info().size, dictionary.info().sample.events, train_time.as_secs_f64(), trained.savings);
        println!(
            "stored payload+metadata of {EVENTS} fixture events: plain JSON {plain_payload} B, dictionary {dict_payload} B ({:.2}x fewer)",
            ratio(plain_payload, dict_payload)
        );
        println!(
            "stored items: plain JSON {plain_size} B, dictionary {dict_size} B ({:.2}x fewer)",
            ratio(plain_size, dict_size)
        );
        println!(
            "replay of {EVENTS} events (get_events): plain JSON {} RCU, dictionary cached {} RCU ({:.2}x fewer); \
             the process's first replay, which loads the dictionary: {} RCU in {} round trips",
            plain_costs.read_units,
            dict_costs.read_units,
            plain_costs.read_units / dict_costs.read_units,
            cold_costs.read_units,
            cold_costs.round_trips
        );
        let index = |items: &[Item]| {
            items
                .iter()
                .find(|item| dynamo_es::item::describe_key(item).ends_with("#1"))
                .cloned()
                .unwrap()
        };
        Setup {
            plain_item: index(&plain_items),
            dict_item: index(&dict_items),
            dict_codec: Codec::json().with_dictionary(&dictionary),
            dict_codec_19: Codec::json().compressed(19).with_dictionary(&dictionary),
            event: fixture_plain[0].clone(),
            training,
        }
    })
}

/// A group for per-event timings: 50 samples over 2 s after 0.5 s of
/// warm-up.
fn per_event_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = EmbeddedDynamo::start().unwrap();
    let setup = setup(&rt, &server);
    let json = Codec::json();
    let mut c = Criterion::default().without_plots().configure_from_args();

    let mut group = per_event_group(&mut c, "dictionary_decode_event");
    group.bench_function(BenchmarkId::from_parameter("json"), |b| {
        b.iter(|| item_to_event(black_box(&setup.plain_item), &json).unwrap())
    });
    group.bench_function(BenchmarkId::from_parameter("json+dictionary"), |b| {
        b.iter(|| item_to_event(black_box(&setup.dict_item), &setup.dict_codec).unwrap())
    });
    group.finish();

    let mut group = per_event_group(&mut c, "dictionary_encode_event");
    for (name, codec) in [
        ("json", &json),
        ("json+dictionary (default level)", &setup.dict_codec),
        ("json+zstd-19+dictionary", &setup.dict_codec_19),
    ] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| event_to_item(black_box(&setup.event), codec).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("dictionary_train");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    let options = TrainOptions::default();
    group.bench_function(BenchmarkId::from_parameter(EVENTS), |b| {
        b.iter(|| {
            dictionary::train("Ledger", "Events", black_box(&setup.training), &options).unwrap()
        })
    });
    group.finish();
    c.final_summary();
}
