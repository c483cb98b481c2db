//! Leases: which process processes a shard, so no record is dispatched by
//! two live owners at once.
//!
//! **Invariant:** a lease changes hands only through a conditional write
//! that expects the `LeaseCounter` (and `Owner`) the taker last read, and a
//! live owner's lease is taken only after its counter stayed unchanged for
//! a whole lease duration *as measured by the taker's own monotonic clock*
//! (no wall clocks of two machines are compared). Every write of an owner
//! (renew, checkpoint, finish, release) is conditional on `Owner` still
//! being it; when it is not, the write changes nothing and is
//! [`Error::LeaseLost`].
//!
//! Owner ids must be unique per running process (for example host, process
//! id and a random suffix): a process that finds its own id on a lease takes
//! it back at once, as after a restart.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use tokio::time::Instant;

use super::batch::ShardPosition;
use super::checkpoint::{CheckpointStore, ShardCheckpoint, ShardInfo};
use super::fields::{
    millis, now_millis, CHECKPOINT, CHECKPOINT_CREATED_AT, FINISHED, LEASE_COUNTER, OPENED_AT,
    OWNER, PARENT_SHARD_ID, PROJECTION, SHARD_ID, STREAM_ARN, UPDATED_AT,
};
use super::observed::{Seen, Waiting};
use super::Error;
use crate::error::or_refused;
use crate::item::{get_n, get_s, n, s, Item};
use crate::tables::requests::put_request;
use crate::tables::LEASE_KEY;
use crate::utc::rfc3339_millis;

/// A shard's lease, held by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard.
    pub shard: ShardInfo,
    /// The last sequence number processed, if any: processing resumes after
    /// it.
    pub checkpoint: Option<String>,
    /// The shard was finished: all its records were processed.
    pub finished: bool,
    owner: String,
    counter: u64,
    renewed: Instant,
    /// This acquire created the shard's item: no projector of the
    /// projection had leased the shard before.
    created: bool,
    /// Before the first checkpoint, where a reader that opened the shard at
    /// the trim horizon started (the item's `OpenedAt`).
    opened_at: Option<String>,
}

impl Lease {
    /// The owner id holding it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease counter as of this owner's last write.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// When this owner's last successful write to the lease (acquire,
    /// renew, checkpoint, finish) was *sent*, on this process's monotonic
    /// clock. Another process takes the lease over no sooner than a lease
    /// duration after that write landed, so by this owner's clock the lease
    /// is certainly its own until `renewed_at() + lease duration`.
    pub fn renewed_at(&self) -> Instant {
        self.renewed
    }

    /// Whether this lease created the shard's item, so the shard is opened
    /// for the first time by the projection (not reopened after another
    /// reader stopped before its first checkpoint).
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// The first record a reader read after opening the shard at the trim
    /// horizon, before any checkpoint (see [`CheckpointStore::mark_opened`]).
    pub(crate) fn opened_at(&self) -> Option<&str> {
        self.opened_at.as_deref()
    }
}

