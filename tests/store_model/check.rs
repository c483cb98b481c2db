//! The read paths, each checked against the model: the store's load
//! (typed state), its typed events, the repository's `Value` events and
//! snapshot, and the projection decoder on each item as a stream record
//! carries it.
//!
//! **Invariant:** a read returns exactly what the model holds, and a read
//! error is a failure. Tables holding different dictionaries under one id
//! are no exception: each table's payloads were written with that table's
//! own dictionary, so a reader keyed by table and id never meets a wrong
//! one (a wrong dictionary may give a typed error, never another value;
//! here, where none is wrong, it must give the value). A failure says
//! whether the error was a typed dictionary error.

use std::error::Error as StdError;

use aws_sdk_dynamodb::types::AttributeValue;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::EventStore;
use dynamo_es::item::{s, Item, AGGREGATE_TYPE_AND_ID};
use dynamo_es::projection::{ChangeKind, ChangeRecord, EventDecoder};
use dynamo_es::{DynamoEventRepository, DynamoStore, Error, SnapshotPolicy};

use super::aggregate::Model;
use super::model::Store;
use super::world::{Config, Process, StoreMode};

/// What a check of one aggregate reads: aggregate `id` of table `table`,
/// through `process`, under `config`, against `model`.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub process: &'a Process,
    pub config: &'a Config,
    pub model: &'a Store,
    pub table: usize,
    pub id: &'a str,
}

/// The error `err` wraps, if it is one of cqrs-es's wrappers.
fn unwrap_cqrs<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    use cqrs_es::persist::PersistenceError;
    use cqrs_es::AggregateError;
    if let Some(err) = err.downcast_ref::<AggregateError<super::aggregate::ModelError>>() {
        return match err {
            AggregateError::DatabaseConnectionError(e)
            | AggregateError::DeserializationError(e)
            | AggregateError::UnexpectedError(e) => Some(e.as_ref()),
            _ => None,
        };
    }
    if let Some(err) = err.downcast_ref::<PersistenceError>() {
        return match err {
            PersistenceError::ConnectionError(e)
            | PersistenceError::DeserializationError(e)
            | PersistenceError::UnknownError(e) => Some(e.as_ref()),
            PersistenceError::OptimisticLockError => None,
        };
    }
    err.source()
}

/// True if `err` is, or wraps, a typed dictionary error (this crate's
/// `Error::Dictionary`, or a payload's error naming its dictionary).
pub fn is_dictionary_error(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(typed) = err.downcast_ref::<Error>() {
            #[cfg(feature = "compression")]
            if matches!(typed, Error::Dictionary(_)) {
                return true;
            }
            if typed.to_string().contains("dictionary") {
                return true;
            }
        }
        next = unwrap_cqrs(err);
    }
    false
}

