//! Feeds from the `EventsBySlice` index, on the embedded emulator: one
//! aggregate type read from the beginning while commits go on, a crash
//! mid-feed and a restart, two processes splitting the slices, writers
//! whose clocks run behind, and events written without slices until a
//! backfill gives them theirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod feed_support;
mod projector_support;

use std::time::{Duration, SystemTime};

use common::*;
use dynamo_es::item::{event_to_item, Item};
use dynamo_es::projection::feed::{
    FeedPositions, FeedProjector, FeedReport, FeedStart, SliceReader,
};
use dynamo_es::projection::{Dispatcher, Error, EventDecoder};
use dynamo_es::recode::{backfill_slices, BackfillOptions};
use dynamo_es::slice::{micros, Slices};
use dynamo_es::tables::{
    add_slice_index, check_slices, create_checkpoint_table, slices_of, TableOptions,
};
use dynamo_es::testing::{dynamodb, unique_name, TestTables};
use dynamo_es::{Codec, DynamoEventRepository, SnapshotPolicy};
use projector_support::Recorder;

const SLICES: u16 = 16;

fn slices() -> Slices {
    Slices::new(SLICES).unwrap()
}

/// Fresh tables whose events table has the slice index, and a checkpoint
/// table.
async fn sliced_tables() -> (TestTables, String) {
    dynamo_es::testing::sliced_dynamodb(slices()).await.unwrap()
}

fn writer(db: &TestTables) -> DynamoEventRepository {
    db.repository().with_slices(slices())
}

fn feed(
    db: &TestTables,
    checkpoints: &str,
    recorder: &Recorder,
    window: Duration,
) -> FeedProjector<Account> {
    let reader = SliceReader::new(db.client.clone(), &db.events, "Account", slices())
        .with_window(window)
        .with_max_events(25);
    let positions = FeedPositions::new(db.client.clone(), checkpoints, "accounts");
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
        .with_projection(recorder.clone());
    FeedProjector::new(reader, positions, dispatcher).with_start(FeedStart::Beginning)
}

/// Fresh sliced tables, and a feed of their `Account` events (from the
/// beginning, reading `window` behind the clock) into a fresh recorder.
async fn fresh_feed(window: Duration) -> (TestTables, String, Recorder, FeedProjector<Account>) {
    let (db, checkpoints) = sliced_tables().await;
    let recorder = Recorder::default();
    let projector = feed(&db, &checkpoints, &recorder, window);
    (db, checkpoints, recorder, projector)
}

/// Commits, on `aggregates` accounts `account-{first..}` and as many
/// `Other` aggregates, `rounds` commits each: one deposit, or three in one
/// transaction every third round. Returns the Account events committed.
async fn commit_rounds(
    repo: &DynamoEventRepository,
    first: usize,
    aggregates: usize,
    rounds: usize,
) -> usize {
    let accounts = cqrs::<Account>(repo.clone(), SnapshotPolicy::Never);
    let mut events = 0;
    for round in 0..rounds {
        for a in first..first + aggregates {
            let times = if round % 3 == 2 { 3 } else { 1 };
            accounts
                .execute(&format!("account-{a}"), AccountCommand::deposit(1, times))
                .await
                .unwrap();
            events += times;
            // `Other` commits nothing on its command: write its events
            // through the repository's store directly.
            feed_support::commit_other(repo, &format!("other-{a}"), 1).await;
        }
    }
    events
}

/// Runs passes until `recorder` holds `events` distinct events (or fails
/// after a generous bound), summing the reports.
async fn catch_up_to(
    projector: &mut FeedProjector<Account>,
    recorder: &Recorder,
    events: usize,
) -> FeedReport {
    let mut total = FeedReport::default();
    let started = std::time::Instant::now();
    while recorder.distinct() < events {
        let report = projector.catch_up().await.unwrap();
        total.events += report.events;
        total.duplicates += report.duplicates;
        total.reads += report.reads;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {events} events after a minute",
            recorder.distinct()
        );
    }
    total
}

