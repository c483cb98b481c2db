//! Corrupt and foreign data: items written directly with the SDK (missing
//! attributes, wrong types, bad numbers, hostile payloads) must give every
//! read path a typed deserialization error naming the item, never a panic
//! or a hang. Ends with the fuzz logic of `fuzz/` run on 200,000
//! deterministic random and mutated inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../fuzz/src/lib.rs"]
mod fuzz_logic;

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ViewRepository};
use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use dynamo_es::item::{self, Item};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoStore, Error, SnapshotPolicy};
#[cfg(feature = "compression")]
use serde_json::json;

/// Generous bound for "does not hang".
const NO_HANG: Duration = Duration::from_secs(20);

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

async fn put(db: &TestTables, table: &str, item: Item) {
    db.client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
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

/// Deterministic pseudo-random bytes (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// Bytes that are no payload at all (the first byte is never valid UTF-8).
fn random_payload() -> Vec<u8> {
    let mut bytes = Rng(7).bytes(64);
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

/// One way to corrupt the event item at a given sequence.
struct Case {
    name: &'static str,
    /// The stored `AggregateIdSequence` (a DynamoDB number, maybe not a usize).
    sequence: &'static str,
    edit: fn(&mut Item),
    expect: fn(&Error) -> bool,
}

fn event_cases() -> Vec<Case> {
    vec![
        Case {
            name: "missing event type",
            sequence: "3",
            edit: |i| {
                i.remove(item::EVENT_TYPE);
            },
            expect: |e| {
                matches!(
                    e,
                    Error::MissingAttribute {
                        attribute: "EventType",
                        ..
                    }
                )
            },
        },
        Case {
            name: "missing payload",
            sequence: "3",
            edit: |i| {
                i.remove(item::PAYLOAD);
            },
            expect: |e| {
                matches!(
                    e,
                    Error::MissingAttribute {
                        attribute: "Payload",
                        ..
                    }
                )
            },
        },
        Case {
            name: "aggregate id is a number",
            sequence: "3",
            edit: |i| {
                i.insert(item::AGGREGATE_ID.into(), item::n(12));
            },
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "AggregateId",
                        ..
                    }
                )
            },
        },
        Case {
            name: "payload is a string",
            sequence: "3",
            edit: |i| {
                i.insert(
                    item::PAYLOAD.into(),
                    item::s(r#"{"Deposited":{"amount":1}}"#),
                );
            },
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "Payload",
                        ..
                    }
                )
            },
        },
        Case {
            name: "metadata is a boolean",
            sequence: "3",
            edit: |i| {
                i.insert(item::METADATA.into(), AttributeValue::Bool(true));
            },
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "Metadata",
                        ..
                    }
                )
            },
        },
        Case {
            name: "fractional sequence",
            sequence: "3.5",
            edit: |_| {},
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "AggregateIdSequence",
                        ..
                    }
                )
            },
        },
        Case {
            name: "negative sequence",
            sequence: "-1",
            edit: |_| {},
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "AggregateIdSequence",
                        ..
                    }
                )
            },
        },
        Case {
            name: "sequence beyond usize",
            sequence: "99999999999999999999999",
            edit: |_| {},
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "AggregateIdSequence",
                        ..
                    }
                )
            },
        },
        Case {
            name: "random bytes payload",
            sequence: "3",
            edit: |i| {
                i.insert(item::PAYLOAD.into(), item::b(random_payload()));
            },
            expect: |e| {
                matches!(
                    item_source(e, "Payload"),
                    Error::Corrupt { format: "json", .. }
                )
            },
        },
        Case {
            name: "empty metadata",
            sequence: "3",
            edit: |i| {
                i.insert(item::METADATA.into(), item::b(Vec::new()));
            },
            expect: |e| matches!(item_source(e, "Metadata"), Error::Corrupt { .. }),
        },
        Case {
            name: "unknown format tag",
            sequence: "3",
            edit: |i| {
                i.insert(item::PAYLOAD.into(), item::b(vec![0xC1, 0x7F, b'{', b'}']));
            },
            expect: |e| matches!(item_source(e, "Payload"), Error::Corrupt { format: "tagged", reason } if reason.contains("0x7f")),
        },
        Case {
            name: "lone tag byte",
            sequence: "3",
            edit: |i| {
                i.insert(item::PAYLOAD.into(), item::b(vec![0xC1]));
            },
            expect: |e| {
                matches!(
                    item_source(e, "Payload"),
                    Error::Corrupt {
                        format: "tagged",
                        ..
                    }
                )
            },
        },
        Case {
            name: "corrupt messagepack",
            sequence: "3",
            edit: |i| {
                i.insert(
                    item::PAYLOAD.into(),
                    item::b(vec![0xC1, 0x02, 0xC1, 0xFF, 0x00]),
                );
            },
            expect: |e| {
                let source = item_source(e, "Payload");
                if cfg!(feature = "msgpack") {
                    matches!(
                        source,
                        Error::Corrupt {
                            format: "msgpack",
                            ..
                        }
                    )
                } else {
                    matches!(
                        source,
                        Error::FeatureDisabled {
                            feature: "msgpack",
                            ..
                        }
                    )
                }
            },
        },
        Case {
            name: "truncated zstd",
            sequence: "3",
            edit: |i| {
                i.insert(item::PAYLOAD.into(), item::b(truncated_zstd()));
            },
            expect: |e| {
                zstd_error(item_source(e, "Payload"), |s| {
                    matches!(s, Error::Corrupt { format: "zstd", .. })
                })
            },
        },
        Case {
            name: "zstd bomb declaring 1 TiB",
            sequence: "3",
            edit: |i| {
                i.insert(
                    item::METADATA.into(),
                    item::b(fuzz_logic::zstd_bomb(8, b'[', Some(1 << 40))),
                );
            },
            expect: |e| {
                zstd_error(
                    item_source(e, "Metadata"),
                    |s| matches!(s, Error::DecodedTooLarge { size, .. } if *size == 1 << 40),
                )
            },
        },
        Case {
            name: "zstd bomb of 75 MiB declaring nothing",
            sequence: "3",
            edit: |i| {
                i.insert(
                    item::PAYLOAD.into(),
                    item::b(fuzz_logic::zstd_bomb(600, b' ', None)),
                );
            },
            expect: |e| {
                zstd_error(
                    item_source(e, "Payload"),
                    |s| matches!(s, Error::DecodedTooLarge { max, .. } if *max == dynamo_es::codec::DEFAULT_MAX_DECODED_SIZE),
                )
            },
        },
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
            let mut ok = 0;
            let err = loop {
                match tokio::time::timeout(NO_HANG, stream.next::<Account>(&[]))
                    .await
                    .expect("stream hangs")
                {
                    Some(Ok(_)) => ok += 1,
                    Some(Err(err)) => break err,
                    None => panic!("{name}: stream ended without the error"),
                }
            };
            assert!((case.expect)(data_error(&err, &key)), "{name}: {err:?}");
            assert_eq!(ok, before, "{name}: events before the corrupt one");
            // The stream ends after its error.
            let after = tokio::time::timeout(NO_HANG, stream.next::<Account>(&[]))
                .await
                .expect("stream hangs after its error");
            assert!(after.is_none(), "{name}: stream goes on after an error");
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
        let cqrs = CqrsFramework::new(
            DynamoStore::<Account>::new_event_store(repo.clone()),
            vec![],
            (),
        );
        let err = cqrs
            .execute(
                &id,
                AccountCommand::Deposit {
                    amount: 1,
                    times: 1,
                },
            )
            .await
            .unwrap_err();
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
    let mut foreign = event_item(&id, 2);
    foreign.insert(
        item::PAYLOAD.into(),
        item::b(br#"{"Withdrawn":{"amount":1}}"#.to_vec()),
    );
    put(&db, &db.events, foreign).await;
    let events = db.repository().get_events::<Account>(&id).await.unwrap();
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
    let mut event = event_item(&id, 1);
    event.insert(
        item::PAYLOAD.into(),
        item::b(fuzz_logic::zstd_raw_frame(br#"{"Deposited":{"amount":9}}"#)),
    );
    put(&db, &db.events, event).await;
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
    let mut event = event_item(&id, 1);
    event.insert(
        item::PAYLOAD.into(),
        item::b(fuzz_logic::zstd_bomb(64, b' ', None)),
    );
    put(&db, &db.events, event).await;
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

struct SnapshotCase {
    name: &'static str,
    edit: fn(&mut Item),
    expect: fn(&Error) -> bool,
}

fn snapshot_cases() -> Vec<SnapshotCase> {
    vec![
        SnapshotCase {
            name: "missing current sequence",
            edit: |i| {
                i.remove(item::CURRENT_SEQUENCE);
            },
            expect: |e| {
                matches!(
                    e,
                    Error::MissingAttribute {
                        attribute: "CurrentSequence",
                        ..
                    }
                )
            },
        },
        SnapshotCase {
            name: "current snapshot is a string",
            edit: |i| {
                i.insert(item::CURRENT_SNAPSHOT.into(), item::s("1"));
            },
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "CurrentSnapshot",
                        ..
                    }
                )
            },
        },
        SnapshotCase {
            name: "negative current sequence",
            edit: |i| {
                i.insert(item::CURRENT_SEQUENCE.into(), item::n("-3"));
            },
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "CurrentSequence",
                        ..
                    }
                )
            },
        },
        SnapshotCase {
            name: "payload is a list",
            edit: |i| {
                i.insert(item::PAYLOAD.into(), AttributeValue::L(vec![]));
            },
            expect: |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "Payload",
                        ..
                    }
                )
            },
        },
        SnapshotCase {
            name: "random bytes payload",
            edit: |i| {
                i.insert(item::PAYLOAD.into(), item::b(random_payload()));
            },
            expect: |e| {
                matches!(
                    item_source(e, "Payload"),
                    Error::Corrupt { format: "json", .. }
                )
            },
        },
        SnapshotCase {
            name: "truncated zstd payload",
            edit: |i| {
                i.insert(item::PAYLOAD.into(), item::b(truncated_zstd()));
            },
            expect: |e| {
                zstd_error(item_source(e, "Payload"), |s| {
                    matches!(s, Error::Corrupt { format: "zstd", .. })
                })
            },
        },
        SnapshotCase {
            name: "zstd bomb payload",
            edit: |i| {
                i.insert(
                    item::PAYLOAD.into(),
                    item::b(fuzz_logic::zstd_bomb(4, b'{', Some(1 << 50))),
                );
            },
            expect: |e| {
                zstd_error(item_source(e, "Payload"), |s| {
                    matches!(s, Error::DecodedTooLarge { .. })
                })
            },
        },
        SnapshotCase {
            name: "head without payload or chunk count",
            edit: |i| {
                i.remove(item::PAYLOAD);
            },
            expect: |e| {
                matches!(
                    e,
                    Error::MissingAttribute {
                        attribute: "PayloadChunks",
                        ..
                    }
                )
            },
        },
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
    key: &str,
    name: &str,
    expect: fn(&Error) -> bool,
) {
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
        cqrs.execute(
            id,
            AccountCommand::Deposit {
                amount: 1,
                times: 1,
            },
        )
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
        let cqrs = CqrsFramework::new(
            DynamoStore::<Account>::new(repo.clone(), policy),
            vec![],
            (),
        );
        let err = cqrs
            .execute(
                id,
                AccountCommand::Deposit {
                    amount: 1,
                    times: 1,
                },
            )
            .await
            .unwrap_err();
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
        let key = format!("Account:{id}");
        let mut head = get(&db, &db.snapshots, &key).await;
        (case.edit)(&mut head);
        put(&db, &db.snapshots, head).await;
        check_snapshot_paths(&db, &id, &key, case.name, case.expect).await;
    }
}

