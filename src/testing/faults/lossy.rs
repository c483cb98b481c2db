//! An HTTP client that loses the responses of applied transactions.
//!
//! **Invariant:** a request always reaches the server; only a successful
//! `TransactWriteItems` response, among the first `lose` of them, is
//! replaced by a connection error: the transaction is applied, and the
//! caller never hears of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;

use super::{body_json, operation};

/// An HTTP client that hands every request to a real one, but drops the
/// response of the first `lose` successful `TransactWriteItems` calls after
/// the server answered, and records the `ClientRequestToken` of every
/// `TransactWriteItems` it sends. Clones share the count and the record.
#[derive(Debug, Clone)]
pub struct LoseResponses {
    inner: SharedHttpClient,
    lose: Arc<AtomicUsize>,
    tokens: Arc<Mutex<Vec<String>>>,
}

impl LoseResponses {
    /// Wraps `inner`, losing `lose` transaction responses.
    pub fn new(inner: SharedHttpClient, lose: usize) -> Self {
        LoseResponses {
            inner,
            lose: Arc::new(AtomicUsize::new(lose)),
            tokens: Arc::default(),
        }
    }

    /// The `ClientRequestToken` of every `TransactWriteItems` sent so far
    /// (retries included), oldest first.
    pub fn tokens(&self) -> Vec<String> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// `client` sending through a [`LoseResponses`] over a plain HTTP client,
/// and that `LoseResponses` (for its tokens).
pub fn losing_responses(client: &Client, lose: usize) -> (Client, LoseResponses) {
    let http = LoseResponses::new(aws_smithy_http_client::Builder::new().build_http(), lose);
    let config = client.config().to_builder().http_client(http.clone());
    (Client::from_conf(config.build()), http)
}

#[derive(Debug)]
struct LoseConnector {
    inner: SharedHttpConnector,
    client: LoseResponses,
}

impl HttpClient for LoseResponses {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        LoseConnector {
            inner: self.inner.http_connector(settings, components),
            client: self.clone(),
        }
        .into_shared()
    }
}

impl HttpConnector for LoseConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let transact = operation(&request) == "TransactWriteItems";
        if transact {
            let token = body_json(&request)["ClientRequestToken"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.client
                .tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(token);
        }
        let lose = self.client.lose.clone();
        let response = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let response = response.await?;
            let lost = transact
                && response.status().is_success()
                && lose
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
