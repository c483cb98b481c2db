//! Shared test support: the test aggregates and view (`aggregate`), and
//! helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, Put, ScalarAttributeType,
    TransactWriteItem,
};
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventEnvelope, EventStore};
use dynamo_es::codec::DEFAULT_MIN_COMPRESS_SIZE;
use dynamo_es::item::{describe_key, Item};
use dynamo_es::size::item_size;
use dynamo_es::testing::faults::{client_on, quick_retries, short_timeouts, Scripted};
use dynamo_es::testing::{dynamodb, scan_all, serialized_event, TestTables};
use dynamo_es::{Codec, DynamoEventRepository, DynamoStore, Error, SnapshotPolicy};
use serde::Serialize;
use serde_json::json;

mod aggregate;
#[cfg(feature = "cli")]
mod cli;
mod logs;
#[allow(unused_imports)]
pub(crate) use aggregate::counting_aggregate;
#[allow(unused_imports)]
pub use aggregate::{Account, AccountCommand, AccountError, AccountEvent, AccountView, Other};
#[cfg(feature = "cli")]
#[allow(unused_imports)]
pub use cli::{cli, cli_at, cli_command, projections_args};
#[allow(unused_imports)]
pub use logs::{capture, capture_filtered, CaptureGuard, Captured};

