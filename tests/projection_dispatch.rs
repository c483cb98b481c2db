//! The dispatcher hands events to every projection exactly in stream order,
//! consecutive events of one aggregate in one call; a failure names the
//! first record not applied; decode errors stop or are skipped by policy;
//! each batch is traced with its records, events, dispatch time and lag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use common::*;
use cqrs_es::{EventEnvelope, Query};
use dynamo_es::item::{b, event_to_item, PAYLOAD};
use dynamo_es::projection::{
    ChangeKind, ChangeRecord, DecodeErrorPolicy, Dispatcher, Error, EventDecoder, Projection,
};
use dynamo_es::Codec;

/// Records every call it receives, as (aggregate id, sequences): as a
/// projection, and as a cqrs-es query.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Call>>>);

/// One call: the aggregate id and the sequences of its events.
type Call = (String, Vec<usize>);

impl Recorder {
    fn record(&self, id: &str, events: &[EventEnvelope<Account>]) {
        let sequences = events.iter().map(|e| e.sequence).collect();
        self.0.lock().unwrap().push((id.to_string(), sequences));
    }

    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl Projection<Account> for Recorder {
    async fn project(&self, id: &str, events: &[EventEnvelope<Account>]) -> Result<(), Error> {
        self.record(id, events);
        Ok(())
    }
}

#[async_trait]
impl Query<Account> for Recorder {
    async fn dispatch(&self, id: &str, events: &[EventEnvelope<Account>]) {
        self.record(id, events);
    }
}

/// The insert record of event `sequence` of `(aggregate_type, id)`.
fn record(index: usize, aggregate_type: &str, id: &str, sequence: usize) -> ChangeRecord {
    let (item, _) = event_to_item(
        &deposit_event(aggregate_type, id, sequence, 1),
        &Codec::json(),
    )
    .unwrap();
    let keys = item
        .iter()
        .filter(|(name, _)| ["AggregateTypeAndId", "AggregateIdSequence"].contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    ChangeRecord {
        shard_id: "shard-1".into(),
        sequence_number: format!("{:021}", index + 100),
        event_name: ChangeKind::Insert,
        created: None,
        keys,
        new_image: Some(item),
    }
}

/// A, A, B, A, (Other), A, B: four runs of Account events.
fn batch() -> Vec<ChangeRecord> {
    [
        ("Account", "a", 1),
        ("Account", "a", 2),
        ("Account", "b", 1),
        ("Account", "a", 3),
        ("Other", "a", 1),
        ("Account", "a", 4),
        ("Account", "b", 2),
    ]
    .into_iter()
    .enumerate()
    .map(|(index, (t, id, seq))| record(index, t, id, seq))
    .collect()
}

fn calls(list: &[(&str, &[usize])]) -> Vec<Call> {
    list.iter()
        .map(|(id, seqs)| (id.to_string(), seqs.to_vec()))
        .collect()
}

#[tokio::test]
async fn consecutive_events_of_one_aggregate_go_in_one_call_in_stream_order() {
    let first = Recorder::default();
    let query = Recorder::default();
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::json()))
        .with_projection(first.clone())
        .with_query(query.clone());
    let report = dispatcher.dispatch(&batch()).await.unwrap();
    let expected = calls(&[("a", &[1, 2]), ("b", &[1]), ("a", &[3, 4]), ("b", &[2])]);
    assert_eq!(first.calls(), expected);
    assert_eq!(query.calls(), expected);
    assert_eq!((report.records, report.events), (7, 6));
    assert!(report.skipped.is_empty());
    assert_eq!(report.max_lag, None);
}

