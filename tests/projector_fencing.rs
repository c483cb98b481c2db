//! The lease is kept while a batch's dispatch outlasts it: a competing
//! projector never takes the shard over in the middle of a slow dispatch,
//! and a renewal refused during one, or a lease that cannot be renewed for
//! its duration, abandons it without a checkpoint.
//! On the fake DynamoDB Streams endpoint; checkpoints and leases on the
//! embedded emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod projector_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::EventEnvelope;
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, Error, EventDecoder, Projection, Projector, ShardInfo,
};
use dynamo_es::testing::streams::FakeStreams;
use dynamo_es::testing::{client_for, endpoint};
use dynamo_es::Codec;

use common::Account;
use projector_support::fake::{by_shard, on_fake, push, setup};
use projector_support::{projector, start, wait_until, Recorder};

const WAIT: Duration = Duration::from_secs(30);

/// Counts calls that started, finished, and were dropped unfinished.
#[derive(Default)]
struct Calls {
    started: AtomicUsize,
    finished: AtomicUsize,
    cancelled: AtomicUsize,
}

/// A projection that sleeps `delay` in each call, then passes the events
/// on to a recorder.
#[derive(Clone)]
struct Slow {
    delay: Duration,
    recorder: Recorder,
    calls: Arc<Calls>,
}

/// Counts its call as cancelled if dropped before [`Unfinished::done`].
struct Unfinished(Option<Arc<Calls>>);

