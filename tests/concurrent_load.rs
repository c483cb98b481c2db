//! A snapshotted load reads its snapshot and the newest events at once:
//! one sequential round trip in the common case, a second query only when
//! the newest events do not reach back to the snapshot, and in every
//! interleaving with concurrent commits the state a sequential load could
//! return.
//!
//! Round trips are counted by a gate in front of the emulator: it holds each
//! request until a second one arrives (or a second passes), so requests sent
//! concurrently always share a round and requests sent one after the other
//! never do, whatever the machine's speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use common::*;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::{Aggregate, AggregateError, EventStore};
use dynamo_es::testing::faults::{operation, Interpose, Interposed, Next};
use dynamo_es::testing::TestTables;
use dynamo_es::{Codec, DynamoEventRepository, DynamoStore, SnapshotPolicy};
use tokio::sync::{watch, Notify};

/// How long the gate holds a request that no other request joins.
const HOLD: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Connectors in front of the emulator.
// ---------------------------------------------------------------------------

/// A repository on `db`'s tables whose requests go through `http`.
fn repo_through(db: &TestTables, http: impl HttpClient + 'static) -> DynamoEventRepository {
    let config = db.client.config().to_builder().http_client(http);
    DynamoEventRepository::new(aws_sdk_dynamodb::Client::from_conf(config.build()))
        .with_tables(&db.events, &db.snapshots)
        .with_codec(Codec::json())
}

/// Holds each request until a second one arrives, or for [`HOLD`]: the
/// requests let through together form a round, and every request is logged
/// with its round.
type Gate = Interposed<GateState>;

#[derive(Debug)]
struct GateState {
    /// The open round and how many requests joined it.
    round: Mutex<(usize, usize)>,
    opened: watch::Sender<usize>,
    log: Mutex<Vec<(usize, String)>>,
}

/// A gate in front of a plain HTTP client.
fn new_gate() -> Gate {
    Interposed::plain(GateState {
        round: Mutex::new((0, 0)),
        opened: watch::channel(0).0,
        log: Mutex::default(),
    })
}

impl GateState {
    /// The operations of each round, in order, and forgets them.
    fn rounds(&self) -> Vec<Vec<String>> {
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        let mut rounds: Vec<(usize, Vec<String>)> = Vec::new();
        for (round, op) in log {
            match rounds.last_mut() {
                Some((last, ops)) if *last == round => ops.push(op),
                _ => rounds.push((round, vec![op])),
            }
        }
        rounds
            .into_iter()
            .map(|(_, mut ops)| {
                ops.sort();
                ops
            })
            .collect()
    }

    /// Closes `round` if it is still the open one.
    fn close(&self, round: usize) {
        let mut open = self.round.lock().unwrap();
        if open.0 == round {
            *open = (round + 1, 0);
            self.opened.send_replace(round + 1);
        }
    }
}

impl Interpose for GateState {
    fn call(self: Arc<Self>, request: HttpRequest, next: &Next) -> HttpConnectorFuture {
        let state = self;
        let round = {
            let mut open = state.round.lock().unwrap();
            let round = open.0;
            open.1 += 1;
            state.log.lock().unwrap().push((round, operation(&request)));
            round
        };
        if state.round.lock().unwrap().1 >= 2 {
            state.close(round);
        }
        let next = next.clone();
        HttpConnectorFuture::new(async move {
            let mut opened = state.opened.subscribe();
            // A bool: the watch guard must not live across the request.
            let joined = tokio::time::timeout(HOLD, opened.wait_for(|open| *open > round))
                .await
                .is_ok_and(|opened| opened.is_ok());
            if !joined {
                state.close(round);
            }
            next.call(request).await
        })
    }
}

/// Holds the first request of one operation until released, and signals
/// each answered request of any other operation.
#[derive(Debug)]
struct HoldFirst {
    operation: &'static str,
    held: Mutex<bool>,
    release: Notify,
    answered: Notify,
    log: Mutex<Vec<String>>,
}

impl HoldFirst {
    fn new(operation: &'static str) -> Interposed<Self> {
        Interposed::plain(HoldFirst {
            operation,
            held: Mutex::default(),
            release: Notify::new(),
            answered: Notify::new(),
            log: Mutex::default(),
        })
    }

