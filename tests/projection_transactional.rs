//! Transactional projections (`Transactional`, `TransactionalProjection`,
//! `TypedViews`) on the embedded emulator: read models of any shape
//! (orders per customer, events per day) equal a recomputation from the
//! events after lost commit answers, an abrupt stop, a restart and a
//! competing projector; a Lambda batch refused at its third aggregate; a
//! rebuild overlapping the live stream; a batch split over 100 items.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[cfg(feature = "lambda")]
mod lambda_json;
mod projection_common;
mod projector_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::EventEnvelope;
use dynamo_es::item::{s, VIEW_ID};
use dynamo_es::projection::{
    CheckpointStore, Dispatcher, Error, EventDecoder, Projector, Rebuild, Transactional, TypedViews,
};
use dynamo_es::tables::create_view_table;
use dynamo_es::testing::faults::losing_responses;
use dynamo_es::testing::unique_name;
use dynamo_es::Codec;

use common::{deposit_event, Account, AccountEvent};
use projection_common::{
    add_to, applied_sequence, stream_tables, streams_client, totals_writes, Totals,
};
use projector_support::{checkpoints, projector, start, Running};

const CUSTOMERS: usize = 50;
const ORDERS_PER_CUSTOMER: usize = 10;
const EVENTS_PER_ORDER: usize = 10;
const WAIT: Duration = Duration::from_secs(120);

/// A customer's orders: each order's total, and how many events made it.
type CustomerOrders = Totals;

/// Orders are aggregates `c07-o3`: customer `c07`.
fn customer_of(order: &str) -> String {
    order.split('-').next().unwrap().to_string()
}

fn amount(event: &EventEnvelope<Account>) -> i64 {
    match &event.payload {
        AccountEvent::Deposited { amount } => *amount,
        AccountEvent::Noted { .. } => 0,
    }
}

/// The "day" of an event: a bucket of its amount (the events of a test are
/// all committed within seconds).
fn day_of(amount: i64) -> String {
    format!("day-{}", amount % 7)
}

