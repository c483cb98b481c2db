//! An HTTP client that throttles some requests and loses the responses of
//! some others after the server applied them, chosen by a seeded counter:
//! the faults of one run of a history, for the checkpoint table's client
//! and the Streams client alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;
use dynamo_es::testing::faults::{operation, Canned};
use dynamo_es::testing::fixtures::Rng;

/// Throttles `throttle`% of requests (answering `throttled` without
/// reaching the server) and loses the response of `lose`% of the requests
/// of `lossy` operations (the server applied them).
#[derive(Debug, Clone)]
pub struct Flaky {
    inner: SharedHttpClient,
    seed: u64,
    count: Arc<AtomicU64>,
    throttle: u64,
    lose: u64,
    throttled: Canned,
    lossy: &'static [&'static str],
}

impl Flaky {
    pub fn new(
        seed: u64,
        throttle: u64,
        lose: u64,
        throttled: Canned,
        lossy: &'static [&'static str],
    ) -> Self {
        Flaky {
            inner: aws_smithy_http_client::Builder::new().build_http(),
            seed,
            count: Arc::default(),
            throttle,
            lose,
            throttled,
            lossy,
        }
    }
}

#[derive(Debug)]
struct Connector {
    inner: SharedHttpConnector,
    flaky: Flaky,
}

impl HttpClient for Flaky {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        Connector {
            inner: self.inner.http_connector(settings, components),
            flaky: self.clone(),
        }
        .into_shared()
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let flaky = &self.flaky;
        let count = flaky.count.fetch_add(1, Ordering::Relaxed);
        let roll = Rng::new(flaky.seed ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15)).below(100);
        if roll < flaky.throttle {
            return HttpConnectorFuture::ready(flaky.throttled.to_http());
        }
        let lose = roll < flaky.throttle + flaky.lose
            && flaky.lossy.contains(&operation(&request).as_str());
        let response = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let response = response.await?;
            if lose && response.status().is_success() {
                return Err(ConnectorError::io(
                    "connection reset before the response arrived (simulated)".into(),
                ));
            }
            Ok(response)
        })
    }
}
