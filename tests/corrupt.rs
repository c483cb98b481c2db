//! Corrupt and foreign data: items written directly with the SDK (missing
//! attributes, wrong types, bad numbers, hostile payloads) must give every
//! read path a typed deserialization error naming the item, never a panic
//! or a hang. Ends with the fuzz logic of `fuzz/` run on 200,000
//! deterministic random and mutated inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../fuzz/src/lib.rs"]
mod fuzz_logic;

use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ViewRepository};
use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use dynamo_es::item::{self, Item};
use dynamo_es::testing::{fixtures, TestTables};
use dynamo_es::{Codec, DynamoStore, Error, SnapshotPolicy};
#[cfg(feature = "compression")]
use serde_json::json;

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// The `dynamo_es::Error` inside a deserialization error, checked to name `key`.
fn data_error<'a>(err: &'a PersistenceError, key: &str) -> &'a Error {
    let PersistenceError::DeserializationError(source) = err else {
        panic!("expected a deserialization error naming {key}, got {err:?}")
    };
    let typed = source
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a dynamo_es::Error: {source:?}"));
    assert!(typed.is_data_error(), "{typed:?}");
    assert!(
        typed.to_string().contains(key),
        "error does not name {key}: {typed}"
    );
    typed
}

/// The same, for an error that went through `AggregateError`.
fn aggregate_data_error(err: AggregateError<AccountError>, key: &str) -> Error {
    let AggregateError::DeserializationError(source) = err else {
        panic!("expected a deserialization error naming {key}, got {err:?}")
    };
    let typed = *source.downcast::<Error>().expect("a dynamo_es::Error");
    assert!(typed.is_data_error(), "{typed:?}");
    assert!(
        typed.to_string().contains(key),
        "error does not name {key}: {typed}"
    );
    typed
}

/// The error inside an `Error::Item` for `attribute`.
fn item_source<'a>(err: &'a Error, wanted: &str) -> &'a Error {
    match err {
        Error::Item {
            attribute, source, ..
        } if *attribute == wanted => source,
        other => panic!("expected an item error on {wanted}, got {other:?}"),
    }
}

async fn get(db: &TestTables, table: &str, key: &str) -> Item {
    db.client
        .get_item()
        .table_name(table)
        .key(item::AGGREGATE_TYPE_AND_ID, item::s(key))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("item exists")
}

/// A valid event item, as this crate writes it with plain JSON.
fn event_item(id: &str, sequence: usize) -> Item {
    item::event_to_item(&deposit_event("Account", id, sequence, 1), &Codec::json())
        .unwrap()
        .0
}

/// Stores the valid event item at `sequence` with `payload` in its place.
async fn put_event_with_payload(db: &TestTables, id: &str, sequence: usize, payload: Vec<u8>) {
    let mut event = event_item(id, sequence);
    event.insert(item::PAYLOAD.into(), item::b(payload));
    put(db, &db.events, event).await;
}

/// Deterministic pseudo-random choices and bytes (the fixtures' SplitMix64).
struct Rng(fixtures::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(fixtures::Rng::new(seed))
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.0.next_u64() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.0.next_u64().to_le_bytes()[0]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        self.0.bytes(len)
    }
}

/// Bytes that are no payload at all (the first byte is never valid UTF-8).
fn random_payload() -> Vec<u8> {
    let mut bytes = Rng::new(7).bytes(64);
    bytes[0] = 0xFF;
    bytes
}

