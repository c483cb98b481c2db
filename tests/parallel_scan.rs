//! Replay with parallel scan segments (`with_scan_segments`): every event of
//! every aggregate arrives once and in sequence order whatever the number
//! of segments; each segment is really scanned; an error of one segment
//! reaches the consumer, then the stream ends and the other segments stop;
//! the replay span counts every page and its consumed capacity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;
use dynamo_es::item::{event_to_item, Item};
use dynamo_es::testing::faults::{losing_responses_to, Canned, Request, Rule, Scripted, Step};
use dynamo_es::{Codec, DynamoEventRepository, DEFAULT_SCAN_SEGMENTS};
use serde_json::{json, Value};

const AGGREGATES: usize = 40;
const EVENTS: usize = 30;

/// The amount of event `sequence` of aggregate `n`: each event's payload
/// names its own key, so an event delivered under another key shows.
fn amount(n: usize, sequence: usize) -> i64 {
    i64::try_from(n * 1000 + sequence).unwrap()
}

/// `AGGREGATES` accounts of `EVENTS` events each (commits of 1 to 10
/// events), and 3 events of another type for each.
async fn seeded() -> (dynamo_es::testing::TestTables, Vec<String>) {
    let db = tables().await;
    let repo = db.repository();
    let ids: Vec<String> = (0..AGGREGATES).map(|_| new_id()).collect();
    for (n, id) in ids.iter().enumerate() {
        let mut sequence = 1;
        while sequence <= EVENTS {
            let size = (n + sequence) % 10 + 1;
            let events: Vec<_> = (sequence..=(sequence + size - 1).min(EVENTS))
                .map(|s| deposit_event(Account::TYPE, id, s, amount(n, s)))
                .collect();
            sequence += events.len();
            repo.persist::<Account>(&events, None).await.unwrap();
        }
        let others: Vec<_> = (1..=3)
            .map(|s| deposit_event(Other::TYPE, id, s, 0))
            .collect();
        repo.persist::<Other>(&others, None).await.unwrap();
    }
    (db, ids)
}

/// Replays every account through `repo`; asserts each aggregate's events
/// arrive whole, once, in sequence order and with their own payloads.
async fn assert_replay_in_order(repo: &DynamoEventRepository, ids: &[String], segments: u32) {
    let mut stream = repo.stream_all_events::<Account>().await.unwrap();
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    while let Some(envelope) = next_within_bound::<Account>(&mut stream).await {
        let envelope = envelope.unwrap();
        let n = ids
            .iter()
            .position(|id| *id == envelope.aggregate_id)
            .expect("an aggregate that was seeded");
        let AccountEvent::Deposited { amount: got } = envelope.payload else {
            panic!("a deposit")
        };
        assert_eq!(got, amount(n, envelope.sequence), "{segments} segments");
        seen.entry(envelope.aggregate_id)
            .or_default()
            .push(envelope.sequence);
    }
    assert_eq!(seen.len(), AGGREGATES, "{segments} segments: aggregates");
    for (id, sequences) in &seen {
        assert!(
            sequences.iter().copied().eq(1..=EVENTS),
            "{segments} segments: {id} arrived as {sequences:?}"
        );
    }
}

/// The `(Segment, TotalSegments)` of a scan request, `None` for a plain scan.
fn segment_of(request: &Request) -> Option<(u64, u64)> {
    let segment = request.body.get("Segment")?.as_u64()?;
    Some((segment, request.body["TotalSegments"].as_u64()?))
}

#[tokio::test]
async fn every_aggregate_arrives_once_and_in_order_for_1_2_4_7_segments() {
    let (db, ids) = seeded().await;
    assert_eq!(db.repository().scan_segments(), DEFAULT_SCAN_SEGMENTS);
    for segments in [1u32, 2, 4, 7] {
        let (client, http) = losing_responses_to(&db.client, "Scan", 0);
        let repo = DynamoEventRepository::new(client)
            .with_tables(&db.events, &db.snapshots)
            .with_streaming_channel_size(7)
            .with_scan_segments(segments);
        assert_eq!(repo.scan_segments(), segments);
        assert_replay_in_order(&repo, &ids, segments).await;

        let requests = http.requests();
        let asked: BTreeSet<_> = requests.iter().map(segment_of).collect();
        if segments == 1 {
            assert_eq!(asked, BTreeSet::from([None]), "a plain scan");
        } else {
            let expected = (0..segments)
                .map(|s| Some((u64::from(s), u64::from(segments))))
                .collect();
            assert_eq!(asked, expected, "every segment scanned");
        }
        // Pages of 7 items: every segment follows LastEvaluatedKey.
        let items = AGGREGATES * (EVENTS + 3);
        assert!(requests.len() >= items / 7, "{} requests", requests.len());
    }
}

#[tokio::test]
async fn segments_are_clamped_to_dynamodb_range() {
    let db = tables().await;
    assert_eq!(db.repository().with_scan_segments(0).scan_segments(), 1);
    assert_eq!(
        db.repository().with_scan_segments(u32::MAX).scan_segments(),
        1_000_000
    );
}

