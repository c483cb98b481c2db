//! [`execute_with_retry`]: a command that reloads and runs again when its
//! commit loses an optimistic-lock race (Equinox's `Attempts`).
//!
//! A conflict writes nothing (every event goes under
//! `attribute_not_exists`, a snapshot under its version), and cqrs-es
//! dispatches to queries only after a successful commit, so running the
//! command again on a fresh load is safe. Any other error is returned at
//! once: an error whose outcome is unknown may have been applied, and a
//! user error would only repeat.

use std::collections::HashMap;

use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};

/// Executes `command` on `aggregate_id` through `cqrs`, reloading and
/// executing it again each time the commit fails with
/// `AggregateError::AggregateConflict`, at most `attempts` times in all
/// (0 counts as 1). Returns how many attempts it took (1: the first one
/// succeeded).
///
/// `CqrsFramework::execute` consumes the command, so each retry runs a
/// clone: the command must be `Clone`. A conflict means another writer
/// committed first, or a [`HotCache`](crate::HotCache) entry was stale (the
/// conflict dropped it, so the retry loads from the table): a stale cache
/// costs one retry, not an error. After the last attempt the conflict is
/// returned; raise `attempts` if commands on one aggregate race often.
///
/// ```no_run
/// # #![recursion_limit = "256"]
/// # use std::collections::HashMap;
/// # async fn demo(cqrs: dynamo_es::DynamoCqrs<dynamo_es::testing::aggregates::BankAccount>)
/// #     -> Result<(), Box<dyn std::error::Error>> {
/// use dynamo_es::execute_with_retry;
/// use dynamo_es::testing::aggregates::BankCommand;
///
/// let deposit = BankCommand::Deposit { cents: 500, description: "salary".into() };
/// let attempts = execute_with_retry(&cqrs, "acct-1", deposit, HashMap::new(), 3).await?;
/// assert!((1..=3).contains(&attempts));
/// # Ok(()) }
/// ```
pub async fn execute_with_retry<A, ES>(
    cqrs: &CqrsFramework<A, ES>,
    aggregate_id: &str,
    command: A::Command,
    metadata: HashMap<String, String>,
    attempts: usize,
) -> Result<usize, AggregateError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
    ES: EventStore<A>,
{
    let attempts = attempts.max(1);
    let mut attempt = 1;
    loop {
        if attempt == attempts {
            // The last attempt: the command itself, no clone needed.
            return cqrs
                .execute_with_metadata(aggregate_id, command, metadata)
                .await
                .map(|()| attempt);
        }
        let result = cqrs
            .execute_with_metadata(aggregate_id, command.clone(), metadata.clone())
            .await;
        match result {
            Ok(()) => return Ok(attempt),
            Err(AggregateError::AggregateConflict) => {
                tracing::debug!(
                    aggregate_type = A::TYPE,
                    aggregate_id,
                    attempt,
                    attempts,
                    "command conflicted; reloading and retrying"
                );
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}