/// Orders per customer (a [`TypedViews`] table) and events per day (a
/// counter table, `Count` added to), from one handler; optionally a
/// `ConditionCheck` that fails for one aggregate, and a call that never
/// returns (a process dying) the first time it sees one aggregate.
struct OrdersAndDays {
    client: Client,
    customers: TypedViews<CustomerOrders>,
    days: String,
    refuse: Option<String>,
    hang_once_on: Mutex<Option<String>>,
    hung: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl OrdersAndDays {
    async fn new(client: &Client) -> Self {
        let (customers, days) = (unique_name("customers"), unique_name("days"));
        create_view_table(client, &customers).await.unwrap();
        create_view_table(client, &days).await.unwrap();
        OrdersAndDays {
            client: client.clone(),
            customers: TypedViews::new(client.clone(), &customers),
            days,
            refuse: None,
            hang_once_on: Mutex::new(None),
            hung: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// A second handler on the same views (for a second source).
    fn same_views(&self) -> Self {
        OrdersAndDays {
            client: self.client.clone(),
            customers: self.customers.clone(),
            days: self.days.clone(),
            refuse: None,
            hang_once_on: Mutex::new(None),
            hung: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// The stored per-day counts.
    async fn day_counts(&self) -> BTreeMap<String, u64> {
        let items = dynamo_es::testing::scan_all(&self.client, &self.days)
            .await
            .unwrap();
        items
            .iter()
            .map(|item| {
                let day = item[VIEW_ID].as_s().unwrap().clone();
                (day, item["Count"].as_n().unwrap().parse().unwrap())
            })
            .collect()
    }

    async fn counted(&self) -> u64 {
        self.day_counts().await.values().sum()
    }
}

projection_common::transactional_writes!(OrdersAndDays, Account, |self, events| {
    self.calls.fetch_add(1, Ordering::SeqCst);
    let hang = {
        let mut hang = self.hang_once_on.lock().unwrap();
        hang.as_ref()
            .is_some_and(|id| events.iter().any(|e| &e.aggregate_id == id))
            && hang.take().is_some()
    };
    if hang {
        // The process "dies" here: the test aborts it while it waits.
        self.hung.store(true, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    let mut by_customer: BTreeMap<String, Vec<&EventEnvelope<Account>>> = BTreeMap::new();
    let mut by_day: BTreeMap<String, u64> = BTreeMap::new();
    for event in events {
        by_customer
            .entry(customer_of(&event.aggregate_id))
            .or_default()
            .push(event);
        *by_day.entry(day_of(amount(event))).or_default() += 1;
    }
    // One write per item: the handler merges its changes.
    let mut writes = totals_writes(&self.customers, by_customer, amount).await?;
    for (day, count) in by_day {
        let count = i64::try_from(count).unwrap();
        writes.push(add_to(&self.days, &day, &[("Count", count)]));
    }
    if let Some(refused) = &self.refuse {
        if events.iter().any(|e| &e.aggregate_id == refused) {
            let check = ConditionCheck::builder()
                .table_name(&self.days)
                .key(VIEW_ID, s("no-such-day"))
                .condition_expression("attribute_exists(#id)")
                .expression_attribute_names("#id", VIEW_ID)
                .build()
                .unwrap();
            writes.push(TransactWriteItem::builder().condition_check(check).build());
        }
    }
    Ok(writes)
});

/// The order ids: `customers` customers of `orders` orders each.
fn order_ids(customers: usize, orders: usize) -> Vec<String> {
    (0..customers)
        .flat_map(|c| (0..orders).map(move |o| format!("c{c:02}-o{o}")))
        .collect()
}

/// Commits `events` deposits on each order, one commit per order (eight
/// writers at once, or one, in order, if `in_order`); event `k` of the
/// `i`th order deposits `i * 10 + k`.
async fn commit_orders(
    db: &dynamo_es::testing::TestTables,
    orders: &[String],
    events: usize,
    in_order: bool,
) {
    let writers = if in_order { 1 } else { 8 };
    let repo = Arc::new(db.repository());
    let numbered: Vec<(i64, String)> = orders
        .iter()
        .enumerate()
        .map(|(i, order)| (i64::try_from(i).unwrap(), order.clone()))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in numbered.chunks(numbered.len().div_ceil(writers)) {
        let (repo, chunk) = (repo.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for (i, order) in chunk {
                let batch: Vec<_> = (1..=events)
                    .map(|k| {
                        deposit_event("Account", &order, k, i * 10 + i64::try_from(k).unwrap())
                    })
                    .collect();
                repo.persist::<Account>(&batch, None).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Waits until `handler` counted `events` events, or `task` ended.
async fn wait_counted(
    handler: &OrdersAndDays,
    events: u64,
    task: &tokio::task::JoinHandle<Result<(), Error>>,
) {
    let started = std::time::Instant::now();
    while handler.counted().await < events && !task.is_finished() {
        assert!(
            started.elapsed() < WAIT,
            "timed out waiting for {events} events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fresh tables with `orders` committed in order, `events` each; the
/// stream's ARN, a checkpoint store and the handler on fresh views.
async fn small_world(
    orders: &[String],
    events: usize,
) -> (
    dynamo_es::testing::TestTables,
    String,
    CheckpointStore,
    OrdersAndDays,
) {
    let (db, arn) = stream_tables().await;
    commit_orders(&db, orders, events, true).await;
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let handler = OrdersAndDays::new(&db.client).await;
    (db, arn, store, handler)
}

/// What the views must hold: recomputed from every stored event.
async fn recompute(
    db: &dynamo_es::testing::TestTables,
    orders: &[String],
) -> (BTreeMap<String, CustomerOrders>, BTreeMap<String, u64>, u64) {
    let repo = db.repository();
    let (mut customers, mut days) = (BTreeMap::new(), BTreeMap::new());
    let mut total = 0;
    for order in orders {
        for event in repo.get_events::<Account>(order).await.unwrap() {
            let amount = match serde_json::from_value(event.payload).unwrap() {
                AccountEvent::Deposited { amount } => amount,
                AccountEvent::Noted { .. } => 0,
            };
            let view: &mut CustomerOrders = customers.entry(customer_of(order)).or_default();
            *view.totals.entry(order.clone()).or_default() += amount;
            view.events += 1;
            *days.entry(day_of(amount)).or_default() += 1;
            total += 1;
        }
    }
    (customers, days, total)
}

/// Both views equal the recomputation, and every order's applied sequence
/// is its last event.
async fn assert_views_equal_recomputation(
    db: &dynamo_es::testing::TestTables,
    handler: &OrdersAndDays,
    orders: &[String],
) {
    let (customers, days, _) = recompute(db, orders).await;
    for (customer, expected) in &customers {
        let stored = handler.customers.load(customer).await.unwrap();
        assert_eq!(stored.as_ref(), Some(expected), "orders of {customer}");
    }
    assert_eq!(handler.day_counts().await, days, "events per day");
}

fn transactional(handler: OrdersAndDays, store: &CheckpointStore) -> Dispatcher<Account> {
    Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
        .with_transactional(Transactional::new(handler, store))
}

/// A projector of `arn` as `owner` on `store`, applying `handler`'s
/// transactions (on the same views).
fn handler_projector(
    arn: &str,
    store: &CheckpointStore,
    handler: &OrdersAndDays,
    owner: &str,
) -> Projector<Account> {
    let dispatcher = transactional(handler.same_views(), store);
    projector(streams_client(), arn, store.clone(), dispatcher, owner)
}

/// Starts [`handler_projector`] reading 400 records at a time.
fn start_handler(
    arn: &str,
    store: &CheckpointStore,
    handler: &OrdersAndDays,
    owner: &str,
) -> Running {
    start(handler_projector(arn, store, handler, owner).with_batch_size(400))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_per_customer_and_events_per_day_equal_a_recomputation_through_lost_answers_an_abrupt_stop_and_a_competing_projector(
) {
    let (db, arn) = stream_tables().await;
    let orders = order_ids(CUSTOMERS, ORDERS_PER_CUSTOMER);
    commit_orders(&db, &orders, EVENTS_PER_ORDER, false).await;
    let events = CUSTOMERS * ORDERS_PER_CUSTOMER * EVENTS_PER_ORDER;
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let handler = OrdersAndDays::new(&db.client).await;

    // First run: three transactions applied whose answers are lost (the SDK
    // retries them), then stopped abruptly once part of the events is in.
    let (lossy, lost) = losing_responses(&db.client, 3);
    let lossy_store = CheckpointStore::new(lossy, store.table(), store.projection())
        .with_lease_duration(store.lease_duration());
    let first = start_handler(&arn, &lossy_store, &handler, "a");
    wait_counted(&handler, u64::try_from(events / 5).unwrap(), &first.task).await;
    first.task.abort();
    assert!(
        lost.requests().len() > 3,
        "the lost answers were retried: {} transactions sent",
        lost.requests().len()
    );

    // Restarted as the same owner (it takes its lease back at once), with a
    // second projector competing for the shards.
    let again = start_handler(&arn, &store, &handler, "a");
    let other = start_handler(&arn, &store, &handler, "b");
    let total = u64::try_from(events).unwrap();
    wait_counted(&handler, total, &again.task).await;
    again.stop().await.unwrap();
    other.stop().await.unwrap();

    assert_eq!(handler.counted().await, total, "no event counted twice");
    assert_views_equal_recomputation(&db, &handler, &orders).await;
    for order in orders.iter().step_by(37) {
        assert_eq!(
            applied_sequence(&db.client, &store, order).await,
            Some(u64::try_from(EVENTS_PER_ORDER).unwrap())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_a_hundred_items_is_split_and_a_restart_between_parts_resumes_at_the_next_part(
) {
    let (db, arn) = stream_tables().await;
    // 150 orders of one event: one batch of 150 records, 150 sequence items.
    let orders = order_ids(15, 10);
    commit_orders(&db, &orders, 1, false).await;
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let handler = OrdersAndDays::new(&db.client).await;
    let records = projection_common::change_records(&arn).await;
    assert_eq!(records.len(), 150);

    // The process dies (is aborted) in the handler the first time it sees
    // the 120th record's order: the parts before were committed with their
    // positions, nothing else was written.
    let dying = handler.same_views();
    let stop_at =
        records[120].keys["AggregateTypeAndId"].as_s().unwrap()["Account:".len()..].to_string();
    *dying.hang_once_on.lock().unwrap() = Some(stop_at.clone());
    let (calls, hung) = (dying.calls.clone(), dying.hung.clone());
    let run = start(projector(
        streams_client(),
        &arn,
        store.clone(),
        transactional(dying, &store),
        "a",
    ));
    let started = std::time::Instant::now();
    while !hung.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < WAIT && !run.task.is_finished(),
            "the handler never saw {stop_at}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.task.abort();
    assert!(calls.load(Ordering::SeqCst) >= 3, "the batch was split");

    // The checkpoint is the last record of the last part committed: 98
    // runs need over 100 items (98 sequences, at least 10 customers and 7
    // days), 49 fit; the part after the first 49 holds the failing order.
    let shard = store.list().await.unwrap().remove(0);
    let checkpoint = shard.checkpoint.expect("a part's position was committed");
    let at = records
        .iter()
        .position(|r| r.sequence_number == checkpoint)
        .unwrap();
    assert_eq!(at, 48, "checkpoint at the end of the first part");
    let counted = handler.counted().await;
    assert_eq!(
        counted,
        u64::try_from(at + 1).unwrap(),
        "each committed part counted once"
    );

    // A restart resumes after that checkpoint: every event exactly once.
    let running = start(handler_projector(&arn, &store, &handler, "a"));
    wait_counted(&handler, 150, &running.task).await;
    running.stop().await.unwrap();
    assert_eq!(handler.counted().await, 150);
    assert_views_equal_recomputation(&db, &handler, &orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_overlapping_the_live_stream_applies_each_event_once() {
    let (db, arn) = stream_tables().await;
    let orders = order_ids(10, 10);
    commit_orders(&db, &orders, 5, false).await;
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let handler = OrdersAndDays::new(&db.client).await;

    // The live projector and a rebuild of the same projection, at once.
    let live = start(handler_projector(&arn, &store, &handler, "live"));
    let rebuild = Rebuild::new(
        db.client.clone(),
        &db.events,
        store.clone(),
        transactional(handler.same_views(), &store),
    )
    .with_safety_margin(Duration::from_secs(600))
    .with_page_size(40)
    .run()
    .await
    .unwrap();
    assert_eq!(rebuild.progress.events, 500);
    wait_counted(&handler, 500, &live.task).await;
    live.stop().await.unwrap();
    assert_eq!(handler.counted().await, 500, "each event counted once");
    assert_views_equal_recomputation(&db, &handler, &orders).await;
}

#[tokio::test]
async fn a_refused_condition_names_the_part_and_a_duplicate_item_says_to_merge() {
    let orders = order_ids(1, 3);
    let (db, arn, store, mut handler) = small_world(&orders, 2).await;
    let records = projection_common::change_records(&arn).await;
    handler.refuse = Some(orders[2].clone());
    let views = handler.same_views();
    let dispatcher = transactional(handler, &store);
    let failure = dispatcher.dispatch(&records).await.unwrap_err();
    // Records 0..4 are the first two orders; the third starts at 4.
    assert_eq!(failure.first_failed, 4);
    let message = failure.error.to_string();
    assert!(
        message.contains(&orders[2]) && message.contains("sequence 1"),
        "{message}"
    );
    assert!(matches!(failure.error, Error::TransactionRefused { .. }));
    assert_eq!(views.counted().await, 4, "the first two orders applied");
    // Delivered again: the first two are skipped, the third refused again.
    let again = dispatcher.dispatch(&records).await.unwrap_err();
    assert_eq!(again.first_failed, 4);
    assert_eq!(views.counted().await, 4, "nothing applied twice");

    // Two writes to one item: a typed error that says to merge them.
    struct Twice(String);
    projection_common::transactional_writes!(Twice, Account, |self, _| {
        let put = || add_to(&self.0, "same", &[("Count", 1)]);
        Ok(vec![put(), put()])
    });
    let other = checkpoints(&db.client, Duration::from_secs(2)).await;
    let twice = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
        .with_transactional(Transactional::new(Twice(views.days.clone()), &other));
    let failure = twice.dispatch(&records).await.unwrap_err();
    assert!(
        matches!(failure.error, Error::TransactionDuplicateItem { .. }),
        "{}",
        failure.error
    );
    assert!(
        failure.error.to_string().contains("merge"),
        "{}",
        failure.error
    );
}

#[tokio::test]
async fn one_aggregates_writes_over_a_transaction_are_a_typed_error_naming_it() {
    let (db, arn) = stream_tables().await;
    let orders = order_ids(1, 1);
    commit_orders(&db, &orders, 1, false).await;
    let records = projection_common::change_records(&arn).await;
    struct Many(String);
    projection_common::transactional_writes!(Many, Account, |self, _| {
        Ok((0..100)
            .map(|i| add_to(&self.0, &format!("item-{i}"), &[("Count", 1)]))
            .collect())
    });
    let store = checkpoints(&db.client, Duration::from_secs(2)).await;
    let dispatcher = Dispatcher::new(EventDecoder::<Account>::new(Codec::default()))
        .with_transactional(Transactional::new(Many(db.views.clone()), &store));
    let failure = dispatcher.dispatch(&records).await.unwrap_err();
    assert_eq!(failure.first_failed, 0);
    assert!(matches!(
        failure.error,
        Error::TransactionTooLarge { items: 101, .. }
    ));
    assert!(
        failure.error.to_string().contains(&orders[0]),
        "{}",
        failure.error
    );
}

#[tokio::test]
async fn typed_views_round_trip_in_every_codec_and_refuse_a_view_over_400_kb() {
    let db = common::tables().await;
    for codec in common::codecs() {
        let table = unique_name("typed");
        create_view_table(&db.client, &table).await.unwrap();
        let views =
            TypedViews::<CustomerOrders>::new(db.client.clone(), &table).with_codec(codec.clone());
        assert_eq!(views.load("c1").await.unwrap(), None);
        let view = CustomerOrders {
            totals: BTreeMap::from([("c1-o1".to_string(), 42)]),
            events: 3,
        };
        views.save("c1", &view).await.unwrap();
        assert_eq!(
            views.load("c1").await.unwrap(),
            Some(view),
            "{}",
            codec.name()
        );
    }
    let table = unique_name("typed");
    create_view_table(&db.client, &table).await.unwrap();
    let views =
        TypedViews::<CustomerOrders>::new(db.client.clone(), &table).with_codec(Codec::json());
    let huge = CustomerOrders {
        totals: (0..30_000)
            .map(|i| (format!("order-number-{i}"), i))
            .collect(),
        events: 0,
    };
    let error = views.save("big", &huge).await.unwrap_err();
    assert!(matches!(error, Error::ViewTooLarge { .. }), "{error}");
    assert!(views.save_write("big", &huge, None).is_err());
    assert_eq!(views.load("big").await.unwrap(), None);
}

#[cfg(feature = "lambda")]
#[tokio::test]
async fn a_lambda_batch_refused_at_its_third_aggregate_names_its_first_record_and_a_retry_applies_nothing_twice(
) {
    use dynamo_es::projection::lambda;
    let orders = order_ids(1, 4);
    let (db, arn, store, mut handler) = small_world(&orders, 2).await;
    let records = projection_common::stream_records(&arn).await;
    assert_eq!(records.len(), 8);
    handler.refuse = Some(orders[2].clone());
    let views = handler.same_views();
    let dispatcher = transactional(handler, &store);
    let event = || {
        serde_json::from_value::<lambda::Event>(lambda_json::lambda_event(
            &arn,
            records.iter().map(|(_, r)| r),
        ))
        .unwrap()
    };
    let third = records[4]
        .1
        .dynamodb
        .as_ref()
        .unwrap()
        .sequence_number
        .clone();
    for _ in 0..2 {
        // Lambda retries the whole batch: the first two orders stay applied once.
        let response = lambda::handle(&dispatcher, event()).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(response.batch_item_failures[0].item_identifier, third);
        assert_eq!(views.counted().await, 4);
        for order in &orders[..2] {
            assert_eq!(applied_sequence(&db.client, &store, order).await, Some(2));
        }
        assert_eq!(applied_sequence(&db.client, &store, &orders[2]).await, None);
    }
    // Fixed (the condition no longer written): the rest lands, once.
    let fixed = transactional(views.same_views(), &store);
    let response = lambda::handle(&fixed, event()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(views.counted().await, 8);
    assert_views_equal_recomputation(&db, &views, &orders).await;
}

#[tokio::test]
async fn a_reset_forgets_the_applied_sequences_so_a_rebuild_applies_everything_again() {
    let orders = order_ids(1, 3);
    let (db, arn, store, handler) = small_world(&orders, 2).await;
    let records = projection_common::change_records(&arn).await;
    let views = handler.same_views();
    let dispatcher = transactional(handler, &store);
    dispatcher.dispatch(&records).await.unwrap();
    assert_eq!(
        applied_sequence(&db.client, &store, &orders[0]).await,
        Some(2)
    );
    // Applied already: delivered again, skipped.
    dispatcher.dispatch(&records).await.unwrap();
    assert_eq!(views.counted().await, 6);

    let reset = store.reset().await.unwrap();
    assert_eq!(reset.sequences, 3);
    for order in &orders {
        assert_eq!(applied_sequence(&db.client, &store, order).await, None);
    }
    dispatcher.dispatch(&records).await.unwrap();
    assert_eq!(views.counted().await, 12, "applied again after the reset");
}
