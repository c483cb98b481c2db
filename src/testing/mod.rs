//! Test support: an embedded DynamoDB emulator, ready clients and tables,
//! realistic data ([`fixtures`]), aggregates to test with ([`aggregates`]),
//! faults to test against ([`faults`]), a meter of what requests cost
//! in capacity units and round trips ([`costs`]), and the emulator served
//! to other processes on a port ([`local`], behind `dynamo-es local`).
//!
//! [`dynamodb()`] gives a test its own freshly created tables on a DynamoDB
//! API in one line. By default that API is [dynoxide], a DynamoDB emulator
//! backed by SQLite, started in process on `127.0.0.1` on its own thread and
//! runtime (so it outlives each `#[tokio::test]`'s runtime). When
//! `AWS_ENDPOINT_URL_DYNAMODB` is set, the same tests run against that
//! endpoint instead: DynamoDB Local, or real AWS.
//!
//! ```no_run
//! # async fn demo() -> dynamo_es::Result<()> {
//! let db = dynamo_es::testing::dynamodb().await?;
//! let repo = db.repository(); // a DynamoEventRepository on the new tables
//! # Ok(()) }
//! ```
//!
//! **Invariant:** every test gets tables of its own ([`unique_name`]), and
//! every client here uses static test credentials unless
//! `AWS_ENDPOINT_URL_DYNAMODB` points at a real endpoint, so tests never
//! share state or reach for real credentials by accident.
//!
//! [dynoxide]: https://crates.io/crates/dynoxide-rs

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use cqrs_es::{Aggregate, View};

use crate::error::{Error, Result};
use crate::item::Item;
use crate::recode::Table;
use crate::tables::{create_event_tables, create_view_table};
use crate::{Codec, DynamoEventRepository, DynamoViewRepository};

pub mod aggregates;
pub mod costs;
pub mod faults;
pub mod fixtures;
pub mod local;
pub mod seeds;
pub mod streams;

/// An event in its stored form, for tests and benchmarks that write events
/// directly: an `event_type` event (version `1.0`) of the `aggregate_type`
/// aggregate `id` at `sequence`, carrying `payload` and empty metadata.
///
/// ```
/// let event = dynamo_es::testing::serialized_event(
///     "BankAccount", "acct-1", 1, "Deposited", serde_json::json!({"cents": 5}),
/// );
/// assert_eq!((event.sequence, event.event_type.as_str()), (1, "Deposited"));
/// ```
pub fn serialized_event(
    aggregate_type: &str,
    id: &str,
    sequence: usize,
    event_type: &str,
    payload: serde_json::Value,
) -> cqrs_es::persist::SerializedEvent {
    cqrs_es::persist::SerializedEvent {
        aggregate_id: id.to_string(),
        sequence,
        aggregate_type: aggregate_type.to_string(),
        event_type: event_type.to_string(),
        event_version: "1.0".into(),
        payload,
        metadata: serde_json::json!({}),
    }
}

/// The environment variable that points tests at another DynamoDB endpoint.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_DYNAMODB";

fn io_error(err: impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::other(err.to_string()))
}

/// A dynoxide server running on its own thread and runtime.
///
/// Dropping it (or [`stop`](Self::stop)) stops it abruptly: open
/// connections are cut, as when a real server goes away.
#[derive(Debug)]
pub struct EmbeddedDynamo {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedDynamo {
    /// Starts an emulator on an in-memory database.
    pub fn start() -> Result<Self> {
        Self::start_on(None, "127.0.0.1:0")
    }

    /// Starts an emulator on a SQLite file, which survives a restart.
    pub fn start_with_file(path: &Path) -> Result<Self> {
        Self::start_on(Some(path), "127.0.0.1:0")
    }

