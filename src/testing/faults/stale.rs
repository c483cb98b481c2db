//! A replica behind the newest writes: eventually consistent `Query`
//! answers that miss the newest items, or one in the middle.
//!
//! DynamoDB answers an eventually consistent read from any replica, which
//! may not have applied the newest writes yet; no emulator does. A client
//! with [`StaleReads`] among its interceptors changes the answer of every
//! `Query` sent without `ConsistentRead = true` the way such a replica may:
//! [`StaleReads::lagging`] drops the newest items, [`StaleReads::with_hole`]
//! one in the middle (a reader must never apply an answer with a hole).
//! Strongly consistent queries pass unchanged, and every query is recorded
//! with its consistency.
//!
//! ```
//! # async fn demo(client: aws_sdk_dynamodb::Client) {
//! use dynamo_es::testing::faults::{stale_reads, StaleReads};
//!
//! // Every eventually consistent page misses its newest event.
//! let (client, stale) = stale_reads(&client, StaleReads::lagging(1));
//! assert!(stale.queries().is_empty());
//! # drop(client);
//! # }
//! ```
//!
//! **Invariant:** only the items of an eventually consistent `Query`'s
//! page change, and only by removal (a replica never shows an item that
//! was not written), so that the answer is one a stale replica may give:
//! the newest items are dropped from a page read newest first, or from the
//! last page read oldest first (a page with a `LastEvaluatedKey` read
//! oldest first is passed on as it is: its newest items are in a later
//! page). A page read newest first keeps its `LastEvaluatedKey`: a page
//! with fewer items than its limit is one DynamoDB may return.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::interceptors::context::Output;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde_json::Value;

use super::operation;
use crate::intercept::{Hooked, Hooks, Interceptor};

/// What a stale replica leaves out of an eventually consistent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// The newest `n` items (by sort key).
    Newest(usize),
    /// The item after the newest, in a page of three or more.
    Hole,
}

/// A `Query` as [`StaleReads`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleQuery {
    /// Whether it asked for a strongly consistent read.
    pub consistent: bool,
    /// How many items its answer lost (0 if strongly consistent).
    pub dropped: usize,
}

/// An SDK interceptor answering eventually consistent queries as a stale
/// replica may (see the module). Clones share the record.
#[derive(Debug, Clone)]
pub struct StaleReads {
    miss: Miss,
    every: usize,
    eventual: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<StaleQuery>>>,
}

/// What [`StaleReads`] notes of a request before it is sent.
#[derive(Debug, Clone)]
struct Sent {
    consistent: bool,
    newest_first: bool,
}

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

impl StaleReads {
    /// A replica `n` writes behind on every aggregate: each eventually
    /// consistent answer misses its newest `n` items.
    pub fn lagging(n: usize) -> Self {
        StaleReads::missing(Miss::Newest(n))
    }

    /// A replica with a hole: each eventually consistent answer of three or
    /// more items misses the one after the newest.
    pub fn with_hole() -> Self {
        StaleReads::missing(Miss::Hole)
    }

    fn missing(miss: Miss) -> Self {
        StaleReads {
            miss,
            every: 1,
            eventual: Arc::default(),
            queries: Arc::default(),
        }
    }

    /// Stale on every `n`-th eventually consistent query only (the first,
    /// the `n + 1`-th, ...); the others are answered as sent. 0 counts as 1.
    pub fn on_every(self, n: usize) -> Self {
        StaleReads {
            every: n.max(1),
            ..self
        }
    }

    fn record(&self) -> MutexGuard<'_, Vec<StaleQuery>> {
        self.queries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every `Query` answered so far, oldest first.
    pub fn queries(&self) -> Vec<StaleQuery> {
        self.record().clone()
    }
}

impl Hooks for StaleReads {
    const NAME: &'static str = "dynamo_es::testing::faults::StaleReads";

    fn read_request(&self, request: &HttpRequest, cfg: &mut ConfigBag) -> Hooked {
        if operation(request) != "Query" {
            return Ok(());
        }
        let body: Value = request
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        cfg.interceptor_state().store_put(Sent {
            consistent: body["ConsistentRead"].as_bool() == Some(true),
            newest_first: body["ScanIndexForward"].as_bool() == Some(false),
        });
        Ok(())
    }

    fn modify_attempt_output(&self, output: &mut Output, cfg: &mut ConfigBag) -> Hooked {
        let Some(sent) = cfg.load::<Sent>().cloned() else {
            return Ok(());
        };
        let Some(output) = output.downcast_mut::<QueryOutput>() else {
            return Ok(());
        };
        let complete = output
            .last_evaluated_key
            .as_ref()
            .is_none_or(|key| key.is_empty());
        let mut dropped = 0;
        let last = complete || sent.newest_first;
        let turn = !sent.consistent
            && self
                .eventual
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.every);
        if let (true, true, Some(items)) = (turn, last, output.items.as_mut()) {
            // Newest first: the newest item leads the page.
            if !sent.newest_first {
                items.reverse();
            }
            match self.miss {
                Miss::Newest(n) => {
                    dropped = n.min(items.len());
                    items.drain(..dropped);
                }
                Miss::Hole if items.len() >= 3 => {
                    items.remove(1);
                    dropped = 1;
                }
                Miss::Hole => {}
            }
            if !sent.newest_first {
                items.reverse();
            }
            let left = i32::try_from(items.len()).unwrap_or(i32::MAX);
            output.count = left;
            output.scanned_count = left;
        }
        self.record().push(StaleQuery {
            consistent: sent.consistent,
            dropped,
        });
        Ok(())
    }
}

/// `client` with `stale` among its interceptors, and `stale` (for its
/// record).
pub fn stale_reads(client: &Client, stale: StaleReads) -> (Client, StaleReads) {
    let config = client
        .config()
        .to_builder()
        .interceptor(Interceptor(stale.clone()))
        .build();
    (Client::from_conf(config), stale)
}
