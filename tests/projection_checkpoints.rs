//! `CheckpointStore`: checkpoints and leases in the checkpoint table. On the
//! embedded emulator: racing owners, takeover of a stopped owner, a stale
//! owner's writes refused, finished shards, listing. On canned responses:
//! what the emulator cannot stage (losing a conditional write to another
//! process between our read and our write, throttling).
//!
//! Leases here last 200 ms; the tests assert outcomes, never timings: a
//! takeover is asserted only after waiting longer than the lease, and a
//! live owner is kept live by renewing between every two observations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod projection_common;

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;
use dynamo_es::projection::{CheckpointStore, Error, Lease, ShardCheckpoint, ShardInfo};
use dynamo_es::tables::create_checkpoint_table;
use dynamo_es::testing::faults::{client_on, quick_retries, short_timeouts, Canned, Scripted};
use dynamo_es::testing::{client_for, endpoint, unique_name};
use serde_json::{json, Value};

const LEASE: Duration = Duration::from_millis(200);

/// A fresh checkpoint table and a store on it for `projection`.
async fn store(projection: &str) -> CheckpointStore {
    let client = client_for(&endpoint().unwrap());
    let table = unique_name("checkpoints");
    create_checkpoint_table(&client, &table).await.unwrap();
    CheckpointStore::new(client, &table, projection).with_lease_duration(LEASE)
}

/// Another process's store on the same table and projection (its own lease
/// observations).
fn other_process(store: &CheckpointStore) -> CheckpointStore {
    let client = client_for(&endpoint().unwrap());
    CheckpointStore::new(client, store.table(), store.projection()).with_lease_duration(LEASE)
}

fn shard(id: &str) -> ShardInfo {
    ShardInfo {
        stream_arn: "arn:aws:dynamodb:us-east-1:000000000000:table/Events/stream/1".into(),
        shard_id: id.into(),
        parent_shard_id: None,
    }
}

/// A fresh store (named after `test`), another process's store on the same
/// table, and `shard-1` leased by the first as owner `a`.
async fn leased_by_a(test: &str) -> (CheckpointStore, CheckpointStore, ShardInfo, Lease) {
    let a = store(test).await;
    let b = other_process(&a);
    let s = shard("shard-1");
    let lease = a.acquire(&s, "a").await.unwrap().unwrap();
    (a, b, s, lease)
}

/// Two stores acquire `shard` at once, each as its owner: exactly one wins,
/// and the stored item names the winner. The stored item.
async fn exactly_one_wins(
    (x, x_owner): (&CheckpointStore, &str),
    (y, y_owner): (&CheckpointStore, &str),
    shard: &ShardInfo,
) -> ShardCheckpoint {
    let (won_x, won_y) = tokio::join!(x.acquire(shard, x_owner), y.acquire(shard, y_owner));
    let (won_x, won_y) = (won_x.unwrap(), won_y.unwrap());
    assert!(
        won_x.is_some() != won_y.is_some(),
        "{}: {won_x:?} {won_y:?}",
        shard.shard_id
    );
    let winner = won_x.or(won_y).unwrap();
    let stored = x.get(&shard.shard_id).await.unwrap().unwrap();
    assert_eq!(stored.owner.as_deref(), Some(winner.owner()));
    stored
}