/// Every account's recorded view equals its replay from the table.
async fn assert_views_equal_replays(
    db: &TestTables,
    recorder: &Recorder,
    accounts: impl Iterator<Item = String>,
) {
    for id in accounts {
        let (replayed, _) = replay(&db.repository(), &id).await;
        assert_eq!(recorder.view(&id), Some(replayed), "{id}");
    }
}

#[tokio::test]
async fn a_feed_reads_its_type_from_the_beginning_while_commits_go_on() {
    let (db, checkpoints) = sliced_tables().await;
    assert_eq!(
        slices_of(&db.client, &db.events).await.unwrap(),
        Some(slices())
    );
    let repo = writer(&db);
    let before = commit_rounds(&repo, 0, 20, 3).await;
    let recorder = Recorder::default();
    let mut projector = feed(&db, &checkpoints, &recorder, Duration::from_millis(500));
    // Commits go on while the feed reads.
    let writing = tokio::spawn({
        let repo = repo.clone();
        async move { commit_rounds(&repo, 10, 20, 3).await }
    });
    let first = projector.catch_up().await.unwrap();
    let during = writing.await.unwrap();
    let total = before + during;
    let rest = catch_up_to(&mut projector, &recorder, total).await;
    assert_eq!(recorder.distinct(), total);
    assert_eq!(
        recorder.gaps(),
        0,
        "an aggregate's events came out of order"
    );
    assert_eq!(recorder.redelivered(), 0, "an event was dispatched twice");
    // Only Account events were read: every index item read was dispatched
    // or dropped as one read again.
    assert_eq!(first.events + rest.events, total);
    assert_views_equal_replays(&db, &recorder, (0..30).map(|a| format!("account-{a}"))).await;
}

#[tokio::test]
async fn a_crash_mid_feed_and_a_restart_miss_nothing_and_repeat_at_most_a_batch() {
    let (db, checkpoints) = sliced_tables().await;
    let total = commit_rounds(&writer(&db), 0, 12, 4).await;
    // The first process dies in its fifth dispatch.
    let crashing = Recorder::with_hook(|calls| assert!(calls < 5, "the process dies"));
    let mut first = feed(&db, &checkpoints, &crashing, Duration::from_millis(200));
    let died = tokio::spawn(async move { first.catch_up().await }).await;
    assert!(died.unwrap_err().is_panic());
    let before_restart = crashing.distinct();
    assert!(
        before_restart > 0 && before_restart < total,
        "{before_restart}"
    );
    // A new process resumes from the saved positions.
    let recorder = Recorder::default();
    let mut second = feed(&db, &checkpoints, &recorder, Duration::from_millis(200));
    second.catch_up().await.unwrap();
    // Together they saw every event; the second saw only what the first
    // had not saved a position for (at most its last batch again).
    let seen: std::collections::BTreeSet<_> =
        crashing.log().into_iter().chain(recorder.log()).collect();
    assert_eq!(seen.len(), total);
    assert!(
        recorder.distinct() <= total - before_restart + 25,
        "{}",
        recorder.distinct()
    );
    assert!(recorder.distinct() >= total - before_restart);
    // Each aggregate's events still come in order in the second process.
    for (id, _) in recorder.log() {
        let sequences = recorder.sequences(&id);
        assert!(
            sequences.windows(2).all(|w| w[1] == w[0] + 1),
            "{id}: {sequences:?}"
        );
    }
}

#[tokio::test]
async fn two_processes_split_the_slices_and_never_share_one() {
    let (db, checkpoints) = sliced_tables().await;
    let total = commit_rounds(&writer(&db), 0, 16, 2).await;
    let (low, high) = (Recorder::default(), Recorder::default());
    let mut a = feed(&db, &checkpoints, &low, Duration::from_millis(200)).with_slices(0..8);
    let mut b = feed(&db, &checkpoints, &high, Duration::from_millis(200)).with_slices(8..SLICES);
    let (ra, rb) = tokio::join!(a.catch_up(), b.catch_up());
    ra.unwrap();
    rb.unwrap();
    assert_eq!(low.distinct() + high.distinct(), total);
    assert_eq!(low.redelivered() + high.redelivered(), 0);
    let low_ids: std::collections::BTreeSet<_> = low.log().into_iter().map(|(id, _)| id).collect();
    assert!(high.log().iter().all(|(id, _)| !low_ids.contains(id)));
    assert!(low.distinct() > 0 && high.distinct() > 0);
    // A third process on the first range: its first save finds the
    // position it read taken.
    commit_rounds(&writer(&db), 0, 16, 1).await;
    let stale = Recorder::default();
    let mut c = feed(&db, &checkpoints, &stale, Duration::from_millis(200)).with_slices(0..8);
    c.catch_up().await.unwrap_or_else(|err| panic!("{err}"));
    // `a` drops what `c` delivered (the feed's per-aggregate records say
    // so), but the next events it dispatches it cannot save.
    commit_rounds(&writer(&db), 0, 16, 1).await;
    let err = a.catch_up().await.unwrap_err();
    assert!(matches!(err, Error::FeedPositionTaken { .. }), "{err}");
}

