//! zstd dictionaries for the model's tables: two trained once per test
//! process on the same events but for two swapped currency codes, so a
//! payload decoded with the wrong one may decode cleanly to another value
//! (issue 21, defect 7), and the forging of a dictionary item whose id is
//! another table's (ids are 15 bits: across many tables, collisions are
//! certain; the test makes one rather than train hundreds).
#![cfg(feature = "compression")]

use std::sync::OnceLock;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use cqrs_es::persist::SerializedEvent;
use dynamo_es::dictionary::{self, Candidate, Dictionary, DictionaryStore, TrainOptions};
use dynamo_es::item::{b, n, s, AGGREGATE_TYPE_AND_ID};
use dynamo_es::testing::fixtures::Rng;
use dynamo_es::Codec;
use serde_json::json;

use super::aggregate::ModelEvent;
use super::payloads::note;

/// The two candidates: trained on the same notes, "EUR" and "CHF" swapped.
fn candidates() -> &'static [Candidate; 2] {
    static TRAINED: OnceLock<[Candidate; 2]> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let train = |swap: bool| {
            let mut rng = Rng::new(21);
            let events: Vec<SerializedEvent> = (1..=200usize)
                .map(|sequence| {
                    let mut text = note(&mut rng, 8);
                    if swap {
                        text = text
                            .replace("EUR", "@@@")
                            .replace("CHF", "EUR")
                            .replace("@@@", "CHF");
                    }
                    let amount = i64::try_from(rng.below(10_000)).unwrap();
                    let event = ModelEvent::Plain {
                        amount,
                        note: text,
                        ratio: 0.5,
                    };
                    SerializedEvent::new(
                        format!("train-{}", sequence / 10),
                        sequence,
                        "Model".into(),
                        "Plain".into(),
                        "1.0".into(),
                        serde_json::to_value(&event).unwrap(),
                        json!({"user": "trainer"}),
                    )
                })
                .collect();
            let options = TrainOptions::default()
                .with_size(1024)
                .with_codec(Codec::json());
            dictionary::train("Model", "training", &events, &options).unwrap()
        };
        [train(false), train(true)]
    })
}

/// Stores dictionary `which` (0 or 1) in `snapshots`.
pub async fn store(client: &Client, snapshots: &str, which: usize) -> Result<Dictionary, String> {
    DictionaryStore::new(client.clone(), snapshots)
        .put(candidates()[which].clone())
        .await
        .map_err(|e| format!("storing dictionary {which} in {snapshots}: {e}"))
}

/// Stores dictionary `which` in `snapshots` under the id `id` (another
/// table's dictionary's), as an independent training that happened to
/// draw that id would have: a valid item, its bytes' header and hash
/// rewritten to match.
pub async fn store_as(
    client: &Client,
    snapshots: &str,
    which: usize,
    id: u32,
) -> Result<Dictionary, String> {
    let own = store(client, snapshots, which).await?;
    let item = client
        .get_item()
        .table_name(snapshots)
        .key(
            AGGREGATE_TYPE_AND_ID,
            s(dictionary::dictionary_key(own.id())),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let mut item = item;
    let mut bytes = own.bytes().to_vec();
    bytes[4..8].copy_from_slice(&id.to_le_bytes());
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
    item.insert(
        AGGREGATE_TYPE_AND_ID.into(),
        s(dictionary::dictionary_key(id)),
    );
    item.insert("DictionaryId".into(), n(id));
    item.insert("DictionaryBytes".into(), b(bytes));
    item.insert("DictionaryHash".into(), AttributeValue::S(hash));
    dynamo_es::testing::put_item(client, snapshots, item)
        .await
        .unwrap();
    load(client, snapshots, id).await
}

/// The dictionary `id` of `snapshots`, as a restarted process configures
/// it: loaded by id.
pub async fn load(client: &Client, snapshots: &str, id: u32) -> Result<Dictionary, String> {
    DictionaryStore::new(client.clone(), snapshots)
        .get(id)
        .await
        .map_err(|e| format!("loading dictionary {id} of {snapshots}: {e}"))
}
