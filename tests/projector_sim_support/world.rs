//! The world of one history: the fake stream and its shard tree, the events
//! table on the emulator, the view and checkpoint tables, and the model of
//! what was committed where.
//!
//! **Invariant:** every committed event is written to the events table and
//! pushed to the one open shard that owns its aggregate's partition, so an
//! aggregate's events are in commit order along its shard lineage (parent
//! before child), as DynamoDB Streams keeps them; retention trims records
//! in commit order, and only a closed shard with every record trimmed
//! disappears.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
use dynamo_es::aws_sdk_dynamodb::config::retry::RetryPartition;
use dynamo_es::aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use dynamo_es::aws_sdk_dynamodb::Client;
use dynamo_es::item::{
    aggregate_key, event_to_item, n, s, AGGREGATE_ID_SEQUENCE, AGGREGATE_TYPE_AND_ID,
};
use dynamo_es::projection::CheckpointStore;
use dynamo_es::tables::create_checkpoint_table;
use dynamo_es::testing::faults::{quick_retries, Canned};
use dynamo_es::testing::fixtures::Rng;
use dynamo_es::testing::streams::FakeStreams;
use dynamo_es::testing::{dynamodb, unique_name, TestTables};
use dynamo_es::Codec;
use serde_json::json;

use super::flaky::Flaky;
use super::schedule::{Faults, Schedule};
use crate::common::{deposit_event, Account};

/// Key partitions: each open shard owns some; an aggregate's partition is
/// fixed.
const PARTITIONS: usize = 4;

/// How long a lease lives without renewal.
pub const LEASE: Duration = Duration::from_millis(1000);

/// One shard as the model knows it.
#[derive(Debug, Clone)]
pub struct Shard {
    pub id: String,
    pub parent: Option<String>,
    pub open: bool,
    pub partitions: Vec<usize>,
    /// Indexes into [`World::commits`], in push order.
    pub records: Vec<usize>,
    pub trimmed: usize,
    pub removed: bool,
}

/// One committed event, or an aggregate's tombstone.
#[derive(Debug, Clone)]
pub struct Commit {
    pub aggregate: String,
    /// Of the projected type (`Account`).
    pub projected: bool,
    pub sequence: usize,
    pub amount: i64,
    pub shard: String,
    /// The aggregate's deletion (at the sequence after its last event).
    pub tombstone: bool,
}

pub struct World {
    // From the schedule.
    pub seed: u64,
    pub batch_size: i32,
    // The stream: the fake endpoint and its shards.
    pub fake: FakeStreams,
    pub shards: Vec<Shard>,
    /// Retention trimmed every record committed before this index.
    pub trimmed_before: usize,
    next_child: usize,
    // The tables, and the projection the projectors run.
    pub db: TestTables,
    pub checkpoint_table: String,
    pub projection: String,
    // The history: ids of the projected aggregates, then the others, and
    // every commit in order.
    pub aggregates: Vec<String>,
    pub others: Vec<String>,
    pub commits: Vec<Commit>,
    /// Deleted projected aggregates: the last sequence, and the index of
    /// the tombstone in `commits`.
    pub deleted: HashMap<String, (usize, usize)>,
}

impl World {
    pub async fn new(schedule: &Schedule) -> Self {
        let fake = FakeStreams::start()
            .await
            .expect("the fake Streams endpoint");
        let db = dynamodb().await.expect("tables on the emulator");
        let checkpoint_table = unique_name("sim-checkpoints");
        create_checkpoint_table(&db.client, &checkpoint_table)
            .await
            .expect("the checkpoint table");
        let mut shards = Vec::new();
        for root in 0..schedule.roots {
            let id = format!("shard-{root}");
            fake.add_shard(&id, None);
            shards.push(Shard {
                id,
                parent: None,
                open: true,
                partitions: (0..PARTITIONS)
                    .filter(|p| p % schedule.roots == root)
                    .collect(),
                records: Vec::new(),
                trimmed: 0,
                removed: false,
            });
        }
        World {
            seed: schedule.seed,
            batch_size: schedule.batch_size,
            fake,
            shards,
            trimmed_before: 0,
            next_child: 0,
            db,
            checkpoint_table,
            projection: format!("sim-{}", schedule.seed),
            aggregates: (0..schedule.aggregates).map(|i| format!("a{i}")).collect(),
            others: (0..schedule.others).map(|i| format!("o{i}")).collect(),
            commits: Vec::new(),
            deleted: HashMap::new(),
        }
    }

    /// Drops the history's tables.
    pub async fn clean_up(&self) {
        let tables = [
            &self.db.events,
            &self.db.snapshots,
            &self.db.views,
            &self.checkpoint_table,
        ];
        for table in tables {
            let _ = self.db.client.delete_table().table_name(table).send().await;
        }
    }

