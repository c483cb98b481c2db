//! Which process reads which slice: feed processes of one projection and
//! aggregate type share the slices through the checkpoint table, and
//! rebalance when one joins or leaves.
//!
//! Each process keeps a heartbeat item (`{projection}#feed#{type}#owner#{owner}`,
//! a counter it bumps every round), and each slice's position item names
//! its `Owner`. A round: bump the heartbeat, read every item of the feed
//! (one `Scan`), count the live owners (those whose heartbeat changed within
//! a lease duration, measured on this process's monotonic clock, as stream
//! leases are; see [`super::super::observed`]), and aim at a fair share,
//! `ceil(slices / live owners)`: take slices nobody or a dead owner holds,
//! and, while short, one slice from the owner holding the most if it holds
//! more than its share.
//!
//! **Invariant:** a slice's owner changes only by a conditional write that
//! names the owner the taker read, and a dead owner's slices are taken only
//! after its heartbeat stood still for a whole lease duration. Ownership
//! decides who *reads*; what makes progress safe is the position's
//! `Version` (see [`super::positions`]): a process that lost a slice fails
//! its next save and drops the slice, so two owners never both advance a
//! position (an event may be dispatched by both meanwhile: at-least-once,
//! as with stream leases).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::Client;

use super::super::observed::{Observed, Seen};
use crate::error::{or_refused, Error as StoreError};
use crate::item::{get_n, get_s, n, s, Item};
use crate::projection::Error;
use crate::tables::requests::{scan, Filter};
use crate::tables::LEASE_KEY;

pub(super) const OWNER: &str = "Owner";
const HEARTBEAT: &str = "Heartbeat";
const PROJECTION: &str = "Projection";

/// What one round found of the feed's items.
#[derive(Debug, Default)]
pub(super) struct Round {
    /// Per slice with an item: its owner, if any.
    pub(super) owners: BTreeMap<u16, Option<String>>,
    /// The owners alive (this process included).
    pub(super) alive: BTreeSet<String>,
}

/// The slice leases of one feed process.
#[derive(Debug)]
pub(super) struct SliceLeases {
    client: Client,
    table: String,
    prefix: String,
    owner: String,
    duration: Duration,
    heartbeat: u64,
    observed: Observed,
}

impl SliceLeases {
    /// Leases of the feed of `aggregate_type` for `projection` in the
    /// checkpoint table `table`, held as `owner`.
    pub(super) fn new(
        client: Client,
        table: &str,
        projection: &str,
        aggregate_type: &str,
        owner: &str,
        duration: Duration,
    ) -> Self {
        SliceLeases {
            client,
            table: table.to_string(),
            prefix: format!("{projection}#feed#{aggregate_type}#"),
            owner: owner.to_string(),
            duration,
            heartbeat: 0,
            observed: Observed::default(),
        }
    }

    /// This process's owner id.
    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    fn slice_key(&self, slice: u16) -> String {
        format!("{}{slice}", self.prefix)
    }

    /// Bumps this process's heartbeat and reads every item of the feed.
    pub(super) async fn round(&mut self, projection: &str) -> Result<Round, Error> {
        self.heartbeat += 1;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(LEASE_KEY, s(format!("{}owner#{}", self.prefix, self.owner)))
            .item(PROJECTION, s(projection))
            .item(HEARTBEAT, n(self.heartbeat))
            .send()
            .await
            .map_err(|err| StoreError::from_sdk_on("PutItem", &self.table, err))?;
        let items = scan(
            &self.client,
            &self.table,
            Filter::prefix(LEASE_KEY, &self.prefix),
        )
        .await?;
        let mut round = Round::default();
        round.alive.insert(self.owner.clone());
        for item in &items {
            self.read_item(item, &mut round)?;
        }
        Ok(round)
    }

