//! A history: a configuration and a sequence of steps, generated from a
//! seed, and the runner that plays it against the store and the model.
//!
//! **Invariant:** a history is a pure function of its seed, uses tables of
//! its own, and ends with every aggregate checked on every read path by
//! the writer and by a fresh reader process.

use std::collections::HashMap;
use std::error::Error as StdError;

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, SerializedEvent,
};
use cqrs_es::{AggregateError, CqrsFramework, DomainEvent, EventStore};
use dynamo_es::recode::{RecodeOptions, Recoder, Table};
use dynamo_es::testing::fixtures::Rng;
use dynamo_es::{execute_with_retry, Codec, DynamoEventRepository, Error, SnapshotPolicy};

use super::aggregate::{Model, ModelError};
use super::cache;
use super::check::{self, Subject};
use super::eventual;
use super::faults::{Attempt, Plan};
use super::model::{Committed, Store};
use super::payloads::{self, Carrier, Draw};
use super::world::{create_tables, Config, DictMode, Process, Role, StoreMode, TablePair};

/// A command on aggregate `id` of table `table`, under `fault`.
#[derive(Debug, Clone)]
pub struct Commit {
    pub table: usize,
    pub id: String,
    pub events: Vec<Committed>,
    pub carrier: Carrier,
    pub fault: Option<Plan>,
    /// For a `Value` commit to a `DynamoStore` history: the repository also
    /// writes a snapshot of the state after it, as cqrs-es's
    /// `PersistedEventStore` does (not trusted by `DynamoStore`, so a
    /// snapshot hint a load holds for the aggregate is then wrong).
    pub snapshot: bool,
}

impl Commit {
    /// A one-line description (payloads summarized).
    fn describe(&self) -> String {
        let Commit {
            table,
            id,
            events,
            carrier,
            fault,
            snapshot,
        } = self;
        let kinds: Vec<String> = events
            .iter()
            .map(|c| {
                let text = serde_json::to_string(&c.event).map_or(0, |t| t.len());
                let dup = if c.event.repeats_a_key() {
                    ", repeated key"
                } else {
                    ""
                };
                format!("{}({text} B{dup})", c.event.event_type())
            })
            .collect();
        format!(
            "commit {carrier:?} [{}] to Model:{id} of table {table}{}{}",
            kinds.join(", "),
            if *snapshot {
                " with an untrusted snapshot"
            } else {
                ""
            },
            fault
                .as_ref()
                .map(|p| format!(" under faults {:?}", p.0))
                .unwrap_or_default()
        )
    }
}

/// One step of a history.
#[derive(Debug, Clone)]
pub enum Step {
    /// A command.
    Commit(Commit),
    /// Another writer (a process of its own, without a cache) commits
    /// `events` to aggregate `id` of table `table`, behind the back of the
    /// writer's cache.
    Behind {
        table: usize,
        id: String,
        events: Vec<Committed>,
    },
    /// The writer process is replaced by a new one (nothing cached).
    Restart,
    /// Every aggregate, every read path, through the writer or a fresh reader.
    Check(Role),
    /// Table `table` recoded to `target` and back.
    Recode { table: usize, target: Codec },
}

impl Step {
    /// A one-line description (payloads summarized).
    pub fn describe(&self) -> String {
        match self {
            Step::Commit(commit) => commit.describe(),
            Step::Behind { table, id, events } => format!(
                "another writer commits {} events to Model:{id} of table {table}",
                events.len()
            ),
            Step::Restart => "restart the writer".into(),
            Step::Check(role) => format!("check everything through a {role:?}"),
            Step::Recode { table, target } => {
                format!("recode table {table} to {} and back", target.name())
            }
        }
    }
}

/// Mixed into a history's seed for which `Value` commits write a snapshot.
const UNTRUSTED_SEED: u64 = 0x5851_f42d_4c95_7f2d;