#[tokio::test]
async fn the_span_counts_every_page_and_its_capacity() {
    let (db, ids) = seeded().await;
    let (client, http) = losing_responses_to(&db.client, "Scan", 0);
    let repo = DynamoEventRepository::new(client)
        .with_tables(&db.events, &db.snapshots)
        .with_streaming_channel_size(50)
        .with_scan_segments(4);
    let (logs, _guard) = capture(tracing::Level::DEBUG, false);
    assert_replay_in_order(&repo, &ids, 4).await;
    let finished = logs.lines_with("replay stream finished");
    assert_eq!(finished.len(), 1, "{}", logs.text());
    let line = &finished[0];
    assert!(
        line.contains(&format!("events={}", AGGREGATES * EVENTS)),
        "{line}"
    );
    assert!(
        line.contains(&format!(" pages={} ", http.requests().len())),
        "{line}"
    );
    let capacity: f64 = line
        .rsplit("consumed_capacity=")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(capacity > 0.0, "{line}");
}

/// `item` in DynamoDB's JSON.
fn item_json(item: &Item) -> Value {
    let attributes = item.iter().map(|(name, value)| {
        let value = match value {
            AttributeValue::S(s) => json!({ "S": s }),
            AttributeValue::N(n) => json!({ "N": n }),
            AttributeValue::B(b) => json!({ "B": aws_smithy_types::base64::encode(b.as_ref()) }),
            other => panic!("unexpected attribute {other:?}"),
        };
        (name.clone(), value)
    });
    Value::Object(attributes.collect())
}

/// A scan page holding one event of aggregate `id` at `sequence`, with a
/// further page when `more`.
fn page(id: &str, sequence: usize, more: bool) -> Canned {
    let event = deposit_event(Account::TYPE, id, sequence, 1);
    let (item, _) = event_to_item(&event, &Codec::json()).unwrap();
    let mut body = json!({"Count": 1, "ScannedCount": 1, "Items": [item_json(&item)]});
    if more {
        body["LastEvaluatedKey"] = json!({
            "AggregateTypeAndId": {"S": format!("Account:{id}")},
            "AggregateIdSequence": {"N": sequence.to_string()},
        });
    }
    Canned::ok(body)
}

/// The sequence of the request's `ExclusiveStartKey`, 0 for a first page.
fn after(request: &Request) -> usize {
    request.body["ExclusiveStartKey"]["AggregateIdSequence"]["N"]
        .as_str()
        .map_or(0, |n| n.parse().unwrap())
}

/// The accounts' event stream of a repository scanning `segments`
/// segments, answered by `rules`, with the script.
async fn scripted_stream(
    rules: impl IntoIterator<Item = Rule>,
    segments: u32,
) -> (Scripted, cqrs_es::persist::ReplayStream) {
    let http = Scripted::by_rules(rules);
    let repo = canned_repo(&http, 1).with_scan_segments(segments);
    let stream = repo.stream_all_events::<Account>().await.unwrap();
    (http, stream)
}

#[tokio::test]
async fn an_error_of_one_segment_reaches_the_consumer_then_the_stream_ends() {
    // Segment 0 has a page after every page; segment 1 fails at once
    // (a validation error, not retried); segment 2 is one page.
    let rules = (0..500).map(|_| -> Rule {
        Box::new(|request: &Request| -> Step {
            match segment_of(request) {
                Some((0, 3)) => page("endless", after(request) + 1, true),
                Some((1, 3)) => Canned::validation_error("segment 1 cannot be read"),
                Some((2, 3)) => page("single", 1, false),
                other => panic!("unexpected scan {other:?}"),
            }
            .into()
        })
    });
    let (http, mut stream) = scripted_stream(rules, 3).await;
    let (events, err) = drain::<Account>(&mut stream).await;
    let err = err.expect("the segment's error reaches the consumer");
    assert_failed(&err, "Dynamo", "Scan");
    assert!(
        err.to_string().contains("segment 1 cannot be read"),
        "{err}"
    );
    // The endless segment was stopped: no request follows the end.
    let sent = http.requests().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(http.requests().len(), sent, "after {events} events");
    assert!(http.remaining() > 400, "{} rules left", http.remaining());
}

#[tokio::test]
async fn events_of_every_segment_before_the_end_are_delivered_in_order() {
    // Segment 0 is 5 pages of one aggregate, segment 1 one page of another:
    // the stream yields all 6 events, the first aggregate's in order.
    let rules = (0..6).map(|_| -> Rule {
        Box::new(|request: &Request| -> Step {
            let after = after(request);
            match segment_of(request) {
                Some((0, 2)) => page("five", after + 1, after + 1 < 5),
                Some((1, 2)) => page("one", 1, false),
                other => panic!("unexpected scan {other:?}"),
            }
            .into()
        })
    });
    let (http, mut stream) = scripted_stream(rules, 2).await;
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    while let Some(envelope) = next_within_bound::<Account>(&mut stream).await {
        let envelope = envelope.unwrap();
        seen.entry(envelope.aggregate_id)
            .or_default()
            .push(envelope.sequence);
    }
    assert_eq!(seen["five"], [1, 2, 3, 4, 5]);
    assert_eq!(seen["one"], [1]);
    assert_eq!(http.remaining(), 0);
}