/// A snapshot of well over 400 KB, stored as a head and chunks.
async fn chunked_snapshot(db: &TestTables, id: &str) -> usize {
    let mut rng = Rng(42);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chunked_snapshots_fail_after_retries_without_hanging() {
    let db = tables().await;

    // The snapshot reads back before it is broken.
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    let loaded = db
        .repository()
        .get_snapshot::<Account>(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_value::<Account>(loaded.aggregate)
            .unwrap()
            .notes
            .len(),
        600
    );

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
    check_snapshot_paths(
        &db,
        &id,
        &format!("Account:{id}"),
        "missing chunk",
        |e| matches!(e, Error::Snapshot { reason, .. } if reason.contains("chunk 1 is missing")),
    )
    .await;

    // A chunk of another snapshot version (its hash differs from the head's).
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    let mut stale = get(&db, &db.snapshots, &chunk(&id, 0)).await;
    stale.insert(item::PAYLOAD_HASH.into(), item::s("0123456789abcdef"));
    put(&db, &db.snapshots, stale).await;
    check_snapshot_paths(&db, &id, &format!("Account:{id}"), "stale chunk", |e| {
        matches!(e, Error::Snapshot { reason, .. } if reason.contains("another snapshot version"))
    })
    .await;

    // Chunk bytes that do not hash to the head's hash.
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    let mut flipped = get(&db, &db.snapshots, &chunk(&id, 1)).await;
    let AttributeValue::B(blob) = &flipped[item::PAYLOAD] else {
        panic!("chunk payload")
    };
    let mut bytes = blob.clone().into_inner();
    bytes[10] ^= 0x01;
    flipped.insert(item::PAYLOAD.into(), item::b(bytes));
    put(&db, &db.snapshots, flipped).await;
    check_snapshot_paths(
        &db,
        &id,
        &format!("Account:{id}"),
        "flipped chunk",
        |e| matches!(e, Error::Snapshot { reason, .. } if reason.contains("do not match")),
    )
    .await;

    // A head declaring absurd chunk counts or sizes: an error, not an
    // allocation of that size.
    for (attribute, value) in [
        (item::PAYLOAD_CHUNKS, "99999999999999"),
        (item::PAYLOAD_CHUNKS, "0"),
        (item::PAYLOAD_SIZE, "999999999999999999"),
    ] {
        let id = new_id();
        chunked_snapshot(&db, &id).await;
        let key = format!("Account:{id}");
        let mut head = get(&db, &db.snapshots, &key).await;
        head.insert(attribute.into(), item::n(value));
        put(&db, &db.snapshots, head).await;
        check_snapshot_paths(&db, &id, &key, attribute, |e| {
            matches!(e, Error::Snapshot { .. } | Error::InvalidAttribute { .. })
        })
        .await;
    }

    // A chunk item whose index is not a number names the chunk.
    let id = new_id();
    chunked_snapshot(&db, &id).await;
    let mut bad = get(&db, &db.snapshots, &chunk(&id, 0)).await;
    bad.insert(item::CHUNK_INDEX.into(), item::s("zero"));
    put(&db, &db.snapshots, bad).await;
    let err = db
        .repository()
        .get_snapshot::<Account>(&id)
        .await
        .unwrap_err();
    let err = data_error(&err, &chunk(&id, 0));
    assert!(
        matches!(
            err,
            Error::InvalidAttribute {
                attribute: "ChunkIndex",
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// Views.
// ---------------------------------------------------------------------------

/// A way to corrupt a view item, and the error it must give.
type ViewCase = (&'static str, fn(&mut Item), fn(&Error) -> bool);

#[tokio::test]
async fn corrupt_views_fail_with_the_view_id() {
    let db = tables().await;
    let cases: Vec<ViewCase> = vec![
        (
            "random bytes",
            |i| {
                i.insert(item::PAYLOAD.into(), item::b(random_payload()));
            },
            |e| matches!(item_source(e, "Payload"), Error::Corrupt { .. }),
        ),
        (
            "json of another shape",
            |i| {
                i.insert(
                    item::PAYLOAD.into(),
                    item::b(br#"{"deposits":"many"}"#.to_vec()),
                );
            },
            |e| {
                matches!(
                    item_source(e, "Payload"),
                    Error::Corrupt { format: "json", .. }
                )
            },
        ),
        (
            "missing payload",
            |i| {
                i.remove(item::PAYLOAD);
            },
            |e| {
                matches!(
                    e,
                    Error::MissingAttribute {
                        attribute: "Payload",
                        ..
                    }
                )
            },
        ),
        (
            "version is a string",
            |i| {
                i.insert(item::VIEW_VERSION.into(), item::s("1"));
            },
            |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "ViewVersion",
                        ..
                    }
                )
            },
        ),
        (
            "fractional version",
            |i| {
                i.insert(item::VIEW_VERSION.into(), item::n("1.5"));
            },
            |e| {
                matches!(
                    e,
                    Error::InvalidAttribute {
                        attribute: "ViewVersion",
                        ..
                    }
                )
            },
        ),
        (
            "truncated zstd",
            |i| {
                i.insert(item::PAYLOAD.into(), item::b(truncated_zstd()));
            },
            |e| {
                zstd_error(item_source(e, "Payload"), |s| {
                    matches!(s, Error::Corrupt { format: "zstd", .. })
                })
            },
        ),
        (
            "zstd bomb",
            |i| {
                i.insert(
                    item::PAYLOAD.into(),
                    item::b(fuzz_logic::zstd_bomb(600, b'{', None)),
                );
            },
            |e| {
                zstd_error(item_source(e, "Payload"), |s| {
                    matches!(s, Error::DecodedTooLarge { .. })
                })
            },
        ),
    ];
    let views = db.view_repository::<AccountView, Account>();
    for (name, edit, expect) in cases {
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
    let mut rng = Rng(0x00C0_FFEE);
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
    let mut rng = Rng(1);
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