/// A generated history.
#[derive(Debug, Clone)]
pub struct History {
    pub seed: u64,
    pub config: Config,
    pub steps: Vec<Step>,
}

/// The configuration of seed `rng`'s history.
fn config(rng: &mut Rng) -> Config {
    let codecs = Codec::available();
    let codec = rng.pick(&codecs).clone();
    let compression = cfg!(feature = "compression");
    // A cap only limits compressed payloads: only with a compressing codec.
    let compressing = codec.compression_level().is_some();
    let cap = (compressing && rng.chance(35)).then(|| rng.between(2048, 8192));
    let cap = cap.filter(|_| !payloads::without("cap"));
    let dict = match rng.below(100) {
        _ if !compression => DictMode::None,
        0..=49 => DictMode::None,
        50..=74 => DictMode::Events,
        _ if payloads::without("snapshot-dictionary") => DictMode::Events,
        _ => DictMode::Codec,
    };
    let store = match rng.below(100) {
        0..=19 => StoreMode::Dynamo(SnapshotPolicy::Never),
        20..=44 => StoreMode::Dynamo(SnapshotPolicy::Every(rng.between(1, 4))),
        45..=59 => StoreMode::Dynamo(SnapshotPolicy::Always),
        60..=74 => StoreMode::PersistedEvents,
        _ => StoreMode::PersistedSnapshots(rng.between(1, 3)),
    };
    let tables = rng.between(1, 3);
    let collide =
        dict != DictMode::None && tables >= 2 && rng.chance(50) && !payloads::without("collisions");
    Config {
        codec,
        cap,
        dict,
        store,
        tables,
        collide,
        aggregates: rng.between(1, 3),
        cache: false,
        eventual: None,
    }
}

/// A fault plan, or none.
fn fault(rng: &mut Rng) -> Option<Plan> {
    use Attempt::*;
    if !rng.chance(25) || payloads::without("faults") {
        return None;
    }
    let plans: [&[Attempt]; 6] = [
        &[Throttled],
        &[Throttled, Throttled, Throttled],
        &[AppliedLost],
        &[AppliedServerError, ServerError, ServerError],
        &[AppliedLost, Throttled, Throttled],
        &[ServerError, ServerError, ServerError],
    ];
    let plan = rng.pick(&plans).to_vec();
    let unknown = plan.first() != Some(&AppliedLost) || plan.len() > 1;
    if unknown
        && plan
            .iter()
            .any(|a| matches!(a, AppliedLost | AppliedServerError))
        && payloads::without("unknown-outcome")
    {
        return None;
    }
    Some(Plan(plan))
}