    fn operations(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Interpose for HoldFirst {
    fn call(self: Arc<Self>, request: HttpRequest, next: &Next) -> HttpConnectorFuture {
        let op = operation(&request);
        self.log.lock().unwrap().push(op.clone());
        let hold =
            op == self.operation && !std::mem::replace(&mut *self.held.lock().unwrap(), true);
        let response = next.call(request);
        HttpConnectorFuture::new(async move {
            if hold {
                self.release.notified().await;
            }
            let response = response.await;
            if !hold {
                self.answered.notify_one();
            }
            response
        })
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// Commits `n` single-deposit commands on `id` through a store with `policy`.
async fn deposits(repo: &DynamoEventRepository, policy: SnapshotPolicy, id: &str, n: usize) {
    let cqrs = cqrs::<Account>(repo.clone(), policy);
    for amount in 1..=n {
        cqrs.execute(
            id,
            AccountCommand::deposit(i64::try_from(amount).unwrap(), 1),
        )
        .await
        .unwrap();
    }
}

/// The state of the first `upto` stored events of `id`.
async fn replay_upto(repo: &DynamoEventRepository, id: &str, upto: usize) -> Account {
    let events = repo.get_events::<Account>(id).await.unwrap();
    let mut state = Account::default();
    for event in events.into_iter().take(upto) {
        let envelope: cqrs_es::EventEnvelope<Account> = event.try_into().unwrap();
        state.apply(envelope.payload);
    }
    state
}

/// Asserts that the snapshot stored for `id` is the state of the events it
/// covers.
async fn assert_snapshot_is_a_replay(repo: &DynamoEventRepository, id: &str) {
    let snapshot = repo.get_snapshot::<Account>(id).await.unwrap();
    let snapshot = snapshot.unwrap_or_else(|| panic!("no snapshot of {id}"));
    let state: Account = serde_json::from_value(snapshot.aggregate).unwrap();
    assert_eq!(
        state,
        replay_upto(repo, id, snapshot.current_sequence).await
    );
}

/// A commit of one deposit of 1 from `loaded`, whatever its outcome.
async fn try_deposit(
    store: &DynamoStore<Account>,
    loaded: dynamo_es::DynamoAggregateContext<Account>,
) -> Result<Vec<cqrs_es::EventEnvelope<Account>>, AggregateError<AccountError>> {
    let events = vec![AccountEvent::Deposited { amount: 1 }];
    store.commit(events, loaded, no_metadata()).await
}

fn ops(list: &[&str]) -> Vec<String> {
    list.iter().map(|op| op.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Round trips.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshotted_load_is_one_round_trip() {
    let (db, repo) = json_tables().await;
    for (policy, commands) in [
        (SnapshotPolicy::Every(5), 12),
        (SnapshotPolicy::Every(5), 10),
        (SnapshotPolicy::Always, 7),
        (SnapshotPolicy::Every(2), 3),
    ] {
        let id = new_id();
        deposits(&repo, policy, &id, commands).await;
        let gate = new_gate();
        let store = DynamoStore::<Account>::new(repo_through(&db, gate.clone()), policy);
        let loaded = store.load_aggregate(&id).await.unwrap();
        // An aggregate store's current snapshot is read alone.
        let round: &[&str] = match policy {
            SnapshotPolicy::Always => &["GetItem"],
            _ => &["GetItem", "Query"],
        };
        assert_eq!(gate.rounds(), [ops(round)], "{policy:?} after {commands}");
        assert_eq!(loaded.current_sequence, commands);
        assert_eq!(loaded.aggregate, replay_upto(&repo, &id, commands).await);
        assert!(loaded.current_snapshot.is_some());
    }

    // No snapshot yet: the same single round, and every event.
    let id = new_id();
    deposits(&repo, SnapshotPolicy::Every(5), &id, 3).await;
    let gate = new_gate();
    let store =
        DynamoStore::<Account>::new(repo_through(&db, gate.clone()), SnapshotPolicy::Every(5));
    let loaded = store.load_aggregate(&id).await.unwrap();
    assert_eq!(gate.rounds(), [ops(&["GetItem", "Query"])]);
    assert_eq!(
        (loaded.current_sequence, loaded.current_snapshot),
        (3, None)
    );

    // An event store keeps its single query.
    let gate = new_gate();
    let store = DynamoStore::<Account>::new_event_store(repo_through(&db, gate.clone()));
    let loaded = store.load_aggregate(&id).await.unwrap();
    assert_eq!(gate.rounds(), [ops(&["Query"])]);
    assert_eq!(loaded.current_sequence, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_snapshot_reads_its_chunks_while_the_events_arrive() {
    let (db, repo) = json_tables().await;
    let id = new_id();
    let cqrs = cqrs::<Account>(repo.clone(), SnapshotPolicy::Always);
    for _ in 0..2 {
        cqrs.execute(&id, AccountCommand::note("x".repeat(250_000)))
            .await
            .unwrap();
    }
    let gate = new_gate();
    let store = DynamoStore::<Account>::new_aggregate_store(repo_through(&db, gate.clone()));
    let loaded = store.load_aggregate(&id).await.unwrap();
    // Two rounds: the head (current: no events to read), its chunks.
    assert_eq!(gate.rounds(), [ops(&["GetItem"]), ops(&["BatchGetItem"])]);
    assert_eq!(loaded.current_sequence, 2);
    assert_eq!(loaded.aggregate, replay_upto(&repo, &id, 2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_older_than_the_tail_falls_back_to_a_second_query() {
    let (db, repo) = json_tables().await;
    for policy in [SnapshotPolicy::Every(5), SnapshotPolicy::Always] {
        let id = new_id();
        deposits(&repo, policy, &id, 5).await;
        // Twelve events committed without a snapshot (as when snapshots are
        // skipped): more than the tail reads.
        for sequence in 6..=17 {
            repo.persist::<Account>(&[deposit_event(Account::TYPE, &id, sequence, 1)], None)
                .await
                .unwrap();
        }
        let gate = new_gate();
        let store = DynamoStore::<Account>::new(repo_through(&db, gate.clone()), policy);
        let mut loaded = store.load_aggregate(&id).await.unwrap();
        if policy == SnapshotPolicy::Always {
            // Written behind the aggregate store's back (the repository
            // does not read the head, so the claim stayed): the load
            // reads the head alone and returns the state at the claim;
            // a commit from it conflicts and removes the claim, and the
            // next load trusts no claim: the head and the tail at once,
            // which does not reach back (12 events), then the events.
            assert_eq!(gate.rounds(), [ops(&["GetItem"])]);
            assert_eq!(loaded.current_sequence, 5);
            assert_eq!(loaded.aggregate, replay_upto(&repo, &id, 5).await);
            let result = try_deposit(&store, loaded).await;
            assert!(
                matches!(result, Err(AggregateError::AggregateConflict)),
                "{result:?}"
            );
            gate.rounds();
            loaded = store.load_aggregate(&id).await.unwrap();
            assert_eq!(gate.rounds(), [ops(&["GetItem", "Query"]), ops(&["Query"])]);
        } else {
            assert_eq!(
                gate.rounds(),
                [ops(&["GetItem", "Query"]), ops(&["Query"])],
                "{policy:?}"
            );
        }
        assert_eq!(loaded.current_sequence, 17);
        assert_eq!(loaded.aggregate, replay_upto(&repo, &id, 17).await);
        // The snapshot is the base: the next commit snapshots correctly.
        let cqrs = cqrs_es::CqrsFramework::new(store, vec![], ());
        cqrs.execute(&id, AccountCommand::deposit(2, 3))
            .await
            .unwrap();
        assert_snapshot_is_a_replay(&repo, &id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_snapshot_replays_from_the_tail_when_it_holds_every_event() {
    let (db, repo) = json_tables().await;
    let upstream = upstream_repo(&db);
    // The head, then every event: an untrusted head makes no claim.
    for (events, rounds) in [(3usize, 2usize), (9, 2)] {
        let id = new_id();
        let stored = deposit_events(&id, events, 1);
        // Upstream's snapshot of a wrong state: never used.
        let wrong = serde_json::json!({"total": 999, "applied": 0, "notes": []});
        upstream
            .persist::<Account>(&stored, Some((id.clone(), wrong, 1)))
            .await
            .unwrap();
        let gate = new_gate();
        let store = DynamoStore::<Account>::new_aggregate_store(repo_through(&db, gate.clone()));
        let loaded = store.load_aggregate(&id).await.unwrap();
        assert_eq!(gate.rounds().len(), rounds, "{events} events");
        assert_eq!(loaded.aggregate, replay_upto(&repo, &id, events).await);
        assert_eq!(
            (loaded.current_sequence, loaded.current_snapshot),
            (events, Some(1))
        );
    }
}

// ---------------------------------------------------------------------------
// Races.
// ---------------------------------------------------------------------------

/// A load racing a commit, as [`race`] ran it.
struct Race {
    /// The aggregate.
    id: String,
    /// What the load sent through.
    http: Interposed<HoldFirst>,
    /// The snapshot before the commit.
    before: cqrs_es::persist::SerializedSnapshot,
    /// What the load returned.
    loaded: dynamo_es::DynamoAggregateContext<Account>,
}

/// Four deposits on a new aggregate through a store with `policy`, then a
/// load racing a commit of `commit` deposits that lands after the first
/// answer to the operation other than `held`, before the first `held`
/// request goes through.
async fn race(
    db: &TestTables,
    repo: &DynamoEventRepository,
    policy: SnapshotPolicy,
    held: &'static str,
    commit: usize,
) -> Race {
    let id = new_id();
    deposits(repo, policy, &id, 4).await;
    let before = stored_snapshot::<Account>(db, &id).await;
    let http = HoldFirst::new(held);
    let loaded = load_racing_a_commit(db, policy, &id, &http, commit).await;
    Race {
        id,
        http,
        before,
        loaded,
    }
}

/// Loads `id` through `http` while a commit of `commit` deposits lands
/// after `http` answered the first request of the other operation and
/// before it lets the first `held` request through.
async fn load_racing_a_commit(
    db: &TestTables,
    policy: SnapshotPolicy,
    id: &str,
    http: &Interposed<HoldFirst>,
    commit: usize,
) -> dynamo_es::DynamoAggregateContext<Account> {
    let store = DynamoStore::<Account>::new(repo_through(db, http.clone()), policy);
    let loading = {
        let id = id.to_string();
        tokio::spawn(async move { (store.load_aggregate(&id).await.unwrap(), store) })
    };
    http.answered.notified().await;
    cqrs::<Account>(db.repository().with_codec(Codec::json()), policy)
        .execute(id, AccountCommand::deposit(10, commit))
        .await
        .unwrap();
    http.release.notify_one();
    let (loaded, store) = loading.await.unwrap();
    drop(store);
    loaded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_newer_than_the_tail_is_completed_by_a_second_query() {
    // The query runs before a commit that the snapshot read sees. (An
    // aggregate store reads its current head alone: nothing to race.)
    let (db, repo) = json_tables().await;
    for policy in [SnapshotPolicy::Every(3)] {
        let Race {
            id, http, loaded, ..
        } = race(&db, &repo, policy, "GetItem", 3).await;
        assert_eq!(
            http.operations(),
            ["GetItem", "Query", "Query"],
            "{policy:?}"
        );
        // The sequential load after the commit: every event, the new snapshot.
        assert_eq!(loaded.current_sequence, 7);
        assert_eq!(loaded.aggregate, replay_upto(&repo, &id, 7).await);
        let snapshot = stored_snapshot::<Account>(&db, &id).await;
        assert_eq!(loaded.current_snapshot, Some(snapshot.current_snapshot));
        // Its commit succeeds.
        let store = DynamoStore::<Account>::new(repo.clone(), policy);
        commit_deposit(&store, loaded, 1).await;
        assert_snapshot_is_a_replay(&repo, &id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_newer_than_the_snapshot_is_the_sequential_load_in_that_order() {
    // The snapshot read runs before a commit that the query sees. (An
    // aggregate store reads its current head alone: nothing to race.)
    let (db, repo) = json_tables().await;
    for policy in [SnapshotPolicy::Every(3)] {
        let Race {
            id,
            http,
            before,
            loaded,
        } = race(&db, &repo, policy, "Query", 1).await;
        assert_eq!(http.operations(), ["GetItem", "Query"], "{policy:?}");
        // What the sequential load (snapshot before the commit, events
        // after it) returns: the state after the commit, the older version.
        assert_eq!(loaded.current_sequence, 5);
        assert_eq!(loaded.aggregate, replay_upto(&repo, &id, 5).await);
        assert_eq!(loaded.current_snapshot, Some(before.current_snapshot));
        // Its commit succeeds, or conflicts if it writes a snapshot over
        // the newer one; it never corrupts.
        let store = DynamoStore::<Account>::new(repo.clone(), policy);
        let result = try_deposit(&store, loaded).await;
        match policy {
            SnapshotPolicy::Always => {
                assert!(
                    matches!(result, Err(AggregateError::AggregateConflict)),
                    "{result:?}"
                )
            }
            _ => assert!(result.is_ok(), "{result:?}"),
        }
        assert_snapshot_is_a_replay(&repo, &id).await;
    }
}

/// Loads of `id`, each checked against a replay of the events up to its
/// `current_sequence` and followed by a commit from it, concurrent with
/// writers: returns how many of those commits succeeded and conflicted.
async fn loads_during_commits(policy: SnapshotPolicy) {
    let (_db, repo) = json_tables().await;
    let id = new_id();
    // Three events: a snapshot exists before any loader reads one, in both
    // modes (`Every(3)` writes its first at sequence 3).
    deposits(&repo, policy, &id, 3).await;
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let cqrs = cqrs::<Account>(repo.clone(), policy);
            let id = id.clone();
            tokio::spawn(async move {
                let mut acked = 0;
                while acked < 15 {
                    let times = 1 + (acked + w) % 3;
                    match cqrs.execute(&id, AccountCommand::deposit(1, times)).await {
                        Ok(()) => acked += 1,
                        Err(AggregateError::AggregateConflict) => {}
                        Err(err) => panic!("writer {w}: {err:?}"),
                    }
                }
            })
        })
        .collect();
    let loaders: Vec<_> = (0..3)
        .map(|_| {
            let repo = repo.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let store = DynamoStore::<Account>::new(repo.clone(), policy);
                let (mut committed, mut conflicts) = (0, 0);
                for _ in 0..15 {
                    let loaded = store.load_aggregate(&id).await.unwrap();
                    let sequence = loaded.current_sequence;
                    assert_eq!(
                        loaded.aggregate,
                        replay_upto(&repo, &id, sequence).await,
                        "{policy:?} at {sequence}"
                    );
                    // Any snapshot, read at any time, is a replay.
                    assert_snapshot_is_a_replay(&repo, &id).await;
                    let events = vec![AccountEvent::Deposited { amount: 100 }];
                    match store.commit(events, loaded, no_metadata()).await {
                        Ok(envelopes) => {
                            assert_eq!(envelopes[0].sequence, sequence + 1);
                            committed += 1;
                        }
                        Err(AggregateError::AggregateConflict) => conflicts += 1,
                        Err(err) => panic!("{err:?}"),
                    }
                }
                (committed, conflicts)
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut loader_commits = 0;
    for loader in loaders {
        let (committed, conflicts) = loader.await.unwrap();
        assert_eq!(committed + conflicts, 15);
        loader_commits += committed;
    }
    // Nothing lost, nothing duplicated: contiguous sequences, the writers'
    // and loaders' deposits all there, the snapshot and a load a replay.
    let (replayed, sequences) = replay(&repo, &id).await;
    assert!(sequences.iter().copied().eq(1..=sequences.len()));
    let writer_events: usize = (0..3)
        .map(|w| (0..15).map(|a| 1 + (a + w) % 3).sum::<usize>())
        .sum();
    assert_eq!(sequences.len(), 3 + writer_events + loader_commits);
    assert_eq!(
        replayed.total,
        6 + i64::try_from(writer_events + 100 * loader_commits).unwrap()
    );
    let loaded = DynamoStore::<Account>::new(repo.clone(), policy)
        .load_aggregate(&id)
        .await
        .unwrap();
    assert_eq!(loaded.aggregate, replayed);
    eprintln!("{policy:?}: {loader_commits} of 45 commits from concurrent loads succeeded");
}

test_per_policy!(loads_during_commits:
    loads_racing_commits_equal_a_replay_in_snapshot_mode => SnapshotPolicy::Every(3),
    loads_racing_commits_equal_a_replay_in_aggregate_mode => SnapshotPolicy::Always,
);
