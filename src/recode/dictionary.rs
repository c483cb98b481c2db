//! Recoding onto and off zstd dictionaries (see [`crate::dictionary`]).
//!
//! **Invariant:** a dictionary only ever writes the events of its own
//! aggregate type, in an events table; every other item is written with
//! the target codec alone. Every payload naming a dictionary is read with
//! that dictionary, fetched by id from the [dictionary
//! store](Recoder::with_dictionary_store); one that cannot be fetched is
//! counted as unreadable and left as it is, like any payload that cannot
//! be decoded. Re-encoding stays [`Codec::reencode`]: lossless and checked
//! per payload, written back conditionally.

use std::borrow::Cow;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Recoder, TableKind};
use crate::codec::Codec;
use crate::error::Result;
use crate::item::{Item, AGGREGATE_TYPE_AND_ID};

#[cfg(feature = "compression")]
use crate::dictionary::{Dictionary, DictionaryCache, DictionaryStore};

/// What every dictionary item's key starts with (see
/// [`crate::dictionary::dictionary_key`]); known here whatever the
/// features, so recode skips dictionary items in any build.
const DICTIONARY_KEY_PREFIX: &str = "~dictionary/";

/// True for a dictionary item of a snapshots table (key: the prefix and a
/// decimal id, so never an aggregate's `{type}:{id}`): not a snapshot,
/// never recoded.
pub(super) fn is_dictionary_item(item: &Item) -> bool {
    matches!(item.get(AGGREGATE_TYPE_AND_ID), Some(AttributeValue::S(key))
        if key.strip_prefix(DICTIONARY_KEY_PREFIX).is_some_and(|id| id.parse::<u32>().is_ok()))
}

/// The dictionaries of a recode: where to fetch them, which are loaded,
/// and which one writes each aggregate type.
#[derive(Debug, Clone, Default)]
pub(super) struct Dictionaries {
    #[cfg(feature = "compression")]
    store: Option<DictionaryStore>,
    #[cfg(feature = "compression")]
    cache: DictionaryCache,
    #[cfg(feature = "compression")]
    writers: Vec<Dictionary>,
}

impl Dictionaries {
    /// `codec`, reading dictionary frames through this cache: the
    /// dictionaries of the store's table (or, without a store, of the
    /// table the writers' dictionaries come from).
    pub(super) fn attach(&self, codec: Codec) -> Codec {
        #[cfg(feature = "compression")]
        {
            let table = self
                .store
                .as_ref()
                .map(DictionaryStore::table)
                .or_else(|| self.writers.first().map(Dictionary::table));
            if let Some(table) = table {
                return codec.with_dictionaries(self.cache.for_table(table));
            }
        }
        codec
    }

    /// Loads the dictionary the stored payload `bytes` of the item `key`
    /// (a snapshot's joined chunks) references, as [`prefetch`](Self::prefetch)
    /// does for an item's attributes.
    pub(super) async fn prefetch_payload(&self, key: &str, bytes: &[u8]) -> Result<()> {
        #[cfg(feature = "compression")]
        if let Some(store) = &self.store {
            let loaded = self
                .cache
                .prefetch_payload(store, bytes, || key.to_string(), crate::item::PAYLOAD)
                .await;
            match loaded {
                Ok(()) => {}
                Err(err) if err.is_data_error() => {
                    tracing::warn!(error = %err, "dictionary cannot be loaded");
                }
                Err(err) => return Err(err),
            }
        }
        let _ = (key, bytes);
        Ok(())
    }

    /// The same, writing with none (to upstream, which reads no
    /// dictionary payload).
    pub(super) fn readers_only(&self) -> Self {
        #[cfg(feature = "compression")]
        return Dictionaries {
            writers: Vec::new(),
            ..self.clone()
        };
        #[cfg(not(feature = "compression"))]
        self.clone()
    }

    /// How the target names the dictionaries it writes with: empty, or
    /// `+dictionary-ID(TYPE)` for each.
    pub(super) fn describe(&self) -> String {
        #[cfg(feature = "compression")]
        return self
            .writers
            .iter()
            .map(|d| format!("+dictionary-{}({})", d.id(), d.aggregate_type()))
            .collect();
        #[cfg(not(feature = "compression"))]
        String::new()
    }

    /// The codec `item` (of a table of `kind`) is written with: `target`,
    /// with the dictionary of the item's aggregate type for an event.
    pub(super) fn target_for<'a>(
        &self,
        target: &'a Codec,
        kind: TableKind,
        item: &Item,
    ) -> Cow<'a, Codec> {
        #[cfg(feature = "compression")]
        if kind == TableKind::Events {
            let aggregate_type = item.get(crate::item::AGGREGATE_TYPE);
            let writer = self.writers.iter().find(
                |d| matches!(aggregate_type, Some(AttributeValue::S(t)) if t == d.aggregate_type()),
            );
            if let Some(dictionary) = writer {
                return Cow::Owned(target.clone().with_dictionary(dictionary));
            }
        }
        let _ = (kind, item);
        Cow::Borrowed(target)
    }

    /// Loads the dictionaries `item` references. A dictionary that cannot
    /// be loaded is left to decoding to report (the item is counted as
    /// unreadable); DynamoDB failures end the run.
    pub(super) async fn prefetch(&self, item: &Item) -> Result<()> {
        #[cfg(feature = "compression")]
        if let Some(store) = &self.store {
            match self.cache.prefetch(store, [item]).await {
                Ok(()) => {}
                Err(err) if err.is_data_error() => {
                    tracing::warn!(error = %err, "dictionary cannot be loaded");
                }
                Err(err) => return Err(err),
            }
        }
        let _ = item;
        Ok(())
    }
}

impl Recoder {
    /// Reads payloads that name a zstd dictionary with the dictionaries of
    /// `store` (the snapshots table of the event store), each fetched once.
    /// Without it, such payloads are counted as unreadable and left as
    /// they are.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn with_dictionary_store(mut self, store: DictionaryStore) -> Self {
        self.dictionaries.store = Some(store);
        self
    }

    /// Writes the events of the dictionary's aggregate type (in events
    /// tables) with the target codec and `dictionary`, where that makes
    /// them smaller (or, with
    /// [`with_allow_growth`](super::RecodeOptions::with_allow_growth), in
    /// any case). A second dictionary for the same type replaces the
    /// first. To move events off a dictionary, recode without it (to plain
    /// JSON: `Codec::json()` with `allow_growth`). A recoder
    /// [`to_upstream`](Recoder::to_upstream) writes with none: upstream
    /// reads no dictionary payload.
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn with_dictionary(mut self, dictionary: Dictionary) -> Self {
        self.dictionaries.cache.insert(dictionary.clone());
        self.dictionaries
            .writers
            .retain(|d| d.aggregate_type() != dictionary.aggregate_type());
        self.dictionaries.writers.push(dictionary);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::s;

    fn keyed(key: &str) -> Item {
        Item::from([(AGGREGATE_TYPE_AND_ID.to_string(), s(key))])
    }

    #[test]
    fn only_dictionary_keys_are_dictionary_items() {
        assert!(is_dictionary_item(&keyed("~dictionary/40000")));
        for key in [
            "~dictionary/1:x",
            "~dictionary/",
            "Order:~dictionary/1",
            "~chunk/T/1/0",
        ] {
            assert!(!is_dictionary_item(&keyed(key)), "{key}");
        }
        #[cfg(feature = "compression")]
        assert_eq!(
            DICTIONARY_KEY_PREFIX,
            crate::dictionary::DICTIONARY_KEY_PREFIX
        );
    }
}