impl History {
    /// The history of `seed`.
    pub fn generate(seed: u64) -> History {
        let mut rng = Rng::new(seed);
        let mut config = config(&mut rng);
        let mut steps = Vec::new();
        for index in 0..rng.between(4, 10) {
            let roll = rng.below(100);
            let step = match roll {
                0..=71 => {
                    let carrier = match config.store {
                        StoreMode::Dynamo(_) if rng.chance(80) => Carrier::Typed,
                        _ => Carrier::Value,
                    };
                    // cqrs-es's snapshot store labels a snapshot of the
                    // state at a boundary with the commit's last sequence
                    // when a commit passes the boundary by more events
                    // (see `cqrs_snapshot_store_commit_past_a_boundary`):
                    // one event per commit there.
                    let several = !matches!(config.store, StoreMode::PersistedSnapshots(_))
                        || std::env::var_os("MODEL_CQRS_OVERSHOOT").is_some();
                    let count = if !several || rng.chance(50) {
                        1
                    } else {
                        rng.between(2, 3)
                    };
                    let metadata =
                        HashMap::from([("user".to_string(), format!("u{}-{index}", rng.below(9)))]);
                    let events = (0..count)
                        .map(|_| Committed {
                            event: payloads::event(&mut rng, carrier, config.cap),
                            metadata: metadata.clone(),
                        })
                        .collect();
                    Step::Commit(Commit {
                        table: rng.between(0, config.tables - 1),
                        id: format!("a{}", rng.below(u64::try_from(config.aggregates).unwrap())),
                        events,
                        carrier,
                        fault: fault(&mut rng),
                        snapshot: false,
                    })
                }
                72..=81 => Step::Restart,
                82..=92 => Step::Check(if rng.chance(50) {
                    Role::Writer
                } else {
                    Role::Reader
                }),
                _ => {
                    let codecs = Codec::available();
                    Step::Recode {
                        table: rng.between(0, config.tables - 1),
                        target: rng.pick(&codecs).clone(),
                    }
                }
            };
            steps.push(step);
        }
        // The cache's choices come from a generator of their own: the
        // histories of seeds from before the cache are unchanged without it.
        let mut extra = Rng::new(seed ^ cache::CACHE_SEED);
        if cache::chosen(&mut extra, &config) {
            config.cache = true;
            steps = cache::with_writers_behind(&mut extra, &config, steps);
        }
        // Likewise the writer's eventually consistent reads.
        let mut extra = Rng::new(seed ^ eventual::EVENTUAL_SEED);
        config.eventual = eventual::chosen(&mut extra, &config);
        // Likewise the untrusted snapshots of `Value` commits, and, in a
        // snapshot store, such commits right after a command (whose snapshot
        // the writer's hint then points below the untrusted one).
        let mut extra = Rng::new(seed ^ UNTRUSTED_SEED);
        let untrusted = matches!(config.store, StoreMode::Dynamo(_))
            && !payloads::without("untrusted-snapshots");
        let every = matches!(config.store, StoreMode::Dynamo(SnapshotPolicy::Every(_)));
        let mut with_untrusted = Vec::with_capacity(steps.len());
        for mut step in steps {
            let mut after = None;
            if let Step::Commit(commit) = &mut step {
                commit.snapshot = untrusted && commit.carrier == Carrier::Value && extra.chance(40);
                if untrusted && every && commit.carrier == Carrier::Typed && extra.chance(30) {
                    after = Some(Step::Commit(Commit {
                        table: commit.table,
                        id: commit.id.clone(),
                        events: vec![Committed {
                            event: payloads::event(&mut extra, Carrier::Value, config.cap),
                            metadata: HashMap::from([(
                                "user".to_string(),
                                "untrusted".to_string(),
                            )]),
                        }],
                        carrier: Carrier::Value,
                        fault: None,
                        snapshot: true,
                    }));
                }
            }
            with_untrusted.push(step);
            with_untrusted.extend(after);
        }
        let mut steps = with_untrusted;
        steps.push(Step::Check(Role::Writer));
        steps.push(Step::Check(Role::Reader));
        History {
            seed,
            config,
            steps,
        }
    }

    /// The configuration and steps, one line each.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut text =
            format!(
            "codec {}, cap {:?}, dictionaries {:?}{}, store {:?}{}{}, {} tables, {} aggregates each",
            c.codec.name(),
            c.cap,
            c.dict,
            if c.collide { " (one id, different content, in every table)" } else { "" },
            c.store,
            if c.cache { " with a HotCache" } else { "" },
            c.eventual.map(|r| format!(", eventually consistent over {r:?}")).unwrap_or_default(),
            c.tables,
            c.aggregates
        );
        for (index, step) in self.steps.iter().enumerate() {
            text.push_str(&format!("\n    {index}: {}", step.describe()));
        }
        text
    }

    /// Plays the history; the first failure, naming its step.
    pub async fn run(&self) -> Result<(), String> {
        let pairs = create_tables(&self.config).await?;
        let mut runner = Runner {
            config: &self.config,
            writer: Process::start(&self.config, &pairs, Role::Writer).await?,
            pairs: &pairs,
            model: Store::default(),
            touched: std::collections::BTreeSet::new(),
            stale: std::collections::BTreeSet::new(),
        };
        if std::env::var_os("MODEL_VERBOSE").is_some() {
            println!("seed {}: {}", self.seed, self.describe());
        }
        for (index, step) in self.steps.iter().enumerate() {
            runner
                .step(step)
                .await
                .map_err(|err| format!("step {index} ({}): {err}", step.describe()))?;
        }
        Ok(())
    }
}