/// One multi-threaded test per snapshot policy of a scenario: each
/// `name => policy` becomes `#[tokio::test] async fn name()` running
/// `scenario(policy)`, so every mode passes or fails under its own name.
#[allow(unused_macros)]
macro_rules! test_per_policy {
    ($scenario:ident: $($name:ident => $policy:expr),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $scenario($policy).await;
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use test_per_policy;

/// Every codec this build can write, compressing even small payloads so the
/// zstd paths are exercised too.
pub fn codecs() -> Vec<Codec> {
    Codec::available()
        .into_iter()
        .map(|codec| codec.with_min_compress_size(0))
        .collect()
}

// ---------------------------------------------------------------------------
// Recode.
// ---------------------------------------------------------------------------

/// The codec `tests/recode.rs` and `tests/cli.rs` move tables to in this
/// feature set: `json+zstd-3` with `compression`, else `msgpack` with
/// `msgpack`, else plain JSON.
pub fn target() -> Codec {
    #[cfg(feature = "compression")]
    return Codec::json().compressed(3);
    #[cfg(all(feature = "msgpack", not(feature = "compression")))]
    return Codec::msgpack();
    #[allow(unreachable_code)]
    Codec::json()
}

/// Whether the target rewrites the JSON payloads seeded here: converts them
/// to MessagePack, or compresses those over 1 KB. Plain JSON leaves every
/// JSON payload as it is.
pub fn rewrites() -> bool {
    target() != Codec::json()
}

/// `value` pretty-printed with a wide indent, as some tools write it: over
/// 1 KB even for a small value, and very compressible.
pub fn pretty_wide(value: &impl Serialize) -> Vec<u8> {
    let indent = [b' '; 512];
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(&indent);
    value
        .serialize(&mut serde_json::Serializer::with_formatter(
            &mut out, formatter,
        ))
        .unwrap();
    assert!(out.len() > DEFAULT_MIN_COMPRESS_SIZE, "{}", out.len());
    out
}

/// Every item of `table`, by key.
pub async fn items_by_key(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> BTreeMap<String, Item> {
    let items = scan_all(client, table).await.unwrap();
    items
        .into_iter()
        .map(|item| (describe_key(&item), item))
        .collect()
}

/// The item of `aggregate` (`{type}:{id}`) at `sequence` in `table`,
/// strongly consistent.
pub async fn item_at(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    aggregate: &str,
    sequence: usize,
) -> Option<Item> {
    use dynamo_es::item::{n, s, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID};
    client
        .get_item()
        .table_name(table)
        .key(AGGREGATE_TYPE_AND_ID, s(aggregate))
        .key(AGGREGATE_ID_SEQUENCE, n(sequence))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// The bytes of `items`, as DynamoDB sizes them.
pub fn bytes<'a>(items: impl IntoIterator<Item = &'a Item>) -> u64 {
    items
        .into_iter()
        .map(|item| u64::try_from(item_size(item)).unwrap())
        .sum()
}

/// Fresh tables on the test endpoint.
pub async fn tables() -> TestTables {
    dynamodb().await.expect("test tables")
}

/// Fresh tables, and a plain-JSON repository on them (for tests whose
/// sizes are JSON sizes).
pub async fn json_tables() -> (TestTables, DynamoEventRepository) {
    let db = tables().await;
    let repo = db.repository().with_codec(Codec::json());
    (db, repo)
}

/// A unique aggregate id.
pub fn new_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "acct-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A serialized `Deposited` event.
pub fn deposit_event(
    aggregate_type: &str,
    id: &str,
    sequence: usize,
    amount: i64,
) -> SerializedEvent {
    SerializedEvent {
        metadata: json!({"seq": sequence.to_string()}),
        ..serialized_event(
            aggregate_type,
            id,
            sequence,
            "Deposited",
            json!({"Deposited": {"amount": amount}}),
        )
    }
}

/// A serialized `Noted` event with a note of `len` bytes.
pub fn note_event(id: &str, sequence: usize, len: usize) -> SerializedEvent {
    let text: String = (0..len)
        .map(|i| char::from(b'a' + u8::try_from(i * 7 % 26).unwrap()))
        .collect();
    serialized_event(
        Account::TYPE,
        id,
        sequence,
        "Noted",
        json!({"Noted": {"text": text}}),
    )
}

/// Replays every stored event of `id` onto a fresh aggregate.
pub async fn replay<R: PersistedEventRepository>(repo: &R, id: &str) -> (Account, Vec<usize>) {
    let events = repo.get_events::<Account>(id).await.unwrap();
    let mut account = Account::default();
    let mut sequences = Vec::new();
    for event in events {
        sequences.push(event.sequence);
        let envelope: EventEnvelope<Account> = event.try_into().unwrap();
        account.apply(envelope.payload);
    }
    (account, sequences)
}

/// The state of `id` rebuilt by a fresh event store from its first `upto`
/// stored events, and how many events that was. With every event, the
/// event store's own load must give the same state.
pub async fn replayed<A>(repo: &DynamoEventRepository, id: &str, upto: usize) -> (A, usize)
where
    A: Aggregate + Default + PartialEq + std::fmt::Debug,
{
    let store = DynamoStore::<A>::new_event_store(repo.clone());
    let events = store.load_events(id).await.unwrap();
    let all = upto >= events.len();
    let mut state = A::default();
    let mut count = 0;
    for envelope in events.into_iter().take(upto) {
        state.apply(envelope.payload);
        count += 1;
    }
    if all {
        assert_eq!(store.load_aggregate(id).await.unwrap().aggregate, state);
    }
    (state, count)
}

/// A framework with no queries over a store on `repo` with `policy`.
pub fn cqrs<A>(
    repo: DynamoEventRepository,
    policy: SnapshotPolicy,
) -> CqrsFramework<A, DynamoStore<A>>
where
    A: Aggregate<Services = ()>,
{
    CqrsFramework::new(DynamoStore::<A>::new(repo, policy), vec![], ())
}

/// Commits one deposit of `amount` on `context` through `store`, which must
/// succeed.
pub async fn commit_deposit<S: EventStore<Account>>(
    store: &S,
    context: S::AC,
    amount: i64,
) -> Vec<EventEnvelope<Account>> {
    let events = vec![AccountEvent::Deposited { amount }];
    store.commit(events, context, no_metadata()).await.unwrap()
}

/// Deposits `amount` once on `id` through `cqrs`, which must succeed.
pub async fn deposit(cqrs: &CqrsFramework<Account, DynamoStore<Account>>, id: &str, amount: i64) {
    let result = cqrs.execute(id, AccountCommand::deposit(amount, 1)).await;
    result.expect("the deposit succeeds")
}

/// Deposits 1 once on `id` through `cqrs`, which must fail.
pub async fn failed_deposit(
    cqrs: &CqrsFramework<Account, DynamoStore<Account>>,
    id: &str,
) -> AggregateError<AccountError> {
    failed_command(cqrs, id, AccountCommand::deposit(1, 1)).await
}

/// Executes `command` on `id` through `cqrs`, which must fail.
pub async fn failed_command(
    cqrs: &CqrsFramework<Account, DynamoStore<Account>>,
    id: &str,
    command: AccountCommand,
) -> AggregateError<AccountError> {
    let result = cqrs.execute(id, command).await;
    result.expect_err("the command fails")
}

/// A repository on tables `events` and `snapshots` that only `http`
/// answers, with `max_attempts` quick retries and short timeouts.
pub fn canned_repo(http: &Scripted, max_attempts: u32) -> DynamoEventRepository {
    let client = client_on(http.clone(), quick_retries(max_attempts), short_timeouts());
    DynamoEventRepository::new(client).with_tables("events", "snapshots")
}

/// [`canned_repo`] writing plain JSON.
pub fn json_repo_on(http: &Scripted, max_attempts: u32) -> DynamoEventRepository {
    canned_repo(http, max_attempts).with_codec(Codec::json())
}

/// `event` (in plain JSON) put into `table` on the condition a commit puts
/// it on, as one item of a transaction sent by hand.
pub fn event_put(table: &str, event: &SerializedEvent) -> TransactWriteItem {
    let (item, _) = dynamo_es::item::event_to_item(event, &Codec::json()).unwrap();
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(AggregateIdSequence)")
        .build()
        .unwrap();
    TransactWriteItem::builder().put(put).build()
}

/// Metadata for a commit.
pub fn no_metadata() -> HashMap<String, String> {
    HashMap::new()
}

/// Counts the items in a table (all pages).
pub async fn count_items(client: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    scan_all(client, table).await.unwrap().len()
}

/// Creates `table` directly (not through dynamo-es), with `keys` as
/// (name, attribute type, key type), and waits for it to be ACTIVE.
pub async fn create_raw(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[(&str, &str, KeyType)],
) {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind, key_type) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*name)
                    .attribute_type(ScalarAttributeType::from(*kind))
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*name)
                    .key_type(key_type.clone())
                    .build()
                    .unwrap(),
            );
    }
    request.send().await.unwrap();
    dynamo_es::tables::wait_active(client, table).await.unwrap();
}