/// Writes `event` as a writer whose clock reads `clock`.
async fn put_as_of(db: &TestTables, id: &str, sequence: usize, clock: SystemTime) {
    let event = deposit_event("Account", id, sequence, 1);
    let (mut item, _): (Item, _) = event_to_item(&event, &Codec::default()).unwrap();
    item.extend(slices().attributes("Account", id, micros(clock)));
    put(db, &db.events, item).await;
}

/// A feed (window 300 ms) that delivered event 1 of `id`, and event
/// `sequence` of `id` written since by a clock a minute behind.
async fn delivered_then_a_minute_behind(
    id: &str,
    sequence: usize,
) -> (TestTables, Recorder, FeedProjector<Account>) {
    let (db, _, recorder, mut projector) = fresh_feed(Duration::from_millis(300)).await;
    put_as_of(&db, id, 1, SystemTime::now()).await;
    projector.catch_up().await.unwrap();
    put_as_of(
        &db,
        id,
        sequence,
        SystemTime::now() - Duration::from_secs(60),
    )
    .await;
    (db, recorder, projector)
}

#[tokio::test]
async fn a_writer_behind_by_less_than_the_window_is_not_missed_and_is_warned_about() {
    let (db, _, recorder, mut projector) = fresh_feed(Duration::from_secs(4)).await;
    put_as_of(&db, "late", 1, SystemTime::now()).await;
    projector.catch_up().await.unwrap();
    assert_eq!(recorder.distinct(), 1);
    // Its next event comes from a clock 3 s behind, after the feed read.
    let (logs, _guard) = capture(tracing::Level::WARN, false);
    put_as_of(&db, "late", 2, SystemTime::now() - Duration::from_secs(3)).await;
    projector.catch_up().await.unwrap();
    assert_eq!(recorder.sequences("late"), [1, 2]);
    let warned = logs.lines_with("became visible in the slice index late");
    assert_eq!(warned.len(), 1, "{}", logs.text());
}

#[tokio::test]
async fn an_event_later_than_twice_the_window_is_read_by_key_when_its_successor_shows() {
    // Event 2 from a clock a minute behind: under the band reads start
    // in, never read from the index; event 3 shows it is missing.
    let (db, recorder, mut projector) = delivered_then_a_minute_behind("lost", 2).await;
    put_as_of(&db, "lost", 3, SystemTime::now()).await;
    let (logs, _guard) = capture(tracing::Level::WARN, false);
    let report = projector.catch_up().await.unwrap();
    assert_eq!(recorder.sequences("lost"), [1, 2, 3]);
    assert_eq!((report.events, report.recovered), (2, 1));
    let warned = logs.lines_with("were read from the table, not the slice index");
    assert_eq!(warned.len(), 1, "{}", logs.text());
    // Nothing comes twice, the audit included.
    projector.catch_up().await.unwrap();
    projector.audit(Duration::from_secs(600)).await.unwrap();
    assert_eq!(recorder.sequences("lost"), [1, 2, 3]);
}

