//! Recode is lossless by construction: a chain of recodes through every
//! codec over events, snapshots (single-item and chunked) and views written
//! by typed, `Value` and upstream writers leaves every item reading back
//! exactly as written, and the upstream target writes only what upstream
//! reads and reports the rest.
#![cfg(all(feature = "msgpack", feature = "compression"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent, ViewContext, ViewRepository};
use cqrs_es::{Aggregate, EventEnvelope, EventStore, View};
use dynamo_es::codec::Encoding;
use dynamo_es::item::Item;
use dynamo_es::recode::{RecodeOptions, Recoder, Table};
use dynamo_es::testing::aggregates::Ledger;
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoStore, DynamoViewRepository};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use upstream_dynamo_es as upstream;
use uuid::Uuid;

/// An aggregate whose state uses every form that used to change in transit.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Vault {
    big: u128,
    low: i128,
    ratio: f64,
    owners: BTreeMap<u32, Uuid>,
    hosts: Vec<IpAddr>,
    notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum VaultEvent {
    Stored {
        amount: u64,
        ratio: f64,
        owner: Uuid,
        note: String,
    },
}

dynamo_es::domain_event!(VaultEvent, "1.0", Stored);

dynamo_es::events_aggregate!(Vault, "Vault", VaultEvent, AccountError, empty => Ok(()));

impl Vault {
    fn record(&mut self, event: VaultEvent) {
        let VaultEvent::Stored {
            amount,
            ratio,
            owner,
            note,
        } = event;
        self.big = self
            .big
            .wrapping_add(u128::from(amount) * u128::from(u64::MAX));
        self.low = self
            .low
            .wrapping_sub(i128::from(amount) * i128::from(i64::MAX));
        self.ratio += ratio;
        let key = u32::try_from(self.owners.len()).unwrap() * 1_000_000_007 % u32::MAX;
        self.owners.insert(key, owner);
        self.hosts.push(IpAddr::from([
            10,
            0,
            0,
            u8::try_from(self.notes.len() % 256).unwrap(),
        ]));
        self.notes.push(note);
    }
}

/// A view with the same forms.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct VaultView {
    state: Vault,
    events: usize,
}

impl View<Vault> for VaultView {
    fn update(&mut self, event: &EventEnvelope<Vault>) {
        self.state.apply(event.payload.clone());
        self.events += 1;
    }
}

fn stored(k: u64, note_len: usize) -> VaultEvent {
    VaultEvent::Stored {
        amount: u64::MAX - k,
        ratio: [0.1 + 0.2, -0.0, 5e-324, 1e300][usize::try_from(k % 4).unwrap()],
        owner: Uuid::from_u128(u128::from(k) << 64 | 0xfeed),
        note: format!("{k}: {}", "ü漢🎉 note ".repeat(note_len / 14 + 1)),
    }
}

