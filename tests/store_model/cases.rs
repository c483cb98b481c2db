//! Hand-written histories, one per defect of issue 21 the model found on
//! the code before the fixes (each failed there with the message quoted in
//! its test's doc), built from the same steps as the generated ones.

use std::collections::{BTreeMap, HashMap};

use dynamo_es::{Codec, SnapshotPolicy};
use serde_json::json;

use super::aggregate::{FlatEvent, ModelEvent};
use super::faults::{Attempt, Plan};
use super::history::{Commit, History, Step};
use super::model::Committed;
use super::payloads::{nested, Carrier};
use super::world::{Config, DictMode, Role, StoreMode};
use dynamo_es::testing::fixtures::Rng;

/// A configuration: `codec`, one table, one aggregate, no dictionary, no cap.
pub fn config(codec: Codec, store: StoreMode) -> Config {
    Config {
        codec,
        cap: None,
        dict: DictMode::None,
        store,
        tables: 1,
        collide: false,
        aggregates: 1,
        cache: false,
        eventual: None,
    }
}

/// A plain event with a note of dictionary-friendly words.
pub fn plain(amount: i64) -> ModelEvent {
    ModelEvent::Plain {
        amount,
        note: format!("payment EUR fee {amount} net CHF invoice Zürich"),
        ratio: 0.5,
    }
}

/// A typed commit of `events` to `Model:a0` of `table`, under `fault`.
pub fn commit(table: usize, events: Vec<ModelEvent>, fault: Option<Vec<Attempt>>) -> Step {
    let metadata = HashMap::from([("user".to_string(), "case".to_string())]);
    Step::Commit(Commit {
        table,
        id: "a0".into(),
        events: events
            .into_iter()
            .map(|event| Committed {
                event,
                metadata: metadata.clone(),
            })
            .collect(),
        carrier: Carrier::Typed,
        fault: fault.map(Plan),
        snapshot: false,
    })
}

/// `config` and `steps`, then checks through the writer and a fresh reader.
pub fn history(config: Config, mut steps: Vec<Step>) -> History {
    steps.push(Step::Check(Role::Writer));
    steps.push(Step::Check(Role::Reader));
    History {
        seed: 0,
        config,
        steps,
    }
}

/// The writer's codec in the regression cases: MessagePack when built,
/// else JSON (both read the repeated key back as the other value).
pub fn msgpack_or_json() -> Codec {
    Codec::available()
        .into_iter()
        .find(|c| c.format().name() == "msgpack" && c.compression_level().is_none())
        .unwrap_or_else(Codec::json)
}

/// Defect 8: a flattened map naming a field.
pub fn repeated_key() -> History {
    let flat = ModelEvent::Flat(FlatEvent {
        amount: 1,
        extra: BTreeMap::from([("amount".to_string(), json!(2))]),
    });
    history(
        config(msgpack_or_json(), StoreMode::Dynamo(SnapshotPolicy::Never)),
        vec![commit(0, vec![plain(5), flat], None)],
    )
}

/// Defect 10: a payload nested 140 levels.
pub fn deep() -> History {
    let deep = ModelEvent::Deep {
        tree: nested(140, &mut Rng::new(10)),
    };
    history(
        config(Codec::json(), StoreMode::Dynamo(SnapshotPolicy::Never)),
        vec![commit(0, vec![deep], None)],
    )
}

/// Defect 12: an applied write answered by `attempts` (a lone event is a
/// `PutItem`, two are a `TransactWriteItems`).
pub fn unknown_outcome(events: usize, attempts: Vec<Attempt>) -> History {
    let events = (1..=events)
        .map(|n| plain(i64::try_from(n).unwrap()))
        .collect();
    history(
        config(Codec::json(), StoreMode::Dynamo(SnapshotPolicy::Never)),
        vec![commit(0, events, Some(attempts))],
    )
}

/// cqrs-es 0.5's snapshot store, a commit past a snapshot boundary by
/// more events than the boundary.
pub fn snapshot_store_overshoot() -> History {
    history(
        config(Codec::json(), StoreMode::PersistedSnapshots(2)),
        vec![
            commit(0, vec![plain(1), plain(2), plain(3)], None),
            commit(0, vec![plain(4)], None),
        ],
    )
}

#[cfg(feature = "compression")]
pub use compression::*;

#[cfg(feature = "compression")]
mod compression {
    use super::*;

    /// zstd (level 1) over JSON.
    fn zstd() -> Codec {
        Codec::json().compressed(1)
    }

    /// Defect 7: two tables holding different dictionaries under one id,
    /// written and read through clones made with `with_tables`.
    pub fn colliding_dictionaries() -> History {
        let mut config = config(zstd(), StoreMode::Dynamo(SnapshotPolicy::Never));
        config.tables = 2;
        config.dict = DictMode::Events;
        config.collide = true;
        history(
            config,
            vec![
                commit(0, vec![plain(1)], None),
                commit(1, vec![plain(2)], None),
            ],
        )
    }

    /// Defect 9: an event larger than the codec's `max_decoded_size`.
    pub fn over_cap() -> History {
        let mut config = config(zstd(), StoreMode::Dynamo(SnapshotPolicy::Never));
        config.cap = Some(4096);
        let text = "payment EUR fee net CHF invoice ".repeat(200);
        history(
            config,
            vec![commit(0, vec![ModelEvent::Big { text }], None)],
        )
    }

    /// Defect 11: a snapshot written with a dictionary in the codec, read
    /// by another process.
    pub fn dictionary_snapshot(store: StoreMode) -> History {
        let mut config = config(zstd(), store);
        config.dict = DictMode::Codec;
        history(config, vec![commit(0, vec![plain(1)], None)])
    }
}