#[tokio::test]
async fn an_audit_delivers_very_late_events_no_later_event_reveals() {
    let (db, checkpoints, recorder, mut projector) = fresh_feed(Duration::from_millis(300)).await;
    put_as_of(&db, "tail", 1, SystemTime::now()).await;
    put_as_of(&db, "busy", 1, SystemTime::now()).await;
    projector.catch_up().await.unwrap();
    // From a clock a minute behind, after the feed read: the last event of
    // `tail`, the first two of `fresh` (a new aggregate) and, to check
    // that audits do not repeat what reads deliver, one of `busy` on time.
    let behind = SystemTime::now() - Duration::from_secs(60);
    put_as_of(&db, "tail", 2, behind).await;
    put_as_of(&db, "fresh", 1, behind).await;
    put_as_of(&db, "fresh", 2, behind + Duration::from_millis(1)).await;
    put_as_of(&db, "busy", 2, SystemTime::now()).await;
    projector.catch_up().await.unwrap();
    assert_eq!(recorder.sequences("busy"), [1, 2]);
    let report = projector.audit(Duration::from_secs(600)).await.unwrap();
    assert_eq!((report.events, report.recovered), (3, 3));
    assert_eq!(recorder.sequences("tail"), [1, 2]);
    assert_eq!(recorder.sequences("fresh"), [1, 2]);
    // Audited again, and read on after a restart: nothing comes twice.
    let report = projector.audit(Duration::from_secs(600)).await.unwrap();
    assert_eq!(report.events, 0);
    let mut restarted = feed(&db, &checkpoints, &recorder, Duration::from_millis(300));
    restarted.catch_up().await.unwrap();
    restarted.audit(Duration::from_secs(600)).await.unwrap();
    assert_eq!(recorder.redelivered(), 0);
    assert_eq!(recorder.distinct(), 6);
    assert_eq!(recorder.gaps(), 0);
}

#[tokio::test]
async fn a_running_feed_with_audits_delivers_a_very_late_last_event() {
    let (db, checkpoints) = sliced_tables().await;
    let recorder = Recorder::default();
    put_as_of(&db, "tail", 1, SystemTime::now()).await;
    let feed = feed(&db, &checkpoints, &recorder, Duration::from_millis(200))
        .with_poll_interval(Duration::from_millis(10))
        .with_audit(Duration::from_secs(600), Duration::from_millis(100));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(feed.run(async move {
        let _ = stopped.await;
    }));
    projector_support::wait_until("the first event", Duration::from_secs(30), || {
        recorder.distinct() == 1
    })
    .await;
    // The last event of its aggregate, from a clock a minute behind: no
    // read sees it, the next audit does.
    put_as_of(&db, "tail", 2, SystemTime::now() - Duration::from_secs(60)).await;
    projector_support::wait_until("the late event", Duration::from_secs(30), || {
        recorder.distinct() == 2
    })
    .await;
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    assert_eq!(recorder.sequences("tail"), [1, 2]);
}

#[tokio::test]
async fn events_written_without_slices_join_the_feed_after_a_backfill() {
    let (db, checkpoints) = sliced_tables().await;
    // An upstream (or older) writer: no slices.
    let total = commit_rounds(&db.repository(), 0, 6, 2).await;
    let unsliced = 2 * u64::try_from(total).unwrap();
    let recorder = Recorder::default();
    let mut projector = feed(&db, &checkpoints, &recorder, Duration::from_millis(200));
    projector.catch_up().await.unwrap();
    assert_eq!(
        recorder.distinct(),
        0,
        "unsliced events are not in the index"
    );
    // The writers are upgraded: a sliced event after unsliced ones is held,
    // and its missing predecessor named.
    let upgraded = cqrs::<Account>(writer(&db), SnapshotPolicy::Never);
    upgraded
        .execute("account-0", AccountCommand::deposit(1, 1))
        .await
        .unwrap();
    let err = projector.catch_up().await.unwrap_err();
    assert!(
        matches!(&err, Error::FeedGap { reason, .. } if reason.contains("backfill")),
        "{err}"
    );
    // The backfill, stopped after 10 items and resumed, stamps the rest.
    let options = BackfillOptions {
        max_items: Some(10),
        ..BackfillOptions::default()
    };
    let first = backfill_slices(&db.client, &db.events, slices(), &options)
        .await
        .unwrap();
    assert_eq!(first.scanned, 10);
    let resumed = BackfillOptions {
        resume_after: first.resume_after.clone(),
        ..BackfillOptions::default()
    };
    let second = backfill_slices(&db.client, &db.events, slices(), &resumed)
        .await
        .unwrap();
    assert_eq!(second.resume_after, None);
    // Two types' unsliced events, less the one sliced event.
    assert_eq!(first.stamped + second.stamped, unsliced);
    assert_eq!(first.had_slice + second.had_slice, 1);
    // A second run finds nothing to do and changes nothing.
    let again = backfill_all(&db).await;
    assert_eq!((again.stamped, again.had_slice), (0, unsliced + 1));
    // A fresh feed from the beginning sees every account event in order.
    let fresh = Recorder::default();
    let other_checkpoints = unique_name("checkpoints");
    create_checkpoint_table(&db.client, &other_checkpoints)
        .await
        .unwrap();
    let mut projector = feed(&db, &other_checkpoints, &fresh, Duration::from_millis(200));
    catch_up_to(&mut projector, &fresh, total + 1).await;
    assert_eq!((fresh.gaps(), fresh.redelivered()), (0, 0));
    assert_views_equal_replays(&db, &fresh, (0..6).map(|a| format!("account-{a}"))).await;
}