/// A valid zstd payload of an event, truncated. Without `compression` a
/// hand-made frame stands in (still recognised as zstd).
fn truncated_zstd() -> Vec<u8> {
    #[cfg(feature = "compression")]
    let frame = Codec::json()
        .compressed(3)
        .with_min_compress_size(0)
        .encode(&json!({"Noted": {"text": "x".repeat(4000)}}))
        .unwrap();
    #[cfg(not(feature = "compression"))]
    let frame = fuzz_logic::zstd_raw_frame(br#"{"Noted":{"text":"xxxxxxxx"}}"#);
    assert_eq!(frame[..4], [0x28, 0xB5, 0x2F, 0xFD]);
    frame[..frame.len() / 2].to_vec()
}

/// What a zstd payload must give in this build, when the `compression`
/// feature is on: `when_on`.
fn zstd_error(err: &Error, when_on: impl Fn(&Error) -> bool) -> bool {
    if cfg!(feature = "compression") {
        when_on(err)
    } else {
        matches!(
            err,
            Error::FeatureDisabled {
                format: "zstd",
                feature: "compression"
            }
        ) && err.to_string().contains("`compression`")
    }
}

// ---------------------------------------------------------------------------
// Events.
// ---------------------------------------------------------------------------

/// What a corrupt item must give: a check of the error.
type Check = Box<dyn Fn(&Error) -> bool>;

/// The item lacks `attribute`.
fn missing(attribute: &'static str) -> Check {
    Box::new(move |e| matches!(e, Error::MissingAttribute { attribute: a, .. } if *a == attribute))
}

/// The item's `attribute` has the wrong type or value.
fn invalid(attribute: &'static str) -> Check {
    Box::new(move |e| matches!(e, Error::InvalidAttribute { attribute: a, .. } if *a == attribute))
}

/// The payload in `attribute` does not decode, as `check` says.
fn undecodable(attribute: &'static str, check: impl Fn(&Error) -> bool + 'static) -> Check {
    Box::new(move |e| check(item_source(e, attribute)))
}

/// A corrupt payload of `format`.
fn corrupt(format: &'static str) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::Corrupt { format: f, .. } if *f == format)
}

/// A zstd payload: `check` with the `compression` feature (see [`zstd_error`]).
fn zstd(check: impl Fn(&Error) -> bool) -> impl Fn(&Error) -> bool {
    move |e| zstd_error(e, &check)
}

/// One way to corrupt an item, and the error it must give.
struct Case {
    name: &'static str,
    /// The stored `AggregateIdSequence` of an event (a DynamoDB number,
    /// maybe not a usize).
    sequence: &'static str,
    edit: Box<dyn Fn(&mut Item)>,
    expect: Check,
}

impl Case {
    /// Sets `attribute` to `value`.
    fn set(
        name: &'static str,
        attribute: &'static str,
        value: AttributeValue,
        expect: Check,
    ) -> Self {
        let edit = move |i: &mut Item| {
            i.insert(attribute.into(), value.clone());
        };
        Case {
            name,
            sequence: "3",
            edit: Box::new(edit),
            expect,
        }
    }

    /// Removes `attribute`.
    fn remove(name: &'static str, attribute: &'static str, expect: Check) -> Self {
        let edit = move |i: &mut Item| {
            i.remove(attribute);
        };
        Case {
            name,
            sequence: "3",
            edit: Box::new(edit),
            expect,
        }
    }

    /// `attribute` removed, and reported missing.
    fn missing(name: &'static str, attribute: &'static str) -> Self {
        Case::remove(name, attribute, missing(attribute))
    }

    /// `attribute` set to `value` of the wrong type or value.
    fn invalid(name: &'static str, attribute: &'static str, value: AttributeValue) -> Self {
        Case::set(name, attribute, value, invalid(attribute))
    }

    /// `attribute` set to `bytes` that do not decode, as `check` says.
    fn undecodable(
        name: &'static str,
        attribute: &'static str,
        bytes: Vec<u8>,
        check: impl Fn(&Error) -> bool + 'static,
    ) -> Self {
        Case::set(
            name,
            attribute,
            item::b(bytes),
            undecodable(attribute, check),
        )
    }

    /// An event stored at `sequence`, otherwise valid.
    fn at(name: &'static str, sequence: &'static str) -> Self {
        let expect = invalid("AggregateIdSequence");
        Case {
            name,
            sequence,
            edit: Box::new(|_| {}),
            expect,
        }
    }

    /// The payload replaced by bytes that are no payload at all.
    fn random_payload(name: &'static str, expect: impl Fn(&Error) -> bool + 'static) -> Self {
        Case::set(
            name,
            item::PAYLOAD,
            item::b(random_payload()),
            undecodable("Payload", expect),
        )
    }

    /// The payload replaced by a truncated zstd frame.
    fn truncated_zstd(name: &'static str) -> Self {
        let expect = undecodable("Payload", zstd(corrupt("zstd")));
        Case::set(name, item::PAYLOAD, item::b(truncated_zstd()), expect)
    }

    /// `attribute` replaced by a zstd bomb of `fuzz_logic::zstd_bomb(blocks, byte, declared)`.
    fn bomb(
        name: &'static str,
        attribute: &'static str,
        (blocks, byte, declared): (usize, u8, Option<u64>),
        check: impl Fn(&Error) -> bool + 'static,
    ) -> Self {
        let bomb = item::b(fuzz_logic::zstd_bomb(blocks, byte, declared));
        Case::set(name, attribute, bomb, undecodable(attribute, zstd(check)))
    }
}

fn event_cases() -> Vec<Case> {
    let msgpack = |s: &Error| {
        if cfg!(feature = "msgpack") {
            corrupt("msgpack")(s)
        } else {
            matches!(
                s,
                Error::FeatureDisabled {
                    feature: "msgpack",
                    ..
                }
            )
        }
    };
    let unknown_tag = |s: &Error| matches!(s, Error::Corrupt { format: "tagged", reason } if reason.contains("0x7f"));
    vec![
        Case::missing("missing event type", item::EVENT_TYPE),
        Case::missing("missing payload", item::PAYLOAD),
        Case::invalid("aggregate id is a number", item::AGGREGATE_ID, item::n(12)),
        Case::invalid(
            "payload is a string",
            item::PAYLOAD,
            item::s(r#"{"Deposited":{"amount":1}}"#),
        ),
        Case::invalid(
            "metadata is a boolean",
            item::METADATA,
            AttributeValue::Bool(true),
        ),
        Case::at("fractional sequence", "3.5"),
        Case::at("negative sequence", "-1"),
        Case::at("sequence beyond usize", "99999999999999999999999"),
        Case::random_payload("random bytes payload", corrupt("json")),
        Case::undecodable("empty metadata", item::METADATA, Vec::new(), |e| {
            matches!(e, Error::Corrupt { .. })
        }),
        Case::undecodable(
            "unknown format tag",
            item::PAYLOAD,
            vec![0xC1, 0x7F, b'{', b'}'],
            unknown_tag,
        ),
        Case::undecodable(
            "lone tag byte",
            item::PAYLOAD,
            vec![0xC1],
            corrupt("tagged"),
        ),
        Case::undecodable(
            "corrupt messagepack",
            item::PAYLOAD,
            vec![0xC1, 0x02, 0xC1, 0xFF, 0x00],
            msgpack,
        ),
        Case::truncated_zstd("truncated zstd"),
        Case::bomb(
            "zstd bomb declaring 1 TiB",
            item::METADATA,
            (8, b'[', Some(1 << 40)),
            |s| matches!(s, Error::DecodedTooLarge { size, .. } if *size == 1 << 40),
        ),
        Case::bomb(
            "zstd bomb of 75 MiB declaring nothing",
            item::PAYLOAD,
            (600, b' ', None),
            |s| matches!(s, Error::DecodedTooLarge { max, .. } if *max == dynamo_es::codec::DEFAULT_MAX_DECODED_SIZE),
        ),
    ]
}

/// Valid events 1, 2, 4 and 5 around one corrupt item; every read path
/// reports the corrupt one by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_event_items_fail_every_read_path_with_the_item_key() {
    for case in event_cases() {
        let db = tables().await;
        let repo = db.repository();
        let id = new_id();
        let valid = [1usize, 2, 4, 5];
        for sequence in valid {
            put(&db, &db.events, event_item(&id, sequence)).await;
        }
        let mut corrupt = event_item(&id, 3);
        corrupt.insert(item::AGGREGATE_ID_SEQUENCE.into(), item::n(case.sequence));
        (case.edit)(&mut corrupt);
        put(&db, &db.events, corrupt).await;
        let key = format!("Account:{id}#{}", case.sequence);
        let before = valid
            .iter()
            .filter(|s| {
                f64::from(u32::try_from(**s).unwrap()) < case.sequence.parse::<f64>().unwrap()
            })
            .count();
        let name = case.name;

        let Err(err) = repo.get_events::<Account>(&id).await else {
            panic!("{name}: the corrupt item is not read")
        };
        assert!((case.expect)(data_error(&err, &key)), "{name}: {err:?}");
        let after_zero = repo.get_last_events::<Account>(&id, 0).await;
        if case.sequence.starts_with('-') {
            // Sequences after 0 do not include it.
            assert_eq!(after_zero.unwrap().len(), valid.len(), "{name}");
        } else {
            let err = after_zero.unwrap_err();
            assert!((case.expect)(data_error(&err, &key)), "{name}: {err:?}");
        }

        for all in [false, true] {
            let repo = repo.clone().with_streaming_channel_size(2);
            let mut stream = if all {
                repo.stream_all_events::<Account>().await.unwrap()
            } else {
                repo.stream_events::<Account>(&id).await.unwrap()
            };
            // The stream ends after its error.
            let (ok, err) = drain::<Account>(&mut stream).await;
            let err = err.unwrap_or_else(|| panic!("{name}: stream ended without the error"));
            assert!((case.expect)(data_error(&err, &key)), "{name}: {err:?}");
            assert_eq!(ok, before, "{name}: events before the corrupt one");
        }

        for policy in [SnapshotPolicy::Never, SnapshotPolicy::Every(2)] {
            let store = DynamoStore::<Account>::new(repo.clone(), policy);
            let Err(err) = store.load_aggregate(&id).await else {
                panic!("{name}: loads")
            };
            assert!((case.expect)(&aggregate_data_error(err, &key)), "{name}");
        }
        let store = DynamoStore::<Account>::new_event_store(repo.clone());
        let err = store.load_events(&id).await.unwrap_err();
        assert!((case.expect)(&aggregate_data_error(err, &key)), "{name}");
        let cqrs = cqrs::<Account>(repo.clone(), SnapshotPolicy::Never);
        let err = failed_deposit(&cqrs, &id).await;
        assert!((case.expect)(&aggregate_data_error(err, &key)), "{name}");
        // Nothing was written by the failed command.
        assert_eq!(count_items(&db.client, &db.events).await, 5, "{name}");
    }
}

/// Well-formed items from a foreign writer whose payload is no event of the
/// aggregate: the repository hands it over; the store names the item.
#[tokio::test]
async fn foreign_events_fail_the_store_with_the_item_key() {
    let db = tables().await;
    let id = new_id();
    put(&db, &db.events, event_item(&id, 1)).await;
    put_event_with_payload(&db, &id, 2, br#"{"Withdrawn":{"amount":1}}"#.to_vec()).await;
    let events = stored_events::<Account>(&db, &id).await;
    assert_eq!(events.len(), 2);
    let store = DynamoStore::<Account>::new_event_store(db.repository());
    let Err(err) = store.load_aggregate(&id).await else {
        panic!("loads")
    };
    let err = aggregate_data_error(err, &format!("Account:{id}#2"));
    assert!(
        matches!(item_source(&err, "Payload"), Error::Serde(_)),
        "{err:?}"
    );
}

/// A zstd frame written by any zstd implementation reads with the
/// `compression` feature, and names the feature without it.
#[tokio::test]
async fn foreign_zstd_payloads_need_the_compression_feature() {
    let db = tables().await;
    let id = new_id();
    let frame = fuzz_logic::zstd_raw_frame(br#"{"Deposited":{"amount":9}}"#);
    put_event_with_payload(&db, &id, 1, frame).await;
    let result = db.repository().get_events::<Account>(&id).await;
    #[cfg(feature = "compression")]
    assert_eq!(
        result.unwrap()[0].payload,
        json!({"Deposited": {"amount": 9}})
    );
    #[cfg(not(feature = "compression"))]
    {
        let err = result.unwrap_err();
        let err = data_error(&err, &format!("Account:{id}#1"));
        assert!(
            matches!(
                item_source(err, "Payload"),
                Error::FeatureDisabled {
                    format: "zstd",
                    feature: "compression"
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("`compression`"), "{err}");
    }
}

/// With a smaller cap, a bomb stops at the cap, whatever it declares.
#[cfg(feature = "compression")]
#[tokio::test]
async fn decompression_bombs_stop_at_the_configured_cap() {
    let db = tables().await;
    let id = new_id();
    put_event_with_payload(&db, &id, 1, fuzz_logic::zstd_bomb(64, b' ', None)).await;
    let repo = db
        .repository()
        .with_codec(Codec::default().with_max_decoded_size(1 << 20));
    let started = Instant::now();
    let err = repo.get_events::<Account>(&id).await.unwrap_err();
    let err = data_error(&err, &format!("Account:{id}#1"));
    assert!(
        matches!(item_source(err, "Payload"), Error::DecodedTooLarge { max, .. } if *max == 1 << 20),
        "{err:?}"
    );
    assert!(started.elapsed() < NO_HANG);
}

// ---------------------------------------------------------------------------
// Snapshots.
// ---------------------------------------------------------------------------

fn snapshot_cases() -> Vec<Case> {
    let too_large = |s: &Error| matches!(s, Error::DecodedTooLarge { .. });
    vec![
        Case::missing("missing current sequence", item::CURRENT_SEQUENCE),
        Case::invalid(
            "current snapshot is a string",
            item::CURRENT_SNAPSHOT,
            item::s("1"),
        ),
        Case::invalid(
            "negative current sequence",
            item::CURRENT_SEQUENCE,
            item::n("-3"),
        ),
        Case::invalid(
            "payload is a list",
            item::PAYLOAD,
            AttributeValue::L(vec![]),
        ),
        Case::random_payload("random bytes payload", corrupt("json")),
        Case::truncated_zstd("truncated zstd payload"),
        Case::bomb(
            "zstd bomb payload",
            item::PAYLOAD,
            (4, b'{', Some(1 << 50)),
            too_large,
        ),
        Case::remove(
            "head without payload or chunk count",
            item::PAYLOAD,
            missing("PayloadChunks"),
        ),
    ]
}

async fn snapshot_with_events(db: &TestTables, id: &str) {
    let events: Vec<_> = (1..=2)
        .map(|s| deposit_event("Account", id, s, 5))
        .collect();
    let state = serde_json::to_value(Account {
        total: 10,
        applied: 2,
        notes: vec![],
    })
    .unwrap();
    db.repository()
        .persist::<Account>(&events, Some((id.to_string(), state, 1)))
        .await
        .unwrap();
}

/// Checks `get_snapshot` and the snapshot-reading stores on `id`.
///
/// A snapshot whose payload does not decode is a cache miss for
/// `DynamoStore`: it rebuilds the aggregate from its events and replaces the
/// snapshot on the next commit. Any other broken snapshot fails the store too.
async fn check_snapshot_paths(
    db: &TestTables,
    id: &str,
    name: &str,
    expect: &dyn Fn(&Error) -> bool,
) {
    let key = &format!("Account:{id}");
    let repo = db.repository();
    let started = Instant::now();
    let err = tokio::time::timeout(NO_HANG, repo.get_snapshot::<Account>(id))
        .await
        .expect("get_snapshot hangs")
        .unwrap_err();
    let typed = data_error(&err, key);
    assert!(expect(typed), "{name}: {err:?}");
    if matches!(
        typed,
        Error::Item {
            attribute: "Payload",
            ..
        }
    ) {
        let store = DynamoStore::<Account>::new(repo.clone(), SnapshotPolicy::Always);
        let loaded = store.load_aggregate(id).await.unwrap();
        assert_eq!(loaded.aggregate, replay(&repo, id).await.0, "{name}");
        assert_eq!(loaded.current_sequence, 2);
        let cqrs = CqrsFramework::new(store, vec![], ());
        cqrs.execute(id, AccountCommand::deposit(1, 1))
            .await
            .unwrap();
        // The rewritten snapshot reads again, and equals the replay.
        let snapshot = repo.get_snapshot::<Account>(id).await.unwrap().unwrap();
        let state: Account = serde_json::from_value(snapshot.aggregate).unwrap();
        assert_eq!(state, replay(&repo, id).await.0, "{name}");
        assert_eq!((state.total, snapshot.current_sequence), (11, 3), "{name}");
        return;
    }
    for policy in [SnapshotPolicy::Every(2), SnapshotPolicy::Always] {
        let store = DynamoStore::<Account>::new(repo.clone(), policy);
        let Err(err) = store.load_aggregate(id).await else {
            panic!("{name}: loads")
        };
        assert!(expect(&aggregate_data_error(err, key)), "{name}");
        let cqrs = cqrs::<Account>(repo.clone(), policy);
        let err = failed_deposit(&cqrs, id).await;
        assert!(expect(&aggregate_data_error(err, key)), "{name}");
    }
    assert!(
        started.elapsed() < NO_HANG,
        "{name}: took {:?}",
        started.elapsed()
    );
    // A store that reads no snapshot is unaffected.
    let store = DynamoStore::<Account>::new_event_store(repo);
    assert_eq!(store.load_aggregate(id).await.unwrap().aggregate.total, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_snapshots_fail_with_the_snapshot_key() {
    let db = tables().await;
    for case in snapshot_cases() {
        let id = new_id();
        snapshot_with_events(&db, &id).await;
        edit_snapshot_item(&db, &format!("Account:{id}"), &case.edit).await;
        check_snapshot_paths(&db, &id, case.name, &case.expect).await;
    }
}

/// A snapshot of well over 400 KB, stored as a head and chunks.
async fn chunked_snapshot(db: &TestTables, id: &str) -> usize {
    let mut rng = Rng::new(42);
    let notes: Vec<String> = (0..600)
        .map(|_| {
            (0..1000)
                .map(|_| char::from(b'a' + u8::try_from(rng.below(26)).unwrap()))
                .collect()
        })
        .collect();
    let state = serde_json::to_value(Account {
        total: 10,
        applied: 2,
        notes,
    })
    .unwrap();
    let events: Vec<_> = (1..=2)
        .map(|s| deposit_event("Account", id, s, 5))
        .collect();
    db.repository()
        .with_codec(Codec::json())
        .persist::<Account>(&events, Some((id.to_string(), state, 1)))
        .await
        .unwrap();
    let head = get(db, &db.snapshots, &format!("Account:{id}")).await;
    assert!(!head.contains_key(item::PAYLOAD), "not chunked");
    let AttributeValue::N(chunks) = &head[item::PAYLOAD_CHUNKS] else {
        panic!("no chunk count")
    };
    let chunks: usize = chunks.parse().unwrap();
    assert!(chunks >= 2, "{chunks} chunks");
    chunks
}

fn chunk(id: &str, index: usize) -> String {
    item::chunk_key("Account", id, index)
}

/// Reads the snapshot item at `key`, edits it and writes it back.
async fn edit_snapshot_item(db: &TestTables, key: &str, edit: impl FnOnce(&mut Item)) {
    let mut item = get(db, &db.snapshots, key).await;
    edit(&mut item);
    put(db, &db.snapshots, item).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chunked_snapshots_fail_after_retries_without_hanging() {
    let db = tables().await;
    let snapshot_error = |wanted: &'static str| move |e: &Error| matches!(e, Error::Snapshot { reason, .. } if reason.contains(wanted));

    // The snapshot reads back before it is broken.
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    let loaded = stored_snapshot::<Account>(&db, &id).await;
    let state: Account = serde_json::from_value(loaded.aggregate).unwrap();
    assert_eq!(state.notes.len(), 600);

    // A missing chunk.
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    db.client
        .delete_item()
        .table_name(&db.snapshots)
        .key(item::AGGREGATE_TYPE_AND_ID, item::s(chunk(&id, 1)))
        .send()
        .await
        .unwrap();
    let missing = snapshot_error("chunk 1 is missing");
    check_snapshot_paths(&db, &id, "missing chunk", &missing).await;

    // A chunk of another snapshot version (its hash differs from the head's).
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    edit_snapshot_item(&db, &chunk(&id, 0), |stale| {
        stale.insert(item::PAYLOAD_HASH.into(), item::s("0123456789abcdef"));
    })
    .await;
    let stale = snapshot_error("another snapshot version");
    check_snapshot_paths(&db, &id, "stale chunk", &stale).await;

    // Chunk bytes that do not hash to the head's hash.
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    edit_snapshot_item(&db, &chunk(&id, 1), |flipped| {
        let AttributeValue::B(blob) = &flipped[item::PAYLOAD] else {
            panic!("chunk payload")
        };
        let mut bytes = blob.clone().into_inner();
        bytes[10] ^= 0x01;
        flipped.insert(item::PAYLOAD.into(), item::b(bytes));
    })
    .await;
    check_snapshot_paths(&db, &id, "flipped chunk", &snapshot_error("do not match")).await;

    // A head declaring absurd chunk counts or sizes: an error, not an
    // allocation of that size.
    for (attribute, value) in [
        (item::PAYLOAD_CHUNKS, "99999999999999"),
        (item::PAYLOAD_CHUNKS, "0"),
        (item::PAYLOAD_SIZE, "999999999999999999"),
    ] {
        let id = new_id();
        chunked_snapshot(&db, &id).await;
        edit_snapshot_item(&db, &format!("Account:{id}"), |head| {
            head.insert(attribute.into(), item::n(value));
        })
        .await;
        check_snapshot_paths(&db, &id, attribute, &|e: &Error| {
            matches!(e, Error::Snapshot { .. } | Error::InvalidAttribute { .. })
        })
        .await;
    }

    // A chunk item whose index is not a number names the chunk.
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    edit_snapshot_item(&db, &chunk(&id, 0), |bad| {
        bad.insert(item::CHUNK_INDEX.into(), item::s("zero"));
    })
    .await;
    let err = db
        .repository()
        .get_snapshot::<Account>(&id)
        .await
        .unwrap_err();
    let err = data_error(&err, &chunk(&id, 0));
    assert!(invalid("ChunkIndex")(err), "{err:?}");
}

// ---------------------------------------------------------------------------
// Views.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn corrupt_views_fail_with_the_view_id() {
    let db = tables().await;
    let any_corrupt = |e: &Error| matches!(e, Error::Corrupt { .. });
    let too_large = |s: &Error| matches!(s, Error::DecodedTooLarge { .. });
    let other_shape = br#"{"deposits":"many"}"#.to_vec();
    let cases = vec![
        Case::random_payload("random bytes", any_corrupt),
        Case::undecodable(
            "json of another shape",
            item::PAYLOAD,
            other_shape,
            corrupt("json"),
        ),
        Case::missing("missing payload", item::PAYLOAD),
        Case::invalid("version is a string", item::VIEW_VERSION, item::s("1")),
        Case::invalid("fractional version", item::VIEW_VERSION, item::n("1.5")),
        Case::truncated_zstd("truncated zstd"),
        Case::bomb("zstd bomb", item::PAYLOAD, (600, b'{', None), too_large),
    ];
    let views = db.view_repository::<AccountView, Account>();
    for Case {
        name, edit, expect, ..
    } in cases
    {
        let view_id = new_id();
        let mut view = Item::from([
            (item::VIEW_ID.to_string(), item::s(&view_id)),
            (item::VIEW_VERSION.to_string(), item::n(1)),
            (
                item::PAYLOAD.to_string(),
                item::b(serde_json::to_vec(&AccountView::default()).unwrap()),
            ),
        ]);
        edit(&mut view);
        put(&db, &db.views, view).await;
        let err = views.load(&view_id).await.unwrap_err();
        assert!(expect(data_error(&err, &view_id)), "{name}: {err:?}");
        let Err(err) = views.load_with_context(&view_id).await else {
            panic!("{name}: loads")
        };
        assert!(expect(data_error(&err, &view_id)), "{name}: {err:?}");
    }
}

// ---------------------------------------------------------------------------
// The fuzz logic, on deterministic random and mutated inputs.
// ---------------------------------------------------------------------------

/// One random edit of `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = rng.byte();
        }
        2 => {
            let at = rng.below(len + 1);
            let count = rng.below(8) + 1;
            let extra = rng.bytes(count);
            input.splice(at..at, extra);
        }
        3 if len > 0 => {
            let from = rng.below(len);
            let to = (from + rng.below(16) + 1).min(len);
            input.drain(from..to);
        }
        4 => input.truncate(rng.below(len + 1)),
        5 if len > 0 => {
            // Duplicate a range.
            let from = rng.below(len);
            let to = (from + rng.below(32) + 1).min(len);
            let copy = input[from..to].to_vec();
            let at = rng.below(input.len() + 1);
            input.splice(at..at, copy);
        }
        6 => {
            // Splice in part of another seed.
            let other = &seeds[rng.below(seeds.len())];
            let from = rng.below(other.len() + 1);
            let to = (from + rng.below(64)).min(other.len());
            let at = rng.below(len + 1);
            input.splice(at..at, other[from..to].iter().copied());
        }
        _ => {
            // An interesting value at a random place.
            if len > 0 {
                let at = rng.below(len);
                input[at] = [0x00, 0xFF, 0x7F, 0x80, 0xC1, 0x28, b'"', b'{'][rng.below(8)];
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `check` on `input`, turning a panic into a report of the input.
fn run(check: fn(&[u8]), what: &str, input: &[u8]) {
    if std::panic::catch_unwind(|| check(input)).is_err() {
        panic!("{what} panicked on input {}", hex(input));
    }
}

#[test]
fn fuzz_logic_holds_on_random_and_mutated_inputs() {
    const DECODE_INPUTS: usize = 100_000;
    const ITEM_INPUTS: usize = 100_000;
    let started = Instant::now();
    let seeds = fuzz_logic::payload_seeds();
    assert!(seeds.len() >= 20);
    let mut rng = Rng::new(0x00C0_FFEE);
    for index in 0..DECODE_INPUTS {
        let input = if index % 8 == 0 {
            let len = rng.below(48);
            rng.bytes(len)
        } else {
            let mut input = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut input, &seeds);
            }
            input
        };
        run(fuzz_logic::decode, "Codec::decode", &input);
    }
    eprintln!("decode: {:?}", started.elapsed());
    // Items: short programs mostly edit a valid item a little; long ones
    // rebuild it thoroughly.
    for _ in 0..ITEM_INPUTS {
        let len = if rng.below(4) == 0 {
            rng.below(200)
        } else {
            rng.below(12)
        };
        let input = rng.bytes(len);
        run(fuzz_logic::item, "item_to_event", &input);
    }
    eprintln!(
        "{} fuzz inputs in {:?}",
        DECODE_INPUTS + ITEM_INPUTS,
        started.elapsed()
    );
}

/// Deep nesting is refused (past 127 levels, as JSON's reader refuses it),
/// never a stack overflow, even on a thread with a small stack.
#[test]
fn deeply_nested_payloads_do_not_overflow_the_stack() {
    // Run on a thread with a 2 MiB stack, tokio's worker default.
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let codec = Codec::default();
            for depth in [100, 127, 128, 500, 1000, 1024, 1025, 100_000] {
                let current = fuzz_logic::deep_msgpack(depth);
                // The same nesting under the legacy compact tag.
                let mut legacy = current.clone();
                legacy[1] = 0x01;
                for bytes in [current, legacy] {
                    let result = codec.decode(&bytes);
                    if depth < 128 && cfg!(feature = "msgpack") {
                        assert!(result.is_ok(), "depth {depth}: {result:?}");
                    } else {
                        assert!(result.unwrap_err().is_data_error(), "depth {depth}");
                    }
                }
            }
            let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
            assert!(codec.decode(deep_json.as_bytes()).is_err());
            fuzz_logic::decode(&fuzz_logic::deep_msgpack(1000));
        })
        .unwrap()
        .join()
        .expect("no stack overflow or panic");
}

/// The item fuzz logic does see successes and every failure kind, so the
/// property test above exercises both sides.
#[test]
fn item_programs_reach_success_and_every_error_kind() {
    let mut ok = 0;
    let (mut missing, mut invalid, mut payload) = (0, 0, 0);
    let mut rng = Rng::new(1);
    for _ in 0..5000 {
        let len = rng.below(12);
        let item = fuzz_logic::item_from_bytes(&rng.bytes(len));
        match item::item_to_event(&item, &Codec::default()) {
            Ok(_) => ok += 1,
            Err(Error::MissingAttribute { .. }) => missing += 1,
            Err(Error::InvalidAttribute { .. }) => invalid += 1,
            Err(Error::Item { .. }) => payload += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        ok > 100 && missing > 100 && invalid > 100 && payload > 100,
        "{ok} {missing} {invalid} {payload}"
    );
}
