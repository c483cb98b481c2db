//! What a piece of code costs in DynamoDB requests: the capacity units the
//! server reports and the sequential round trips, measured the same way for
//! any client (this crate's, upstream `dynamo-es`'s, or an application's).
//!
//! A [`Meter`] is an SDK interceptor and an HTTP client in front of the
//! client's own. While it is on, it adds `ReturnConsumedCapacity = TOTAL` to
//! every request body (so code that does not ask for its consumed capacity
//! is measured like code that does) and sums the `ConsumedCapacity` of every
//! response. It counts sequential round trips with a gate: the first request
//! opens a round and is held for [`ROUND_HOLD`]; every request sent while
//! the round is open joins it and is released with it. Requests sent
//! concurrently (a `GetItem` and a `Query` at once) therefore share one
//! round, and a request sent after another's response can never join that
//! one's round, whatever the machine's speed. Metered requests are slower by
//! the hold: meter costs, never time them.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cqrs_es::persist::PersistedEventRepository;
//! use dynamo_es::testing::aggregates::BankAccount;
//! use dynamo_es::testing::costs::Meter;
//! use dynamo_es::DynamoEventRepository;
//!
//! let db = dynamo_es::testing::dynamodb().await?;
//! let meter = Meter::new();
//! let repo = DynamoEventRepository::new(meter.client(&db.client))
//!     .with_tables(&db.events, &db.snapshots);
//! let (events, costs) = meter.measure(repo.get_events::<BankAccount>("acct-1")).await;
//! assert!(events?.is_empty());
//! assert_eq!((costs.round_trips, costs.read_units), (1, 1.0)); // an empty query costs 1 RCU
//! assert_eq!(costs.operations, ["Query"]);
//! # Ok(()) }
//! ```
//!
//! **Invariant:** while a meter is off it changes and delays nothing; while
//! it is on it changes only `ReturnConsumedCapacity`, and every request sent
//! belongs to exactly one round, which no request sent after one of the
//! round's responses joins.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde_json::Value;

use super::faults::{operation, Interpose, Interposed, Next};
use crate::intercept::{Hooked, Hooks, Interceptor};

/// How long a metered round stays open after its first request: requests
/// sent concurrently with it join it within this time even on a loaded
/// machine.
pub const ROUND_HOLD: Duration = Duration::from_millis(200);

/// The operations DynamoDB bills in write units; every other one is a read.
const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];

/// What the metered requests cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Costs {
    /// Write capacity units, as the responses reported them.
    pub write_units: f64,
    /// Read capacity units, as the responses reported them.
    pub read_units: f64,
    /// Sequential round trips: rounds of requests sent together.
    pub round_trips: usize,
    /// The operation of every request, in the order they were sent
    /// (retries included).
    pub operations: Vec<String>,
}

/// Meters capacity units and round trips; see the [module
/// documentation](self).
///
/// Clones share their counts.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    on: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    /// Set by [`Meter::without_rounds`]: no request is held.
    no_rounds: bool,
}

#[derive(Debug, Default)]
struct Tally {
    /// When the open round releases its requests.
    open_until: Option<tokio::time::Instant>,
    costs: Costs,
}

/// Marks, in a request's config bag, a request the meter changed, and
/// whether its operation is billed in write units.
#[derive(Debug, Clone)]
struct Metered {
    write: bool,
}

impl Storable for Metered {
    type Storer = StoreReplace<Self>;
}

impl Meter {
    /// A meter, off.
    pub fn new() -> Self {
        Meter::default()
    }

    /// A meter, off, that counts units and operations but not round
    /// trips: its gate holds no request, so a metered run may also be
    /// timed (`round_trips` stays 0). For long workloads of many
    /// sequential requests, which a held round would slow by
    /// [`ROUND_HOLD`] each.
    pub fn without_rounds() -> Self {
        Meter {
            no_rounds: true,
            ..Meter::default()
        }
    }

    /// A client with `client`'s configuration, its HTTP client (or the
    /// default one) behind this meter's gate, and this meter.
    pub fn client(&self, client: &Client) -> Client {
        let inner = client
            .config()
            .http_client()
            .unwrap_or_else(|| aws_smithy_http_client::Builder::new().build_http());
        let gate = Interposed::over(inner, Gate(self.clone()));
        Client::from_conf(
            client
                .config()
                .to_builder()
                .http_client(gate)
                .interceptor(Interceptor(self.clone()))
                .build(),
        )
    }

