//! An HTTP client that answers from a script and records every request.
//!
//! **Invariant:** each request takes the next step of the script, in
//! order, and is recorded before it is answered; when the script runs out,
//! every further request fails as a connection error.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;
use serde_json::Value;

use super::{body_json, operation, Canned};

/// What a [`Scripted`] client does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Answers with a canned response.
    Respond(Canned),
    /// Breaks the connection before any response: the request may or may
    /// not have been applied.
    Lost,
    /// Never answers (only a timeout ends the attempt).
    Hang,
}

impl From<Canned> for Step {
    fn from(canned: Canned) -> Self {
        Step::Respond(canned)
    }
}

/// A request a [`Scripted`] client received.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The DynamoDB operation, e.g. `TransactWriteItems`.
    pub operation: String,
    /// Every header, as sent, except the session token's value
    /// (`x-amz-security-token`), recorded as [`REDACTED`].
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` if none).
    pub body: Value,
}

impl Request {
    /// The operation, headers and JSON body of `request`.
    pub fn of(request: &HttpRequest) -> Self {
        Request {
            operation: operation(request),
            headers: request
                .headers()
                .iter()
                .map(|(name, value)| {
                    let secret = name.eq_ignore_ascii_case("x-amz-security-token");
                    (
                        name.to_string(),
                        if secret { REDACTED } else { value }.to_string(),
                    )
                })
                .collect(),
            body: body_json(request),
        }
    }

    /// The `ClientRequestToken` of a `TransactWriteItems` request (empty if
    /// it carries none).
    pub fn token(&self) -> &str {
        self.body["ClientRequestToken"].as_str().unwrap_or_default()
    }
}

/// What [`Request::headers`] holds in place of a session token.
pub const REDACTED: &str = "** redacted **";

/// A [`Step`] chosen by the request it answers, for a [`Scripted`] client
/// built [`by_rules`](Scripted::by_rules): a canned conflict can then carry
/// back the very item the request wrote.
pub type Rule = Box<dyn Fn(&Request) -> Step + Send + Sync>;

/// An HTTP client answering from a script of [`Step`]s (or of [`Rule`]s
/// that choose them) and recording every request: canned responses, lost
/// responses and silence, for tests that need no server at all. Clones
/// share the script and the record.
///
/// Its `Debug` output (part of a client configuration's) shows only how
/// many steps are left and how many requests were recorded.
#[derive(Clone, Default)]
pub struct Scripted {
    steps: Arc<Mutex<VecDeque<Rule>>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl fmt::Debug for Scripted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scripted")
            .field("remaining", &self.remaining())
            .field("requests", &locked(&self.requests).len())
            .finish()
    }
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Scripted {
    /// A client taking `steps` in order.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Scripted::by_rules(
            steps
                .into_iter()
                .map(|step| -> Rule { Box::new(move |_: &Request| step.clone()) }),
        )
    }

    /// A client answering each request with the step the next of `rules`
    /// chooses for it.
    ///
    /// ```
    /// use dynamo_es::testing::faults::{Canned, Rule, Scripted};
    /// use serde_json::json;
    ///
    /// // A failed condition that returns the very item the put carried.
    /// let own_item: Rule = Box::new(|request| {
    ///     let item = json!({ "Item": request.body["Item"].clone() });
    ///     Canned::dynamo_error("ConditionalCheckFailedException", item).into()
    /// });
    /// let http = Scripted::by_rules([own_item]);
    /// assert_eq!(http.remaining(), 1);
    /// ```
    pub fn by_rules(rules: impl IntoIterator<Item = Rule>) -> Self {
        Scripted {
            steps: Arc::new(Mutex::new(rules.into_iter().collect())),
            requests: Arc::default(),
        }
    }

    /// A client answering with `responses` in order.
    pub fn replying(responses: impl IntoIterator<Item = Canned>) -> Self {
        Scripted::new(responses.into_iter().map(Step::Respond))
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        locked(&self.requests).clone()
    }

    /// The operation of every request received so far.
    pub fn operations(&self) -> Vec<String> {
        locked(&self.requests)
            .iter()
            .map(|request| request.operation.clone())
            .collect()
    }

    /// How many steps are left.
    pub fn remaining(&self) -> usize {
        locked(&self.steps).len()
    }
}

impl HttpConnector for Scripted {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = Request::of(&request);
        locked(&self.requests).push(request.clone());
        let rule = locked(&self.steps).pop_front();
        match rule.map(|rule| rule(&request)) {
            Some(Step::Respond(canned)) => HttpConnectorFuture::ready(canned.to_http()),
            Some(Step::Lost) => HttpConnectorFuture::ready(Err(ConnectorError::io(
                "connection reset by peer (scripted lost response)".into(),
            ))),
            Some(Step::Hang) => HttpConnectorFuture::new(async {
                std::future::pending::<()>().await;
                Err(ConnectorError::other("unreachable".into(), None))
            }),
            None => HttpConnectorFuture::ready(Err(ConnectorError::other(
                "script exhausted".into(),
                None,
            ))),
        }
    }
}

impl HttpClient for Scripted {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.clone().into_shared()
    }
}
