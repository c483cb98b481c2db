//! The projector on the fake DynamoDB Streams endpoint (`testing::streams`)
//! with checkpoints on the embedded emulator: setup, pushing events, and
//! reading the checkpoints back.

use std::collections::HashMap;
use std::time::Duration;

use dynamo_es::projection::{CheckpointStore, Projector};
use dynamo_es::testing::streams::FakeStreams;
use dynamo_es::testing::{client_for, endpoint};
use dynamo_es::Codec;

use super::{checkpoints, projector, recording, Recorder};
use crate::common::{deposit_event, Account};

/// A fake stream and a checkpoint store with leases of `lease`.
pub async fn setup(lease: Duration) -> (FakeStreams, CheckpointStore) {
    let fake = FakeStreams::start().await.unwrap();
    let store = checkpoints(&client_for(&endpoint().unwrap()), lease).await;
    (fake, store)
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

/// The checkpoints by shard id: (checkpoint, finished, owner).
pub async fn by_shard(
    store: &CheckpointStore,
) -> HashMap<String, (Option<String>, bool, Option<String>)> {
    let list = store.list().await.unwrap();
    list.into_iter()
        .map(|c| (c.shard_id, (c.checkpoint, c.finished, c.owner)))
        .collect()
}