    fn read_item(&self, item: &Item, round: &mut Round) -> Result<(), Error> {
        let key = get_s(item, LEASE_KEY, "LeaseKey")?;
        let rest = key.strip_prefix(&self.prefix).unwrap_or_default();
        if let Some(owner) = rest.strip_prefix("owner#") {
            if owner != self.owner {
                let counter: u64 = get_n(item, HEARTBEAT, "Heartbeat")?;
                if let Seen::Waiting(_) = self.observed.expired(key, owner, counter, self.duration)
                {
                    round.alive.insert(owner.to_string());
                }
            }
            return Ok(());
        }
        let Ok(slice) = rest.parse::<u16>() else {
            return Ok(());
        };
        let owner = match item.get(OWNER) {
            Some(_) => Some(get_s(item, OWNER, "Owner")?.to_string()),
            None => None,
        };
        round.owners.insert(slice, owner);
        Ok(())
    }

    /// The slices to take this round, given `count` slices: free ones and
    /// dead owners' first, then, while short of a fair share, one from the
    /// busiest owner holding more than its share.
    pub(super) fn wanted(&self, round: &Round, count: u16) -> Vec<(u16, Option<String>)> {
        let alive = u16::try_from(round.alive.len()).unwrap_or(u16::MAX).max(1);
        let share = usize::from(count.div_ceil(alive));
        let mut held: BTreeMap<&str, usize> = BTreeMap::new();
        for owner in round.owners.values().flatten() {
            if round.alive.contains(owner) {
                *held.entry(owner).or_default() += 1;
            }
        }
        let mine = held.get(self.owner.as_str()).copied().unwrap_or_default();
        let mut wanted = Vec::new();
        for slice in 0..count {
            if mine + wanted.len() >= share {
                return wanted;
            }
            match round.owners.get(&slice) {
                None | Some(None) => wanted.push((slice, None)),
                Some(Some(owner)) if !round.alive.contains(owner) => {
                    wanted.push((slice, Some(owner.clone())));
                }
                Some(Some(_)) => {}
            }
        }
        // Still short: take from the owners holding more than a share,
        // the busiest first, no more than each holds over its share.
        let mut over: Vec<(&str, usize)> = held
            .iter()
            .filter(|(owner, slices)| **owner != self.owner && **slices > share)
            .map(|(owner, slices)| (*owner, *slices - share))
            .collect();
        over.sort_by_key(|(_, excess)| std::cmp::Reverse(*excess));
        for (owner, excess) in over {
            let theirs = round
                .owners
                .iter()
                .rev()
                .filter(|(_, holder)| holder.as_deref() == Some(owner))
                .take(excess);
            for (slice, _) in theirs {
                if mine + wanted.len() >= share {
                    return wanted;
                }
                wanted.push((*slice, Some(owner.to_string())));
            }
        }
        wanted
    }

    /// Takes `slice` from `holder` (`None`: nobody); false if someone else
    /// changed its owner first.
    pub(super) async fn take(&self, slice: u16, holder: Option<&str>) -> Result<bool, Error> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(self.slice_key(slice)))
            .update_expression("SET #owner = :me")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":me", s(&self.owner));
        update = match holder {
            None => update.condition_expression("attribute_not_exists(#owner)"),
            Some(holder) => update
                .condition_expression("#owner = :holder")
                .expression_attribute_values(":holder", s(holder)),
        };
        let refused = UpdateItemError::is_conditional_check_failed_exception;
        let taken = or_refused(update.send().await, "UpdateItem", &self.table, refused)?;
        Ok(taken.is_some())
    }

    /// Gives `slice` up, if this process still holds it.
    pub(super) async fn release(&self, slice: u16) -> Result<(), Error> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(self.slice_key(slice)))
            .update_expression("REMOVE #owner")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        let refused = UpdateItemError::is_conditional_check_failed_exception;
        or_refused(update, "UpdateItem", &self.table, refused)?;
        Ok(())
    }

    /// Removes this process's heartbeat: it has left.
    pub(super) async fn leave(&self) -> Result<(), Error> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(LEASE_KEY, s(format!("{}owner#{}", self.prefix, self.owner)))
            .send()
            .await
            .map_err(|err| StoreError::from_sdk_on("DeleteItem", &self.table, err))?;
        Ok(())
    }
}
