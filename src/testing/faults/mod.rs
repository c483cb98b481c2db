//! Faults to test against: canned DynamoDB responses, an HTTP client that
//! answers from a script or by rules over each request (and can lose a
//! response or never answer), a base for HTTP clients in front of a real
//! one ([`Interposed`]), one that loses the responses of applied writes
//! (transactions, or any one operation), and misbehaving
//! endpoints (a server that never answers, one that hangs up mid-body, a
//! proxy that stops the emulator in the middle of a request), and a stale
//! replica answering eventually consistent queries ([`StaleReads`]).
//!
//! The tests of this crate use them to prove how the store classifies
//! throttling, cancellations, lost responses and broken connections; they
//! are public so an application can test its own retry and error handling
//! against the same faults.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cqrs_es::persist::PersistedEventRepository;
//! use dynamo_es::testing::aggregates::BankAccount;
//! use dynamo_es::testing::faults::{client_on, quick_retries, short_timeouts, Canned, Scripted};
//! use dynamo_es::DynamoEventRepository;
//!
//! // Throttled twice, then an empty page: the SDK's retries absorb it.
//! let http = Scripted::replying([
//!     Canned::throughput_exceeded(),
//!     Canned::throughput_exceeded(),
//!     Canned::empty_query(),
//! ]);
//! let client = client_on(http.clone(), quick_retries(3), short_timeouts());
//! let repo = DynamoEventRepository::new(client).with_tables("events", "snapshots");
//! assert!(repo.get_events::<BankAccount>("acct-1").await?.is_empty());
//! assert_eq!(http.operations(), ["Query"; 3]);
//! # Ok(()) }
//! ```
//!
//! **Invariant:** nothing here panics or blocks a runtime thread: a fault
//! shows up only as the HTTP response, error or silence it stands for.

mod canned;
mod endpoints;
mod interpose;
mod lossy;
mod script;
mod stale;

use std::time::Duration;

use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::http::HttpClient;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use serde_json::Value;

pub use canned::Canned;
pub use endpoints::{black_hole, cut_off_server, CutOff, StopMidRequest};
pub use interpose::{Interpose, Interposed, Next};
pub use lossy::{losing_responses, losing_responses_to, LoseResponses, Losing};
pub use script::{Request, Rule, Scripted, Step, REDACTED};
pub use stale::{stale_reads, StaleQuery, StaleReads};

use super::{client_config, unique_name};

/// The whole-operation timeout of [`fault_client`] (retries included).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Standard retries with `max_attempts` attempts and a 1 to 20 ms backoff,
/// so retried canned responses cost no time.
pub fn quick_retries(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(20))
}

/// Attempts of 300 ms within an operation of 5 s: an unanswered attempt
/// ([`Step::Hang`]) is abandoned quickly.
pub fn short_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_millis(300))
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// A client that sends every request to `http` (a [`Scripted`] client, a
/// [`LoseResponses`], or any other), with the test credentials of
/// [`client_for`](super::client_for), `retry`, `timeouts`, and a retry
/// partition of its own (see [`isolated`]).
pub fn client_on(
    http: impl HttpClient + 'static,
    retry: RetryConfig,
    timeouts: TimeoutConfig,
) -> Client {
    let config = client_config(timeouts, retry)
        .http_client(http)
        .retry_partition(RetryPartition::new(unique_name("canned")))
        .build();
    Client::from_conf(config)
}

/// `client` with a retry partition of its own, so the retry token bucket
/// its failures drain is not shared with other clients (a test's faults
/// then cannot starve another test's retries).
pub fn isolated(client: &Client) -> Client {
    let config = client
        .config()
        .to_builder()
        .retry_partition(RetryPartition::new(unique_name("isolated")))
        .build();
    Client::from_conf(config)
}

/// An [`isolated`] client for `endpoint` with short timeouts (connect 1 s,
/// attempt 2 s, operation [`OPERATION_TIMEOUT`]) and three attempts with a
/// 10 to 100 ms backoff: a dead or silent endpoint fails it promptly.
pub fn fault_client(endpoint: &str) -> Client {
    isolated(&super::client_with(
        endpoint,
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(1))
            .operation_attempt_timeout(Duration::from_secs(2))
            .operation_timeout(OPERATION_TIMEOUT)
            .build(),
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(10))
            .with_max_backoff(Duration::from_millis(100)),
    ))
}

/// The DynamoDB operation of a request (its `X-Amz-Target`), e.g. `Query`.
pub fn operation(request: &HttpRequest) -> String {
    request
        .headers()
        .get("x-amz-target")
        .and_then(|target| target.rsplit('.').next())
        .unwrap_or_default()
        .to_string()
}

/// The JSON body of a request (`Null` if it has none, or is not JSON).
pub fn body_json(request: &HttpRequest) -> Value {
    request
        .body()
        .bytes()
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .unwrap_or_default()
}
