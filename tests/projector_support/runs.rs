//! Running a projector or a rebuild for a test: on its own task until a
//! condition holds, to the end of its run, or a rebuild with no safety
//! margin; and what the tests assert about how a run ended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, Error, EventDecoder, Projection, Projector, Rebuild,
};
use dynamo_es::testing::streams::FakeStreams;
use dynamo_es::Codec;

use super::Recorder;
use crate::common::Account;

/// How long a test waits for a projector before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Waits (polling every 10 ms, at most `limit`) until `done()`; panics
/// with `what` if it never is.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A projector run on its own task, stopped gracefully by [`Running::stop`].
pub struct Running {
    pub task: tokio::task::JoinHandle<Result<(), Error>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Stops it gracefully and returns how its run ended.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

/// Runs `projector` on its own task.
pub fn start<A: Aggregate + 'static>(projector: Projector<A>) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(projector.run(async move {
        let _ = stopped.await;
    }));
    Running { task, stop }
}

/// Runs `projector` until `recorder` applied `events` events, then stops it
/// gracefully; panics with its error if it stops before.
pub async fn run_until(projector: Projector<Account>, recorder: &Recorder, events: usize) {
    let running = start(projector);
    wait_until(
        "every event is applied or the projector stopped",
        WAIT,
        || recorder.distinct() == events || running.task.is_finished(),
    )
    .await;
    assert!(
        !running.task.is_finished(),
        "the projector stopped: {:?}",
        running.stop().await
    );
    running.stop().await.unwrap();
}

/// Runs `projector` until its run ends, or `recorder` has more than
/// `limit` deliveries (then stops it); returns the run's error, if any.
pub async fn run_to_end(
    projector: Projector<Account>,
    recorder: &Recorder,
    limit: usize,
) -> Option<Error> {
    let running = start(projector);
    wait_until("the run ends or delivers too much", WAIT, || {
        running.task.is_finished() || recorder.delivered() > limit
    })
    .await;
    if running.task.is_finished() {
        return running.task.await.unwrap().err();
    }
    // Let it finish what it reads, to show what it delivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await.err()
}

/// Asserts that a run ended with `Error::Trimmed` on `shard` at
/// `checkpoint` (`"none"` for a shard without one); the message shows
/// what `recorder` was delivered.
#[track_caller]
pub fn assert_trimmed(err: Option<&Error>, shard: &str, checkpoint: &str, recorder: &Recorder) {
    let trimmed = match err {
        Some(Error::Trimmed {
            shard_id,
            checkpoint,
            ..
        }) => Some((shard_id.as_str(), checkpoint.as_str())),
        _ => None,
    };
    assert_eq!(
        trimmed,
        Some((shard, checkpoint)),
        "{err:?}; delivered {:?}",
        recorder.log()
    );
}

/// Commits `events` to fresh tables, waits until the records on the
/// stream so far are older than a rebuild starting now (whole
/// milliseconds), and rebuilds the projection of `store` from them into
/// `dispatcher` with no safety margin, describing `stream` if given
/// (`Rebuild::with_stream`).
pub async fn rebuild(
    store: &CheckpointStore,
    dispatcher: Dispatcher<Account>,
    events: &[SerializedEvent],
    stream: Option<&FakeStreams>,
) -> Result<(), Error> {
    let db = dynamo_es::testing::dynamodb().await.unwrap();
    if !events.is_empty() {
        db.repository()
            .persist::<Account>(events, None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(3)).await;
    let rebuild = Rebuild::new(db.client.clone(), &db.events, store.clone(), dispatcher)
        .with_safety_margin(Duration::ZERO);
    let rebuild = match stream {
        Some(fake) => rebuild.with_stream(fake.client(), &fake.stream_arn()),
        None => rebuild,
    };
    rebuild.run().await.map(|_| ())
}

/// Fails its first `failures` calls, then passes events on to a recorder.
struct Failing {
    failures: AtomicUsize,
    recorder: Recorder,
}

#[async_trait]
impl Projection<Account> for Failing {
    async fn project(&self, id: &str, events: &[EventEnvelope<Account>]) -> Result<(), Error> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(Error::projection("the view table is unavailable"));
        }
        self.recorder.project(id, events).await
    }
}

/// A dispatcher (default codec) whose projection fails its first
/// `failures` calls ("the view table is unavailable"), then passes events
/// on to `recorder`.
pub fn failing(failures: usize, recorder: &Recorder) -> Dispatcher<Account> {
    Dispatcher::new(EventDecoder::<Account>::new(Codec::default())).with_projection(Failing {
        failures: failures.into(),
        recorder: recorder.clone(),
    })
}
