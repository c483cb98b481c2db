//! Keeping a shard's lease alive while its reader reads, waits and
//! dispatches, and fencing the reader off once it may have lost it.
//!
//! **Invariant:** a reader starts a step (a read, a wait, a dispatch) only
//! while its lease is alive *by its own monotonic clock*: less than a lease
//! duration since its last successful write to the lease (renewal,
//! checkpoint) was sent ([`Lease::renewed_at`]). While a step runs, the
//! lease is renewed every heartbeat, concurrently with the step; when a
//! renewal is refused ([`Error::LeaseLost`]: another owner took the shard)
//! or the lease runs out before a renewal succeeds, the step is abandoned at
//! once (its future dropped, so a dispatch stops between two awaits) and
//! the reader stops without a checkpoint.
//!
//! Why this keeps two live owners from dispatching one record: a taker
//! takes a lease only after seeing its counter unchanged for a whole lease
//! duration of *its* clock, starting when it read the counter, which is
//! after the owner's last write landed, which is after that write was sent.
//! So the taker cannot start before `renewed_at() + lease duration`, and by
//! then the owner has abandoned its step.
//!
//! Remaining assumption: clocks of both processes run at about the same
//! rate, and the owner's process keeps running. A process stalled for a
//! whole lease duration (a suspended VM, a long stop-the-world pause) wakes
//! up in the middle of a dispatch it can no longer fence, and may overlap
//! with the taker until its next await; its checkpoint write then fails
//! (it is conditional on the owner). Exactly-once views
//! ([`ViewProjection`](super::ViewProjection)) make such an overlap
//! harmless; at-least-once projections see those events twice.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{CheckpointStore, Error, Lease};

/// A reader's heartbeat over its lease.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    /// How often the lease is renewed (at most half its duration).
    every: Duration,
    /// The lease duration of the checkpoint store.
    duration: Duration,
    /// When the next renewal is due.
    next: Instant,
}

impl Heartbeat {
    /// A heartbeat renewing every `every` (at most half the store's lease
    /// duration), the first renewal due `every` after the lease was taken.
    pub fn new(checkpoints: &CheckpointStore, lease: &Lease, every: Duration) -> Self {
        let duration = checkpoints.lease_duration();
        let every = every.min(duration / 2);
        Heartbeat {
            every,
            duration,
            next: lease.renewed_at() + every,
        }
    }

    /// When the lease runs out by this process's clock, unless renewed.
    fn expires(&self, lease: &Lease) -> Instant {
        lease.renewed_at() + self.duration
    }

    /// [`Error::LeaseLost`] if the lease ran out by this process's clock:
    /// another process may have taken the shard, so no step may start.
    pub fn check(&self, lease: &Lease) -> Result<(), Error> {
        if Instant::now() >= self.expires(lease) {
            tracing::warn!(shard = %lease.shard.shard_id, owner = %lease.owner(), lease = ?self.duration,
                "lease not renewed within its duration; stopping the shard");
            return Err(lost(lease));
        }
        Ok(())
    }

    /// Renews the lease if a renewal is due (between steps).
    pub async fn renew_if_due(
        &mut self,
        checkpoints: &CheckpointStore,
        lease: &mut Lease,
    ) -> Result<(), Error> {
        self.check(lease)?;
        if Instant::now() >= self.next {
            checkpoints.renew(lease).await?;
            self.next = lease.renewed_at() + self.every;
        }
        Ok(())
    }

    /// Runs `work` while renewing the lease every heartbeat. If a renewal is
    /// refused or the lease runs out first, `work` is dropped unfinished and
    /// the answer is [`Error::LeaseLost`]; a lease already run out does not
    /// start it.
    pub async fn keep_alive<T>(
        &mut self,
        checkpoints: &CheckpointStore,
        lease: &mut Lease,
        work: impl Future<Output = T>,
    ) -> Result<T, Error> {
        self.check(lease)?;
        tokio::pin!(work);
        let beating = self.beat(checkpoints, lease);
        tokio::select! {
            biased;
            done = &mut work => Ok(done),
            lost = beating => Err(lost),
        }
    }

    /// Renews the lease whenever due; ends only when it is lost.
    async fn beat(&mut self, checkpoints: &CheckpointStore, lease: &mut Lease) -> Error {
        loop {
            let expires = self.expires(lease);
            tokio::time::sleep_until(self.next.min(expires)).await;
            if Instant::now() >= expires {
                tracing::warn!(shard = %lease.shard.shard_id, owner = %lease.owner(), lease = ?self.duration,
                    "lease not renewed within its duration; abandoning the step in progress");
                return lost(lease);
            }
            // `next` moves on only once the renewal ended: one dropped with
            // the step is redone at once.
            let renewal = tokio::time::timeout_at(expires, checkpoints.renew(lease)).await;
            self.next = Instant::now() + self.every;
            match renewal {
                Ok(Ok(())) => {}
                Ok(Err(err @ Error::LeaseLost { .. })) => {
                    tracing::warn!(shard = %lease.shard.shard_id, owner = %lease.owner(),
                        "lease taken over; abandoning the step in progress");
                    return err;
                }
                Ok(Err(err)) => {
                    tracing::warn!(shard = %lease.shard.shard_id, error = %err,
                        "lease renewal failed; retrying at the next heartbeat");
                }
                // The lease ran out while the renewal was in flight: the
                // next turn of the loop reports it.
                Err(_) => {}
            }
        }
    }
}

fn lost(lease: &Lease) -> Error {
    Error::LeaseLost {
        shard_id: lease.shard.shard_id.clone(),
        owner: lease.owner().to_string(),
    }
}