    /// Events committed so far on projected aggregate `id`.
    pub fn committed(&self, id: &str) -> usize {
        self.commits
            .iter()
            .filter(|c| c.projected && !c.tombstone && c.aggregate == id)
            .count()
    }

    /// The amount of event `sequence` of projected aggregate `id`.
    pub fn amount(&self, id: &str, sequence: usize) -> Option<i64> {
        self.commits
            .iter()
            .find(|c| c.projected && c.aggregate == id && c.sequence == sequence)
            .map(|c| c.amount)
    }

    /// Where each event of `id` went, for messages: `seq@shard`.
    pub fn placement(&self, id: &str, sequences: std::ops::RangeInclusive<usize>) -> String {
        let placed: Vec<String> = self
            .commits
            .iter()
            .enumerate()
            .filter(|(_, c)| c.projected && c.aggregate == id && sequences.contains(&c.sequence))
            .map(|(index, c)| {
                let trimmed = if index < self.trimmed_before {
                    " (trimmed)"
                } else {
                    ""
                };
                format!("{}@{}{trimmed}", c.sequence, c.shard)
            })
            .collect();
        placed.join(", ")
    }

    fn open_shards(&self) -> Vec<usize> {
        (0..self.shards.len())
            .filter(|&i| self.shards[i].open)
            .collect()
    }

    /// Commits `events` events on aggregates picked by `pick`.
    pub async fn commit(&mut self, events: u64, pick: u64) {
        let mut rng = Rng::new(pick);
        for _ in 0..events {
            let other = !self.others.is_empty() && rng.below(100) < 20;
            let (pool, kind, offset) = if other {
                (&self.others, "Other", 1)
            } else {
                (&self.aggregates, "Account", 0)
            };
            let index = usize::try_from(rng.below(pool.len() as u64)).unwrap();
            let aggregate = pool[index].clone();
            if self.deleted.contains_key(&aggregate) {
                // A deleted aggregate takes no command.
                continue;
            }
            let partition = (index + offset) % PARTITIONS;
            let sequence = 1 + self
                .commits
                .iter()
                .filter(|c| c.aggregate == aggregate)
                .count();
            let amount = 1 + i64::try_from(rng.below(100)).unwrap();
            let event = deposit_event(kind, &aggregate, sequence, amount);
            let (item, _) = event_to_item(&event, &Codec::default()).unwrap();
            dynamo_es::testing::put_item(&self.db.client, &self.db.events, item)
                .await
                .expect("the commit");
            let shard = self
                .shards
                .iter_mut()
                .find(|s| s.open && s.partitions.contains(&partition))
                .expect("an open shard owns every partition");
            let pushed = self
                .fake
                .push_event(&shard.id, &event, &Codec::default())
                .unwrap();
            assert!(pushed.is_some(), "shard {} is open", shard.id);
            shard.records.push(self.commits.len());
            let shard = shard.id.clone();
            self.commits.push(Commit {
                aggregate,
                projected: !other,
                sequence,
                amount,
                shard,
                tombstone: false,
            });
        }
    }