    /// Clears the counts and meters from now on.
    pub fn start(&self) {
        *self.tally() = Tally::default();
        self.on.store(true, Ordering::SeqCst);
    }

    /// Stops metering and returns what was metered since [`start`](Self::start).
    pub fn stop(&self) -> Costs {
        self.on.store(false, Ordering::SeqCst);
        std::mem::take(&mut self.tally().costs)
    }

    /// Runs `work` metered, and returns its output and its costs.
    pub async fn measure<F: Future>(&self, work: F) -> (F::Output, Costs) {
        self.start();
        let output = work.await;
        (output, self.stop())
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    fn tally(&self) -> MutexGuard<'_, Tally> {
        // A poisoned tally is still a tally: counting goes on.
        self.tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The capacity units of a response body's `ConsumedCapacity` (one object,
/// or one per table for transactions and batches), as (read, write) units:
/// `ReadCapacityUnits` and `WriteCapacityUnits` when the response splits
/// them, else `CapacityUnits`, counted by the operation's kind.
fn consumed(body: &[u8], write: bool) -> (f64, f64) {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return (0.0, 0.0);
    };
    let entries = match body.get("ConsumedCapacity") {
        Some(Value::Array(entries)) => entries.iter().collect(),
        Some(entry @ Value::Object(_)) => vec![entry],
        _ => Vec::new(),
    };
    let units = |entry: &Value, field: &str| entry.get(field).and_then(Value::as_f64);
    entries
        .into_iter()
        .fold((0.0, 0.0), |(read, written), entry| {
            match (
                units(entry, "ReadCapacityUnits"),
                units(entry, "WriteCapacityUnits"),
            ) {
                (None, None) => {
                    let total = units(entry, "CapacityUnits").unwrap_or(0.0);
                    if write {
                        (read, written + total)
                    } else {
                        (read + total, written)
                    }
                }
                (r, w) => (read + r.unwrap_or(0.0), written + w.unwrap_or(0.0)),
            }
        })
}

impl Hooks for Meter {
    const NAME: &'static str = "dynamo_es::testing::costs::Meter";

    fn modify_request(&self, request: &mut HttpRequest, cfg: &mut ConfigBag) -> Hooked {
        if !self.is_on() {
            return Ok(());
        }
        let write = WRITES.contains(&operation(request).as_str());
        cfg.interceptor_state().store_put(Metered { write });
        let Some(Ok(Value::Object(mut body))) = request.body().bytes().map(serde_json::from_slice)
        else {
            return Ok(());
        };
        body.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
        let bytes = serde_json::to_vec(&body)?;
        request
            .headers_mut()
            .insert("content-length", bytes.len().to_string());
        *request.body_mut() = SdkBody::from(bytes);
        Ok(())
    }

    fn read_response_body(&self, response: &HttpResponse, cfg: &mut ConfigBag) -> Hooked {
        let Some(Metered { write }) = cfg.load::<Metered>() else {
            return Ok(());
        };
        let Some(body) = response.body().bytes() else {
            return Ok(());
        };
        let (read, written) = consumed(body, *write);
        let mut tally = self.tally();
        tally.costs.read_units += read;
        tally.costs.write_units += written;
        Ok(())
    }
}

/// The meter's gate in front of a client's HTTP client.
#[derive(Debug)]
struct Gate(Meter);

impl Interpose for Gate {
    fn call(self: Arc<Self>, request: HttpRequest, next: &Next) -> HttpConnectorFuture {
        if !self.0.is_on() {
            return next.call(request);
        }
        if self.0.no_rounds {
            self.0.tally().costs.operations.push(operation(&request));
            return next.call(request);
        }
        let release = {
            let mut tally = self.0.tally();
            let now = tokio::time::Instant::now();
            let release = match tally.open_until {
                Some(until) if until > now => until,
                _ => {
                    tally.costs.round_trips += 1;
                    now + ROUND_HOLD
                }
            };
            tally.open_until = Some(release);
            tally.costs.operations.push(operation(&request));
            release
        };
        let next = next.clone();
        HttpConnectorFuture::new(async move {
            tokio::time::sleep_until(release).await;
            next.call(request).await
        })
    }
}