struct Runner<'a> {
    config: &'a Config,
    pairs: &'a [TablePair],
    writer: Process,
    model: Store,
    /// Every (table, aggregate) a command was sent to.
    touched: std::collections::BTreeSet<(usize, String)>,
    /// Every (table, aggregate) written behind the back of the writer's
    /// cache since the writer last committed it.
    stale: std::collections::BTreeSet<(usize, String)>,
}

/// A write's error: whether it says the outcome is unknown, and its text.
struct WriteError {
    unknown: bool,
    text: String,
}

fn write_error(inner: Option<&(dyn StdError + Send + Sync + 'static)>, text: String) -> WriteError {
    let unknown = matches!(
        inner.and_then(|e| e.downcast_ref::<Error>()),
        Some(Error::Connection { .. })
    );
    WriteError { unknown, text }
}

fn from_aggregate(err: AggregateError<ModelError>) -> WriteError {
    let text = format!("{err:?}");
    match &err {
        AggregateError::DatabaseConnectionError(e)
        | AggregateError::DeserializationError(e)
        | AggregateError::UnexpectedError(e) => {
            write_error(Some(e.as_ref()), format!("{e} ({text})"))
        }
        _ => write_error(None, text),
    }
}

impl Runner<'_> {
    /// Aggregate `id` of `table`, read through `process`, for a check.
    fn subject<'s>(&'s self, process: &'s Process, table: usize, id: &'s str) -> Subject<'s> {
        Subject {
            process,
            config: self.config,
            model: &self.model,
            table,
            id,
        }
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Commit(commit) => self.commit(commit).await,
            Step::Behind { table, id, events } => self.behind(*table, id, events).await,
            Step::Restart => {
                self.writer = Process::start(self.config, self.pairs, Role::Writer).await?;
                self.stale.clear();
                Ok(())
            }
            Step::Check(Role::Writer) => {
                self.check_all(&self.writer, None).await?;
                self.check_cache().await?;
                for (table, id) in self.touched.clone() {
                    eventual::check(self.subject(&self.writer, table, &id)).await?;
                }
                Ok(())
            }
            Step::Check(Role::Reader) => {
                let reader = Process::start(self.config, self.pairs, Role::Reader).await?;
                self.check_all(&reader, None).await
            }
            Step::Recode { table, target } => self.recode(*table, target).await,
        }
    }

    async fn check_all(&self, process: &Process, only: Option<usize>) -> Result<(), String> {
        for table in 0..self.config.tables {
            if only.is_some_and(|t| t != table) {
                continue;
            }
            // Aggregates no command was sent to are left out: cheaper, and
            // an empty aggregate reads empty on every path anyway.
            for id in self
                .touched
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, id)| id)
            {
                check::aggregate(self.subject(process, table, id)).await?;
            }
        }
        Ok(())
    }

    async fn commit(&mut self, commit: &Commit) -> Result<(), String> {
        let Commit {
            table,
            ref id,
            ref events,
            carrier,
            ref fault,
            snapshot,
        } = *commit;
        let repo = self.writer.repos[table].clone();
        let before = self.model.events(table, id).len();
        self.touched.insert((table, id.to_string()));
        let payloads: Vec<_> = events.iter().map(|c| c.event.clone()).collect();
        let metadata = events[0].metadata.clone();
        // The untrusted snapshot a `Value` commit writes: the state after
        // it, under the next version of the head.
        let snapshot = match snapshot {
            false => None,
            true => {
                let version = repo
                    .get_snapshot::<Model>(id)
                    .await
                    .map_err(|e| format!("reading the snapshot's version: {e}"))?
                    .map_or(0, |s| s.current_snapshot);
                let after = super::aggregate::replay(
                    self.model
                        .events(table, id)
                        .iter()
                        .chain(events)
                        .map(|c| &c.event),
                );
                Some((
                    id.to_string(),
                    serde_json::to_value(after).unwrap(),
                    version + 1,
                ))
            }
        };
        if let Some(plan) = fault {
            self.writer.switch.arm(plan);
        }
        let result = match (carrier, self.config.store) {
            (Carrier::Typed, StoreMode::Dynamo(_)) => {
                let store = eventual::store(self.config, &self.writer, table)
                    .ok_or("a typed commit needs a DynamoStore history")?;
                let store = match self.config.cache {
                    true => store.with_cache(self.writer.cache.clone()),
                    false => store,
                };
                let cqrs = CqrsFramework::new(store, vec![], ());
                // Under faults, one attempt: a conflict is then one of the
                // outcomes the checks below accept.
                let attempts = if fault.is_none() { 2 } else { 1 };
                let key = (table, id.to_string());
                let since = eventual::queries(&self.writer);
                match execute_with_retry(&cqrs, id, payloads, metadata, attempts).await {
                    Ok(2) if !self.stale.contains(&key)
                        && !self.model.may_lag(table, id)
                        && !eventual::lagged_since(self.config, &self.writer, since) =>
                    {
                        return Err(
                            "the command conflicted with no write behind the writer's back and no stale read"
                                .into(),
                        )
                    }
                    Ok(_) => {
                        self.stale.remove(&key);
                        self.model.claim_behind.remove(&key);
                        Ok(())
                    }
                    Err(err) => Err(from_aggregate(err)),
                }
            }
            (_, StoreMode::Dynamo(_)) => {
                // Straight to the repository: behind the cache's back, and
                // the head's (a writer that never reads it).
                self.stale.insert((table, id.to_string()));
                self.model.claim_behind.insert((table, id.to_string()));
                let serialized: Vec<SerializedEvent> = events
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        SerializedEvent::new(
                            id.to_string(),
                            before + i + 1,
                            "Model".into(),
                            c.event.event_type(),
                            c.event.event_version(),
                            serde_json::to_value(&c.event).unwrap(),
                            serde_json::to_value(&c.metadata).unwrap(),
                        )
                    })
                    .collect();
                repo.persist::<Model>(&serialized, snapshot)
                    .await
                    // As cqrs-es converts it for a store.
                    .map_err(|err: PersistenceError| from_aggregate(err.into()))
            }
            (_, StoreMode::PersistedEvents) => {
                persisted(
                    PersistedEventStore::new_event_store(repo.clone()),
                    id,
                    payloads,
                    metadata,
                )
                .await
            }
            (_, StoreMode::PersistedSnapshots(n)) => {
                persisted(
                    PersistedEventStore::new_snapshot_store(repo.clone(), n),
                    id,
                    payloads,
                    metadata,
                )
                .await
            }
        };
        self.writer.switch.disarm();
        if fault.is_none() && result.is_ok() {
            // The checks compare the stored items with the model.
            self.model.commit(table, id, events);
            return Ok(());
        }
        let stored = check::raw_items(&repo, id).await?.len();
        let applied = stored == before + events.len();
        if stored != before && !applied {
            return Err(format!(
                "{stored} event items stored after a commit of {} events on {before}",
                events.len()
            ));
        }
        match result {
            Ok(()) if applied => self.model.commit(table, id, events),
            Ok(()) => {
                return Err(format!(
                    "the commit reported success, but {stored} event items are stored, {} expected",
                    before + events.len()
                ))
            }
            Err(err) if applied && !err.unknown => {
                return Err(format!(
                    "the commit was applied ({stored} event items stored) but reported as a refusal, not as Error::Connection (outcome unknown): {}",
                    err.text
                ))
            }
            Err(_) if applied => self.model.commit(table, id, events),
            Err(_) => {}
        }
        Ok(())
    }

    /// A commit by another writer (`Step::Behind`): in the model if it
    /// was applied.
    async fn behind(&mut self, table: usize, id: &str, events: &[Committed]) -> Result<(), String> {
        let repo = self.writer.repos[table].clone();
        let before = self.model.events(table, id).len();
        self.touched.insert((table, id.to_string()));
        self.stale.insert((table, id.to_string()));
        let result = cache::commit_behind(self.config, self.pairs, table, id, events).await?;
        let stored = check::raw_items(&repo, id).await?.len();
        match (result, stored == before + events.len()) {
            (Ok(()), true) => self.model.commit(table, id, events),
            (Err(_), false) if stored == before => {}
            (result, _) => {
                return Err(format!(
                    "the other writer's commit of {} events on {before} left {stored} event items: {result:?}",
                    events.len()
                ))
            }
        }
        Ok(())
    }

    /// Every touched aggregate loaded through the writer's cache, if it
    /// has one (see `cache::check`).
    async fn check_cache(&mut self) -> Result<(), String> {
        if !self.config.cache {
            return Ok(());
        }
        for (table, id) in self.touched.clone() {
            let stale = cache::check(self.subject(&self.writer, table, &id), &self.stale).await?;
            if stale {
                // The conflict dropped the entry. A claim another writer
                // left on the head stays until a commit replaces the head
                // (the conflict's context named an older head); only the
                // writer's next load, marked by the conflict, ignored it.
                self.stale.remove(&(table, id));
            }
        }
        Ok(())
    }

    async fn recode(&mut self, table: usize, target: &Codec) -> Result<(), String> {
        let pair = &self.pairs[table];
        // The recoder writes with the cap the application reads with.
        let target = match self.config.cap {
            Some(cap) => target.clone().with_max_decoded_size(cap),
            None => target.clone(),
        };
        for (codec, label) in [(target, "to target"), (self.config.base_codec(), "back")] {
            let recoder = Recoder::new(self.writer.client.clone(), codec.clone())
                .with_options(RecodeOptions::default().with_allow_growth(true));
            #[cfg(feature = "compression")]
            let recoder =
                recoder.with_dictionary_store(dynamo_es::dictionary::DictionaryStore::new(
                    self.writer.client.clone(),
                    &pair.snapshots,
                ));
            let report = recoder
                .run(&[
                    Table::events(&pair.events),
                    Table::snapshots(&pair.snapshots),
                ])
                .await
                .map_err(|e| format!("recode {label} ({}): {e}", codec.name()))?;
            let not_convertible: Vec<&String> = report
                .tables
                .iter()
                .flat_map(|t| &t.not_convertible_keys)
                .collect();
            if report.items_unreadable() > 0 || !not_convertible.is_empty() {
                return Err(format!(
                    "recode {label} ({}): {} items unreadable, not convertible: {:?}",
                    codec.name(),
                    report.items_unreadable(),
                    not_convertible
                ));
            }
            let reader = Process::start(self.config, self.pairs, Role::Reader).await?;
            self.check_all(&reader, Some(table))
                .await
                .map_err(|e| format!("after recode {label} ({}): {e}", codec.name()))?;
        }
        Ok(())
    }
}

async fn persisted(
    store: PersistedEventStore<DynamoEventRepository, Model>,
    id: &str,
    events: Vec<super::aggregate::ModelEvent>,
    metadata: HashMap<String, String>,
) -> Result<(), WriteError> {
    let context = store.load_aggregate(id).await.map_err(from_aggregate)?;
    store
        .commit(events, context, metadata)
        .await
        .map(|_| ())
        .map_err(from_aggregate)
}
