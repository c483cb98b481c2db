//! [`DictionaryCache`]: each dictionary loaded once per process.
//!
//! **Invariant:** a cache only ever holds dictionaries read from storage
//! (or just stored), each under its table and its id (ids are unique per
//! table only: two tenants' tables may each hold a dictionary of the same
//! id), and never forgets one: a dictionary is immutable, so what was
//! loaded stays right. A lookup names the table, so a payload is never
//! decoded with another table's dictionary of its id. Concurrent loads of
//! one id make one `GetItem`; a load that fails leaves nothing behind (the
//! next read tries again), so failed ids cost no memory. Loading is async
//! and decoding is sync, so readers [`prefetch`](DictionaryCache::prefetch)
//! the ids a page of items references before decoding it; a page that
//! references none costs no read.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::{Dictionary, DictionaryStore};
use crate::codec::dict::frame_dictionary_id;
use crate::codec::DictionarySource;
use crate::error::Result;
use crate::item::{describe_key, Item, METADATA, PAYLOAD};

type Slot = Arc<OnceCell<Dictionary>>;

/// Slots by table, then by id.
type Slots = HashMap<String, HashMap<u32, Slot>>;

/// Dictionaries loaded by table and id, shared by every clone (and by the
/// codecs given it with
/// [`Codec::with_dictionaries`](crate::Codec::with_dictionaries) with [`DictionaryCache::for_table`]).
///
/// ```
/// use dynamo_es::dictionary::DictionaryCache;
///
/// let cache = DictionaryCache::new();
/// assert!(cache.get("Snapshots", 32_768).is_none());
/// assert_eq!(cache.len(), 0);
/// ```
#[derive(Clone, Default)]
pub struct DictionaryCache {
    slots: Arc<Mutex<Slots>>,
}

impl fmt::Debug for DictionaryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DictionaryCache")
            .field("loaded", &self.loaded())
            .finish()
    }
}

impl DictionaryCache {
    /// An empty cache.
    pub fn new() -> Self {
        DictionaryCache::default()
    }