/// Bit-exact text of a value: `-0.0` and `0.0` differ.
fn exact(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

/// Bit-exact text of events, every field included.
fn exact_events(events: &[SerializedEvent]) -> String {
    let fields: Vec<_> = events
        .iter()
        .map(|e| {
            (
                &e.aggregate_id,
                e.sequence,
                &e.aggregate_type,
                &e.event_type,
                &e.event_version,
                &e.payload,
                &e.metadata,
            )
        })
        .collect();
    exact(&fields)
}

struct Seeded {
    /// Aggregates written through our store (typed snapshots), with the
    /// state each must load as.
    ours: Vec<(String, Vault)>,
    /// Events and snapshots written as `serde_json::Value`s, by us and by upstream.
    values: Vec<(String, Vec<SerializedEvent>, Value)>,
    /// Views, with what each must load as.
    views: Vec<(String, VaultView)>,
    upstream_views: Vec<(String, AccountView)>,
}

async fn seed(db: &TestTables) -> Seeded {
    let repo = db.repository().with_codec(Codec::json());
    let store = DynamoStore::<Vault>::new_aggregate_store(repo.clone());
    let views: DynamoViewRepository<VaultView, Vault> =
        DynamoViewRepository::new(&db.views, db.client.clone()).with_codec(Codec::json());
    let mut seeded = Seeded {
        ours: vec![],
        values: vec![],
        views: vec![],
        upstream_views: vec![],
    };
    // Typed: small snapshots, and one chunked past 400 KB as JSON.
    for (k, note_len) in [(0u64, 10usize), (1, 2_000), (2, 150_000)] {
        let id = format!("typed-{k}");
        let mut expected = Vault::default();
        let mut view = VaultView::default();
        for step in 0..3u64 {
            let events = vec![stored(k * 10 + step, note_len)];
            let mut context = store.load_aggregate(&id).await.unwrap();
            for event in &events {
                context.aggregate.apply(event.clone());
                expected.apply(event.clone());
            }
            let envelopes = store.commit(events, context, no_metadata()).await.unwrap();
            for envelope in &envelopes {
                view.update(envelope);
            }
        }
        // Views are single items: the one of the chunked aggregate would not fit.
        if note_len < 100_000 {
            let context = ViewContext::new(id.clone(), 0);
            views.update_view(view.clone(), context).await.unwrap();
            seeded.views.push((id.clone(), view));
        }
        seeded.ours.push((id, expected));
    }
    // `Value` writers: ours and upstream's `persist`, snapshot included,
    // under the test ledger's aggregate type.
    let up = upstream::DynamoEventRepository::new(db.client.clone())
        .with_tables(&db.events, &db.snapshots);
    for (k, writer) in ["ours", "upstream"].into_iter().enumerate() {
        let id = format!("value-{writer}");
        let events: Vec<SerializedEvent> = (1..=3)
            .map(|sequence| SerializedEvent {
                aggregate_id: id.clone(),
                sequence,
                aggregate_type: Ledger::TYPE.into(),
                event_type: "Posted".into(),
                event_version: "1.0".into(),
                payload: json!({"Posted": {
                    "max": u64::MAX, "min": i64::MIN, "ratio": 0.1 + 0.2,
                    "tiny": 5e-324, "neg_zero": -0.0, "k": k, "text": "ü 漢字 🎉"
                }}),
                metadata: json!({"user": writer}),
            })
            .collect();
        let snapshot =
            json!({"balance": u64::MAX, "ratio": 1e-300, "rows": [[1, -2], {"a": null}]});
        let update = Some((id.clone(), snapshot.clone(), 1));
        if writer == "ours" {
            repo.persist::<Ledger>(&events, update).await.unwrap();
        } else {
            up.persist::<Ledger>(&events, update).await.unwrap();
        }
        seeded.values.push((id, events, snapshot));
    }
    let up_views =
        upstream::DynamoViewRepository::<AccountView, Account>::new(&db.views, db.client.clone());
    let view = AccountView {
        deposits: 3,
        total: i64::MIN,
        last_sequence: 3,
    };
    up_views
        .update_view(view.clone(), ViewContext::new("upstream-view".into(), 0))
        .await
        .unwrap();
    seeded.upstream_views.push(("upstream-view".into(), view));
    seeded
}

/// Everything loads, typed and as values, exactly as written.
async fn check(db: &TestTables, seeded: &Seeded, step: &str) {
    let repo = db.repository();
    let store = DynamoStore::<Vault>::new_aggregate_store(repo.clone());
    let replay = DynamoStore::<Vault>::new_event_store(repo.clone());
    for (id, expected) in &seeded.ours {
        let loaded = store.load_aggregate(id).await.unwrap();
        assert_eq!(exact(&loaded.aggregate), exact(expected), "{step}: {id}");
        let replayed = replay.load_aggregate(id).await.unwrap();
        assert_eq!(exact(&replayed.aggregate), exact(expected), "{step}: {id}");
    }
    for (id, events, snapshot) in &seeded.values {
        let loaded = repo.get_events::<Ledger>(id).await.unwrap();
        assert_eq!(exact_events(&loaded), exact_events(events), "{step}: {id}");
        let loaded = repo.get_snapshot::<Ledger>(id).await.unwrap().unwrap();
        assert_eq!(exact(&loaded.aggregate), exact(snapshot), "{step}: {id}");
    }
    let views: DynamoViewRepository<VaultView, Vault> =
        DynamoViewRepository::new(&db.views, db.client.clone());
    for (id, expected) in &seeded.views {
        let loaded = views.load(id).await.unwrap().unwrap();
        assert_eq!(exact(&loaded), exact(expected), "{step}: {id}");
    }
    let up_views: DynamoViewRepository<AccountView, Account> =
        DynamoViewRepository::new(&db.views, db.client.clone());
    for (id, expected) in &seeded.upstream_views {
        assert_eq!(
            up_views.load(id).await.unwrap().as_ref(),
            Some(expected),
            "{step}"
        );
    }
}

/// The outer encoding of every payload attribute of a table.
async fn encodings(db: &TestTables, table: &str) -> Vec<(Encoding, Option<Encoding>)> {
    let items: Vec<Item> = db
        .client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let mut out = Vec::new();
    for item in items {
        for name in ["Payload", "Metadata"] {
            if let Some(AttributeValue::B(bytes)) = item.get(name) {
                if item.contains_key("ChunkOf") {
                    continue;
                }
                let bytes = bytes.as_ref();
                let outer = Encoding::detect(bytes).unwrap();
                let inner = (outer == Encoding::Zstd).then(|| {
                    let plain = zstd::decode_all(bytes).unwrap();
                    Encoding::detect(&plain).unwrap()
                });
                out.push((outer, inner));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_recode_chain_through_every_codec_changes_nothing() {
    let db = tables().await;
    let seeded = seed(&db).await;
    check(&db, &seeded, "seeded").await;
    let tables = db.recode_tables();
    let chain = [
        Codec::msgpack(),
        Codec::msgpack().compressed(3).with_min_compress_size(0),
        Codec::json().compressed(3).with_min_compress_size(0),
        Codec::json(),
    ];
    for target in chain {
        let step = target.name();
        let report = Recoder::new(db.client.clone(), target.clone())
            .with_options(RecodeOptions::default().with_allow_growth(true))
            .run(&tables)
            .await
            .unwrap();
        assert!(report.complete, "{step}: {report}");
        assert_eq!(report.items_unreadable(), 0, "{step}: {report}");
        assert_eq!(report.items_not_convertible(), 0, "{step}: {report}");
        let recoded: u64 = report.tables.iter().map(|t| t.counts.items_recoded).sum();
        assert!(recoded > 0, "{step}: {report}");
        check(&db, &seeded, &step).await;
        // Every payload is now in the target's format.
        for table in [&db.events, &db.snapshots, &db.views] {
            for (outer, inner) in encodings(&db, table).await {
                let format = inner.unwrap_or(outer);
                let want = if target.format() == Codec::json().format() {
                    Encoding::Json
                } else {
                    Encoding::MessagePack
                };
                assert_eq!(format, want, "{step}: {table}");
            }
        }
    }
}

#[tokio::test]
async fn the_upstream_target_writes_what_upstream_reads_and_reports_the_rest() {
    let db = tables().await;
    let seeded = seed(&db).await;
    // Move everything away from plain JSON first.
    Recoder::new(
        db.client.clone(),
        Codec::msgpack().compressed(3).with_min_compress_size(0),
    )
    .with_options(RecodeOptions::default().with_allow_growth(true))
    .run(&db.recode_tables())
    .await
    .unwrap();
    let report = Recoder::to_upstream(db.client.clone())
        .run(&db.recode_tables())
        .await
        .unwrap();
    check(&db, &seeded, "upstream").await;
    // The chunked snapshot cannot be one upstream item; it is named.
    let snapshots = &report.tables[1];
    assert_eq!(snapshots.codec, "upstream");
    assert_eq!(snapshots.counts.items_not_convertible, 1, "{report}");
    assert_eq!(
        snapshots.not_convertible_keys,
        vec!["Vault:typed-2".to_string()]
    );
    assert_eq!(report.tables[0].counts.items_not_convertible, 0);
    assert_eq!(report.tables[2].counts.items_not_convertible, 0);
    // Upstream reads every other item.
    let up = upstream::DynamoEventRepository::new(db.client.clone())
        .with_tables(&db.events, &db.snapshots);
    for (id, events, snapshot) in &seeded.values {
        let loaded = up.get_events::<Ledger>(id).await.unwrap();
        assert_eq!(exact_events(&loaded), exact_events(events));
        let loaded = up.get_snapshot::<Ledger>(id).await.unwrap().unwrap();
        assert_eq!(exact(&loaded.aggregate), exact(snapshot));
    }
    for (id, _) in &seeded.ours {
        assert_eq!(up.get_events::<Vault>(id).await.unwrap().len(), 3);
        if id != "typed-2" {
            assert!(up.get_snapshot::<Vault>(id).await.unwrap().is_some());
        }
    }
    let up_views =
        upstream::DynamoViewRepository::<AccountView, Account>::new(&db.views, db.client.clone());
    assert!(up_views.load("upstream-view").await.unwrap().is_some());
}

#[tokio::test]
async fn a_number_that_json_cannot_spell_in_msgpack_is_not_written() {
    let db = tables().await;
    // Another tool stored an integer beyond 128 bits.
    let text =
        br#"{"deposits":1,"total":1,"last_sequence":340282366920938463463374607431768211456}"#;
    db.client
        .put_item()
        .table_name(&db.views)
        .item("ViewId", AttributeValue::S("huge".into()))
        .item("ViewVersion", AttributeValue::N("1".into()))
        .item(
            "Payload",
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(text.to_vec())),
        )
        .send()
        .await
        .unwrap();
    let report = Recoder::new(db.client.clone(), Codec::msgpack())
        .with_options(RecodeOptions::default().with_allow_growth(true))
        .run_table(&Table::views(&db.views))
        .await
        .unwrap();
    assert_eq!(report.counts.items_not_convertible, 1, "{report:?}");
    assert_eq!(report.not_convertible_keys, vec!["huge".to_string()]);
    assert_eq!(report.counts.items_recoded, 0);
    let stored = db
        .client
        .get_item()
        .table_name(&db.views)
        .key("ViewId", AttributeValue::S("huge".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(stored["Payload"], AttributeValue::B(text.to_vec().into()));
}
