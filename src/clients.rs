//! [`Clients`]: the DynamoDB and DynamoDB Streams clients of one
//! [`SdkConfig`], pointed at the same place.
//!
//! The AWS SDK reads a service's endpoint from its own environment variable
//! (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_DYNAMODB_STREAMS`, or
//! the `services` section of the profile), so a program that sets only the
//! DynamoDB one for a local endpoint gets a Streams client that talks to
//! AWS itself: its projector then fails on a host it never meant to reach.
//!
//! **Invariant:** the Streams client built here uses, in this order: the
//! endpoint set on the config itself (`endpoint_url`, both services), the
//! Streams endpoint from the environment or profile, and otherwise the
//! DynamoDB endpoint from the environment or profile, which is logged at
//! info; it talks to AWS's own Streams endpoint only when DynamoDB's
//! client does too.

use aws_types::service_config::ServiceConfigKey;
use aws_types::SdkConfig;

/// The service id and the settings' names under which the SDK looks up
/// DynamoDB's endpoint (`AWS_ENDPOINT_URL_DYNAMODB`, profile
/// `services.dynamodb.endpoint_url`).
const DYNAMODB: &str = "DynamoDB";
/// The same for DynamoDB Streams (`AWS_ENDPOINT_URL_DYNAMODB_STREAMS`).
const DYNAMODB_STREAMS: &str = "DynamoDB Streams";

/// A DynamoDB client and a DynamoDB Streams client from one [`SdkConfig`],
/// with the Streams client on DynamoDB's endpoint when only that one is
/// configured (a local emulator, DynamoDB Local).
///
/// ```no_run
/// # async fn demo() {
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let clients = dynamo_es::Clients::from_config(&config);
/// // AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8000 alone: both clients use it.
/// println!("DynamoDB at {}", clients.dynamodb_endpoint().unwrap_or("AWS"));
/// let (dynamodb, streams) = (clients.dynamodb, clients.streams);
/// # let _ = (dynamodb, streams);
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Clients {
    /// The DynamoDB client, as `aws_sdk_dynamodb::Client::new(config)`.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The DynamoDB Streams client, on the endpoint this module's invariant
    /// chooses.
    pub streams: aws_sdk_dynamodbstreams::Client,
    dynamodb_endpoint: Option<String>,
    streams_endpoint: Option<String>,
}

impl Clients {
    /// Both clients from `config`. The Streams client uses, in this order:
    /// the endpoint set on `config` itself, the Streams endpoint from the
    /// environment or profile, and otherwise DynamoDB's (logged at info).
    pub fn from_config(config: &SdkConfig) -> Self {
        let dynamodb_endpoint = endpoint_of(config, DYNAMODB);
        let own_streams_endpoint = endpoint_of(config, DYNAMODB_STREAMS);
        let mut streams = aws_sdk_dynamodbstreams::config::Builder::from(config);
        let streams_endpoint = match (&own_streams_endpoint, &dynamodb_endpoint) {
            (Some(own), _) => Some(own.clone()),
            (None, Some(dynamodb)) => {
                tracing::info!(
                    endpoint = %dynamodb,
                    "DynamoDB Streams uses the DynamoDB endpoint: no Streams endpoint is \
                     configured (set AWS_ENDPOINT_URL_DYNAMODB_STREAMS to choose another)"
                );
                streams = streams.endpoint_url(dynamodb);
                Some(dynamodb.clone())
            }
            (None, None) => None,
        };
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            streams: aws_sdk_dynamodbstreams::Client::from_conf(streams.build()),
            dynamodb_endpoint,
            streams_endpoint,
        }
    }

    /// The endpoint the DynamoDB client talks to, if one is configured
    /// (`None`: AWS's own endpoint for the region).
    pub fn dynamodb_endpoint(&self) -> Option<&str> {
        self.dynamodb_endpoint.as_deref()
    }

    /// The endpoint the Streams client talks to, if one is configured
    /// (`None`: AWS's own endpoint for the region).
    pub fn streams_endpoint(&self) -> Option<&str> {
        self.streams_endpoint.as_deref()
    }
}

/// The endpoint `config` gives the service `service_id`: the config's own
/// `endpoint_url` if it was set in code, else the service's environment
/// variable or profile setting, else the global `AWS_ENDPOINT_URL` one.
fn endpoint_of(config: &SdkConfig, service_id: &str) -> Option<String> {
    if config.get_origin("endpoint_url").is_client_config() {
        return config.endpoint_url().map(str::to_string);
    }
    let from_service = config.service_config().and_then(|conf| {
        ServiceConfigKey::builder()
            .service_id(service_id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .ok()
            .and_then(|key| conf.load_config(key))
    });
    from_service.or_else(|| config.endpoint_url().map(str::to_string))
}
