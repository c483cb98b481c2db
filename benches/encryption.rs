//! Personal data: encode and decode of a ~300-byte event with two
//! `Personal` fields (sealed and opened under cached data keys, then
//! encoded as JSON), against the same event as plain JSON.
//!
//! Run with `cargo bench --all-features --bench encryption`. The keys are
//! created once, before measuring, in a key table of the embedded emulator:
//! the measured loop makes no request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use cqrs_es::persist::SerializedEvent;
use criterion::{Criterion, Throughput};
use dynamo_es::encryption::{KeyStore, LocalKek, Personal};
use dynamo_es::testing::EmbeddedDynamo;
use dynamo_es::Codec;
use serde_json::{json, Value};

/// The event: two personal fields (a customer's name and e-mail address)
/// among ordinary ones: 314 bytes of JSON in plaintext.
fn event() -> Value {
    json!({
        "Placed": {
            "order_id": "o-000184",
            "customer": Personal::new("customer-7f3a", "Ada Lovelace".to_string()),
            "email": Personal::new("customer-7f3a", "ada.lovelace@example.com".to_string()),
            "lines": [{"sku": "TEA-ASSAM-250", "quantity": 2, "unit_cents": 1_250}],
            "total_cents": 2_500,
            "placed_at": "2026-12-07T04:15:54Z"
        }
    })
}

/// Event 1 of `Order:o-1` with `payload`.
fn serialized(payload: Value) -> SerializedEvent {
    SerializedEvent::new(
        "o-1".into(),
        1,
        "Order".into(),
        "Placed".into(),
        "1".into(),
        payload,
        json!({}),
    )
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = EmbeddedDynamo::start().unwrap();
    let client = server.client();
    let keys = runtime.block_on(async {
        dynamo_es::tables::create_key_table(&client, "Keys")
            .await
            .unwrap();
        KeyStore::new(client, "Keys", LocalKek::new("bench", [7; 32]).unwrap())
    });
    let plain = event();
    let json_len = serde_json::to_vec(&plain).unwrap().len();
    let codec = Codec::json();
    let mut sealed = [serialized(plain.clone())];
    runtime.block_on(keys.seal_events(&mut sealed)).unwrap();
    let [sealed] = sealed;
    let sealed = sealed.payload;
    let stored_plain = codec.encode(&plain).unwrap();
    let stored_sealed = codec.encode(&sealed).unwrap();
    println!(
        "event: {json_len} bytes as plain JSON, {} bytes sealed",
        stored_sealed.len()
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut group = c.benchmark_group("personal_event");
    group.throughput(Throughput::Bytes(u64::try_from(json_len).unwrap()));
    group.bench_function("encode/plain_json", |b| {
        b.iter(|| codec.encode(black_box(&plain)).unwrap());
    });
    group.bench_function("encode/sealed_json", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut events = [serialized(black_box(&plain).clone())];
            keys.seal_events(&mut events).await.unwrap();
            codec.encode(&events[0].payload).unwrap()
        });
    });
    group.bench_function("decode/plain_json", |b| {
        b.iter(|| codec.decode(black_box(&stored_plain)).unwrap());
    });
    group.bench_function("decode/sealed_json", |b| {
        b.to_async(&runtime).iter(|| async {
            let payload = codec.decode(black_box(&stored_sealed)).unwrap();
            let mut events = [serialized(payload)];
            keys.open_events(&mut events).await.unwrap();
            events
        });
    });
    group.finish();
    c.final_summary();
}