impl Unfinished {
    fn done(mut self) {
        self.0.take();
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(calls) = self.0.take() {
            calls.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait::async_trait]
impl Projection<Account> for Slow {
    async fn project(&self, id: &str, events: &[EventEnvelope<Account>]) -> Result<(), Error> {
        self.calls.started.fetch_add(1, Ordering::SeqCst);
        let unfinished = Unfinished(Some(self.calls.clone()));
        tokio::time::sleep(self.delay).await;
        unfinished.done();
        self.calls.finished.fetch_add(1, Ordering::SeqCst);
        self.recorder.project(id, events).await
    }
}

impl Slow {
    fn new(delay: Duration, recorder: &Recorder) -> Self {
        Slow {
            delay,
            recorder: recorder.clone(),
            calls: Arc::default(),
        }
    }

    fn dispatcher(&self) -> Dispatcher<Account> {
        Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
            .with_projection(self.clone())
    }

    fn count(&self, of: fn(&Calls) -> &AtomicUsize) -> usize {
        of(&self.calls).load(Ordering::SeqCst)
    }
}

/// How many times each (aggregate, sequence) was delivered, over all
/// `recorders`.
fn deliveries(recorders: &[&Recorder]) -> HashMap<(String, usize), usize> {
    let mut counts = HashMap::new();
    for recorder in recorders {
        for event in recorder.log() {
            *counts.entry(event).or_default() += 1;
        }
    }
    counts
}

/// A fake stream with three events on shard "s", a checkpoint store with
/// leases of `lease`, and a projector ("p") whose dispatch would take an
/// hour, recording into the recorder returned.
async fn endless(
    lease: Duration,
) -> (
    FakeStreams,
    CheckpointStore,
    Recorder,
    Slow,
    Projector<Account>,
) {
    let (fake, store) = setup(lease).await;
    fake.add_shard("s", None);
    push(&fake, "s", "a", 1..=3);
    let recorder = Recorder::default();
    let slow = Slow::new(Duration::from_secs(3600), &recorder);
    let projector = projector(
        fake.client(),
        &fake.stream_arn(),
        store.clone(),
        slow.dispatcher(),
        "p",
    );
    (fake, store, recorder, slow, projector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_lasting_several_leases_keeps_its_shard_and_each_event_is_dispatched_once() {
    let lease = Duration::from_millis(800);
    let (fake, store) = setup(lease).await;
    fake.add_shard("s", None);
    push(&fake, "s", "a", 1..=3);
    let last = push(&fake, "s", "b", 1..=3);
    // One batch, two aggregate runs of two lease durations each: its
    // dispatch lasts four lease durations.
    let first = Recorder::default();
    let slow = Slow::new(lease * 2, &first);
    let holder = projector(
        fake.client(),
        &fake.stream_arn(),
        store.clone(),
        slow.dispatcher(),
        "holder",
    );
    let holder = start(holder);
    wait_until("the slow dispatch started", WAIT, || {
        slow.count(|c| &c.started) == 1
    })
    .await;
    // A competitor looks for free and expired leases every 50 ms meanwhile.
    let second = Recorder::default();
    let taker = start(on_fake(&fake, &store, &second, "taker"));
    wait_until("the batch is dispatched", WAIT, || {
        slow.count(|c| &c.finished) == 2
    })
    .await;
    wait_until("the batch is checkpointed", WAIT, || {
        let store = store.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(by_shard(&store))["s"].0
                == last.last().cloned()
        })
    })
    .await;
    // Two more lease durations for a taker to (wrongly) step in.
    tokio::time::sleep(lease * 2).await;
    taker.stop().await.unwrap();
    holder.stop().await.unwrap();

    let counts = deliveries(&[&first, &second]);
    let mut expected: Vec<(String, usize)> = ["a", "b"]
        .iter()
        .flat_map(|id| (1..=3).map(move |sequence| (id.to_string(), sequence)))
        .collect();
    expected.sort();
    let mut delivered: Vec<(String, usize)> = counts.keys().cloned().collect();
    delivered.sort();
    assert_eq!(delivered, expected, "every event dispatched");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dispatched more than once: {twice:?}");
    assert_eq!(second.delivered(), 0, "the shard was never taken over");
    assert_eq!(slow.count(|c| &c.cancelled), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_refused_during_a_slow_dispatch_abandons_it_without_a_checkpoint() {
    let (fake, store, recorder, slow, projector) = endless(Duration::from_secs(2)).await;
    let lag = projector.lag();
    let running = start(projector);
    wait_until("the slow dispatch started", WAIT, || {
        slow.count(|c| &c.started) == 1
    })
    .await;

    // Another process takes the lease (its store sees the counter
    // unchanged for its 1 ms lease duration, between two heartbeats).
    let thief = CheckpointStore::new(client_for(&endpoint().unwrap()), store.table(), "accounts")
        .with_lease_duration(Duration::from_millis(1));
    let shard = ShardInfo {
        stream_arn: fake.stream_arn(),
        shard_id: "s".into(),
        parent_shard_id: None,
    };
    let started = std::time::Instant::now();
    while thief.acquire(&shard, "thief").await.unwrap().is_none() {
        assert!(started.elapsed() < WAIT, "the thief never took the lease");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The next renewal is refused: the dispatch is dropped unfinished.
    wait_until("the projector lets the shard go", WAIT, || {
        lag.shards().iter().any(|s| s.shard_id == "s" && !s.owned)
    })
    .await;
    let (checkpoint, _, owner) = by_shard(&store).await["s"].clone();
    assert_eq!(
        slow.count(|c| &c.cancelled),
        1,
        "the dispatch was abandoned"
    );
    assert_eq!(slow.count(|c| &c.finished), 0);
    assert_eq!(recorder.delivered(), 0);
    assert_eq!(checkpoint, None, "nothing checkpointed");
    assert_eq!(owner.as_deref(), Some("thief"));
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_for_its_duration_abandons_the_dispatch() {
    let (_fake, store, recorder, slow, projector) = endless(Duration::from_secs(1)).await;
    let run = tokio::spawn(projector.run(std::future::pending()));
    wait_until("the slow dispatch started", WAIT, || {
        slow.count(|c| &c.started) == 1
    })
    .await;
    // Renewals now fail (not with LeaseLost: the table is gone). The reader
    // may not know whether another process took its shard, so once a lease
    // duration passed without a renewal it abandons the dispatch; the run
    // ends with the error discovery met.
    let client = client_for(&endpoint().unwrap());
    client
        .delete_table()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let ended = tokio::time::timeout(WAIT, run).await;
    let ended = ended.expect("the run ended").unwrap();
    assert!(ended.is_err(), "{ended:?}");
    assert_eq!(
        slow.count(|c| &c.cancelled),
        1,
        "the dispatch was abandoned"
    );
    assert_eq!(slow.count(|c| &c.finished), 0);
    assert_eq!(recorder.delivered(), 0);
}