impl CheckpointStore {
    /// Takes the lease of `shard` for `owner` if it is free, released,
    /// already `owner`'s, or expired, and returns it with the shard's
    /// checkpoint. `Ok(None)` if a live owner holds it, or another process
    /// took it first.
    ///
    /// Expired means: its counter did not change for a
    /// [lease duration](Self::with_lease_duration) *as observed by this
    /// store*. The first call that sees a counter only notes it (and returns
    /// `None`); a call a lease duration later that reads the same counter
    /// takes the lease, conditionally on that counter. So call it
    /// periodically, for example every few seconds, for shards you want.
    /// The first call that finds the counter unchanged for more than half
    /// the lease duration (longer than a live owner goes between renewals)
    /// logs it at `info`, once per wait: the shard, its holder, when the
    /// holder last renewed (by its clock), and when the takeover will be.
    ///
    /// A finished shard is leased like any other, with
    /// [`Lease::finished`] set: nothing is left to do but release it.
    pub async fn acquire(&self, shard: &ShardInfo, owner: &str) -> Result<Option<Lease>, Error> {
        let key = self.key(&shard.shard_id);
        let Some(item) = self.get_item(&key).await? else {
            return self.create(shard, owner, &key).await;
        };
        let current = ShardCheckpoint::from_item(&item)?;
        let opened_at = match item.get(OPENED_AT) {
            None => None,
            Some(_) => Some(get_s(&item, &key, OPENED_AT)?.to_string()),
        };
        let holder = current.owner.as_deref();
        if let Some(holder) = holder.filter(|holder| *holder != owner) {
            let seen =
                (self.observed).expired(&key, holder, current.lease_counter, self.lease_duration);
            match seen {
                Seen::Expired => {}
                Seen::Waiting(waiting) => {
                    if waiting.announce {
                        announce_stalled(&current, holder, waiting, self.lease_duration);
                    }
                    return Ok(None);
                }
            }
        }
        let next = current.lease_counter.saturating_add(1);
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(&key))
            .update_expression("SET #owner = :owner, #counter = :next, #updated = :now")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#counter", LEASE_COUNTER)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":seen", n(current.lease_counter))
            .expression_attribute_values(":now", n(now_millis()));
        update = match holder {
            None => {
                update.condition_expression("#counter = :seen AND attribute_not_exists(#owner)")
            }
            Some(holder) => update
                .condition_expression("#counter = :seen AND #owner = :holder")
                .expression_attribute_values(":holder", s(holder)),
        };
        let sent = Instant::now();
        let refused = UpdateItemError::is_conditional_check_failed_exception;
        if or_refused(update.send().await, "UpdateItem", &self.table, refused)?.is_none() {
            return Ok(None);
        }
        self.observed.forget(&key);
        Ok(Some(Lease {
            shard: current.shard,
            checkpoint: current.checkpoint,
            finished: current.finished,
            owner: owner.to_string(),
            counter: next,
            renewed: sent,
            created: false,
            opened_at,
        }))
    }

    /// Creates the shard's item, leased to `owner`, unless it exists.
    async fn create(
        &self,
        shard: &ShardInfo,
        owner: &str,
        key: &str,
    ) -> Result<Option<Lease>, Error> {
        let mut item: Item = HashMap::from([
            (LEASE_KEY.to_string(), s(key)),
            (PROJECTION.to_string(), s(&self.projection)),
            (STREAM_ARN.to_string(), s(&shard.stream_arn)),
            (SHARD_ID.to_string(), s(&shard.shard_id)),
            (FINISHED.to_string(), AttributeValue::Bool(false)),
            (OWNER.to_string(), s(owner)),
            (LEASE_COUNTER.to_string(), n(1)),
            (UPDATED_AT.to_string(), n(now_millis())),
        ]);
        if let Some(parent) = &shard.parent_shard_id {
            item.insert(PARENT_SHARD_ID.to_string(), s(parent));
        }
        let sent = Instant::now();
        let put = put_request(&self.client, &self.table, item)
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", LEASE_KEY)
            .send()
            .await;
        let refused = PutItemError::is_conditional_check_failed_exception;
        let put = or_refused(put, "PutItem", &self.table, refused)?;
        Ok(put.map(|_| Lease {
            shard: shard.clone(),
            checkpoint: None,
            finished: false,
            owner: owner.to_string(),
            counter: 1,
            renewed: sent,
            created: true,
            opened_at: None,
        }))
    }

    /// The lease's shard position as a transaction writes it (the lease
    /// item, its owner, and its checkpoint as the condition).
    pub(crate) fn position(&self, lease: &Lease) -> ShardPosition {
        ShardPosition {
            table: self.table.clone(),
            key: self.key(&lease.shard.shard_id),
            shard_id: lease.shard.shard_id.clone(),
            owner: lease.owner.clone(),
            previous: lease.checkpoint.clone(),
        }
    }

    /// Heartbeat: bumps the lease counter, conditionally on `lease`'s owner
    /// still holding it; [`Error::LeaseLost`] if another took it over.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), Error> {
        self.owned_update(lease, "", Vec::new(), "").await
    }

    /// Records `sequence_number` as the shard's last processed record,
    /// conditionally on still owning the lease ([`Error::LeaseLost`], and
    /// nothing written, if not). Call it only once the record and all before
    /// it were dispatched. It also renews the lease.
    pub async fn checkpoint(&self, lease: &mut Lease, sequence_number: &str) -> Result<(), Error> {
        self.checkpoint_at(lease, sequence_number, None).await
    }

    /// [`checkpoint`](Self::checkpoint), also recording when the record was
    /// created (its `ApproximateCreationDateTime`), from which
    /// the projection status computes the lag.
    pub async fn checkpoint_at(
        &self,
        lease: &mut Lease,
        sequence_number: &str,
        created: Option<SystemTime>,
    ) -> Result<(), Error> {
        let mut values = vec![(":checkpoint", s(sequence_number))];
        let (set, remove) = match created {
            Some(created) => {
                values.push((":created", n(millis(created))));
                (", #checkpoint = :checkpoint, #created = :created", "")
            }
            None => (", #checkpoint = :checkpoint", " REMOVE #created"),
        };
        self.owned_update(lease, set, values, remove).await?;
        lease.checkpoint = Some(sequence_number.to_string());
        Ok(())
    }

    /// Records where a reader that opened the lease's shard at the trim
    /// horizon started (`OpenedAt`, the first record it read), before it
    /// dispatches anything: a reader reopening the shard before the first
    /// checkpoint resumes there, and stops with [`Error::Trimmed`] if that
    /// record is gone. Conditional on still owning it.
    pub(crate) async fn mark_opened(
        &self,
        lease: &mut Lease,
        sequence_number: &str,
    ) -> Result<(), Error> {
        let values = vec![(":opened", s(sequence_number))];
        self.owned_update(lease, ", #opened = :opened", values, "")
            .await?;
        lease.opened_at = Some(sequence_number.to_string());
        Ok(())
    }

    /// Marks the lease's shard finished (closed, and all its records
    /// processed): its children may start. Conditional on still owning it.
    pub async fn finish(&self, lease: &mut Lease) -> Result<(), Error> {
        let values = vec![(":finished", AttributeValue::Bool(true))];
        self.owned_update(lease, ", #finished = :finished", values, "")
            .await?;
        lease.finished = true;
        Ok(())
    }

    /// Gives the lease up (the checkpoint stays), so another process can
    /// take it at once. [`Error::LeaseLost`] if it was no longer held.
    pub async fn release(&self, mut lease: Lease) -> Result<(), Error> {
        self.owned_update(&mut lease, "", Vec::new(), " REMOVE #owner")
            .await
    }

    /// An `UpdateItem` of the lease's item, conditional on `Owner` being the
    /// lease's owner, that bumps the counter (atomically, `+ 1` in the
    /// expression, so every owner write restarts a taker's expiry clock),
    /// notes when it was sent, sets `UpdatedAt`, and applies
    /// `set` (more `, #name = :value` clauses with `values`) and `remove`
    /// (a ` REMOVE ...` clause). Names `#owner`, `#counter`, `#updated`,
    /// `#checkpoint`, `#created`, `#finished` and `#opened` are defined.
    async fn owned_update(
        &self,
        lease: &mut Lease,
        set: &str,
        values: Vec<(&str, AttributeValue)>,
        remove: &str,
    ) -> Result<(), Error> {
        let expression = format!("SET #counter = #counter + :one, #updated = :now{set}{remove}");
        let names = [
            ("#owner", OWNER),
            ("#counter", LEASE_COUNTER),
            ("#updated", UPDATED_AT),
            ("#checkpoint", CHECKPOINT),
            ("#created", CHECKPOINT_CREATED_AT),
            ("#finished", FINISHED),
            ("#opened", OPENED_AT),
        ];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(self.key(&lease.shard.shard_id)))
            .condition_expression("#owner = :owner")
            .return_values(ReturnValue::UpdatedNew)
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now_millis()));
        for (placeholder, name) in names {
            if expression.contains(placeholder) || placeholder == "#owner" {
                update = update.expression_attribute_names(placeholder, name);
            }
        }
        for (placeholder, value) in values {
            update = update.expression_attribute_values(placeholder, value);
        }
        let sent = Instant::now();
        let out = match update.update_expression(expression).send().await {
            Ok(out) => out,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
            {
                return Err(Error::LeaseLost {
                    shard_id: lease.shard.shard_id.clone(),
                    owner: lease.owner.clone(),
                })
            }
            Err(err) => {
                return Err(crate::Error::from_sdk_on("UpdateItem", &self.table, err).into())
            }
        };
        // The write is done: a response without the new counter (not sent by
        // DynamoDB) must not fail it; the counter went up by one.
        let attributes = out.attributes.unwrap_or_default();
        let key = self.key(&lease.shard.shard_id);
        lease.counter = get_n(&attributes, &key, LEASE_COUNTER)
            .unwrap_or_else(|_| lease.counter.saturating_add(1));
        lease.renewed = sent;
        Ok(())
    }
}
/// Logs (at `info`) that `holder` has stopped renewing `current`'s lease
/// and when this process will take it over, so a restarted projector does
/// not wait in silence.
fn announce_stalled(current: &ShardCheckpoint, holder: &str, waiting: Waiting, lease: Duration) {
    let last_renewed = current.updated_at.map_or_else(
        || "unknown".to_string(),
        |at| format!("{} by its clock", rfc3339_millis(at)),
    );
    let takeover_at = rfc3339_millis(SystemTime::now() + waiting.takeover_in);
    tracing::info!(
        shard = %current.shard.shard_id,
        holder = %holder,
        last_renewed = %last_renewed,
        unchanged_for = %seconds(waiting.unchanged_for),
        takeover_in = %seconds(waiting.takeover_in),
        takeover_at = %takeover_at,
        lease_duration = %seconds(lease),
        "the shard's lease is held by another owner that is not renewing it; taking the shard \
         over once the lease has gone unrenewed for its whole duration, unless the holder \
         renews it first"
    );
}

/// `12.3s`.
fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}
