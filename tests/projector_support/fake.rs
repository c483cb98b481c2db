//! The projector on the fake DynamoDB Streams endpoint (`testing::streams`)
//! with checkpoints on the embedded emulator: setup, pushing events, and
//! reading the checkpoints back.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use dynamo_es::item::event_to_item;
use dynamo_es::projection::{CheckpointStore, Projector, StartPosition};
use dynamo_es::testing::streams::FakeStreams;
use dynamo_es::testing::{client_for, endpoint};
use dynamo_es::Codec;

use super::{
    checkpoints, projector, recording, run_to_end, run_until, start, wait_until, Recorder, Running,
    WAIT,
};
use crate::common::{deposit_event, Account};
use dynamo_es::projection::Error;

/// A fake stream and a checkpoint store with leases of `lease`.
pub async fn setup(lease: Duration) -> (FakeStreams, CheckpointStore) {
    let fake = FakeStreams::start().await.unwrap();
    let store = checkpoints(&client_for(&endpoint().unwrap()), lease).await;
    (fake, store)
}

/// A fake stream with one open shard, `shard`, holding deposits
/// `sequences` of aggregate `a`, and a checkpoint store with leases of 2 s.
pub async fn one_shard(
    shard: &str,
    sequences: std::ops::RangeInclusive<usize>,
) -> (FakeStreams, CheckpointStore) {
    let (fake, store) = setup(Duration::from_secs(2)).await;
    fake.add_shard(shard, None);
    push(&fake, shard, "a", sequences);
    (fake, store)
}

/// A stream of [`one_shard`] with deposits `1..=events`, projected as `p`
/// into a fresh recorder until checkpointed; the shard's checkpoint.
pub async fn checkpointed(
    shard: &str,
    events: usize,
) -> (FakeStreams, CheckpointStore, Recorder, String) {
    let (fake, store) = one_shard(shard, 1..=events).await;
    let recorder = Recorder::default();
    project_until(&fake, &store, &recorder, events).await;
    let checkpoint = by_shard(&store).await[shard].0.clone();
    (fake, store, recorder, checkpoint.expect("a checkpoint"))
}

/// Splits `parent`: a child `child` is created and `parent` closes.
pub fn split(fake: &FakeStreams, parent: &str, child: &str) {
    fake.add_shard(child, Some(parent));
    fake.close(parent);
}

/// Runs a projector as `p` into `recorder` until it applied `events`
/// events (see [`run_until`]).
pub async fn project_until(
    fake: &FakeStreams,
    store: &CheckpointStore,
    recorder: &Recorder,
    events: usize,
) {
    run_until(on_fake(fake, store, recorder, "p"), recorder, events).await;
}

/// Runs a projector as `p` into `recorder` to its end, or until `recorder`
/// has more than `limit` deliveries (see [`run_to_end`]).
pub async fn project_to_end(
    fake: &FakeStreams,
    store: &CheckpointStore,
    recorder: &Recorder,
    limit: usize,
) -> Option<Error> {
    run_to_end(on_fake(fake, store, recorder, "p"), recorder, limit).await
}

/// A projector on `fake` with checkpoints in `store`, as `owner`.
pub fn on_fake(
    fake: &FakeStreams,
    store: &CheckpointStore,
    recorder: &Recorder,
    owner: &str,
) -> Projector<Account> {
    let dispatcher = recording(recorder);
    projector(
        fake.client(),
        &fake.stream_arn(),
        store.clone(),
        dispatcher,
        owner,
    )
}

/// Appends deposits `sequences` of aggregate `id` to `shard`; returns
/// their stream sequence numbers.
pub fn push(
    fake: &FakeStreams,
    shard: &str,
    id: &str,
    sequences: std::ops::RangeInclusive<usize>,
) -> Vec<String> {
    sequences
        .map(|sequence| {
            let event = deposit_event("Account", id, sequence, 10);
            let pushed = fake.push_event(shard, &event, &Codec::default()).unwrap();
            pushed.expect("the shard is open")
        })
        .collect()
}

/// Appends deposit `sequence` of aggregate `id` to `shard`, created at
/// `created`; returns its stream sequence number.
pub fn push_at(
    fake: &FakeStreams,
    shard: &str,
    id: &str,
    sequence: usize,
    created: SystemTime,
) -> String {
    let event = deposit_event("Account", id, sequence, 10);
    let (item, _) = event_to_item(&event, &Codec::default()).unwrap();
    let pushed = fake.push_at(shard, item, created);
    pushed.expect("the shard is open")
}

/// Starts a projector as `p` into `recorder` at `StartPosition::Latest`,
/// and waits until it owns a shard and has read it.
pub async fn start_at_latest(
    fake: &FakeStreams,
    store: &CheckpointStore,
    recorder: &Recorder,
) -> Running {
    let projector = on_fake(fake, store, recorder, "p").with_start(StartPosition::Latest);
    let lag = projector.lag();
    let running = start(projector);
    wait_until("the shard is read", WAIT, || {
        fake.calls("GetRecords") > 0 && lag.shards().iter().any(|s| s.owned)
    })
    .await;
    running
}

/// The checkpoints by shard id: (checkpoint, finished, owner).
pub async fn by_shard(
    store: &CheckpointStore,
) -> HashMap<String, (Option<String>, bool, Option<String>)> {
    let list = store.list().await.unwrap();
    list.into_iter()
        .map(|c| (c.shard.shard_id, (c.checkpoint, c.finished, c.owner)))
        .collect()
}