    /// Starts an emulator on a SQLite file (or in memory) at `bind`, for
    /// example the address a stopped emulator had.
    pub fn start_on(path: Option<&Path>, bind: &str) -> Result<Self> {
        let db = match path {
            None => dynoxide::Database::memory().map_err(|err| {
                io_error(format!("opening the emulator's in-memory database: {err}"))
            })?,
            Some(path) => {
                let shown = path.display();
                let name = path.to_str().ok_or_else(|| {
                    io_error(format!(
                        "the emulator's database path {shown} is not UTF-8: choose another"
                    ))
                })?;
                dynoxide::Database::new(name).map_err(|err| {
                    io_error(format!(
                        "opening the emulator's SQLite database {shown}: {err} (is it a \
                         dynoxide database, and its directory writable?)"
                    ))
                })?
            }
        };
        let listener = std::net::TcpListener::bind(bind).map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("binding the DynamoDB emulator to {bind}: {err}"),
            )
        })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("dynoxide")
            .build()?;
        let thread = std::thread::Builder::new()
            .name("dynoxide-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = dynoxide::server::serve_on(listener, db) => {}
                        _ = stopped => {}
                    }
                });
                // Drops every connection task at once: an abrupt stop.
                runtime.shutdown_background();
            })?;
        Ok(EmbeddedDynamo {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for this emulator (see [`client_for`]).
    pub fn client(&self) -> Client {
        client_for(&self.endpoint())
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    /// [`stop`](Self::stop) from async code: waits for the thread on a
    /// blocking task, so the runtime's workers keep running meanwhile.
    pub async fn shut_down(self) {
        let _ = tokio::task::spawn_blocking(move || self.stop()).await;
    }

    fn shutdown_now(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EmbeddedDynamo {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// A client for `endpoint` with region `us-east-1`, static test credentials
/// (so it never reaches for instance metadata), a 30 s operation timeout and
/// the SDK's standard retries.
pub fn client_for(endpoint: &str) -> Client {
    client_with(
        endpoint,
        TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(30))
            .build(),
        RetryConfig::standard(),
    )
}

/// A client for `endpoint` with the given timeouts and retries.
pub fn client_with(endpoint: &str, timeouts: TimeoutConfig, retry: RetryConfig) -> Client {
    Client::from_conf(
        client_config(timeouts, retry)
            .endpoint_url(endpoint)
            .build(),
    )
}

/// The configuration every test client shares: region `AWS_REGION` (else
/// `us-east-1`), static test credentials (the environment's when
/// `AWS_ENDPOINT_URL_DYNAMODB` is set too), `timeouts` and `retry`.
pub(crate) fn client_config(
    timeouts: TimeoutConfig,
    retry: RetryConfig,
) -> aws_sdk_dynamodb::config::Builder {
    let credentials = match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) if std::env::var_os(ENDPOINT_ENV).is_some() => Credentials::new(
            id,
            secret,
            std::env::var("AWS_SESSION_TOKEN").ok(),
            None,
            "environment",
        ),
        _ => Credentials::new("test", "test", None, None, "static"),
    };
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_string());
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(credentials)
        .timeout_config(timeouts)
        .retry_config(retry)
}

/// The endpoint tests use: `AWS_ENDPOINT_URL_DYNAMODB` if set, else one
/// embedded emulator shared by the whole process.
pub fn endpoint() -> Result<String> {
    if let Ok(endpoint) = std::env::var(ENDPOINT_ENV) {
        return Ok(endpoint);
    }
    static SHARED: OnceLock<std::result::Result<EmbeddedDynamo, String>> = OnceLock::new();
    match SHARED.get_or_init(|| EmbeddedDynamo::start().map_err(|e| e.to_string())) {
        Ok(server) => Ok(server.endpoint()),
        Err(err) => Err(io_error(err)),
    }
}

/// A unique name with `prefix`, for tables and ids that must not collide
/// between tests running in parallel (or repeated runs on a real endpoint).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Freshly created events, snapshots and view tables, and a client for them.
#[derive(Debug, Clone)]
pub struct TestTables {
    /// The client.
    pub client: Client,
    /// The events table.
    pub events: String,
    /// The snapshots table.
    pub snapshots: String,
    /// A view table.
    pub views: String,
}

impl TestTables {
    /// An event repository on these tables (with [`Codec::default()`](crate::Codec::default)).
    pub fn repository(&self) -> DynamoEventRepository {
        DynamoEventRepository::new(self.client.clone()).with_tables(&self.events, &self.snapshots)
    }

    /// A view repository on the view table.
    pub fn view_repository<V: View<A>, A: Aggregate>(&self) -> DynamoViewRepository<V, A> {
        DynamoViewRepository::new(&self.views, self.client.clone())
    }

    /// The three tables, for a [`Recoder`](crate::recode::Recoder) to run on.
    pub fn recode_tables(&self) -> [Table; 3] {
        [
            Table::events(&self.events),
            Table::snapshots(&self.snapshots),
            Table::views(&self.views),
        ]
    }
}

/// Creates uniquely named tables on [`endpoint()`] and returns them with a
/// ready client.
pub async fn dynamodb() -> Result<TestTables> {
    dynamodb_with(client_for(&endpoint()?)).await
}

/// Fresh tables (as [`dynamodb`] makes them) whose events table has the
/// slice index of `slices`, and the name of a fresh checkpoint table: what
/// a feed projection reads from and writes to.
pub async fn sliced_dynamodb(slices: crate::slice::Slices) -> Result<(TestTables, String)> {
    let db = dynamodb().await?;
    let checkpoints = slice_tables(&db, slices).await?;
    Ok((db, checkpoints))
}

/// Adds the slice index of `slices` to `db`'s events table and creates a
/// fresh checkpoint table; returns its name.
pub async fn slice_tables(db: &TestTables, slices: crate::slice::Slices) -> Result<String> {
    crate::tables::add_slice_index(&db.client, &db.events, slices).await?;
    let checkpoints = unique_name("checkpoints");
    crate::tables::create_checkpoint_table(&db.client, &checkpoints).await?;
    Ok(checkpoints)
}

/// Creates uniquely named tables through `client`.
pub async fn dynamodb_with(client: Client) -> Result<TestTables> {
    let tables = TestTables {
        events: unique_name("events"),
        snapshots: unique_name("snapshots"),
        views: unique_name("views"),
        client,
    };
    create_event_tables(&tables.client, &tables.events, &tables.snapshots).await?;
    create_view_table(&tables.client, &tables.views).await?;
    Ok(tables)
}

/// Every codec of [`Codec::available`], with each compressing one at every
/// zstd level of `levels` instead of the default: `json`, `json+zstd-L` for
/// each level, then the same for `msgpack`, as far as the build offers them.
///
/// ```
/// let codecs = dynamo_es::testing::codecs_at_levels(&[1, 9]);
/// assert_eq!(codecs[0], dynamo_es::Codec::json());
/// assert!(codecs.iter().all(|codec| codec.compression_level() != Some(3)));
/// ```
pub fn codecs_at_levels(levels: &[i32]) -> Vec<Codec> {
    let available = Codec::available();
    let mut codecs = Vec::new();
    for plain in available.iter().filter(|c| c.compression_level().is_none()) {
        codecs.push(plain.clone());
        let compressing = available
            .iter()
            .filter(|c| c.format() == plain.format() && c.compression_level().is_some());
        for codec in compressing {
            codecs.extend(levels.iter().filter_map(|&level| at_level(codec, level)));
        }
    }
    codecs
}

/// `codec` at zstd `level` (`None` without the `compression` feature).
#[cfg(feature = "compression")]
fn at_level(codec: &Codec, level: i32) -> Option<Codec> {
    Some(codec.clone().compressed(level))
}

/// `codec` at zstd `level` (`None` without the `compression` feature).
#[cfg(not(feature = "compression"))]
fn at_level(_codec: &Codec, _level: i32) -> Option<Codec> {
    None
}

/// Every item of `table`, all pages, read consistently.
pub async fn scan_all(client: &Client, table: &str) -> Result<Vec<Item>> {
    crate::tables::requests::scan(client, table, crate::tables::requests::Filter::default()).await
}

/// Writes `item` to `table` as it is (an unconditional `PutItem`): to
/// plant an item a test needs, such as one altered or moved by hand.
pub async fn put_item(client: &Client, table: &str, item: Item) -> Result<()> {
    crate::tables::requests::put_item(client, table, item).await
}

/// Encodes `value` as dynamo-es 0.5 wrote typed MessagePack payloads (tag
/// `0xC1 0x01`, rmp-serde's compact forms: a `Uuid` as 16 bytes, integer
/// map keys), to test that data stored that way stays readable.
#[cfg(feature = "msgpack")]
#[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
pub fn legacy_compact_msgpack<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    crate::codec::msgpack::compact::encode(value)
}

/// Encodes `value` as `Codec::msgpack()` does, but always through JSON text
/// (`serde_json::to_vec`, then spelled in MessagePack): the reference the
/// direct serializer must match byte for byte.
#[cfg(feature = "msgpack")]
#[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
pub fn msgpack_via_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    crate::codec::msgpack::encode_via_json(value)
}