/// The verdict on a read error on `path`.
fn read_error(config: &Config, path: &str, err: &(dyn StdError + 'static)) -> Result<(), String> {
    let kind = if is_dictionary_error(err) {
        " (a typed dictionary error"
    } else {
        " (not a typed dictionary error"
    };
    let collide = if config.collide {
        ", with different dictionaries under one id in several tables)"
    } else {
        ")"
    };
    Err(format!("{path}: read failed: {err}{kind}{collide}"))
}

/// The raw event items of `Model:id` in `table`, in order.
pub async fn raw_items(repo: &DynamoEventRepository, id: &str) -> Result<Vec<Item>, String> {
    let pages = repo
        .client()
        .query()
        .table_name(repo.event_table())
        .key_condition_expression("#k = :k")
        .expression_attribute_names("#k", AGGREGATE_TYPE_AND_ID)
        .expression_attribute_values(":k", s(format!("Model:{id}")))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await;
    pages.map_err(|e| format!("raw query of Model:{id}: {e}"))
}

/// Checks every read path of the `subject` aggregate.
pub async fn aggregate(subject: Subject<'_>) -> Result<(), String> {
    let Subject {
        process,
        config,
        model,
        table,
        id,
    } = subject;
    let repo = &process.repos[table];
    let committed = model.events(table, id);
    let expected = model.state(table, id, committed.len());
    let tag = |path: &str| {
        format!(
            "{path} of Model:{id} (table {table}, {:?} process)",
            process.role
        )
    };

    // 1. The store's load.
    let loaded: Result<(Model, usize), Box<dyn StdError + Send + Sync>> = match config.store {
        StoreMode::Dynamo(policy) => DynamoStore::<Model>::new(repo.clone(), policy)
            .load_aggregate(id)
            .await
            .map(|c| (c.aggregate, c.current_sequence))
            .map_err(Into::into),
        StoreMode::PersistedEvents => {
            PersistedEventStore::<DynamoEventRepository, Model>::new_event_store(repo.clone())
                .load_aggregate(id)
                .await
                .map(|c| (c.aggregate, c.current_sequence))
                .map_err(Into::into)
        }
        StoreMode::PersistedSnapshots(n) => {
            PersistedEventStore::<DynamoEventRepository, Model>::new_snapshot_store(repo.clone(), n)
                .load_aggregate(id)
                .await
                .map(|c| (c.aggregate, c.current_sequence))
                .map_err(Into::into)
        }
    };
    let lags = matches!(config.store, StoreMode::Dynamo(SnapshotPolicy::Always))
        && model.may_lag(table, id);
    match loaded {
        // Behind only where a writer that never reads the head wrote
        // since (the head's claim stayed): the state at the claim.
        Ok((state, sequence))
            if lags && sequence < committed.len() && state == model.state(table, id, sequence) => {}
        Ok((state, sequence)) => {
            if state != expected || sequence != committed.len() {
                return Err(format!(
                    "{}: loaded {state:?} at sequence {sequence}, the replay of the {} committed events is {expected:?}",
                    tag("load"),
                    committed.len()
                ));
            }
        }
        Err(err) => read_error(config, &tag("load"), err.as_ref())?,
    }

    // 2. Typed events.
    match DynamoStore::<Model>::new_event_store(repo.clone())
        .load_events(id)
        .await
    {
        Ok(envelopes) => {
            let got: Vec<_> = envelopes
                .iter()
                .map(|e| (e.sequence, &e.payload, &e.metadata))
                .collect();
            let want: Vec<_> = committed
                .iter()
                .enumerate()
                .map(|(i, c)| (i + 1, &c.event, &c.metadata))
                .collect();
            if got != want {
                return Err(first_difference(&tag("typed events"), &got, &want));
            }
        }
        Err(err) => read_error(config, &tag("typed events"), &err)?,
    }

    // 3. `Value` events.
    match repo.get_events::<Model>(id).await {
        Ok(events) => {
            let got: Vec<_> = events
                .iter()
                .map(|e| {
                    (
                        e.sequence,
                        e.event_type.clone(),
                        e.payload.clone(),
                        e.metadata.clone(),
                    )
                })
                .collect();
            let want: Vec<_> = committed
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        i + 1,
                        cqrs_es::DomainEvent::event_type(&c.event),
                        serde_json::to_value(&c.event).unwrap(),
                        serde_json::to_value(&c.metadata).unwrap(),
                    )
                })
                .collect();
            if got != want {
                return Err(first_difference(&tag("Value events"), &got, &want));
            }
        }
        Err(err) => read_error(config, &tag("Value events"), &err)?,
    }

    // 4. The snapshot, as a `Value`: the state at its sequence.
    match repo.get_snapshot::<Model>(id).await {
        Ok(None) => {}
        Ok(Some(snapshot)) => {
            let at = snapshot.current_sequence;
            let want = serde_json::to_value(model.state(table, id, at)).unwrap();
            if at > committed.len() || snapshot.aggregate != want {
                return Err(format!(
                    "{}: snapshot at sequence {at} is {}, the state after {at} of the {} committed events is {want}",
                    tag("snapshot"),
                    snapshot.aggregate,
                    committed.len()
                ));
            }
        }
        Err(err) => read_error(config, &tag("snapshot"), &err)?,
    }

    // 5. The projection decoder, on each item as a stream record.
    let items = raw_items(repo, id).await?;
    if items.len() != committed.len() {
        return Err(format!(
            "{}: {} event items stored, {} committed",
            tag("raw items"),
            items.len(),
            committed.len()
        ));
    }
    let records: Vec<ChangeRecord> = items
        .iter()
        .enumerate()
        .map(|(i, item)| ChangeRecord {
            shard_id: "shard-model".into(),
            sequence_number: format!("{:021}", i + 1),
            event_name: ChangeKind::Insert,
            created: None,
            keys: item
                .iter()
                .filter(|(k, _)| {
                    k.as_str() == AGGREGATE_TYPE_AND_ID || k.as_str() == "AggregateIdSequence"
                })
                .map(|(k, v): (&String, &AttributeValue)| (k.clone(), v.clone()))
                .collect(),
            new_image: Some(item.clone()),
        })
        .collect();
    let decoder = EventDecoder::<Model>::from_repository(repo);
    if let Err(err) = decoder.prefetch(&records).await {
        return read_error(config, &tag("projection decoder prefetch"), &err);
    }
    for (record, c) in records.iter().zip(committed) {
        match decoder.decode(record) {
            Ok(Some(envelope)) => {
                if envelope.payload != c.event || envelope.metadata != c.metadata {
                    return Err(format!(
                        "{}: record {} decoded as {}, committed {}",
                        tag("projection decoder"),
                        record.sequence_number,
                        short(&envelope.payload),
                        short(&c.event)
                    ));
                }
            }
            Ok(None) => return Err(format!("{}: record skipped", tag("projection decoder"))),
            Err(err) => read_error(config, &tag("projection decoder"), &err)?,
        }
    }
    Ok(())
}

/// A value's debug text, at most 300 characters.
pub fn short(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    if text.len() <= 300 {
        return text;
    }
    let cut = (0..=300)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} chars)", &text[..cut], text.len())
}

fn first_difference<T: std::fmt::Debug + PartialEq>(path: &str, got: &[T], want: &[T]) -> String {
    if got.len() != want.len() {
        return format!(
            "{path}: {} events read, {} committed",
            got.len(),
            want.len()
        );
    }
    let index = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(0);
    format!(
        "{path}: event {} read back as {}, committed as {}",
        index + 1,
        short(&got[index]),
        short(&want[index])
    )
}
