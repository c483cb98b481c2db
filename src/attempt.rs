//! One attempt of a request, as the write paths' retry classifiers and
//! interceptors read it: the operation's own error it ended with, and
//! which attempt of how many it was. [`AfterAttempt`] is the one shape of
//! the crate's interceptors that read each attempt once it ended;
//! [`AfterEachAttempt`] attaches one to a request.
//!
//! **Invariant:** these interceptors only read: they never fail a request,
//! change it, or change what the SDK retries (the retry classifiers do).

use std::fmt;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::ConfigBag;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::RequestAttempts;

use crate::intercept::{Hooked, Hooks, Interceptor};

/// The error of operation `E` (e.g. `PutItemError`) the attempt in `ctx`
/// ended with, if it ended with one.
pub(crate) fn operation_error<E: std::error::Error + Send + Sync + 'static>(
    ctx: &InterceptorContext,
) -> Option<&E> {
    match ctx.output_or_error() {
        Some(Err(error)) => error.as_operation_error()?.downcast_ref::<E>(),
        _ => None,
    }
}

/// Which attempt of a request the SDK made, and how many it may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttemptNumber {
    /// The attempt, from 1.
    pub(crate) attempt: u32,
    /// The most attempts the retry configuration allows.
    pub(crate) max_attempts: u32,
}

impl AttemptNumber {
    /// The attempt the SDK's `cfg` records (1 of 1 if it records none).
    fn of(cfg: &ConfigBag) -> Self {
        AttemptNumber {
            attempt: cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts()),
            max_attempts: cfg.load::<RetryConfig>().map_or(1, |c| c.max_attempts()),
        }
    }

    /// True if the SDK may make another attempt after this one.
    pub(crate) fn retries_left(self) -> bool {
        self.attempt < self.max_attempts
    }
}

/// What an interceptor of this crate does after each attempt of the
/// request it is attached to (as an [`AfterEachAttempt`]): it reads the
/// attempt, and nothing else.
pub(crate) trait AfterAttempt: fmt::Debug + Send + Sync + 'static {
    /// The interceptor's name, for the SDK's logs.
    const NAME: &'static str;

    /// Reads the attempt that just ended (`ctx`), attempt `number`.
    fn after_attempt(&self, ctx: &InterceptorContext, number: AttemptNumber);
}

/// The hooks running an [`AfterAttempt`] after every attempt, before the
/// retry classifiers; attach them as an [`Interceptor`] (see
/// [`AfterEachAttempt::interceptor`]).
#[derive(Debug)]
pub(crate) struct AfterEachAttempt<H>(pub(crate) H);

impl<H: AfterAttempt> AfterEachAttempt<H> {
    /// The SDK interceptor running `after` after every attempt.
    pub(crate) fn interceptor(after: H) -> Interceptor<Self> {
        Interceptor(AfterEachAttempt(after))
    }
}

impl<H: AfterAttempt> Hooks for AfterEachAttempt<H> {
    const NAME: &'static str = H::NAME;

    fn read_attempt(&self, context: &InterceptorContext, cfg: &mut ConfigBag) -> Hooked {
        self.0.after_attempt(context, AttemptNumber::of(cfg));
        Ok(())
    }
}
