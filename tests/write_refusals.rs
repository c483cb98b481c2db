//! What the write path accepts, every read path reads; anything else is
//! refused at write time, naming the payload, the cause and the fix:
//!
//! * a map holding a key twice (a `#[serde(flatten)]` field over a map with
//!   a key named like a field) is refused by every codec's writer, and
//!   stored bytes holding one are an error on every reader, never a value
//!   other than the one written;
//! * nesting of `MAX_DEPTH` (128) levels is refused at write time, and 127
//!   levels read back on every path;
//! * a payload over the codec's `max_decoded_size` is refused on every
//!   commit path (single put, transaction, with a snapshot) and for views.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent, ViewContext, ViewRepository};
use cqrs_es::{Aggregate, EventEnvelope, View};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoEventRepository, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Asserts that `err` is a write-time refusal mentioning every one of `parts`.
#[track_caller]
fn assert_refused(err: &Error, parts: &[&str]) {
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("was not written"), "{text}");
    for part in parts {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}

// ---------------------------------------------------------------------------
// 8: duplicate keys.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Payment {
    amount: i64,
    #[serde(flatten)]
    extra: BTreeMap<String, i64>,
}

/// `amount: 1`, with an extra entry named `amount` too: serde writes the
/// key twice.
fn ambiguous() -> Payment {
    Payment {
        amount: 1,
        extra: BTreeMap::from([("amount".to_string(), 2)]),
    }
}

#[test]
fn every_codec_refuses_to_write_a_map_with_a_key_twice() {
    for codec in codecs() {
        let err = codec.encode_serialize(&ambiguous()).unwrap_err();
        assert_refused(&err, &["\"amount\"", "twice", "flatten"]);
        // Without the collision it is written and read back.
        let fine = Payment {
            amount: 1,
            extra: BTreeMap::from([("fee".to_string(), 2)]),
        };
        let bytes = codec.encode_serialize(&fine).unwrap();
        assert_eq!(codec.decode_deserialize::<Payment>(&bytes).unwrap(), fine);
    }
}

