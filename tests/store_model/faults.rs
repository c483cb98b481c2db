//! Faults on the writes of one commit: an HTTP client in front of the
//! emulator that, while armed, answers the attempts of the next write
//! (`PutItem` or `TransactWriteItems`) from a plan: throttle some attempts
//! (not applied), apply one and lose its response or answer it with a 5xx,
//! answer the rest with 5xx or throttling without applying them.
//!
//! **Invariant:** only the attempts the plan names are touched, every
//! other request reaches the emulator and its answer is returned as is,
//! and the plan records whether any attempt was applied.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use dynamo_es::testing::faults::{operation, Canned, Interpose, Interposed, Next};
use serde_json::json;

/// What one attempt of the write meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Throttled; not applied.
    Throttled,
    /// A 500; not applied.
    ServerError,
    /// Applied; its response lost (connection reset).
    AppliedLost,
    /// Applied; answered with a 500.
    AppliedServerError,
}

/// A fault plan for one commit: what its first write attempts meet; later
/// attempts reach the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan(pub Vec<Attempt>);

/// The shared switch of a [`Faulty`] client.
#[derive(Debug, Clone, Default)]
pub struct Switch {
    plan: Arc<Mutex<VecDeque<Attempt>>>,
}

impl Switch {
    /// Arms `plan` for the next write attempts.
    pub fn arm(&self, plan: &Plan) {
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) =
            plan.0.iter().copied().collect();
    }

    /// Disarms whatever is left.
    pub fn disarm(&self) {
        self.plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn next(&self) -> Option<Attempt> {
        self.plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// What a [`Faulty`] client does: answers write attempts from its
/// [`Switch`] while armed.
#[derive(Debug)]
pub struct Faults(Switch);

/// An HTTP client over a real one, answering write attempts from its
/// [`Switch`] while armed.
pub type Faulty = Interposed<Faults>;

/// A plain HTTP client behind `switch`.
pub fn faulty(switch: Switch) -> Faulty {
    Interposed::plain(Faults(switch))
}

fn server_error() -> Canned {
    Canned::new(
        500,
        json!({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "canned 500"}),
    )
}

/// Requests sent through every [`Faulty`] client of the process, by
/// operation (for the run's summary).
pub static REQUESTS: Mutex<std::collections::BTreeMap<String, u64>> =
    Mutex::new(std::collections::BTreeMap::new());

impl Interpose for Faults {
    fn call(self: Arc<Self>, request: HttpRequest, next: &Next) -> HttpConnectorFuture {
        let op = operation(&request);
        *REQUESTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(op.clone())
            .or_default() += 1;
        let write = op == "PutItem" || op == "TransactWriteItems";
        let attempt = if write { self.0.next() } else { None };
        match attempt {
            None => next.call(request),
            Some(Attempt::Throttled) => {
                HttpConnectorFuture::ready(Canned::throughput_exceeded().to_http())
            }
            Some(Attempt::ServerError) => HttpConnectorFuture::ready(server_error().to_http()),
            Some(applied @ (Attempt::AppliedLost | Attempt::AppliedServerError)) => {
                let response = next.call(request);
                HttpConnectorFuture::new(async move {
                    let _ = response.await?;
                    if applied == Attempt::AppliedLost {
                        Err(ConnectorError::io(
                            "connection reset before the response arrived".into(),
                        ))
                    } else {
                        server_error().to_http()
                    }
                })
            }
        }
    }
}