#[tokio::test]
async fn a_table_keeps_its_slice_count() {
    let db = dynamodb().await.unwrap();
    assert_eq!(slices_of(&db.client, &db.events).await.unwrap(), None);
    let err = check_slices(&db.client, &db.events, slices())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no EventsBySlice index"), "{err}");
    let options = TableOptions::default().with_slices(slices());
    dynamo_es::tables::create_event_tables_with(
        &db.client,
        &db.events,
        &db.snapshots,
        options.clone(),
    )
    .await
    .unwrap();
    // Again: nothing changes.
    dynamo_es::tables::create_event_tables_with(&db.client, &db.events, &db.snapshots, options)
        .await
        .unwrap();
    check_slices(&db.client, &db.events, slices())
        .await
        .unwrap();
    let other = Slices::new(64).unwrap();
    let err = add_slice_index(&db.client, &db.events, other)
        .await
        .unwrap_err();
    assert!(matches!(err, dynamo_es::Error::TableSlices { .. }), "{err}");
    let err = check_slices(&db.client, &db.events, other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("16 slices"), "{err}");
}

fn sharing(
    db: &TestTables,
    checkpoints: &str,
    recorder: &Recorder,
    owner: &str,
) -> FeedProjector<Account> {
    feed(db, checkpoints, recorder, Duration::from_millis(200))
        .with_lease_duration(Duration::from_millis(300))
        .with_owner(owner)
}

