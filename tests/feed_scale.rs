//! A feed at scale, on the embedded emulator: 10,000 events of one type over
//! 200 aggregates (ten-event commits), among events of another type, read
//! by three feed processes sharing the slices, one of which dies mid-batch
//! and another joins: every event reaches the exactly-once view once, in
//! order, and the other type is never read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod feed_support;
mod projector_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

use common::{deposit_event, replay, Account, Other};
use cqrs_es::persist::PersistedEventRepository;
use dynamo_es::item::event_to_item;
use dynamo_es::projection::feed::{FeedPositions, FeedProjector, FeedStart, SliceReader};
use dynamo_es::projection::{Dispatcher, EventDecoder};
use dynamo_es::slice::{micros, Slices};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoEventRepository};
use projector_support::Recorder;

const AGGREGATES: usize = 200;
const COMMITS: usize = 5;
const PER_COMMIT: usize = 10;
const EVENTS: usize = AGGREGATES * COMMITS * PER_COMMIT;
const LEASE: Duration = Duration::from_millis(300);

fn slices() -> Slices {
    Slices::new(16).unwrap()
}

/// `COMMITS` commits of `PER_COMMIT` events on each of `aggregates`
/// aggregates `{prefix}-{i}` of `aggregate_type`, eight writers at once:
/// the first commit of every tenth aggregate through the repository (a
/// transaction, with its slice), the others as the same items loaded in
/// batches (the emulator writes them much faster than transactions).
async fn write<A: cqrs_es::Aggregate + 'static>(
    repo: &DynamoEventRepository,
    db: &TestTables,
    aggregate_type: &'static str,
    prefix: &'static str,
    aggregates: usize,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let (repo, client, table) = (repo.clone(), db.client.clone(), db.events.clone());
        tasks.spawn(async move {
            let mut batch = Vec::new();
            for a in (writer..aggregates).step_by(8) {
                let id = format!("{prefix}-{a}");
                for commit in 0..COMMITS {
                    let events: Vec<_> = (1..=PER_COMMIT)
                        .map(|i| {
                            let sequence = commit * PER_COMMIT + i;
                            let amount = i64::try_from(sequence).unwrap();
                            deposit_event(aggregate_type, &id, sequence, amount)
                        })
                        .collect();
                    if commit == 0 && a.is_multiple_of(10) {
                        repo.persist::<A>(&events, None).await.unwrap();
                        continue;
                    }
                    for event in &events {
                        let (mut item, _) = event_to_item(event, &Codec::default()).unwrap();
                        let now = micros(SystemTime::now());
                        item.extend(slices().attributes(aggregate_type, &id, now));
                        batch.push(item);
                    }
                }
            }
            for chunk in batch.chunks(25) {
                let requests: Vec<WriteRequest> = chunk
                    .iter()
                    .map(|item| {
                        let put = PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .unwrap();
                        WriteRequest::builder().put_request(put).build()
                    })
                    .collect();
                let out = client
                    .batch_write_item()
                    .request_items(&table, requests)
                    .send()
                    .await
                    .unwrap();
                assert!(out.unprocessed_items.unwrap_or_default().is_empty());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

struct Process {
    feed: FeedProjector<Account>,
}

fn process(db: &TestTables, checkpoints: &str, recorder: &Recorder, owner: &str) -> Process {
    let reader = SliceReader::new(db.client.clone(), &db.events, "Account", slices())
        .with_window(Duration::from_millis(300))
        .with_max_events(400);
    let positions = FeedPositions::new(db.client.clone(), checkpoints, "scale");
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
        .with_projection(recorder.clone());
    let feed = FeedProjector::new(reader, positions, dispatcher)
        .with_start(FeedStart::Beginning)
        .with_lease_duration(LEASE)
        .with_owner(owner);
    Process { feed }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_reach_the_view_once_through_processes_that_die_and_join() {
    let (db, checkpoints) = dynamo_es::testing::sliced_dynamodb(slices()).await.unwrap();
    let repo = db.repository().with_slices(slices());
    let ((), ()) = tokio::join!(
        write::<Account>(&repo, &db, "Account", "acct", AGGREGATES),
        write::<Other>(&repo, &db, "Other", "other", 20),
    );

    // The hook kills the process that makes call `crash_at` (mid-batch:
    // earlier aggregates of its batch were applied, its position not saved).
    let (crash_at, calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let recorder = Recorder::with_hook({
        let (crash_at, calls) = (crash_at.clone(), calls.clone());
        move |call| {
            calls.store(call, Ordering::SeqCst);
            assert!(call != crash_at.load(Ordering::SeqCst), "the process dies");
        }
    });
    let mut processes: Vec<Option<Process>> = ["a", "b", "c"]
        .iter()
        .map(|owner| Some(process(&db, &checkpoints, &recorder, owner)))
        .collect();
    // They split the slices (a slice from the busiest per round).
    for _ in 0..6 {
        for process in processes.iter_mut().flatten() {
            process.feed.balance().await.unwrap();
        }
    }
    let started = Instant::now();
    let mut round = 0;
    while recorder.distinct() < EVENTS {
        round += 1;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {EVENTS} events after two minutes",
            recorder.distinct()
        );
        if round == 2 {
            // `a` restarts under its owner id: it reads its slices on from
            // their saved positions.
            processes[0] = Some(process(&db, &checkpoints, &recorder, "a"));
        }
        if round == 3 {
            processes.push(Some(process(&db, &checkpoints, &recorder, "d")));
        }
        for (index, slot) in processes.iter_mut().enumerate() {
            let Some(mut process) = slot.take() else {
                continue;
            };
            // `b` dies at the third call of its first pass.
            let dies = round == 1 && index == 1;
            if dies {
                crash_at.store(calls.load(Ordering::SeqCst) + 3, Ordering::SeqCst);
            }
            let ran = tokio::spawn(async move {
                process.feed.balance().await.unwrap();
                let report = process.feed.catch_up().await.unwrap();
                (process, report)
            })
            .await;
            crash_at.store(0, Ordering::SeqCst);
            // A panic: the process died (its slices pass on when its lease
            // runs out).
            if let Ok((process, _)) = ran {
                *slot = Some(process);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(processes[1].is_none(), "b died");

    assert_eq!(recorder.gaps(), 0);
    assert_eq!(recorder.distinct(), EVENTS);
    // Only the crashed batch came again.
    assert!(recorder.redelivered() <= 400, "{}", recorder.redelivered());
    assert!(recorder.log().iter().all(|(id, _)| id.starts_with("acct-")));
    for a in (0..AGGREGATES).step_by(37) {
        let id = format!("acct-{a}");
        let (replayed, _) = replay(&db.repository(), &id).await;
        assert_eq!(recorder.view(&id), Some(replayed), "{id}");
    }
}
