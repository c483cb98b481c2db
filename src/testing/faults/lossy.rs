//! An HTTP client that loses the responses of applied writes.
//!
//! **Invariant:** a request always reaches the server; only a successful
//! response to the chosen operation, among the first `lose` of them, is
//! replaced by a connection error: the write is applied, and the caller
//! never hears of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture, SharedHttpClient};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;

use super::{operation, Interpose, Interposed, Next, Request};

/// An HTTP client that hands every request to a real one, but drops the
/// response of the first `lose` successful calls of one operation
/// (`TransactWriteItems` unless [`losing_responses_to`] chose another)
/// after the server answered, and records every request of that operation.
/// Clones share the count and the record.
pub type LoseResponses = Interposed<Losing>;

/// What a [`LoseResponses`] does with each request: the operation whose
/// responses it loses, how many more it loses, and the requests of that
/// operation so far.
#[derive(Debug)]
pub struct Losing {
    operation: String,
    lose: AtomicUsize,
    requests: Mutex<Vec<Request>>,
}

impl LoseResponses {
    /// Wraps `inner`, losing `lose` transaction responses.
    pub fn new(inner: SharedHttpClient, lose: usize) -> Self {
        LoseResponses::losing(inner, "TransactWriteItems", lose)
    }

    /// Wraps `inner`, losing `lose` responses to `operation` (e.g. `PutItem`).
    pub fn losing(inner: SharedHttpClient, operation: &str, lose: usize) -> Self {
        let losing = Losing {
            operation: operation.into(),
            lose: AtomicUsize::new(lose),
            requests: Mutex::default(),
        };
        Interposed::over(inner, losing)
    }
}

impl Losing {
    /// Every request of the operation sent so far (retries included),
    /// oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The `ClientRequestToken` of every request of the operation sent so
    /// far (retries included), oldest first: of every `TransactWriteItems`.
    pub fn tokens(&self) -> Vec<String> {
        let requests = self.requests();
        requests.iter().map(|r| r.token().to_string()).collect()
    }
}

/// `client` sending through a [`LoseResponses`] over a plain HTTP client
/// that loses `lose` transaction responses, and that `LoseResponses` (for
/// its tokens).
pub fn losing_responses(client: &Client, lose: usize) -> (Client, LoseResponses) {
    losing_responses_to(client, "TransactWriteItems", lose)
}

/// `client` sending through a [`LoseResponses`] over a plain HTTP client
/// that loses `lose` responses to `operation`, and that `LoseResponses`
/// (for its requests).
pub fn losing_responses_to(
    client: &Client,
    operation: &str,
    lose: usize,
) -> (Client, LoseResponses) {
    let inner = aws_smithy_http_client::Builder::new().build_http();
    let http = LoseResponses::losing(inner, operation, lose);
    let config = client.config().to_builder().http_client(http.clone());
    (Client::from_conf(config.build()), http)
}

impl Interpose for Losing {
    fn call(self: Arc<Self>, request: HttpRequest, next: &Next) -> HttpConnectorFuture {
        let chosen = operation(&request) == self.operation;
        if chosen {
            self.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Request::of(&request));
        }
        let response = next.call(request);
        HttpConnectorFuture::new(async move {
            let response = response.await?;
            let lost = chosen
                && response.status().is_success()
                && self
                    .lose
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if lost {
                return Err(ConnectorError::io(
                    "connection reset before the response arrived".into(),
                ));
            }
            Ok(response)
        })
    }
}