fn assert_lease_lost(err: Error, shard_id: &str, owner: &str) {
    match &err {
        Error::LeaseLost {
            shard_id: s,
            owner: o,
        } => assert_eq!((s.as_str(), o.as_str()), (shard_id, owner)),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    projection_common::assert_names(&err, &[shard_id, owner]);
}

#[tokio::test]
async fn two_owners_racing_for_new_shards_each_get_exactly_one_owner() {
    let a = store("race").await;
    let b = other_process(&a);
    for i in 0..20 {
        let stored = exactly_one_wins((&a, "a"), (&b, "b"), &shard(&format!("shard-{i}"))).await;
        assert_eq!(stored.lease_counter, 1);
    }
}

#[tokio::test]
async fn a_stopped_owner_is_taken_over_after_the_lease_and_its_writes_are_refused() {
    let (a, b, s, mut lease_a) = leased_by_a("takeover").await;
    a.checkpoint(&mut lease_a, "100").await.unwrap();

    // b sees a live lease: it only notes the counter.
    assert_eq!(b.acquire(&s, "b").await.unwrap(), None);
    // a stops heartbeating; a lease later the counter has not moved.
    tokio::time::sleep(LEASE + LEASE / 2).await;
    let mut lease_b = b.acquire(&s, "b").await.unwrap().expect("taken over");
    assert_eq!(lease_b.owner(), "b");
    assert_eq!(
        lease_b.checkpoint.as_deref(),
        Some("100"),
        "resumes from a's checkpoint"
    );
    b.checkpoint(&mut lease_b, "200").await.unwrap();

    // a wakes up: every write it tries is refused and changes nothing.
    assert_lease_lost(
        a.checkpoint(&mut lease_a, "150").await.unwrap_err(),
        "shard-1",
        "a",
    );
    assert_lease_lost(a.renew(&mut lease_a).await.unwrap_err(), "shard-1", "a");
    assert_lease_lost(a.finish(&mut lease_a).await.unwrap_err(), "shard-1", "a");
    assert_lease_lost(a.release(lease_a).await.unwrap_err(), "shard-1", "a");
    let stored = a.get("shard-1").await.unwrap().unwrap();
    assert_eq!(stored.checkpoint.as_deref(), Some("200"));
    assert_eq!(stored.owner.as_deref(), Some("b"));
    assert!(!stored.finished);
    assert_eq!(stored.lease_counter, lease_b.counter());
}

#[tokio::test]
async fn a_renewing_owner_is_never_taken_over_however_long_it_lives() {
    let (a, b, s, mut lease_a) = leased_by_a("live").await;
    for _ in 0..4 {
        assert_eq!(b.acquire(&s, "b").await.unwrap(), None);
        // More than a lease passes between b's looks, but a renewed in
        // between: b never sees the same counter twice.
        tokio::time::sleep(LEASE + LEASE / 2).await;
        a.renew(&mut lease_a).await.unwrap();
    }
    assert_eq!(b.acquire(&s, "b").await.unwrap(), None);
    assert_eq!(
        a.get("shard-1").await.unwrap().unwrap().owner.as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn two_takers_of_an_expired_lease_cannot_both_win() {
    let (a, b, s, _) = leased_by_a("expired-race").await;
    let c = other_process(&a);
    assert_eq!(b.acquire(&s, "b").await.unwrap(), None);
    assert_eq!(c.acquire(&s, "c").await.unwrap(), None);
    tokio::time::sleep(LEASE + LEASE / 2).await;
    let stored = exactly_one_wins((&b, "b"), (&c, "c"), &s).await;
    assert_eq!(stored.lease_counter, 2);
}

#[tokio::test]
async fn a_released_lease_is_free_at_once_and_keeps_its_checkpoint() {
    let (a, b, s, mut lease) = leased_by_a("release").await;
    a.checkpoint(&mut lease, "7").await.unwrap();
    a.release(lease).await.unwrap();
    assert_eq!(a.get("shard-1").await.unwrap().unwrap().owner, None);
    let lease = b.acquire(&s, "b").await.unwrap().expect("free at once");
    assert_eq!(lease.checkpoint.as_deref(), Some("7"));
}

#[tokio::test]
async fn an_owner_restarting_with_its_id_takes_its_lease_back_at_once() {
    let (a, restarted, s, mut lease) = leased_by_a("restart").await;
    a.checkpoint(&mut lease, "9").await.unwrap();
    let lease = restarted.acquire(&s, "a").await.unwrap().expect("its own");
    assert_eq!(lease.checkpoint.as_deref(), Some("9"));
}

#[tokio::test]
async fn a_finished_shard_is_listed_finished_so_its_children_may_start() {
    let a = store("finish").await;
    let parent = shard("shard-parent");
    let child = ShardInfo {
        parent_shard_id: Some("shard-parent".into()),
        ..shard("shard-child")
    };
    let mut lease = a.acquire(&parent, "a").await.unwrap().unwrap();
    let created = SystemTime::now();
    a.checkpoint_at(&mut lease, "50", Some(created))
        .await
        .unwrap();
    let listed = a.list().await.unwrap();
    assert!(!listed[0].finished, "not finished before finish");

    a.finish(&mut lease).await.unwrap();
    assert!(lease.finished);
    a.release(lease).await.unwrap();
    a.acquire(&child, "a").await.unwrap().unwrap();

    let listed = a.list().await.unwrap();
    let ids: Vec<_> = listed.iter().map(|s| s.shard.shard_id.as_str()).collect();
    assert_eq!(ids, ["shard-child", "shard-parent"]);
    let (child_row, parent_row) = (&listed[0], &listed[1]);
    assert!(parent_row.finished && !child_row.finished);
    assert_eq!(parent_row.checkpoint.as_deref(), Some("50"));
    let recorded = parent_row.checkpoint_created.unwrap();
    let off = recorded
        .duration_since(created)
        .unwrap_or_else(|e| e.duration());
    assert!(
        off < Duration::from_millis(1),
        "stored in milliseconds: {off:?}"
    );
    assert_eq!(
        child_row.shard.parent_shard_id.as_deref(),
        Some("shard-parent")
    );
    // Acquiring a finished shard again says so.
    let again = a.acquire(&parent, "b").await.unwrap().unwrap();
    assert!(again.finished);
}

#[tokio::test]
async fn listing_shows_only_this_projections_shards() {
    let a = store("listed").await;
    let other = CheckpointStore::new(a_client(), a.table(), "listed-other");
    a.acquire(&shard("s1"), "a").await.unwrap().unwrap();
    a.acquire(&shard("s2"), "a").await.unwrap().unwrap();
    other.acquire(&shard("s1"), "a").await.unwrap().unwrap();
    let ids: Vec<_> = a
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.shard.shard_id)
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    assert_eq!(other.list().await.unwrap().len(), 1);
    assert_eq!(a.start_after().await.unwrap(), None);
}

fn a_client() -> Client {
    client_for(&endpoint().unwrap())
}

// ---------------------------------------------------------------------------
// On canned responses.
// ---------------------------------------------------------------------------

/// A store whose client answers with `responses`, with `attempts` attempts
/// per call.
fn canned(responses: Vec<Canned>, attempts: u32) -> (CheckpointStore, Scripted) {
    let http = Scripted::replying(responses);
    let client = client_on(http.clone(), quick_retries(attempts), short_timeouts());
    let store = CheckpointStore::new(client, "Checkpoints", "p").with_lease_duration(LEASE);
    (store, http)
}

/// A `GetItem` answer: shard `shard-1` of projection `p`, held by `owner`
/// (if any) at `counter`.
fn held(owner: Option<&str>, counter: u64) -> Canned {
    let mut item = json!({
        "LeaseKey": {"S": "p#shard-1"},
        "Projection": {"S": "p"},
        "StreamArn": {"S": "arn"},
        "ShardId": {"S": "shard-1"},
        "Finished": {"BOOL": false},
        "LeaseCounter": {"N": counter.to_string()},
    });
    if let Some(owner) = owner {
        item["Owner"] = json!({"S": owner});
    }
    Canned::ok(json!({ "Item": item }))
}

fn condition_failed() -> Canned {
    Canned::dynamo_error("ConditionalCheckFailedException", json!({}))
}

fn counter(value: u64) -> Canned {
    Canned::ok(json!({"Attributes": {"LeaseCounter": {"N": value.to_string()}}}))
}

/// `shard-1` acquired by owner `a` on a canned store.
async fn acquired(store: &CheckpointStore) -> Lease {
    store
        .acquire(&shard("shard-1"), "a")
        .await
        .unwrap()
        .expect("acquired")
}

/// The `request`th request `http` received (from 0) is a conditional write
/// with `condition`, sent with `values` (by placeholder).
#[track_caller]
fn assert_conditional_write(
    http: &Scripted,
    request: usize,
    condition: &str,
    values: &[(&str, Value)],
) {
    let body = &http.requests()[request].body;
    assert_eq!(body["ConditionExpression"], condition);
    for (placeholder, value) in values {
        assert_eq!(
            &body["ExpressionAttributeValues"][placeholder], value,
            "{placeholder}"
        );
    }
}

#[tokio::test]
async fn losing_the_create_race_between_read_and_write_is_none() {
    let (store, http) = canned(vec![Canned::ok(json!({})), condition_failed()], 1);
    assert_eq!(store.acquire(&shard("shard-1"), "a").await.unwrap(), None);
    assert_eq!(http.operations(), ["GetItem", "PutItem"]);
    assert_conditional_write(&http, 1, "attribute_not_exists(#key)", &[]);
}

#[tokio::test]
async fn a_free_lease_taken_by_another_between_read_and_write_is_none() {
    let (store, http) = canned(vec![held(None, 4), condition_failed()], 1);
    assert_eq!(store.acquire(&shard("shard-1"), "a").await.unwrap(), None);
    assert_conditional_write(
        &http,
        1,
        "#counter = :seen AND attribute_not_exists(#owner)",
        &[(":seen", json!({"N": "4"})), (":next", json!({"N": "5"}))],
    );
}

#[tokio::test]
async fn an_expired_lease_renewed_just_before_the_takeover_is_none() {
    // Two reads of counter 4 a lease apart; the owner's heartbeat lands
    // between our second read and our write.
    let (store, http) = canned(
        vec![held(Some("b"), 4), held(Some("b"), 4), condition_failed()],
        1,
    );
    assert_eq!(store.acquire(&shard("shard-1"), "a").await.unwrap(), None);
    tokio::time::sleep(LEASE + LEASE / 2).await;
    assert_eq!(store.acquire(&shard("shard-1"), "a").await.unwrap(), None);
    assert_eq!(http.operations(), ["GetItem", "GetItem", "UpdateItem"]);
    assert_conditional_write(
        &http,
        2,
        "#counter = :seen AND #owner = :holder",
        &[(":holder", json!({"S": "b"}))],
    );
}

#[tokio::test]
async fn throttled_writes_are_retried_then_a_typed_error_naming_the_table() {
    // Renew throttled twice, then applied: retried by the SDK.
    let (store, http) = canned(
        vec![
            held(None, 1),
            counter(2),
            Canned::throughput_exceeded(),
            Canned::throughput_exceeded(),
            counter(3),
        ],
        3,
    );
    let mut lease = acquired(&store).await;
    store.renew(&mut lease).await.unwrap();
    assert_eq!(lease.counter(), 3);
    assert_eq!(
        http.operations(),
        [
            "GetItem",
            "UpdateItem",
            "UpdateItem",
            "UpdateItem",
            "UpdateItem"
        ]
    );

    // Throttled past the retries: a typed error, the lease unchanged.
    let (store, _) = canned(
        vec![
            held(None, 1),
            counter(2),
            Canned::throughput_exceeded(),
            Canned::throughput_exceeded(),
        ],
        2,
    );
    let mut lease = acquired(&store).await;
    let err = store.checkpoint(&mut lease, "5").await.unwrap_err();
    match &err {
        Error::Store(dynamo_es::Error::Throttled {
            operation, table, ..
        }) => {
            assert_eq!((*operation, table.as_str()), ("UpdateItem", "Checkpoints"));
        }
        other => panic!("expected a throttling error, got {other:?}"),
    }
    assert_eq!(lease.checkpoint, None);
    assert_eq!(lease.counter(), 2);
}

#[tokio::test]
async fn a_checkpoint_refused_by_its_condition_is_lease_lost() {
    let (store, http) = canned(vec![held(None, 1), counter(2), condition_failed()], 1);
    let mut lease = acquired(&store).await;
    assert_lease_lost(
        store.checkpoint(&mut lease, "9").await.unwrap_err(),
        "shard-1",
        "a",
    );
    assert_eq!(lease.checkpoint, None);
    assert_conditional_write(
        &http,
        2,
        "#owner = :owner",
        &[(":checkpoint", json!({"S": "9"}))],
    );
}

#[tokio::test]
async fn a_renew_answered_without_the_new_counter_still_counts_once() {
    let (store, _) = canned(vec![held(None, 1), counter(2), Canned::written()], 1);
    let mut lease = acquired(&store).await;
    store.renew(&mut lease).await.unwrap();
    assert_eq!(lease.counter(), 3);
}