    /// Deletes a picked projected aggregate with events (as
    /// `delete_aggregate` does: its tombstone written, its events deleted
    /// from the table), and puts the tombstone on its shard.
    pub async fn delete(&mut self, pick: u64) {
        let candidates: Vec<usize> = (0..self.aggregates.len())
            .filter(|&i| {
                let id = &self.aggregates[i];
                !self.deleted.contains_key(id) && self.committed(id) > 0
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let index = candidates[usize::try_from(pick % candidates.len() as u64).unwrap()];
        let aggregate = self.aggregates[index].clone();
        let last = self.committed(&aggregate);
        let done = self
            .db
            .repository()
            .delete_aggregate::<Account>(&aggregate)
            .await
            .expect("the deletion");
        assert_eq!(done.last_sequence, last, "deleted through the last event");
        let tombstone = self
            .db
            .client
            .get_item()
            .table_name(&self.db.events)
            .key(
                AGGREGATE_TYPE_AND_ID,
                s(aggregate_key("Account", &aggregate)),
            )
            .key(AGGREGATE_ID_SEQUENCE, n(last + 1))
            .consistent_read(true)
            .send()
            .await
            .expect("the tombstone's read")
            .item
            .expect("the tombstone");
        let partition = index % PARTITIONS;
        let shard = self
            .shards
            .iter_mut()
            .find(|s| s.open && s.partitions.contains(&partition))
            .expect("an open shard owns every partition");
        assert!(self.fake.push(&shard.id, tombstone).is_some());
        shard.records.push(self.commits.len());
        let shard = shard.id.clone();
        self.deleted
            .insert(aggregate.clone(), (last, self.commits.len()));
        self.commits.push(Commit {
            aggregate,
            projected: true,
            sequence: last + 1,
            amount: 0,
            shard,
            tombstone: true,
        });
    }

    /// Closes a picked open shard; its keys go to `children` new shards.
    pub fn split(&mut self, pick: u64, children: usize) {
        let open = self.open_shards();
        let parent = open[usize::try_from(pick % open.len() as u64).unwrap()];
        let partitions = self.shards[parent].partitions.clone();
        let children = children.min(partitions.len()).max(1);
        let parent_id = self.shards[parent].id.clone();
        self.shards[parent].open = false;
        self.fake.close(&parent_id);
        for child in 0..children {
            let id = format!("shard-c{}", self.next_child);
            self.next_child += 1;
            self.fake.add_shard(&id, Some(&parent_id));
            self.shards.push(Shard {
                id,
                parent: Some(parent_id.clone()),
                open: true,
                partitions: partitions
                    .iter()
                    .copied()
                    .filter(|p| p % children == child)
                    .collect(),
                records: Vec::new(),
                trimmed: 0,
                removed: false,
            });
        }
    }

    /// Retention: trims every record committed before a picked point at or
    /// after the last one.
    pub fn trim(&mut self, pick: u64) {
        let total = self.commits.len();
        let span = (total - self.trimmed_before + 1) as u64;
        self.trimmed_before += usize::try_from(pick % span).unwrap();
        for shard in &mut self.shards {
            let trimmed = shard
                .records
                .partition_point(|&index| index < self.trimmed_before);
            if trimmed > shard.trimmed && !shard.removed {
                shard.trimmed = trimmed;
                self.fake.trim(&shard.id, trimmed);
            }
        }
    }

    /// Retention: closed shards whose every record was trimmed disappear.
    pub fn remove(&mut self) {
        for shard in &mut self.shards {
            if !shard.open && !shard.removed && shard.trimmed == shard.records.len() {
                shard.removed = true;
                self.fake.remove(&shard.id);
            }
        }
    }

    /// Whether retention trimmed a record of `shard_id`, still open.
    /// DynamoDB closes a shard within hours and keeps records 24 hours, so
    /// it never does; when this world did, nothing on the stream shows
    /// whether the records were ones the projection wanted, and a
    /// projector stays stopped with `Trimmed` even after a rebuild.
    pub fn open_shard_trimmed(&self, shard_id: &str) -> bool {
        self.shards
            .iter()
            .any(|s| s.id == shard_id && s.open && !s.removed && s.trimmed > 0)
    }

    /// Whether retention removed anything yet (a `Trimmed` error needs it).
    pub fn retention_acted(&self) -> bool {
        self.trimmed_before > 0 || self.shards.iter().any(|s| s.removed)
    }

    /// A checkpoint store of the projection, as a new process opens it:
    /// through a client with `faults`.
    pub fn store(&self, faults: &Faults, salt: u64) -> CheckpointStore {
        let client = if faults.throttle + faults.lose == 0 {
            self.db.client.clone()
        } else {
            let flaky = Flaky::new(
                self.seed ^ salt,
                faults.throttle,
                faults.lose,
                Canned::throughput_exceeded(),
                &["UpdateItem", "PutItem"],
            );
            let config = self
                .db
                .client
                .config()
                .to_builder()
                .http_client(flaky)
                .retry_config(quick_retries(6))
                .timeout_config(timeouts())
                .retry_partition(RetryPartition::new(unique_name("sim")));
            Client::from_conf(config.build())
        };
        CheckpointStore::new(client, &self.checkpoint_table, &self.projection)
            .with_lease_duration(LEASE)
    }

    /// A Streams client for the fake, through `faults`.
    pub fn streams(&self, faults: &Faults, salt: u64) -> aws_sdk_dynamodbstreams::Client {
        let mut config = aws_sdk_dynamodbstreams::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(self.fake.endpoint())
            .retry_config(quick_retries(6))
            .timeout_config(timeouts())
            .retry_partition(RetryPartition::new(unique_name("sim-streams")));
        if faults.throttle + faults.lose > 0 {
            let throttled = Canned::new(
                400,
                json!({"__type": "com.amazonaws.dynamodb.v20120810#LimitExceededException",
                       "message": "simulated throttle"}),
            );
            config = config.http_client(Flaky::new(
                self.seed ^ salt ^ 0xABCD,
                faults.throttle,
                faults.lose,
                throttled,
                &["GetRecords"],
            ));
        }
        aws_sdk_dynamodbstreams::Client::from_conf(config.build())
    }
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(10))
        .build()
}