#[tokio::test]
async fn feed_processes_share_the_slices_and_take_over_a_stopped_ones() {
    let (db, checkpoints) = sliced_tables().await;
    let total = commit_rounds(&writer(&db), 0, 16, 2).await;
    let (ra, rb) = (Recorder::default(), Recorder::default());
    let mut a = sharing(&db, &checkpoints, &ra, "a");
    // Alone, it takes every slice.
    let alone = a.balance().await.unwrap();
    assert_eq!((alone.alive, alone.held.len()), (1, usize::from(SLICES)));
    a.catch_up().await.unwrap();
    assert_eq!(ra.distinct(), total);
    // A second process joins: it takes half, the first gives them up.
    let mut b = sharing(&db, &checkpoints, &rb, "b");
    let joined = b.balance().await.unwrap();
    assert_eq!((joined.alive, joined.held.len()), (2, 8), "{joined:?}");
    let gave = a.balance().await.unwrap();
    assert_eq!((gave.lost.len(), gave.held.len()), (8, 8), "{gave:?}");
    assert!(gave.held.iter().all(|s| !joined.held.contains(s)));
    let more = commit_rounds(&writer(&db), 0, 16, 1).await;
    a.catch_up().await.unwrap();
    b.catch_up().await.unwrap();
    assert_eq!(
        ra.distinct() + rb.distinct(),
        total + more,
        "nothing missed"
    );
    assert_eq!(ra.redelivered() + rb.redelivered(), 0, "nothing twice");
    // The first process stops without a word: once its heartbeat has stood
    // still for the lease duration, the second takes its slices.
    drop(a);
    let started = std::time::Instant::now();
    loop {
        let round = b.balance().await.unwrap();
        if round.held.len() == usize::from(SLICES) {
            assert_eq!(round.alive, 1);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{round:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = commit_rounds(&writer(&db), 0, 16, 1).await;
    b.catch_up().await.unwrap();
    assert_eq!(ra.distinct() + rb.distinct(), total + more + last);
    // The first process's last saved positions were taken over: b saw no
    // event of its slices again.
    assert_eq!(rb.redelivered(), 0);
}

#[tokio::test]
async fn a_feed_process_that_stops_gives_its_slices_up_at_once() {
    let (db, checkpoints) = sliced_tables().await;
    commit_rounds(&writer(&db), 0, 8, 1).await;
    let (ra, rb) = (Recorder::default(), Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let a = sharing(&db, &checkpoints, &ra, "a");
    let running = tokio::spawn(a.run(async {
        let _ = stopped.await;
    }));
    let total = commit_rounds(&writer(&db), 8, 8, 1).await + 8;
    projector_support::wait_until(
        "the first process reads everything",
        Duration::from_secs(20),
        || ra.distinct() == total,
    )
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    // No heartbeat is left to wait out: the next process takes every slice
    // in its first round.
    let mut b = sharing(&db, &checkpoints, &rb, "b");
    let first = b.balance().await.unwrap();
    assert_eq!(
        (first.alive, first.held.len()),
        (1, usize::from(SLICES)),
        "{first:?}"
    );
    b.catch_up().await.unwrap();
    assert_eq!(rb.distinct(), 0, "everything was saved before it left");
}

/// Commits `times` deposits of 1 on account `id`, in one command.
async fn deposits(repo: &DynamoEventRepository, id: &str, times: usize) {
    cqrs::<Account>(repo.clone(), SnapshotPolicy::Never)
        .execute(id, AccountCommand::deposit(1, times))
        .await
        .unwrap();
}

/// A whole backfill of `db`'s events table.
async fn backfill_all(db: &TestTables) -> dynamo_es::recode::BackfillReport {
    backfill_slices(
        &db.client,
        &db.events,
        slices(),
        &BackfillOptions::default(),
    )
    .await
    .unwrap()
}

/// Passes until `recorder` was told of `deletions` deletions (or fails
/// after a generous bound).
async fn catch_up_to_deletions(
    projector: &mut FeedProjector<Account>,
    recorder: &Recorder,
    deletions: usize,
) {
    let started = std::time::Instant::now();
    while recorder.deletions().len() < deletions {
        projector.catch_up().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "told of {:?} after 20 s, not of {deletions} deletions",
            recorder.deletions()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh checkpoint table, and a feed of `db`'s accounts into `recorder`
/// positioned there.
async fn another_feed(db: &TestTables, recorder: &Recorder) -> FeedProjector<Account> {
    let checkpoints = unique_name("checkpoints");
    create_checkpoint_table(&db.client, &checkpoints)
        .await
        .unwrap();
    feed(db, &checkpoints, recorder, Duration::from_millis(200))
}

#[tokio::test]
async fn a_current_feed_is_told_of_a_deletion_once_after_every_event() {
    let (db, _, recorder, mut projector) = fresh_feed(Duration::from_millis(200)).await;
    let repo = writer(&db);
    // account-0 and account-1: 1 + 1 + 3 deposits each.
    let total = commit_rounds(&repo, 0, 2, 3).await;
    catch_up_to(&mut projector, &recorder, total).await;
    repo.delete_aggregate::<Account>("account-0").await.unwrap();
    catch_up_to_deletions(&mut projector, &recorder, 1).await;
    assert_eq!(
        recorder.deletions(),
        [("account-0".to_string(), 5, total)],
        "after every event"
    );
    assert_eq!(recorder.rows("account-0"), None);
    assert!(recorder.rows("account-1").is_some());
    // Told once: more passes and an audit bring nothing more.
    projector.catch_up().await.unwrap();
    projector.audit(Duration::from_secs(600)).await.unwrap();
    assert_eq!(recorder.deletions().len(), 1);
    assert_eq!((recorder.gaps(), recorder.after_deletion()), (0, 0));
}

#[tokio::test]
async fn a_feed_behind_while_the_events_are_deleted_ends_deleted_without_a_gap() {
    let (db, _, recorder, mut projector) = fresh_feed(Duration::from_millis(200)).await;
    let repo = writer(&db);
    deposits(&repo, "gone", 2).await;
    deposits(&repo, "kept", 1).await;
    catch_up_to(&mut projector, &recorder, 3).await;
    // While the feed is down: two more events, and the deletion removes
    // them before the feed reads them.
    deposits(&repo, "gone", 2).await;
    repo.delete_aggregate::<Account>("gone").await.unwrap();
    catch_up_to_deletions(&mut projector, &recorder, 1).await;
    assert_eq!(recorder.sequences("gone"), [1, 2]);
    assert_eq!(recorder.deletions(), [("gone".to_string(), 4, 3)]);
    assert_eq!((recorder.rows("gone"), recorder.gaps()), (None, 0));
    // A feed started after the deletion: only the tombstone is left.
    let fresh = Recorder::default();
    let mut projector = another_feed(&db, &fresh).await;
    catch_up_to_deletions(&mut projector, &fresh, 1).await;
    catch_up_to(&mut projector, &fresh, 1).await;
    assert!(fresh.sequences("gone").is_empty());
    assert_eq!(fresh.removed().get("gone"), Some(&4));
    assert_eq!(fresh.rows("kept"), recorder.rows("kept"));
}

#[tokio::test]
async fn events_a_tombstone_covers_that_are_still_in_the_table_come_first() {
    // Event 2 from a clock a minute behind (below the band reads start
    // in), then a deletion that wrote its tombstone and stopped before
    // deleting anything.
    let (db, recorder, mut projector) = delivered_then_a_minute_behind("late", 2).await;
    let stopped = dynamo_es::DeleteOptions::new().with_max_batches(0);
    writer(&db)
        .delete_aggregate_with("Account", "late", stopped, |_| {})
        .await
        .unwrap();
    catch_up_to_deletions(&mut projector, &recorder, 1).await;
    assert_eq!(recorder.sequences("late"), [1, 2]);
    assert_eq!(recorder.deletions(), [("late".to_string(), 2, 2)]);
}

#[tokio::test]
async fn an_event_missing_below_an_event_is_still_a_gap() {
    // Event 2 never written (lost), event 3 is: no tombstone accounts for 2.
    let (db, recorder, mut projector) = delivered_then_a_minute_behind("holed", 3).await;
    put_as_of(&db, "holed", 4, SystemTime::now()).await;
    let err = projector.catch_up().await.unwrap_err();
    assert!(
        matches!(&err, Error::FeedGap { event, .. } if event.ends_with("holed#2")),
        "{err}"
    );
    assert_eq!(recorder.sequences("holed"), [1]);
}

/// Passes events to a recorder, and fails its first deletion after
/// recording it: the process died after the dispatch, before the save.
struct DiesAfterDeletion {
    recorder: Recorder,
    died: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl dynamo_es::projection::Projection<Account> for std::sync::Arc<DiesAfterDeletion> {
    async fn project(
        &self,
        id: &str,
        events: &[cqrs_es::EventEnvelope<Account>],
    ) -> Result<(), Error> {
        dynamo_es::projection::Projection::project(&self.recorder, id, events).await
    }

    async fn deleted(&self, id: &str, last_sequence: usize) -> Result<(), Error> {
        dynamo_es::projection::Projection::deleted(&self.recorder, id, last_sequence).await?;
        if self.died.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        Err(Error::projection("the process died before saving"))
    }
}

#[tokio::test]
async fn a_deletion_delivered_again_after_a_restart_changes_nothing_more() {
    let (db, checkpoints) = sliced_tables().await;
    let recorder = Recorder::default();
    let dying = std::sync::Arc::new(DiesAfterDeletion {
        recorder: recorder.clone(),
        died: false.into(),
    });
    let process = || {
        let reader = SliceReader::new(db.client.clone(), &db.events, "Account", slices())
            .with_window(Duration::from_millis(200));
        let positions = FeedPositions::new(db.client.clone(), &checkpoints, "accounts");
        let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
            .with_projection(dying.clone());
        FeedProjector::new(reader, positions, dispatcher)
    };
    let repo = writer(&db);
    let total = commit_rounds(&repo, 0, 2, 3).await;
    let mut first = process();
    catch_up_to(&mut first, &recorder, total).await;
    repo.delete_aggregate::<Account>("account-1").await.unwrap();
    let started = std::time::Instant::now();
    let died = loop {
        match first.catch_up().await {
            Err(err) => break err,
            Ok(_) => assert!(
                started.elapsed() < Duration::from_secs(20),
                "no deletion after 20 s"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(died.to_string().contains("died"), "{died}");
    // The restart delivers the deletion again (its position was not
    // saved): the view drops the rows once, nothing is applied twice.
    let mut restarted = process();
    catch_up_to_deletions(&mut restarted, &recorder, 2).await;
    assert_eq!(
        recorder
            .deletions()
            .iter()
            .map(|(id, last, _)| (id.as_str(), *last))
            .collect::<Vec<_>>(),
        [("account-1", 5), ("account-1", 5)]
    );
    assert_eq!(
        recorder.removed(),
        std::collections::HashMap::from([("account-1".to_string(), 5)])
    );
    assert_eq!(recorder.distinct(), total);
    assert_eq!((recorder.after_deletion(), recorder.gaps()), (0, 0));
    assert!(recorder.rows("account-0").is_some());
}

#[tokio::test]
async fn a_deletion_without_a_slice_gets_one_from_the_backfill_and_reaches_feeds() {
    let (db, _, recorder, mut projector) = fresh_feed(Duration::from_millis(200)).await;
    // An older release deleted it: its tombstone has no slice.
    let old = db.repository();
    deposits(&old, "old", 3).await;
    old.delete_aggregate::<Account>("old").await.unwrap();
    let tombstone = || async {
        item_at(&db.client, &db.events, "Account:old", 4)
            .await
            .unwrap()
    };
    let before = tombstone().await;
    assert!(!before.contains_key(dynamo_es::slice::SLICE));
    let report = backfill_all(&db).await;
    assert_eq!(report.stamped, 1);
    let mut after = tombstone().await;
    assert!(after.remove(dynamo_es::slice::SLICE).is_some());
    assert!(after.remove(dynamo_es::slice::COMMIT_TIME).is_some());
    assert_eq!(after, before, "nothing else of the tombstone changes");
    catch_up_to_deletions(&mut projector, &recorder, 1).await;
    assert_eq!(recorder.deletions(), [("old".to_string(), 3, 0)]);
}

#[tokio::test]
async fn a_global_reader_returns_a_deletion_marked_once_and_never_fails_on_it() {
    let (db, checkpoints) = sliced_tables().await;
    let repo = writer(&db);
    deposits(&repo, "gone", 2).await;
    repo.delete_aggregate::<Account>("gone").await.unwrap();
    let reader = SliceReader::new(db.client.clone(), &db.events, "Account", slices())
        .with_window(Duration::from_millis(100));
    let positions = FeedPositions::new(db.client.clone(), &checkpoints, "global");
    let mut global = dynamo_es::projection::feed::GlobalReader::new(
        vec![reader],
        positions,
        FeedStart::Beginning,
    );
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    while out.is_empty() || started.elapsed() < Duration::from_millis(400) {
        out.extend(global.next().await.unwrap());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(out.len(), 1, "{out:?}");
    let decoder = EventDecoder::<Account>::new(Codec::default());
    assert_eq!(
        (
            out[0].aggregate_id.as_str(),
            out[0].sequence,
            out[0].deleted_through
        ),
        ("gone", 3, Some(2))
    );
    assert!(decoder.decode(&out[0].record).unwrap().is_none());
    let deletion = decoder.deletion(&out[0].record).unwrap().unwrap();
    assert_eq!(
        (deletion.aggregate_id.as_str(), deletion.last_sequence),
        ("gone", 2)
    );
}