    /// The dictionaries of `table` this cache holds, as a codec reads them
    /// ([`Codec::with_dictionaries`](crate::Codec::with_dictionaries)):
    /// shares the cache, so what is loaded into it later is seen.
    pub fn for_table(&self, table: &str) -> TableDictionaries {
        TableDictionaries {
            cache: self.clone(),
            table: table.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, table: &str, id: u32) -> Slot {
        let mut slots = self.lock();
        match slots.get_mut(table) {
            Some(ids) => ids.entry(id).or_default().clone(),
            None => slots
                .entry(table.to_string())
                .or_default()
                .entry(id)
                .or_default()
                .clone(),
        }
    }

    /// Forgets `slot` (of `table` and `id`) if it is still empty and no
    /// other load holds it: a load that failed leaves nothing behind.
    fn forget_if_empty(&self, table: &str, id: u32, slot: Slot) {
        let mut slots = self.lock();
        let Some(ids) = slots.get_mut(table) else {
            return;
        };
        let ours = ids.get(&id).is_some_and(|held| Arc::ptr_eq(held, &slot));
        // Two holders: the map and `slot`. Another load in flight holds a
        // third, and removes it itself if it fails too.
        if ours && !slot.initialized() && Arc::strong_count(&slot) == 2 {
            ids.remove(&id);
            if ids.is_empty() {
                slots.remove(table);
            }
        }
    }

    /// The dictionary `id` of `table`, if loaded.
    pub fn get(&self, table: &str, id: u32) -> Option<Dictionary> {
        let slots = self.lock();
        slots
            .get(table)
            .and_then(|ids| ids.get(&id))
            .and_then(|slot| slot.get().cloned())
    }

    /// The tables and ids of the loaded dictionaries, ascending.
    pub fn loaded(&self) -> Vec<(String, u32)> {
        let slots = self.lock();
        let mut loaded: Vec<(String, u32)> = slots
            .iter()
            .flat_map(|(table, ids)| {
                ids.iter()
                    .filter(|(_, slot)| slot.initialized())
                    .map(move |(id, _)| (table.clone(), *id))
            })
            .collect();
        loaded.sort_unstable();
        loaded
    }

    /// The ids of the loaded dictionaries, of every table, ascending and
    /// without repeats.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.loaded().into_iter().map(|(_, id)| id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// How many dictionaries are loaded (of every table).
    pub fn len(&self) -> usize {
        self.loaded().len()
    }

    /// True if none is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `dictionary` (one from a [`DictionaryStore`]), under its
    /// table and id.
    pub fn insert(&self, dictionary: Dictionary) {
        // A slot already set holds the same dictionary: ids are unique in
        // a table.
        let _ = self
            .slot(dictionary.table(), dictionary.id())
            .set(dictionary);
    }

    /// The dictionary `id` of `store`'s table, loaded from `store` on first
    /// use. A load that fails is not remembered: the next one reads again.
    pub async fn load(&self, store: &DictionaryStore, id: u32) -> Result<Dictionary> {
        let slot = self.slot(store.table(), id);
        match slot.get_or_try_init(|| store.get(id)).await {
            Ok(dictionary) => Ok(dictionary.clone()),
            Err(err) => {
                self.forget_if_empty(store.table(), id, slot);
                Err(err)
            }
        }
    }

    /// Loads the dictionary the stored payload `bytes` (attribute
    /// `attribute` of the item `key`) references, if it references one the
    /// cache does not hold: what a read of one payload (a snapshot) calls
    /// before decoding it. Errors as [`prefetch`](Self::prefetch).
    pub(crate) async fn prefetch_payload(
        &self,
        store: &DictionaryStore,
        bytes: &[u8],
        key: impl FnOnce() -> String,
        attribute: &'static str,
    ) -> Result<()> {
        let Some(id) = frame_dictionary_id(bytes) else {
            return Ok(());
        };
        if self.get(store.table(), id).is_some() {
            return Ok(());
        }
        match self.load(store, id).await {
            Ok(_) => Ok(()),
            Err(err @ crate::Error::Dictionary(_)) => Err(err.in_item(&key(), attribute)),
            Err(err) => Err(err),
        }
    }

    /// Loads every dictionary that the `Payload` and `Metadata` attributes
    /// of `items` reference and the cache does not hold yet for `store`'s
    /// table, so that decoding them (sync) finds them. Items that
    /// reference none cost nothing.
    ///
    /// A dictionary that is not stored, or is corrupt, is
    /// [`crate::Error::Item`] naming the first item key and attribute
    /// referencing it, around a [`crate::dictionary::Error`] naming the id.
    pub async fn prefetch<'a>(
        &self,
        store: &DictionaryStore,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Result<()> {
        let mut wanted: Vec<(u32, &'a Item, &'static str)> = Vec::new();
        for item in items {
            for attribute in [PAYLOAD, METADATA] {
                let Some(aws_sdk_dynamodb::types::AttributeValue::B(bytes)) = item.get(attribute)
                else {
                    continue;
                };
                if let Some(id) = frame_dictionary_id(bytes.as_ref()) {
                    if self.get(store.table(), id).is_none()
                        && !wanted.iter().any(|(w, _, _)| *w == id)
                    {
                        wanted.push((id, item, attribute));
                    }
                }
            }
        }
        for (id, item, attribute) in wanted {
            match self.load(store, id).await {
                Ok(_) => {}
                Err(err @ crate::Error::Dictionary(_)) => {
                    return Err(err.in_item(&describe_key(item), attribute))
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// The dictionaries of one table in a [`DictionaryCache`]: what a codec
/// decodes with ([`DictionaryCache::for_table`]).
#[derive(Clone)]
pub struct TableDictionaries {
    cache: DictionaryCache,
    table: String,
}

impl TableDictionaries {
    /// The cache they are held in.
    pub fn cache(&self) -> &DictionaryCache {
        &self.cache
    }
}

impl fmt::Debug for TableDictionaries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} for table {}", self.cache, self.table)
    }
}

impl DictionarySource for TableDictionaries {
    fn table(&self) -> &str {
        &self.table
    }

    fn dictionary(&self, id: u32) -> Option<Dictionary> {
        self.cache.get(&self.table, id)
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    impl DictionaryCache {
        /// Slots held, loaded or not.
        fn slot_count(&self) -> usize {
            self.lock().values().map(HashMap::len).sum()
        }
    }

    #[tokio::test]
    async fn ids_that_fail_to_load_leave_no_slot_behind() {
        let db = crate::testing::dynamodb().await.unwrap();
        let store = DictionaryStore::new(db.client.clone(), &db.snapshots);
        let cache = DictionaryCache::new();
        for id in 32_768..32_868 {
            let err = cache.load(&store, id).await.unwrap_err();
            assert!(err.is_data_error(), "{err}");
        }
        // A table that does not exist: a DynamoDB error, no slot either.
        let missing = DictionaryStore::new(db.client.clone(), "no-such-table");
        assert!(cache.load(&missing, 32_768).await.is_err());
        assert_eq!(cache.slot_count(), 0);
        assert!(cache.is_empty());
    }
}
