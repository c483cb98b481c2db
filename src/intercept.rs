//! One base for SDK interceptors: implement the plain methods of [`Hooks`]
//! you need, and attach the hooks to a client as an [`Interceptor`], the one
//! implementation of the SDK's `Intercept` trait in the crate.
//!
//! The SDK's hooks take wrapped contexts and runtime components; a [`Hooks`]
//! method takes what its hook may read or change (the HTTP request, the HTTP
//! response, the operation's output, or the whole context after an attempt)
//! and the request's [`ConfigBag`], where hooks of one request leave state
//! for the next ones (`cfg.interceptor_state().store_put(..)`).
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use aws_sdk_dynamodb::config::http::HttpRequest;
//! use aws_sdk_dynamodb::config::ConfigBag;
//! use aws_sdk_dynamodb::error::BoxError;
//! use dynamo_es::intercept::{Hooks, Interceptor};
//!
//! /// Counts the requests a client sends (each attempt once).
//! #[derive(Debug, Default, Clone)]
//! struct Sent(Arc<AtomicUsize>);
//!
//! impl Hooks for Sent {
//!     const NAME: &'static str = "count the requests sent";
//!
//!     fn read_request(&self, _: &HttpRequest, _: &mut ConfigBag) -> Result<(), BoxError> {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!         Ok(())
//!     }
//! }
//!
//! let sent = Sent::default();
//! let config = aws_sdk_dynamodb::Config::builder()
//!     .behavior_version_latest()
//!     .interceptor(Interceptor(sent.clone()))
//!     .build();
//! # drop(config);
//! assert_eq!(sent.0.load(Ordering::Relaxed), 0);
//! ```
//!
//! **Invariant:** each SDK hook signature is written once in the crate
//! (here); a hook a [`Hooks`] does not define does nothing, and a hook fails
//! its request only by returning an error.

use std::fmt;

use aws_sdk_dynamodb::config::http::{HttpRequest, HttpResponse};
use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextRef,
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextMut, FinalizerInterceptorContextRef, InterceptorContext,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{Output, OutputOrError};

/// What an interceptor does at the points of a request it cares about; each
/// method does nothing unless overridden. Attach it as an [`Interceptor`].
///
/// ```
/// use aws_sdk_dynamodb::config::http::{HttpRequest, HttpResponse};
/// use aws_sdk_dynamodb::config::ConfigBag;
/// use aws_sdk_dynamodb::error::BoxError;
/// use aws_sdk_dynamodb::operation::query::QueryOutput;
/// use aws_smithy_runtime_api::client::interceptors::context::Output;
/// use dynamo_es::intercept::Hooks;
///
/// /// Marks every request with a header, and keeps no item a `Query`
/// /// returns.
/// #[derive(Debug)]
/// struct Hollow;
///
/// impl Hooks for Hollow {
///     const NAME: &'static str = "hollow queries";
///
///     fn modify_request(&self, request: &mut HttpRequest, _: &mut ConfigBag) -> Result<(), BoxError> {
///         request.headers_mut().insert("x-example", "1");
///         Ok(())
///     }
///
///     fn modify_output(&self, output: &mut Output, _: &mut ConfigBag) -> Result<(), BoxError> {
///         if let Some(query) = output.downcast_mut::<QueryOutput>() {
///             query.items = Some(Vec::new());
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Hooks: fmt::Debug + Send + Sync + 'static {
    /// The interceptor's name, for the SDK's logs.
    const NAME: &'static str;

    /// Changes the HTTP request of an attempt before it is signed (the SDK's
    /// `modify_before_signing`).
    fn modify_request(&self, _request: &mut HttpRequest, _cfg: &mut ConfigBag) -> Hooked {
        Ok(())
    }

    /// Reads the HTTP request of an attempt as it is sent (the SDK's
    /// `read_before_transmit`).
    fn read_request(&self, _request: &HttpRequest, _cfg: &mut ConfigBag) -> Hooked {
        Ok(())
    }

    /// Reads the HTTP response of an attempt as it arrives, before its body
    /// is read (the SDK's `read_after_transmit`).
    fn read_response(&self, _response: &HttpResponse, _cfg: &mut ConfigBag) -> Hooked {
        Ok(())
    }

    /// Reads the HTTP response of an attempt once its body was read and
    /// deserialized (the SDK's `read_after_deserialization`).
    fn read_response_body(&self, _response: &HttpResponse, _cfg: &mut ConfigBag) -> Hooked {
        Ok(())
    }

    /// Changes the output of an attempt that succeeded, before the retry
    /// classifiers see it (the SDK's `modify_before_attempt_completion`).
    fn modify_attempt_output(&self, _output: &mut Output, _cfg: &mut ConfigBag) -> Hooked {
        Ok(())
    }

    /// Reads an attempt once it ended, whatever its end (the SDK's
    /// `read_after_attempt`).
    fn read_attempt(&self, _context: &InterceptorContext, _cfg: &mut ConfigBag) -> Hooked {
        Ok(())
    }

    /// Changes the output of a request that succeeded, after its last
    /// attempt (the SDK's `modify_before_completion`).
    fn modify_output(&self, _output: &mut Output, _cfg: &mut ConfigBag) -> Hooked {
        Ok(())
    }
}

/// What a hook returns: an error fails the request with it.
///
/// ```
/// let done: dynamo_es::intercept::Hooked = Ok(());
/// assert!(done.is_ok());
/// ```
pub type Hooked = Result<(), BoxError>;

