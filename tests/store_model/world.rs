//! A history's world: its configuration (codec, decoded-size cap,
//! dictionaries, snapshot policy, tables), its tables, and the processes
//! that use them. A process is a client and one repository per table, all
//! clones of one base repository (`with_tables`), so they share its
//! dictionary cache as an application's clones do.

use std::time::Duration;

use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use dynamo_es::testing::faults::{client_on, quick_retries, stale_reads, StaleReads};
use dynamo_es::testing::{endpoint, unique_name};
use dynamo_es::{create_event_tables, Codec, DynamoEventRepository, HotCache, SnapshotPolicy};

use super::faults::{faulty, Switch};

/// Where dictionaries are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DictMode {
    /// None.
    None,
    /// For the model's events (`DynamoEventRepository::with_dictionary`).
    Events,
    /// In the codec: events and snapshots (`Codec::with_dictionary`).
    Codec,
}

/// How aggregates are stored and loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `DynamoStore` under `CqrsFramework`, with a snapshot policy.
    Dynamo(SnapshotPolicy),
    /// cqrs-es's `PersistedEventStore` over the repository: events only.
    PersistedEvents,
    /// cqrs-es's `PersistedEventStore`, a snapshot every `n` events.
    PersistedSnapshots(usize),
}

/// A history's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The codec writers use (a dictionary added per table in `Codec` mode).
    pub codec: Codec,
    /// A small `max_decoded_size`, if set.
    pub cap: Option<usize>,
    pub dict: DictMode,
    pub store: StoreMode,
    /// Events+snapshots table pairs.
    pub tables: usize,
    /// True if every table's dictionary has the first table's id (with
    /// other content).
    pub collide: bool,
    /// Aggregates per table.
    pub aggregates: usize,
    /// True if the writer's `DynamoStore` has a `HotCache`.
    pub cache: bool,
    /// The writer's stale replica, if its `DynamoStore` reads eventually
    /// consistent.
    pub eventual: Option<super::eventual::Replica>,
}

impl Config {
    /// The codec of a process, without dictionary.
    pub fn base_codec(&self) -> Codec {
        match self.cap {
            Some(cap) => self.codec.clone().with_max_decoded_size(cap),
            None => self.codec.clone(),
        }
    }

    /// Whether dictionaries are in play.
    #[cfg_attr(not(feature = "compression"), allow(dead_code))]
    pub fn dictionaries(&self) -> bool {
        self.dict != DictMode::None
    }
}

/// One events+snapshots pair, and the dictionary id its writers use.
#[derive(Debug, Clone)]
pub struct TablePair {
    pub events: String,
    pub snapshots: String,
    #[cfg_attr(not(feature = "compression"), allow(dead_code))]
    pub dictionary: Option<u32>,
}

/// What a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Writes with the configuration (dictionaries loaded by id).
    Writer,
    /// Reads only: the configured codec, no dictionary configured.
    Reader,
}

/// A process: a client (behind a fault switch), a repository per table.
pub struct Process {
    pub client: Client,
    pub switch: Switch,
    pub repos: Vec<DynamoEventRepository>,
    pub role: Role,
    /// The process's hot-aggregate cache (used when the history has one).
    pub cache: HotCache,
    /// The writer's stale replica, if the history reads eventually
    /// consistent.
    pub stale: Option<StaleReads>,
}

/// A client for the shared emulator behind a fault switch: three
/// attempts, millisecond backoff.
pub fn faulty_client() -> (Client, Switch) {
    let switch = Switch::default();
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(Duration::from_secs(30))
        .build();
    let client = client_on(faulty(switch.clone()), quick_retries(3), timeouts);
    let endpoint = endpoint().unwrap();
    let config = client.config().to_builder().endpoint_url(endpoint).build();
    (Client::from_conf(config), switch)
}

/// Creates the tables of a history; stores its dictionaries.
pub async fn create_tables(config: &Config) -> Result<Vec<TablePair>, String> {
    let (client, _) = faulty_client();
    let mut pairs = Vec::new();
    for _ in 0..config.tables {
        let events = unique_name("model-events");
        let snapshots = unique_name("model-snapshots");
        create_event_tables(&client, &events, &snapshots)
            .await
            .map_err(|e| format!("creating tables: {e}"))?;
        pairs.push(TablePair {
            events,
            snapshots,
            dictionary: None,
        });
    }
    #[cfg(feature = "compression")]
    if config.dictionaries() {
        use super::dictionaries;
        let mut first = None;
        for (index, pair) in pairs.iter_mut().enumerate() {
            let which = index % 2;
            let dictionary = match first {
                Some(id) if config.collide => {
                    dictionaries::store_as(&client, &pair.snapshots, which, id).await?
                }
                _ => dictionaries::store(&client, &pair.snapshots, which).await?,
            };
            first.get_or_insert(dictionary.id());
            pair.dictionary = Some(dictionary.id());
        }
    }
    Ok(pairs)
}

impl Process {
    /// A new process (new client, nothing cached) of `role` on `pairs`.
    pub async fn start(config: &Config, pairs: &[TablePair], role: Role) -> Result<Self, String> {
        let (client, switch) = faulty_client();
        let (client, stale) = match (role, config.eventual) {
            (Role::Writer, Some(replica)) => {
                let (client, reads) = stale_reads(&client, replica.reads());
                (client, Some(reads))
            }
            _ => (client, None),
        };
        let base = DynamoEventRepository::new(client.clone()).with_codec(config.base_codec());
        let mut repos = Vec::new();
        for pair in pairs {
            let repo = base.clone().with_tables(&pair.events, &pair.snapshots);
            #[cfg(feature = "compression")]
            let repo = match (role, config.dict, pair.dictionary) {
                (Role::Writer, DictMode::Events, Some(id)) => {
                    let dictionary =
                        super::dictionaries::load(&client, &pair.snapshots, id).await?;
                    repo.with_dictionary("Model", dictionary)
                }
                (Role::Writer, DictMode::Codec, Some(id)) => {
                    let dictionary =
                        super::dictionaries::load(&client, &pair.snapshots, id).await?;
                    let codec = config.base_codec().with_dictionary(&dictionary);
                    repo.with_codec(codec)
                }
                _ => repo,
            };
            repos.push(repo);
        }
        Ok(Process {
            client,
            switch,
            repos,
            role,
            cache: super::cache::new_cache(),
            stale,
        })
    }
}