#[tokio::test]
async fn a_failed_projection_names_the_start_of_its_run() {
    let first = Recorder::default();
    let failing = FailOn("b".into());
    let after = Recorder::default();
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::json()))
        .with_projection(first.clone())
        .with_projection(failing)
        .with_projection(after.clone());
    let records = batch();
    let failure = dispatcher.dispatch(&records).await.unwrap_err();
    // b's first run starts at record 2: records 0 and 1 are done everywhere.
    assert_eq!(failure.first_failed, 2);
    assert!(matches!(failure.error, Error::Projection(_)), "{failure}");
    assert_eq!(after.calls(), calls(&[("a", &[1, 2])]));
    // The first projection applied b's run before the second failed on it:
    // a retry from record 2 delivers it again (at-least-once).
    assert_eq!(first.calls(), calls(&[("a", &[1, 2]), ("b", &[1])]));

    // Retrying from there with the fault fixed completes the batch.
    let fixed =
        Dispatcher::new(EventDecoder::<Account>::new(Codec::json())).with_projection(after.clone());
    let report = fixed.dispatch(&records[2..]).await.unwrap();
    assert_eq!(report.events, 4);
    assert_eq!(
        after.calls(),
        calls(&[("a", &[1, 2]), ("b", &[1]), ("a", &[3, 4]), ("b", &[2])])
    );

    // A failure in a later run reports that run's first record.
    let late = Dispatcher::new(EventDecoder::<Account>::new(Codec::json()))
        .with_projection(FailOn("a".into()));
    assert_eq!(
        late.dispatch(&records[2..]).await.unwrap_err().first_failed,
        1
    );
}

fn corrupt(mut record: ChangeRecord) -> ChangeRecord {
    if let Some(image) = record.new_image.as_mut() {
        image.insert(PAYLOAD.into(), b(b"{not json".to_vec()));
    }
    record
}

#[tokio::test]
async fn decode_errors_stop_by_default_or_are_skipped_and_reported() {
    let mut records = batch();
    records[3] = corrupt(records[3].clone());

    let stopped = Recorder::default();
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::json()))
        .with_projection(stopped.clone());
    let failure = dispatcher.dispatch(&records).await.unwrap_err();
    assert_eq!(failure.first_failed, 3);
    assert!(
        matches!(&failure.error, Error::Decode { key, .. } if key == "Account:a#3"),
        "{failure}"
    );
    // Everything before the broken record was applied.
    assert_eq!(stopped.calls(), calls(&[("a", &[1, 2]), ("b", &[1])]));

    let skipping = Recorder::default();
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::json()))
        .with_projection(skipping.clone())
        .with_decode_error_policy(DecodeErrorPolicy::SkipAndReport);
    let report = dispatcher.dispatch(&records).await.unwrap();
    assert_eq!(report.events, 5);
    assert_eq!(report.skipped.len(), 1);
    assert!(matches!(&report.skipped[0], Error::Decode { key, .. } if key == "Account:a#3"));
    assert_eq!(
        skipping.calls(),
        calls(&[("a", &[1, 2]), ("b", &[1]), ("a", &[4]), ("b", &[2])])
    );
}

#[tokio::test]
async fn each_batch_is_traced_with_records_events_time_and_lag() {
    let (logs, _guard) = capture(tracing::Level::DEBUG, true);
    let mut records = batch();
    let old = SystemTime::now() - Duration::from_secs(120);
    records[0].created = Some(old);
    records[6].created = Some(SystemTime::now());
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::json()))
        .with_projection(Recorder::default());
    let report = dispatcher.dispatch(&records).await.unwrap();
    // The lag is measured from the oldest record's creation time.
    assert!(report.max_lag.unwrap() >= Duration::from_secs(120));

    let lines = logs.lines_with("batch dispatched");
    assert_eq!(lines.len(), 1, "{}", logs.text());
    for field in [
        "dynamo_es.projection.dispatch",
        "aggregate_type=\"Account\"",
        "shard=\"shard-1\"",
        "records=7",
        "events=6",
        "dispatch_ms=",
        "lag_ms=",
    ] {
        assert!(lines[0].contains(field), "{field} in {}", lines[0]);
    }
}