/// The SDK interceptor running the [`Hooks`] `H`: pass it to a client
/// config's `.interceptor(..)`.
///
/// ```
/// use dynamo_es::intercept::{Hooks, Interceptor};
///
/// #[derive(Debug)]
/// struct Nothing;
///
/// impl Hooks for Nothing {
///     const NAME: &'static str = "does nothing";
/// }
///
/// let config = aws_sdk_dynamodb::Config::builder()
///     .behavior_version_latest()
///     .interceptor(Interceptor(Nothing))
///     .build();
/// # drop(config);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Interceptor<H>(pub H);

/// Runs `hook` on the output in `output`, if there is one.
fn on_output(
    output: Option<&mut OutputOrError>,
    hook: impl FnOnce(&mut Output) -> Hooked,
) -> Hooked {
    match output {
        Some(Ok(output)) => hook(output),
        _ => Ok(()),
    }
}

/// One SDK hook: its name, its context type, and the call of [`Hooks`] it
/// makes with the hooks, the context and the config bag.
macro_rules! hook {
    ($name:ident($context:ty) => |$hooks:ident, $ctx:ident, $cfg:ident| $call:expr) => {
        fn $name(&self, $ctx: $context, _: &RuntimeComponents, $cfg: &mut ConfigBag) -> Hooked {
            let $hooks = &self.0;
            $call
        }
    };
}

impl<H: Hooks> Intercept for Interceptor<H> {
    fn name(&self) -> &'static str {
        H::NAME
    }

    hook!(modify_before_signing(&mut BeforeTransmitInterceptorContextMut<'_>)
        => |h, ctx, cfg| h.modify_request(ctx.request_mut(), cfg));
    hook!(read_before_transmit(&BeforeTransmitInterceptorContextRef<'_>)
        => |h, ctx, cfg| h.read_request(ctx.request(), cfg));
    hook!(read_after_transmit(&BeforeDeserializationInterceptorContextRef<'_>)
        => |h, ctx, cfg| h.read_response(ctx.response(), cfg));
    hook!(read_after_deserialization(&AfterDeserializationInterceptorContextRef<'_>)
        => |h, ctx, cfg| h.read_response_body(ctx.response(), cfg));
    hook!(modify_before_attempt_completion(&mut FinalizerInterceptorContextMut<'_>)
        => |h, ctx, cfg| on_output(ctx.output_or_error_mut(), |o| h.modify_attempt_output(o, cfg)));
    hook!(read_after_attempt(&FinalizerInterceptorContextRef<'_>)
        => |h, ctx, cfg| h.read_attempt(ctx.inner(), cfg));
    hook!(modify_before_completion(&mut FinalizerInterceptorContextMut<'_>)
        => |h, ctx, cfg| on_output(ctx.output_or_error_mut(), |o| h.modify_output(o, cfg)));
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use serde_json::json;

    use super::*;
    use crate::testing::faults::{client_on, quick_retries, short_timeouts, Canned, Scripted};

    /// Records each hook called, in order (clones share the record);
    /// empties the output's item.
    #[derive(Debug, Default, Clone)]
    struct Calls(Arc<Mutex<Vec<&'static str>>>);

    impl Calls {
        fn push(&self, hook: &'static str) -> Hooked {
            self.0.lock().map_err(|_| "poisoned")?.push(hook);
            Ok(())
        }
    }

    impl Hooks for Calls {
        const NAME: &'static str = "calls";

        fn modify_request(&self, _: &mut HttpRequest, _: &mut ConfigBag) -> Hooked {
            self.push("modify_request")
        }
        fn read_request(&self, _: &HttpRequest, _: &mut ConfigBag) -> Hooked {
            self.push("read_request")
        }
        fn read_response(&self, _: &HttpResponse, _: &mut ConfigBag) -> Hooked {
            self.push("read_response")
        }
        fn read_response_body(&self, response: &HttpResponse, _: &mut ConfigBag) -> Hooked {
            let read = response.body().bytes().is_some_and(|body| !body.is_empty());
            self.push(if read {
                "read_response_body"
            } else {
                "no body"
            })
        }
        fn modify_attempt_output(&self, _: &mut Output, _: &mut ConfigBag) -> Hooked {
            self.push("modify_attempt_output")
        }
        fn read_attempt(&self, _: &InterceptorContext, _: &mut ConfigBag) -> Hooked {
            self.push("read_attempt")
        }
        fn modify_output(&self, output: &mut Output, _: &mut ConfigBag) -> Hooked {
            if let Some(got) = output.downcast_mut::<GetItemOutput>() {
                got.item = None;
            }
            self.push("modify_output")
        }
    }

    #[tokio::test]
    async fn each_hook_is_called_once_at_its_point_and_may_change_the_output() {
        let http = Scripted::replying([Canned::ok(json!({"Item": {"K": {"S": "a"}}}))]);
        let client = client_on(http, quick_retries(1), short_timeouts());
        let calls = Calls::default();
        let hooked = aws_sdk_dynamodb::Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(Interceptor(calls.clone()))
                .build(),
        );
        let got = hooked
            .get_item()
            .table_name("T")
            .key("K", crate::item::s("a"))
            .send()
            .await
            .unwrap_or_else(|err| panic!("{err:?}"));
        assert_eq!(got.item, None, "modify_output emptied the item");
        let calls = calls
            .0
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default();
        assert_eq!(
            calls,
            [
                "modify_request",
                "read_request",
                "read_response",
                "read_response_body",
                "modify_attempt_output",
                "read_attempt",
                "modify_output",
            ]
        );
    }
}