/// Writes `item` to `table` as it is.
pub async fn put(db: &TestTables, table: &str, item: Item) {
    dynamo_es::testing::put_item(&db.client, table, item)
        .await
        .unwrap();
}

/// The snapshot stored for `id`, which must exist.
pub async fn stored_snapshot<A: Aggregate>(db: &TestTables, id: &str) -> SerializedSnapshot {
    let snapshot = db.repository().get_snapshot::<A>(id).await.unwrap();
    snapshot.unwrap_or_else(|| panic!("no snapshot of {id}"))
}

/// The events stored for `id`.
pub async fn stored_events<A: Aggregate>(db: &TestTables, id: &str) -> Vec<SerializedEvent> {
    db.repository().get_events::<A>(id).await.unwrap()
}

/// Reads a stream to its end: how many events it yielded, and the error
/// that ended it, if one did (checked to be the last item).
pub async fn drain<A: Aggregate>(stream: &mut ReplayStream) -> (usize, Option<PersistenceError>) {
    let mut events = 0;
    loop {
        match next_within_bound::<A>(stream).await {
            Some(Ok(_)) => events += 1,
            Some(Err(err)) => {
                let after = next_within_bound::<A>(stream).await;
                assert!(after.is_none(), "the stream goes on after an error");
                return (events, Some(err));
            }
            None => return (events, None),
        }
    }
}

/// The sequence of every event a stream yields, to its end; every item
/// must be an event.
pub async fn sequences<A: Aggregate>(stream: &mut ReplayStream) -> Vec<usize> {
    let mut sequences = Vec::new();
    while let Some(event) = next_within_bound::<A>(stream).await {
        sequences.push(event.unwrap().sequence);
    }
    sequences
}

/// Asserts that `stream` yields the events of sequences 1 to `n`, in order.
pub async fn assert_sequences<A: Aggregate>(stream: &mut ReplayStream, n: usize) {
    let sequences = sequences::<A>(stream).await;
    assert!(
        sequences.iter().copied().eq(1..=n),
        "{} events",
        sequences.len()
    );
}

/// The next item of a stream, which must come within [`NO_HANG`].
pub async fn next_within_bound<A: Aggregate>(
    stream: &mut ReplayStream,
) -> Option<Result<EventEnvelope<A>, PersistenceError>> {
    tokio::time::timeout(NO_HANG, stream.next::<A>(&[]))
        .await
        .expect("the stream hangs")
}

