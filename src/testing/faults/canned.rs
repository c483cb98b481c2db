//! Canned DynamoDB responses: a status and a JSON body.
//!
//! **Invariant:** a `Canned` is plain data; it becomes an HTTP response
//! only when a client answers with it, and a status outside 100 to 999
//! becomes a connection error there, never a panic.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};

/// A canned DynamoDB response: a status and a JSON body, sent with
/// DynamoDB's content type (`application/x-amz-json-1.0`).
///
/// ```
/// use dynamo_es::testing::faults::Canned;
///
/// let throttled = Canned::throughput_exceeded();
/// assert_eq!(throttled.status, 400);
/// assert_eq!(
///     throttled.body["__type"],
///     "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Canned {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

impl Canned {
    /// A response of `status` with `body`.
    pub fn new(status: u16, body: Value) -> Self {
        Canned { status, body }
    }

    /// A success (200) with `body`.
    pub fn ok(body: Value) -> Self {
        Canned::new(200, body)
    }

    /// The empty success of a write (`{}`): `PutItem`, `TransactWriteItems`, ...
    pub fn written() -> Self {
        Canned::ok(json!({}))
    }

    /// A `Query` or `Scan` page with no items and no further page.
    pub fn empty_query() -> Self {
        Canned::ok(json!({"Count": 0, "ScannedCount": 0, "Items": []}))
    }

    /// A DynamoDB error (400) of type `kind` (e.g. `ThrottlingException`),
    /// with `extra` fields added to its body.
    pub fn dynamo_error(kind: &str, extra: Value) -> Self {
        let mut body = json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
            "message": format!("canned {kind}"),
        });
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        Canned::new(400, body)
    }

    /// `ProvisionedThroughputExceededException`: a throttled request.
    pub fn throughput_exceeded() -> Self {
        Canned::dynamo_error("ProvisionedThroughputExceededException", json!({}))
    }

    /// `TransactionCanceledException` with one cancellation reason code per
    /// item (`None`, `ConditionalCheckFailed`, `TransactionConflict`,
    /// `ThrottlingError`, ...).
    pub fn transaction_cancelled(reasons: &[&str]) -> Self {
        let reasons: Vec<Value> = reasons.iter().map(|code| json!({ "Code": code })).collect();
        Canned::dynamo_error(
            "TransactionCanceledException",
            json!({ "CancellationReasons": reasons }),
        )
    }

    /// A `ValidationException` with `message`, as DynamoDB refuses a request
    /// it considers too large or malformed.
    pub fn validation_error(message: &str) -> Self {
        Canned::new(
            400,
            json!({
                "__type": "com.amazon.coral.validate#ValidationException",
                "message": message,
            }),
        )
    }

    /// The HTTP response.
    pub fn to_http(&self) -> Result<HttpResponse, ConnectorError> {
        let status = StatusCode::try_from(self.status)
            .map_err(|err| ConnectorError::other(Box::new(err), None))?;
        let mut response = HttpResponse::new(status, SdkBody::from(self.body.to_string()));
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        Ok(response)
    }
}
