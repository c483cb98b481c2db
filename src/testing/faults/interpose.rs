//! An HTTP client in front of a real one that hands every request to an
//! [`Interpose`]: the one base of the faults that answer some requests
//! themselves, lose, hold or delay the answers of others, or count what
//! goes by.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
//! use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
//! use dynamo_es::testing::faults::{Interpose, Interposed, Next};
//!
//! /// Counts the requests it passes on.
//! #[derive(Debug, Default)]
//! struct Count(AtomicUsize);
//!
//! impl Interpose for Count {
//!     fn call(self: Arc<Self>, request: HttpRequest, next: &Next) -> HttpConnectorFuture {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!         next.call(request)
//!     }
//! }
//!
//! let http = Interposed::plain(Count::default());
//! // `http` is the HTTP client of an SDK client's config; `http.0` counts.
//! assert_eq!(http.0.load(Ordering::Relaxed), 0);
//! ```
//!
//! **Invariant:** every request an [`Interposed`] client is given goes to
//! its interposer, once, with the connector of the client it wraps; what
//! reaches the server and what the caller gets back is the interposer's
//! choice alone.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;

/// Where an [`Interpose`] sends a request on: the connector of the HTTP
/// client the [`Interposed`] wraps (call it with [`HttpConnector::call`]).
pub type Next = SharedHttpConnector;

/// What an [`Interposed`] client does with each request.
pub trait Interpose: fmt::Debug + Send + Sync + 'static {
    /// Answers `request`: by handing it to `next` and passing its answer
    /// on, changed or not, or without sending it at all.
    fn call(self: Arc<Self>, request: HttpRequest, next: &Next) -> HttpConnectorFuture;
}

/// An HTTP client that hands every request to its [`Interpose`] together
/// with the connector of the HTTP client it wraps. Clones share the
/// interposer, which the client derefs to.
#[derive(Debug)]
pub struct Interposed<I> {
    inner: SharedHttpClient,
    interposer: Arc<I>,
}

impl<I> Clone for Interposed<I> {
    fn clone(&self) -> Self {
        Interposed {
            inner: self.inner.clone(),
            interposer: self.interposer.clone(),
        }
    }
}

impl<I: Interpose> Interposed<I> {
    /// `interposer` in front of a plain HTTP client.
    pub fn plain(interposer: I) -> Self {
        Interposed::over(
            aws_smithy_http_client::Builder::new().build_http(),
            interposer,
        )
    }

    /// `interposer` in front of `inner`.
    pub fn over(inner: SharedHttpClient, interposer: I) -> Self {
        Interposed {
            inner,
            interposer: Arc::new(interposer),
        }
    }
}

impl<I> Deref for Interposed<I> {
    type Target = I;

    fn deref(&self) -> &I {
        &self.interposer
    }
}

impl<I: Interpose> HttpClient for Interposed<I> {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        Connector {
            next: self.inner.http_connector(settings, components),
            interposer: self.interposer.clone(),
        }
        .into_shared()
    }
}

/// The connector of an [`Interposed`] client.
#[derive(Debug)]
struct Connector<I> {
    next: Next,
    interposer: Arc<I>,
}

impl<I: Interpose> HttpConnector for Connector<I> {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.interposer.clone().call(request, &self.next)
    }
}