/// Bound for "does not hang".
pub const NO_HANG: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// The `dynamo_es::Error` inside a persistence error.
pub fn typed(err: &PersistenceError) -> &Error {
    let source = match err {
        PersistenceError::ConnectionError(source)
        | PersistenceError::DeserializationError(source)
        | PersistenceError::UnknownError(source) => source,
        PersistenceError::OptimisticLockError => panic!("no source in {err:?}"),
    };
    source
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a dynamo_es::Error: {source:?}"))
}

/// The `dynamo_es::Error` inside an aggregate error.
pub fn typed_aggregate<E: std::error::Error>(err: &AggregateError<E>) -> &Error {
    let source = match err {
        AggregateError::DatabaseConnectionError(source)
        | AggregateError::DeserializationError(source)
        | AggregateError::UnexpectedError(source) => source,
        other => panic!("no source in {other:?}"),
    };
    source
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a dynamo_es::Error: {source:?}"))
}

/// The variant of a cqrs-es error, by name, to assert on in one line.
pub trait ErrorKind {
    /// The variant's name, e.g. `ConnectionError`.
    fn kind(&self) -> &'static str;
}

impl ErrorKind for PersistenceError {
    fn kind(&self) -> &'static str {
        match self {
            PersistenceError::OptimisticLockError => "OptimisticLockError",
            PersistenceError::ConnectionError(_) => "ConnectionError",
            PersistenceError::DeserializationError(_) => "DeserializationError",
            PersistenceError::UnknownError(_) => "UnknownError",
        }
    }
}

impl<E: std::error::Error> ErrorKind for AggregateError<E> {
    fn kind(&self) -> &'static str {
        match self {
            AggregateError::UserError(_) => "UserError",
            AggregateError::AggregateConflict => "AggregateConflict",
            AggregateError::DatabaseConnectionError(_) => "DatabaseConnectionError",
            AggregateError::DeserializationError(_) => "DeserializationError",
            AggregateError::UnexpectedError(_) => "UnexpectedError",
        }
    }
}

/// The class and operation of a failed DynamoDB call, as
/// `("Throttled" | "Connection" | "Dynamo", operation)`.
pub fn failed_call(err: &Error) -> Option<(&'static str, &'static str)> {
    match err {
        Error::Throttled { operation, .. } => Some(("Throttled", operation)),
        Error::Connection { operation, .. } => Some(("Connection", operation)),
        Error::Dynamo { operation, .. } => Some(("Dynamo", operation)),
        _ => None,
    }
}

/// Asserts that `err` is a failed call of `class` on `operation`: a
/// connection error (retryable) unless the class is `Dynamo`.
#[track_caller]
pub fn assert_failed(err: &PersistenceError, class: &str, operation: &str) {
    let retryable = err.kind() == "ConnectionError";
    assert_eq!(
        (failed_call(typed(err)), retryable),
        (Some((class, operation)), class != "Dynamo"),
        "{err:?}"
    );
}

/// A projection failing on one aggregate (as a failing view write would),
/// with "view of {id} refused".
pub struct FailOn(pub String);

#[async_trait::async_trait]
impl dynamo_es::projection::Projection<Account> for FailOn {
    async fn project(
        &self,
        id: &str,
        _: &[EventEnvelope<Account>],
    ) -> Result<(), dynamo_es::projection::Error> {
        if id == self.0 {
            return Err(dynamo_es::projection::Error::projection(format!(
                "view of {id} refused"
            )));
        }
        Ok(())
    }
}

/// Upstream `dynamo-es` 0.5's event repository on `db`'s tables.
pub fn upstream_repo(db: &TestTables) -> upstream_dynamo_es::DynamoEventRepository {
    upstream_dynamo_es::DynamoEventRepository::new(db.client.clone())
        .with_tables(&db.events, &db.snapshots)
}

/// `count` deposits of `amount` into account `id`, sequences 1 to `count`.
pub fn deposit_events(id: &str, count: usize, amount: i64) -> Vec<SerializedEvent> {
    (1..=count)
        .map(|sequence| deposit_event(Account::TYPE, id, sequence, amount))
        .collect()
}
