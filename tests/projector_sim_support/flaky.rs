//! An HTTP client that throttles some requests and loses the responses of
//! some others after the server applied them, chosen by a seeded counter:
//! the faults of one run of a history, for the checkpoint table's client
//! and the Streams client alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use dynamo_es::testing::faults::{operation, Canned, Interpose, Interposed, Next};
use dynamo_es::testing::fixtures::Rng;

/// Throttles `throttle`% of requests (answering `throttled` without
/// reaching the server) and loses the response of `lose`% of the requests
/// of `lossy` operations (the server applied them).
#[derive(Debug)]
pub struct Flaky {
    seed: u64,
    count: AtomicU64,
    throttle: u64,
    lose: u64,
    throttled: Canned,
    lossy: &'static [&'static str],
}

impl Flaky {
    /// A plain HTTP client with these faults.
    pub fn new(
        seed: u64,
        throttle: u64,
        lose: u64,
        throttled: Canned,
        lossy: &'static [&'static str],
    ) -> Interposed<Self> {
        Interposed::plain(Flaky {
            seed,
            count: AtomicU64::default(),
            throttle,
            lose,
            throttled,
            lossy,
        })
    }
}

impl Interpose for Flaky {
    fn call(self: Arc<Self>, request: HttpRequest, next: &Next) -> HttpConnectorFuture {
        let count = self.count.fetch_add(1, Ordering::Relaxed);
        let roll = Rng::new(self.seed ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15)).below(100);
        if roll < self.throttle {
            return HttpConnectorFuture::ready(self.throttled.to_http());
        }
        let lose =
            roll < self.throttle + self.lose && self.lossy.contains(&operation(&request).as_str());
        let response = next.call(request);
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