/// `{"amount": 1, "amount": 2}` in each stored format.
fn stored_with_a_key_twice() -> Vec<(&'static str, Vec<u8>)> {
    #[allow(unused_mut)]
    let mut stored = vec![("json", br#"{"amount":1,"amount":2}"#.to_vec())];
    #[cfg(feature = "msgpack")]
    {
        let mut bytes = vec![0xC1, 0x02, 0x82];
        for value in [1u8, 2] {
            bytes.push(0xa6);
            bytes.extend_from_slice(b"amount");
            bytes.push(value);
        }
        stored.push(("msgpack", bytes));
    }
    stored
}

#[test]
fn stored_bytes_with_a_key_twice_are_an_error_on_every_read_path() {
    for (format, bytes) in stored_with_a_key_twice() {
        for codec in codecs() {
            let label = format!("{format} read by {}", codec.name());
            let value = codec.decode(&bytes);
            assert!(value.is_err(), "{label}: {value:?}");
            assert!(value.unwrap_err().is_data_error(), "{label}");
            let typed = codec.decode_deserialize::<Payment>(&bytes);
            assert!(typed.is_err(), "{label}: {typed:?}");
            let reencoded = codec.reencode(&bytes);
            assert!(reencoded.is_err(), "{label}: {reencoded:?}");
        }
        #[cfg(feature = "msgpack")]
        if format == "msgpack" {
            let map = Codec::msgpack().decode_deserialize::<BTreeMap<String, i64>>(&bytes);
            assert!(map.is_err(), "{map:?}");
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LedgerView {
    last: Payment,
}

impl View<Account> for LedgerView {
    fn update(&mut self, _event: &EventEnvelope<Account>) {}
}

/// Asserts that writing `view` as `view_id` with `codec` is refused,
/// naming the view and every one of `parts`, and stores nothing.
async fn assert_view_refused(
    db: &TestTables,
    codec: &Codec,
    view_id: &str,
    view: LedgerView,
    parts: &[&str],
) {
    let views = db
        .view_repository::<LedgerView, Account>()
        .with_codec(codec.clone());
    let err = views
        .update_view(view, ViewContext::new(view_id.to_string(), 0))
        .await
        .unwrap_err();
    let named = format!("view {view_id}");
    let parts: Vec<&str> = [named.as_str()]
        .into_iter()
        .chain(parts.iter().copied())
        .collect();
    assert_refused(typed(&err), &parts);
    assert!(
        views.load(view_id).await.unwrap().is_none(),
        "{}",
        codec.name()
    );
}

#[tokio::test]
async fn a_view_with_a_key_twice_is_refused_naming_the_view() {
    let db = tables().await;
    for codec in codecs() {
        let view = LedgerView { last: ambiguous() };
        assert_view_refused(&db, &codec, "v1", view, &["twice"]).await;
    }
}

// ---------------------------------------------------------------------------
// 10: nesting.
// ---------------------------------------------------------------------------

/// `levels` arrays, one inside the other, around `1`.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!([inner]))
}

#[test]
fn nesting_every_reader_refuses_is_refused_at_write_time() {
    assert_eq!(dynamo_es::codec::MAX_DEPTH, 128);
    for codec in codecs() {
        let deepest = nested(127);
        for bytes in [
            codec.encode(&deepest).unwrap(),
            codec.encode_serialize(&deepest).unwrap(),
        ] {
            assert_eq!(codec.decode(&bytes).unwrap(), deepest, "{}", codec.name());
            assert_eq!(codec.decode_deserialize::<Value>(&bytes).unwrap(), deepest);
            for target in codecs() {
                let moved = target.reencode(&bytes).unwrap();
                assert_eq!(target.decode(&moved).unwrap(), deepest);
            }
        }
        let too_deep = nested(128);
        assert_refused(&codec.encode(&too_deep).unwrap_err(), &["128 levels"]);
        assert_refused(&codec.encode_serialize(&too_deep).unwrap_err(), &["128"]);
        // In a map as well.
        let mut map = json!({"k": 1});
        for _ in 0..127 {
            map = json!({ "k": map });
        }
        assert_refused(&codec.encode(&map).unwrap_err(), &["128"]);
    }
}

/// The events of one commit, and the snapshot `persist` is given with them.
type Commit = (Vec<SerializedEvent>, Option<(String, Value, usize)>);

/// Every commit path after event 1 of `id`, each ending in a refused event:
/// a single put of `second`, a transaction of a fine event 2 and `third`, and
/// `second` in a transaction with a snapshot whose state is `snapshot`.
fn commit_paths(
    id: &str,
    second: SerializedEvent,
    third: SerializedEvent,
    snapshot: Value,
) -> [Commit; 3] {
    [
        (vec![second.clone()], None),
        (vec![deposit_event(Account::TYPE, id, 2, 1), third], None),
        (vec![second], Some((id.to_string(), snapshot, 1))),
    ]
}

/// Asserts each of `commits` is refused, naming its last event, `id` and
/// every one of `parts`, and that `id` still holds only its first event.
async fn assert_every_commit_refused(
    repo: &DynamoEventRepository,
    id: &str,
    commits: [Commit; 3],
    parts: &[&str],
) {
    for (events, snapshot) in commits {
        let err = repo
            .persist::<Account>(&events, snapshot)
            .await
            .unwrap_err();
        let event = format!("event {}", events.last().unwrap().sequence);
        let named: Vec<&str> = [event.as_str(), id]
            .into_iter()
            .chain(parts.iter().copied())
            .collect();
        assert_refused(typed(&err), &named);
    }
    let stored = repo.get_events::<Account>(id).await.unwrap();
    assert_eq!(stored.len(), 1, "{id}");
}

/// For each of `codecs`, on fresh tables: a repository writing it and a new
/// aggregate with its first event committed, on which every commit path
/// ([`commit_paths`] with events 2 and 3 made by `refused`, and the
/// snapshot state `snapshot`) is refused naming `parts`. Returns each
/// repository and aggregate id, for what the test checks next.
async fn refused_on_every_commit_path(
    codecs: Vec<Codec>,
    refused: impl Fn(&str, usize) -> SerializedEvent,
    snapshot: &Value,
    parts: &[&str],
) -> Vec<(DynamoEventRepository, String)> {
    let db = tables().await;
    let mut refusing = Vec::new();
    for codec in codecs {
        let repo = db.repository().with_codec(codec);
        let id = new_id();
        repo.persist::<Account>(&[deposit_event(Account::TYPE, &id, 1, 1)], None)
            .await
            .unwrap();
        let commits = commit_paths(&id, refused(&id, 2), refused(&id, 3), snapshot.clone());
        assert_every_commit_refused(&repo, &id, commits, parts).await;
        refusing.push((repo, id));
    }
    refusing
}

/// A `Deposited` event of `id` at `sequence` whose metadata is `metadata`.
fn event_with_metadata(id: &str, sequence: usize, metadata: Value) -> SerializedEvent {
    SerializedEvent {
        metadata,
        ..deposit_event(Account::TYPE, id, sequence, 1)
    }
}

#[tokio::test]
async fn an_event_nested_too_deep_is_refused_and_its_aggregate_stays_loadable() {
    // Event 2 nested 128 levels deep, event 3 200.
    let refused = |id: &str, sequence| {
        let levels = if sequence == 2 { 128 } else { 200 };
        event_with_metadata(id, sequence, nested(levels))
    };
    let snapshot = json!({"total": 2, "applied": 2, "notes": []});
    let refusing = refused_on_every_commit_path(codecs(), refused, &snapshot, &["128 levels"]);
    for (repo, id) in refusing.await {
        // 127 levels are committed and read back.
        let deepest = event_with_metadata(&id, 2, nested(127));
        repo.persist::<Account>(std::slice::from_ref(&deepest), None)
            .await
            .unwrap();
        let stored = repo.get_events::<Account>(&id).await.unwrap();
        assert_eq!(stored[1].metadata, deepest.metadata);
    }
}

// ---------------------------------------------------------------------------
// 9: the decoded size cap.
// ---------------------------------------------------------------------------

#[cfg(feature = "compression")]
mod decoded_size {
    use super::*;

    /// A codec that compresses (so readers check the cap) with a cap of
    /// 2,000 bytes.
    fn capped() -> Vec<Codec> {
        codecs()
            .into_iter()
            .filter(|codec| codec.compression_level().is_some())
            .map(|codec| codec.with_max_decoded_size(2_000))
            .collect()
    }

    #[tokio::test]
    async fn an_event_over_max_decoded_size_is_refused_on_every_commit_path() {
        let refused = |id: &str, sequence| note_event(id, sequence, 5_000);
        let snapshot = json!({"total": 1, "applied": 2, "notes": []});
        let parts = ["max_decoded_size of 2000", "with_max_decoded_size"];
        for (repo, id) in refused_on_every_commit_path(capped(), refused, &snapshot, &parts).await {
            // Every command on the aggregate still works.
            repo.persist::<Account>(&[note_event(&id, 2, 500)], None)
                .await
                .unwrap();
            assert_eq!(repo.get_events::<Account>(&id).await.unwrap().len(), 2);
        }
    }

    #[tokio::test]
    async fn a_view_over_max_decoded_size_is_refused() {
        let db = tables().await;
        for codec in capped() {
            let extra = (0..400).map(|i| (format!("fee-{i:04}"), i)).collect();
            let view = LedgerView {
                last: Payment { amount: 1, extra },
            };
            assert_view_refused(&db, &codec, "v2", view, &["max_decoded_size"]).await;
        }
    }
}

/// Every path through 127 levels, on a thread with 1 MiB of stack (half a
/// runtime worker's): each level of nesting costs little stack, so the
/// deepest payload a writer accepts is read inside deep async call chains
/// too, without overflowing.
#[test]
fn the_deepest_payload_takes_little_stack_on_every_path() {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let deepest = nested(127);
            for codec in codecs() {
                let bytes = codec.encode(&deepest).unwrap();
                assert_eq!(codec.encode_serialize(&deepest).unwrap(), bytes);
                assert_eq!(codec.decode(&bytes).unwrap(), deepest);
                assert_eq!(codec.decode_deserialize::<Value>(&bytes).unwrap(), deepest);
                for target in codecs() {
                    target.reencode(&bytes).unwrap();
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
